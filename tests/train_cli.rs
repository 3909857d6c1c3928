//! `amdistill train` end to end on a small synthetic corpus: it learns, resumes exactly
//! after a kill, trains under a loader memory limit smaller than the store, stops on a
//! diverging loss keeping the last good checkpoint, and refuses mismatched artefacts.

mod common;

use std::path::{Path, PathBuf};

use common::*;

struct Corpus {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    train: PathBuf,
    train_ali: PathBuf,
    dev: PathBuf,
    dev_ali: PathBuf,
    tree: PathBuf,
}

fn corpus() -> Corpus {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (train, train_ali, dev, dev_ali, tree) = small_pipeline(&root, 40, 8);
    Corpus {
        _tmp: tmp,
        root,
        train,
        train_ali,
        dev,
        dev_ali,
        tree,
    }
}

/// A config over `c` with `model` (a TOML [model] body) and extra sections.
fn write_config(c: &Corpus, name: &str, model: &str, extra: &str) -> PathBuf {
    let path = c.root.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "[data]\ntrain = \"{}\"\ntrain_ali = \"{}\"\nvalid = \"{}\"\nvalid_ali = \"{}\"\nsenones = \"{}\"\n\n[model]\n{model}\n\n{extra}\n",
            s(&c.train),
            s(&c.train_ali),
            s(&c.dev),
            s(&c.dev_ali),
            s(&c.tree.join("senones.txt")),
        ),
    )
    .unwrap();
    path
}

fn weights(dir: &Path) -> Vec<(String, Vec<f32>)> {
    let (t, _) = amdistill::train::checkpoint::load_safetensors(
        &dir.join("model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut v: Vec<(String, Vec<f32>)> = t
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1().unwrap()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// Bit-identical weights, reported by the largest difference (not by dumping them).
fn assert_same_weights(a: &Path, b: &Path) {
    let (wa, wb) = (weights(a), weights(b));
    assert_eq!(wa.len(), wb.len());
    for ((na, va), (nb, vb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let max = va
            .iter()
            .zip(vb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(
            max == 0.0,
            "{na}: resumed run differs from an uninterrupted one by up to {max}"
        );
    }
}

fn epoch_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "epoch")
        .collect()
}

// With dropout, so that the exact-resume and rerun checks also cover its masks (seeded).
const DNN: &str = "type = \"dnn\"\nhidden = 64\nlayers = 2\nsplice = 2\ndropout = 0.1";
const LOOP: &str = "[train]\nepochs = 3\ncheckpoint_every = 5\nlog_every = 5\npatience = 0\n[optim]\nwarmup_steps = 5\n[loader]\nbatch_frames = 256\nchunk_frames = 8";

#[test]
fn trains_resumes_exactly_and_refuses_mismatches() {
    let c = corpus();
    let cfg = write_config(&c, "dnn", DNN, LOOP);

    // Uninterrupted.
    let full = c.root.join("full");
    let out = ok(&["--threads", "1", "train", s(&cfg), s(&full), "--quiet"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("best validation frame accuracy"), "{text}");
    let epochs = epoch_lines(&full);
    assert_eq!(epochs.len(), 3);
    let first = epochs[0]["valid_acc"].as_f64().unwrap();
    let last = epochs[2]["valid_acc"].as_f64().unwrap();
    let chance = 1.0 / 150.0;
    assert!(
        last > 5.0 * chance,
        "validation accuracy {last} barely above chance"
    );
    assert!(last >= first, "accuracy fell: {first} -> {last}");
    for f in [
        "model.json",
        "model.safetensors",
        "senones.txt",
        "train.toml",
    ] {
        assert!(full.join(f).exists(), "{f} missing");
    }

    let full2 = c.root.join("full2");
    ok(&["--threads", "1", "train", s(&cfg), s(&full2), "--quiet"]);
    assert_same_weights(&full, &full2);

    // Stopped after 12 steps (as a kill would, past the checkpoint at 10), then resumed.
    let part = c.root.join("part");
    ok(&[
        "--threads",
        "1",
        "train",
        s(&cfg),
        s(&part),
        "--quiet",
        "--set",
        "train.max_steps=12",
    ]);
    // A killed run leaves no "finished" mark: resume from the step-10 checkpoint.
    let cks: Vec<PathBuf> = std::fs::read_dir(part.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    for ck in &cks {
        if !ck.to_str().unwrap().contains("step-00000010") {
            std::fs::remove_file(ck).unwrap();
        }
    }
    ok(&[
        "--threads",
        "1",
        "train",
        s(&cfg),
        s(&part),
        "--quiet",
        "--resume",
    ]);
    assert_same_weights(&full, &part);
    assert_eq!(epoch_lines(&full), epoch_lines(&part));

    // A rerun of a finished run does nothing.
    let out = amdistill(&["train", s(&cfg), s(&part), "--resume"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already finished"));
    // Nor when the run's train.toml lacks a setting at its default (written by an older
    // build, before the setting existed).
    let toml_path = part.join("train.toml");
    let written = std::fs::read_to_string(&toml_path).unwrap();
    let older: String = written
        .lines()
        .filter(|l| !l.starts_with("label_smoothing"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(older, written, "no label_smoothing line to drop");
    std::fs::write(&toml_path, older).unwrap();
    let out = amdistill(&["train", s(&cfg), s(&part), "--resume"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already finished"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another architecture's checkpoint is refused, naming the weight.
    let cfg2 = write_config(
        &c,
        "dnn_wide",
        "type = \"dnn\"\nhidden = 96\nlayers = 2\nsplice = 2",
        LOOP,
    );
    let out = amdistill(&["train", s(&cfg2), s(&part), "--resume", "--quiet"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another configuration") && err.contains("[model] "),
        "{err}"
    );
    // So is any other change to what is learned (a finished run would otherwise be taken for
    // the new configuration's), naming the setting; the loop's length may change.
    let out = amdistill(&[
        "train",
        s(&cfg),
        s(&part),
        "--resume",
        "--quiet",
        "--set",
        "optim.lr=0.01",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("[optim] lr was"), "{err}");
    // Without the run's train.toml, the checkpoint's shapes still catch another architecture.
    std::fs::remove_file(part.join("train.toml")).unwrap();
    let out = amdistill(&["train", s(&cfg2), s(&part), "--resume", "--quiet"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("shape") && err.contains("step-"), "{err}");
}

#[test]
fn a_loader_memory_limit_below_the_store_size_still_trains() {
    let c = corpus();
    let store_bytes: u64 = std::fs::read_dir(c.train.join("data"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let limit_mb = store_bytes as f64 / 8.0 / 1e6;
    let cfg = write_config(
        &c,
        "small_mem",
        DNN,
        &format!("[train]\nepochs = 1\n[loader]\nbatch_frames = 256\nmemory_limit_mb = {limit_mb}"),
    );
    let out_dir = c.root.join("small_mem");
    ok(&["train", s(&cfg), s(&out_dir), "--quiet"]);
    assert_eq!(epoch_lines(&out_dir).len(), 1);
}

#[test]
fn a_diverging_loss_is_reported_with_its_step_and_keeps_the_checkpoint() {
    let c = corpus();
    let cfg = write_config(
        &c,
        "diverge",
        DNN,
        "[train]\nepochs = 2\ncheckpoint_every = 2\n[optim]\nlr = 1e30\nwarmup_steps = 0\nmax_grad_norm = 0.0\n[loader]\nbatch_frames = 256",
    );
    let out_dir = c.root.join("diverge");
    let out = amdistill(&["train", s(&cfg), s(&out_dir), "--quiet"]);
    assert!(!out.status.success(), "training at lr 1e30 succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("at step") && err.contains("batch"), "{err}");
    assert!(err.contains("last good checkpoint"), "{err}");
    // Every checkpoint that exists is readable: none was written after the divergence.
    for e in std::fs::read_dir(out_dir.join("checkpoints")).unwrap() {
        let p = e.unwrap().path();
        amdistill::train::checkpoint::load_safetensors(&p, &candle_core::Device::Cpu).unwrap();
    }
}
