//! Export: the self-contained bundle a device loads, and the ONNX models in it.

pub mod onnx;
