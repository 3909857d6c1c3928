//! Features: Kaldi-compatible log-mel filterbanks, offline and streaming, CMVN, and the
//! feature store.
//!
//! Units: samples are f32 in [-1, 1] (scaled to int16 range inside, as Kaldi computes);
//! feature matrices are `[frames, dim]` with `dim = num_mel_bins (+1 with use-energy)`.

pub mod cmvn;
pub mod fbank;
pub mod kaldi_io;
pub mod matrix;
pub mod mel;
pub mod options;
pub mod store;
pub mod streaming;
pub mod window;

pub use fbank::Fbank;
pub use matrix::Matrix;
pub use options::{FbankOptions, FrameOptions, MelOptions, WindowType};
pub use streaming::StreamingFbank;
