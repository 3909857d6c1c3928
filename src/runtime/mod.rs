//! Inference runtime: a trained model lowered to a small graph of frame-level ops
//! ([`graph`]), run offline ([`Runtime::forward`]) or streaming with the same kernels, in
//! fp32 or int8 ([`quant`]).
//!
//! ```text
//! ModelConfig + weights --lower--> Graph --quantize?--> Runtime (packed weights)
//!                                                        |-- forward: [T + L + R, F] -> [T, S]
//!                                                        '-- stream:  frames in, frames out
//! ```

pub mod engine;
pub mod graph;
pub mod kernels;
pub mod lower;
pub mod quant;
pub mod stream;

pub use engine::Runtime;
pub use graph::{Graph, LstmOp, Node, NodeId, Op, QuantMatrix, Span, Weights};
pub use lower::{lower, varmap_tensors};
pub use quant::quantize;
pub use stream::{FrameStream, GraphStream};
