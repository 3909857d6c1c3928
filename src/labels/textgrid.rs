//! Praat TextGrid files in the long ("text") and short text formats, as Praat and the Montreal
//! Forced Aligner write them (UTF-8, or UTF-16 with a byte-order mark as Praat writes non-ASCII
//! text).
//!
//! Both formats carry the same values in the same order; the long one adds `name =` labels and
//! `[i]` indices. Like Praat's own reader, the tokenizer keeps only quoted strings, numbers and
//! `<exists>`/`<absent>` flags, so one parser reads both.
//!
//! Phones come from the interval tier named `phones` (MFA; `SPEAKER - phones` in MFA's
//! multi-speaker output); empty intervals are silence.

use std::path::Path;

use crate::error::{Error, Result};
use crate::labels::PhoneLabel;

/// One interval of an interval tier, times in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    pub xmin: f64,
    pub xmax: f64,
    pub text: String,
    /// 1-based line where the interval's text is.
    pub line: usize,
}

/// One point of a point ("text") tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub time: f64,
    pub mark: String,
    pub line: usize,
}

/// A tier's content.
#[derive(Debug, Clone, PartialEq)]
pub enum TierContent {
    Intervals(Vec<Interval>),
    Points(Vec<Point>),
}

/// One tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    pub name: String,
    pub xmin: f64,
    pub xmax: f64,
    pub content: TierContent,
}

/// A whole TextGrid, times in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct TextGrid {
    pub xmin: f64,
    pub xmax: f64,
    pub tiers: Vec<Tier>,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Str(String),
    Num(f64),
    Flag(bool),
}

/// Decodes UTF-8 (optional BOM) or UTF-16 LE/BE with a BOM.
fn decode(path: &Path, bytes: &[u8]) -> Result<String> {
    let utf16 = |be: bool| -> Result<String> {
        let body = &bytes[2..];
        if body.len() % 2 != 0 {
            return Err(Error::format(
                path,
                "UTF-16 text with an odd number of bytes",
            ));
        }
        let units: Vec<u16> = body
            .chunks_exact(2)
            .map(|c| {
                if be {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            })
            .collect();
        String::from_utf16(&units).map_err(|_| Error::format(path, "invalid UTF-16 text"))
    };
    match bytes {
        [0xFF, 0xFE, ..] => utf16(false),
        [0xFE, 0xFF, ..] => utf16(true),
        [0xEF, 0xBB, 0xBF, rest @ ..] => {
            String::from_utf8(rest.to_vec()).map_err(|_| Error::format(path, "invalid UTF-8 text"))
        }
        _ => String::from_utf8(bytes.to_vec()).map_err(|e| {
            let line = 1 + bytes[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            Error::parse(
                path,
                line,
                "not valid UTF-8 (nor UTF-16 with a byte-order mark)",
            )
        }),
    }
}

/// Quoted strings (`""` is an escaped quote), numbers and flags, each with its 1-based line.
fn tokenize(path: &Path, text: &str) -> Result<Vec<(Tok, usize)>> {
    let mut toks = Vec::new();
    let mut line = 1;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '"' => {
                let start_line = line;
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            s.push('"');
                        }
                        Some('"') => break,
                        Some(ch) => {
                            if ch == '\n' {
                                line += 1;
                            }
                            s.push(ch);
                        }
                        None => return Err(Error::parse(path, start_line, "unterminated string")),
                    }
                }
                toks.push((Tok::Str(s), start_line));
            }
            // A `!` outside a string starts a comment in Praat's text format.
            '!' => {
                for ch in chars.by_ref() {
                    if ch == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            c if c.is_whitespace() => {}
            _ => {
                let mut word = String::from(c);
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || ch == '"' {
                        break;
                    }
                    word.push(ch);
                    chars.next();
                }
                match word.as_str() {
                    "<exists>" => toks.push((Tok::Flag(true), line)),
                    "<absent>" => toks.push((Tok::Flag(false), line)),
                    // Labels (`xmin`, `=`, `item`, `[1]:`, `intervals:`) carry no values.
                    w if w.starts_with(|c: char| {
                        c.is_ascii_digit() || matches!(c, '+' | '-' | '.')
                    }) =>
                    {
                        if let Ok(v) = w.parse::<f64>() {
                            toks.push((Tok::Num(v), line));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(toks)
}

struct Reader<'a> {
    path: &'a Path,
    toks: Vec<(Tok, usize)>,
    pos: usize,
}

impl Reader<'_> {
    fn line(&self) -> usize {
        self.toks
            .get(self.pos)
            .or(self.toks.last())
            .map(|t| t.1)
            .unwrap_or(0)
    }
    fn err(&self, msg: impl Into<String>) -> Error {
        Error::parse(self.path, self.line(), msg)
    }
    fn next(&mut self, what: &str) -> Result<(Tok, usize)> {
        let t = self
            .toks
            .get(self.pos)
            .cloned()
            .ok_or_else(|| self.err(format!("file ends where {what} was expected")))?;
        self.pos += 1;
        Ok(t)
    }
    fn num(&mut self, what: &str) -> Result<f64> {
        match self.next(what)? {
            (Tok::Num(v), _) if v.is_finite() => Ok(v),
            (t, line) => Err(Error::parse(
                self.path,
                line,
                format!("expected {what} (a number), found {}", describe(&t)),
            )),
        }
    }
    fn count(&mut self, what: &str) -> Result<usize> {
        let v = self.num(what)?;
        let remaining = self.toks.len() - self.pos;
        // Each item needs at least 2 tokens: a count larger than that is a corrupt file, not an
        // allocation to attempt.
        if v < 0.0 || v.fract() != 0.0 || v > remaining as f64 {
            return Err(Error::parse(
                self.path,
                self.toks[self.pos - 1].1,
                format!("bad {what} {v}"),
            ));
        }
        Ok(v as usize)
    }
    fn string(&mut self, what: &str) -> Result<(String, usize)> {
        match self.next(what)? {
            (Tok::Str(s), line) => Ok((s, line)),
            (t, line) => Err(Error::parse(
                self.path,
                line,
                format!("expected {what} (a quoted string), found {}", describe(&t)),
            )),
        }
    }
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Str(s) => format!("string \"{s}\""),
        Tok::Num(v) => format!("number {v}"),
        Tok::Flag(b) => if *b { "<exists>" } else { "<absent>" }.to_string(),
    }
}

/// Parses TextGrid text (either format).
pub fn parse_textgrid(path: impl AsRef<Path>, text: &str) -> Result<TextGrid> {
    let path = path.as_ref();
    let toks = tokenize(path, text)?;
    let mut r = Reader { path, toks, pos: 0 };
    let (file_type, line) = r.string("File type")?;
    if file_type != "ooTextFile" {
        return Err(Error::parse(
            path,
            line,
            format!("not a Praat text file (File type \"{file_type}\")"),
        ));
    }
    let (class, line) = r.string("Object class")?;
    if class != "TextGrid" {
        return Err(Error::parse(
            path,
            line,
            format!("object class \"{class}\" is not TextGrid"),
        ));
    }
    let xmin = r.num("xmin")?;
    let xmax = r.num("xmax")?;
    let n_tiers = match r.next("tiers? flag")? {
        (Tok::Flag(true), _) => r.count("number of tiers")?,
        (Tok::Flag(false), _) => 0,
        (t, line) => {
            return Err(Error::parse(
                path,
                line,
                format!("expected <exists> or <absent>, found {}", describe(&t)),
            ))
        }
    };
    let mut tiers = Vec::with_capacity(n_tiers);
    for _ in 0..n_tiers {
        let (class, class_line) = r.string("tier class")?;
        let (name, _) = r.string("tier name")?;
        let txmin = r.num("tier xmin")?;
        let txmax = r.num("tier xmax")?;
        let content = match class.as_str() {
            "IntervalTier" => {
                let n = r.count("number of intervals")?;
                let mut v: Vec<Interval> = Vec::with_capacity(n);
                for _ in 0..n {
                    let a = r.num("interval xmin")?;
                    let b = r.num("interval xmax")?;
                    let (text, line) = r.string("interval text")?;
                    if b < a {
                        return Err(Error::parse(
                            path,
                            line,
                            format!(
                                "interval ends ({b}) before it starts ({a}) in tier \"{name}\""
                            ),
                        ));
                    }
                    if let Some(prev) = v.last() {
                        if a + 1e-9 < prev.xmax {
                            return Err(Error::parse(path, line, format!("interval starts at {a}, before the previous one ends ({}) in tier \"{name}\"", prev.xmax)));
                        }
                    }
                    v.push(Interval {
                        xmin: a,
                        xmax: b,
                        text,
                        line,
                    });
                }
                TierContent::Intervals(v)
            }
            "TextTier" => {
                let n = r.count("number of points")?;
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    let time = r.num("point time")?;
                    let (mark, line) = r.string("point mark")?;
                    v.push(Point { time, mark, line });
                }
                TierContent::Points(v)
            }
            other => {
                return Err(Error::parse(
                    path,
                    class_line,
                    format!("unknown tier class \"{other}\""),
                ))
            }
        };
        tiers.push(Tier {
            name,
            xmin: txmin,
            xmax: txmax,
            content,
        });
    }
    Ok(TextGrid { xmin, xmax, tiers })
}

/// Reads a TextGrid file (either format, UTF-8 or UTF-16).
pub fn read_textgrid(path: impl AsRef<Path>) -> Result<TextGrid> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = decode(path, &bytes)?;
    parse_textgrid(path, &text)
}

fn intervals(t: &Tier) -> Option<&[Interval]> {
    match &t.content {
        TierContent::Intervals(v) => Some(v.as_slice()),
        TierContent::Points(_) => None,
    }
}

impl TextGrid {
    /// The interval tier called `name` (case-insensitive), or else the only interval tier whose
    /// name ends with ` - NAME` (MFA's multi-speaker naming).
    pub fn interval_tier(&self, name: &str) -> Option<(&Tier, &[Interval])> {
        let want = name.to_lowercase();
        if let Some(t) = self
            .tiers
            .iter()
            .find(|t| t.name.to_lowercase() == want && intervals(t).is_some())
        {
            return intervals(t).map(|v| (t, v));
        }
        let suffix = format!(" - {want}");
        let matches: Vec<&Tier> = self
            .tiers
            .iter()
            .filter(|t| t.name.to_lowercase().ends_with(&suffix) && intervals(t).is_some())
            .collect();
        match matches.as_slice() {
            [t] => intervals(t).map(|v| (*t, v)),
            _ => None,
        }
    }

    /// Names of all tiers (for error messages).
    pub fn tier_names(&self) -> Vec<&str> {
        self.tiers.iter().map(|t| t.name.as_str()).collect()
    }
}

/// Phones of the tier named `tier` (usually `phones`); empty intervals become `sil`.
pub fn textgrid_phones(
    path: impl AsRef<Path>,
    tg: &TextGrid,
    tier: &str,
) -> Result<Vec<PhoneLabel>> {
    let path = path.as_ref();
    let (_, intervals) = tg.interval_tier(tier).ok_or_else(|| {
        Error::parse(
            path,
            0,
            format!(
                "no interval tier named \"{tier}\" (tiers: {:?})",
                tg.tier_names()
            ),
        )
    })?;
    if intervals.is_empty() {
        return Err(Error::parse(
            path,
            0,
            format!("tier \"{tier}\" has no intervals"),
        ));
    }
    Ok(intervals
        .iter()
        .map(|iv| {
            let t = iv.text.trim();
            PhoneLabel {
                phone: if t.is_empty() {
                    "sil".to_string()
                } else {
                    t.to_string()
                },
                start: iv.xmin,
                end: iv.xmax,
                line: iv.line,
            }
        })
        .collect())
}

/// The transcript of tier `tier` (usually `words`): its non-empty intervals joined by spaces;
/// `None` when there is no such tier.
pub fn textgrid_words(tg: &TextGrid, tier: &str) -> Option<String> {
    let (_, intervals) = tg.interval_tier(tier)?;
    let words: Vec<&str> = intervals
        .iter()
        .map(|iv| iv.text.trim())
        .filter(|t| !t.is_empty() && *t != "<eps>")
        .collect();
    Some(words.join(" "))
}

/// Reads a TextGrid's phone tier: shorthand for [`read_textgrid`] + [`textgrid_phones`].
pub fn read_textgrid_phones(path: impl AsRef<Path>, tier: &str) -> Result<Vec<PhoneLabel>> {
    let path = path.as_ref();
    let tg = read_textgrid(path)?;
    textgrid_phones(path, &tg, tier)
}
