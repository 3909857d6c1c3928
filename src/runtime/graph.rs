//! The runtime graph: a trained model as a list of frame-level ops, the one description that
//! the offline and streaming executors, int8 quantisation and the ONNX writer all read.
//!
//! Every node's output is a sequence of frames `[frames, dim]` on the time axis of the graph
//! input. Its [`Span`] says which frames: for `T` input frames a node has
//! `T - lead - lag` output frames, the first at input time `lead`. Ops that look across time
//! ([`Op::Splice`], [`Op::Trim`]) change the span; [`Op::Add`] and [`Op::Concat`] take the
//! frames their inputs share. The graph output (log-posteriors) has the span of the model's
//! [`Context`]: `lead = left`, `lag = right`.

use crate::error::{Error, Result};
use crate::features::Matrix;
use crate::models::Context;

/// Index of a node in [`Graph::nodes`]; node 0 is the input.
pub type NodeId = usize;

/// Frames a node's output lacks at the start (`lead`) and end (`lag`) of the graph input's
/// time axis. Negative values (a splice reaching only forward) are allowed in the middle of
/// a graph; the output's are the model's context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub lead: i64,
    pub lag: i64,
}

/// Per-channel symmetric int8 weights: `w[r][c] ~= data[r * cols + c] * scales[r]`.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantMatrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` values in `[-127, 127]`, row after row.
    pub data: Vec<i8>,
    /// One scale per row (output channel).
    pub scales: Vec<f32>,
}

impl QuantMatrix {
    /// Rounds each row of `m` to int8 with the scale `max |w| / 127` (a zero row keeps scale 1).
    pub fn quantize(m: &Matrix) -> Self {
        let mut data = Vec::with_capacity(m.data.len());
        let mut scales = Vec::with_capacity(m.rows);
        for r in 0..m.rows {
            let row = m.row(r);
            let max = row.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
            scales.push(scale);
            data.extend(
                row.iter()
                    .map(|&v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8),
            );
        }
        QuantMatrix {
            rows: m.rows,
            cols: m.cols,
            data,
            scales,
        }
    }

    /// The fp32 matrix the int8 values stand for.
    pub fn dequantize(&self) -> Matrix {
        let mut data = Vec::with_capacity(self.data.len());
        for r in 0..self.rows {
            let s = self.scales[r];
            data.extend(
                self.data[r * self.cols..(r + 1) * self.cols]
                    .iter()
                    .map(|&q| q as f32 * s),
            );
        }
        Matrix::from_vec(self.rows, self.cols, data)
    }
}

/// A weight matrix `[out, in]` (rows are output channels), fp32 or int8.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    F32(Matrix),
    Int8(QuantMatrix),
}

impl Weights {
    /// `(rows, cols)` = `(out, in)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Weights::F32(m) => (m.rows, m.cols),
            Weights::Int8(q) => (q.rows, q.cols),
        }
    }

    /// Bytes the values take (int8 counts its scales).
    pub fn bytes(&self) -> usize {
        match self {
            Weights::F32(m) => 4 * m.data.len(),
            Weights::Int8(q) => q.data.len() + 4 * q.scales.len(),
        }
    }
}

/// One LSTM direction (gate rows ordered `[i, f, o, g]`, each `hidden`; see models::lstm):
///
/// ```text
/// gates = W_ih x_t + b + W_hh h_{t-1}
/// c_t = sigmoid(f) c_{t-1} + sigmoid(i) tanh(g)   h_t = sigmoid(o) tanh(c_t)   (then W_proj h_t)
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LstmOp {
    pub input: NodeId,
    pub hidden: usize,
    /// `[4 hidden, in]`.
    pub w_ih: Weights,
    /// `[4 hidden]`.
    pub bias: Vec<f32>,
    /// `[4 hidden, rec]` where `rec` is `hidden`, or the projection size.
    pub w_hh: Matrix,
    /// `[rec, hidden]` (LSTMP), or none.
    pub w_proj: Option<Matrix>,
    /// Runs from the last frame to the first (the backward half of a BLSTM).
    pub reverse: bool,
}

impl LstmOp {
    /// Output size per frame: the projection's, or `hidden`.
    pub fn rec(&self) -> usize {
        self.w_proj.as_ref().map_or(self.hidden, |p| p.rows)
    }
}

/// A frame-level operation. "At time t" means on the graph input's time axis.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// The features `[frames, input_dim]`, CMVN applied.
    Input,
    /// `out(t) = concat over offsets o of in(t + o)`; offsets strictly increasing.
    Splice {
        input: NodeId,
        offsets: Vec<i32>,
    },
    /// Drops `left` frames at the start and `right` at the end.
    Trim {
        input: NodeId,
        left: usize,
        right: usize,
    },
    /// `out(t) = W in(t) + bias`, then `max(0, .)` when `relu`.
    Affine {
        input: NodeId,
        weight: Weights,
        bias: Option<Vec<f32>>,
        relu: bool,
    },
    /// `out(t)[c] = in(t)[c] * scale[c] + shift[c]` (inference batch norm).
    ScaleShift {
        input: NodeId,
        scale: Vec<f32>,
        shift: Vec<f32>,
    },
    /// `out(t) = (in(t) - mean) / sqrt(var + eps) * gamma + beta` over the channels of one frame.
    LayerNorm {
        input: NodeId,
        gamma: Vec<f32>,
        beta: Vec<f32>,
        eps: f32,
    },
    /// `out(t) = a(t) + scale * b(t)` over the frames both have (TDNN-F's bypass).
    Add {
        a: NodeId,
        b: NodeId,
        scale: f32,
    },
    Lstm(LstmOp),
    /// Channels of the inputs side by side, over the frames all have.
    Concat {
        inputs: Vec<NodeId>,
    },
    /// `out(t) = in(t) - log sum exp in(t)`: logits to log-posteriors.
    LogSoftmax {
        input: NodeId,
    },
}

impl Op {
    /// The nodes this op reads, in order.
    pub fn inputs(&self) -> Vec<NodeId> {
        match self {
            Op::Input => vec![],
            Op::Splice { input, .. }
            | Op::Trim { input, .. }
            | Op::Affine { input, .. }
            | Op::ScaleShift { input, .. }
            | Op::LayerNorm { input, .. }
            | Op::LogSoftmax { input } => vec![*input],
            Op::Lstm(l) => vec![l.input],
            Op::Add { a, b, .. } => vec![*a, *b],
            Op::Concat { inputs } => inputs.clone(),
        }
    }

    /// Mutable references to the node ids this op reads, in [`Op::inputs`] order.
    pub fn inputs_mut(&mut self) -> Vec<&mut NodeId> {
        match self {
            Op::Input => vec![],
            Op::Splice { input, .. }
            | Op::Trim { input, .. }
            | Op::Affine { input, .. }
            | Op::ScaleShift { input, .. }
            | Op::LayerNorm { input, .. }
            | Op::LogSoftmax { input } => vec![input],
            Op::Lstm(l) => vec![&mut l.input],
            Op::Add { a, b, .. } => vec![a, b],
            Op::Concat { inputs } => inputs.iter_mut().collect(),
        }
    }

    /// A short name for messages and ONNX node names.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Splice { .. } => "splice",
            Op::Trim { .. } => "trim",
            Op::Affine { .. } => "affine",
            Op::ScaleShift { .. } => "scale_shift",
            Op::LayerNorm { .. } => "layer_norm",
            Op::Add { .. } => "add",
            Op::Lstm(_) => "lstm",
            Op::Concat { .. } => "concat",
            Op::LogSoftmax { .. } => "log_softmax",
        }
    }
}

/// A node: its op, and the channels and span of its output (computed when pushed).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Unique, e.g. `hidden.0.affine` (the model's variable prefix and the op).
    pub name: String,
    pub op: Op,
    pub dim: usize,
    pub span: Span,
}

/// A model as nodes in topological order (each reads only earlier ones); the last node is
/// the output.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    pub nodes: Vec<Node>,
}

impl Graph {
    /// A graph holding only its input, `input_dim` channels per frame.
    pub fn new(input_dim: usize) -> Self {
        Graph {
            nodes: vec![Node {
                name: "input".into(),
                op: Op::Input,
                dim: input_dim,
                span: Span::default(),
            }],
        }
    }

    pub fn input_dim(&self) -> usize {
        self.nodes[0].dim
    }

    /// The last node: the model's output.
    pub fn output(&self) -> &Node {
        self.nodes.last().expect("a graph has its input node")
    }

    /// Channels of the output (senones).
    pub fn output_dim(&self) -> usize {
        self.output().dim
    }

    /// Frames of input the output lacks on each side: the model's context. Fails when the
    /// output starts before or ends after its input.
    pub fn context(&self) -> Result<Context> {
        let s = self.output().span;
        if s.lead < 0 || s.lag < 0 {
            return Err(Error::config(format!(
                "graph output {} reaches outside its input (lead {}, lag {})",
                self.output().name,
                s.lead,
                s.lag
            )));
        }
        Ok(Context {
            left: s.lead as usize,
            right: s.lag as usize,
        })
    }

    /// True when every op can run frame by frame (no backward LSTM).
    pub fn is_streamable(&self) -> bool {
        !self
            .nodes
            .iter()
            .any(|n| matches!(&n.op, Op::Lstm(l) if l.reverse))
    }

    /// Parameters (weights, biases, scales and shifts; int8 scales not counted).
    pub fn params(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match &n.op {
                Op::Affine { weight, bias, .. } => {
                    let (r, c) = weight.shape();
                    r * c + bias.as_ref().map_or(0, Vec::len)
                }
                Op::ScaleShift { scale, shift, .. } => scale.len() + shift.len(),
                Op::LayerNorm { gamma, beta, .. } => gamma.len() + beta.len(),
                Op::Lstm(l) => {
                    let (r, c) = l.w_ih.shape();
                    r * c
                        + l.bias.len()
                        + l.w_hh.data.len()
                        + l.w_proj.as_ref().map_or(0, |p| p.data.len())
                }
                _ => 0,
            })
            .sum()
    }

    /// Bytes of the weights as stored (int8 matrices at one byte per value plus scales).
    pub fn weight_bytes(&self) -> usize {
        self.nodes
            .iter()
            .map(|n| match &n.op {
                Op::Affine { weight, bias, .. } => {
                    weight.bytes() + 4 * bias.as_ref().map_or(0, Vec::len)
                }
                Op::ScaleShift { scale, shift, .. } => 4 * (scale.len() + shift.len()),
                Op::LayerNorm { gamma, beta, .. } => 4 * (gamma.len() + beta.len()),
                Op::Lstm(l) => {
                    l.w_ih.bytes()
                        + 4 * (l.bias.len()
                            + l.w_hh.data.len()
                            + l.w_proj.as_ref().map_or(0, |p| p.data.len()))
                }
                _ => 0,
            })
            .sum()
    }

    /// Appends a node after checking its inputs' sizes; returns its id.
    /// The same graph reading `x * scale + shift` instead of its input (per channel): folds
    /// a global CMVN into the model, so it takes raw features. The new node comes right after
    /// the input and every later id moves up by one.
    pub fn prepend_scale_shift(
        &self,
        name: &str,
        scale: Vec<f32>,
        shift: Vec<f32>,
    ) -> Result<Graph> {
        let dim = self.input_dim();
        if scale.len() != dim || shift.len() != dim {
            return Err(Error::config(format!(
                "graph node {name}: {} scales and {} shifts for a {dim}-dimensional input",
                scale.len(),
                shift.len()
            )));
        }
        let mut g = Graph::new(dim);
        g.push(
            name,
            Op::ScaleShift {
                input: 0,
                scale,
                shift,
            },
        )?;
        for node in &self.nodes[1..] {
            let mut op = node.op.clone();
            for id in op.inputs_mut() {
                *id += 1;
            }
            g.push(node.name.clone(), op)?;
        }
        Ok(g)
    }

    pub fn push(&mut self, name: impl Into<String>, op: Op) -> Result<NodeId> {
        let name = name.into();
        let bad = |msg: String| Error::config(format!("graph node {name}: {msg}"));
        for i in op.inputs() {
            if i >= self.nodes.len() {
                return Err(bad(format!("reads node {i}, which does not exist yet")));
            }
        }
        let node = |i: NodeId| &self.nodes[i];
        let (dim, span) = match &op {
            Op::Input => return Err(bad("a graph has one input".into())),
            Op::Splice { input, offsets } => {
                if offsets.is_empty() || offsets.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(bad(format!(
                        "splice offsets {offsets:?} must be strictly increasing"
                    )));
                }
                let s = node(*input).span;
                let (min, max) = (offsets[0] as i64, *offsets.last().unwrap() as i64);
                (
                    offsets.len() * node(*input).dim,
                    Span {
                        lead: s.lead - min,
                        lag: s.lag + max,
                    },
                )
            }
            Op::Trim { input, left, right } => {
                let s = node(*input).span;
                (
                    node(*input).dim,
                    Span {
                        lead: s.lead + *left as i64,
                        lag: s.lag + *right as i64,
                    },
                )
            }
            Op::Affine {
                input,
                weight,
                bias,
                ..
            } => {
                let (rows, cols) = weight.shape();
                if cols != node(*input).dim {
                    return Err(bad(format!(
                        "weight is [{rows}, {cols}] but its input has {} channels",
                        node(*input).dim
                    )));
                }
                if let Some(b) = bias {
                    if b.len() != rows {
                        return Err(bad(format!("bias has {} values for {rows} rows", b.len())));
                    }
                }
                (rows, node(*input).span)
            }
            Op::ScaleShift {
                input,
                scale,
                shift,
            } => {
                let d = node(*input).dim;
                if scale.len() != d || shift.len() != d {
                    return Err(bad(format!(
                        "scale/shift have {}/{} values for {d} channels",
                        scale.len(),
                        shift.len()
                    )));
                }
                (d, node(*input).span)
            }
            Op::LayerNorm {
                input, gamma, beta, ..
            } => {
                let d = node(*input).dim;
                if gamma.len() != d || beta.len() != d {
                    return Err(bad(format!(
                        "gamma/beta have {}/{} values for {d} channels",
                        gamma.len(),
                        beta.len()
                    )));
                }
                (d, node(*input).span)
            }
            Op::Add { a, b, .. } => {
                if node(*a).dim != node(*b).dim {
                    return Err(bad(format!(
                        "adds {} channels to {}",
                        node(*b).dim,
                        node(*a).dim
                    )));
                }
                (node(*a).dim, shared_span(&[node(*a).span, node(*b).span]))
            }
            Op::Lstm(l) => {
                let h = l.hidden;
                let (r, c) = l.w_ih.shape();
                let rec = l.rec();
                if r != 4 * h || c != node(l.input).dim {
                    return Err(bad(format!(
                        "w_ih is [{r}, {c}], expected [{}, {}]",
                        4 * h,
                        node(l.input).dim
                    )));
                }
                if l.bias.len() != 4 * h || l.w_hh.rows != 4 * h || l.w_hh.cols != rec {
                    return Err(bad(format!(
                        "bias [{}] / w_hh [{}, {}] do not fit hidden {h}, rec {rec}",
                        l.bias.len(),
                        l.w_hh.rows,
                        l.w_hh.cols
                    )));
                }
                if let Some(p) = &l.w_proj {
                    if p.cols != h {
                        return Err(bad(format!(
                            "w_proj is [{}, {}], hidden {h}",
                            p.rows, p.cols
                        )));
                    }
                }
                (rec, node(l.input).span)
            }
            Op::Concat { inputs } => {
                if inputs.is_empty() {
                    return Err(bad("concat of nothing".into()));
                }
                let spans: Vec<Span> = inputs.iter().map(|&i| node(i).span).collect();
                (
                    inputs.iter().map(|&i| node(i).dim).sum(),
                    shared_span(&spans),
                )
            }
            Op::LogSoftmax { input } => (node(*input).dim, node(*input).span),
        };
        if self.nodes.iter().any(|n| n.name == name) {
            return Err(bad("a node of that name exists".into()));
        }
        self.nodes.push(Node {
            name,
            op,
            dim,
            span,
        });
        Ok(self.nodes.len() - 1)
    }
}

/// The frames all of `spans` cover.
fn shared_span(spans: &[Span]) -> Span {
    Span {
        lead: spans.iter().map(|s| s.lead).max().unwrap_or(0),
        lag: spans.iter().map(|s| s.lag).max().unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_follow_splices_trims_and_adds() {
        let mut g = Graph::new(2);
        let s = g
            .push(
                "s",
                Op::Splice {
                    input: 0,
                    offsets: vec![-2, 0, 1],
                },
            )
            .unwrap();
        assert_eq!(
            (g.nodes[s].dim, g.nodes[s].span),
            (6, Span { lead: 2, lag: 1 })
        );
        let fwd = g
            .push(
                "f",
                Op::Splice {
                    input: s,
                    offsets: vec![0, 3],
                },
            )
            .unwrap();
        assert_eq!(g.nodes[fwd].span, Span { lead: 2, lag: 4 });
        let t = g
            .push(
                "t",
                Op::Trim {
                    input: 0,
                    left: 1,
                    right: 0,
                },
            )
            .unwrap();
        let a = g.push("a", Op::Concat { inputs: vec![t, s] }).unwrap();
        assert_eq!(
            (g.nodes[a].dim, g.nodes[a].span),
            (8, Span { lead: 2, lag: 1 })
        );
        assert_eq!(g.context().unwrap(), Context { left: 2, right: 1 });
    }

    #[test]
    fn mismatched_sizes_are_refused_by_name() {
        let mut g = Graph::new(3);
        let err = g
            .push(
                "out",
                Op::Affine {
                    input: 0,
                    weight: Weights::F32(Matrix::zeros(2, 4)),
                    bias: None,
                    relu: false,
                },
            )
            .unwrap_err()
            .to_string();
        assert!(err.contains("out") && err.contains("3 channels"), "{err}");
    }

    #[test]
    fn int8_rows_round_trip_within_half_a_step() {
        let m = Matrix::from_vec(2, 3, vec![0.5, -1.0, 0.25, 0.0, 0.0, 0.0]);
        let q = QuantMatrix::quantize(&m);
        assert_eq!(q.data[..3], [64, -127, 32]);
        assert_eq!(q.scales[1], 1.0);
        let d = q.dequantize();
        for (a, b) in d.data.iter().zip(&m.data) {
            assert!((a - b).abs() <= q.scales[0] / 2.0 + 1e-7);
        }
    }
}
