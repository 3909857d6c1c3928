//! Weights on disk: safetensors files with string metadata (candle's and Hugging Face's
//! format), written atomically, read back with every name and shape checked.
//!
//! A trained model directory:
//!
//! ```text
//! OUT_DIR/model.json              ModelCard: architecture, input dim, senones, context, feature
//!                                 configuration, CMVN, provenance (what loading needs besides weights)
//! OUT_DIR/model.safetensors       the best weights (by validation accuracy); metadata: the card.
//!                                 Written when training ends: its presence says the run finished
//! OUT_DIR/senones.txt             the senone table the outputs index
//! OUT_DIR/checkpoints/step-N.safetensors
//!                                 weights + AdamW moments (`opt.m.NAME`, `opt.v.NAME`) + progress
//!                                 (metadata `amdistill.progress`), for `--resume`
//! OUT_DIR/checkpoints/best.safetensors
//!                                 the best weights so far, while training runs
//! OUT_DIR/metrics.jsonl           one JSON object per line: kind step | epoch | done
//! ```

use std::collections::HashMap;
use std::io::Write as _;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// Maps a candle error to a library error about `path`.
pub fn candle_err(path: &Path) -> impl Fn(candle_core::Error) -> Error + '_ {
    move |e| Error::format(path, e.to_string())
}

/// The variables of `varmap`, sorted by name: a stable order for optimiser state and files.
pub fn sorted_vars(varmap: &VarMap) -> Vec<(String, Var)> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut v: Vec<(String, Var)> = data.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Writes `tensors` with `metadata` to `path` atomically.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: HashMap<String, String>,
) -> Result<()> {
    let bytes =
        safetensors::serialize(tensors.iter().map(|(n, t)| (n.as_str(), t)), Some(metadata))
            .map_err(|e| Error::format(path, e.to_string()))?;
    let bytes = canonical_header(bytes).map_err(|e| Error::format(path, e))?;
    write_atomic(path, |w| w.write_all(&bytes))
}

/// `bytes` (a serialised safetensors file) with its JSON header's keys sorted. The safetensors
/// crate writes the metadata from a `HashMap`, whose order changes from run to run, so the
/// same weights would give other bytes (and other checksums) each time; sorted, a file is a
/// function of its contents. The header keeps its length (the same keys and values).
pub fn canonical_header(mut bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .filter(|&n| n <= bytes.len() - 8)
        .ok_or("safetensors header length out of range")?;
    let header = &bytes[8..8 + n];
    let json_len = header.iter().rposition(|&b| b != b' ').map_or(0, |i| i + 1);
    // serde_json's map is ordered by key: parsing and writing again sorts every object.
    let value: serde_json::Value =
        serde_json::from_slice(&header[..json_len]).map_err(|e| e.to_string())?;
    let sorted = serde_json::to_vec(&value).map_err(|e| e.to_string())?;
    if sorted.len() != json_len {
        return Err(format!(
            "safetensors header changed length when sorted ({json_len} -> {})",
            sorted.len()
        ));
    }
    bytes[8..8 + json_len].copy_from_slice(&sorted);
    Ok(bytes)
}

/// Reads every tensor of `path` (onto `device`) and its metadata.
pub fn load_safetensors(
    path: &Path,
    device: &Device,
) -> Result<(HashMap<String, Tensor>, HashMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::format(path, format!("not a safetensors file: {e}")))?;
    let metadata = meta.metadata().clone().unwrap_or_default();
    let tensors =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(candle_err(path))?;
    Ok((tensors, metadata))
}

/// Sets `vars` from `tensors` (prefixed by `prefix`): every variable must be present with
/// its shape, and no weight may be left over, so a checkpoint of another architecture is
/// refused with both sides named.
pub fn load_vars(
    vars: &[(String, Var)],
    tensors: &HashMap<String, Tensor>,
    prefix: &str,
    path: &Path,
) -> Result<()> {
    let mut used = 0;
    for (name, var) in vars {
        let key = format!("{prefix}{name}");
        let t = tensors.get(&key).ok_or_else(|| {
            Error::Mismatch(format!(
                "{}: has no weight '{key}' that the model's configuration needs (a checkpoint of another architecture?)",
                path.display()
            ))
        })?;
        if t.dims() != var.dims() {
            return Err(Error::Mismatch(format!(
                "{}: weight '{key}' has shape {:?}, the model's configuration needs {:?}",
                path.display(),
                t.dims(),
                var.dims()
            )));
        }
        let t = t
            .to_dtype(var.dtype())
            .and_then(|t| t.to_device(var.device()))
            .map_err(candle_err(path))?;
        var.set(&t).map_err(candle_err(path))?;
        used += 1;
    }
    let offered = tensors.keys().filter(|k| k.starts_with(prefix)).count();
    if offered != used {
        let extra: Vec<&String> = tensors
            .keys()
            .filter(|k| {
                k.starts_with(prefix) && !vars.iter().any(|(n, _)| **k == format!("{prefix}{n}"))
            })
            .take(3)
            .collect();
        return Err(Error::Mismatch(format!(
            "{}: holds weights the model's configuration does not have, e.g. {extra:?} (a checkpoint of another architecture?)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::VarBuilder;

    fn two_layer(hidden: usize) -> VarMap {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        crate::nn::linear(4, hidden, vb.pp("a")).unwrap();
        crate::nn::linear(hidden, 3, vb.pp("b")).unwrap();
        vm
    }

    #[test]
    fn round_trip_restores_weights_and_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let vm = two_layer(5);
        let vars = sorted_vars(&vm);
        let tensors: Vec<(String, Tensor)> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        save_safetensors(&path, &tensors, meta).unwrap();

        let other = two_layer(5);
        let (t, m) = load_safetensors(&path, &Device::Cpu).unwrap();
        assert_eq!(m["k"], "v");
        load_vars(&sorted_vars(&other), &t, "", &path).unwrap();
        for ((_, a), (_, b)) in vars.iter().zip(sorted_vars(&other)) {
            let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
            let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(a, b);
        }
    }

    #[test]
    fn another_architecture_is_refused_naming_the_weight() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let vars = sorted_vars(&two_layer(5));
        let tensors: Vec<(String, Tensor)> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        save_safetensors(&path, &tensors, HashMap::new()).unwrap();
        let (t, _) = load_safetensors(&path, &Device::Cpu).unwrap();
        let e = load_vars(&sorted_vars(&two_layer(6)), &t, "", &path).unwrap_err();
        assert!(e.to_string().contains("has shape [5]"), "{e}");
        assert!(e.to_string().contains("w.safetensors"), "{e}");
        std::fs::write(&path, b"garbage").unwrap();
        assert!(load_safetensors(&path, &Device::Cpu).is_err());
    }
}
