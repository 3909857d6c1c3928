//! Phone times as CTM (Kaldi's `ali-to-phones --ctm-output` shape):
//! `utt-id channel start duration phone`, times in seconds, one phone per line, sorted by
//! utterance then start. Every corpus importer and `synth-corpus` writes `phones.ctm` in the
//! data directory; frame labels are made from it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// One phone of an utterance, times in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneSegment {
    pub phone: String,
    pub start: f64,
    pub end: f64,
}

/// Reads a CTM into utterance -> phones in time order. Overlapping or negative-length
/// segments are errors naming the line.
pub fn read_ctm(path: impl AsRef<Path>) -> Result<BTreeMap<String, Vec<PhoneSegment>>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out: BTreeMap<String, Vec<PhoneSegment>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 5 {
            return Err(Error::parse(
                path,
                i + 1,
                "expected 'utt-id channel start duration phone'",
            ));
        }
        let num = |s: &str, what: &str| -> Result<f64> {
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(Error::parse(path, i + 1, format!("bad {what} '{s}'"))),
            }
        };
        let start = num(f[2], "start")?;
        let dur = num(f[3], "duration")?;
        let phones = out.entry(f[0].to_string()).or_default();
        if let Some(prev) = phones.last() {
            if start + 1e-6 < prev.end {
                return Err(Error::parse(
                    path,
                    i + 1,
                    format!(
                        "phone starts at {start} before the previous one ends ({})",
                        prev.end
                    ),
                ));
            }
        }
        phones.push(PhoneSegment {
            phone: f[4].to_string(),
            start,
            end: start + dur,
        });
    }
    Ok(out)
}

/// Writes utterance -> phones as a CTM (channel 1), atomically.
pub fn write_ctm(path: impl AsRef<Path>, utts: &BTreeMap<String, Vec<PhoneSegment>>) -> Result<()> {
    write_atomic(path, |w| {
        for (utt, phones) in utts {
            for p in phones {
                // Round the ends, not the duration, so that rounded phones never overlap.
                let (start, end) = (
                    (p.start * 1000.0).round() / 1000.0,
                    (p.end * 1000.0).round() / 1000.0,
                );
                writeln!(w, "{utt} 1 {start:.3} {:.3} {}", end - start, p.phone)?;
            }
        }
        Ok(())
    })
}
