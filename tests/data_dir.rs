//! Kaldi data directories: reading and writing, `validate-data-dir` (every kind of problem, with
//! its file and line) and `--fix`. Each test builds its directory in a fresh temporary folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use amdistill::corpus::data_dir::read_segments;
use amdistill::corpus::table::{read_map, read_table, scan_table};
use amdistill::corpus::validate::{fix_data_dir, validate_data_dir, ValidateOptions};
use amdistill::corpus::{DataDir, Segment};

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) {
    std::fs::write(dir.join(name), content).unwrap();
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// A non-empty stand-in audio file (validation only checks that it exists).
fn audio(root: &Path, name: &str) -> String {
    let wav = root.join("wav");
    std::fs::create_dir_all(&wav).unwrap();
    let path = wav.join(name);
    std::fs::write(&path, b"RIFF....WAVE").unwrap();
    path.display().to_string()
}

/// A valid directory `root/data`: utterances a1 a2 (speaker a) and b1 (speaker b).
fn good_dir(root: &Path) -> PathBuf {
    let dir = root.join("data");
    std::fs::create_dir_all(&dir).unwrap();
    let (a1, a2, b1) = (
        audio(root, "a1.wav"),
        audio(root, "a2.wav"),
        audio(root, "b1.wav"),
    );
    write(&dir, "wav.scp", format!("a1 {a1}\na2 {a2}\nb1 {b1}\n"));
    write(&dir, "text", "a1 HELLO WORLD\na2 GOOD MORNING\nb1 YES\n");
    write(&dir, "utt2spk", "a1 a\na2 a\nb1 b\n");
    write(&dir, "spk2utt", "a a1 a2\nb b1\n");
    dir
}

/// Problems as `NAME:LINE: message` with the file name only, so assertions do not depend on
/// the temporary path.
fn problems(dir: &Path, opts: &ValidateOptions) -> Vec<String> {
    validate_data_dir(dir, opts)
        .unwrap()
        .iter()
        .map(|p| {
            let name = p.file.file_name().unwrap().to_string_lossy();
            if p.line > 0 {
                format!("{name}:{}: {}", p.line, p.msg)
            } else {
                format!("{name}: {}", p.msg)
            }
        })
        .collect()
}

/// Asserts that one problem starts with `at` (`NAME:LINE:`) and contains `what`.
#[track_caller]
fn assert_has(problems: &[String], at: &str, what: &str) {
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with(at) && p.contains(what)),
        "no problem '{at} ... {what} ...' in:\n{}",
        problems.join("\n")
    );
}

fn opts() -> ValidateOptions {
    ValidateOptions::default()
}

fn amdistill(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run amdistill")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

// ---------------------------------------------------------------------------------------------
// Tables and DataDir

#[test]
fn tables_parse_keys_values_and_report_bad_lines() {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "t", b"a 1 2\n\nb\tx  y \r\n c\nd\xff\n");
    let scan = scan_table(tmp.path().join("t")).unwrap();
    let got: Vec<(&str, &str, usize)> = scan
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str(), e.line))
        .collect();
    assert_eq!(got, vec![("a", "1 2", 1), ("b", "x  y", 3)]);
    assert_eq!(scan.bad_lines.len(), 2);
    assert_eq!(scan.bad_lines[0].0, 4);
    assert!(scan.bad_lines[0].1.contains("whitespace"));
    assert_eq!(scan.bad_lines[1], (5, "not valid UTF-8".to_string()));
    // The strict readers stop at the first bad line, naming it.
    let err = read_table(tmp.path().join("t")).unwrap_err().to_string();
    assert!(
        err.ends_with(":4: line starts with whitespace (empty key)"),
        "{err}"
    );

    write(tmp.path(), "dup", "a 1\nb 2\na 3\n");
    let err = read_map(tmp.path().join("dup")).unwrap_err().to_string();
    assert!(
        err.contains("dup:3: duplicate key 'a' (first on line 1)"),
        "{err}"
    );
}

#[test]
fn segments_follow_kaldi_time_rules() {
    let ok = Segment::parse("rec 1.5 2.25").unwrap();
    assert_eq!(
        ok,
        Segment {
            recording: "rec".into(),
            start: 1.5,
            end: 2.25
        }
    );
    assert_eq!(Segment::parse("rec 0 -1").unwrap().end, -1.0);
    for (bad, why) in [
        ("rec 2 1", "not after start"),
        ("rec 1 1", "not after start"),
        ("rec -0.5 1", "negative start"),
        ("rec 0 -2", "not after start"),
        ("rec x 1", "bad start time 'x'"),
        ("rec 0 inf", "bad end time 'inf'"),
        ("rec 0", "got 3 fields"),
        ("rec 0 1 2", "got 5 fields"),
    ] {
        let err = Segment::parse(bad).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), "segments", "u1 r 0 1\nu2 r 1 0.5\n");
    let err = read_segments(&tmp.path().join("segments"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("segments:2: end time 0.5 is not after start time 1"),
        "{err}"
    );
}

#[test]
fn data_dir_round_trips_and_resolves_audio() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    std::fs::create_dir(&dir).unwrap();
    write(&dir, "wav.scp", "r1 /audio/r1.wav\nr2 /audio/r2.wav\n");
    write(
        &dir,
        "segments",
        "s1 r1 0 1.25\ns2 r1 1.25 -1\ns3 r2 0.5 3\n",
    );
    write(&dir, "utt2spk", "s1 x\ns2 y\ns3 x\n");
    write(&dir, "text", "s1 A\ns2 B C\ns3\n");
    let dd = DataDir::read(&dir).unwrap();
    assert_eq!(dd.utt_ids(), vec!["s1", "s2", "s3"]);
    assert_eq!(dd.spk2utt()["x"], vec!["s1", "s3"]);
    let audio = dd.utt_audio().unwrap();
    assert_eq!(audio[1].path, PathBuf::from("/audio/r1.wav"));
    assert_eq!(audio[1].segment, Some((1.25, -1.0)));

    let out = tmp.path().join("out");
    dd.write(&out).unwrap();
    assert_eq!(
        read(&out, "segments"),
        "s1 r1 0 1.25\ns2 r1 1.25 -1\ns3 r2 0.5 3\n"
    );
    assert_eq!(read(&out, "spk2utt"), "x s1 s3\ny s2\n");
    assert_eq!(DataDir::read(&out).unwrap(), dd);
    assert!(validate_data_dir(
        &out,
        &ValidateOptions {
            check_audio: false,
            ..opts()
        }
    )
    .unwrap()
    .is_empty());

    let mut kept = dd.clone();
    kept.retain_utts(&BTreeSet::from(["s3".to_string()]));
    assert_eq!(kept.utt_ids(), vec!["s3"]);
    assert_eq!(kept.wav_scp.keys().collect::<Vec<_>>(), vec!["r2"]);

    let mut broken = dd.clone();
    broken.wav_scp.remove("r2");
    let err = broken.utt_audio().unwrap_err().to_string();
    assert!(
        err.contains("s3") && err.contains("'r2' missing from wav.scp"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------------
// Validation, one kind of problem at a time

#[test]
fn valid_directory_has_no_problems() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    assert_eq!(problems(&dir, &opts()), Vec::<String>::new());
}

#[test]
fn unsorted_and_duplicate_keys_are_reported_on_their_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    let wav = read(&dir, "wav.scp");
    let lines: Vec<&str> = wav.lines().collect();
    write(
        &dir,
        "wav.scp",
        format!("{}\n{}\n{}\n", lines[1], lines[0], lines[2]),
    );
    write(&dir, "text", "a1 HELLO\na2 GOOD\na2 AGAIN\nb1 YES\nb1 NO\n");
    // Byte order, not dictionary order: upper case sorts before lower case.
    write(&dir, "utt2spk", "a1 a\na2 a\nb1 b\nB9 b\n");
    let p = problems(&dir, &opts());
    assert_has(
        &p,
        "wav.scp:2:",
        "key 'a1' is out of order (after 'a2' on line 1)",
    );
    assert_has(&p, "text:3:", "duplicate key 'a2' (first on line 2)");
    assert_has(&p, "text:5:", "duplicate key 'b1' (first on line 4)");
    assert_has(&p, "utt2spk:4:", "key 'B9' is out of order");
    // Every problem is reported, not only the first; B9 is also missing elsewhere.
    assert_has(&p, "utt2spk:4:", "utterance 'B9' is missing from wav.scp");
    assert_has(&p, "utt2spk:4:", "utterance 'B9' is missing from text");
    assert!(p.len() >= 6, "{p:#?}");
}

#[test]
fn missing_empty_and_piped_audio_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    let a1 = audio(tmp.path(), "a1.wav");
    let empty = tmp.path().join("wav/empty.wav");
    std::fs::write(&empty, b"").unwrap();
    write(
        &dir,
        "wav.scp",
        format!(
            "a1 {a1}\na2 sph2pipe -f wav /x/a2.sph |\nb1 {}/nope.wav\nc1 {}\nc2 -\n",
            tmp.path().display(),
            empty.display()
        ),
    );
    write(&dir, "text", "a1 A\na2 B\nb1 C\nc1 D\nc2 E\n");
    write(&dir, "utt2spk", "a1 a\na2 a\nb1 b\nc1 c\nc2 c\n");
    write(&dir, "spk2utt", "a a1 a2\nb b1\nc c1 c2\n");
    let p = problems(&dir, &opts());
    assert_has(&p, "wav.scp:2:", "'a2': pipe commands are not supported");
    assert_has(
        &p,
        "wav.scp:3:",
        "nope.wav' not found (relative paths are resolved against the current directory)",
    );
    assert_has(&p, "wav.scp:4:", "is empty");
    assert_has(&p, "wav.scp:5:", "stdin");
    assert_eq!(p.len(), 4, "{p:#?}");
    // --no-wav-check skips the file system, not the format checks.
    let p = problems(
        &dir,
        &ValidateOptions {
            check_audio: false,
            ..opts()
        },
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    assert_has(&p, "wav.scp:2:", "pipe");
    assert_has(&p, "wav.scp:5:", "stdin");
}

#[test]
fn utterances_missing_from_a_file_are_reported_on_both_sides() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    write(&dir, "text", "a1 HELLO\nb1 YES\nc9 EXTRA\n");
    write(&dir, "feats.scp", "a1 feats.ark:10\na2 feats.ark:200\n");
    write(&dir, "utt2num_frames", "a1 100\na2 1.5\nb1 7\n");
    let p = problems(&dir, &opts());
    assert_has(&p, "utt2spk:2:", "utterance 'a2' is missing from text");
    assert_has(&p, "text:3:", "utterance 'c9' is not in utt2spk");
    assert_has(&p, "utt2spk:3:", "utterance 'b1' is missing from feats.scp");
    assert_has(&p, "utt2num_frames:2:", "'a2': bad frame count '1.5'");
    assert_eq!(p.len(), 4, "{p:#?}");
}

#[test]
fn spk2utt_must_agree_with_utt2spk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    write(&dir, "spk2utt", "a a2 a1 zz\nb a1 b1 b1\nc\n");
    let p = problems(&dir, &opts());
    assert_has(&p, "spk2utt:1:", "utterances of speaker 'a' are not sorted");
    assert_has(&p, "spk2utt:1:", "utterance 'zz' is not in utt2spk");
    assert_has(
        &p,
        "spk2utt:2:",
        "utterance 'a1' is also listed under speaker 'a' (line 1)",
    );
    assert_has(&p, "spk2utt:2:", "utterance 'b1' is listed twice");
    assert_has(&p, "spk2utt:3:", "speaker has no utterances");
    assert_eq!(p.len(), 5, "{p:#?}");

    write(&dir, "spk2utt", "a a1\nb a2 b1\n");
    let p = problems(&dir, &opts());
    assert_has(
        &p,
        "spk2utt:2:",
        "utterance 'a2' is listed under speaker 'b' but utt2spk gives 'a' (line 2)",
    );
    assert_eq!(p.len(), 1, "{p:#?}");

    write(&dir, "spk2utt", "a a1 a2\n");
    let p = problems(&dir, &opts());
    assert_eq!(
        p,
        vec!["utt2spk:3: utterance 'b1' (speaker 'b') is missing from spk2utt"]
    );
}

#[test]
fn segments_are_checked_against_wav_scp() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let (r1, r2, r3) = (
        audio(tmp.path(), "r1.wav"),
        audio(tmp.path(), "r2.wav"),
        audio(tmp.path(), "r3.wav"),
    );
    write(&dir, "wav.scp", format!("r1 {r1}\nr2 {r2}\nr3 {r3}\n"));
    write(
        &dir,
        "segments",
        "s1 r1 0 1.5\ns2 r1 1.5 -1\ns3 r9 0 1\ns4 r2 2 1\ns5 r2 x 3\ns6 r2 -1 3\ns7 r2 0\n",
    );
    write(
        &dir,
        "utt2spk",
        "s1 x\ns2 x\ns3 x\ns4 x\ns5 x\ns6 x\ns7 x\n",
    );
    write(&dir, "spk2utt", "x s1 s2 s3 s4 s5 s6 s7\n");
    let p = problems(
        &dir,
        &ValidateOptions {
            require_text: false,
            ..opts()
        },
    );
    assert_has(&p, "segments:3:", "recording 'r9' is not in wav.scp");
    assert_has(&p, "segments:4:", "end time 1 is not after start time 2");
    assert_has(&p, "segments:5:", "bad start time 'x'");
    assert_has(&p, "segments:6:", "negative start time -1");
    assert_has(&p, "segments:7:", "got 3 fields");
    assert_has(
        &p,
        "wav.scp:3:",
        "recording 'r3' is not used by any segment",
    );
    assert_eq!(p.len(), 6, "{p:#?}");
    // With segments, utterances are checked against segments, not wav.scp.
    assert!(
        !p.iter().any(|l| l.contains("missing from wav.scp")),
        "{p:#?}"
    );
}

#[test]
fn missing_and_empty_files_are_reported_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    std::fs::remove_file(dir.join("text")).unwrap();
    std::fs::remove_file(dir.join("spk2utt")).unwrap();
    write(&dir, "feats.scp", "");
    let p = problems(&dir, &opts());
    assert_eq!(
        p,
        vec![
            "spk2utt: missing (every data directory needs it)",
            "text: missing (every data directory needs it)",
            "feats.scp: empty file"
        ]
    );
    let p = problems(
        &dir,
        &ValidateOptions {
            require_text: false,
            ..opts()
        },
    );
    assert_eq!(p.len(), 2, "{p:#?}");
    // A text that exists is checked even when it is optional.
    write(&dir, "text", "a1 A\n");
    let p = problems(
        &dir,
        &ValidateOptions {
            require_text: false,
            ..opts()
        },
    );
    assert_has(&p, "utt2spk:2:", "utterance 'a2' is missing from text");

    let err = validate_data_dir(&tmp.path().join("nowhere"), &opts())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nowhere"), "{err}");
}

#[test]
fn malformed_lines_and_values_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    write(
        &dir,
        "utt2spk",
        b"a1 a\n a2 a\nb1\xfe b\nb1 b extra\n".as_slice(),
    );
    write(&dir, "spk2gender", "a m\nb x\n");
    let p = problems(&dir, &opts());
    assert_has(&p, "utt2spk:2:", "line starts with whitespace");
    assert_has(&p, "utt2spk:3:", "not valid UTF-8");
    assert_has(
        &p,
        "utt2spk:4:",
        "'b1': expected 'utt-id speaker-id', got 3 fields",
    );
    assert_has(&p, "spk2gender:2:", "bad gender 'x'");
}

#[test]
fn speaker_keyed_files_must_match_the_speakers() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    write(&dir, "cmvn.scp", "a cmvn.ark:5\nz cmvn.ark:90\n");
    let p = problems(&dir, &opts());
    assert_has(&p, "utt2spk:3:", "speaker 'b' has no entry in cmvn.scp");
    assert_has(&p, "cmvn.scp:2:", "speaker 'z' is not in utt2spk");
    assert_eq!(p.len(), 2, "{p:#?}");
}

// ---------------------------------------------------------------------------------------------
// Fixing

#[test]
fn fix_keeps_the_intersection_backs_up_and_validates_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    let (a1, a2, b1) = (
        audio(tmp.path(), "a1.wav"),
        audio(tmp.path(), "a2.wav"),
        audio(tmp.path(), "b1.wav"),
    );
    let c1 = audio(tmp.path(), "c1.wav");
    let broken_wav = format!(
        "b1 {b1}\na1 {a1}\na2 {a2}\nc1 {c1}\nd1 {}/gone.wav\ne1 cat x.wav |\n",
        tmp.path().display()
    );
    write(&dir, "wav.scp", &broken_wav);
    write(
        &dir,
        "text",
        "a1 HELLO\na1 DUPLICATE\na2 GOOD\nb1 YES\nd1 GONE\ne1 PIPE\nx1 ORPHAN\n",
    );
    write(&dir, "utt2spk", "a1 a\na2 a\nb1 b\nc1 c\nd1 d\ne1 e\n");
    write(&dir, "spk2utt", "a a1\nb b1 b2\n");
    let before = problems(&dir, &opts());
    assert!(before.len() > 8, "{before:#?}");

    let report = fix_data_dir(&dir, &opts()).unwrap();
    assert_eq!(report.utts_kept, 3);
    // c1 (no text), d1 (audio missing), e1 (pipe), x1 (only in text).
    assert_eq!(report.utts_dropped, 4);
    assert_eq!(report.drop_reasons["no valid entry in text"], 1);
    assert_eq!(report.drop_reasons["no valid entry in wav.scp"], 2);
    assert_eq!(report.drop_reasons["no valid entry in utt2spk"], 1);
    assert_eq!(report.recordings_dropped, 3);
    assert_eq!(report.speakers_dropped, 3);
    let dropped: Vec<(String, usize)> = report
        .dropped_lines
        .iter()
        .map(|p| {
            (
                p.file.file_name().unwrap().to_string_lossy().into_owned(),
                p.line,
            )
        })
        .collect();
    assert_eq!(
        dropped,
        vec![
            ("wav.scp".to_string(), 5),
            ("wav.scp".to_string(), 6),
            ("text".to_string(), 2)
        ]
    );

    assert_eq!(
        read(&dir, "wav.scp"),
        format!("a1 {a1}\na2 {a2}\nb1 {b1}\n")
    );
    assert_eq!(read(&dir, "text"), "a1 HELLO\na2 GOOD\nb1 YES\n");
    assert_eq!(read(&dir, "utt2spk"), "a1 a\na2 a\nb1 b\n");
    assert_eq!(read(&dir, "spk2utt"), "a a1 a2\nb b1\n");
    // Each changed file's previous version, byte for byte.
    assert_eq!(read(&report.backup_dir, "wav.scp"), broken_wav);
    assert_eq!(read(&report.backup_dir, "spk2utt"), "a a1\nb b1 b2\n");
    assert_eq!(report.changed.len(), 4);
    assert_eq!(problems(&dir, &opts()), Vec::<String>::new());
    // No temporaries left behind.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.contains(".tmp."), "{name}");
    }

    // A second fix has nothing to do and touches nothing.
    let again = fix_data_dir(&dir, &opts()).unwrap();
    assert!(again.changed.is_empty() && again.dropped_lines.is_empty());
    assert_eq!((again.utts_kept, again.utts_dropped), (3, 0));
    assert_eq!(read(&report.backup_dir, "wav.scp"), broken_wav);
}

#[test]
fn fix_with_segments_drops_unused_recordings_and_filters_optional_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    let (r1, r2) = (audio(tmp.path(), "r1.wav"), audio(tmp.path(), "r2.wav"));
    write(&dir, "wav.scp", format!("r1 {r1}\nr2 {r2}\n"));
    write(
        &dir,
        "segments",
        "s1 r1 0 1\ns2 r1 1 2\ns3 r2 3 2\ns4 r9 0 1\n",
    );
    write(&dir, "utt2spk", "s1 x\ns2 y\ns3 y\ns4 y\n");
    write(&dir, "text", "s1 A\ns2 B\ns3 C\ns4 D\n");
    write(&dir, "utt2num_frames", "s1 100\ns2 100\ns3 100\ns4 100\n");
    write(&dir, "cmvn.scp", "x c.ark:1\ny c.ark:2\n");
    let report = fix_data_dir(&dir, &opts()).unwrap();
    assert_eq!((report.utts_kept, report.utts_dropped), (2, 2));
    assert_eq!(report.recordings_dropped, 1);
    assert_eq!(read(&dir, "wav.scp"), format!("r1 {r1}\n"));
    assert_eq!(read(&dir, "segments"), "s1 r1 0 1\ns2 r1 1 2\n");
    assert_eq!(read(&dir, "utt2num_frames"), "s1 100\ns2 100\n");
    assert_eq!(read(&dir, "spk2utt"), "x s1\ny s2\n");
    assert_eq!(read(&dir, "cmvn.scp"), "x c.ark:1\ny c.ark:2\n");
    // spk2utt did not exist: created, nothing to back up.
    assert!(!report.backup_dir.join("spk2utt").exists());
    assert!(report.backup_dir.join("segments").exists());
    assert_eq!(problems(&dir, &opts()), Vec::<String>::new());
}

#[test]
fn fix_drops_speakers_without_cmvn_stats() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    write(&dir, "cmvn.scp", "a c.ark:1\n");
    let report = fix_data_dir(&dir, &opts()).unwrap();
    assert_eq!(
        report.drop_reasons["speaker has no valid entry in cmvn.scp"],
        1
    );
    assert_eq!(read(&dir, "utt2spk"), "a1 a\na2 a\n");
    assert_eq!(read(&dir, "spk2utt"), "a a1 a2\n");
    assert_eq!(problems(&dir, &opts()), Vec::<String>::new());
}

#[test]
fn fix_of_a_valid_directory_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    let report = fix_data_dir(&dir, &opts()).unwrap();
    assert!(report.changed.is_empty());
    assert!(!dir.join(".backup").exists());
    assert_eq!((report.utts_kept, report.utts_dropped), (3, 0));

    std::fs::remove_file(dir.join("utt2spk")).unwrap();
    let err = fix_data_dir(&dir, &opts()).unwrap_err().to_string();
    assert!(err.contains("utt2spk: missing"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The command

#[test]
fn cli_reports_problems_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    write(&dir, "utt2spk", "a2 a\na1 a\nb1 b\n");
    std::fs::remove_file(tmp.path().join("wav/b1.wav")).unwrap();
    let d = dir.display().to_string();
    let out = amdistill(tmp.path(), &["validate-data-dir", &d]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains(&format!("{d}/wav.scp:3: 'b1': audio file")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{d}/utt2spk:2: key 'a1' is out of order")),
        "{text}"
    );
    assert!(
        text.contains(&format!("{d}: 2 problems (utt2spk: 1, wav.scp: 1)")),
        "{text}"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a valid data directory (2 problems"),
        "{err}"
    );

    let out = amdistill(tmp.path(), &["validate-data-dir", "--no-wav-check", &d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains(&format!("{d}: 1 problem (utt2spk: 1)")),
        "{}",
        stdout(&out)
    );

    let out = amdistill(tmp.path(), &["validate-data-dir", "--fix", &d]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("fix kept 2 utterances, dropped 1 (1 no valid entry in wav.scp); dropped 1 recording and 1 speaker"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{d}/wav.scp:3: dropped: 'b1': audio file")),
        "{text}"
    );
    assert!(text.contains("previous versions are in"), "{text}");
    assert!(
        text.contains(&format!(
            "{d}: no problems (2 utterances, 1 speaker, 2 recordings)"
        )),
        "{text}"
    );

    let out = amdistill(tmp.path(), &["validate-data-dir", &d]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let out = amdistill(tmp.path(), &["validate-data-dir", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/dir"));
}

#[test]
fn cli_resolves_relative_audio_paths_against_the_current_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = good_dir(tmp.path());
    write(
        &dir,
        "wav.scp",
        "a1 wav/a1.wav\na2 wav/a2.wav\nb1 wav/b1.wav\n",
    );
    std::fs::remove_file(dir.join("text")).unwrap();
    // From the corpus root the paths exist; from inside the data directory they do not.
    let out = amdistill(tmp.path(), &["validate-data-dir", "--no-text", "data"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = amdistill(&dir, &["validate-data-dir", "--no-text", "."]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains("./wav.scp:1: 'a1': audio file 'wav/a1.wav' not found"),
        "{}",
        stdout(&out)
    );
    // text is required without --no-text.
    let out = amdistill(tmp.path(), &["validate-data-dir", "data"]);
    assert!(
        stdout(&out).contains("data/text: missing"),
        "{}",
        stdout(&out)
    );
}
