//! Corpora as Kaldi data directories: table files, data directories, validation and importers.

pub mod data_dir;
pub mod import;
pub mod synth;
pub mod table;
pub mod validate;

pub use data_dir::{DataDir, Segment, UttAudio};
pub use validate::{fix_data_dir, validate_data_dir, FixReport, Problem, ValidateOptions};
