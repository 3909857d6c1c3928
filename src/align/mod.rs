//! Alignment from transcripts: lexicon, HMM topology, Viterbi forced alignment, flat start.
//!
//! ```text
//! text --lexicon--> word pronunciations --hmm--> state graph (3 states per phone, optional sil)
//! DNN logits [frames, senones] --scaled_log_likelihoods--> emissions
//! or GMM-HMM (gmm): scale * ln p(cepstra | state) --------> emissions
//! graph + emissions --viterbi (beam)--> state per frame --> phone segments --> phones.ctm
//! no model (flat start): sil + phones + sil, frames split uniformly (uniform_segments)
//! ```
//!
//! A DNN's emissions are hybrid-style scaled log-likelihoods: `acoustic_scale * (log p(senone
//! | x) - log p(senone))`, the model's log-softmax minus its stored log-priors (Bourlard and
//! Morgan 1994). Utterances that cannot be aligned (words missing from the lexicon, too few frames
//! for the phones, no path within the beam) are reported as [`AlignFailure`]s, never forced.
//! Flat start (uniform segmentation or a GMM-HMM trained from it ([`gmm`]), then train and
//! realign; Senior et al. 2014) chains these with `build-tree`, `make-alignments` and `train`
//! (`recipes/common/flat_start.sh`).

pub mod corpus;
pub mod gmm;
pub mod hmm;
pub mod lexicon;
pub mod viterbi;

use std::fmt;

use crate::error::Result;
use crate::labels::ctm::PhoneSegment;
use crate::labels::frame_labels::{FrameGeometry, FrameLabeler, NUM_STATES};
use crate::labels::phones::PhoneSet;

pub use corpus::{
    align_corpus, uniform_alignment, AcousticScorer, AlignConfig, CorpusAlignment, GmmScorer,
    GmmStates, Scorer,
};
pub use hmm::{GraphState, HmmConfig, UttGraph};
pub use lexicon::{Lexicon, Lts};
pub use viterbi::{viterbi, BestPath, Topology};

/// Why an utterance was left out.
#[derive(Debug, Clone, PartialEq)]
pub enum AlignFailure {
    /// The transcript is empty.
    EmptyTranscript,
    /// Words with no pronunciation (neither dictionary nor letter-to-sound).
    MissingWords(Vec<String>),
    /// Fewer frames than the shortest path through the phones needs.
    TooShort { frames: usize, needed: usize },
    /// No path reached the end within the beam.
    NoPath { frames: usize, beam: f32 },
    /// No features for it.
    NoFeatures,
    /// The model cannot score it (a context without a senone, scores of the wrong shape).
    Model(String),
}

impl fmt::Display for AlignFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlignFailure::EmptyTranscript => write!(f, "empty transcript"),
            AlignFailure::MissingWords(w) => {
                write!(f, "words not in the lexicon: {}", w.join(" "))
            }
            AlignFailure::TooShort { frames, needed } => write!(
                f,
                "too short: {frames} frames for phones that need at least {needed}"
            ),
            AlignFailure::NoPath { frames, beam } => write!(
                f,
                "no alignment path reached the end within beam {beam} ({frames} frames)"
            ),
            AlignFailure::NoFeatures => write!(f, "no features in the feature directory"),
            AlignFailure::Model(m) => write!(f, "cannot score: {m}"),
        }
    }
}

/// A transcript's words (whitespace-separated) as pronunciations from `lex`.
pub fn transcript_prons(
    text: &str,
    lex: &Lexicon,
) -> std::result::Result<Vec<Vec<Vec<u32>>>, AlignFailure> {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return Err(AlignFailure::EmptyTranscript);
    }
    let mut missing = Vec::new();
    let mut out = Vec::new();
    for w in &words {
        match lex.get(w) {
            Some(p) => out.push(p.to_vec()),
            None => {
                let w = w.to_lowercase();
                if !missing.contains(&w) {
                    missing.push(w);
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(out)
    } else {
        Err(AlignFailure::MissingWords(missing))
    }
}

/// The phone sequence a flat start segments: silence, each word's first pronunciation,
/// silence.
pub fn flat_start_phones(words: &[Vec<Vec<u32>>], silence: u32) -> Vec<u32> {
    let mut out = vec![silence];
    for w in words {
        out.extend_from_slice(&w[0]);
    }
    out.push(silence);
    out
}

/// Uniform segmentation: `num_frames` split into near-equal runs, one per phone, as
/// `(phone, first frame, end frame)`. `None` when a phone would get fewer than 3 frames (one
/// per HMM state).
pub fn uniform_segments(phones: &[u32], num_frames: usize) -> Option<Vec<(u32, usize, usize)>> {
    let n = phones.len();
    if n == 0 || num_frames < n * NUM_STATES as usize {
        return None;
    }
    Some(
        phones
            .iter()
            .enumerate()
            .map(|(i, &p)| (p, i * num_frames / n, (i + 1) * num_frames / n))
            .collect(),
    )
}

/// Runs `(phone, first frame, end frame)` of equal neighbouring labels of `frames`.
pub fn phone_runs(frames: &[u32]) -> Vec<(u32, usize, usize)> {
    let mut runs = Vec::new();
    let mut start = 0;
    for t in 1..=frames.len() {
        if t == frames.len() || frames[t] != frames[start] {
            runs.push((frames[start], start, t));
            start = t;
        }
    }
    runs
}

/// Frame runs `(phone, first, end)` as phone segments in seconds, such that the frame
/// labeller gives back exactly these runs: an interior boundary at frame `b` lies half a shift
/// before frame `b`'s centre; the first segment starts at 0 and the last ends where
/// `num_frames` frames of audio end.
pub fn runs_to_segments(
    runs: &[(u32, usize, usize)],
    set: &PhoneSet,
    geometry: &FrameGeometry,
    num_frames: usize,
) -> Vec<PhoneSegment> {
    let boundary = |b: usize| -> f64 {
        if b == 0 {
            0.0
        } else if b >= num_frames {
            if geometry.snip_edges {
                (num_frames - 1) as f64 * geometry.shift_s + geometry.length_s
            } else {
                num_frames as f64 * geometry.shift_s
            }
        } else {
            geometry.centre(b) - 0.5 * geometry.shift_s
        }
    };
    runs.iter()
        .map(|&(p, a, b)| PhoneSegment {
            phone: set.phone(p).unwrap_or("?").to_string(),
            start: boundary(a),
            end: boundary(b),
        })
        .collect()
}

/// Scaled log-likelihoods `[frames, senones]` from logits `[frames, senones]` (row-major):
/// `scale * (log_softmax(logits) - log_priors)`.
pub fn scaled_log_likelihoods(logits: &[f32], log_priors: &[f32], scale: f32) -> Vec<f32> {
    let s = log_priors.len();
    let mut out = Vec::with_capacity(logits.len());
    for row in logits.chunks(s) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln();
        out.extend(
            row.iter()
                .zip(log_priors)
                .map(|(&v, &lp)| scale * (v - lse - lp)),
        );
    }
    out
}

/// Forced alignment of one utterance: Viterbi through `graph` with emissions
/// `loglik[t * num_senones + senone_of_state[s]]`; retried once with `retry_beam` (if larger)
/// when `beam` finds no path. Returns the state path.
pub fn align_states(
    graph: &UttGraph,
    senone_of_state: &[u32],
    loglik: &[f32],
    num_senones: usize,
    beam: f32,
    retry_beam: f32,
) -> std::result::Result<BestPath, AlignFailure> {
    let frames = loglik.len() / num_senones.max(1);
    let emit = |t: usize, s: usize| loglik[t * num_senones + senone_of_state[s] as usize];
    let min = min_path_frames(graph);
    if frames < min {
        return Err(AlignFailure::TooShort {
            frames,
            needed: min,
        });
    }
    if let Some(p) = viterbi(&graph.topology, frames, emit, beam) {
        return Ok(p);
    }
    if retry_beam > beam {
        if let Some(p) = viterbi(&graph.topology, frames, emit, retry_beam) {
            return Ok(p);
        }
    }
    Err(AlignFailure::NoPath {
        frames,
        beam: beam.max(retry_beam),
    })
}

/// Fewest frames of any path from an initial to a final state (breadth-first over the arcs).
pub fn min_path_frames(graph: &UttGraph) -> usize {
    let top = &graph.topology;
    let n = top.num_states();
    let mut out_arcs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (to, ins) in top.arcs_in.iter().enumerate() {
        for &(from, _) in ins {
            if from != to {
                out_arcs[from].push(to);
            }
        }
    }
    let mut dist = vec![usize::MAX; n];
    let mut queue = std::collections::VecDeque::new();
    for &(s, _) in &top.initial {
        if dist[s] == usize::MAX {
            dist[s] = 1;
            queue.push_back(s);
        }
    }
    while let Some(s) = queue.pop_front() {
        for &t in &out_arcs[s] {
            if dist[t] == usize::MAX {
                dist[t] = dist[s] + 1;
                queue.push_back(t);
            }
        }
    }
    top.finals
        .iter()
        .map(|&(s, _)| dist[s])
        .min()
        .unwrap_or(usize::MAX)
}

/// Agreement of an alignment with reference phone times.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Agreement {
    /// Frames compared.
    pub frames: usize,
    /// Frames with the same phone (silences folded to the set's main silence).
    pub agree: usize,
    /// Utterances compared.
    pub utts: usize,
    /// Utterances whose non-silence phone sequences differ (no boundary errors from them).
    pub sequence_mismatches: usize,
    /// |reference - aligned| of every start and end of a non-silence phone, seconds.
    pub boundary_errors: Vec<f64>,
}

impl Agreement {
    /// Adds one utterance: frame labels of both with `labeler` over `num_frames` frames.
    pub fn add(
        &mut self,
        reference: &[PhoneSegment],
        aligned: &[PhoneSegment],
        labeler: &FrameLabeler,
        set: &PhoneSet,
        num_frames: usize,
    ) -> Result<()> {
        let fold = |p: u32| if set.is_silence(p) { u32::MAX } else { p };
        let r = labeler.phones(reference, num_frames)?;
        let a = labeler.phones(aligned, num_frames)?;
        self.frames += num_frames;
        self.agree += r
            .iter()
            .zip(&a)
            .filter(|(x, y)| fold(**x) == fold(**y))
            .count();
        self.utts += 1;
        let speech = |segs: &[PhoneSegment]| -> Vec<(u32, f64, f64)> {
            segs.iter()
                .filter_map(|s| {
                    let id = set.lookup(&s.phone)?;
                    (!set.is_silence(id)).then_some((id, s.start, s.end))
                })
                .collect()
        };
        let (rs, als) = (speech(reference), speech(aligned));
        if rs.len() != als.len() || rs.iter().zip(&als).any(|(x, y)| x.0 != y.0) {
            self.sequence_mismatches += 1;
            return Ok(());
        }
        for (x, y) in rs.iter().zip(&als) {
            self.boundary_errors.push((x.1 - y.1).abs());
            self.boundary_errors.push((x.2 - y.2).abs());
        }
        Ok(())
    }

    /// Fraction of frames that agree.
    pub fn frame_agreement(&self) -> f64 {
        self.agree as f64 / self.frames.max(1) as f64
    }

    /// Median boundary error in seconds (NaN when none were measured).
    pub fn median_boundary_error(&self) -> f64 {
        quantile(&self.boundary_errors, 0.5)
    }

    /// Fraction of boundaries within `tol` seconds.
    pub fn within(&self, tol: f64) -> f64 {
        let n = self
            .boundary_errors
            .iter()
            .filter(|&&e| e <= tol + 1e-9)
            .count();
        n as f64 / self.boundary_errors.len().max(1) as f64
    }
}

impl fmt::Display for Agreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "agreement with reference: {:.2}% of {} frames (phone level, {} utterances)",
            100.0 * self.frame_agreement(),
            self.frames,
            self.utts
        )?;
        write!(
            f,
            "boundary error: median {:.1} ms, 90th percentile {:.1} ms, {:.1}% within 20 ms ({} boundaries; {} utterances with another phone sequence left out)",
            1000.0 * self.median_boundary_error(),
            1000.0 * quantile(&self.boundary_errors, 0.9),
            100.0 * self.within(0.020),
            self.boundary_errors.len(),
            self.sequence_mismatches
        )
    }
}

/// The `q` quantile (nearest rank) of `v`; NaN for an empty slice.
fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let i = ((s.len() - 1) as f64 * q).round() as usize;
    s[i]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn lexicon(set: &PhoneSet) -> Lexicon {
        Lexicon::parse(
            "one W AH1 N\nseven S EH1 V AH0 N\n",
            Path::new("t.dict"),
            set,
        )
        .unwrap()
    }

    #[test]
    fn missing_words_are_named_once() {
        let set = PhoneSet::arpabet();
        let lex = lexicon(&set);
        assert_eq!(transcript_prons("ONE seven", &lex).unwrap().len(), 2);
        assert_eq!(
            transcript_prons("one zork seven Zork blik", &lex),
            Err(AlignFailure::MissingWords(vec![
                "zork".into(),
                "blik".into()
            ]))
        );
        assert_eq!(
            transcript_prons("  ", &lex),
            Err(AlignFailure::EmptyTranscript)
        );
    }

    #[test]
    fn too_short_utterances_fail_in_both_modes() {
        let set = PhoneSet::arpabet();
        let words = transcript_prons("seven", &lex_arc(&set)).unwrap();
        let sil = set.silence_id().unwrap();
        // Uniform: sil + 5 phones + sil need 21 frames.
        let phones = flat_start_phones(&words, sil);
        assert_eq!(phones.len(), 7);
        assert!(uniform_segments(&phones, 20).is_none());
        let segs = uniform_segments(&phones, 21).unwrap();
        assert!(segs.iter().all(|s| s.2 - s.1 == 3));
        // Viterbi: 5 phones need 15 frames when silence is optional.
        let g = UttGraph::build(&words, sil, &HmmConfig::default()).unwrap();
        let senones: Vec<u32> = (0..g.states.len() as u32).collect();
        let n = senones.len();
        let loglik = vec![0.0f32; 14 * n];
        assert_eq!(
            align_states(&g, &senones, &loglik, n, 20.0, 80.0).unwrap_err(),
            AlignFailure::TooShort {
                frames: 14,
                needed: 15
            }
        );
        let loglik = vec![0.0f32; 15 * n];
        let p = align_states(&g, &senones, &loglik, n, 20.0, 80.0).unwrap();
        assert_eq!(g.segments(&p.states).len(), 5);
    }

    fn lex_arc(set: &PhoneSet) -> Lexicon {
        lexicon(set)
    }

    #[test]
    fn segments_give_back_the_frame_runs() {
        let set = PhoneSet::arpabet();
        let runs = vec![(0, 0, 7), (5, 7, 10), (9, 10, 31), (0, 31, 40)];
        for snip in [true, false] {
            let geometry = FrameGeometry {
                shift_s: 0.01,
                length_s: 0.025,
                snip_edges: snip,
            };
            let segs = runs_to_segments(&runs, &set, &geometry, 40);
            assert_eq!(segs[0].start, 0.0);
            let labeler = FrameLabeler::new(&set, geometry);
            assert_eq!(labeler.label_frames(&segs), 40, "snip {snip}");
            let frames = labeler.phones(&segs, 40).unwrap();
            let mut want = Vec::new();
            for &(p, a, b) in &runs {
                want.extend(std::iter::repeat_n(p, b - a));
            }
            assert_eq!(frames, want, "snip {snip}");
        }
    }

    #[test]
    fn scaled_log_likelihoods_subtract_priors() {
        let logits = [0.0f32, 1.0, 2.0, 5.0, 5.0, 5.0];
        let priors = [0.5f32.ln(), 0.25f32.ln(), 0.25f32.ln()];
        let ll = scaled_log_likelihoods(&logits, &priors, 0.5);
        let lse0 = (1.0f32 + 1f32.exp() + 2f32.exp()).ln();
        assert!((ll[2] - 0.5 * (2.0 - lse0 - priors[2])).abs() < 1e-6);
        // Equal logits: log(1/3) - log prior.
        assert!((ll[3] - 0.5 * ((1.0f32 / 3.0).ln() - priors[0])).abs() < 1e-6);
    }

    #[test]
    fn agreement_counts_frames_and_boundaries() {
        let set = PhoneSet::arpabet();
        let geometry = FrameGeometry {
            shift_s: 0.01,
            length_s: 0.025,
            snip_edges: false,
        };
        let labeler = FrameLabeler::new(&set, geometry);
        let seg = |p: &str, a: f64, b: f64| PhoneSegment {
            phone: p.into(),
            start: a,
            end: b,
        };
        let reference = vec![
            seg("pau", 0.0, 0.1),
            seg("s", 0.1, 0.2),
            seg("sil", 0.2, 0.3),
        ];
        let aligned = vec![
            seg("sil", 0.0, 0.12),
            seg("s", 0.12, 0.2),
            seg("sil", 0.2, 0.3),
        ];
        let mut a = Agreement::default();
        a.add(&reference, &aligned, &labeler, &set, 30).unwrap();
        assert_eq!((a.frames, a.agree), (30, 28));
        assert_eq!(a.boundary_errors.len(), 2);
        assert!(
            (a.median_boundary_error() - 0.02).abs() < 1e-9 || a.median_boundary_error() < 1e-9
        );
        let other = vec![
            seg("sil", 0.0, 0.1),
            seg("z", 0.1, 0.2),
            seg("sil", 0.2, 0.3),
        ];
        a.add(&reference, &other, &labeler, &set, 30).unwrap();
        assert_eq!(a.sequence_mismatches, 1);
        assert_eq!(a.boundary_errors.len(), 2);
    }
}
