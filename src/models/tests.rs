//! Tests of every architecture: shapes and context, determinism, configuration round trips,
//! analytic sizes against the built variables, the TDNN-F constraint, and a small overfit.

use candle_core::{DType, Device, Module, Tensor, D};
use candle_nn::{Optimizer, VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::layers::splice;
use super::*;

const FEAT: usize = 8;
const SENONES: usize = 6;

fn build(cfg: &ModelConfig) -> (VarMap, Box<dyn AcousticModel>) {
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
    let model = cfg.build(FEAT, SENONES, vb).expect("build");
    (varmap, model)
}

/// Seeded Gaussian `[b, t, f]`.
fn randn(b: usize, t: usize, f: usize, seed: u64) -> Tensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f32> = (0..b * t * f)
        .map(|_| {
            let z: f32 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng);
            z
        })
        .collect();
    Tensor::from_vec(v, (b, t, f), &Device::Cpu).unwrap()
}

/// Trainable parameters of a VarMap: everything except batch-norm running statistics.
fn trainable(varmap: &VarMap) -> usize {
    let data = varmap.data().lock().unwrap();
    data.iter()
        .filter(|(k, _)| !k.ends_with("running_mean") && !k.ends_with("running_var"))
        .map(|(_, v)| v.elem_count())
        .sum()
}

fn small_dnn() -> ModelConfig {
    ModelConfig::Dnn(DnnConfig {
        splice: 2,
        hidden: 16,
        layers: 2,
        norm: Norm::Batch,
        dropout: 0.0,
    })
}

fn small_tdnn() -> ModelConfig {
    ModelConfig::Tdnn(TdnnConfig {
        splices: vec![vec![-1, 0, 1], vec![-2, 0, 2], vec![0], vec![-3, 0, 3]],
        hidden: 16,
        ..Default::default()
    })
}

fn small_tdnnf() -> ModelConfig {
    ModelConfig::Tdnnf(TdnnfConfig {
        dim: 16,
        bottleneck: 6,
        layers: 5,
        output_bottleneck: 8,
        ..Default::default()
    })
}

fn small_lstm(bidirectional: bool, projection: usize, left: usize, right: usize) -> ModelConfig {
    ModelConfig::Lstm(LstmConfig {
        hidden: 12,
        layers: 2,
        bidirectional,
        projection,
        dropout: 0.0,
        extra_left: left,
        extra_right: right,
    })
}

fn all_small() -> Vec<ModelConfig> {
    vec![
        small_dnn(),
        ModelConfig::Dnn(DnnConfig {
            splice: 1,
            hidden: 10,
            layers: 3,
            norm: Norm::Layer,
            dropout: 0.1,
        }),
        small_tdnn(),
        small_tdnnf(),
        ModelConfig::Tdnnf(TdnnfConfig {
            dim: 12,
            bottleneck: 4,
            layers: 3,
            time_strides: Some(vec![0, 2, 1]),
            bypass_scale: 0.0,
            input_splice: vec![-2, 0, 1],
            ..Default::default()
        }),
        small_lstm(false, 0, 0, 0),
        small_lstm(true, 5, 3, 2),
    ]
}

#[test]
fn output_frames_are_input_frames_less_context() {
    for cfg in all_small() {
        let (_vm, model) = build(&cfg);
        let ctx = model.context();
        assert_eq!(ctx, cfg.context(), "{}", cfg.name());
        for frames in [1, 7] {
            let xs = randn(3, frames + ctx.total(), FEAT, 1);
            for train in [false, true] {
                let y = model.forward_t(&xs, train).unwrap();
                assert_eq!(
                    y.dims(),
                    &[3, frames, SENONES],
                    "{} train={train}",
                    cfg.name()
                );
            }
        }
        // Too few frames for the context: an error, not a panic or an empty output.
        let short = randn(1, ctx.total(), FEAT, 2);
        assert!(model.forward_t(&short, false).is_err(), "{}", cfg.name());
        let wrong_dim = randn(1, ctx.total() + 4, FEAT + 1, 2);
        assert!(
            model.forward_t(&wrong_dim, false).is_err(),
            "{}",
            cfg.name()
        );
    }
}

#[test]
fn default_contexts() {
    let ctx = |c: ModelConfig| c.context();
    assert_eq!(
        ctx(ModelConfig::Dnn(Default::default())),
        Context { left: 5, right: 5 }
    );
    assert_eq!(
        ctx(ModelConfig::Tdnn(Default::default())),
        Context {
            left: 13,
            right: 13
        }
    );
    assert_eq!(
        ctx(ModelConfig::Tdnnf(Default::default())),
        Context {
            left: 13,
            right: 13
        }
    );
    assert_eq!(
        ctx(ModelConfig::Lstm(Default::default())),
        Context { left: 0, right: 0 }
    );
}

#[test]
fn eval_forward_is_deterministic() {
    for cfg in all_small() {
        let (_vm, model) = build(&cfg);
        let xs = randn(2, 5 + model.context().total(), FEAT, 3);
        let a: Vec<f32> = model
            .forward_t(&xs, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let b: Vec<f32> = model
            .forward_t(&xs, false)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert_eq!(a, b, "{}", cfg.name());
        assert!(a.iter().all(|v| v.is_finite()));
    }
}

#[test]
fn analytic_params_match_the_built_variables() {
    let mut cfgs = all_small();
    cfgs.extend([
        ModelConfig::Dnn(Default::default()),
        ModelConfig::Tdnn(Default::default()),
        ModelConfig::Tdnnf(Default::default()),
        ModelConfig::Lstm(LstmConfig {
            bidirectional: true,
            projection: 128,
            ..Default::default()
        }),
    ]);
    for cfg in cfgs {
        let (vm, _model) = build(&cfg);
        assert_eq!(
            cfg.summary(FEAT, SENONES).params,
            trainable(&vm),
            "{}",
            cfg.name()
        );
    }
}

#[test]
fn dnn_teacher_matches_the_pytorch_benchmark() {
    // bench_train.py's teacher: 880 -> 6 x 1024 ReLU -> 2000.
    let cfg: ModelConfig = toml::from_str("type = \"dnn\"\nhidden = 1024\nlayers = 6").unwrap();
    let s = cfg.summary(80, 2000);
    let macs = 880 * 1024 + 5 * 1024 * 1024 + 1024 * 2000;
    assert_eq!(s.params, macs + 6 * 1024 + 2000);
    assert_eq!(s.params, 8_200_144);
    assert!((s.mflops_per_frame - 2.0 * macs as f64 / 1e6).abs() < 1e-9);
    assert!((s.mflops_per_frame - 16.384).abs() < 1e-9);
    assert_eq!(s.context, Context { left: 5, right: 5 });
    assert_eq!(cfg.describe(80, 2000), "dnn 880-6x1024-2000");
    assert_eq!(cfg.name(), "dnn 6x1024 splice5");
}

#[test]
fn flops_count_every_product() {
    // TDNN-F 1 layer, stride 1, output bottleneck: products counted by hand.
    let cfg = ModelConfig::Tdnnf(TdnnfConfig {
        dim: 10,
        bottleneck: 3,
        layers: 1,
        output_bottleneck: 4,
        ..Default::default()
    });
    let macs = 3 * FEAT * 10 + 2 * 10 * 3 + 2 * 3 * 10 + 10 * 4 + 4 * SENONES;
    assert!((cfg.summary(FEAT, SENONES).mflops_per_frame - 2.0 * macs as f64 / 1e6).abs() < 1e-12);
    // BLSTMP, 1 layer: both directions' input, recurrent and projection products.
    let cfg = ModelConfig::Lstm(LstmConfig {
        hidden: 10,
        layers: 1,
        bidirectional: true,
        projection: 4,
        ..Default::default()
    });
    let macs = 2 * (FEAT * 40 + 4 * 40 + 10 * 4) + 8 * SENONES;
    assert!((cfg.summary(FEAT, SENONES).mflops_per_frame - 2.0 * macs as f64 / 1e6).abs() < 1e-12);
}

#[test]
fn names() {
    assert_eq!(
        ModelConfig::Tdnnf(Default::default()).name(),
        "tdnnf 7x768/160"
    );
    assert_eq!(
        ModelConfig::Tdnnf(Default::default()).describe(80, 2000),
        "tdnnf 80-7x768/160-2000"
    );
    assert_eq!(
        ModelConfig::Tdnn(Default::default()).name(),
        "tdnn 6x512 ctx13/13"
    );
    assert_eq!(small_lstm(true, 5, 3, 2).name(), "blstm 2x12p5 ctx3/2");
    assert_eq!(ModelConfig::Lstm(Default::default()).name(), "lstm 3x512");
}

#[test]
fn toml_round_trip_and_defaults() {
    for cfg in all_small().into_iter().chain([
        ModelConfig::Dnn(Default::default()),
        ModelConfig::Tdnn(Default::default()),
        ModelConfig::Tdnnf(Default::default()),
        ModelConfig::Lstm(Default::default()),
    ]) {
        let text = toml::to_string(&cfg).unwrap();
        let back: ModelConfig = toml::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(back, cfg, "{text}");
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), cfg);
    }
    // A table with only non-default keys.
    let parse = |s: &str| toml::from_str::<ModelConfig>(s).unwrap();
    assert_eq!(
        parse("type = \"dnn\""),
        ModelConfig::Dnn(DnnConfig::default())
    );
    assert_eq!(
        parse("type = \"dnn\"\nhidden = 256\nlayers = 3\nnorm = \"batch\""),
        ModelConfig::Dnn(DnnConfig {
            hidden: 256,
            layers: 3,
            norm: Norm::Batch,
            ..Default::default()
        })
    );
    assert_eq!(
        parse("type = \"tdnn\"\nsplices = [[-1, 0, 1], [-3, 0, 3]]"),
        ModelConfig::Tdnn(TdnnConfig {
            splices: vec![vec![-1, 0, 1], vec![-3, 0, 3]],
            ..Default::default()
        })
    );
    assert_eq!(
        parse("type = \"tdnnf\"\ndim = 256\nbottleneck = 64\ntime_strides = [1, 1, 0, 3, 3, 3, 3]"),
        ModelConfig::Tdnnf(TdnnfConfig {
            dim: 256,
            bottleneck: 64,
            time_strides: Some(vec![1, 1, 0, 3, 3, 3, 3]),
            ..Default::default()
        })
    );
    assert_eq!(
        parse("type = \"lstm\"\nbidirectional = true\nextra_left = 20\nextra_right = 20"),
        ModelConfig::Lstm(LstmConfig {
            bidirectional: true,
            extra_left: 20,
            extra_right: 20,
            ..Default::default()
        })
    );
}

#[test]
fn unknown_fields_and_types_are_rejected() {
    for text in [
        "type = \"dnn\"\nhiden = 1024",
        "type = \"tdnn\"\nhidden = 512\nsplice = 5",
        "type = \"tdnnf\"\nbottelneck = 64",
        "type = \"lstm\"\nbidirectionnal = true",
        "type = \"cnn\"",
        "hidden = 1024",
        "type = \"dnn\"\nnorm = \"group\"",
    ] {
        let r = toml::from_str::<ModelConfig>(text);
        assert!(r.is_err(), "accepted: {text}");
    }
    let e = toml::from_str::<ModelConfig>("type = \"dnn\"\nhiden = 1024")
        .unwrap_err()
        .to_string();
    assert!(e.contains("hiden"), "{e}");
}

#[test]
fn validate_names_the_bad_key() {
    let bad = [
        (
            ModelConfig::Dnn(DnnConfig {
                hidden: 0,
                ..Default::default()
            }),
            "hidden",
        ),
        (
            ModelConfig::Dnn(DnnConfig {
                dropout: 1.0,
                ..Default::default()
            }),
            "dropout",
        ),
        (
            ModelConfig::Tdnn(TdnnConfig {
                splices: vec![],
                ..Default::default()
            }),
            "splices",
        ),
        (
            ModelConfig::Tdnn(TdnnConfig {
                splices: vec![vec![1, 0]],
                ..Default::default()
            }),
            "splices[0]",
        ),
        (
            ModelConfig::Tdnnf(TdnnfConfig {
                bottleneck: 0,
                ..Default::default()
            }),
            "bottleneck",
        ),
        (
            ModelConfig::Tdnnf(TdnnfConfig {
                time_strides: Some(vec![1, 1]),
                ..Default::default()
            }),
            "time_strides",
        ),
        (
            ModelConfig::Tdnnf(TdnnfConfig {
                bypass_scale: -1.0,
                ..Default::default()
            }),
            "bypass_scale",
        ),
        (
            ModelConfig::Lstm(LstmConfig {
                layers: 0,
                ..Default::default()
            }),
            "layers",
        ),
        (
            ModelConfig::Lstm(LstmConfig {
                dropout: -0.1,
                ..Default::default()
            }),
            "dropout",
        ),
    ];
    for (cfg, key) in bad {
        let e = cfg.validate().unwrap_err();
        assert!(e.contains(key), "{e}");
        let vm = VarMap::new();
        assert!(cfg
            .build(
                FEAT,
                SENONES,
                VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu)
            )
            .is_err());
    }
    for cfg in all_small() {
        cfg.validate().unwrap();
    }
}

#[test]
fn splice_reads_the_offset_frames() {
    // One feature whose value is the frame index.
    let xs = Tensor::arange(0f32, 10.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 10, 1))
        .unwrap();
    let y = splice(&xs, &[-3, 0, 2], 3, 2).unwrap();
    assert_eq!(y.dims(), &[1, 5, 3]);
    let rows: Vec<Vec<f32>> = y.squeeze(0).unwrap().to_vec2().unwrap();
    for (t, row) in rows.iter().enumerate() {
        let c = (t + 3) as f32;
        assert_eq!(row, &vec![c - 3.0, c, c + 2.0]);
    }
}

#[test]
fn lstm_extra_context_is_trimmed_and_direction_is_respected() {
    // The same weights (same VarMap) with and without extra context: the trimmed output
    // is the middle of the untrimmed one.
    for bidirectional in [false, true] {
        let vm = VarMap::new();
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        let plain = small_lstm(bidirectional, 0, 0, 0)
            .build(FEAT, SENONES, vb.clone())
            .unwrap();
        let wide = small_lstm(bidirectional, 0, 3, 2)
            .build(FEAT, SENONES, vb)
            .unwrap();
        let xs = randn(2, 12, FEAT, 4);
        let full = plain.forward_t(&xs, false).unwrap();
        let trimmed = wide.forward_t(&xs, false).unwrap();
        assert_eq!(trimmed.dims(), &[2, 7, SENONES]);
        let diff = (full.narrow(1, 3, 7).unwrap() - trimmed)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);

        // Change the last frame: a forward-only LSTM's first output cannot see it.
        let last = randn(2, 1, FEAT, 5);
        let xs2 = Tensor::cat(&[xs.narrow(1, 0, 11).unwrap(), last], 1).unwrap();
        let first = |x: &Tensor| plain.forward_t(x, false).unwrap().narrow(1, 0, 1).unwrap();
        let d = (first(&xs) - first(&xs2))
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        let d = d.to_scalar::<f32>().unwrap();
        if bidirectional {
            assert!(
                d > 1e-6,
                "the backward direction should carry the last frame to the first"
            );
        } else {
            assert_eq!(d, 0.0);
        }
    }
}

/// max |M M^T / s^2 - I| with s^2 = tr(M M^T) / rows (the scale M M^T is nearest to).
fn orthonormality_error(m: &Tensor) -> f64 {
    let m = m.to_dtype(DType::F64).unwrap();
    let p = m.matmul(&m.t().unwrap()).unwrap();
    let r = p.dim(0).unwrap();
    let s2 = m
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        / r as f64;
    let eye = Tensor::eye(r, DType::F64, &Device::Cpu).unwrap();
    ((p / s2).unwrap() - eye)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
}

#[test]
fn orthonormal_constraint_drives_m_mt_to_a_scaled_identity() {
    // Rows of very different norms, correlated: far from semi-orthogonal.
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (rows, cols) = (12, 40);
    let base: Vec<f32> = (0..cols).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let v: Vec<f32> = (0..rows * cols)
        .map(|i| {
            let r = i / cols;
            let scale = 0.5 + 1.5 * r as f32 / rows as f32;
            scale * (rng.gen_range(-1.0f32..1.0) + 0.5 * base[i % cols])
        })
        .collect();
    let mut m = Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap();
    let start = orthonormality_error(&m);
    assert!(start > 0.5, "start {start}");
    let mut errs = vec![start];
    for _ in 0..60 {
        m = constrain_orthonormal(&m).unwrap();
        errs.push(orthonormality_error(&m));
    }
    assert!(errs[10] < start, "{errs:?}");
    assert!(*errs.last().unwrap() < 1e-4, "{errs:?}");
    // The tall orientation is constrained through its transpose: M^T M -> scaled identity.
    let mut tall = m.t().unwrap().contiguous().unwrap();
    tall = (tall * 3.0).unwrap();
    for _ in 0..3 {
        tall = constrain_orthonormal(&tall).unwrap();
    }
    assert_eq!(tall.dims(), &[cols, rows]);
    assert!(orthonormality_error(&tall.t().unwrap()) < 1e-4);
}

#[test]
fn tdnnf_after_step_constrains_every_nth_step() {
    let cfg = ModelConfig::Tdnnf(TdnnfConfig {
        dim: 16,
        bottleneck: 6,
        layers: 2,
        orthonormal_every: 3,
        ..Default::default()
    });
    let (vm, model) = build(&cfg);
    let down = |vm: &VarMap| {
        vm.data().lock().unwrap()["layers.0.down.weight"]
            .as_tensor()
            .copy()
            .unwrap()
    };
    let up = |vm: &VarMap| {
        vm.data().lock().unwrap()["layers.0.up.weight"]
            .as_tensor()
            .copy()
            .unwrap()
    };
    let before = (down(&vm), up(&vm));
    let e0 = orthonormality_error(&before.0);
    model.after_step(1).unwrap();
    model.after_step(2).unwrap();
    let same = (down(&vm) - &before.0)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(same, 0.0, "steps 1 and 2 leave the weights alone");
    for step in [3, 6, 9, 12, 15, 18] {
        model.after_step(step).unwrap();
    }
    let e1 = orthonormality_error(&down(&vm));
    assert!(e1 < 0.2 * e0, "{e0} -> {e1}");
    let up_diff = (up(&vm) - &before.1)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(up_diff, 0.0, "only the first factor is constrained");
}

/// A few hundred AdamW steps on one random batch must drive the cross-entropy far down.
fn overfits(cfg: ModelConfig, steps: usize) {
    let (vm, model) = build(&cfg);
    let ctx = model.context();
    let (b, t) = (4, 10);
    let xs = randn(b, t + ctx.total(), FEAT, 11);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let labels: Vec<u32> = (0..b * t)
        .map(|_| rng.gen_range(0..SENONES as u32))
        .collect();
    let labels = Tensor::from_vec(labels, b * t, &Device::Cpu).unwrap();
    let params = candle_nn::ParamsAdamW {
        lr: 1e-2,
        weight_decay: 0.0,
        ..Default::default()
    };
    let mut opt = candle_nn::AdamW::new(vm.all_vars(), params).unwrap();
    let loss = |train: bool| {
        let logits = model
            .forward_t(&xs, train)
            .unwrap()
            .reshape((b * t, SENONES))
            .unwrap();
        candle_nn::loss::cross_entropy(&logits, &labels).unwrap()
    };
    let first = loss(true).to_scalar::<f32>().unwrap();
    for step in 1..=steps {
        let l = loss(true);
        opt.backward_step(&l).unwrap();
        model.after_step(step as u64).unwrap();
    }
    let last = loss(true).to_scalar::<f32>().unwrap();
    assert!(
        last < 0.1 * first && last < 0.2,
        "{}: cross-entropy {first} -> {last}",
        cfg.name()
    );
    // Evaluation mode (running statistics) agrees with the labels too.
    let logits = model
        .forward_t(&xs, false)
        .unwrap()
        .reshape((b * t, SENONES))
        .unwrap();
    let pred: Vec<u32> = logits.argmax(D::Minus1).unwrap().to_vec1().unwrap();
    let gold: Vec<u32> = labels.to_vec1().unwrap();
    let acc = pred.iter().zip(&gold).filter(|(a, b)| a == b).count() as f64 / gold.len() as f64;
    assert!(acc > 0.5, "{}: eval accuracy {acc}", cfg.name());
}

#[test]
fn dnn_overfits_a_batch() {
    overfits(small_dnn(), 200);
}

#[test]
fn tdnn_overfits_a_batch() {
    overfits(small_tdnn(), 200);
}

#[test]
fn tdnnf_overfits_a_batch() {
    overfits(small_tdnnf(), 200);
}

#[test]
fn lstm_overfits_a_batch() {
    overfits(small_lstm(false, 0, 0, 0), 200);
}

#[test]
fn blstmp_overfits_a_batch() {
    overfits(small_lstm(true, 6, 2, 2), 200);
}

#[test]
fn fused_linear_is_used_for_hidden_layers() {
    // The DNN's forward equals the plain formula over its own weights: relu(x W^T + b) chain.
    let cfg = ModelConfig::Dnn(DnnConfig {
        splice: 1,
        hidden: 5,
        layers: 1,
        ..Default::default()
    });
    let (vm, model) = build(&cfg);
    let xs = randn(1, 6, FEAT, 13);
    let get = |n: &str| vm.data().lock().unwrap()[n].as_tensor().clone();
    let spliced = splice(&xs, &[-1, 0, 1], 1, 1).unwrap().squeeze(0).unwrap();
    let h = candle_nn::Linear::new(
        get("hidden.0.linear.weight"),
        Some(get("hidden.0.linear.bias")),
    )
    .forward(&spliced)
    .unwrap()
    .relu()
    .unwrap();
    let want = candle_nn::Linear::new(get("output.weight"), Some(get("output.bias")))
        .forward(&h)
        .unwrap();
    let got = model.forward_t(&xs, false).unwrap().squeeze(0).unwrap();
    let d = (want - got)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-5, "{d}");
}

/// Inference throughput at 512 frames per call (4 chunks of 128 labelled frames plus
/// context), 80 bins, 2000 senones. Run by hand:
/// `RAYON_NUM_THREADS=1 cargo test --release --lib models::tests::forward_speed -- --ignored --nocapture`
#[test]
#[ignore]
fn forward_speed() {
    let cases = [
        ("dnn 880-6x1024-2000", ModelConfig::Dnn(Default::default())),
        (
            "tdnnf 80-7x256/64-2000",
            ModelConfig::Tdnnf(TdnnfConfig {
                dim: 256,
                bottleneck: 64,
                ..Default::default()
            }),
        ),
        ("tdnn 80-6x512-2000", ModelConfig::Tdnn(Default::default())),
        ("lstm 80-3x512-2000", ModelConfig::Lstm(Default::default())),
    ];
    for (what, cfg) in cases {
        let vm = VarMap::new();
        let model = cfg
            .build(
                80,
                2000,
                VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
            )
            .unwrap();
        let s = cfg.summary(80, 2000);
        let (chunks, frames) = (4, 128);
        let xs = randn(chunks, frames + model.context().total(), 80, 1);
        for _ in 0..3 {
            model.forward_t(&xs, false).unwrap();
        }
        let t0 = std::time::Instant::now();
        let mut n = 0;
        while t0.elapsed().as_secs_f64() < 3.0 || n < 3 {
            let y = model.forward_t(&xs, false).unwrap();
            assert_eq!(y.dims(), &[chunks, frames, 2000]);
            n += 1;
        }
        let fps = (n * chunks * frames) as f64 / t0.elapsed().as_secs_f64();
        println!(
            "{what}: {:.3} M params, {:.2} MFLOP/frame, {fps:.0} frames/s, {:.2} GFLOP/s",
            s.params as f64 / 1e6,
            s.mflops_per_frame,
            fps * s.mflops_per_frame / 1e3
        );
    }
}

#[test]
fn folded_batch_norm_matches_candle_in_eval() {
    let vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let norm = super::layers::NormLayer::batch(5, vb).unwrap();
    // Move the running statistics and the affine parameters away from their start.
    for seed in 0..4 {
        let x = ((randn(3, 7, 5, 20 + seed) * 2.0).unwrap() + 1.5).unwrap();
        norm.forward_t(&x, true).unwrap();
    }
    for (name, var) in vm.data().lock().unwrap().iter() {
        if name == "weight" || name == "bias" {
            var.set(&(randn(1, 1, 5, 30).reshape(5).unwrap() + 1.0).unwrap())
                .unwrap();
        }
    }
    let super::layers::NormLayer::Batch(bn) = &norm else {
        unreachable!()
    };
    assert!(bn
        .running_mean()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .all(|&m| m > 0.3));
    let x = randn(2, 6, 5, 40);
    let got = norm.forward_t(&x, false).unwrap();
    let want = candle_core::ModuleT::forward_t(bn, &x.reshape((12, 5)).unwrap(), false)
        .unwrap()
        .reshape((2, 6, 5))
        .unwrap();
    let d = (got - want)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(d < 1e-5, "{d}");
}
