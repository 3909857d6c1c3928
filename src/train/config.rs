//! The training configuration: one TOML file per model, holding only what differs from the
//! defaults, like Kaldi's conf files. `amdistill train CONFIG.toml OUT_DIR` reads it;
//! `--set section.key=value` overrides single values (sweeps, quick runs).
//!
//! ```toml
//! [data]
//! train = "data/fbank/train"          # feature store (compute-fbank output)
//! train_ali = "exp/ali/train/ali.txt" # one senone per frame (ali-to-pdf shape)
//! valid = "data/fbank/dev"
//! valid_ali = "exp/ali/dev/ali.txt"
//! senones = "exp/tree/senones.txt"
//!
//! [model]
//! type = "dnn"
//! hidden = 1024
//! layers = 6
//!
//! [optim]
//! lr = 0.001
//!
//! [train]
//! epochs = 8
//!
//! [kd]                                # present: a student distilled from a teacher
//! targets = "exp/teacher/targets/train"   # offline soft targets (dump-posteriors) ...
//! # teachers = ["exp/teacher"]           # ... or online: teacher forward inside the loop
//! temperature = 2.0
//! alpha = 0.5
//! ```
//!
//! Relative paths are relative to the directory `amdistill` runs in (the recipe's directory).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::models::ModelConfig;
use crate::train::data::LoaderConfig;

/// Where the training data comes from and how it is normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Training feature store.
    pub train: PathBuf,
    /// Training alignments (`utt-id senone senone ...`).
    pub train_ali: PathBuf,
    /// Validation feature store (scored every epoch; early stopping watches it).
    pub valid: Option<PathBuf>,
    /// Validation alignments.
    pub valid_ali: Option<PathBuf>,
    /// The senone table (`senones.txt` from build-tree); its length is the output size.
    pub senones: PathBuf,
    /// Feature normalisation: `global` (the training set's mean, stored with the model, so
    /// a streaming runtime applies the same), `utt`, `spk` (utt2spk of the store) or `none`.
    #[serde(default = "default_cmvn")]
    pub cmvn: CmvnMode,
    /// Normalise the variance too (global CMVN only keeps one set of statistics, so this is cheap).
    #[serde(default = "default_true")]
    pub norm_vars: bool,
}

/// How features are normalised; see [`DataConfig::cmvn`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CmvnMode {
    Global,
    Utt,
    Spk,
    None,
}

fn default_cmvn() -> CmvnMode {
    CmvnMode::Global
}
fn default_true() -> bool {
    true
}

/// The learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Cosine from `lr` to `lr * final_lr_ratio` over all steps.
    Cosine,
    /// Exponential from `lr` to `lr * final_lr_ratio` (Kaldi's nnet3 schedule).
    Exponential,
    /// `lr` throughout.
    Constant,
}

/// Optimiser and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimConfig {
    /// Peak learning rate (AdamW).
    pub lr: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// Linear warm-up from 0 over this many steps.
    pub warmup_steps: u64,
    pub schedule: Schedule,
    /// Learning rate at the last step, as a fraction of `lr`.
    pub final_lr_ratio: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub max_grad_norm: f64,
    /// Label smoothing of the hard-label cross-entropy (PyTorch's definition).
    pub label_smoothing: f64,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            lr: 1e-3,
            weight_decay: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_steps: 200,
            schedule: Schedule::Cosine,
            final_lr_ratio: 0.05,
            max_grad_norm: 5.0,
            label_smoothing: 0.0,
        }
    }
}

/// The loop: epochs, seeds, checkpoints, early stopping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopConfig {
    /// Passes over the training data (fewer when early stopping triggers).
    pub epochs: u64,
    /// Stop after this many steps in all (0 = no limit); the schedule still spans `epochs`.
    pub max_steps: u64,
    /// Seeds the initial weights, the data order and dropout.
    pub seed: u64,
    /// Write a checkpoint every this many steps (0 = only at the end of each epoch).
    pub checkpoint_every: u64,
    /// Keep this many step checkpoints (the best model is kept separately).
    pub keep_checkpoints: usize,
    /// Stop when validation accuracy has not improved for this many epochs (0 = never).
    pub patience: u64,
    /// A metrics line every this many steps.
    pub log_every: u64,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            epochs: 8,
            max_steps: 0,
            seed: 1,
            checkpoint_every: 500,
            keep_checkpoints: 2,
            patience: 3,
            log_every: 50,
        }
    }
}

/// Knowledge distillation (DOMAIN.md §4): `L = alpha T^2 KL(p_t^T || p_s^T) + (1 - alpha) CE`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdSection {
    /// Offline: a soft-target store from `dump-posteriors` over the training features.
    pub targets: Option<PathBuf>,
    /// Online: trained teacher directories (several = an ensemble, posteriors averaged).
    #[serde(default)]
    pub teachers: Vec<PathBuf>,
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Weight of the soft (teacher) term; 1 - alpha goes to the hard labels.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
    /// Learn from the teacher only on frames where its argmax is the label (Meng et al. 2019).
    #[serde(default)]
    pub conditional: bool,
    /// Keep training utterances that have features but no alignment (an untranscribed set
    /// combined into `data.train`): they learn from the teacher alone, `T² · KL` per frame
    /// (Li et al. 2014). Off: they are left out, as for any model.
    #[serde(default)]
    pub untranscribed: bool,
}

fn default_temperature() -> f64 {
    2.0
}
fn default_alpha() -> f64 {
    0.5
}

/// A whole training configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub data: DataConfig,
    pub model: ModelConfig,
    #[serde(default)]
    pub loader: LoaderConfig,
    #[serde(default)]
    pub optim: OptimConfig,
    #[serde(default)]
    pub train: LoopConfig,
    pub kd: Option<KdSection>,
}

impl TrainConfig {
    /// Reads `path` and applies `overrides` (`section.key=value`, the value in TOML syntax;
    /// a bare word that is not TOML is taken as a string).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path, overrides)
    }

    /// Parses TOML `text` (named `path` in errors) with `overrides`.
    pub fn parse(text: &str, path: &Path, overrides: &[String]) -> Result<Self> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| Error::parse(path, line_of(text, &e), e.message()))?;
        for o in overrides {
            apply_override(&mut table, o)?;
        }
        let cfg: TrainConfig = TrainConfig::deserialize(table)
            .map_err(|e| Error::parse(path, 0, e.message().to_string()))?;
        cfg.validate().map_err(|m| Error::parse(path, 0, m))?;
        Ok(cfg)
    }

    /// Values that parse but cannot train.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.model.validate().map_err(|m| format!("[model] {m}"))?;
        let o = &self.optim;
        if !(o.lr.is_finite() && o.lr > 0.0) {
            return Err(format!("[optim] lr must be positive, got {}", o.lr));
        }
        if !(0.0..1.0).contains(&o.label_smoothing) {
            return Err(format!(
                "[optim] label_smoothing must be in [0, 1), got {}",
                o.label_smoothing
            ));
        }
        if !(o.final_lr_ratio.is_finite() && o.final_lr_ratio >= 0.0) {
            return Err("[optim] final_lr_ratio must be >= 0".into());
        }
        if self.train.epochs == 0 {
            return Err("[train] epochs must be at least 1".into());
        }
        let l = &self.loader;
        if l.chunk_frames == 0 || l.batch_frames < l.chunk_frames {
            return Err(format!(
                "[loader] need chunk_frames >= 1 and batch_frames >= chunk_frames, got {} and {}",
                l.chunk_frames, l.batch_frames
            ));
        }
        if self.data.valid.is_some() != self.data.valid_ali.is_some() {
            return Err("[data] valid and valid_ali go together".into());
        }
        if let Some(kd) = &self.kd {
            if kd.targets.is_some() != kd.teachers.is_empty() {
                return Err(
                    "[kd] give either targets (offline soft targets) or teachers (online), not both or neither"
                        .into(),
                );
            }
            if !(kd.temperature.is_finite() && kd.temperature > 0.0) {
                return Err(format!(
                    "[kd] temperature must be positive, got {}",
                    kd.temperature
                ));
            }
            if !(0.0..=1.0).contains(&kd.alpha) {
                return Err(format!("[kd] alpha must be in [0, 1], got {}", kd.alpha));
            }
        }
        Ok(())
    }
}

/// `a.b.c=value` into the table, creating sections as needed.
fn apply_override(table: &mut toml::Table, spec: &str) -> Result<()> {
    let (key, raw) = spec
        .split_once('=')
        .ok_or_else(|| Error::config(format!("--set {spec}: expected section.key=value")))?;
    let value: toml::Value = match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let parts: Vec<&str> = key.trim().split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::config(format!("--set {spec}: empty key part")));
    }
    let mut cur = table;
    for p in &parts[..parts.len() - 1] {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| Error::config(format!("--set {spec}: {p} is not a section")))?;
    }
    cur.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// 1-based line of a TOML error (0 when unknown).
fn line_of(text: &str, e: &toml::de::Error) -> usize {
    e.span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[data]
train = "f/train"
train_ali = "a/train.txt"
senones = "t/senones.txt"
[model]
type = "dnn"
"#;

    #[test]
    fn minimal_config_takes_defaults() {
        let c = TrainConfig::parse(MINIMAL, Path::new("c.toml"), &[]).unwrap();
        assert_eq!(c.optim, OptimConfig::default());
        assert_eq!(c.data.cmvn, CmvnMode::Global);
        assert!(c.kd.is_none());
    }

    #[test]
    fn overrides_replace_and_create_values() {
        let c = TrainConfig::parse(
            MINIMAL,
            Path::new("c.toml"),
            &[
                "optim.lr=0.01".into(),
                "train.epochs=2".into(),
                "kd.targets=exp/t".into(),
                "kd.alpha=0.25".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.optim.lr, 0.01);
        assert_eq!(c.train.epochs, 2);
        let kd = c.kd.unwrap();
        assert_eq!(kd.targets.unwrap(), PathBuf::from("exp/t"));
        assert_eq!((kd.alpha, kd.temperature), (0.25, 2.0));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_file_name() {
        let bad = format!("{MINIMAL}\n[optim]\nlearning_rate = 1\n");
        let e = TrainConfig::parse(&bad, Path::new("conf/x.toml"), &[]).unwrap_err();
        assert!(e.to_string().contains("conf/x.toml"), "{e}");
        assert!(e.to_string().contains("learning_rate"), "{e}");
        let e =
            TrainConfig::parse(MINIMAL, Path::new("c.toml"), &["optim.lr=-1".into()]).unwrap_err();
        assert!(e.to_string().contains("lr must be positive"), "{e}");
        let e =
            TrainConfig::parse(MINIMAL, Path::new("c.toml"), &["kd.alpha=0.5".into()]).unwrap_err();
        assert!(e.to_string().contains("either targets"), "{e}");
    }

    #[test]
    fn toml_syntax_errors_name_the_line() {
        let e = TrainConfig::parse("[data]\ntrain = \n", Path::new("c.toml"), &[]).unwrap_err();
        assert!(e.to_string().starts_with("c.toml:2"), "{e}");
    }
}
