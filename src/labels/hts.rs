//! HTS and festival label files.
//!
//! - HTS (`start end label`, times in 100 ns units as HTK writes them): the label is either a
//!   monophone (`hh`) or a full-context label (`x^sil-hh+iy=t@1_2/A:...`, centre phone between
//!   the first `-` and the `+` after it). State-level files add `[N]` to the label
//!   (`...[2]` .. `...[6]` for 5 emitting states); [`read_hts_phones`] merges consecutive states
//!   of one phone back into one segment.
//! - festival / xwaves (`lab/*.lab` of CMU ARCTIC): a header ending with a line `#`, then
//!   `end_time colour label` per line, times in seconds, each phone starting where the previous
//!   one ended.

use std::path::Path;

use crate::error::{Error, Result};
use crate::labels::PhoneLabel;

/// HTK time unit in seconds (100 ns).
pub const HTK_TIME_UNIT: f64 = 1e-7;

/// One line of an HTS label file.
#[derive(Debug, Clone, PartialEq)]
pub struct HtsLabel {
    /// Start time in seconds.
    pub start: f64,
    /// End time in seconds.
    pub end: f64,
    /// The label without its `[N]` state suffix.
    pub label: String,
    /// The centre phone (the whole label for a monophone).
    pub phone: String,
    /// HMM state from a `[N]` suffix (HTS numbers emitting states from 2).
    pub state: Option<u8>,
    /// 1-based source line.
    pub line: usize,
}

/// The centre phone of a full-context label (`a^b-c+d=e@...` -> `c`), or the label itself when
/// it is a monophone (no `+` after a `-`, so `ax-h` stays `ax-h`).
pub fn centre_phone(label: &str) -> &str {
    if let Some(minus) = label.find('-') {
        if let Some(plus) = label[minus + 1..].find('+') {
            return &label[minus + 1..minus + 1 + plus];
        }
    }
    label
}

/// Splits a `[N]` state suffix off a label.
fn split_state(label: &str) -> std::result::Result<(&str, Option<u8>), String> {
    if let Some(body) = label.strip_suffix(']') {
        if let Some(open) = body.rfind('[') {
            let n = &body[open + 1..];
            let state: u8 = n.parse().map_err(|_| format!("bad state suffix '[{n}]'"))?;
            return Ok((&body[..open], Some(state)));
        }
    }
    Ok((label, None))
}

/// Reads an HTS label file line by line (monophone or full-context, phone or state level).
pub fn read_hts_labels(path: impl AsRef<Path>) -> Result<Vec<HtsLabel>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out: Vec<HtsLabel> = Vec::new();
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
                    "expected 'start end label' (times in 100 ns units), got {} fields",
                    f.len()
                ),
            ));
        }
        let time = |s: &str, what: &str| -> Result<f64> {
            s.parse::<u64>()
                .map(|v| v as f64 * HTK_TIME_UNIT)
                .map_err(|_| {
                    Error::parse(
                        path,
                        i + 1,
                        format!("bad {what} time '{s}' (expected an integer in 100 ns units)"),
                    )
                })
        };
        let start = time(f[0], "start")?;
        let end = time(f[1], "end")?;
        if end < start {
            return Err(Error::parse(
                path,
                i + 1,
                format!("end {end} s before start {start} s"),
            ));
        }
        if let Some(prev) = out.last() {
            if start + 1e-9 < prev.end {
                return Err(Error::parse(
                    path,
                    i + 1,
                    format!(
                        "label starts at {start} s, before the previous one ends ({} s)",
                        prev.end
                    ),
                ));
            }
        }
        let (label, state) = split_state(f[2]).map_err(|m| Error::parse(path, i + 1, m))?;
        let phone = centre_phone(label);
        if phone.is_empty() {
            return Err(Error::parse(
                path,
                i + 1,
                format!("empty centre phone in label '{label}'"),
            ));
        }
        out.push(HtsLabel {
            start,
            end,
            label: label.to_string(),
            phone: phone.to_string(),
            state,
            line: i + 1,
        });
    }
    if out.is_empty() {
        return Err(Error::parse(path, 0, "no labels"));
    }
    Ok(out)
}

/// Phone segments of an HTS file; consecutive state lines of one label become one phone.
pub fn hts_phones(labels: &[HtsLabel]) -> Vec<PhoneLabel> {
    let mut out: Vec<PhoneLabel> = Vec::new();
    let mut prev: Option<(&str, u8)> = None;
    for l in labels {
        let continues = match (prev, l.state) {
            (Some((label, s)), Some(state)) => label == l.label && state > s,
            _ => false,
        };
        if continues {
            out.last_mut().expect("a previous label").end = l.end;
        } else {
            out.push(PhoneLabel {
                phone: l.phone.clone(),
                start: l.start,
                end: l.end,
                line: l.line,
            });
        }
        prev = l.state.map(|s| (l.label.as_str(), s));
    }
    out
}

/// Reads festival / xwaves labels (header, `#`, then `end_time colour label`).
pub fn read_festival_lab(path: impl AsRef<Path>) -> Result<Vec<PhoneLabel>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut lines = text.lines().enumerate();
    if !lines.any(|(_, l)| l.trim() == "#") {
        return Err(Error::parse(
            path,
            0,
            "no '#' line ending the xwaves header",
        ));
    }
    let mut out: Vec<PhoneLabel> = Vec::new();
    let mut prev_end = 0.0;
    for (i, line) in lines {
        let f: Vec<&str> = line.split_whitespace().filter(|t| *t != ";").collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 3 {
            return Err(Error::parse(
                path,
                i + 1,
                format!("expected 'end_time colour label', got {} fields", f.len()),
            ));
        }
        let end: f64 = f[0]
            .parse()
            .map_err(|_| Error::parse(path, i + 1, format!("bad end time '{}'", f[0])))?;
        if !end.is_finite() || end < prev_end {
            return Err(Error::parse(
                path,
                i + 1,
                format!("end time {} is before the previous one ({prev_end})", f[0]),
            ));
        }
        out.push(PhoneLabel {
            phone: f[2].to_string(),
            start: prev_end,
            end,
            line: i + 1,
        });
        prev_end = end;
    }
    if out.is_empty() {
        return Err(Error::parse(path, 0, "no labels after the '#' line"));
    }
    Ok(out)
}

/// Reads phone segments from an HTS or festival label file, whichever it is (a festival file
/// has a line that is just `#`).
pub fn read_hts_phones(path: impl AsRef<Path>) -> Result<Vec<PhoneLabel>> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    if text.lines().any(|l| l.trim() == "#") {
        read_festival_lab(path)
    } else {
        Ok(hts_phones(&read_hts_labels(path)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centre_phones() {
        assert_eq!(centre_phone("x^sil-hh+iy=t@1_2/A:0_0_0"), "hh");
        assert_eq!(centre_phone("hh"), "hh");
        assert_eq!(centre_phone("ax-h"), "ax-h");
    }

    #[test]
    fn states_split() {
        assert_eq!(split_state("a-b+c[3]").unwrap(), ("a-b+c", Some(3)));
        assert_eq!(split_state("a-b+c").unwrap(), ("a-b+c", None));
        assert!(split_state("a[x]").is_err());
    }
}
