//! Training: data loading, losses, the optimisation loop, checkpoints, teachers.
//!
//! - [`config`]: the TOML training configuration (`amdistill train CONFIG.toml OUT_DIR`).
//! - [`data`]: chunked, shuffled, prefetched batches under a memory limit.
//! - [`loss`]: cross-entropy with label smoothing and the distillation loss.
//! - [`trainer`]: the loop, validation, early stopping, checkpoints and exact resume.
//! - [`checkpoint`]: safetensors files with metadata.
//! - [`trained`]: a trained model directory, loaded ([`trained::ModelCard`], model.json).
//! - [`teacher`]: one model or an ensemble whose averaged posteriors act as one.
//! - [`kd`]: soft targets (offline or online) for student batches.

pub mod checkpoint;
pub mod config;
pub mod data;
pub mod kd;
pub mod loss;
pub mod teacher;
pub mod trained;
pub mod trainer;
