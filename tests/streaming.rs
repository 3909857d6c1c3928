//! Streaming fbank equals offline fbank bit for bit, under random chunkings, lengths and
//! options (both snip-edges settings, with and without dither).

use amdistill::features::{Fbank, FbankOptions, StreamingFbank};
use proptest::prelude::*;

fn signal(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|i| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.02;
            0.2 * (i as f32 * 0.031).sin() + noise
        })
        .collect()
}

fn options(snip_edges: bool, dither: bool, window: &str, bins: usize) -> FbankOptions {
    let mut o = FbankOptions::default();
    o.frame.snip_edges = snip_edges;
    o.frame.dither = if dither { 1.0 } else { 0.0 };
    o.set("window-type", window).unwrap();
    o.mel.num_bins = bins;
    o
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn streaming_equals_offline(
        len in 0usize..6000,
        seed in any::<u64>(),
        snip_edges in any::<bool>(),
        dither in any::<bool>(),
        window in prop::sample::select(vec!["povey", "hamming", "rectangular"]),
        bins in prop::sample::select(vec![23usize, 40, 80]),
        chunks in prop::collection::vec(0usize..900, 1..40),
    ) {
        let o = options(snip_edges, dither, window, bins);
        let fbank = Fbank::new(&o).unwrap();
        let x = signal(len, seed);
        let offline = fbank.compute(&x, seed);

        let mut stream = StreamingFbank::new(&fbank, seed);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut i = 0;
        while pos < x.len() {
            let n = chunks[i % chunks.len()].min(x.len() - pos);
            let before = out.len();
            let frames = stream.accept(&x[pos..pos + n], &mut out);
            prop_assert_eq!(out.len() - before, frames * fbank.dim());
            pos += n;
            i += 1;
            if i > 100_000 { break; }
            if n == 0 && chunks.iter().all(|&c| c == 0) {
                // all-empty chunking: feed the rest at once
                stream.accept(&x[pos..], &mut out);
                pos = x.len();
            }
        }
        stream.finish(&mut out);
        prop_assert_eq!(out.len(), offline.rows * offline.cols);
        // Bit-for-bit: compare the bit patterns, so NaN-free equality is exact.
        let a: Vec<u32> = out.iter().map(|v| v.to_bits()).collect();
        let b: Vec<u32> = offline.data.iter().map(|v| v.to_bits()).collect();
        prop_assert_eq!(a, b);
    }
}

#[test]
fn frames_come_out_as_soon_as_complete() {
    // snip-edges true: frame t is complete when sample t*160+399 has arrived.
    let o = options(true, false, "povey", 23);
    let fbank = Fbank::new(&o).unwrap();
    let x = signal(1000, 1);
    let mut s = StreamingFbank::new(&fbank, 0);
    let mut out = Vec::new();
    assert_eq!(s.accept(&x[..399], &mut out), 0);
    assert_eq!(s.accept(&x[399..400], &mut out), 1);
    assert_eq!(s.accept(&x[400..559], &mut out), 0);
    assert_eq!(s.accept(&x[559..560], &mut out), 1);
    // With snip-edges every frame is emitted by accept; finish has nothing left.
    assert_eq!(s.finish(&mut out), 0);
    assert_eq!(out.len(), 2 * 23);
}

#[test]
fn unsnipped_tail_frames_wait_for_finish() {
    let o = options(false, false, "povey", 23);
    let fbank = Fbank::new(&o).unwrap();
    let x = signal(1600, 2);
    let mut s = StreamingFbank::new(&fbank, 0);
    let mut out = Vec::new();
    let early = s.accept(&x, &mut out);
    let late = s.finish(&mut out);
    assert_eq!(early + late, 10);
    assert!(
        late >= 1,
        "the last frame reaches past the end and needs the reflection"
    );
    // A reset stream reproduces the same output.
    s.reset(0);
    let mut again = Vec::new();
    s.accept(&x, &mut again);
    s.finish(&mut again);
    assert_eq!(out, again);
}
