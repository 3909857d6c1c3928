//! Phone sets: an ordered phone list (id = position), which phones are silence, and the phonetic
//! classes the senone tree asks questions about.
//!
//! Built-in sets:
//! - [`PhoneSet::arpabet`]: `sil` + the 39 CMU/ARPAbet phones (festival and flite use the same
//!   names in lower case, with `pau` for silence).
//! - [`PhoneSet::timit61`], [`PhoneSet::timit48`], [`PhoneSet::timit39`]: TIMIT's 61 labels and
//!   the standard folding 61 -> 48 -> 39 of Lee and Hon (1989), as in Kaldi's
//!   `egs/timit/s5/conf/phones.60-48-39.map` (which drops the glottal stop `q`).
//!
//! On disk a set is `phones.txt` (Kaldi style, `phone id` per line, ids 0..N-1 in order) and
//! `phone_classes.txt` (`class: phone phone ...` per line, the class `silence` included).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::atomic::write_atomic;
use crate::error::{Error, Result};
use crate::labels::{ctm::PhoneSegment, PhoneLabel};

/// File name of a saved phone list inside a data directory.
pub const PHONES_TXT: &str = "phones.txt";
/// File name of saved phone classes inside a data directory.
pub const PHONE_CLASSES_TXT: &str = "phone_classes.txt";

/// Names every set maps to its (first) silence phone when they are not phones of the set
/// themselves: festival's `pau`, TIMIT's `h#`, HTK's `sp`, MFA's `sil`/`sp`/`spn`, and the empty
/// label of a TextGrid interval.
pub const SILENCE_ALIASES: &[&str] = &["sil", "sp", "spn", "pau", "h#", "<sil>", "silence", ""];

/// Names every set maps to a phone it has when it lacks them: TIMIT's and festival's reduced and
/// syllabic variants, as the 39-class folding merges them (festival and flite write `ax` where
/// the CMU dictionary writes `ah0`).
pub const VARIANT_ALIASES: &[(&str, &str)] = &[
    ("ax", "ah"),
    ("ax-h", "ah"),
    ("axr", "er"),
    ("ix", "ih"),
    ("ux", "uw"),
    ("el", "l"),
    ("em", "m"),
    ("en", "n"),
    ("eng", "ng"),
    ("nx", "n"),
    ("hv", "hh"),
];

/// The phonetic classes, in the order they are listed; a built-in set gets each class that has
/// at least one of its phones.
pub const CLASS_NAMES: &[&str] = &[
    "silence",
    "vowel",
    "front_vowel",
    "central_vowel",
    "back_vowel",
    "high_vowel",
    "mid_vowel",
    "low_vowel",
    "rounded",
    "diphthong",
    "reduced_vowel",
    "rhotic",
    "consonant",
    "stop",
    "voiced_stop",
    "unvoiced_stop",
    "closure",
    "flap",
    "fricative",
    "voiced_fricative",
    "unvoiced_fricative",
    "sibilant",
    "affricate",
    "nasal",
    "syllabic",
    "liquid",
    "glide",
    "approximant",
    "voiced",
    "unvoiced",
    "labial",
    "labiodental",
    "dental",
    "alveolar",
    "postalveolar",
    "palatal",
    "velar",
    "glottal",
];

/// Phonetic features of every phone name the built-in sets use (ARPAbet, TIMIT 61/48/39).
/// Each feature is one of [`CLASS_NAMES`].
#[rustfmt::skip]
fn phone_features(phone: &str) -> &'static [&'static str] {
    match phone {
        // Silences and pauses.
        "sil" | "h#" | "pau" | "epi" => &["silence"],
        // Vowels.
        "iy" => &["vowel", "front_vowel", "high_vowel", "voiced"],
        "ih" => &["vowel", "front_vowel", "high_vowel", "voiced"],
        "eh" => &["vowel", "front_vowel", "mid_vowel", "voiced"],
        "ae" => &["vowel", "front_vowel", "low_vowel", "voiced"],
        "aa" => &["vowel", "back_vowel", "low_vowel", "voiced"],
        "ao" => &["vowel", "back_vowel", "mid_vowel", "rounded", "voiced"],
        "ah" => &["vowel", "central_vowel", "mid_vowel", "voiced"],
        "uh" => &["vowel", "back_vowel", "high_vowel", "rounded", "voiced"],
        "uw" => &["vowel", "back_vowel", "high_vowel", "rounded", "voiced"],
        "ux" => &["vowel", "central_vowel", "high_vowel", "rounded", "voiced"],
        "er" => &["vowel", "central_vowel", "mid_vowel", "rhotic", "voiced"],
        "ax" => &["vowel", "central_vowel", "mid_vowel", "reduced_vowel", "voiced"],
        "ix" => &["vowel", "central_vowel", "high_vowel", "reduced_vowel", "voiced"],
        "axr" => &["vowel", "central_vowel", "mid_vowel", "reduced_vowel", "rhotic", "voiced"],
        // Devoiced schwa.
        "ax-h" => &["vowel", "central_vowel", "mid_vowel", "reduced_vowel", "unvoiced"],
        // Diphthongs, classed by their onset.
        "ey" => &["vowel", "diphthong", "front_vowel", "mid_vowel", "voiced"],
        "ay" => &["vowel", "diphthong", "central_vowel", "low_vowel", "voiced"],
        "aw" => &["vowel", "diphthong", "central_vowel", "low_vowel", "voiced"],
        "ow" => &["vowel", "diphthong", "back_vowel", "mid_vowel", "rounded", "voiced"],
        "oy" => &["vowel", "diphthong", "back_vowel", "mid_vowel", "rounded", "voiced"],
        // Stops.
        "b" => &["consonant", "stop", "voiced_stop", "voiced", "labial"],
        "d" => &["consonant", "stop", "voiced_stop", "voiced", "alveolar"],
        "g" => &["consonant", "stop", "voiced_stop", "voiced", "velar"],
        "p" => &["consonant", "stop", "unvoiced_stop", "unvoiced", "labial"],
        "t" => &["consonant", "stop", "unvoiced_stop", "unvoiced", "alveolar"],
        "k" => &["consonant", "stop", "unvoiced_stop", "unvoiced", "velar"],
        "q" => &["consonant", "stop", "unvoiced_stop", "unvoiced", "glottal"],
        // Stop closures (TIMIT 61) and their 48-set merges.
        "bcl" => &["consonant", "closure", "voiced", "labial"],
        "dcl" => &["consonant", "closure", "voiced", "alveolar"],
        "gcl" => &["consonant", "closure", "voiced", "velar"],
        "pcl" => &["consonant", "closure", "unvoiced", "labial"],
        "tcl" => &["consonant", "closure", "unvoiced", "alveolar"],
        "kcl" => &["consonant", "closure", "unvoiced", "velar"],
        "vcl" => &["consonant", "closure", "voiced"],
        "cl" => &["consonant", "closure", "unvoiced"],
        // Flaps.
        "dx" => &["consonant", "flap", "voiced", "alveolar"],
        "nx" => &["consonant", "flap", "nasal", "voiced", "alveolar"],
        // Affricates.
        "ch" => &["consonant", "affricate", "sibilant", "unvoiced", "postalveolar"],
        "jh" => &["consonant", "affricate", "sibilant", "voiced", "postalveolar"],
        // Fricatives.
        "f" => &["consonant", "fricative", "unvoiced_fricative", "unvoiced", "labial", "labiodental"],
        "v" => &["consonant", "fricative", "voiced_fricative", "voiced", "labial", "labiodental"],
        "th" => &["consonant", "fricative", "unvoiced_fricative", "unvoiced", "dental"],
        "dh" => &["consonant", "fricative", "voiced_fricative", "voiced", "dental"],
        "s" => &["consonant", "fricative", "unvoiced_fricative", "sibilant", "unvoiced", "alveolar"],
        "z" => &["consonant", "fricative", "voiced_fricative", "sibilant", "voiced", "alveolar"],
        "sh" => &["consonant", "fricative", "unvoiced_fricative", "sibilant", "unvoiced", "postalveolar"],
        "zh" => &["consonant", "fricative", "voiced_fricative", "sibilant", "voiced", "postalveolar"],
        "hh" => &["consonant", "fricative", "unvoiced_fricative", "unvoiced", "glottal"],
        "hv" => &["consonant", "fricative", "voiced_fricative", "voiced", "glottal"],
        // Nasals.
        "m" => &["consonant", "nasal", "voiced", "labial"],
        "n" => &["consonant", "nasal", "voiced", "alveolar"],
        "ng" => &["consonant", "nasal", "voiced", "velar"],
        "em" => &["consonant", "nasal", "syllabic", "voiced", "labial"],
        "en" => &["consonant", "nasal", "syllabic", "voiced", "alveolar"],
        "eng" => &["consonant", "nasal", "syllabic", "voiced", "velar"],
        // Liquids and glides.
        "l" => &["consonant", "liquid", "approximant", "voiced", "alveolar"],
        "el" => &["consonant", "liquid", "approximant", "syllabic", "voiced", "alveolar"],
        "r" => &["consonant", "liquid", "approximant", "rhotic", "voiced", "postalveolar"],
        "w" => &["consonant", "glide", "approximant", "rounded", "voiced", "labial", "velar"],
        "y" => &["consonant", "glide", "approximant", "voiced", "palatal"],
        _ => &[],
    }
}

/// The 39 CMU/ARPAbet phones (lower case, no stress).
const ARPABET39: &[&str] = &[
    "aa", "ae", "ah", "ao", "aw", "ay", "b", "ch", "d", "dh", "eh", "er", "ey", "f", "g", "hh",
    "ih", "iy", "jh", "k", "l", "m", "n", "ng", "ow", "oy", "p", "r", "s", "sh", "t", "th", "uh",
    "uw", "v", "w", "y", "z", "zh",
];

/// TIMIT's 61 labels with their 48-set and 39-set folds (Kaldi `phones.60-48-39.map`); `q` has
/// no fold (Kaldi deletes it).
const TIMIT_FOLDING: &[(&str, &str, &str)] = &[
    ("aa", "aa", "aa"),
    ("ae", "ae", "ae"),
    ("ah", "ah", "ah"),
    ("ao", "ao", "aa"),
    ("aw", "aw", "aw"),
    ("ax", "ax", "ah"),
    ("ax-h", "ax", "ah"),
    ("axr", "er", "er"),
    ("ay", "ay", "ay"),
    ("b", "b", "b"),
    ("bcl", "vcl", "sil"),
    ("ch", "ch", "ch"),
    ("d", "d", "d"),
    ("dcl", "vcl", "sil"),
    ("dh", "dh", "dh"),
    ("dx", "dx", "dx"),
    ("eh", "eh", "eh"),
    ("el", "el", "l"),
    ("em", "m", "m"),
    ("en", "en", "n"),
    ("eng", "ng", "ng"),
    ("epi", "epi", "sil"),
    ("er", "er", "er"),
    ("ey", "ey", "ey"),
    ("f", "f", "f"),
    ("g", "g", "g"),
    ("gcl", "vcl", "sil"),
    ("h#", "sil", "sil"),
    ("hh", "hh", "hh"),
    ("hv", "hh", "hh"),
    ("ih", "ih", "ih"),
    ("ix", "ix", "ih"),
    ("iy", "iy", "iy"),
    ("jh", "jh", "jh"),
    ("k", "k", "k"),
    ("kcl", "cl", "sil"),
    ("l", "l", "l"),
    ("m", "m", "m"),
    ("n", "n", "n"),
    ("ng", "ng", "ng"),
    ("nx", "n", "n"),
    ("ow", "ow", "ow"),
    ("oy", "oy", "oy"),
    ("p", "p", "p"),
    ("pau", "sil", "sil"),
    ("pcl", "cl", "sil"),
    ("q", "", ""),
    ("r", "r", "r"),
    ("s", "s", "s"),
    ("sh", "sh", "sh"),
    ("t", "t", "t"),
    ("tcl", "cl", "sil"),
    ("th", "th", "th"),
    ("uh", "uh", "uh"),
    ("uw", "uw", "uw"),
    ("ux", "uw", "uw"),
    ("v", "v", "v"),
    ("w", "w", "w"),
    ("y", "y", "y"),
    ("z", "z", "z"),
    ("zh", "zh", "sh"),
];

/// Folds a TIMIT 61 label to the 48 set; `None` for `q` (dropped, as Kaldi does) and for names
/// that are not TIMIT labels. Case-insensitive.
pub fn fold_61_to_48(phone: &str) -> Option<&'static str> {
    let p = phone.to_ascii_lowercase();
    TIMIT_FOLDING
        .iter()
        .find(|(p61, _, _)| *p61 == p)
        .and_then(|&(_, p48, _)| (!p48.is_empty()).then_some(p48))
}

/// Folds a TIMIT 61 or 48 label to the 39 set; `None` for `q` and unknown names.
/// Case-insensitive.
pub fn fold_to_39(phone: &str) -> Option<&'static str> {
    let p = phone.to_ascii_lowercase();
    if let Some(&(_, _, p39)) = TIMIT_FOLDING.iter().find(|(p61, _, _)| *p61 == p) {
        return (!p39.is_empty()).then_some(p39);
    }
    // 48-set names that are not 61 labels.
    TIMIT_FOLDING
        .iter()
        .find(|(_, p48, _)| *p48 == p)
        .map(|&(_, _, p39)| p39)
}

/// A named group of phones (ids), for tree questions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneClass {
    pub name: String,
    /// Phone ids, ascending; the `silence` class lists the set's main silence first.
    pub phones: Vec<u32>,
}

/// An ordered phone list (id = index), its silence phones and its phonetic classes.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneSet {
    name: String,
    phones: Vec<String>,
    index: HashMap<String, u32>,
    /// Silence phone ids, the main one (which gaps and utterance edges get) first.
    silence: Vec<u32>,
    classes: Vec<PhoneClass>,
}

impl PhoneSet {
    /// A set with the given phones (ids in this order); `silence` names which of them are
    /// silence, the main one first. Classes come from the built-in phonetic table for the names it knows; add others
    /// with [`PhoneSet::set_class`].
    pub fn new(name: &str, phones: &[&str], silence: &[&str]) -> Result<Self> {
        let mut set = PhoneSet::bare(name, phones.iter().map(|p| p.to_string()).collect())?;
        for s in silence {
            let id = set.id(s).ok_or_else(|| {
                Error::config(format!(
                    "phone set {name}: silence phone '{s}' is not in the set"
                ))
            })?;
            if !set.silence.contains(&id) {
                set.silence.push(id);
            }
        }
        for &class in CLASS_NAMES.iter().filter(|&&c| c != "silence") {
            let ids: Vec<u32> = (0..set.phones.len() as u32)
                .filter(|&i| {
                    !set.silence.contains(&i)
                        && phone_features(&set.phones[i as usize]).contains(&class)
                })
                .collect();
            if !ids.is_empty() {
                set.classes.push(PhoneClass {
                    name: class.to_string(),
                    phones: ids,
                });
            }
        }
        if !set.silence.is_empty() {
            set.classes.insert(
                0,
                PhoneClass {
                    name: "silence".to_string(),
                    phones: set.silence.clone(),
                },
            );
        }
        Ok(set)
    }

    /// Phones and index only, checking names are unique and usable in text files.
    fn bare(name: &str, phones: Vec<String>) -> Result<Self> {
        let mut index = HashMap::new();
        for (i, p) in phones.iter().enumerate() {
            if p.is_empty() || p.chars().any(|c| c.is_whitespace() || c == ':') {
                return Err(Error::config(format!(
                    "phone set {name}: bad phone name '{p}' (empty, whitespace or ':')"
                )));
            }
            if index.insert(p.clone(), i as u32).is_some() {
                return Err(Error::config(format!(
                    "phone set {name}: phone '{p}' listed twice"
                )));
            }
        }
        Ok(PhoneSet {
            name: name.to_string(),
            phones,
            index,
            silence: Vec::new(),
            classes: Vec::new(),
        })
    }

    /// `sil` (id 0) + the 39 CMU/ARPAbet phones, alphabetical.
    pub fn arpabet() -> Self {
        let mut phones = vec!["sil"];
        phones.extend_from_slice(ARPABET39);
        PhoneSet::new("arpabet", &phones, &["sil"]).expect("built-in set is valid")
    }

    /// TIMIT's 61 labels in alphabetical order (as in Kaldi's map); silences `h#`, `pau`, `epi`
    /// (`h#` first, so gaps and edges get `h#`).
    pub fn timit61() -> Self {
        let phones: Vec<&str> = TIMIT_FOLDING.iter().map(|t| t.0).collect();
        PhoneSet::new("timit61", &phones, &["h#", "pau", "epi"]).expect("built-in set is valid")
    }

    /// The 48 folded TIMIT phones: `sil` (id 0) then alphabetical. `epi` is its own phone here
    /// (folded to `sil` only in the 39 set), counted with the silences.
    pub fn timit48() -> Self {
        let phones = sil_then_sorted(TIMIT_FOLDING.iter().map(|t| t.1));
        PhoneSet::new("timit48", &phones, &["sil", "epi"]).expect("built-in set is valid")
    }

    /// The 39 scoring classes of TIMIT: `sil` (id 0) then alphabetical.
    pub fn timit39() -> Self {
        let phones = sil_then_sorted(TIMIT_FOLDING.iter().map(|t| t.2));
        PhoneSet::new("timit39", &phones, &["sil"]).expect("built-in set is valid")
    }

    /// A built-in set by name: `arpabet`, `timit61`, `timit48` or `timit39`.
    pub fn builtin(name: &str) -> Result<Self> {
        match name {
            "arpabet" | "cmu" => Ok(PhoneSet::arpabet()),
            "timit61" => Ok(PhoneSet::timit61()),
            "timit48" => Ok(PhoneSet::timit48()),
            "timit39" => Ok(PhoneSet::timit39()),
            _ => Err(Error::config(format!(
                "unknown phone set '{name}': expected arpabet, timit61, timit48 or timit39"
            ))),
        }
    }

    /// The set's name (`arpabet`, `timit48`, ... or what a loaded file says).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of phones.
    pub fn len(&self) -> usize {
        self.phones.len()
    }

    /// True when the set has no phones.
    pub fn is_empty(&self) -> bool {
        self.phones.is_empty()
    }

    /// Phone names in id order.
    pub fn phones(&self) -> &[String] {
        &self.phones
    }

    /// Name of phone `id`.
    pub fn phone(&self, id: u32) -> Option<&str> {
        self.phones.get(id as usize).map(String::as_str)
    }

    /// Id of exactly this name.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.index.get(name).copied()
    }

    /// Id of a label as corpora spell it: exact, then lower case, then without ARPAbet stress
    /// digits (`AH0` -> `ah`), then [`VARIANT_ALIASES`] (`ax` -> `ah`), then
    /// [`SILENCE_ALIASES`] -> the first silence phone.
    pub fn lookup(&self, label: &str) -> Option<u32> {
        if let Some(id) = self.id(label) {
            return Some(id);
        }
        let lower = label.to_lowercase();
        if let Some(id) = self.id(&lower) {
            return Some(id);
        }
        let unstressed = lower.trim_end_matches(['0', '1', '2']);
        if !unstressed.is_empty() && unstressed.len() < lower.len() {
            if let Some(id) = self.id(unstressed) {
                return Some(id);
            }
        }
        if let Some(&(_, to)) = VARIANT_ALIASES.iter().find(|(from, _)| *from == lower) {
            if let Some(id) = self.id(to) {
                return Some(id);
            }
        }
        if SILENCE_ALIASES.contains(&lower.as_str()) {
            return self.silence_id();
        }
        None
    }

    /// The silence phone that gaps and utterance edges get (the first silence of the set).
    pub fn silence_id(&self) -> Option<u32> {
        self.silence.first().copied()
    }

    /// All silence phone ids.
    pub fn silence_ids(&self) -> &[u32] {
        &self.silence
    }

    /// True when `id` is a silence phone.
    pub fn is_silence(&self, id: u32) -> bool {
        self.silence.contains(&id)
    }

    /// The phonetic classes (the `silence` class first when the set has silence).
    pub fn classes(&self) -> &[PhoneClass] {
        &self.classes
    }

    /// One class by name.
    pub fn class(&self, name: &str) -> Option<&PhoneClass> {
        self.classes.iter().find(|c| c.name == name)
    }

    /// Adds or replaces a class; every phone must be in the set. `silence` also sets the
    /// silence phones.
    pub fn set_class(&mut self, name: &str, phones: &[&str]) -> Result<()> {
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains(':') {
            return Err(Error::config(format!("bad class name '{name}'")));
        }
        let mut ids = Vec::with_capacity(phones.len());
        for p in phones {
            ids.push(self.id(p).ok_or_else(|| {
                Error::config(format!(
                    "class {name}: phone '{p}' is not in set {}",
                    self.name
                ))
            })?);
        }
        if name == "silence" {
            // Keep the given order: the first silence is the one gaps and edges get.
            let mut seen = Vec::with_capacity(ids.len());
            ids.retain(|id| {
                if seen.contains(id) {
                    false
                } else {
                    seen.push(*id);
                    true
                }
            });
            self.silence = ids.clone();
        } else {
            ids.sort_unstable();
            ids.dedup();
        }
        match self.classes.iter_mut().find(|c| c.name == name) {
            Some(c) => c.phones = ids,
            None => self.classes.push(PhoneClass {
                name: name.to_string(),
                phones: ids,
            }),
        }
        Ok(())
    }

    /// Maps parsed labels to this set's canonical names (see [`PhoneSet::lookup`]); an unknown
    /// phone is an error naming `path` and the label's line.
    pub fn canonical_segments(
        &self,
        path: &Path,
        labels: &[PhoneLabel],
    ) -> Result<Vec<PhoneSegment>> {
        labels
            .iter()
            .map(|l| {
                let id = self.lookup(&l.phone).ok_or_else(|| {
                    Error::parse(
                        path,
                        l.line,
                        format!(
                            "unknown phone '{}' (not in phone set {})",
                            l.phone, self.name
                        ),
                    )
                })?;
                Ok(PhoneSegment {
                    phone: self.phones[id as usize].clone(),
                    start: l.start,
                    end: l.end,
                })
            })
            .collect()
    }

    /// Writes `phones.txt`: `phone id` per line, ids 0..N-1.
    pub fn write_phones_txt(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path, |w| {
            for (i, p) in self.phones.iter().enumerate() {
                writeln!(w, "{p} {i}")?;
            }
            Ok(())
        })
    }

    /// Writes the classes: a header comment naming the set, then `class: phone phone ...`.
    pub fn write_classes(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path, |w| {
            writeln!(w, "# amdistill phone classes, set {}", self.name)?;
            writeln!(w, "# one class per line: 'name: phone phone ...'; the class 'silence' marks silence phones")?;
            for c in &self.classes {
                let names: Vec<&str> = c
                    .phones
                    .iter()
                    .map(|&i| self.phones[i as usize].as_str())
                    .collect();
                writeln!(w, "{}: {}", c.name, names.join(" "))?;
            }
            Ok(())
        })
    }

    /// Writes `phones.txt` and `phone_classes.txt` into `dir`.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        self.write_phones_txt(dir.join(PHONES_TXT))?;
        self.write_classes(dir.join(PHONE_CLASSES_TXT))
    }

    /// Reads `phones.txt` (ids must be 0..N-1 in order) and, when given, a classes file.
    /// Without classes the set gets the built-in classes for the names it knows and takes
    /// `sil`/`h#`/`pau`/`sp` (whichever are present) as silence.
    pub fn load(phones_txt: impl AsRef<Path>, classes: Option<&Path>) -> Result<Self> {
        let path = phones_txt.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut phones = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.is_empty() {
                continue;
            }
            if f.len() != 2 {
                return Err(Error::parse(
                    path,
                    i + 1,
                    format!("expected 'phone id', got {} fields", f.len()),
                ));
            }
            let id: usize = f[1]
                .parse()
                .map_err(|_| Error::parse(path, i + 1, format!("bad phone id '{}'", f[1])))?;
            if id != phones.len() {
                return Err(Error::parse(
                    path,
                    i + 1,
                    format!(
                        "phone ids must be 0, 1, 2 ... in order: expected {}, got {id}",
                        phones.len()
                    ),
                ));
            }
            phones.push(f[0].to_string());
        }
        if phones.is_empty() {
            return Err(Error::parse(path, 0, "no phones"));
        }
        match classes {
            None => {
                let refs: Vec<&str> = phones.iter().map(String::as_str).collect();
                let silence: Vec<&str> = refs
                    .iter()
                    .copied()
                    .filter(|p| ["sil", "h#", "pau", "sp"].contains(p))
                    .collect();
                let name = path
                    .parent()
                    .and_then(|d| d.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                PhoneSet::new(&name, &refs, &silence)
                    .map_err(|e| Error::parse(path, 0, e.to_string()))
            }
            Some(cpath) => {
                let mut set =
                    PhoneSet::bare("", phones).map_err(|e| Error::parse(path, 0, e.to_string()))?;
                set.read_classes(cpath)?;
                Ok(set)
            }
        }
    }

    /// Reads `phones.txt` and `phone_classes.txt` (when present) from `dir`.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let classes: PathBuf = dir.join(PHONE_CLASSES_TXT);
        PhoneSet::load(
            dir.join(PHONES_TXT),
            classes.exists().then_some(classes.as_path()),
        )
    }

    fn read_classes(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        self.classes.clear();
        self.silence.clear();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(comment) = line.strip_prefix('#') {
                if let Some(name) = comment.trim().strip_prefix("amdistill phone classes, set ") {
                    self.name = name.trim().to_string();
                }
                continue;
            }
            if line.is_empty() {
                continue;
            }
            let (name, rest) = line
                .split_once(':')
                .ok_or_else(|| Error::parse(path, i + 1, "expected 'class: phone phone ...'"))?;
            let name = name.trim();
            if self.class(name).is_some() {
                return Err(Error::parse(
                    path,
                    i + 1,
                    format!("class '{name}' defined twice"),
                ));
            }
            let members: Vec<&str> = rest.split_whitespace().collect();
            self.set_class(name, &members)
                .map_err(|e| Error::parse(path, i + 1, e.to_string()))?;
        }
        Ok(())
    }
}

/// `sil` first, then the other distinct non-empty names in byte order: the layout of the
/// folded TIMIT sets.
fn sil_then_sorted<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut rest: Vec<&str> = names.filter(|p| !p.is_empty() && *p != "sil").collect();
    rest.sort_unstable();
    rest.dedup();
    let mut phones = vec!["sil"];
    phones.extend(rest);
    phones
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_sizes() {
        assert_eq!(PhoneSet::arpabet().len(), 40);
        assert_eq!(PhoneSet::timit61().len(), 61);
        assert_eq!(PhoneSet::timit48().len(), 48);
        assert_eq!(PhoneSet::timit39().len(), 39);
    }

    #[test]
    fn every_builtin_phone_has_features() {
        for set in [
            PhoneSet::arpabet(),
            PhoneSet::timit61(),
            PhoneSet::timit48(),
            PhoneSet::timit39(),
        ] {
            for p in set.phones() {
                assert!(
                    !phone_features(p).is_empty(),
                    "{} has no features in {}",
                    p,
                    set.name()
                );
            }
        }
    }

    #[test]
    fn lookup_normalises() {
        let s = PhoneSet::arpabet();
        assert_eq!(s.lookup("AH0"), s.id("ah"));
        assert_eq!(s.lookup("pau"), Some(0));
        assert_eq!(s.lookup("h#"), Some(0));
        assert_eq!(s.lookup(""), Some(0));
        assert_eq!(s.lookup("xx"), None);
        assert_eq!(s.lookup("ax"), s.id("ah"));
        let t = PhoneSet::timit61();
        assert_eq!(t.lookup("ax-h"), t.id("ax-h"));
        assert_eq!(t.lookup("sil"), t.id("h#"));
        assert_eq!(t.silence_id(), t.id("h#"));
    }
}
