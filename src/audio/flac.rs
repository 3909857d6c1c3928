//! FLAC through `symphonia` (pure Rust; only its `flac` feature is built).
//!
//! symphonia's reader skips damaged frames and re-synchronises, so a decode that "succeeds" may
//! have lost audio. Here every packet must start where the previous one ended, the frame count
//! must equal STREAMINFO's total (when the encoder wrote one), and a whole-file decode must match
//! STREAMINFO's MD5 of the samples; otherwise the file is refused as truncated or corrupt.

use std::fs::File;
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
    let file = File::open(path).map_err(|e| Error::format(path, format!("cannot open: {e}")))?;
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
