//! # amdistill
//!
//! Distils large speech acoustic models into compact students for voice assistants.
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! audio (WAV/SPHERE/FLAC) --> features (log-mel fbank, CMVN) --> feature store (Kaldi ark/scp)
//! corpus labels (phone times) --> senone tree --> alignments (one senone id per frame)
//! ```
//!
//! - [`corpus`]: Kaldi data directories (`wav.scp`, `text`, `utt2spk`, `spk2utt`, `segments`).
//! - [`audio`]: any supported file to mono f32 samples in [-1, 1] at the configured rate.
//! - [`features`]: [`features::FbankOptions`] (Kaldi's options and names),
//!   [`features::Fbank`] (offline), [`features::StreamingFbank`] (chunks in, frames out,
//!   identical to offline), CMVN and the feature store.
//!
//! ```
//! use amdistill::features::{Fbank, FbankOptions};
//! let mut opts = FbankOptions::profile("modern80").unwrap();
//! opts.frame.dither = 0.0;
//! let fbank = Fbank::new(&opts).unwrap();
//! let samples: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin() * 0.1).collect();
//! let feats = fbank.compute(&samples, 0); // [frames, bins] = [100, 80]
//! assert_eq!((feats.rows, feats.cols), (100, 80));
//! ```

pub mod align;
pub mod atomic;
pub mod audio;
pub mod capi;
pub mod corpus;
pub mod error;
pub mod export;
pub mod features;
pub mod labels;
pub mod models;
pub mod nn;
pub mod progress;
pub mod runtime;
pub mod scoring;
pub mod train;

pub use error::{Error, Result};
