//! Runtime [`Graph`] -> ONNX `ModelProto`.
//!
//! Each node's value is a tensor `[N, frames, dim]` whose frames are the node's [`Span`] on
//! the time axis (axis 1) of the input `[N, T, input_dim]`. The ops become:
//!
//! | runtime op    | ONNX                                                                   |
//! |---------------|------------------------------------------------------------------------|
//! | Splice        | one `Slice` (axis 1) per offset, `Concat` (axis 2)                     |
//! | Trim          | `Slice` (axis 1)                                                       |
//! | Affine fp32   | `MatMul` by `W^T [in, out]`, `Add` bias, `Relu`                        |
//! | Affine int8   | see [`Int8Form`]                                                       |
//! | ScaleShift    | `Mul`, `Add`                                                           |
//! | LayerNorm     | `LayerNormalization` (axis -1)                                         |
//! | Add           | `Slice` both to the shared frames, `Mul` by scale, `Add`               |
//! | Lstm          | `Transpose` to `[T, N, F]`, `LSTM`, `Transpose` back, `Reshape`        |
//! | Concat        | `Slice` each to the shared frames, `Concat` (axis 2)                   |
//! | LogSoftmax    | `x - m - Log(ReduceSum(Exp(x - m)))`, `m = ReduceMax(x)` over the last axis (spelt out: some runtimes' `LogSoftmax` underflows to -inf below about -87) |
//!
//! Slices are written relative to each end of the time axis (`end` negative, or `i64::MAX`
//! for "to the end"), so one model serves any `T`.
//!
//! A forward and a reverse LSTM reading the same node (a BLSTM layer) become one
//! `direction = "bidirectional"` LSTM; a lone reverse LSTM is written with
//! `direction = "reverse"`. Gate rows are reordered from the runtime's `[i, f, o, g]` to
//! ONNX's `[i, o, f, c]`; `B = [W_b = bias, R_b = 0]`.

use std::collections::HashMap;
use std::path::Path;

use prost::Message;

use super::proto::tensor_shape_proto::{dimension, Dimension};
use super::proto::{
    attribute_type, data_type, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};
use crate::error::{Error, Result};
use crate::runtime::graph::{Graph, LstmOp, NodeId, Op, QuantMatrix, Span, Weights};

/// The default-domain operator set the models use.
pub const OPSET: i64 = 17;
/// IR version that goes with opset 17.
const IR_VERSION: i64 = 8;
/// Graph input: features `[N, T, input_dim]`.
pub const INPUT_NAME: &str = "features";
/// Graph output: log-posteriors `[N, T - left - right, senones]`.
pub const OUTPUT_NAME: &str = "log_posteriors";

/// How an int8 affine (`Weights::Int8`) is written. The weights are stored as int8 in every
/// form (`W^T [in, out]`, per-output-channel scales).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Int8Form {
    /// The runtime's arithmetic: activations quantised to u8 per frame (the scale and zero
    /// point of `DynamicQuantizeLinear`, computed over each frame's channels with
    /// `ReduceMin`/`ReduceMax`/`Round`/`Clip`), `MatMulInteger` u8 x int8 -> int32, the zero
    /// point's share (`zp * column sums of W`) subtracted, then `Cast`, `Mul` by
    /// `x_scale * w_scale`, `Add` bias, `Relu`. Matches `Runtime::forward` of the int8 graph
    /// up to float rounding, and each utterance of a batch is independent of the others.
    #[default]
    PerFrame,
    /// onnxruntime's `quantize_dynamic` pattern: `DynamicQuantizeLinear` (one scale and zero
    /// point for the whole tensor, so over all frames and utterances of a batch),
    /// `MatMulInteger` with that zero point, `Cast`, `Mul`, `Add`, `Relu`. Fewer ops, but
    /// coarser than the runtime on frames with a small range.
    DynamicQuantizeLinear,
    /// Weight-only: `DequantizeLinear` (per-axis, axis 1) of the int8 weights, then the fp32
    /// `MatMul`. Float activations; for runtimes without integer matmul kernels.
    Dequantize,
}

/// Options of the writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OnnxOptions {
    pub int8: Int8Form,
}

/// The ONNX model (serialised `ModelProto`) of `graph`, `meta` stored as `metadata_props`.
/// Int8 affines take the default [`Int8Form::PerFrame`]. Fails on an LSTM with a projection.
pub fn to_onnx(graph: &Graph, meta: &[(String, String)]) -> Result<Vec<u8>> {
    to_onnx_with(graph, meta, &OnnxOptions::default())
}

/// [`to_onnx`] with explicit options.
pub fn to_onnx_with(
    graph: &Graph,
    meta: &[(String, String)],
    opts: &OnnxOptions,
) -> Result<Vec<u8>> {
    Ok(model_proto(graph, meta, opts)?.encode_to_vec())
}

/// Writes [`to_onnx`] of `graph` to `path` (atomically: no half-written model is ever seen).
pub fn write_onnx(path: impl AsRef<Path>, graph: &Graph, meta: &[(String, String)]) -> Result<()> {
    write_onnx_with(path, graph, meta, &OnnxOptions::default())
}

/// [`write_onnx`] with explicit options.
pub fn write_onnx_with(
    path: impl AsRef<Path>,
    graph: &Graph,
    meta: &[(String, String)],
    opts: &OnnxOptions,
) -> Result<()> {
    let bytes = to_onnx_with(graph, meta, opts)?;
    crate::atomic::write_atomic(path, |f| std::io::Write::write_all(f, &bytes))
}

fn model_proto(graph: &Graph, meta: &[(String, String)], opts: &OnnxOptions) -> Result<ModelProto> {
    let context = graph.context()?;
    for node in &graph.nodes {
        if let Op::Lstm(l) = &node.op {
            if l.w_proj.is_some() {
                return Err(Error::config(format!(
                    "ONNX export: node {} is an LSTM with a projection (LSTMP), which the ONNX \
                     LSTM op cannot express",
                    node.name
                )));
            }
        }
    }
    let mut w = Writer {
        graph,
        opts: *opts,
        nodes: Vec::new(),
        inits: Vec::new(),
        i64_consts: HashMap::new(),
        values: vec![None; graph.nodes.len()],
        quantised: HashMap::new(),
    };
    w.values[0] = Some(INPUT_NAME.to_string());
    for id in 1..graph.nodes.len() {
        if w.values[id].is_none() {
            w.node(id)?;
        }
    }
    let last = w.value(graph.nodes.len() - 1);
    w.op("Identity", OUTPUT_NAME, &[&last], &[OUTPUT_NAME], vec![]);

    let total = context.total();
    let out_frames = if total == 0 {
        "T".to_string()
    } else {
        format!("T - {total}")
    };
    let g = GraphProto {
        node: w.nodes,
        name: "amdistill".into(),
        initializer: w.inits,
        input: vec![value_info(
            INPUT_NAME,
            &[
                Dim::Param("N"),
                Dim::Param("T"),
                Dim::Value(graph.input_dim()),
            ],
        )],
        output: vec![value_info(
            OUTPUT_NAME,
            &[
                Dim::Param("N"),
                Dim::Param(&out_frames),
                Dim::Value(graph.output_dim()),
            ],
        )],
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "amdistill".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(g),
        metadata_props: meta
            .iter()
            .map(|(k, v)| StringStringEntryProto {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        ..Default::default()
    })
}

enum Dim<'a> {
    Value(usize),
    Param(&'a str),
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Value(v) => dimension::Value::DimValue(*v as i64),
                Dim::Param(p) => dimension::Value::DimParam(p.to_string()),
            }),
            denotation: String::new(),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            })),
            denotation: String::new(),
        }),
        doc_string: String::new(),
    }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INT,
        i,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::INTS,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::FLOAT,
        f,
        ..Default::default()
    }
}

fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attribute_type::STRING,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A tensor initializer, values little-endian in `raw_data`.
fn tensor(name: &str, dt: i32, dims: &[usize], raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: dt,
        name: name.into(),
        raw_data: raw,
        ..Default::default()
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Rows of an `[4 hidden, cols]` gate matrix (or values of a `[4 hidden]` vector, `cols` 1)
/// from the runtime's `[i, f, o, g]` to ONNX's `[i, o, f, c]`.
fn onnx_gate_order<T: Copy>(v: &[T], hidden: usize, cols: usize) -> Vec<T> {
    let block = |k: usize| &v[k * hidden * cols..(k + 1) * hidden * cols];
    [0, 2, 1, 3]
        .iter()
        .flat_map(|&k| block(k).iter().copied())
        .collect()
}

/// `m^T` of a row-major `[rows, cols]`: `[cols, rows]`.
fn transpose<T: Copy + Default>(data: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

struct Writer<'g> {
    graph: &'g Graph,
    opts: OnnxOptions,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// int64 constants (slice bounds, axes, shapes) by value, each written once.
    i64_consts: HashMap<Vec<i64>, String>,
    /// The ONNX value of each runtime node once written.
    values: Vec<Option<String>>,
    /// Per-frame quantisation `(q u8, scale, zero point f32)` of a value, shared by the int8
    /// affines that read it.
    quantised: HashMap<String, (String, String, String)>,
}

impl Writer<'_> {
    fn value(&self, id: NodeId) -> String {
        self.values[id]
            .clone()
            .expect("nodes are written in topological order")
    }

    /// Appends a node named `name` with the given outputs; returns the outputs.
    fn op(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        outputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> Vec<String> {
        let outputs: Vec<String> = outputs.iter().map(|s| s.to_string()).collect();
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.clone(),
            name: name.into(),
            op_type: op_type.into(),
            attribute,
            ..Default::default()
        });
        outputs
    }

    /// One-output node whose output is named like the node.
    fn op1(
        &mut self,
        op_type: &str,
        name: &str,
        inputs: &[&str],
        attribute: Vec<AttributeProto>,
    ) -> String {
        self.op(op_type, name, inputs, &[name], attribute).remove(0)
    }

    fn init(&mut self, t: TensorProto) -> String {
        let name = t.name.clone();
        self.inits.push(t);
        name
    }

    fn init_f32(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        self.init(tensor(name, data_type::FLOAT, dims, f32_bytes(v)))
    }

    fn init_i8(&mut self, name: &str, dims: &[usize], v: &[i8]) -> String {
        let raw = v.iter().map(|&x| x as u8).collect();
        self.init(tensor(name, data_type::INT8, dims, raw))
    }

    fn init_i32(&mut self, name: &str, dims: &[usize], v: &[i32]) -> String {
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(tensor(name, data_type::INT32, dims, raw))
    }

    /// A 1-D int64 constant, shared by every node that needs the same values.
    fn i64s(&mut self, v: &[i64]) -> String {
        if let Some(n) = self.i64_consts.get(v) {
            return n.clone();
        }
        let name = format!("const.i64.{}", self.i64_consts.len());
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inits
            .push(tensor(&name, data_type::INT64, &[v.len()], raw));
        self.i64_consts.insert(v.to_vec(), name.clone());
        name
    }

    /// A scalar float constant.
    fn scalar(&mut self, name: &str, v: f32) -> String {
        self.init_f32(name, &[], &[v])
    }

    /// Frames `[start, L - trim_end)` of `x` on the time axis (`L` its length).
    fn slice_time(&mut self, name: &str, x: &str, start: i64, trim_end: i64) -> String {
        debug_assert!(start >= 0 && trim_end >= 0);
        let starts = self.i64s(&[start]);
        let ends = self.i64s(&[if trim_end == 0 { i64::MAX } else { -trim_end }]);
        let axes = self.i64s(&[1]);
        self.op1("Slice", name, &[x, &starts, &ends, &axes], vec![])
    }

    /// Node `id`'s value restricted to the frames of `span` (a sub-span of its own).
    fn value_on(&mut self, id: NodeId, span: Span, name: &str) -> String {
        let s = self.graph.nodes[id].span;
        let x = self.value(id);
        if s == span {
            return x;
        }
        self.slice_time(name, &x, span.lead - s.lead, span.lag - s.lag)
    }

    fn node(&mut self, id: NodeId) -> Result<()> {
        let graph = self.graph;
        let node = &graph.nodes[id];
        let name = node.name.as_str();
        let out = match &node.op {
            Op::Input => unreachable!("node 0 is the input"),
            Op::Splice { input, offsets } => {
                let s = graph.nodes[*input].span;
                let x = self.value(*input);
                let parts: Vec<String> = offsets
                    .iter()
                    .map(|&o| {
                        let o = o as i64;
                        let start = node.span.lead + o - s.lead;
                        let trim_end = node.span.lag - s.lag - o;
                        self.slice_time(&format!("{name}/t{o:+}"), &x, start, trim_end)
                    })
                    .collect();
                if parts.len() == 1 {
                    parts.into_iter().next().unwrap()
                } else {
                    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                    self.op1("Concat", name, &refs, vec![attr_int("axis", 2)])
                }
            }
            Op::Trim { input, .. } => self.value_on(*input, node.span, name),
            Op::Affine {
                input,
                weight,
                bias,
                relu,
            } => {
                let x = self.value_on(*input, node.span, &format!("{name}/in"));
                self.affine(name, &x, weight, bias.as_deref(), *relu)
            }
            Op::ScaleShift {
                input,
                scale,
                shift,
            } => {
                let x = self.value(*input);
                let d = node.dim;
                let sc = self.init_f32(&format!("{name}.scale"), &[d], scale);
                let sh = self.init_f32(&format!("{name}.shift"), &[d], shift);
                let m = self.op1("Mul", &format!("{name}/mul"), &[&x, &sc], vec![]);
                self.op1("Add", name, &[&m, &sh], vec![])
            }
            Op::LayerNorm {
                input,
                gamma,
                beta,
                eps,
            } => {
                let x = self.value(*input);
                let d = node.dim;
                let g = self.init_f32(&format!("{name}.gamma"), &[d], gamma);
                let b = self.init_f32(&format!("{name}.beta"), &[d], beta);
                self.op1(
                    "LayerNormalization",
                    name,
                    &[&x, &g, &b],
                    vec![attr_int("axis", -1), attr_float("epsilon", *eps)],
                )
            }
            Op::Add { a, b, scale } => {
                let xa = self.value_on(*a, node.span, &format!("{name}/a"));
                let mut xb = self.value_on(*b, node.span, &format!("{name}/b"));
                if *scale != 1.0 {
                    let s = self.scalar(&format!("{name}.scale"), *scale);
                    xb = self.op1("Mul", &format!("{name}/scaled"), &[&xb, &s], vec![]);
                }
                self.op1("Add", name, &[&xa, &xb], vec![])
            }
            Op::Concat { inputs } => {
                let parts: Vec<String> = inputs
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| self.value_on(i, node.span, &format!("{name}/in{k}")))
                    .collect();
                if parts.len() == 1 {
                    parts.into_iter().next().unwrap()
                } else {
                    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
                    self.op1("Concat", name, &refs, vec![attr_int("axis", 2)])
                }
            }
            Op::LogSoftmax { input } => {
                // Spelt out rather than `LogSoftmax`: tract computes that as log(softmax),
                // which is -inf for log-probabilities below about -87 (confident models have them).
                let x = self.value(*input);
                let keep = attr_int("keepdims", 1);
                let m = self.op1(
                    "ReduceMax",
                    &format!("{name}/max"),
                    &[&x],
                    vec![attr_ints("axes", &[-1]), keep.clone()],
                );
                let y = self.op1("Sub", &format!("{name}/shifted"), &[&x, &m], vec![]);
                let e = self.op1("Exp", &format!("{name}/exp"), &[&y], vec![]);
                let axes = self.i64s(&[-1]);
                let z = self.op1(
                    "ReduceSum",
                    &format!("{name}/sum"),
                    &[&e, &axes],
                    vec![keep],
                );
                let lz = self.op1("Log", &format!("{name}/logsum"), &[&z], vec![]);
                self.op1("Sub", name, &[&y, &lz], vec![])
            }
            Op::Lstm(l) => {
                match self.partner(id, l) {
                    Some(p) => self.blstm(id, p)?,
                    None => {
                        let y = self.lstm(&[id])?;
                        self.values[id] = Some(y.into_iter().next().unwrap());
                    }
                }
                return Ok(());
            }
        };
        self.values[id] = Some(out);
        Ok(())
    }

    /// `[N, L, in] -> [N, L, out]`: `W x + b`, relu optional.
    fn affine(
        &mut self,
        name: &str,
        x: &str,
        weight: &Weights,
        bias: Option<&[f32]>,
        relu: bool,
    ) -> String {
        let (rows, cols) = weight.shape();
        let mut y = match weight {
            Weights::F32(m) => {
                let wt = self.init_f32(
                    &format!("{name}.weight_t"),
                    &[cols, rows],
                    &transpose(&m.data, rows, cols),
                );
                self.op1("MatMul", &format!("{name}/matmul"), &[x, &wt], vec![])
            }
            Weights::Int8(q) => self.affine_int8(name, x, q),
        };
        if let Some(b) = bias {
            let bn = self.init_f32(&format!("{name}.bias"), &[rows], b);
            y = self.op1("Add", &format!("{name}/bias"), &[&y, &bn], vec![]);
        }
        if relu {
            y = self.op1("Relu", &format!("{name}/relu"), &[&y], vec![]);
        }
        y
    }

    /// `W x` for int8 `W` in the chosen [`Int8Form`] (bias and relu added by the caller).
    fn affine_int8(&mut self, name: &str, x: &str, q: &QuantMatrix) -> String {
        let (rows, cols) = (q.rows, q.cols);
        let wt = self.init_i8(
            &format!("{name}.weight_t_int8"),
            &[cols, rows],
            &transpose(&q.data, rows, cols),
        );
        let ws = self.init_f32(&format!("{name}.weight_scale"), &[rows], &q.scales);
        match self.opts.int8 {
            Int8Form::PerFrame => {
                let (xq, xs, xzp) = self.quantise_per_frame(x);
                let acc = self.op1(
                    "MatMulInteger",
                    &format!("{name}/matmul_int"),
                    &[&xq, &wt],
                    vec![],
                );
                // MatMulInteger has no per-frame zero point in tract or onnxruntime: subtract
                // zp * sum_k W[k][r] (exact in int32) as the runtime's kernel does.
                let sums: Vec<i32> = (0..rows)
                    .map(|r| {
                        q.data[r * cols..(r + 1) * cols]
                            .iter()
                            .map(|&v| v as i32)
                            .sum()
                    })
                    .collect();
                let sums = self.init_i32(&format!("{name}.weight_col_sums"), &[rows], &sums);
                let zpi = self.op1(
                    "Cast",
                    &format!("{name}/zp_int"),
                    &[&xzp],
                    vec![attr_int("to", data_type::INT32 as i64)],
                );
                let corr = self.op1("Mul", &format!("{name}/zp_share"), &[&zpi, &sums], vec![]);
                let acc = self.op1("Sub", &format!("{name}/acc"), &[&acc, &corr], vec![]);
                let accf = self.op1(
                    "Cast",
                    &format!("{name}/acc_f32"),
                    &[&acc],
                    vec![attr_int("to", data_type::FLOAT as i64)],
                );
                let s = self.op1("Mul", &format!("{name}/scale"), &[&xs, &ws], vec![]);
                self.op1("Mul", &format!("{name}/dequant"), &[&accf, &s], vec![])
            }
            Int8Form::DynamicQuantizeLinear => {
                let (xq, xs, xzp) = (
                    format!("{name}/x_q"),
                    format!("{name}/x_scale"),
                    format!("{name}/x_zero_point"),
                );
                self.op(
                    "DynamicQuantizeLinear",
                    &format!("{name}/quantise"),
                    &[x],
                    &[&xq, &xs, &xzp],
                    vec![],
                );
                let acc = self.op1(
                    "MatMulInteger",
                    &format!("{name}/matmul_int"),
                    &[&xq, &wt, &xzp],
                    vec![],
                );
                let accf = self.op1(
                    "Cast",
                    &format!("{name}/acc_f32"),
                    &[&acc],
                    vec![attr_int("to", data_type::FLOAT as i64)],
                );
                let s = self.op1("Mul", &format!("{name}/scale"), &[&xs, &ws], vec![]);
                self.op1("Mul", &format!("{name}/dequant"), &[&accf, &s], vec![])
            }
            Int8Form::Dequantize => {
                let zp = self.init_i8(
                    &format!("{name}.weight_zero_point"),
                    &[rows],
                    &vec![0; rows],
                );
                let w = self.op1(
                    "DequantizeLinear",
                    &format!("{name}/weight_t"),
                    &[&wt, &ws, &zp],
                    vec![attr_int("axis", 1)],
                );
                self.op1("MatMul", &format!("{name}/matmul"), &[x, &w], vec![])
            }
        }
    }

    /// `x [N, L, d]` quantised to u8 per frame as `kernels::quantize_frames` does:
    /// `scale = (max(x, 0) - min(x, 0)) / 255` (1 where that is 0),
    /// `zp = clamp(round(-min / scale), 0, 255)`, `q = clamp(round(x / scale) + zp, 0, 255)`,
    /// rounding half to even. Returns `(q u8 [N, L, d], scale [N, L, 1], zp f32 [N, L, 1])`.
    fn quantise_per_frame(&mut self, x: &str) -> (String, String, String) {
        if let Some(v) = self.quantised.get(x) {
            return v.clone();
        }
        let p = format!("{x}/quant");
        let keep = || vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)];
        let zero = self.scalar(&format!("{p}.zero"), 0.0);
        let one = self.scalar(&format!("{p}.one"), 1.0);
        let top = self.scalar(&format!("{p}.255"), 255.0);
        let mn = self.op1("ReduceMin", &format!("{p}/min"), &[x], keep());
        let mn = self.op1("Min", &format!("{p}/min0"), &[&mn, &zero], vec![]);
        let mx = self.op1("ReduceMax", &format!("{p}/max"), &[x], keep());
        let mx = self.op1("Max", &format!("{p}/max0"), &[&mx, &zero], vec![]);
        let range = self.op1("Sub", &format!("{p}/range"), &[&mx, &mn], vec![]);
        let s = self.op1("Div", &format!("{p}/scale_raw"), &[&range, &top], vec![]);
        let is0 = self.op1("Equal", &format!("{p}/scale_is_0"), &[&s, &zero], vec![]);
        let s = self.op1("Where", &format!("{p}/scale"), &[&is0, &one, &s], vec![]);
        // Times the reciprocal, as the runtime rounds (`kernels::quantize_frames`).
        let inv = self.op1("Reciprocal", &format!("{p}/inv_scale"), &[&s], vec![]);
        let neg = self.op1("Neg", &format!("{p}/neg_min"), &[&mn], vec![]);
        let zp = self.op1("Mul", &format!("{p}/zp_raw"), &[&neg, &inv], vec![]);
        let zp = self.op1("Round", &format!("{p}/zp_round"), &[&zp], vec![]);
        let zp = self.op1("Clip", &format!("{p}/zp"), &[&zp, &zero, &top], vec![]);
        let v = self.op1("Mul", &format!("{p}/div"), &[x, &inv], vec![]);
        let v = self.op1("Round", &format!("{p}/round"), &[&v], vec![]);
        let v = self.op1("Add", &format!("{p}/shift"), &[&v, &zp], vec![]);
        let v = self.op1("Clip", &format!("{p}/clip"), &[&v, &zero, &top], vec![]);
        let q = self.op1(
            "Cast",
            &format!("{p}/q"),
            &[&v],
            vec![attr_int("to", data_type::UINT8 as i64)],
        );
        let out = (q, s, zp);
        self.quantised.insert(x.to_string(), out.clone());
        out
    }

    /// The reverse (or forward) LSTM that makes a BLSTM layer with `id`: same input, same
    /// hidden size and weight kind, the other direction.
    fn partner(&self, id: NodeId, l: &LstmOp) -> Option<NodeId> {
        self.graph.nodes.iter().enumerate().find_map(|(j, n)| {
            let fits = j != id
                && matches!(&n.op, Op::Lstm(m) if m.input == l.input
                    && m.reverse != l.reverse
                    && m.hidden == l.hidden
                    && m.w_proj.is_none()
                    && std::mem::discriminant(&m.w_ih) == std::mem::discriminant(&l.w_ih))
                && self.values[j].is_none();
            fits.then_some(j)
        })
    }

    /// Both LSTMs of a BLSTM layer as one bidirectional ONNX LSTM.
    fn blstm(&mut self, a: NodeId, b: NodeId) -> Result<()> {
        let rev = |id: NodeId| matches!(&self.graph.nodes[id].op, Op::Lstm(l) if l.reverse);
        let (fwd, bwd) = if rev(a) { (b, a) } else { (a, b) };
        let ys = self.lstm(&[fwd, bwd])?;
        self.values[fwd] = Some(ys[0].clone());
        self.values[bwd] = Some(ys[1].clone());
        Ok(())
    }

    /// One ONNX LSTM over the runtime LSTMs `ids` (one direction, or forward then reverse
    /// of the same input). Returns each direction's output `[N, L, hidden]`.
    fn lstm(&mut self, ids: &[NodeId]) -> Result<Vec<String>> {
        let graph = self.graph;
        let ops: Vec<&LstmOp> = ids
            .iter()
            .map(|&i| match &graph.nodes[i].op {
                Op::Lstm(l) => l,
                _ => unreachable!("lstm() is given LSTM nodes"),
            })
            .collect();
        let name = if ids.len() == 2 {
            format!("{}+{}", graph.nodes[ids[0]].name, graph.nodes[ids[1]].name)
        } else {
            graph.nodes[ids[0]].name.clone()
        };
        let h = ops[0].hidden;
        let in_dim = graph.nodes[ops[0].input].dim;
        let x = self.value(ops[0].input);
        let perm = attr_ints("perm", &[1, 0, 2]);
        let xt = self.op1(
            "Transpose",
            &format!("{name}/time_major"),
            &[&x],
            vec![perm],
        );

        // W: [dirs, 4h, in] (fp32 initializer, or int8 dequantised per row), R: [dirs, 4h, h],
        // B: [dirs, 8h].
        let mut w_parts = Vec::new();
        let mut r_data = Vec::new();
        let mut b_data = Vec::new();
        let mut w_f32 = Vec::new();
        for (k, l) in ops.iter().enumerate() {
            let lname = &graph.nodes[ids[k]].name;
            match &l.w_ih {
                Weights::F32(m) => w_f32.extend(onnx_gate_order(&m.data, h, in_dim)),
                Weights::Int8(q) => {
                    let data = onnx_gate_order(&q.data, h, in_dim);
                    let scales = onnx_gate_order(&q.scales, h, 1);
                    let wq =
                        self.init_i8(&format!("{lname}.w_ih_int8"), &[1, 4 * h, in_dim], &data);
                    let ws = self.init_f32(&format!("{lname}.w_ih_scale"), &[4 * h], &scales);
                    let zp = self.init_i8(
                        &format!("{lname}.w_ih_zero_point"),
                        &[4 * h],
                        &vec![0; 4 * h],
                    );
                    w_parts.push(self.op1(
                        "DequantizeLinear",
                        &format!("{lname}/w_ih"),
                        &[&wq, &ws, &zp],
                        vec![attr_int("axis", 1)],
                    ));
                }
            }
            r_data.extend(onnx_gate_order(&l.w_hh.data, h, l.w_hh.cols));
            b_data.extend(onnx_gate_order(&l.bias, h, 1));
            b_data.extend(std::iter::repeat_n(0f32, 4 * h));
        }
        let dirs = ops.len();
        let w = if w_parts.is_empty() {
            self.init_f32(&format!("{name}.W"), &[dirs, 4 * h, in_dim], &w_f32)
        } else if w_parts.len() == 1 {
            w_parts.remove(0)
        } else {
            let refs: Vec<&str> = w_parts.iter().map(String::as_str).collect();
            self.op1(
                "Concat",
                &format!("{name}/W"),
                &refs,
                vec![attr_int("axis", 0)],
            )
        };
        let r = self.init_f32(&format!("{name}.R"), &[dirs, 4 * h, h], &r_data);
        let b = self.init_f32(&format!("{name}.B"), &[dirs, 8 * h], &b_data);
        let direction = match (dirs, ops[0].reverse) {
            (2, _) => "bidirectional",
            (_, true) => "reverse",
            _ => "forward",
        };
        let y = self.op1(
            "LSTM",
            &format!("{name}/lstm"),
            &[&xt, &w, &r, &b],
            vec![
                attr_int("hidden_size", h as i64),
                attr_string("direction", direction),
            ],
        );
        // Y [L, dirs, N, h] -> [N, L, dirs, h], then one [N, L, h] per direction.
        let yt = self.op1(
            "Transpose",
            &format!("{name}/batch_major"),
            &[&y],
            vec![attr_ints("perm", &[2, 0, 1, 3])],
        );
        let shape = self.i64s(&[0, 0, h as i64]);
        let mut outs = Vec::new();
        for (k, &id) in ids.iter().enumerate() {
            let nname = graph.nodes[id].name.clone();
            let yk = if dirs == 1 {
                yt.clone()
            } else {
                let starts = self.i64s(&[k as i64]);
                let ends = self.i64s(&[k as i64 + 1]);
                let axes = self.i64s(&[2]);
                self.op1(
                    "Slice",
                    &format!("{nname}/direction"),
                    &[&yt, &starts, &ends, &axes],
                    vec![],
                )
            };
            outs.push(self.op1("Reshape", &nname, &[&yk, &shape], vec![]));
        }
        Ok(outs)
    }
}
