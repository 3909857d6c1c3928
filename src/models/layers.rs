//! Pieces the architectures share: time splicing, normalisation over the feature axis of
//! `[batch, frames, dim]`, input checks and the analytic cost counter.

use candle_core::{bail, Module, ModuleT, Result, Tensor};
use candle_nn::{BatchNorm, BatchNormConfig, LayerNorm, VarBuilder};

use super::Context;

/// Batch-norm settings (PyTorch's; Kaldi's batchnorm uses the same running-average idea).
pub(crate) const BN_EPS: f64 = 1e-5;
pub(crate) const BN_MOMENTUM: f64 = 0.1;
const LN_EPS: f64 = 1e-5;

/// Parameters and multiply-accumulates per output frame, summed layer by layer.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Cost {
    pub params: usize,
    pub macs: usize,
}

impl Cost {
    /// A fully connected layer `in_dim -> out_dim` applied once per output frame.
    /// (Saturating: the size of a corrupt configuration is computed to be refused.)
    pub fn linear(&mut self, in_dim: usize, out_dim: usize, bias: bool) {
        let weights = in_dim.saturating_mul(out_dim);
        self.params =
            self.params
                .saturating_add(weights)
                .saturating_add(if bias { out_dim } else { 0 });
        self.macs = self.macs.saturating_add(weights);
    }
    /// A batch or layer norm over `dim` features: scale and shift.
    pub fn norm(&mut self, dim: usize) {
        self.params = self.params.saturating_add(dim.saturating_mul(2));
    }
}

/// The frames each side that offsets such as `[-3, 0, 3]` reach: `(max(0, -min), max(0, max))`.
pub(crate) fn extent(offsets: &[i32]) -> (usize, usize) {
    let min = offsets.iter().copied().min().unwrap_or(0);
    let max = offsets.iter().copied().max().unwrap_or(0);
    ((-min).max(0) as usize, max.max(0) as usize)
}

/// `[batch, t_in, dim] -> [batch, t_in - left - right, offsets.len() * dim]`: output frame `t`
/// is the concatenation of input frames `t + left + o` for each offset `o` (in order); every
/// offset must lie in `[-left, right]`. The im2col of a (dilated) 1-D convolution, kept as
/// narrow + cat so that irregular offsets work and the product after it is one gemm.
pub(crate) fn splice(xs: &Tensor, offsets: &[i32], left: usize, right: usize) -> Result<Tensor> {
    let t_in = xs.dim(1)?;
    if t_in < left + right + 1 {
        bail!("splice: {t_in} frames in, {left} + {right} of context leave none");
    }
    let t_out = t_in - left - right;
    let narrow = |o: i32| xs.narrow(1, (left as i64 + o as i64) as usize, t_out);
    if let [o] = offsets {
        return narrow(*o);
    }
    let parts = offsets
        .iter()
        .map(|&o| narrow(o))
        .collect::<Result<Vec<_>>>()?;
    Tensor::cat(&parts, 2)
}

/// Checks `xs` is `[batch, frames + ctx.left + ctx.right, feat_dim]` with at least one frame
/// to label; returns the frames labelled.
pub(crate) fn check_input(
    xs: &Tensor,
    model: &str,
    feat_dim: usize,
    ctx: Context,
) -> Result<usize> {
    let (_, t_in, f) = match xs.dims3() {
        Ok(d) => d,
        Err(_) => bail!(
            "{model}: input must be [batch, frames, {feat_dim}], got {:?}",
            xs.shape()
        ),
    };
    if f != feat_dim {
        bail!("{model}: input has {f} features per frame, the model takes {feat_dim}");
    }
    if t_in <= ctx.total() {
        bail!(
            "{model}: {t_in} input frames, but the model needs {} of context ({} left, {} right) plus at least one",
            ctx.total(),
            ctx.left,
            ctx.right
        );
    }
    Ok(t_in - ctx.total())
}

/// Batch norm or layer norm over the last axis of `[..., dim]`.
#[derive(Debug, Clone)]
pub(crate) enum NormLayer {
    Batch(BatchNorm),
    Layer(LayerNorm),
}

impl NormLayer {
    /// Batch norm (`weight`, `bias`, `running_mean`, `running_var` under `vb`).
    pub fn batch(dim: usize, vb: VarBuilder) -> Result<Self> {
        let cfg = BatchNormConfig {
            eps: BN_EPS,
            remove_mean: true,
            affine: true,
            momentum: BN_MOMENTUM,
        };
        Ok(NormLayer::Batch(candle_nn::batch_norm(dim, cfg, vb)?))
    }

    /// Layer norm (`weight`, `bias` under `vb`).
    pub fn layer(dim: usize, vb: VarBuilder) -> Result<Self> {
        Ok(NormLayer::Layer(candle_nn::layer_norm(dim, LN_EPS, vb)?))
    }

    /// `[..., dim] -> [..., dim]`; batch norm uses (and updates the running averages with) the
    /// statistics of every frame in the batch when `train`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            NormLayer::Batch(bn) if !train => {
                // Inference: the running statistics fold into one scale and shift per
                // channel, two passes over the activations instead of candle's four.
                let inv_std = (bn.running_var().detach() + bn.eps())?.sqrt()?.recip()?;
                let (scale, shift) = match bn.weight_and_bias() {
                    Some((w, b)) => {
                        let scale = (inv_std * w)?;
                        let shift = (b - (bn.running_mean().detach() * &scale)?)?;
                        (scale, shift)
                    }
                    None => (
                        inv_std.clone(),
                        (bn.running_mean().detach() * &inv_std)?.neg()?,
                    ),
                };
                xs.broadcast_mul(&scale)?.broadcast_add(&shift)
            }
            NormLayer::Batch(bn) => {
                // candle's batch norm wants the channels on axis 1: fold batch and time.
                let dims = xs.dims().to_vec();
                let dim = *dims.last().expect("norm input has a feature axis");
                let flat = xs.reshape(((), dim))?;
                bn.forward_t(&flat, true)?.reshape(dims)
            }
            NormLayer::Layer(ln) => ln.forward(xs),
        }
    }
}

/// Inverted dropout whose masks come from a seeded generator (candle's own dropout draws from
/// an unseeded one, so two runs of one configuration trained different models). The trainer
/// reseeds with [`seed_dropout`] before every step, so the masks depend only on (seed, step)
/// and the order of the layers: a rerun, or a resume from a checkpoint, draws the same ones.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeededDropout {
    p: f32,
}

thread_local! {
    static DROPOUT_RNG: std::cell::RefCell<rand_chacha::ChaCha8Rng> =
        std::cell::RefCell::new(rand::SeedableRng::seed_from_u64(0));
}

/// Reseeds this thread's dropout masks for training step `step` of a run seeded `seed`.
pub fn seed_dropout(seed: u64, step: u64) {
    let mixed = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ step.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    DROPOUT_RNG.with(|r| *r.borrow_mut() = rand::SeedableRng::seed_from_u64(mixed));
}

impl SeededDropout {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        use rand::Rng;
        let keep = 1.0 - self.p;
        let scale = 1.0 / keep;
        let n = xs.elem_count();
        let mask: Vec<f32> = DROPOUT_RNG.with(|r| {
            let mut r = r.borrow_mut();
            (0..n)
                .map(|_| if r.gen::<f32>() < keep { scale } else { 0.0 })
                .collect()
        });
        let mask = Tensor::from_vec(mask, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
        xs * mask
    }
}

/// Dropout with rate `p`; `None` when `p == 0` so inference and p = 0 training skip it.
pub(crate) fn dropout(p: f64) -> Option<SeededDropout> {
    (p > 0.0).then_some(SeededDropout { p: p as f32 })
}

/// Applies `d` when training.
pub(crate) fn apply_dropout(d: &Option<SeededDropout>, xs: Tensor, train: bool) -> Result<Tensor> {
    match d {
        Some(d) if train => d.forward(&xs),
        _ => Ok(xs),
    }
}

/// `Err` naming `key` unless `0 <= p < 1`.
pub(crate) fn check_rate(key: &str, p: f64) -> std::result::Result<(), String> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(format!("{key} = {p} must be in [0, 1)"))
    }
}

/// The largest width of any layer (and any other size of a configuration): a model.json or
/// TOML claiming more is corrupt or a typo, and is refused before anything is allocated.
pub const MAX_DIM: usize = 1 << 20;
/// The most layers of any model.
pub const MAX_LAYERS: usize = 1000;
/// The largest frame offset of a splice, and the most context frames on either side.
pub const MAX_CONTEXT: usize = 1000;

/// `Err` naming `key` unless `1 <= v <= MAX_DIM`.
pub(crate) fn check_positive(key: &str, v: usize) -> std::result::Result<(), String> {
    if v == 0 {
        Err(format!("{key} must be positive"))
    } else {
        check_at_most(key, v, MAX_DIM)
    }
}

/// `Err` naming `key` when `v > max`.
pub(crate) fn check_at_most(key: &str, v: usize, max: usize) -> std::result::Result<(), String> {
    if v > max {
        Err(format!("{key} = {v} is over the limit of {max}"))
    } else {
        Ok(())
    }
}

/// `Err` naming `key` unless `1 <= v <= MAX_LAYERS`.
pub(crate) fn check_layers(key: &str, v: usize) -> std::result::Result<(), String> {
    check_positive(key, v)?;
    check_at_most(key, v, MAX_LAYERS)
}

/// `Err` unless `offsets` is non-empty and strictly increasing.
pub(crate) fn check_offsets(key: &str, offsets: &[i32]) -> std::result::Result<(), String> {
    if offsets.is_empty() {
        return Err(format!("{key} is empty"));
    }
    if offsets.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("{key} = {offsets:?} must be strictly increasing"));
    }
    if let Some(o) = offsets
        .iter()
        .find(|o| o.unsigned_abs() as usize > MAX_CONTEXT)
    {
        return Err(format!(
            "{key}: offset {o} is beyond the limit of {MAX_CONTEXT} frames"
        ));
    }
    Ok(())
}
