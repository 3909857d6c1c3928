//! Offline log-mel filterbank, exactly Kaldi's `compute-fbank-feats` (DOMAIN.md §2).
//!
//! Per frame: extract `frame_length` samples (int16 scale), dither, remove the DC offset, take
//! the raw log energy, preemphasise, window, zero-pad to the FFT size, power spectrum, mel
//! filter bank, log floored at `f32::EPSILON`, energy first (or last with htk-compat).
//!
//! Frame count ([`num_frames`]): with snip-edges `1 + (n - len) / shift` (0 if `n < len`);
//! without, `(n + shift / 2) / shift` frames, frame `t` centred on `t * shift + shift / 2`
//! with the audio reflected at both edges. Every stage downstream relies on this formula.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{RealFftPlanner, RealToComplex};

use crate::error::Result;
use crate::features::matrix::Matrix;
use crate::features::mel::MelBanks;
use crate::features::options::FbankOptions;
use crate::features::window::window_function;

/// Kaldi feeds samples in int16 range; our audio is in [-1, 1].
pub const INT16_SCALE: f32 = 32768.0;

/// Number of frames for `num_samples` of audio once the input is complete.
pub fn num_frames(num_samples: usize, opts: &FbankOptions) -> usize {
    let (len, shift) = (opts.window_size(), opts.window_shift());
    if opts.frame.snip_edges {
        if num_samples < len {
            0
        } else {
            1 + (num_samples - len) / shift
        }
    } else {
        (num_samples + shift / 2) / shift
    }
}

/// First sample of frame `frame` (negative before the start with snip-edges false).
pub fn first_sample_of_frame(frame: usize, opts: &FbankOptions) -> i64 {
    let shift = opts.window_shift() as i64;
    if opts.frame.snip_edges {
        frame as i64 * shift
    } else {
        frame as i64 * shift + shift / 2 - opts.window_size() as i64 / 2
    }
}

/// Per-thread work buffers of one [`Fbank`].
pub struct FbankScratch {
    /// `[frame_length]` the extracted samples, int16 scale.
    pub(crate) raw: Vec<f32>,
    /// `[padded]` the windowed frame, FFT input.
    frame: Vec<f32>,
    /// `[padded / 2 + 1]` FFT output.
    spectrum: Vec<Complex<f32>>,
    fft_scratch: Vec<Complex<f32>>,
    /// `[padded / 2 + 1]` power (or magnitude) spectrum.
    power: Vec<f32>,
}

/// A configured fbank computer: window, mel banks and FFT plan built once. Cheap to clone
/// and shareable across threads.
#[derive(Clone)]
pub struct Fbank {
    opts: FbankOptions,
    window: Arc<[f32]>,
    mel: Arc<MelBanks>,
    fft: Arc<dyn RealToComplex<f32>>,
    frame_length: usize,
    padded: usize,
    log_energy_floor: Option<f32>,
}

impl std::fmt::Debug for Fbank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fbank").field("opts", &self.opts).finish()
    }
}

impl Fbank {
    /// Validates `opts` and builds the window, mel banks and FFT plan.
    pub fn new(opts: &FbankOptions) -> Result<Self> {
        opts.validate()?;
        let frame_length = opts.window_size();
        let padded = opts.padded_window_size();
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(padded);
        Ok(Fbank {
            opts: opts.clone(),
            window: window_function(frame_length, &opts.frame).into(),
            mel: Arc::new(MelBanks::new(opts)?),
            fft,
            frame_length,
            padded,
            log_energy_floor: (opts.energy_floor > 0.0).then(|| opts.energy_floor.ln()),
        })
    }

    /// The options this computer was built with.
    pub fn options(&self) -> &FbankOptions {
        &self.opts
    }

    /// Feature dimension (mel bins, plus one with use-energy).
    pub fn dim(&self) -> usize {
        self.opts.dim()
    }

    /// Fresh work buffers for [`Fbank::compute_frame`].
    pub fn scratch(&self) -> FbankScratch {
        FbankScratch {
            raw: vec![0.0; self.frame_length],
            frame: vec![0.0; self.padded],
            spectrum: self.fft.make_output_vec(),
            fft_scratch: self.fft.make_scratch_vec(),
            power: vec![0.0; self.padded / 2 + 1],
        }
    }

    /// Features of a whole utterance: `samples` in [-1, 1] -> `[num_frames, dim]`.
    /// `dither_seed` seeds the dither noise (give each utterance its own, see [`utterance_seed`]).
    pub fn compute(&self, samples: &[f32], dither_seed: u64) -> Matrix {
        let n = num_frames(samples.len(), &self.opts);
        let mut out = Matrix::zeros(n, self.dim());
        let mut scratch = self.scratch();
        for t in 0..n {
            let start = first_sample_of_frame(t, &self.opts);
            self.extract_window(samples, 0, samples.len(), start, &mut scratch.raw);
            self.compute_frame(&mut scratch, t, dither_seed, out.row_mut(t));
        }
        out
    }

    /// Copies the `frame_length` samples starting at absolute sample `start` into `frame`,
    /// scaled to int16 range, reflecting at the edges of the `total` samples of the utterance
    /// (Kaldi's `ExtractWindow`). `wave[j]` holds absolute sample `offset + j`; callers keep
    /// every sample the reflection can reach.
    pub(crate) fn extract_window(
        &self,
        wave: &[f32],
        offset: usize,
        total: usize,
        start: i64,
        frame: &mut [f32],
    ) {
        let len = self.frame_length;
        let (off, total) = (offset as i64, total as i64);
        if start >= 0 && start + len as i64 <= total {
            let from = (start - off) as usize;
            for (d, s) in frame[..len].iter_mut().zip(&wave[from..from + len]) {
                *d = s * INT16_SCALE;
            }
        } else {
            for (i, d) in frame[..len].iter_mut().enumerate() {
                let mut s = start + i as i64;
                while s < 0 || s >= total {
                    s = if s < 0 { -s - 1 } else { 2 * total - 1 - s };
                }
                *d = wave[(s - off) as usize] * INT16_SCALE;
            }
        }
    }

    /// Turns the extracted window in `scratch.raw` into one feature vector.
    pub(crate) fn compute_frame(
        &self,
        scratch: &mut FbankScratch,
        frame_index: usize,
        dither_seed: u64,
        out: &mut [f32],
    ) {
        let o = &self.opts;
        let len = self.frame_length;
        let x = &mut scratch.raw[..len];

        if o.frame.dither != 0.0 {
            let mut rng = SplitMix64::new(
                dither_seed ^ (frame_index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            );
            for pair in x.chunks_mut(2) {
                let (g0, g1) = rng.gauss_pair();
                pair[0] += g0 * o.frame.dither;
                if let Some(v) = pair.get_mut(1) {
                    *v += g1 * o.frame.dither;
                }
            }
        }
        if o.frame.remove_dc_offset {
            // f64 sum: the mean of near-silent frames must cancel precisely.
            let mean = (x.iter().map(|&v| v as f64).sum::<f64>() / len as f64) as f32;
            for v in x.iter_mut() {
                *v -= mean;
            }
        }
        let mut log_energy = 0.0f32;
        if o.use_energy && o.raw_energy {
            log_energy = x.iter().map(|v| v * v).sum::<f32>().max(f32::EPSILON).ln();
        }
        // Preemphasis and window in one forward pass from `raw` into the FFT buffer; the same
        // arithmetic as Kaldi's in-place backward loop (y[i] = x[i] - c x[i-1], y[0] = x[0] - c x[0]).
        let c = o.frame.preemphasis_coefficient;
        let frame = &mut scratch.frame;
        let w = &self.window[..len];
        frame[0] = (x[0] - c * x[0]) * w[0];
        for i in 1..len {
            frame[i] = (x[i] - c * x[i - 1]) * w[i];
        }
        if o.use_energy && !o.raw_energy {
            log_energy = frame[..len]
                .iter()
                .map(|v| v * v)
                .sum::<f32>()
                .max(f32::EPSILON)
                .ln();
        }
        frame[len..].fill(0.0);
        self.fft
            .process_with_scratch(frame, &mut scratch.spectrum, &mut scratch.fft_scratch)
            .expect("FFT buffers are sized by the plan");
        for (p, c) in scratch.power.iter_mut().zip(&scratch.spectrum) {
            *p = c.re * c.re + c.im * c.im;
        }
        if !o.use_power {
            for p in scratch.power.iter_mut() {
                *p = p.sqrt();
            }
        }

        let bins = o.mel.num_bins;
        let mel_offset = usize::from(o.use_energy && !o.htk_compat);
        let mel_out = &mut out[mel_offset..mel_offset + bins];
        self.mel.apply(&scratch.power[..self.padded / 2], mel_out);
        if o.use_log_fbank {
            for v in mel_out.iter_mut() {
                *v = v.max(f32::EPSILON).ln();
            }
        }
        if o.use_energy {
            if let Some(floor) = self.log_energy_floor {
                log_energy = log_energy.max(floor);
            }
            out[if o.htk_compat { bins } else { 0 }] = log_energy;
        }
    }
}

/// A per-utterance dither seed from the configured seed and the utterance id, so that
/// utterances get different noise, independent of the order or thread they run in.
pub fn utterance_seed(seed: u64, utt: &str) -> u64 {
    // FNV-1a: stable across platforms and Rust versions, unlike DefaultHasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in utt.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Small, fast, seedable generator for dither (one per frame, so offline and streaming draw
/// the same noise whatever the chunking).
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 + 1.0) / (1u64 << 24) as f32
    }
    /// Two independent standard normals from one Box-Muller draw (Kaldi's `RandGauss` keeps
    /// only the cosine; using the sine too halves the cost of dither).
    fn gauss_pair(&mut self) -> (f32, f32) {
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (2.0 * std::f32::consts::PI * u2).sin_cos();
        (r * cos, r * sin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| 0.3 * (i as f32 * 0.07).sin() + 0.01 * (i as f32 * 1.3).cos())
            .collect()
    }

    #[test]
    fn frame_counts_follow_kaldi() {
        let mut o = FbankOptions::default();
        assert_eq!(num_frames(399, &o), 0);
        assert_eq!(num_frames(400, &o), 1);
        assert_eq!(num_frames(16000, &o), 98);
        o.frame.snip_edges = false;
        assert_eq!(num_frames(16000, &o), 100);
        assert_eq!(num_frames(79, &o), 0);
        assert_eq!(num_frames(80, &o), 1);
        assert_eq!(first_sample_of_frame(0, &o), -120);
    }

    #[test]
    fn dither_is_seeded() {
        let o = FbankOptions::default();
        let f = Fbank::new(&o).unwrap();
        let x = sine(4000);
        assert_eq!(f.compute(&x, 7), f.compute(&x, 7));
        assert_ne!(f.compute(&x, 7), f.compute(&x, 8));
    }

    #[test]
    fn energy_position_and_silence_floor() {
        let mut o = FbankOptions::default();
        o.frame.dither = 0.0;
        o.use_energy = true;
        let f = Fbank::new(&o).unwrap();
        let zeros = vec![0.0f32; 1000];
        let m = f.compute(&zeros, 0);
        assert_eq!(m.cols, 24);
        assert!(m.data.iter().all(|&v| v == f32::EPSILON.ln()));
        let x = sine(1000);
        let first = f.compute(&x, 0);
        o.htk_compat = true;
        let last = Fbank::new(&o).unwrap().compute(&x, 0);
        assert_eq!(first.row(0)[0], last.row(0)[23]);
        assert_eq!(first.row(0)[1..], last.row(0)[..23]);
    }

    #[test]
    fn short_audio_reflects_repeatedly() {
        let mut o = FbankOptions::profile("modern80").unwrap();
        o.frame.dither = 0.0;
        let f = Fbank::new(&o).unwrap();
        let m = f.compute(&sine(100), 0);
        assert_eq!(m.rows, 1);
        assert!(m.data.iter().all(|v| v.is_finite()));
    }
}
