//! Importers on hand-made corpora written by the tests: a TIMIT tree with SPHERE headers, FSDD
//! file names, a Kaldi data directory with alignments, HTS (the arctic fixture) and TextGrid
//! label directories. Library calls and the real `amdistill import` binary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use amdistill::corpus::import::{
    import_fsdd, import_kaldi, import_labels, import_timit, FsddSplit, Holdout, HoldoutBy,
    KaldiOptions, LabelFormat, LabelImportOptions, TimitOptions, TimitPhones,
};
use amdistill::corpus::table::read_map;
use amdistill::corpus::DataDir;
use amdistill::labels::frame_labels::read_phone_times;
use amdistill::labels::kaldi_ali::{read_alignments, write_binary_alignments};
use amdistill::labels::tree::read_senones;
use amdistill::labels::{read_ctm, FrameGeometry, FrameLabeler, PhoneSet};

fn write(path: &Path, bytes: impl AsRef<[u8]>) -> PathBuf {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// A NIST SPHERE file as the LDC TIMIT has them: 1024-byte header, 16-bit PCM samples.
fn sphere(num_samples: usize) -> Vec<u8> {
    let text = format!(
        "NIST_1A\n   1024\ndatabase_id -s5 TIMIT\nsample_count -i {num_samples}\nsample_rate -i 16000\n\
         channel_count -i 1\nsample_byte_format -s2 01\nsample_n_bytes -i 2\nsample_sig_bits -i 16\nsample_coding -s3 pcm\nend_head\n"
    );
    let mut bytes = text.into_bytes();
    bytes.resize(1024, b' ');
    for i in 0..num_samples {
        bytes.extend(((i as i16).wrapping_mul(37)).to_le_bytes());
    }
    bytes
}

/// A small RIFF WAV file.
fn wav(path: &Path, rate: u32, num_samples: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..num_samples {
        w.write_sample((i % 100) as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// h# q iy tcl t pau h#, 8000 samples (0.5 s).
const PHN: &str = "0 2400 h#\n2400 3000 q\n3000 4000 iy\n4000 4800 tcl\n4800 5600 t\n5600 6400 pau\n6400 8000 h#\n";

/// TRAIN (mixed case: FCJF0 upper case, mabc0 lower case with a RIFF file), TEST with one dev
/// speaker (FAKS0), one core test speaker (MDAB0) and one in neither list (MZZZ9).
fn timit_tree(root: &Path) {
    for s in ["SA1", "SI1027", "SX37"] {
        write(&root.join(format!("TRAIN/DR1/FCJF0/{s}.WAV")), sphere(8000));
        write(&root.join(format!("TRAIN/DR1/FCJF0/{s}.PHN")), PHN);
        write(
            &root.join(format!("TRAIN/DR1/FCJF0/{s}.TXT")),
            "0 8000 Tea.\n",
        );
    }
    wav(&root.join("TRAIN/dr2/mabc0/si5.wav"), 16000, 8000);
    write(&root.join("TRAIN/dr2/mabc0/si5.phn"), PHN);
    for spk in ["FAKS0", "MDAB0", "MZZZ9"] {
        write(
            &root.join(format!("TEST/DR3/{spk}/SI943.WAV")),
            sphere(8000),
        );
        write(&root.join(format!("TEST/DR3/{spk}/SI943.PHN")), PHN);
        write(&root.join(format!("TEST/DR3/{spk}/SA2.WAV")), sphere(8000));
        write(&root.join(format!("TEST/DR3/{spk}/SA2.PHN")), PHN);
    }
}

#[test]
fn timit_layout_to_train_dev_test() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("timit");
    timit_tree(&root);
    let out = tmp.path().join("data");
    let summary = import_timit(&root, &out, &TimitOptions::default()).unwrap();
    assert_eq!(
        summary
            .splits
            .iter()
            .map(|s| (s.name.as_str(), s.utterances, s.speakers))
            .collect::<Vec<_>>(),
        [("train", 3, 2), ("dev", 1, 1), ("test", 1, 1)]
    );
    assert!(
        summary
            .notes
            .iter()
            .any(|n| n.contains("dev: 1 of the standard 50")),
        "{:?}",
        summary.notes
    );

    let train = DataDir::read(out.join("train")).unwrap();
    assert_eq!(train.utt_ids(), ["fcjf0_si1027", "fcjf0_sx37", "mabc0_si5"]);
    assert_eq!(train.utt2spk["mabc0_si5"], "mabc0");
    let wav_path = PathBuf::from(&train.wav_scp["fcjf0_si1027"]);
    assert!(
        wav_path.is_absolute() && wav_path.ends_with("TRAIN/DR1/FCJF0/SI1027.WAV"),
        "{}",
        wav_path.display()
    );
    // 48 phones: q's time goes to the silence before it; pau + h# merge into one sil.
    assert_eq!(
        train.text.as_ref().unwrap()["fcjf0_si1027"],
        "sil iy cl t sil"
    );
    let ctm = read_ctm(out.join("train/phones.ctm")).unwrap();
    let u = &ctm["fcjf0_si1027"];
    let got: Vec<(&str, f64, f64)> = u
        .iter()
        .map(|s| (s.phone.as_str(), s.start, s.end))
        .collect();
    let want = [
        ("sil", 0.0, 0.188),
        ("iy", 0.188, 0.25),
        ("cl", 0.25, 0.3),
        ("t", 0.3, 0.35),
        ("sil", 0.35, 0.5),
    ];
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(
            g.0 == w.0 && (g.1 - w.1).abs() < 1e-9 && (g.2 - w.2).abs() < 1e-9,
            "{got:?}"
        );
    }
    assert_eq!(PhoneSet::load_dir(out.join("train")).unwrap().len(), 48);
    // The TEST speakers land in dev and test by the standard lists; MZZZ9 nowhere; no SA.
    assert_eq!(
        DataDir::read(out.join("dev")).unwrap().utt_ids(),
        ["faks0_si943"]
    );
    assert_eq!(
        DataDir::read(out.join("test")).unwrap().utt_ids(),
        ["mdab0_si943"]
    );
    // The phone times label the frames of a 0.5 s utterance: 1 + (8000 - 400) / 160 = 48 frames.
    let set = PhoneSet::load_dir(out.join("train")).unwrap();
    let times = read_phone_times(out.join("train/phones.ctm"), &set).unwrap();
    let frames = FrameLabeler::new(&set, FrameGeometry::kaldi())
        .states(&times["mabc0_si5"], 48)
        .unwrap();
    assert_eq!(frames.len(), 48);
}

#[test]
fn timit_fold_choices_and_sa() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("timit");
    timit_tree(&root);
    let out39 = tmp.path().join("d39");
    import_timit(
        &root,
        &out39,
        &TimitOptions {
            phones: TimitPhones::P39,
            include_sa: false,
        },
    )
    .unwrap();
    let train = DataDir::read(out39.join("train")).unwrap();
    assert_eq!(
        train.text.as_ref().unwrap()["fcjf0_si1027"],
        "sil iy sil t sil"
    );
    assert_eq!(PhoneSet::load_dir(out39.join("train")).unwrap().len(), 39);
    let out61 = tmp.path().join("d61");
    import_timit(
        &root,
        &out61,
        &TimitOptions {
            phones: TimitPhones::P61,
            include_sa: true,
        },
    )
    .unwrap();
    let train = DataDir::read(out61.join("train")).unwrap();
    assert!(train.utt2spk.contains_key("fcjf0_sa1"));
    assert_eq!(
        train.text.as_ref().unwrap()["fcjf0_si1027"],
        "h# q iy tcl t pau h#"
    );
}

#[test]
fn timit_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    // Not a TIMIT tree.
    let e = import_timit(tmp.path(), &tmp.path().join("o"), &TimitOptions::default()).unwrap_err();
    assert!(e.to_string().contains("no TRAIN and TEST"), "{e}");
    // Audio that is neither SPHERE nor WAV.
    let root = tmp.path().join("t1");
    timit_tree(&root);
    write(
        &root.join("TRAIN/DR1/FCJF0/SX37.WAV"),
        b"garbage audio bytes".repeat(10),
    );
    let e = import_timit(&root, &tmp.path().join("o1"), &TimitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("SX37.WAV") && e.contains("neither"), "{e}");
    // A SPHERE header that claims an absurd size.
    let mut bad = sphere(10);
    bad[8..15].copy_from_slice(b"9999999");
    write(&root.join("TRAIN/DR1/FCJF0/SX37.WAV"), bad);
    let e = import_timit(&root, &tmp.path().join("o2"), &TimitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("SX37.WAV") && e.contains("header size"), "{e}");
    // A .PHN without audio; a .PHN with an unknown phone (file and line).
    write(&root.join("TRAIN/DR1/FCJF0/SX37.WAV"), sphere(8000));
    std::fs::remove_file(root.join("TRAIN/DR1/FCJF0/SI1027.WAV")).unwrap();
    let e = import_timit(&root, &tmp.path().join("o3"), &TimitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("SI1027.PHN") && e.contains("no audio"), "{e}");
    write(&root.join("TRAIN/DR1/FCJF0/SI1027.WAV"), sphere(8000));
    write(
        &root.join("TRAIN/DR1/FCJF0/SI1027.PHN"),
        "0 2400 h#\n2400 3000 zz\n",
    );
    let e = import_timit(&root, &tmp.path().join("o4"), &TimitOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("SI1027.PHN:2") && e.contains("zz"), "{e}");
}

#[test]
fn timit_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("timit");
    timit_tree(&root);
    let out = tmp.path().join("data");
    let o = Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .args(["import", "timit", "--phones", "39"])
        .arg(&root)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("train: 3 utterances, 2 speakers"),
        "{stdout}"
    );
    for f in [
        "wav.scp",
        "text",
        "utt2spk",
        "spk2utt",
        "phones.ctm",
        "phones.txt",
        "phone_classes.txt",
    ] {
        assert!(out.join("test").join(f).is_file(), "{f}");
    }
    let o = Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .args(["import", "timit", "--phones", "40"])
        .arg(&root)
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .args(["import", "timit"])
        .arg(tmp.path().join("nowhere"))
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere"));
}

// ----------------------------------------------------------------------------------------------
// FSDD

fn fsdd_tree(root: &Path) {
    for (digit, speaker, index) in [
        (0, "jackson", 0),
        (7, "jackson", 32),
        (1, "theo", 3),
        (2, "yweweler", 10),
        (9, "george", 5),
        (3, "lucas", 1),
    ] {
        wav(
            &root.join(format!("recordings/{digit}_{speaker}_{index}.wav")),
            8000,
            800,
        );
    }
    write(&root.join("README.md"), "FSDD");
}

#[test]
fn fsdd_speaker_disjoint_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fsdd");
    fsdd_tree(&root);
    let out = tmp.path().join("data");
    let summary = import_fsdd(&root, &out, &FsddSplit::default()).unwrap();
    assert_eq!(summary.splits.len(), 3);
    let train = DataDir::read(out.join("train")).unwrap();
    let dev = DataDir::read(out.join("dev")).unwrap();
    let test = DataDir::read(out.join("test")).unwrap();
    assert_eq!(
        train.utt_ids(),
        ["george_9_5", "jackson_0_0", "jackson_7_32", "lucas_3_1"]
    );
    assert_eq!(dev.utt_ids(), ["yweweler_2_10"]);
    assert_eq!(test.utt_ids(), ["theo_1_3"]);
    assert_eq!(train.text.as_ref().unwrap()["jackson_7_32"], "seven");
    assert_eq!(test.text.as_ref().unwrap()["theo_1_3"], "one");
    assert!(PathBuf::from(&train.wav_scp["jackson_7_32"]).ends_with("recordings/7_jackson_32.wav"));
    assert!(!out.join("train/phones.ctm").exists());
    // Speakers never cross splits.
    for (a, b) in [(&train, &dev), (&train, &test), (&dev, &test)] {
        assert!(a.spk2utt().keys().all(|s| !b.spk2utt().contains_key(s)));
    }
    // The official split: indices 0-4 are test.
    let out2 = tmp.path().join("official");
    import_fsdd(&root.join("recordings"), &out2, &FsddSplit::Official).unwrap();
    assert_eq!(
        DataDir::read(out2.join("test")).unwrap().utt_ids(),
        ["jackson_0_0", "lucas_3_1", "theo_1_3"]
    );
    assert!(!out2.join("dev").exists());
}

#[test]
fn fsdd_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("fsdd");
    fsdd_tree(&root);
    let split = FsddSplit::Speakers {
        dev: vec!["nobody".into()],
        test: vec!["theo".into()],
    };
    assert!(import_fsdd(&root, &tmp.path().join("o"), &split)
        .unwrap_err()
        .to_string()
        .contains("nobody"));
    let split = FsddSplit::Speakers {
        dev: vec!["theo".into()],
        test: vec!["theo".into()],
    };
    assert!(import_fsdd(&root, &tmp.path().join("o"), &split)
        .unwrap_err()
        .to_string()
        .contains("both"));
    wav(&root.join("recordings/x_jackson_1.wav"), 8000, 10);
    let e = import_fsdd(&root, &tmp.path().join("o"), &FsddSplit::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("x_jackson_1.wav"), "{e}");
}

// ----------------------------------------------------------------------------------------------
// Kaldi

fn kaldi_dir(dir: &Path) {
    write(
        &dir.join("wav.scp"),
        "a1 /x/a1.wav\na2 /x/a2.wav\nb1 /x/b1.wav\n",
    );
    write(&dir.join("utt2spk"), "a1 a\na2 a\nb1 b\n");
    write(&dir.join("text"), "a1 hello\na2 world\nb1 again\n");
    write(&dir.join("utt2num_frames"), "a1 5\na2 4\nb1 3\n");
}

#[test]
fn kaldi_alignments_checked_against_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    kaldi_dir(&src);
    let ali = write(&tmp.path().join("ali.txt"), "a1 0 0 3 3 12\nb1 7 7 7\n");
    let out = tmp.path().join("out");
    let r = import_kaldi(&src, &ali, &out, &KaldiOptions::default()).unwrap();
    assert_eq!(r.num_senones, 13);
    assert_eq!(r.unaligned, ["a2"]);
    assert!(r.frame_check.as_ref().unwrap().is_ok());
    let data = DataDir::read(&out).unwrap();
    assert_eq!(data.utt_ids(), ["a1", "b1"]);
    assert_eq!(data.text.as_ref().unwrap()["b1"], "again");
    let back = read_alignments(out.join("ali.txt")).unwrap();
    assert_eq!(back["a1"], [0, 0, 3, 3, 12]);
    assert_eq!(read_map(out.join("spk2utt")).unwrap()["a"], "a1");

    // An id beyond --num-senones names the utterance and frame.
    let e = import_kaldi(
        &src,
        &ali,
        &out,
        &KaldiOptions {
            num_senones: Some(12),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("a1") && e.contains("frame 4") && e.contains("12 senones"),
        "{e}"
    );
    // An utterance the data directory lacks.
    let ali2 = write(&tmp.path().join("ali2.txt"), "a1 0 0 3 3 12\nzz 1 1 1\n");
    let e = import_kaldi(&src, &ali2, &out, &KaldiOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("zz") && e.contains("not in"), "{e}");
    // Lengths off by more than the tolerance (utt2num_frames says 3 for b1).
    let ali3 = write(&tmp.path().join("ali3.txt"), "b1 1 1 1 1 1 1 1\n");
    let e = import_kaldi(&src, &ali3, &out, &KaldiOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("b1: labels cover 7 frames, features have 3"),
        "{e}"
    );
    assert!(import_kaldi(
        &src,
        &ali3,
        &out,
        &KaldiOptions {
            tolerance: 4,
            ..Default::default()
        }
    )
    .is_ok());
    // A malformed alignment names its line.
    let ali4 = write(&tmp.path().join("ali4.txt"), "a1 0 0\nb1 7 x 7\n");
    let e = import_kaldi(&src, &ali4, &out, &KaldiOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("ali4.txt:2"), "{e}");
}

#[test]
fn kaldi_binary_archives_read_like_text_and_gzip_is_refused_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let ali = BTreeMap::from([
        ("a1".to_string(), vec![0u32, 0, 3, 3, 12]),
        ("b1".to_string(), vec![7, 7, 70000]),
    ]);
    let bin = tmp.path().join("ali.ark");
    write_binary_alignments(&bin, &ali).unwrap();
    // The layout of Kaldi's WriteIntegerVector: key, ' ', \0B, \4, int32 count, int32s.
    let bytes = std::fs::read(&bin).unwrap();
    assert_eq!(&bytes[..12], b"a1 \0B\x04\x05\0\0\0\0\0");
    assert_eq!(bytes.len(), 2 * 3 + 2 * 7 + 4 * 8);
    assert_eq!(read_alignments(&bin).unwrap(), ali);

    // Truncated, or a count bigger than the file: refused, naming the utterance.
    let cut = write(&tmp.path().join("cut.ark"), &bytes[..bytes.len() - 2]);
    let e = read_alignments(&cut).unwrap_err().to_string();
    assert!(
        e.contains("cut.ark") && e.contains("utterance b1: 3 frames claimed"),
        "{e}"
    );
    let mut huge = bytes.clone();
    huge[6..10].copy_from_slice(&i32::MAX.to_le_bytes());
    let huge = write(&tmp.path().join("huge.ark"), &huge);
    let e = read_alignments(&huge).unwrap_err().to_string();
    assert!(e.contains("utterance a1: 2147483647 frames claimed"), "{e}");

    let gz = write(&tmp.path().join("ali.1.gz"), [0x1f, 0x8b, 8, 0, 0, 0]);
    let e = read_alignments(&gz).unwrap_err().to_string();
    assert!(
        e.contains("transition ids") && e.contains("ali-to-pdf"),
        "{e}"
    );
}

/// A Kaldi data directory of 12 speakers x 2 utterances, pdf-id and per-frame phone
/// alignments, and a position-dependent data/lang/phones.txt.
fn kaldi_corpus(dir: &Path) -> (PathBuf, PathBuf, PathBuf, PathBuf) {
    let data = dir.join("data/train");
    let (mut wav, mut spk, mut pdf, mut ph) =
        (String::new(), String::new(), String::new(), String::new());
    for s in 0..12 {
        for u in 0..2 {
            let utt = format!("spk{s:02}-u{u}");
            wav += &format!("{utt} /x/{utt}.wav\n");
            spk += &format!("{utt} spk{s:02}\n");
            // sil (pdf 0) | a_B (pdf 1) | a_E (pdf 2) | b_S (pdf 3) | sil
            pdf += &format!("{utt} 0 1 1 2 3 3 0\n");
            ph += &format!("{utt} 1 2 2 3 4 4 1\n");
        }
    }
    write(&data.join("wav.scp"), wav);
    write(&data.join("utt2spk"), spk);
    let lang = dir.join("data/lang");
    let phones = write(
        &lang.join("phones.txt"),
        "<eps> 0\nSIL 1\na_B 2\na_E 3\nb_S 4\n#0 5\n",
    );
    write(&lang.join("phones/silence.txt"), "SIL\n");
    let pdf = write(&dir.join("pdf_ali.txt"), pdf);
    let ph = write(&dir.join("phone_ali.txt"), ph);
    (data, pdf, ph, phones)
}

#[test]
fn kaldi_senone_table_from_phone_alignments_and_a_speaker_holdout() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, pdf, ph, phones) = kaldi_corpus(tmp.path());
    let out = tmp.path().join("out");
    let opts = KaldiOptions {
        num_senones: Some(5),
        phones: Some((phones.clone(), ph.clone())),
        holdout: Some(Holdout {
            percent: 10.0,
            by: HoldoutBy::Speaker,
        }),
        ..Default::default()
    };
    let r = import_kaldi(&data, &pdf, &out, &opts).unwrap();
    assert_eq!(r.num_senones, 5);
    let spk_of = |split: &str| -> Vec<String> {
        DataDir::read(out.join(split))
            .unwrap()
            .spk2utt()
            .into_keys()
            .collect()
    };
    let (train, dev, test) = (spk_of("train"), spk_of("dev"), spk_of("test"));
    // 10% of 12 speakers, rounded up: 2 each; disjoint; all 24 utterances somewhere.
    assert_eq!((train.len(), dev.len(), test.len()), (8, 2, 2));
    assert!(dev.iter().chain(&test).all(|s| !train.contains(s)));
    assert!(dev.iter().all(|s| !test.contains(s)));
    for split in ["train", "dev", "test"] {
        let a = read_alignments(out.join(split).join("ali.txt")).unwrap();
        let d = DataDir::read(out.join(split)).unwrap();
        assert_eq!(
            a.keys().cloned().collect::<Vec<_>>(),
            d.utt_ids(),
            "{split}"
        );
    }
    // The same split again: stable.
    let again = tmp.path().join("again");
    import_kaldi(&data, &pdf, &again, &opts).unwrap();
    assert_eq!(
        DataDir::read(again.join("test")).unwrap().utt_ids(),
        DataDir::read(out.join("test")).unwrap().utt_ids()
    );

    // lang/: phones without position suffixes, SIL as silence, each pdf's phone, train counts.
    let set = PhoneSet::load_dir(out.join("lang")).unwrap();
    assert_eq!(set.phones(), ["SIL", "a", "b"]);
    assert_eq!(set.silence_ids(), [0]);
    let senones = read_senones(out.join("lang/senones.txt")).unwrap();
    let got: Vec<(u32, f64)> = senones.iter().map(|s| (s.phone, s.count)).collect();
    assert_eq!(got, [(0, 32.0), (1, 32.0), (1, 16.0), (2, 32.0), (0, 0.0)]);

    // Phone alignments of other lengths, or an utterance without them, are refused.
    let short = write(&tmp.path().join("short.txt"), "spk00-u0 1 2\n");
    let e = import_kaldi(
        &data,
        &pdf,
        &tmp.path().join("x"),
        &KaldiOptions {
            phones: Some((phones, short)),
            ..Default::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("short.txt") && e.contains("spk00-u0 has 2 frames of phones"),
        "{e}"
    );

    // Too few speakers to hold two out: says what to do instead.
    let few = tmp.path().join("few");
    kaldi_dir(&few);
    let ali = write(&tmp.path().join("few.txt"), "a1 0 0 3 3 12\nb1 7 7 7\n");
    let e = import_kaldi(
        &few,
        &ali,
        &tmp.path().join("y"),
        &opts_holdout(HoldoutBy::Speaker),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("2 aligned speakers") && e.contains("--holdout-by utterance"),
        "{e}"
    );
}

fn opts_holdout(by: HoldoutBy) -> KaldiOptions {
    KaldiOptions {
        holdout: Some(Holdout { percent: 10.0, by }),
        ..Default::default()
    }
}

#[test]
fn kaldi_import_through_the_binary_with_an_utterance_holdout() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, pdf, ph, phones) = kaldi_corpus(tmp.path());
    let out = tmp.path().join("out");
    let bin = env!("CARGO_BIN_EXE_amdistill");
    let o = Command::new(bin)
        .args(["import", "kaldi"])
        .args([&data, &pdf, &out])
        .arg("--phones")
        .arg(&phones)
        .arg("--phone-ali")
        .arg(&ph)
        .args(["--holdout", "5", "--holdout-by", "utterance"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("senones: 4"), "{stdout}");
    let n = |s: &str| DataDir::read(out.join(s)).unwrap().utt_ids().len();
    assert_eq!((n("train"), n("dev"), n("test")), (20, 2, 2));
    // The senone table makes a trainable model directory: scoring reads it back.
    assert_eq!(read_senones(out.join("lang/senones.txt")).unwrap().len(), 4);

    // --phones without --phone-ali is a usage error.
    let o = Command::new(bin)
        .args(["import", "kaldi"])
        .args([&data, &pdf, &out])
        .arg("--phones")
        .arg(&phones)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--phone-ali"));
}

// ----------------------------------------------------------------------------------------------
// Label directories

fn arctic_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/arctic")
        .join(name)
}

#[test]
fn hts_label_directory_arctic() {
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("lab");
    std::fs::create_dir_all(&labels).unwrap();
    std::fs::copy(
        arctic_fixture("arctic_a0009_phone.lab"),
        labels.join("arctic_a0009_phone.lab"),
    )
    .unwrap();
    std::fs::copy(
        arctic_fixture("arctic_a0009_state.lab"),
        labels.join("arctic_a0009_state.lab"),
    )
    .unwrap();
    // Audio is only located, not decoded: a short stand-in wav will do.
    wav(&tmp.path().join("wav/arctic_a0009.wav"), 16000, 160);
    let out = tmp.path().join("data/slt");
    let opts = LabelImportOptions {
        audio_dir: Some(tmp.path().join("wav")),
        suffix: Some("_phone".into()),
        speaker: Some("slt".into()),
        ..Default::default()
    };
    let summary = import_labels(&labels, &out, &opts).unwrap();
    assert_eq!(summary.splits[0].utterances, 1);
    assert_eq!(summary.splits[0].phone_segments, 40);
    let data = DataDir::read(&out).unwrap();
    assert_eq!(data.utt_ids(), ["slt_arctic_a0009"]);
    assert_eq!(data.utt2spk["slt_arctic_a0009"], "slt");
    assert!(data.text.is_none());
    let set = PhoneSet::load_dir(&out).unwrap();
    assert_eq!(set.name(), "arpabet");
    let ctm = read_phone_times(out.join("phones.ctm"), &set).unwrap();
    let u = &ctm["slt_arctic_a0009"];
    assert_eq!(u.len(), 40);
    assert_eq!(u[25].phone, "ah"); // festival's ax
    assert!((u.last().unwrap().end - 3.075).abs() < 1e-9);
    // With the state-level file instead: the same phones.
    let out2 = tmp.path().join("data/slt_states");
    let opts2 = LabelImportOptions {
        suffix: Some("_state".into()),
        ..opts.clone()
    };
    import_labels(&labels, &out2, &opts2).unwrap();
    assert_eq!(
        read_ctm(out2.join("phones.ctm")).unwrap()["slt_arctic_a0009"],
        read_ctm(out.join("phones.ctm")).unwrap()["slt_arctic_a0009"]
    );
    // Without audio: an error naming the label file.
    let opts3 = LabelImportOptions {
        audio_dir: None,
        ..opts.clone()
    };
    let e = import_labels(&labels, &tmp.path().join("x"), &opts3)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("arctic_a0009_phone.lab") && e.contains("no audio"),
        "{e}"
    );
}

fn textgrid(words: &[(f64, f64, &str)], phones: &[(f64, f64, &str)]) -> String {
    let mut s = String::from("File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\nxmin = 0\nxmax = 1\ntiers? <exists>\nsize = 2\nitem []:\n");
    for (i, (name, ivs)) in [("words", words), ("phones", phones)].iter().enumerate() {
        s += &format!("    item [{}]:\n        class = \"IntervalTier\"\n        name = \"{name}\"\n        xmin = 0\n        xmax = 1\n        intervals: size = {}\n", i + 1, ivs.len());
        for (j, (a, b, t)) in ivs.iter().enumerate() {
            s += &format!("        intervals [{}]:\n            xmin = {a}\n            xmax = {b}\n            text = \"{t}\"\n", j + 1);
        }
    }
    s
}

#[test]
fn textgrid_directory_in_mfa_layout_through_the_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let aligned = tmp.path().join("aligned");
    let corpus = tmp.path().join("corpus");
    let words = [
        (0.0, 0.2, ""),
        (0.2, 0.6, "hello"),
        (0.6, 0.9, "world"),
        (0.9, 1.0, ""),
    ];
    let phones = [
        (0.0, 0.2, ""),
        (0.2, 0.3, "HH"),
        (0.3, 0.4, "AH0"),
        (0.4, 0.5, "L"),
        (0.5, 0.6, "OW1"),
        (0.6, 0.7, "W"),
        (0.7, 0.8, "ER1"),
        (0.8, 0.85, "L"),
        (0.85, 0.9, "D"),
        (0.9, 1.0, ""),
    ];
    for (spk, utt) in [("anna", "anna_001"), ("bob", "take2")] {
        write(
            &aligned.join(format!("{spk}/{utt}.TextGrid")),
            textgrid(&words, &phones),
        );
        wav(&corpus.join(format!("{spk}/{utt}.wav")), 16000, 16000);
    }
    let out = tmp.path().join("data");
    let o = Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .args(["import", "labels", "--format", "textgrid", "--audio-dir"])
        .arg(&corpus)
        .arg(&aligned)
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = DataDir::read(&out).unwrap();
    // Speaker from the subdirectory; prefixed only where the name lacks it.
    assert_eq!(data.utt_ids(), ["anna_001", "bob_take2"]);
    assert_eq!(data.utt2spk["bob_take2"], "bob");
    assert_eq!(data.text.as_ref().unwrap()["anna_001"], "hello world");
    let ctm = read_ctm(out.join("phones.ctm")).unwrap();
    let names: Vec<&str> = ctm["bob_take2"].iter().map(|s| s.phone.as_str()).collect();
    assert_eq!(
        names,
        ["sil", "hh", "ah", "l", "ow", "w", "er", "l", "d", "sil"]
    );

    // An unknown phone: an error naming the TextGrid and the line of the interval.
    let bad = textgrid(&words, &phones).replacen("\"W\"", "\"W@\"", 1);
    let line = bad.lines().position(|l| l.contains("W@")).unwrap() + 1;
    write(&aligned.join("bob/take2.TextGrid"), &bad);
    let opts = LabelImportOptions {
        format: LabelFormat::TextGrid,
        audio_dir: Some(corpus.clone()),
        ..Default::default()
    };
    let e = import_labels(&aligned, &tmp.path().join("d2"), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("take2.TextGrid:{line}")) && e.contains("W@"),
        "{e}"
    );
    // The same labels in TIMIT's 61 phones (stress stripped); empty intervals become `h#`.
    let opts = LabelImportOptions {
        phone_set: PhoneSet::timit61(),
        ..opts
    };
    write(
        &aligned.join("bob/take2.TextGrid"),
        textgrid(&words, &phones),
    );
    import_labels(&aligned, &tmp.path().join("d3"), &opts).unwrap();
    let ctm: BTreeMap<_, _> = read_ctm(tmp.path().join("d3/phones.ctm")).unwrap();
    assert_eq!(ctm["anna_001"][0].phone, "h#");
}
