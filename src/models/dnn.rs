//! Feed-forward network on spliced frames (the classic hybrid DNN): frames `t - splice ..=
//! t + splice` concatenated, `layers` hidden layers of ReLU (optionally followed by batch or
//! layer norm), dropout, and a linear output layer.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use super::layers::{
    apply_dropout, check_at_most, check_input, check_layers, check_positive, check_rate, dropout,
    splice, Cost, NormLayer, SeededDropout, MAX_CONTEXT,
};
use super::{AcousticModel, Context};
use crate::nn::{linear, Linear};

/// Normalisation after each hidden layer's ReLU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    #[default]
    None,
    Batch,
    Layer,
}

/// `type = "dnn"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnnConfig {
    /// Frames of context each side (the input layer sees `2 * splice + 1` frames).
    pub splice: usize,
    /// Units per hidden layer.
    pub hidden: usize,
    /// Hidden layers.
    pub layers: usize,
    pub norm: Norm,
    /// Dropout rate after each hidden layer (training only).
    pub dropout: f64,
}

impl Default for DnnConfig {
    fn default() -> Self {
        DnnConfig {
            splice: 5,
            hidden: 1024,
            layers: 6,
            norm: Norm::None,
            dropout: 0.0,
        }
    }
}

impl DnnConfig {
    pub(crate) fn context(&self) -> Context {
        Context {
            left: self.splice,
            right: self.splice,
        }
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        check_positive("hidden", self.hidden)?;
        check_layers("layers", self.layers)?;
        check_at_most("splice", self.splice, MAX_CONTEXT)?;
        check_rate("dropout", self.dropout)
    }

    fn suffix(&self) -> String {
        let mut s = String::new();
        match self.norm {
            Norm::None => {}
            Norm::Batch => s.push_str(" bn"),
            Norm::Layer => s.push_str(" ln"),
        }
        if self.dropout > 0.0 {
            s.push_str(&format!(" dropout{}", self.dropout));
        }
        s
    }

    pub(crate) fn name(&self) -> String {
        format!(
            "dnn {}x{} splice{}{}",
            self.layers,
            self.hidden,
            self.splice,
            self.suffix()
        )
    }

    /// `dnn 880-6x1024-2000`: spliced input, hidden layers, outputs.
    pub(crate) fn describe(&self, input_dim: usize, num_senones: usize) -> String {
        let spliced = (2 * self.splice + 1) * input_dim;
        format!(
            "dnn {spliced}-{}x{}-{num_senones}{}",
            self.layers,
            self.hidden,
            self.suffix()
        )
    }

    pub(crate) fn cost(&self, input_dim: usize, num_senones: usize, c: &mut Cost) {
        let mut d = (2 * self.splice + 1).saturating_mul(input_dim);
        for _ in 0..self.layers {
            c.linear(d, self.hidden, true);
            if self.norm != Norm::None {
                c.norm(self.hidden);
            }
            d = self.hidden;
        }
        c.linear(d, num_senones, true);
    }
}

/// Variables: `hidden.{i}.linear.{weight,bias}`, `hidden.{i}.norm.*`, `output.{weight,bias}`.
pub(crate) struct Dnn {
    offsets: Vec<i32>,
    input_dim: usize,
    ctx: Context,
    hidden: Vec<(Linear, Option<NormLayer>)>,
    output: Linear,
    dropout: Option<SeededDropout>,
}

impl Dnn {
    pub fn new(
        cfg: &DnnConfig,
        input_dim: usize,
        num_senones: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let s = cfg.splice as i32;
        let mut d = (2 * cfg.splice + 1) * input_dim;
        let mut hidden = Vec::with_capacity(cfg.layers);
        for i in 0..cfg.layers {
            let vb = vb.pp("hidden").pp(i);
            let lin = linear(d, cfg.hidden, vb.pp("linear"))?;
            let norm = match cfg.norm {
                Norm::None => None,
                Norm::Batch => Some(NormLayer::batch(cfg.hidden, vb.pp("norm"))?),
                Norm::Layer => Some(NormLayer::layer(cfg.hidden, vb.pp("norm"))?),
            };
            hidden.push((lin, norm));
            d = cfg.hidden;
        }
        Ok(Dnn {
            offsets: (-s..=s).collect(),
            input_dim,
            ctx: cfg.context(),
            hidden,
            output: linear(d, num_senones, vb.pp("output"))?,
            dropout: dropout(cfg.dropout),
        })
    }
}

impl AcousticModel for Dnn {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        check_input(xs, "dnn", self.input_dim, self.ctx)?;
        // [B, T + 2s, F] -> [B, T, (2s + 1) F]
        let mut x = splice(xs, &self.offsets, self.ctx.left, self.ctx.right)?;
        for (lin, norm) in &self.hidden {
            x = lin.forward_relu(&x)?; // [B, T, hidden]
            if let Some(n) = norm {
                x = n.forward_t(&x, train)?;
            }
            x = apply_dropout(&self.dropout, x, train)?;
        }
        self.output.forward(&x) // [B, T, senones]
    }

    fn context(&self) -> Context {
        self.ctx
    }
}
