//! The export bundle: one directory that a device loads with nothing else.
//!
//! ```text
//! BUNDLE/
//!   bundle.json             format amdistill-bundle/1: the model card (architecture, fbank
//!                           options, CMVN statistics, senone table id, log priors, training
//!                           provenance), context, sizes, evaluation, sha256 of every file
//!   model.safetensors       fp32 runtime weights, by graph node (export::weights)
//!   model.int8.safetensors  per-output-channel symmetric int8 weights + fp32 scales
//!   model.onnx              fp32 ONNX: [N, T, F] raw fbank -> [N, T - L - R, S] log-posteriors
//!   model.int8.onnx         int8 ONNX (MatMulInteger, activations quantised per frame)
//!   senones.txt             the senone table (id, phone, state, context)
//!   fbank.conf              the fbank options, Kaldi's --option=value form
//!   phones.txt, phone_classes.txt   the phone set, when the model directory has it
//! ```
//!
//! The runtime graph of a bundle reads *raw* fbank frames: the training set's global CMVN is
//! folded in as its first node (`cmvn`, `x * scale + shift`, the same arithmetic as
//! [`CmvnStats::apply`]), so nothing outside the bundle is needed to normalise. Models
//! trained with per-speaker or per-utterance CMVN cannot run on a device (there are no
//! speaker statistics there) and are refused.
//!
//! The directory is written under `BUNDLE.tmp.PID` and renamed into place when complete, so
//! a bundle that exists is whole; loading checks every file against its checksum.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::export::onnx;
use crate::export::weights::{fill_graph, graph_to_safetensors};
use crate::features::cmvn::VARIANCE_FLOOR;
use crate::features::options::FbankOptions;
use crate::runtime::{lower, quantize, varmap_tensors, Graph, Runtime};
use crate::train::config::CmvnMode;
use crate::train::trained::{ModelCard, TrainedModel};

pub const BUNDLE_FORMAT: &str = "amdistill-bundle/1";
pub const MANIFEST: &str = "bundle.json";
pub const WEIGHTS_FP32: &str = "model.safetensors";
pub const WEIGHTS_INT8: &str = "model.int8.safetensors";
pub const ONNX_FP32: &str = "model.onnx";
pub const ONNX_INT8: &str = "model.int8.onnx";
pub const SENONES: &str = "senones.txt";
pub const FBANK_CONF: &str = "fbank.conf";
/// The phone set of the senones (copied when the model directory has them).
pub const PHONE_FILES: [&str; 2] = ["phones.txt", "phone_classes.txt"];

/// Which weights a runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Int8,
}

impl Precision {
    pub fn weights_file(self) -> &'static str {
        match self {
            Precision::Fp32 => WEIGHTS_FP32,
            Precision::Int8 => WEIGHTS_INT8,
        }
    }
}

/// Size and checksum of one file of the bundle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileEntry {
    pub bytes: u64,
    pub sha256: String,
}

/// Parameters and weight bytes of one precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    pub params: usize,
    pub bytes: usize,
}

/// `bundle.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// `amdistill VERSION`.
    pub created_by: String,
    /// The model directory it was exported from.
    pub source: String,
    /// The model card, unchanged (its `cmvn` is folded into the graph, see the module doc).
    pub card: ModelCard,
    /// Whether the model can run frame by frame (no bidirectional layers).
    pub streamable: bool,
    pub fp32: WeightsInfo,
    pub int8: WeightsInfo,
    /// Why there is no ONNX model, if there is none (e.g. LSTMP has no ONNX op).
    pub onnx_skipped: Option<String>,
    /// Figures measured at export (e.g. fp32 and int8 frame accuracy on a test set).
    pub evaluation: Option<serde_json::Value>,
    /// Every other file of the bundle.
    pub files: BTreeMap<String, FileEntry>,
}

/// What `export` writes besides the weights.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Also write model.onnx and model.int8.onnx.
    pub onnx: bool,
    /// Stored as the manifest's `evaluation`.
    pub evaluation: Option<serde_json::Value>,
}

/// A loaded bundle: the manifest and both runtime graphs (CMVN folded in).
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The runtime graph of a model card's architecture with arbitrary (freshly initialised)
/// weights: the structure that [`fill_graph`] fills from a bundle.
fn skeleton(card: &ModelCard) -> Result<Graph> {
    let varmap = VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    card.model
        .build(card.input_dim, card.num_senones, vb)
        .map_err(|e| Error::config(format!("building {}: {e}", card.name)))?;
    lower(
        &card.model,
        card.input_dim,
        card.num_senones,
        &varmap_tensors(&varmap),
    )
}

/// The card's CMVN as a `cmvn` node at the front of `graph` (none for `cmvn = none`).
fn fold_cmvn(card: &ModelCard, graph: Graph, model_dir: &Path) -> Result<Graph> {
    let c = &card.cmvn;
    match c.mode {
        CmvnMode::None => Ok(graph),
        CmvnMode::Utt | CmvnMode::Spk => Err(Error::Mismatch(format!(
            "model {} normalises its features per {} (cmvn = {:?}); a device has no such \
             statistics, so a bundle needs cmvn = \"global\" or \"none\" (retrain with --set data.cmvn=global)",
            model_dir.display(),
            if c.mode == CmvnMode::Spk { "speaker" } else { "utterance" },
            c.mode
        ))),
        CmvnMode::Global => {
            let g = c.global.as_ref().ok_or_else(|| {
                Error::format(
                    model_dir.join("model.json"),
                    "cmvn is global but the card holds no statistics",
                )
            })?;
            let (scale, shift) = cmvn_scale_shift(&g.sum, &g.sum_sq, g.count, c.norm_vars)
                .map_err(|m| Error::format(model_dir.join("model.json"), m))?;
            graph.prepend_scale_shift("cmvn", scale, shift)
        }
    }
}

/// `x * scale + shift` equal to Kaldi's `ApplyCmvn` (and [`CmvnStats::apply`], bit for bit).
fn cmvn_scale_shift(
    sum: &[f64],
    sum_sq: &[f64],
    count: f64,
    norm_vars: bool,
) -> std::result::Result<(Vec<f32>, Vec<f32>), String> {
    if !(count >= 1.0 && count.is_finite()) {
        return Err(format!("insufficient CMVN statistics: count = {count}"));
    }
    let mut scale = vec![1f32; sum.len()];
    let mut shift = vec![0f32; sum.len()];
    for d in 0..sum.len() {
        if norm_vars {
            let mean = sum[d] / count;
            let var = (sum_sq[d] / count - mean * mean).max(VARIANCE_FLOOR);
            let sc = 1.0 / var.sqrt();
            scale[d] = sc as f32;
            shift[d] = (-(mean * sc)) as f32;
        } else {
            let alpha = (-1.0 / count) as f32;
            shift[d] = (alpha as f64 * sum[d]) as f32;
        }
        if !(scale[d].is_finite() && shift[d].is_finite() && scale[d] != 0.0) {
            return Err(format!(
                "NaN or infinity in CMVN statistics (coefficient {d})"
            ));
        }
    }
    Ok((scale, shift))
}

/// Exports the trained model in `model_dir` as a bundle at `out` (replacing one there).
pub fn export(model_dir: &Path, out: &Path, opts: &ExportOptions) -> Result<Manifest> {
    let trained = TrainedModel::load(model_dir, None, &Device::Cpu)?;
    let card = trained.card.clone();
    let graph = lower(
        &card.model,
        card.input_dim,
        card.num_senones,
        &varmap_tensors(&trained.varmap),
    )?;
    let int8 = quantize(&graph);
    let senones = std::fs::read(model_dir.join("senones.txt"))
        .map_err(|e| Error::io(model_dir.join("senones.txt"), e))?;

    let name = out
        .file_name()
        .ok_or_else(|| Error::config(format!("{}: not a directory path", out.display())))?
        .to_string_lossy()
        .into_owned();
    let parent = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let tmp = parent.join(format!("{name}.tmp.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let result = write_bundle(&tmp, model_dir, &card, &graph, &int8, &senones, opts);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    // Swap into place: the old bundle (if any) moves aside first, so `out` is at every
    // moment either the old whole bundle, absent, or the new whole bundle.
    if out.exists() {
        let old = parent.join(format!("{name}.old.{}", std::process::id()));
        std::fs::rename(out, &old).map_err(|e| Error::io(out, e))?;
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
    }
    Ok(manifest)
}

fn write_bundle(
    dir: &Path,
    model_dir: &Path,
    card: &ModelCard,
    graph: &Graph,
    int8: &Graph,
    senones: &[u8],
    opts: &ExportOptions,
) -> Result<Manifest> {
    let mut files = BTreeMap::new();
    let mut put = |name: &str, bytes: &[u8]| -> Result<()> {
        write_atomic(dir.join(name), |w| w.write_all(bytes))?;
        files.insert(
            name.to_string(),
            FileEntry {
                bytes: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            },
        );
        Ok(())
    };
    let meta = |precision: &str| {
        BTreeMap::from([
            ("format".to_string(), BUNDLE_FORMAT.to_string()),
            ("model".to_string(), card.name.clone()),
            ("precision".to_string(), precision.to_string()),
        ])
    };
    put(WEIGHTS_FP32, &graph_to_safetensors(graph, meta("fp32"))?)?;
    put(WEIGHTS_INT8, &graph_to_safetensors(int8, meta("int8"))?)?;
    put(SENONES, senones)?;
    for name in PHONE_FILES {
        let p = model_dir.join(name);
        if p.exists() {
            put(name, &std::fs::read(&p).map_err(|e| Error::io(&p, e))?)?;
        }
    }
    if let Some(f) = &card.fbank {
        put(FBANK_CONF, f.to_conf_string().as_bytes())?;
    }
    let mut onnx_skipped = None;
    if opts.onnx {
        let full = fold_cmvn(card, graph.clone(), model_dir)?;
        let full8 = fold_cmvn(card, int8.clone(), model_dir)?;
        let meta = onnx_metadata(card);
        match (onnx::to_onnx(&full, &meta), onnx::to_onnx(&full8, &meta)) {
            (Ok(a), Ok(b)) => {
                put(ONNX_FP32, &a)?;
                put(ONNX_INT8, &b)?;
            }
            (Err(e), _) | (_, Err(e)) => onnx_skipped = Some(e.to_string()),
        }
    } else {
        onnx_skipped = Some("not requested (--no-onnx)".into());
    }
    // Refuses per-speaker CMVN before anything is renamed into place.
    let folded = fold_cmvn(card, graph.clone(), model_dir)?;
    let manifest = Manifest {
        format: BUNDLE_FORMAT.into(),
        created_by: format!("amdistill {}", env!("CARGO_PKG_VERSION")),
        source: model_dir.display().to_string(),
        card: card.clone(),
        streamable: folded.is_streamable(),
        fp32: WeightsInfo {
            params: graph.params(),
            bytes: graph.weight_bytes(),
        },
        int8: WeightsInfo {
            params: int8.params(),
            bytes: int8.weight_bytes(),
        },
        onnx_skipped,
        evaluation: opts.evaluation.clone(),
        files,
    };
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::format(dir.join(MANIFEST), e.to_string()))?;
    write_atomic(dir.join(MANIFEST), |w| w.write_all(text.as_bytes()))?;
    Ok(manifest)
}

/// What an ONNX consumer needs to make the input: the fbank options and the model's context.
fn onnx_metadata(card: &ModelCard) -> Vec<(String, String)> {
    let mut m = vec![
        ("amdistill.format".to_string(), BUNDLE_FORMAT.to_string()),
        ("amdistill.model".to_string(), card.name.clone()),
        ("amdistill.senones_id".to_string(), card.senones_id.clone()),
        (
            "amdistill.num_senones".to_string(),
            card.num_senones.to_string(),
        ),
        (
            "amdistill.left_context".to_string(),
            card.context.left.to_string(),
        ),
        (
            "amdistill.right_context".to_string(),
            card.context.right.to_string(),
        ),
        (
            "amdistill.frame_shift_s".to_string(),
            card.frame_shift.to_string(),
        ),
        (
            "amdistill.input".to_string(),
            "raw log-mel fbank frames (CMVN is inside the model)".to_string(),
        ),
    ];
    if let Some(f) = &card.fbank {
        m.push(("amdistill.fbank_conf".to_string(), f.to_conf_string()));
    }
    m
}

impl Bundle {
    /// Reads `dir/bundle.json` and checks the format.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| Error::parse(&path, e.line(), e.to_string()))?;
        if manifest.format != BUNDLE_FORMAT {
            return Err(Error::format(
                &path,
                format!("format '{}', expected '{BUNDLE_FORMAT}'", manifest.format),
            ));
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    pub fn card(&self) -> &ModelCard {
        &self.manifest.card
    }

    /// The fbank options the model was trained with (dither off: inference is deterministic).
    pub fn fbank_options(&self) -> Result<FbankOptions> {
        let mut f = self.card().fbank.clone().ok_or_else(|| {
            Error::format(
                self.dir.join(MANIFEST),
                "the model was trained on external features (no fbank options): \
                 it cannot compute its own input from audio",
            )
        })?;
        f.frame.dither = 0.0;
        Ok(f)
    }

    /// Reads `name` and checks it against the manifest's size and checksum.
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(name);
        let entry = self.manifest.files.get(name).ok_or_else(|| {
            Error::format(self.dir.join(MANIFEST), format!("lists no file {name}"))
        })?;
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if bytes.len() as u64 != entry.bytes || sha256_hex(&bytes) != entry.sha256 {
            return Err(Error::format(
                &path,
                format!(
                    "{} bytes with sha256 {}, bundle.json says {} bytes with sha256 {} \
                     (damaged or from another bundle)",
                    bytes.len(),
                    &sha256_hex(&bytes)[..12],
                    entry.bytes,
                    &entry.sha256[..entry.sha256.len().min(12)]
                ),
            ));
        }
        Ok(bytes)
    }

    /// The runtime graph at `precision`, reading raw fbank frames (CMVN folded in).
    pub fn graph(&self, precision: Precision) -> Result<Graph> {
        let name = precision.weights_file();
        let bytes = self.read_file(name)?;
        // Each parameter takes at least one byte (int8) in the file: a card claiming more
        // than the file holds is refused before the model is built.
        let card = self.card();
        let params = card
            .check_sizes()
            .map_err(|m| Error::format(self.dir.join(MANIFEST), m))?;
        if params > bytes.len() as u64 {
            return Err(Error::Mismatch(format!(
                "{} describes {} with {params} parameters, but {name} holds {} bytes",
                self.dir.join(MANIFEST).display(),
                card.name,
                bytes.len()
            )));
        }
        let mut g = skeleton(card)?;
        fill_graph(&mut g, &bytes, &self.dir.join(name))?;
        let src = PathBuf::from(&self.manifest.source);
        fold_cmvn(card, g, &src)
    }

    /// A runtime at `precision`.
    pub fn runtime(&self, precision: Precision) -> Result<Runtime> {
        Runtime::new(self.graph(precision)?)
    }

    /// Records figures measured on the bundle (rewrites bundle.json atomically).
    pub fn set_evaluation(&mut self, evaluation: serde_json::Value) -> Result<()> {
        self.manifest.evaluation = Some(evaluation);
        let path = self.dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(&self.manifest)
            .map_err(|e| Error::format(&path, e.to_string()))?;
        write_atomic(&path, |w| w.write_all(text.as_bytes()))
    }

    /// Refuses audio at a rate other than the model's, naming both.
    pub fn check_sample_rate(&self, what: &str, rate: u32) -> Result<()> {
        let want = self.fbank_options()?.frame.sample_frequency;
        if (want - rate as f32).abs() > 1e-3 {
            return Err(Error::Mismatch(format!(
                "{what} is sampled at {rate} Hz, bundle {} was trained on {want} Hz audio",
                self.dir.display()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::cmvn::CmvnStats;
    use crate::features::Matrix;

    #[test]
    fn folded_cmvn_is_apply_cmvn_bit_for_bit() {
        let feats = Matrix::from_vec(
            4,
            3,
            vec![
                1.0, -2.0, 3.5, 0.25, 7.0, -1.0, 2.0, 2.0, 2.0, -3.0, 0.5, 9.0,
            ],
        );
        let mut stats = CmvnStats::new(3);
        stats.accumulate(&feats).unwrap();
        for norm_vars in [false, true] {
            let mut want = feats.clone();
            stats.apply(&mut want, norm_vars).unwrap();
            let (scale, shift) =
                cmvn_scale_shift(&stats.sum, &stats.sum_sq, stats.count, norm_vars).unwrap();
            for r in 0..4 {
                for d in 0..3 {
                    assert_eq!(feats.row(r)[d] * scale[d] + shift[d], want.row(r)[d]);
                }
            }
        }
        assert!(cmvn_scale_shift(&[1.0], &[1.0], 0.0, true).is_err());
    }
}
