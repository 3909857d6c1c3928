//! A runtime graph's parameters as a safetensors file, named by graph node, and back.
//!
//! ```text
//! affine   NODE.weight [out, in] F32 | I8 (+ NODE.weight_scale [out] F32)   NODE.bias [out]
//! scale    NODE.scale [dim]  NODE.shift [dim]        (batch norm, folded)
//! norm     NODE.gamma [dim]  NODE.beta [dim]         (layer norm)
//! lstm     NODE.w_ih [4h, in] F32 | I8 (+ NODE.w_ih_scale)   NODE.bias [4h]
//!          NODE.w_hh [4h, rec]   NODE.w_proj [rec, h] (LSTMP only)
//! ```
//!
//! The graph's structure is not stored: a bundle rebuilds it from the model config
//! ([`crate::runtime::lower`] of freshly initialised weights) and [`fill_graph`] then sets
//! every parameter from the file, refusing a missing, extra or misshapen tensor by name.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use crate::error::{Error, Result};
use crate::features::Matrix;
use crate::runtime::{Graph, Op, QuantMatrix, Weights};

/// One stored tensor: dtype, shape and little-endian bytes.
struct Stored {
    dtype: Dtype,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32s(shape: &[usize], v: &[f32]) -> Stored {
    Stored {
        dtype: Dtype::F32,
        shape: shape.to_vec(),
        bytes: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn put_weights(out: &mut BTreeMap<String, Stored>, name: &str, w: &Weights) {
    match w {
        Weights::F32(m) => {
            out.insert(name.to_string(), f32s(&[m.rows, m.cols], &m.data));
        }
        Weights::Int8(q) => {
            out.insert(
                name.to_string(),
                Stored {
                    dtype: Dtype::I8,
                    shape: vec![q.rows, q.cols],
                    bytes: q.data.iter().map(|&v| v as u8).collect(),
                },
            );
            out.insert(format!("{name}_scale"), f32s(&[q.rows], &q.scales));
        }
    }
}

/// Serialises every parameter of `graph` (`metadata` goes into the file's header).
pub fn graph_to_safetensors(graph: &Graph, metadata: BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut t: BTreeMap<String, Stored> = BTreeMap::new();
    for node in &graph.nodes {
        let n = &node.name;
        match &node.op {
            Op::Affine { weight, bias, .. } => {
                put_weights(&mut t, &format!("{n}.weight"), weight);
                if let Some(b) = bias {
                    t.insert(format!("{n}.bias"), f32s(&[b.len()], b));
                }
            }
            Op::ScaleShift { scale, shift, .. } => {
                t.insert(format!("{n}.scale"), f32s(&[scale.len()], scale));
                t.insert(format!("{n}.shift"), f32s(&[shift.len()], shift));
            }
            Op::LayerNorm { gamma, beta, .. } => {
                t.insert(format!("{n}.gamma"), f32s(&[gamma.len()], gamma));
                t.insert(format!("{n}.beta"), f32s(&[beta.len()], beta));
            }
            Op::Lstm(l) => {
                put_weights(&mut t, &format!("{n}.w_ih"), &l.w_ih);
                t.insert(format!("{n}.bias"), f32s(&[l.bias.len()], &l.bias));
                t.insert(
                    format!("{n}.w_hh"),
                    f32s(&[l.w_hh.rows, l.w_hh.cols], &l.w_hh.data),
                );
                if let Some(p) = &l.w_proj {
                    t.insert(format!("{n}.w_proj"), f32s(&[p.rows, p.cols], &p.data));
                }
            }
            Op::Input
            | Op::Splice { .. }
            | Op::Trim { .. }
            | Op::Add { .. }
            | Op::Concat { .. }
            | Op::LogSoftmax { .. } => {}
        }
    }
    let views = t
        .iter()
        .map(|(name, s)| {
            TensorView::new(s.dtype, s.shape.clone(), &s.bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::config(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = metadata.into_iter().collect();
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::config(format!("serialising the graph's weights: {e}")))?;
    crate::train::checkpoint::canonical_header(bytes)
        .map_err(|e| Error::config(format!("serialising the graph's weights: {e}")))
}

/// Reads tensors out of one safetensors file, remembering which were taken.
struct Reader<'a> {
    st: SafeTensors<'a>,
    path: &'a Path,
    taken: HashSet<String>,
}

impl Reader<'_> {
    fn view(&mut self, name: &str, dtype: Dtype, shape: &[usize]) -> Result<Vec<u8>> {
        let v = self
            .st
            .tensor(name)
            .map_err(|_| Error::format(self.path, format!("tensor {name} is missing")))?;
        if v.dtype() != dtype || v.shape() != shape {
            return Err(Error::format(
                self.path,
                format!(
                    "tensor {name} is {:?} {:?}, the model needs {dtype:?} {shape:?}",
                    v.dtype(),
                    v.shape()
                ),
            ));
        }
        self.taken.insert(name.to_string());
        Ok(v.data().to_vec())
    }

    fn floats(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let bytes = self.view(name, Dtype::F32, shape)?;
        let v: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::format(
                self.path,
                format!("tensor {name} holds a NaN or infinity (value {i})"),
            ));
        }
        Ok(v)
    }

    fn vector(&mut self, name: &str, v: &mut Vec<f32>) -> Result<()> {
        *v = self.floats(name, &[v.len()])?;
        Ok(())
    }

    fn matrix(&mut self, name: &str, m: &mut Matrix) -> Result<()> {
        m.data = self.floats(name, &[m.rows, m.cols])?;
        Ok(())
    }

    /// Fp32 or int8, whichever the file holds under `name`.
    fn weights(&mut self, name: &str, w: &mut Weights) -> Result<()> {
        let (rows, cols) = w.shape();
        let is_int8 = matches!(self.st.tensor(name).map(|v| v.dtype()), Ok(Dtype::I8));
        *w = if is_int8 {
            let data = self.view(name, Dtype::I8, &[rows, cols])?;
            let scales = self.floats(&format!("{name}_scale"), &[rows])?;
            let data: Vec<i8> = data.into_iter().map(|b| b as i8).collect();
            if data.contains(&i8::MIN) {
                return Err(Error::format(
                    self.path,
                    format!("tensor {name}: -128 is outside symmetric int8 [-127, 127]"),
                ));
            }
            Weights::Int8(QuantMatrix {
                rows,
                cols,
                data,
                scales,
            })
        } else {
            let mut m = Matrix::from_vec(rows, cols, vec![0.0; rows * cols]);
            self.matrix(name, &mut m)?;
            Weights::F32(m)
        };
        Ok(())
    }
}

/// Sets every parameter of `graph` (built for the same model) from the safetensors `bytes`
/// read from `path` (named in errors). Returns the file's metadata.
pub fn fill_graph(
    graph: &mut Graph,
    bytes: &[u8],
    path: &Path,
) -> Result<BTreeMap<String, String>> {
    let (_, header) = SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
    let mut r = Reader {
        st,
        path,
        taken: HashSet::new(),
    };
    for node in &mut graph.nodes {
        let n = node.name.clone();
        match &mut node.op {
            Op::Affine { weight, bias, .. } => {
                r.weights(&format!("{n}.weight"), weight)?;
                if let Some(b) = bias {
                    r.vector(&format!("{n}.bias"), b)?;
                }
            }
            Op::ScaleShift { scale, shift, .. } => {
                r.vector(&format!("{n}.scale"), scale)?;
                r.vector(&format!("{n}.shift"), shift)?;
            }
            Op::LayerNorm { gamma, beta, .. } => {
                r.vector(&format!("{n}.gamma"), gamma)?;
                r.vector(&format!("{n}.beta"), beta)?;
            }
            Op::Lstm(l) => {
                r.weights(&format!("{n}.w_ih"), &mut l.w_ih)?;
                r.vector(&format!("{n}.bias"), &mut l.bias)?;
                r.matrix(&format!("{n}.w_hh"), &mut l.w_hh)?;
                if let Some(p) = &mut l.w_proj {
                    r.matrix(&format!("{n}.w_proj"), p)?;
                }
            }
            Op::Input
            | Op::Splice { .. }
            | Op::Trim { .. }
            | Op::Add { .. }
            | Op::Concat { .. }
            | Op::LogSoftmax { .. } => {}
        }
    }
    let mut extra: Vec<String> =
        r.st.names()
            .into_iter()
            .filter(|n| !r.taken.contains(*n))
            .map(str::to_string)
            .collect();
    if !extra.is_empty() {
        extra.sort();
        return Err(Error::format(
            path,
            format!(
                "tensors the model does not have: {} (weights of another architecture?)",
                extra.join(", ")
            ),
        ));
    }
    Ok(header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::quantize;

    fn tiny() -> Graph {
        let mut g = Graph::new(3);
        let w = Matrix::from_vec(2, 3, vec![0.5, -1.0, 0.25, 2.0, 0.0, -0.75]);
        g.push(
            "l0",
            Op::Affine {
                input: 0,
                weight: Weights::F32(w),
                bias: Some(vec![0.1, -0.2]),
                relu: true,
            },
        )
        .unwrap();
        g.push("out", Op::LogSoftmax { input: 1 }).unwrap();
        g
    }

    #[test]
    fn fp32_and_int8_round_trip_and_bad_files_are_named() {
        for g in [tiny(), quantize(&tiny())] {
            let bytes = graph_to_safetensors(&g, BTreeMap::new()).unwrap();
            let mut skeleton = tiny();
            if let Op::Affine { weight, bias, .. } = &mut skeleton.nodes[1].op {
                *weight = Weights::F32(Matrix::from_vec(2, 3, vec![9.0; 6]));
                *bias = Some(vec![9.0; 2]);
            }
            fill_graph(&mut skeleton, &bytes, Path::new("w.safetensors")).unwrap();
            assert_eq!(skeleton, g);
        }
        // A model with another layer size is refused, naming the tensor and both shapes.
        let mut other = Graph::new(3);
        other
            .push(
                "l0",
                Op::Affine {
                    input: 0,
                    weight: Weights::F32(Matrix::from_vec(4, 3, vec![0.0; 12])),
                    bias: Some(vec![0.0; 4]),
                    relu: true,
                },
            )
            .unwrap();
        let bytes = graph_to_safetensors(&tiny(), BTreeMap::new()).unwrap();
        let e = fill_graph(&mut other, &bytes, Path::new("w.safetensors")).unwrap_err();
        assert!(
            e.to_string().contains("l0.weight") && e.to_string().contains("[4, 3]"),
            "{e}"
        );
        let e = fill_graph(&mut tiny(), b"garbage", Path::new("w.safetensors")).unwrap_err();
        assert!(e.to_string().contains("w.safetensors"), "{e}");
    }
}
