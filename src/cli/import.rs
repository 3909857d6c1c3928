//! `amdistill import {timit,fsdd,kaldi,labels} ...`: existing corpora -> Kaldi data directories
//! with phone times (`phones.ctm`, `phones.txt`, `phone_classes.txt`) or senone alignments
//! (`ali.txt`).
//!
//! Audio is not decoded: `wav.scp` holds absolute paths to the corpus's own files (NIST SPHERE,
//! WAV or FLAC), read later by `compute-fbank`.

use std::path::PathBuf;

use anyhow::Context;

use amdistill::corpus::import::{
    import_fsdd, import_kaldi, import_labels, import_timit, FsddSplit, Holdout, HoldoutBy,
    KaldiOptions, LabelFormat, LabelImportOptions, TimitOptions, TimitPhones, FSDD_DEV_SPEAKERS,
    FSDD_TEST_SPEAKERS,
};
use amdistill::labels::frame_labels::DEFAULT_FRAME_TOLERANCE;
use amdistill::labels::PhoneSet;

/// Import a corpus into Kaldi data directories with phone times or alignments.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub source: Source,
}

/// The corpora `import` reads.
#[derive(clap::Subcommand, Debug)]
pub enum Source {
    /// TIMIT in the LDC layout (TRAIN|TEST/DR*/SPEAKER/*.WAV + .PHN, any case) -> OUT_DIR/{train,dev,test}.
    ///
    /// train = all of TRAIN; dev = Kaldi's 50 dev speakers of TEST; test = the 24-speaker core
    /// test set. SA sentences are left out. Utterance ids: speaker_sentence (fadg0_si1279);
    /// text = the phone sequence.
    Timit(TimitArgs),
    /// Free Spoken Digit Dataset (recordings/DIGIT_SPEAKER_INDEX.wav) -> OUT_DIR/{train,dev,test}.
    ///
    /// Speaker-disjoint by default: dev = yweweler, test = theo, train = george, jackson, lucas,
    /// nicolas. Text is the digit word (zero .. nine). FSDD has no phone times.
    Fsdd(FsddArgs),
    /// A Kaldi data directory plus `ali-to-pdf` alignments (pdf-ids, text or binary ark) ->
    /// OUT_DIR (or OUT_DIR/{train,dev,test} with --holdout) and the senone table in OUT_DIR/lang.
    ///
    /// Writes the data directory restricted to the aligned utterances and OUT_DIR/ali.txt. An
    /// alignment of an utterance the directory lacks is an error; so are lengths that differ from
    /// the source's utt2num_frames (when present) by more than --tolerance frames.
    Kaldi(KaldiArgs),
    /// A directory of label files (HTS/festival .lab, Praat .TextGrid, TIMIT .PHN) -> OUT_DIR.
    ///
    /// Each label file is one utterance, named after the file; its audio (NAME.wav/.flac/.sph)
    /// is looked up in --audio-dir (mirroring the label tree, or flat). Files in a subdirectory
    /// belong to the speaker the subdirectory is named after (the MFA output layout).
    Labels(LabelsArgs),
}

/// `import timit`.
#[derive(clap::Args, Debug)]
pub struct TimitArgs {
    /// TIMIT root (the directory holding TRAIN and TEST).
    pub timit_dir: PathBuf,
    /// Output directory; gets train/, dev/ and test/.
    pub out_dir: PathBuf,
    /// Phone inventory written: 61 (original), 48 (folded, Kaldi trains on these) or 39 (scoring classes).
    #[arg(long, default_value = "48", value_parser = ["61", "48", "39"])]
    pub phones: String,
    /// Keep the SA sentences (every speaker read the same two).
    #[arg(long)]
    pub include_sa: bool,
}

/// `import fsdd`.
#[derive(clap::Args, Debug)]
pub struct FsddArgs {
    /// FSDD directory (with recordings/), or recordings/ itself.
    pub fsdd_dir: PathBuf,
    /// Output directory; gets train/, dev/ and test/.
    pub out_dir: PathBuf,
    /// Speakers of the dev split (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = FSDD_DEV_SPEAKERS.map(String::from))]
    pub dev_speakers: Vec<String>,
    /// Speakers of the test split (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = FSDD_TEST_SPEAKERS.map(String::from))]
    pub test_speakers: Vec<String>,
    /// Use FSDD's own split instead (recordings 0-4 test, the rest train; not speaker-disjoint).
    #[arg(long, conflicts_with_all = ["dev_speakers", "test_speakers"])]
    pub official_split: bool,
}

/// `import kaldi`.
#[derive(clap::Args, Debug)]
pub struct KaldiArgs {
    /// Kaldi data directory (wav.scp, utt2spk, optional text, segments, utt2num_frames).
    pub data_dir: PathBuf,
    /// Alignments as `ali-to-pdf final.mdl ARK ark,t:-` prints them (`utt-id id id ...`), or
    /// its binary archive (`ark:-`).
    pub ali: PathBuf,
    /// Output data directory.
    pub out_dir: PathBuf,
    /// Number of senones (pdfs) of the model; ids must be below it [default: largest id + 1].
    #[arg(long)]
    pub num_senones: Option<usize>,
    /// Frames an alignment may differ from utt2num_frames.
    #[arg(long, default_value_t = DEFAULT_FRAME_TOLERANCE)]
    pub tolerance: usize,
    /// Kaldi's data/lang/phones.txt, to name each senone's phone (with --phone-ali; silence
    /// from phones/silence.txt beside it).
    #[arg(long, requires = "phone_ali", value_name = "PHONES_TXT")]
    pub phones: Option<PathBuf>,
    /// Per-frame phone ids as `ali-to-phones --per-frame=true final.mdl ARK ark,t:-` prints
    /// them (or its binary archive), for the same utterances as ALI.
    #[arg(long, requires = "phones", value_name = "FILE")]
    pub phone_ali: Option<PathBuf>,
    /// Hold out this percentage each for OUT_DIR/dev and OUT_DIR/test (the rest is
    /// OUT_DIR/train); 0 writes one data directory.
    #[arg(long, default_value_t = 0.0, value_name = "PERCENT")]
    pub holdout: f64,
    /// Hold out whole speakers (speaker-disjoint test) or single utterances.
    #[arg(long, default_value = "speaker", value_name = "speaker|utterance")]
    pub holdout_by: String,
}

/// `import labels`.
#[derive(clap::Args, Debug)]
pub struct LabelsArgs {
    /// Directory of label files (searched recursively).
    pub label_dir: PathBuf,
    /// Output data directory.
    pub out_dir: PathBuf,
    /// Label format: auto (by extension), hts, textgrid or phn.
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Phone set the labels use: arpabet (also festival/flite/MFA ARPA), timit61, timit48 or timit39.
    #[arg(long, default_value = "arpabet")]
    pub phone_set: String,
    /// Where the audio is [default: LABEL_DIR].
    #[arg(long)]
    pub audio_dir: Option<PathBuf>,
    /// Read only label files whose name ends with this before the extension, and drop it to find
    /// the audio (arctic_a0009_phone.lab with --suffix _phone -> arctic_a0009.wav).
    #[arg(long)]
    pub suffix: Option<String>,
    /// Speaker of the files directly in LABEL_DIR [default: each utterance its own speaker].
    #[arg(long)]
    pub speaker: Option<String>,
    /// TextGrid tier holding the phones.
    #[arg(long, default_value = "phones")]
    pub phone_tier: String,
    /// TextGrid tier holding the words (becomes `text`).
    #[arg(long, default_value = "words")]
    pub word_tier: String,
    /// Sample rate (Hz) of .PHN sample indices.
    #[arg(long, default_value_t = 16000.0)]
    pub phn_sample_rate: f64,
}

/// Runs `amdistill import ...`.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.source {
        Source::Timit(a) => {
            let opts = TimitOptions {
                phones: a.phones.parse::<TimitPhones>()?,
                include_sa: a.include_sa,
            };
            let summary = import_timit(&a.timit_dir, &a.out_dir, &opts)
                .with_context(|| format!("importing TIMIT from {}", a.timit_dir.display()))?;
            println!("{summary}");
        }
        Source::Fsdd(a) => {
            let split = if a.official_split {
                FsddSplit::Official
            } else {
                FsddSplit::Speakers {
                    dev: a.dev_speakers,
                    test: a.test_speakers,
                }
            };
            let summary = import_fsdd(&a.fsdd_dir, &a.out_dir, &split)
                .with_context(|| format!("importing FSDD from {}", a.fsdd_dir.display()))?;
            println!("{summary}");
        }
        Source::Kaldi(a) => {
            let opts = KaldiOptions {
                num_senones: a.num_senones,
                tolerance: a.tolerance,
                phones: a.phones.zip(a.phone_ali),
                holdout: (a.holdout != 0.0)
                    .then(|| -> anyhow::Result<Holdout> {
                        Ok(Holdout {
                            percent: a.holdout,
                            by: a.holdout_by.parse::<HoldoutBy>()?,
                        })
                    })
                    .transpose()?,
            };
            let result =
                import_kaldi(&a.data_dir, &a.ali, &a.out_dir, &opts).with_context(|| {
                    format!(
                        "importing {} with {}",
                        a.data_dir.display(),
                        a.ali.display()
                    )
                })?;
            println!("{}", result.summary);
            println!("senones: {}", result.num_senones);
            match &result.frame_check {
                Some(report) => println!("{report}"),
                None => println!(
                    "frame counts not checked ({} has no utt2num_frames)",
                    a.data_dir.display()
                ),
            }
        }
        Source::Labels(a) => {
            let opts = LabelImportOptions {
                format: a.format.parse::<LabelFormat>()?,
                phone_set: PhoneSet::builtin(&a.phone_set)?,
                audio_dir: a.audio_dir,
                suffix: a.suffix,
                speaker: a.speaker,
                phone_tier: a.phone_tier,
                word_tier: a.word_tier,
                phn_sample_rate: a.phn_sample_rate,
            };
            let summary = import_labels(&a.label_dir, &a.out_dir, &opts)
                .with_context(|| format!("importing labels from {}", a.label_dir.display()))?;
            println!("{summary}");
        }
    }
    Ok(())
}
