//! ONNX export of a runtime graph (fp32 and int8), protobuf messages derived with prost.
//!
//! ```text
//! Graph --to_onnx--> ModelProto bytes (opset 17, default domain only)
//!   input  "features"        float [N, T, input_dim]       CMVN-normalised fbank, context included
//!   output "log_posteriors"  float [N, T - left - right, senones]
//! ```
//!
//! Every runtime op maps to standard ONNX ops ([`writer`] documents each); the time axis is
//! axis 1 throughout. Int8 affines follow [`Int8Form`]; int8 LSTM input weights are stored
//! int8 and dequantised for the ONNX `LSTM` op (weight-only int8 there). LSTMs with a
//! projection (LSTMP) have no ONNX equivalent and are refused.

pub mod proto;
mod writer;

pub use writer::{
    to_onnx, to_onnx_with, write_onnx, write_onnx_with, Int8Form, OnnxOptions, INPUT_NAME, OPSET,
    OUTPUT_NAME,
};
