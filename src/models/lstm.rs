//! (Bi)directional LSTM with optional projection (LSTMP, Sak et al. 2014) and a linear
//! output layer. Unidirectional models suit streaming students; bidirectional ones teachers.
//!
//! Each layer and direction computes its input contribution to all four gates for the whole
//! sequence at once (`x W_ih^T + b`, one gemm over `[batch * frames, in]`), so the time loop
//! only multiplies the recurrent state (`h W_hh^T`, `[batch, rec]`) and applies the gates:
//!
//! ```text
//! gates = x_t W_ih^T + b + h_{t-1} W_hh^T           rows ordered [i, f, o, g], each `hidden`
//! c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)     h_t = sigmoid(o) tanh(c_t)   (then h_t W_p^T)
//! ```
//!
//! The model reads `extra_left` + `extra_right` frames more than it labels and trims them
//! from the output, so that chunked training gives a bidirectional model some context.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use super::layers::{
    apply_dropout, check_at_most, check_input, check_layers, check_positive, check_rate, dropout,
    Cost, SeededDropout, MAX_CONTEXT, MAX_DIM,
};
use super::{AcousticModel, Context};
use crate::nn::{linear, Linear};

/// `type = "lstm"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LstmConfig {
    /// Cell size per direction.
    pub hidden: usize,
    pub layers: usize,
    /// Both directions, outputs concatenated (needs the whole chunk: not streamable).
    pub bidirectional: bool,
    /// Recurrent projection size (LSTMP); 0: none, the state is the cell output.
    pub projection: usize,
    /// Dropout rate on each layer's output (training only).
    pub dropout: f64,
    /// Frames read before the labelled ones and trimmed from the output.
    pub extra_left: usize,
    /// Frames read after the labelled ones and trimmed from the output.
    pub extra_right: usize,
}

impl Default for LstmConfig {
    fn default() -> Self {
        LstmConfig {
            hidden: 512,
            layers: 3,
            bidirectional: false,
            projection: 0,
            dropout: 0.0,
            extra_left: 0,
            extra_right: 0,
        }
    }
}

impl LstmConfig {
    fn directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    /// Width of one direction's output (and of the recurrent state).
    fn out_dim(&self) -> usize {
        if self.projection > 0 {
            self.projection
        } else {
            self.hidden
        }
    }

    pub(crate) fn context(&self) -> Context {
        Context {
            left: self.extra_left,
            right: self.extra_right,
        }
    }

    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        check_positive("hidden", self.hidden)?;
        check_layers("layers", self.layers)?;
        check_at_most("projection", self.projection, MAX_DIM)?;
        check_at_most("extra_left", self.extra_left, MAX_CONTEXT)?;
        check_at_most("extra_right", self.extra_right, MAX_CONTEXT)?;
        check_rate("dropout", self.dropout)
    }

    pub(crate) fn name(&self) -> String {
        let kind = if self.bidirectional { "blstm" } else { "lstm" };
        let mut s = format!("{kind} {}x{}", self.layers, self.hidden);
        if self.projection > 0 {
            s.push_str(&format!("p{}", self.projection));
        }
        if self.extra_left + self.extra_right > 0 {
            s.push_str(&format!(" ctx{}/{}", self.extra_left, self.extra_right));
        }
        s
    }

    pub(crate) fn cost(&self, input_dim: usize, num_senones: usize, c: &mut Cost) {
        let (h, p) = (self.hidden, self.out_dim());
        let mut d = input_dim;
        for _ in 0..self.layers {
            for _ in 0..self.directions() {
                c.linear(d, 4 * h, true);
                c.linear(p, 4 * h, false);
                if self.projection > 0 {
                    c.linear(h, p, false);
                }
            }
            d = self.directions() * p;
        }
        c.linear(d, num_senones, true);
    }
}

/// One direction of one layer.
struct Direction {
    hidden: usize,
    rec: usize,
    reverse: bool,
    /// `[4 hidden, in]` with the gate bias.
    ih: Linear,
    /// `[4 hidden, rec]`, no bias.
    hh: Linear,
    /// `[rec, hidden]`, no bias (LSTMP).
    proj: Option<Linear>,
}

impl Direction {
    fn new(
        in_dim: usize,
        hidden: usize,
        projection: usize,
        reverse: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        let rec = if projection > 0 { projection } else { hidden };
        // PyTorch's LSTM initialisation: U(-1/sqrt(hidden), 1/sqrt(hidden)).
        let k = 1.0 / (hidden as f64).sqrt();
        let init = Init::Uniform { lo: -k, up: k };
        let hh = vb
            .pp("hh")
            .get_with_hints((4 * hidden, rec), "weight", init)?;
        let proj = if projection > 0 {
            Some(Linear::new(
                vb.pp("proj")
                    .get_with_hints((projection, hidden), "weight", init)?,
                None,
            ))
        } else {
            None
        };
        Ok(Direction {
            hidden,
            rec,
            reverse,
            ih: linear(in_dim, 4 * hidden, vb.pp("ih"))?,
            hh: Linear::new(hh, None),
            proj,
        })
    }

    /// `[B, T, in] -> [B, T, rec]`, zero initial state.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let h = self.hidden;
        let g_all = self.ih.forward(x)?; // [B, T, 4H], every step's input term at once
        let mut state: Option<(Tensor, Tensor)> = None; // (h [B, rec], c [B, H])
        let mut outs: Vec<Option<Tensor>> = vec![None; t];
        for step in 0..t {
            let ti = if self.reverse { t - 1 - step } else { step };
            let g_in = g_all.narrow(1, ti, 1)?.reshape((b, 4 * h))?;
            let gates = match &state {
                Some((h_prev, _)) => (g_in + self.hh.forward(h_prev)?)?,
                None => g_in, // h_0 = 0
            };
            let sig = candle_nn::ops::sigmoid(&gates.narrow(1, 0, 3 * h)?)?; // [B, 3H]: i, f, o
            let cand = gates.narrow(1, 3 * h, h)?.tanh()?;
            let i_c = (sig.narrow(1, 0, h)? * cand)?;
            let c = match &state {
                Some((_, c_prev)) => ((sig.narrow(1, h, h)? * c_prev)? + i_c)?,
                None => i_c, // c_0 = 0
            };
            let cell_out = (sig.narrow(1, 2 * h, h)? * c.tanh()?)?;
            let h_t = match &self.proj {
                Some(p) => p.forward(&cell_out)?,
                None => cell_out,
            };
            outs[ti] = Some(h_t.clone());
            state = Some((h_t, c));
        }
        let outs: Vec<Tensor> = outs
            .into_iter()
            .map(|o| o.expect("every step ran"))
            .collect();
        debug_assert!(outs.iter().all(|o| o.dim(1).ok() == Some(self.rec)));
        Tensor::stack(&outs, 1)
    }
}

/// Variables: `layers.{l}.{fwd,bwd}.ih.{weight,bias}`, `...hh.weight`, `...proj.weight`,
/// `output.*`.
pub(crate) struct Lstm {
    input_dim: usize,
    ctx: Context,
    layers: Vec<Vec<Direction>>,
    output: Linear,
    dropout: Option<SeededDropout>,
}

impl Lstm {
    pub fn new(
        cfg: &LstmConfig,
        input_dim: usize,
        num_senones: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let mut d = input_dim;
        let mut layers = Vec::with_capacity(cfg.layers);
        for l in 0..cfg.layers {
            let vb = vb.pp("layers").pp(l);
            let mut dirs = vec![Direction::new(
                d,
                cfg.hidden,
                cfg.projection,
                false,
                vb.pp("fwd"),
            )?];
            if cfg.bidirectional {
                dirs.push(Direction::new(
                    d,
                    cfg.hidden,
                    cfg.projection,
                    true,
                    vb.pp("bwd"),
                )?);
            }
            layers.push(dirs);
            d = cfg.directions() * cfg.out_dim();
        }
        Ok(Lstm {
            input_dim,
            ctx: cfg.context(),
            layers,
            output: linear(d, num_senones, vb.pp("output"))?,
            dropout: dropout(cfg.dropout),
        })
    }
}

impl AcousticModel for Lstm {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let frames = check_input(xs, "lstm", self.input_dim, self.ctx)?;
        let mut x = xs.clone(); // [B, T + extra, F]
        for dirs in &self.layers {
            let outs = dirs
                .iter()
                .map(|d| d.forward(&x))
                .collect::<Result<Vec<_>>>()?;
            x = if outs.len() == 1 {
                outs.into_iter().next().expect("one direction")
            } else {
                Tensor::cat(&outs, 2)? // [B, T + extra, 2 rec]
            };
            x = apply_dropout(&self.dropout, x, train)?;
        }
        // Trim the extra context before the output layer: [B, T, dirs * rec].
        let x = if self.ctx.total() > 0 {
            x.narrow(1, self.ctx.left, frames)?.contiguous()?
        } else {
            x
        };
        self.output.forward(&x)
    }

    fn context(&self) -> Context {
        self.ctx
    }
}
