//! Corpus-level fbank speed, comparable with ../shared/peers/bench_fbank.py:
//!
//! ```text
//! cargo bench --bench fbank_corpus -- [DIR] [--passes 3] [--files 200] [--seconds 10]
//! ```
//!
//! DIR: every `DIR/*.wav` (what `make_audio.py` writes); without it, `--files` synthetic
//! clips of `--seconds` each are written to a temporary directory first, so decoding is
//! measured either way. Reported separately, each the best of `--passes` passes:
//! (a) decoding every file with `amdistill::audio::read_audio` (from the page cache after
//!     the first pass);
//! (b) single-thread fbank over the decoded audio, the peers' exact configuration (Kaldi
//!     defaults, 80 bins, dither 0, snip-edges true): x real time, frames/s, us/frame;
//! (c) the same with rayon over utterances in a pool of 1 and 2 threads (and all cores if
//!     more), and the speed-up.
//! Audio is decoded once before (b) and (c), as the peers' harness does.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use amdistill::audio::{read_audio, AudioOptions};
use amdistill::features::{Fbank, FbankOptions};

struct Args {
    dir: Option<PathBuf>,
    passes: usize,
    files: usize,
    seconds: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        dir: None,
        passes: 3,
        files: 200,
        seconds: 10.0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            // cargo bench passes --bench to harness=false targets.
            "--bench" => {}
            "--passes" => a.passes = value("--passes")?.parse().map_err(|e| format!("--passes: {e}"))?,
            "--files" => a.files = value("--files")?.parse().map_err(|e| format!("--files: {e}"))?,
            "--seconds" => a.seconds = value("--seconds")?.parse().map_err(|e| format!("--seconds: {e}"))?,
            "-h" | "--help" => {
                return Err("usage: cargo bench --bench fbank_corpus -- [DIR] [--passes N] [--files N] [--seconds S]".into())
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => a.dir = Some(PathBuf::from(s)),
        }
    }
    if a.passes == 0 || a.files == 0 || a.seconds.is_nan() || a.seconds <= 0.0 {
        return Err("--passes, --files and --seconds must be positive".into());
    }
    Ok(a)
}

/// Writes `files` synthetic 16-bit WAVs of `seconds` each (speech-like: harmonics of a drifting
/// f0 under an envelope, pauses, noise floor) into `dir`.
fn write_synthetic(dir: &Path, files: usize, seconds: f64) -> Result<(), String> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let n = (seconds * 16000.0) as usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for f in 0..files {
        let path = dir.join(format!("synth_{f:03}.wav"));
        let mut w = hound::WavWriter::create(&path, spec)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let mut phase = 0.0f64;
        let base = 90.0 + 15.0 * (f % 11) as f64;
        for i in 0..n {
            let t = i as f64 / 16000.0;
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            let f0 = base + 30.0 * (2.0 * std::f64::consts::PI * 0.5 * t).sin();
            phase += 2.0 * std::f64::consts::PI * f0 / 16000.0;
            let voiced: f64 = (1..=10).map(|h| (h as f64 * phase).sin() / h as f64).sum();
            let env = (2.0 * std::f64::consts::PI * 2.3 * t).sin().max(0.0);
            let x = 0.25 * env * voiced + 0.0005 * noise;
            w.write_sample((x * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        w.finalize()
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

fn wav_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let rd = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no *.wav in {}", dir.display()));
    }
    Ok(files)
}

/// Best and mean wall time of `passes` runs of `f` (which returns a checksum kept from the
/// optimiser), and the least CPU time the calling thread spent in one run.
fn best_of<F: FnMut() -> usize>(passes: usize, mut f: F) -> (Duration, Duration, Option<Duration>) {
    let mut times = Vec::with_capacity(passes);
    let mut cpu: Option<Duration> = None;
    for _ in 0..passes {
        let c0 = thread_cpu();
        let t0 = Instant::now();
        black_box(f());
        times.push(t0.elapsed());
        if let (Some(c0), Some(c1)) = (c0, thread_cpu()) {
            cpu = Some(cpu.map_or(c1 - c0, |c| c.min(c1 - c0)));
        }
    }
    (
        *times.iter().min().unwrap(),
        times.iter().sum::<Duration>() / passes as u32,
        cpu,
    )
}

/// CPU time this thread has run so far (Linux `/proc/thread-self/schedstat`, ns): on a busy
/// machine it stays close to the quiet-machine wall time while the wall time grows.
fn thread_cpu() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        s.split_whitespace().next()?.parse().ok()?,
    ))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn loadavg_1min() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let _tmp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            let t = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
            eprintln!(
                "no DIR given: writing {} synthetic clips of {} s to {}",
                args.files,
                args.seconds,
                t.path().display()
            );
            write_synthetic(t.path(), args.files, args.seconds)?;
            let p = t.path().to_path_buf();
            _tmp = t;
            p
        }
    };
    let files = wav_files(&dir)?;
    let busy = loadavg_1min().is_some_and(|l| l > 0.5);
    if busy {
        eprintln!(
            "warning: other processes are running (load average above 0.5): wall times and the thread speed-up \
             are pessimistic; the on-CPU figure of (b) is the one to compare"
        );
    }
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!(
        "amdistill fbank corpus bench: {} files in {}; {cores} cores; load average {}",
        files.len(),
        dir.display(),
        loadavg()
    );

    // (a) Decoding.
    let audio_opts = AudioOptions::default();
    let mut audio = Vec::new();
    let (dec_best, dec_mean, _) = best_of(args.passes, || {
        audio = files
            .iter()
            .map(|p| {
                read_audio(p, &audio_opts)
                    .map(|w| w.samples)
                    .map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_else(|e| panic!("{e}"));
        audio.len()
    });
    let samples: usize = audio.iter().map(Vec::len).sum();
    let audio_s = samples as f64 / audio_opts.sample_rate as f64;
    let bytes: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    println!(
        "audio: {:.1} s ({:.1} min), {:.1} MB of WAV",
        audio_s,
        audio_s / 60.0,
        bytes as f64 / 1e6
    );
    println!(
        "(a) WAV decoding (read_audio, 1 thread, page cache warm): best {:.3} s  mean {:.3} s  {:.0}x real time  {:.0} MB/s",
        dec_best.as_secs_f64(),
        dec_mean.as_secs_f64(),
        audio_s / dec_best.as_secs_f64(),
        bytes as f64 / 1e6 / dec_best.as_secs_f64()
    );

    // (b) Single-thread compute, the peers' configuration.
    let mut opts = FbankOptions::profile("kaldi").map_err(|e| e.to_string())?;
    for (k, v) in [
        ("num-mel-bins", "80"),
        ("dither", "0"),
        ("snip-edges", "true"),
    ] {
        opts.set(k, v).map_err(|e| e.to_string())?;
    }
    let fbank = Fbank::new(&opts).map_err(|e| e.to_string())?;
    println!(
        "config: Kaldi defaults + {}",
        opts.to_conf_diff_string()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let frames: usize = audio.iter().map(|a| fbank.compute(a, 0).rows).sum(); // also a warm-up pass
    let (best, mean, cpu) = best_of(args.passes, || {
        audio.iter().map(|a| fbank.compute(a, 0).data.len()).sum()
    });
    let b = best.as_secs_f64();
    println!(
        "(b) fbank, 1 thread, loop over utterances: best {:.3} s  mean {:.3} s  {:.0}x real time  {:.0} frames/s  {:.2} us/frame  ({frames} frames)",
        b,
        mean.as_secs_f64(),
        audio_s / b,
        frames as f64 / b,
        1e6 * b / frames as f64
    );
    if let Some(cpu) = cpu {
        let c = cpu.as_secs_f64();
        println!(
            "    on-CPU time of the best pass: {c:.3} s = {:.0}x real time, {:.2} us/frame (what a quiet machine would show)",
            audio_s / c,
            1e6 * c / frames as f64
        );
    }

    // (c) Rayon over utterances.
    let mut thread_counts = vec![1, 2];
    if cores > 2 {
        thread_counts.push(cores);
    }
    let mut t1 = None;
    for &n in &thread_counts {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| e.to_string())?;
        let (best, mean, _) = pool.install(|| {
            best_of(args.passes, || {
                audio
                    .par_iter()
                    .map(|a| fbank.compute(a, 0).data.len())
                    .sum()
            })
        });
        let b = best.as_secs_f64();
        let speedup = t1
            .map(|t: f64| format!("  speed-up vs 1 thread {:.2}x", t / b))
            .unwrap_or_default();
        t1.get_or_insert(b);
        println!(
            "(c) fbank, rayon {n} thread(s): best {:.3} s  mean {:.3} s  {:.0}x real time  {:.0} frames/s{speedup}",
            b,
            mean.as_secs_f64(),
            audio_s / b,
            frames as f64 / b
        );
    }
    println!(
        "best of {} passes; load average after: {}; peak RSS {:.0} MiB (all decoded audio held in memory)",
        args.passes,
        loadavg(),
        peak_rss_mib().unwrap_or(f64::NAN)
    );
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("fbank_corpus: {e}");
        std::process::exit(1);
    }
}
