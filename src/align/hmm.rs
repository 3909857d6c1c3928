//! An utterance's transcript as an HMM state graph: 3-state left-to-right phone HMMs
//! (self-loop and forward arcs), word pronunciations in parallel, optional silence at the start,
//! between words and at the end.
//!
//! ```text
//! [sil]? (word1 pron a | word1 pron b) [sil]? word2 ... wordN [sil]?
//! phone = s0 -> s1 -> s2, each with a self-loop of probability `self_loop`
//! ```
//!
//! Transition log-probabilities: `ln(self_loop)` to stay, `ln(1 - self_loop)` to leave; a
//! state that leaves into an optional silence spreads that over `ln(p_sil)` (into the silence)
//! and `ln(1 - p_sil)` (past it); a word with K pronunciations enters each with `ln(1 / K)`.
//!
//! Context for the senone tree: each phone's left and right neighbours in the word sequence,
//! across word boundaries with the neighbouring words' first pronunciations, ignoring optional
//! silences (the utterance edges count as silence); an optional silence takes the phones
//! either side of it. The CTM that alignment writes goes back through `build-tree` and
//! `make-alignments`, which use the contexts as aligned.

use crate::align::viterbi::Topology;
use crate::error::{Error, Result};
use crate::labels::frame_labels::NUM_STATES;

/// Transition probabilities of the graph.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HmmConfig {
    /// Probability of each HMM state's self-loop (Kaldi's default topology: 0.5 after training
    /// starts from 0.75 / 0.25; here fixed).
    pub self_loop: f32,
    /// Probability of a silence at each optional-silence position (0: never, 1: always).
    pub optional_silence: f32,
    /// Between words only, instead of `optional_silence` (which then covers the start and
    /// the end): for speech read without pauses, as the synthetic corpus is.
    pub interword_silence: Option<f32>,
}

impl HmmConfig {
    /// The silence probability before word `i` of `n` (`i == n`: at the end).
    fn silence_before(&self, i: usize, n: usize) -> f32 {
        match self.interword_silence {
            Some(p) if i > 0 && i < n => p,
            _ => self.optional_silence,
        }
    }
}

impl Default for HmmConfig {
    fn default() -> Self {
        HmmConfig {
            self_loop: 0.5,
            optional_silence: 0.5,
            interword_silence: None,
        }
    }
}

/// One graph state: which phone instance, which HMM state, and its context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphState {
    /// Phone id.
    pub phone: u32,
    /// HMM state, 0..3.
    pub state: u8,
    /// Left and right context phones (see the module documentation).
    pub left: u32,
    pub right: u32,
    /// Index of the phone instance in the graph: frames of one instance form one segment.
    pub token: usize,
}

/// The graph of one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct UttGraph {
    pub topology: Topology,
    pub states: Vec<GraphState>,
}

/// A node whose outgoing arcs are not yet made: the start, or a state with the log-prob mass
/// it leaves with.
#[derive(Clone, Copy)]
enum Exit {
    Start,
    State(usize),
}

impl UttGraph {
    /// The graph of a transcript: `words[i]` is word i's pronunciations (phone ids, at least one,
    /// none empty); `silence` the silence phone id.
    pub fn build(words: &[Vec<Vec<u32>>], silence: u32, cfg: &HmmConfig) -> Result<Self> {
        if !(cfg.self_loop > 0.0 && cfg.self_loop < 1.0) {
            return Err(Error::config(format!(
                "self-loop probability {} is not in (0, 1)",
                cfg.self_loop
            )));
        }
        for p in std::iter::once(cfg.optional_silence).chain(cfg.interword_silence) {
            if !(0.0..=1.0).contains(&p) {
                return Err(Error::config(format!(
                    "optional-silence probability {p} is not in [0, 1]"
                )));
            }
        }
        if words.is_empty()
            || words
                .iter()
                .any(|w| w.is_empty() || w.iter().any(Vec::is_empty))
        {
            return Err(Error::config("empty transcript or pronunciation"));
        }
        let mut g = UttGraph {
            topology: Topology::new(0),
            states: Vec::new(),
        };
        let stay = cfg.self_loop.ln();
        let leave = (1.0 - cfg.self_loop).ln();
        // Edge phones of each word's first pronunciation, for cross-word context.
        let first = |i: usize| words[i][0][0];
        let last = |i: usize| *words[i][0].last().expect("non-empty");
        let mut frontier: Vec<(Exit, f32)> = vec![(Exit::Start, 0.0)];
        let mut token = 0;
        for i in 0..=words.len() {
            // Optional silence before word i (i == len: at the end).
            let p_sil = cfg.silence_before(i, words.len());
            if p_sil > 0.0 {
                let left = if i == 0 { silence } else { last(i - 1) };
                let right = if i == words.len() { silence } else { first(i) };
                let (s0, s2) = g.add_phone(silence, left, right, token, stay, leave);
                token += 1;
                g.connect(&frontier, s0, p_sil.ln());
                let mut next: Vec<(Exit, f32)> = if p_sil < 1.0 {
                    frontier
                        .iter()
                        .map(|&(e, lp)| (e, lp + (1.0 - p_sil).ln()))
                        .collect()
                } else {
                    Vec::new()
                };
                next.push((Exit::State(s2), leave));
                frontier = next;
            }
            if i == words.len() {
                break;
            }
            let prons = &words[i];
            let enter = (1.0 / prons.len() as f32).ln();
            let mut next = Vec::new();
            for pron in prons {
                let mut prev: Option<usize> = None;
                for (k, &p) in pron.iter().enumerate() {
                    let left = if k > 0 {
                        pron[k - 1]
                    } else if i > 0 {
                        last(i - 1)
                    } else {
                        silence
                    };
                    let right = if k + 1 < pron.len() {
                        pron[k + 1]
                    } else if i + 1 < words.len() {
                        first(i + 1)
                    } else {
                        silence
                    };
                    let (s0, s2) = g.add_phone(p, left, right, token, stay, leave);
                    token += 1;
                    match prev {
                        None => g.connect(&frontier, s0, enter),
                        Some(e) => g.topology.add_arc(e, s0, leave),
                    }
                    prev = Some(s2);
                }
                next.push((Exit::State(prev.expect("non-empty pronunciation")), leave));
            }
            frontier = next;
        }
        for (e, lp) in frontier {
            if let Exit::State(s) = e {
                g.topology.finals.push((s, lp));
            }
        }
        Ok(g)
    }

    /// Adds a phone's 3 states (self-loops, forward arcs); returns its first and last state.
    fn add_phone(
        &mut self,
        phone: u32,
        left: u32,
        right: u32,
        token: usize,
        stay: f32,
        leave: f32,
    ) -> (usize, usize) {
        let first = self.topology.num_states();
        for state in 0..NUM_STATES {
            let s = self.topology.add_state();
            self.states.push(GraphState {
                phone,
                state,
                left,
                right,
                token,
            });
            self.topology.add_arc(s, s, stay);
            if state > 0 {
                self.topology.add_arc(s - 1, s, leave);
            }
        }
        (first, first + NUM_STATES as usize - 1)
    }

    fn connect(&mut self, frontier: &[(Exit, f32)], to: usize, extra: f32) {
        for &(e, lp) in frontier {
            match e {
                Exit::Start => self.topology.initial.push((to, lp + extra)),
                Exit::State(s) => self.topology.add_arc(s, to, lp + extra),
            }
        }
    }

    /// Frames the shortest path needs: 3 per phone of the shortest pronunciations, silences
    /// skipped when optional.
    pub fn min_frames(words: &[Vec<Vec<u32>>], cfg: &HmmConfig) -> usize {
        let phones: usize = words
            .iter()
            .map(|w| w.iter().map(Vec::len).min().unwrap_or(0))
            .sum();
        let sil = (0..=words.len())
            .filter(|&i| cfg.silence_before(i, words.len()) >= 1.0)
            .count();
        (phones + sil) * NUM_STATES as usize
    }

    /// A state path as phone segments: `(phone, first frame, end frame)` runs of one phone
    /// instance, in order, covering all frames.
    pub fn segments(&self, path: &[usize]) -> Vec<(u32, usize, usize)> {
        let mut out: Vec<(u32, usize, usize)> = Vec::new();
        let mut last_token = usize::MAX;
        for (t, &s) in path.iter().enumerate() {
            let st = &self.states[s];
            if st.token == last_token {
                out.last_mut().expect("a run is open").2 = t + 1;
            } else {
                out.push((st.phone, t, t + 1));
                last_token = st.token;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::align::min_path_frames;
    use crate::align::viterbi::viterbi;

    const SIL: u32 = 0;

    fn tokens_of(g: &UttGraph, path: &[usize]) -> Vec<u32> {
        g.segments(path).iter().map(|s| s.0).collect()
    }

    #[test]
    fn optional_silence_is_taken_only_where_it_scores() {
        // Words [1 2] and [3]; silence scores well on frames 0-5 only.
        let words = vec![vec![vec![1, 2]], vec![vec![3]]];
        let g = UttGraph::build(&words, SIL, &HmmConfig::default()).unwrap();
        // 3 optional silences + 3 phones, 3 states each.
        assert_eq!(g.topology.num_states(), 18);
        let frames = 6 + 9 + 3;
        let want = |t: usize| -> u32 {
            match t {
                0..=5 => SIL,
                6..=10 => 1,
                11..=14 => 2,
                _ => 3,
            }
        };
        let emit = |t: usize, s: usize| {
            if g.states[s].phone == want(t) {
                0.0
            } else {
                -10.0
            }
        };
        let p = viterbi(&g.topology, frames, emit, f32::INFINITY).unwrap();
        assert_eq!(tokens_of(&g, &p.states), [SIL, 1, 2, 3]);
        let segs = g.segments(&p.states);
        assert_eq!(segs, [(SIL, 0, 6), (1, 6, 11), (2, 11, 15), (3, 15, 18)]);
    }

    #[test]
    fn contexts_cross_words_and_skip_silence() {
        let words = vec![vec![vec![1, 2]], vec![vec![3, 4], vec![5]]];
        let g = UttGraph::build(&words, SIL, &HmmConfig::default()).unwrap();
        let ctx = |phone: u32| {
            let s = g.states.iter().find(|s| s.phone == phone).unwrap();
            (s.left, s.right)
        };
        assert_eq!(ctx(1), (SIL, 2));
        // Across the word boundary with the next word's first pronunciation.
        assert_eq!(ctx(2), (1, 3));
        assert_eq!(ctx(4), (3, SIL));
        assert_eq!(ctx(5), (2, SIL));
        // Three states per phone, in order, one token per phone instance.
        let ones: Vec<_> = g.states.iter().filter(|s| s.phone == 1).collect();
        assert_eq!(ones.iter().map(|s| s.state).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(ones.iter().all(|s| s.token == ones[0].token));
    }

    #[test]
    fn shortest_path_counts_three_frames_per_phone() {
        let words = vec![vec![vec![1, 2, 3]], vec![vec![4, 5], vec![6]]];
        for p_sil in [0.0, 0.5, 1.0] {
            let cfg = HmmConfig {
                optional_silence: p_sil,
                ..HmmConfig::default()
            };
            let g = UttGraph::build(&words, SIL, &cfg).unwrap();
            let want = if p_sil >= 1.0 { (4 + 3) * 3 } else { 4 * 3 };
            assert_eq!(min_path_frames(&g), want, "p_sil {p_sil}");
            assert_eq!(UttGraph::min_frames(&words, &cfg), want);
            assert!(viterbi(&g.topology, want - 1, |_, _| 0.0, f32::INFINITY).is_none());
            assert!(viterbi(&g.topology, want, |_, _| 0.0, f32::INFINITY).is_some());
        }
        // Silence always at the edges, never between the two words: 4 phones + 2 silences.
        let cfg = HmmConfig {
            optional_silence: 1.0,
            interword_silence: Some(0.0),
            ..HmmConfig::default()
        };
        let g = UttGraph::build(&words, SIL, &cfg).unwrap();
        assert_eq!(min_path_frames(&g), 6 * 3);
        assert_eq!(UttGraph::min_frames(&words, &cfg), 6 * 3);
        let sils = g.states.iter().filter(|s| s.phone == SIL).count();
        assert_eq!(sils, 2 * 3, "no silence between the words");
    }

    #[test]
    fn rejects_bad_probabilities_and_empty_words() {
        let w = vec![vec![vec![1]]];
        let bad = HmmConfig {
            self_loop: 1.0,
            ..HmmConfig::default()
        };
        assert!(UttGraph::build(&w, SIL, &bad).is_err());
        assert!(UttGraph::build(&[], SIL, &HmmConfig::default()).is_err());
        assert!(UttGraph::build(&[vec![vec![]]], SIL, &HmmConfig::default()).is_err());
    }
}
