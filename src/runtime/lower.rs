//! Lowering: a trained model (its [`ModelConfig`] and variables) to a runtime [`Graph`].
//!
//! Each architecture becomes the ops its candle forward runs in inference mode: batch norm
//! folds into one scale and shift per channel, dropout disappears, and a final
//! [`Op::LogSoftmax`] turns logits into log-posteriors. The tests in `tests/runtime.rs`
//! check the graph against the candle model for every architecture.

use std::collections::HashMap;

use candle_core::Tensor;
use candle_nn::VarMap;

use super::graph::{Graph, LstmOp, NodeId, Op, Weights};
use crate::error::{Error, Result};
use crate::features::Matrix;
use crate::models::{DnnConfig, LstmConfig, ModelConfig, Norm, TdnnConfig, TdnnfConfig};

/// Batch and layer norm epsilon of the models (models::layers).
const NORM_EPS: f32 = 1e-5;

/// The graph of `model` (`input_dim` features in, `num_senones` log-posteriors out) with
/// the weights in `vars` (variable name -> tensor, as in a model's safetensors file).
pub fn lower(
    model: &ModelConfig,
    input_dim: usize,
    num_senones: usize,
    vars: &HashMap<String, Tensor>,
) -> Result<Graph> {
    let mut l = Lowering {
        g: Graph::new(input_dim),
        vars,
    };
    let last = match model {
        ModelConfig::Dnn(c) => l.dnn(c)?,
        ModelConfig::Tdnn(c) => l.tdnn(c)?,
        ModelConfig::Tdnnf(c) => l.tdnnf(c)?,
        ModelConfig::Lstm(c) => l.lstm(c)?,
    };
    l.g.push("log_softmax", Op::LogSoftmax { input: last })?;
    if l.g.output_dim() != num_senones {
        return Err(Error::config(format!(
            "lowered model has {} outputs, the card says {num_senones}",
            l.g.output_dim()
        )));
    }
    let want = model.context();
    let got = l.g.context()?;
    if got != want {
        return Err(Error::config(format!(
            "lowered {} has context {}/{}, the model {}/{}",
            model.name(),
            got.left,
            got.right,
            want.left,
            want.right
        )));
    }
    Ok(l.g)
}

/// The variables of a `VarMap` by name (what [`lower`] reads).
pub fn varmap_tensors(varmap: &VarMap) -> HashMap<String, Tensor> {
    let data = varmap.data().lock().expect("varmap lock");
    data.iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect()
}

struct Lowering<'a> {
    g: Graph,
    vars: &'a HashMap<String, Tensor>,
}

impl Lowering<'_> {
    fn tensor(&self, name: &str) -> Result<&Tensor> {
        self.vars
            .get(name)
            .ok_or_else(|| Error::config(format!("model weights lack variable {name}")))
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        self.tensor(name)?
            .flatten_all()
            .and_then(|t| t.to_dtype(candle_core::DType::F32))
            .and_then(|t| t.to_vec1())
            .map_err(|e| Error::config(format!("variable {name}: {e}")))
    }

    fn matrix(&self, name: &str) -> Result<Matrix> {
        let t = self.tensor(name)?;
        let (rows, cols) = t
            .dims2()
            .map_err(|e| Error::config(format!("variable {name}: {e}")))?;
        Ok(Matrix::from_vec(rows, cols, self.vector(name)?))
    }

    fn has(&self, name: &str) -> bool {
        self.vars.contains_key(name)
    }

    /// `prefix.weight` (+ `prefix.bias` when present) as an affine node.
    fn affine(&mut self, prefix: &str, input: NodeId, relu: bool) -> Result<NodeId> {
        let weight = Weights::F32(self.matrix(&format!("{prefix}.weight"))?);
        let bname = format!("{prefix}.bias");
        let bias = if self.has(&bname) {
            Some(self.vector(&bname)?)
        } else {
            None
        };
        self.g.push(
            format!("{prefix}.affine"),
            Op::Affine {
                input,
                weight,
                bias,
                relu,
            },
        )
    }

    /// Inference batch norm under `prefix`: `scale = w / sqrt(var + eps)`, `shift = b - mean scale`.
    fn batch_norm(&mut self, prefix: &str, input: NodeId) -> Result<NodeId> {
        let mean = self.vector(&format!("{prefix}.running_mean"))?;
        let var = self.vector(&format!("{prefix}.running_var"))?;
        let w = self.vector(&format!("{prefix}.weight"))?;
        let b = self.vector(&format!("{prefix}.bias"))?;
        let scale: Vec<f32> = var
            .iter()
            .zip(&w)
            .map(|(v, w)| w / (v + NORM_EPS).sqrt())
            .collect();
        let shift = b
            .iter()
            .zip(&mean)
            .zip(&scale)
            .map(|((b, m), s)| b - m * s)
            .collect();
        self.g.push(
            format!("{prefix}.batch_norm"),
            Op::ScaleShift {
                input,
                scale,
                shift,
            },
        )
    }

    fn layer_norm(&mut self, prefix: &str, input: NodeId) -> Result<NodeId> {
        let gamma = self.vector(&format!("{prefix}.weight"))?;
        let beta = self.vector(&format!("{prefix}.bias"))?;
        self.g.push(
            format!("{prefix}.layer_norm"),
            Op::LayerNorm {
                input,
                gamma,
                beta,
                eps: NORM_EPS,
            },
        )
    }

    fn splice(&mut self, name: &str, input: NodeId, offsets: Vec<i32>) -> Result<NodeId> {
        if offsets == [0] {
            return Ok(input);
        }
        self.g
            .push(format!("{name}.splice"), Op::Splice { input, offsets })
    }

    fn dnn(&mut self, c: &DnnConfig) -> Result<NodeId> {
        let s = c.splice as i32;
        let mut x = self.splice("input", 0, (-s..=s).collect())?;
        for i in 0..c.layers {
            x = self.affine(&format!("hidden.{i}.linear"), x, true)?;
            let norm = format!("hidden.{i}.norm");
            x = match c.norm {
                Norm::None => x,
                Norm::Batch => self.batch_norm(&norm, x)?,
                Norm::Layer => self.layer_norm(&norm, x)?,
            };
        }
        self.affine("output", x, false)
    }

    fn tdnn(&mut self, c: &TdnnConfig) -> Result<NodeId> {
        let mut x = 0;
        for (i, offsets) in c.splices.iter().enumerate() {
            x = self.splice(&format!("layers.{i}"), x, offsets.clone())?;
            x = self.affine(&format!("layers.{i}.linear"), x, true)?;
            if c.batch_norm {
                x = self.batch_norm(&format!("layers.{i}.norm"), x)?;
            }
        }
        self.affine("output", x, false)
    }

    fn tdnnf(&mut self, c: &TdnnfConfig) -> Result<NodeId> {
        let x = self.splice("input", 0, c.input_splice.clone())?;
        let x = self.affine("input.linear", x, true)?;
        let mut x = self.batch_norm("input.norm", x)?;
        for (i, stride) in c.strides().into_iter().enumerate() {
            let p = format!("layers.{i}");
            let s = stride as i32;
            // down: W [x(t - s); x(t)], up: W [h(t); h(t + s)] (the factorised 3-tap conv).
            let down_in = if s > 0 {
                self.splice(&format!("{p}.down"), x, vec![-s, 0])?
            } else {
                x
            };
            let h = self.affine(&format!("{p}.down"), down_in, false)?;
            let up_in = if s > 0 {
                self.splice(&format!("{p}.up"), h, vec![0, s])?
            } else {
                h
            };
            let y = self.affine(&format!("{p}.up"), up_in, true)?;
            let y = self.batch_norm(&format!("{p}.norm"), y)?;
            x = if c.bypass_scale > 0.0 {
                self.g.push(
                    format!("{p}.bypass"),
                    Op::Add {
                        a: y,
                        b: x,
                        scale: c.bypass_scale as f32,
                    },
                )?
            } else {
                y
            };
        }
        if c.output_bottleneck > 0 {
            x = self.affine("prefinal", x, false)?;
        }
        self.affine("output", x, false)
    }

    fn lstm(&mut self, c: &LstmConfig) -> Result<NodeId> {
        let mut x = 0;
        for l in 0..c.layers {
            let mut dirs = vec![("fwd", false)];
            if c.bidirectional {
                dirs.push(("bwd", true));
            }
            let mut outs = Vec::new();
            for (d, reverse) in dirs {
                let p = format!("layers.{l}.{d}");
                let proj_name = format!("{p}.proj.weight");
                let w_proj = if self.has(&proj_name) {
                    Some(self.matrix(&proj_name)?)
                } else {
                    None
                };
                let op = LstmOp {
                    input: x,
                    hidden: c.hidden,
                    w_ih: Weights::F32(self.matrix(&format!("{p}.ih.weight"))?),
                    bias: self.vector(&format!("{p}.ih.bias"))?,
                    w_hh: self.matrix(&format!("{p}.hh.weight"))?,
                    w_proj,
                    reverse,
                };
                outs.push(self.g.push(format!("{p}.lstm"), Op::Lstm(op))?);
            }
            x = if outs.len() == 1 {
                outs[0]
            } else {
                self.g
                    .push(format!("layers.{l}.concat"), Op::Concat { inputs: outs })?
            };
        }
        if c.extra_left + c.extra_right > 0 {
            x = self.g.push(
                "trim",
                Op::Trim {
                    input: x,
                    left: c.extra_left,
                    right: c.extra_right,
                },
            )?;
        }
        self.affine("output", x, false)
    }
}
