//! Fbank options as Kaldi-named flags (`--num-mel-bins=80 --snip-edges=false`), a Kaldi conf
//! file (`--config=conf/fbank.conf`) and a named profile, shared by every command that
//! computes features.

use std::path::PathBuf;

use amdistill::features::FbankOptions;

macro_rules! fbank_flags {
    ($( $field:ident = $name:literal : $help:literal ),* $(,)?) => {
        /// Feature options. Precedence: --profile, then --config, then individual flags.
        #[derive(clap::Args, Debug, Clone, Default)]
        pub struct FbankArgs {
            /// Starting point: `kaldi` (Kaldi's defaults, 23 bins) or `modern80`.
            #[arg(long, default_value = "kaldi", help_heading = "Fbank options")]
            pub profile: String,
            /// Kaldi conf file: one --name=value per line, # comments.
            #[arg(long, value_name = "FILE", require_equals = false, help_heading = "Fbank options")]
            pub config: Option<PathBuf>,
            $(
                #[doc = $help]
                #[arg(long = $name, value_name = "V", num_args = 0..=1, require_equals = true,
                      default_missing_value = "true", help_heading = "Fbank options")]
                pub $field: Option<String>,
            )*
        }

        impl FbankArgs {
            /// Resolves profile, conf file and flags into validated options.
            pub fn to_options(&self) -> anyhow::Result<FbankOptions> {
                let mut opts = FbankOptions::profile(&self.profile)?;
                if let Some(conf) = &self.config {
                    opts.apply_conf_file(conf)?;
                }
                $( if let Some(v) = &self.$field { opts.set($name, v)?; } )*
                opts.validate()?;
                Ok(opts)
            }
        }
    };
}

fbank_flags! {
    sample_frequency = "sample-frequency": "Waveform sample rate in Hz [16000]",
    frame_shift = "frame-shift": "Frame shift in ms [10]",
    frame_length = "frame-length": "Frame length in ms [25]",
    dither = "dither": "Dither constant, int16 units; 0 = none [1]",
    dither_seed = "dither-seed": "Seed of the dither noise [0]",
    preemphasis_coefficient = "preemphasis-coefficient": "Preemphasis coefficient [0.97]",
    remove_dc_offset = "remove-dc-offset": "Subtract each frame's mean [true]",
    window_type = "window-type": "povey, hamming, hanning, rectangular, sine, blackman [povey]",
    round_to_power_of_two = "round-to-power-of-two": "Zero-pad the FFT to a power of two [true]",
    blackman_coeff = "blackman-coeff": "Blackman window constant [0.42]",
    snip_edges = "snip-edges": "true: frames that fit; false: centred frames, reflected edges [true]",
    num_mel_bins = "num-mel-bins": "Number of mel bins [23]",
    low_freq = "low-freq": "Low cutoff of the mel bins, Hz [20]",
    high_freq = "high-freq": "High cutoff, Hz; <= 0 is an offset from Nyquist [0]",
    use_energy = "use-energy": "Add a log-energy coefficient [false]",
    energy_floor = "energy-floor": "Floor on the energy, absolute [0]",
    raw_energy = "raw-energy": "Energy before preemphasis and window [true]",
    htk_compat = "htk-compat": "Energy last, as HTK [false]",
    use_log_fbank = "use-log-fbank": "Log mel energies [true]",
    use_power = "use-power": "Power spectrum, else magnitude [true]",
}
