//! The phonetic decision tree that turns a context (left phone, phone, right phone, HMM state)
//! into a senone (DOMAIN.md §3; Young, Odell and Woodland 1994; Kaldi's `build-tree`).
//!
//! 1. [`TreeStats::accumulate`]: per context, the sufficient statistics of one diagonal
//!    Gaussian over its feature frames ([`GaussStats`]). O(frames * dim).
//! 2. Questions ([`Question`]): phonetic classes from the caller plus
//!    [`cluster_phone_questions`], each asked of the left or the right phone.
//! 3. [`build_tree`] / [`build_tree_for_phones`]: one root per (phone, state); the leaf whose
//!    best question gains the most log-likelihood is split, never leaving a child with fewer
//!    than `min_occupancy` frames, until `num_leaves` or the best gain falls below `min_gain`.
//!    Gains come from summed statistics only; the frames are never read again.
//! 4. [`SenoneTree::senone`]: any context to a dense senone id `0..num_senones`.
//!
//! # Unseen contexts
//!
//! A context whose left or right phone never occurred in training follows the questions like
//! any other (a phone outside a question's set answers "no"), so it lands in the subtree of
//! its own (phone, state) root. A (phone, state) with no root at all is an error naming it:
//! build with [`build_tree_for_phones`] and the whole phone set, which gives every phone and
//! state a root even without frames (a leaf with zero occupancy), so that never happens.
//!
//! # Tree file
//!
//! Text, one item per line; blank lines and lines starting with `#` are ignored. The first
//! item is the header, then roots and nodes in any interleaving, node ids `0, 1, 2 ...` in
//! order; counts are frames, gains are log-likelihood (nats):
//!
//! ```text
//! senone-tree 1 nodes 3 senones 2
//! root PHONE STATE NODE
//! node ID count FRAMES gain GAIN question NAME: if left|right in { PHONE ... } then NODE else NODE
//! leaf ID senone SENONE count FRAMES
//! ```
//!
//! `senones.txt` ([`SenoneTree::write_senones`], [`read_senones`]) has one line per senone,
//! `senone phone state count contexts`, where `contexts` joins the answers on the way from
//! the root with `&` (`left=vowel&right!=nasal`; `*` for a root that was never split).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::features::Matrix;

pub use super::tree_questions::{cluster_phone_questions, Question, CLUSTER_STATE};

/// Smallest variance used in a log-likelihood. A context seen in a few frames (or in
/// constant frames: digital silence without dither) has a variance near zero, whose log would
/// make splitting it off look infinitely good. Kaldi's `acc-tree-stats` floors at the same
/// 0.01; log-mel features vary by about 1 or more per bin in speech, so real data is above it.
pub const VARIANCE_FLOOR: f64 = 0.01;

/// Smallest gain per frame (nats) that counts as a gain. Two halves with the same data gain
/// exactly nothing, but rounding in the summed statistics can show ~1e-14; such a split would
/// only add a senone without telling anything apart.
pub const MIN_GAIN_PER_FRAME: f64 = 1e-9;

/// Format version written in the tree file header.
const TREE_FORMAT_VERSION: u32 = 1;

/// Sufficient statistics of a diagonal Gaussian over feature frames of `dim` values.
#[derive(Debug, Clone, PartialEq)]
pub struct GaussStats {
    /// Number of frames.
    pub count: f64,
    /// Per dimension, the sum of the frames' values: `[dim]`.
    pub sum: Vec<f64>,
    /// Per dimension, the sum of the squared values: `[dim]`.
    pub sum_sq: Vec<f64>,
}

impl GaussStats {
    /// Empty statistics for `dim`-dimensional frames.
    pub fn new(dim: usize) -> Self {
        GaussStats {
            count: 0.0,
            sum: vec![0.0; dim],
            sum_sq: vec![0.0; dim],
        }
    }

    /// The frame dimension.
    pub fn dim(&self) -> usize {
        self.sum.len()
    }

    /// Adds one frame of `dim` values; panics if its length differs (a programming error).
    pub fn accumulate(&mut self, frame: &[f32]) {
        assert_eq!(
            frame.len(),
            self.dim(),
            "frame of {} values added to {}-dim stats",
            frame.len(),
            self.dim()
        );
        self.count += 1.0;
        for ((s, q), &x) in self.sum.iter_mut().zip(self.sum_sq.iter_mut()).zip(frame) {
            let x = x as f64;
            *s += x;
            *q += x * x;
        }
    }

    /// Adds another set of statistics of the same dimension.
    pub fn add(&mut self, other: &GaussStats) {
        assert_eq!(
            other.dim(),
            self.dim(),
            "stats of dim {} added to dim {}",
            other.dim(),
            self.dim()
        );
        self.count += other.count;
        for (a, b) in self.sum.iter_mut().zip(&other.sum) {
            *a += b;
        }
        for (a, b) in self.sum_sq.iter_mut().zip(&other.sum_sq) {
            *a += b;
        }
    }

    /// `self - other`: the statistics of the frames in `self` but not in `other`.
    fn minus(&self, other: &GaussStats) -> GaussStats {
        GaussStats {
            count: self.count - other.count,
            sum: self
                .sum
                .iter()
                .zip(&other.sum)
                .map(|(a, b)| a - b)
                .collect(),
            sum_sq: self
                .sum_sq
                .iter()
                .zip(&other.sum_sq)
                .map(|(a, b)| a - b)
                .collect(),
        }
    }

    /// Resets to empty, keeping the dimension.
    fn clear(&mut self) {
        self.count = 0.0;
        self.sum.iter_mut().for_each(|v| *v = 0.0);
        self.sum_sq.iter_mut().for_each(|v| *v = 0.0);
    }

    /// Per-dimension mean `[dim]` (zeros when empty).
    pub fn mean(&self) -> Vec<f64> {
        if self.count <= 0.0 {
            return vec![0.0; self.dim()];
        }
        self.sum.iter().map(|s| s / self.count).collect()
    }

    /// Per-dimension ML variance `[dim]`, floored at [`VARIANCE_FLOOR`].
    pub fn variance(&self) -> Vec<f64> {
        if self.count <= 0.0 {
            return vec![VARIANCE_FLOOR; self.dim()];
        }
        self.sum
            .iter()
            .zip(&self.sum_sq)
            .map(|(s, q)| {
                let m = s / self.count;
                (q / self.count - m * m).max(VARIANCE_FLOOR)
            })
            .collect()
    }

    /// Log-likelihood (nats) of the frames under their own ML diagonal Gaussian:
    /// `-0.5 * count * (dim * (1 + ln 2pi) + sum_d ln var_d)`, 0 when empty.
    pub fn log_likelihood(&self) -> f64 {
        if self.count <= 0.0 {
            return 0.0;
        }
        let mut log_det = 0.0;
        for (s, q) in self.sum.iter().zip(&self.sum_sq) {
            let m = s / self.count;
            log_det += (q / self.count - m * m).max(VARIANCE_FLOOR).ln();
        }
        let dim = self.dim() as f64;
        -0.5 * self.count * (dim * (1.0 + (2.0 * std::f64::consts::PI).ln()) + log_det)
    }
}

/// A triphone context: the phone, its neighbours and the HMM state (0, 1, 2 for three states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContextKey {
    /// The phone before (the caller's id for an utterance boundary at the start).
    pub left: u32,
    /// The centre phone.
    pub phone: u32,
    /// The phone after (the caller's id for an utterance boundary at the end).
    pub right: u32,
    /// The HMM state of the centre phone.
    pub state: u8,
}

/// Which neighbour of the centre phone a question is asked of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The phone before the centre phone.
    Left,
    /// The phone after the centre phone.
    Right,
}

impl Side {
    /// The neighbour phone of `key` on this side.
    pub fn phone_of(self, key: &ContextKey) -> u32 {
        match self {
            Side::Left => key.left,
            Side::Right => key.right,
        }
    }

    /// `left` or `right`, as in the tree file.
    pub fn name(self) -> &'static str {
        match self {
            Side::Left => "left",
            Side::Right => "right",
        }
    }
}

/// Gaussian statistics per context, from features and per-frame context keys.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeStats {
    dim: usize,
    contexts: BTreeMap<ContextKey, GaussStats>,
}

impl TreeStats {
    /// Empty statistics for `dim`-dimensional features.
    pub fn new(dim: usize) -> Self {
        TreeStats {
            dim,
            contexts: BTreeMap::new(),
        }
    }

    /// The feature dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Adds an utterance: `feats` is `[frames, dim]`, `keys` holds one context per frame.
    /// A frame-count or dimension mismatch, or a non-finite feature value, is an error and
    /// leaves the statistics unchanged.
    pub fn accumulate(&mut self, feats: &Matrix, keys: &[ContextKey]) -> Result<()> {
        if feats.cols != self.dim {
            return Err(Error::Mismatch(format!(
                "features have {} values per frame, tree statistics {}",
                feats.cols, self.dim
            )));
        }
        if keys.len() != feats.rows {
            return Err(Error::Mismatch(format!(
                "{} context labels for {} feature frames",
                keys.len(),
                feats.rows
            )));
        }
        if let Some(i) = feats.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Mismatch(format!(
                "feature frame {} has a non-finite value",
                i / self.dim.max(1)
            )));
        }
        // Labels come in runs of one context (a state lasts several frames): one map lookup
        // per run rather than per frame.
        let mut start = 0;
        while start < keys.len() {
            let key = keys[start];
            let mut end = start + 1;
            while end < keys.len() && keys[end] == key {
                end += 1;
            }
            let stats = self
                .contexts
                .entry(key)
                .or_insert_with(|| GaussStats::new(self.dim));
            for r in start..end {
                stats.accumulate(feats.row(r));
            }
            start = end;
        }
        Ok(())
    }

    /// Adds the statistics of `other` (for example from another thread's utterances).
    pub fn merge(&mut self, other: &TreeStats) -> Result<()> {
        if other.dim != self.dim {
            return Err(Error::Mismatch(format!(
                "merging tree statistics of dim {} into dim {}",
                other.dim, self.dim
            )));
        }
        for (key, s) in &other.contexts {
            self.contexts
                .entry(*key)
                .or_insert_with(|| GaussStats::new(self.dim))
                .add(s);
        }
        Ok(())
    }

    /// The statistics of one context, if it was seen.
    pub fn get(&self, key: &ContextKey) -> Option<&GaussStats> {
        self.contexts.get(key)
    }

    /// Contexts and their statistics, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&ContextKey, &GaussStats)> {
        self.contexts.iter()
    }

    /// Number of distinct contexts seen.
    pub fn len(&self) -> usize {
        self.contexts.len()
    }

    /// Whether no context was seen.
    pub fn is_empty(&self) -> bool {
        self.contexts.is_empty()
    }

    /// Total frames over all contexts.
    pub fn total_count(&self) -> f64 {
        self.contexts.values().map(|s| s.count).sum()
    }
}

/// How far to grow the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeConfig {
    /// Target number of leaves (senones); must be at least the number of roots.
    pub num_leaves: usize,
    /// Smallest number of frames a split may leave in either child.
    pub min_occupancy: f64,
    /// Stop when the best split gains less log-likelihood (nats) than this. Splits that gain
    /// nothing (under [`MIN_GAIN_PER_FRAME`] per frame) are never made, whatever this is.
    pub min_gain: f64,
}

impl Default for TreeConfig {
    fn default() -> Self {
        TreeConfig {
            num_leaves: 2000,
            min_occupancy: 100.0,
            min_gain: 0.0,
        }
    }
}

impl TreeConfig {
    fn validate(&self) -> Result<()> {
        if self.num_leaves == 0 {
            return Err(Error::config("senone tree: num_leaves must be at least 1"));
        }
        if !self.min_occupancy.is_finite() || self.min_occupancy < 0.0 {
            return Err(Error::config(format!(
                "senone tree: min_occupancy must be a number of frames >= 0, got {}",
                self.min_occupancy
            )));
        }
        if !self.min_gain.is_finite() {
            return Err(Error::config(format!(
                "senone tree: min_gain must be finite, got {}",
                self.min_gain
            )));
        }
        Ok(())
    }
}

/// Grows a tree with one root per (phone, state) that has frames in `stats`.
pub fn build_tree(
    stats: &TreeStats,
    questions: &[Question],
    cfg: &TreeConfig,
) -> Result<SenoneTree> {
    let roots: BTreeSet<(u32, u8)> = stats.iter().map(|(k, _)| (k.phone, k.state)).collect();
    grow(stats, questions, &roots, cfg)
}

/// Grows a tree with one root per phone in `phones` and state in `0..num_states`, with or
/// without frames (a root without frames stays a leaf of zero occupancy), so that every
/// context of the phone set maps to a senone. A phone or state in `stats` outside that set is
/// an error naming it.
pub fn build_tree_for_phones(
    stats: &TreeStats,
    questions: &[Question],
    phones: &[u32],
    num_states: u8,
    cfg: &TreeConfig,
) -> Result<SenoneTree> {
    let phone_set: BTreeSet<u32> = phones.iter().copied().collect();
    for (k, _) in stats.iter() {
        if !phone_set.contains(&k.phone) {
            return Err(Error::Mismatch(format!(
                "tree statistics have frames of phone {} which is not in the phone set",
                k.phone
            )));
        }
        if k.state >= num_states {
            return Err(Error::Mismatch(format!(
                "tree statistics have frames of phone {} state {}, but phones have {} states",
                k.phone, k.state, num_states
            )));
        }
    }
    let roots: BTreeSet<(u32, u8)> = phone_set
        .iter()
        .flat_map(|&p| (0..num_states).map(move |s| (p, s)))
        .collect();
    grow(stats, questions, &roots, cfg)
}

/// A question ready for splitting: its set and name.
struct Prepared<'a> {
    name: &'a str,
    phones: &'a BTreeSet<u32>,
}

/// The best split found for a leaf.
struct Candidate {
    gain: f64,
    side: Side,
    question: usize,
    yes: GaussStats,
    no: GaussStats,
}

/// A node while growing: leaves keep their member contexts (indices into the context list).
enum GrowNode {
    Leaf {
        members: Vec<u32>,
        stats: GaussStats,
    },
    Split {
        count: f64,
        gain: f64,
        side: Side,
        question: usize,
        yes: usize,
        no: usize,
    },
}

/// Heap entry: the leaf `node` can be split with `gain`. Largest gain first; ties go to the
/// older node so that the order is deterministic.
struct HeapItem {
    gain: f64,
    node: usize,
}

impl PartialEq for HeapItem {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for HeapItem {}
impl PartialOrd for HeapItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem {
    fn cmp(&self, other: &Self) -> Ordering {
        self.gain
            .total_cmp(&other.gain)
            .then_with(|| other.node.cmp(&self.node))
    }
}

struct Grower<'a> {
    keys: Vec<ContextKey>,
    stats: Vec<&'a GaussStats>,
    questions: Vec<Prepared<'a>>,
    dim: usize,
    min_occupancy: f64,
}

impl Grower<'_> {
    /// The split of the leaf with `members` (total statistics `total`) that gains the most,
    /// if any gains more than nothing with both children at `min_occupancy` frames or more.
    fn best_split(&self, members: &[u32], total: &GaussStats) -> Option<Candidate> {
        if total.count < 2.0 * self.min_occupancy || total.count <= 0.0 || members.len() < 2 {
            return None;
        }
        let parent_ll = total.log_likelihood();
        let mut best: Option<Candidate> = None;
        let mut acc = GaussStats::new(self.dim);
        for side in [Side::Left, Side::Right] {
            // The leaf's statistics per neighbour phone on this side: a question's answer
            // depends only on that phone, so these are all a split needs.
            let mut index: HashMap<u32, usize> = HashMap::new();
            let mut local: Vec<(u32, GaussStats)> = Vec::new();
            for &m in members {
                let p = side.phone_of(&self.keys[m as usize]);
                let i = *index.entry(p).or_insert_with(|| {
                    local.push((p, GaussStats::new(self.dim)));
                    local.len() - 1
                });
                local[i].1.add(self.stats[m as usize]);
            }
            let n = local.len();
            if n < 2 {
                continue;
            }
            let words = n.div_ceil(64);
            // Partitions already tried on this side (two questions can split this leaf alike).
            let mut tried: HashSet<Vec<u64>> = HashSet::new();
            for (qi, q) in self.questions.iter().enumerate() {
                let mut mask = vec![0u64; words];
                let mut n_yes = 0;
                let mut yes_count = 0.0;
                for (i, (p, s)) in local.iter().enumerate() {
                    if q.phones.contains(p) {
                        mask[i / 64] |= 1 << (i % 64);
                        n_yes += 1;
                        yes_count += s.count;
                    }
                }
                if n_yes == 0 || n_yes == n {
                    continue;
                }
                // A partition and its complement are the same split.
                if mask[0] & 1 == 1 {
                    for (w, word) in mask.iter_mut().enumerate() {
                        let valid = if (w + 1) * 64 <= n {
                            u64::MAX
                        } else {
                            (1u64 << (n % 64)) - 1
                        };
                        *word = !*word & valid;
                    }
                }
                if !tried.insert(mask) {
                    continue;
                }
                let no_count = total.count - yes_count;
                if yes_count < self.min_occupancy || no_count < self.min_occupancy {
                    continue;
                }
                // Sum the side with fewer phones, take the other as the remainder.
                let sum_yes = 2 * n_yes <= n;
                acc.clear();
                for (p, s) in &local {
                    if q.phones.contains(p) == sum_yes {
                        acc.add(s);
                    }
                }
                let rest = total.minus(&acc);
                let gain = acc.log_likelihood() + rest.log_likelihood() - parent_ll;
                if gain > MIN_GAIN_PER_FRAME * total.count
                    && best.as_ref().map_or(true, |b| gain > b.gain)
                {
                    let (yes, no) = if sum_yes {
                        (acc.clone(), rest)
                    } else {
                        (rest, acc.clone())
                    };
                    best = Some(Candidate {
                        gain,
                        side,
                        question: qi,
                        yes,
                        no,
                    });
                }
            }
        }
        best
    }
}

fn grow(
    stats: &TreeStats,
    questions: &[Question],
    roots: &BTreeSet<(u32, u8)>,
    cfg: &TreeConfig,
) -> Result<SenoneTree> {
    cfg.validate()?;
    if roots.is_empty() {
        return Err(Error::config(
            "senone tree: no (phone, state) to build a tree for (no frames?)",
        ));
    }
    if cfg.num_leaves < roots.len() {
        return Err(Error::config(format!(
            "senone tree: num_leaves {} is below the number of (phone, state) roots {}; ask for at least {}",
            cfg.num_leaves,
            roots.len(),
            roots.len()
        )));
    }
    // Questions: names must survive the text format; identical sets are asked once.
    let mut prepared: Vec<Prepared> = Vec::new();
    let mut seen_sets: HashSet<&BTreeSet<u32>> = HashSet::new();
    for q in questions {
        if q.name.is_empty()
            || q.name
                .chars()
                .any(|c| c.is_whitespace() || matches!(c, ':' | '{' | '}' | '#'))
        {
            return Err(Error::config(format!(
                "senone tree: question name '{}' must be one word without ':', '{{', '}}' or '#'",
                q.name
            )));
        }
        if !q.phones.is_empty() && seen_sets.insert(&q.phones) {
            prepared.push(Prepared {
                name: &q.name,
                phones: &q.phones,
            });
        }
    }

    let dim = stats.dim();
    let mut keys = Vec::with_capacity(stats.len());
    let mut refs = Vec::with_capacity(stats.len());
    let mut root_members: BTreeMap<(u32, u8), Vec<u32>> =
        roots.iter().map(|r| (*r, Vec::new())).collect();
    for (k, s) in stats.iter() {
        if let Some(m) = root_members.get_mut(&(k.phone, k.state)) {
            m.push(keys.len() as u32);
            keys.push(*k);
            refs.push(s);
        }
    }
    let grower = Grower {
        keys,
        stats: refs,
        questions: prepared,
        dim,
        min_occupancy: cfg.min_occupancy,
    };

    let mut nodes: Vec<GrowNode> = Vec::new();
    let mut root_nodes: BTreeMap<(u32, u8), usize> = BTreeMap::new();
    for (r, members) in root_members {
        let mut total = GaussStats::new(dim);
        for &m in &members {
            total.add(grower.stats[m as usize]);
        }
        root_nodes.insert(r, nodes.len());
        nodes.push(GrowNode::Leaf {
            members,
            stats: total,
        });
    }
    let mut candidates: Vec<Option<Candidate>> = nodes
        .par_iter()
        .map(|n| match n {
            GrowNode::Leaf { members, stats } => grower.best_split(members, stats),
            GrowNode::Split { .. } => None,
        })
        .collect();
    let mut heap = BinaryHeap::new();
    for (node, c) in candidates.iter().enumerate() {
        if let Some(c) = c {
            heap.push(HeapItem { gain: c.gain, node });
        }
    }

    let mut leaves = nodes.len();
    while leaves < cfg.num_leaves {
        let Some(top) = heap.pop() else { break };
        if top.gain < cfg.min_gain {
            break;
        }
        let cand = candidates[top.node]
            .take()
            .expect("a queued leaf has a candidate");
        let GrowNode::Leaf { members, .. } = std::mem::replace(
            &mut nodes[top.node],
            GrowNode::Split {
                count: cand.yes.count + cand.no.count,
                gain: cand.gain,
                side: cand.side,
                question: cand.question,
                yes: 0,
                no: 0,
            },
        ) else {
            unreachable!("only leaves are queued")
        };
        let q = &grower.questions[cand.question];
        let (yes_members, no_members): (Vec<u32>, Vec<u32>) = members.into_iter().partition(|&m| {
            q.phones
                .contains(&cand.side.phone_of(&grower.keys[m as usize]))
        });
        let (yes_cand, no_cand) = rayon::join(
            || grower.best_split(&yes_members, &cand.yes),
            || grower.best_split(&no_members, &cand.no),
        );
        let (yes_id, no_id) = (nodes.len(), nodes.len() + 1);
        if let GrowNode::Split { yes, no, .. } = &mut nodes[top.node] {
            (*yes, *no) = (yes_id, no_id);
        }
        nodes.push(GrowNode::Leaf {
            members: yes_members,
            stats: cand.yes,
        });
        nodes.push(GrowNode::Leaf {
            members: no_members,
            stats: cand.no,
        });
        for (id, c) in [(yes_id, yes_cand), (no_id, no_cand)] {
            if let Some(c) = &c {
                heap.push(HeapItem {
                    gain: c.gain,
                    node: id,
                });
            }
            candidates.push(c);
        }
        leaves += 1;
    }

    // Renumber in preorder per root (yes before no), senones in the same order, so that the
    // file reads top-down and a (phone, state)'s senones are contiguous.
    let mut order: Vec<usize> = Vec::with_capacity(nodes.len());
    for &root in root_nodes.values() {
        let mut stack = vec![root];
        while let Some(n) = stack.pop() {
            order.push(n);
            if let GrowNode::Split { yes, no, .. } = nodes[n] {
                stack.push(no);
                stack.push(yes);
            }
        }
    }
    let mut new_id = vec![0u32; nodes.len()];
    for (i, &old) in order.iter().enumerate() {
        new_id[old] = i as u32;
    }
    let mut senone = 0u32;
    let mut out: Vec<Node> = Vec::with_capacity(order.len());
    for &old in &order {
        out.push(match &nodes[old] {
            GrowNode::Leaf { stats, .. } => {
                senone += 1;
                Node::Leaf {
                    senone: senone - 1,
                    count: stats.count,
                }
            }
            GrowNode::Split {
                count,
                gain,
                side,
                question,
                yes,
                no,
            } => {
                let q = &grower.questions[*question];
                Node::Split(Split {
                    count: *count,
                    gain: *gain,
                    name: q.name.to_string(),
                    side: *side,
                    phones: q.phones.iter().copied().collect(),
                    yes: new_id[*yes],
                    no: new_id[*no],
                })
            }
        });
    }
    let roots = root_nodes
        .into_iter()
        .map(|(r, n)| (r, new_id[n]))
        .collect();
    Ok(SenoneTree::from_parts(out, roots))
}

/// An internal node of a [`SenoneTree`].
#[derive(Debug, Clone, PartialEq)]
struct Split {
    /// Frames under this node in training.
    count: f64,
    /// Log-likelihood gained by this split in training (nats).
    gain: f64,
    name: String,
    side: Side,
    /// Sorted phone ids that answer "yes".
    phones: Vec<u32>,
    yes: u32,
    no: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Split(Split),
    Leaf { senone: u32, count: f64 },
}

/// What one senone (leaf) stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct SenoneInfo {
    /// Senone id, `0..num_senones`.
    pub senone: u32,
    /// Centre phone of its root.
    pub phone: u32,
    /// HMM state of its root.
    pub state: u8,
    /// Training frames that reached it.
    pub count: f64,
    /// The answers from the root to it, `&`-joined (`left=vowel&right!=nasal`), or `*`.
    pub contexts: String,
}

/// A grown phonetic decision tree: any [`ContextKey`] to a senone id.
#[derive(Debug, Clone, PartialEq)]
pub struct SenoneTree {
    nodes: Vec<Node>,
    roots: BTreeMap<(u32, u8), u32>,
    /// By senone id.
    senones: Vec<SenoneInfo>,
}

impl SenoneTree {
    /// Assembles a tree whose structure is known to be valid (every node reached once from
    /// the roots, senone ids dense).
    fn from_parts(nodes: Vec<Node>, roots: BTreeMap<(u32, u8), u32>) -> Self {
        let num_senones = nodes
            .iter()
            .filter(|n| matches!(n, Node::Leaf { .. }))
            .count();
        let mut senones: Vec<Option<SenoneInfo>> = vec![None; num_senones];
        for (&(phone, state), &root) in &roots {
            let mut stack: Vec<(u32, String)> = vec![(root, String::new())];
            while let Some((n, path)) = stack.pop() {
                match &nodes[n as usize] {
                    Node::Leaf { senone, count } => {
                        let contexts = if path.is_empty() {
                            "*".to_string()
                        } else {
                            path
                        };
                        senones[*senone as usize] = Some(SenoneInfo {
                            senone: *senone,
                            phone,
                            state,
                            count: *count,
                            contexts,
                        });
                    }
                    Node::Split(s) => {
                        let sep = if path.is_empty() { "" } else { "&" };
                        stack.push((s.no, format!("{path}{sep}{}!={}", s.side.name(), s.name)));
                        stack.push((s.yes, format!("{path}{sep}{}={}", s.side.name(), s.name)));
                    }
                }
            }
        }
        let senones = senones
            .into_iter()
            .map(|s| s.expect("every leaf reached from a root"))
            .collect();
        SenoneTree {
            nodes,
            roots,
            senones,
        }
    }

    /// The senone of a context. Neighbour phones never seen in training answer the questions
    /// like any other phone; a (phone, state) without a root is an error naming it.
    pub fn senone(&self, key: &ContextKey) -> Result<u32> {
        let Some(&root) = self.roots.get(&(key.phone, key.state)) else {
            return Err(Error::Mismatch(format!(
                "phone {} state {} has no root in the senone tree (it had no training frames; \
                 build the tree for the whole phone set)",
                key.phone, key.state
            )));
        };
        let mut n = root;
        loop {
            match &self.nodes[n as usize] {
                Node::Leaf { senone, .. } => return Ok(*senone),
                Node::Split(s) => {
                    n = if s.phones.binary_search(&s.side.phone_of(key)).is_ok() {
                        s.yes
                    } else {
                        s.no
                    };
                }
            }
        }
    }

    /// Number of senones (leaves).
    pub fn num_senones(&self) -> usize {
        self.senones.len()
    }

    /// Whether (phone, state) has a root.
    pub fn has_root(&self, phone: u32, state: u8) -> bool {
        self.roots.contains_key(&(phone, state))
    }

    /// The (phone, state) roots, sorted.
    pub fn roots(&self) -> impl Iterator<Item = (u32, u8)> + '_ {
        self.roots.keys().copied()
    }

    /// What each senone stands for, by senone id.
    pub fn senones(&self) -> &[SenoneInfo] {
        &self.senones
    }

    /// Leaves, total log-likelihood gain and the occupancy histogram.
    pub fn report(&self) -> TreeReport {
        let mut total_gain = 0.0;
        let mut splits = 0;
        for n in &self.nodes {
            if let Node::Split(s) = n {
                total_gain += s.gain;
                splits += 1;
            }
        }
        let counts: Vec<f64> = self.senones.iter().map(|s| s.count).collect();
        let frames: f64 = counts.iter().sum();
        let max = counts.iter().copied().fold(0.0, f64::max);
        let min = counts.iter().copied().fold(f64::INFINITY, f64::min);
        // Bins [0, 1), [1, 2), [2, 4), ... up to the fullest leaf.
        let mut histogram = vec![OccupancyBin {
            min: 0.0,
            max: 1.0,
            leaves: 0,
        }];
        while histogram.last().expect("non-empty").max <= max {
            let lo = histogram.last().expect("non-empty").max;
            histogram.push(OccupancyBin {
                min: lo,
                max: 2.0 * lo,
                leaves: 0,
            });
        }
        for &c in &counts {
            let bin = histogram
                .iter_mut()
                .find(|b| c < b.max)
                .expect("bins cover the largest count");
            bin.leaves += 1;
        }
        // Empty bins below the emptiest leaf say nothing.
        let first = histogram.iter().position(|b| b.leaves > 0).unwrap_or(0);
        TreeReport {
            roots: self.roots.len(),
            leaves: self.senones.len(),
            splits,
            frames,
            total_gain,
            min_leaf_count: if counts.is_empty() { 0.0 } else { min },
            max_leaf_count: max,
            zero_occupancy_leaves: counts.iter().filter(|&&c| c <= 0.0).count(),
            occupancy_histogram: histogram.split_off(first),
        }
    }

    /// The tree in its text format (see the module documentation).
    pub fn to_text(&self) -> String {
        let mut t = String::new();
        t.push_str("# amdistill senone tree: maps (left, phone, right, state) to a senone.\n");
        t.push_str("# root PHONE STATE NODE\n");
        t.push_str("# node ID count FRAMES gain GAIN question NAME: if left|right in { PHONE ... } then NODE else NODE\n");
        t.push_str("# leaf ID senone SENONE count FRAMES\n");
        t.push_str(&format!(
            "senone-tree {TREE_FORMAT_VERSION} nodes {} senones {}\n",
            self.nodes.len(),
            self.senones.len()
        ));
        // Roots appear just before their subtrees (which are contiguous after building).
        let mut root_at: BTreeMap<u32, Vec<(u32, u8)>> = BTreeMap::new();
        for (&r, &n) in &self.roots {
            root_at.entry(n).or_default().push(r);
        }
        for (id, node) in self.nodes.iter().enumerate() {
            for (p, s) in root_at.get(&(id as u32)).into_iter().flatten() {
                t.push_str(&format!("root {p} {s} {id}\n"));
            }
            match node {
                Node::Leaf { senone, count } => {
                    t.push_str(&format!("leaf {id} senone {senone} count {count}\n"))
                }
                Node::Split(s) => {
                    let phones: Vec<String> = s.phones.iter().map(|p| p.to_string()).collect();
                    t.push_str(&format!(
                        "node {id} count {} gain {} question {}: if {} in {{ {} }} then {} else {}\n",
                        s.count,
                        s.gain,
                        s.name,
                        s.side.name(),
                        phones.join(" "),
                        s.yes,
                        s.no
                    ));
                }
            }
        }
        t
    }

    /// Writes the tree file atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let text = self.to_text();
        write_atomic(path, |w| w.write_all(text.as_bytes()))
    }

    /// Reads a tree file written by [`SenoneTree::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<SenoneTree> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses tree-file text; errors name `path` and the line.
    pub fn parse(text: &str, path: &Path) -> Result<SenoneTree> {
        parse_tree(text, path)
    }

    /// Writes `senones.txt`: `senone phone state count contexts`, one line per senone.
    pub fn write_senones(&self, path: impl AsRef<Path>) -> Result<()> {
        write_senone_table(path, &self.senones)
    }
}

/// Writes a senone table as `senones.txt` (what [`read_senones`] reads), atomically.
pub fn write_senone_table(path: impl AsRef<Path>, senones: &[SenoneInfo]) -> Result<()> {
    write_atomic(path, |w| {
        writeln!(
            w,
            "# senone phone state count contexts ('&'-joined answers from the root; * = all)"
        )?;
        for s in senones {
            writeln!(
                w,
                "{} {} {} {} {}",
                s.senone, s.phone, s.state, s.count, s.contexts
            )?;
        }
        Ok(())
    })
}

/// Reads `senones.txt` as written by [`SenoneTree::write_senones`]; senone ids must be
/// `0, 1, 2 ...` in order.
pub fn read_senones(path: impl AsRef<Path>) -> Result<Vec<SenoneInfo>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 5 {
            return Err(Error::parse(
                path,
                line_no,
                "expected 'senone phone state count contexts'",
            ));
        }
        let senone: u32 = parse_num(f[0], "senone id", path, line_no)?;
        if senone as usize != out.len() {
            return Err(Error::parse(
                path,
                line_no,
                format!("expected senone {}, found {senone}", out.len()),
            ));
        }
        out.push(SenoneInfo {
            senone,
            phone: parse_num(f[1], "phone", path, line_no)?,
            state: parse_num(f[2], "state", path, line_no)?,
            count: parse_count(f[3], "count", path, line_no)?,
            contexts: f[4].to_string(),
        });
    }
    Ok(out)
}

/// An identity string for a senone table: its size and a 64-bit FNV-1a hash of its lines
/// (comments and blank lines ignored), e.g. `1000 senones fnv1a64:9c3e...`. Artefacts that
/// depend on the senone set (models, soft targets, bundles) record it, and are refused with
/// another table.
pub fn senones_identity(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let n = read_senones(path)?.len();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        for b in line.bytes().chain(std::iter::once(b'\n')) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    Ok(format!("{n} senones fnv1a64:{h:016x}"))
}

/// A leaf-occupancy histogram bin: `leaves` leaves have `min <= frames < max`.
#[derive(Debug, Clone, PartialEq)]
pub struct OccupancyBin {
    /// Lower bound in frames (inclusive).
    pub min: f64,
    /// Upper bound in frames (exclusive).
    pub max: f64,
    /// Leaves in the bin.
    pub leaves: usize,
}

/// Summary of a grown tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeReport {
    /// (phone, state) roots.
    pub roots: usize,
    /// Leaves, that is senones.
    pub leaves: usize,
    /// Splits made (`leaves - roots`).
    pub splits: usize,
    /// Training frames.
    pub frames: f64,
    /// Log-likelihood gained by all splits (nats).
    pub total_gain: f64,
    /// Frames in the emptiest leaf.
    pub min_leaf_count: f64,
    /// Frames in the fullest leaf.
    pub max_leaf_count: f64,
    /// Leaves without training frames (roots of phones absent from the data).
    pub zero_occupancy_leaves: usize,
    /// Leaf occupancy in doubling bins, from the emptiest leaf's bin to the fullest's.
    pub occupancy_histogram: Vec<OccupancyBin>,
}

impl fmt::Display for TreeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "senone tree: {} leaves from {} (phone, state) roots ({} splits), {} frames",
            self.leaves, self.roots, self.splits, self.frames
        )?;
        let per_frame = if self.frames > 0.0 {
            self.total_gain / self.frames
        } else {
            0.0
        };
        writeln!(
            f,
            "log-likelihood gain: {:.1} nats ({per_frame:.4} per frame)",
            self.total_gain
        )?;
        writeln!(
            f,
            "leaf occupancy: min {} max {} frames, {} leaves without frames",
            self.min_leaf_count, self.max_leaf_count, self.zero_occupancy_leaves
        )?;
        writeln!(f, "occupancy histogram (frames: leaves):")?;
        for b in &self.occupancy_histogram {
            writeln!(f, "  [{:>8}, {:>8})  {}", b.min, b.max, b.leaves)?;
        }
        Ok(())
    }
}

fn parse_num<T: std::str::FromStr>(tok: &str, what: &str, path: &Path, line: usize) -> Result<T> {
    tok.parse()
        .map_err(|_| Error::parse(path, line, format!("bad {what} '{tok}'")))
}

fn parse_count(tok: &str, what: &str, path: &Path, line: usize) -> Result<f64> {
    match tok.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(Error::parse(
            path,
            line,
            format!("bad {what} '{tok}' (a number >= 0)"),
        )),
    }
}

/// Expects `tok` to be the keyword `kw`.
fn expect_kw(tok: Option<&&str>, kw: &str, path: &Path, line: usize) -> Result<()> {
    match tok {
        Some(&t) if t == kw => Ok(()),
        Some(t) => Err(Error::parse(
            path,
            line,
            format!("expected '{kw}', found '{t}'"),
        )),
        None => Err(Error::parse(
            path,
            line,
            format!("expected '{kw}', found the end of the line"),
        )),
    }
}

fn field<'a>(f: &[&'a str], i: usize, what: &str, path: &Path, line: usize) -> Result<&'a str> {
    f.get(i)
        .copied()
        .ok_or_else(|| Error::parse(path, line, format!("missing {what}")))
}

fn parse_tree(text: &str, path: &Path) -> Result<SenoneTree> {
    let mut header: Option<(usize, usize, usize)> = None; // (line, nodes, senones)
    let mut nodes: Vec<Node> = Vec::new();
    let mut node_lines: Vec<usize> = Vec::new();
    let mut roots: BTreeMap<(u32, u8), u32> = BTreeMap::new();
    let mut root_lines: Vec<(usize, u32)> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let ln = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if header.is_none() {
            if f.len() != 6 || f[0] != "senone-tree" || f[2] != "nodes" || f[4] != "senones" {
                return Err(Error::parse(
                    path,
                    ln,
                    "expected the header 'senone-tree VERSION nodes N senones K' (is this a senone tree file?)",
                ));
            }
            let version: u32 = parse_num(f[1], "format version", path, ln)?;
            if version != TREE_FORMAT_VERSION {
                return Err(Error::parse(
                    path,
                    ln,
                    format!("senone tree format version {version}; this build reads {TREE_FORMAT_VERSION}"),
                ));
            }
            header = Some((
                ln,
                parse_num(f[3], "node count", path, ln)?,
                parse_num(f[5], "senone count", path, ln)?,
            ));
            continue;
        }
        match f[0] {
            "root" => {
                if f.len() != 4 {
                    return Err(Error::parse(path, ln, "expected 'root PHONE STATE NODE'"));
                }
                let phone: u32 = parse_num(f[1], "phone", path, ln)?;
                let state: u8 = parse_num(f[2], "state", path, ln)?;
                let node: u32 = parse_num(f[3], "node id", path, ln)?;
                if roots.insert((phone, state), node).is_some() {
                    return Err(Error::parse(
                        path,
                        ln,
                        format!("second root for phone {phone} state {state}"),
                    ));
                }
                root_lines.push((ln, node));
            }
            "leaf" | "node" => {
                let id: usize = parse_num(field(&f, 1, "node id", path, ln)?, "node id", path, ln)?;
                if id != nodes.len() {
                    return Err(Error::parse(
                        path,
                        ln,
                        format!(
                            "node ids must be 0, 1, 2 ... in order: expected {}, found {id}",
                            nodes.len()
                        ),
                    ));
                }
                let node = if f[0] == "leaf" {
                    if f.len() != 6 {
                        return Err(Error::parse(
                            path,
                            ln,
                            "expected 'leaf ID senone SENONE count FRAMES'",
                        ));
                    }
                    expect_kw(f.get(2), "senone", path, ln)?;
                    expect_kw(f.get(4), "count", path, ln)?;
                    Node::Leaf {
                        senone: parse_num(f[3], "senone id", path, ln)?,
                        count: parse_count(f[5], "count", path, ln)?,
                    }
                } else {
                    Node::Split(parse_split(&f, path, ln)?)
                };
                nodes.push(node);
                node_lines.push(ln);
            }
            other => {
                return Err(Error::parse(
                    path,
                    ln,
                    format!("unknown item '{other}' (expected root, node or leaf)"),
                ));
            }
        }
    }
    let Some((header_line, header_nodes, header_senones)) = header else {
        return Err(Error::parse(path, 0, "empty senone tree file (no header)"));
    };
    if nodes.len() != header_nodes {
        return Err(Error::parse(
            path,
            header_line,
            format!(
                "header says {header_nodes} nodes, the file has {}",
                nodes.len()
            ),
        ));
    }

    // Structure: every node has one parent or is a root, is reached from a root, and the
    // senone ids are 0..senones, each once.
    let n = nodes.len();
    let mut parent: Vec<Option<usize>> = vec![None; n]; // the line that refers to it
    for (id, node) in nodes.iter().enumerate() {
        if let Node::Split(s) = node {
            for child in [s.yes, s.no] {
                let c = child as usize;
                if c >= n {
                    return Err(Error::parse(
                        path,
                        node_lines[id],
                        format!("child {child} is not a node (0..{n})"),
                    ));
                }
                if c == id || parent[c].is_some() {
                    return Err(Error::parse(
                        path,
                        node_lines[id],
                        format!("node {child} has more than one parent (the tree must not share or loop)"),
                    ));
                }
                parent[c] = Some(node_lines[id]);
            }
        }
    }
    let mut root_of: Vec<bool> = vec![false; n];
    for &(ln, node) in &root_lines {
        let c = node as usize;
        if c >= n {
            return Err(Error::parse(
                path,
                ln,
                format!("root node {node} is not a node (0..{n})"),
            ));
        }
        if parent[c].is_some() || root_of[c] {
            return Err(Error::parse(
                path,
                ln,
                format!("node {node} is already a root or a child"),
            ));
        }
        root_of[c] = true;
    }
    let mut reached = vec![false; n];
    for (_, node) in &root_lines {
        let mut stack = vec![*node as usize];
        while let Some(c) = stack.pop() {
            reached[c] = true;
            if let Node::Split(s) = &nodes[c] {
                stack.push(s.yes as usize);
                stack.push(s.no as usize);
            }
        }
    }
    if let Some(id) = reached.iter().position(|r| !r) {
        return Err(Error::parse(
            path,
            node_lines[id],
            format!("node {id} is not reached from any root"),
        ));
    }
    let mut senone_seen = vec![false; header_senones.min(n)];
    let mut leaves = 0;
    for (id, node) in nodes.iter().enumerate() {
        if let Node::Leaf { senone, .. } = node {
            leaves += 1;
            let k = *senone as usize;
            if k >= senone_seen.len() || k >= header_senones {
                return Err(Error::parse(
                    path,
                    node_lines[id],
                    format!("senone {senone} is out of range (the header says {header_senones} senones)"),
                ));
            }
            if senone_seen[k] {
                return Err(Error::parse(
                    path,
                    node_lines[id],
                    format!("senone {senone} is used by two leaves"),
                ));
            }
            senone_seen[k] = true;
        }
    }
    if leaves != header_senones {
        return Err(Error::parse(
            path,
            header_line,
            format!("header says {header_senones} senones, the file has {leaves} leaves"),
        ));
    }
    Ok(SenoneTree::from_parts(nodes, roots))
}

/// Parses `node ID count FRAMES gain GAIN question NAME: if SIDE in { P ... } then YES else NO`.
fn parse_split(f: &[&str], path: &Path, ln: usize) -> Result<Split> {
    const SHAPE: &str = "expected 'node ID count FRAMES gain GAIN question NAME: if left|right in { PHONE ... } then NODE else NODE'";
    if f.len() < 15 {
        return Err(Error::parse(path, ln, SHAPE));
    }
    expect_kw(f.get(2), "count", path, ln)?;
    let count = parse_count(f[3], "count", path, ln)?;
    expect_kw(f.get(4), "gain", path, ln)?;
    let gain: f64 = parse_num(f[5], "gain", path, ln)?;
    if !gain.is_finite() {
        return Err(Error::parse(path, ln, format!("bad gain '{}'", f[5])));
    }
    expect_kw(f.get(6), "question", path, ln)?;
    let name = match f[7].strip_suffix(':') {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => {
            return Err(Error::parse(
                path,
                ln,
                format!("question name '{}' must end with ':'", f[7]),
            ))
        }
    };
    expect_kw(f.get(8), "if", path, ln)?;
    let side = match f[9] {
        "left" => Side::Left,
        "right" => Side::Right,
        other => {
            return Err(Error::parse(
                path,
                ln,
                format!("expected 'left' or 'right', found '{other}'"),
            ))
        }
    };
    expect_kw(f.get(10), "in", path, ln)?;
    expect_kw(f.get(11), "{", path, ln)?;
    let close = f[12..]
        .iter()
        .position(|t| *t == "}")
        .map(|p| p + 12)
        .ok_or_else(|| Error::parse(path, ln, "phone set has no closing '}'"))?;
    let mut phones: Vec<u32> = Vec::with_capacity(close - 12);
    for t in &f[12..close] {
        phones.push(parse_num(t, "phone id", path, ln)?);
    }
    if phones.is_empty() {
        return Err(Error::parse(path, ln, "empty phone set"));
    }
    phones.sort_unstable();
    phones.dedup();
    if f.len() != close + 5 {
        return Err(Error::parse(path, ln, SHAPE));
    }
    expect_kw(f.get(close + 1), "then", path, ln)?;
    let yes: u32 = parse_num(f[close + 2], "yes node", path, ln)?;
    expect_kw(f.get(close + 3), "else", path, ln)?;
    let no: u32 = parse_num(f[close + 4], "no node", path, ln)?;
    Ok(Split {
        count,
        gain,
        name,
        side,
        phones,
        yes,
        no,
    })
}
