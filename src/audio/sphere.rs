//! NIST SPHERE with uncompressed PCM, as in the LDC TIMIT distribution.
//!
//! A SPHERE file is a text header then raw samples:
//!
//! ```text
//! NIST_1A
//!    1024
//! sample_count -i 46797
//! sample_rate -i 16000
//! channel_count -i 1
//! sample_n_bytes -i 2
//! sample_byte_format -s2 01        (01 little endian, 10 big endian; 0123 / 3210 for 4 bytes)
//! sample_coding -s3 pcm            (absent means pcm)
//! end_head
//! ```
//!
//! The second line is the header's size in bytes (samples start there), fields are
//! `name -i INT`, `name -r REAL` or `name -sN STRING`. Compressed files (shorten, wavpack,
//! shortpack) and mu-law/A-law are refused with the tool that converts them. The header's
//! sample count must match the bytes in the file exactly, so a lying header is refused before
//! anything is allocated from it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use super::{ChannelSelect, Mixer, Span, Waveform};
use crate::error::{Error, Result};

/// The largest header accepted (real ones are 1024 bytes).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Frames read per batch before mixing to mono.
const BATCH_FRAMES: usize = 1 << 13;

/// The fields of a SPHERE header that decoding needs, checked against the file's size.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SphereHeader {
    /// Bytes before the first sample.
    pub header_bytes: u64,
    /// Frames (samples per channel).
    pub sample_count: u64,
    pub sample_rate: u32,
    pub channels: usize,
    /// Bytes per sample: 2, 3 or 4.
    pub sample_bytes: usize,
    pub big_endian: bool,
}

/// Decodes `path` (already known to start with `NIST_1A\n`) to mono at its own rate.
pub(crate) fn decode(path: &Path, select: ChannelSelect, span: Option<Span>) -> Result<Waveform> {
    let mut file =
        File::open(path).map_err(|e| Error::format(path, format!("cannot open: {e}")))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::format(path, format!("cannot stat: {e}")))?
        .len();
    let header = read_header(path, &mut file, file_len)?;
    let mixer = Mixer::new(path, header.channels, select)?;
    let range = match span {
        Some(span) => span.frames(path, header.sample_rate, header.sample_count)?,
        None => 0..header.sample_count,
    };
    let frame_bytes = header.channels * header.sample_bytes;
    file.seek(SeekFrom::Start(
        header.header_bytes + range.start * frame_bytes as u64,
    ))
    .map_err(|e| Error::format(path, format!("cannot seek: {e}")))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);

    let frames = (range.end - range.start) as usize; // bounded by the file's size, checked
    let mut out = Vec::with_capacity(frames);
    let mut bytes = vec![0u8; BATCH_FRAMES.min(frames) * frame_bytes];
    let mut batch = Vec::with_capacity(BATCH_FRAMES.min(frames) * header.channels);
    let mut done = 0;
    while done < frames {
        let n = (frames - done).min(BATCH_FRAMES);
        let chunk = &mut bytes[..n * frame_bytes];
        reader.read_exact(chunk).map_err(|e| {
            Error::format(
                path,
                format!(
                    "truncated or unreadable at frame {}: {e}",
                    range.start + done as u64
                ),
            )
        })?;
        batch.clear();
        convert(chunk, header.sample_bytes, header.big_endian, &mut batch);
        mixer.mix_into(&batch, &mut out);
        done += n;
    }
    Ok(Waveform {
        samples: out,
        sample_rate: header.sample_rate,
    })
}

/// Appends the samples in `bytes` (`sample_bytes` wide, signed) to `out`, scaled to [-1, 1].
fn convert(bytes: &[u8], sample_bytes: usize, big_endian: bool, out: &mut Vec<f32>) {
    match (sample_bytes, big_endian) {
        (2, false) => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0),
        ),
        (2, true) => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| i16::from_be_bytes([b[0], b[1]]) as f32 / 32768.0),
        ),
        (3, false) => out.extend(
            bytes
                .chunks_exact(3)
                .map(|b| (i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8) as f32 / 8388608.0),
        ),
        (3, true) => out.extend(
            bytes
                .chunks_exact(3)
                .map(|b| (i32::from_be_bytes([b[0], b[1], b[2], 0]) >> 8) as f32 / 8388608.0),
        ),
        (4, false) => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2147483648.0),
        ),
        (4, true) => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f32 / 2147483648.0),
        ),
        _ => unreachable!("sample_bytes is checked to be 2, 3 or 4 when the header is read"),
    }
}

/// Reads and checks the header of the SPHERE file `file` (`file_len` bytes long).
pub(crate) fn read_header(path: &Path, file: &mut File, file_len: u64) -> Result<SphereHeader> {
    let err = |msg: String| Error::format(path, msg);
    // The first two lines ("NIST_1A\n" and the header size, "   1024\n") fit in 16 bytes.
    let mut first = [0u8; 16];
    let got = read_up_to(file, &mut first)
        .map_err(|e| err(format!("cannot read the SPHERE header: {e}")))?;
    if got < 16 {
        return Err(err(format!(
            "truncated SPHERE header: the file is only {file_len} bytes"
        )));
    }
    if &first[..8] != b"NIST_1A\n" {
        return Err(err("not a NIST SPHERE file (no NIST_1A line)".to_string()));
    }
    let size_line = String::from_utf8_lossy(&first[8..16]);
    let header_bytes: u64 = size_line.trim().parse().map_err(|_| {
        err(format!(
            "SPHERE header size {:?} is not a number",
            size_line.trim()
        ))
    })?;
    if !(16..=MAX_HEADER_BYTES).contains(&header_bytes) {
        return Err(err(format!(
            "SPHERE header size {header_bytes} is out of range (16..={MAX_HEADER_BYTES})"
        )));
    }
    if header_bytes > file_len {
        return Err(err(format!(
            "truncated: the SPHERE header declares {header_bytes} bytes but the file is only \
             {file_len} bytes"
        )));
    }
    let mut text = vec![0u8; header_bytes as usize - 16];
    file.read_exact(&mut text)
        .map_err(|e| err(format!("cannot read the SPHERE header: {e}")))?;
    let fields = parse_fields(path, &text)?;

    let int = |name: &str| -> Result<Option<i64>> {
        match fields.get(name) {
            None => Ok(None),
            Some((ty, v)) if ty == "-i" => v
                .trim()
                .parse::<i64>()
                .map(Some)
                .map_err(|_| err(format!("SPHERE field {name} {v:?} is not an integer"))),
            Some((ty, _)) => Err(err(format!(
                "SPHERE field {name} has type {ty}, expected -i"
            ))),
        }
    };
    let string = |name: &str| fields.get(name).map(|(_, v)| v.trim().to_string());

    // Compression and companding first: their other fields describe the decoded audio.
    let coding = string("sample_coding")
        .unwrap_or_else(|| "pcm".to_string())
        .to_ascii_lowercase();
    let byte_format = string("sample_byte_format").unwrap_or_default();
    for packed in ["shorten", "wavpack", "shortpack"] {
        if coding.contains(packed) || byte_format.to_ascii_lowercase().contains(packed) {
            return Err(err(format!(
                "SPHERE audio compressed with {packed} is not supported; decompress it first \
                 (e.g. `sph2pipe -f wav IN OUT.wav`)"
            )));
        }
    }
    if coding.contains("ulaw")
        || coding.contains("mu-law")
        || coding.contains("alaw")
        || coding.contains("a-law")
    {
        return Err(err(format!(
            "SPHERE sample_coding {coding:?} (companded) is not supported; convert it to PCM first \
             (e.g. `sph2pipe -p -f wav IN OUT.wav`)"
        )));
    }
    if coding != "pcm" {
        return Err(err(format!(
            "unsupported SPHERE sample_coding {coding:?} (only pcm)"
        )));
    }
    if let Some(v) = string("channels_interleaved") {
        if v.eq_ignore_ascii_case("false") {
            return Err(err(
                "SPHERE with non-interleaved channels is not supported".to_string()
            ));
        }
    }

    let sample_rate = match int("sample_rate")? {
        Some(r) if (1..=1_000_000).contains(&r) => r as u32,
        Some(r) => return Err(err(format!("SPHERE sample_rate {r} is out of range"))),
        None => return Err(err("the SPHERE header has no sample_rate".to_string())),
    };
    let channels = match int("channel_count")?.unwrap_or(1) {
        c if (1..=1024).contains(&c) => c as usize,
        0 => return Err(err("the header declares zero channels".to_string())),
        c => return Err(err(format!("SPHERE channel_count {c} is out of range"))),
    };
    let sample_bytes = match int("sample_n_bytes")? {
        Some(n @ 2..=4) => n as usize,
        Some(n) => {
            return Err(err(format!(
                "unsupported encoding: SPHERE sample_n_bytes {n} (2, 3 or 4-byte PCM only)"
            )))
        }
        None => return Err(err("the SPHERE header has no sample_n_bytes".to_string())),
    };
    let ascending: String = (0..sample_bytes)
        .map(|i| char::from(b'0' + i as u8))
        .collect();
    let descending: String = ascending.chars().rev().collect();
    let big_endian = if byte_format == ascending {
        false
    } else if byte_format == descending {
        true
    } else if byte_format.is_empty() {
        return Err(err(
            "the SPHERE header has no sample_byte_format".to_string()
        ));
    } else {
        return Err(err(format!(
            "unsupported SPHERE sample_byte_format {byte_format:?} for {sample_bytes}-byte samples \
             ({ascending} little endian or {descending} big endian)"
        )));
    };

    let data_bytes = file_len - header_bytes;
    let frame_bytes = (channels * sample_bytes) as u64;
    let sample_count = match int("sample_count")? {
        Some(n) if n < 0 => return Err(err(format!("SPHERE sample_count {n} is negative"))),
        Some(n) => n as u64,
        None if data_bytes % frame_bytes == 0 => data_bytes / frame_bytes,
        None => {
            return Err(err(format!(
                "the SPHERE header has no sample_count and {data_bytes} data bytes are not whole \
                 {frame_bytes}-byte frames"
            )))
        }
    };
    let declared = sample_count.checked_mul(frame_bytes);
    match declared {
        Some(d) if d == data_bytes => {}
        Some(d) if d < data_bytes => {
            return Err(err(format!(
                "the SPHERE header declares {sample_count} samples ({d} bytes) but {data_bytes} \
                 bytes follow the \
                 {header_bytes}-byte header"
            )))
        }
        _ => {
            return Err(err(format!(
                "truncated: the SPHERE header declares {sample_count} samples of {frame_bytes} \
                 bytes but only \
                 {data_bytes} bytes follow the {header_bytes}-byte header"
            )))
        }
    }
    Ok(SphereHeader {
        header_bytes,
        sample_count,
        sample_rate,
        channels,
        sample_bytes,
        big_endian,
    })
}

/// Parses the header's `name -type value` lines (after the first two) up to `end_head` into
/// `name -> (type, value)`.
fn parse_fields(path: &Path, text: &[u8]) -> Result<HashMap<String, (String, String)>> {
    let text = String::from_utf8_lossy(text);
    let mut fields = HashMap::new();
    // Line numbers are 1-based in the whole header: the fields start on line 3.
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 3;
        let line = raw.trim_end_matches('\r');
        if line.trim() == "end_head" {
            return Ok(fields);
        }
        if line.trim().is_empty() || line.starts_with(';') {
            continue;
        }
        let bad = || {
            Error::format(
                path,
                format!("SPHERE header line {line_no}: cannot parse {line:?}"),
            )
        };
        let (name, rest) = line
            .trim_start()
            .split_once(char::is_whitespace)
            .ok_or_else(bad)?;
        let rest = rest.trim_start();
        let (ty, value) = rest.split_once(' ').ok_or_else(bad)?;
        if !(ty == "-i" || ty == "-r" || (ty.starts_with("-s") && ty[2..].parse::<usize>().is_ok()))
        {
            return Err(bad());
        }
        fields.insert(name.to_string(), (ty.to_string(), value.to_string()));
    }
    Err(Error::format(
        path,
        "the SPHERE header has no end_head line within its declared size",
    ))
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
