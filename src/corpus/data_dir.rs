//! Kaldi data directories: `wav.scp`, `text`, `utt2spk`, `spk2utt` and optional `segments`.
//!
//! Without `segments`, utterance ids are the keys of `wav.scp`; with it, each segment is an
//! utterance cut from a recording of `wav.scp`. `wav.scp` holds plain paths (no pipes); a
//! relative path is resolved against the current directory, as Kaldi does (not against the data
//! directory). `corpus::validate` checks and repairs a directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::corpus::table::{read_map, write_table};
use crate::error::{Error, Result};

/// One line of `segments`: `utt-id recording-id start end`, times in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    /// Key of the recording in `wav.scp`.
    pub recording: String,
    /// Start time in seconds, `>= 0`.
    pub start: f64,
    /// End time in seconds; -1 (as in Kaldi) means "to the end of the recording".
    pub end: f64,
}

impl Segment {
    /// Parses the value of a `segments` line (`recording-id start end`, seconds), with Kaldi's
    /// rules: `0 <= start`, and `end > start` or `end == -1`. The error says what is wrong.
    pub fn parse(value: &str) -> std::result::Result<Segment, String> {
        let fields: Vec<&str> = value.split_whitespace().collect();
        if fields.len() != 3 {
            return Err(format!(
                "expected 'utt-id recording-id start end', got {} fields",
                fields.len() + 1
            ));
        }
        let time = |s: &str, what: &str| match s.parse::<f64>() {
            Ok(t) if t.is_finite() => Ok(t),
            _ => Err(format!("bad {what} time '{s}'")),
        };
        let start = time(fields[1], "start")?;
        let end = time(fields[2], "end")?;
        if start < 0.0 {
            return Err(format!("negative start time {start}"));
        }
        if end != -1.0 && end <= start {
            return Err(format!(
                "end time {end} is not after start time {start} (use -1 for 'to the end')"
            ));
        }
        Ok(Segment {
            recording: fields[0].to_string(),
            start,
            end,
        })
    }
}

/// An in-memory data directory. Maps are keyed and sorted like the files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataDir {
    /// recording id (utterance id when there are no segments) -> audio path.
    pub wav_scp: BTreeMap<String, String>,
    /// utterance id -> transcript, when the directory has a `text` file.
    pub text: Option<BTreeMap<String, String>>,
    /// utterance id -> speaker id.
    pub utt2spk: BTreeMap<String, String>,
    /// utterance id -> segment, when the directory has a `segments` file.
    pub segments: Option<BTreeMap<String, Segment>>,
}

/// Where to find one utterance's audio.
#[derive(Debug, Clone, PartialEq)]
pub struct UttAudio {
    /// Utterance id.
    pub utt: String,
    /// Audio file, as written in `wav.scp`.
    pub path: PathBuf,
    /// `(start, end)` in seconds when cut from a longer recording; `end < 0` = to the end.
    pub segment: Option<(f64, f64)>,
}

impl DataDir {
    /// Reads a data directory (duplicate keys and unparsable segments are errors; use
    /// `corpus::validate` for a full report of every problem).
    pub fn read(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let wav_scp = read_map(dir.join("wav.scp"))?;
        let utt2spk = read_map(dir.join("utt2spk"))?;
        let text_path = dir.join("text");
        let text = if text_path.exists() {
            Some(read_map(&text_path)?)
        } else {
            None
        };
        let seg_path = dir.join("segments");
        let segments = if seg_path.exists() {
            Some(read_segments(&seg_path)?)
        } else {
            None
        };
        Ok(DataDir {
            wav_scp,
            text,
            utt2spk,
            segments,
        })
    }

    /// Writes every file, `spk2utt` derived from `utt2spk`; each file is written atomically.
    pub fn write(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_table(dir.join("wav.scp"), &self.wav_scp)?;
        write_table(dir.join("utt2spk"), &self.utt2spk)?;
        let spk2utt: Vec<(String, String)> = self
            .spk2utt()
            .into_iter()
            .map(|(s, u)| (s, u.join(" ")))
            .collect();
        write_table(dir.join("spk2utt"), spk2utt)?;
        if let Some(text) = &self.text {
            write_table(dir.join("text"), text)?;
        }
        if let Some(segments) = &self.segments {
            write_table(
                dir.join("segments"),
                segments.iter().map(|(u, s)| {
                    (
                        u,
                        format!("{} {} {}", s.recording, fmt_time(s.start), fmt_time(s.end)),
                    )
                }),
            )?;
        }
        Ok(())
    }

    /// Utterance ids in sorted order (keys of `utt2spk`).
    pub fn utt_ids(&self) -> Vec<String> {
        self.utt2spk.keys().cloned().collect()
    }

    /// speaker -> its utterances, both sorted.
    pub fn spk2utt(&self) -> BTreeMap<String, Vec<String>> {
        let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (utt, spk) in &self.utt2spk {
            map.entry(spk.clone()).or_default().push(utt.clone());
        }
        map
    }

    /// Resolves every utterance of `utt2spk` to its audio; an utterance whose recording is
    /// missing from `wav.scp` (or `segments`) is an error naming it.
    pub fn utt_audio(&self) -> Result<Vec<UttAudio>> {
        self.utt2spk
            .keys()
            .map(|utt| {
                let (rec, segment) = match &self.segments {
                    Some(segs) => {
                        let s = segs
                            .get(utt)
                            .ok_or_else(|| Error::utterance(utt, "missing from segments"))?;
                        (s.recording.as_str(), Some((s.start, s.end)))
                    }
                    None => (utt.as_str(), None),
                };
                let path = self.wav_scp.get(rec).ok_or_else(|| {
                    Error::utterance(utt, format!("recording '{rec}' missing from wav.scp"))
                })?;
                Ok(UttAudio {
                    utt: utt.clone(),
                    path: PathBuf::from(path),
                    segment,
                })
            })
            .collect()
    }

    /// Keeps only the utterances in `keep` (and the recordings they use); for writing a
    /// directory that matches the features that were actually computed.
    pub fn retain_utts(&mut self, keep: &std::collections::BTreeSet<String>) {
        self.utt2spk.retain(|u, _| keep.contains(u));
        if let Some(text) = &mut self.text {
            text.retain(|u, _| keep.contains(u));
        }
        match &mut self.segments {
            Some(segs) => {
                segs.retain(|u, _| keep.contains(u));
                let recs: std::collections::BTreeSet<&String> =
                    segs.values().map(|s| &s.recording).collect();
                self.wav_scp.retain(|r, _| recs.contains(r));
            }
            None => self.wav_scp.retain(|u, _| keep.contains(u)),
        }
    }
}

fn fmt_time(t: f64) -> String {
    // Rust's shortest round-trip form: "1.23", "-1", "12"; a parsed time is written back unchanged.
    if t == 0.0 {
        "0".to_string()
    } else {
        t.to_string()
    }
}

/// Reads `segments`: `utt-id recording-id start end`; the first bad line is an error naming it.
pub fn read_segments(path: &Path) -> Result<BTreeMap<String, Segment>> {
    let mut out = BTreeMap::new();
    for entry in crate::corpus::table::read_table(path)? {
        let segment =
            Segment::parse(&entry.value).map_err(|msg| Error::parse(path, entry.line, msg))?;
        if out.insert(entry.key.clone(), segment).is_some() {
            return Err(Error::parse(
                path,
                entry.line,
                format!("duplicate key '{}'", entry.key),
            ));
        }
    }
    Ok(out)
}
