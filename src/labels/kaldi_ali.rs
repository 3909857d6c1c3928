//! Per-frame ids in the text shape of Kaldi's `ali-to-pdf final.mdl ark:ali.1 ark,t:-`:
//! `utt-id id id id ...`, one utterance per line, one non-negative integer per frame.
//! amdistill's `ali.txt` (senone ids) uses this shape.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// Reads alignments: utterance -> one id per frame. A line without ids, a non-integer id or a
/// duplicate utterance is an error naming the file and line.
pub fn read_alignments(path: impl AsRef<Path>) -> Result<BTreeMap<String, Vec<u32>>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
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
