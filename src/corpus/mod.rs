//! Corpora as Kaldi data directories: table files, data directories, validation and importers.

pub mod data_dir;
pub mod table;

pub use data_dir::{DataDir, Segment, UttAudio};
