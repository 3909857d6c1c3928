//! `build-tree` and `make-alignments` end to end: synthetic WAVs whose spectrum depends on the
//! phone and its neighbours, the real `compute-fbank`, then the tree and the alignments.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use common::*;

use amdistill::corpus::table::read_map;
use amdistill::features::store::FeatureStore;
use amdistill::labels::frame_labels::{read_phone_times, FrameLabeler};
use amdistill::labels::kaldi_ali::read_alignments;
use amdistill::labels::phones::PhoneSet;
use amdistill::labels::senone_pipeline::store_geometry;
use amdistill::labels::tree::{read_senones, SenoneTree};

fn build_tree(feat: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["build-tree", s(feat), s(out), "--min-occupancy", "5"];
    args.extend_from_slice(extra);
    ok(&args)
}

fn total_gain(tree_dir: &Path) -> f64 {
    SenoneTree::load(tree_dir.join("tree"))
        .unwrap()
        .report()
        .total_gain
}

/// Every utterance of `ali` has exactly utt2num_frames ids, each below the number of senones,
/// and each frame's senone belongs to the frame's own (phone, state).
fn check_alignment(
    feat: &Path,
    tree_dir: &Path,
    ali: &Path,
    ctm: &Path,
) -> BTreeMap<String, Vec<u32>> {
    let ali = read_alignments(ali).unwrap();
    let n2f = read_map(feat.join("utt2num_frames")).unwrap();
    let senones = read_senones(tree_dir.join("senones.txt")).unwrap();
    let set = PhoneSet::load_dir(tree_dir).unwrap();
    let store = FeatureStore::open(feat).unwrap();
    let labeler = FrameLabeler::new(&set, store_geometry(&store).0);
    let times = read_phone_times(ctm, &set).unwrap();
    for (utt, ids) in &ali {
        let n: usize = n2f[utt].parse().unwrap();
        assert_eq!(ids.len(), n, "{utt}: frames in ali.txt vs utt2num_frames");
        let labels = labeler.states(&times[utt], n).unwrap();
        for (t, (&id, l)) in ids.iter().zip(&labels).enumerate() {
            let info = senones
                .get(id as usize)
                .unwrap_or_else(|| panic!("{utt} frame {t}: senone {id} >= {}", senones.len()));
            assert_eq!(
                (info.phone, info.state),
                (l.phone, l.state),
                "{utt} frame {t}: senone {id} is not of the frame's (phone, state)"
            );
        }
    }
    ali
}

#[test]
fn tree_and_alignments_on_a_synthetic_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    let feat = feature_dir(tmp.path(), "train", 1, 70, TRAIN_PHONES);
    let tree_dir = tmp.path().join("tree");
    // 70 utterances: three chunks of statistics, summed on 4 threads here and on 1 below.
    let out = build_tree(&feat, &tree_dir, &["--num-leaves", "200", "--threads", "4"]);
    for f in [
        "tree",
        "senones.txt",
        "phones.txt",
        "phone_classes.txt",
        "tree_report.txt",
    ] {
        assert!(tree_dir.join(f).is_file(), "{f} missing");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("leaves") && stdout.contains("log-likelihood gain"),
        "{stdout}"
    );
    assert!(stdout.contains("occupancy histogram"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("done 70 of 70"), "{stderr}");
    let report = std::fs::read_to_string(tree_dir.join("tree_report.txt")).unwrap();
    assert_eq!(report, stdout, "the report file is what was printed");

    let tree = SenoneTree::load(tree_dir.join("tree")).unwrap();
    let r = tree.report();
    assert_eq!(r.leaves, 200);
    assert!(r.total_gain > 0.0);
    // Roots of the 40 arpabet phones x 3 states; 9 of them (with sil) have frames.
    assert_eq!(r.roots, 120);
    assert_eq!(r.zero_occupancy_leaves, 120 - 27);
    let senones = read_senones(tree_dir.join("senones.txt")).unwrap();
    assert_eq!(senones.len(), 200);

    let ali_dir = tmp.path().join("ali");
    let out = ok(&["make-alignments", s(&feat), s(&tree_dir), s(&ali_dir)]);
    assert!(ali_dir.join("ali_report.txt").is_file());
    let ali = check_alignment(
        &feat,
        &tree_dir,
        &ali_dir.join("ali.txt"),
        &feat.join("phones.ctm"),
    );
    assert_eq!(ali.len(), 70);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("70 utterances"), "{report}");
    // Every senone with training frames is used by the training alignment, no other.
    let used: std::collections::BTreeSet<u32> = ali.values().flatten().copied().collect();
    let trained = senones.iter().filter(|s| s.count > 0.0).count();
    assert_eq!(used.len(), trained);
    assert!(
        report.contains(&format!("senones used: {trained} of 200")),
        "{report}"
    );
    assert!(
        report.contains("frames in senones without training frames: 0"),
        "{report}"
    );

    // The same tree rebuilt gives the same files (deterministic, parallel or not).
    let again = tmp.path().join("tree2");
    build_tree(&feat, &again, &["--num-leaves", "200", "--threads", "1"]);
    for f in ["tree", "senones.txt", "phones.txt", "phone_classes.txt"] {
        assert_eq!(
            std::fs::read(tree_dir.join(f)).unwrap(),
            std::fs::read(again.join(f)).unwrap(),
            "{f} differs between runs"
        );
    }
}

#[test]
fn gain_grows_with_the_number_of_leaves() {
    let tmp = tempfile::tempdir().unwrap();
    let feat = feature_dir(tmp.path(), "train", 2, 12, TRAIN_PHONES);
    let mut gains = Vec::new();
    for leaves in [120, 140, 170, 220] {
        let dir = tmp.path().join(format!("tree{leaves}"));
        build_tree(&feat, &dir, &["--num-leaves", &leaves.to_string()]);
        let r = SenoneTree::load(dir.join("tree")).unwrap().report();
        assert_eq!(r.leaves, leaves);
        gains.push(total_gain(&dir));
    }
    assert_eq!(gains[0], 0.0, "120 leaves are the roots: no split");
    for w in gains.windows(2) {
        assert!(w[1] > w[0], "gain does not grow with leaves: {gains:?}");
    }
    // Normalisation choices all build.
    for cmvn in ["utt", "none"] {
        let dir = tmp.path().join(format!("tree_{cmvn}"));
        build_tree(&feat, &dir, &["--num-leaves", "150", "--cmvn", cmvn]);
        assert!(total_gain(&dir) > 0.0);
    }
    // Fewer leaves than (phone, state) roots is a clear error.
    let out = amdistill(&[
        "build-tree",
        s(&feat),
        s(&tmp.path().join("bad")),
        "--num-leaves",
        "50",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--num-leaves 50") && err.contains("120"),
        "{err}"
    );
    assert!(!tmp.path().join("bad/tree").exists());
}

#[test]
fn frame_count_mismatch_skips_that_utterance_only() {
    let tmp = tempfile::tempdir().unwrap();
    let feat = feature_dir(tmp.path(), "train", 3, 8, TRAIN_PHONES);
    let text = std::fs::read_to_string(feat.join("phones.ctm")).unwrap();
    let utts: Vec<String> = read_map(feat.join("utt2num_frames"))
        .unwrap()
        .into_keys()
        .collect();
    let (cut, short) = (&utts[2], &utts[5]);
    // `cut` loses its final silence (> 80 ms: beyond the 2-frame tolerance); `short` ends
    // 10 ms early (1 frame: within it, so it is padded).
    let mut lines: Vec<String> = Vec::new();
    let all: Vec<&str> = text.lines().collect();
    for (i, line) in all.iter().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let last_of_utt = all
            .get(i + 1)
            .map_or(true, |n| !n.starts_with(&format!("{} ", f[0])));
        if f[0] == cut && last_of_utt {
            continue;
        }
        if f[0] == short && last_of_utt {
            let dur: f64 = f[3].parse().unwrap();
            lines.push(format!("{} 1 {} {:.3} {}", f[0], f[2], dur - 0.010, f[4]));
            continue;
        }
        lines.push(line.to_string());
    }
    let ctm = tmp.path().join("edited.ctm");
    std::fs::write(&ctm, lines.join("\n") + "\n").unwrap();

    let tree_dir = tmp.path().join("tree");
    let out = build_tree(&feat, &tree_dir, &["--num-leaves", "150", "--ctm", s(&ctm)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("utterance {cut}: phone times cover")),
        "{err}"
    );
    assert!(!err.contains(&format!("utterance {short}:")), "{err}");
    assert!(err.contains("done 7 of 8"), "{err}");
    let report = std::fs::read_to_string(tree_dir.join("tree_report.txt")).unwrap();
    assert!(report.contains(&format!("utterance {cut}")), "{report}");

    let ali_path = tmp.path().join("out/train_ali.txt");
    let out = ok(&[
        "make-alignments",
        s(&feat),
        s(&tree_dir),
        "--ctm",
        s(&ctm),
        s(&ali_path),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("utterance {cut}: phone times cover")),
        "{err}"
    );
    assert!(tmp.path().join("out/train_ali_report.txt").is_file());
    let ali = check_alignment(&feat, &tree_dir, &ali_path, &ctm);
    assert_eq!(ali.len(), 7);
    assert!(!ali.contains_key(cut.as_str()));
    assert!(
        ali.contains_key(short.as_str()),
        "within the tolerance: padded, kept"
    );
}

#[test]
fn unknown_phone_is_an_error_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let feat = feature_dir(tmp.path(), "train", 4, 4, TRAIN_PHONES);
    let text = std::fs::read_to_string(feat.join("phones.ctm")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let f: Vec<String> = lines[6].split_whitespace().map(str::to_string).collect();
    lines[6] = format!("{} {} {} {} XQ", f[0], f[1], f[2], f[3]);
    let ctm = tmp.path().join("bad.ctm");
    std::fs::write(&ctm, lines.join("\n") + "\n").unwrap();

    let tree_dir = tmp.path().join("tree");
    let out = amdistill(&[
        "build-tree",
        s(&feat),
        s(&tree_dir),
        "--ctm",
        s(&ctm),
        "--num-leaves",
        "150",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:7", ctm.display())) && err.contains("XQ"),
        "{err}"
    );
    assert!(!tree_dir.join("tree").exists());

    // make-alignments checks the same way.
    build_tree(&feat, &tree_dir, &["--num-leaves", "150"]);
    let out = amdistill(&[
        "make-alignments",
        s(&feat),
        s(&tree_dir),
        "--ctm",
        s(&ctm),
        s(&tmp.path().join("ali")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:7", ctm.display())), "{err}");
    assert!(!tmp.path().join("ali/ali.txt").exists());
}

#[test]
fn the_tree_aligns_an_unseen_feature_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let train = feature_dir(tmp.path(), "train", 5, 10, TRAIN_PHONES);
    // Other sentences and speakers, new contexts, and a phone (zh) the tree never saw.
    let mut inventory = TRAIN_PHONES.to_vec();
    inventory.push("zh");
    let dev = feature_dir(tmp.path(), "dev", 6, 5, &inventory);
    let dev_ctm = std::fs::read_to_string(dev.join("phones.ctm")).unwrap();
    assert!(
        dev_ctm.contains(" ZH\n"),
        "the dev set has the unseen phone"
    );

    let tree_dir = tmp.path().join("tree");
    build_tree(&train, &tree_dir, &["--num-leaves", "180"]);
    let ali_dir = tmp.path().join("ali_dev");
    let out = ok(&["make-alignments", s(&dev), s(&tree_dir), s(&ali_dir)]);
    let ali = check_alignment(
        &dev,
        &tree_dir,
        &ali_dir.join("ali.txt"),
        &dev.join("phones.ctm"),
    );
    assert_eq!(ali.len(), 5);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !report.contains("frames in senones without training frames: 0\n"),
        "zh frames map to its untrained root: {report}"
    );

    // A tree directory whose phones.txt is not the tree's fails clearly.
    let mut phones = std::fs::read_to_string(tree_dir.join("phones.txt")).unwrap();
    phones.push_str("zz 40\n");
    std::fs::write(tree_dir.join("phones.txt"), phones).unwrap();
    std::fs::remove_file(tree_dir.join("phone_classes.txt")).unwrap();
    let out = amdistill(&[
        "make-alignments",
        s(&dev),
        s(&tree_dir),
        s(&tmp.path().join("ali2")),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no root for phone 40 (zz)"), "{err}");
}
