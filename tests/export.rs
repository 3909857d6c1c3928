//! Export round trips: a model directory -> `export` -> `Bundle::load` -> the same outputs as
//! the trained model, for every architecture; audio streamed through a bundle equals the
//! offline forward bit for bit, fp32 and int8, for any chunk size; damaged or mismatched
//! bundles are refused by name.

use std::path::Path;

#[path = "common/export_fixture.rs"]
mod export_fixture;
use export_fixture::{audio, model_dir, SENONES};

use amdistill::export::{export, Bundle, ExportOptions, Precision, Streamer};
use amdistill::features::fbank::Fbank;
use amdistill::features::options::FbankOptions;
use amdistill::models::{DnnConfig, LstmConfig, ModelConfig, Norm, TdnnConfig, TdnnfConfig};
use amdistill::train::config::CmvnMode;
use amdistill::train::trained::TrainedModel;
use candle_core::Device;

fn archs() -> Vec<ModelConfig> {
    vec![
        ModelConfig::Dnn(DnnConfig {
            splice: 2,
            hidden: 32,
            layers: 2,
            norm: Norm::Batch,
            dropout: 0.0,
        }),
        ModelConfig::Dnn(DnnConfig {
            splice: 1,
            hidden: 24,
            layers: 1,
            norm: Norm::Layer,
            dropout: 0.0,
        }),
        ModelConfig::Tdnn(TdnnConfig {
            splices: vec![vec![-2, -1, 0, 1, 2], vec![-1, 0, 1], vec![-3, 0, 3]],
            hidden: 24,
            batch_norm: true,
            ..Default::default()
        }),
        ModelConfig::Tdnnf(TdnnfConfig {
            dim: 24,
            bottleneck: 8,
            layers: 3,
            input_splice: vec![-1, 0, 1],
            time_strides: Some(vec![1, 0, 3]),
            bypass_scale: 0.66,
            output_bottleneck: 12,
            ..Default::default()
        }),
        ModelConfig::Lstm(LstmConfig {
            hidden: 12,
            layers: 2,
            extra_right: 2,
            ..Default::default()
        }),
        ModelConfig::Lstm(LstmConfig {
            hidden: 12,
            layers: 1,
            projection: 6,
            ..Default::default()
        }),
        ModelConfig::Lstm(LstmConfig {
            hidden: 10,
            layers: 1,
            bidirectional: true,
            ..Default::default()
        }),
    ]
}

/// The trained model's log-posteriors on raw features (normalised as in training).
fn reference(dir: &Path, raw: &amdistill::features::Matrix) -> Vec<f32> {
    let m = TrainedModel::load(dir, None, &Device::Cpu).unwrap();
    let mut x = raw.clone();
    m.card
        .cmvn
        .global
        .as_ref()
        .unwrap()
        .to_stats()
        .apply(&mut x, true)
        .unwrap();
    let logits = m.logits(&x).unwrap();
    logits
        .chunks(SENONES)
        .flat_map(|r| {
            let max = r.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let lse = max + r.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
            r.iter().map(move |v| v - lse).collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn every_architecture_round_trips_through_a_bundle() {
    let tmp = tempfile::tempdir().unwrap();
    let raw = Fbank::new(&FbankOptions::default())
        .unwrap()
        .compute(&audio(0.6, 2), 0);
    for (i, cfg) in archs().iter().enumerate() {
        let (src, out) = (
            tmp.path().join(format!("m{i}")),
            tmp.path().join(format!("b{i}")),
        );
        model_dir(&src, cfg, CmvnMode::Global);
        let m = export(
            &src,
            &out,
            &ExportOptions {
                onnx: true,
                evaluation: None,
            },
        )
        .unwrap();
        let b = Bundle::load(&out).unwrap();
        assert_eq!(b.manifest, m);
        let lstmp = matches!(cfg, ModelConfig::Lstm(l) if l.projection > 0);
        assert_eq!(out.join("model.onnx").exists(), !lstmp, "{}", cfg.name());
        assert_eq!(m.onnx_skipped.is_some(), lstmp);
        // LSTMs keep their recurrent weights in fp32 (only W_ih is int8).
        let shrink = if matches!(cfg, ModelConfig::Lstm(_)) {
            1
        } else {
            2
        };
        assert!(
            m.int8.bytes * shrink < m.fp32.bytes,
            "{}: int8 {} fp32 {}",
            cfg.name(),
            m.int8.bytes,
            m.fp32.bytes
        );
        let want = reference(&src, &raw);
        let got = b
            .runtime(Precision::Fp32)
            .unwrap()
            .forward_utterance(&raw)
            .unwrap();
        let d = want
            .iter()
            .zip(&got.data)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        eprintln!("{}: max |bundle - trained model| = {d:.2e}", cfg.name());
        assert!(
            d < 1e-4,
            "{}: bundle differs from the model by {d}",
            cfg.name()
        );
        let got8 = b
            .runtime(Precision::Int8)
            .unwrap()
            .forward_utterance(&raw)
            .unwrap();
        let d8 = want
            .iter()
            .zip(&got8.data)
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        // Random weights give large log-posteriors; int8 error scales with them.
        let peak = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        eprintln!(
            "{}: int8 max diff {d8:.3} (outputs up to {peak:.1})",
            cfg.name()
        );
        assert!(d8 < 0.05 * peak, "{}: int8 differs by {d8}", cfg.name());
    }
}

#[test]
fn streamed_audio_equals_offline_for_any_chunking() {
    let tmp = tempfile::tempdir().unwrap();
    let wave = audio(0.83, 3);
    for (i, cfg) in archs()
        .iter()
        .enumerate()
        .filter(|(i, _)| [0, 2, 3, 4].contains(i))
    {
        let (src, out) = (
            tmp.path().join(format!("m{i}")),
            tmp.path().join(format!("b{i}")),
        );
        model_dir(&src, cfg, CmvnMode::Global);
        export(
            &src,
            &out,
            &ExportOptions {
                onnx: false,
                evaluation: None,
            },
        )
        .unwrap();
        let b = Bundle::load(&out).unwrap();
        for precision in [Precision::Fp32, Precision::Int8] {
            let mut s = Streamer::new(&b, precision).unwrap();
            let offline = s.offline(&wave).unwrap();
            for chunk in [1, 37, 160, 4000, wave.len()] {
                let mut out = Vec::new();
                let mut early = 0;
                for c in wave.chunks(chunk) {
                    early += s.push(c, &mut out);
                }
                s.finish(&mut out);
                assert_eq!(
                    out,
                    offline.data,
                    "{} {precision:?} chunk {chunk}",
                    cfg.name()
                );
                // Everything but the last latency + window frames came out before finish.
                if chunk <= 160 {
                    assert!(
                        early + s.latency_frames() + 3 >= offline.rows,
                        "{}: {early} early",
                        cfg.name()
                    );
                }
            }
        }
    }
}

#[test]
fn damaged_and_mismatched_bundles_are_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = &archs()[0];
    let (src, out) = (tmp.path().join("m"), tmp.path().join("b"));
    model_dir(&src, cfg, CmvnMode::Global);
    export(&src, &out, &ExportOptions::default()).unwrap();
    // A flipped byte in the int8 weights: the fp32 runtime still loads, int8 is refused.
    let p = out.join("model.int8.safetensors");
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&p, bytes).unwrap();
    let b = Bundle::load(&out).unwrap();
    b.runtime(Precision::Fp32).unwrap();
    let e = b.runtime(Precision::Int8).unwrap_err().to_string();
    assert!(
        e.contains("model.int8.safetensors") && e.contains("sha256"),
        "{e}"
    );
    // Audio at another rate.
    let e = b.check_sample_rate("a.wav", 8000).unwrap_err().to_string();
    assert!(e.contains("8000") && e.contains("16000"), "{e}");
    // Per-speaker CMVN cannot run on a device; nothing is left behind.
    let (src2, out2) = (tmp.path().join("m2"), tmp.path().join("b2"));
    model_dir(&src2, cfg, CmvnMode::Spk);
    let e = export(&src2, &out2, &ExportOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("per speaker") && e.contains("global"), "{e}");
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !left.iter().any(|n| n.to_string_lossy().starts_with("b2")),
        "{left:?}"
    );
    // A bidirectional model exports but does not stream.
    let (src3, out3) = (tmp.path().join("m3"), tmp.path().join("b3"));
    model_dir(&src3, &archs()[6], CmvnMode::Global);
    export(&src3, &out3, &ExportOptions::default()).unwrap();
    let e = Streamer::new(&Bundle::load(&out3).unwrap(), Precision::Fp32)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("bidirectional"), "{e}");
    // Not a bundle.
    let e = Bundle::load(&src).unwrap_err().to_string();
    assert!(e.contains("bundle.json"), "{e}");
}
