//! A fully connected layer `y = x W^T + b` over inputs of any rank (`[..., in] -> [..., out]`),
//! with an optional fused ReLU.
//!
//! On the CPU with f32 the layer is one custom op: the forward pass is a single gemm (candle's
//! own, with the weight read through a transposed layout, no copy) plus one pass that adds the
//! bias and applies the ReLU; the backward pass masks `dy` and sums it for `db` in one pass,
//! then runs `dW = dy^T x` and, only when `x` needs a gradient, `dx = dy W` as plain gemms.
//! Candle's generic graph for the same layer spends extra passes on the broadcast add, the
//! ReLU mask (compare, cast, multiply) and a gemm for the gradient of the network input that
//! nobody reads. Elsewhere (CUDA, other dtypes, no bias) it falls back to candle's ops.

use std::sync::Arc;

use candle_core::{
    backend::BackendStorage, bail, CpuStorage, CustomOp3, Layout, Module, Result, Shape, Tensor,
};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::kernels::{all_cpu_f32, f32_slice, with_f32};

/// Fully connected layer; weight `[out, in]`, bias `[out]` (the names candle and PyTorch use).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

/// A `Linear` from `in_dim` to `out_dim` under `vb` (`weight`, `bias`), initialised like
/// PyTorch's `nn.Linear` when the variables are new.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let inner = candle_nn::linear(in_dim, out_dim, vb)?;
    Ok(Linear::new(inner.weight().clone(), inner.bias().cloned()))
}

impl Linear {
    /// A layer over existing tensors: `weight` `[out, in]`, `bias` `[out]`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Linear { weight, bias }
    }
    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }
    /// The bias, `[out]`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    /// `relu(x W^T + b)`, `[..., in] -> [..., out]`, fused (one op forward and backward).
    pub fn forward_relu(&self, xs: &Tensor) -> Result<Tensor> {
        self.apply(xs, true)
    }

    fn apply(&self, xs: &Tensor, relu: bool) -> Result<Tensor> {
        let fused = match &self.bias {
            Some(b) => all_cpu_f32(&[xs, &self.weight, b]),
            None => false,
        };
        if !fused {
            let y = candle_nn::Linear::new(self.weight.clone(), self.bias.clone()).forward(xs)?;
            return if relu { y.relu() } else { Ok(y) };
        }
        let b = self.bias.as_ref().expect("fused implies a bias");
        let dims = xs.dims().to_vec();
        let Some((&in_dim, lead)) = dims.split_last() else {
            bail!("linear: input must have at least one dimension");
        };
        let x2 = if dims.len() == 2 {
            xs.clone()
        } else {
            xs.reshape((lead.iter().product::<usize>(), in_dim))?
        };
        let y = x2.apply_op3_arc(&self.weight, b, Arc::new(Box::new(LinearOp { relu })))?;
        if dims.len() == 2 {
            Ok(y)
        } else {
            let mut out = lead.to_vec();
            out.push(self.weight.dim(0)?);
            y.reshape(out)
        }
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.apply(xs, false)
    }
}

/// `y = x W^T + b` (`relu` optional) on `x [n, in]`, `W [out, in]`, `b [out]`.
struct LinearOp {
    relu: bool,
}

/// Rows per rayon task in the row-wise passes.
const ROWS: usize = 64;

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        if self.relu {
            "amdistill-linear-relu"
        } else {
            "amdistill-linear"
        }
    }

    fn cpu_fwd(
        &self,
        sx: &CpuStorage,
        lx: &Layout,
        sw: &CpuStorage,
        lw: &Layout,
        sb: &CpuStorage,
        lb: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (n, k) = lx.shape().dims2()?;
        let (m, k2) = lw.shape().dims2()?;
        if k != k2 || lb.shape().dims() != [m] {
            bail!(
                "linear: x {:?}, weight {:?}, bias {:?} do not fit",
                lx.shape(),
                lw.shape(),
                lb.shape()
            );
        }
        // The gemm reads W through the transposed layout: no copy of the weight.
        let y = sx.matmul(sw, (1, n, m, k), lx, &lw.transpose(0, 1)?)?;
        let CpuStorage::F32(mut y) = y else {
            bail!("linear: expected an f32 product")
        };
        let bias = f32_slice(sb, lb, "linear bias")?;
        let relu = self.relu;
        y.par_chunks_mut(m).with_min_len(ROWS).for_each(|row| {
            if relu {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v = (*v + b).max(0.0);
                }
            } else {
                for (v, &b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((n, m))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dy = dy.detach().contiguous()?;
        let (n, m) = dy.dims2()?;
        // One pass: mask dy by y > 0 (when fused with a ReLU) and sum it over rows for db.
        let (g, db) = with_f32(&dy, "linear grad", |d| {
            if self.relu {
                with_f32(y, "linear output", |yv| Ok(mask_and_colsum(d, Some(yv), m)))
            } else {
                Ok(mask_and_colsum(d, None, m))
            }
        })?;
        let g = match g {
            Some(g) => Tensor::from_vec(g, (n, m), dy.device())?,
            None => dy,
        };
        let db = Tensor::from_vec(db, m, g.device())?;
        let dw = g.t()?.matmul(&x.detach())?;
        // The network's input needs no gradient: skip the largest-k gemm of the first layer.
        let dx = if x.track_op() {
            Some(g.matmul(&w.detach())?)
        } else {
            None
        };
        Ok((dx, Some(dw), Some(db)))
    }
}

/// `(dy * [y > 0], column sums of that)` for `dy` `[n, m]` row-major; no masked copy when
/// `y` is `None`.
fn mask_and_colsum(dy: &[f32], y: Option<&[f32]>, m: usize) -> (Option<Vec<f32>>, Vec<f32>) {
    let zero = || vec![0f32; m];
    let add = |mut a: Vec<f32>, b: Vec<f32>| {
        a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
        a
    };
    match y {
        Some(y) => {
            let mut g = vec![0f32; dy.len()];
            let db = g
                .par_chunks_mut(m)
                .zip(dy.par_chunks(m).zip(y.par_chunks(m)))
                .with_min_len(ROWS)
                .fold(zero, |mut acc, (g, (d, y))| {
                    for j in 0..m {
                        let v = if y[j] > 0.0 { d[j] } else { 0.0 };
                        g[j] = v;
                        acc[j] += v;
                    }
                    acc
                })
                .reduce(zero, add);
            (Some(g), db)
        }
        None => {
            let db = dy
                .par_chunks(m)
                .with_min_len(ROWS)
                .fold(zero, |mut acc, d| {
                    acc.iter_mut().zip(d).for_each(|(a, d)| *a += d);
                    acc
                })
                .reduce(zero, add);
            (None, db)
        }
    }
}
