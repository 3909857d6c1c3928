//! Signal-level augmentation for the synthetic corpus: additive noise at a chosen SNR (white,
//! pink, babble), room reverberation that keeps the direct path (so phone times stay valid),
//! gain, peak limiting and resampling. All randomness comes from the caller's RNG.
//!
//! Signals are mono `f32` samples in [-1, 1]; lengths are in samples.

use std::f64::consts::LN_10;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use realfft::RealFftPlanner;

use crate::error::{Error, Result};

/// The additive noise of an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseKind {
    /// No noise added.
    Clean,
    /// Gaussian white noise.
    White,
    /// 1/f noise (Kellet's filter on white noise).
    Pink,
    /// A sum of other utterances of the corpus.
    Babble,
}

impl NoiseKind {
    /// Lowercase name as written in `utt2synth.tsv`.
    pub fn name(self) -> &'static str {
        match self {
            NoiseKind::Clean => "clean",
            NoiseKind::White => "white",
            NoiseKind::Pink => "pink",
            NoiseKind::Babble => "babble",
        }
    }
}

/// Decibels to an amplitude factor.
pub fn db_to_amplitude(db: f64) -> f64 {
    (db * LN_10 / 20.0).exp()
}

/// Mean square (power) of a signal; 0 for an empty one.
pub fn mean_square(x: &[f32]) -> f64 {
    if x.is_empty() {
        return 0.0;
    }
    x.iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>() / x.len() as f64
}

/// `n` samples of unit-variance Gaussian white noise.
pub fn white_noise<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// `n` samples of pink (1/f) noise scaled to unit power: Paul Kellet's refined filter on
/// white noise, after a warm-up so the slow poles have settled.
pub fn pink_noise<R: Rng + ?Sized>(n: usize, rng: &mut R) -> Vec<f32> {
    const WARMUP: usize = 8192;
    let mut b = [0.0f64; 7];
    let mut out = Vec::with_capacity(n);
    for i in 0..n + WARMUP {
        let w: f64 = StandardNormal.sample(rng);
        b[0] = 0.99886 * b[0] + w * 0.0555179;
        b[1] = 0.99332 * b[1] + w * 0.0750759;
        b[2] = 0.96900 * b[2] + w * 0.1538520;
        b[3] = 0.86650 * b[3] + w * 0.3104856;
        b[4] = 0.55000 * b[4] + w * 0.5329522;
        b[5] = -0.7616 * b[5] - w * 0.0168980;
        let pink = b[0] + b[1] + b[2] + b[3] + b[4] + b[5] + b[6] + w * 0.5362;
        b[6] = w * 0.115926;
        if i >= WARMUP {
            out.push(pink as f32);
        }
    }
    normalise_power(&mut out);
    out
}

/// `n` samples of babble scaled to unit power: `talkers` signals from `pool` (distinct where
/// the pool allows), each at unit power, starting at a random offset and looped to length.
/// Empty pool entries are skipped; an empty pool gives silence.
pub fn babble<R: Rng + ?Sized>(
    n: usize,
    pool: &[Vec<f32>],
    talkers: usize,
    rng: &mut R,
) -> Vec<f32> {
    let usable: Vec<&Vec<f32>> = pool.iter().filter(|p| mean_square(p) > 0.0).collect();
    let mut out = vec![0.0f32; n];
    if usable.is_empty() || n == 0 {
        return out;
    }
    let picks = rand::seq::index::sample(rng, usable.len(), talkers.min(usable.len()));
    for idx in picks.iter() {
        let src = usable[idx];
        let gain = (1.0 / mean_square(src)).sqrt() as f32;
        let offset = rng.gen_range(0..src.len());
        for (i, o) in out.iter_mut().enumerate() {
            *o += gain * src[(offset + i) % src.len()];
        }
    }
    normalise_power(&mut out);
    out
}

fn normalise_power(x: &mut [f32]) {
    let p = mean_square(x);
    if p > 0.0 {
        let g = (1.0 / p).sqrt() as f32;
        x.iter_mut().for_each(|v| *v *= g);
    }
}

/// Adds `noise` (same length) to `signal` scaled so that power(signal) / power(scaled noise)
/// is `snr_db`; returns the scale applied to the noise (0 when either is silent).
pub fn add_at_snr(signal: &mut [f32], noise: &[f32], snr_db: f64) -> Result<f64> {
    if signal.len() != noise.len() {
        return Err(Error::Mismatch(format!(
            "add_at_snr: signal has {} samples but noise has {}",
            signal.len(),
            noise.len()
        )));
    }
    let (ps, pn) = (mean_square(signal), mean_square(noise));
    if ps == 0.0 || pn == 0.0 {
        return Ok(0.0);
    }
    let scale = (ps / (pn * 10f64.powf(snr_db / 10.0))).sqrt();
    for (s, &n) in signal.iter_mut().zip(noise) {
        *s += (scale * n as f64) as f32;
    }
    Ok(scale)
}

/// A simple room impulse response: a unit direct path at lag 0, silence for a pre-delay of 2
/// to 10 ms, then Gaussian noise under an exponential envelope that falls 60 dB in `rt60_s`
/// seconds, scaled so that direct / reverberant energy is `drr_db`. Length: `rt60_s` seconds.
pub fn room_impulse_response<R: Rng + ?Sized>(
    rt60_s: f64,
    drr_db: f64,
    sample_rate: u32,
    rng: &mut R,
) -> Vec<f32> {
    let sr = sample_rate as f64;
    let len = ((rt60_s * sr).ceil() as usize).max(2);
    let predelay = ((rng.gen_range(0.002..0.010) * sr) as usize).clamp(1, len - 1);
    let decay = 3.0 * LN_10 / (rt60_s * sr); // amplitude exp(-decay n): -60 dB at rt60
    let mut h = vec![0.0f64; len];
    h[0] = 1.0;
    for (n, v) in h.iter_mut().enumerate().skip(predelay) {
        let g: f64 = StandardNormal.sample(rng);
        *v = g * (-decay * n as f64).exp();
    }
    let tail: f64 = h[1..].iter().map(|v| v * v).sum();
    if tail > 0.0 {
        let g = (10f64.powf(-drr_db / 10.0) / tail).sqrt();
        h[1..].iter_mut().for_each(|v| *v *= g);
    }
    h.into_iter().map(|v| v as f32).collect()
}

/// Linear convolution of `x` with `h`, cut to `x.len()` samples (the tail past the end is
/// dropped), by FFT. With `h[0]` the direct path, sample `i` of the output lines up with
/// sample `i` of the input.
pub fn convolve_keep_length(x: &[f32], h: &[f32]) -> Vec<f32> {
    if x.is_empty() || h.is_empty() {
        return vec![0.0; x.len()];
    }
    let n = (x.len() + h.len() - 1).next_power_of_two();
    let mut planner = RealFftPlanner::<f32>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let spectrum = |sig: &[f32]| {
        let mut buf = fwd.make_input_vec();
        buf[..sig.len()].copy_from_slice(sig);
        let mut spec = fwd.make_output_vec();
        fwd.process(&mut buf, &mut spec)
            .expect("buffer sizes come from the plan");
        spec
    };
    let mut xs = spectrum(x);
    let hs = spectrum(h);
    xs.iter_mut().zip(&hs).for_each(|(a, b)| *a *= *b);
    // The DC and Nyquist bins of a real signal's spectrum are real; force exact zeros there.
    xs[0].im = 0.0;
    let last = xs.len() - 1;
    xs[last].im = 0.0;
    let mut out = inv.make_output_vec();
    inv.process(&mut xs, &mut out)
        .expect("buffer sizes come from the plan");
    let scale = 1.0 / n as f32;
    out.truncate(x.len());
    out.iter_mut().for_each(|v| *v *= scale);
    out
}

/// Scales `x` down so its peak is at most `ceiling` (no clipping); returns the factor applied
/// (1 when the peak was already within it).
pub fn limit_peak(x: &mut [f32], ceiling: f32) -> f32 {
    let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak <= ceiling || peak == 0.0 {
        return 1.0;
    }
    let g = ceiling / peak;
    x.iter_mut().for_each(|v| *v *= g);
    g
}

/// Pads with zeros or cuts `x` to exactly `n` samples.
pub fn fit_length(x: &mut Vec<f32>, n: usize) {
    x.resize(n, 0.0);
}

/// Converts samples in [-1, 1] to 16-bit PCM, rounding and saturating.
pub fn to_i16(x: &[f32]) -> Vec<i16> {
    x.iter()
        .map(|&v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

/// Resamples `x` from `from` Hz to `to` Hz (FFT resampler, delay removed); the output has
/// `round(len * to / from)` samples.
pub fn resample(x: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    use rubato::{FftFixedIn, Resampler};
    if from == to {
        return Ok(x.to_vec());
    }
    let want = ((x.len() as u64 * to as u64 + from as u64 / 2) / from as u64) as usize;
    let err =
        |e: &dyn std::fmt::Display| Error::config(format!("resampling {from} Hz -> {to} Hz: {e}"));
    let mut r =
        FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1).map_err(|e| err(&e))?;
    let delay = r.output_delay();
    let mut out: Vec<f32> = Vec::with_capacity(want + delay + 4096);
    let mut pos = 0;
    while pos + r.input_frames_next() <= x.len() {
        let n = r.input_frames_next();
        let o = r.process(&[&x[pos..pos + n]], None).map_err(|e| err(&e))?;
        out.extend_from_slice(&o[0]);
        pos += n;
    }
    if pos < x.len() {
        // rubato refuses an empty partial chunk; the flush below covers that case.
        let o = r
            .process_partial(Some(&[&x[pos..]]), None)
            .map_err(|e| err(&e))?;
        out.extend_from_slice(&o[0]);
    }
    while out.len() < want + delay {
        let o = r
            .process_partial(None::<&[&[f32]]>, None)
            .map_err(|e| err(&e))?;
        out.extend_from_slice(&o[0]);
    }
    out.drain(..delay);
    out.truncate(want);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resample_keeps_duration_and_tone() {
        let x: Vec<f32> = (0..16000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16000.0).sin() * 0.5)
            .collect();
        let y = resample(&x, 16000, 8000).unwrap();
        assert_eq!(y.len(), 8000);
        let z: Vec<f32> = (0..8000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 8000.0).sin() * 0.5)
            .collect();
        let err: f32 = y[500..7500]
            .iter()
            .zip(&z[500..7500])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.02, "max error {err}");
        assert_eq!(resample(&x, 16000, 16000).unwrap(), x);
        // Lengths that are and are not a whole number of the resampler's chunks.
        assert_eq!(resample(&x[..2048], 16000, 8000).unwrap().len(), 1024);
        assert_eq!(resample(&x[..1000], 16000, 22050).unwrap().len(), 1378);
        let long: Vec<f32> = x.iter().chain(&x).copied().take(30480).collect();
        assert_eq!(resample(&long, 16000, 8000).unwrap().len(), 15240);
    }
}
