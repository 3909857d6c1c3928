//! Labels: phone times, phone sets, per-frame labels, the senone tree and alignments.
//!
//! Phone times travel between stages as CTM ([`ctm`]). The parsers ([`timit`], [`hts`],
//! [`textgrid`]) read corpus label files into [`PhoneLabel`]s (times in seconds plus the source
//! line, for errors); [`phones::PhoneSet::canonical_segments`] checks them against a phone set;
//! [`frame_labels`] turns phone times into per-frame `(phone, state)` labels with context;
//! [`kaldi_ali`] reads and writes per-frame ids in Kaldi's `ali-to-pdf ... ark,t:-` shape.

pub mod ctm;
pub mod frame_labels;
pub mod hts;
pub mod kaldi_ali;
pub mod kaldi_lang;
pub mod phones;
pub mod senone_pipeline;
pub mod soft_targets;
pub mod textgrid;
pub mod timit;
pub mod tree;
pub mod tree_questions;

pub use ctm::{read_ctm, write_ctm, PhoneSegment};
pub use frame_labels::{
    check_frame_counts, frame_phone_labels, ContextLabel, FrameCountReport, FrameGeometry,
    FrameLabel, FrameLabeler,
};
pub use kaldi_ali::{read_alignments, write_alignments};
pub use phones::{PhoneClass, PhoneSet};

/// One phone read from a label file: times in seconds and the 1-based line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneLabel {
    /// The phone as the file spells it (not yet mapped to a phone set).
    pub phone: String,
    /// Start time in seconds.
    pub start: f64,
    /// End time in seconds.
    pub end: f64,
    /// 1-based line of the label file (for error messages).
    pub line: usize,
}

impl PhoneLabel {
    /// The phone and its times, without the source line.
    pub fn to_segment(&self) -> PhoneSegment {
        PhoneSegment {
            phone: self.phone.clone(),
            start: self.start,
            end: self.end,
        }
    }
}
