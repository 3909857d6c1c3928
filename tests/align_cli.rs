//! `amdistill align` through the real binary: the flat start (uniform segmentation), a model
//! trained on it and Viterbi realignment that moves closer to the true phone times, and
//! utterances that cannot be aligned (a word missing from the lexicon, a transcript too long
//! for its audio) named and left out.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use rand::{Rng, SeedableRng};

/// Utterances of random phones from the test inventory with very uneven durations (40-250
/// ms) and long, uneven silences at the edges (100-600 ms): uniform segmentation is far off,
/// so realignment has something to correct.
fn uneven_utts(seed: u64, prefix: &str, n: usize) -> Vec<Utt> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let spk = format!("{prefix}spk{}", i % 2 + 1);
            let mut phones = Vec::new();
            let mut t = 0;
            let mut push = |p: &'static str, dur: u32| {
                phones.push((p, t, t + dur));
                t += dur;
            };
            push("sil", rng.gen_range(100..600));
            for _ in 0..rng.gen_range(8..14) {
                push(
                    TRAIN_PHONES[rng.gen_range(0..TRAIN_PHONES.len())],
                    rng.gen_range(40..250),
                );
            }
            push("sil", rng.gen_range(100..600));
            Utt {
                id: format!("{spk}-{prefix}u{i:02}"),
                spk,
                phones,
            }
        })
        .collect()
}

/// Fraction of phone boundaries within 20 ms of the reference, from the report's
/// "boundary error: ..., X% within 20 ms" line.
fn within_20ms(report: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.starts_with("boundary error:"))
        .unwrap_or_else(|| panic!("no boundary line in:\n{report}"));
    let before = line.split("% within 20 ms").next().unwrap();
    before.rsplit(' ').next().unwrap().parse::<f64>().unwrap() / 100.0
}

/// Frame agreement (a fraction) from the report's "agreement with reference: X% ..." line.
fn agreement(report: &str) -> f64 {
    let line = report
        .lines()
        .find(|l| l.starts_with("agreement with reference:"))
        .unwrap_or_else(|| panic!("no agreement line in:\n{report}"));
    let pct: f64 = line
        .split_whitespace()
        .nth(3)
        .unwrap()
        .trim_end_matches('%')
        .parse()
        .unwrap();
    pct / 100.0
}

fn ctm_utts(path: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        *out.entry(line.split_whitespace().next().unwrap().to_string())
            .or_insert(0) += 1;
    }
    out
}

/// A data directory whose transcripts are the phones as words (silences dropped), a
/// lexicon that spells each such word as its phone, and its features.
fn corpus(
    root: &Path,
    name: &str,
    seed: u64,
    n: usize,
) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = root.join(format!("data_{name}"));
    let feat = root.join(format!("feat_{name}"));
    write_data_dir(&data, &uneven_utts(seed, name, n), seed * 1000);
    ok(&["compute-fbank", s(&data), s(&feat)]);
    let text: String = std::fs::read_to_string(data.join("text"))
        .unwrap()
        .lines()
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().filter(|w| *w != "sil").collect();
            format!("{}\n", words.join(" "))
        })
        .collect();
    std::fs::write(data.join("text"), text).unwrap();
    (data, feat)
}

fn lexicon(root: &Path) -> std::path::PathBuf {
    let path = root.join("lexicon.dict");
    let lines: String = TRAIN_PHONES
        .iter()
        .map(|p| format!("{p} {}\n", p.to_uppercase()))
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// A train corpus of 30 utterances and a dev one of 6 (seeds `seed`, `seed + 1`) under
/// `root`, and the lexicon: `(train, train features, dev, dev features, lexicon)`.
fn train_dev(root: &Path, seed: u64) -> [std::path::PathBuf; 5] {
    let (train, train_feat) = corpus(root, "train", seed, 30);
    let (dev, dev_feat) = corpus(root, "dev", seed + 1, 6);
    [train, train_feat, dev, dev_feat, lexicon(root)]
}

#[test]
fn flat_start_then_viterbi_realignment_approaches_the_true_times() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let [train, train_feat, dev, dev_feat, lex] = train_dev(root, 11);

    // Round 0: uniform segmentation.
    let mut flat = BTreeMap::new();
    for (name, data, feat) in [("train", &train, &train_feat), ("dev", &dev, &dev_feat)] {
        let out = root.join("r0").join(name);
        let o = ok(&[
            "align",
            s(data),
            s(feat),
            s(&out),
            "--lexicon",
            s(&lex),
            "--lts",
            "none",
            "--reference",
            s(&data.join("phones.ctm")),
        ]);
        let report = String::from_utf8_lossy(&o.stdout).to_string();
        assert!(report.contains("flat start"), "{report}");
        flat.insert(name, (agreement(&report), within_20ms(&report)));
        for f in [
            "phones.ctm",
            "phone_ali.txt",
            "lexicon.txt",
            "align_report.txt",
        ] {
            assert!(out.join(f).is_file(), "{name}: no {f}");
        }
    }

    // A model on the flat start's phone times (tree, alignments, a small DNN).
    let r0 = root.join("r0");
    let tree = root.join("tree0");
    ok(&[
        "build-tree",
        s(&train_feat),
        s(&tree),
        "--ctm",
        s(&r0.join("train/phones.ctm")),
        "--num-leaves",
        "150",
        "--min-occupancy",
        "10",
    ]);
    for (name, feat) in [("train", &train_feat), ("dev", &dev_feat)] {
        ok(&[
            "make-alignments",
            s(feat),
            s(&tree),
            s(&root.join(format!("ali0_{name}"))),
            "--ctm",
            s(&r0.join(name).join("phones.ctm")),
        ]);
    }
    let cfg = root.join("model.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\ntrain = \"{}\"\ntrain_ali = \"{}\"\nvalid = \"{}\"\nvalid_ali = \"{}\"\nsenones = \"{}\"\n\n[model]\ntype = \"dnn\"\nhidden = 128\nlayers = 2\nsplice = 3\n\n[train]\nepochs = 6\n[loader]\nbatch_frames = 256\n",
            s(&train_feat),
            s(&root.join("ali0_train/ali.txt")),
            s(&dev_feat),
            s(&root.join("ali0_dev/ali.txt")),
            s(&tree.join("senones.txt")),
        ),
    )
    .unwrap();
    let model = root.join("model0");
    ok(&["train", s(&cfg), s(&model), "--quiet"]);

    // Round 1: Viterbi with that model, on dev (not trained on).
    let out = root.join("r1/dev");
    let o = ok(&[
        "align",
        s(&dev),
        s(&dev_feat),
        s(&out),
        "--model",
        s(&model),
        "--tree",
        s(&tree),
        "--lexicon",
        s(&lex),
        "--lts",
        "none",
        "--reference",
        s(&dev.join("phones.ctm")),
    ]);
    let report = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(report.contains("viterbi with"), "{report}");
    // Closer to the true times than the flat start, frame by frame and boundary by boundary.
    let (realigned, realigned_20ms) = (agreement(&report), within_20ms(&report));
    let (flat_agree, flat_20ms) = flat["dev"];
    assert!(
        realigned > flat_agree + 0.15 && realigned > 0.75 && realigned_20ms > flat_20ms + 0.2,
        "realignment {realigned:.3} ({realigned_20ms:.3} within 20 ms) vs flat start {flat_agree:.3} ({flat_20ms:.3}):\n{report}"
    );
    // Every utterance is covered end to end: the CTM gives back each one's frame count.
    assert_eq!(ctm_utts(&out.join("phones.ctm")).len(), 6);
    let frames: BTreeMap<String, usize> = std::fs::read_to_string(dev_feat.join("utt2num_frames"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut f = l.split_whitespace();
            (
                f.next().unwrap().to_string(),
                f.next().unwrap().parse().unwrap(),
            )
        })
        .collect();
    for line in std::fs::read_to_string(out.join("phone_ali.txt"))
        .unwrap()
        .lines()
    {
        let mut f = line.split_whitespace();
        let utt = f.next().unwrap();
        assert_eq!(f.count(), frames[utt], "{utt}");
    }

    // A tree of another senone set is refused, naming both sides.
    let other_tree = root.join("tree_other");
    ok(&[
        "build-tree",
        s(&train_feat),
        s(&other_tree),
        "--ctm",
        s(&r0.join("train/phones.ctm")),
        "--num-leaves",
        "130",
        "--min-occupancy",
        "10",
    ]);
    let o = amdistill(&[
        "align",
        s(&dev),
        s(&dev_feat),
        s(&root.join("r1/bad")),
        "--model",
        s(&model),
        "--tree",
        s(&other_tree),
        "--lexicon",
        s(&lex),
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tree_other") && err.contains("model0"),
        "{err}"
    );
    assert!(!root.join("r1/bad/phones.ctm").exists());
}

#[test]
fn unalignable_utterances_are_named_and_left_out() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (data, feat) = corpus(root, "train", 21, 5);
    let lex = lexicon(root);
    let text = std::fs::read_to_string(data.join("text")).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let utt = |l: &str| l.split_whitespace().next().unwrap().to_string();
    let (missing, long) = (utt(&lines[0]), utt(&lines[1]));
    lines[0] = format!("{missing} aa zork iy Zork");
    // At most 4.7 s of audio: 200 phones need 600 frames at 3 states each.
    lines[1] = format!("{long} {}", vec!["aa"; 200].join(" "));
    std::fs::write(data.join("text"), lines.join("\n") + "\n").unwrap();

    // Aligns into `out` with the test lexicon and letter-to-sound `lts`; returns stderr.
    let align = |out: &Path, lts: &str| {
        let o = ok(&[
            "align",
            s(&data),
            s(&feat),
            s(out),
            "--lexicon",
            s(&lex),
            "--lts",
            lts,
        ]);
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let out = root.join("ali");
    let err = align(&out, "none");
    assert!(
        err.contains(&format!("{missing}: words not in the lexicon: zork;")),
        "{err}"
    );
    assert!(err.contains(&format!("{long}: too short")), "{err}");
    assert!(err.contains("done 3 of 5"), "{err}");
    let covered = ctm_utts(&out.join("phones.ctm"));
    assert_eq!(covered.len(), 3);
    assert!(!covered.contains_key(&missing) && !covered.contains_key(&long));
    let report = std::fs::read_to_string(out.join("align_report.txt")).unwrap();
    assert!(report.contains(&format!("left out {missing}")), "{report}");

    // The built-in letter-to-sound rules give "zork" a pronunciation: then it aligns.
    let out = root.join("ali_lts");
    let err = align(&out, "rules");
    assert!(err.contains("done 4 of 5"), "{err}");
    assert!(std::fs::read_to_string(out.join("lexicon.txt"))
        .unwrap()
        .contains("zork"));

    // No transcripts at all is an error naming the file.
    std::fs::write(data.join("text"), "").unwrap();
    let o = amdistill(&["align", s(&data), s(&feat), s(&root.join("none"))]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("text"));
}

#[test]
fn gmm_flat_start_trains_aligns_and_is_reused() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let [train, train_feat, dev, dev_feat, lex] = train_dev(root, 21);
    let args = |data: &Path, feat: &Path, out: &Path, extra: &[&str]| -> Vec<String> {
        let a: Vec<String> = [
            "align",
            s(data),
            s(feat),
            s(out),
            "--lexicon",
            s(&lex),
            "--lts",
            "none",
            "--reference",
            s(&data.join("phones.ctm")),
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
        a
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        String::from_utf8_lossy(&ok(&args).stdout).to_string()
    };
    let flat = run(args(&dev, &dev_feat, &root.join("flat"), &[]));
    let (flat_agree, flat_20ms) = (agreement(&flat), within_20ms(&flat));

    // Monophone, trained on train's transcripts from an equal alignment (fewer iterations
    // than Kaldi's 40 to keep the test short), then reused on dev.
    let mono = root.join("mono_train");
    let report = run(args(
        &train,
        &train_feat,
        &mono,
        &["--train-gmm", "--gmm-iters", "15"],
    ));
    assert!(
        report.contains("GMM-HMM trained here (monophone"),
        "{report}"
    );
    assert!(mono.join("gmm.json").is_file() && mono.join("phones.ctm").is_file());
    let trained = agreement(&report);
    let mono_model = s(&mono.join("gmm.json")).to_string();
    let report = run(args(
        &dev,
        &dev_feat,
        &root.join("mono_dev"),
        &["--gmm", &mono_model],
    ));
    assert!(report.contains("with the GMM-HMM"), "{report}");
    let (dev_agree, dev_20ms) = (agreement(&report), within_20ms(&report));
    assert!(
        trained > 0.8 && dev_agree > flat_agree + 0.15 && dev_agree > 0.8 && dev_20ms > flat_20ms + 0.2,
        "monophone GMM: train {trained:.3}, dev {dev_agree:.3} ({dev_20ms:.3} within 20 ms) vs flat start {flat_agree:.3} ({flat_20ms:.3}):\n{report}"
    );

    // Context-dependent: a tree on the monophone alignment, GMMs per senone started from it.
    let tree = root.join("tree");
    ok(&[
        "build-tree",
        s(&train_feat),
        s(&tree),
        "--ctm",
        s(&mono.join("phones.ctm")),
        "--num-leaves",
        "150",
        "--min-occupancy",
        "10",
    ]);
    let tri = root.join("tri_train");
    let mono_ctm = s(&mono.join("phones.ctm")).to_string();
    let report = run(args(
        &train,
        &train_feat,
        &tri,
        &[
            "--train-gmm",
            "--tree",
            s(&tree),
            "--gmm-init",
            &mono_ctm,
            "--gmm-iters",
            "10",
        ],
    ));
    assert!(report.contains("senones of"), "{report}");
    let tri_model = s(&tri.join("gmm.json")).to_string();
    let report = run(args(
        &dev,
        &dev_feat,
        &root.join("tri_dev"),
        &["--gmm", &tri_model, "--tree", s(&tree)],
    ));
    let tri_agree = agreement(&report);
    assert!(
        tri_agree > 0.8,
        "context-dependent GMM: dev {tri_agree:.3}\n{report}"
    );
    // Without its tree it is refused, naming the model.
    let o = amdistill(&[
        "align",
        s(&dev),
        s(&dev_feat),
        s(&root.join("tri_bad")),
        "--lexicon",
        s(&lex),
        "--gmm",
        &tri_model,
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("gmm.json") && err.contains("monophone"),
        "{err}"
    );

    // A model of another phone set is refused, naming the set; nothing is written.
    let bad = root.join("mono_bad");
    let o = amdistill(&[
        "align",
        s(&dev),
        s(&dev_feat),
        s(&bad),
        "--lexicon",
        s(&lex),
        "--gmm",
        &mono_model,
        "--phones",
        "timit61",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("timit61") && err.contains("gmm.json"), "{err}");
    assert!(!bad.join("phones.ctm").exists());
}
