//! Fast layers, losses and optimisers over candle: the hot paths of training, fused where
//! candle's generic kernels cost more than the arithmetic (f32 on the CPU; other devices and
//! dtypes fall back to candle's ops with the same meaning).

pub mod adamw;
pub mod init;
mod kernels;
pub mod linear;
pub mod loss;

pub use adamw::{clip_grad_norm, grad_norm, AdamW, AdamWConfig, AdamWState};
pub use init::seeded_var_builder;
pub use linear::{linear, Linear};
pub use loss::{
    cross_entropy, kl_div_soft_targets, log_softmax_last, weighted_cross_entropy, weighted_soft_kl,
};

#[cfg(test)]
mod tests;
