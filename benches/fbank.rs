//! Criterion benches of the fbank (`cargo bench --bench fbank`).
//!
//! Configurations, 80 bins and dither 0 each:
//! - `kaldi80`: Kaldi's defaults with `--num-mel-bins=80 --dither=0` (snip-edges true), exactly
//!   the peers' configuration (../shared/peers/bench_fbank.py);
//! - `modern80`: the `modern80` profile (snip-edges false, high-freq -400);
//! - `kaldi23_dither`: the `kaldi` profile as is (23 bins, dither 1), to show what dither costs.
//!
//! Groups:
//! - `single_frame`: one 10 ms hop (160 samples) into a warm [`StreamingFbank`], which emits
//!   exactly one frame: the steady-state cost of one frame, as a streaming front end pays it;
//! - `utterance_10s`: [`Fbank::compute`] on 10 s of 16 kHz audio (throughput in frames);
//! - `streaming_1600`: the same 10 s fed in 1600-sample (100 ms) chunks, then `finish`.
//!
//! The audio is synthetic and deterministic (harmonics of a drifting f0 plus noise), so runs
//! compare across machines and commits.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

use amdistill::features::fbank::num_frames;
use amdistill::features::{Fbank, FbankOptions, StreamingFbank};

const RATE: usize = 16000;

/// `n` samples of speech-like audio in [-1, 1]: a few harmonics of a slowly drifting f0 with
/// an amplitude envelope, plus low-level noise from a fixed-seed LCG.
fn synthetic_audio(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut noise = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / RATE as f64;
            let f0 = 120.0 + 40.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / RATE as f64;
            let voiced: f64 = (1..=8).map(|h| (h as f64 * phase).sin() / h as f64).sum();
            let envelope = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            (0.2 * envelope * voiced) as f32 + 0.01 * noise()
        })
        .collect()
}

fn configs() -> Vec<(&'static str, FbankOptions)> {
    let mut kaldi80 = FbankOptions::profile("kaldi").unwrap();
    kaldi80.set("num-mel-bins", "80").unwrap();
    kaldi80.set("dither", "0").unwrap();
    let modern80 = FbankOptions::profile("modern80").unwrap();
    let kaldi23 = FbankOptions::profile("kaldi").unwrap();
    vec![
        ("kaldi80", kaldi80),
        ("modern80", modern80),
        ("kaldi23_dither", kaldi23),
    ]
}

fn single_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("single_frame");
    group.throughput(Throughput::Elements(1));
    let hop = synthetic_audio(RATE, 1);
    for (name, opts) in configs().into_iter().take(2) {
        let fbank = Fbank::new(&opts).unwrap();
        let shift = opts.window_shift();
        let mut stream = StreamingFbank::new(&fbank, 0);
        let mut out = Vec::with_capacity(fbank.dim() * 4);
        // Warm up past the first frames (and their edge handling).
        stream.accept(&hop[..RATE / 2], &mut out);
        let mut at = 0;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                out.clear();
                let chunk = &hop[at..at + shift];
                at = (at + shift) % (hop.len() - shift);
                let n = stream.accept(black_box(chunk), &mut out);
                debug_assert_eq!(n, 1);
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn utterance_10s(c: &mut Criterion) {
    let mut group = c.benchmark_group("utterance_10s");
    let audio = synthetic_audio(10 * RATE, 2);
    for (name, opts) in configs() {
        let fbank = Fbank::new(&opts).unwrap();
        group.throughput(Throughput::Elements(num_frames(audio.len(), &opts) as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| black_box(fbank.compute(black_box(&audio), 0)))
        });
    }
    group.finish();
}

fn streaming_1600(c: &mut Criterion) {
    let mut group = c.benchmark_group("streaming_1600");
    let audio = synthetic_audio(10 * RATE, 3);
    for (name, opts) in configs().into_iter().take(2) {
        let fbank = Fbank::new(&opts).unwrap();
        let frames = num_frames(audio.len(), &opts);
        group.throughput(Throughput::Elements(frames as u64));
        let mut stream = StreamingFbank::new(&fbank, 0);
        let mut out = Vec::with_capacity(frames * fbank.dim());
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                stream.reset(0);
                out.clear();
                for chunk in audio.chunks(1600) {
                    stream.accept(black_box(chunk), &mut out);
                }
                stream.finish(&mut out);
                black_box(&out);
            })
        });
        assert_eq!(
            out.len(),
            frames * fbank.dim(),
            "{name}: streaming frame count"
        );
    }
    group.finish();
}

fn short_config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = short_config();
    targets = single_frame, utterance_10s, streaming_1600
}
criterion_main!(benches);
