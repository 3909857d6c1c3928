//! The export runtime on the peers' student (880-3x256-2000: 80 fbank bins spliced +/-5
//! frames, three ReLU layers of 256, 2000 senones; `peers/bench_train.py`), fp32 and int8:
//!
//! - streaming, one frame per call: `FrameStream::push` of one 80-dim frame (the splice is a
//!   ring buffer inside), one log-posterior frame out, one thread;
//! - batches of 512 frames: `Runtime::forward` on 522 frames (512 outputs), one thread, and
//!   two batches at once on two threads (rayon over utterances, as `score` runs);
//! - the single-core real-time factor with features: 10 s of audio pushed through a
//!   `Streamer` in 160-sample (10 ms) chunks, fbank included.
//!
//! ```text
//! cargo bench --bench runtime -- [--seconds 8] [--rows stream,batch,batch2,membw,rtf] [--onnx-dir DIR]
//! ```
//!
//! Random weights (seeded) with the real shapes: speed does not depend on their values.
//! `--onnx-dir` also writes the same student as `student.onnx` and `student.int8.onnx` for
//! `benches/runtime_ort.py`, which times onnxruntime on them in the same minutes. Each
//! figure is the best of 4 windows of seconds/4 (a window that shares the CPU is slower,
//! never faster).

use std::sync::Arc;
use std::time::{Duration, Instant};

use amdistill::export::onnx::write_onnx;
use amdistill::export::Streamer;
use amdistill::features::options::FbankOptions;
use amdistill::features::Matrix;
use amdistill::models::{DnnConfig, ModelConfig, Norm};
use amdistill::runtime::{lower, quantize, varmap_tensors, FrameStream, Graph, Runtime};
use candle_core::{DType, Device};
use rayon::prelude::*;

const BINS: usize = 80;
const SENONES: usize = 2000;
const BATCH: usize = 512;

/// onnxruntime 1.32 on this machine kind (`peers/results.md`): frames/s at 1 and 2 threads.
const ORT_STREAM: (f64, f64) = (24001.0, 27512.0);
const ORT_B512: (f64, f64) = (138558.0, 267417.0);

fn student() -> Graph {
    let cfg = ModelConfig::Dnn(DnnConfig {
        splice: 5,
        hidden: 256,
        layers: 3,
        norm: Norm::None,
        dropout: 0.0,
    });
    let varmap = candle_nn::VarMap::new();
    let vb = amdistill::nn::init::seeded_var_builder(&varmap, 1, DType::F32, &Device::Cpu);
    cfg.build(BINS, SENONES, vb).expect("student builds");
    lower(&cfg, BINS, SENONES, &varmap_tensors(&varmap)).expect("student lowers")
}

fn features(frames: usize, seed: u32) -> Matrix {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(7);
    let data = (0..frames * BINS)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        })
        .collect();
    Matrix {
        rows: frames,
        cols: BINS,
        data,
    }
}

/// Best rate (units per second) over 4 windows of `seconds / 4`; `step` does `units` units.
fn best_rate(seconds: f64, units: f64, mut step: impl FnMut()) -> f64 {
    for _ in 0..3 {
        step();
    }
    let window = Duration::from_secs_f64(seconds / 4.0);
    (0..4)
        .map(|_| {
            let (start, mut n) = (Instant::now(), 0u64);
            while start.elapsed() < window {
                step();
                n += 1;
            }
            n as f64 * units / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

fn stream_rate(rt: &Arc<Runtime>, seconds: f64) -> f64 {
    let x = features(1000, 3);
    let mut s = FrameStream::new(rt.clone()).unwrap();
    let mut out = Vec::with_capacity(2 * SENONES);
    let mut i = 0;
    best_rate(seconds, 1.0, || {
        out.clear();
        s.push(&x.data[i * BINS..(i + 1) * BINS], &mut out);
        i = (i + 1) % x.rows;
    })
}

fn batch_rate(rt: &Runtime, seconds: f64, parallel: usize) -> f64 {
    let ctx = rt.context().total();
    let xs: Vec<Matrix> = (0..parallel)
        .map(|p| features(BATCH + ctx, 10 + p as u32))
        .collect();
    best_rate(seconds, (BATCH * parallel) as f64, || {
        let rows: usize = xs.par_iter().map(|x| rt.forward(x).unwrap().rows).sum();
        assert_eq!(rows, BATCH * parallel);
    })
}

/// Real-time factor of audio -> fbank -> model, 10 ms chunks (processing time / audio time).
fn rtf(rt: &Arc<Runtime>, seconds: f64) -> f64 {
    let mut opts = FbankOptions::profile("modern80").unwrap();
    opts.frame.dither = 0.0;
    let mut st = Streamer::from_runtime(rt.clone(), &opts).unwrap();
    let audio_s = 10.0;
    let wave: Vec<f32> = (0..(16000.0 * audio_s) as usize)
        .map(|i| 0.3 * (i as f32 * 0.05).sin() + 0.01 * ((i * 7919) % 101) as f32 / 101.0)
        .collect();
    let mut out = Vec::new();
    let utts_per_s = best_rate(seconds, 1.0, || {
        out.clear();
        for c in wave.chunks(160) {
            st.push(c, &mut out);
        }
        st.finish(&mut out);
    });
    1.0 / (utts_per_s * audio_s)
}

/// Bytes/s one thread reads from a buffer of `bytes`, streamed over and over (the buffer stays
/// in whichever cache level it fits): the ceiling of one-frame streaming, which reads every
/// weight once per frame. Sums into 64 independent lanes so the loop is load-bound.
fn read_bandwidth(bytes: usize, seconds: f64) -> f64 {
    let buf: Vec<f32> = (0..bytes / 4).map(|i| (i % 7) as f32).collect();
    best_rate(seconds, bytes as f64, || {
        let mut acc = [0f32; 64];
        for chunk in buf.chunks_exact(64) {
            for (a, x) in acc.iter_mut().zip(chunk) {
                *a += *x;
            }
        }
        std::hint::black_box(acc);
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let opt = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let seconds: f64 = opt("--seconds").map_or(8.0, |s| s.parse().expect("--seconds N"));
    let rows = opt("--rows").map_or("stream,batch,batch2,membw,rtf", |s| s.as_str());
    let want = |row: &str| rows.split(',').any(|r| r == row);
    let g = student();
    let g8 = quantize(&g);
    if let Some(dir) = opt("--onnx-dir") {
        std::fs::create_dir_all(dir).unwrap();
        write_onnx(format!("{dir}/student.onnx"), &g, &[]).unwrap();
        write_onnx(format!("{dir}/student.int8.onnx"), &g8, &[]).unwrap();
        println!("wrote {dir}/student.onnx and {dir}/student.int8.onnx");
    }
    let fp32 = Arc::new(Runtime::new(g).unwrap());
    let int8 = Arc::new(Runtime::new(g8).unwrap());
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build_global()
        .ok();

    println!(
        "student 880-3x256-2000 (80 bins x 11 frames), best of 4 x {:.1} s",
        seconds / 4.0
    );
    println!("| row | amdistill fp32 | amdistill int8 | int8 / fp32 | onnxruntime (peers/results.md) | fp32 / ort | int8 / ort |");
    println!("|---|---|---|---|---|---|---|");
    let row = |name: &str, a: f64, b: f64, ort: f64| {
        println!(
            "| {name} | {a:.0} frames/s | {b:.0} frames/s | {:.2}x | {ort:.0} frames/s | {:.2}x | {:.2}x |",
            b / a,
            a / ort,
            b / ort
        );
    };
    if want("stream") {
        row(
            "streaming, 1 frame per call, 1 thread",
            stream_rate(&fp32, seconds),
            stream_rate(&int8, seconds),
            ORT_STREAM.0,
        );
    }
    if want("batch") {
        row(
            "batch 512, 1 thread",
            batch_rate(&fp32, seconds, 1),
            batch_rate(&int8, seconds, 1),
            ORT_B512.0,
        );
    }
    if want("batch2") {
        row(
            "2 batches of 512 on 2 threads",
            batch_rate(&fp32, seconds, 2),
            batch_rate(&int8, seconds, 2),
            ORT_B512.1,
        );
    }
    if want("membw") {
        // fp32 streaming reads the weights once per frame: frames/s <= bandwidth / weight bytes.
        let weights = 4 * (880 * 256 + 2 * 256 * 256 + 256 * SENONES + 3 * 256 + SENONES);
        for (what, bytes) in [("L2-sized (0.5 MB)", 1 << 19), ("fp32 weights", weights)] {
            let bw = read_bandwidth(bytes, seconds / 2.0);
            println!(
                "read bandwidth, 1 thread, {what} {:.2} MB: {:.1} GB/s = {:.0} weight passes/s of the fp32 student",
                bytes as f64 / 1e6,
                bw / 1e9,
                bw / weights as f64
            );
        }
    }
    if !want("rtf") {
        return;
    }
    let (r32, r8) = (rtf(&fp32, seconds), rtf(&int8, seconds));
    println!(
        "real-time factor, fbank + student, 10 ms chunks, 1 core: fp32 {r32:.5} ({:.0}x real time), int8 {r8:.5} ({:.0}x)",
        1.0 / r32,
        1.0 / r8
    );
}
