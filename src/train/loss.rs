//! Training losses: cross-entropy with label smoothing, knowledge distillation.
