//! A senone table for a Kaldi model's pdf-ids, from the outside of Kaldi.
//!
//! Kaldi's pdf-ids are its senones, but amdistill's `senones.txt` also names each senone's
//! phone (per-phone scores, accuracy without silence, the bundle's senone table). Kaldi keeps
//! that mapping in its tree and transition model; amdistill recovers it from two per-frame
//! alignments of the same utterances:
//!
//! ```text
//! ali-to-pdf    exp/tri3_ali/final.mdl "ark:gunzip -c exp/tri3_ali/ali.*.gz|" ark,t:pdf_ali.txt
//! ali-to-phones --per-frame=true exp/tri3_ali/final.mdl "ark:gunzip -c exp/tri3_ali/ali.*.gz|" ark,t:phone_ali.txt
//! ```
//!
//! and `data/lang/phones.txt`. Each pdf gets the phone it co-occurs with most (Kaldi shares a
//! pdf only between the phones of one `roots` line, such as the position variants `AA_B AA_I`,
//! which map to one phone here). Without phone alignments every senone belongs to one phone
//! `unk` and no frame counts as silence.

use std::collections::BTreeMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::labels::phones::PhoneSet;
use crate::labels::tree::SenoneInfo;

/// Phone names used as silence when `data/lang/phones/silence.txt` is not beside phones.txt
/// (compared case-insensitively).
pub const DEFAULT_SILENCE_PHONES: &[&str] = &["sil", "sp", "spn", "nsn", "lau", "<sil>"];

/// Kaldi's word-position suffixes (`data/lang` built with `--position-dependent-phones true`).
const POSITION_SUFFIXES: &[&str] = &["_B", "_E", "_I", "_S"];

/// Kaldi's phone symbols mapped onto an amdistill phone set.
#[derive(Debug, Clone)]
pub struct KaldiPhones {
    /// The phones without position suffixes, in order of first appearance; silence as found.
    pub set: PhoneSet,
    /// Kaldi phone id -> phone id in `set`; `None` for `<eps>` and disambiguation symbols.
    by_kaldi_id: Vec<Option<u32>>,
}

/// The phone without its word-position suffix (`AA1_B` -> `AA1`, `SIL` -> `SIL`).
pub fn strip_position(symbol: &str) -> &str {
    POSITION_SUFFIXES
        .iter()
        .find_map(|s| symbol.strip_suffix(s).filter(|p| !p.is_empty()))
        .unwrap_or(symbol)
}

impl KaldiPhones {
    /// Reads Kaldi's `phones.txt` (`symbol id` per line). Silence phones: those listed in
    /// `phones/silence.txt` beside it when that exists, else [`DEFAULT_SILENCE_PHONES`].
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut names: Vec<String> = Vec::new();
        let mut by_kaldi_id: Vec<Option<u32>> = Vec::new();
        let mut seen = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.is_empty() {
                continue;
            }
            let [symbol, id] = f[..] else {
                return Err(Error::parse(path, i + 1, "expected 'symbol id'"));
            };
            // Ids must be 0, 1, 2 ... in order: the id is then the index into by_kaldi_id.
            id.parse()
                .ok()
                .filter(|&n: &usize| n == by_kaldi_id.len())
                .ok_or_else(|| {
                    Error::parse(
                        path,
                        i + 1,
                        format!(
                            "phone '{symbol}': id '{id}', expected {}",
                            by_kaldi_id.len()
                        ),
                    )
                })?;
            if symbol == "<eps>" || symbol.starts_with('#') {
                by_kaldi_id.push(None);
                continue;
            }
            let base = strip_position(symbol).to_string();
            let next = names.len() as u32;
            let ours = *seen.entry(base.clone()).or_insert_with(|| {
                names.push(base);
                next
            });
            by_kaldi_id.push(Some(ours));
        }
        if names.is_empty() {
            return Err(Error::parse(
                path,
                0,
                "no phones (only <eps> and #N symbols)",
            ));
        }
        let listed = path.parent().map(|d| d.join("phones").join("silence.txt"));
        let silence_names: Vec<String> = match listed.filter(|p| p.exists()) {
            Some(list) => {
                let text = std::fs::read_to_string(&list).map_err(|e| Error::io(&list, e))?;
                let mut out: Vec<String> = Vec::new();
                for s in text.split_whitespace().map(strip_position) {
                    if !names.iter().any(|n| n == s) {
                        return Err(Error::Mismatch(format!(
                            "{}: silence phone '{s}' is not in {}",
                            list.display(),
                            path.display()
                        )));
                    }
                    if !out.iter().any(|o| o == s) {
                        out.push(s.to_string());
                    }
                }
                out
            }
            None => names
                .iter()
                .filter(|n| {
                    DEFAULT_SILENCE_PHONES
                        .iter()
                        .any(|s| s.eq_ignore_ascii_case(n))
                })
                .cloned()
                .collect(),
        };
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let silence: Vec<&str> = silence_names.iter().map(String::as_str).collect();
        let set = PhoneSet::new("kaldi", &refs, &silence)
            .map_err(|e| Error::parse(path, 0, e.to_string()))?;
        Ok(KaldiPhones { set, by_kaldi_id })
    }

    /// The phone (id in `set`) of Kaldi phone id `id`; `None` for `<eps>`, `#N` or an id
    /// beyond phones.txt.
    pub fn phone(&self, id: u32) -> Option<u32> {
        self.by_kaldi_id.get(id as usize).copied().flatten()
    }
}

/// Per-frame phone alignments with the file they came from, for [`senone_table`].
pub struct PhoneAlignments<'a> {
    pub path: &'a Path,
    pub alignments: &'a BTreeMap<String, Vec<u32>>,
    pub phones: &'a KaldiPhones,
}

/// The senone table of `num_senones` pdfs: each pdf's frame count in `pdf` and, with
/// `phones`, the phone it co-occurs with most (phone 0 for a pdf never seen). State is 0 and
/// the contexts `*`: Kaldi's tree is not read. Every utterance of `pdf` needs a phone
/// alignment of the same length; a phone id that is `<eps>`, `#N` or not in phones.txt is an
/// error naming the utterance and frame.
pub fn senone_table(
    pdf: &BTreeMap<String, Vec<u32>>,
    phones: Option<&PhoneAlignments>,
    num_senones: usize,
) -> Result<Vec<SenoneInfo>> {
    let mut count = vec![0f64; num_senones];
    // votes[pdf] = phone -> frames
    let mut votes: Vec<BTreeMap<u32, u64>> = vec![BTreeMap::new(); num_senones];
    for (utt, ids) in pdf {
        let phone_ids = match phones {
            Some(p) => {
                let Some(v) = p.alignments.get(utt) else {
                    return Err(Error::Mismatch(format!(
                        "{}: no phone alignment for utterance {utt}",
                        p.path.display()
                    )));
                };
                if v.len() != ids.len() {
                    return Err(Error::Mismatch(format!(
                        "{}: utterance {utt} has {} frames of phones but {} of pdf-ids",
                        p.path.display(),
                        v.len(),
                        ids.len()
                    )));
                }
                Some((p, v))
            }
            None => None,
        };
        for (f, &id) in ids.iter().enumerate() {
            let Some(c) = count.get_mut(id as usize) else {
                return Err(Error::Mismatch(format!(
                    "utterance {utt} frame {f}: pdf-id {id}, but there are {num_senones} senones"
                )));
            };
            *c += 1.0;
            if let Some((p, v)) = phone_ids {
                let phone = p.phones.phone(v[f]).ok_or_else(|| {
                    Error::Mismatch(format!(
                        "{}: utterance {utt} frame {f}: phone id {} is not a phone of the phone table",
                        p.path.display(),
                        v[f]
                    ))
                })?;
                *votes[id as usize].entry(phone).or_default() += 1;
            }
        }
    }
    Ok((0..num_senones)
        .map(|s| SenoneInfo {
            senone: s as u32,
            // Most frames; the lower phone id on a tie (BTreeMap order), so the table is stable.
            phone: votes[s]
                .iter()
                .fold(None, |best: Option<(u32, u64)>, (&p, &n)| match best {
                    Some((_, m)) if m >= n => best,
                    _ => Some((p, n)),
                })
                .map_or(0, |(p, _)| p),
            state: 0,
            count: count[s],
            contexts: "*".to_string(),
        })
        .collect())
}

/// The phone set of a senone table made without phone alignments: one phone, no silence.
pub fn unknown_phone_set() -> PhoneSet {
    PhoneSet::new("kaldi", &["unk"], &[]).expect("a one-phone set is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phones_txt(dir: &Path, text: &str) -> std::path::PathBuf {
        let p = dir.join("phones.txt");
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn position_variants_are_one_phone_and_silence_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let p = phones_txt(
            tmp.path(),
            "<eps> 0\nSIL 1\nSIL_B 2\nAA1_B 3\nAA1_E 4\nB_I 5\nB 6\n#0 7\n",
        );
        let k = KaldiPhones::read(&p).unwrap();
        assert_eq!(k.set.phones(), ["SIL", "AA1", "B"]);
        assert_eq!(k.set.silence_ids(), [0]);
        assert_eq!(
            (0..9).map(|i| k.phone(i)).collect::<Vec<_>>(),
            [
                None,
                Some(0),
                Some(0),
                Some(1),
                Some(1),
                Some(2),
                Some(2),
                None,
                None
            ]
        );
        assert_eq!(strip_position("_B"), "_B");
    }

    #[test]
    fn silence_txt_beside_phones_txt_wins_and_is_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let p = phones_txt(tmp.path(), "<eps> 0\nsil 1\nspn 2\na 3\n");
        std::fs::create_dir(tmp.path().join("phones")).unwrap();
        std::fs::write(tmp.path().join("phones/silence.txt"), "spn\n").unwrap();
        let k = KaldiPhones::read(&p).unwrap();
        assert_eq!(k.set.silence_ids(), [1]);
        std::fs::write(tmp.path().join("phones/silence.txt"), "noise\n").unwrap();
        let e = KaldiPhones::read(&p).unwrap_err().to_string();
        assert!(e.contains("silence phone 'noise'"), "{e}");
    }

    #[test]
    fn bad_phone_tables_name_the_line() {
        let tmp = tempfile::tempdir().unwrap();
        for (text, want) in [
            ("<eps> 0\na 2\n", ":2: phone 'a': id '2', expected 1"),
            ("<eps> 0\na\n", ":2: expected 'symbol id'"),
            ("<eps> 0\n#0 1\n", "no phones"),
        ] {
            let p = phones_txt(tmp.path(), text);
            let e = KaldiPhones::read(&p).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn each_pdf_takes_its_majority_phone() {
        let tmp = tempfile::tempdir().unwrap();
        let p = phones_txt(tmp.path(), "<eps> 0\nsil 1\na_B 2\na_E 3\nb_I 4\n");
        let k = KaldiPhones::read(&p).unwrap();
        let pdf = BTreeMap::from([
            ("u1".to_string(), vec![0, 0, 1, 1, 1, 2]),
            ("u2".to_string(), vec![1, 2, 2]),
        ]);
        // pdf 1: a_B, a_E, b_I in u1 and a_B in u2 -> a (3 of 4); pdf 2: b twice, a once -> b.
        let ph = BTreeMap::from([
            ("u1".to_string(), vec![1, 1, 2, 3, 4, 4]),
            ("u2".to_string(), vec![2, 4, 2]),
        ]);
        let path = tmp.path().join("phone_ali.txt");
        let pa = PhoneAlignments {
            path: &path,
            alignments: &ph,
            phones: &k,
        };
        let t = senone_table(&pdf, Some(&pa), 4).unwrap();
        let got: Vec<(u32, f64)> = t.iter().map(|s| (s.phone, s.count)).collect();
        assert_eq!(got, [(0, 2.0), (1, 4.0), (2, 3.0), (0, 0.0)]);

        let plain = senone_table(&pdf, None, 3).unwrap();
        assert!(plain.iter().all(|s| s.phone == 0));
        let e = senone_table(&pdf, None, 2).unwrap_err().to_string();
        assert!(e.contains("utterance u1 frame 5: pdf-id 2"), "{e}");

        let short = BTreeMap::from([
            ("u1".to_string(), vec![1, 1, 2, 3, 4]),
            ("u2".to_string(), vec![2, 4, 2]),
        ]);
        let pa = PhoneAlignments {
            path: &path,
            alignments: &short,
            phones: &k,
        };
        let e = senone_table(&pdf, Some(&pa), 4).unwrap_err().to_string();
        assert!(
            e.contains("u1 has 5 frames of phones but 6 of pdf-ids"),
            "{e}"
        );
        let eps = BTreeMap::from([
            ("u1".to_string(), vec![1, 1, 2, 3, 4, 0]),
            ("u2".to_string(), vec![2, 4, 2]),
        ]);
        let pa = PhoneAlignments {
            path: &path,
            alignments: &eps,
            phones: &k,
        };
        let e = senone_table(&pdf, Some(&pa), 4).unwrap_err().to_string();
        assert!(e.contains("u1 frame 5: phone id 0"), "{e}");
    }
}
