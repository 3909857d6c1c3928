//! Log-space Viterbi over a state graph, with a beam.
//!
//! The graph ([`Topology`]) is states with entry log-probabilities, arcs `from -> to` with
//! transition log-probabilities, and final states with exit log-probabilities. The emission
//! score of state `s` at frame `t` comes from a closure (a scaled log-likelihood, see
//! [`crate::align`]). After each frame, states scoring more than `beam` below that frame's best
//! are pruned. The result is the best state sequence that ends in a final state at the last
//! frame, or `None` when no path gets there (too few frames for the graph, or all pruned).

/// A state graph for [`viterbi`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Topology {
    /// `(state, log-prob)` of starting in a state at frame 0.
    pub initial: Vec<(usize, f32)>,
    /// Per state, its incoming arcs `(from, log-prob)` (self-loops included).
    pub arcs_in: Vec<Vec<(usize, f32)>>,
    /// `(state, log-prob)` of ending in a state after the last frame.
    pub finals: Vec<(usize, f32)>,
}

impl Topology {
    /// A graph of `n` states without arcs.
    pub fn new(n: usize) -> Self {
        Topology {
            initial: Vec::new(),
            arcs_in: vec![Vec::new(); n],
            finals: Vec::new(),
        }
    }

    /// Number of states.
    pub fn num_states(&self) -> usize {
        self.arcs_in.len()
    }

    /// Adds a state; returns its id.
    pub fn add_state(&mut self) -> usize {
        self.arcs_in.push(Vec::new());
        self.arcs_in.len() - 1
    }

    /// Adds the arc `from -> to` with transition log-probability `logp`.
    pub fn add_arc(&mut self, from: usize, to: usize, logp: f32) {
        self.arcs_in[to].push((from, logp));
    }
}

/// The best path: one state per frame, and its total log score (transitions + emissions).
#[derive(Debug, Clone, PartialEq)]
pub struct BestPath {
    pub states: Vec<usize>,
    pub score: f64,
}

/// Viterbi search. `emit(t, s)` is the emission log score of state `s` at frame `t`;
/// `beam` (log units, `f32::INFINITY` for none) prunes states that far below each frame's best.
/// `None` when no path ends in a final state at frame `num_frames - 1`, or `num_frames == 0`.
pub fn viterbi(
    top: &Topology,
    num_frames: usize,
    emit: impl Fn(usize, usize) -> f32,
    beam: f32,
) -> Option<BestPath> {
    let n = top.num_states();
    if num_frames == 0 || n == 0 {
        return None;
    }
    const NONE: u32 = u32::MAX;
    let mut back = vec![NONE; num_frames * n];
    let mut prev = vec![f64::NEG_INFINITY; n];
    let mut cur = vec![f64::NEG_INFINITY; n];
    for &(s, lp) in &top.initial {
        let v = lp as f64 + emit(0, s) as f64;
        if v > prev[s] {
            prev[s] = v;
        }
    }
    prune(&mut prev, beam);
    for t in 1..num_frames {
        let row = &mut back[t * n..(t + 1) * n];
        for s in 0..n {
            let mut best = f64::NEG_INFINITY;
            let mut arg = NONE;
            for &(p, lp) in &top.arcs_in[s] {
                let v = prev[p] + lp as f64;
                if v > best {
                    best = v;
                    arg = p as u32;
                }
            }
            if arg != NONE && best > f64::NEG_INFINITY {
                cur[s] = best + emit(t, s) as f64;
                row[s] = arg;
            } else {
                cur[s] = f64::NEG_INFINITY;
            }
        }
        prune(&mut cur, beam);
        std::mem::swap(&mut prev, &mut cur);
    }
    let (mut end, mut score) = (NONE as usize, f64::NEG_INFINITY);
    for &(s, lp) in &top.finals {
        let v = prev[s] + lp as f64;
        if v > score {
            score = v;
            end = s;
        }
    }
    if !score.is_finite() {
        return None;
    }
    let mut states = vec![0; num_frames];
    let mut s = end;
    for t in (0..num_frames).rev() {
        states[t] = s;
        if t > 0 {
            s = back[t * n + s] as usize;
        }
    }
    Some(BestPath { states, score })
}

/// Sets scores more than `beam` below the best to minus infinity (NaN counts as pruned).
fn prune(scores: &mut [f64], beam: f32) {
    let best = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !best.is_finite() {
        return;
    }
    let floor = best - beam as f64;
    for v in scores.iter_mut() {
        if v.is_nan() || *v < floor {
            *v = f64::NEG_INFINITY;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two states, left to right: 0 (self-loop) -> 1 (self-loop), start in 0, end in 1.
    fn two_state() -> Topology {
        let mut top = Topology::new(2);
        let half = 0.5f32.ln();
        top.initial.push((0, 0.0));
        top.add_arc(0, 0, half);
        top.add_arc(0, 1, half);
        top.add_arc(1, 1, 0.0);
        top.finals.push((1, 0.0));
        top
    }

    #[test]
    fn hand_made_example_has_the_known_best_path() {
        // Frames 0-1 favour state 0, frames 2-4 state 1: the best path switches at frame 2.
        let e = [
            [-1.0f32, -5.0],
            [-1.0, -4.0],
            [-6.0, -1.0],
            [-3.0, -1.0],
            [-7.0, -2.0],
        ];
        let p = viterbi(&two_state(), 5, |t, s| e[t][s], f32::INFINITY).unwrap();
        assert_eq!(p.states, [0, 0, 1, 1, 1]);
        // Emissions -1 -1 -1 -1 -2, transitions: one self-loop and one exit of 0.5 each.
        let want = -6.0 + 2.0 * 0.5f64.ln();
        assert!((p.score - want).abs() < 1e-6, "{} vs {want}", p.score);
    }

    #[test]
    fn matches_exhaustive_search_on_a_small_graph() {
        // 3 states with a skip arc 0 -> 2; every state sequence scored by brute force.
        let mut top = Topology::new(3);
        top.initial.push((0, -0.1));
        top.initial.push((1, -2.3));
        for (f, t, lp) in [
            (0, 0, -0.7),
            (0, 1, -0.9),
            (0, 2, -2.0),
            (1, 1, -0.4),
            (1, 2, -1.1),
            (2, 2, -0.2),
        ] {
            top.add_arc(f, t, lp);
        }
        top.finals.push((2, -0.3));
        top.finals.push((1, -1.5));
        let emit = |t: usize, s: usize| (((t * 7 + s * 13) % 11) as f32) * -0.37;
        let frames = 6;
        let arc = |f: usize, t: usize| top.arcs_in[t].iter().find(|a| a.0 == f).map(|a| a.1 as f64);
        let mut best = (f64::NEG_INFINITY, vec![]);
        for code in 0..3usize.pow(frames as u32) {
            let seq: Vec<usize> = (0..frames)
                .map(|t| code / 3usize.pow(t as u32) % 3)
                .collect();
            let Some(&(_, init)) = top.initial.iter().find(|i| i.0 == seq[0]) else {
                continue;
            };
            let Some(&(_, fin)) = top.finals.iter().find(|f| f.0 == seq[frames - 1]) else {
                continue;
            };
            let mut score = init as f64 + fin as f64;
            let mut ok = true;
            for t in 0..frames {
                score += emit(t, seq[t]) as f64;
                if t > 0 {
                    match arc(seq[t - 1], seq[t]) {
                        Some(lp) => score += lp,
                        None => ok = false,
                    }
                }
            }
            if ok && score > best.0 {
                best = (score, seq);
            }
        }
        let p = viterbi(&top, frames, emit, f32::INFINITY).unwrap();
        assert_eq!(p.states, best.1);
        assert!((p.score - best.0).abs() < 1e-5);
    }

    #[test]
    fn no_path_when_too_few_frames_or_pruned() {
        let top = two_state();
        // One frame cannot go from the start state 0 to the final state 1.
        assert!(viterbi(&top, 1, |_, _| 0.0, f32::INFINITY).is_none());
        assert!(viterbi(&top, 0, |_, _| 0.0, f32::INFINITY).is_none());
        // State 1 is far below state 0 at frame 1 and the only way to end: a tight beam
        // prunes it there, a wide one keeps it.
        let e = [[0.0f32, -100.0], [0.0, -30.0]];
        assert!(viterbi(&top, 2, |t, s| e[t][s], 10.0).is_none());
        assert_eq!(
            viterbi(&top, 2, |t, s| e[t][s], 50.0).unwrap().states,
            [0, 1]
        );
    }
}
