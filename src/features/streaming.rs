//! Streaming fbank: audio in chunks of any size, each frame out as soon as it is complete.
//! Concatenated, the frames equal [`Fbank::compute`] on the whole utterance bit for bit, for
//! both snip-edges settings (same extraction, same per-frame dither seeds).
//!
//! Frame `t` is complete once its last sample has arrived. With snip-edges false the last few
//! frames reach past the end of the audio and are reflected there, so they come out only at
//! [`StreamingFbank::finish`], when the length is known.

use crate::error::Result;
use crate::features::fbank::{first_sample_of_frame, num_frames, Fbank, FbankScratch};
use crate::features::options::FbankOptions;

/// Incremental fbank over one utterance.
pub struct StreamingFbank {
    fbank: Fbank,
    scratch: FbankScratch,
    dither_seed: u64,
    /// Samples from absolute index `buffer_offset` to `received`.
    buffer: Vec<f32>,
    buffer_offset: usize,
    received: usize,
    next_frame: usize,
    finished: bool,
}

impl StreamingFbank {
    /// A stream for one utterance; use the same `dither_seed` as offline to get equal output.
    pub fn new(fbank: &Fbank, dither_seed: u64) -> Self {
        StreamingFbank {
            fbank: fbank.clone(),
            scratch: fbank.scratch(),
            dither_seed,
            buffer: Vec::new(),
            buffer_offset: 0,
            received: 0,
            next_frame: 0,
            finished: false,
        }
    }

    /// Builds the computer from options, then the stream.
    pub fn from_options(opts: &FbankOptions, dither_seed: u64) -> Result<Self> {
        Ok(Self::new(&Fbank::new(opts)?, dither_seed))
    }

    /// Feature dimension of each frame.
    pub fn dim(&self) -> usize {
        self.fbank.dim()
    }

    /// Frames emitted so far.
    pub fn frames_emitted(&self) -> usize {
        self.next_frame
    }

    /// Samples received so far.
    pub fn samples_received(&self) -> usize {
        self.received
    }

    /// Appends `chunk` (samples in [-1, 1]) and writes every newly complete frame to `out`
    /// (`dim` values per frame, appended). Returns the number of frames written.
    /// Panics if called after [`StreamingFbank::finish`] (start a new stream with `reset`).
    pub fn accept(&mut self, chunk: &[f32], out: &mut Vec<f32>) -> usize {
        assert!(
            !self.finished,
            "StreamingFbank::accept after finish; call reset() first"
        );
        self.buffer.extend_from_slice(chunk);
        self.received += chunk.len();
        let len = self.fbank.options().window_size() as i64;
        let mut n = 0;
        loop {
            let start = first_sample_of_frame(self.next_frame, self.fbank.options());
            if start + len > self.received as i64 {
                break;
            }
            self.emit(start, out);
            n += 1;
        }
        self.drop_consumed();
        n
    }

    /// Declares the end of the utterance and writes the remaining frames (those that needed
    /// the end of the audio). Returns the number of frames written.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> usize {
        if self.finished {
            return 0;
        }
        self.finished = true;
        let total = num_frames(self.received, self.fbank.options());
        let mut n = 0;
        while self.next_frame < total {
            let start = first_sample_of_frame(self.next_frame, self.fbank.options());
            self.emit(start, out);
            n += 1;
        }
        n
    }

    /// Forgets the utterance and starts a new one with `dither_seed`.
    pub fn reset(&mut self, dither_seed: u64) {
        self.buffer.clear();
        self.buffer_offset = 0;
        self.received = 0;
        self.next_frame = 0;
        self.finished = false;
        self.dither_seed = dither_seed;
    }

    fn emit(&mut self, start: i64, out: &mut Vec<f32>) {
        let dim = self.fbank.dim();
        let at = out.len();
        out.resize(at + dim, 0.0);
        self.fbank.extract_window(
            &self.buffer,
            self.buffer_offset,
            self.received,
            start,
            &mut self.scratch.raw,
        );
        self.fbank.compute_frame(
            &mut self.scratch,
            self.next_frame,
            self.dither_seed,
            &mut out[at..],
        );
        self.next_frame += 1;
    }

    /// Drops samples no future frame can reach. Reflection at the end can reach a sample or so
    /// before a frame's start (odd frame lengths), so keep one frame length of margin.
    fn drop_consumed(&mut self) {
        let opts = self.fbank.options();
        let keep_from = first_sample_of_frame(self.next_frame, opts) - opts.window_size() as i64;
        if keep_from <= self.buffer_offset as i64 {
            return;
        }
        let drop = keep_from as usize - self.buffer_offset;
        // Amortise: shift the buffer only when the dead part is large.
        if drop >= 4096 || drop * 2 >= self.buffer.len() {
            self.buffer.drain(..drop);
            self.buffer_offset += drop;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_offline_for_fixed_chunkings() {
        let x: Vec<f32> = (0..5003)
            .map(|i| ((i * 7919) % 1000) as f32 / 2000.0 - 0.25)
            .collect();
        for profile in ["kaldi", "modern80"] {
            let o = FbankOptions::profile(profile).unwrap(); // with dither
            let f = Fbank::new(&o).unwrap();
            let offline = f.compute(&x, 42);
            for chunk in [1, 7, 160, 399, 4096, 10000] {
                let mut s = StreamingFbank::new(&f, 42);
                let mut out = Vec::new();
                for c in x.chunks(chunk) {
                    s.accept(c, &mut out);
                }
                s.finish(&mut out);
                assert_eq!(out, offline.data, "profile {profile} chunk {chunk}");
            }
        }
    }
}
