//! AdamW (Loshchilov and Hutter 2019) with decoupled weight decay.

use candle_core::{backprop::GradStore, Result, Var};
use candle_nn::Optimizer;

/// AdamW hyper-parameters (PyTorch's defaults).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }
}

/// AdamW over a set of variables.
pub struct AdamW {
    inner: candle_nn::AdamW,
}

impl AdamW {
    pub fn new(vars: Vec<Var>, cfg: AdamWConfig) -> Result<Self> {
        let p = candle_nn::ParamsAdamW {
            lr: cfg.lr,
            beta1: cfg.beta1,
            beta2: cfg.beta2,
            eps: cfg.eps,
            weight_decay: cfg.weight_decay,
        };
        Ok(AdamW {
            inner: candle_nn::AdamW::new(vars, p)?,
        })
    }
    /// Sets the learning rate for the next steps (schedules call this every step).
    pub fn set_lr(&mut self, lr: f64) {
        self.inner.set_learning_rate(lr)
    }
    /// One update from `grads`.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.inner.step(grads)
    }
}
