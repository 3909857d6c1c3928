//! Per-frame ids in the shapes of Kaldi's `ali-to-pdf final.mdl ark:ali.1 ark,t:-` (text:
//! `utt-id id id id ...`, one utterance per line, one non-negative integer per frame) and of
//! `ark:-` (binary: `utt-id \0B` then an int32 vector, each size and value preceded by its byte
//! width `\4`). amdistill's `ali.txt` (senone ids) uses the text shape; both are read.
//!
//! Kaldi's own `ali.N.gz` hold transition ids, not pdf-ids; reading a gzip file is refused with
//! the `ali-to-pdf` command that converts it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// Reads alignments: utterance -> one id per frame. A line without ids, a non-integer id or a
/// duplicate utterance is an error naming the file and line.
///
/// A binary archive (as `ali-to-pdf ... ark:-` writes) is read too; a gzip file is refused
/// with the command that makes pdf-id alignments from Kaldi's `ali.N.gz`.
pub fn read_alignments(path: impl AsRef<Path>) -> Result<BTreeMap<String, Vec<u32>>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return Err(Error::Format {
            path: path.to_path_buf(),
            msg: "gzip-compressed: Kaldi's ali.N.gz hold transition ids, not pdf-ids; convert \
                  them with `ali-to-pdf exp/x_ali/final.mdl \"ark:gunzip -c exp/x_ali/ali.*.gz|\" \
                  ark,t:pdf_ali.txt`"
                .to_string(),
        });
    }
    if is_binary_archive(&bytes) {
        return read_binary_alignments(path, &bytes);
    }
    let text = String::from_utf8(bytes).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        msg: format!(
            "neither alignment text nor a binary archive (invalid UTF-8 at byte {})",
            e.utf8_error().valid_up_to()
        ),
    })?;
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let mut fields = line.split_whitespace();
        let Some(utt) = fields.next() else { continue };
        let ids = fields
            .map(|f| {
                f.parse::<u32>().map_err(|_| {
                    Error::parse(
                        path,
                        i + 1,
                        format!("utterance {utt}: bad id '{f}' (expected a non-negative integer)"),
                    )
                })
            })
            .collect::<Result<Vec<u32>>>()?;
        if ids.is_empty() {
            return Err(Error::parse(
                path,
                i + 1,
                format!("utterance {utt} has no frame ids"),
            ));
        }
        if let Some(prev) = first_line.insert(utt.to_string(), i + 1) {
            return Err(Error::parse(
                path,
                i + 1,
                format!("duplicate utterance '{utt}' (first on line {prev})"),
            ));
        }
        out.insert(utt.to_string(), ids);
    }
    Ok(out)
}

/// A Kaldi binary archive starts with a key, one space and `\0B`.
fn is_binary_archive(bytes: &[u8]) -> bool {
    let key_end = bytes.iter().position(|&b| b == b' ' || b == b'\n');
    matches!(key_end, Some(k) if k > 0 && bytes[k] == b' ' && bytes[k + 1..].starts_with(b"\0B"))
}

/// Reads a binary archive of int32 vectors (Kaldi's `WriteIntegerVector`: the element width
/// `\4`, an int32 count, then the elements); every count is checked against the bytes left
/// before anything is allocated.
fn read_binary_alignments(path: &Path, bytes: &[u8]) -> Result<BTreeMap<String, Vec<u32>>> {
    let bad = |at: usize, msg: String| Error::Format {
        path: path.to_path_buf(),
        msg: format!("byte {at}: {msg}"),
    };
    let int32 = |b: &[u8]| i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let mut out = BTreeMap::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let key_end = bytes[pos..]
            .iter()
            .position(|&b| b == b' ')
            .map(|k| pos + k)
            .ok_or_else(|| bad(pos, "a key without a value".to_string()))?;
        let utt = std::str::from_utf8(&bytes[pos..key_end])
            .ok()
            .filter(|k| !k.is_empty() && !k.contains(|c: char| c.is_whitespace()))
            .ok_or_else(|| bad(pos, "bad utterance key".to_string()))?
            .to_string();
        let head = key_end + 1;
        match bytes.get(head..head + 7) {
            Some([0, b'B', 4, n @ ..]) => {
                let n = int32(n);
                let at = head + 7;
                let room = (bytes.len() - at) / 4;
                if n <= 0 || n as usize > room {
                    return Err(bad(
                        head + 3,
                        format!("utterance {utt}: {n} frames claimed, room for {room}"),
                    ));
                }
                let mut ids = Vec::with_capacity(n as usize);
                for (f, b) in bytes[at..at + 4 * n as usize].chunks_exact(4).enumerate() {
                    let id = int32(b);
                    if id < 0 {
                        return Err(bad(
                            at + 4 * f,
                            format!("utterance {utt} frame {f}: negative id {id}"),
                        ));
                    }
                    ids.push(id as u32);
                }
                if out.insert(utt.clone(), ids).is_some() {
                    return Err(bad(pos, format!("duplicate utterance '{utt}'")));
                }
                pos = at + 4 * n as usize;
            }
            Some([0, b'B', w, ..]) => {
                return Err(bad(
                    head + 2,
                    format!("utterance {utt}: {w}-byte integers, expected an int32 vector"),
                ))
            }
            _ => {
                return Err(bad(
                    head,
                    format!("utterance {utt}: expected '\\0B' and an int32 vector"),
                ))
            }
        }
        while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
            pos += 1;
        }
    }
    Ok(out)
}

/// Writes alignments in Kaldi's binary archive shape (`ark:` without `,t`), utterances sorted.
pub fn write_binary_alignments(
    path: impl AsRef<Path>,
    alignments: &BTreeMap<String, Vec<u32>>,
) -> Result<()> {
    write_atomic(path, |w| {
        for (utt, ids) in alignments {
            write!(w, "{utt} ")?;
            w.write_all(b"\0B\x04")?;
            w.write_all(&(ids.len() as i32).to_le_bytes())?;
            for &id in ids {
                w.write_all(&(id as i32).to_le_bytes())?;
            }
        }
        Ok(())
    })
}

/// Writes alignments atomically, utterances in sorted order.
pub fn write_alignments(
    path: impl AsRef<Path>,
    alignments: &BTreeMap<String, Vec<u32>>,
) -> Result<()> {
    write_atomic(path, |w| {
        for (utt, ids) in alignments {
            write!(w, "{utt}")?;
            for id in ids {
                write!(w, " {id}")?;
            }
            writeln!(w)?;
        }
        Ok(())
    })
}

/// Largest id over all utterances (`None` when there are none): the number of senones an
/// alignment needs is this plus one.
pub fn max_id(alignments: &BTreeMap<String, Vec<u32>>) -> Option<u32> {
    alignments.values().flat_map(|v| v.iter().copied()).max()
}
