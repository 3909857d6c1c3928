//! Post-training int8 quantisation of a graph: per-channel symmetric int8 weights for every
//! matrix product over the input (affine layers and the LSTMs' input weights); activations
//! are quantised per frame at run time (onnxruntime's dynamic quantisation), so no
//! calibration data is needed. Recurrent and projection weights, norms and biases stay fp32:
//! they are small, and the recurrence would accumulate rounding error.

use super::graph::{Graph, Op, QuantMatrix, Weights};

/// `graph` with its affine weights and LSTM input weights in int8.
pub fn quantize(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    for node in &mut g.nodes {
        let w = match &mut node.op {
            Op::Affine { weight, .. } => weight,
            Op::Lstm(l) => &mut l.w_ih,
            _ => continue,
        };
        if let Weights::F32(m) = w {
            *w = Weights::Int8(QuantMatrix::quantize(m));
        }
    }
    g
}

/// `graph` with every int8 weight back in fp32 (the values the int8 model computes with).
pub fn dequantize(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    for node in &mut g.nodes {
        let w = match &mut node.op {
            Op::Affine { weight, .. } => weight,
            Op::Lstm(l) => &mut l.w_ih,
            _ => continue,
        };
        if let Weights::Int8(q) = w {
            *w = Weights::F32(q.dequantize());
        }
    }
    g
}
