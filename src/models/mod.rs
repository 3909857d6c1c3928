//! Acoustic models: CMVN-normalised fbank `[batch, frames + left + right, feat]` to senone
//! logits `[batch, frames, senones]`, where `left`/`right` is the model's [`Context`].
//!
//! Every fully connected layer is [`crate::nn::Linear`] (the fused CPU layer); batch norm,
//! layer norm and dropout are candle_nn's. A model is built from its [`ModelConfig`] (the
//! `[model]` table of a training config, which holds only non-default keys) and a
//! `VarBuilder`, so the same constructor makes a fresh model or loads trained weights.
//!
//! | `type` | architecture | keys (defaults) | context |
//! |---|---|---|---|
//! | `dnn` | feed-forward net on spliced frames | `splice = 5`, `hidden = 1024`, `layers = 6`, `norm = "none"` (`"batch"`, `"layer"`), `dropout = 0.0` | `splice` each side |
//! | `tdnn` | Kaldi TDNN: per-layer splice offsets, relu-batchnorm | `splices = [[-2,-1,0,1,2],[-1,0,1],[-1,0,1],[-3,0,3],[-3,0,3],[-3,0,3]]`, `hidden = 512`, `batch_norm = true`, `dropout = 0.0` | sum of per-layer extents (13, 13) |
//! | `tdnnf` | factorised TDNN (Povey et al. 2018): semi-orthogonal bottleneck, bypass | `dim = 768`, `bottleneck = 160`, `layers = 7`, `input_splice = [-1,0,1]`, `time_strides` (omitted: Kaldi's 1,1,1,0,3,3,...), `bypass_scale = 0.66` (0: none), `output_bottleneck = 0` (0: none), `dropout = 0.0`, `orthonormal_every = 4` (0: never) | input extent + sum of strides (13, 13 by default) |
//! | `lstm` | (B)LSTM(P), one fused input matmul per layer | `hidden = 512`, `layers = 3`, `bidirectional = false`, `projection = 0` (0: none), `dropout = 0.0`, `extra_left = 0`, `extra_right = 0` | (`extra_left`, `extra_right`) |
//!
//! A TOML `[model]` table:
//!
//! ```toml
//! [model]
//! type = "tdnnf"
//! dim = 256
//! bottleneck = 64
//! dropout = 0.1
//! ```
//!
//! ```
//! use amdistill::models::ModelConfig;
//! let cfg: ModelConfig = toml::from_str("type = \"dnn\"\nhidden = 1024\nlayers = 6").unwrap();
//! let s = cfg.summary(80, 2000);
//! assert_eq!(s.params, 8_200_144); // 880-6x1024-2000
//! assert_eq!(cfg.describe(80, 2000), "dnn 880-6x1024-2000");
//! ```
//!
//! Counting conventions of [`ModelSummary`]: `params` are the trainable parameters (batch-norm
//! running statistics excluded); `mflops_per_frame` is `2 * MACs` of the matrix products of one
//! forward pass per output frame (biases, activations and norms not counted), the convention of
//! `bench_train.py`; for the LSTM it is per frame the recurrence runs over.

mod dnn;
mod layers;
mod lstm;
mod tdnn;
mod tdnnf;

#[cfg(test)]
mod tests;

pub use candle_core::Tensor;
pub use dnn::{DnnConfig, Norm};
pub use layers::seed_dropout;
pub use lstm::LstmConfig;
pub use tdnn::TdnnConfig;
pub use tdnnf::{constrain_orthonormal, TdnnfConfig};

/// Frames of context a model consumes on each side of the frames it labels.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Context {
    pub left: usize,
    pub right: usize,
}

impl Context {
    /// Input frames beyond the labelled ones: `left + right`.
    pub fn total(&self) -> usize {
        self.left + self.right
    }
}

/// A built acoustic model.
pub trait AcousticModel: Send + Sync {
    /// xs: [batch, frames + left + right, feat_dim] (CMVN-normalised fbank) -> logits [batch, frames, num_senones].
    /// `train` enables dropout and batch-norm batch statistics.
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor>;
    fn context(&self) -> Context;
    /// Called by the trainer after each optimiser step (TDNN-F's semi-orthogonal constraint every few steps); default no-op.
    fn after_step(&self, _step: u64) -> candle_core::Result<()> {
        Ok(())
    }
}

/// The architecture and its sizes: the `[model]` table of a training config.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ModelConfig {
    Dnn(DnnConfig),
    Tdnn(TdnnConfig),
    Tdnnf(TdnnfConfig),
    Lstm(LstmConfig),
}

/// The most parameters of any model (16 GB of f32 weights).
pub const MAX_PARAMS: u64 = 1 << 32;

/// Size and cost of a configuration, computed without weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelSummary {
    /// Trainable parameters (batch-norm running statistics excluded).
    pub params: usize,
    /// Forward cost per output frame, millions of FLOPs (2 * multiply-accumulates).
    pub mflops_per_frame: f64,
    pub context: Context,
}

impl ModelConfig {
    /// The model for `input_dim` features per frame and `num_senones` outputs, its variables
    /// under `vb`. Fails on an invalid configuration (see [`Self::validate`]).
    pub fn build(
        &self,
        input_dim: usize,
        num_senones: usize,
        vb: candle_nn::VarBuilder,
    ) -> candle_core::Result<Box<dyn AcousticModel>> {
        self.check_size(input_dim, num_senones)
            .map_err(candle_core::Error::msg)?;
        Ok(match self {
            ModelConfig::Dnn(c) => Box::new(dnn::Dnn::new(c, input_dim, num_senones, vb)?),
            ModelConfig::Tdnn(c) => Box::new(tdnn::Tdnn::new(c, input_dim, num_senones, vb)?),
            ModelConfig::Tdnnf(c) => Box::new(tdnnf::Tdnnf::new(c, input_dim, num_senones, vb)?),
            ModelConfig::Lstm(c) => Box::new(lstm::Lstm::new(c, input_dim, num_senones, vb)?),
        })
    }

    /// [`Self::validate`], then the sizes that depend on the data: the input dimension, the
    /// senones, the context and the parameter count must be within the limits (`MAX_DIM`,
    /// `MAX_CONTEXT`, [`MAX_PARAMS`]). Returns the parameter count. Every model is built
    /// through this check, so a corrupt model.json or configuration is refused before its
    /// claimed sizes are allocated.
    pub fn check_size(&self, input_dim: usize, num_senones: usize) -> Result<u64, String> {
        self.validate()?;
        let name = self.name();
        if input_dim == 0 || num_senones == 0 {
            return Err(format!(
                "model {name}: input dimension ({input_dim}) and senones ({num_senones}) must be positive"
            ));
        }
        layers::check_at_most("input dimension", input_dim, layers::MAX_DIM)?;
        layers::check_at_most("senones", num_senones, layers::MAX_DIM)?;
        let c = self.context();
        layers::check_at_most("context frames", c.left.max(c.right), layers::MAX_CONTEXT)?;
        let params = self.summary(input_dim, num_senones).params as u64;
        if params > MAX_PARAMS {
            return Err(format!(
                "model {name} with input {input_dim} and {num_senones} senones has {params} \
                 parameters, over the limit of {MAX_PARAMS}"
            ));
        }
        Ok(params)
    }

    /// Parameters, forward MFLOPs per frame and context, analytically.
    pub fn summary(&self, input_dim: usize, num_senones: usize) -> ModelSummary {
        let mut c = layers::Cost::default();
        match self {
            ModelConfig::Dnn(m) => m.cost(input_dim, num_senones, &mut c),
            ModelConfig::Tdnn(m) => m.cost(input_dim, num_senones, &mut c),
            ModelConfig::Tdnnf(m) => m.cost(input_dim, num_senones, &mut c),
            ModelConfig::Lstm(m) => m.cost(input_dim, num_senones, &mut c),
        }
        ModelSummary {
            params: c.params,
            mflops_per_frame: 2.0 * c.macs as f64 / 1e6,
            context: self.context(),
        }
    }

    /// Frames the model reads on each side of the frames it labels.
    pub fn context(&self) -> Context {
        match self {
            ModelConfig::Dnn(m) => m.context(),
            ModelConfig::Tdnn(m) => m.context(),
            ModelConfig::Tdnnf(m) => m.context(),
            ModelConfig::Lstm(m) => m.context(),
        }
    }

    /// Checks sizes, offsets and rates; the message names the key at fault.
    pub fn validate(&self) -> Result<(), String> {
        let r = match self {
            ModelConfig::Dnn(m) => m.validate(),
            ModelConfig::Tdnn(m) => m.validate(),
            ModelConfig::Tdnnf(m) => m.validate(),
            ModelConfig::Lstm(m) => m.validate(),
        };
        r.map_err(|e| format!("[model] type = \"{}\": {e}", self.type_name()))
    }

    /// Short description without the input and output sizes, e.g. `dnn 6x1024 splice5`,
    /// `tdnnf 7x768/160`, `blstm 3x512p256`.
    pub fn name(&self) -> String {
        match self {
            ModelConfig::Dnn(m) => m.name(),
            ModelConfig::Tdnn(m) => m.name(),
            ModelConfig::Tdnnf(m) => m.name(),
            ModelConfig::Lstm(m) => m.name(),
        }
    }

    /// Description with the sizes, e.g. `dnn 880-6x1024-2000` (spliced input, hidden layers,
    /// senones) or `tdnnf 80-7x768/160-2000`.
    pub fn describe(&self, input_dim: usize, num_senones: usize) -> String {
        match self {
            ModelConfig::Dnn(m) => m.describe(input_dim, num_senones),
            other => {
                let name = other.name();
                let (kind, rest) = name.split_once(' ').unwrap_or((&name, ""));
                format!("{kind} {input_dim}-{rest}-{num_senones}")
            }
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            ModelConfig::Dnn(_) => "dnn",
            ModelConfig::Tdnn(_) => "tdnn",
            ModelConfig::Tdnnf(_) => "tdnnf",
            ModelConfig::Lstm(_) => "lstm",
        }
    }
}
