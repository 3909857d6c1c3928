//! `amdistill stream BUNDLE AUDIO...`: run a bundle the way a device does, audio in chunks,
//! log-posteriors out as soon as the model's right context allows.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::bail;

use amdistill::audio::{read_audio, AudioOptions};
use amdistill::export::{Bundle, Precision, Streamer};
use amdistill::features::kaldi_io::ArkWriter;
use amdistill::features::Matrix;
use amdistill::progress::BatchSummary;

/// Stream audio files through an exported bundle.
///
/// Each file is fed in chunks of --chunk samples (as a microphone would deliver them);
/// log-posterior frames come out as the model's right context allows. Prints per file the
/// frames, the latency in frames and seconds, the real-time factor of feature extraction
/// plus model on this thread, and with --check the largest difference from the offline
/// forward of the whole file (0 when streaming is exact). --out writes the log-posteriors
/// as a Kaldi binary archive (key: the file's stem). Audio at another rate than the
/// bundle's is refused (resample it first), as are bidirectional models.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Bundle directory (from `amdistill export`).
    #[arg(value_name = "BUNDLE")]
    pub bundle: PathBuf,
    /// Audio files (WAV, SPHERE, FLAC).
    #[arg(value_name = "AUDIO", required = true)]
    pub audio: Vec<PathBuf>,
    /// Samples per pushed chunk (160 = 10 ms at 16 kHz).
    #[arg(long, default_value_t = 160)]
    pub chunk: usize,
    /// Run the int8 weights.
    #[arg(long)]
    pub int8: bool,
    /// Compare with the offline forward of each whole file.
    #[arg(long)]
    pub check: bool,
    /// Write the log-posteriors to this Kaldi archive.
    #[arg(long, value_name = "ARK")]
    pub out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if args.chunk == 0 {
        bail!("--chunk must be at least 1 sample");
    }
    let bundle = Bundle::load(&args.bundle)?;
    let precision = if args.int8 {
        Precision::Int8
    } else {
        Precision::Fp32
    };
    let mut streamer = Streamer::new(&bundle, precision)?;
    let audio_opts = AudioOptions {
        sample_rate: streamer.sample_rate(),
        resample: false,
        ..Default::default()
    };
    let s = streamer.num_senones();
    let mut ark = match &args.out {
        Some(p) => Some(ArkWriter::create(p)?),
        None => None,
    };
    eprintln!(
        "amdistill stream: {} ({:?}), latency {} frames = {:.0} ms, chunks of {} samples",
        bundle.card().name,
        precision,
        streamer.latency_frames(),
        1e3 * streamer.latency_seconds(),
        args.chunk
    );
    let mut done = 0;
    for path in &args.audio {
        let wave = match read_audio(path, &audio_opts) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("amdistill stream: {}: {e}; skipped", path.display());
                continue;
            }
        };
        let mut out = Vec::new();
        let start = Instant::now();
        for chunk in wave.samples.chunks(args.chunk) {
            streamer.push(chunk, &mut out);
        }
        streamer.finish(&mut out);
        let secs = start.elapsed().as_secs_f64();
        let frames = out.len() / s;
        if frames == 0 {
            eprintln!(
                "amdistill stream: {}: too short for one frame; skipped",
                path.display()
            );
            continue;
        }
        let post = Matrix::from_vec(frames, s, out);
        let mut line = format!(
            "{}: {} frames, {:.2} s of audio, RTF {:.4}",
            path.display(),
            frames,
            wave.duration_s(),
            secs / wave.duration_s()
        );
        if args.check {
            let offline = streamer.offline(&wave.samples)?;
            let diff = offline
                .data
                .iter()
                .zip(&post.data)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            line.push_str(&format!(", max |stream - offline| = {diff:e}"));
        }
        println!("{line}");
        if let Some(a) = &mut ark {
            let key = path.file_stem().unwrap_or_default().to_string_lossy();
            if let Err(e) = a.write_matrix(&key, &post) {
                eprintln!("amdistill stream: {}: {e}; skipped", path.display());
                continue;
            }
        }
        done += 1;
    }
    if let Some(a) = ark {
        a.commit()?;
    }
    let summary = BatchSummary {
        done,
        total: args.audio.len(),
    };
    eprintln!("{summary}");
    if summary.failed() > 0 {
        bail!("{} of {} files failed", summary.failed(), summary.total);
    }
    Ok(())
}
