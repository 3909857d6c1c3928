//! A fully connected layer `y = x W^T + b` over inputs of any rank (`[..., in] -> [..., out]`).

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Fully connected layer; weight `[out, in]`, bias `[out]` (the names candle and PyTorch use).
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

/// A `Linear` from `in_dim` to `out_dim` under `vb` (`weight`, `bias`), initialised like
/// PyTorch's `nn.Linear` when the variables are new.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    Ok(Linear {
        inner: candle_nn::linear(in_dim, out_dim, vb)?,
    })
}

impl Linear {
    /// The weight, `[out, in]`.
    pub fn weight(&self) -> &Tensor {
        self.inner.weight()
    }
    /// The bias, `[out]`.
    pub fn bias(&self) -> Option<&Tensor> {
        self.inner.bias()
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.inner.forward(xs)
    }
}
