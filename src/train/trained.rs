//! A trained model directory, loaded: its card (everything but the weights), the built
//! model and the means to run it on a feature store exactly as it was trained.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::corpus::table::read_map;
use crate::error::{Error, Result};
use crate::features::cmvn::CmvnStats;
use crate::features::options::FbankOptions;
use crate::features::store::FeatureStore;
use crate::features::Matrix;
use crate::labels::senone_pipeline::{CmvnGrouping, Normaliser};
use crate::models::{AcousticModel, Context, ModelConfig};
use crate::train::checkpoint::{candle_err, load_safetensors, load_vars, sorted_vars};
use crate::train::config::CmvnMode;

/// `model.json`'s format tag.
pub const MODEL_FORMAT: &str = "amdistill-model/1";

/// Global CMVN statistics as stored with a model (Kaldi's count, sum, sum of squares).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GlobalCmvn {
    pub count: f64,
    pub sum: Vec<f64>,
    pub sum_sq: Vec<f64>,
}

impl GlobalCmvn {
    pub fn from_stats(s: &CmvnStats) -> Self {
        GlobalCmvn {
            count: s.count,
            sum: s.sum.clone(),
            sum_sq: s.sum_sq.clone(),
        }
    }
    pub fn to_stats(&self) -> CmvnStats {
        let mut s = CmvnStats::new(self.sum.len());
        s.count = self.count;
        s.sum = self.sum.clone();
        s.sum_sq = self.sum_sq.clone();
        s
    }
}

/// How the model's input features are normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CmvnCard {
    pub mode: CmvnMode,
    pub norm_vars: bool,
    /// The training set's statistics, for `mode = global`.
    pub global: Option<GlobalCmvn>,
}

impl CmvnCard {
    /// The normaliser for `store` (per speaker: the store's utt2spk; without it, per utterance).
    pub fn normaliser(&self, store: &FeatureStore) -> Result<Normaliser> {
        let grouping = match self.mode {
            CmvnMode::None => CmvnGrouping::None,
            CmvnMode::Utt => CmvnGrouping::PerUtterance,
            CmvnMode::Spk => {
                let p = store.dir().join("utt2spk");
                if p.exists() {
                    CmvnGrouping::PerSpeaker(read_map(&p)?)
                } else {
                    CmvnGrouping::PerUtterance
                }
            }
            CmvnMode::Global => CmvnGrouping::Global(
                self.global
                    .as_ref()
                    .ok_or_else(|| Error::config("global CMVN without statistics"))?
                    .to_stats(),
            ),
        };
        Ok(Normaliser::new(store, &grouping, self.norm_vars))
    }
}

/// Everything about a trained model except its weights (`model.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    /// Short description, e.g. `dnn 880-6x1024-2000`.
    pub name: String,
    pub model: ModelConfig,
    /// Feature dimension the model reads.
    pub input_dim: usize,
    pub num_senones: usize,
    /// [`crate::labels::tree::senones_identity`] of the senone table.
    pub senones_id: String,
    pub context: Context,
    pub params: usize,
    pub mflops_per_frame: f64,
    /// Seconds per frame of the features it was trained on.
    pub frame_shift: f64,
    /// The fbank configuration of those features (None for external Kaldi features).
    pub fbank: Option<FbankOptions>,
    pub cmvn: CmvnCard,
    /// Senone priors (log of relative frame counts in the training alignments), for hybrid
    /// decoders: log-likelihood = log-posterior - log-prior.
    pub log_priors: Vec<f32>,
    /// How it was trained: config, steps, epochs, best validation accuracy, teacher.
    pub training: serde_json::Value,
}

impl ModelCard {
    /// The sizes the card claims, checked before anything is built from them: the model's
    /// limits ([`ModelConfig::check_size`]) and global CMVN statistics of the input's
    /// dimension. Returns the parameter count, for comparison with a weights file's size.
    pub fn check_sizes(&self) -> std::result::Result<u64, String> {
        if let Some(g) = &self.cmvn.global {
            if g.sum.len() != self.input_dim || g.sum_sq.len() != self.input_dim {
                return Err(format!(
                    "CMVN statistics of {} and {} coefficients for input dimension {}",
                    g.sum.len(),
                    g.sum_sq.len(),
                    self.input_dim
                ));
            }
        }
        self.model.check_size(self.input_dim, self.num_senones)
    }

    /// Refuses features the model was not trained on, naming both sides.
    pub fn check_features(&self, store: &FeatureStore, model_dir: &Path) -> Result<()> {
        let feat = store.dir().display();
        let model = model_dir.display();
        if store.dim() != self.input_dim && store.dim() != 0 {
            return Err(Error::Mismatch(format!(
                "features {feat} have dimension {}, model {model} reads {}",
                store.dim(),
                self.input_dim
            )));
        }
        if (store.frame_shift() - self.frame_shift).abs() > 1e-9 {
            return Err(Error::Mismatch(format!(
                "features {feat} have a frame shift of {} s, model {model} was trained on {} s",
                store.frame_shift(),
                self.frame_shift
            )));
        }
        if let (Some(a), Some(b)) = (store.options(), &self.fbank) {
            let (mut a, mut b) = (a.clone(), b.clone());
            // Dither is noise, not configuration: features with and without it are alike.
            a.frame.dither = 0.0;
            b.frame.dither = 0.0;
            a.frame.dither_seed = 0;
            b.frame.dither_seed = 0;
            if a != b {
                return Err(Error::Mismatch(format!(
                    "features {feat} were computed with another fbank configuration than model {model} was trained on:\n  features: {}\n  model:    {}",
                    a.to_conf_diff_string().replace('\n', " "),
                    b.to_conf_diff_string().replace('\n', " ")
                )));
            }
        }
        Ok(())
    }
}

/// A loaded model directory.
pub struct TrainedModel {
    pub dir: PathBuf,
    pub card: ModelCard,
    pub varmap: VarMap,
    pub model: Box<dyn AcousticModel>,
    pub device: Device,
}

impl TrainedModel {
    /// Loads `dir/model.json` and `dir/model.safetensors` (or `weights`, e.g. a checkpoint).
    pub fn load(dir: &Path, weights: Option<&Path>, device: &Device) -> Result<Self> {
        let card_path = dir.join("model.json");
        let text = std::fs::read_to_string(&card_path).map_err(|e| Error::io(&card_path, e))?;
        let card: ModelCard = serde_json::from_str(&text)
            .map_err(|e| Error::parse(&card_path, e.line(), e.to_string()))?;
        if card.format != MODEL_FORMAT {
            return Err(Error::format(
                &card_path,
                format!("format '{}', expected '{MODEL_FORMAT}'", card.format),
            ));
        }
        let wpath = weights
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.join("model.safetensors"));
        if weights.is_none() && !wpath.exists() && dir.join("checkpoints").is_dir() {
            return Err(Error::format(
                dir,
                "no model.safetensors: training has not finished (a killed run goes on with \
                 `amdistill train CONFIG DIR --resume`)",
            ));
        }
        // The card's sizes are checked against the weights file before the model is built,
        // so a corrupt model.json cannot make us allocate what no file holds.
        let params = card
            .check_sizes()
            .map_err(|m| Error::format(&card_path, m))?;
        let file_bytes = std::fs::metadata(&wpath)
            .map_err(|e| Error::io(&wpath, e))?
            .len();
        if params.saturating_mul(4) > file_bytes {
            return Err(Error::Mismatch(format!(
                "{} describes {} with {params} parameters ({} bytes in f32), but {} holds {file_bytes} bytes",
                card_path.display(),
                card.name,
                params.saturating_mul(4),
                wpath.display()
            )));
        }
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let model = card
            .model
            .build(card.input_dim, card.num_senones, vb)
            .map_err(candle_err(&card_path))?;
        let (tensors, _) = load_safetensors(&wpath, device)?;
        load_vars(&sorted_vars(&varmap), &tensors, "", &wpath)?;
        Ok(TrainedModel {
            dir: dir.to_path_buf(),
            card,
            varmap,
            model,
            device: device.clone(),
        })
    }

    /// Logits `[frames, senones]` (row-major) of one utterance's normalised features
    /// `[frames, dim]`; the edges are padded by repeating the first and last frame.
    pub fn logits(&self, feats: &Matrix) -> Result<Vec<f32>> {
        let t = self.logits_tensor(feats)?;
        t.flatten_all()
            .and_then(|t| t.to_vec1())
            .map_err(|e| Error::config(format!("model {}: {e}", self.dir.display())))
    }

    /// As [`Self::logits`], as a `[frames, senones]` tensor.
    pub fn logits_tensor(&self, feats: &Matrix) -> Result<Tensor> {
        let ctx = self.model.context();
        let padded = pad_edges(feats, ctx.left, ctx.right);
        let width = feats.rows + ctx.left + ctx.right;
        let err =
            |e: candle_core::Error| Error::config(format!("model {}: {e}", self.dir.display()));
        let xs = Tensor::from_vec(padded, (1, width, feats.cols), &self.device).map_err(err)?;
        let y = self.model.forward_t(&xs, false).map_err(err)?;
        y.squeeze(0).map_err(err)
    }
}

/// `[rows + left + right, cols]`: `m` with its first row repeated `left` times before it and
/// its last row `right` times after (Kaldi nnet3's edge handling). Empty for an empty `m`.
pub fn pad_edges(m: &Matrix, left: usize, right: usize) -> Vec<f32> {
    if m.rows == 0 {
        return Vec::new();
    }
    let mut out = Vec::with_capacity((m.rows + left + right) * m.cols);
    for _ in 0..left {
        out.extend_from_slice(m.row(0));
    }
    out.extend_from_slice(&m.data);
    for _ in 0..right {
        out.extend_from_slice(m.row(m.rows - 1));
    }
    out
}

/// Log priors from alignment counts: `ln((count + 1) / (total + S))` (add-one smoothing, so
/// a senone never seen in training still has a finite prior).
pub fn log_priors(alignments: &BTreeMap<String, Vec<u32>>, num_senones: usize) -> Vec<f32> {
    let mut counts = vec![0u64; num_senones];
    for ids in alignments.values() {
        for &s in ids {
            if (s as usize) < num_senones {
                counts[s as usize] += 1;
            }
        }
    }
    let total: u64 = counts.iter().sum();
    let denom = (total + num_senones as u64) as f64;
    counts
        .iter()
        .map(|&c| ((c + 1) as f64 / denom).ln() as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_edges_repeats_first_and_last_rows() {
        let m = Matrix::from_vec(2, 2, vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(
            pad_edges(&m, 2, 1),
            vec![1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0]
        );
        assert!(pad_edges(&Matrix::zeros(0, 2), 1, 1).is_empty());
    }

    #[test]
    fn priors_are_smoothed_log_frequencies() {
        let ali = BTreeMap::from([("u".to_string(), vec![0, 0, 1])]);
        let p = log_priors(&ali, 3);
        let expect = [3.0f64 / 6.0, 2.0 / 6.0, 1.0 / 6.0];
        for (a, b) in p.iter().zip(expect) {
            assert!((*a as f64 - b.ln()).abs() < 1e-6);
        }
    }
}
