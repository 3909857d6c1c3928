//! Label parsers, phone sets and folding, frame labels and frame-count checks.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use amdistill::labels::frame_labels::{
    read_phone_times, FrameCountMismatch, DEFAULT_FRAME_TOLERANCE,
};
use amdistill::labels::hts::{read_festival_lab, read_hts_labels, read_hts_phones};
use amdistill::labels::kaldi_ali::{max_id, read_alignments, write_alignments};
use amdistill::labels::phones::{fold_61_to_48, fold_to_39, PhoneSet};
use amdistill::labels::textgrid::{
    parse_textgrid, read_textgrid, read_textgrid_phones, textgrid_words, TierContent,
};
use amdistill::labels::timit::read_phn;
use amdistill::labels::{
    check_frame_counts, frame_phone_labels, write_ctm, ContextLabel, FrameGeometry, FrameLabel,
    FrameLabeler, PhoneSegment,
};
use amdistill::Error;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/arctic")
        .join(name)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// The error's text must name the file (by its name) and the line.
fn assert_names_line(e: &Error, file: &str, line: usize) {
    let s = e.to_string();
    assert!(
        s.contains(&format!("{file}:{line}")),
        "error does not name {file}:{line}: {s}"
    );
}

fn seg(phone: &str, start: f64, end: f64) -> PhoneSegment {
    PhoneSegment {
        phone: phone.to_string(),
        start,
        end,
    }
}

// ----------------------------------------------------------------------------------------------
// HTS / festival

const ARCTIC_PHONES: &str = "sil hh iy t er n d sh aa r p l iy ae n d f ey s t g r eh g s ax n ax k r ao s dh ax t ey b ax l sil";

#[test]
fn arctic_phone_labels() {
    let labels = read_hts_phones(fixture("arctic_a0009_phone.lab")).unwrap();
    assert_eq!(labels.len(), 40);
    let names: Vec<&str> = labels.iter().map(|l| l.phone.as_str()).collect();
    assert_eq!(names.join(" "), ARCTIC_PHONES);
    assert!((labels.last().unwrap().end - 3.075).abs() < 1e-9);
    assert!((labels[1].start - 0.13).abs() < 1e-9 && (labels[1].end - 0.205).abs() < 1e-9);
    assert_eq!(labels[2].line, 3);
    // Contiguous.
    for w in labels.windows(2) {
        assert!((w[0].end - w[1].start).abs() < 1e-9);
    }
    // Every phone is ARPAbet (festival's `ax` maps to `ah`).
    let set = PhoneSet::arpabet();
    let segs = set
        .canonical_segments(&fixture("arctic_a0009_phone.lab"), &labels)
        .unwrap();
    assert_eq!(segs[25].phone, "ah");
}

#[test]
fn arctic_state_labels_merge_to_the_phones() {
    let states = read_hts_labels(fixture("arctic_a0009_state.lab")).unwrap();
    assert_eq!(states.len(), 200);
    assert_eq!(states[0].state, Some(2));
    assert_eq!(states[4].state, Some(6));
    assert_eq!(states[5].phone, "hh");
    let phones = read_hts_phones(fixture("arctic_a0009_state.lab")).unwrap();
    let reference = read_hts_phones(fixture("arctic_a0009_phone.lab")).unwrap();
    assert_eq!(phones.len(), 40);
    for (a, b) in phones.iter().zip(&reference) {
        assert_eq!(a.phone, b.phone);
        assert!(
            (a.start - b.start).abs() < 1e-9 && (a.end - b.end).abs() < 1e-9,
            "{a:?} vs {b:?}"
        );
    }
}

#[test]
fn hts_mono_labels() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "mono.lab",
        "0 1000000 sil\n1000000 1500000 ax-h\n1500000 2000000 pau\n",
    );
    let labels = read_hts_phones(&p).unwrap();
    let names: Vec<&str> = labels.iter().map(|l| l.phone.as_str()).collect();
    assert_eq!(names, ["sil", "ax-h", "pau"]);
    assert!((labels[1].end - 0.15).abs() < 1e-12);
}

#[test]
fn hts_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("fields.lab", "0 100 sil\n100 200\n", 2),
        ("time.lab", "0 100 sil\n100 2x0 a\n", 2),
        ("neg.lab", "0 100 sil\n-5 200 a\n", 2),
        ("order.lab", "0 100 sil\n300 200 a\n", 2),
        ("overlap.lab", "0 100 sil\n100 300 a\n250 400 b\n", 3),
        ("state.lab", "0 100 x^a-b+c=d[2]\n100 200 x^a-b+c=d[q]\n", 2),
    ];
    for (name, text, line) in cases {
        let p = write(dir.path(), name, text);
        let e = read_hts_labels(&p).unwrap_err();
        assert_names_line(&e, name, line);
    }
    let p = write(dir.path(), "empty.lab", "\n\n");
    assert!(read_hts_labels(&p)
        .unwrap_err()
        .to_string()
        .contains("empty.lab"));
}

#[test]
fn festival_xwaves_labels() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "a.lab",
        "separator ;\nnfields 1\n#\n0.110 125 pau\n0.235 125 hh\n0.300 125 iy\n",
    );
    let labels = read_hts_phones(&p).unwrap();
    assert_eq!(labels.len(), 3);
    assert_eq!(labels[0].start, 0.0);
    assert!((labels[1].start - 0.11).abs() < 1e-12 && (labels[1].end - 0.235).abs() < 1e-12);
    assert_eq!(labels[2].line, 6);
    let bad = write(dir.path(), "bad.lab", "#\n0.110 125 pau\n0.100 125 hh\n");
    assert_names_line(&read_festival_lab(&bad).unwrap_err(), "bad.lab", 3);
    let bad = write(dir.path(), "bad2.lab", "#\n0.110 125 pau\nzero 125 hh\n");
    assert_names_line(&read_festival_lab(&bad).unwrap_err(), "bad2.lab", 3);
}

// ----------------------------------------------------------------------------------------------
// TIMIT .PHN

#[test]
fn timit_phn() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "SI943.PHN",
        "0 2400 h#\n2400 3200 sh\n3200 4800 iy\n4800 6400 h#\n",
    );
    let labels = read_phn(&p, 16000.0).unwrap();
    assert_eq!(labels.len(), 4);
    assert!((labels[1].start - 0.15).abs() < 1e-12 && (labels[1].end - 0.2).abs() < 1e-12);
    let cases = [
        ("a.PHN", "0 2400 h#\n2400 sh\n", 2),
        ("b.PHN", "0 2400 h#\n2400 3200.5 sh\n", 2),
        ("c.PHN", "0 2400 h#\n2000 3200 sh\n", 2),
        ("d.PHN", "0 2400 h#\n3200 2400 sh\n", 2),
        ("e.PHN", "0 2400 h#\n2400 3200 sh extra\n", 2),
    ];
    for (name, text, line) in cases {
        let p = write(dir.path(), name, text);
        assert_names_line(&read_phn(&p, 16000.0).unwrap_err(), name, line);
    }
}

// ----------------------------------------------------------------------------------------------
// TextGrid

/// A tier for the writers below: name and `(xmin, xmax, text)` intervals.
type Tier = (&'static str, Vec<(f64, f64, &'static str)>);

/// (tier name, intervals) -> a TextGrid in Praat's long text format, as MFA writes it.
fn textgrid_long(xmax: f64, tiers: &[Tier]) -> String {
    let mut s = format!(
        "File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\nxmin = 0 \nxmax = {xmax} \ntiers? <exists> \nsize = {} \nitem []: \n",
        tiers.len()
    );
    for (i, (name, ivs)) in tiers.iter().enumerate() {
        s += &format!(
            "    item [{}]:\n        class = \"IntervalTier\" \n        name = \"{name}\" \n        xmin = 0 \n        xmax = {xmax} \n        intervals: size = {} \n",
            i + 1,
            ivs.len()
        );
        for (j, (a, b, t)) in ivs.iter().enumerate() {
            s += &format!(
                "        intervals [{}]:\n            xmin = {a} \n            xmax = {b} \n            text = \"{}\" \n",
                j + 1,
                t.replace('"', "\"\"")
            );
        }
    }
    s
}

/// The same in the short text format.
fn textgrid_short(xmax: f64, tiers: &[Tier]) -> String {
    let mut s = format!(
        "File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\n0\n{xmax}\n<exists>\n{}\n",
        tiers.len()
    );
    for (name, ivs) in tiers {
        s += &format!("\"IntervalTier\"\n\"{name}\"\n0\n{xmax}\n{}\n", ivs.len());
        for (a, b, t) in ivs {
            s += &format!("{a}\n{b}\n\"{}\"\n", t.replace('"', "\"\""));
        }
    }
    s
}

fn mfa_tiers() -> Vec<Tier> {
    vec![
        (
            "words",
            vec![
                (0.0, 0.3, ""),
                (0.3, 0.9, "hello"),
                (0.9, 1.1, "\"world\""),
                (1.1, 1.2, ""),
            ],
        ),
        (
            "phones",
            vec![
                (0.0, 0.3, ""),
                (0.3, 0.4, "HH"),
                (0.4, 0.6, "AH0"),
                (0.6, 0.7, "L"),
                (0.7, 0.9, "OW1"),
                (0.9, 1.1, "spn"),
                (1.1, 1.2, ""),
            ],
        ),
    ]
}

#[test]
fn textgrid_long_and_short_formats_agree() {
    let dir = tempfile::tempdir().unwrap();
    let long = write(
        dir.path(),
        "long.TextGrid",
        &textgrid_long(1.2, &mfa_tiers()),
    );
    let short = write(
        dir.path(),
        "short.TextGrid",
        &textgrid_short(1.2, &mfa_tiers()),
    );
    let a = read_textgrid(&long).unwrap();
    let b = read_textgrid(&short).unwrap();
    assert_eq!(a.tiers.len(), 2);
    assert_eq!(a.xmax, 1.2);
    for (ta, tb) in a.tiers.iter().zip(&b.tiers) {
        assert_eq!(ta.name, tb.name);
        match (&ta.content, &tb.content) {
            (TierContent::Intervals(x), TierContent::Intervals(y)) => {
                assert_eq!(x.len(), y.len());
                for (p, q) in x.iter().zip(y) {
                    assert_eq!((p.xmin, p.xmax, &p.text), (q.xmin, q.xmax, &q.text));
                }
            }
            _ => panic!("interval tiers expected"),
        }
    }
    assert_eq!(textgrid_words(&a, "words").unwrap(), "hello \"world\"");
    let phones = read_textgrid_phones(&long, "phones").unwrap();
    let names: Vec<&str> = phones.iter().map(|p| p.phone.as_str()).collect();
    assert_eq!(names, ["sil", "HH", "AH0", "L", "OW1", "spn", "sil"]);
    // Lines point at each interval's text in the long format.
    let text = std::fs::read_to_string(&long).unwrap();
    let line_of_hh = text.lines().position(|l| l.contains("\"HH\"")).unwrap() + 1;
    assert_eq!(phones[1].line, line_of_hh);
    // Mapped to ARPAbet: stress stripped, silences and spoken noise -> sil.
    let segs = PhoneSet::arpabet()
        .canonical_segments(&long, &phones)
        .unwrap();
    let names: Vec<&str> = segs.iter().map(|p| p.phone.as_str()).collect();
    assert_eq!(names, ["sil", "hh", "ah", "l", "ow", "sil", "sil"]);
}

#[test]
fn textgrid_utf16_point_tier_and_mfa_speaker_tiers() {
    let dir = tempfile::tempdir().unwrap();
    let text = "File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\n0\n1\n<exists>\n2\n\
                \"TextTier\"\n\"events\"\n0\n1\n2\n0.25\n\"click\"\n0.5\n\"\"\n\
                \"IntervalTier\"\n\"anna - phones\"\n0\n1\n2\n0\n0.5\n\"ä\"\n0.5\n1\n\"\"\n";
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        bytes.extend(u.to_le_bytes());
    }
    let p = dir.path().join("u16.TextGrid");
    std::fs::write(&p, bytes).unwrap();
    let tg = read_textgrid(&p).unwrap();
    match &tg.tiers[0].content {
        TierContent::Points(pts) => assert_eq!(
            (pts.len(), pts[0].mark.as_str(), pts[0].time),
            (2, "click", 0.25)
        ),
        _ => panic!("point tier expected"),
    }
    let phones = read_textgrid_phones(&p, "phones").unwrap();
    assert_eq!(phones[0].phone, "ä");
    assert_eq!(phones[1].phone, "sil");
}

#[test]
fn textgrid_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let good = textgrid_long(1.2, &mfa_tiers());
    // Interval that ends before it starts (line of its text).
    let bad = good.replacen(
        "xmin = 0.4 \n            xmax = 0.6 ",
        "xmin = 0.4 \n            xmax = 0.35 ",
        1,
    );
    let p = write(dir.path(), "order.TextGrid", &bad);
    let line = bad.lines().position(|l| l.contains("\"AH0\"")).unwrap() + 1;
    assert_names_line(&read_textgrid(&p).unwrap_err(), "order.TextGrid", line);
    // Unterminated string.
    let bad = good.replacen("\"hello\"", "\"hello", 1);
    let p = write(dir.path(), "quote.TextGrid", &bad);
    let e = read_textgrid(&p).unwrap_err();
    assert!(e.to_string().contains("quote.TextGrid"), "{e}");
    let p = write(
        dir.path(),
        "open.TextGrid",
        "File type = \"ooTextFile\"\nObject class = \"TextGrid\n",
    );
    assert_names_line(&read_textgrid(&p).unwrap_err(), "open.TextGrid", 2);
    // A count larger than the file (never allocated).
    let bad = good.replacen("intervals: size = 4", "intervals: size = 4000000000", 1);
    let p = write(dir.path(), "count.TextGrid", &bad);
    let line = bad.lines().position(|l| l.contains("4000000000")).unwrap() + 1;
    assert_names_line(&read_textgrid(&p).unwrap_err(), "count.TextGrid", line);
    // A string where a number belongs.
    let bad = good.replacen("xmax = 0.3 ", "xmax = \"0.3\" ", 1);
    let p = write(dir.path(), "type.TextGrid", &bad);
    let line = bad.lines().position(|l| l.contains("\"0.3\"")).unwrap() + 1;
    assert_names_line(&read_textgrid(&p).unwrap_err(), "type.TextGrid", line);
    // Not a TextGrid; truncated; no phone tier; unknown tier class.
    let e = parse_textgrid(
        "x.TextGrid",
        "File type = \"ooTextFile\"\nObject class = \"Sound\"\n",
    )
    .unwrap_err();
    assert_names_line(&e, "x.TextGrid", 2);
    let cut: String = good.lines().take(30).collect::<Vec<_>>().join("\n");
    assert!(parse_textgrid("cut.TextGrid", &cut)
        .unwrap_err()
        .to_string()
        .contains("file ends"));
    let p = write(
        dir.path(),
        "nophones.TextGrid",
        &textgrid_long(1.2, &mfa_tiers()[..1]),
    );
    let e = read_textgrid_phones(&p, "phones").unwrap_err().to_string();
    assert!(
        e.contains("nophones.TextGrid") && e.contains("no interval tier named \"phones\""),
        "{e}"
    );
    let bad = good.replacen("\"IntervalTier\"", "\"FancyTier\"", 1);
    assert!(parse_textgrid("c.TextGrid", &bad)
        .unwrap_err()
        .to_string()
        .contains("FancyTier"));
    // An unknown phone names the file and the interval's line.
    let bad = good.replacen("\"L\"", "\"QQ\"", 1);
    let p = write(dir.path(), "phone.TextGrid", &bad);
    let labels = read_textgrid_phones(&p, "phones").unwrap();
    let line = bad.lines().position(|l| l.contains("\"QQ\"")).unwrap() + 1;
    assert_names_line(
        &PhoneSet::arpabet()
            .canonical_segments(&p, &labels)
            .unwrap_err(),
        "phone.TextGrid",
        line,
    );
}

// ----------------------------------------------------------------------------------------------
// Kaldi alignments

#[test]
fn kaldi_alignments_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "ali.txt",
        "utt2 5 5 5 7 7\nutt1 0 0 1 1 1 2 \n\n",
    );
    let ali = read_alignments(&p).unwrap();
    assert_eq!(ali["utt1"], [0, 0, 1, 1, 1, 2]);
    assert_eq!(ali["utt2"], [5, 5, 5, 7, 7]);
    assert_eq!(max_id(&ali), Some(7));
    let out = dir.path().join("out.txt");
    write_alignments(&out, &ali).unwrap();
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "utt1 0 0 1 1 1 2\nutt2 5 5 5 7 7\n"
    );
    assert_eq!(read_alignments(&out).unwrap(), ali);
}

#[test]
fn kaldi_alignments_malformed() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("neg.txt", "u1 1 2\nu2 3 -4\n", 2),
        ("word.txt", "u1 1 two\n", 1),
        ("empty.txt", "u1 1 2\nu2\n", 2),
        ("dup.txt", "u1 1 2\nu2 1\nu1 3\n", 3),
        ("float.txt", "u1 1.5\n", 1),
    ];
    for (name, text, line) in cases {
        let p = write(dir.path(), name, text);
        assert_names_line(&read_alignments(&p).unwrap_err(), name, line);
    }
}

// ----------------------------------------------------------------------------------------------
// Phone sets and folding

#[test]
fn timit_folding_tables() {
    let t61 = PhoneSet::timit61();
    assert_eq!(t61.len(), 61);
    let to48: std::collections::BTreeSet<&str> = t61
        .phones()
        .iter()
        .filter_map(|p| fold_61_to_48(p))
        .collect();
    let to39: std::collections::BTreeSet<&str> =
        t61.phones().iter().filter_map(|p| fold_to_39(p)).collect();
    assert_eq!(to48.len(), 48);
    assert_eq!(to39.len(), 39);
    // Only q has no fold (Kaldi drops it).
    assert_eq!(
        t61.phones()
            .iter()
            .filter(|p| fold_61_to_48(p).is_none())
            .collect::<Vec<_>>(),
        ["q"]
    );
    // The sets are exactly the fold images.
    let s48 = PhoneSet::timit48();
    let s39 = PhoneSet::timit39();
    assert_eq!(
        s48.phones()
            .iter()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        to48
    );
    assert_eq!(
        s39.phones()
            .iter()
            .map(String::as_str)
            .collect::<std::collections::BTreeSet<_>>(),
        to39
    );
    // Standard merges (Lee & Hon 1989).
    for (p61, p48, p39) in [
        ("ao", "ao", "aa"),
        ("ax-h", "ax", "ah"),
        ("axr", "er", "er"),
        ("bcl", "vcl", "sil"),
        ("pcl", "cl", "sil"),
        ("em", "m", "m"),
        ("eng", "ng", "ng"),
        ("nx", "n", "n"),
        ("hv", "hh", "hh"),
        ("ux", "uw", "uw"),
        ("zh", "zh", "sh"),
        ("epi", "epi", "sil"),
        ("h#", "sil", "sil"),
        ("pau", "sil", "sil"),
        ("ix", "ix", "ih"),
        ("el", "el", "l"),
        ("en", "en", "n"),
        ("dx", "dx", "dx"),
    ] {
        assert_eq!(fold_61_to_48(p61), Some(p48), "{p61}");
        assert_eq!(fold_to_39(p61), Some(p39), "{p61}");
        assert_eq!(fold_to_39(p48), Some(p39), "48-set {p48}");
    }
    assert_eq!(fold_61_to_48("H#"), Some("sil"));
    assert_eq!(fold_to_39("xyz"), None);
    // Every 48 phone folds into the 39 set.
    for p in s48.phones() {
        assert!(s39.id(fold_to_39(p).unwrap()).is_some(), "{p}");
    }
}

#[test]
fn arpabet_set_and_classes() {
    let s = PhoneSet::arpabet();
    assert_eq!(s.len(), 40);
    assert_eq!(s.phone(0), Some("sil"));
    assert_eq!(s.silence_id(), Some(0));
    let names = |class: &str| -> Vec<&str> {
        s.class(class)
            .unwrap()
            .phones
            .iter()
            .map(|&i| s.phone(i).unwrap())
            .collect()
    };
    assert_eq!(names("nasal"), ["m", "n", "ng"]);
    assert_eq!(names("voiced_stop"), ["b", "d", "g"]);
    assert_eq!(names("affricate"), ["ch", "jh"]);
    assert_eq!(names("glide"), ["w", "y"]);
    assert_eq!(names("diphthong"), ["aw", "ay", "ey", "ow", "oy"]);
    assert_eq!(names("vowel").len(), 15);
    assert!(names("front_vowel").contains(&"iy") && names("back_vowel").contains(&"uw"));
    assert_eq!(names("silence"), ["sil"]);
    for class in [
        "consonant",
        "stop",
        "fricative",
        "voiced_fricative",
        "liquid",
        "voiced",
        "labial",
        "alveolar",
        "velar",
        "dental",
    ] {
        assert!(s.class(class).is_some(), "{class}");
    }
    // Silence is in no phonetic class but its own.
    assert!(s
        .classes()
        .iter()
        .filter(|c| c.name != "silence")
        .all(|c| !c.phones.contains(&0)));
    // Every non-silence phone is a vowel or a consonant, never both.
    let v = s.class("vowel").unwrap();
    let c = s.class("consonant").unwrap();
    for id in 1..s.len() as u32 {
        assert!(
            v.phones.contains(&id) ^ c.phones.contains(&id),
            "{}",
            s.phone(id).unwrap()
        );
    }
    let t = PhoneSet::timit61();
    assert_eq!(t.silence_ids().len(), 3);
    assert_eq!(t.phone(t.silence_id().unwrap()), Some("h#"));
    assert!(t.class("closure").unwrap().phones.len() == 6);
}

#[test]
fn phone_set_save_and_load() {
    let dir = tempfile::tempdir().unwrap();
    for set in [
        PhoneSet::timit61(),
        PhoneSet::arpabet(),
        PhoneSet::timit48(),
    ] {
        set.save(dir.path()).unwrap();
        let back = PhoneSet::load_dir(dir.path()).unwrap();
        assert_eq!(
            back.phone(back.silence_id().unwrap()),
            set.phone(set.silence_id().unwrap())
        );
        assert_eq!(back.phones(), set.phones());
        assert_eq!(back.name(), set.name());
        assert_eq!(back.silence_ids(), set.silence_ids());
        assert_eq!(back.classes(), set.classes());
    }
    let phones_txt = std::fs::read_to_string(dir.path().join("phones.txt")).unwrap();
    assert!(phones_txt.starts_with("sil 0\naa 1\n"));
    // Malformed phones.txt and classes.
    let p = write(dir.path(), "p1.txt", "sil 0\naa 2\n");
    assert_names_line(&PhoneSet::load(&p, None).unwrap_err(), "p1.txt", 2);
    let p = write(dir.path(), "p2.txt", "sil 0\naa\n");
    assert_names_line(&PhoneSet::load(&p, None).unwrap_err(), "p2.txt", 2);
    let p = write(dir.path(), "p3.txt", "sil 0\naa one\n");
    assert_names_line(&PhoneSet::load(&p, None).unwrap_err(), "p3.txt", 2);
    let p = write(dir.path(), "p4.txt", "sil 0\nsil 1\n");
    assert!(PhoneSet::load(&p, None)
        .unwrap_err()
        .to_string()
        .contains("twice"));
    let good = write(dir.path(), "p5.txt", "sil 0\naa 1\nb 2\n");
    let c = write(dir.path(), "c1.txt", "silence: sil\nvowel: aa zz\n");
    assert_names_line(&PhoneSet::load(&good, Some(&c)).unwrap_err(), "c1.txt", 2);
    let c = write(dir.path(), "c2.txt", "silence: sil\nvowel aa\n");
    assert_names_line(&PhoneSet::load(&good, Some(&c)).unwrap_err(), "c2.txt", 2);
    let c = write(
        dir.path(),
        "c3.txt",
        "# comment\nsilence: sil\nmine: b aa\n",
    );
    let s = PhoneSet::load(&good, Some(&c)).unwrap();
    assert_eq!(s.class("mine").unwrap().phones, [1, 2]);
    assert_eq!(s.silence_id(), Some(0));
}

// ----------------------------------------------------------------------------------------------
// Frame labels

/// sil [0, 50 ms), aa [50, 110), b [110, 200), sil [200, 250).
fn hand_made() -> Vec<PhoneSegment> {
    vec![
        seg("sil", 0.0, 0.05),
        seg("aa", 0.05, 0.11),
        seg("b", 0.11, 0.2),
        seg("sil", 0.2, 0.25),
    ]
}

fn expand(runs: &[(u32, usize)]) -> Vec<u32> {
    runs.iter()
        .flat_map(|&(p, n)| std::iter::repeat(p).take(n))
        .collect()
}

#[test]
fn frame_phones_snip_edges_true_and_false() {
    let set = PhoneSet::arpabet();
    let (sil, aa, b) = (0, set.id("aa").unwrap(), set.id("b").unwrap());
    // snip-edges true: centres at t * 10 ms + 12.5 ms; 0.25 s covers 1 + (250 - 25) / 10 = 23 frames.
    let geometry = FrameGeometry {
        shift_s: 0.01,
        length_s: 0.025,
        snip_edges: true,
    };
    assert_eq!(geometry.num_frames(0.25), 23);
    let got = frame_phone_labels(&hand_made(), 23, 0.01, 0.025, true, &set).unwrap();
    assert_eq!(got, expand(&[(sil, 4), (aa, 6), (b, 9), (sil, 4)]));
    // snip-edges false: centres at t * 10 ms + 5 ms; round(250 / 10) = 25 frames.
    let geometry = FrameGeometry {
        snip_edges: false,
        ..geometry
    };
    assert_eq!(geometry.num_frames(0.25), 25);
    let got = frame_phone_labels(&hand_made(), 25, 0.01, 0.025, false, &set).unwrap();
    assert_eq!(got, expand(&[(sil, 5), (aa, 6), (b, 9), (sil, 5)]));
    // The feature side decides the count: two more frames (within tolerance) are silence.
    let got = frame_phone_labels(&hand_made(), 27, 0.01, 0.025, false, &set).unwrap();
    assert_eq!(got, expand(&[(sil, 5), (aa, 6), (b, 9), (sil, 7)]));
    // Three more is beyond the default tolerance of 2.
    let e = frame_phone_labels(&hand_made(), 28, 0.01, 0.025, false, &set).unwrap_err();
    assert!(matches!(e, Error::Mismatch(_)), "{e}");
    assert!(
        e.to_string().contains("25 frames") && e.to_string().contains("28"),
        "{e}"
    );
    let labeler = FrameLabeler::new(&set, geometry).with_tolerance(3);
    assert_eq!(labeler.phones(&hand_made(), 28).unwrap().len(), 28);
}

#[test]
fn frame_states_and_contexts() {
    let set = PhoneSet::arpabet();
    let (sil, aa, b) = (0, set.id("aa").unwrap(), set.id("b").unwrap());
    let labeler = FrameLabeler::new(&set, FrameGeometry::kaldi());
    let states: Vec<u8> = labeler
        .states(&hand_made(), 23)
        .unwrap()
        .iter()
        .map(|l| l.state)
        .collect();
    assert_eq!(
        states,
        [0, 0, 1, 2, 0, 0, 1, 1, 2, 2, 0, 0, 0, 1, 1, 1, 2, 2, 2, 0, 0, 1, 2]
    );
    assert_eq!(
        labeler.states(&hand_made(), 23).unwrap()[5],
        FrameLabel {
            phone: aa,
            state: 0
        }
    );
    let ctx = labeler.contexts(&hand_made(), 23).unwrap();
    assert_eq!(
        ctx[0],
        ContextLabel {
            left: sil,
            phone: sil,
            right: aa,
            state: 0
        }
    );
    assert_eq!(
        ctx[4],
        ContextLabel {
            left: sil,
            phone: aa,
            right: b,
            state: 0
        }
    );
    assert_eq!(
        ctx[12],
        ContextLabel {
            left: aa,
            phone: b,
            right: sil,
            state: 0
        }
    );
    assert_eq!(
        ctx[22],
        ContextLabel {
            left: b,
            phone: sil,
            right: sil,
            state: 2
        }
    );
    // A phone shorter than 3 frames gets the first states.
    let short = vec![
        seg("sil", 0.0, 0.1),
        seg("aa", 0.1, 0.12),
        seg("sil", 0.12, 0.2),
    ];
    let st = labeler.states(&short, 18).unwrap();
    let aa_states: Vec<u8> = st
        .iter()
        .filter(|l| l.phone == aa)
        .map(|l| l.state)
        .collect();
    assert_eq!(aa_states, [0, 1]);
}

#[test]
fn frame_labels_fill_gaps_and_edges_with_silence() {
    let set = PhoneSet::arpabet();
    let (sil, aa, b) = (0, set.id("aa").unwrap(), set.id("b").unwrap());
    let labeler = FrameLabeler::new(&set, FrameGeometry::kaldi());
    // aa [0, 50 ms), pause, b [100, 150 ms): 1 + (150 - 25) / 10 = 13 frames.
    let gap = vec![seg("aa", 0.0, 0.05), seg("b", 0.1, 0.15)];
    assert_eq!(
        labeler.phones(&gap, 13).unwrap(),
        expand(&[(aa, 4), (sil, 5), (b, 4)])
    );
    let ctx = labeler.contexts(&gap, 13).unwrap();
    assert_eq!(
        ctx[0],
        ContextLabel {
            left: sil,
            phone: aa,
            right: sil,
            state: 0
        }
    );
    assert_eq!(ctx[12].right, sil);
    // A 1 ms gap is CTM rounding, not a pause: its frame goes to the next phone.
    let tiny = vec![seg("aa", 0.0, 0.05), seg("b", 0.051, 0.1)];
    assert!(!labeler.phones(&tiny, 8).unwrap().contains(&sil));
    // Unknown phones, overlaps and empty input are errors.
    assert!(labeler
        .phones(&[seg("qq", 0.0, 0.1)], 8)
        .unwrap_err()
        .to_string()
        .contains("unknown phone 'qq'"));
    assert!(labeler
        .phones(&[seg("aa", 0.0, 0.1), seg("b", 0.05, 0.1)], 8)
        .is_err());
    assert!(labeler.phones(&[], 0).is_err());
}

#[test]
fn arctic_frames_agree_with_the_audio_within_tolerance() {
    let labels = read_hts_phones(fixture("arctic_a0009_phone.lab")).unwrap();
    let set = PhoneSet::arpabet();
    let segs = set
        .canonical_segments(&fixture("arctic_a0009_phone.lab"), &labels)
        .unwrap();
    // The wav has 49520 samples: 1 + (49520 - 400) / 160 = 308 frames; labels end at 3.075 s = 306.
    let labeler = FrameLabeler::new(&set, FrameGeometry::kaldi());
    assert_eq!(labeler.label_frames(&segs), 306);
    let ctx = labeler.contexts(&segs, 308).unwrap();
    assert_eq!(ctx.len(), 308);
    assert_eq!(ctx[0].phone, 0);
    let hh = set.id("hh").unwrap();
    // hh is [0.130, 0.205): frames with centres 0.1325 .. 0.2025 -> t = 12 ..= 19.
    let hh_frames: Vec<usize> = (0..308).filter(|&t| ctx[t].phone == hh).collect();
    assert_eq!(hh_frames, (12..=19).collect::<Vec<_>>());
    assert_eq!(
        ctx[12],
        ContextLabel {
            left: 0,
            phone: hh,
            right: set.id("iy").unwrap(),
            state: 0
        }
    );
    // Snip-edges false: round(49520 / 160) = 310 frames (Kaldi: (n + 80) / 160); labels 308.
    let centred = FrameLabeler::new(
        &set,
        FrameGeometry {
            snip_edges: false,
            ..FrameGeometry::kaldi()
        },
    );
    assert_eq!(centred.label_frames(&segs), 308);
    assert_eq!(centred.phones(&segs, 310).unwrap().len(), 310);
    assert!(labeler.phones(&segs, 310).is_err());
}

#[test]
fn frame_count_report_lists_each_utterance() {
    let labels: BTreeMap<String, usize> = [("a", 100), ("b", 200), ("c", 50)]
        .iter()
        .map(|&(u, n)| (u.to_string(), n))
        .collect();
    let feats: BTreeMap<String, usize> = [("a", 102), ("b", 210), ("d", 7)]
        .iter()
        .map(|&(u, n)| (u.to_string(), n))
        .collect();
    let report = check_frame_counts(&labels, &feats, DEFAULT_FRAME_TOLERANCE);
    assert_eq!(report.checked, 2);
    assert_eq!(
        report.mismatches,
        [FrameCountMismatch {
            utt: "b".into(),
            label_frames: 200,
            feature_frames: 210
        }]
    );
    assert_eq!(report.missing_features, ["c"]);
    assert_eq!(report.missing_labels, ["d"]);
    assert!(!report.is_ok());
    let text = report.to_string();
    assert!(
        text.contains("b: labels cover 200 frames, features have 210 (difference 10)"),
        "{text}"
    );
    let e = report.into_result().unwrap_err();
    assert!(matches!(e, Error::Mismatch(_)));
    assert!(check_frame_counts(&labels, &feats, 10).is_ok());
}

#[test]
fn label_corpus_skips_mismatched_utterances() {
    let set = PhoneSet::arpabet();
    let labeler = FrameLabeler::new(&set, FrameGeometry::kaldi());
    let phones: BTreeMap<String, Vec<PhoneSegment>> = [
        ("u1".to_string(), hand_made()),
        ("u2".to_string(), hand_made()),
        ("u3".to_string(), hand_made()),
    ]
    .into();
    let frames: BTreeMap<String, usize> = [("u1".to_string(), 23), ("u2".to_string(), 40)].into();
    let (labels, report) = labeler.label_corpus(&phones, &frames).unwrap();
    assert_eq!(labels.keys().collect::<Vec<_>>(), ["u1"]);
    assert_eq!(labels["u1"].len(), 23);
    assert_eq!(report.mismatches.len(), 1);
    assert_eq!(report.missing_features, ["u3"]);
}

#[test]
fn ctm_unknown_phone_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut ctm = BTreeMap::new();
    ctm.insert(
        "u1".to_string(),
        vec![
            seg("pau", 0.0, 0.1),
            seg("AH0", 0.1, 0.2),
            seg("ax", 0.2, 0.3),
        ],
    );
    let p = dir.path().join("phones.ctm");
    write_ctm(&p, &ctm).unwrap();
    let back = read_phone_times(&p, &PhoneSet::arpabet()).unwrap();
    let names: Vec<&str> = back["u1"].iter().map(|s| s.phone.as_str()).collect();
    assert_eq!(names, ["sil", "ah", "ah"]);
    let p = write(
        dir.path(),
        "bad.ctm",
        "u1 1 0.000 0.100 sil\nu1 1 0.100 0.100 zz\n",
    );
    assert_names_line(
        &read_phone_times(&p, &PhoneSet::arpabet()).unwrap_err(),
        "bad.ctm",
        2,
    );
}
