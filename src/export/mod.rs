//! Export: the self-contained bundle a device loads ([`bundle`]), its weights file format
//! ([`weights`]), the ONNX models in it ([`onnx`]) and the audio-to-posteriors streamer
//! ([`streamer`]) that the `stream` command and the C ABI run.

pub mod bundle;
pub mod onnx;
pub mod streamer;
pub mod weights;

pub use bundle::{export, Bundle, ExportOptions, Manifest, Precision};
pub use streamer::Streamer;
