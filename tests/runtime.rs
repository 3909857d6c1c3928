//! The runtime graph against the candle models it is lowered from, for every architecture;
//! streaming against offline (bit for bit); int8 against fp32.

use std::sync::Arc;

use amdistill::features::Matrix;
use amdistill::models::ModelConfig;
use amdistill::nn::init::seeded_var_builder;
use amdistill::runtime::{lower, quantize, varmap_tensors, FrameStream, Graph, Runtime};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;

const F: usize = 6;
const S: usize = 11;

fn random(rows: usize, cols: usize, seed: u64) -> Matrix {
    let mut s = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    let data = (0..rows * cols)
        .map(|_| {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
        })
        .collect();
    Matrix::from_vec(rows, cols, data)
}

/// A model with seeded random weights and non-trivial batch-norm statistics, and its graph.
fn model(
    toml: &str,
    seed: u64,
) -> (
    Box<dyn amdistill::models::AcousticModel>,
    Graph,
    ModelConfig,
) {
    let cfg: ModelConfig = toml::from_str(toml).unwrap();
    let varmap = VarMap::new();
    let vb = seeded_var_builder(&varmap, seed, DType::F32, &Device::Cpu);
    let m = cfg.build(F, S, vb).unwrap();
    for (name, var) in varmap.data().lock().unwrap().iter() {
        let n = var.as_tensor().elem_count();
        let v = random(1, n, seed ^ name.len() as u64).data;
        let shape = var.as_tensor().shape().clone();
        let new = if name.ends_with("running_var") {
            v.iter().map(|x| 0.5 + x.abs()).collect::<Vec<_>>()
        } else if name.ends_with("running_mean") {
            v.iter().map(|x| x * 0.3).collect()
        } else {
            continue;
        };
        var.set(&Tensor::from_vec(new, shape, &Device::Cpu).unwrap())
            .unwrap();
    }
    let g = lower(&cfg, F, S, &varmap_tensors(&varmap)).unwrap();
    (m, g, cfg)
}

const ARCHS: &[(&str, &str)] = &[
    ("dnn", "type = \"dnn\"\nsplice = 2\nhidden = 24\nlayers = 2"),
    ("dnn bn", "type = \"dnn\"\nsplice = 1\nhidden = 20\nlayers = 2\nnorm = \"batch\""),
    ("dnn ln", "type = \"dnn\"\nsplice = 3\nhidden = 17\nlayers = 3\nnorm = \"layer\""),
    ("tdnn", "type = \"tdnn\"\nsplices = [[-1, 0, 1], [-2, 0, 2], [0]]\nhidden = 19"),
    ("tdnnf", "type = \"tdnnf\"\ndim = 32\nbottleneck = 8\nlayers = 4\ntime_strides = [1, 0, 2, 1]\noutput_bottleneck = 12"),
    ("tdnnf no bypass", "type = \"tdnnf\"\ndim = 16\nbottleneck = 8\nlayers = 2\nbypass_scale = 0.0"),
    ("lstm", "type = \"lstm\"\nhidden = 10\nlayers = 2"),
    ("lstmp extra", "type = \"lstm\"\nhidden = 12\nlayers = 1\nprojection = 5\nextra_left = 2\nextra_right = 1"),
    ("blstm", "type = \"lstm\"\nhidden = 7\nlayers = 2\nbidirectional = true"),
];

fn candle_log_posteriors(m: &dyn amdistill::models::AcousticModel, x: &Matrix) -> Vec<f32> {
    let xs = Tensor::from_vec(x.data.clone(), (1, x.rows, x.cols), &Device::Cpu).unwrap();
    let y = m.forward_t(&xs, false).unwrap();
    let y = candle_nn::ops::log_softmax(&y, 2).unwrap();
    y.flatten_all().unwrap().to_vec1().unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn lowered_graphs_match_the_candle_models() {
    for (i, (name, toml)) in ARCHS.iter().enumerate() {
        let (m, g, cfg) = model(toml, 7 + i as u64);
        let ctx = cfg.context();
        let x = random(23 + ctx.total(), F, 100 + i as u64);
        let want = candle_log_posteriors(m.as_ref(), &x);
        let rt = Runtime::new(g).unwrap();
        assert_eq!(rt.context(), ctx, "{name}");
        let got = rt.forward(&x).unwrap();
        assert_eq!((got.rows, got.cols), (23, S), "{name}");
        let d = max_diff(&got.data, &want);
        assert!(d < 1e-4, "{name}: max abs diff {d}");
    }
}

#[test]
fn streaming_equals_offline_bit_for_bit() {
    for (i, (name, toml)) in ARCHS.iter().enumerate() {
        if name.starts_with("blstm") {
            continue;
        }
        let (_, g, _) = model(toml, 30 + i as u64);
        for graph in [g.clone(), quantize(&g)] {
            let rt = Arc::new(Runtime::new(graph).unwrap());
            let mut stream = FrameStream::new(rt.clone()).unwrap();
            for (utt, frames) in [(0u64, 1usize), (1, 2), (2, 37)] {
                let feats = random(frames, F, 200 + utt);
                let offline = rt.forward_utterance(&feats).unwrap();
                let mut out = Vec::new();
                let lat = stream.latency();
                for t in 0..frames {
                    let before = out.len() / S;
                    stream.push(feats.row(t), &mut out);
                    // Frame j comes out once frame j + latency is in.
                    assert_eq!(
                        out.len() / S,
                        (t + 1).saturating_sub(lat),
                        "{name}: after frame {t}"
                    );
                    assert!(out.len() / S >= before);
                }
                stream.finish(&mut out);
                assert_eq!(out, offline.data, "{name}: utterance of {frames} frames");
            }
        }
    }
}

#[test]
fn bidirectional_models_are_refused_for_streaming() {
    let (_, g, _) = model(ARCHS[8].1, 1);
    let err = FrameStream::new(Arc::new(Runtime::new(g).unwrap()))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("bidirectional"), "{err}");
}

#[test]
fn int8_graphs_stay_close_to_fp32() {
    for (i, (name, toml)) in ARCHS.iter().enumerate() {
        let (_, g, cfg) = model(toml, 50 + i as u64);
        let q = quantize(&g);
        assert!(q.weight_bytes() < g.weight_bytes(), "{name}");
        let x = random(15 + cfg.context().total(), F, 300);
        let a = Runtime::new(g).unwrap().forward(&x).unwrap();
        let b = Runtime::new(q).unwrap().forward(&x).unwrap();
        // Posteriors (not log) differ little; argmax agrees on most frames.
        let pa: Vec<f32> = a.data.iter().map(|v| v.exp()).collect();
        let pb: Vec<f32> = b.data.iter().map(|v| v.exp()).collect();
        let d = max_diff(&pa, &pb);
        assert!(d < 0.05, "{name}: max posterior diff {d}");
    }
}

#[test]
fn too_short_inputs_are_refused_with_the_context() {
    let (_, g, _) = model(ARCHS[0].1, 3);
    let err = Runtime::new(g)
        .unwrap()
        .forward(&random(4, F, 1))
        .unwrap_err()
        .to_string();
    assert!(err.contains("2 left + 2 right"), "{err}");
}
