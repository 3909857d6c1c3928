//! TIMIT `.PHN` files: `start_sample end_sample phone` per line, sample indices of the
//! utterance's audio (16 kHz in TIMIT), end exclusive.

use std::path::Path;

use crate::error::{Error, Result};
use crate::labels::PhoneLabel;

/// TIMIT's sample rate (Hz), the unit of `.PHN` times.
pub const TIMIT_SAMPLE_RATE: f64 = 16000.0;

/// Reads a `.PHN` file; `sample_rate` (Hz) converts sample indices to seconds. Segments must be
/// in time order without overlap (gaps are allowed); errors name the file and line.
pub fn read_phn(path: impl AsRef<Path>, sample_rate: f64) -> Result<Vec<PhoneLabel>> {
    let path = path.as_ref();
    if !(sample_rate > 0.0 && sample_rate.is_finite()) {
        return Err(Error::config(format!(
            "{}: bad sample rate {sample_rate}",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut out: Vec<PhoneLabel> = Vec::new();
    let mut prev_end: u64 = 0;
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() != 3 {
            return Err(Error::parse(
                path,
                i + 1,
                format!(
                    "expected 'start_sample end_sample phone', got {} fields",
                    f.len()
                ),
            ));
        }
        let num = |s: &str, what: &str| -> Result<u64> {
            s.parse::<u64>().map_err(|_| {
                Error::parse(
                    path,
                    i + 1,
                    format!("bad {what} sample '{s}' (expected a non-negative integer)"),
                )
            })
        };
        let start = num(f[0], "start")?;
        let end = num(f[1], "end")?;
        if end < start {
            return Err(Error::parse(
                path,
                i + 1,
                format!("end sample {end} before start sample {start}"),
            ));
        }
        if start < prev_end {
            return Err(Error::parse(
                path,
                i + 1,
                format!(
                    "segment starts at sample {start}, before the previous one ends ({prev_end})"
                ),
            ));
        }
        prev_end = end;
        out.push(PhoneLabel {
            phone: f[2].to_string(),
            start: start as f64 / sample_rate,
            end: end as f64 / sample_rate,
            line: i + 1,
        });
    }
    if out.is_empty() {
        return Err(Error::parse(path, 0, "no phone segments"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("SI1.PHN");
        std::fs::write(&p, "0 3050 h#\n3050 4559 sh\n4559 5723 ix\n").unwrap();
        let ph = read_phn(&p, TIMIT_SAMPLE_RATE).unwrap();
        assert_eq!(ph.len(), 3);
        assert_eq!(ph[1].phone, "sh");
        assert!((ph[1].start - 3050.0 / 16000.0).abs() < 1e-12);
        assert_eq!(ph[2].line, 3);
        std::fs::write(&p, "0 3050 h#\n3050 abc sh\n").unwrap();
        let e = read_phn(&p, TIMIT_SAMPLE_RATE).unwrap_err().to_string();
        assert!(e.contains("SI1.PHN:2") && e.contains("abc"), "{e}");
    }
}
