//! `amdistill synth-corpus`: a synthetic multi-voice corpus made with flite.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use amdistill::corpus::synth::{synthesize_corpus, SynthOptions};
use amdistill::progress;
use anyhow::bail;

/// Synthesise a speech corpus with flite, with exact phone times.
///
/// Writes OUT_DIR/{train,dev,test,test_unseen}, each a Kaldi data directory (wav/*.wav,
/// wav.scp, text, utt2spk, spk2utt) plus phones.ctm (flite's phones: lowercase ARPAbet, `pau`
/// for silence) and utt2synth.tsv (per-utterance voice, speaking rate, pitch, gain, noise, SNR
/// and reverberation). Text: voice-assistant commands and sentences from a word list (the CMU
/// dictionary of pocketsphinx-en-us, else /usr/share/dict/words); sentences are disjoint between
/// splits; test_unseen is spoken by a voice held out of the others. With --untranscribed-hours,
/// OUT_DIR/untranscribed holds more audio of the seen voices with only wav.scp, utt2spk and
/// spk2utt (the KD student's unlabelled data). The same options give
/// identical files; rerunning after a kill resumes. Needs flite (`apt-get install -y flite`).
#[derive(clap::Args)]
pub struct Args {
    /// Output directory.
    #[arg(value_name = "OUT_DIR")]
    out_dir: PathBuf,
    /// Hours of train audio (at least this much is made).
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// dev, test and test_unseen each get this fraction of --hours.
    #[arg(long, default_value_t = 0.1)]
    eval_fraction: f64,
    /// Hours of untranscribed audio (OUT_DIR/untranscribed; 0: none). It is made after the
    /// other splits, so adding or growing it later leaves them as they were.
    #[arg(long, default_value_t = 0.0, value_name = "H")]
    untranscribed_hours: f64,
    /// Random seed: the same seed and options give identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// flite voices of train, dev and test (comma-separated; known: kal16, awb, rms, slt).
    #[arg(long, value_delimiter = ',', default_value = "kal16,awb,slt")]
    voices: Vec<String>,
    /// The voice of test_unseen, held out of the other splits.
    #[arg(long, default_value = "rms")]
    unseen_voice: String,
    /// Parallel flite processes (default: all cores).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Output sample rate in Hz (flite's voices speak at 16000; others are resampled).
    #[arg(long, default_value_t = 16000)]
    sample_rate: u32,
    /// Word list for the varied sentences (first token of each line; CMU dictionary format
    /// works). Default: /usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict, else
    /// /usr/share/dict/words.
    #[arg(long, value_name = "FILE")]
    word_list: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = SynthOptions {
        out_dir: args.out_dir,
        train_hours: args.hours,
        eval_fraction: args.eval_fraction,
        untranscribed_hours: args.untranscribed_hours,
        seed: args.seed,
        voices: args.voices,
        unseen_voice: args.unseen_voice,
        sample_rate: args.sample_rate,
        word_list: args.word_list,
        jobs: args.jobs,
    };
    let start = Instant::now();
    let bar = progress::bar(0, "synth-corpus");
    // Failures are printed above the bar, and also when stderr is not a terminal.
    let print_lock = Mutex::new(());
    let report = synthesize_corpus(&opts, &|n| bar.inc_length(n as u64), &|event| {
        if let Some(line) = event {
            let _guard = print_lock.lock();
            bar.suspend(|| eprintln!("amdistill: warning: {line}"));
        }
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    for s in &report.splits {
        eprintln!(
            "{:<12} {:>6} utterances {:>8.3} hours{}{}",
            s.split.name(),
            s.utterances,
            s.seconds / 3600.0,
            if s.peak_limited > 0 {
                format!(", {} scaled down to avoid clipping", s.peak_limited)
            } else {
                String::new()
            },
            if s.resumed > 0 {
                format!(", {} from an earlier run", s.resumed)
            } else {
                String::new()
            },
        );
    }
    eprintln!(
        "{} in {:.1} s -> {}",
        report.summary,
        start.elapsed().as_secs_f64(),
        opts.out_dir.display()
    );
    if report.summary.failed() > 0 {
        bail!(
            "{} utterance(s) failed (listed above)",
            report.summary.failed()
        );
    }
    Ok(())
}
