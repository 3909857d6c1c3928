//! Faults injected into the long stages (compute-fbank, train, dump-posteriors, export,
//! synth-corpus), through the real binary:
//!
//! - a full disk: a small tmpfs where the test may mount one (root, as in CI), and always a
//!   per-file size limit (`ulimit -f`, the write fails with EFBIG) that needs no privilege;
//! - a read-only output directory (a tmpfs remounted read-only, or `chmod a-w` for a user
//!   whom permissions bind);
//! - `kill -9` at random points.
//!
//! Each stage must exit non-zero with a message naming the path and the cause, leave no
//! output that a later stage would trust (no final file, no temporaries taking the space), keep
//! an earlier complete output intact, and, once the fault is gone, a rerun must give exactly
//! the output of an uninterrupted run.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------- the corpus and the stages

/// Inputs made once outside any faulty directory: features, alignments, a teacher.
struct Corpus {
    data: PathBuf,
    feat: PathBuf,
    teacher: PathBuf,
    config: PathBuf,
}

fn corpus(root: &Path) -> Corpus {
    let (feat, train_ali, dev, dev_ali, tree) = small_pipeline(root, 96, 6);
    let config = root.join("model.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\ntrain = \"{}\"\ntrain_ali = \"{}\"\nvalid = \"{}\"\nvalid_ali = \"{}\"\n\
             senones = \"{}\"\n\n[model]\ntype = \"dnn\"\nhidden = 256\nlayers = 2\nsplice = 3\n\n\
             [train]\nepochs = 2\ncheckpoint_every = 10\nkeep_checkpoints = 2\n\
             [loader]\nbatch_frames = 256\n",
            s(&feat),
            s(&train_ali),
            s(&dev),
            s(&dev_ali),
            s(&tree.join("senones.txt")),
        ),
    )
    .unwrap();
    let teacher = root.join("teacher");
    ok(&["train", s(&config), s(&teacher), "--quiet"]);
    Corpus {
        data: root.join("data_train"),
        feat,
        teacher,
        config,
    }
}

/// One long stage: how to run it into `out`, and the file whose presence says it finished.
#[derive(Clone, Copy, Debug)]
enum Stage {
    ComputeFbank,
    Train,
    DumpPosteriors,
    Export,
}

const STAGES: [Stage; 4] = [
    Stage::ComputeFbank,
    Stage::Train,
    Stage::DumpPosteriors,
    Stage::Export,
];

impl Stage {
    fn args(self, c: &Corpus, out: &Path, resume: bool) -> Vec<String> {
        let o = s(out).to_string();
        let v: Vec<&str> = match self {
            Stage::ComputeFbank => vec!["compute-fbank", s(&c.data), &o],
            Stage::Train if resume => vec!["train", s(&c.config), &o, "--quiet", "--resume"],
            Stage::Train => vec!["train", s(&c.config), &o, "--quiet"],
            Stage::DumpPosteriors => vec!["dump-posteriors", s(&c.teacher), s(&c.feat), &o],
            Stage::Export => vec!["export", s(&c.teacher), &o],
        };
        v.into_iter().map(String::from).collect()
    }

    /// Written last: a later stage (or the recipe's `.done` check) trusts the directory
    /// when this file is there.
    fn final_file(self) -> &'static str {
        match self {
            Stage::ComputeFbank => "feats.scp",
            Stage::Train => "model.safetensors",
            Stage::DumpPosteriors => "targets.scp",
            Stage::Export => "bundle.json",
        }
    }

    /// Training resumes from its checkpoints; the others start again.
    fn rerun_args(self, c: &Corpus, out: &Path) -> Vec<String> {
        self.args(c, out, matches!(self, Stage::Train))
    }
}

/// Runs amdistill; with `file_size_limit`, no file it writes may grow past that many bytes.
fn run(args: &[String], file_size_limit: Option<u64>) -> Output {
    let bin = env!("CARGO_BIN_EXE_amdistill");
    let mut cmd = match file_size_limit {
        // The shell ignores SIGXFSZ, so past the limit write() fails with EFBIG instead of
        // killing the process, as a full disk fails it with ENOSPC.
        Some(bytes) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("trap '' XFSZ; ulimit -f \"$1\"; shift; exec \"$@\"")
                .arg("sh")
                .arg(bytes.div_ceil(512).to_string())
                .arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(args).output().expect("run amdistill")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The directories (`dir` first) and the files under `dir`.
fn walk(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let (mut dirs, mut files) = (vec![dir.to_path_buf()], Vec::new());
    let mut i = 0;
    while i < dirs.len() {
        for e in std::fs::read_dir(&dirs[i]).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
        i += 1;
    }
    (dirs, files)
}

/// Every file under `dir`, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walk(dir)
        .1
        .into_iter()
        .map(|p| {
            let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (rel, std::fs::read(&p).unwrap())
        })
        .collect()
}

/// The files a complete run is judged by, with `dir` itself written as `OUT` (feats.scp and
/// targets.scp hold absolute paths): training's checkpoints and metrics are its working
/// state, not its output.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut m = snapshot(dir);
    m.retain(|k, _| !k.starts_with("checkpoints/") && k != "metrics.jsonl");
    let path = s(dir).as_bytes();
    for bytes in m.values_mut() {
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i..].starts_with(path) {
                out.extend_from_slice(b"OUT");
                i += path.len();
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        *bytes = out;
    }
    m
}

/// Equal outputs, or a failure naming the files that differ (not their bytes).
fn assert_same_outputs(a: &Path, b: &Path, what: &str) {
    let (x, y) = (outputs(a), outputs(b));
    let names = |m: &BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&x), names(&y), "{what}: other files");
    let differ: Vec<String> = x
        .iter()
        .filter(|(k, v)| y[*k] != **v)
        .map(|(k, v)| format!("{k} ({} vs {} bytes)", v.len(), y[k].len()))
        .collect();
    assert!(differ.is_empty(), "{what}: {differ:?} differ");
}

fn total_bytes(dir: &Path) -> u64 {
    snapshot(dir).values().map(|v| v.len() as u64).sum()
}

fn largest_file(dir: &Path) -> u64 {
    snapshot(dir)
        .values()
        .map(|v| v.len() as u64)
        .max()
        .unwrap()
}

fn temporaries(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    snapshot(dir)
        .into_keys()
        .filter(|k| k.contains(".tmp."))
        .collect()
}

/// Reference outputs of every stage, from uninterrupted runs in `root/ref`.
fn references(c: &Corpus, root: &Path) -> BTreeMap<&'static str, PathBuf> {
    let mut refs = BTreeMap::new();
    for st in STAGES {
        let out = root.join("ref").join(st.final_file());
        let o = run(&st.args(c, &out, false), None);
        assert!(o.status.success(), "{st:?}: {}", stderr(&o));
        refs.insert(st.final_file(), out);
    }
    refs
}

// ---------------------------------------------------------------- faults

/// A tmpfs mounted for one test; unmounted when dropped. `None` where mounting is not
/// permitted (not root, or no CAP_SYS_ADMIN).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes}"))
            .arg("tmpfs")
            .arg(dir)
            .output()
            .is_ok_and(|o| o.status.success());
        ok.then(|| Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    fn remount(&self, opts: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "remount {opts}: {}", stderr(&o));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}

/// The failed run said what and where, and left nothing a later stage would trust.
fn assert_failed_cleanly(st: Stage, o: &Output, out: &Path, cause: &str) {
    let e = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{st:?} must fail with status 1:\n{e}"
    );
    assert!(
        e.contains(cause),
        "{st:?}: the cause '{cause}' is not named:\n{e}"
    );
    assert!(
        e.contains(s(out)),
        "{st:?}: the path {} is not named:\n{e}",
        out.display()
    );
    assert!(!e.contains("panicked"), "{st:?} panicked:\n{e}");
    assert!(
        !out.join(st.final_file()).exists(),
        "{st:?}: {} exists after the failure",
        st.final_file()
    );
    assert_eq!(
        temporaries(out),
        Vec::<String>::new(),
        "{st:?}: temporaries left"
    );
}

/// The stage run into `out` fails for want of space (`cause`) and leaves nothing behind.
fn fails_on_a_full_disk(c: &Corpus, st: Stage, out: &Path, limit: Option<u64>, cause: &str) {
    let o = run(&st.args(c, out, false), limit);
    assert_failed_cleanly(st, &o, out, cause);
    eprintln!(
        "{st:?}: {}",
        stderr(&o).lines().last().unwrap_or_default().trim()
    );
}

#[test]
fn a_full_disk_fails_each_stage_cleanly_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let c = corpus(root);
    let refs = references(&c, root);

    // Always: a per-file limit at half the stage's largest file.
    for st in STAGES {
        let reference = &refs[st.final_file()];
        let out = root.join("fsize").join(st.final_file());
        let limit = largest_file(reference) / 2;
        fails_on_a_full_disk(&c, st, &out, Some(limit), "File too large");
        let o = run(&st.rerun_args(&c, &out), None);
        assert!(o.status.success(), "{st:?} rerun: {}", stderr(&o));
        assert_same_outputs(&out, reference, &format!("{st:?}: rerun"));
    }

    // Where a tmpfs can be mounted: a real ENOSPC at half the stage's output, then the disk
    // grown (as a user frees space) and the command rerun.
    for st in STAGES {
        let reference = &refs[st.final_file()];
        let disk = root.join("disk").join(st.final_file());
        let bytes = (total_bytes(reference) / 2).max(4096);
        let Some(fs) = Tmpfs::mount(&disk, bytes) else {
            eprintln!("note: cannot mount a tmpfs here (needs root); ENOSPC tested by ulimit only");
            return;
        };
        let out = disk.join("out");
        fails_on_a_full_disk(&c, st, &out, None, "No space left on device");
        fs.remount(&format!("size={}", 64 << 20));
        let o = run(&st.rerun_args(&c, &out), None);
        assert!(o.status.success(), "{st:?} rerun: {}", stderr(&o));
        assert_same_outputs(&out, reference, &format!("{st:?}: rerun"));
    }
}

#[test]
fn a_read_only_output_directory_is_a_clear_error_and_the_old_output_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let c = corpus(root);
    for st in STAGES {
        let disk = root.join("ro").join(st.final_file());
        let fs = Tmpfs::mount(&disk, 64 << 20);
        let out = disk.join("out");
        // A complete earlier run, then the directory turned read-only.
        let o = run(&st.args(&c, &out, false), None);
        assert!(o.status.success(), "{st:?}: {}", stderr(&o));
        let before = snapshot(&out);
        match &fs {
            Some(fs) => fs.remount("ro"),
            None if is_root() => {
                eprintln!("note: root without mount: permissions cannot make a directory read-only here; skipped");
                return;
            }
            None => chmod_read_only(&out),
        }
        let o = run(&st.args(&c, &out, false), None);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{st:?}:\n{e}");
        assert!(
            e.contains("Read-only file system") || e.contains("Permission denied"),
            "{st:?}: no cause:\n{e}"
        );
        assert!(
            e.contains(s(&disk)) && !e.contains("panicked"),
            "{st:?}:\n{e}"
        );
        assert!(
            snapshot(&out) == before,
            "{st:?}: the earlier output changed"
        );
        eprintln!("{st:?}: {}", e.lines().last().unwrap_or_default().trim());
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn chmod_read_only(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for d in walk(dir).0 {
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
}

// ---------------------------------------------------------------- kill -9

/// Starts the stage, kills it with SIGKILL after `after`, and waits for it.
fn kill_after(args: &[String], after: Duration) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < after {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "{args:?} failed before the kill: {status}"
            );
            return false; // finished before the kill
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    true
}

/// Each stage killed at random points of its run (the same output directory throughout, as a
/// user reruns a recipe): whenever the final file exists the directory is complete and equal
/// to the reference, and the last rerun completes to the reference.
#[test]
fn stages_killed_at_random_points_never_leave_a_trusted_partial_output() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let c = corpus(root);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::env::var("AMDISTILL_KILL_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(5),
    );
    for st in STAGES {
        let reference = root.join("ref").join(st.final_file());
        let t0 = Instant::now();
        let o = run(&st.args(&c, &reference, false), None);
        assert!(o.status.success(), "{st:?}: {}", stderr(&o));
        let full = t0.elapsed();
        let out = root.join("killed").join(st.final_file());
        let mut kills = 0;
        // Within the first half of a fresh run's time, so a run resumed with less left to do
        // is still killed now and then.
        for _ in 0..6 {
            let after = full.mul_f64(rng.gen_range(0.05..0.5));
            if kill_after(&st.rerun_args(&c, &out), after) {
                kills += 1;
            }
            if out.join(st.final_file()).exists() {
                assert_same_outputs(
                    &out,
                    &reference,
                    &format!("{st:?}: complete-looking output"),
                );
            }
        }
        assert!(kills > 0, "{st:?}: no kill landed");
        let o = run(&st.rerun_args(&c, &out), None);
        assert!(o.status.success(), "{st:?} rerun: {}", stderr(&o));
        assert_same_outputs(&out, &reference, &format!("{st:?}: rerun after kills"));
        assert_eq!(
            temporaries(&out),
            Vec::<String>::new(),
            "{st:?}: temporaries left"
        );
        eprintln!(
            "{st:?}: {kills} kills over a {:.2} s run, rerun equal",
            full.as_secs_f64()
        );
    }
}

/// `synth-corpus` (flite in parallel, utterances written as they finish) killed at random
/// points and rerun into the same directory: every split's `wav.scp` that exists lists only
/// complete WAVs, and the last rerun gives the uninterrupted corpus byte for byte.
#[test]
fn synth_corpus_killed_at_random_points_resumes_to_the_same_corpus() {
    if !Command::new("flite")
        .arg("-lv")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("note: flite is not installed (apt-get install -y flite); skipped");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let words = root.join("words.txt");
    // 2,025 pronounceable pseudo-words (the generator wants a word list of 1,000 or more).
    let syllables: Vec<String> = ["b", "d", "k", "l", "m", "n", "p", "s", "t"]
        .iter()
        .flat_map(|c| ["a", "e", "i", "o", "u"].map(|v| format!("{c}{v}")))
        .collect();
    let list: Vec<String> = syllables
        .iter()
        .flat_map(|a| syllables.iter().map(move |b| format!("{a}{b}")))
        .collect();
    std::fs::write(&words, list.join("\n")).unwrap();
    let args = |out: &Path| -> Vec<String> {
        [
            "synth-corpus",
            "--hours",
            "0.01",
            "--jobs",
            "2",
            "--seed",
            "3",
            "--word-list",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain([s(&words).to_string(), s(out).to_string()])
        .collect()
    };
    let reference = root.join("ref");
    let t0 = Instant::now();
    let o = run(&args(&reference), None);
    assert!(o.status.success(), "{}", stderr(&o));
    let full = t0.elapsed();
    let out = root.join("killed");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let mut kills = 0;
    for _ in 0..4 {
        if kill_after(&args(&out), full.mul_f64(rng.gen_range(0.05..0.5))) {
            kills += 1;
        }
        for split in ["train", "dev", "test", "test_unseen"] {
            let Ok(scp) = std::fs::read_to_string(out.join(split).join("wav.scp")) else {
                continue;
            };
            for line in scp.lines() {
                let wav = line.split_whitespace().nth(1).unwrap();
                let r = hound::WavReader::open(wav);
                assert!(
                    r.is_ok_and(|r| r.duration() > 0),
                    "{split}/wav.scp lists {wav}, which is not a complete WAV"
                );
            }
        }
    }
    assert!(kills > 0, "no kill landed");
    let o = run(&args(&out), None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_outputs(&out, &reference, "synth-corpus after kills");
    eprintln!(
        "synth-corpus: {kills} kills over a {:.2} s run, rerun equal",
        full.as_secs_f64()
    );
}
