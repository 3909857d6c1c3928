//! Fast layers and optimisers over candle: the hot paths of training, fused where candle's
//! generic kernels cost more than the arithmetic.

pub mod adamw;
pub mod linear;

pub use adamw::{AdamW, AdamWConfig};
pub use linear::{linear, Linear};
