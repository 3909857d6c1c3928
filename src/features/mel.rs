//! Triangular mel filter banks, exactly as Kaldi's `MelBanks` (mel-computations.cc): filters
//! equally spaced on mel = 1127 ln(1 + f / 700) from low to high frequency, evaluated at FFT
//! bins 0 .. N/2 - 1 (the Nyquist bin is unused), no area normalisation. Computed in f32, as
//! Kaldi does, so that bin edges fall the same way.

use crate::error::{Error, Result};
use crate::features::options::FbankOptions;

/// Hz to mel, Kaldi's formula in f32.
pub fn mel_scale(freq: f32) -> f32 {
    1127.0f32 * (1.0f32 + freq / 700.0f32).ln()
}

/// One triangular filter: weights for FFT bins `first .. first + weights.len()`.
#[derive(Debug, Clone)]
pub struct MelFilter {
    pub first: usize,
    pub weights: Vec<f32>,
}

/// The whole bank, built once per configuration.
#[derive(Debug, Clone)]
pub struct MelBanks {
    pub filters: Vec<MelFilter>,
    /// Centre frequency of each filter, Hz.
    pub center_freqs: Vec<f32>,
}

impl MelBanks {
    /// Builds the bank for `opts` (which should be validated).
    pub fn new(opts: &FbankOptions) -> Result<Self> {
        let num_bins = opts.mel.num_bins;
        let sample_freq = opts.frame.sample_frequency;
        let padded = opts.padded_window_size();
        let num_fft_bins = padded / 2;
        let fft_bin_width = sample_freq / padded as f32;
        let low_freq = opts.mel.low_freq;
        let high_freq = opts.high_freq_hz();
        let mel_low = mel_scale(low_freq);
        let mel_high = mel_scale(high_freq);
        let delta = (mel_high - mel_low) / (num_bins as f32 + 1.0);
        let mut filters = Vec::with_capacity(num_bins);
        let mut center_freqs = Vec::with_capacity(num_bins);
        for bin in 0..num_bins {
            let left = mel_low + bin as f32 * delta;
            let center = mel_low + (bin as f32 + 1.0) * delta;
            let right = mel_low + (bin as f32 + 2.0) * delta;
            center_freqs.push(700.0 * ((center / 1127.0).exp() - 1.0));
            let mut first = None;
            let mut weights = Vec::new();
            for i in 0..num_fft_bins {
                let mel = mel_scale(fft_bin_width * i as f32);
                if mel > left && mel < right {
                    let w = if mel <= center {
                        (mel - left) / (center - left)
                    } else {
                        (right - mel) / (right - center)
                    };
                    if first.is_none() {
                        first = Some(i);
                    }
                    // Bins between first and this one are all inside (the triangle is convex).
                    weights.push(w);
                }
            }
            let first = first.ok_or_else(|| {
                Error::config(format!(
                    "mel bin {bin} is empty: --num-mel-bins={num_bins} is too large for a {padded}-point FFT \
                     between {low_freq} and {high_freq} Hz"
                ))
            })?;
            filters.push(MelFilter { first, weights });
        }
        Ok(MelBanks {
            filters,
            center_freqs,
        })
    }

    /// `out[b] = sum_k weights_b[k] * spectrum[first_b + k]` for every filter.
    #[inline]
    pub fn apply(&self, spectrum: &[f32], out: &mut [f32]) {
        for (o, f) in out.iter_mut().zip(&self.filters) {
            let s = &spectrum[f.first..f.first + f.weights.len()];
            *o = s.iter().zip(&f.weights).map(|(a, b)| a * b).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaldi_default_bank_shape() {
        let o = FbankOptions::default();
        let m = MelBanks::new(&o).unwrap();
        assert_eq!(m.filters.len(), 23);
        // Filters overlap their neighbours and stay below the Nyquist bin.
        for f in &m.filters {
            assert!(f.first + f.weights.len() <= 256);
            assert!(f.weights.iter().all(|&w| w > 0.0 && w <= 1.0));
        }
        let mut too_many = FbankOptions::default();
        too_many.mel.num_bins = 300;
        assert!(MelBanks::new(&too_many)
            .unwrap_err()
            .to_string()
            .contains("too large"));
    }
}
