//! Audio in, log-posteriors out: a bundle's fbank computed on the fly, its model streamed
//! frame by frame. What a voice assistant embeds (and what the C ABI wraps).
//!
//! ```text
//! PCM chunk (any size, f32 in [-1, 1]) -> StreamingFbank -> raw fbank frame [F]
//!   -> FrameStream (CMVN folded into the graph) -> log-posterior frames [S] as soon as the
//!      model's right context has arrived
//! ```
//!
//! Concatenated over an utterance the output equals [`Streamer::offline`] on the whole audio
//! bit for bit, for any chunking: the same fbank frames (dither off) go through the same
//! kernels. Frame `t` of the output needs audio up to the end of feature frame
//! `t + latency_frames()`; `finish` flushes the rest (the right edge is padded by repeating
//! the last frame, as offline).

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::export::bundle::{Bundle, Precision};
use crate::features::fbank::Fbank;
use crate::features::options::FbankOptions;
use crate::features::streaming::StreamingFbank;
use crate::features::Matrix;
use crate::runtime::{FrameStream, Runtime};

/// One utterance at a time of streaming recognition input.
pub struct Streamer {
    runtime: Arc<Runtime>,
    fbank: Fbank,
    features: StreamingFbank,
    model: FrameStream,
    /// Feature frames produced by the last `accept`, `dim` each.
    feats: Vec<f32>,
    sample_rate: u32,
}

impl Streamer {
    /// A streamer for `bundle` at `precision`; refuses bidirectional models and models
    /// trained on external features.
    pub fn new(bundle: &Bundle, precision: Precision) -> Result<Self> {
        if !bundle.manifest.streamable {
            return Err(Error::config(format!(
                "bundle {}: {} reads the future of the whole utterance (bidirectional) and cannot stream",
                bundle.dir.display(),
                bundle.card().name
            )));
        }
        let rt = Arc::new(bundle.runtime(precision)?);
        Self::from_runtime(rt, &bundle.fbank_options()?)
    }

    /// A streamer for a runtime whose graph reads raw fbank frames of `opts`.
    pub fn from_runtime(runtime: Arc<Runtime>, opts: &FbankOptions) -> Result<Self> {
        let fbank = Fbank::new(opts)?;
        if fbank.dim() != runtime.input_dim() {
            return Err(Error::Mismatch(format!(
                "fbank options give {} features per frame, the model reads {}",
                fbank.dim(),
                runtime.input_dim()
            )));
        }
        Ok(Streamer {
            model: FrameStream::new(runtime.clone())?,
            features: StreamingFbank::new(&fbank, 0),
            sample_rate: opts.frame.sample_frequency as u32,
            fbank,
            runtime,
            feats: Vec::new(),
        })
    }

    /// Log-posteriors per output frame.
    pub fn num_senones(&self) -> usize {
        self.runtime.output_dim()
    }

    /// The audio rate it expects, Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Feature frames between a frame's audio arriving and its log-posteriors coming out
    /// (the model's right context).
    pub fn latency_frames(&self) -> usize {
        self.model.latency()
    }

    /// Algorithmic latency in seconds: the right context in frame shifts plus the part of
    /// the analysis window past the frame shift.
    pub fn latency_seconds(&self) -> f64 {
        let o = self.fbank.options();
        let shift = o.frame_shift_seconds();
        let window = o.window_size() as f64 / o.frame.sample_frequency as f64;
        self.latency_frames() as f64 * shift + (window - shift).max(0.0)
    }

    /// Feature frames consumed and log-posterior frames returned in this utterance.
    pub fn counts(&self) -> (usize, usize) {
        self.model.counts()
    }

    /// Appends `samples`; writes each newly ready log-posterior frame (`num_senones` values)
    /// to `out`. Returns the number of frames written.
    pub fn push(&mut self, samples: &[f32], out: &mut Vec<f32>) -> usize {
        self.feats.clear();
        let n = self.features.accept(samples, &mut self.feats);
        self.run_model(n, out)
    }

    /// Ends the utterance: the last feature frames and the right edge. The streamer is then
    /// ready for the next utterance.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> usize {
        self.feats.clear();
        let n = self.features.finish(&mut self.feats);
        let mut written = self.run_model(n, out);
        written += self.model.finish(out);
        self.features.reset(0);
        written
    }

    /// Drops the utterance in progress: buffered audio and frames not yet returned.
    pub fn reset(&mut self) {
        self.features.reset(0);
        self.model.reset();
    }

    fn run_model(&mut self, frames: usize, out: &mut Vec<f32>) -> usize {
        let d = self.fbank.dim();
        (0..frames)
            .map(|f| self.model.push(&self.feats[f * d..(f + 1) * d], out))
            .sum()
    }

    /// Offline reference: the whole utterance's features, then [`Runtime::forward_utterance`].
    pub fn offline(&self, samples: &[f32]) -> Result<Matrix> {
        let feats = self.fbank.compute(samples, 0);
        self.runtime.forward_utterance(&feats)
    }
}
