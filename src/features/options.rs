//! Fbank options, with Kaldi's names, defaults and meaning (`compute-fbank-feats`:
//! src/feat/feature-window.h, mel-computations.h, feature-fbank.h).
//!
//! Options come from a profile ([`FbankOptions::profile`]), then a Kaldi conf file
//! (`--config=conf/fbank.conf`: one `--name=value` per line, `#` comments), then flags;
//! every source goes through [`FbankOptions::set`], so one name means the same everywhere.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Window functions Kaldi knows (`--window-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowType {
    Povey,
    Hamming,
    Hanning,
    Rectangular,
    Sine,
    Blackman,
}

impl WindowType {
    pub fn name(self) -> &'static str {
        match self {
            WindowType::Povey => "povey",
            WindowType::Hamming => "hamming",
            WindowType::Hanning => "hanning",
            WindowType::Rectangular => "rectangular",
            WindowType::Sine => "sine",
            WindowType::Blackman => "blackman",
        }
    }
}

impl std::str::FromStr for WindowType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "povey" => WindowType::Povey,
            "hamming" => WindowType::Hamming,
            "hanning" | "hann" => WindowType::Hanning,
            "rectangular" => WindowType::Rectangular,
            "sine" => WindowType::Sine,
            "blackman" => WindowType::Blackman,
            _ => {
                return Err(Error::config(format!(
                    "--window-type={s}: expected povey, hamming, hanning, rectangular, sine or blackman"
                )))
            }
        })
    }
}

/// Framing and per-frame signal processing (Kaldi's `FrameExtractionOptions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameOptions {
    /// `--sample-frequency` (Hz).
    pub sample_frequency: f32,
    /// `--frame-shift` (ms).
    pub frame_shift_ms: f32,
    /// `--frame-length` (ms).
    pub frame_length_ms: f32,
    /// `--dither`: Gaussian noise of this standard deviation (int16 sample units) added to each
    /// sample; 0 turns it off.
    pub dither: f32,
    /// `--dither-seed` (amdistill's own): dither is seeded per utterance and frame, so results
    /// are reproducible and identical offline and streaming.
    pub dither_seed: u64,
    /// `--preemphasis-coefficient`.
    pub preemphasis_coefficient: f32,
    /// `--remove-dc-offset`: subtract each frame's mean before preemphasis.
    pub remove_dc_offset: bool,
    /// `--window-type`.
    pub window_type: WindowType,
    /// `--round-to-power-of-two`: zero-pad frames to the next power of two for the FFT.
    pub round_to_power_of_two: bool,
    /// `--blackman-coeff`.
    pub blackman_coeff: f32,
    /// `--snip-edges`: true keeps only frames that fit inside the audio; false centres frame
    /// `t` on sample `t * shift + shift / 2` and reflects the audio at both edges.
    pub snip_edges: bool,
}

/// Mel filter bank (Kaldi's `MelBanksOptions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MelOptions {
    /// `--num-mel-bins`.
    pub num_bins: usize,
    /// `--low-freq` (Hz).
    pub low_freq: f32,
    /// `--high-freq` (Hz); 0 or negative means an offset below the Nyquist frequency.
    pub high_freq: f32,
}

/// Everything that defines a log-mel filterbank feature (Kaldi's `FbankOptions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FbankOptions {
    pub frame: FrameOptions,
    pub mel: MelOptions,
    /// `--use-energy`: add a log-energy coefficient (first, or last with htk-compat).
    pub use_energy: bool,
    /// `--energy-floor`: floor on the energy (absolute, not log); 0 = none.
    pub energy_floor: f32,
    /// `--raw-energy`: energy before preemphasis and windowing.
    pub raw_energy: bool,
    /// `--htk-compat`: put the energy coefficient last.
    pub htk_compat: bool,
    /// `--use-log-fbank`: log of the mel energies (else linear).
    pub use_log_fbank: bool,
    /// `--use-power`: power spectrum (else magnitude).
    pub use_power: bool,
}

/// Highest sample rate accepted (Hz): above any audio format in use, and it keeps frame sizes
/// far from integer overflow.
pub const MAX_SAMPLE_FREQUENCY: f32 = 1_000_000.0;

/// Longest frame or shift accepted, in samples (about 65 s at 16 kHz).
pub const MAX_FRAME_SAMPLES: usize = 1 << 20;

/// Named starting points for options.
pub const PROFILES: &[(&str, &str)] = &[
    (
        "kaldi",
        "Kaldi compute-fbank-feats defaults: 23 bins, dither 1, snip-edges true",
    ),
    (
        "modern80",
        "lhotse/icefall/sherpa-onnx: 80 bins, dither 0, snip-edges false, high-freq -400, povey",
    ),
];

impl Default for FbankOptions {
    /// Kaldi's defaults.
    fn default() -> Self {
        FbankOptions {
            frame: FrameOptions {
                sample_frequency: 16000.0,
                frame_shift_ms: 10.0,
                frame_length_ms: 25.0,
                dither: 1.0,
                dither_seed: 0,
                preemphasis_coefficient: 0.97,
                remove_dc_offset: true,
                window_type: WindowType::Povey,
                round_to_power_of_two: true,
                blackman_coeff: 0.42,
                snip_edges: true,
            },
            mel: MelOptions {
                num_bins: 23,
                low_freq: 20.0,
                high_freq: 0.0,
            },
            use_energy: false,
            energy_floor: 0.0,
            raw_energy: true,
            htk_compat: false,
            use_log_fbank: true,
            use_power: true,
        }
    }
}

/// One option: Kaldi name, help text.
pub const OPTION_NAMES: &[(&str, &str)] = &[
    ("sample-frequency", "waveform sample rate in Hz"),
    ("frame-shift", "frame shift in ms"),
    ("frame-length", "frame length in ms"),
    (
        "dither",
        "dither constant (0 = no dither), int16 sample units",
    ),
    ("dither-seed", "seed for dither noise (amdistill)"),
    ("preemphasis-coefficient", "preemphasis coefficient"),
    ("remove-dc-offset", "subtract the mean of each frame"),
    (
        "window-type",
        "povey, hamming, hanning, rectangular, sine or blackman",
    ),
    (
        "round-to-power-of-two",
        "zero-pad the FFT to a power of two",
    ),
    ("blackman-coeff", "constant of the blackman window"),
    (
        "snip-edges",
        "true: only frames that fit; false: frames centred, edges reflected",
    ),
    ("num-mel-bins", "number of triangular mel bins"),
    ("low-freq", "low cutoff of the mel bins (Hz)"),
    (
        "high-freq",
        "high cutoff (Hz); <= 0 is an offset from Nyquist",
    ),
    ("use-energy", "add a log-energy coefficient"),
    ("energy-floor", "floor on energy (absolute, not log)"),
    ("raw-energy", "energy before preemphasis and windowing"),
    ("htk-compat", "energy last, as HTK"),
    ("use-log-fbank", "log mel energies (false: linear)"),
    ("use-power", "power spectrum (false: magnitude)"),
];

/// Kaldi options we accept and ignore because they cannot change fbank values here.
const IGNORED: &[&str] = &[
    "debug-mel",
    "vtln-low",
    "vtln-high",
    "max-feature-vectors",
    "verbose",
];

fn parse_bool(name: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "True" | "1" | "" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        _ => Err(Error::config(format!(
            "--{name}={v}: expected true or false"
        ))),
    }
}

fn parse_num<T: std::str::FromStr>(name: &str, v: &str) -> Result<T> {
    v.parse()
        .map_err(|_| Error::config(format!("--{name}={v}: not a valid number")))
}

impl FbankOptions {
    /// Options of a named profile (`kaldi`, `modern80`).
    pub fn profile(name: &str) -> Result<Self> {
        let mut o = FbankOptions::default();
        match name {
            "kaldi" => {}
            "modern80" => {
                o.mel.num_bins = 80;
                o.frame.dither = 0.0;
                o.frame.snip_edges = false;
                o.mel.high_freq = -400.0;
            }
            _ => {
                let known: Vec<&str> = PROFILES.iter().map(|p| p.0).collect();
                return Err(Error::config(format!(
                    "unknown fbank profile '{name}' (known: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(o)
    }

    /// Sets one option by its Kaldi name (without `--`). `value` may be empty for a boolean
    /// given as a bare `--flag`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.replace('_', "-");
        let n = name.as_str();
        let f = &mut self.frame;
        match n {
            "sample-frequency" => f.sample_frequency = parse_num(n, value)?,
            "frame-shift" => f.frame_shift_ms = parse_num(n, value)?,
            "frame-length" => f.frame_length_ms = parse_num(n, value)?,
            "dither" => f.dither = parse_num(n, value)?,
            "dither-seed" => f.dither_seed = parse_num(n, value)?,
            "preemphasis-coefficient" => f.preemphasis_coefficient = parse_num(n, value)?,
            "remove-dc-offset" => f.remove_dc_offset = parse_bool(n, value)?,
            "window-type" => f.window_type = value.parse()?,
            "round-to-power-of-two" => f.round_to_power_of_two = parse_bool(n, value)?,
            "blackman-coeff" => f.blackman_coeff = parse_num(n, value)?,
            "snip-edges" => f.snip_edges = parse_bool(n, value)?,
            "num-mel-bins" => self.mel.num_bins = parse_num(n, value)?,
            "low-freq" => self.mel.low_freq = parse_num(n, value)?,
            "high-freq" => self.mel.high_freq = parse_num(n, value)?,
            "use-energy" => self.use_energy = parse_bool(n, value)?,
            "energy-floor" => self.energy_floor = parse_num(n, value)?,
            "raw-energy" => self.raw_energy = parse_bool(n, value)?,
            "htk-compat" => self.htk_compat = parse_bool(n, value)?,
            "use-log-fbank" => self.use_log_fbank = parse_bool(n, value)?,
            "use-power" => self.use_power = parse_bool(n, value)?,
            _ if IGNORED.contains(&n) => {}
            _ => return Err(Error::config(format!("unknown fbank option --{n}"))),
        }
        Ok(())
    }

    /// Applies a Kaldi conf file: one `--name=value` per line, `#` starts a comment. Unknown
    /// options are errors naming the file and line.
    pub fn apply_conf_file(&mut self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        self.apply_conf_str(&text).map_err(|e| match e {
            Error::Parse { line, msg, .. } => Error::parse(path, line, msg),
            other => other,
        })
    }

    /// Applies conf-file text (see [`FbankOptions::apply_conf_file`]).
    pub fn apply_conf_str(&mut self, text: &str) -> Result<()> {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |msg: String| Error::parse("<conf>", i + 1, msg);
            let body = line
                .strip_prefix("--")
                .ok_or_else(|| bad(format!("expected --name=value, got '{line}'")))?;
            let (name, value) = body.split_once('=').unwrap_or((body, ""));
            self.set(name.trim(), value.trim())
                .map_err(|e| bad(e.to_string()))?;
        }
        Ok(())
    }

    /// Checks that the options make sense together; the error says which option is wrong.
    // `!(x > 0.0)` on purpose: it also rejects NaN.
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn validate(&self) -> Result<()> {
        let f = &self.frame;
        let c = |m: String| Err(Error::config(m));
        let finite = [
            ("sample-frequency", f.sample_frequency),
            ("frame-shift", f.frame_shift_ms),
            ("frame-length", f.frame_length_ms),
            ("dither", f.dither),
            ("preemphasis-coefficient", f.preemphasis_coefficient),
            ("blackman-coeff", f.blackman_coeff),
            ("low-freq", self.mel.low_freq),
            ("high-freq", self.mel.high_freq),
            ("energy-floor", self.energy_floor),
        ];
        if let Some((name, v)) = finite.iter().find(|(_, v)| !v.is_finite()) {
            return c(format!("--{name}={v} must be a finite number"));
        }
        if !(f.sample_frequency > 0.0 && f.sample_frequency <= MAX_SAMPLE_FREQUENCY) {
            return c(format!(
                "--sample-frequency={} must be in (0, {MAX_SAMPLE_FREQUENCY}] Hz",
                f.sample_frequency
            ));
        }
        // Check the sizes in f64 before the usize casts of window_size()/window_shift().
        for (name, ms) in [
            ("frame-length", f.frame_length_ms),
            ("frame-shift", f.frame_shift_ms),
        ] {
            let samples = f.sample_frequency as f64 * 0.001 * ms as f64;
            if !(samples >= 0.0 && samples <= MAX_FRAME_SAMPLES as f64) {
                return c(format!(
                    "--{name}={ms} ms is {samples} samples at {} Hz; the limit is {MAX_FRAME_SAMPLES}",
                    f.sample_frequency
                ));
            }
        }
        if self.window_shift() == 0 {
            return c(format!(
                "--frame-shift={} ms is under one sample",
                f.frame_shift_ms
            ));
        }
        if self.window_size() < 2 {
            return c(format!(
                "--frame-length={} ms is under two samples",
                f.frame_length_ms
            ));
        }
        if !(f.dither >= 0.0) || !f.dither.is_finite() {
            return c(format!("--dither={} must be >= 0", f.dither));
        }
        if !(0.0..=1.0).contains(&f.preemphasis_coefficient) {
            return c(format!(
                "--preemphasis-coefficient={} must be in [0, 1]",
                f.preemphasis_coefficient
            ));
        }
        if self.mel.num_bins < 3 {
            return c(format!(
                "--num-mel-bins={} must be at least 3",
                self.mel.num_bins
            ));
        }
        let nyquist = 0.5 * f.sample_frequency;
        let high = self.high_freq_hz();
        let low = self.mel.low_freq;
        if low < 0.0 || low >= nyquist || high <= 0.0 || high > nyquist || high <= low {
            return c(format!(
                "bad mel range: --low-freq={} and --high-freq={} give {low}..{high} Hz with Nyquist {nyquist} Hz",
                self.mel.low_freq, self.mel.high_freq
            ));
        }
        if !(self.energy_floor >= 0.0) {
            return c(format!("--energy-floor={} must be >= 0", self.energy_floor));
        }
        Ok(())
    }

    /// Frame length in samples (Kaldi `WindowSize`).
    pub fn window_size(&self) -> usize {
        (self.frame.sample_frequency * 0.001 * self.frame.frame_length_ms) as usize
    }

    /// Frame shift in samples (Kaldi `WindowShift`).
    pub fn window_shift(&self) -> usize {
        (self.frame.sample_frequency * 0.001 * self.frame.frame_shift_ms) as usize
    }

    /// FFT length in samples (Kaldi `PaddedWindowSize`).
    pub fn padded_window_size(&self) -> usize {
        let n = self.window_size();
        if self.frame.round_to_power_of_two {
            n.next_power_of_two()
        } else {
            n
        }
    }

    /// Upper edge of the mel bank in Hz, negative/zero values resolved against Nyquist.
    pub fn high_freq_hz(&self) -> f32 {
        if self.mel.high_freq > 0.0 {
            self.mel.high_freq
        } else {
            0.5 * self.frame.sample_frequency + self.mel.high_freq
        }
    }

    /// Feature dimension: mel bins plus one for the energy.
    pub fn dim(&self) -> usize {
        self.mel.num_bins + usize::from(self.use_energy)
    }

    /// Frame shift in seconds (what Kaldi's `frame_shift` file holds).
    pub fn frame_shift_seconds(&self) -> f64 {
        self.window_shift() as f64 / self.frame.sample_frequency as f64
    }

    /// Every Kaldi option as `--name=value` lines: the complete configuration, readable by
    /// [`FbankOptions::apply_conf_file`] and by Kaldi. `--dither-seed` (amdistill's own) is a
    /// comment when it has its default value 0, else a line Kaldi would refuse: remove it there.
    pub fn to_conf_string(&self) -> String {
        let mut s = String::from(
            "# amdistill fbank configuration (Kaldi compute-fbank-feats option names)\n",
        );
        for (name, value) in self.values() {
            if name == "dither-seed" && self.frame.dither_seed == 0 {
                // Kaldi does not know this option: leave the default out of its way.
                s.push_str(&format!(
                    "# --{name}={value}  (amdistill only; the default)\n"
                ));
            } else {
                s.push_str(&format!("--{name}={value}\n"));
            }
        }
        s
    }

    /// Only the options that differ from Kaldi's defaults, as conf lines (what a recipe's
    /// `conf/fbank.conf` holds).
    pub fn to_conf_diff_string(&self) -> String {
        let defaults = FbankOptions::default().values();
        let mut s = String::new();
        for ((name, value), (_, default)) in self.values().into_iter().zip(defaults) {
            if value != default {
                s.push_str(&format!("--{name}={value}\n"));
            }
        }
        if s.is_empty() {
            s.push_str("# No non-default options for now.\n");
        }
        s
    }

    /// (name, value) for every option, in [`OPTION_NAMES`] order.
    pub fn values(&self) -> Vec<(&'static str, String)> {
        let f = &self.frame;
        let vals = [
            fmt_f32(f.sample_frequency),
            fmt_f32(f.frame_shift_ms),
            fmt_f32(f.frame_length_ms),
            fmt_f32(f.dither),
            f.dither_seed.to_string(),
            fmt_f32(f.preemphasis_coefficient),
            f.remove_dc_offset.to_string(),
            f.window_type.name().to_string(),
            f.round_to_power_of_two.to_string(),
            fmt_f32(f.blackman_coeff),
            f.snip_edges.to_string(),
            self.mel.num_bins.to_string(),
            fmt_f32(self.mel.low_freq),
            fmt_f32(self.mel.high_freq),
            self.use_energy.to_string(),
            fmt_f32(self.energy_floor),
            self.raw_energy.to_string(),
            self.htk_compat.to_string(),
            self.use_log_fbank.to_string(),
            self.use_power.to_string(),
        ];
        OPTION_NAMES.iter().map(|(n, _)| *n).zip(vals).collect()
    }
}

fn fmt_f32(v: f32) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conf_round_trip_and_diff() {
        let mut o = FbankOptions::profile("modern80").unwrap();
        o.set("window-type", "hamming").unwrap();
        let mut back = FbankOptions::default();
        back.apply_conf_str(&o.to_conf_string()).unwrap();
        assert_eq!(back, o);
        let diff = o.to_conf_diff_string();
        assert!(diff.contains("--num-mel-bins=80"));
        assert!(diff.contains("--window-type=hamming"));
        assert!(!diff.contains("--frame-length"));
        assert_eq!(
            FbankOptions::default().to_conf_diff_string(),
            "# No non-default options for now.\n"
        );
    }

    #[test]
    fn conf_errors_name_the_line() {
        let mut o = FbankOptions::default();
        let err = o
            .apply_conf_str("# comment\n--num-mel-bins=40\n--no-such-option=3\n")
            .unwrap_err();
        assert!(err.to_string().contains(":3:"), "{err}");
        assert!(o.apply_conf_str("--snip-edges=maybe").is_err());
        assert!(o.apply_conf_str("num-mel-bins=40").is_err());
    }

    #[test]
    fn sizes_and_validation() {
        let o = FbankOptions::default();
        assert_eq!(
            (o.window_size(), o.window_shift(), o.padded_window_size()),
            (400, 160, 512)
        );
        assert_eq!(
            FbankOptions::profile("modern80").unwrap().high_freq_hz(),
            7600.0
        );
        let mut bad = FbankOptions::default();
        bad.mel.high_freq = 9000.0;
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("high-freq"));
        assert!(FbankOptions::profile("nope").is_err());
    }
}
