//! Questions for the senone tree: named sets of phone ids, asked of the left or the right
//! context ("is the left phone in set Q?").
//!
//! Two sources, used together by [`super::tree::build_tree`]:
//! - phonetic classes the caller defines for its phone set (vowel, nasal, stop, ...), made with
//!   [`Question::new`];
//! - data-driven questions from [`cluster_phone_questions`], which clusters the phones by their
//!   own acoustics, as Kaldi's `cluster-phones` does: every node of the phone cluster tree
//!   becomes a question.

use std::collections::BTreeSet;

use super::tree::{GaussStats, TreeStats};

/// The HMM state whose frames describe a phone for clustering: the middle one of three, as in
/// Kaldi's `cluster-phones` (`--pdf-class-list` defaults to 1), because the edge states are
/// blurred by the neighbours' coarticulation.
pub const CLUSTER_STATE: u8 = 1;

/// A named set of phone ids asked of one context phone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// One word (no whitespace, ':', '{' or '}'), written into the tree file.
    pub name: String,
    /// The phone ids that answer "yes".
    pub phones: BTreeSet<u32>,
}

impl Question {
    /// A question named `name` that answers "yes" for `phones`.
    pub fn new(name: impl Into<String>, phones: impl IntoIterator<Item = u32>) -> Self {
        Question {
            name: name.into(),
            phones: phones.into_iter().collect(),
        }
    }

    /// Whether `phone` answers "yes".
    pub fn contains(&self, phone: u32) -> bool {
        self.phones.contains(&phone)
    }
}

/// Data-driven questions for the phones `0..num_phones`, from a bottom-up binary clustering of
/// their Gaussians.
///
/// Each phone is described by one diagonal Gaussian pooled over all its contexts in `stats`:
/// the frames of its middle state [`CLUSTER_STATE`], or of all its states when it has no
/// middle-state frames. Starting from one cluster per phone, the pair whose merge loses the
/// least log-likelihood (`LL(a) + LL(b) - LL(a + b)`) is merged, until one cluster is left.
/// Every cluster made on the way is a question: the single phones (named `phoneP`) and the
/// merged sets (`clusterK`, K the merge step), largest first; the set of all phones is left
/// out (it never splits anything). Phones with no frames, or with ids `>= num_phones`, take no
/// part: they answer "no" to every returned question.
pub fn cluster_phone_questions(stats: &TreeStats, num_phones: usize) -> Vec<Question> {
    let dim = stats.dim();
    // Per phone: middle-state stats and all-state stats, indexed by phone id.
    let mut middle: Vec<Option<GaussStats>> = vec![None; num_phones];
    let mut all: Vec<Option<GaussStats>> = vec![None; num_phones];
    for (key, s) in stats.iter() {
        let p = key.phone as usize;
        if p >= num_phones {
            continue;
        }
        all[p].get_or_insert_with(|| GaussStats::new(dim)).add(s);
        if key.state == CLUSTER_STATE {
            middle[p].get_or_insert_with(|| GaussStats::new(dim)).add(s);
        }
    }

    struct Cluster {
        phones: BTreeSet<u32>,
        stats: GaussStats,
        ll: f64,
    }
    let mut clusters: Vec<Option<Cluster>> = Vec::new();
    for p in 0..num_phones {
        let chosen = match (middle[p].take(), all[p].take()) {
            (Some(m), _) if m.count > 0.0 => Some(m),
            (_, Some(a)) if a.count > 0.0 => Some(a),
            _ => None,
        };
        if let Some(s) = chosen {
            let ll = s.log_likelihood();
            clusters.push(Some(Cluster {
                phones: BTreeSet::from([p as u32]),
                stats: s,
                ll,
            }));
        }
    }
    let n = clusters.len();
    if n < 2 {
        // One phone (or none): there is nothing to tell apart.
        return Vec::new();
    }

    let merge_loss = |a: &Cluster, b: &Cluster| -> f64 {
        let mut m = a.stats.clone();
        m.add(&b.stats);
        a.ll + b.ll - m.log_likelihood()
    };
    // loss[i][j] for i < j, both active.
    let mut loss = vec![vec![f64::INFINITY; n]; n];
    for i in 0..n {
        for j in i + 1..n {
            loss[i][j] = merge_loss(clusters[i].as_ref().unwrap(), clusters[j].as_ref().unwrap());
        }
    }

    let singletons: Vec<Question> = clusters
        .iter()
        .flatten()
        .map(|c| {
            let p = *c
                .phones
                .iter()
                .next()
                .expect("one phone per initial cluster");
            Question {
                name: format!("phone{p}"),
                phones: c.phones.clone(),
            }
        })
        .collect();
    let mut merged: Vec<Question> = Vec::new();
    for step in 0..n - 1 {
        let (mut bi, mut bj, mut best) = (usize::MAX, usize::MAX, f64::INFINITY);
        for i in 0..n {
            if clusters[i].is_none() {
                continue;
            }
            for j in i + 1..n {
                if clusters[j].is_some() && (bi == usize::MAX || loss[i][j] < best) {
                    (bi, bj, best) = (i, j, loss[i][j]);
                }
            }
        }
        let b = clusters[bj].take().expect("active cluster");
        let a = clusters[bi].as_mut().expect("active cluster");
        a.stats.add(&b.stats);
        a.ll = a.stats.log_likelihood();
        a.phones.extend(b.phones);
        if step + 1 < n - 1 {
            merged.push(Question {
                name: format!("cluster{step}"),
                phones: a.phones.clone(),
            });
        }
        for k in 0..n {
            if k == bi || clusters[k].is_none() {
                continue;
            }
            let l = merge_loss(
                clusters[bi.min(k)].as_ref().unwrap(),
                clusters[bi.max(k)].as_ref().unwrap(),
            );
            loss[bi.min(k)][bi.max(k)] = l;
        }
    }
    merged.reverse();
    merged.extend(singletons);
    merged
}
