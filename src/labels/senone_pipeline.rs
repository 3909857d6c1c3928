//! Senones for a corpus: the glue between a feature store, phone times and the senone tree.
//!
//! ```text
//! FeatureStore + phones.ctm --FrameLabeler--> (left, phone, right, state) per frame
//!   --accumulate_tree_stats--> TreeStats --build_senone_tree--> SenoneTree
//! SenoneTree + phones.ctm + utt2num_frames --align_corpus--> one senone id per frame
//! ```
//!
//! Batch rules, as in Kaldi's tools: an utterance whose label and feature frame counts
//! disagree beyond the tolerance, that has no phone times, or whose features cannot be read is
//! left out and named in the outcome; the others go on. Errors that concern the whole run (an
//! unknown phone in the CTM, an empty store) are returned as errors.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::features::cmvn::CmvnStats;
use crate::features::store::FeatureStore;
use crate::features::Matrix;
use crate::labels::ctm::PhoneSegment;
use crate::labels::frame_labels::{
    check_frame_counts, ContextLabel, FrameCountReport, FrameGeometry, FrameLabeler, NUM_STATES,
};
use crate::labels::phones::{PhoneSet, PHONES_TXT, PHONE_CLASSES_TXT};
use crate::labels::tree::{
    build_tree_for_phones, cluster_phone_questions, ContextKey, OccupancyBin, Question, SenoneTree,
    TreeConfig, TreeStats,
};

/// Utterances summed in order by one task of [`accumulate_tree_stats`].
const CHUNK_UTTS: usize = 32;

/// Kaldi's frame length (seconds), assumed for a feature directory without `fbank.json`.
pub const KALDI_FRAME_LENGTH_S: f64 = 0.025;

/// The tree's key for a frame label.
pub fn context_key(label: &ContextLabel) -> ContextKey {
    ContextKey {
        left: label.left,
        phone: label.phone,
        right: label.right,
        state: label.state,
    }
}

/// The framing of a feature directory: from its `fbank.json`, else its `frame_shift` with
/// Kaldi's 25 ms frames and snip-edges. The flag is true when the framing was assumed.
pub fn store_geometry(store: &FeatureStore) -> (FrameGeometry, bool) {
    match store.options() {
        Some(opts) => (FrameGeometry::from_fbank(opts), false),
        None => (
            FrameGeometry {
                shift_s: store.frame_shift(),
                length_s: KALDI_FRAME_LENGTH_S,
                snip_edges: true,
            },
            true,
        ),
    }
}

/// A phone set named on the command line: a built-in name (`arpabet`, `timit61`, `timit48`,
/// `timit39`), a directory with `phones.txt` (and optionally `phone_classes.txt`), or a
/// `phones.txt` file (with `phone_classes.txt` beside it when present).
pub fn load_phone_set(spec: &str) -> Result<PhoneSet> {
    let path = Path::new(spec);
    if path.is_dir() {
        return PhoneSet::load_dir(path);
    }
    if path.is_file() {
        let classes = path.with_file_name(PHONE_CLASSES_TXT);
        return PhoneSet::load(path, classes.is_file().then_some(classes.as_path()));
    }
    PhoneSet::builtin(spec).map_err(|_| {
        Error::config(format!(
            "--phones {spec}: neither a built-in phone set (arpabet, timit61, timit48, timit39) \
             nor an existing {PHONES_TXT} file or directory"
        ))
    })
}

/// How features are grouped for mean (and variance) normalisation before their statistics go
/// into the tree, so that differences between speakers and voices do not dominate the splits.
#[derive(Debug, Clone, PartialEq)]
pub enum CmvnGrouping {
    /// Raw features.
    None,
    /// Each utterance by its own statistics.
    PerUtterance,
    /// Each speaker's utterances by the statistics of all of that speaker's utterances in the
    /// store; the map is `utt -> speaker` (utt2spk). Utterances it lacks are normalised alone.
    PerSpeaker(BTreeMap<String, String>),
    /// Every utterance by one set of statistics, e.g. the training set's (what a streaming
    /// model sees at run time: no speaker or utterance statistics exist there).
    Global(CmvnStats),
}

/// Normalises features per utterance or speaker (Kaldi's `apply-cmvn`).
pub struct Normaliser {
    grouping: Grouping,
    norm_vars: bool,
}

enum Grouping {
    None,
    PerUtterance,
    /// Utterance -> index into `stats`.
    PerSpeaker {
        group_of: HashMap<String, usize>,
        stats: Vec<CmvnStats>,
    },
    Global(CmvnStats),
}

impl Normaliser {
    /// No normalisation.
    pub fn none() -> Self {
        Normaliser {
            grouping: Grouping::None,
            norm_vars: false,
        }
    }

    /// Prepares normalisation for `store`; per speaker, this reads every utterance once to
    /// sum its speaker's statistics (speakers in parallel). An utterance that cannot be read
    /// is left out of its speaker's statistics (it fails again, by name, when it is used).
    pub fn new(store: &FeatureStore, grouping: &CmvnGrouping, norm_vars: bool) -> Self {
        let grouping = match grouping {
            CmvnGrouping::None => Grouping::None,
            CmvnGrouping::PerUtterance => Grouping::PerUtterance,
            CmvnGrouping::Global(stats) => Grouping::Global(stats.clone()),
            CmvnGrouping::PerSpeaker(utt2spk) => {
                let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
                for u in store.utts() {
                    if let Some(spk) = utt2spk.get(u) {
                        members.entry(spk.as_str()).or_default().push(u.as_str());
                    }
                }
                let groups: Vec<(Vec<&str>, CmvnStats)> = members
                    .into_par_iter()
                    .map(|(_, utts)| {
                        let mut stats = CmvnStats::new(store.dim());
                        for u in &utts {
                            if let Ok(m) = store.get(u) {
                                // Same dimension by construction of the store.
                                let _ = stats.accumulate(&m);
                            }
                        }
                        (utts, stats)
                    })
                    .collect();
                let mut group_of = HashMap::new();
                let mut stats = Vec::with_capacity(groups.len());
                for (i, (utts, s)) in groups.into_iter().enumerate() {
                    for u in utts {
                        group_of.insert(u.to_string(), i);
                    }
                    stats.push(s);
                }
                Grouping::PerSpeaker { group_of, stats }
            }
        };
        Normaliser {
            grouping,
            norm_vars,
        }
    }

    /// Normalises the features of `utt` (`[frames, dim]`) in place.
    pub fn apply(&self, utt: &str, feats: &mut Matrix) -> Result<()> {
        let own = |feats: &mut Matrix| -> Result<()> {
            let mut s = CmvnStats::new(feats.cols);
            s.accumulate(feats)?;
            s.apply(feats, self.norm_vars)
        };
        match &self.grouping {
            Grouping::None => Ok(()),
            Grouping::PerUtterance => own(feats),
            Grouping::Global(stats) => stats.apply(feats, self.norm_vars),
            Grouping::PerSpeaker { group_of, stats } => match group_of.get(utt) {
                Some(&i) => stats[i].apply(feats, self.norm_vars),
                None => own(feats),
            },
        }
    }
}

/// Why one utterance was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UttFailure {
    /// Utterance id.
    pub utt: String,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for UttFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "utterance {}: {}", self.utt, self.reason)
    }
}

/// The result of [`accumulate_tree_stats`].
#[derive(Debug, Clone)]
pub struct TreeAccumulation {
    /// Gaussian statistics per context.
    pub stats: TreeStats,
    /// Utterances whose frames are in `stats`.
    pub done: usize,
    /// Utterances in the feature store.
    pub total: usize,
    /// Frames in `stats`.
    pub frames: usize,
    /// Label against feature frame counts: mismatches and utterances missing either side.
    pub frame_counts: FrameCountReport,
    /// Utterances that had labels and agreeing frame counts but still failed (unreadable
    /// features, bad phone times ...), sorted by utterance.
    pub failures: Vec<UttFailure>,
}

/// Utterances with phone times and features whose frame counts agree within the tolerance,
/// with their feature frame counts, sorted; and the frame-count report for all of them.
fn usable_utterances(
    labeler: &FrameLabeler,
    phone_times: &BTreeMap<String, Vec<PhoneSegment>>,
    feature_frames: &BTreeMap<String, usize>,
) -> (Vec<(String, usize)>, FrameCountReport) {
    let label_frames: BTreeMap<String, usize> = phone_times
        .iter()
        .map(|(u, p)| (u.clone(), labeler.label_frames(p)))
        .collect();
    let report = check_frame_counts(&label_frames, feature_frames, labeler.tolerance);
    let usable = label_frames
        .iter()
        .filter_map(|(u, &l)| {
            let &n = feature_frames.get(u)?;
            (l.abs_diff(n) <= labeler.tolerance).then(|| (u.clone(), n))
        })
        .collect();
    (usable, report)
}

/// Frame counts of every utterance of `store` (its `utt2num_frames`).
pub fn store_frame_counts(store: &FeatureStore) -> BTreeMap<String, usize> {
    store
        .utts()
        .iter()
        .map(|u| (u.clone(), store.num_frames(u).unwrap_or(0)))
        .collect()
}

/// Per-context Gaussian statistics over a corpus: each usable utterance's features are read,
/// normalised by `norm`, labelled from its phone times (`[frames]` contexts, the same length
/// as the features) and summed per context. Chunks of utterances run in parallel (rayon), and
/// the result does not depend on the number of threads; `on_utt` is called once per
/// utterance of the store, done or not, for progress.
pub fn accumulate_tree_stats(
    store: &FeatureStore,
    phone_times: &BTreeMap<String, Vec<PhoneSegment>>,
    labeler: &FrameLabeler,
    norm: &Normaliser,
    on_utt: &(dyn Fn() + Sync),
) -> Result<TreeAccumulation> {
    let dim = store.dim();
    if dim == 0 {
        return Err(Error::config(format!(
            "{}: the feature store has no frames",
            store.dir().display()
        )));
    }
    let feature_frames = store_frame_counts(store);
    let (usable, frame_counts) = usable_utterances(labeler, phone_times, &feature_frames);
    // Utterances that are not usable count as processed straight away.
    for _ in 0..store.utts().len().saturating_sub(usable.len()) {
        on_utt();
    }

    struct Acc {
        stats: TreeStats,
        done: usize,
        frames: usize,
        failures: Vec<UttFailure>,
    }
    let empty = || Acc {
        stats: TreeStats::new(dim),
        done: 0,
        frames: 0,
        failures: Vec::new(),
    };
    let one = |utt: &str, n: usize, stats: &mut TreeStats| -> Result<()> {
        let mut feats = store.get(utt)?;
        norm.apply(utt, &mut feats)?;
        let labels = labeler.contexts(&phone_times[utt], n)?;
        let keys: Vec<ContextKey> = labels.iter().map(context_key).collect();
        stats.accumulate(&feats, &keys)
    };
    // Fixed chunks of utterances, each summed in order, merged in chunk order: the sums (and
    // so the tree) are the same whatever the number of threads. A window of chunks runs in
    // parallel at a time, which bounds how many chunk statistics exist at once.
    let chunks: Vec<&[(String, usize)]> = usable.chunks(CHUNK_UTTS).collect();
    let window = 2 * rayon::current_num_threads().max(1);
    let mut acc = empty();
    for w in chunks.chunks(window) {
        let parts: Vec<Acc> = w
            .par_iter()
            .map(|chunk| {
                let mut part = empty();
                for (utt, n) in chunk.iter() {
                    match one(utt, *n, &mut part.stats) {
                        Ok(()) => {
                            part.done += 1;
                            part.frames += n;
                        }
                        Err(e) => part.failures.push(UttFailure {
                            utt: utt.clone(),
                            reason: strip_utt_prefix(utt, &e.to_string()),
                        }),
                    }
                    on_utt();
                }
                part
            })
            .collect();
        for part in parts {
            acc.stats.merge(&part.stats)?;
            acc.done += part.done;
            acc.frames += part.frames;
            acc.failures.extend(part.failures);
        }
    }
    let mut failures = acc.failures;
    failures.sort_by(|a, b| a.utt.cmp(&b.utt));
    Ok(TreeAccumulation {
        stats: acc.stats,
        done: acc.done,
        total: store.utts().len(),
        frames: acc.frames,
        frame_counts,
        failures,
    })
}

/// `utterance U: msg` -> `msg`, so that a failure names its utterance once.
fn strip_utt_prefix(utt: &str, msg: &str) -> String {
    msg.strip_prefix(&format!("utterance {utt}: "))
        .unwrap_or(msg)
        .to_string()
}

/// The tree's questions: the phone set's phonetic classes (`silence`, `vowel`, `nasal` ...)
/// then the data-driven clusters of the phones' own statistics ([`cluster_phone_questions`]).
pub fn tree_questions(set: &PhoneSet, stats: &TreeStats) -> Vec<Question> {
    let mut questions: Vec<Question> = set
        .classes()
        .iter()
        .map(|c| Question::new(c.name.clone(), c.phones.iter().copied()))
        .collect();
    questions.extend(cluster_phone_questions(stats, set.len()));
    questions
}

/// Grows the senone tree with a root for every phone of `set` and each of its
/// [`NUM_STATES`] states, so that every context of the set maps to a senone (phones without
/// frames keep one leaf per state, of zero occupancy).
pub fn build_senone_tree(
    stats: &TreeStats,
    set: &PhoneSet,
    cfg: &TreeConfig,
) -> Result<SenoneTree> {
    let questions = tree_questions(set, stats);
    let phones: Vec<u32> = (0..set.len() as u32).collect();
    build_tree_for_phones(stats, &questions, &phones, NUM_STATES, cfg)
}

/// Checks that `tree` has a root for every phone of `set` and state, so that any context of
/// the set has a senone (a tree and a `phones.txt` from different runs fail here).
pub fn check_tree_covers(tree: &SenoneTree, set: &PhoneSet) -> Result<()> {
    for p in 0..set.len() as u32 {
        for s in 0..NUM_STATES {
            if !tree.has_root(p, s) {
                return Err(Error::Mismatch(format!(
                    "the senone tree has no root for phone {} ({}) state {s}; \
                     were the tree and {PHONES_TXT} written by the same build-tree run?",
                    p,
                    set.phone(p).unwrap_or("?")
                )));
            }
        }
    }
    Ok(())
}

/// What [`align_corpus`] made.
#[derive(Debug, Clone)]
pub struct CorpusAlignment {
    /// Utterance -> senone id per frame, `[utt2num_frames]` ids each.
    pub alignments: BTreeMap<String, Vec<u32>>,
    /// Utterances in `feature_frames`.
    pub total: usize,
    /// Label against feature frame counts: mismatches and utterances missing either side.
    pub frame_counts: FrameCountReport,
    /// Utterances with agreeing frame counts that still failed, sorted by utterance.
    pub failures: Vec<UttFailure>,
}

/// Senone ids per frame: each usable utterance is labelled with exactly its feature frame
/// count (labels padded with silence or cut within the tolerance) and every frame's context
/// goes through the tree, contexts unseen in training included. Utterances run in parallel.
pub fn align_corpus(
    tree: &SenoneTree,
    labeler: &FrameLabeler,
    phone_times: &BTreeMap<String, Vec<PhoneSegment>>,
    feature_frames: &BTreeMap<String, usize>,
) -> CorpusAlignment {
    let (usable, frame_counts) = usable_utterances(labeler, phone_times, feature_frames);
    let results: Vec<(String, Result<Vec<u32>>)> = usable
        .par_iter()
        .map(|(utt, n)| {
            let ids = labeler.contexts(&phone_times[utt], *n).and_then(|labels| {
                labels
                    .iter()
                    .map(|l| tree.senone(&context_key(l)))
                    .collect::<Result<Vec<u32>>>()
            });
            (utt.clone(), ids)
        })
        .collect();
    let mut alignments = BTreeMap::new();
    let mut failures = Vec::new();
    for (utt, r) in results {
        match r {
            Ok(ids) => {
                alignments.insert(utt, ids);
            }
            Err(e) => failures.push(UttFailure {
                reason: strip_utt_prefix(&utt, &e.to_string()),
                utt,
            }),
        }
    }
    CorpusAlignment {
        alignments,
        total: feature_frames.len(),
        frame_counts,
        failures,
    }
}

/// Summary of alignments against their tree.
#[derive(Debug, Clone, PartialEq)]
pub struct AlignmentReport {
    /// Utterances aligned.
    pub utterances: usize,
    /// Frames aligned.
    pub frames: usize,
    /// Senones of the tree.
    pub num_senones: usize,
    /// Senones with at least one frame.
    pub senones_used: usize,
    /// Frames in senones that had no training frames (phones absent from the tree's data).
    pub frames_in_untrained_senones: usize,
    /// Senones by frame count in doubling bins `[0, 1), [1, 2), [2, 4) ...`, from the
    /// emptiest senone's bin to the fullest's.
    pub frames_per_senone: Vec<OccupancyBin>,
}

impl AlignmentReport {
    /// Counts frames per senone of `tree` over `alignments`; an id outside the tree is an
    /// error naming its utterance.
    pub fn new(tree: &SenoneTree, alignments: &BTreeMap<String, Vec<u32>>) -> Result<Self> {
        let k = tree.num_senones();
        let mut per_senone = vec![0usize; k];
        let mut frames = 0;
        for (utt, ids) in alignments {
            for &id in ids {
                let slot = per_senone.get_mut(id as usize).ok_or_else(|| {
                    Error::utterance(utt, format!("senone {id} is not below {k}"))
                })?;
                *slot += 1;
            }
            frames += ids.len();
        }
        let untrained: usize = tree
            .senones()
            .iter()
            .filter(|s| s.count <= 0.0)
            .map(|s| per_senone[s.senone as usize])
            .sum();
        Ok(AlignmentReport {
            utterances: alignments.len(),
            frames,
            num_senones: k,
            senones_used: per_senone.iter().filter(|&&c| c > 0).count(),
            frames_in_untrained_senones: untrained,
            frames_per_senone: doubling_histogram(&per_senone),
        })
    }
}

/// Counts in bins `[0, 1), [1, 2), [2, 4) ...`, trimmed to the bins from the smallest count's
/// to the largest's.
fn doubling_histogram(counts: &[usize]) -> Vec<OccupancyBin> {
    let max = counts.iter().copied().max().unwrap_or(0) as f64;
    let mut bins = vec![OccupancyBin {
        min: 0.0,
        max: 1.0,
        leaves: 0,
    }];
    while bins.last().is_some_and(|b| b.max <= max) {
        let lo = bins.last().map_or(1.0, |b| b.max);
        bins.push(OccupancyBin {
            min: lo,
            max: 2.0 * lo,
            leaves: 0,
        });
    }
    for &c in counts {
        if let Some(b) = bins.iter_mut().find(|b| (c as f64) < b.max) {
            b.leaves += 1;
        }
    }
    let first = bins.iter().position(|b| b.leaves > 0).unwrap_or(0);
    bins.split_off(first)
}

impl fmt::Display for AlignmentReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "alignments: {} utterances, {} frames",
            self.utterances, self.frames
        )?;
        writeln!(
            f,
            "senones used: {} of {}",
            self.senones_used, self.num_senones
        )?;
        writeln!(
            f,
            "frames in senones without training frames: {}",
            self.frames_in_untrained_senones
        )?;
        writeln!(f, "frames per senone (frames: senones):")?;
        for b in &self.frames_per_senone {
            writeln!(f, "  [{:>8}, {:>8})  {}", b.min, b.max, b.leaves)?;
        }
        Ok(())
    }
}

/// One line per utterance left out of a batch: frame-count mismatches, utterances without
/// phone times or without features, and other failures. Empty when nothing was left out.
pub fn skipped_lines(frame_counts: &FrameCountReport, failures: &[UttFailure]) -> Vec<String> {
    let mut lines = Vec::new();
    for m in &frame_counts.mismatches {
        lines.push(format!(
            "utterance {}: phone times cover {} frames but the features have {} (difference {} > tolerance {}); skipped",
            m.utt,
            m.label_frames,
            m.feature_frames,
            m.label_frames.abs_diff(m.feature_frames),
            frame_counts.tolerance
        ));
    }
    for u in &frame_counts.missing_labels {
        lines.push(format!("utterance {u}: no phone times; skipped"));
    }
    for u in &frame_counts.missing_features {
        lines.push(format!(
            "utterance {u}: phone times but no features; skipped"
        ));
    }
    for f in failures {
        lines.push(format!("{f}; skipped"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_histogram_bins_every_count() {
        let bins = doubling_histogram(&[0, 1, 3, 3, 9]);
        let total: usize = bins.iter().map(|b| b.leaves).sum();
        assert_eq!(total, 5);
        assert_eq!((bins[0].min, bins[0].max, bins[0].leaves), (0.0, 1.0, 1));
        let last = bins.last().unwrap();
        assert_eq!((last.min, last.max, last.leaves), (8.0, 16.0, 1));
        assert!(doubling_histogram(&[4, 5]).first().unwrap().min == 4.0);
    }

    #[test]
    fn strip_prefix_only_removes_the_own_utterance() {
        assert_eq!(strip_utt_prefix("a", "utterance a: bad"), "bad");
        assert_eq!(
            strip_utt_prefix("a", "utterance b: bad"),
            "utterance b: bad"
        );
    }

    #[test]
    fn builtin_and_unknown_phone_sets() {
        assert_eq!(load_phone_set("timit39").unwrap().len(), 39);
        let e = load_phone_set("no-such-set-here").unwrap_err().to_string();
        assert!(
            e.contains("no-such-set-here") && e.contains("arpabet"),
            "{e}"
        );
    }
}
