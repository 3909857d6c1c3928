//! Labels: phone times, phone sets, per-frame labels, the senone tree and alignments.

pub mod ctm;

pub use ctm::{read_ctm, write_ctm, PhoneSegment};
