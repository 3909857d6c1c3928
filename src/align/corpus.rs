//! Aligning a whole corpus: transcripts + feature store (+ acoustic model and its senone tree)
//! -> phone segments per utterance, failures by name.
//!
//! ```text
//! text ──transcript_prons──> words ──uniform (no model)───────────────> frame runs
//!                                  └─UttGraph + tree senones + Viterbi─> frame runs
//! frame runs ──runs_to_segments──> PhoneSegment (seconds, the features' framing)
//! ```
//!
//! With a DNN, emissions are `[frames, senones]` scaled log-likelihoods of the model's
//! outputs on the store's features, normalised as the model was trained (its CMVN card); each
//! graph state's senone is the tree's leaf for its `(left, phone, right, state)`. With a
//! GMM-HMM, only the graph's distinct states are scored (`[frames, distinct states]`).

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;

use crate::align::gmm::{emission_id, equal_state_alignment, unique_columns, Cepstra, GmmModel};
use crate::align::hmm::{HmmConfig, UttGraph};
use crate::align::lexicon::Lexicon;
use crate::align::{
    align_states, flat_start_phones, runs_to_segments, scaled_log_likelihoods, transcript_prons,
    uniform_segments, AlignFailure,
};
use crate::error::{Error, Result};
use crate::features::matrix::Matrix;
use crate::features::store::FeatureStore;
use crate::labels::ctm::PhoneSegment;
use crate::labels::frame_labels::{FrameGeometry, NUM_STATES};
use crate::labels::phones::PhoneSet;
use crate::labels::senone_pipeline::{CmvnGrouping, Normaliser};
use crate::labels::tree::{senones_identity, ContextKey, SenoneTree};
use crate::train::trained::TrainedModel;

/// Search settings of forced alignment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AlignConfig {
    /// Transition probabilities and optional silence.
    pub hmm: HmmConfig,
    /// Viterbi beam, in scaled log-likelihood units.
    pub beam: f32,
    /// A second, wider beam tried when `beam` finds no path (Kaldi's `--retry-beam`).
    pub retry_beam: f32,
    /// Multiplies the acoustic log-likelihoods against the transitions (Kaldi: 0.1).
    pub acoustic_scale: f32,
}

impl Default for AlignConfig {
    fn default() -> Self {
        AlignConfig {
            hmm: HmmConfig::default(),
            beam: 20.0,
            retry_beam: 80.0,
            acoustic_scale: 0.1,
        }
    }
}

/// An acoustic model with the senone tree its outputs index, ready to score a feature store.
pub struct AcousticScorer {
    pub model: TrainedModel,
    pub tree: SenoneTree,
    /// The tree's phone set (`TREE_DIR/phones.txt`).
    pub set: PhoneSet,
    normaliser: Normaliser,
}

impl AcousticScorer {
    /// Loads `model_dir` (on the CPU) and `tree_dir` (tree, phones.txt, senones.txt) for
    /// features `store`. Refused when the tree's senone table is not the model's, or the
    /// features are not those the model was trained on.
    pub fn load(model_dir: &Path, tree_dir: &Path, store: &FeatureStore) -> Result<Self> {
        let model = TrainedModel::load(model_dir, None, &Device::Cpu)?;
        let tree = SenoneTree::load(tree_dir.join("tree"))?;
        let set = PhoneSet::load_dir(tree_dir)?;
        let id = senones_identity(tree_dir.join("senones.txt"))?;
        if id != model.card.senones_id || tree.num_senones() != model.card.num_senones {
            return Err(Error::Mismatch(format!(
                "tree {} has senone table '{id}' ({} senones), model {} was trained on '{}'",
                tree_dir.display(),
                tree.num_senones(),
                model_dir.display(),
                model.card.senones_id
            )));
        }
        model.card.check_features(store, model_dir)?;
        let normaliser = model.card.cmvn.normaliser(store)?;
        Ok(AcousticScorer {
            model,
            tree,
            set,
            normaliser,
        })
    }

    /// Scaled log-likelihoods `[frames, senones]` (row-major) of `utt` in `store`.
    pub fn log_likelihoods(&self, store: &FeatureStore, utt: &str, scale: f32) -> Result<Vec<f32>> {
        let mut feats = store.get(utt)?;
        self.normaliser.apply(utt, &mut feats)?;
        let logits = self.model.logits(&feats)?;
        Ok(scaled_log_likelihoods(
            &logits,
            &self.model.card.log_priors,
            scale,
        ))
    }

    /// The senone of each graph state, or a failure naming the first context without one.
    fn senones_of(&self, graph: &UttGraph) -> std::result::Result<Vec<u32>, AlignFailure> {
        graph_contexts(graph)
            .map(|key| {
                self.tree
                    .senone(&key)
                    .map_err(|e| AlignFailure::Model(e.to_string()))
            })
            .collect()
    }
}

/// Each graph state's `(left, phone, right, state)`.
fn graph_contexts(graph: &UttGraph) -> impl Iterator<Item = ContextKey> + '_ {
    graph.states.iter().map(|st| ContextKey {
        left: st.left,
        phone: st.phone,
        right: st.right,
        state: st.state,
    })
}

/// How a GMM-HMM's states are indexed: per `(phone, HMM state)` (monophone), or per senone
/// of a tree (context-dependent).
pub struct GmmStates {
    /// The phone set (the tree's, when there is one).
    pub set: PhoneSet,
    /// The tree and its senone table's identity.
    pub tree: Option<(SenoneTree, String)>,
}

impl GmmStates {
    /// Monophone states of `set`.
    pub fn monophone(set: PhoneSet) -> Self {
        GmmStates { set, tree: None }
    }

    /// The senones of the tree in `tree_dir` (tree, phones.txt, senones.txt).
    pub fn tree(tree_dir: &Path) -> Result<Self> {
        let tree = SenoneTree::load(tree_dir.join("tree"))?;
        let set = PhoneSet::load_dir(tree_dir)?;
        let id = senones_identity(tree_dir.join("senones.txt"))?;
        Ok(GmmStates {
            set,
            tree: Some((tree, id)),
        })
    }

    /// The senone table's identity; `None` for monophone states.
    pub fn senones_id(&self) -> Option<String> {
        self.tree.as_ref().map(|(_, id)| id.clone())
    }

    /// Number of emission ids (GMMs).
    pub fn num_ids(&self) -> usize {
        match &self.tree {
            Some((t, _)) => t.num_senones(),
            None => self.set.len() * NUM_STATES as usize,
        }
    }

    fn id(&self, key: ContextKey) -> std::result::Result<usize, AlignFailure> {
        match &self.tree {
            Some((t, _)) => t
                .senone(&key)
                .map(|s| s as usize)
                .map_err(|e| AlignFailure::Model(e.to_string())),
            None => Ok(emission_id(key.phone, key.state)),
        }
    }

    /// Each graph state's emission id, or a failure naming the first context without one.
    pub fn graph_ids(&self, graph: &UttGraph) -> std::result::Result<Vec<usize>, AlignFailure> {
        graph_contexts(graph).map(|key| self.id(key)).collect()
    }

    /// The equal alignment (emission id per frame) of phone runs `(phone, first, end)`, with
    /// the contexts the graph gives: a phone's neighbours ignoring silences (silence at the
    /// utterance's edges), a silence's the runs either side.
    pub fn equal_alignment(
        &self,
        runs: &[(u32, usize, usize)],
    ) -> std::result::Result<Vec<usize>, AlignFailure> {
        let silence = self.set.silence_id().unwrap_or(0);
        let is_sil = |p: u32| self.set.is_silence(p);
        let context = |r: usize| -> (u32, u32) {
            let p = runs[r].0;
            if is_sil(p) {
                let left = r.checked_sub(1).map_or(silence, |i| runs[i].0);
                let right = runs.get(r + 1).map_or(silence, |x| x.0);
                return (left, right);
            }
            let left = runs[..r]
                .iter()
                .rev()
                .find(|x| !is_sil(x.0))
                .map_or(silence, |x| x.0);
            let right = runs[r + 1..]
                .iter()
                .find(|x| !is_sil(x.0))
                .map_or(silence, |x| x.0);
            (left, right)
        };
        let mut failure = None;
        let ali = equal_state_alignment(runs, |r, state| {
            let (left, right) = context(r);
            let key = ContextKey {
                left,
                phone: runs[r].0,
                right,
                state,
            };
            self.id(key).map_err(|f| failure = Some(f)).ok()
        });
        ali.ok_or_else(|| failure.expect("set when an id is missing"))
    }
}

/// A GMM-HMM ([`GmmModel`]) with the feature pipeline it was trained with: the store's
/// log-mel frames, mean-normalised per speaker (per utterance without `utt2spk`), as cepstra
/// with deltas.
pub struct GmmScorer {
    pub model: GmmModel,
    pub states: GmmStates,
    cepstra: Cepstra,
    normaliser: Normaliser,
}

impl GmmScorer {
    /// Wraps `model` for features `store`; `utt2spk` groups the mean normalisation. Refused
    /// when the model's phones, senones or filterbank are not those of `states` and `store`.
    pub fn new(
        model: GmmModel,
        states: GmmStates,
        store: &FeatureStore,
        utt2spk: Option<BTreeMap<String, String>>,
    ) -> Result<Self> {
        if model.phones != states.set.phones() {
            return Err(Error::Mismatch(format!(
                "the GMM-HMM's {} phones are not those of phone set {}",
                model.phones.len(),
                states.set.name()
            )));
        }
        if model.senones != states.senones_id() || model.gmms.len() != states.num_ids() {
            return Err(Error::Mismatch(format!(
                "the GMM-HMM's states ({}, {} GMMs) are not {} ({} states)",
                model.senones.as_deref().unwrap_or("monophone"),
                model.gmms.len(),
                states.senones_id().as_deref().unwrap_or("monophone"),
                states.num_ids()
            )));
        }
        if model.bins != store.dim() {
            return Err(Error::Mismatch(format!(
                "the GMM-HMM was trained on {} filterbank bins, {} has {}",
                model.bins,
                store.dir().display(),
                store.dim()
            )));
        }
        Ok(GmmScorer {
            cepstra: Cepstra::new(model.bins)?,
            normaliser: gmm_normaliser(store, utt2spk),
            model,
            states,
        })
    }
}

/// Mean normalisation per speaker of `utt2spk`, per utterance without it.
pub fn gmm_normaliser(
    store: &FeatureStore,
    utt2spk: Option<BTreeMap<String, String>>,
) -> Normaliser {
    match utt2spk {
        Some(map) => Normaliser::new(store, &CmvnGrouping::PerSpeaker(map), false),
        None => Normaliser::new(store, &CmvnGrouping::PerUtterance, false),
    }
}

/// `utt`'s log-mel frames from `store`, normalised, as cepstra with deltas `[frames, 39]`.
pub fn gmm_features(
    store: &FeatureStore,
    utt: &str,
    normaliser: &Normaliser,
    cepstra: &Cepstra,
) -> Result<Matrix> {
    let mut feats = store.get(utt)?;
    normaliser.apply(utt, &mut feats)?;
    cepstra.features(&feats)
}

/// What scores the graph states of forced alignment: a hybrid DNN over tree senones, or a
/// GMM-HMM.
// Made once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Scorer {
    Dnn(AcousticScorer),
    Gmm(GmmScorer),
}

impl Scorer {
    /// The phone set the model's states belong to.
    pub fn set(&self) -> &PhoneSet {
        match self {
            Scorer::Dnn(s) => &s.set,
            Scorer::Gmm(s) => &s.states.set,
        }
    }

    /// `utt`'s emissions for the states of `graph`. `Err`: the features or the model failed;
    /// `Ok(Err)`: a graph state the model has no output for.
    fn emissions(
        &self,
        store: &FeatureStore,
        utt: &str,
        graph: &UttGraph,
        scale: f32,
    ) -> Result<std::result::Result<Emissions, AlignFailure>> {
        match self {
            // One forward pass gives every senone: score them all.
            Scorer::Dnn(s) => {
                let state_columns = match s.senones_of(graph) {
                    Ok(c) => c,
                    Err(f) => return Ok(Err(f)),
                };
                Ok(Ok(Emissions {
                    loglik: s.log_likelihoods(store, utt, scale)?,
                    num_columns: s.tree.num_senones(),
                    state_columns,
                }))
            }
            // Each GMM costs a pass over its Gaussians: score only the graph's distinct states.
            Scorer::Gmm(s) => {
                let ids = match s.states.graph_ids(graph) {
                    Ok(ids) => ids,
                    Err(f) => return Ok(Err(f)),
                };
                let (unique, column) = unique_columns(&ids);
                let feats = gmm_features(store, utt, &s.normaliser, &s.cepstra)?;
                Ok(Ok(Emissions {
                    loglik: s.model.log_likelihoods(&feats, &unique, scale),
                    num_columns: unique.len(),
                    state_columns: column.into_iter().map(|c| c as u32).collect(),
                }))
            }
        }
    }
}

/// One utterance's scores for Viterbi (see [`Scorer::emissions`]).
struct Emissions {
    /// Scaled log-likelihoods `[frames, num_columns]`, row-major.
    loglik: Vec<f32>,
    num_columns: usize,
    /// Each graph state's column, `[graph states]`.
    state_columns: Vec<u32>,
}

/// Frame runs `(phone, first frame, end frame)` of the flat start: silence + the transcript's
/// phones + silence, the `num_frames` frames split uniformly.
pub fn uniform_alignment(
    words: &[Vec<Vec<u32>>],
    num_frames: usize,
    silence: u32,
) -> std::result::Result<Vec<(u32, usize, usize)>, AlignFailure> {
    let phones = flat_start_phones(words, silence);
    uniform_segments(&phones, num_frames).ok_or(AlignFailure::TooShort {
        frames: num_frames,
        needed: phones.len() * crate::labels::frame_labels::NUM_STATES as usize,
    })
}

/// Frame runs `(phone, first frame, end frame)` of `utt` (`num_frames` frames in `store`): the
/// Viterbi path through the transcript's graph, scored by `scorer`. `Err`: the features or the
/// model failed (the run stops); `Ok(Err)`: the utterance cannot be aligned.
fn viterbi_alignment(
    words: &[Vec<Vec<u32>>],
    utt: &str,
    num_frames: usize,
    silence: u32,
    scorer: &Scorer,
    store: &FeatureStore,
    cfg: &AlignConfig,
) -> Result<std::result::Result<Vec<(u32, usize, usize)>, AlignFailure>> {
    let graph = match UttGraph::build(words, silence, &cfg.hmm) {
        Ok(g) => g,
        Err(e) => return Ok(Err(AlignFailure::Model(e.to_string()))),
    };
    let em = match scorer.emissions(store, utt, &graph, cfg.acoustic_scale)? {
        Ok(em) => em,
        Err(f) => return Ok(Err(f)),
    };
    if em.loglik.len() != num_frames * em.num_columns {
        return Ok(Err(AlignFailure::Model(format!(
            "{} scores for {num_frames} frames of {} outputs",
            em.loglik.len(),
            em.num_columns
        ))));
    }
    Ok(align_states(
        &graph,
        &em.state_columns,
        &em.loglik,
        em.num_columns,
        cfg.beam,
        cfg.retry_beam,
    )
    .map(|path| graph.segments(&path.states)))
}

/// What [`align_corpus`] made.
#[derive(Debug, Clone, Default)]
pub struct CorpusAlignment {
    /// Utterance -> phone segments (canonical names of the set), covering all its frames.
    pub segments: BTreeMap<String, Vec<PhoneSegment>>,
    /// Utterance -> phone id per frame, `[num_frames]`.
    pub frame_phones: BTreeMap<String, Vec<u32>>,
    /// Utterances left out, in id order, and why.
    pub failures: Vec<(String, AlignFailure)>,
    /// Utterances in the transcripts.
    pub total: usize,
}

/// Aligns every utterance of `texts` (utterance -> transcript) that has features in `store`,
/// with phones of `set` from `lex`; `scorer` None is the flat start (uniform segmentation).
/// Failures are collected, never forced; an error (unreadable features, a model that fails
/// to run) stops the run and names the utterance.
pub fn align_corpus(
    texts: &BTreeMap<String, String>,
    lex: &Lexicon,
    set: &PhoneSet,
    store: &FeatureStore,
    geometry: &FrameGeometry,
    scorer: Option<&Scorer>,
    cfg: &AlignConfig,
    mut progress: impl FnMut(),
) -> Result<CorpusAlignment> {
    let silence = set
        .silence_id()
        .ok_or_else(|| Error::config(format!("phone set {} has no silence", set.name())))?;
    let mut out = CorpusAlignment {
        total: texts.len(),
        ..Default::default()
    };
    for (utt, text) in texts {
        progress();
        let Some(num_frames) = store.num_frames(utt) else {
            out.failures.push((utt.clone(), AlignFailure::NoFeatures));
            continue;
        };
        let words = match transcript_prons(text, lex) {
            Ok(w) => w,
            Err(f) => {
                out.failures.push((utt.clone(), f));
                continue;
            }
        };
        let aligned = match scorer {
            Some(s) => viterbi_alignment(&words, utt, num_frames, silence, s, store, cfg)
                .map_err(|e| Error::utterance(utt, e))?,
            None => uniform_alignment(&words, num_frames, silence),
        };
        match aligned {
            Ok(runs) => {
                let mut phones = Vec::with_capacity(num_frames);
                for &(p, a, b) in &runs {
                    phones.extend(std::iter::repeat_n(p, b - a));
                }
                out.frame_phones.insert(utt.clone(), phones);
                out.segments.insert(
                    utt.clone(),
                    runs_to_segments(&runs, set, geometry, num_frames),
                );
            }
            Err(f) => out.failures.push((utt.clone(), f)),
        }
    }
    Ok(out)
}
