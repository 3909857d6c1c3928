//! Phone times -> per-frame labels, with the frame formula of the features.
//!
//! Frame `t` (0-based) is labelled with the phone whose segment `[start, end)` holds the
//! frame's centre:
//! - `snip_edges = true`: frame `t` covers `[t * shift, t * shift + length)`, centre
//!   `t * shift + length / 2`;
//! - `snip_edges = false`: frame `t` is centred on `t * shift + shift / 2`.
//!
//! The number of frames always comes from the feature side, so labels and features have the
//! same length; the frames the phone times cover ([`FrameGeometry::num_frames`] of the last end
//! time) must agree with it within a named tolerance ([`DEFAULT_FRAME_TOLERANCE`], 2 frames as
//! in Kaldi). Frames whose centre lies in a gap between phones (over 2 ms) or past either end of
//! the labels get the set's silence phone; so do the left context of the first phone and the
//! right context of the last.
//!
//! Each phone segment's frames are split into 3 near-equal runs: HMM states 0, 1, 2 (begin,
//! middle, end); a phone shorter than 3 frames gets the first states only.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::features::FbankOptions;
use crate::labels::ctm::{read_ctm, PhoneSegment};
use crate::labels::phones::PhoneSet;

/// Default tolerance, in frames, between the frame count the labels cover and the features'
/// frame count (Kaldi's alignment tools allow 2).
pub const DEFAULT_FRAME_TOLERANCE: usize = 2;

/// HMM states per phone.
pub const NUM_STATES: u8 = 3;

/// Gaps between phone segments up to this long (seconds) are rounding, not silence: their
/// frames go to the following phone.
const MIN_GAP_S: f64 = 0.002;

/// Framing in seconds, as the features do it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FrameGeometry {
    /// Frame shift in seconds.
    pub shift_s: f64,
    /// Frame length in seconds.
    pub length_s: f64,
    /// Kaldi's `--snip-edges`.
    pub snip_edges: bool,
}

impl FrameGeometry {
    /// Kaldi's defaults: 10 ms shift, 25 ms frames, snip-edges true.
    pub fn kaldi() -> Self {
        FrameGeometry {
            shift_s: 0.010,
            length_s: 0.025,
            snip_edges: true,
        }
    }

    /// The framing of a feature configuration (shift and length rounded to whole samples as the
    /// features are).
    pub fn from_fbank(opts: &FbankOptions) -> Self {
        let fs = opts.frame.sample_frequency as f64;
        FrameGeometry {
            shift_s: opts.window_shift() as f64 / fs,
            length_s: opts.window_size() as f64 / fs,
            snip_edges: opts.frame.snip_edges,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.shift_s > 0.0
            && self.shift_s.is_finite()
            && self.length_s > 0.0
            && self.length_s.is_finite())
        {
            return Err(Error::config(format!(
                "bad frame geometry: shift {} s, length {} s",
                self.shift_s, self.length_s
            )));
        }
        Ok(())
    }

    /// Centre of frame `t` in seconds.
    pub fn centre(&self, t: usize) -> f64 {
        let start = t as f64 * self.shift_s;
        if self.snip_edges {
            start + 0.5 * self.length_s
        } else {
            start + 0.5 * self.shift_s
        }
    }

    /// Frames in `duration_s` seconds of audio: `1 + (d - length) / shift` (0 when `d < length`)
    /// with snip-edges, else `round(d / shift)`; Kaldi's formula in seconds.
    pub fn num_frames(&self, duration_s: f64) -> usize {
        // The epsilon absorbs binary rounding of values like 3.075 / 0.01.
        const EPS: f64 = 1e-6;
        if duration_s.is_nan() || duration_s <= 0.0 {
            return 0;
        }
        if self.snip_edges {
            if duration_s + EPS < self.length_s {
                0
            } else {
                1 + ((duration_s - self.length_s) / self.shift_s + EPS)
                    .floor()
                    .max(0.0) as usize
            }
        } else {
            (duration_s / self.shift_s + 0.5 + EPS).floor() as usize
        }
    }
}

/// One frame's label: phone id and HMM state (0, 1 or 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameLabel {
    pub phone: u32,
    pub state: u8,
}

/// One frame's label with the phones before and after its phone segment (silence at the
/// utterance edges), as the senone tree asks about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextLabel {
    pub left: u32,
    pub phone: u32,
    pub right: u32,
    pub state: u8,
}

/// A phone segment by id, `[start, end)` in seconds.
#[derive(Debug, Clone, Copy)]
struct IdSegment {
    phone: u32,
    start: f64,
    end: f64,
}

/// Turns phone times into frame labels for one phone set, framing and tolerance.
#[derive(Debug, Clone)]
pub struct FrameLabeler<'a> {
    pub set: &'a PhoneSet,
    pub geometry: FrameGeometry,
    /// Largest allowed difference between the frames the labels cover and the features' count.
    pub tolerance: usize,
}

impl<'a> FrameLabeler<'a> {
    /// A labeler with [`DEFAULT_FRAME_TOLERANCE`].
    pub fn new(set: &'a PhoneSet, geometry: FrameGeometry) -> Self {
        FrameLabeler {
            set,
            geometry,
            tolerance: DEFAULT_FRAME_TOLERANCE,
        }
    }

    /// The same labeler with another tolerance (frames).
    pub fn with_tolerance(mut self, tolerance: usize) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// Frames the phone times cover: [`FrameGeometry::num_frames`] of the last end time.
    pub fn label_frames(&self, phones: &[PhoneSegment]) -> usize {
        phones.last().map_or(0, |p| self.geometry.num_frames(p.end))
    }

    /// Phone ids with silence filled into gaps and past both ends: contiguous segments, the first
    /// starting at -inf and the last ending at +inf. Checks order, phones and the frame count.
    fn fill(&self, phones: &[PhoneSegment], num_frames: usize) -> Result<Vec<IdSegment>> {
        self.geometry.validate()?;
        let sil = self.set.silence_id().ok_or_else(|| {
            Error::config(format!("phone set {} has no silence phone; frame labels need one for gaps and utterance edges", self.set.name()))
        })?;
        if phones.is_empty() {
            return Err(Error::config("no phone segments"));
        }
        let covered = self.label_frames(phones);
        if covered.abs_diff(num_frames) > self.tolerance {
            return Err(Error::Mismatch(format!(
                "phone times cover {covered} frames (to {:.3} s) but the features have {num_frames} (tolerance {})",
                phones.last().map_or(0.0, |p| p.end),
                self.tolerance
            )));
        }
        let mut filled: Vec<IdSegment> = Vec::with_capacity(phones.len() + 2);
        let mut prev_end = 0.0_f64;
        for p in phones {
            let phone = self.set.lookup(&p.phone).ok_or_else(|| {
                Error::config(format!(
                    "unknown phone '{}' (not in phone set {})",
                    p.phone,
                    self.set.name()
                ))
            })?;
            if !(p.start.is_finite() && p.end.is_finite() && p.start >= 0.0 && p.end >= p.start) {
                return Err(Error::config(format!(
                    "phone '{}' has bad times {} .. {}",
                    p.phone, p.start, p.end
                )));
            }
            if p.start + 1e-6 < prev_end {
                return Err(Error::config(format!(
                    "phone '{}' starts at {} s, before the previous phone ends ({prev_end} s)",
                    p.phone, p.start
                )));
            }
            let mut seg = IdSegment {
                phone,
                start: p.start,
                end: p.end,
            };
            if p.start - prev_end > MIN_GAP_S {
                match filled.last_mut() {
                    Some(last) if self.set.is_silence(last.phone) => last.end = p.start,
                    _ if self.set.is_silence(phone) => seg.start = prev_end,
                    _ => filled.push(IdSegment {
                        phone: sil,
                        start: prev_end,
                        end: p.start,
                    }),
                }
            }
            filled.push(seg);
            prev_end = p.end;
        }
        let last = filled.last_mut().expect("at least one phone");
        if self.set.is_silence(last.phone) {
            last.end = f64::INFINITY;
        } else {
            filled.push(IdSegment {
                phone: sil,
                start: prev_end,
                end: f64::INFINITY,
            });
        }
        filled[0].start = f64::NEG_INFINITY;
        Ok(filled)
    }

    /// Index into `filled` of each frame's segment.
    fn frame_segments(&self, filled: &[IdSegment], num_frames: usize) -> Vec<usize> {
        let mut idx = 0;
        (0..num_frames)
            .map(|t| {
                let c = self.geometry.centre(t);
                while idx + 1 < filled.len() && c >= filled[idx].end {
                    idx += 1;
                }
                idx
            })
            .collect()
    }

    /// Phone id per frame: `[num_frames]`.
    pub fn phones(&self, phones: &[PhoneSegment], num_frames: usize) -> Result<Vec<u32>> {
        let filled = self.fill(phones, num_frames)?;
        Ok(self
            .frame_segments(&filled, num_frames)
            .into_iter()
            .map(|i| filled[i].phone)
            .collect())
    }

    /// `(phone, state)` per frame: `[num_frames]`.
    pub fn states(&self, phones: &[PhoneSegment], num_frames: usize) -> Result<Vec<FrameLabel>> {
        Ok(self
            .contexts(phones, num_frames)?
            .into_iter()
            .map(|c| FrameLabel {
                phone: c.phone,
                state: c.state,
            })
            .collect())
    }

    /// `(left, phone, right, state)` per frame: `[num_frames]`.
    pub fn contexts(
        &self,
        phones: &[PhoneSegment],
        num_frames: usize,
    ) -> Result<Vec<ContextLabel>> {
        let filled = self.fill(phones, num_frames)?;
        let sil = self.set.silence_id().expect("checked by fill");
        let seg_of = self.frame_segments(&filled, num_frames);
        let mut out = Vec::with_capacity(num_frames);
        let mut run_start = 0;
        while run_start < num_frames {
            let seg = seg_of[run_start];
            let run_end = run_start
                + seg_of[run_start..]
                    .iter()
                    .take_while(|&&s| s == seg)
                    .count();
            let n = run_end - run_start;
            let left = if seg > 0 { filled[seg - 1].phone } else { sil };
            let right = filled.get(seg + 1).map_or(sil, |s| s.phone);
            for k in 0..n {
                // k-th of n frames -> state floor(3k / n): three near-equal runs.
                let state = (k * NUM_STATES as usize / n) as u8;
                out.push(ContextLabel {
                    left,
                    phone: filled[seg].phone,
                    right,
                    state,
                });
            }
            run_start = run_end;
        }
        Ok(out)
    }

    /// Labels a corpus: every utterance that has both phone times and a feature frame count.
    /// Utterances whose counts disagree beyond the tolerance are left out and listed in the
    /// report with the missing ones; an unknown phone or bad times is an error naming the
    /// utterance.
    pub fn label_corpus(
        &self,
        phones: &BTreeMap<String, Vec<PhoneSegment>>,
        feature_frames: &BTreeMap<String, usize>,
    ) -> Result<(BTreeMap<String, Vec<ContextLabel>>, FrameCountReport)> {
        let label_frames: BTreeMap<String, usize> = phones
            .iter()
            .map(|(u, p)| (u.clone(), self.label_frames(p)))
            .collect();
        let report = check_frame_counts(&label_frames, feature_frames, self.tolerance);
        let mut out = BTreeMap::new();
        for (utt, segs) in phones {
            let Some(&n) = feature_frames.get(utt) else {
                continue;
            };
            if label_frames[utt].abs_diff(n) > self.tolerance {
                continue;
            }
            out.insert(
                utt.clone(),
                self.contexts(segs, n)
                    .map_err(|e| Error::utterance(utt, e))?,
            );
        }
        Ok((out, report))
    }
}

/// Phone id per frame for `num_frames` feature frames (see the module docs for the formula);
/// uses [`DEFAULT_FRAME_TOLERANCE`].
pub fn frame_phone_labels(
    phones: &[PhoneSegment],
    num_frames: usize,
    frame_shift_s: f64,
    frame_length_s: f64,
    snip_edges: bool,
    set: &PhoneSet,
) -> Result<Vec<u32>> {
    let geometry = FrameGeometry {
        shift_s: frame_shift_s,
        length_s: frame_length_s,
        snip_edges,
    };
    FrameLabeler::new(set, geometry).phones(phones, num_frames)
}

/// Reads a CTM and checks every phone against `set`: an unknown phone is an error naming the
/// file and line. Phones come back with the set's canonical names (`pau` -> `sil`, `AH0` -> `ah`).
pub fn read_phone_times(
    path: impl AsRef<Path>,
    set: &PhoneSet,
) -> Result<BTreeMap<String, Vec<PhoneSegment>>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    for (i, line) in text.lines().enumerate() {
        if let Some(phone) = line.split_whitespace().nth(4) {
            if set.lookup(phone).is_none() {
                return Err(Error::parse(
                    path,
                    i + 1,
                    format!("unknown phone '{phone}' (not in phone set {})", set.name()),
                ));
            }
        }
    }
    let mut ctm = read_ctm(path)?;
    for segs in ctm.values_mut() {
        for s in segs.iter_mut() {
            let id = set.lookup(&s.phone).expect("checked above");
            s.phone = set.phone(id).expect("id from the set").to_string();
        }
    }
    Ok(ctm)
}

/// Frame-count disagreement of one utterance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameCountMismatch {
    pub utt: String,
    /// Frames the labels cover.
    pub label_frames: usize,
    /// Frames of the features.
    pub feature_frames: usize,
}

/// Result of comparing label and feature frame counts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameCountReport {
    /// Tolerance used, in frames.
    pub tolerance: usize,
    /// Utterances present on both sides.
    pub checked: usize,
    /// Utterances whose counts differ by more than the tolerance.
    pub mismatches: Vec<FrameCountMismatch>,
    /// Utterances with features but no labels.
    pub missing_labels: Vec<String>,
    /// Utterances with labels but no features.
    pub missing_features: Vec<String>,
}

impl FrameCountReport {
    /// True when no utterance present on both sides disagrees beyond the tolerance.
    pub fn is_ok(&self) -> bool {
        self.mismatches.is_empty()
    }

    /// `Err(Error::Mismatch)` listing every mismatch when there is any.
    pub fn into_result(self) -> Result<Self> {
        if self.is_ok() {
            Ok(self)
        } else {
            Err(Error::Mismatch(self.to_string()))
        }
    }
}

impl std::fmt::Display for FrameCountReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frame counts: {} utterances checked, {} agree within {} frames",
            self.checked,
            self.checked - self.mismatches.len(),
            self.tolerance
        )?;
        for m in &self.mismatches {
            write!(
                f,
                "\n  {}: labels cover {} frames, features have {} (difference {})",
                m.utt,
                m.label_frames,
                m.feature_frames,
                m.label_frames.abs_diff(m.feature_frames)
            )?;
        }
        if !self.missing_labels.is_empty() {
            write!(
                f,
                "\n  {} utterances have features but no labels: {}",
                self.missing_labels.len(),
                self.missing_labels.join(" ")
            )?;
        }
        if !self.missing_features.is_empty() {
            write!(
                f,
                "\n  {} utterances have labels but no features: {}",
                self.missing_features.len(),
                self.missing_features.join(" ")
            )?;
        }
        Ok(())
    }
}

/// Compares frames covered by labels with feature frame counts (`utt2num_frames`), per
/// utterance.
pub fn check_frame_counts(
    label_frames: &BTreeMap<String, usize>,
    feature_frames: &BTreeMap<String, usize>,
    tolerance: usize,
) -> FrameCountReport {
    let mut report = FrameCountReport {
        tolerance,
        ..Default::default()
    };
    for (utt, &l) in label_frames {
        match feature_frames.get(utt) {
            Some(&n) => {
                report.checked += 1;
                if l.abs_diff(n) > tolerance {
                    report.mismatches.push(FrameCountMismatch {
                        utt: utt.clone(),
                        label_frames: l,
                        feature_frames: n,
                    });
                }
            }
            None => report.missing_features.push(utt.clone()),
        }
    }
    report.missing_labels = feature_frames
        .keys()
        .filter(|u| !label_frames.contains_key(*u))
        .cloned()
        .collect();
    report
}
