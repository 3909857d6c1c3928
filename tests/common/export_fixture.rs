//! Fixtures for the export tests (`#[path]`-included by tests/export.rs and tests/capi.rs):
//! test audio and a model directory as `amdistill train` leaves it, with random weights.
#![allow(dead_code)]

use std::path::Path;

use amdistill::features::cmvn::CmvnStats;
use amdistill::features::fbank::Fbank;
use amdistill::features::options::FbankOptions;
use amdistill::models::ModelConfig;
use amdistill::train::config::CmvnMode;
use amdistill::train::trained::{CmvnCard, GlobalCmvn, ModelCard, MODEL_FORMAT};
use candle_core::{DType, Device};

pub const SENONES: usize = 13;

/// One second of a chirp with noise at 16 kHz (deterministic).
pub fn audio(seconds: f32, seed: u32) -> Vec<f32> {
    let n = (16000.0 * seconds) as usize;
    let mut state = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|i| {
            state = state.wrapping_mul(1664525).wrapping_add(1013904223);
            let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let t = i as f32 / 16000.0;
            0.3 * (2.0 * std::f32::consts::PI * (200.0 + 900.0 * t) * t).sin() + 0.05 * noise
        })
        .collect()
}

/// A model directory for `cfg` with seeded random weights and global CMVN statistics of
/// the test audio, as `amdistill train` would leave it.
pub fn model_dir(dir: &Path, cfg: &ModelConfig, cmvn: CmvnMode) {
    let fbank = FbankOptions::default();
    let dim = fbank.dim();
    let varmap = candle_nn::VarMap::new();
    let vb = amdistill::nn::init::seeded_var_builder(&varmap, 7, DType::F32, &Device::Cpu);
    let model = cfg.build(dim, SENONES, vb).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    varmap.save(dir.join("model.safetensors")).unwrap();
    let feats = Fbank::new(&fbank).unwrap().compute(&audio(1.0, 1), 0);
    let mut stats = CmvnStats::new(dim);
    stats.accumulate(&feats).unwrap();
    let card = ModelCard {
        format: MODEL_FORMAT.into(),
        name: cfg.describe(dim, SENONES),
        model: cfg.clone(),
        input_dim: dim,
        num_senones: SENONES,
        senones_id: "test".into(),
        context: model.context(),
        params: 0,
        mflops_per_frame: 0.0,
        frame_shift: 0.01,
        fbank: Some(fbank),
        cmvn: CmvnCard {
            mode: cmvn,
            norm_vars: true,
            global: Some(GlobalCmvn::from_stats(&stats)),
        },
        log_priors: vec![-(SENONES as f32).ln(); SENONES],
        training: serde_json::Value::Null,
    };
    std::fs::write(
        dir.join("model.json"),
        serde_json::to_string(&card).unwrap(),
    )
    .unwrap();
    let senones: String = (0..SENONES).map(|i| format!("{i} sil 0 -\n")).collect();
    std::fs::write(dir.join("senones.txt"), senones).unwrap();
}
