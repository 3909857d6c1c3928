//! FLAC through `symphonia` (pure Rust; only its `flac` feature is built).
//!
//! symphonia's reader skips damaged frames and re-synchronises, so a decode that "succeeds" may
//! have lost audio. Here every packet must start where the previous one ended, the frame count
//! must equal STREAMINFO's total (when the encoder wrote one), and a whole-file decode must match
//! STREAMINFO's MD5 of the samples; otherwise the file is refused as truncated or corrupt.
//!
//! symphonia allocates the lengths written in a file's metadata (a block's 24-bit length, the
//! string and picture lengths inside VORBIS_COMMENT and PICTURE blocks, up to 4 GiB each)
//! before it reads them, so [`check_metadata`] first checks that each fits in the file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{Decoder, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::MediaSourceStream;
use symphonia::default::codecs::FlacDecoder;
use symphonia::default::formats::FlacReader;

use super::{ChannelSelect, Mixer, Span, Waveform};
use crate::error::{Error, Result};

/// Decodes `path` (already known to start with `fLaC`) to mono at its own rate.
pub(crate) fn decode(path: &Path, select: ChannelSelect, span: Option<Span>) -> Result<Waveform> {
    let mut file =
        File::open(path).map_err(|e| Error::format(path, format!("cannot open: {e}")))?;
    check_metadata(path, &mut file)?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::format(path, format!("cannot seek: {e}")))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut reader = FlacReader::try_new(stream, &FormatOptions::default())
        .map_err(|e| Error::format(path, format!("corrupt FLAC header: {}", describe(&e))))?;
    let track = reader
        .default_track()
        .ok_or_else(|| Error::format(path, "FLAC file without an audio stream"))?;
    let params = track.codec_params.clone();
    let sample_rate = match params.sample_rate {
        Some(r) if r > 0 => r,
        _ => {
            return Err(Error::format(
                path,
                "the FLAC header declares no sample rate",
            ))
        }
    };
    let channels = params.channels.map(|c| c.count()).unwrap_or(0);
    let mixer = Mixer::new(path, channels, select)?;
    // STREAMINFO's total is 0 (None here) when the encoder did not know it.
    let declared = params.n_frames.filter(|&n| n > 0);
    let range = match (span, declared) {
        (Some(span), Some(total)) => Some(span.frames(path, sample_rate, total)?),
        _ => None,
    };
    let stop_at = range.as_ref().map(|r| r.end);
    let mut decoder = FlacDecoder::try_new(&params, &DecoderOptions { verify: true })
        .map_err(|e| Error::format(path, format!("cannot decode FLAC: {}", describe(&e))))?;

    let mut out: Vec<f32> = Vec::new();
    let mut buf: Option<SampleBuffer<f32>> = None;
    let mut frames_seen = 0u64;
    loop {
        if stop_at.is_some_and(|end| frames_seen >= end) {
            break;
        }
        let packet = match reader.next_packet() {
            Ok(p) => p,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(e) => {
                return Err(Error::format(
                    path,
                    format!("corrupt FLAC stream: {}", describe(&e)),
                ))
            }
        };
        if packet.ts() != frames_seen {
            return Err(Error::format(
                path,
                format!(
                    "corrupt FLAC stream: samples {frames_seen}..{} are missing or damaged",
                    packet.ts().max(frames_seen)
                ),
            ));
        }
        let decoded = decoder.decode(&packet).map_err(|e| {
            Error::format(
                path,
                format!(
                    "corrupt FLAC frame at sample {frames_seen}: {}",
                    describe(&e)
                ),
            )
        })?;
        if decoded.spec().channels.count() != channels {
            return Err(Error::format(
                path,
                format!("corrupt FLAC frame at sample {frames_seen}: channel count changed"),
            ));
        }
        let frames = decoded.frames() as u64;
        if buf
            .as_ref()
            .is_some_and(|sb| sb.capacity() < decoded.capacity())
        {
            buf = None;
        }
        let sb = buf
            .get_or_insert_with(|| SampleBuffer::new(decoded.capacity() as u64, *decoded.spec()));
        sb.copy_interleaved_ref(decoded);
        mixer.mix_into(sb.samples(), &mut out);
        frames_seen += frames;
    }

    if let Some(total) = declared {
        // A damaged last frame is skipped by the reader just like a missing one: both are reported.
        if stop_at.is_none() && frames_seen < total {
            return Err(Error::format(
                path,
                format!(
                    "truncated or damaged: STREAMINFO declares {total} samples but only \
                     {frames_seen} could be decoded"
                ),
            ));
        }
        if frames_seen > total {
            return Err(Error::format(
                path,
                format!(
                    "corrupt: STREAMINFO declares {total} samples but {frames_seen} were decoded"
                ),
            ));
        }
        if stop_at.is_some_and(|end| frames_seen < end) {
            return Err(Error::format(
                path,
                format!(
                    "truncated or damaged: STREAMINFO declares {total} samples but the stream \
                     ends after {frames_seen}"
                ),
            ));
        }
    }
    if stop_at.is_none() && decoder.finalize().verify_ok == Some(false) {
        return Err(Error::format(
            path,
            "corrupt: the decoded samples do not match the FLAC file's MD5 checksum",
        ));
    }
    let range = match (range, span) {
        (Some(r), _) => r,
        (None, Some(span)) => span.frames(path, sample_rate, out.len() as u64)?,
        (None, None) => {
            return Ok(Waveform {
                samples: out,
                sample_rate,
            })
        }
    };
    out.truncate(range.end as usize);
    out.drain(..range.start as usize);
    Ok(Waveform {
        samples: out,
        sample_rate,
    })
}

/// Walks the metadata blocks after the `fLaC` marker and refuses a block longer than the rest
/// of the file, or a VORBIS_COMMENT or PICTURE block whose inner lengths overrun the block. A
/// block header cut short is left to symphonia, which reports it.
fn check_metadata(path: &Path, file: &mut File) -> Result<()> {
    let io = |e: std::io::Error| Error::format(path, format!("cannot read: {e}"));
    let file_len = file.metadata().map_err(io)?.len();
    let mut pos = 4u64;
    file.seek(SeekFrom::Start(pos)).map_err(io)?;
    loop {
        let mut head = [0u8; 4];
        if file.read_exact(&mut head).is_err() {
            return Ok(());
        }
        pos += 4;
        let (last, kind) = (head[0] & 0x80 != 0, head[0] & 0x7f);
        let len = u32::from_be_bytes([0, head[1], head[2], head[3]]) as u64;
        if len > file_len - pos {
            return Err(Error::format(
                path,
                format!(
                    "truncated or corrupt FLAC metadata: a block of type {kind} at byte {} \
                     declares {len} bytes, but only {} follow",
                    pos - 4,
                    file_len - pos
                ),
            ));
        }
        if kind == 4 || kind == 6 {
            // Bounded by the file's size, checked above.
            let mut block = vec![0u8; len as usize];
            file.read_exact(&mut block).map_err(io)?;
            let ok = if kind == 4 {
                vorbis_comment_fits(&block)
            } else {
                picture_fits(&block)
            };
            if !ok {
                let what = if kind == 4 {
                    "VORBIS_COMMENT"
                } else {
                    "PICTURE"
                };
                return Err(Error::format(
                    path,
                    format!(
                        "corrupt FLAC metadata: a length inside the {what} block at byte {} \
                         runs past its end ({len} bytes)",
                        pos - 4
                    ),
                ));
            }
        } else {
            file.seek(SeekFrom::Current(len as i64)).map_err(io)?;
        }
        pos += len;
        if last {
            return Ok(());
        }
    }
}

/// Reads a 32-bit length at `*at` of `block` (little- or big-endian) and steps past it and the
/// bytes it counts; `None` when either runs past the end.
fn skip_counted(block: &[u8], at: &mut usize, big_endian: bool) -> Option<()> {
    let b: [u8; 4] = block.get(*at..*at + 4)?.try_into().ok()?;
    let n = if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    } as usize;
    *at = at.checked_add(4 + n).filter(|&end| end <= block.len())?;
    Some(())
}

/// A VORBIS_COMMENT block: vendor string, comment count, counted comments (little-endian).
fn vorbis_comment_fits(block: &[u8]) -> bool {
    let mut at = 0;
    let mut fits = || -> Option<()> {
        skip_counted(block, &mut at, false)?;
        let b: [u8; 4] = block.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        for _ in 0..u32::from_le_bytes(b) {
            skip_counted(block, &mut at, false)?;
        }
        Some(())
    };
    fits().is_some()
}

/// A PICTURE block: type, counted MIME type, counted description, four 32-bit fields,
/// counted picture data (big-endian).
fn picture_fits(block: &[u8]) -> bool {
    let mut at = 4;
    let mut fits = || -> Option<()> {
        skip_counted(block, &mut at, true)?;
        skip_counted(block, &mut at, true)?;
        at += 16;
        skip_counted(block, &mut at, true)
    };
    fits().is_some()
}

/// symphonia's error, without its generic prefixes.
fn describe(e: &SymphoniaError) -> String {
    match e {
        SymphoniaError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            "unexpected end of file".into()
        }
        SymphoniaError::DecodeError(msg) => msg.to_string(),
        SymphoniaError::Unsupported(msg) => format!("unsupported: {msg}"),
        other => other.to_string(),
    }
}
