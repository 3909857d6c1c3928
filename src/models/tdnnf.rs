//! Factorised TDNN (Povey et al., "Semi-orthogonal low-rank matrix factorization for deep
//! neural networks", Interspeech 2018), as Kaldi's `tdnnf-layer`:
//!
//! ```text
//! x [B, T, dim] -> splice (t - s, t) -> linear to `bottleneck` (no bias, kept semi-orthogonal)
//!               -> splice (t, t + s) -> affine to `dim` -> ReLU -> batch norm -> dropout
//!               -> + bypass_scale * x(t)                       [B, T - 2s, dim]
//! ```
//!
//! with time stride `s` per layer (0: no splicing). An input layer (relu-batchnorm over
//! `input_splice`) comes first; the output is affine, optionally after a semi-orthogonal
//! linear bottleneck (Kaldi's `prefinal-l`), which matters when senones outnumber `dim`.
//!
//! The constraint is Kaldi's `ConstrainOrthonormal` with a floating scale
//! (`orthonormal-constraint=-1`), applied to every bottleneck factor every
//! `orthonormal_every` optimiser steps (Kaldi: at random, one step in four).

use candle_core::{DType, Module, Result, Tensor, Var};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::layers::{
    apply_dropout, check_at_most, check_input, check_layers, check_offsets, check_positive,
    check_rate, dropout, extent, splice, Cost, NormLayer, SeededDropout, MAX_CONTEXT, MAX_DIM,
};
use super::{AcousticModel, Context};
use crate::nn::{linear, Linear};

/// `type = "tdnnf"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TdnnfConfig {
    /// Width of every layer's output.
    pub dim: usize,
    /// Width of each layer's semi-orthogonal bottleneck.
    pub bottleneck: usize,
    /// TDNN-F layers (after the input layer).
    pub layers: usize,
    /// Frame offsets of the input layer.
    pub input_splice: Vec<i32>,
    /// Time stride per TDNN-F layer; omitted: Kaldi's pattern 1, 1, 1, 0, 3, 3, ...
    pub time_strides: Option<Vec<usize>>,
    /// Weight of the residual bypass (Kaldi's 0.66); 0 disables it.
    pub bypass_scale: f64,
    /// Semi-orthogonal linear bottleneck before the output layer; 0: none.
    pub output_bottleneck: usize,
    /// Dropout rate after each layer's batch norm (training only).
    pub dropout: f64,
    /// Apply the semi-orthogonal constraint every this many optimiser steps; 0: never.
    pub orthonormal_every: u64,
}

impl Default for TdnnfConfig {
    fn default() -> Self {
        TdnnfConfig {
            dim: 768,
            bottleneck: 160,
            layers: 7,
            input_splice: vec![-1, 0, 1],
            time_strides: None,
            bypass_scale: 0.66,
            output_bottleneck: 0,
            dropout: 0.0,
            orthonormal_every: 4,
        }
    }
}

/// Kaldi's stride pattern (mini_librispeech tdnn_1j and its kin): three layers of stride 1,
/// one without splicing, then stride 3.
fn kaldi_strides(layers: usize) -> Vec<usize> {
    (0..layers)
        .map(|i| match i {
            0..=2 => 1,
            3 => 0,
            _ => 3,
        })
        .collect()
}

impl TdnnfConfig {
    /// The time stride of each layer.
    pub fn strides(&self) -> Vec<usize> {
        self.time_strides
            .clone()
            .unwrap_or_else(|| kaldi_strides(self.layers))
    }

    pub(crate) fn context(&self) -> Context {
        let (l, r) = extent(&self.input_splice);
        let s: usize = self.strides().iter().sum();
        Context {
            left: l + s,
            right: r + s,
        }
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        check_positive("dim", self.dim)?;
        check_positive("bottleneck", self.bottleneck)?;
        check_layers("layers", self.layers)?;
        check_offsets("input_splice", &self.input_splice)?;
        check_at_most("output_bottleneck", self.output_bottleneck, MAX_DIM)?;
        if let Some(s) = &self.time_strides {
            if s.len() != self.layers {
                return Err(format!(
                    "time_strides has {} entries for {} layers",
                    s.len(),
                    self.layers
                ));
            }
            if let Some(&big) = s.iter().find(|&&t| t > MAX_CONTEXT) {
                return Err(format!(
                    "time_strides: stride {big} is over the limit of {MAX_CONTEXT} frames"
                ));
            }
        }
        if !(self.bypass_scale.is_finite() && self.bypass_scale >= 0.0) {
            return Err(format!("bypass_scale = {} must be >= 0", self.bypass_scale));
        }
        check_rate("dropout", self.dropout)
    }

    pub(crate) fn name(&self) -> String {
        let mut s = format!("tdnnf {}x{}/{}", self.layers, self.dim, self.bottleneck);
        if self.output_bottleneck > 0 {
            s.push_str(&format!("/{}", self.output_bottleneck));
        }
        if self.bypass_scale == 0.0 {
            s.push_str(" nobypass");
        }
        s
    }

    pub(crate) fn cost(&self, input_dim: usize, num_senones: usize, c: &mut Cost) {
        c.linear(self.input_splice.len() * input_dim, self.dim, true);
        c.norm(self.dim);
        for s in self.strides() {
            let k = if s > 0 { 2 } else { 1 };
            c.linear(k * self.dim, self.bottleneck, false);
            c.linear(k * self.bottleneck, self.dim, true);
            c.norm(self.dim);
        }
        if self.output_bottleneck > 0 {
            c.linear(self.dim, self.output_bottleneck, false);
            c.linear(self.output_bottleneck, num_senones, true);
        } else {
            c.linear(self.dim, num_senones, true);
        }
    }
}

/// `m <- m - 4 alpha (m m^T - scale^2 I) m`, one step of Kaldi's `ConstrainOrthonormalInternal`
/// with a floating scale (`scale^2 = tr(P P) / tr(P)`, `P = m m^T`), on the orientation with
/// fewer rows (the transpose when `m` is tall). Repeated steps drive `m m^T` (or `m^T m`)
/// towards `scale^2 I` while keeping `m`'s overall size; the update slows down when `m` is far
/// from that, as Kaldi's does, so that it cannot diverge. Returns the new matrix.
pub fn constrain_orthonormal(m: &Tensor) -> Result<Tensor> {
    let (rows, cols) = m.dims2()?;
    if rows > cols {
        return constrain_orthonormal(&m.t()?.contiguous()?)?
            .t()?
            .contiguous();
    }
    // In f64: tr(P P) sums squares of up to rows^2 products.
    let m64 = m.to_dtype(DType::F64)?;
    let p = m64.matmul(&m64.t()?)?; // [rows, rows]
    let trace_p = m64.sqr()?.sum_all()?.to_scalar::<f64>()?; // tr(M M^T) = |M|_F^2
    let trace_pp = p.sqr()?.sum_all()?.to_scalar::<f64>()?; // P symmetric: tr(P P^T) = tr(P P)
    if !(trace_p > 0.0 && trace_pp.is_finite()) {
        return Ok(m.clone()); // a zero (or broken) matrix has no direction to keep
    }
    let scale2 = trace_pp / trace_p;
    // ratio >= 1, with equality when every eigenvalue of P is equal (converged).
    let ratio = trace_pp * rows as f64 / (trace_p * trace_p);
    let mut speed = 0.125; // quadratic convergence near the solution
    if ratio > 1.02 {
        speed *= 0.5;
        if ratio > 1.1 {
            speed *= 0.5;
        }
    }
    let alpha = speed / scale2;
    let q = (p - (Tensor::eye(rows, DType::F64, m.device())? * scale2)?)?;
    let update = (q.matmul(&m64)? * (-4.0 * alpha))?;
    (m64 + update)?.to_dtype(m.dtype())
}

/// A bias-free layer `[..., in] -> [..., out]` as one 2-D product.
fn forward_flat(lin: &Linear, xs: &Tensor) -> Result<Tensor> {
    let dims = xs.dims().to_vec();
    let (&in_dim, lead) = dims.split_last().expect("a feature axis");
    let y = lin.forward(&xs.reshape((lead.iter().product::<usize>(), in_dim))?)?;
    let mut out = lead.to_vec();
    out.push(y.dim(1)?);
    y.reshape(out)
}

/// A bias-free linear layer whose weight the constraint updates in place.
struct Constrained {
    linear: Linear,
    weight: Var,
}

impl Constrained {
    fn new(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let w = candle_nn::linear_no_bias(in_dim, out_dim, vb)?
            .weight()
            .clone();
        // A VarMap's tensor is a variable: the Var shares its storage (no copy).
        let weight = Var::from_tensor(&w)?;
        Ok(Constrained {
            linear: Linear::new(weight.as_tensor().clone(), None),
            weight,
        })
    }

    fn constrain(&self) -> Result<()> {
        let next = constrain_orthonormal(&self.weight.as_detached_tensor())?;
        self.weight.set(&next)
    }
}

struct TdnnfLayer {
    stride: usize,
    down: Constrained,
    up: Linear,
    norm: NormLayer,
}

/// Variables: `input.linear.*`, `input.norm.*`, `layers.{i}.{down,up,norm}.*`,
/// `prefinal.weight` (with `output_bottleneck`), `output.*`.
pub(crate) struct Tdnnf {
    input_dim: usize,
    ctx: Context,
    input_splice: Vec<i32>,
    input_extent: (usize, usize),
    input: Linear,
    input_norm: NormLayer,
    layers: Vec<TdnnfLayer>,
    prefinal: Option<Constrained>,
    output: Linear,
    bypass_scale: f64,
    dropout: Option<SeededDropout>,
    orthonormal_every: u64,
}

impl Tdnnf {
    pub fn new(
        cfg: &TdnnfConfig,
        input_dim: usize,
        num_senones: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let d = cfg.dim;
        let b = cfg.bottleneck;
        let input = linear(
            cfg.input_splice.len() * input_dim,
            d,
            vb.pp("input").pp("linear"),
        )?;
        let input_norm = NormLayer::batch(d, vb.pp("input").pp("norm"))?;
        let mut layers = Vec::with_capacity(cfg.layers);
        for (i, stride) in cfg.strides().into_iter().enumerate() {
            let vb = vb.pp("layers").pp(i);
            let k = if stride > 0 { 2 } else { 1 };
            layers.push(TdnnfLayer {
                stride,
                down: Constrained::new(k * d, b, vb.pp("down"))?,
                up: linear(k * b, d, vb.pp("up"))?,
                norm: NormLayer::batch(d, vb.pp("norm"))?,
            });
        }
        let (prefinal, out_in) = if cfg.output_bottleneck > 0 {
            (
                Some(Constrained::new(
                    d,
                    cfg.output_bottleneck,
                    vb.pp("prefinal"),
                )?),
                cfg.output_bottleneck,
            )
        } else {
            (None, d)
        };
        Ok(Tdnnf {
            input_dim,
            ctx: cfg.context(),
            input_splice: cfg.input_splice.clone(),
            input_extent: extent(&cfg.input_splice),
            input,
            input_norm,
            layers,
            prefinal,
            output: linear(out_in, num_senones, vb.pp("output"))?,
            bypass_scale: cfg.bypass_scale,
            dropout: dropout(cfg.dropout),
            orthonormal_every: cfg.orthonormal_every,
        })
    }
}

impl AcousticModel for Tdnnf {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(xs, "tdnnf", self.input_dim, self.ctx)?;
        let (l, r) = self.input_extent;
        let mut x = self
            .input
            .forward_relu(&splice(xs, &self.input_splice, l, r)?)?;
        x = self.input_norm.forward_t(&x, train)?;
        x = apply_dropout(&self.dropout, x, train)?; // [B, T_0, dim]
        for layer in &self.layers {
            let s = layer.stride;
            let t = x.dim(1)?;
            let y_in = if s > 0 {
                let si = s as i32;
                let h = forward_flat(&layer.down.linear, &splice(&x, &[-si, 0], s, 0)?)?; // [B, T - s, b]
                splice(&h, &[0, si], 0, s)? // [B, T - 2s, 2b]
            } else {
                forward_flat(&layer.down.linear, &x)? // [B, T, b]
            };
            let mut y = layer.up.forward_relu(&y_in)?; // [B, T - 2s, dim]
            y = layer.norm.forward_t(&y, train)?;
            y = apply_dropout(&self.dropout, y, train)?;
            if self.bypass_scale > 0.0 {
                y = (y + (x.narrow(1, s, t - 2 * s)? * self.bypass_scale)?)?;
            }
            x = y;
        }
        if let Some(p) = &self.prefinal {
            x = forward_flat(&p.linear, &x)?;
        }
        self.output.forward(&x)
    }

    fn context(&self) -> Context {
        self.ctx
    }

    fn after_step(&self, step: u64) -> Result<()> {
        if self.orthonormal_every == 0 || step % self.orthonormal_every != 0 {
            return Ok(());
        }
        for l in &self.layers {
            l.down.constrain()?;
        }
        if let Some(p) = &self.prefinal {
            p.constrain()?;
        }
        Ok(())
    }
}
