//! Scoring: frame accuracy, agreement, KL, per-phone accuracy; comparison tables and plots.
//!
//! - [`metrics`]: [`Scorer`] accumulates per-frame model scores against alignments (and a
//!   teacher) into a [`Score`] (JSON).
//! - [`compare`]: one table (markdown, CSV) over several score files.
//! - [`plots`]: learning curves and accuracy against model size (PNG and SVG).

pub mod compare;
pub mod metrics;
pub mod plots;

pub use compare::{CompareTable, ScoredModel};
pub use metrics::{
    senone_phones, Confusion, FoldedScore, Metrics, ModelInfo, PhoneScore, Score, ScoreConfig,
    Scorer,
};
