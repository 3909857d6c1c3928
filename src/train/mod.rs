//! Training: data loading, losses, the optimisation loop, checkpoints.

pub mod data;
pub mod loss;
