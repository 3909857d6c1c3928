//! Frame-level scores of an acoustic model against senone alignments (and optionally a teacher).
//!
//! [`Scorer`] accumulates over utterances: the caller hands it, per utterance, the model's
//! per-frame scores `[frames, S]` (logits or log-posteriors: both give the same softmax), the
//! alignment (one senone id per frame) and optionally the teacher's logits `[frames, S]`.
//! [`Scorer::finish`] returns a [`Score`] (serde, JSON) with:
//!
//! - frame accuracy (argmax == label), top-N accuracy, cross-entropy of the label (nats/frame);
//! - phone accuracy: the predicted senone's phone == the label's phone;
//! - with a teacher: agreement with the teacher's argmax and KL(teacher || student) (nats/frame);
//! - each of those again without silence frames (frames whose *label's* phone is silence);
//! - per-phone accuracies, the TIMIT 61 -> 39 folded phone accuracy (`fold39`), and the most
//!   frequent phone confusions.
//!
//! Accuracies are fractions in [0, 1]; a metric over no frames is `null`. Log-softmax is taken
//! in f64 per frame, shifted by the frame's maximum, so large logits do not overflow.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::labels::phones::{fold_to_39, PhoneSet, SILENCE_ALIASES};
use crate::labels::tree::SenoneInfo;

/// How many confusions a [`Score`] keeps.
pub const TOP_CONFUSIONS: usize = 20;

/// What counts as silence and which extra figures to compute.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreConfig {
    /// Phone names whose frames are left out of the "without silence" figures (compared
    /// case-insensitively, so `SIL` matches `sil`).
    pub silence_phones: Vec<String>,
    /// N of the top-N accuracy (the label among the N highest scores).
    pub top_n: usize,
    /// Also score phones after TIMIT's 61 -> 39 folding (every phone must be a TIMIT 61 or 48
    /// label; frames labelled `q`, which has no fold, are left out of the folded figures).
    pub fold39: bool,
}

impl Default for ScoreConfig {
    /// Silences: `sil sp spn pau h# <sil> silence epi`; top-5; no folding.
    fn default() -> Self {
        let mut silence: Vec<String> = SILENCE_ALIASES
            .iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.to_string())
            .collect();
        silence.push("epi".to_string());
        ScoreConfig {
            silence_phones: silence,
            top_n: 5,
            fold39: false,
        }
    }
}

impl ScoreConfig {
    /// The silences of a phone set (its `silence` class), top-5, folding for the TIMIT sets.
    pub fn for_phone_set(phones: &PhoneSet) -> Self {
        let silence_phones = phones
            .silence_ids()
            .iter()
            .filter_map(|&id| phones.phone(id).map(str::to_string))
            .collect();
        ScoreConfig {
            silence_phones,
            top_n: 5,
            fold39: matches!(phones.name(), "timit61" | "timit48"),
        }
    }
}

/// Facts about the scored model that the caller fills in (all optional; `null` in JSON when
/// unknown, and `-` in comparison tables).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelInfo {
    /// Display name.
    pub name: Option<String>,
    /// Number of parameters.
    pub params: Option<u64>,
    /// Millions of floating-point operations (multiply and add counted as 2) per frame.
    pub mflops_per_frame: Option<f64>,
    /// Size of the fp32 weights in bytes.
    pub bytes_fp32: Option<u64>,
    /// Size of the int8-quantised weights in bytes.
    pub bytes_int8: Option<u64>,
    /// Single-core real-time factor (compute time / audio time).
    pub rtf: Option<f64>,
}

/// Figures over one set of frames (all frames, or those without silence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Frames counted.
    pub frames: u64,
    /// Fraction of frames whose argmax senone is the label.
    pub frame_acc: Option<f64>,
    /// Fraction of frames whose label is among the top-N senones.
    pub top_n_acc: Option<f64>,
    /// Mean `-log softmax(scores)[label]`, nats per frame.
    pub cross_entropy: Option<f64>,
    /// Fraction of frames whose argmax senone's phone is the label's phone.
    pub phone_acc: Option<f64>,
    /// Frames that had teacher logits.
    pub teacher_frames: u64,
    /// Fraction of teacher frames where student and teacher argmax agree.
    pub teacher_agreement: Option<f64>,
    /// Mean KL(teacher || student) over teacher frames, nats per frame.
    pub kl: Option<f64>,
}

/// Per-phone figures, for frames whose label belongs to the phone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneScore {
    pub phone: String,
    /// Whether the phone counts as silence.
    pub silence: bool,
    pub frames: u64,
    /// Fraction whose argmax senone is the label.
    pub frame_acc: Option<f64>,
    /// Fraction whose argmax senone's phone is this phone.
    pub phone_acc: Option<f64>,
}

/// Phone accuracy after TIMIT's 61 -> 39 folding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldedScore {
    /// Frames whose label has a fold (not `q`).
    pub frames: u64,
    /// Fraction whose folded predicted phone equals the folded label phone.
    pub phone_acc: Option<f64>,
    /// Frames among those whose folded label is not `sil`.
    pub frames_nonsil: u64,
    /// The same fraction over those frames.
    pub phone_acc_nonsil: Option<f64>,
}

/// One (label phone -> predicted phone) confusion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confusion {
    /// The label's phone.
    pub truth: String,
    /// The phone of the argmax senone.
    pub predicted: String,
    /// Frames with this confusion.
    pub count: u64,
    /// `count` over the frames labelled `truth`.
    pub fraction: f64,
}

/// The result of scoring one model on a set of utterances.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Caller-supplied facts about the model.
    #[serde(default)]
    pub model: ModelInfo,
    /// Utterances scored.
    pub utterances: u64,
    /// Number of senones `S`.
    pub senones: usize,
    /// N of the top-N accuracy.
    pub top_n: usize,
    /// The silence phones used.
    pub silence_phones: Vec<String>,
    /// All frames.
    pub all: Metrics,
    /// Frames whose label's phone is not silence.
    pub nonsil: Metrics,
    /// Per label phone, in phone order (first appearance in the senone map); phones with
    /// frames only.
    pub phones: Vec<PhoneScore>,
    /// TIMIT 61 -> 39 folded phone accuracy, when asked for.
    pub folded39: Option<FoldedScore>,
    /// The most frequent confusions (true phone != predicted phone), most frequent first.
    pub confusions: Vec<Confusion>,
}

impl Score {
    /// Writes the score as pretty JSON (atomically).
    pub fn write_json(&self, path: impl AsRef<Path>) -> Result<()> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::config(format!("score to JSON: {e}")))?;
        write_atomic(path, |w| {
            use std::io::Write;
            w.write_all(text.as_bytes())?;
            w.write_all(b"\n")
        })
    }

    /// Reads a score written by [`Score::write_json`].
    pub fn read_json(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::parse(path, e.line(), e.to_string()))
    }

    /// A human-readable report in markdown: the summary figures (percentages with 2
    /// decimals), the per-phone table and the confusions.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let name = self.model.name.as_deref().unwrap_or("model");
        s.push_str(&format!(
            "# Score: {name}\n\n{} utterances, {} frames ({} without silence), {} senones\n\n",
            self.utterances, self.all.frames, self.nonsil.frames, self.senones
        ));
        s.push_str("| metric | all frames | w/o silence |\n|---|---:|---:|\n");
        // (label, field, shown as a percentage)
        type Row = (&'static str, fn(&Metrics) -> Option<f64>, bool);
        let rows: [Row; 6] = [
            ("frame accuracy %", |m| m.frame_acc, true),
            ("top-N accuracy %", |m| m.top_n_acc, true),
            ("phone accuracy %", |m| m.phone_acc, true),
            ("cross-entropy (nats/frame)", |m| m.cross_entropy, false),
            ("teacher agreement %", |m| m.teacher_agreement, true),
            ("KL(teacher||student) (nats/frame)", |m| m.kl, false),
        ];
        for (label, get, pct) in rows {
            let label = label.replace("top-N", &format!("top-{}", self.top_n));
            let fmt = |v: Option<f64>| match v {
                Some(v) if pct => format!("{:.2}", 100.0 * v),
                Some(v) => format!("{v:.4}"),
                None => "-".to_string(),
            };
            s.push_str(&format!(
                "| {label} | {} | {} |\n",
                fmt(get(&self.all)),
                fmt(get(&self.nonsil))
            ));
        }
        if let Some(f) = &self.folded39 {
            s.push_str(&format!(
                "| phone accuracy % (39 folded) | {} | {} |\n",
                pct_or_dash(f.phone_acc),
                pct_or_dash(f.phone_acc_nonsil)
            ));
        }
        s.push_str("\n## Per phone\n\n| phone | frames | frame acc % | phone acc % |\n|---|---:|---:|---:|\n");
        for p in &self.phones {
            let mark = if p.silence { " (sil)" } else { "" };
            s.push_str(&format!(
                "| {}{mark} | {} | {} | {} |\n",
                p.phone,
                p.frames,
                pct_or_dash(p.frame_acc),
                pct_or_dash(p.phone_acc)
            ));
        }
        s.push_str("\n## Most frequent confusions\n\n| true | predicted | frames | % of true |\n|---|---|---:|---:|\n");
        for c in &self.confusions {
            s.push_str(&format!(
                "| {} | {} | {} | {:.2} |\n",
                c.truth,
                c.predicted,
                c.count,
                100.0 * c.fraction
            ));
        }
        s
    }
}

/// `{:.2}` of a percentage, or `-`.
pub(crate) fn pct_or_dash(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.2}", 100.0 * v))
}

/// The phone name of every senone, from `senones.txt` rows and the phone set they index.
pub fn senone_phones(senones: &[SenoneInfo], phones: &PhoneSet) -> Result<Vec<String>> {
    senones
        .iter()
        .map(|s| {
            phones.phone(s.phone).map(str::to_string).ok_or_else(|| {
                Error::Mismatch(format!(
                    "senone {} has phone id {}, but phone set '{}' has {} phones",
                    s.senone,
                    s.phone,
                    phones.name(),
                    phones.len()
                ))
            })
        })
        .collect()
}

/// Running sums over one set of frames.
#[derive(Debug, Clone, Default)]
struct Acc {
    frames: u64,
    correct: u64,
    top_n: u64,
    ce: f64,
    phone_correct: u64,
    teacher_frames: u64,
    agree: u64,
    kl: f64,
}

impl Acc {
    fn metrics(&self) -> Metrics {
        let frac = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let mean = |x: f64, d: u64| (d > 0).then(|| x / d as f64);
        Metrics {
            frames: self.frames,
            frame_acc: frac(self.correct, self.frames),
            top_n_acc: frac(self.top_n, self.frames),
            cross_entropy: mean(self.ce, self.frames),
            phone_acc: frac(self.phone_correct, self.frames),
            teacher_frames: self.teacher_frames,
            teacher_agreement: frac(self.agree, self.teacher_frames),
            kl: mean(self.kl, self.teacher_frames),
        }
    }
}

/// Accumulates frame scores over utterances; see the module docs.
#[derive(Debug, Clone)]
pub struct Scorer {
    cfg: ScoreConfig,
    /// Distinct phone names, in order of first appearance in the senone map.
    phones: Vec<String>,
    phone_is_silence: Vec<bool>,
    /// Senone id -> index into `phones`.
    senone_phone: Vec<usize>,
    /// Phone index -> index into `folded_names` (None: no fold, i.e. `q`); empty without fold39.
    folded: Vec<Option<usize>>,
    folded_is_silence: Vec<bool>,
    all: Acc,
    nonsil: Acc,
    per_phone_frames: Vec<u64>,
    per_phone_correct: Vec<u64>,
    per_phone_phone_correct: Vec<u64>,
    /// `[phones, phones]` counts, row = label phone, column = predicted phone.
    confusion: Vec<u64>,
    folded_acc: [u64; 4], // frames, correct, frames nonsil, correct nonsil
    seen: HashSet<String>,
    // Per-frame scratch, reused: log-softmax of student and teacher.
    student_lp: Vec<f64>,
    teacher_lp: Vec<f64>,
}

impl Scorer {
    /// A scorer for `senone_to_phone.len()` senones; `senone_to_phone[s]` is the phone name of
    /// senone `s` (see [`senone_phones`]).
    pub fn new(senone_to_phone: Vec<String>, cfg: ScoreConfig) -> Result<Self> {
        if senone_to_phone.is_empty() {
            return Err(Error::config("scorer: empty senone -> phone map"));
        }
        if cfg.top_n == 0 {
            return Err(Error::config("scorer: top_n must be at least 1"));
        }
        let silence: HashSet<String> = cfg
            .silence_phones
            .iter()
            .map(|s| s.to_ascii_lowercase())
            .collect();
        let mut phones: Vec<String> = Vec::new();
        let mut senone_phone = Vec::with_capacity(senone_to_phone.len());
        for p in &senone_to_phone {
            let idx = match phones.iter().position(|q| q == p) {
                Some(i) => i,
                None => {
                    phones.push(p.clone());
                    phones.len() - 1
                }
            };
            senone_phone.push(idx);
        }
        let phone_is_silence: Vec<bool> = phones
            .iter()
            .map(|p| silence.contains(&p.to_ascii_lowercase()))
            .collect();
        let (mut folded, mut folded_is_silence) = (Vec::new(), Vec::new());
        if cfg.fold39 {
            let mut names: Vec<&'static str> = Vec::new();
            let mut unknown = Vec::new();
            for p in &phones {
                if p.eq_ignore_ascii_case("q") {
                    folded.push(None);
                    continue;
                }
                match fold_to_39(p) {
                    Some(f) => {
                        let i = names.iter().position(|n| *n == f).unwrap_or_else(|| {
                            names.push(f);
                            names.len() - 1
                        });
                        folded.push(Some(i));
                    }
                    None => unknown.push(p.as_str()),
                }
            }
            if !unknown.is_empty() {
                return Err(Error::config(format!(
                    "scorer: fold39 needs TIMIT phones; these have no 39-class fold: {}",
                    unknown.join(" ")
                )));
            }
            folded_is_silence = names.iter().map(|n| *n == "sil").collect();
        }
        let np = phones.len();
        let s = senone_to_phone.len();
        Ok(Scorer {
            cfg,
            phones,
            phone_is_silence,
            senone_phone,
            folded,
            folded_is_silence,
            all: Acc::default(),
            nonsil: Acc::default(),
            per_phone_frames: vec![0; np],
            per_phone_correct: vec![0; np],
            per_phone_phone_correct: vec![0; np],
            confusion: vec![0; np * np],
            folded_acc: [0; 4],
            seen: HashSet::new(),
            student_lp: vec![0.0; s],
            teacher_lp: vec![0.0; s],
        })
    }

    /// Number of senones `S`.
    pub fn num_senones(&self) -> usize {
        self.senone_phone.len()
    }

    /// Adds one utterance. `logits` is `[frames, S]` row-major (logits or log-posteriors),
    /// `labels` has `frames` senone ids, `teacher` (when given) is `[frames, S]` teacher
    /// logits. Checks everything before counting anything, so a refused utterance leaves the
    /// scorer as it was.
    pub fn add(
        &mut self,
        utt: &str,
        logits: &[f32],
        frames: usize,
        labels: &[u32],
        teacher: Option<&[f32]>,
    ) -> Result<()> {
        let s = self.num_senones();
        if self.seen.contains(utt) {
            return Err(Error::utterance(utt, "scored twice"));
        }
        if logits.len() != frames * s {
            return Err(Error::utterance(
                utt,
                format!(
                    "{} scores, expected frames x senones = {frames} x {s} = {}",
                    logits.len(),
                    frames * s
                ),
            ));
        }
        if labels.len() != frames {
            return Err(Error::utterance(
                utt,
                format!("{} alignment labels for {frames} frames", labels.len()),
            ));
        }
        if let Some(t) = teacher {
            if t.len() != frames * s {
                return Err(Error::utterance(
                    utt,
                    format!(
                        "{} teacher logits, expected {frames} x {s} = {}",
                        t.len(),
                        frames * s
                    ),
                ));
            }
            if let Some(i) = t.iter().position(|x| !x.is_finite()) {
                return Err(Error::utterance(
                    utt,
                    format!("teacher logit not finite at frame {}", i / s),
                ));
            }
        }
        if let Some(f) = labels.iter().position(|&l| l as usize >= s) {
            return Err(Error::utterance(
                utt,
                format!("label {} at frame {f} is not a senone (0..{s})", labels[f]),
            ));
        }
        if let Some(i) = logits.iter().position(|x| !x.is_finite()) {
            return Err(Error::utterance(
                utt,
                format!("model score not finite at frame {}", i / s),
            ));
        }
        self.seen.insert(utt.to_string());
        for (f, &label) in labels.iter().enumerate() {
            let row = &logits[f * s..(f + 1) * s];
            self.add_frame(row, label as usize, teacher.map(|t| &t[f * s..(f + 1) * s]));
        }
        Ok(())
    }

    fn add_frame(&mut self, row: &[f32], label: usize, teacher: Option<&[f32]>) {
        let n = self.cfg.top_n;
        log_softmax(row, &mut self.student_lp);
        let pred = argmax(row);
        // Rank of the label: senones scoring strictly higher (ties favour the label).
        let higher = row.iter().filter(|&&x| x > row[label]).count();
        let label_phone = self.senone_phone[label];
        let pred_phone = self.senone_phone[pred];
        let teacher_stats = teacher.map(|t| {
            log_softmax(t, &mut self.teacher_lp);
            let kl: f64 = self
                .teacher_lp
                .iter()
                .zip(&self.student_lp)
                .map(|(&lt, &ls)| {
                    let p = lt.exp();
                    if p > 0.0 {
                        p * (lt - ls)
                    } else {
                        0.0
                    }
                })
                .sum();
            (argmax(t) == pred, kl)
        });
        let silence = self.phone_is_silence[label_phone];
        let ce = -self.student_lp[label];
        for acc in [Some(&mut self.all), (!silence).then_some(&mut self.nonsil)]
            .into_iter()
            .flatten()
        {
            acc.frames += 1;
            acc.correct += (pred == label) as u64;
            acc.top_n += (higher < n) as u64;
            acc.ce += ce;
            acc.phone_correct += (pred_phone == label_phone) as u64;
            if let Some((agree, kl)) = teacher_stats {
                acc.teacher_frames += 1;
                acc.agree += agree as u64;
                acc.kl += kl;
            }
        }
        self.per_phone_frames[label_phone] += 1;
        self.per_phone_correct[label_phone] += (pred == label) as u64;
        self.per_phone_phone_correct[label_phone] += (pred_phone == label_phone) as u64;
        self.confusion[label_phone * self.phones.len() + pred_phone] += 1;
        if self.cfg.fold39 {
            if let Some(fl) = self.folded[label_phone] {
                let ok = self.folded[pred_phone] == Some(fl);
                self.folded_acc[0] += 1;
                self.folded_acc[1] += ok as u64;
                if !self.folded_is_silence[fl] {
                    self.folded_acc[2] += 1;
                    self.folded_acc[3] += ok as u64;
                }
            }
        }
    }

    /// The scores so far; `model` is left empty for the caller to fill.
    pub fn finish(&self) -> Score {
        let np = self.phones.len();
        let frac = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let phones = (0..np)
            .filter(|&p| self.per_phone_frames[p] > 0)
            .map(|p| PhoneScore {
                phone: self.phones[p].clone(),
                silence: self.phone_is_silence[p],
                frames: self.per_phone_frames[p],
                frame_acc: frac(self.per_phone_correct[p], self.per_phone_frames[p]),
                phone_acc: frac(self.per_phone_phone_correct[p], self.per_phone_frames[p]),
            })
            .collect();
        let mut confusions: Vec<(usize, usize, u64)> = Vec::new();
        for t in 0..np {
            for p in 0..np {
                let c = self.confusion[t * np + p];
                if t != p && c > 0 {
                    confusions.push((t, p, c));
                }
            }
        }
        // Most frequent first; ties in phone order, so the list is deterministic.
        confusions.sort_by(|a, b| b.2.cmp(&a.2).then((a.0, a.1).cmp(&(b.0, b.1))));
        let confusions = confusions
            .into_iter()
            .take(TOP_CONFUSIONS)
            .map(|(t, p, c)| Confusion {
                truth: self.phones[t].clone(),
                predicted: self.phones[p].clone(),
                count: c,
                fraction: c as f64 / self.per_phone_frames[t] as f64,
            })
            .collect();
        let folded39 = self.cfg.fold39.then(|| FoldedScore {
            frames: self.folded_acc[0],
            phone_acc: frac(self.folded_acc[1], self.folded_acc[0]),
            frames_nonsil: self.folded_acc[2],
            phone_acc_nonsil: frac(self.folded_acc[3], self.folded_acc[2]),
        });
        Score {
            model: ModelInfo::default(),
            utterances: self.seen.len() as u64,
            senones: self.num_senones(),
            top_n: self.cfg.top_n,
            silence_phones: self.cfg.silence_phones.clone(),
            all: self.all.metrics(),
            nonsil: self.nonsil.metrics(),
            phones,
            folded39,
            confusions,
        }
    }
}

/// Index of the first maximum.
fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in row.iter().enumerate() {
        if x > row[best] {
            best = i;
        }
    }
    best
}

/// `out[i] = row[i] - logsumexp(row)`, in f64, shifted by the maximum.
fn log_softmax(row: &[f32], out: &mut [f64]) {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    let lse = max + sum.ln();
    for (o, &x) in out.iter_mut().zip(row) {
        *o = x as f64 - lse;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_is_stable_for_huge_logits() {
        let mut out = [0.0; 3];
        // exp(3000) overflows even f64: only the shift by the maximum keeps this finite.
        log_softmax(&[3000.0, 3000.0, -3000.0], &mut out);
        assert!((out[0] + std::f64::consts::LN_2).abs() < 1e-12, "{out:?}");
        assert!(
            (out[2] + 6000.0 + std::f64::consts::LN_2).abs() < 1e-9,
            "{out:?}"
        );
        log_softmax(&[1000.0, 0.0, 0.0], &mut out);
        assert!(out[0].abs() < 1e-12 && (out[1] + 1000.0).abs() < 1e-9);
    }

    #[test]
    fn refused_utterance_leaves_scorer_unchanged() {
        let mut s = Scorer::new(vec!["a".into(), "b".into()], ScoreConfig::default()).unwrap();
        assert!(s.add("u", &[0.0, 1.0, 0.0], 2, &[0, 1], None).is_err());
        assert!(s.add("u", &[0.0, 1.0], 1, &[2], None).is_err());
        assert!(s.add("u", &[0.0, f32::NAN], 1, &[0], None).is_err());
        assert_eq!(s.finish().all.frames, 0);
        s.add("u", &[0.0, 1.0], 1, &[1], None).unwrap();
        assert!(s.add("u", &[0.0, 1.0], 1, &[1], None).is_err(), "duplicate");
        assert_eq!(s.finish().all.frame_acc, Some(1.0));
    }
}
