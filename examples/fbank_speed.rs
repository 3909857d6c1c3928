use amdistill::features::{Fbank, FbankOptions};
use std::time::Instant;
fn main() {
    let mut o = FbankOptions::default();
    o.mel.num_bins = 80;
    o.frame.dither = 0.0;
    let f = Fbank::new(&o).unwrap();
    let x: Vec<f32> = (0..16000 * 60)
        .map(|i| ((i as f32) * 0.01).sin() * 0.1 + ((i * 7919 % 1000) as f32) / 1e5)
        .collect();
    let mut best = f64::MAX;
    for _ in 0..30 {
        let t = Instant::now();
        let m = f.compute(&x, 0);
        let s = t.elapsed().as_secs_f64();
        best = best.min(s);
        let _ = m.rows;
    }
    println!(
        "best: {:.0}x real time, {:.3} us/frame",
        60.0 / best,
        best * 1e6 / 5998.0
    );
}
