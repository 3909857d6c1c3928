//! Checking and repairing Kaldi data directories, after Kaldi's `utils/validate_data_dir.sh` and
//! `utils/fix_data_dir.sh`.
//!
//! [`validate_data_dir`] reports every problem it finds, each as a [`Problem`] naming the file
//! and the 1-based line it is on (line 0 for a problem with a whole file):
//!
//! - lines that do not parse (invalid UTF-8, no key), duplicate keys, keys out of C-locale byte
//!   order (`LC_ALL=C sort`), values that are malformed (a `utt2spk` line without exactly one
//!   speaker, bad `segments` times, a non-integer `utt2num_frames` ...), empty files;
//! - `wav.scp`: pipe commands (`... |`) and stdin (`-`) are unsupported; the audio files must
//!   exist and be non-empty. A relative path is resolved against the current directory, as
//!   Kaldi does, not against the data directory;
//! - utterances missing from one of `utt2spk`, `text`, `segments` (or `wav.scp` without
//!   segments), `feats.scp`, `utt2num_frames`, `utt2dur`; `utt2spk` is the reference: a
//!   missing utterance is reported on its `utt2spk` line, an extra one on its line in the other
//!   file;
//! - `spk2utt` that does not list exactly the utterances of each speaker of `utt2spk`, sorted;
//! - `segments` naming a recording absent from `wav.scp`, recordings of `wav.scp` that no
//!   segment uses, `reco2dur` keys that differ from `wav.scp`'s;
//! - speaker-keyed files (`cmvn.scp`, `spk2gender`) whose speakers differ from `utt2spk`'s.
//!
//! `phones.ctm`, `frame_shift` and other files are not checked.
//!
//! [`fix_data_dir`] repairs what can be repaired: it sorts every file, drops duplicate keys
//! (keeping the first), unparsable lines and bad values, keeps the utterances present in every
//! utterance-keyed file (and whose recording, speaker stats ... exist), drops recordings and
//! speakers no longer used and regenerates `spk2utt`. Each file it changes is first copied into
//! `DIR/.backup/`, then rewritten atomically. A fixed directory validates clean with the same
//! options unless something unfixable remains (a missing `text`, no utterances left).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::atomic::write_atomic;
use crate::corpus::data_dir::Segment;
use crate::corpus::table::{scan_table_bytes, TableEntry};
use crate::error::{Error, Result};

/// One problem in a data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in (`DIR/NAME`).
    pub file: PathBuf,
    /// 1-based line; 0 when the problem is with the whole file (missing, empty).
    pub line: usize,
    /// What is wrong.
    pub msg: String,
}

impl fmt::Display for Problem {
    /// `FILE:LINE: message`, or `FILE: message` for a whole-file problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.msg)
        } else {
            write!(f, "{}: {}", self.file.display(), self.msg)
        }
    }
}

/// What [`validate_data_dir`] and [`fix_data_dir`] check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateOptions {
    /// A missing `text` is a problem (false: transcripts are optional; a `text` that exists is
    /// still checked).
    pub require_text: bool,
    /// Check that every audio file of `wav.scp` exists and is not empty (false: skip the
    /// file-system calls, for huge corpora on slow storage).
    pub check_audio: bool,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            require_text: true,
            check_audio: true,
        }
    }
}

/// What [`fix_data_dir`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FixReport {
    /// Utterances in the fixed directory.
    pub utts_kept: usize,
    /// Utterance ids found in any utterance-keyed file that are not in the fixed directory.
    pub utts_dropped: usize,
    /// Why utterances were dropped: reason -> count (the first reason found for each).
    pub drop_reasons: BTreeMap<String, usize>,
    /// Distinct `wav.scp` keys dropped.
    pub recordings_dropped: usize,
    /// Speakers of `utt2spk` with no utterance left.
    pub speakers_dropped: usize,
    /// Each line removed for being a duplicate, unparsable or having a bad value, with why.
    pub dropped_lines: Vec<Problem>,
    /// Files rewritten or created, in the order written; the previous version of each is in
    /// `backup_dir`.
    pub changed: Vec<PathBuf>,
    /// `DIR/.backup`, where the previous versions of changed files are.
    pub backup_dir: PathBuf,
}

/// What the keys of a table file are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    Utt,
    Spk,
    Rec,
}

/// A table file this module knows: its name, its keys, and the check of one line's value.
struct FileSpec {
    name: &'static str,
    keys: Keys,
    check: fn(&str) -> std::result::Result<(), String>,
}

const WAV_SCP: &str = "wav.scp";
const SEGMENTS: &str = "segments";
const UTT2SPK: &str = "utt2spk";
const SPK2UTT: &str = "spk2utt";
const TEXT: &str = "text";

/// Every table file checked, in the order problems are listed and files rewritten. `wav.scp`
/// is keyed by utterance when there is no `segments`.
const FILES: &[FileSpec] = &[
    FileSpec {
        name: WAV_SCP,
        keys: Keys::Rec,
        check: check_wav_value,
    },
    FileSpec {
        name: SEGMENTS,
        keys: Keys::Utt,
        check: check_segment_value,
    },
    FileSpec {
        name: UTT2SPK,
        keys: Keys::Utt,
        check: check_speaker_value,
    },
    FileSpec {
        name: SPK2UTT,
        keys: Keys::Spk,
        check: check_spk2utt_value,
    },
    FileSpec {
        name: TEXT,
        keys: Keys::Utt,
        check: check_any,
    },
    FileSpec {
        name: "feats.scp",
        keys: Keys::Utt,
        check: check_nonempty,
    },
    FileSpec {
        name: "utt2num_frames",
        keys: Keys::Utt,
        check: check_frame_count,
    },
    FileSpec {
        name: "utt2dur",
        keys: Keys::Utt,
        check: check_duration,
    },
    FileSpec {
        name: "cmvn.scp",
        keys: Keys::Spk,
        check: check_nonempty,
    },
    FileSpec {
        name: "spk2gender",
        keys: Keys::Spk,
        check: check_gender,
    },
    FileSpec {
        name: "reco2dur",
        keys: Keys::Rec,
        check: check_duration,
    },
];

const REQUIRED: &[&str] = &[WAV_SCP, UTT2SPK, SPK2UTT];

fn check_any(_: &str) -> std::result::Result<(), String> {
    Ok(())
}

fn check_nonempty(v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        Err("no value".to_string())
    } else {
        Ok(())
    }
}

fn check_wav_value(v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        Err("no audio path".to_string())
    } else if v.ends_with('|') {
        Err(format!(
            "pipe commands are not supported ('{v}'): convert the audio to files and list their paths"
        ))
    } else if v == "-" {
        Err("reading audio from stdin ('-') is not supported".to_string())
    } else {
        Ok(())
    }
}

fn check_segment_value(v: &str) -> std::result::Result<(), String> {
    Segment::parse(v).map(|_| ())
}

fn check_speaker_value(v: &str) -> std::result::Result<(), String> {
    match v.split_whitespace().count() {
        0 => Err("no speaker id (expected 'utt-id speaker-id')".to_string()),
        1 => Ok(()),
        n => Err(format!(
            "expected 'utt-id speaker-id', got {} fields",
            n + 1
        )),
    }
}

fn check_spk2utt_value(v: &str) -> std::result::Result<(), String> {
    if v.is_empty() {
        Err("speaker has no utterances".to_string())
    } else {
        Ok(())
    }
}

fn check_frame_count(v: &str) -> std::result::Result<(), String> {
    v.parse::<u64>()
        .map(|_| ())
        .map_err(|_| format!("bad frame count '{v}'"))
}

fn check_duration(v: &str) -> std::result::Result<(), String> {
    match v.parse::<f64>() {
        Ok(d) if d.is_finite() && d >= 0.0 => Ok(()),
        _ => Err(format!("bad duration '{v}' (seconds)")),
    }
}

fn check_gender(v: &str) -> std::result::Result<(), String> {
    if v == "m" || v == "f" {
        Ok(())
    } else {
        Err(format!("bad gender '{v}' (expected 'm' or 'f')"))
    }
}

/// Checks an audio path of `wav.scp` on disk (relative to the current directory).
fn check_audio_file(path: &str) -> std::result::Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(format!("'{path}' is a directory, not an audio file")),
        Ok(m) if m.len() == 0 => Err(format!("audio file '{path}' is empty")),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "audio file '{path}' not found (relative paths are resolved against the current directory)"
        )),
        Err(e) => Err(format!("cannot access audio file '{path}': {e}")),
    }
}

/// One table file as read, with what was found in it.
struct Table {
    spec: &'static FileSpec,
    path: PathBuf,
    /// The file's bytes, to tell whether a fix changes it.
    bytes: Vec<u8>,
    /// Every parsed line, in file order.
    entries: Vec<TableEntry>,
    /// Unparsable lines, duplicates and bad values: each line here is dropped by a fix.
    line_problems: Vec<Problem>,
    /// Keys out of order (a fix sorts them).
    order_problems: Vec<Problem>,
    /// First occurrence of every key -> index into `entries`, whatever its value.
    first: BTreeMap<String, usize>,
    /// Keys whose first occurrence has a valid value -> index into `entries`.
    valid: BTreeMap<String, usize>,
}

impl Table {
    fn line_of(&self, key: &str) -> usize {
        self.first.get(key).map_or(0, |&i| self.entries[i].line)
    }

    fn value(&self, key: &str) -> Option<&str> {
        self.valid.get(key).map(|&i| self.entries[i].value.as_str())
    }

    /// A file with entries; one without is reported once and left out of cross-checks.
    fn usable(&self) -> bool {
        !self.entries.is_empty()
    }

    fn problem(&self, line: usize, msg: impl Into<String>) -> Problem {
        Problem {
            file: self.path.clone(),
            line,
            msg: msg.into(),
        }
    }
}

/// Reads and checks one file; `Ok(None)` when it does not exist.
fn load(dir: &Path, spec: &'static FileSpec) -> Result<Option<Table>> {
    let path = dir.join(spec.name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let scan = scan_table_bytes(&bytes);
    let mut table = Table {
        spec,
        path,
        bytes,
        entries: scan.entries,
        line_problems: Vec::new(),
        order_problems: Vec::new(),
        first: BTreeMap::new(),
        valid: BTreeMap::new(),
    };
    for (line, msg) in scan.bad_lines {
        let p = table.problem(line, msg);
        table.line_problems.push(p);
    }
    let mut prev: Option<usize> = None;
    for (i, e) in table.entries.iter().enumerate() {
        if let Some(&first) = table.first.get(&e.key) {
            let msg = format!(
                "duplicate key '{}' (first on line {})",
                e.key, table.entries[first].line
            );
            table.line_problems.push(Problem {
                file: table.path.clone(),
                line: e.line,
                msg,
            });
            continue;
        }
        // Compared with the previous line only, so one misplaced line is one problem.
        if let Some(p) = prev {
            let before = &table.entries[p];
            if e.key < before.key {
                let msg = format!(
                    "key '{}' is out of order (after '{}' on line {}); files must be sorted in C-locale byte order (LC_ALL=C sort)",
                    e.key, before.key, before.line
                );
                table.order_problems.push(Problem {
                    file: table.path.clone(),
                    line: e.line,
                    msg,
                });
            }
        }
        prev = Some(i);
        table.first.insert(e.key.clone(), i);
        match (spec.check)(&e.value) {
            Ok(()) => {
                table.valid.insert(e.key.clone(), i);
            }
            Err(msg) => {
                let msg = format!("'{}': {msg}", e.key);
                table.line_problems.push(Problem {
                    file: table.path.clone(),
                    line: e.line,
                    msg,
                });
            }
        }
    }
    Ok(Some(table))
}

/// Checks the audio files of `wav.scp` (in parallel: on network storage each check is a round
/// trip); invalid ones are moved from `valid` to `line_problems`.
fn check_audio_files(wav: &mut Table) {
    let failures: Vec<(String, String)> = wav
        .valid
        .par_iter()
        .filter_map(|(key, &i)| {
            check_audio_file(&wav.entries[i].value)
                .err()
                .map(|msg| (key.clone(), msg))
        })
        .collect();
    for (key, msg) in failures {
        let line = wav.line_of(&key);
        wav.valid.remove(&key);
        wav.line_problems.push(Problem {
            file: wav.path.clone(),
            line,
            msg: format!("'{key}': {msg}"),
        });
    }
}

/// Every known file of `dir` that exists, by name.
fn load_all(dir: &Path, opts: &ValidateOptions) -> Result<BTreeMap<&'static str, Table>> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::config(format!("{}: not a directory", dir.display())));
    }
    let mut tables = BTreeMap::new();
    for spec in FILES {
        if let Some(mut table) = load(dir, spec)? {
            if spec.name == WAV_SCP && opts.check_audio {
                check_audio_files(&mut table);
            }
            tables.insert(spec.name, table);
        }
    }
    Ok(tables)
}

/// The key kind of a file in this directory (`wav.scp` holds utterances without `segments`).
fn keys_of(table: &Table, has_segments: bool) -> Keys {
    if table.spec.name == WAV_SCP && !has_segments {
        Keys::Utt
    } else {
        table.spec.keys
    }
}

/// Checks the data directory `dir` and returns every problem found, sorted by file and line
/// (empty: the directory is valid). Fails only when `dir` is not a readable directory or a
/// file in it cannot be read.
pub fn validate_data_dir(dir: &Path, opts: &ValidateOptions) -> Result<Vec<Problem>> {
    let tables = load_all(dir, opts)?;
    let mut problems = Vec::new();

    let text_required = opts.require_text.then_some(TEXT);
    for name in REQUIRED.iter().copied().chain(text_required) {
        if !tables.contains_key(name) {
            problems.push(Problem {
                file: dir.join(name),
                line: 0,
                msg: "missing (every data directory needs it)".to_string(),
            });
        }
    }
    for table in tables.values() {
        if table.entries.is_empty() && table.line_problems.is_empty() {
            problems.push(table.problem(0, "empty file"));
        }
        problems.extend(table.line_problems.iter().cloned());
        problems.extend(table.order_problems.iter().cloned());
    }

    // An empty `segments` still makes `wav.scp` a list of recordings (as for a fix).
    let has_segments = tables.contains_key(SEGMENTS);
    if let Some(utt2spk) = tables.get(UTT2SPK).filter(|t| t.usable()) {
        check_utterances(utt2spk, &tables, has_segments, &mut problems);
        check_speakers(utt2spk, &tables, &mut problems);
    }
    check_recordings(&tables, &mut problems);

    sort_problems(dir, &mut problems);
    Ok(problems)
}

/// Sorts by file, in `FILES` order, then by line (whole-file problems first); stable.
fn sort_problems(dir: &Path, problems: &mut [Problem]) {
    let order: HashMap<PathBuf, usize> = FILES
        .iter()
        .enumerate()
        .map(|(i, s)| (dir.join(s.name), i))
        .collect();
    problems.sort_by_key(|p| (order.get(&p.file).copied().unwrap_or(usize::MAX), p.line));
}

/// Every utterance-keyed file against `utt2spk`, both ways.
fn check_utterances(
    utt2spk: &Table,
    tables: &BTreeMap<&'static str, Table>,
    has_segments: bool,
    problems: &mut Vec<Problem>,
) {
    for table in tables.values() {
        if table.spec.name == UTT2SPK
            || !table.usable()
            || keys_of(table, has_segments) != Keys::Utt
        {
            continue;
        }
        let name = table.spec.name;
        for (utt, &i) in &utt2spk.first {
            if !table.first.contains_key(utt) {
                let msg = format!("utterance '{utt}' is missing from {name}");
                problems.push(utt2spk.problem(utt2spk.entries[i].line, msg));
            }
        }
        for (utt, &i) in &table.first {
            if !utt2spk.first.contains_key(utt) {
                let msg = format!("utterance '{utt}' is not in utt2spk");
                problems.push(table.problem(table.entries[i].line, msg));
            }
        }
    }
}

/// `spk2utt` and the speaker-keyed files against the speakers of `utt2spk`.
fn check_speakers(
    utt2spk: &Table,
    tables: &BTreeMap<&'static str, Table>,
    problems: &mut Vec<Problem>,
) {
    // speaker -> line of its first utterance in utt2spk
    let mut speakers: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in utt2spk.valid.values() {
        let e = &utt2spk.entries[i];
        speakers.entry(e.value.as_str()).or_insert(e.line);
    }

    if let Some(spk2utt) = tables.get(SPK2UTT).filter(|t| t.usable()) {
        // utterance -> (speaker, line) where spk2utt first lists it
        let mut listed: HashMap<&str, (&str, usize)> = HashMap::new();
        for (spk, &i) in &spk2utt.first {
            let e = &spk2utt.entries[i];
            let utts: Vec<&str> = e.value.split_whitespace().collect();
            if utts.windows(2).any(|w| w[0] > w[1]) {
                problems.push(spk2utt.problem(
                    e.line,
                    format!("utterances of speaker '{spk}' are not sorted"),
                ));
            }
            for &utt in &utts {
                if let Some(&(other, line)) = listed.get(utt) {
                    let msg = if other == spk.as_str() {
                        format!("utterance '{utt}' is listed twice")
                    } else {
                        format!("utterance '{utt}' is also listed under speaker '{other}' (line {line})")
                    };
                    problems.push(spk2utt.problem(e.line, msg));
                    continue;
                }
                listed.insert(utt, (spk.as_str(), e.line));
                if !utt2spk.first.contains_key(utt) {
                    problems.push(
                        spk2utt.problem(e.line, format!("utterance '{utt}' is not in utt2spk")),
                    );
                } else if let Some(real) = utt2spk.value(utt) {
                    if real != spk {
                        let msg = format!(
                            "utterance '{utt}' is listed under speaker '{spk}' but utt2spk gives '{real}' (line {})",
                            utt2spk.line_of(utt)
                        );
                        problems.push(spk2utt.problem(e.line, msg));
                    }
                }
            }
        }
        for (utt, &i) in &utt2spk.valid {
            if !listed.contains_key(utt.as_str()) {
                let e = &utt2spk.entries[i];
                let msg = format!(
                    "utterance '{utt}' (speaker '{}') is missing from spk2utt",
                    e.value
                );
                problems.push(utt2spk.problem(e.line, msg));
            }
        }
    }

    for table in tables.values() {
        if table.spec.keys != Keys::Spk || table.spec.name == SPK2UTT || !table.usable() {
            continue;
        }
        let name = table.spec.name;
        for (&spk, &line) in &speakers {
            if !table.first.contains_key(spk) {
                problems
                    .push(utt2spk.problem(line, format!("speaker '{spk}' has no entry in {name}")));
            }
        }
        for (spk, &i) in &table.first {
            if !speakers.contains_key(spk.as_str()) {
                let msg = format!("speaker '{spk}' is not in utt2spk");
                problems.push(table.problem(table.entries[i].line, msg));
            }
        }
    }
}

/// `segments` against `wav.scp` (both ways), and recording-keyed files against `wav.scp`.
fn check_recordings(tables: &BTreeMap<&'static str, Table>, problems: &mut Vec<Problem>) {
    let Some(wav) = tables.get(WAV_SCP).filter(|t| t.usable()) else {
        return;
    };
    if let Some(segments) = tables.get(SEGMENTS).filter(|t| t.usable()) {
        let mut used: BTreeSet<&str> = BTreeSet::new();
        for &i in segments.first.values() {
            let e = &segments.entries[i];
            // The recording field of a line with bad times still counts as a use.
            let Some(rec) = e.value.split_whitespace().next() else {
                continue;
            };
            used.insert(rec);
            if !wav.first.contains_key(rec) {
                problems
                    .push(segments.problem(e.line, format!("recording '{rec}' is not in wav.scp")));
            }
        }
        for (rec, &i) in &wav.first {
            if !used.contains(rec.as_str()) {
                let msg = format!("recording '{rec}' is not used by any segment");
                problems.push(wav.problem(wav.entries[i].line, msg));
            }
        }
    }
    for table in tables.values() {
        if table.spec.keys != Keys::Rec || table.spec.name == WAV_SCP || !table.usable() {
            continue;
        }
        let name = table.spec.name;
        for (rec, &i) in &wav.first {
            if !table.first.contains_key(rec) {
                let msg = format!("recording '{rec}' is missing from {name}");
                problems.push(wav.problem(wav.entries[i].line, msg));
            }
        }
        for (rec, &i) in &table.first {
            if !wav.first.contains_key(rec) {
                let msg = format!("recording '{rec}' is not in wav.scp");
                problems.push(table.problem(table.entries[i].line, msg));
            }
        }
    }
}

/// Repairs the data directory `dir` like Kaldi's `utils/fix_data_dir.sh` (see the module
/// docs); with `opts.check_audio`, recordings whose audio file is missing or empty are dropped
/// too. `utt2spk` and `wav.scp` must exist. Each changed file is copied to `DIR/.backup/NAME`
/// (replacing an older backup of that name) before it is rewritten atomically.
pub fn fix_data_dir(dir: &Path, opts: &ValidateOptions) -> Result<FixReport> {
    let tables = load_all(dir, opts)?;
    for name in [UTT2SPK, WAV_SCP] {
        if !tables.contains_key(name) {
            return Err(Error::config(format!(
                "{}: missing; a data directory cannot be fixed without it",
                dir.join(name).display()
            )));
        }
    }
    let mut report = FixReport {
        backup_dir: dir.join(".backup"),
        ..FixReport::default()
    };
    for table in tables.values() {
        report
            .dropped_lines
            .extend(table.line_problems.iter().cloned());
    }
    sort_problems(dir, &mut report.dropped_lines);

    let has_segments = tables.contains_key(SEGMENTS);
    let utt2spk = &tables[UTT2SPK];
    let wav = &tables[WAV_SCP];
    let segments: BTreeMap<&str, Segment> = match tables.get(SEGMENTS) {
        Some(t) => t
            .valid
            .iter()
            .filter_map(|(k, &i)| {
                Segment::parse(&t.entries[i].value)
                    .ok()
                    .map(|s| (k.as_str(), s))
            })
            .collect(),
        None => BTreeMap::new(),
    };
    let utt_files: Vec<&Table> = tables
        .values()
        .filter(|t| t.spec.name != UTT2SPK && keys_of(t, has_segments) == Keys::Utt)
        .collect();
    let spk_files: Vec<&Table> = tables
        .values()
        .filter(|t| t.spec.keys == Keys::Spk && t.spec.name != SPK2UTT)
        .collect();
    let rec_files: Vec<&Table> = tables
        .values()
        .filter(|t| t.spec.keys == Keys::Rec && t.spec.name != WAV_SCP)
        .collect();

    // Why a recording (wav.scp key) cannot be kept, if it cannot.
    let rec_problem = |rec: &str| -> Option<String> {
        if !wav.valid.contains_key(rec) {
            return Some("recording has no valid entry in wav.scp".to_string());
        }
        rec_files
            .iter()
            .find(|t| !t.valid.contains_key(rec))
            .map(|t| format!("recording has no valid entry in {}", t.spec.name))
    };
    // Why an utterance cannot be kept, if it cannot: the first file that lacks it.
    let utt_problem = |utt: &str| -> Option<String> {
        let Some(spk) = utt2spk.value(utt) else {
            return Some("no valid entry in utt2spk".to_string());
        };
        if let Some(t) = utt_files.iter().find(|t| !t.valid.contains_key(utt)) {
            return Some(format!("no valid entry in {}", t.spec.name));
        }
        let rec = if has_segments {
            segments.get(utt).map(|s| s.recording.as_str())
        } else {
            Some(utt)
        };
        if let Some(why) = rec.and_then(rec_problem) {
            return Some(why);
        }
        spk_files
            .iter()
            .find(|t| !t.valid.contains_key(spk))
            .map(|t| format!("speaker has no valid entry in {}", t.spec.name))
    };

    let mut all_utts: BTreeSet<&str> = utt2spk.first.keys().map(String::as_str).collect();
    for t in &utt_files {
        all_utts.extend(t.first.keys().map(String::as_str));
    }
    let mut kept: BTreeSet<&str> = BTreeSet::new();
    for &utt in &all_utts {
        match utt_problem(utt) {
            None => {
                kept.insert(utt);
            }
            Some(why) => *report.drop_reasons.entry(why).or_insert(0) += 1,
        }
    }
    report.utts_kept = kept.len();
    report.utts_dropped = all_utts.len() - kept.len();

    let kept_speakers: BTreeSet<&str> = kept.iter().filter_map(|u| utt2spk.value(u)).collect();
    let all_speakers: BTreeSet<&str> = utt2spk
        .valid
        .keys()
        .filter_map(|u| utt2spk.value(u))
        .collect();
    report.speakers_dropped = all_speakers.len() - kept_speakers.len();
    let kept_recs: BTreeSet<&str> = if has_segments {
        kept.iter()
            .filter_map(|u| segments.get(u).map(|s| s.recording.as_str()))
            .collect()
    } else {
        kept.clone()
    };
    report.recordings_dropped = wav
        .first
        .keys()
        .filter(|r| !kept_recs.contains(r.as_str()))
        .count();

    // The new content of every file: valid first occurrences with kept keys, sorted.
    let mut new_files: Vec<(&'static str, Vec<u8>)> = Vec::new();
    for table in tables.values() {
        let keep: &BTreeSet<&str> = match keys_of(table, has_segments) {
            Keys::Utt => &kept,
            Keys::Rec => &kept_recs,
            Keys::Spk => &kept_speakers,
        };
        if table.spec.name == SPK2UTT {
            continue;
        }
        let lines = table
            .valid
            .iter()
            .filter(|(k, _)| keep.contains(k.as_str()))
            .map(|(k, &i)| (k.as_str(), table.entries[i].value.as_str()));
        new_files.push((table.spec.name, render(lines)));
    }
    let mut spk2utt: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for &utt in &kept {
        if let Some(spk) = utt2spk.value(utt) {
            spk2utt.entry(spk).or_default().push(utt);
        }
    }
    let spk2utt: Vec<(&str, String)> = spk2utt.into_iter().map(|(s, u)| (s, u.join(" "))).collect();
    new_files.push((
        SPK2UTT,
        render(spk2utt.iter().map(|(s, u)| (*s, u.as_str()))),
    ));
    new_files.sort_by_key(|(name, _)| FILES.iter().position(|s| s.name == *name));

    for (name, content) in new_files {
        let path = dir.join(name);
        let old = tables.get(name).map(|t| &t.bytes);
        if old == Some(&content) {
            continue;
        }
        if let Some(old) = old {
            std::fs::create_dir_all(&report.backup_dir)
                .map_err(|e| Error::io(&report.backup_dir, e))?;
            write_atomic(report.backup_dir.join(name), |w| w.write_all(old))?;
        }
        write_atomic(&path, |w| w.write_all(&content))?;
        report.changed.push(path);
    }
    Ok(report)
}

/// `key value` lines (`key` alone when the value is empty).
fn render<'a>(lines: impl Iterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in lines {
        out.extend_from_slice(k.as_bytes());
        if !v.is_empty() {
            out.push(b' ');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'\n');
    }
    out
}
