//! Kaldi archives (`.ark`) and script files (`.scp`) of feature matrices, read and written
//! byte for byte as Kaldi does, so Kaldi reads our features and we read Kaldi's.
//!
//! An archive is a sequence of entries `KEY ` + object. A binary object starts with `\0B`, then
//! a matrix token: `FM ` (f32) or `DM ` (f64) followed by `\x04` + i32 rows and `\x04` + i32
//! cols (little-endian) and the row-major values; or `CM `, `CM2 `, `CM3 ` (Kaldi's
//! `CompressedMatrix`, decoded exactly as `compressed-matrix.cc` does). A text object is
//! `[`, one row per line, `]`. A script line is `KEY RXSPEC` where `RXSPEC` is
//! `PATH:OFFSET` (OFFSET = byte position of the `\0B` marker, just after `KEY `), optionally
//! followed by a Kaldi range `[r1:r2]` or `[r1:r2,c1:c2]` (inclusive), or a plain `PATH` that
//! holds a single object.
//!
//! Every size read from a file is checked against the bytes that remain before anything is
//! allocated; malformed input gives an [`Error::Format`] naming the file, the byte offset and
//! the key. Values after the binary headers are not 4-byte aligned, so they are decoded with
//! `from_le_bytes` rather than reinterpreted in place.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};
use crate::features::matrix::Matrix;

/// A row-major `[rows, cols]` matrix of f64: Kaldi's `Matrix<double>` (`DM`), used for CMVN
/// statistics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DoubleMatrix {
    pub rows: usize,
    pub cols: usize,
    /// `rows * cols` values, row after row.
    pub data: Vec<f64>,
}

// ---------------------------------------------------------------------------------------------
// Byte sources
// ---------------------------------------------------------------------------------------------

/// The bytes of a file: memory-mapped, or owned (stdin, empty files, tests).
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// Memory-maps `path` read-only. The file must not be truncated while mapped (our writers
/// only ever rename complete files into place, so a reader never sees one change).
fn map_file(path: &Path) -> Result<Bytes> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        // Mapping an empty file fails on some systems; there is nothing to map anyway.
        return Ok(Bytes::Owned(Vec::new()));
    }
    // SAFETY: the map is read-only; see the function comment about concurrent truncation.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Bytes::Mapped(map))
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// An element type a matrix can be decoded into (f32 or f64), with Kaldi's conversions.
trait Element: Copy {
    fn from_f32(v: f32) -> Self;
    fn from_f64(v: f64) -> Self;
    fn parse_text(s: &str) -> Option<Self>;
}

impl Element for f32 {
    fn from_f32(v: f32) -> Self {
        v
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    fn parse_text(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

impl Element for f64 {
    fn from_f32(v: f32) -> Self {
        v as f64
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    fn parse_text(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

/// A decoded matrix before it is wrapped: `(rows, cols, values)`.
type Raw<T> = (usize, usize, Vec<T>);

/// `isspace` in the C locale, which is what Kaldi's stream extraction skips.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// A read position in a byte buffer, with what error messages need to say where it is.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
    key: &'a str,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], pos: usize, path: &'a Path, key: &'a str) -> Self {
        Cursor {
            bytes,
            pos,
            path,
            key,
        }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn err(&self, msg: impl std::fmt::Display) -> Error {
        let what = if self.key.is_empty() {
            String::new()
        } else {
            format!(" (key '{}')", self.key)
        };
        Error::format(self.path, format!("byte {}{what}: {msg}", self.pos))
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Takes `n` bytes, or fails with "truncated" naming what was being read.
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated {what}: need {n} bytes, {} left",
                self.remaining()
            )));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
    }

    /// Kaldi's binary `ReadToken`: skip whitespace, read non-whitespace, then one space.
    fn read_token(&mut self) -> Result<&'a str> {
        self.skip_space();
        let start = self.pos;
        while self.peek().is_some_and(|b| !is_space(b)) && self.pos - start < 64 {
            self.pos += 1;
        }
        let tok = &self.bytes[start..self.pos];
        if tok.is_empty() {
            return Err(
                self.err("expected a matrix token (FM, DM, CM, CM2, CM3), found end of data")
            );
        }
        if self.peek() != Some(b' ') {
            self.pos = start;
            return Err(self.err(format!(
                "bad matrix token '{}' (expected FM, DM, CM, CM2 or CM3 followed by a space)",
                String::from_utf8_lossy(&tok[..tok.len().min(16)]).escape_debug()
            )));
        }
        self.pos += 1;
        std::str::from_utf8(tok).map_err(|_| {
            self.err(format!(
                "bad matrix token {:?} (not text)",
                &tok[..tok.len().min(16)]
            ))
        })
    }

    /// Kaldi's binary `ReadBasicType<int32>`: a size byte (4), then the little-endian value.
    fn read_i32(&mut self, what: &str) -> Result<i32> {
        let at = self.pos;
        let b = self.take(5, what)?;
        if b[0] != 4 {
            self.pos = at;
            return Err(self.err(format!(
                "{what}: expected size byte 4 before an int32, found {}",
                b[0]
            )));
        }
        Ok(i32::from_le_bytes([b[1], b[2], b[3], b[4]]))
    }

    fn read_f32_raw(&mut self, what: &str) -> Result<f32> {
        let b = self.take(4, what)?;
        Ok(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn read_i32_raw(&mut self, what: &str) -> Result<i32> {
        let b = self.take(4, what)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads one object starting at the current position: binary if it starts with `\0B`,
    /// text otherwise.
    fn read_object<T: Element>(&mut self) -> Result<Raw<T>> {
        match self.peek() {
            Some(0) => {
                if self.bytes.get(self.pos + 1) != Some(&b'B') {
                    return Err(self.err("found a NUL byte that is not the binary marker \\0B"));
                }
                self.pos += 2;
                self.read_binary_matrix()
            }
            Some(_) => self.read_text_matrix(),
            None => Err(self.err("expected a matrix, found end of data")),
        }
    }

    /// Kaldi's binary `Matrix::Read` (after `\0B`), including compressed matrices.
    fn read_binary_matrix<T: Element>(&mut self) -> Result<Raw<T>> {
        let token_at = self.pos;
        let token = self.read_token()?;
        match token {
            "FM" | "DM" => {
                let rows = self.read_i32("matrix rows")?;
                let cols = self.read_i32("matrix cols")?;
                let (rows, cols) = self.check_dims(rows, cols)?;
                let width = if token == "FM" { 4 } else { 8 };
                let n = self.checked_size(rows, cols, width, "matrix data")?;
                let data = self.take(n, "matrix data")?;
                let values: Vec<T> = if token == "FM" {
                    data.chunks_exact(4)
                        .map(|c| T::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                        .collect()
                } else {
                    data.chunks_exact(8)
                        .map(|c| {
                            T::from_f64(f64::from_le_bytes([
                                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
                            ]))
                        })
                        .collect()
                };
                Ok(normalize_empty(rows, cols, values))
            }
            "CM" | "CM2" | "CM3" => self.read_compressed(token),
            other => {
                self.pos = token_at;
                Err(self.err(format!(
                    "unknown matrix token '{}' (expected FM, DM, CM, CM2 or CM3)",
                    other.escape_debug()
                )))
            }
        }
    }

    fn check_dims(&self, rows: i32, cols: i32) -> Result<(usize, usize)> {
        if rows < 0 || cols < 0 {
            return Err(self.err(format!("negative matrix size {rows} x {cols}")));
        }
        Ok((rows as usize, cols as usize))
    }

    /// `rows * cols * width` bytes, refused when it overflows or exceeds what is left.
    fn checked_size(&self, rows: usize, cols: usize, width: usize, what: &str) -> Result<usize> {
        let n = (rows as u64)
            .checked_mul(cols as u64)
            .and_then(|n| n.checked_mul(width as u64));
        match n {
            Some(n) if n <= self.remaining() as u64 => Ok(n as usize),
            _ => Err(self.err(format!(
                "{what} of {rows} x {cols} x {width} bytes exceeds the {} bytes left (truncated or corrupt)",
                self.remaining()
            ))),
        }
    }

    /// Kaldi's `CompressedMatrix::Read` + `CopyToMat`.
    ///
    /// Layout after the token: `GlobalHeader` without its format field (f32 min_value,
    /// f32 range, i32 num_rows, i32 num_cols), then
    /// - `CM` (one byte with column headers): `num_cols` x 4 u16 percentiles (0, 25, 75,
    ///   100), then u8 data column after column;
    /// - `CM2`: u16 data row after row; `CM3`: u8 data row after row.
    fn read_compressed<T: Element>(&mut self, token: &str) -> Result<Raw<T>> {
        let Some(h) = self.compressed_header(token)? else {
            return Ok((0, 0, Vec::new()));
        };
        let (min_value, range, rows, cols) = (h.min_value, h.range, h.rows, h.cols);
        match token {
            "CM" => {
                let n_headers = self.checked_size(cols, 1, 8, "compressed column headers")?;
                let headers = self.take(n_headers, "compressed column headers")?;
                let n_data = self.checked_size(rows, cols, 1, "compressed matrix data")?;
                let data = self.take(n_data, "compressed matrix data")?;
                let mut values = vec![T::from_f32(0.0); rows * cols];
                for c in 0..cols {
                    let h = &headers[8 * c..8 * c + 8];
                    let pct = |i: usize| {
                        uint16_to_float(
                            min_value,
                            range,
                            u16::from_le_bytes([h[2 * i], h[2 * i + 1]]),
                        )
                    };
                    let (p0, p25, p75, p100) = (pct(0), pct(1), pct(2), pct(3));
                    for (r, &b) in data[c * rows..(c + 1) * rows].iter().enumerate() {
                        values[r * cols + c] = T::from_f32(char_to_float(p0, p25, p75, p100, b));
                    }
                }
                Ok(normalize_empty(rows, cols, values))
            }
            "CM2" => {
                let n = self.checked_size(rows, cols, 2, "compressed matrix data")?;
                let data = self.take(n, "compressed matrix data")?;
                // Kaldi: `float increment = range * (1.0 / 65535.0)`, then a float
                // multiply-add per value.
                let increment = (range as f64 * (1.0 / 65535.0)) as f32;
                let values = data
                    .chunks_exact(2)
                    .map(|c| {
                        T::from_f32(min_value + u16::from_le_bytes([c[0], c[1]]) as f32 * increment)
                    })
                    .collect();
                Ok(normalize_empty(rows, cols, values))
            }
            _ => {
                let n = self.checked_size(rows, cols, 1, "compressed matrix data")?;
                let data = self.take(n, "compressed matrix data")?;
                let increment = (range as f64 * (1.0 / 255.0)) as f32;
                let values = data
                    .iter()
                    .map(|&b| T::from_f32(min_value + b as f32 * increment))
                    .collect();
                Ok(normalize_empty(rows, cols, values))
            }
        }
    }

    /// Reads the compressed-matrix header after the token and checks that the data it
    /// announces fits in what is left; `None` for an empty matrix.
    fn compressed_header(&mut self, token: &str) -> Result<Option<CompressedHeader>> {
        let min_value = self.read_f32_raw("compressed matrix header")?;
        let range = self.read_f32_raw("compressed matrix header")?;
        let num_rows = self.read_i32_raw("compressed matrix header")?;
        let num_cols = self.read_i32_raw("compressed matrix header")?;
        if num_cols == 0 {
            // Kaldi writes an empty compressed matrix as the full 20-byte header (format
            // field included) but reads back 16 bytes, so 4 zero bytes follow; skip them.
            if num_rows == 0
                && range == 0.0
                && self.bytes.get(self.pos..self.pos + 4) == Some(&[0u8; 4][..])
            {
                self.pos += 4;
            }
            return Ok(None);
        }
        let (rows, cols) = self.check_dims(num_rows, num_cols)?;
        match token {
            // Per-column headers of 4 x u16, then one byte per value.
            "CM" => self.checked_size(cols, rows + 8, 1, "compressed matrix data")?,
            "CM2" => self.checked_size(rows, cols, 2, "compressed matrix data")?,
            _ => self.checked_size(rows, cols, 1, "compressed matrix data")?,
        };
        Ok(Some(CompressedHeader {
            min_value,
            range,
            rows,
            cols,
        }))
    }

    /// Kaldi's text `Matrix::Read`: `[`, values separated by blanks, rows ended by a newline
    /// (or `;`), `]`, then an optional newline.
    fn read_text_matrix<T: Element>(&mut self) -> Result<Raw<T>> {
        self.skip_space();
        if self.peek() != Some(b'[') {
            let end = (self.pos + 16).min(self.bytes.len());
            return Err(self.err(format!(
                "expected '[' to start a text matrix, found '{}'",
                String::from_utf8_lossy(&self.bytes[self.pos..end]).escape_debug()
            )));
        }
        self.pos += 1;
        let mut values: Vec<T> = Vec::new();
        let mut cols: Option<usize> = None;
        let mut rows = 0usize;
        let mut in_row = 0usize;
        let mut end_row = |in_row: &mut usize, rows: &mut usize, cur: &Cursor| -> Result<()> {
            if *in_row == 0 {
                return Ok(());
            }
            match cols {
                None => cols = Some(*in_row),
                Some(c) if c != *in_row => {
                    return Err(cur.err(format!(
                        "text matrix row {} has {} values, row 0 has {c}",
                        *rows, *in_row
                    )))
                }
                Some(_) => {}
            }
            *rows += 1;
            *in_row = 0;
            Ok(())
        };
        loop {
            match self.peek() {
                None => return Err(self.err("end of data inside a text matrix (missing ']')")),
                Some(b']') => {
                    self.pos += 1;
                    if self.peek() == Some(b'\r') && self.bytes.get(self.pos + 1) == Some(&b'\n') {
                        self.pos += 2;
                    } else if self.peek() == Some(b'\n') {
                        self.pos += 1;
                    }
                    end_row(&mut in_row, &mut rows, self)?;
                    let cols = if rows == 0 { 0 } else { cols.unwrap_or(0) };
                    return Ok(normalize_empty(rows, cols, values));
                }
                Some(b'\n') | Some(b';') => {
                    self.pos += 1;
                    end_row(&mut in_row, &mut rows, self)?;
                }
                Some(b) if is_space(b) => self.pos += 1,
                Some(_) => {
                    let start = self.pos;
                    while self
                        .peek()
                        .is_some_and(|b| !is_space(b) && b != b']' && b != b';')
                    {
                        self.pos += 1;
                    }
                    let tok = String::from_utf8_lossy(&self.bytes[start..self.pos]);
                    match T::parse_text(&tok) {
                        Some(v) => {
                            values.push(v);
                            in_row += 1;
                        }
                        None => {
                            self.pos = start;
                            let shown: String = tok.chars().take(32).collect();
                            return Err(self.err(format!(
                                "expected a number in text matrix, found '{}'",
                                shown.escape_debug()
                            )));
                        }
                    }
                }
            }
        }
    }
}

/// Kaldi's `GlobalHeader` of a compressed matrix (the format is the token).
struct CompressedHeader {
    min_value: f32,
    range: f32,
    rows: usize,
    cols: usize,
}

/// Kaldi represents a matrix with no rows or no columns as 0 x 0.
fn normalize_empty<T>(rows: usize, cols: usize, values: Vec<T>) -> Raw<T> {
    if rows == 0 || cols == 0 {
        (0, 0, Vec::new())
    } else {
        (rows, cols, values)
    }
}

/// Kaldi's `CompressedMatrix::Uint16ToFloat`, in f32 arithmetic as there.
fn uint16_to_float(min_value: f32, range: f32, value: u16) -> f32 {
    // The constant is 1/65535 as Kaldi spells it (a float literal).
    min_value + range * 1.525_902_2e-5_f32 * value as f32
}

/// Kaldi's `CompressedMatrix::CharToFloat`: piecewise linear between the column percentiles.
/// The products are f32, the scale constants double, the sum double rounded to f32, as in C++.
fn char_to_float(p0: f32, p25: f32, p75: f32, p100: f32, value: u8) -> f32 {
    if value <= 64 {
        (p0 as f64 + ((p25 - p0) * value as f32) as f64 * (1.0 / 64.0)) as f32
    } else if value <= 192 {
        (p25 as f64 + ((p75 - p25) * (value as i32 - 64) as f32) as f64 * (1.0 / 128.0)) as f32
    } else {
        (p75 as f64 + ((p100 - p75) * (value as i32 - 192) as f32) as f64 * (1.0 / 63.0)) as f32
    }
}

fn to_matrix((rows, cols, data): Raw<f32>) -> Matrix {
    Matrix { rows, cols, data }
}

fn to_double((rows, cols, data): Raw<f64>) -> DoubleMatrix {
    DoubleMatrix { rows, cols, data }
}

// ---------------------------------------------------------------------------------------------
// Rxspecs and ranges
// ---------------------------------------------------------------------------------------------

/// A Kaldi row/column range suffix, `[r1:r2]` or `[r1:r2,c1:c2]`, bounds inclusive; `None`
/// for a part means all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatrixRange {
    pub rows: Option<(usize, usize)>,
    pub cols: Option<(usize, usize)>,
}

impl MatrixRange {
    /// Applies the range to `[rows, cols]` values; out-of-bounds is an error naming `what`.
    fn apply<T: Copy>(&self, raw: Raw<T>, what: &str) -> Result<Raw<T>> {
        let (rows, cols, data) = raw;
        let (r0, r1) = self.rows.unwrap_or((0, rows.saturating_sub(1)));
        let (c0, c1) = self.cols.unwrap_or((0, cols.saturating_sub(1)));
        if rows == 0 || cols == 0 || r1 >= rows || c1 >= cols {
            return Err(Error::config(format!(
                "{what}: range [{r0}:{r1},{c0}:{c1}] is outside the {rows} x {cols} matrix"
            )));
        }
        let (nr, nc) = (r1 - r0 + 1, c1 - c0 + 1);
        let mut out = Vec::with_capacity(nr * nc);
        for r in r0..=r1 {
            out.extend_from_slice(&data[r * cols + c0..r * cols + c1 + 1]);
        }
        Ok((nr, nc, out))
    }
}

/// A parsed read specifier: `PATH`, `PATH:OFFSET`, either with an optional range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RxSpec {
    pub path: PathBuf,
    /// Byte offset of the object (the `\0B` marker for binary); `None` = a whole-file object.
    pub offset: Option<u64>,
    pub range: Option<MatrixRange>,
}

fn parse_range_part(s: &str) -> Option<Option<(usize, usize)>> {
    let s = s.trim();
    if s.is_empty() || s == ":" {
        return Some(None);
    }
    let (a, b) = s.split_once(':')?;
    let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    if b < a {
        return None;
    }
    Some(Some((a, b)))
}

/// Parses `PATH[:OFFSET][[r1:r2[,c1:c2]]]`. Pipes (`cmd |`) and stdin (`-`) are refused.
pub fn parse_rxspec(spec: &str) -> Result<RxSpec> {
    let bad = |msg: &str| Error::config(format!("read specifier '{spec}': {msg}"));
    let mut s = spec.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if s.ends_with('|') {
        return Err(bad(
            "pipes are not supported; run the command and give its output file",
        ));
    }
    let mut range = None;
    if s.ends_with(']') {
        let open = s.rfind('[').ok_or_else(|| bad("']' without '['"))?;
        let inner = &s[open + 1..s.len() - 1];
        let (r, c) = match inner.split_once(',') {
            Some((r, c)) => (r, c),
            None => (inner, ""),
        };
        let rows = parse_range_part(r)
            .ok_or_else(|| bad("bad row range (expected r1:r2 with r1 <= r2)"))?;
        let cols = parse_range_part(c)
            .ok_or_else(|| bad("bad column range (expected c1:c2 with c1 <= c2)"))?;
        range = Some(MatrixRange { rows, cols });
        s = &s[..open];
    }
    let mut offset = None;
    if let Some(colon) = s.rfind(':') {
        let tail = &s[colon + 1..];
        if !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
            offset = Some(tail.parse::<u64>().map_err(|_| bad("offset too large"))?);
            s = &s[..colon];
        }
    }
    if s == "-" {
        return Err(bad("stdin cannot be read by offset"));
    }
    if s.is_empty() {
        return Err(bad("no file name"));
    }
    Ok(RxSpec {
        path: PathBuf::from(s),
        offset,
        range,
    })
}

/// Reads the object at `offset` (or the whole file) of `bytes`, applying `range`.
fn read_at<T: Element + Copy>(
    bytes: &[u8],
    path: &Path,
    key: &str,
    offset: Option<u64>,
    range: Option<MatrixRange>,
) -> Result<Raw<T>> {
    let pos = offset.unwrap_or(0);
    if pos >= bytes.len() as u64 {
        return Err(Error::format(
            path,
            format!(
                "offset {pos} is past the end of the file ({} bytes){}",
                bytes.len(),
                if key.is_empty() {
                    String::new()
                } else {
                    format!(" (key '{key}')")
                }
            ),
        ));
    }
    let mut cur = Cursor::new(bytes, pos as usize, path, key);
    let raw = cur.read_object::<T>()?;
    match range {
        Some(r) => r.apply(raw, &format!("{}: key '{key}'", path.display())),
        None => Ok(raw),
    }
}

/// Reads one f32 matrix given a Kaldi rxspec: `"path:offset"` (as in `feats.scp`),
/// `"path"` (a file holding one object), optionally with a range `[r1:r2,c1:c2]`.
/// Double and compressed matrices are converted.
pub fn read_matrix_at(rxspec: &str) -> Result<Matrix> {
    let spec = parse_rxspec(rxspec)?;
    let bytes = map_file(&spec.path)?;
    read_at::<f32>(bytes.as_slice(), &spec.path, "", spec.offset, spec.range).map(to_matrix)
}

/// Like [`read_matrix_at`], keeping f64 precision (for CMVN statistics).
pub fn read_double_matrix_at(rxspec: &str) -> Result<DoubleMatrix> {
    let spec = parse_rxspec(rxspec)?;
    let bytes = map_file(&spec.path)?;
    read_at::<f64>(bytes.as_slice(), &spec.path, "", spec.offset, spec.range).map(to_double)
}

// ---------------------------------------------------------------------------------------------
// Archive reader
// ---------------------------------------------------------------------------------------------

/// Reads an archive entry by entry: binary `FM`, `DM`, `CM`, `CM2`, `CM3` and text matrices.
///
/// As an iterator it yields `(key, Matrix)` (f32; doubles are rounded); after the first
/// error it stops, since the position of the next entry is unknown.
pub struct ArkReader {
    bytes: Bytes,
    path: PathBuf,
    pos: usize,
    done: bool,
}

impl ArkReader {
    /// Memory-maps the archive at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bytes = map_file(&path)?;
        Ok(ArkReader {
            bytes,
            path,
            pos: 0,
            done: false,
        })
    }

    /// Reads an archive held in memory (for stdin); `name` is used in error messages.
    pub fn from_bytes(name: impl AsRef<Path>, bytes: Vec<u8>) -> Self {
        ArkReader {
            bytes: Bytes::Owned(bytes),
            path: name.as_ref().to_path_buf(),
            pos: 0,
            done: false,
        }
    }

    /// Byte offset of the next entry's key (or of the end).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The next entry with f64 values (exact for `DM` archives such as CMVN statistics).
    pub fn next_double(&mut self) -> Option<Result<(String, DoubleMatrix)>> {
        self.next_entry::<f64>()
            .map(|r| r.map(|(k, raw)| (k, to_double(raw))))
    }

    fn next_entry<T: Element>(&mut self) -> Option<Result<(String, Raw<T>)>> {
        if self.done {
            return None;
        }
        let result = self.parse_entry::<T>();
        match result {
            Ok(Some(entry)) => Some(Ok(entry)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    /// Kaldi's `SequentialTableReaderArchiveImpl::Next`: whitespace, key, one space or tab
    /// (a newline is left for the text reader), then the object.
    fn parse_entry<T: Element>(&mut self) -> Result<Option<(String, Raw<T>)>> {
        let bytes = self.bytes.as_slice();
        let mut cur = Cursor::new(bytes, self.pos, &self.path, "");
        cur.skip_space();
        if cur.peek().is_none() {
            self.pos = cur.pos;
            return Ok(None);
        }
        let key_start = cur.pos;
        while cur.peek().is_some_and(|b| !is_space(b)) {
            if cur.peek() == Some(0) {
                return Err(
                    cur.err("NUL byte inside a key (not a Kaldi archive, or a corrupt one)")
                );
            }
            cur.pos += 1;
        }
        let key = std::str::from_utf8(&bytes[key_start..cur.pos])
            .map_err(|_| {
                Error::format(
                    &self.path,
                    format!("byte {key_start}: key is not valid UTF-8"),
                )
            })?
            .to_string();
        let mut cur = Cursor::new(bytes, cur.pos, &self.path, &key);
        match cur.peek() {
            None => return Err(cur.err("truncated archive: key without a value")),
            Some(b' ') | Some(b'\t') => cur.pos += 1,
            Some(b'\n') => {}
            Some(b) => {
                return Err(cur.err(format!("expected a space after the key, found byte {b}")))
            }
        }
        let raw = cur.read_object::<T>()?;
        self.pos = cur.pos;
        Ok(Some((key, raw)))
    }
}

impl Iterator for ArkReader {
    type Item = Result<(String, Matrix)>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry::<f32>()
            .map(|r| r.map(|(k, raw)| (k, to_matrix(raw))))
    }
}

// ---------------------------------------------------------------------------------------------
// Script-file reader
// ---------------------------------------------------------------------------------------------

/// One line of a script file, resolved.
#[derive(Debug, Clone)]
struct ScpEntry {
    key: String,
    /// Index into `ScpReader::files`.
    file: usize,
    offset: Option<u64>,
    range: Option<MatrixRange>,
}

/// Random access to the matrices a script file (`feats.scp`, `cmvn.scp`) points to.
///
/// Every archive is memory-mapped once when the script is opened, so reads are `&self` and
/// can run in parallel. A relative path is looked up beside the script file first, then
/// relative to the working directory (where Kaldi looks).
pub struct ScpReader {
    scp: PathBuf,
    entries: Vec<ScpEntry>,
    index: HashMap<String, usize>,
    files: Vec<(PathBuf, Bytes)>,
}

impl ScpReader {
    /// Reads `scp` and maps every archive it names; duplicate keys and missing files are
    /// errors naming the line.
    pub fn open(scp: impl AsRef<Path>) -> Result<Self> {
        let scp = scp.as_ref().to_path_buf();
        let base = scp.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut entries = Vec::new();
        let mut index = HashMap::new();
        let mut files: Vec<(PathBuf, Bytes)> = Vec::new();
        let mut file_index: HashMap<PathBuf, usize> = HashMap::new();
        for line in crate::corpus::table::read_table(&scp)? {
            if line.value.is_empty() {
                return Err(Error::parse(
                    &scp,
                    line.line,
                    format!("key '{}' has no read specifier", line.key),
                ));
            }
            let spec = parse_rxspec(&line.value)
                .map_err(|e| Error::parse(&scp, line.line, e.to_string()))?;
            let path = resolve(&base, &spec.path).ok_or_else(|| {
                Error::parse(
                    &scp,
                    line.line,
                    format!("{}: no such file", spec.path.display()),
                )
            })?;
            let file = match file_index.get(&path) {
                Some(&i) => i,
                None => {
                    let bytes = map_file(&path)?;
                    files.push((path.clone(), bytes));
                    file_index.insert(path, files.len() - 1);
                    files.len() - 1
                }
            };
            if let Some(prev) = index.insert(line.key.clone(), entries.len()) {
                let prev_line: &ScpEntry = &entries[prev];
                return Err(Error::parse(
                    &scp,
                    line.line,
                    format!(
                        "duplicate key '{}' (also entry {})",
                        prev_line.key,
                        prev + 1
                    ),
                ));
            }
            entries.push(ScpEntry {
                key: line.key,
                file,
                offset: spec.offset,
                range: spec.range,
            });
        }
        Ok(ScpReader {
            scp,
            entries,
            index,
            files,
        })
    }

    /// The script file's path.
    pub fn path(&self) -> &Path {
        &self.scp
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the script has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys in file order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.key.as_str())
    }

    /// Key of entry `i` (file order).
    pub fn key(&self, i: usize) -> &str {
        &self.entries[i].key
    }

    /// Position of `key` in file order.
    pub fn position(&self, key: &str) -> Option<usize> {
        self.index.get(key).copied()
    }

    /// Reads entry `i` as f32.
    pub fn read(&self, i: usize) -> Result<Matrix> {
        self.read_raw::<f32>(i).map(to_matrix)
    }

    /// Reads entry `i` as f64.
    pub fn read_double(&self, i: usize) -> Result<DoubleMatrix> {
        self.read_raw::<f64>(i).map(to_double)
    }

    /// `[rows, cols]` of entry `i` from its header alone (binary `FM`/`DM`/`CM*`; a text
    /// entry is parsed in full).
    pub fn shape(&self, i: usize) -> Result<(usize, usize)> {
        let e = &self.entries[i];
        let (path, bytes) = &self.files[e.file];
        let bytes = bytes.as_slice();
        let pos = e.offset.unwrap_or(0);
        let full = if pos < bytes.len() as u64 && bytes[pos as usize..].starts_with(b"\0B") {
            let mut cur = Cursor::new(bytes, pos as usize + 2, path, &e.key);
            binary_shape(&mut cur)?
        } else {
            let (r, c, _) = read_at::<f32>(bytes, path, &e.key, e.offset, None)?;
            (r, c)
        };
        match e.range {
            None => Ok(full),
            Some(range) => {
                // Apply the range to a zero-sized stand-in to reuse its bounds checks.
                let (r0, r1) = range.rows.unwrap_or((0, full.0.saturating_sub(1)));
                let (c0, c1) = range.cols.unwrap_or((0, full.1.saturating_sub(1)));
                if full.0 == 0 || full.1 == 0 || r1 >= full.0 || c1 >= full.1 {
                    return Err(Error::format(
                        path,
                        format!(
                            "key '{}': range [{r0}:{r1},{c0}:{c1}] is outside the {} x {} matrix",
                            e.key, full.0, full.1
                        ),
                    ));
                }
                Ok((r1 - r0 + 1, c1 - c0 + 1))
            }
        }
    }

    fn read_raw<T: Element>(&self, i: usize) -> Result<Raw<T>> {
        let e = &self.entries[i];
        let (path, bytes) = &self.files[e.file];
        read_at::<T>(bytes.as_slice(), path, &e.key, e.offset, e.range)
    }
}

/// `[rows, cols]` from a binary header (cursor just after `\0B`), checking the data fits.
fn binary_shape(cur: &mut Cursor) -> Result<(usize, usize)> {
    let token = cur.read_token()?;
    match token {
        "FM" | "DM" => {
            let rows = cur.read_i32("matrix rows")?;
            let cols = cur.read_i32("matrix cols")?;
            let (rows, cols) = cur.check_dims(rows, cols)?;
            cur.checked_size(rows, cols, if token == "FM" { 4 } else { 8 }, "matrix data")?;
            Ok(if rows == 0 || cols == 0 {
                (0, 0)
            } else {
                (rows, cols)
            })
        }
        "CM" | "CM2" | "CM3" => Ok(match cur.compressed_header(token)? {
            Some(h) if h.rows > 0 => (h.rows, h.cols),
            _ => (0, 0),
        }),
        other => Err(cur.err(format!(
            "unknown matrix token '{}' (expected FM, DM, CM, CM2 or CM3)",
            other.escape_debug()
        ))),
    }
}

/// `p` if absolute; else beside the script, else relative to the working directory.
fn resolve(base: &Path, p: &Path) -> Option<PathBuf> {
    if p.is_absolute() {
        return p.exists().then(|| p.to_path_buf());
    }
    let beside = base.join(p);
    if beside.exists() {
        return Some(beside);
    }
    p.exists().then(|| p.to_path_buf())
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

fn check_key(key: &str) -> std::io::Result<()> {
    if key.is_empty() || key.bytes().any(|b| is_space(b) || b == 0) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "archive key '{}' must be non-empty, without whitespace",
                key.escape_debug()
            ),
        ));
    }
    Ok(())
}

fn dims_i32(rows: usize, cols: usize) -> std::io::Result<(i32, i32)> {
    match (i32::try_from(rows), i32::try_from(cols)) {
        (Ok(r), Ok(c)) => Ok((r, c)),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("matrix of {rows} x {cols} is too large for Kaldi's int32 sizes"),
        )),
    }
}

/// Bytes of a binary matrix object: `\0B`, token, sizes, values (little-endian).
fn binary_object(
    token: &[u8; 3],
    rows: usize,
    cols: usize,
    width: usize,
    values: impl Iterator<Item = [u8; 8]>,
) -> std::io::Result<Vec<u8>> {
    let (r, c) = dims_i32(rows, cols)?;
    let mut buf = Vec::with_capacity(15 + rows * cols * width);
    buf.extend_from_slice(b"\0B");
    buf.extend_from_slice(token);
    buf.push(4);
    buf.extend_from_slice(&r.to_le_bytes());
    buf.push(4);
    buf.extend_from_slice(&c.to_le_bytes());
    for v in values {
        buf.extend_from_slice(&v[..width]);
    }
    Ok(buf)
}

fn float_object(m: &Matrix) -> std::io::Result<Vec<u8>> {
    binary_object(
        b"FM ",
        m.rows,
        m.cols,
        4,
        m.data.iter().map(|v| {
            let b = v.to_le_bytes();
            [b[0], b[1], b[2], b[3], 0, 0, 0, 0]
        }),
    )
}

fn double_object(m: &DoubleMatrix) -> std::io::Result<Vec<u8>> {
    binary_object(
        b"DM ",
        m.rows,
        m.cols,
        8,
        m.data.iter().map(|v| v.to_le_bytes()),
    )
}

/// Writes one binary archive entry (`KEY \0BFM ...`), as Kaldi's `ark:` writer does.
pub fn write_binary_matrix(w: &mut impl Write, key: &str, m: &Matrix) -> std::io::Result<()> {
    check_key(key)?;
    w.write_all(key.as_bytes())?;
    w.write_all(b" ")?;
    w.write_all(&float_object(m)?)
}

/// Writes one text archive entry exactly as `copy-feats ... ark,t:-` does:
/// `KEY  [`, then per row a newline, two spaces and each value followed by a space, then
/// `]` and a newline; an empty matrix is `KEY  [ ]`. Values are printed as C++ streams
/// print floats (6 significant digits, `%g`).
pub fn write_text_matrix(w: &mut impl Write, key: &str, m: &Matrix) -> std::io::Result<()> {
    check_key(key)?;
    let mut s = String::with_capacity(8 + key.len() + m.data.len() * 10);
    s.push_str(key);
    s.push(' ');
    if m.cols == 0 {
        s.push_str(" [ ]\n");
    } else {
        s.push_str(" [");
        for r in 0..m.rows {
            s.push_str("\n  ");
            for &v in m.row(r) {
                push_g6(&mut s, v as f64);
                s.push(' ');
            }
        }
        s.push_str("]\n");
    }
    w.write_all(s.as_bytes())
}

/// Formats `v` as C++ `ostream << float` does by default (`%g`, precision 6).
pub fn format_g6(v: f32) -> String {
    let mut s = String::new();
    push_g6(&mut s, v as f64);
    s
}

fn push_g6(s: &mut String, v: f64) {
    const P: i32 = 6;
    if v.is_nan() {
        s.push_str(if v.is_sign_negative() { "-nan" } else { "nan" });
        return;
    }
    if v.is_infinite() {
        s.push_str(if v < 0.0 { "-inf" } else { "inf" });
        return;
    }
    if v == 0.0 {
        s.push_str(if v.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    // The exponent after rounding to P significant digits decides the style, as in C.
    let e_form = format!("{:.*e}", (P - 1) as usize, v);
    let (mantissa, exp) = e_form.split_once('e').unwrap_or((&e_form, "0"));
    let x: i32 = exp.parse().unwrap_or(0);
    if (-4..P).contains(&x) {
        let fixed = format!("{:.*}", (P - 1 - x) as usize, v);
        s.push_str(strip_zeros(&fixed));
    } else {
        s.push_str(strip_zeros(mantissa));
        s.push('e');
        s.push(if x < 0 { '-' } else { '+' });
        let ax = x.unsigned_abs();
        if ax < 10 {
            s.push('0');
        }
        s.push_str(&ax.to_string());
    }
}

/// Drops trailing zeros after a decimal point, and the point itself if nothing follows.
fn strip_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// Writes a binary archive under a temporary name and renames it into place on
/// [`ArkWriter::commit`]; dropped uncommitted, it leaves nothing behind.
pub struct ArkWriter {
    file: AtomicFile,
    path: PathBuf,
    /// Bytes written so far = offset of the next entry.
    offset: u64,
    text: bool,
}

impl ArkWriter {
    /// Starts a binary archive at `ark_path` (its directory must exist).
    pub fn create(ark_path: &Path) -> Result<Self> {
        Ok(ArkWriter {
            file: AtomicFile::create(ark_path)?,
            path: ark_path.to_path_buf(),
            offset: 0,
            text: false,
        })
    }

    /// Starts a text archive (`ark,t:`) at `ark_path`.
    pub fn create_text(ark_path: &Path) -> Result<Self> {
        Ok(ArkWriter {
            file: AtomicFile::create(ark_path)?,
            path: ark_path.to_path_buf(),
            offset: 0,
            text: true,
        })
    }

    /// The archive's final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `key` + the matrix (binary `FM`, or text for a text archive) and returns the
    /// scp value `"ARK_PATH:OFFSET"`, OFFSET being the byte just after `KEY `.
    pub fn write_matrix(&mut self, key: &str, m: &Matrix) -> Result<String> {
        let body = if self.text {
            let mut v = Vec::new();
            write_text_matrix(&mut v, key, m).map_err(|e| Error::utterance(key, e))?;
            v.drain(..key.len() + 1);
            v
        } else {
            check_key(key).map_err(|e| Error::utterance(key, e))?;
            float_object(m).map_err(|e| Error::utterance(key, e))?
        };
        self.append(key, &body)
    }

    /// Appends `key` + a binary double matrix (`DM`), as Kaldi writes CMVN statistics.
    pub fn write_double_matrix(&mut self, key: &str, m: &DoubleMatrix) -> Result<String> {
        check_key(key).map_err(|e| Error::utterance(key, e))?;
        if self.text {
            return Err(Error::utterance(
                key,
                "double matrices are written to binary archives only",
            ));
        }
        let body = double_object(m).map_err(|e| Error::utterance(key, e))?;
        self.append(key, &body)
    }

    fn append(&mut self, key: &str, body: &[u8]) -> Result<String> {
        let path = &self.path;
        let io = |e| Error::io(path, e);
        self.file.write_all(key.as_bytes()).map_err(io)?;
        self.file.write_all(b" ").map_err(io)?;
        let at = self.offset + key.len() as u64 + 1;
        self.file.write_all(body).map_err(io)?;
        self.offset = at + body.len() as u64;
        Ok(format!("{}:{at}", self.path.display()))
    }

    /// Flushes and renames the archive into place.
    pub fn commit(self) -> Result<()> {
        self.file.commit()
    }
}
