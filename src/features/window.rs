//! Window functions, exactly as Kaldi's `FeatureWindowFunction` (computed in f64, stored f32).

use crate::features::options::{FrameOptions, WindowType};

/// The window of `frame_length` samples for `opts.window_type`.
pub fn window_function(frame_length: usize, opts: &FrameOptions) -> Vec<f32> {
    let a = 2.0 * std::f64::consts::PI / (frame_length as f64 - 1.0);
    let blackman = opts.blackman_coeff as f64;
    (0..frame_length)
        .map(|i| {
            let x = i as f64;
            let w = match opts.window_type {
                WindowType::Hanning => 0.5 - 0.5 * (a * x).cos(),
                WindowType::Sine => (0.5 * a * x).sin(),
                WindowType::Hamming => 0.54 - 0.46 * (a * x).cos(),
                WindowType::Povey => (0.5 - 0.5 * (a * x).cos()).powf(0.85),
                WindowType::Rectangular => 1.0,
                WindowType::Blackman => {
                    blackman - 0.5 * (a * x).cos() + (0.5 - blackman) * (2.0 * a * x).cos()
                }
            };
            w as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::FbankOptions;

    #[test]
    fn povey_and_hamming_values() {
        let mut o = FbankOptions::default().frame;
        let w = window_function(400, &o);
        assert_eq!(w[0], 0.0);
        assert!((w[199] - 1.0).abs() < 1e-4 && (w[200] - 1.0).abs() < 1e-4);
        o.window_type = WindowType::Hamming;
        let w = window_function(400, &o);
        assert!((w[0] - 0.08).abs() < 1e-6);
        o.window_type = WindowType::Blackman;
        let w = window_function(400, &o);
        assert!(
            w[0].abs() < 1e-6,
            "blackman starts at 0.42 - 0.5 + 0.08 = 0"
        );
    }
}
