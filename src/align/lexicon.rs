//! Pronunciation lexicon: words to phone sequences of a [`PhoneSet`].
//!
//! Read from the CMU pronouncing dictionary's format (`word PH ON ES`, variants as `word(2)`,
//! `;;;` comment lines, `# ...` trailing comments), stress digits stripped and names mapped
//! through [`PhoneSet::lookup`] (`AH0` -> `ah`, `ax` -> `ah`). Words the dictionary lacks go to a
//! letter-to-sound fallback ([`Lts`]): flite's `t2p` when it is on `PATH`, else a small set of
//! English spelling rules. The lexicon actually used is written back in the same format
//! (`word(2)` for variants), so an alignment run can be reproduced.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::labels::phones::PhoneSet;

/// Where Debian's pocketsphinx-en-us puts the CMU dictionary.
pub const DEBIAN_CMUDICT: &str = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict";

/// Words to pronunciations (phone ids of one set), words in lower case.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lexicon {
    entries: BTreeMap<String, Vec<Vec<u32>>>,
}

/// Where a word's pronunciation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Dictionary,
    LetterToSound,
}

impl Lexicon {
    /// An empty lexicon.
    pub fn new() -> Self {
        Lexicon::default()
    }

    /// Reads a CMU-format dictionary; phones that `set` does not know are errors naming the
    /// line. Duplicate pronunciations of a word are kept once.
    pub fn read(path: impl AsRef<Path>, set: &PhoneSet) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path, set)
    }

    /// Parses dictionary text (see [`Lexicon::read`]); `path` names errors.
    pub fn parse(text: &str, path: &Path, set: &PhoneSet) -> Result<Self> {
        let mut lex = Lexicon::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() || line.starts_with(";;;") {
                continue;
            }
            let mut f = line.split_whitespace();
            let word = f.next().expect("non-empty line has a field");
            let word = strip_variant(word).to_lowercase();
            let mut pron = Vec::new();
            for p in f {
                let id = set.lookup(p).ok_or_else(|| {
                    Error::parse(
                        path,
                        i + 1,
                        format!(
                            "phone '{p}' of word '{word}' is not in phone set {}",
                            set.name()
                        ),
                    )
                })?;
                pron.push(id);
            }
            if pron.is_empty() {
                return Err(Error::parse(
                    path,
                    i + 1,
                    format!("word '{word}' has no phones"),
                ));
            }
            lex.insert(&word, pron);
        }
        Ok(lex)
    }

    /// Adds a pronunciation (kept once).
    pub fn insert(&mut self, word: &str, pron: Vec<u32>) {
        let prons = self.entries.entry(word.to_lowercase()).or_default();
        if !prons.contains(&pron) {
            prons.push(pron);
        }
    }

    /// Pronunciations of `word` (any case), first the dictionary's main one.
    pub fn get(&self, word: &str) -> Option<&[Vec<u32>]> {
        self.entries
            .get(&word.to_lowercase())
            .map(Vec::as_slice)
            .filter(|p| !p.is_empty())
    }

    /// Number of words.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no word is in it.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Words and pronunciations, words sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[Vec<u32>])> {
        self.entries.iter().map(|(w, p)| (w.as_str(), p.as_slice()))
    }

    /// Writes the lexicon in CMU format (`word ph on es`, `word(2) ...`), phone names of `set`.
    pub fn write(&self, path: impl AsRef<Path>, set: &PhoneSet) -> Result<()> {
        write_atomic(path, |w| {
            for (word, prons) in &self.entries {
                for (k, pron) in prons.iter().enumerate() {
                    let names: Vec<&str> =
                        pron.iter().map(|&p| set.phone(p).unwrap_or("?")).collect();
                    if k == 0 {
                        writeln!(w, "{word} {}", names.join(" "))?;
                    } else {
                        writeln!(w, "{word}({}) {}", k + 1, names.join(" "))?;
                    }
                }
            }
            Ok(())
        })
    }

    /// The lexicon for `words`: each from `self`, else from `lts`. Returns the lexicon used, the
    /// words that came from letter-to-sound, and the words with no pronunciation at all.
    pub fn restrict<'a>(
        &self,
        words: impl IntoIterator<Item = &'a str>,
        lts: &Lts,
        set: &PhoneSet,
    ) -> (Lexicon, Vec<String>, Vec<String>) {
        let mut used = Lexicon::new();
        let (mut guessed, mut missing) = (Vec::new(), Vec::new());
        let mut seen = std::collections::BTreeSet::new();
        for w in words {
            let w = w.to_lowercase();
            if !seen.insert(w.clone()) {
                continue;
            }
            if let Some(prons) = self.get(&w) {
                for p in prons {
                    used.insert(&w, p.clone());
                }
            } else if let Some(p) = lts.pronounce(&w, set) {
                used.insert(&w, p);
                guessed.push(w);
            } else {
                missing.push(w);
            }
        }
        (used, guessed, missing)
    }
}

/// `word(2)` -> `word`.
fn strip_variant(word: &str) -> &str {
    match word.rfind('(') {
        Some(i)
            if word.ends_with(')')
                && word[i + 1..word.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_digit()) =>
        {
            &word[..i]
        }
        _ => word,
    }
}

/// Letter-to-sound for words the dictionary lacks.
#[derive(Debug, Clone, PartialEq)]
pub enum Lts {
    /// No fallback: missing words stay missing.
    None,
    /// flite's `t2p` program (its CMU lexicon plus trained letter-to-sound rules).
    Flite(PathBuf),
    /// The built-in spelling rules ([`rule_lts`]).
    Rules,
}

impl Lts {
    /// `t2p` when it is on `PATH`, else the built-in rules.
    pub fn detect() -> Self {
        if let Some(paths) = std::env::var_os("PATH") {
            for dir in std::env::split_paths(&paths) {
                let p = dir.join("t2p");
                if p.is_file() {
                    return Lts::Flite(p);
                }
            }
        }
        Lts::Rules
    }

    /// Short name for reports.
    pub fn name(&self) -> String {
        match self {
            Lts::None => "none".into(),
            Lts::Flite(p) => format!("flite t2p ({})", p.display()),
            Lts::Rules => "built-in rules".into(),
        }
    }

    /// A pronunciation of `word` in `set`, or None (no fallback, a failed `t2p`, a phone the
    /// set lacks, or nothing pronounceable). Silences (`pau`) are dropped.
    pub fn pronounce(&self, word: &str, set: &PhoneSet) -> Option<Vec<u32>> {
        let names: Vec<String> = match self {
            Lts::None => return None,
            Lts::Flite(t2p) => {
                // t2p treats its argument as text; pass only letters and apostrophes so digits
                // or punctuation do not expand into other words.
                let clean: String = word
                    .chars()
                    .filter(|c| c.is_alphabetic() || *c == '\'')
                    .collect();
                if clean.is_empty() {
                    return None;
                }
                let out = Command::new(t2p).arg(&clean).output().ok()?;
                if !out.status.success() {
                    return None;
                }
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            }
            Lts::Rules => rule_lts(word).into_iter().map(str::to_string).collect(),
        };
        let mut pron = Vec::new();
        for n in &names {
            if n == "pau" {
                continue;
            }
            let id = set.lookup(n)?;
            if set.is_silence(id) {
                continue;
            }
            pron.push(id);
        }
        (!pron.is_empty()).then_some(pron)
    }
}

/// Grapheme rules, longest match first: (letters, phones).
const RULES: &[(&str, &[&str])] = &[
    ("tch", &["ch"]),
    ("sch", &["s", "k"]),
    ("igh", &["ay"]),
    ("ough", &["ao"]),
    ("tion", &["sh", "ah", "n"]),
    ("sion", &["zh", "ah", "n"]),
    ("ch", &["ch"]),
    ("sh", &["sh"]),
    ("th", &["th"]),
    ("ph", &["f"]),
    ("wh", &["w"]),
    ("ck", &["k"]),
    ("ng", &["ng"]),
    ("qu", &["k", "w"]),
    ("kn", &["n"]),
    ("wr", &["r"]),
    ("gh", &[]),
    ("ee", &["iy"]),
    ("ea", &["iy"]),
    ("oo", &["uw"]),
    ("ou", &["aw"]),
    ("ow", &["ow"]),
    ("oa", &["ow"]),
    ("oi", &["oy"]),
    ("oy", &["oy"]),
    ("ai", &["ey"]),
    ("ay", &["ey"]),
    ("au", &["ao"]),
    ("aw", &["ao"]),
    ("ie", &["iy"]),
    ("ei", &["ey"]),
    ("ey", &["iy"]),
    ("er", &["er"]),
    ("ir", &["er"]),
    ("ur", &["er"]),
    ("ar", &["aa", "r"]),
    ("or", &["ao", "r"]),
    ("a", &["ae"]),
    ("b", &["b"]),
    ("c", &["k"]),
    ("d", &["d"]),
    ("e", &["eh"]),
    ("f", &["f"]),
    ("g", &["g"]),
    ("h", &["hh"]),
    ("i", &["ih"]),
    ("j", &["jh"]),
    ("k", &["k"]),
    ("l", &["l"]),
    ("m", &["m"]),
    ("n", &["n"]),
    ("o", &["aa"]),
    ("p", &["p"]),
    ("q", &["k"]),
    ("r", &["r"]),
    ("s", &["s"]),
    ("t", &["t"]),
    ("u", &["ah"]),
    ("v", &["v"]),
    ("w", &["w"]),
    ("x", &["k", "s"]),
    ("y", &["y"]),
    ("z", &["z"]),
];

/// A rough English letter-to-sound guess in ARPAbet (lower case, no stress): digraphs and
/// vowel teams by longest match, a silent final `e`, `c`/`g` softened before `e`/`i`/`y`, a
/// final `y` as `iy`, doubled consonants once. Characters other than ASCII letters are
/// skipped. Good enough to align an unknown name, not to synthesise it.
pub fn rule_lts(word: &str) -> Vec<&'static str> {
    let w: Vec<u8> = word
        .to_ascii_lowercase()
        .bytes()
        .filter(u8::is_ascii_lowercase)
        .collect();
    let mut out: Vec<&'static str> = Vec::new();
    let mut i = 0;
    while i < w.len() {
        let rest = &w[i..];
        let next = w.get(i + 1).copied();
        // Silent final e after a consonant (not the only vowel).
        if rest == b"e" && i >= 2 && !b"aeiouy".contains(&w[i - 1]) {
            break;
        }
        // Soft c and g.
        if (w[i] == b'c' || w[i] == b'g') && matches!(next, Some(b'e' | b'i' | b'y')) {
            out.push(if w[i] == b'c' { "s" } else { "jh" });
            i += 1;
            continue;
        }
        // Final y after a consonant.
        if w[i] == b'y' && i + 1 == w.len() && i > 0 && !b"aeiou".contains(&w[i - 1]) {
            out.push("iy");
            i += 1;
            continue;
        }
        // Doubled consonant: one phone.
        if i > 0 && w[i] == w[i - 1] && !b"aeiou".contains(&w[i]) {
            i += 1;
            continue;
        }
        let (len, phones) = RULES
            .iter()
            .filter(|(g, _)| rest.starts_with(g.as_bytes()))
            .map(|(g, p)| (g.len(), *p))
            .next()
            .expect("every ASCII letter has a rule");
        out.extend_from_slice(phones);
        i += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_variants_and_strips_stress() {
        let set = PhoneSet::arpabet();
        let text =
            ";;; comment\nhello HH AH0 L OW1\nhello(2) HH EH0 L OW1 # note\nHELLO HH AH0 L OW1\n";
        let lex = Lexicon::parse(text, Path::new("x.dict"), &set).unwrap();
        let prons = lex.get("Hello").unwrap();
        assert_eq!(prons.len(), 2);
        let names: Vec<&str> = prons[1].iter().map(|&p| set.phone(p).unwrap()).collect();
        assert_eq!(names, ["hh", "eh", "l", "ow"]);
    }

    #[test]
    fn unknown_phone_names_the_line() {
        let set = PhoneSet::arpabet();
        let err = Lexicon::parse("a AH0\nb QQ\n", Path::new("x.dict"), &set).unwrap_err();
        assert!(err.to_string().contains("x.dict:2"), "{err}");
    }

    #[test]
    fn rules_give_plausible_phones() {
        assert_eq!(rule_lts("ship"), ["sh", "ih", "p"]);
        assert_eq!(rule_lts("cake"), ["k", "ae", "k"]);
        assert_eq!(rule_lts("city"), ["s", "ih", "t", "iy"]);
        assert!(rule_lts("123").is_empty());
    }
}
