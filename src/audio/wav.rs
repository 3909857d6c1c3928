//! RIFF/WAVE: 8/16/24/32-bit integer PCM (24 bits also in 4-byte containers) and 32-bit IEEE
//! float, plain or WAVE_FORMAT_EXTENSIBLE, any channel count.
//!
//! `hound` parses and validates the header (chunks, fmt, extensible sub-format). The data chunk's
//! declared length is then checked against the file's size before anything is read or allocated
//! (a truncated file is refused, not read short), and the samples are converted here in bulk
//! from the raw bytes: hound's per-sample iterator reads about 30 M samples/s, a fraction of
//! what the fbank stage computes, while this reads several hundred M/s. Float samples must be
//! finite; a refused encoding is named (A-law, mu-law, ADPCM, 12-bit ...) from the fmt chunk.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use hound::{SampleFormat, WavReader};

use super::{ChannelSelect, Mixer, Span, Waveform};
use crate::error::{Error, Result};

/// Frames converted per batch before mixing to mono.
const BATCH_FRAMES: usize = 1 << 15;

/// How the bytes of one sample become an f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    /// Unsigned 8-bit, centred on 128.
    U8,
    I16,
    /// Signed 24-bit in 3 bytes.
    I24,
    /// Signed 32-bit; also 24 valid bits in a 4-byte container, which WAVE_FORMAT_EXTENSIBLE
    /// left-justifies (the low byte is padding), as libsndfile and ffmpeg read it.
    I32,
    F32,
}

/// Decodes `path` (already known to start with RIFF....WAVE) to mono at its own rate.
pub(crate) fn decode(path: &Path, select: ChannelSelect, span: Option<Span>) -> Result<Waveform> {
    let file = File::open(path).map_err(|e| Error::format(path, format!("cannot open: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::format(path, format!("cannot stat: {e}")))?
        .len();
    let header = WavReader::new(BufReader::with_capacity(1 << 16, file))
        .map_err(|e| header_error(path, e))?;
    let spec = header.spec();
    // Interleaved values, all channels.
    let n_samples = header.len() as u64;
    // hound stops right after the data chunk's 8-byte header, whose last 4 bytes are its length.
    let mut reader = header.into_inner();
    let io_err =
        |e: std::io::Error| Error::format(path, format!("cannot read the WAV header: {e}"));
    let data_offset = reader.stream_position().map_err(io_err)?;
    let mut len_bytes = [0u8; 4];
    reader
        .seek(SeekFrom::Start(data_offset - 4))
        .and_then(|_| reader.read_exact(&mut len_bytes))
        .map_err(io_err)?;
    let data_len = u32::from_le_bytes(len_bytes) as u64;

    if spec.sample_rate == 0 {
        return Err(Error::format(
            path,
            "the header declares a sample rate of 0 Hz",
        ));
    }
    let channels = spec.channels as usize;
    let mixer = Mixer::new(path, channels, select)?;
    // hound checked that the data chunk holds whole containers, `block_align / channels` bytes.
    let width = data_len
        .checked_div(n_samples)
        .unwrap_or((spec.bits_per_sample as u64).div_ceil(8));
    let encoding = match (spec.sample_format, spec.bits_per_sample, width) {
        (SampleFormat::Int, 8, 1) => Encoding::U8,
        (SampleFormat::Int, 16, 2) => Encoding::I16,
        (SampleFormat::Int, 24, 3) => Encoding::I24,
        (SampleFormat::Int, 24 | 32, 4) => Encoding::I32,
        (SampleFormat::Float, 32, 4) => Encoding::F32,
        (SampleFormat::Int, bits, w) => {
            return Err(Error::format(
                path,
                format!(
                    "unsupported encoding: {bits}-bit PCM in {w}-byte containers \
                     (8, 16, 24 or 32-bit only)"
                ),
            ))
        }
        (SampleFormat::Float, bits, _) => {
            let msg = format!("unsupported encoding: {bits}-bit float (32 only)");
            return Err(Error::format(path, msg));
        }
    };

    let available = file_len.saturating_sub(data_offset);
    let total_frames = n_samples / channels as u64;
    let frame_bytes = width * channels as u64;
    if data_len > available {
        return Err(Error::format(
            path,
            format!(
                "truncated: the data chunk declares {data_len} bytes ({total_frames} frames, \
                 {:.3} s) but only {available} bytes follow the header ({} frames)",
                total_frames as f64 / spec.sample_rate as f64,
                available / frame_bytes,
            ),
        ));
    }
    let range = match span {
        Some(span) => span.frames(path, spec.sample_rate, total_frames)?,
        None => 0..total_frames,
    };
    reader
        .seek(SeekFrom::Start(data_offset + range.start * frame_bytes))
        .map_err(|e| Error::format(path, format!("cannot seek: {e}")))?;

    let frames = (range.end - range.start) as usize; // bounded by the file's size, checked above
    let mut out = Vec::with_capacity(frames);
    let mut bytes = vec![0u8; BATCH_FRAMES.min(frames) * frame_bytes as usize];
    let mut batch = Vec::with_capacity(BATCH_FRAMES.min(frames) * channels);
    let mut done = 0;
    while done < frames {
        let n = (frames - done).min(BATCH_FRAMES);
        let chunk = &mut bytes[..n * frame_bytes as usize];
        let first = range.start + done as u64;
        reader.read_exact(chunk).map_err(|e| {
            Error::format(
                path,
                format!("truncated or unreadable at frame {first}: {e}"),
            )
        })?;
        batch.clear();
        convert(chunk, encoding, &mut batch);
        if encoding == Encoding::F32 {
            check_finite(path, &batch, channels, first)?;
        }
        mixer.mix_into(&batch, &mut out);
        done += n;
    }
    Ok(Waveform {
        samples: out,
        sample_rate: spec.sample_rate,
    })
}

/// Appends the little-endian samples in `bytes` to `out`, scaled to [-1, 1] (float as is).
fn convert(bytes: &[u8], encoding: Encoding, out: &mut Vec<f32>) {
    match encoding {
        Encoding::U8 => out.extend(bytes.iter().map(|&b| (b as i32 - 128) as f32 / 128.0)),
        Encoding::I16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0),
        ),
        Encoding::I24 => out.extend(
            bytes
                .chunks_exact(3)
                .map(|b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8388608.0),
        ),
        Encoding::I32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2147483648.0),
        ),
        Encoding::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
    }
}

/// Refuses NaN and infinite values, naming the first by frame (counted from the start of the
/// file) and channel.
fn check_finite(path: &Path, interleaved: &[f32], channels: usize, first_frame: u64) -> Result<()> {
    match interleaved.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(at) => {
            let what = if interleaved[at].is_nan() {
                "NaN"
            } else {
                "infinite"
            };
            Err(Error::format(
                path,
                format!(
                    "sample {} (channel {}) is {what}: float audio must be finite",
                    first_frame + (at / channels) as u64,
                    at % channels
                ),
            ))
        }
    }
}

/// Turns a hound header error into a message naming what is wrong: an encoding hound does not
/// read is named from the fmt chunk, anything else is a corrupt or truncated header.
fn header_error(path: &Path, e: hound::Error) -> Error {
    if let hound::Error::IoError(e) = &e {
        return Error::format(path, format!("truncated or unreadable WAV header: {e}"));
    }
    match peek_fmt(path) {
        Some(fmt) if fmt.is_unsupported_encoding() => {
            Error::format(path, format!("unsupported encoding: {}", fmt.describe()))
        }
        _ => Error::format(path, format!("corrupt WAV header: {e}")),
    }
}

/// The fields of a fmt chunk that name an encoding.
struct FmtPeek {
    tag: u16,
    bits: u16,
    /// The sub-format GUID's first two bytes, for WAVE_FORMAT_EXTENSIBLE.
    sub_tag: Option<u16>,
}

impl FmtPeek {
    /// True when the fmt chunk is well-formed enough to name an encoding that is not read here.
    fn is_unsupported_encoding(&self) -> bool {
        match self.tag {
            0x0001 => !matches!(self.bits, 8 | 16 | 24 | 32),
            0x0003 => self.bits != 32,
            0xFFFE => !matches!(self.sub_tag, Some(1) | Some(3)),
            _ => true,
        }
    }

    fn describe(&self) -> String {
        let tag = if self.tag == 0xFFFE {
            self.sub_tag.unwrap_or(0xFFFE)
        } else {
            self.tag
        };
        let name = match tag {
            0x0001 => format!("{}-bit PCM", self.bits),
            0x0002 => "Microsoft ADPCM".to_string(),
            0x0003 => format!("{}-bit float", self.bits),
            0x0006 => "A-law".to_string(),
            0x0007 => "mu-law".to_string(),
            0x0011 => "IMA ADPCM".to_string(),
            0x0031 => "GSM 6.10".to_string(),
            0x0055 => "MPEG layer 3".to_string(),
            0xFFFE => "WAVE_FORMAT_EXTENSIBLE with an unknown sub-format".to_string(),
            t => format!("WAV format tag 0x{t:04x}"),
        };
        format!("{name} (only 8/16/24/32-bit PCM and 32-bit float are read)")
    }
}

/// Walks the RIFF chunks to the fmt chunk, for error messages only (hound has refused the file).
fn peek_fmt(path: &Path) -> Option<FmtPeek> {
    let mut f = BufReader::new(File::open(path).ok()?);
    let mut head = [0u8; 12];
    f.read_exact(&mut head).ok()?;
    loop {
        let mut chunk = [0u8; 8];
        f.read_exact(&mut chunk).ok()?;
        let len = u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]) as u64;
        if &chunk[..4] == b"fmt " {
            let mut fmt = [0u8; 40];
            let n = (len as usize).min(40);
            f.read_exact(&mut fmt[..n]).ok()?;
            if n < 16 {
                return None;
            }
            let tag = u16::from_le_bytes([fmt[0], fmt[1]]);
            let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
            let sub_tag =
                (tag == 0xFFFE && n >= 26).then(|| u16::from_le_bytes([fmt[24], fmt[25]]));
            return Some(FmtPeek { tag, bits, sub_tag });
        }
        f.seek(SeekFrom::Current((len + (len & 1)) as i64)).ok()?;
    }
}
