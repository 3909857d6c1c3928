//! Sample-rate conversion of a whole mono signal with rubato's synchronous FFT resampler.
//!
//! Rates are whole numbers of Hz, so the ratio is exact and the synchronous resampler applies:
//! each block of the input is transformed, band-limited by a Blackman-Harris windowed sinc
//! filter (as long as the block, at least [`BLOCK_FRAMES`] input samples) and transformed back at
//! the new rate, with overlap-add across blocks. The filter's delay is removed, so output sample
//! `i` lies at time `i / to_hz`, like input sample `j` at `j / from_hz`.

use rubato::{FftFixedInOut, Resampler};

use crate::error::{Error, Result};

/// The smallest input block (and filter length), in samples at the input rate; it is rounded up
/// to an even number of `from_hz / gcd(from_hz, to_hz)`.
pub const BLOCK_FRAMES: usize = 1024;

/// The most a resampling may lengthen a signal. No speech recording needs more (8 kHz to
/// 48 kHz is 6), and the rate of a corrupt header asks for any factor: from 1 Hz to 16 kHz,
/// every sample would become 16000 and a 1 MB file 64 GB.
pub const MAX_UPSAMPLE_FACTOR: u32 = 16;

/// The largest `from_hz / gcd(from_hz, to_hz)` handled: rubato's blocks are a multiple of it
/// (441 for 44.1 kHz to 16 kHz); a prime rate such as 4294967291 Hz from a corrupt header
/// would ask for blocks of billions of samples.
pub const MAX_RATE_UNIT: usize = 1 << 16;

/// The largest sample magnitude resampled. Audio is nominally in [-1, 1]; a NaN or a value
/// near `f32::MAX` (a corrupt float WAV) overflows rubato's FFTs, which then panic.
pub const MAX_SAMPLE_MAGNITUDE: f32 = 1e15;

/// The number of output samples for `n` input samples: `ceil(n * to_hz / from_hz)`.
pub fn resampled_len(n: usize, from_hz: u32, to_hz: u32) -> usize {
    ((n as u128 * to_hz as u128).div_ceil(from_hz.max(1) as u128)) as usize
}

/// Resamples mono `samples` (`[n]` at `from_hz`) to `to_hz`; the result has
/// [`resampled_len`]`(n, from_hz, to_hz)` samples. Equal rates return a copy. Rates more than
/// [`MAX_UPSAMPLE_FACTOR`] apart upwards, or whose ratio needs blocks longer than
/// [`MAX_RATE_UNIT`] samples, and samples beyond [`MAX_SAMPLE_MAGNITUDE`] are refused.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>> {
    if from_hz == 0 || to_hz == 0 {
        return Err(Error::config(format!(
            "cannot resample from {from_hz} Hz to {to_hz} Hz: rates must be positive"
        )));
    }
    if from_hz == to_hz {
        return Ok(samples.to_vec());
    }
    if let Some(i) = samples
        .iter()
        .position(|v| v.is_nan() || v.abs() > MAX_SAMPLE_MAGNITUDE)
    {
        return Err(Error::config(format!(
            "cannot resample from {from_hz} Hz to {to_hz} Hz: sample {i} is {} \
             (beyond +-{MAX_SAMPLE_MAGNITUDE:e}; corrupt float audio?)",
            samples[i]
        )));
    }
    let fail = |e: &dyn std::fmt::Display| {
        Error::config(format!("resampling {from_hz} Hz -> {to_hz} Hz: {e}"))
    };
    // rubato's blocks are a whole number of `from / gcd` input samples (and `to / gcd` output
    // samples). That number is made even so both block lengths are even: the filter is centred on
    // sample `len / 2`, and with an odd length the reported delay would be half a sample short
    // (a phase error of pi * f / rate, 0.07 rad at 1 kHz from 44.1 kHz).
    let (from, to) = (from_hz as usize, to_hz as usize);
    let unit_in = from / gcd(from, to);
    if to_hz as u64 > MAX_UPSAMPLE_FACTOR as u64 * from_hz as u64 || unit_in > MAX_RATE_UNIT {
        return Err(Error::config(format!(
            "cannot resample from {from_hz} Hz to {to_hz} Hz: an implausible sample rate \
             (more than {MAX_UPSAMPLE_FACTOR} times up, or no common factor of the rates \
             up to {MAX_RATE_UNIT}); the header is probably corrupt"
        )));
    }
    let units = BLOCK_FRAMES.div_ceil(unit_in).next_multiple_of(2);
    let mut resampler =
        FftFixedInOut::<f32>::new(from, to, units * unit_in, 1).map_err(|e| fail(&e))?;
    let block_in = resampler.input_frames_next();
    let block_out = resampler.output_frames_next();
    let delay = resampler.output_delay();
    let want = resampled_len(samples.len(), from_hz, to_hz);

    // The tail is flushed with zeros until the delayed output covers `want` samples.
    let mut out = Vec::with_capacity(delay + want + block_out);
    let mut input = vec![0f32; block_in];
    let mut output = vec![vec![0f32; block_out]];
    let mut pos = 0;
    while out.len() < delay + want {
        let take = block_in.min(samples.len() - pos);
        input[..take].copy_from_slice(&samples[pos..pos + take]);
        input[take..].fill(0.0);
        pos += take;
        let (_, written) = resampler
            .process_into_buffer(&[&input[..]], &mut output, None)
            .map_err(|e| fail(&e))?;
        out.extend_from_slice(&output[0][..written]);
    }
    out.drain(..delay);
    out.truncate(want);
    Ok(out)
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}
