//! The offline executor: a whole utterance through the graph, node by node, with the
//! kernels of [`super::kernels`]. Per-frame arithmetic is shared with the streaming
//! executor ([`super::stream`]), so the two give the same values bit for bit.

use super::graph::{Graph, LstmOp, Node, NodeId, Op, Weights};
use super::kernels::{quantize_frames, PackedF32, PackedI8};
use crate::error::{Error, Result};
use crate::features::Matrix;
use crate::models::Context;

/// Frames per kernel call offline (bounds the scratch memory, keeps weights hot in cache).
const BLOCK: usize = 64;

/// A weight matrix packed for its kernel.
#[derive(Debug, Clone)]
pub(crate) enum Packed {
    F32(PackedF32),
    I8(PackedI8),
}

impl Packed {
    fn new(w: &Weights) -> Self {
        match w {
            Weights::F32(m) => Packed::F32(PackedF32::new(m)),
            Weights::Int8(q) => Packed::I8(PackedI8::new(q)),
        }
    }
}

/// Reusable buffers of one executor (no allocation per frame once warm).
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    padded: Vec<f32>,
    xq: Vec<u8>,
    xs: Vec<(f32, i32)>,
    acc: Vec<i32>,
}

/// `out[f] = W x[f] + b` for `n` frames of `x` (rows `dim` apart), relu optional.
pub(crate) fn affine(
    w: &Packed,
    x: &[f32],
    n: usize,
    dim: usize,
    bias: Option<&[f32]>,
    relu: bool,
    s: &mut Scratch,
    out: &mut [f32],
) {
    match w {
        Packed::F32(p) => {
            if p.stride == dim {
                p.apply(x, n, bias, relu, out);
            } else {
                s.padded.clear();
                s.padded.resize(n * p.stride, 0.0);
                for f in 0..n {
                    s.padded[f * p.stride..f * p.stride + dim]
                        .copy_from_slice(&x[f * dim..(f + 1) * dim]);
                }
                p.apply(&s.padded, n, bias, relu, out);
            }
        }
        Packed::I8(p) => {
            quantize_frames(x, n, dim, p.stride, &mut s.xq, &mut s.xs);
            p.apply(&s.xq, &s.xs, n, bias, relu, &mut s.acc, out);
        }
    }
}

/// A node's weights, packed.
#[derive(Debug, Clone)]
pub(crate) enum NodeKernel {
    None,
    Affine(Packed),
    Lstm {
        ih: Packed,
        hh: PackedF32,
        proj: Option<PackedF32>,
    },
}

/// One LSTM step: `gates_in = W_ih x + b` (already computed) plus `W_hh h`, then the cell.
/// `h` and `c` are updated in place; `gates` is scratch of `4 hidden`.
pub(crate) fn lstm_step(
    op: &LstmOp,
    hh: &PackedF32,
    proj: Option<&PackedF32>,
    gates_in: &[f32],
    h: &mut [f32],
    c: &mut [f32],
    gates: &mut Vec<f32>,
    cell_out: &mut Vec<f32>,
) {
    let hd = op.hidden;
    gates.resize(4 * hd, 0.0);
    let rec = hh.cols;
    let mut hpad = vec![0f32; hh.stride];
    hpad[..rec].copy_from_slice(h);
    hh.apply(&hpad, 1, None, false, gates);
    for (g, gi) in gates.iter_mut().zip(gates_in) {
        *g += gi;
    }
    cell_out.resize(hd, 0.0);
    for j in 0..hd {
        let i = sigmoid(gates[j]);
        let f = sigmoid(gates[hd + j]);
        let o = sigmoid(gates[2 * hd + j]);
        let g = gates[3 * hd + j].tanh();
        c[j] = f * c[j] + i * g;
        cell_out[j] = o * c[j].tanh();
    }
    match proj {
        Some(p) => {
            let mut cpad = vec![0f32; p.stride];
            cpad[..hd].copy_from_slice(cell_out);
            p.apply(&cpad, 1, None, false, h);
        }
        None => h.copy_from_slice(cell_out),
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `sum_i exp(x_i - max)` for `max >= x_i`: 16 lanes of [`exp_nonpositive`] that the
/// compiler vectorises (libm's scalar `expf` was a tenth of a 2000-senone student's time).
fn sum_exp(x: &[f32], max: f32) -> f32 {
    let mut acc = [0f32; 16];
    let mut chunks = x.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += exp_nonpositive(v - max);
        }
    }
    for (a, &v) in acc.iter_mut().zip(chunks.remainder()) {
        *a += exp_nonpositive(v - max);
    }
    acc.iter().sum()
}

/// `exp(x)` for `x <= 0` to about 1 ulp (Cephes' expf: Cody-Waite reduction by ln 2, a
/// degree-6 polynomial, the exponent set through the bits); `x < -87.3` gives ~1e-38, not 0.
#[inline(always)]
fn exp_nonpositive(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.max(-87.3);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2)
        * r
        + 1.666_666_5e-1)
        * r
        + 5.000_000_1e-1)
        * r
        * r
        + r
        + 1.0;
    p * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// Per-frame ops shared by both executors. `frame(i, t)` returns node `i`'s output at time
/// `t` (which the caller guarantees exists).
pub(crate) fn frame_op<'a>(
    node: &Node,
    nodes: &[Node],
    frame: impl Fn(NodeId, i64) -> &'a [f32],
    t: i64,
    out: &mut [f32],
) {
    match &node.op {
        Op::Splice { input, offsets } => {
            let d = nodes[*input].dim;
            for (k, &o) in offsets.iter().enumerate() {
                out[k * d..(k + 1) * d].copy_from_slice(frame(*input, t + o as i64));
            }
        }
        Op::Trim { input, .. } => out.copy_from_slice(frame(*input, t)),
        Op::ScaleShift {
            input,
            scale,
            shift,
        } => {
            for (((o, &x), s), b) in out.iter_mut().zip(frame(*input, t)).zip(scale).zip(shift) {
                *o = x * s + b;
            }
        }
        Op::LayerNorm {
            input,
            gamma,
            beta,
            eps,
        } => {
            let x = frame(*input, t);
            let n = x.len() as f32;
            let mean = x.iter().sum::<f32>() / n;
            let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
            let inv = 1.0 / (var + eps).sqrt();
            for (((o, &v), g), b) in out.iter_mut().zip(x).zip(gamma).zip(beta) {
                *o = (v - mean) * inv * g + b;
            }
        }
        Op::Add { a, b, scale } => {
            for ((o, &x), &y) in out.iter_mut().zip(frame(*a, t)).zip(frame(*b, t)) {
                *o = x + y * scale;
            }
        }
        Op::Concat { inputs } => {
            let mut at = 0;
            for &i in inputs {
                let x = frame(i, t);
                out[at..at + x.len()].copy_from_slice(x);
                at += x.len();
            }
        }
        Op::LogSoftmax { input } => {
            let x = frame(*input, t);
            let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let lse = max + sum_exp(x, max).ln();
            for (o, &v) in out.iter_mut().zip(x) {
                *o = v - lse;
            }
        }
        Op::Input | Op::Affine { .. } | Op::Lstm(_) => {
            unreachable!("{} is not a per-frame op", node.op.kind())
        }
    }
}

/// A graph ready to run: weights packed for this CPU's kernels.
#[derive(Debug, Clone)]
pub struct Runtime {
    graph: Graph,
    context: Context,
    pub(crate) kernels: Vec<NodeKernel>,
}

impl Runtime {
    /// Packs the weights of `graph` (fp32 or int8, as each op holds them).
    pub fn new(graph: Graph) -> Result<Self> {
        let context = graph.context()?;
        let kernels = graph
            .nodes
            .iter()
            .map(|n| match &n.op {
                Op::Affine { weight, .. } => NodeKernel::Affine(Packed::new(weight)),
                Op::Lstm(l) => NodeKernel::Lstm {
                    ih: Packed::new(&l.w_ih),
                    hh: PackedF32::new(&l.w_hh),
                    proj: l.w_proj.as_ref().map(PackedF32::new),
                },
                _ => NodeKernel::None,
            })
            .collect();
        Ok(Runtime {
            graph,
            context,
            kernels,
        })
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// Frames of context the model reads on each side of those it labels.
    pub fn context(&self) -> Context {
        self.context
    }

    /// Features per input frame.
    pub fn input_dim(&self) -> usize {
        self.graph.input_dim()
    }

    /// Log-posteriors per output frame (senones).
    pub fn output_dim(&self) -> usize {
        self.graph.output_dim()
    }

    /// `[T_in, input_dim]` features, context included -> `[T_in - left - right, senones]`
    /// log-posteriors.
    pub fn forward(&self, input: &Matrix) -> Result<Matrix> {
        let nodes = &self.graph.nodes;
        if input.cols != self.input_dim() {
            return Err(Error::config(format!(
                "runtime input has {} features per frame, the model reads {}",
                input.cols,
                self.input_dim()
            )));
        }
        let t_in = input.rows as i64;
        if t_in <= self.context.total() as i64 {
            return Err(Error::config(format!(
                "{} input frames, the model needs more than {} ({} left + {} right context)",
                t_in,
                self.context.total(),
                self.context.left,
                self.context.right
            )));
        }
        let mut values: Vec<Matrix> = Vec::with_capacity(nodes.len());
        let mut scratch = Scratch::default();
        for (id, node) in nodes.iter().enumerate() {
            let frames = t_in - node.span.lead - node.span.lag;
            if frames <= 0 {
                return Err(Error::config(format!(
                    "{t_in} input frames leave none at node {}",
                    node.name
                )));
            }
            let n = frames as usize;
            let mut out = Matrix::zeros(n, node.dim);
            match (&node.op, &self.kernels[id]) {
                (Op::Input, _) => out = input.clone(),
                (
                    Op::Affine {
                        input, bias, relu, ..
                    },
                    NodeKernel::Affine(w),
                ) => {
                    let x = &values[*input];
                    let skip = (node.span.lead - nodes[*input].span.lead) as usize;
                    let d = x.cols;
                    for b0 in (0..n).step_by(BLOCK) {
                        let m = BLOCK.min(n - b0);
                        affine(
                            w,
                            &x.data[(skip + b0) * d..(skip + b0 + m) * d],
                            m,
                            d,
                            bias.as_deref(),
                            *relu,
                            &mut scratch,
                            &mut out.data[b0 * node.dim..(b0 + m) * node.dim],
                        );
                    }
                }
                (Op::Lstm(op), NodeKernel::Lstm { ih, hh, proj }) => {
                    let x = &values[op.input];
                    let d = x.cols;
                    let hd = op.hidden;
                    let mut gates_in = vec![0f32; n * 4 * hd];
                    for b0 in (0..n).step_by(BLOCK) {
                        let m = BLOCK.min(n - b0);
                        affine(
                            ih,
                            &x.data[b0 * d..(b0 + m) * d],
                            m,
                            d,
                            Some(&op.bias),
                            false,
                            &mut scratch,
                            &mut gates_in[b0 * 4 * hd..(b0 + m) * 4 * hd],
                        );
                    }
                    let (mut h, mut c) = (vec![0f32; op.rec()], vec![0f32; hd]);
                    let (mut gates, mut cell) = (Vec::new(), Vec::new());
                    for step in 0..n {
                        let t = if op.reverse { n - 1 - step } else { step };
                        lstm_step(
                            op,
                            hh,
                            proj.as_ref(),
                            &gates_in[t * 4 * hd..(t + 1) * 4 * hd],
                            &mut h,
                            &mut c,
                            &mut gates,
                            &mut cell,
                        );
                        out.data[t * op.rec()..(t + 1) * op.rec()].copy_from_slice(&h);
                    }
                }
                (op, _) => {
                    let _ = op;
                    let frame = |i: NodeId, t: i64| -> &[f32] {
                        values[i].row((t - nodes[i].span.lead) as usize)
                    };
                    for j in 0..n {
                        let t = node.span.lead + j as i64;
                        let row = &mut out.data[j * node.dim..(j + 1) * node.dim];
                        frame_op(node, nodes, frame, t, row);
                    }
                }
            }
            values.push(out);
        }
        Ok(values.pop().expect("graph has nodes"))
    }

    /// One utterance's CMVN-normalised features `[T, input_dim]` -> log-posteriors
    /// `[T, senones]`, the edges padded by repeating the first and last frame (as in training).
    pub fn forward_utterance(&self, feats: &Matrix) -> Result<Matrix> {
        if feats.rows == 0 {
            return Ok(Matrix::zeros(0, self.output_dim()));
        }
        let c = self.context;
        let padded = crate::train::trained::pad_edges(feats, c.left, c.right);
        self.forward(&Matrix::from_vec(
            feats.rows + c.total(),
            feats.cols,
            padded,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{exp_nonpositive, sum_exp};

    #[test]
    fn fast_exp_is_within_two_ulp_of_libm() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -(i as f32) * 87.0 / 200_000.0;
            let (got, want) = (exp_nonpositive(x), x.exp());
            worst = worst.max((got - want).abs() / want);
        }
        assert!(worst < 2.5e-7, "relative error {worst}");
        assert!(exp_nonpositive(-1000.0) < 1e-37 && exp_nonpositive(f32::NEG_INFINITY) < 1e-37);
        let x: Vec<f32> = (0..37).map(|i| -(i as f32) * 0.3).collect();
        let want: f32 = x.iter().map(|v| v.exp()).sum();
        assert!((sum_exp(&x, 0.0) - want).abs() < 1e-6 * want);
    }
}
