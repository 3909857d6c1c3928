//! Audio input: any supported file to mono f32 samples in [-1, 1] at the configured rate.
//!
//! The format is detected from the file's first bytes ([`detect_format`]), never from its
//! extension: RIFF/WAVE (`wav.rs`, header through `hound`), NIST SPHERE with uncompressed PCM
//! (`sphere.rs`, the LDC TIMIT distribution) and FLAC (`flac.rs`, through `symphonia`;
//! LibriSpeech). Several channels become one by their mean or by picking one
//! ([`ChannelSelect`]). A file at another rate is resampled ([`resample()`]) or refused, as
//! [`AudioOptions::resample`] says. Segments (Kaldi's `segments` file) are cut at the file's own
//! rate, then resampled.
//!
//! Sample scaling: 16-bit PCM is divided by 32768, 8-bit unsigned PCM is centred (minus 128)
//! and divided by 128, 24- and 32-bit PCM by 2^23 and 2^31, float samples are kept as they are.
//!
//! ```no_run
//! use amdistill::audio::{read_audio, read_audio_segment, AudioOptions};
//! let opts = AudioOptions::default(); // 16 kHz, resample, downmix
//! let wave = read_audio("a.wav".as_ref(), &opts).unwrap();
//! let seg = read_audio_segment("rec.flac".as_ref(), 1.5, 3.0, &opts).unwrap(); // 24000 samples
//! ```

mod flac;
pub mod resample;
mod sphere;
mod wav;

use std::fs::File;
use std::io::Read;
use std::ops::Range;
use std::path::Path;

use crate::error::{Error, Result};

pub use resample::resample;

/// Mono audio: `samples` in [-1, 1] (float files as they are), `sample_rate` in Hz.
#[derive(Debug, Clone, PartialEq)]
pub struct Waveform {
    /// One sample per frame, `[samples]`.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

impl Waveform {
    /// Length in seconds.
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// How a file with several channels becomes mono.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChannelSelect {
    /// The mean of all channels (the default).
    #[default]
    Downmix,
    /// One channel, 0-based; an index past the file's channels is an error.
    Channel(usize),
}

/// What [`read_audio`] returns: the rate, whether to resample to it, and the channel choice.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioOptions {
    /// The rate, in Hz, every waveform is returned at.
    pub sample_rate: u32,
    /// Resample a file at another rate; when false such a file is an error.
    pub resample: bool,
    /// Downmix or pick one channel.
    pub channel: ChannelSelect,
}

impl Default for AudioOptions {
    fn default() -> Self {
        AudioOptions {
            sample_rate: 16000,
            resample: true,
            channel: ChannelSelect::Downmix,
        }
    }
}

/// The container formats read here, as told by a file's first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioFormat {
    /// RIFF/WAVE (PCM, IEEE float, WAVE_FORMAT_EXTENSIBLE).
    Wav,
    /// NIST SPHERE (`NIST_1A` header).
    Sphere,
    /// FLAC (`fLaC` marker).
    Flac,
}

/// Segments may end up to this many seconds past the end of the audio; they are then truncated
/// to the end (Kaldi's `extract-segments --max-overshoot` default). Further out is an error.
pub const MAX_SEGMENT_OVERSHOOT_S: f64 = 0.5;

/// Reads the whole file `path` as mono at `opts.sample_rate`.
pub fn read_audio(path: &Path, opts: &AudioOptions) -> Result<Waveform> {
    read(path, None, opts)
}

/// Reads `[start_s, end_s)` seconds of `path` (`end_s < 0`: to the end) as mono at
/// `opts.sample_rate`. The cut is made at the file's native rate, sample
/// `round(t * native_rate)`, and then resampled. An end at most [`MAX_SEGMENT_OVERSHOOT_S`]
/// past the end of the audio is truncated; a segment otherwise outside the audio is an error.
pub fn read_audio_segment(
    path: &Path,
    start_s: f64,
    end_s: f64,
    opts: &AudioOptions,
) -> Result<Waveform> {
    read(path, Some(Span { start_s, end_s }), opts)
}

/// Tells the format of `path` from its first 12 bytes.
pub fn detect_format(path: &Path) -> Result<AudioFormat> {
    let mut file =
        File::open(path).map_err(|e| Error::format(path, format!("cannot open: {e}")))?;
    let mut head = [0u8; 12];
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::format(path, format!("cannot read: {e}"))),
        }
    }
    let head = &head[..n];
    if head.is_empty() {
        return Err(Error::format(path, "empty file (0 bytes)"));
    }
    if head.starts_with(b"RIFF") && head.len() == 12 {
        return match &head[8..12] {
            b"WAVE" => Ok(AudioFormat::Wav),
            other => Err(Error::format(
                path,
                format!(
                    "a RIFF file but not WAVE audio (form type '{}')",
                    String::from_utf8_lossy(other)
                ),
            )),
        };
    }
    if head.starts_with(b"NIST_1A\n") {
        return Ok(AudioFormat::Sphere);
    }
    if head.starts_with(b"fLaC") {
        return Ok(AudioFormat::Flac);
    }
    let msg = if head.starts_with(b"RIFX") || head.starts_with(b"RF64") {
        format!(
            "unsupported WAV variant '{}' (only little-endian RIFF WAVE)",
            String::from_utf8_lossy(&head[..4])
        )
    } else if head.starts_with(b"ID3") {
        "starts with an ID3 tag: not WAV, NIST SPHERE or FLAC audio (MP3?)".to_string()
    } else if head.len() < 12
        && (head.starts_with(b"RIFF")
            || b"NIST_1A\n".starts_with(head)
            || b"fLaC".starts_with(head))
    {
        format!(
            "truncated: only {} bytes, too short for an audio header",
            head.len()
        )
    } else {
        let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
        format!(
            "not a WAV, NIST SPHERE or FLAC file (first bytes: {})",
            hex.join(" ")
        )
    };
    Err(Error::format(path, msg))
}

fn read(path: &Path, span: Option<Span>, opts: &AudioOptions) -> Result<Waveform> {
    if opts.sample_rate == 0 {
        return Err(Error::config("audio sample rate must be positive"));
    }
    if let Some(span) = &span {
        span.check(path)?;
    }
    let native = match detect_format(path)? {
        AudioFormat::Wav => wav::decode(path, opts.channel, span)?,
        AudioFormat::Sphere => sphere::decode(path, opts.channel, span)?,
        AudioFormat::Flac => flac::decode(path, opts.channel, span)?,
    };
    if native.samples.is_empty() {
        return Err(Error::format(path, "no samples (the audio is empty)"));
    }
    if native.sample_rate == opts.sample_rate {
        return check_finite(path, native);
    }
    if !opts.resample {
        return Err(Error::format(
            path,
            format!(
                "the file's sample rate is {} Hz but the configured rate is {} Hz, and \
                 resampling is off; \
                 switch resampling on to convert it, or convert the file to {} Hz",
                native.sample_rate, opts.sample_rate, opts.sample_rate
            ),
        ));
    }
    let samples = resample(&native.samples, native.sample_rate, opts.sample_rate)
        .map_err(|e| Error::format(path, e.to_string()))?;
    check_finite(
        path,
        Waveform {
            samples,
            sample_rate: opts.sample_rate,
        },
    )
}

/// Refuses a waveform with an infinite sample: float samples are finite when read, but huge
/// ones (a corrupt float WAV) overflow when channels are mixed or the audio is resampled.
fn check_finite(path: &Path, wave: Waveform) -> Result<Waveform> {
    match wave.samples.iter().position(|v| !v.is_finite()) {
        None => Ok(wave),
        Some(i) => Err(Error::format(
            path,
            format!(
                "float samples too large: sample {i} overflows to infinity once channels are \
                 mixed or the audio is resampled"
            ),
        )),
    }
}

/// A time span asked of a recording, in seconds; `end_s < 0` means to the end.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub start_s: f64,
    pub end_s: f64,
}

impl Span {
    /// Checks what can be checked before the file is opened.
    fn check(&self, path: &Path) -> Result<()> {
        if !self.start_s.is_finite()
            || self.start_s < 0.0
            || self.end_s.is_nan()
            || self.end_s.is_infinite()
        {
            return Err(Error::format(
                path,
                format!(
                    "segment {}..{} s: start must be >= 0 and both finite",
                    self.start_s, self.end_s
                ),
            ));
        }
        if self.end_s >= 0.0 && self.end_s <= self.start_s {
            return Err(Error::format(
                path,
                format!(
                    "segment {}..{} s: the end is not after the start",
                    self.start_s, self.end_s
                ),
            ));
        }
        Ok(())
    }

    /// The span as frames `[start, end)` at `rate` Hz in audio of `total` frames.
    pub(crate) fn frames(&self, path: &Path, rate: u32, total: u64) -> Result<Range<u64>> {
        if total == 0 {
            return Err(Error::format(path, "no samples (the audio is empty)"));
        }
        let rate_f = rate as f64;
        let dur = total as f64 / rate_f;
        let start = (self.start_s * rate_f).round() as u64;
        if start >= total {
            return Err(Error::format(
                path,
                format!(
                    "segment starts at {} s, outside the audio ({dur:.3} s long)",
                    self.start_s
                ),
            ));
        }
        let end = if self.end_s < 0.0 {
            total
        } else {
            let end = (self.end_s * rate_f).round() as u64;
            if end > total {
                if self.end_s - dur > MAX_SEGMENT_OVERSHOOT_S {
                    return Err(Error::format(
                        path,
                        format!(
                            "segment ends at {} s, more than {MAX_SEGMENT_OVERSHOOT_S} s past \
                             the end of the audio \
                             ({dur:.3} s long)",
                            self.end_s
                        ),
                    ));
                }
                total
            } else {
                end
            }
        };
        if end <= start {
            return Err(Error::format(
                path,
                format!(
                    "segment {}..{} s holds no samples at {rate} Hz",
                    self.start_s, self.end_s
                ),
            ));
        }
        Ok(start..end)
    }
}

/// Reduces interleaved frames to mono: the mean of the channels, or one picked channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mixer {
    channels: usize,
    pick: Option<usize>,
}

impl Mixer {
    /// A mixer for `channels`-channel audio; a picked channel past the last is an error.
    pub(crate) fn new(path: &Path, channels: usize, select: ChannelSelect) -> Result<Self> {
        if channels == 0 {
            return Err(Error::format(path, "the header declares zero channels"));
        }
        let pick = match select {
            ChannelSelect::Downmix => None,
            ChannelSelect::Channel(c) if c < channels => Some(c),
            ChannelSelect::Channel(c) => {
                return Err(Error::format(
                    path,
                    format!(
                        "channel {c} asked for, but the file has {channels} channel(s) \
                         (0-based: 0..={})",
                        channels - 1
                    ),
                ))
            }
        };
        Ok(Mixer { channels, pick })
    }

    /// Appends the mono version of `interleaved` (whole frames, `[frames * channels]`) to `out`.
    pub(crate) fn mix_into(&self, interleaved: &[f32], out: &mut Vec<f32>) {
        debug_assert_eq!(interleaved.len() % self.channels, 0);
        match (self.channels, self.pick) {
            (1, _) => out.extend_from_slice(interleaved),
            (c, Some(p)) => out.extend(interleaved.chunks_exact(c).map(|f| f[p])),
            (c, None) => {
                let scale = 1.0 / c as f32;
                out.extend(
                    interleaved
                        .chunks_exact(c)
                        .map(|f| f.iter().sum::<f32>() * scale),
                );
            }
        }
    }
}
