//! Kaldi "table" text files: one `key value...` line per entry (`wav.scp`, `text`, `utt2spk`,
//! `spk2utt`, `segments`, `feats.scp`, `utt2num_frames`, `ali.txt` ...). Keys are sorted in byte
//! order (Kaldi's `LC_ALL=C sort`), which is what `BTreeMap<String, _>` iterates in.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};

/// One line of a table file.
#[derive(Debug, Clone, PartialEq)]
pub struct TableEntry {
    /// The first whitespace-separated token of the line.
    pub key: String,
    /// Everything after the key and the whitespace that follows it (may be empty).
    pub value: String,
    /// 1-based line number, for error messages.
    pub line: usize,
}

/// A table file read leniently: the lines that parse, and a reason for each line that does not.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableScan {
    /// Parsed lines, in file order (duplicates and order not checked).
    pub entries: Vec<TableEntry>,
    /// `(1-based line, reason)` for lines that are not `key value...` (invalid UTF-8, no key).
    pub bad_lines: Vec<(usize, String)>,
}

/// Reads every line of `path`, keeping going past bad lines so that a validator can report
/// all of them. Blank lines are skipped. Only an I/O error fails.
pub fn scan_table(path: impl AsRef<Path>) -> Result<TableScan> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(scan_table_bytes(&bytes))
}

/// [`scan_table`] on bytes already in memory.
pub fn scan_table_bytes(bytes: &[u8]) -> TableScan {
    let mut scan = TableScan::default();
    for (i, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = match std::str::from_utf8(raw) {
            Ok(line) => line,
            Err(_) => {
                scan.bad_lines
                    .push((line_no, "not valid UTF-8".to_string()));
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            scan.bad_lines.push((
                line_no,
                "line starts with whitespace (empty key)".to_string(),
            ));
            continue;
        }
        let (key, value) = match line.find(char::is_whitespace) {
            Some(pos) => (&line[..pos], line[pos..].trim()),
            None => (line, ""),
        };
        scan.entries.push(TableEntry {
            key: key.to_string(),
            value: value.to_string(),
            line: line_no,
        });
    }
    scan
}

/// Reads every non-blank line of `path` as entries, in file order, without checking order or
/// duplicates (see [`read_map`] for the strict reader and `corpus::validate` for reports).
/// The first line that does not parse is an error naming it.
pub fn read_table(path: impl AsRef<Path>) -> Result<Vec<TableEntry>> {
    let path = path.as_ref();
    let scan = scan_table(path)?;
    if let Some((line, msg)) = scan.bad_lines.into_iter().next() {
        return Err(Error::parse(path, line, msg));
    }
    Ok(scan.entries)
}

/// Reads `path` into a map; a duplicate key is an error naming both lines.
pub fn read_map(path: impl AsRef<Path>) -> Result<BTreeMap<String, String>> {
    let path = path.as_ref();
    let mut map = BTreeMap::new();
    let mut first_line = BTreeMap::new();
    for entry in read_table(path)? {
        if let Some(prev) = first_line.insert(entry.key.clone(), entry.line) {
            return Err(Error::parse(
                path,
                entry.line,
                format!("duplicate key '{}' (first on line {prev})", entry.key),
            ));
        }
        map.insert(entry.key, entry.value);
    }
    Ok(map)
}

/// Writes `key value` lines atomically, in the iterator's order (give it sorted keys).
pub fn write_table<'a, I, K, V>(path: impl AsRef<Path>, entries: I) -> Result<()>
where
    I: IntoIterator<Item = (K, V)>,
    K: AsRef<str> + 'a,
    V: AsRef<str> + 'a,
{
    write_atomic(path, |w| {
        for (k, v) in entries {
            let v = v.as_ref();
            if v.is_empty() {
                writeln!(w, "{}", k.as_ref())?;
            } else {
                writeln!(w, "{} {}", k.as_ref(), v)?;
            }
        }
        Ok(())
    })
}
