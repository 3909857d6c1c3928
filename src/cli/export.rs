//! `amdistill export MODEL_DIR BUNDLE`: a trained model as a self-contained bundle for
//! devices (fp32 and int8 weights, ONNX, fbank options, CMVN, senones, priors).

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use rayon::prelude::*;

use amdistill::export::{export, Bundle, ExportOptions, Precision};
use amdistill::features::store::FeatureStore;
use amdistill::labels::kaldi_ali::read_alignments;
use amdistill::progress::BatchSummary;

/// Export a trained model as a bundle directory.
///
/// BUNDLE gets bundle.json (model card, checksums), model.safetensors (fp32),
/// model.int8.safetensors (per-channel symmetric int8), model.onnx and model.int8.onnx,
/// senones.txt and fbank.conf. The training set's global CMVN is folded into the model, so
/// a bundle reads raw fbank frames. With --eval FEAT_DIR --eval-ali ALI it also measures
/// fp32 and int8 frame accuracy there and records both in bundle.json. An existing BUNDLE is
/// replaced only once the new one is complete.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Trained model directory (model.json, model.safetensors, senones.txt).
    #[arg(value_name = "MODEL_DIR")]
    pub model: PathBuf,
    /// Bundle directory to write.
    #[arg(value_name = "BUNDLE")]
    pub out: PathBuf,
    /// Leave out model.onnx and model.int8.onnx.
    #[arg(long)]
    pub no_onnx: bool,
    /// Feature store to measure fp32 and int8 frame accuracy on.
    #[arg(long, value_name = "FEAT_DIR", requires = "eval_ali")]
    pub eval: Option<PathBuf>,
    /// Alignments (ali.txt) of --eval.
    #[arg(long, value_name = "ALI", requires = "eval")]
    pub eval_ali: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = ExportOptions {
        onnx: !args.no_onnx,
        evaluation: None,
    };
    let m = export(&args.model, &args.out, &opts).with_context(|| {
        format!(
            "exporting {} to {}",
            args.model.display(),
            args.out.display()
        )
    })?;
    eprintln!(
        "amdistill export: {} -> {}: {} parameters, {:.2} MB fp32, {:.2} MB int8{}",
        m.card.name,
        args.out.display(),
        m.fp32.params,
        m.fp32.bytes as f64 / 1e6,
        m.int8.bytes as f64 / 1e6,
        match &m.onnx_skipped {
            None => ", ONNX fp32 and int8".to_string(),
            Some(why) => format!(", no ONNX: {why}"),
        }
    );
    if let (Some(feat), Some(ali)) = (&args.eval, &args.eval_ali) {
        let mut bundle = Bundle::load(&args.out)?;
        let eval = evaluate(&bundle, feat, ali)?;
        println!("{}", serde_json::to_string_pretty(&eval)?);
        bundle.set_evaluation(eval)?;
    }
    Ok(())
}

/// Frame accuracy of the bundle's fp32 and int8 runtimes on a feature store, and how often
/// they agree with each other.
fn evaluate(
    bundle: &Bundle,
    feat_dir: &std::path::Path,
    ali: &std::path::Path,
) -> anyhow::Result<serde_json::Value> {
    let store = FeatureStore::open(feat_dir)?;
    bundle.card().check_features(&store, &bundle.dir)?;
    let ali = read_alignments(ali)?;
    let fp32 = bundle.runtime(Precision::Fp32)?;
    let int8 = bundle.runtime(Precision::Int8)?;
    let utts = store.utts();
    // (frames, fp32 right, int8 right, fp32 == int8) per utterance.
    let results: Vec<Result<[usize; 4], String>> = utts
        .par_iter()
        .map(|u| {
            let labels = ali
                .get(u)
                .ok_or_else(|| format!("{u}: not in the alignments"))?;
            let feats = store.get(u).map_err(|e| e.to_string())?;
            if feats.rows != labels.len() {
                return Err(format!(
                    "{u}: {} feature frames, {} aligned frames",
                    feats.rows,
                    labels.len()
                ));
            }
            let a = fp32
                .forward_utterance(&feats)
                .map_err(|e| format!("{u}: {e}"))?;
            let b = int8
                .forward_utterance(&feats)
                .map_err(|e| format!("{u}: {e}"))?;
            let mut c = [labels.len(), 0, 0, 0];
            for (t, &l) in labels.iter().enumerate() {
                let (x, y) = (argmax(a.row(t)), argmax(b.row(t)));
                c[1] += (x == l as usize) as usize;
                c[2] += (y == l as usize) as usize;
                c[3] += (x == y) as usize;
            }
            Ok(c)
        })
        .collect();
    let mut sum = [0usize; 4];
    let mut done = 0;
    for r in &results {
        match r {
            Ok(c) => {
                done += 1;
                for k in 0..4 {
                    sum[k] += c[k];
                }
            }
            Err(e) => eprintln!("amdistill export: --eval: {e}; left out"),
        }
    }
    let s = BatchSummary {
        done,
        total: utts.len(),
    };
    eprintln!("amdistill export: --eval {s}");
    if sum[0] == 0 {
        bail!(
            "--eval {}: no utterance could be scored",
            feat_dir.display()
        );
    }
    let pct = |k: usize| 100.0 * sum[k] as f64 / sum[0] as f64;
    Ok(serde_json::json!({
        "feat_dir": feat_dir.display().to_string(),
        "utterances": done,
        "frames": sum[0],
        "fp32_frame_accuracy": pct(1),
        "int8_frame_accuracy": pct(2),
        "int8_loss_points": pct(1) - pct(2),
        "int8_fp32_argmax_agreement": pct(3),
    }))
}

fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &v)| {
            if v > bv {
                (i, v)
            } else {
                (bi, bv)
            }
        })
        .0
}
