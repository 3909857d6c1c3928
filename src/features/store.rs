//! The feature store: a directory of Kaldi binary archives that training reads directly.
//!
//! ```text
//! FEAT_DIR/feats.scp        utt-id PATH/data/feats.N.ark:OFFSET   (Kaldi's script format)
//! FEAT_DIR/data/feats.N.ark  binary float matrices [frames, dim], one per utterance
//! FEAT_DIR/utt2num_frames   utt-id frames
//! FEAT_DIR/frame_shift      seconds per frame, e.g. 0.01
//! FEAT_DIR/fbank.conf       the complete Kaldi configuration used
//! FEAT_DIR/fbank.json       the same, as serialised [`FbankOptions`]
//! ```
//!
//! Each utterance is contiguous in its archive, and the archives are memory-mapped, so a read
//! is one copy out of the page cache. Kaldi reads `feats.scp` as it is, and a Kaldi feature
//! directory opens here once it has a `frame_shift` file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::corpus::table::read_table;
use crate::error::{Error, Result};
use crate::features::kaldi_io::ScpReader;
use crate::features::matrix::Matrix;
use crate::features::options::FbankOptions;

/// Read access to a feature directory. Reads take `&self` and may run in parallel.
pub struct FeatureStore {
    dir: PathBuf,
    scp: ScpReader,
    utts: Vec<String>,
    /// Frames per utterance, in `utts` order.
    frames: Vec<usize>,
    dim: usize,
    frame_shift: f64,
    options: Option<FbankOptions>,
}

impl FeatureStore {
    /// Opens `feat_dir`: maps the archives of `feats.scp`, reads every matrix header, and
    /// checks that `utt2num_frames` (when present) names the same utterances with the same
    /// frame counts, that all utterances have one dimension, and that it matches
    /// `fbank.json` (when present). The frame shift comes from `frame_shift`, else from
    /// `fbank.json`.
    pub fn open(feat_dir: &Path) -> Result<Self> {
        let dir = feat_dir.to_path_buf();
        let scp_path = dir.join("feats.scp");
        let scp = ScpReader::open(&scp_path)?;
        let utts: Vec<String> = scp.keys().map(str::to_string).collect();

        let json_path = dir.join("fbank.json");
        let options = if json_path.exists() {
            let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
            let opts: FbankOptions = serde_json::from_str(&text)
                .map_err(|e| Error::parse(&json_path, e.line(), e.to_string()))?;
            Some(opts)
        } else {
            None
        };

        let mut frames = Vec::with_capacity(utts.len());
        let mut dim: Option<usize> = options.as_ref().map(FbankOptions::dim);
        for (i, utt) in utts.iter().enumerate() {
            let (rows, cols) = scp.shape(i)?;
            if rows > 0 {
                match dim {
                    None => dim = Some(cols),
                    Some(d) if d != cols => {
                        let source = if options.is_some() {
                            "fbank.json says"
                        } else {
                            "earlier utterances have"
                        };
                        return Err(Error::Mismatch(format!(
                            "{}: utterance {utt} has dimension {cols}, {source} {d}",
                            scp_path.display()
                        )));
                    }
                    Some(_) => {}
                }
            }
            frames.push(rows);
        }

        let n2f_path = dir.join("utt2num_frames");
        if n2f_path.exists() {
            check_num_frames(&n2f_path, &scp_path, &utts, &frames)?;
        }

        let shift_path = dir.join("frame_shift");
        let frame_shift = if shift_path.exists() {
            let text =
                std::fs::read_to_string(&shift_path).map_err(|e| Error::io(&shift_path, e))?;
            let v: f64 = text.trim().parse().map_err(|_| {
                Error::parse(
                    &shift_path,
                    1,
                    format!("expected seconds, got '{}'", text.trim()),
                )
            })?;
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::parse(
                    &shift_path,
                    1,
                    format!("frame shift must be positive, got {v}"),
                ));
            }
            v
        } else if let Some(o) = &options {
            o.frame_shift_seconds()
        } else {
            return Err(Error::config(format!(
                "{}: no frame_shift file and no fbank.json; write the frame shift in seconds there (Kaldi's default is 0.01)",
                dir.display()
            )));
        };

        Ok(FeatureStore {
            dir,
            scp,
            utts,
            frames,
            dim: dim.unwrap_or(0),
            frame_shift,
            options,
        })
    }

    /// The directory this store was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Utterance ids in `feats.scp` order.
    pub fn utts(&self) -> &[String] {
        &self.utts
    }

    /// Number of frames of `utt`, or `None` if it is not in the store.
    pub fn num_frames(&self, utt: &str) -> Option<usize> {
        self.scp.position(utt).map(|i| self.frames[i])
    }

    /// Total frames over all utterances.
    pub fn total_frames(&self) -> usize {
        self.frames.iter().sum()
    }

    /// Feature dimension (0 for an empty store without `fbank.json`).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Seconds between frames.
    pub fn frame_shift(&self) -> f64 {
        self.frame_shift
    }

    /// The options the features were computed with, when `fbank.json` is present.
    pub fn options(&self) -> Option<&FbankOptions> {
        self.options.as_ref()
    }

    /// The features of `utt`, `[frames, dim]`.
    pub fn get(&self, utt: &str) -> Result<Matrix> {
        let i = self
            .scp
            .position(utt)
            .ok_or_else(|| Error::utterance(utt, "not in the feature store"))?;
        let m = self.scp.read(i)?;
        if m.rows != self.frames[i] || (m.rows > 0 && m.cols != self.dim) {
            // Only possible if an archive changed after the store was opened.
            return Err(Error::utterance(
                utt,
                format!(
                    "read {} x {}, expected {} x {} (archive changed?)",
                    m.rows, m.cols, self.frames[i], self.dim
                ),
            ));
        }
        Ok(m)
    }
}

/// Checks `utt2num_frames` against the headers: same utterances, same counts.
fn check_num_frames(path: &Path, scp_path: &Path, utts: &[String], frames: &[usize]) -> Result<()> {
    let mut listed: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for e in read_table(path)? {
        let n: usize = e.value.parse().map_err(|_| {
            Error::parse(
                path,
                e.line,
                format!("expected a frame count, got '{}'", e.value),
            )
        })?;
        if listed.insert(e.key.clone(), (n, e.line)).is_some() {
            return Err(Error::parse(
                path,
                e.line,
                format!("duplicate key '{}'", e.key),
            ));
        }
    }
    for (utt, &rows) in utts.iter().zip(frames) {
        match listed.remove(utt) {
            None => {
                return Err(Error::Mismatch(format!(
                    "{}: utterance {utt} is in {} but not in utt2num_frames",
                    path.display(),
                    scp_path.display()
                )))
            }
            Some((n, line)) if n != rows => {
                return Err(Error::Mismatch(format!(
                    "{}:{line}: utterance {utt} has {n} frames there but {rows} in its archive",
                    path.display()
                )))
            }
            Some(_) => {}
        }
    }
    if let Some((utt, (_, line))) = listed.into_iter().next() {
        return Err(Error::Mismatch(format!(
            "{}:{line}: utterance {utt} is not in {}",
            path.display(),
            scp_path.display()
        )));
    }
    Ok(())
}
