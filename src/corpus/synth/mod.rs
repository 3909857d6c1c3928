//! A synthetic multi-voice corpus made with flite, with exact phone times.
//!
//! [`synthesize_corpus`] writes, under `OUT_DIR`:
//!
//! ```text
//! synth_config.json                  options the corpus was made with (a rerun must match)
//! train/ dev/ test/ test_unseen/     one Kaldi data directory per split:
//!     wav/<utt>.wav                  16-bit mono WAV at --sample-rate
//!     wav.scp text utt2spk spk2utt   (wav.scp holds absolute paths)
//!     phones.ctm                     flite's phones (lowercase ARPAbet, `pau` = silence)
//!     utt2synth.tsv                  per-utterance synthesis and augmentation parameters
//!     synth/<utt>.json               per-utterance record; an utterance with one is complete
//! untranscribed/                     with --untranscribed-hours: the seen voices' audio for
//!                                    teacher-student learning, without text or phones.ctm
//! ```
//!
//! Sentences ([`text`]) are disjoint between splits; `test_unseen` is spoken by a voice held
//! out of the other splits. Every utterance draws its voice, speaking rate, pitch, gain, noise
//! (white, pink or babble of other utterances, at a random SNR) and room reverberation from a
//! ChaCha stream keyed by (seed, split, utterance index), so a rerun with the same options gives
//! identical files and a killed run resumes where it stopped.
//!
//! Audio and phone times agree: the waveform is padded or cut to the last phone's end (flite's
//! kal16 stops ~0.12 s before its final pause ends; the other voices end within 5 ms of it),
//! and reverberation keeps the direct path at lag 0 and the length, so times stay valid.

pub mod augment;
pub mod flite;
pub mod text;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::corpus::DataDir;
use crate::error::{Error, Result};
use crate::labels::{write_ctm, PhoneSegment};
use crate::progress::BatchSummary;

use augment::NoiseKind;
use flite::{FliteRequest, Voice};
use text::{Sentence, SentenceGenerator, WordList};

/// Utterances in the babble pool (clean, extra sentences, seen voices).
pub const BABBLE_POOL_SIZE: usize = 24;
/// Fewest utterances in any split, however few hours are asked for.
pub const MIN_UTTS_PER_SPLIT: usize = 3;
/// Range of flite's `duration_stretch` (1 = the voice's own rate).
pub const STRETCH_RANGE: (f64, f64) = (0.85, 1.25);
/// Range of the gain in dB applied before the peak check.
pub const GAIN_DB_RANGE: (f64, f64) = (-6.0, 3.0);
/// Range of the SNR in dB of the additive noise.
pub const SNR_DB_RANGE: (f64, f64) = (5.0, 30.0);
/// Range of the reverberation time RT60 in seconds.
pub const RT60_RANGE: (f64, f64) = (0.15, 0.8);
/// Range of the direct-to-reverberant energy ratio in dB.
pub const DRR_DB_RANGE: (f64, f64) = (0.0, 12.0);
/// Share of utterances with room reverberation.
pub const REVERB_FRACTION: f64 = 0.6;
/// Peak ceiling: full scale of 16-bit PCM.
pub const PEAK_CEILING: f32 = 32767.0 / 32768.0;

/// A split of the corpus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    Train,
    Dev,
    Test,
    /// Spoken by the held-out voice only.
    TestUnseen,
    /// Audio of the seen voices without transcripts or phone times (only wav.scp, utt2spk,
    /// spk2utt): the teacher labels it for the KD student, as a voice assistant's
    /// untranscribed logs would be. Made last, so it never changes the other splits.
    Untranscribed,
}

impl Split {
    /// Every transcribed split, in the order they are made ([`Split::Untranscribed`] follows
    /// when asked for).
    pub const ALL: [Split; 4] = [Split::Train, Split::Dev, Split::Test, Split::TestUnseen];

    /// Directory name under `OUT_DIR`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
            Split::TestUnseen => "test_unseen",
            Split::Untranscribed => "untranscribed",
        }
    }

    /// ChaCha stream of the split's utterances (stream 0 is the text, 5 the babble pool).
    fn stream(self) -> u64 {
        match self {
            Split::Train => 1,
            Split::Dev => 2,
            Split::Test => 3,
            Split::TestUnseen => 4,
            Split::Untranscribed => 6,
        }
    }
}

const TEXT_STREAM: u64 = 0;
const POOL_STREAM: u64 = 5;

/// Options of [`synthesize_corpus`]; everything but `jobs` is recorded in
/// `synth_config.json` and must match on a rerun into the same directory.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    pub out_dir: PathBuf,
    /// Hours of train audio (at least; the last round may go a little over).
    pub train_hours: f64,
    /// dev, test and test_unseen each get this fraction of `train_hours`.
    pub eval_fraction: f64,
    /// Hours of the untranscribed split (0: none).
    pub untranscribed_hours: f64,
    pub seed: u64,
    /// Voices of train, dev and test (flite names).
    pub voices: Vec<String>,
    /// Voice of test_unseen, absent from the other splits.
    pub unseen_voice: String,
    /// Output sample rate in Hz (flite's voices are 16 kHz; others are resampled).
    pub sample_rate: u32,
    /// Word list for the word-list sentences; `None` = the system's (see [`WordList::system`]).
    pub word_list: Option<PathBuf>,
    /// Parallel flite processes; `None` = rayon's current pool (all cores by default).
    pub jobs: Option<usize>,
}

impl SynthOptions {
    /// Default options for `out_dir`: 2 hours of train, seed 0, voices kal16, awb and slt seen,
    /// rms unseen, 16 kHz.
    pub fn new(out_dir: impl Into<PathBuf>) -> Self {
        SynthOptions {
            out_dir: out_dir.into(),
            train_hours: 2.0,
            eval_fraction: 0.1,
            untranscribed_hours: 0.0,
            seed: 0,
            voices: vec!["kal16".into(), "awb".into(), "slt".into()],
            unseen_voice: "rms".into(),
            sample_rate: 16000,
            word_list: None,
            jobs: None,
        }
    }

    fn validate(&self) -> Result<(Vec<Voice>, Voice)> {
        if !(self.train_hours.is_finite() && self.train_hours > 0.0 && self.train_hours <= 10_000.0)
        {
            return Err(Error::config(format!(
                "--hours must be in (0, 10000], got {}",
                self.train_hours
            )));
        }
        if !(self.eval_fraction.is_finite()
            && self.eval_fraction > 0.0
            && self.eval_fraction <= 1.0)
        {
            return Err(Error::config(format!(
                "--eval-fraction must be in (0, 1], got {}",
                self.eval_fraction
            )));
        }
        if !(self.untranscribed_hours.is_finite()
            && (0.0..=10_000.0).contains(&self.untranscribed_hours))
        {
            return Err(Error::config(format!(
                "--untranscribed-hours must be in [0, 10000], got {}",
                self.untranscribed_hours
            )));
        }
        if !(8000..=48000).contains(&self.sample_rate) {
            return Err(Error::config(format!(
                "--sample-rate must be 8000 to 48000 Hz, got {}",
                self.sample_rate
            )));
        }
        if self.jobs == Some(0) {
            return Err(Error::config("--jobs must be at least 1"));
        }
        if self.voices.is_empty() {
            return Err(Error::config("--voices is empty"));
        }
        let mut seen = Vec::new();
        for v in &self.voices {
            let voice = Voice::by_name(v)?;
            if seen.contains(&voice) {
                return Err(Error::config(format!(
                    "voice '{v}' given twice in --voices"
                )));
            }
            seen.push(voice);
        }
        let unseen = Voice::by_name(&self.unseen_voice)?;
        if seen.contains(&unseen) {
            return Err(Error::config(format!(
                "the unseen voice '{}' is also in --voices; test_unseen needs a voice the other splits lack",
                unseen.name
            )));
        }
        Ok((seen, unseen))
    }
}

/// What `synth_config.json` records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SynthConfig {
    format: u32,
    seed: u64,
    /// Numbers as Rust prints them (shortest round-trip form), compared as text.
    train_hours: String,
    eval_fraction: String,
    /// Empty when there is no untranscribed split (and absent from older files). It may
    /// change between runs into one directory: that split comes last, so the others stay.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    untranscribed_hours: String,
    voices: Vec<String>,
    unseen_voice: String,
    sample_rate: u32,
    word_list: String,
    word_list_words: usize,
    flite: String,
}

/// Synthesis and augmentation parameters of one utterance (a row of `utt2synth.tsv`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UttParams {
    pub voice: String,
    /// flite's `duration_stretch` (3 decimals).
    pub duration_stretch: f64,
    /// flite's `int_f0_target_mean` in Hz (1 decimal), when the voice honours it.
    pub f0_mean: Option<f64>,
    /// Gain in dB drawn for the utterance (before any peak limiting).
    pub gain_db: f64,
    pub noise: NoiseKind,
    /// SNR in dB of the added noise (none when clean).
    pub snr_db: Option<f64>,
    /// Number of talkers in babble noise.
    pub babble_talkers: Option<u32>,
    /// Reverberation time in seconds, when reverberated.
    pub rt60_s: Option<f64>,
    /// Direct-to-reverberant ratio in dB, when reverberated.
    pub drr_db: Option<f64>,
}

/// One phone in a record: name and end time in milliseconds (flite prints milliseconds, so
/// this is exact and survives the JSON round trip bit for bit).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordPhone {
    pub phone: String,
    pub end_ms: u64,
}

/// Everything known about a finished utterance (`synth/<utt>.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UttRecord {
    pub utt: String,
    pub speaker: String,
    pub text: String,
    /// Sentence kind (`timer`, `weather`, ..., `words`).
    pub kind: String,
    pub params: UttParams,
    /// Factor applied to keep the peak within full scale (1 = none needed).
    pub peak_scale: f32,
    /// Length of the WAV in samples at the corpus sample rate.
    pub num_samples: u64,
    pub phones: Vec<RecordPhone>,
}

impl UttRecord {
    /// Phone segments in seconds, contiguous from 0.
    pub fn phone_segments(&self) -> Vec<PhoneSegment> {
        let mut start = 0u64;
        self.phones
            .iter()
            .map(|p| {
                let seg = PhoneSegment {
                    phone: p.phone.clone(),
                    start: start as f64 / 1000.0,
                    end: p.end_ms as f64 / 1000.0,
                };
                start = p.end_ms;
                seg
            })
            .collect()
    }
}

/// Per-split outcome of [`synthesize_corpus`].
#[derive(Debug, Clone, PartialEq)]
pub struct SplitReport {
    pub split: Split,
    pub utterances: usize,
    /// Total audio in seconds.
    pub seconds: f64,
    /// Utterances scaled down to avoid clipping.
    pub peak_limited: usize,
    /// Utterances taken from a previous run.
    pub resumed: usize,
}

/// Outcome of [`synthesize_corpus`].
#[derive(Debug, Clone, PartialEq)]
pub struct SynthReport {
    pub splits: Vec<SplitReport>,
    /// Utterances written out of those attempted (all splits).
    pub summary: BatchSummary,
    /// One line per failed utterance.
    pub failures: Vec<String>,
}

/// Shared, read-only state of a run.
struct Ctx {
    out_dir: PathBuf,
    seed: u64,
    sample_rate: u32,
    seen: Vec<Voice>,
    unseen: Voice,
    /// Clean babble sources at `sample_rate`.
    pool: Vec<Vec<f32>>,
}

/// Makes the corpus described in the module documentation. Failing utterances are reported
/// (by name, in [`SynthReport::failures`]) and left out; the others go on. `on_event` receives
/// progress: `Some(line)` for a failure, `None` after every finished utterance, and the
/// number of planned utterances grows through `on_planned`.
pub fn synthesize_corpus(
    opts: &SynthOptions,
    on_planned: &(dyn Fn(usize) + Sync),
    on_event: &(dyn Fn(Option<&str>) + Sync),
) -> Result<SynthReport> {
    match opts.jobs {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| Error::config(format!("--jobs {n}: {e}")))?
            .install(|| run(opts, on_planned, on_event)),
        None => run(opts, on_planned, on_event),
    }
}

fn run(
    opts: &SynthOptions,
    on_planned: &(dyn Fn(usize) + Sync),
    on_event: &(dyn Fn(Option<&str>) + Sync),
) -> Result<SynthReport> {
    let (seen, unseen) = opts.validate()?;
    let flite_info = flite::check_installed()?;
    for v in opts
        .voices
        .iter()
        .chain(std::iter::once(&opts.unseen_voice))
    {
        if !flite_info.voices.contains(v) {
            return Err(Error::config(format!(
                "this flite has no voice '{v}' (it has: {})",
                flite_info.voices.join(", ")
            )));
        }
    }
    let words = WordList::open(opts.word_list.as_ref())?;
    let generator = SentenceGenerator::new(&words)?;

    let out_dir = &opts.out_dir;
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let out_dir = out_dir.canonicalize().map_err(|e| Error::io(out_dir, e))?;
    remove_stale_temporaries(&out_dir)?; // the babble pool's flite output
    check_config(
        &out_dir,
        &SynthConfig {
            format: 1,
            seed: opts.seed,
            train_hours: opts.train_hours.to_string(),
            eval_fraction: opts.eval_fraction.to_string(),
            untranscribed_hours: if opts.untranscribed_hours > 0.0 {
                opts.untranscribed_hours.to_string()
            } else {
                String::new()
            },
            voices: opts.voices.clone(),
            unseen_voice: opts.unseen_voice.clone(),
            sample_rate: opts.sample_rate,
            word_list: words.source.clone(),
            word_list_words: words.words.len(),
            flite: flite_info.version,
        },
    )?;

    // One sentence stream for the whole corpus, so splits (and the babble pool) never share
    // a sentence.
    let mut text_rng = stream_rng(opts.seed, TEXT_STREAM, 0);
    let mut used: HashSet<String> = HashSet::new();

    let mut ctx = Ctx {
        out_dir: out_dir.clone(),
        seed: opts.seed,
        sample_rate: opts.sample_rate,
        seen,
        unseen,
        pool: Vec::new(),
    };
    let pool_sentences: Vec<Sentence> = (0..BABBLE_POOL_SIZE)
        .map(|_| generator.unique_sentence(&mut text_rng, &mut used))
        .collect::<Result<_>>()?;
    ctx.pool = make_babble_pool(&ctx, &pool_sentences)?;

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    let mut attempted = 0usize;
    let untranscribed = (opts.untranscribed_hours > 0.0).then_some(Split::Untranscribed);
    for split in Split::ALL.into_iter().chain(untranscribed) {
        let hours = match split {
            Split::Train => opts.train_hours,
            Split::Untranscribed => opts.untranscribed_hours,
            _ => opts.train_hours * opts.eval_fraction,
        };
        let split_dir = out_dir.join(split.name());
        for sub in ["wav", "synth"] {
            let d = split_dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
            remove_stale_temporaries(&d)?;
        }
        let target_s = hours * 3600.0;
        let mut records: Vec<UttRecord> = Vec::new();
        let mut total_s = 0.0;
        let mut next_index = 0u32;
        let mut resumed = 0usize;
        // Rounds: plan sentences whose estimated duration covers what is missing, synthesise
        // them in parallel, and repeat until the real duration reaches the target.
        loop {
            let mut round: Vec<(u32, Sentence)> = Vec::new();
            let mut estimate = 0.0;
            while estimate < target_s - total_s || records.len() + round.len() < MIN_UTTS_PER_SPLIT
            {
                let s = generator.unique_sentence(&mut text_rng, &mut used)?;
                estimate += estimated_seconds(&s);
                round.push((next_index, s));
                next_index += 1;
            }
            on_planned(round.len());
            attempted += round.len();
            let results: Vec<Result<(UttRecord, bool)>> = round
                .par_iter()
                .map(|(index, sentence)| {
                    let r = make_utterance(&ctx, split, *index, sentence);
                    match &r {
                        Ok(_) => on_event(None),
                        Err(e) => on_event(Some(&e.to_string())),
                    }
                    r
                })
                .collect();
            let mut round_ok = 0;
            for r in results {
                match r {
                    Ok((rec, was_resumed)) => {
                        total_s += rec.num_samples as f64 / opts.sample_rate as f64;
                        resumed += was_resumed as usize;
                        records.push(rec);
                        round_ok += 1;
                    }
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if round_ok == 0 {
                return Err(Error::config(format!(
                    "{}: every utterance of a round of {} failed; first error: {}",
                    split.name(),
                    round.len(),
                    failures.last().map(String::as_str).unwrap_or("?")
                )));
            }
            if total_s >= target_s && records.len() >= MIN_UTTS_PER_SPLIT {
                break;
            }
        }
        let transcribed = split != Split::Untranscribed;
        write_split(&split_dir, &records, opts.sample_rate, transcribed)?;
        reports.push(SplitReport {
            split,
            utterances: records.len(),
            seconds: total_s,
            peak_limited: records.iter().filter(|r| r.peak_scale < 1.0).count(),
            resumed,
        });
    }
    let done = reports.iter().map(|r| r.utterances).sum();
    Ok(SynthReport {
        splits: reports,
        summary: BatchSummary {
            done,
            total: attempted,
        },
        failures,
    })
}

/// The ChaCha stream for (seed, stream, index): the seed picks the key, stream and index the
/// ChaCha stream, so every utterance has its own reproducible randomness.
fn stream_rng(seed: u64, stream: u64, index: u32) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((stream << 32) | index as u64);
    rng
}

/// Rough duration of a sentence as flite says it, for planning rounds (measured on the four
/// voices over the stretch range: ~0.06 s per character plus the pauses around it; a little
/// high on average, so rounds rarely overshoot the target).
fn estimated_seconds(s: &Sentence) -> f64 {
    0.4 + 0.06 * s.text.len() as f64
}

/// Writes `synth_config.json`, or checks it against `config` when present.
fn check_config(out_dir: &Path, config: &SynthConfig) -> Result<()> {
    let path = out_dir.join("synth_config.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let old: SynthConfig = serde_json::from_str(&text)
            .map_err(|e| Error::parse(&path, e.line(), e.to_string()))?;
        let same_but_untranscribed = SynthConfig {
            untranscribed_hours: config.untranscribed_hours.clone(),
            ..old.clone()
        } == *config;
        if !same_but_untranscribed {
            return Err(Error::Mismatch(format!(
                "{} was made with other options ({}); use another OUT_DIR or delete this one \
                 (now: {})",
                path.display(),
                serde_json::to_string(&old).unwrap_or_default(),
                serde_json::to_string(config).unwrap_or_default()
            )));
        }
        if old == *config {
            return Ok(());
        }
    }
    let json = serde_json::to_string_pretty(config).map_err(|e| Error::config(e.to_string()))?;
    write_atomic(&path, |w| writeln!(w, "{json}"))
}

/// Removes the temporaries a killed run left in `dir`: `NAME.tmp.PID` (atomic writes) and
/// `UTT.flite.tmp.PID.wav` (flite's output). Nothing else is touched.
fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_temporary_name(&name) && entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}

fn is_temporary_name(name: &str) -> bool {
    let pid_suffix = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = name.strip_suffix(".wav") {
        if let Some((_, pid)) = rest.rsplit_once(".flite.tmp.") {
            return pid_suffix(pid);
        }
    }
    matches!(name.rsplit_once(".tmp."), Some((stem, pid)) if !stem.is_empty() && pid_suffix(pid))
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// Draws an utterance's parameters from its stream; the RNG goes on to draw its noise and
/// room response.
fn draw_params(ctx: &Ctx, split: Split, rng: &mut ChaCha8Rng) -> (Voice, UttParams) {
    let voice = match split {
        Split::TestUnseen => ctx.unseen,
        _ => ctx.seen[rng.gen_range(0..ctx.seen.len())],
    };
    let duration_stretch = round_to(rng.gen_range(STRETCH_RANGE.0..=STRETCH_RANGE.1), 3);
    let f0_mean = voice
        .f0_range
        .map(|(lo, hi)| round_to(rng.gen_range(lo as f64..=hi as f64), 1));
    let gain_db = round_to(rng.gen_range(GAIN_DB_RANGE.0..=GAIN_DB_RANGE.1), 1);
    let noise = match rng.gen_range(0..100) {
        0..=9 => NoiseKind::Clean,
        10..=34 => NoiseKind::White,
        35..=64 => NoiseKind::Pink,
        _ => NoiseKind::Babble,
    };
    let snr_db = (noise != NoiseKind::Clean)
        .then(|| round_to(rng.gen_range(SNR_DB_RANGE.0..=SNR_DB_RANGE.1), 1));
    let babble_talkers = (noise == NoiseKind::Babble).then(|| rng.gen_range(3..=6));
    let (rt60_s, drr_db) = if rng.gen_bool(REVERB_FRACTION) {
        (
            Some(round_to(rng.gen_range(RT60_RANGE.0..=RT60_RANGE.1), 2)),
            Some(round_to(rng.gen_range(DRR_DB_RANGE.0..=DRR_DB_RANGE.1), 1)),
        )
    } else {
        (None, None)
    };
    let params = UttParams {
        voice: voice.name.to_string(),
        duration_stretch,
        f0_mean,
        gain_db,
        noise,
        snr_db,
        babble_talkers,
        rt60_s,
        drr_db,
    };
    (voice, params)
}

/// Speaker id: the voice, plus a pitch third (`lo`, `mid`, `hi`) where pitch varies.
fn speaker_id(voice: Voice, f0_mean: Option<f64>) -> String {
    match (voice.f0_range, f0_mean) {
        (Some((lo, hi)), Some(f0)) => {
            let t = ((f0 - lo as f64) / (hi as f64 - lo as f64)).clamp(0.0, 1.0);
            let bucket = if t < 1.0 / 3.0 {
                "lo"
            } else if t < 2.0 / 3.0 {
                "mid"
            } else {
                "hi"
            };
            format!("{}-{bucket}", voice.name)
        }
        _ => voice.name.to_string(),
    }
}

/// Runs flite and brings its output to the corpus rate and to the length of its phones.
fn synth_clean(
    ctx: &Ctx,
    utt: &str,
    voice: Voice,
    params: &UttParams,
    sentence: &Sentence,
    tmp_dir: &Path,
) -> Result<(Vec<f32>, Vec<RecordPhone>)> {
    let req = FliteRequest {
        voice: voice.name,
        text: sentence.flite_text(),
        duration_stretch: params.duration_stretch as f32,
        f0_mean: params.f0_mean.map(|f| f as f32),
    };
    let out = flite::synthesize(utt, &req, &flite::tmp_wav_path(tmp_dir, utt))?;
    let mut samples = augment::resample(&out.samples, out.sample_rate, ctx.sample_rate)?;
    let phones: Vec<RecordPhone> = out
        .phones
        .iter()
        .map(|p| RecordPhone {
            phone: p.phone.clone(),
            end_ms: (p.end * 1000.0).round() as u64,
        })
        .collect();
    let end_ms = phones.last().map(|p| p.end_ms).unwrap_or(0);
    if end_ms == 0 {
        return Err(Error::utterance(
            utt,
            "flite produced no audio (last phone ends at 0 s)",
        ));
    }
    // The phones are the truth about timing: pad (kal16's clipped final pause) or cut the
    // waveform to the last phone's end.
    let n = ((end_ms * ctx.sample_rate as u64 + 500) / 1000) as usize;
    augment::fit_length(&mut samples, n);
    Ok((samples, phones))
}

/// Synthesises the babble pool (clean, seen voices) in parallel.
fn make_babble_pool(ctx: &Ctx, sentences: &[Sentence]) -> Result<Vec<Vec<f32>>> {
    sentences
        .par_iter()
        .enumerate()
        .map(|(i, s)| {
            let mut rng = stream_rng(ctx.seed, POOL_STREAM, i as u32);
            let (voice, params) = draw_params(ctx, Split::Train, &mut rng);
            let utt = format!("babble-{i:02}");
            synth_clean(ctx, &utt, voice, &params, s, &ctx.out_dir)
                .map(|(samples, _)| samples)
                .map_err(|e| Error::config(format!("babble pool: {e}")))
        })
        .collect()
}

/// Makes one utterance (or loads its record from a previous run); returns the record and
/// whether it was resumed.
fn make_utterance(
    ctx: &Ctx,
    split: Split,
    index: u32,
    sentence: &Sentence,
) -> Result<(UttRecord, bool)> {
    let mut rng = stream_rng(ctx.seed, split.stream(), index);
    let (voice, params) = draw_params(ctx, split, &mut rng);
    let speaker = speaker_id(voice, params.f0_mean);
    // Speaker prefix keeps utt2spk and spk2utt in the same sorted order (Kaldi's rule).
    let utt = format!("{speaker}-{}-{index:05}", split.name());
    let split_dir = ctx.out_dir.join(split.name());
    let wav_path = split_dir.join("wav").join(format!("{utt}.wav"));
    let rec_path = split_dir.join("synth").join(format!("{utt}.json"));

    if rec_path.is_file() && wav_path.is_file() {
        let text = std::fs::read_to_string(&rec_path).map_err(|e| Error::io(&rec_path, e))?;
        let rec: UttRecord = serde_json::from_str(&text)
            .map_err(|e| Error::parse(&rec_path, e.line(), e.to_string()))?;
        if rec.text != sentence.text || !same_params(&rec.params, &params) {
            return Err(Error::Mismatch(format!(
                "{}: record from an earlier run does not match this run's plan; delete {} and rerun",
                rec_path.display(),
                ctx.out_dir.display()
            )));
        }
        return Ok((rec, true));
    }

    let (mut x, phones) = synth_clean(ctx, &utt, voice, &params, sentence, &split_dir.join("wav"))?;
    if let (Some(rt60), Some(drr)) = (params.rt60_s, params.drr_db) {
        let h = augment::room_impulse_response(rt60, drr, ctx.sample_rate, &mut rng);
        x = augment::convolve_keep_length(&x, &h);
    }
    if let Some(snr) = params.snr_db {
        let noise = match params.noise {
            NoiseKind::White => augment::white_noise(x.len(), &mut rng),
            NoiseKind::Pink => augment::pink_noise(x.len(), &mut rng),
            NoiseKind::Babble => augment::babble(
                x.len(),
                &ctx.pool,
                params.babble_talkers.unwrap_or(4) as usize,
                &mut rng,
            ),
            NoiseKind::Clean => vec![0.0; x.len()],
        };
        augment::add_at_snr(&mut x, &noise, snr)?;
    }
    let g = augment::db_to_amplitude(params.gain_db) as f32;
    x.iter_mut().for_each(|v| *v *= g);
    let peak_scale = augment::limit_peak(&mut x, PEAK_CEILING);
    write_wav(&wav_path, &augment::to_i16(&x), ctx.sample_rate)?;

    let rec = UttRecord {
        utt,
        speaker,
        text: sentence.text.clone(),
        kind: sentence.kind.name().to_string(),
        params,
        peak_scale,
        num_samples: x.len() as u64,
        phones,
    };
    let json = serde_json::to_string_pretty(&rec).map_err(|e| Error::utterance(&rec.utt, e))?;
    // Written after the WAV: a record means the utterance is complete.
    write_atomic(&rec_path, |w| writeln!(w, "{json}"))?;
    Ok((rec, false))
}

/// Whether a record's parameters are this run's (floats compared to 1e-9: they went through
/// JSON).
fn same_params(a: &UttParams, b: &UttParams) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-9 * (1.0 + x.abs());
    let close_opt = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => close(x, y),
        (None, None) => true,
        _ => false,
    };
    a.voice == b.voice
        && a.noise == b.noise
        && a.babble_talkers == b.babble_talkers
        && close(a.duration_stretch, b.duration_stretch)
        && close(a.gain_db, b.gain_db)
        && close_opt(a.f0_mean, b.f0_mean)
        && close_opt(a.snr_db, b.snr_db)
        && close_opt(a.rt60_s, b.rt60_s)
        && close_opt(a.drr_db, b.drr_db)
}

/// Writes a 16-bit mono WAV atomically.
fn write_wav(path: &Path, samples: &[i16], sample_rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::with_capacity(44 + 2 * samples.len()));
    {
        let mut w = hound::WavWriter::new(&mut cursor, spec)
            .map_err(|e| Error::format(path, e.to_string()))?;
        let mut w16 = w.get_i16_writer(samples.len() as u32);
        for &s in samples {
            w16.write_sample(s);
        }
        w16.flush()
            .map_err(|e| Error::format(path, e.to_string()))?;
        w.finalize()
            .map_err(|e| Error::format(path, e.to_string()))?;
    }
    let bytes = cursor.into_inner();
    write_atomic(path, |f| f.write_all(&bytes))
}

/// Writes a split's data directory, `phones.ctm` (when `transcribed`; else no `text` either)
/// and `utt2synth.tsv` from its records.
fn write_split(
    dir: &Path,
    records: &[UttRecord],
    sample_rate: u32,
    transcribed: bool,
) -> Result<()> {
    let mut data = DataDir {
        text: transcribed.then(BTreeMap::new),
        ..Default::default()
    };
    let mut ctm = BTreeMap::new();
    for r in records {
        let wav = dir.join("wav").join(format!("{}.wav", r.utt));
        data.wav_scp
            .insert(r.utt.clone(), wav.to_string_lossy().into_owned());
        data.utt2spk.insert(r.utt.clone(), r.speaker.clone());
        if let Some(text) = data.text.as_mut() {
            text.insert(r.utt.clone(), r.text.clone());
        }
        ctm.insert(r.utt.clone(), r.phone_segments());
    }
    data.write(dir)?;
    if transcribed {
        write_ctm(dir.join("phones.ctm"), &ctm)?;
    }
    let mut sorted: Vec<&UttRecord> = records.iter().collect();
    sorted.sort_by(|a, b| a.utt.cmp(&b.utt));
    write_atomic(dir.join("utt2synth.tsv"), |w| {
        writeln!(w, "utt\tspeaker\tvoice\tkind\tseconds\tduration_stretch\tf0_mean\tgain_db\tpeak_scale\tnoise\tsnr_db\tbabble_talkers\trt60_s\tdrr_db")?;
        let opt = |v: Option<f64>, d: usize| {
            v.map(|x| format!("{x:.d$}"))
                .unwrap_or_else(|| "-".to_string())
        };
        for r in sorted {
            let p = &r.params;
            writeln!(
                w,
                "{}\t{}\t{}\t{}\t{:.3}\t{:.3}\t{}\t{:.1}\t{:.4}\t{}\t{}\t{}\t{}\t{}",
                r.utt,
                r.speaker,
                p.voice,
                r.kind,
                r.num_samples as f64 / sample_rate as f64,
                p.duration_stretch,
                opt(p.f0_mean, 1),
                p.gain_db,
                r.peak_scale,
                p.noise.name(),
                opt(p.snr_db, 1),
                p.babble_talkers
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".to_string()),
                opt(p.rt60_s, 2),
                opt(p.drr_db, 1),
            )?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporaries_are_recognised_narrowly() {
        for n in [
            "a.wav.tmp.123",
            "synth_config.json.tmp.9",
            "babble-03.flite.tmp.77.wav",
        ] {
            assert!(is_temporary_name(n), "{n}");
        }
        for n in [
            "a.wav",
            "notes.tmp.txt",
            "x.tmp.",
            "x.flite.tmp.abc.wav",
            ".tmp.12",
        ] {
            assert!(!is_temporary_name(n), "{n}");
        }
    }

    #[test]
    fn speakers_are_voice_and_pitch_third() {
        let slt = Voice::by_name("slt").unwrap();
        assert_eq!(speaker_id(slt, Some(151.0)), "slt-lo");
        assert_eq!(speaker_id(slt, Some(185.0)), "slt-mid");
        assert_eq!(speaker_id(slt, Some(220.0)), "slt-hi");
        assert_eq!(speaker_id(Voice::by_name("rms").unwrap(), None), "rms");
    }
}
