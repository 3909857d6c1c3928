//! Teacher -> soft targets -> students -> scores -> comparison through the real binary on a
//! small synthetic corpus, and the refusals of mismatched artefacts between those stages.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn config(root: &Path, name: &str, corpus: &[PathBuf; 5], model: &str, extra: &str) -> PathBuf {
    let [train, train_ali, dev, dev_ali, tree] = corpus;
    let path = root.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[data]\ntrain = \"{}\"\ntrain_ali = \"{}\"\nvalid = \"{}\"\nvalid_ali = \"{}\"\nsenones = \"{}\"\n\n[model]\n{model}\n\n[train]\nepochs = 2\nlog_every = 5\n[loader]\nbatch_frames = 256\n{extra}\n",
            s(train),
            s(train_ali),
            s(dev),
            s(dev_ali),
            s(&tree.join("senones.txt")),
        ),
    )
    .unwrap();
    path
}

fn score_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn teacher_soft_targets_students_scores_and_table() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let (train, train_ali, dev, dev_ali, tree) = small_pipeline(root, 30, 6);
    let corpus = [train.clone(), train_ali, dev.clone(), dev_ali.clone(), tree];

    let teacher_cfg = config(
        root,
        "teacher",
        &corpus,
        "type = \"dnn\"\nhidden = 128\nlayers = 2\nsplice = 3",
        "",
    );
    let teacher = root.join("teacher");
    ok(&["train", s(&teacher_cfg), s(&teacher), "--quiet"]);

    // Top-10 soft targets, and a two-member ensemble (the same teacher twice averages to itself).
    let targets = root.join("targets");
    ok(&["dump-posteriors", s(&teacher), s(&train), s(&targets)]);
    let meta = score_json(&targets.join("targets.json"));
    assert_eq!(meta["k"], 10);
    let ens = root.join("targets_ens");
    let both = format!("{},{}", s(&teacher), s(&teacher));
    ok(&[
        "dump-posteriors",
        &both,
        s(&train),
        s(&ens),
        "--shard",
        "1/2",
    ]);
    ok(&[
        "dump-posteriors",
        &both,
        s(&train),
        s(&ens),
        "--shard",
        "2/2",
    ]);
    assert!(ens.join("targets.scp").exists(), "shards were not merged");

    // Offline and online KD students of the same size.
    let student = "type = \"dnn\"\nhidden = 32\nlayers = 1\nsplice = 3";
    let kd_cfg = config(
        root,
        "kd",
        &corpus,
        student,
        &format!(
            "[kd]\ntargets = \"{}\"\ntemperature = 2.0\nalpha = 0.5",
            s(&targets)
        ),
    );
    let online_cfg = config(
        root,
        "kd_online",
        &corpus,
        student,
        &format!("[kd]\nteachers = [\"{}\"]\nconditional = true", s(&teacher)),
    );
    ok(&["train", s(&kd_cfg), s(&root.join("kd")), "--quiet"]);
    ok(&[
        "train",
        s(&online_cfg),
        s(&root.join("kd_online")),
        "--quiet",
    ]);
    // Half the alignments dropped, as for an untranscribed set combined into train: with
    // kd.untranscribed those utterances still train, on the teacher's targets alone; without
    // it they are left out by name.
    let half: String = std::fs::read_to_string(&corpus[1])
        .unwrap()
        .lines()
        .step_by(2)
        .map(|l| format!("{l}\n"))
        .collect();
    let mut half_corpus = corpus.clone();
    half_corpus[1] = root.join("half_ali.txt");
    std::fs::write(&half_corpus[1], half).unwrap();
    let trained_frames = |extra: &str, name: &str| {
        let cfg = config(
            root,
            name,
            &half_corpus,
            student,
            &format!("[kd]\ntargets = \"{}\"\nalpha = 0.5\n{extra}", s(&targets)),
        );
        let out = ok(&["train", s(&cfg), s(&root.join(name))]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let frames: u64 = err
            .split(" on ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no frame count in {err}"));
        (frames, err)
    };
    let (all, err) = trained_frames("untranscribed = true", "kd_untranscribed");
    assert!(!err.contains("no alignment"), "{err}");
    let (aligned, err) = trained_frames("", "kd_half");
    assert!(err.contains("features but no alignment; skipped"), "{err}");
    let total: u64 = score_json(&targets.join("targets.json"))["frames"]
        .as_u64()
        .expect("targets.json records its frames");
    assert_eq!(all, total, "every frame of the soft targets trains");
    assert!(aligned < all && aligned > all / 3, "{aligned} of {all}");
    // Train accuracy is over the aligned frames only: a number, not NaN.
    let metrics = std::fs::read_to_string(root.join("kd_untranscribed/metrics.jsonl")).unwrap();
    let last_epoch: serde_json::Value = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .last()
        .unwrap_or_else(|| panic!("no epoch line in {metrics}"));
    let acc = last_epoch["train_acc"].as_f64().unwrap();
    assert!(acc > 0.0 && acc <= 1.0, "{last_epoch}");

    let kd_metrics = std::fs::read_to_string(root.join("kd/metrics.jsonl")).unwrap();
    assert!(
        kd_metrics.contains("soft_loss"),
        "KD steps log their soft loss"
    );

    // Scores: the teacher agrees with itself; a student has a KL > 0; the soft-target store
    // scores as a model with the teacher's accuracy on train.
    let scores = root.join("scores");
    for m in ["teacher", "kd", "kd_online"] {
        ok(&[
            "score",
            s(&root.join(m)),
            s(&dev),
            s(&dev_ali),
            s(&scores.join(format!("{m}.json"))),
            "--teacher",
            s(&teacher),
        ]);
    }
    let t = score_json(&scores.join("teacher.json"));
    assert_eq!(t["all"]["teacher_agreement"], 1.0);
    let acc = t["all"]["frame_acc"].as_f64().unwrap();
    assert!(
        acc > 3.0 / 150.0,
        "teacher frame accuracy {acc} at chance level"
    );
    assert!(t["model"]["params"].as_u64().unwrap() > 0);
    let k = score_json(&scores.join("kd.json"));
    assert!(k["all"]["kl"].as_f64().unwrap() > 0.0);
    ok(&[
        "score",
        s(&targets),
        s(&train),
        s(&corpus[1]),
        s(&scores.join("targets.json")),
    ]);
    ok(&[
        "score",
        s(&teacher),
        s(&train),
        s(&corpus[1]),
        s(&scores.join("teacher_train.json")),
    ]);
    let a = score_json(&scores.join("targets.json"))["all"]["frame_acc"]
        .as_f64()
        .unwrap();
    let b = score_json(&scores.join("teacher_train.json"))["all"]["frame_acc"]
        .as_f64()
        .unwrap();
    assert!(
        (a - b).abs() < 0.01,
        "top-10 store accuracy {a} vs teacher {b}"
    );

    // The comparison table and plots.
    let out = root.join("compare");
    let teacher_curve = format!("teacher={}", s(&teacher.join("metrics.jsonl")));
    ok(&[
        "compare",
        s(&scores.join("teacher.json")),
        s(&scores.join("kd.json")),
        s(&scores.join("kd_online.json")),
        "--out",
        s(&out),
        "--curves",
        &teacher_curve,
    ]);
    let table = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(
        table.contains("teacher") && table.contains("%FACC"),
        "{table}"
    );
    assert!(out.join("learning_curves.svg").exists() && out.join("accuracy_vs_size.svg").exists());

    // Soft targets over another senone table are refused, naming both sides.
    // (the same number of senones, one count changed: another table to its identity).
    let other_tree = root.join("tree_other");
    std::fs::create_dir_all(&other_tree).unwrap();
    let table = std::fs::read_to_string(corpus[4].join("senones.txt")).unwrap();
    let mut lines: Vec<String> = table.lines().map(str::to_string).collect();
    let last = lines.len() - 1;
    let mut f: Vec<String> = lines[last].split_whitespace().map(str::to_string).collect();
    f[3] = format!("{}", f[3].parse::<f64>().unwrap() + 1.0);
    lines[last] = f.join(" ");
    std::fs::write(other_tree.join("senones.txt"), lines.join("\n") + "\n").unwrap();
    let mut other = corpus.clone();
    other[4] = other_tree;
    let bad_cfg = config(
        root,
        "bad",
        &other,
        student,
        &format!("[kd]\ntargets = \"{}\"", s(&targets)),
    );
    let res = amdistill(&["train", s(&bad_cfg), s(&root.join("bad")), "--quiet"]);
    assert!(
        !res.status.success(),
        "soft targets of another senone table were accepted"
    );
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("senones"), "{err}");
}
