//! Scoring: frame accuracy, agreement, KL, per-phone accuracy; comparison tables and plots.
