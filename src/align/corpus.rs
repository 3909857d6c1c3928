//! Aligning a whole corpus: transcripts + feature store (+ acoustic model and its senone tree)
//! -> phone segments per utterance, failures by name.
//!
//! ```text
//! text ──transcript_prons──> words ──uniform (no model)───────────────> frame runs
//!                                  └─UttGraph + tree senones + Viterbi─> frame runs
//! frame runs ──runs_to_segments──> PhoneSegment (seconds, the features' framing)
//! ```
//!
//! With a model, emissions are `[frames, senones]` scaled log-likelihoods of the model's
//! outputs on the store's features, normalised as the model was trained (its CMVN card); each
//! graph state's senone is the tree's leaf for its `(left, phone, right, state)`.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;

use crate::align::hmm::{HmmConfig, UttGraph};
use crate::align::lexicon::Lexicon;
use crate::align::{
    align_states, flat_start_phones, runs_to_segments, scaled_log_likelihoods, transcript_prons,
    uniform_segments, AlignFailure,
};
use crate::error::{Error, Result};
use crate::features::store::FeatureStore;
use crate::labels::ctm::PhoneSegment;
use crate::labels::frame_labels::FrameGeometry;
use crate::labels::phones::PhoneSet;
use crate::labels::senone_pipeline::Normaliser;
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
        graph
            .states
            .iter()
            .map(|st| {
                self.tree
                    .senone(&ContextKey {
                        left: st.left,
                        phone: st.phone,
                        right: st.right,
                        state: st.state,
                    })
                    .map_err(|e| AlignFailure::Model(e.to_string()))
            })
            .collect()
    }
}

/// Frame runs `(phone, first frame, end frame)` of one utterance with `num_frames` frames:
/// uniform segmentation of silence + phones + silence without `emissions`, else the Viterbi
/// path through the transcript's graph. `emissions`: the scorer and its scaled
/// log-likelihoods `[num_frames, senones]`.
pub fn align_utterance(
    words: &[Vec<Vec<u32>>],
    num_frames: usize,
    silence: u32,
    emissions: Option<(&AcousticScorer, &[f32])>,
    cfg: &AlignConfig,
) -> std::result::Result<Vec<(u32, usize, usize)>, AlignFailure> {
    match emissions {
        None => {
            let phones = flat_start_phones(words, silence);
            uniform_segments(&phones, num_frames).ok_or(AlignFailure::TooShort {
                frames: num_frames,
                needed: phones.len() * crate::labels::frame_labels::NUM_STATES as usize,
            })
        }
        Some((scorer, loglik)) => {
            let graph = UttGraph::build(words, silence, &cfg.hmm)
                .map_err(|e| AlignFailure::Model(e.to_string()))?;
            let senones = scorer.senones_of(&graph)?;
            let num_senones = scorer.tree.num_senones();
            if loglik.len() != num_frames * num_senones {
                return Err(AlignFailure::Model(format!(
                    "{} scores for {num_frames} frames of {num_senones} senones",
                    loglik.len()
                )));
            }
            let path = align_states(
                &graph,
                &senones,
                loglik,
                num_senones,
                cfg.beam,
                cfg.retry_beam,
            )?;
            Ok(graph.segments(&path.states))
        }
    }
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
    scorer: Option<&AcousticScorer>,
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
        let loglik = match scorer {
            Some(s) => Some(
                s.log_likelihoods(store, utt, cfg.acoustic_scale)
                    .map_err(|e| Error::utterance(utt, e))?,
            ),
            None => None,
        };
        let emissions = scorer.zip(loglik.as_deref());
        match align_utterance(&words, num_frames, silence, emissions, cfg) {
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
