//! Corpus importers: existing corpora -> Kaldi data directories plus phone times.
//!
//! Every importer writes, per split, `wav.scp`, `utt2spk`, `spk2utt`, `text` (with
//! [`DataDir::write`]) and, where the corpus has phone times, `phones.ctm` with the phone set it
//! uses (`phones.txt`, `phone_classes.txt`). Audio is not decoded here: `wav.scp` holds absolute
//! paths and `audio` reads them later (TIMIT's audio headers are only probed, for the sample
//! rate that `.PHN` times count in). CTM times are rounded to whole milliseconds first, so that
//! a written CTM reads back without rounding overlaps.
//!
//! - [`import_timit`]: the LDC layout, `TRAIN|TEST/DR*/SPEAKER/SENTENCE.{WAV,PHN}` (any case),
//!   SA sentences left out, splits `train` (all of TRAIN), `dev` (Kaldi's 50 dev speakers of
//!   TEST) and `test` (the 24-speaker core test set).
//! - [`import_fsdd`]: the Free Spoken Digit Dataset, `recordings/DIGIT_SPEAKER_INDEX.wav`,
//!   transcripts `zero` .. `nine`, speaker-disjoint splits (no phone times exist).
//! - [`import_kaldi`]: a Kaldi data directory plus `ali-to-pdf` alignments (text or binary),
//!   optionally its phones for the senone table, optionally split into train/dev/test.
//! - [`import_labels`]: a directory of HTS / festival `.lab`, Praat `.TextGrid` or TIMIT `.PHN`
//!   label files next to (or beside a tree of) audio files.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::corpus::table::read_map;
use crate::corpus::DataDir;
use crate::error::{Error, Result};
use crate::labels::ctm::{write_ctm, PhoneSegment};
use crate::labels::frame_labels::{check_frame_counts, FrameCountReport, DEFAULT_FRAME_TOLERANCE};
use crate::labels::kaldi_ali::{max_id, read_alignments, write_alignments};
use crate::labels::kaldi_lang::{senone_table, unknown_phone_set, KaldiPhones, PhoneAlignments};
use crate::labels::phones::{fold_61_to_48, fold_to_39, PhoneSet};
use crate::labels::tree::write_senone_table;
use crate::labels::{hts, textgrid, timit, PhoneLabel};

/// File name of the phone times in a data directory.
pub const PHONES_CTM: &str = "phones.ctm";
/// File name of per-frame senone ids in a data directory.
pub const ALI_TXT: &str = "ali.txt";

/// TIMIT's 24-speaker core test set (Kaldi `egs/timit/s5/conf/test_spk.list`).
pub const TIMIT_CORE_TEST_SPEAKERS: [&str; 24] = [
    "mdab0", "mwbt0", "felc0", "mtas1", "mwew0", "fpas0", "mjmp0", "mlnt0", "fpkt0", "mlll0",
    "mtls0", "fjlm0", "mbpm0", "mklt0", "fnlp0", "mcmj0", "mjdh0", "fmgd0", "mgrt0", "mnjm0",
    "fdhc0", "mjln0", "mpam0", "fmld0",
];

/// TIMIT's 50-speaker development set (Kaldi `egs/timit/s5/conf/dev_spk.list`).
pub const TIMIT_DEV_SPEAKERS: [&str; 50] = [
    "faks0", "fdac1", "fjem0", "mgwt0", "mjar0", "mmdb1", "mmdm2", "mpdf0", "fcmh0", "fkms0",
    "mbdg0", "mbwm0", "mcsh0", "fadg0", "fdms0", "fedw0", "mgjf0", "mglb0", "mrtk0", "mtaa0",
    "mtdt0", "mthc0", "mwjg0", "fnmr0", "frew0", "fsem0", "mbns0", "mmjr0", "mdls0", "mdlf0",
    "mdvc0", "mers0", "fmah0", "fdrw0", "mrcs0", "mrjm4", "fcal1", "mmwh0", "fjsj0", "majc0",
    "mjsw0", "mreb0", "fgjd0", "fjmg0", "mroa0", "mteb0", "mjfc0", "mrjr0", "fmml0", "mrws1",
];

/// FSDD speakers of the default `dev` split (German accent; `lucas` keeps one in train).
pub const FSDD_DEV_SPEAKERS: [&str; 1] = ["yweweler"];
/// FSDD speakers of the default `test` split (US accent; `jackson` keeps one in train). The
/// other four speakers (george, jackson, lucas, nicolas) are `train`.
pub const FSDD_TEST_SPEAKERS: [&str; 1] = ["theo"];

const DIGIT_WORDS: [&str; 10] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
];

/// What one written split holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitSummary {
    pub name: String,
    pub dir: PathBuf,
    pub utterances: usize,
    pub speakers: usize,
    /// Phone segments written to `phones.ctm` (0 when the corpus has no phone times).
    pub phone_segments: usize,
}

/// What an importer wrote, plus notes worth telling the user (missing speakers, dropped
/// utterances).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImportSummary {
    pub splits: Vec<SplitSummary>,
    pub notes: Vec<String>,
}

impl std::fmt::Display for ImportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.splits.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(
                f,
                "{}: {} utterance{}, {} speaker{}",
                s.name,
                s.utterances,
                if s.utterances == 1 { "" } else { "s" },
                s.speakers,
                if s.speakers == 1 { "" } else { "s" }
            )?;
            if s.phone_segments > 0 {
                write!(f, ", {} phone segments", s.phone_segments)?;
            }
            write!(f, " -> {}", s.dir.display())?;
        }
        for n in &self.notes {
            write!(f, "\nnote: {n}")?;
        }
        Ok(())
    }
}

/// One utterance gathered by an importer.
struct Utt {
    speaker: String,
    audio: PathBuf,
    text: Option<String>,
    phones: Option<Vec<PhoneSegment>>,
}

/// Writes one split directory: the data directory, and `phones.ctm` + the phone set when the
/// utterances have phone times.
fn write_split(
    dir: &Path,
    name: &str,
    utts: &BTreeMap<String, Utt>,
    set: Option<&PhoneSet>,
) -> Result<SplitSummary> {
    let mut data = DataDir::default();
    let mut text = BTreeMap::new();
    let mut ctm = BTreeMap::new();
    for (id, u) in utts {
        data.wav_scp
            .insert(id.clone(), u.audio.to_string_lossy().into_owned());
        data.utt2spk.insert(id.clone(), u.speaker.clone());
        if let Some(t) = &u.text {
            text.insert(id.clone(), t.clone());
        }
        if let Some(p) = &u.phones {
            ctm.insert(id.clone(), p.clone());
        }
    }
    // A partial `text` would fail Kaldi's validation: write it only when every utterance has one.
    if text.len() == utts.len() {
        data.text = Some(text);
    }
    data.write(dir)?;
    let phone_segments = ctm.values().map(Vec::len).sum();
    if !ctm.is_empty() {
        write_ctm(dir.join(PHONES_CTM), &ctm)?;
        if let Some(set) = set {
            set.save(dir)?;
        }
    }
    Ok(SplitSummary {
        name: name.to_string(),
        dir: dir.to_path_buf(),
        utterances: utts.len(),
        speakers: data.spk2utt().len(),
        phone_segments,
    })
}

/// Rounds segment times to whole milliseconds (the CTM's precision) so that start + duration
/// of one segment is exactly the start of the next when read back.
fn quantise_ms(segs: &mut [PhoneSegment]) {
    for s in segs {
        s.start = (s.start * 1000.0).round() / 1000.0;
        s.end = (s.end * 1000.0).round() / 1000.0;
    }
}

/// Label lines -> canonical segments of `set` (unknown phone: error naming file and line),
/// rounded for the CTM.
fn ctm_segments(path: &Path, labels: &[PhoneLabel], set: &PhoneSet) -> Result<Vec<PhoneSegment>> {
    let mut segs = set.canonical_segments(path, labels)?;
    quantise_ms(&mut segs);
    Ok(segs)
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        out.push(entry.map_err(|e| Error::io(dir, e))?.path());
    }
    out.sort();
    Ok(out)
}

fn file_name_lower(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
}

/// The child of `dir` named `name`, any case.
fn child_ci(dir: &Path, name: &str) -> Result<Option<PathBuf>> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .find(|p| file_name_lower(p) == name))
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(p).map_err(|e| Error::io(p, e))
}

// ---------------------------------------------------------------------------------------------
// TIMIT

/// Which phones a TIMIT import writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimitPhones {
    /// The 61 original labels.
    P61,
    /// Folded to 48 (Kaldi trains on these).
    P48,
    /// Folded to the 39 scoring classes.
    P39,
}

impl TimitPhones {
    /// The phone set of this choice.
    pub fn phone_set(self) -> PhoneSet {
        match self {
            TimitPhones::P61 => PhoneSet::timit61(),
            TimitPhones::P48 => PhoneSet::timit48(),
            TimitPhones::P39 => PhoneSet::timit39(),
        }
    }
}

impl std::str::FromStr for TimitPhones {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "61" => Ok(TimitPhones::P61),
            "48" => Ok(TimitPhones::P48),
            "39" => Ok(TimitPhones::P39),
            _ => Err(Error::config(format!(
                "TIMIT phones '{s}': expected 61, 48 or 39"
            ))),
        }
    }
}

/// Options of [`import_timit`].
#[derive(Debug, Clone)]
pub struct TimitOptions {
    /// Phone inventory of `phones.ctm` and `text`.
    pub phones: TimitPhones,
    /// Keep the two SA sentences every speaker read (left out as is standard).
    pub include_sa: bool,
}

impl Default for TimitOptions {
    fn default() -> Self {
        TimitOptions {
            phones: TimitPhones::P48,
            include_sa: false,
        }
    }
}

/// Sample rate of an audio file from its header: NIST SPHERE (`sample_rate -i N`, 16 kHz when
/// absent, as TIMIT's headers always give it) or RIFF WAV.
pub fn probe_sample_rate(path: &Path) -> Result<f64> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut head = Vec::with_capacity(1024);
    file.by_ref()
        .take(1024)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(path, e))?;
    if head.starts_with(b"NIST_1A") {
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.lines();
        lines.next();
        let size: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| Error::format(path, "NIST SPHERE header without its size line"))?;
        if !(16..=65536).contains(&size) {
            return Err(Error::format(
                path,
                format!("NIST SPHERE header size {size} out of range"),
            ));
        }
        if size > head.len() {
            file.take((size - head.len()) as u64)
                .read_to_end(&mut head)
                .map_err(|e| Error::io(path, e))?;
            if head.len() < size {
                return Err(Error::format(
                    path,
                    format!("file ends inside its {size}-byte SPHERE header"),
                ));
            }
        }
        let text = String::from_utf8_lossy(&head[..size]);
        for line in text.lines().skip(2) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() == Some(&"end_head") {
                break;
            }
            if f.len() == 3 && f[0] == "sample_rate" {
                let rate: f64 = f[2]
                    .parse()
                    .map_err(|_| Error::format(path, format!("bad sample_rate '{}'", f[2])))?;
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err(Error::format(path, format!("bad sample_rate {rate}")));
                }
                return Ok(rate);
            }
        }
        Ok(timit::TIMIT_SAMPLE_RATE)
    } else if head.starts_with(b"RIFF") {
        let reader = hound::WavReader::open(path)
            .map_err(|e| Error::format(path, format!("RIFF WAV header: {e}")))?;
        match reader.spec().sample_rate {
            0 => Err(Error::format(
                path,
                "the WAV header declares a sample rate of 0 Hz",
            )),
            rate => Ok(rate as f64),
        }
    } else {
        Err(Error::format(
            path,
            "neither a NIST SPHERE nor a RIFF WAV file",
        ))
    }
}

/// TIMIT labels -> the chosen inventory. `q` (dropped by the 48/39 folds, as in Kaldi) gives its
/// time to the phone before it (after it when first); runs of one silence phone merge.
fn fold_timit(
    path: &Path,
    labels: &[PhoneLabel],
    phones: TimitPhones,
    set: &PhoneSet,
) -> Result<Vec<PhoneSegment>> {
    let t61 = PhoneSet::timit61();
    let mut out: Vec<PhoneSegment> = Vec::with_capacity(labels.len());
    let mut pending_start: Option<f64> = None;
    for l in labels {
        let name = l.phone.to_lowercase();
        if t61.id(&name).is_none() {
            return Err(Error::parse(
                path,
                l.line,
                format!("unknown phone '{}' (not one of TIMIT's 61)", l.phone),
            ));
        }
        let folded: Option<&str> = match phones {
            TimitPhones::P61 => Some(name.as_str()),
            TimitPhones::P48 => fold_61_to_48(&name),
            TimitPhones::P39 => fold_to_39(&name),
        };
        match folded {
            None => match out.last_mut() {
                Some(prev) => prev.end = l.end,
                None => pending_start = Some(pending_start.unwrap_or(l.start)),
            },
            Some(p) => {
                let start = pending_start.take().unwrap_or(l.start);
                match out.last_mut() {
                    Some(prev)
                        if prev.phone == p && set.id(p).is_some_and(|id| set.is_silence(id)) =>
                    {
                        prev.end = l.end
                    }
                    _ => out.push(PhoneSegment {
                        phone: p.to_string(),
                        start,
                        end: l.end,
                    }),
                }
            }
        }
    }
    if out.is_empty() {
        return Err(Error::parse(path, 0, "no phones left after folding"));
    }
    quantise_ms(&mut out);
    Ok(out)
}

/// Imports TIMIT from `root` (the directory holding TRAIN and TEST, any case) into
/// `out/{train,dev,test}`. Utterance ids are `speaker_sentence` in lower case (`fadg0_si1279`);
/// `text` is the utterance's phone sequence in the chosen inventory (TIMIT is a phone
/// recognition task, as in Kaldi's recipe).
pub fn import_timit(root: &Path, out: &Path, opts: &TimitOptions) -> Result<ImportSummary> {
    let root = absolute(root)?;
    let (train_dir, test_dir) = match (child_ci(&root, "train")?, child_ci(&root, "test")?) {
        (Some(a), Some(b)) => (a, b),
        _ => {
            return Err(Error::config(format!(
                "{}: no TRAIN and TEST directories (expected TIMIT's LDC layout)",
                root.display()
            )))
        }
    };
    let set = opts.phones.phone_set();
    let core: BTreeSet<&str> = TIMIT_CORE_TEST_SPEAKERS.into_iter().collect();
    let dev: BTreeSet<&str> = TIMIT_DEV_SPEAKERS.into_iter().collect();
    let mut splits: BTreeMap<&str, BTreeMap<String, Utt>> = BTreeMap::new();
    for (part, dir) in [("train", &train_dir), ("test", &test_dir)] {
        for dr in read_dir_sorted(dir)?
            .into_iter()
            .filter(|p| p.is_dir() && file_name_lower(p).starts_with("dr"))
        {
            for spk_dir in read_dir_sorted(&dr)?.into_iter().filter(|p| p.is_dir()) {
                let speaker = file_name_lower(&spk_dir);
                let split = match part {
                    "train" => "train",
                    _ if core.contains(speaker.as_str()) => "test",
                    _ if dev.contains(speaker.as_str()) => "dev",
                    _ => continue,
                };
                let files: BTreeMap<String, PathBuf> = read_dir_sorted(&spk_dir)?
                    .into_iter()
                    .filter(|p| p.is_file())
                    .map(|p| (file_name_lower(&p), p))
                    .collect();
                for (lname, phn) in files.iter().filter(|(n, _)| n.ends_with(".phn")) {
                    let sentence = &lname[..lname.len() - 4];
                    if sentence.starts_with("sa") && !opts.include_sa {
                        continue;
                    }
                    let wav = files.get(&format!("{sentence}.wav")).ok_or_else(|| {
                        Error::config(format!(
                            "{}: no audio file {sentence}.wav (any case) beside it",
                            phn.display()
                        ))
                    })?;
                    let rate = probe_sample_rate(wav)?;
                    let labels = timit::read_phn(phn, rate)?;
                    let phones = fold_timit(phn, &labels, opts.phones, &set)?;
                    let text = phones
                        .iter()
                        .map(|p| p.phone.as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    let utt = format!("{speaker}_{sentence}");
                    let entry = Utt {
                        speaker: speaker.clone(),
                        audio: wav.clone(),
                        text: Some(text),
                        phones: Some(phones),
                    };
                    if splits
                        .entry(split)
                        .or_default()
                        .insert(utt.clone(), entry)
                        .is_some()
                    {
                        return Err(Error::config(format!(
                            "{}: utterance {utt} found twice",
                            phn.display()
                        )));
                    }
                }
            }
        }
    }
    if splits.get("train").map_or(true, BTreeMap::is_empty) {
        return Err(Error::config(format!(
            "{}: no TIMIT utterances (.PHN with .WAV) under TRAIN/DR*/SPEAKER/",
            root.display()
        )));
    }
    let mut summary = ImportSummary::default();
    for name in ["train", "dev", "test"] {
        match splits.get(name) {
            Some(utts) if !utts.is_empty() => {
                summary
                    .splits
                    .push(write_split(&out.join(name), name, utts, Some(&set))?)
            }
            _ => summary
                .notes
                .push(format!("split {name} has no utterances; not written")),
        }
    }
    for (name, list) in [
        ("dev", TIMIT_DEV_SPEAKERS.len()),
        ("test", TIMIT_CORE_TEST_SPEAKERS.len()),
    ] {
        let found = summary
            .splits
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.speakers);
        if found != list {
            summary.notes.push(format!(
                "{name}: {found} of the standard {list} speakers found"
            ));
        }
    }
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// FSDD

/// How [`import_fsdd`] splits FSDD.
#[derive(Debug, Clone, PartialEq)]
pub enum FsddSplit {
    /// Speaker-disjoint: these speakers are `dev` and `test`, every other one `train`.
    Speakers { dev: Vec<String>, test: Vec<String> },
    /// The dataset's own split (recordings 0-4 of every speaker and digit are `test`, the rest
    /// `train`); not speaker-disjoint, no `dev`.
    Official,
}

impl Default for FsddSplit {
    fn default() -> Self {
        FsddSplit::Speakers {
            dev: FSDD_DEV_SPEAKERS.iter().map(|s| s.to_string()).collect(),
            test: FSDD_TEST_SPEAKERS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Parses `DIGIT_SPEAKER_INDEX.wav` -> (digit, speaker, index).
fn parse_fsdd_name(name: &str) -> Option<(usize, String, u32)> {
    let stem = name.strip_suffix(".wav")?;
    let (digit, rest) = stem.split_once('_')?;
    let (speaker, index) = rest.rsplit_once('_')?;
    let digit: usize = digit.parse().ok().filter(|d| *d < 10)?;
    let index: u32 = index.parse().ok()?;
    let ok_speaker = !speaker.is_empty()
        && speaker
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok_speaker.then(|| (digit, speaker.to_string(), index))
}

/// Imports FSDD from `root` (the dataset directory with `recordings/`, or `recordings/`
/// itself) into `out/{train,dev,test}`. Utterance ids are `speaker_digit_index`
/// (`jackson_7_32`); `text` is the digit's word (`seven`). FSDD has no phone times, so no
/// `phones.ctm` is written.
pub fn import_fsdd(root: &Path, out: &Path, split: &FsddSplit) -> Result<ImportSummary> {
    let root = absolute(root)?;
    let rec = match child_ci(&root, "recordings")? {
        Some(r) if r.is_dir() => r,
        _ => root.clone(),
    };
    let mut utts: Vec<(String, Utt, u32)> = Vec::new();
    for path in read_dir_sorted(&rec)? {
        let name = file_name_lower(&path);
        if !name.ends_with(".wav") {
            continue;
        }
        let (digit, speaker, index) = parse_fsdd_name(&name).ok_or_else(|| {
            Error::config(format!(
                "{}: not an FSDD file name (expected DIGIT_SPEAKER_INDEX.wav)",
                path.display()
            ))
        })?;
        let id = format!("{speaker}_{digit}_{index}");
        utts.push((
            id,
            Utt {
                speaker,
                audio: path,
                text: Some(DIGIT_WORDS[digit].to_string()),
                phones: None,
            },
            index,
        ));
    }
    if utts.is_empty() {
        return Err(Error::config(format!(
            "{}: no FSDD recordings (DIGIT_SPEAKER_INDEX.wav)",
            rec.display()
        )));
    }
    let speakers: BTreeSet<String> = utts.iter().map(|u| u.1.speaker.clone()).collect();
    if let FsddSplit::Speakers { dev, test } = split {
        for s in dev.iter().chain(test) {
            if !speakers.contains(s) {
                return Err(Error::config(format!(
                    "FSDD speaker '{s}' has no recordings (speakers: {speakers:?})"
                )));
            }
        }
        if let Some(s) = dev.iter().find(|s| test.contains(s)) {
            return Err(Error::config(format!(
                "FSDD speaker '{s}' is in both dev and test"
            )));
        }
    }
    let mut splits: BTreeMap<&str, BTreeMap<String, Utt>> = BTreeMap::new();
    for (id, utt, index) in utts {
        let name = match split {
            FsddSplit::Speakers { dev, test } if dev.contains(&utt.speaker) => "dev",
            FsddSplit::Speakers { test, .. } if test.contains(&utt.speaker) => "test",
            FsddSplit::Speakers { .. } => "train",
            FsddSplit::Official if index < 5 => "test",
            FsddSplit::Official => "train",
        };
        if splits
            .entry(name)
            .or_default()
            .insert(id.clone(), utt)
            .is_some()
        {
            return Err(Error::config(format!(
                "{}: utterance {id} found twice",
                rec.display()
            )));
        }
    }
    let mut summary = ImportSummary::default();
    for name in ["train", "dev", "test"] {
        if let Some(u) = splits.get(name).filter(|u| !u.is_empty()) {
            summary
                .splits
                .push(write_split(&out.join(name), name, u, None)?);
        }
    }
    if let FsddSplit::Speakers { dev, test } = split {
        summary.notes.push(format!(
            "speaker-disjoint splits: dev = {}, test = {}, train = the rest",
            dev.join(" "),
            test.join(" ")
        ));
    }
    summary
        .notes
        .push("FSDD has no phone times: no phones.ctm written".to_string());
    Ok(summary)
}

// ---------------------------------------------------------------------------------------------
// Kaldi

/// How [`import_kaldi`] holds out dev and test data when the corpus has no separate sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldoutBy {
    /// Whole speakers (Kaldi's `subset_data_dir_tr_cv.sh` convention): test is speaker-disjoint.
    Speaker,
    /// Single utterances, for corpora with too few speakers to hold any out.
    Utterance,
}

impl std::str::FromStr for HoldoutBy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "speaker" | "spk" => Ok(HoldoutBy::Speaker),
            "utterance" | "utt" => Ok(HoldoutBy::Utterance),
            _ => Err(Error::config(format!(
                "holdout by '{s}': expected speaker or utterance"
            ))),
        }
    }
}

/// Dev and test held out of one data directory: `percent` of the speakers (or utterances)
/// each, chosen by a hash of their names so the split is stable across runs and machines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Holdout {
    pub percent: f64,
    pub by: HoldoutBy,
}

/// Options of [`import_kaldi`].
#[derive(Debug, Clone)]
pub struct KaldiOptions {
    /// Number of senones the ids must be below (`None`: largest id + 1).
    pub num_senones: Option<usize>,
    /// Frame tolerance against the source's `utt2num_frames`, when it has one.
    pub tolerance: usize,
    /// Kaldi's `data/lang/phones.txt` and per-frame phone alignments (`ali-to-phones
    /// --per-frame=true`), naming each senone's phone (see [`crate::labels::kaldi_lang`]).
    pub phones: Option<(PathBuf, PathBuf)>,
    /// Split into `train`, `dev` and `test` (else the output is one data directory).
    pub holdout: Option<Holdout>,
}

impl Default for KaldiOptions {
    fn default() -> Self {
        KaldiOptions {
            num_senones: None,
            tolerance: DEFAULT_FRAME_TOLERANCE,
            phones: None,
            holdout: None,
        }
    }
}

/// What [`import_kaldi`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct KaldiImport {
    pub summary: ImportSummary,
    /// Senones of the table written (`--num-senones`, else the largest id + 1).
    pub num_senones: usize,
    /// Utterances of the data directory without an alignment (left out of the output).
    pub unaligned: Vec<String>,
    /// Alignment lengths against the source's `utt2num_frames`, when it has one.
    pub frame_check: Option<FrameCountReport>,
}

/// Name of the directory [`import_kaldi`] writes the senone table and phone set into.
pub const KALDI_LANG_DIR: &str = "lang";

/// Imports a Kaldi data directory with its pdf-id alignments (`ali-to-pdf ...`, text or
/// binary archive) into `out`: the data directory restricted to the aligned utterances with
/// `ali.txt` (or, with a holdout, `out/{train,dev,test}` each with its `ali.txt`), and
/// `out/lang/` holding `senones.txt` (frame counts from train), `phones.txt` and
/// `phone_classes.txt`. An alignment for an utterance the directory lacks, an id at or above
/// `num_senones`, or (when the source has `utt2num_frames`) a length off by more than the
/// tolerance is an error.
pub fn import_kaldi(
    data_dir: &Path,
    ali: &Path,
    out: &Path,
    opts: &KaldiOptions,
) -> Result<KaldiImport> {
    let mut data = DataDir::read(data_dir)?;
    let alignments = read_alignments(ali)?;
    if alignments.is_empty() {
        return Err(Error::parse(ali, 0, "no alignments"));
    }
    let strangers: Vec<&String> = alignments
        .keys()
        .filter(|u| !data.utt2spk.contains_key(*u))
        .collect();
    if !strangers.is_empty() {
        let shown: Vec<&str> = strangers.iter().take(10).map(|s| s.as_str()).collect();
        return Err(Error::Mismatch(format!(
            "{}: {} aligned utterances are not in {} (first: {})",
            ali.display(),
            strangers.len(),
            data_dir.display(),
            shown.join(" ")
        )));
    }
    let top = max_id(&alignments).expect("non-empty alignments");
    if let Some(n) = opts.num_senones {
        if top as usize >= n {
            let (utt, frame) = alignments
                .iter()
                .find_map(|(u, ids)| ids.iter().position(|&i| i == top).map(|f| (u, f)))
                .expect("max id occurs");
            return Err(Error::Mismatch(format!(
                "{}: utterance {utt} frame {frame} has senone id {top}, but there are only {n} senones",
                ali.display()
            )));
        }
    }
    let num_senones = opts.num_senones.unwrap_or(top as usize + 1);
    let frame_check = check_kaldi_frames(data_dir, &alignments, opts.tolerance)?;
    let unaligned: Vec<String> = data
        .utt2spk
        .keys()
        .filter(|u| !alignments.contains_key(*u))
        .cloned()
        .collect();
    let keep: BTreeSet<String> = alignments.keys().cloned().collect();
    data.retain_utts(&keep);

    let splits: Vec<(String, BTreeSet<String>)> = match &opts.holdout {
        Some(h) => holdout_splits(&data, h, data_dir)?,
        None => vec![(String::new(), keep)],
    };
    let kaldi_phones = match &opts.phones {
        Some((table, phone_ali)) => Some((
            KaldiPhones::read(table)?,
            phone_ali.as_path(),
            read_alignments(phone_ali)?,
        )),
        None => None,
    };
    // Senone priors (the counts) come from the training data only.
    let train_utts = &splits[0].1;
    let train_ali: BTreeMap<String, Vec<u32>> = alignments
        .iter()
        .filter(|(u, _)| train_utts.contains(*u))
        .map(|(u, v)| (u.clone(), v.clone()))
        .collect();
    let (senones, phone_set) = match &kaldi_phones {
        Some((k, path, phone_ali)) => {
            let pa = PhoneAlignments {
                path,
                alignments: phone_ali,
                phones: k,
            };
            // Every utterance (held-out ones too) must have its phones, or scoring breaks later.
            senone_table(&alignments, Some(&pa), num_senones)?;
            (
                senone_table(&train_ali, Some(&pa), num_senones)?,
                k.set.clone(),
            )
        }
        None => (
            senone_table(&train_ali, None, num_senones)?,
            unknown_phone_set(),
        ),
    };

    let mut summary = ImportSummary::default();
    for (name, utts) in &splits {
        let dir = if name.is_empty() {
            out.to_path_buf()
        } else {
            out.join(name)
        };
        let mut split = data.clone();
        split.retain_utts(utts);
        split.write(&dir)?;
        let split_ali: BTreeMap<String, Vec<u32>> = alignments
            .iter()
            .filter(|(u, _)| utts.contains(*u))
            .map(|(u, v)| (u.clone(), v.clone()))
            .collect();
        write_alignments(dir.join(ALI_TXT), &split_ali)?;
        summary.splits.push(SplitSummary {
            name: if name.is_empty() {
                out.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            } else {
                name.clone()
            },
            dir,
            utterances: split.utt2spk.len(),
            speakers: split.spk2utt().len(),
            phone_segments: 0,
        });
    }
    let lang = out.join(KALDI_LANG_DIR);
    std::fs::create_dir_all(&lang).map_err(|e| Error::io(&lang, e))?;
    phone_set.save(&lang)?;
    write_senone_table(lang.join("senones.txt"), &senones)?;
    let unseen = senones.iter().filter(|s| s.count == 0.0).count();
    summary.notes.push(format!(
        "{}: {num_senones} senones ({unseen} without training frames), {} phones{}",
        lang.display(),
        phone_set.len(),
        if kaldi_phones.is_none() {
            " (no phone alignments: every senone is phone 'unk')"
        } else {
            ""
        }
    ));
    if let Some(h) = &opts.holdout {
        summary.notes.push(format!(
            "held out {}% of the {} for dev and {}% for test",
            h.percent,
            match h.by {
                HoldoutBy::Speaker => "speakers",
                HoldoutBy::Utterance => "utterances",
            },
            h.percent
        ));
    }
    if !unaligned.is_empty() {
        summary.notes.push(format!(
            "{} utterances without an alignment left out",
            unaligned.len()
        ));
    }
    Ok(KaldiImport {
        summary,
        num_senones,
        unaligned,
        frame_check,
    })
}

/// Alignment lengths against `utt2num_frames` when the data directory has one.
fn check_kaldi_frames(
    data_dir: &Path,
    alignments: &BTreeMap<String, Vec<u32>>,
    tolerance: usize,
) -> Result<Option<FrameCountReport>> {
    let frames_path = data_dir.join("utt2num_frames");
    if !frames_path.exists() {
        return Ok(None);
    }
    let mut frames = BTreeMap::new();
    for (utt, v) in read_map(&frames_path)? {
        let n: usize = v.parse().map_err(|_| {
            Error::parse(
                &frames_path,
                0,
                format!("utterance {utt}: bad frame count '{v}'"),
            )
        })?;
        frames.insert(utt, n);
    }
    let lengths: BTreeMap<String, usize> = alignments
        .iter()
        .map(|(u, v)| (u.clone(), v.len()))
        .collect();
    Ok(Some(
        check_frame_counts(&lengths, &frames, tolerance).into_result()?,
    ))
}

/// 64-bit FNV-1a of a name: the stable order in which holdouts pick speakers or utterances.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `[("train", ..), ("dev", ..), ("test", ..)]` utterance sets: the first `percent` of the
/// units (speakers or utterances) in hash order go to dev, the next to test (at least one
/// each), the rest to train.
fn holdout_splits(
    data: &DataDir,
    h: &Holdout,
    data_dir: &Path,
) -> Result<Vec<(String, BTreeSet<String>)>> {
    if !(h.percent > 0.0 && h.percent < 50.0) {
        return Err(Error::config(format!(
            "holdout {}%: expected more than 0 and less than 50 (dev and test get that much each)",
            h.percent
        )));
    }
    let units: BTreeMap<String, Vec<String>> = match h.by {
        HoldoutBy::Speaker => data.spk2utt(),
        HoldoutBy::Utterance => data
            .utt2spk
            .keys()
            .map(|u| (u.clone(), vec![u.clone()]))
            .collect(),
    };
    let what = match h.by {
        HoldoutBy::Speaker => "speakers",
        HoldoutBy::Utterance => "utterances",
    };
    if units.len() < 3 {
        return Err(Error::config(format!(
            "{}: {} aligned {what}, too few to hold out dev and test{}",
            data_dir.display(),
            units.len(),
            if h.by == HoldoutBy::Speaker {
                " (hold out utterances instead: --holdout-by utterance)"
            } else {
                ""
            }
        )));
    }
    let mut order: Vec<&String> = units.keys().collect();
    order.sort_by_key(|u| (name_hash(u), u.as_str()));
    let each = ((units.len() as f64 * h.percent / 100.0).ceil() as usize)
        .max(1)
        .min((units.len() - 1) / 2);
    let pick = |range: std::ops::Range<usize>| -> BTreeSet<String> {
        order[range]
            .iter()
            .flat_map(|u| units[*u].iter().cloned())
            .collect()
    };
    Ok(vec![
        ("train".to_string(), pick(2 * each..order.len())),
        ("dev".to_string(), pick(0..each)),
        ("test".to_string(), pick(each..2 * each)),
    ])
}

// ---------------------------------------------------------------------------------------------
// Label directories

/// Label file formats [`import_labels`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelFormat {
    /// HTS or festival `.lab`.
    Hts,
    /// Praat `.TextGrid`.
    TextGrid,
    /// TIMIT `.PHN`.
    Phn,
    /// By file extension: `.lab`, `.TextGrid`, `.PHN` (any case).
    Auto,
}

impl std::str::FromStr for LabelFormat {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_lowercase().as_str() {
            "hts" | "lab" | "festival" => Ok(LabelFormat::Hts),
            "textgrid" => Ok(LabelFormat::TextGrid),
            "phn" | "timit" => Ok(LabelFormat::Phn),
            "auto" => Ok(LabelFormat::Auto),
            _ => Err(Error::config(format!(
                "label format '{s}': expected auto, hts, textgrid or phn"
            ))),
        }
    }
}

impl LabelFormat {
    /// The format of a file by its extension.
    fn of(path: &Path) -> Option<LabelFormat> {
        let ext = path.extension()?.to_string_lossy().to_lowercase();
        match ext.as_str() {
            "lab" => Some(LabelFormat::Hts),
            "textgrid" => Some(LabelFormat::TextGrid),
            "phn" => Some(LabelFormat::Phn),
            _ => None,
        }
    }
}

/// Options of [`import_labels`].
#[derive(Debug, Clone)]
pub struct LabelImportOptions {
    pub format: LabelFormat,
    /// Phone set the labels are checked against and written in.
    pub phone_set: PhoneSet,
    /// Where the audio is (mirroring the label tree, or flat); default: the label directory.
    pub audio_dir: Option<PathBuf>,
    /// Read only label files whose name (without extension) ends with this, and remove it to
    /// get the utterance's audio name (`arctic_a0009_phone.lab` + `_phone` -> `arctic_a0009`).
    pub suffix: Option<String>,
    /// Speaker of files directly in the label directory (files in a subdirectory belong to the
    /// speaker the subdirectory is named after); default: each utterance is its own speaker.
    pub speaker: Option<String>,
    /// TextGrid tier with the phones.
    pub phone_tier: String,
    /// TextGrid tier with the words (the transcript), when present.
    pub word_tier: String,
    /// Sample rate of `.PHN` sample indices (Hz).
    pub phn_sample_rate: f64,
}

impl Default for LabelImportOptions {
    fn default() -> Self {
        LabelImportOptions {
            format: LabelFormat::Auto,
            phone_set: PhoneSet::arpabet(),
            audio_dir: None,
            suffix: None,
            speaker: None,
            phone_tier: "phones".to_string(),
            word_tier: "words".to_string(),
            phn_sample_rate: timit::TIMIT_SAMPLE_RATE,
        }
    }
}

const AUDIO_EXTENSIONS: [&str; 4] = ["wav", "flac", "sph", "WAV"];

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for p in read_dir_sorted(dir)? {
        if p.is_dir() {
            walk_files(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Imports a directory of label files into the data directory `out` with `phones.ctm`.
/// Utterance ids are the label file names without extension (and suffix), prefixed with the
/// speaker when one is known and not already a prefix.
pub fn import_labels(
    label_dir: &Path,
    out: &Path,
    opts: &LabelImportOptions,
) -> Result<ImportSummary> {
    let label_dir = absolute(label_dir)?;
    let audio_dir = match &opts.audio_dir {
        Some(d) => absolute(d)?,
        None => label_dir.clone(),
    };
    let mut files = Vec::new();
    walk_files(&label_dir, &mut files)?;
    let mut utts: BTreeMap<String, Utt> = BTreeMap::new();
    for path in files {
        let Some(format) = LabelFormat::of(&path) else {
            continue;
        };
        if opts.format != LabelFormat::Auto && opts.format != format {
            continue;
        }
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let base = match &opts.suffix {
            Some(sfx) => match stem.strip_suffix(sfx.as_str()) {
                Some(b) if !b.is_empty() => b.to_string(),
                _ => continue,
            },
            None => stem.clone(),
        };
        let rel_dir = path
            .parent()
            .and_then(|p| p.strip_prefix(&label_dir).ok())
            .unwrap_or(Path::new(""))
            .to_path_buf();
        let speaker = match rel_dir.components().next() {
            Some(c) => Some(c.as_os_str().to_string_lossy().into_owned()),
            None => opts.speaker.clone(),
        };
        let base_ref = &base;
        let audio = [audio_dir.join(&rel_dir), audio_dir.clone()]
            .iter()
            .flat_map(|d| {
                AUDIO_EXTENSIONS
                    .iter()
                    .map(move |e| d.join(format!("{base_ref}.{e}")))
            })
            .find(|p| p.is_file())
            .ok_or_else(|| {
                Error::config(format!(
                    "{}: no audio {base}.wav/.flac/.sph in {} or {}",
                    path.display(),
                    audio_dir.join(&rel_dir).display(),
                    audio_dir.display()
                ))
            })?;
        let (labels, text) = match format {
            LabelFormat::Hts => (hts::read_hts_phones(&path)?, None),
            LabelFormat::Phn => (timit::read_phn(&path, opts.phn_sample_rate)?, None),
            LabelFormat::TextGrid => {
                let tg = textgrid::read_textgrid(&path)?;
                (
                    textgrid::textgrid_phones(&path, &tg, &opts.phone_tier)?,
                    textgrid::textgrid_words(&tg, &opts.word_tier),
                )
            }
            LabelFormat::Auto => unreachable!("LabelFormat::of never returns Auto"),
        };
        let phones = ctm_segments(&path, &labels, &opts.phone_set)?;
        let (utt, speaker) = match speaker {
            Some(s)
                if base.starts_with(&format!("{s}_"))
                    || base.starts_with(&format!("{s}-"))
                    || base == s =>
            {
                (base.clone(), s)
            }
            Some(s) => (format!("{s}_{base}"), s),
            None => (base.clone(), base.clone()),
        };
        if utts.contains_key(&utt) {
            return Err(Error::config(format!(
                "{}: utterance {utt} already read from another label file",
                path.display()
            )));
        }
        utts.insert(
            utt,
            Utt {
                speaker,
                audio,
                text,
                phones: Some(phones),
            },
        );
    }
    if utts.is_empty() {
        return Err(Error::config(format!(
            "{}: no label files (.lab, .TextGrid, .PHN) found",
            label_dir.display()
        )));
    }
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let split = write_split(out, &name, &utts, Some(&opts.phone_set))?;
    Ok(ImportSummary {
        splits: vec![split],
        notes: Vec::new(),
    })
}
