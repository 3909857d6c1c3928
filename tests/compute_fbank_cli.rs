//! `amdistill compute-fbank` and `copy-feats` end to end: the real binary on data directories
//! written by each test in a temporary directory (WAVs through hound, broken files by hand).
//!
//! Covers the feature directory a good run writes, Kaldi's frame-count formula for both
//! snip-edges settings, Kaldi-named flags, profiles and conf files, every bad input of issue 2
//! item 7 (reported by utterance, the batch carrying on, "done N of M", non-zero exit),
//! resampling, segments, sharding, atomic outputs and reruns, thread and dither determinism.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use amdistill::audio::{read_audio, AudioOptions};
use amdistill::features::kaldi_io::ScpReader;
use amdistill::features::{Fbank, FbankOptions, Matrix};
use hound::{SampleFormat, WavSpec, WavWriter};

// ---------------------------------------------------------------------------------------------
// Helpers

/// Runs `amdistill ARGS` in `cwd`.
fn amdistill(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("the amdistill binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Asserts a zero exit status, showing stderr otherwise.
fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstderr:\n{}",
        o.status,
        stderr(o)
    );
}

/// Asserts exit status 1 (a failed run, not a usage error).
fn assert_failed(o: &Output) {
    assert_eq!(o.status.code(), Some(1), "stderr:\n{}", stderr(o));
}

/// A deterministic speech-like test signal in [-0.5, 0.5]: two tones, a chirp and noise.
fn signal(n: usize, rate: u32, seed: u64) -> Vec<f32> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise = ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5;
            let f0 = 120.0 + 40.0 * seed as f64;
            let v = 0.2 * (2.0 * std::f64::consts::PI * f0 * t).sin()
                + 0.1 * (2.0 * std::f64::consts::PI * (700.0 + 300.0 * t) * t).sin()
                + 0.05 * noise;
            v as f32
        })
        .collect()
}

/// Writes 16-bit mono PCM (samples in [-1, 1]).
fn write_wav16(path: &Path, rate: u32, samples: &[f32]) {
    let spec = WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: SampleFormat::Int,
    };
    let mut w = WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample((s * 32767.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();
}

/// Writes 32-bit float mono.
fn write_wav_f32(path: &Path, rate: u32, samples: &[f32]) {
    let spec = WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: SampleFormat::Float,
    };
    let mut w = WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A RIFF/WAVE file with a 16-byte fmt chunk of format `tag` and the given data bytes.
fn raw_wav(tag: u16, rate: u32, bits: u16, data: &[u8]) -> Vec<u8> {
    let block_align = bits.div_ceil(8);
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&tag.to_le_bytes());
    fmt.extend_from_slice(&1u16.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&(rate * block_align as u32).to_le_bytes());
    fmt.extend_from_slice(&block_align.to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&((4 + 8 + fmt.len() + 8 + data.len()) as u32).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    v.extend_from_slice(&fmt);
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// A data directory under construction: utterance -> audio path (and optional segment).
struct DataDirSpec {
    dir: PathBuf,
    wav_scp: BTreeMap<String, String>,
    utt2spk: BTreeMap<String, String>,
    segments: Option<BTreeMap<String, String>>,
}

impl DataDirSpec {
    fn new(root: &Path, name: &str) -> Self {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("wav")).unwrap();
        DataDirSpec {
            dir,
            wav_scp: BTreeMap::new(),
            utt2spk: BTreeMap::new(),
            segments: None,
        }
    }

    /// Path of a (new) audio file for `utt` in the directory's `wav/`.
    fn audio_path(&self, utt: &str) -> PathBuf {
        self.dir.join("wav").join(format!("{utt}.wav"))
    }

    /// Adds `utt` (speaker = its prefix before '-') reading `path`.
    fn add(&mut self, utt: &str, path: &Path) {
        self.wav_scp
            .insert(utt.to_string(), path.display().to_string());
        let spk = utt.split('-').next().unwrap().to_string();
        self.utt2spk.insert(utt.to_string(), spk);
    }

    /// Adds `utt` with a 16 kHz 16-bit WAV of `n` samples of [`signal`].
    fn add_wav(&mut self, utt: &str, n: usize, seed: u64) -> PathBuf {
        let p = self.audio_path(utt);
        write_wav16(&p, 16000, &signal(n, 16000, seed));
        self.add(utt, &p);
        p
    }

    /// Adds `utt` whose file holds `bytes`.
    fn add_bytes(&mut self, utt: &str, bytes: &[u8]) {
        let p = self.audio_path(utt);
        std::fs::write(&p, bytes).unwrap();
        self.add(utt, &p);
    }

    fn write(&self) -> PathBuf {
        let lines = |m: &BTreeMap<String, String>| -> String {
            m.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
        };
        std::fs::write(self.dir.join("wav.scp"), lines(&self.wav_scp)).unwrap();
        std::fs::write(self.dir.join("utt2spk"), lines(&self.utt2spk)).unwrap();
        let mut spk2utt: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (u, s) in &self.utt2spk {
            spk2utt.entry(s.clone()).or_default().push(u.clone());
        }
        let spk2utt: BTreeMap<String, String> =
            spk2utt.into_iter().map(|(s, u)| (s, u.join(" "))).collect();
        std::fs::write(self.dir.join("spk2utt"), lines(&spk2utt)).unwrap();
        let text: BTreeMap<String, String> = self
            .utt2spk
            .keys()
            .map(|u| (u.clone(), format!("words of {u}")))
            .collect();
        std::fs::write(self.dir.join("text"), lines(&text)).unwrap();
        match &self.segments {
            Some(s) => std::fs::write(self.dir.join("segments"), lines(s)).unwrap(),
            None => {
                let _ = std::fs::remove_file(self.dir.join("segments"));
            }
        }
        self.dir.clone()
    }
}

/// Every matrix of `feat_dir/feats.scp`, by key.
fn read_feats(feat_dir: &Path) -> BTreeMap<String, Matrix> {
    let scp = ScpReader::open(feat_dir.join("feats.scp")).unwrap();
    (0..scp.len())
        .map(|i| (scp.key(i).to_string(), scp.read(i).unwrap()))
        .collect()
}

/// A table file as key -> value.
fn table(path: &Path) -> BTreeMap<String, String> {
    amdistill::corpus::table::read_map(path).unwrap()
}

/// Every file under `dir` whose name contains `.tmp.` (a temporary left behind).
fn leftover_temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap().to_string_lossy().contains(".tmp.") {
                out.push(p);
            }
        }
    }
    out
}

/// Kaldi's frame count: snip-edges true `1 + (n - 400) / 160` (0 below 400), false
/// `(n + 80) / 160`, for 25 ms / 10 ms frames at 16 kHz.
fn kaldi_frames(n: usize, snip_edges: bool) -> usize {
    if snip_edges {
        if n < 400 {
            0
        } else {
            1 + (n - 400) / 160
        }
    } else {
        (n + 80) / 160
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ---------------------------------------------------------------------------------------------
// A good run and what it writes

#[test]
fn good_run_writes_a_complete_feature_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DataDirSpec::new(tmp.path(), "data");
    d.add_wav("a-1", 16000, 1);
    d.add_wav("a-2", 8123, 2);
    d.add_wav("b-1", 24000, 3);
    let data = d.write();
    let feat = tmp.path().join("feats");
    let o = amdistill(tmp.path(), &["compute-fbank", p(&data), p(&feat)]);
    assert_ok(&o);
    assert!(stderr(&o).contains("done 3 of 3"), "{}", stderr(&o));

    for f in [
        "feats.scp",
        "data/feats.1.ark",
        "utt2num_frames",
        "frame_shift",
        "fbank.conf",
        "fbank.json",
        "wav.scp",
        "utt2spk",
        "spk2utt",
        "text",
    ] {
        assert!(feat.join(f).is_file(), "{f} missing");
    }
    assert_eq!(
        std::fs::read_to_string(feat.join("frame_shift"))
            .unwrap()
            .trim(),
        "0.01"
    );
    let conf = std::fs::read_to_string(feat.join("fbank.conf")).unwrap();
    assert!(
        conf.contains("--num-mel-bins=23") && conf.contains("--snip-edges=true"),
        "{conf}"
    );
    let json: FbankOptions =
        serde_json::from_str(&std::fs::read_to_string(feat.join("fbank.json")).unwrap()).unwrap();
    assert_eq!(json, FbankOptions::profile("kaldi").unwrap());
    // fbank.conf is a complete configuration: read back, it gives the same options.
    let mut back = FbankOptions::default();
    back.apply_conf_str(&conf).unwrap();
    assert_eq!(back, json);

    let feats = read_feats(&feat);
    assert_eq!(feats.keys().collect::<Vec<_>>(), ["a-1", "a-2", "b-1"]);
    let n2f = table(&feat.join("utt2num_frames"));
    for (utt, n) in [("a-1", 16000), ("a-2", 8123), ("b-1", 24000)] {
        let m = &feats[utt];
        assert_eq!((m.rows, m.cols), (kaldi_frames(n, true), 23), "{utt}");
        assert_eq!(n2f[utt], m.rows.to_string());
        assert!(m.data.iter().all(|v| v.is_finite()));
    }
    // feats.scp points at absolute archive paths, so the store reads from anywhere.
    for v in table(&feat.join("feats.scp")).values() {
        assert!(
            Path::new(v.rsplit_once(':').unwrap().0).is_absolute(),
            "{v}"
        );
    }
    assert_eq!(table(&feat.join("utt2spk")), table(&data.join("utt2spk")));
    assert_eq!(table(&feat.join("text")), table(&data.join("text")));
    assert_eq!(table(&feat.join("spk2utt"))["a"], "a-1 a-2");
    // The store opens it and agrees.
    let store = amdistill::features::store::FeatureStore::open(&feat).unwrap();
    assert_eq!(
        (store.utts().len(), store.dim(), store.frame_shift()),
        (3, 23, 0.01)
    );
    assert!(leftover_temporaries(tmp.path()).is_empty());
}

#[test]
fn features_equal_the_library_and_copy_feats_prints_them_as_kaldi_text() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DataDirSpec::new(tmp.path(), "data");
    let wav = d.add_wav("u1", 4000, 5);
    d.add_wav("u2", 1000, 6);
    let data = d.write();
    let feat = tmp.path().join("feats");
    assert_ok(&amdistill(
        tmp.path(),
        &["compute-fbank", "--dither=0", p(&data), p(&feat)],
    ));
    let feats = read_feats(&feat);

    // The same as the library on the same samples.
    let mut opts = FbankOptions::profile("kaldi").unwrap();
    opts.frame.dither = 0.0;
    let wave = read_audio(&wav, &AudioOptions::default()).unwrap();
    let lib = Fbank::new(&opts).unwrap().compute(&wave.samples, 0);
    assert_eq!(feats["u1"], lib);

    // copy-feats FEAT_DIR: `KEY  [`, one frame per line, the last ending with `]`.
    let o = amdistill(tmp.path(), &["copy-feats", p(&feat)]);
    assert_ok(&o);
    let text = stdout(&o);
    let mut lines = text.lines().peekable();
    let mut printed: BTreeMap<String, Vec<Vec<f32>>> = BTreeMap::new();
    while let Some(head) = lines.next() {
        let key = head
            .strip_suffix("  [")
            .unwrap_or_else(|| panic!("bad header line {head:?}"));
        let mut rows = Vec::new();
        loop {
            let line = lines.next().expect("matrix ends with ]");
            assert!(line.starts_with("  "), "{line:?}");
            let (body, last) = match line.strip_suffix(" ]") {
                Some(b) => (b, true),
                None => (line, false),
            };
            rows.push(
                body.split_whitespace()
                    .map(|v| v.parse::<f32>().unwrap())
                    .collect(),
            );
            if last {
                break;
            }
        }
        printed.insert(key.to_string(), rows);
    }
    assert_eq!(printed.keys().collect::<Vec<_>>(), ["u1", "u2"]);
    for (key, rows) in &printed {
        let m = &feats[key];
        assert_eq!(rows.len(), m.rows);
        for (r, row) in rows.iter().enumerate() {
            assert_eq!(row.len(), m.cols);
            for (c, &v) in row.iter().enumerate() {
                // %g with 6 significant digits.
                let want = m.row(r)[c];
                assert!(
                    (v - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{key} [{r},{c}]"
                );
            }
        }
    }
    // copy-feats to a binary archive and back gives the same bytes as our own archive entries.
    let o = amdistill(
        tmp.path(),
        &[
            "copy-feats",
            &format!("scp:{}", p(&feat.join("feats.scp"))),
            "ark:copy.ark",
        ],
    );
    assert_ok(&o);
    let copied = std::fs::read(tmp.path().join("copy.ark")).unwrap();
    assert_eq!(
        copied,
        std::fs::read(feat.join("data/feats.1.ark")).unwrap()
    );
}

#[test]
fn frame_counts_follow_kaldis_formula_for_both_snip_edges_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let lengths = [
        400usize, 401, 559, 560, 561, 1000, 16000, 16079, 16080, 16081, 16239, 16240,
    ];
    let mut d = DataDirSpec::new(tmp.path(), "data");
    for (i, &n) in lengths.iter().enumerate() {
        d.add_wav(&format!("u{n:05}"), n, i as u64);
    }
    // Shorter than a frame with snip-edges but not without it.
    for n in [80usize, 81, 239, 240, 399] {
        d.add_wav(&format!("s{n:05}"), n, 1);
    }
    let data = d.write();
    for snip in [true, false] {
        let feat = tmp.path().join(format!("feats_{snip}"));
        let o = amdistill(
            tmp.path(),
            &[
                "compute-fbank",
                &format!("--snip-edges={snip}"),
                p(&data),
                p(&feat),
            ],
        );
        let n2f = table(&feat.join("utt2num_frames"));
        for (utt, path) in &d.wav_scp {
            let n = hound::WavReader::open(path).unwrap().len() as usize;
            let want = kaldi_frames(n, snip);
            if want == 0 {
                assert!(!n2f.contains_key(utt), "{utt}");
                assert!(
                    stderr(&o).contains(&format!("utterance {utt}: ")),
                    "{}",
                    stderr(&o)
                );
            } else {
                assert_eq!(n2f[utt], want.to_string(), "{utt} snip-edges={snip}");
            }
        }
        if snip {
            // s00080 .. s00399 are under 400 samples: reported, the rest done.
            assert_failed(&o);
            assert!(
                stderr(&o).contains("done 12 of 17 (5 failed)"),
                "{}",
                stderr(&o)
            );
        } else {
            assert_ok(&o);
            assert!(stderr(&o).contains("done 17 of 17"), "{}", stderr(&o));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Options: flags, profiles, conf files

/// A data directory with two 1 s utterances.
fn two_utts(root: &Path) -> PathBuf {
    let mut d = DataDirSpec::new(root, "data");
    d.add_wav("a-1", 16000, 1);
    d.add_wav("a-2", 12345, 2);
    d.write()
}

/// Runs compute-fbank with `extra` options into `root/NAME` and returns its features.
fn fbank_with(root: &Path, data: &Path, name: &str, extra: &[&str]) -> BTreeMap<String, Matrix> {
    let feat = root.join(name);
    let mut args = vec!["compute-fbank"];
    args.extend_from_slice(extra);
    args.push(p(data));
    args.push(p(&feat));
    assert_ok(&amdistill(root, &args));
    read_feats(&feat)
}

#[test]
fn kaldi_named_flags_and_profiles_change_the_output() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = two_utts(root);
    let base = fbank_with(root, &data, "base", &["--dither=0"]);
    assert_eq!((base["a-1"].rows, base["a-1"].cols), (98, 23));

    let f = fbank_with(root, &data, "bins40", &["--num-mel-bins=40", "--dither=0"]);
    assert_eq!((f["a-1"].rows, f["a-1"].cols), (98, 40));

    let f = fbank_with(root, &data, "energy", &["--use-energy=true", "--dither=0"]);
    assert_eq!(f["a-1"].cols, 24);
    // htk-compat puts the energy last: the bins are those of --use-energy without it.
    let h = fbank_with(
        root,
        &data,
        "htk",
        &["--use-energy", "--htk-compat=true", "--dither=0"],
    );
    assert_eq!(h["a-1"].row(5)[23], f["a-1"].row(5)[0]);
    assert_eq!(&h["a-1"].row(5)[..23], &f["a-1"].row(5)[1..]);

    let f = fbank_with(
        root,
        &data,
        "hamming",
        &["--window-type=hamming", "--dither=0"],
    );
    assert_eq!((f["a-1"].rows, f["a-1"].cols), (98, 23));
    assert_ne!(f["a-1"], base["a-1"]);

    let f = fbank_with(root, &data, "shift20", &["--frame-shift=20", "--dither=0"]);
    assert_eq!(f["a-1"].rows, 1 + (16000 - 400) / 320);
    assert_eq!(
        std::fs::read_to_string(root.join("shift20/frame_shift"))
            .unwrap()
            .trim(),
        "0.02"
    );

    let f = fbank_with(root, &data, "nosnip", &["--snip-edges=false", "--dither=0"]);
    assert_eq!(f["a-2"].rows, kaldi_frames(12345, false));

    // modern80: 80 bins, dither 0, snip-edges false, high-freq -400.
    let m = fbank_with(root, &data, "modern", &["--profile=modern80"]);
    assert_eq!((m["a-1"].rows, m["a-1"].cols), (100, 80));
    assert_eq!(m["a-2"].rows, kaldi_frames(12345, false));
    let conf = std::fs::read_to_string(root.join("modern/fbank.conf")).unwrap();
    for want in [
        "--num-mel-bins=80",
        "--dither=0",
        "--snip-edges=false",
        "--high-freq=-400",
    ] {
        assert!(conf.lines().any(|l| l == want), "{want} not in\n{conf}");
    }
    // No dither: the profile is deterministic whatever the seed.
    let m2 = fbank_with(
        root,
        &data,
        "modern_seed",
        &["--profile=modern80", "--dither-seed=9"],
    );
    assert_eq!(m, m2);

    // Bad values are refused before anything is computed, naming the option.
    let o = amdistill(
        root,
        &[
            "compute-fbank",
            "--num-mel-bins=x",
            p(&data),
            p(&root.join("bad")),
        ],
    );
    assert_failed(&o);
    assert!(stderr(&o).contains("num-mel-bins"), "{}", stderr(&o));
    let o = amdistill(
        root,
        &[
            "compute-fbank",
            "--profile=nope",
            p(&data),
            p(&root.join("bad")),
        ],
    );
    assert_failed(&o);
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
    assert!(!root.join("bad/feats.scp").exists());
}

#[test]
fn kaldi_conf_files_work_and_flags_override_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = two_utts(root);
    let conf = root.join("fbank.conf");
    std::fs::write(
        &conf,
        "# a recipe's conf/fbank.conf\n\n--num-mel-bins=40   # more bins\n--snip-edges=false\n\
         --dither=0\n--window-type=hamming\n",
    )
    .unwrap();
    let c = fbank_with(root, &data, "conf", &[&format!("--config={}", p(&conf))]);
    assert_eq!((c["a-1"].rows, c["a-1"].cols), (100, 40));
    let written = std::fs::read_to_string(root.join("conf/fbank.conf")).unwrap();
    assert!(
        written.lines().any(|l| l == "--window-type=hamming"),
        "{written}"
    );
    // The same options as flags give the same features.
    let f = fbank_with(
        root,
        &data,
        "flags",
        &[
            "--num-mel-bins=40",
            "--snip-edges=false",
            "--dither=0",
            "--window-type=hamming",
        ],
    );
    assert_eq!(c, f);
    // A flag overrides the conf file, wherever it is on the command line.
    let o = fbank_with(
        root,
        &data,
        "override",
        &["--num-mel-bins=30", "--config", p(&conf)],
    );
    assert_eq!((o["a-1"].rows, o["a-1"].cols), (100, 30));
    // --config on top of a profile.
    let pc = fbank_with(
        root,
        &data,
        "profile_conf",
        &["--profile=modern80", &format!("--config={}", p(&conf))],
    );
    assert_eq!(pc["a-1"].cols, 40);
    let json = std::fs::read_to_string(root.join("profile_conf/fbank.json")).unwrap();
    let opts: FbankOptions = serde_json::from_str(&json).unwrap();
    assert_eq!(opts.mel.high_freq, -400.0);

    // An unknown option is an error naming file:line; nothing is written.
    std::fs::write(&conf, "--num-mel-bins=40\n# fine\n--no-such-option=1\n").unwrap();
    let o = amdistill(
        root,
        &[
            "compute-fbank",
            &format!("--config={}", p(&conf)),
            p(&data),
            p(&root.join("bad")),
        ],
    );
    assert_failed(&o);
    let e = stderr(&o);
    assert!(
        e.contains(&format!("{}:3", p(&conf))) && e.contains("no-such-option"),
        "{e}"
    );
    assert!(!root.join("bad/feats.scp").exists());
    // A bad value too; and a missing conf file.
    std::fs::write(&conf, "--snip-edges=perhaps\n").unwrap();
    let o = amdistill(
        root,
        &[
            "compute-fbank",
            &format!("--config={}", p(&conf)),
            p(&data),
            p(&root.join("bad")),
        ],
    );
    assert_failed(&o);
    assert!(
        stderr(&o).contains(&format!("{}:1", p(&conf))),
        "{}",
        stderr(&o)
    );
    let o = amdistill(
        root,
        &[
            "compute-fbank",
            "--config=nowhere.conf",
            p(&data),
            p(&root.join("bad")),
        ],
    );
    assert_failed(&o);
    assert!(stderr(&o).contains("nowhere.conf"), "{}", stderr(&o));
}

// ---------------------------------------------------------------------------------------------
// Bad input

#[test]
fn every_bad_input_is_reported_by_utterance_and_the_batch_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DataDirSpec::new(tmp.path(), "data");
    d.add_wav("good-1", 16000, 1);
    d.add_wav("good-2", 8000, 2);
    d.add_wav("good-3", 400, 3);

    d.add_bytes("bad-empty", b"");
    // A valid 1 s WAV cut in the middle of its data.
    let full = d.audio_path("good-1");
    let bytes = std::fs::read(&full).unwrap();
    d.add_bytes("bad-truncated", &bytes[..bytes.len() / 2]);
    // Random bytes (fixed seed) that start with no audio magic.
    let mut s = 12345u64;
    let junk: Vec<u8> = (0..5000)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
            (s >> 56) as u8
        })
        .collect();
    assert!(!junk.starts_with(b"RIFF") && !junk.starts_with(b"NIST") && !junk.starts_with(b"fLaC"));
    d.add_bytes("bad-corrupt", &junk);
    // A RIFF file whose chunk structure is garbage after the header.
    let mut broken = bytes.clone();
    for b in &mut broken[12..44] {
        *b = 0xA5;
    }
    d.add_bytes("bad-corrupt-header", &broken);
    d.add_bytes("bad-alaw", &raw_wav(6, 16000, 8, &[0xD5; 16000]));
    d.add_bytes("bad-mulaw", &raw_wav(7, 16000, 8, &[0xFF; 16000]));
    d.add_bytes("bad-zero-length", &raw_wav(1, 16000, 16, &[]));
    let short = d.audio_path("bad-short");
    write_wav16(&short, 16000, &signal(399, 16000, 4));
    d.add("bad-short", &short);
    let mut x = signal(16000, 16000, 5);
    x[8000] = f32::NAN;
    let nan = d.audio_path("bad-nan");
    write_wav_f32(&nan, 16000, &x);
    d.add("bad-nan", &nan);
    x[8000] = 0.0;
    x[100] = f32::NEG_INFINITY;
    let inf = d.audio_path("bad-inf");
    write_wav_f32(&inf, 16000, &x);
    d.add("bad-inf", &inf);
    d.add("bad-missing", &tmp.path().join("no/such/file.wav"));
    let data = d.write();

    let feat = tmp.path().join("feats");
    let o = amdistill(tmp.path(), &["compute-fbank", p(&data), p(&feat)]);
    assert_failed(&o);
    let e = stderr(&o);
    let reasons = [
        ("bad-empty", "empty file"),
        ("bad-truncated", "truncated"),
        ("bad-corrupt", "not a WAV, NIST SPHERE or FLAC file"),
        ("bad-corrupt-header", "WAV header"),
        ("bad-alaw", "unsupported encoding: A-law"),
        ("bad-mulaw", "unsupported encoding: mu-law"),
        ("bad-zero-length", "no samples"),
        ("bad-short", "shorter than one frame"),
        ("bad-nan", "NaN"),
        ("bad-inf", "infinite"),
        ("bad-missing", "cannot open"),
    ];
    for (utt, why) in reasons {
        let line = e
            .lines()
            .find(|l| l.contains(&format!("utterance {utt}: ")))
            .unwrap_or_else(|| panic!("no line for {utt} in\n{e}"));
        assert!(line.contains(why), "{utt}: {line:?} does not say {why:?}");
    }
    assert!(e.contains("done 3 of 14 (11 failed)"), "{e}");
    assert!(e.contains("11 of 14 utterances failed"), "{e}");
    // The good ones are complete, and the feature directory lists only them.
    let feats = read_feats(&feat);
    assert_eq!(
        feats.keys().collect::<Vec<_>>(),
        ["good-1", "good-2", "good-3"]
    );
    assert_eq!(feats["good-3"].rows, 1);
    assert_eq!(table(&feat.join("utt2spk")).len(), 3);
    assert_eq!(table(&feat.join("wav.scp")).len(), 3);
    assert_eq!(table(&feat.join("utt2num_frames")).len(), 3);
    assert!(leftover_temporaries(tmp.path()).is_empty());
}

#[test]
fn sample_rate_mismatch_is_refused_without_resampling_and_resampled_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DataDirSpec::new(tmp.path(), "data");
    d.add_wav("a-16k", 16000, 1);
    let p8 = d.audio_path("a-8k");
    write_wav16(&p8, 8000, &signal(8000, 8000, 2));
    d.add("a-8k", &p8);
    let data = d.write();

    let o = amdistill(
        tmp.path(),
        &[
            "compute-fbank",
            "--resample=false",
            p(&data),
            p(&tmp.path().join("f1")),
        ],
    );
    assert_failed(&o);
    let e = stderr(&o);
    let line = e
        .lines()
        .find(|l| l.contains("utterance a-8k: "))
        .expect(&e);
    assert!(
        line.contains("8000 Hz") && line.contains("16000 Hz"),
        "{line}"
    );
    assert!(e.contains("done 1 of 2"), "{e}");

    let o = amdistill(
        tmp.path(),
        &["compute-fbank", p(&data), p(&tmp.path().join("f2"))],
    );
    assert_ok(&o);
    let feats = read_feats(&tmp.path().join("f2"));
    // 1 s at 8 kHz becomes 16000 samples: 98 frames.
    assert_eq!(feats["a-8k"].rows, 98);
    // --sample-frequency=8000 takes the 8 kHz file as it is (and resamples the other).
    let o = amdistill(
        tmp.path(),
        &[
            "compute-fbank",
            "--sample-frequency=8000",
            "--resample=false",
            p(&data),
            p(&tmp.path().join("f3")),
        ],
    );
    assert_failed(&o);
    assert_eq!(
        read_feats(&tmp.path().join("f3"))["a-8k"].rows,
        1 + (8000 - 200) / 80
    );
}

#[test]
fn segments_cut_recordings() {
    let tmp = tempfile::tempdir().unwrap();
    let mut d = DataDirSpec::new(tmp.path(), "data");
    let x = signal(48000, 16000, 7);
    let rec = d.audio_path("rec1");
    write_wav16(&rec, 16000, &x);
    d.wav_scp.insert("rec1".into(), p(&rec).into());
    // The first second as a file of its own, to compare with its segment.
    let first = d.audio_path("first");
    write_wav16(&first, 16000, &x[..16000]);
    d.wav_scp.insert("first".into(), p(&first).into());
    let segs = [
        ("s-a", "rec1 0 1.0"),
        ("s-b", "rec1 1.0 2.5"),
        ("s-c", "rec1 2.0 -1"),
        ("s-d", "first 0 1"),
        // Past the end by more than the 0.5 s tolerance: refused by name.
        ("s-e", "rec1 2.0 4.0"),
    ];
    d.segments = Some(
        segs.iter()
            .map(|(u, s)| (u.to_string(), s.to_string()))
            .collect(),
    );
    for (u, _) in segs {
        d.utt2spk.insert(u.into(), "s".into());
    }
    let data = d.write();
    let feat = tmp.path().join("feats");
    let o = amdistill(
        tmp.path(),
        &["compute-fbank", "--dither=0", p(&data), p(&feat)],
    );
    assert_failed(&o);
    let e = stderr(&o);
    assert!(
        e.lines()
            .any(|l| l.contains("utterance s-e: ") && l.contains("past")),
        "{e}"
    );
    assert!(e.contains("done 4 of 5"), "{e}");
    let feats = read_feats(&feat);
    assert_eq!(feats["s-a"].rows, kaldi_frames(16000, true));
    assert_eq!(feats["s-b"].rows, kaldi_frames(24000, true));
    assert_eq!(feats["s-c"].rows, kaldi_frames(16000, true));
    // A segment is exactly the audio it cuts.
    assert_eq!(feats["s-a"], feats["s-d"]);
    // The feature directory keeps segments and the recordings they use.
    let segs_out = table(&feat.join("segments"));
    assert_eq!(
        segs_out.keys().collect::<Vec<_>>(),
        ["s-a", "s-b", "s-c", "s-d"]
    );
    assert_eq!(table(&feat.join("wav.scp")).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Shards, atomic outputs, reruns, determinism

/// Seven utterances of different lengths.
fn seven_utts(root: &Path) -> PathBuf {
    let mut d = DataDirSpec::new(root, "data");
    for i in 0..7u64 {
        d.add_wav(&format!("spk{}-u{i}", i % 3), 4000 + 1500 * i as usize, i);
    }
    d.write()
}

#[test]
fn shards_together_equal_an_unsharded_run() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = seven_utts(root);
    // Default dither: seeded per utterance, so sharding does not change it.
    let whole = fbank_with(root, &data, "whole", &[]);
    let feat = root.join("sharded");
    for i in 1..=3 {
        let o = amdistill(
            root,
            &[
                "compute-fbank",
                "--shard",
                &format!("{i}/3"),
                p(&data),
                p(&feat),
            ],
        );
        assert_ok(&o);
        let split = table(&feat.join(format!("split3/feats.{i}.scp")));
        assert_eq!(split.len(), if i == 1 { 3 } else { 2 });
        // feats.scp appears only once every shard is done.
        assert_eq!(feat.join("feats.scp").exists(), i == 3, "after shard {i}");
    }
    assert_eq!(read_feats(&feat), whole);
    assert_eq!(
        table(&feat.join("utt2num_frames")),
        table(&root.join("whole/utt2num_frames"))
    );
    assert_eq!(table(&feat.join("utt2spk")).len(), 7);
    assert!(feat.join("fbank.conf").exists() && feat.join("frame_shift").exists());
    assert!(leftover_temporaries(root).is_empty());

    // Shards finishing in any order give the same result.
    let feat2 = root.join("sharded2");
    for i in [3, 1, 2] {
        assert_ok(&amdistill(
            root,
            &[
                "compute-fbank",
                "--shard",
                &format!("{i}/3"),
                p(&data),
                p(&feat2),
            ],
        ));
    }
    assert_eq!(read_feats(&feat2), whole);

    for bad in ["0/3", "4/3", "1/0", "x"] {
        let o = amdistill(
            root,
            &[
                "compute-fbank",
                "--shard",
                bad,
                p(&data),
                p(&root.join("bad")),
            ],
        );
        assert_failed(&o);
        assert!(stderr(&o).contains("shard"), "{bad}: {}", stderr(&o));
    }
}

/// Stale shards are never merged: a rerun with another shard count, or one shard rerun with
/// other options, does not complete `feats.scp` with the old run's shards.
#[test]
fn sharded_reruns_never_merge_stale_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = seven_utts(root);
    let feat = root.join("feats");
    let shard = |spec: &str, extra: &[&str]| {
        let mut a = vec!["compute-fbank", "--shard", spec];
        a.extend_from_slice(extra);
        a.push(p(&data));
        a.push(p(&feat));
        amdistill(root, &a)
    };
    for i in 1..=3 {
        assert_ok(&shard(&format!("{i}/3"), &[]));
    }
    assert_eq!(read_feats(&feat).len(), 7);
    // Another shard count: not complete after 1 of 2, complete after 2 of 2.
    assert_ok(&shard("1/2", &[]));
    assert!(
        !feat.join("feats.scp").exists(),
        "feats.scp merged from stale shards"
    );
    assert_ok(&shard("2/2", &[]));
    assert_eq!(read_feats(&feat), fbank_with(root, &data, "whole", &[]));
    // One shard of 3 rerun with other options: the other two are stale.
    let o = shard("2/3", &["--num-mel-bins=40"]);
    assert_ok(&o);
    assert!(stderr(&o).contains("other options"), "{}", stderr(&o));
    assert!(!feat.join("feats.scp").exists());
    for i in [1, 3] {
        assert_ok(&shard(&format!("{i}/3"), &["--num-mel-bins=40"]));
    }
    let all = read_feats(&feat);
    assert_eq!(all.len(), 7);
    assert!(all.values().all(|m| m.cols == 40));
}

#[test]
fn a_failed_run_leaves_no_feats_scp_and_a_rerun_replaces_the_previous_one() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = seven_utts(root);
    let feat = root.join("feats");
    let first = fbank_with(root, &data, "feats", &[]);
    assert_eq!(first.len(), 7);

    // Rerun on a smaller directory with other options into the same place.
    let mut d = DataDirSpec::new(root, "data2");
    d.add_wav("x-1", 9000, 11);
    d.add_wav("x-2", 5000, 12);
    let data2 = d.write();
    let second = fbank_with(root, &data2, "feats", &["--num-mel-bins=40"]);
    assert_eq!(second.keys().collect::<Vec<_>>(), ["x-1", "x-2"]);
    assert!(second.values().all(|m| m.cols == 40));
    assert_eq!(table(&feat.join("utt2num_frames")).len(), 2);
    assert_eq!(
        table(&feat.join("utt2spk")).keys().collect::<Vec<_>>(),
        ["x-1", "x-2"]
    );
    assert!(std::fs::read_to_string(feat.join("fbank.conf"))
        .unwrap()
        .contains("--num-mel-bins=40"));
    // The archive holds exactly the two new entries: the scp offsets cover it to the end.
    let ark = std::fs::read(feat.join("data/feats.1.ark")).unwrap();
    let reader = amdistill::features::kaldi_io::ArkReader::from_bytes("ark", ark);
    let keys: Vec<String> = reader.map(|e| e.unwrap().0).collect();
    assert_eq!(keys, ["x-1", "x-2"]);

    // All utterances bad: an error, and no feats.scp (the old one is gone too, since its
    // archive is being replaced).
    let mut d = DataDirSpec::new(root, "data3");
    d.add_bytes("y-1", b"");
    d.add_bytes("y-2", b"RIFF");
    let data3 = d.write();
    let o = amdistill(root, &["compute-fbank", p(&data3), p(&feat)]);
    assert_failed(&o);
    let e = stderr(&o);
    assert!(
        e.contains("no utterance produced features") && e.contains("done 0 of 2"),
        "{e}"
    );
    assert!(!feat.join("feats.scp").exists());
    assert!(
        leftover_temporaries(root).is_empty(),
        "{:?}",
        leftover_temporaries(root)
    );
    // And into a fresh directory: nothing but empty directories.
    let fresh = root.join("fresh");
    assert_failed(&amdistill(root, &["compute-fbank", p(&data3), p(&fresh)]));
    assert!(!fresh.join("feats.scp").exists() && !fresh.join("data/feats.1.ark").exists());
    assert!(leftover_temporaries(root).is_empty());
}

#[test]
fn thread_counts_give_identical_archives_and_dither_seeds_are_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let data = seven_utts(root);
    let ark = |name: &str| std::fs::read(root.join(name).join("data/feats.1.ark")).unwrap();
    let run = |name: &str, args: &[&str]| {
        let feat = root.join(name);
        let mut a: Vec<&str> = args.to_vec();
        a.push(p(&data));
        a.push(p(&feat));
        assert_ok(&amdistill(root, &a));
    };
    run("t1", &["--threads", "1", "compute-fbank"]);
    run("t2", &["--threads", "2", "compute-fbank"]);
    run("t2b", &["compute-fbank", "--threads=2"]);
    assert_eq!(ark("t1"), ark("t2"));
    assert_eq!(ark("t1"), ark("t2b"));

    run("seed0", &["compute-fbank", "--dither-seed=0"]);
    run("seed7", &["compute-fbank", "--dither-seed=7"]);
    run(
        "seed7b",
        &["--threads", "1", "compute-fbank", "--dither-seed=7"],
    );
    // Seed 0 is the default.
    assert_eq!(ark("t1"), ark("seed0"));
    assert_eq!(ark("seed7"), ark("seed7b"));
    let (a, b) = (
        read_feats(&root.join("seed0")),
        read_feats(&root.join("seed7")),
    );
    for (utt, m) in &a {
        assert_eq!((m.rows, m.cols), (b[utt].rows, b[utt].cols));
        assert_ne!(m.data, b[utt].data, "{utt}: dither seed changed nothing");
        // Dither of 1 int16 unit moves log-mel energies a little, not wholesale.
        let mean_diff: f32 = m
            .data
            .iter()
            .zip(&b[utt].data)
            .map(|(x, y)| (x - y).abs())
            .sum::<f32>()
            / m.data.len() as f32;
        assert!(mean_diff < 0.05, "{utt}: {mean_diff}");
    }
    // Without dither the seed does not matter.
    run("nod0", &["compute-fbank", "--dither=0"]);
    run("nod7", &["compute-fbank", "--dither=0", "--dither-seed=7"]);
    assert_eq!(ark("nod0"), ark("nod7"));
    assert_ne!(ark("nod0"), ark("seed0"));
}

/// Extreme values are refused by `FbankOptions::validate` with the option's name: before the
/// limits, `--sample-frequency=1e30` overflowed, `--frame-length=1e9` asked for tens of GB and
/// a NaN Blackman constant silently gave every feature the log floor.
#[test]
fn extreme_option_values_are_refused_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = two_utts(tmp.path());
    for (args, names) in [
        (&["--sample-frequency=1e30"][..], "sample-frequency"),
        (&["--sample-frequency=1e12"], "sample-frequency"),
        (&["--sample-frequency=inf"], "sample-frequency"),
        (&["--frame-length=1e9"], "frame-length"),
        (
            &["--window-type=blackman", "--blackman-coeff=nan"],
            "blackman-coeff",
        ),
    ] {
        let mut a = vec!["compute-fbank"];
        a.extend_from_slice(args);
        let out = tmp.path().join("out");
        a.push(p(&data));
        a.push(p(&out));
        let o = amdistill(tmp.path(), &a);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {e}");
        assert!(
            e.contains(names) && !e.contains("panicked"),
            "{args:?}: {e}"
        );
    }
}

/// `kill -9` at points spread over a run: whenever `feats.scp` exists it is complete (every
/// entry reads back equal to an uninterrupted run of the old or the new options), and a rerun
/// after any kill gives exactly the uninterrupted result.
#[test]
fn killed_runs_never_leave_a_partial_feats_scp_and_a_rerun_completes() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut d = DataDirSpec::new(root, "data");
    for i in 0..40u64 {
        d.add_wav(
            &format!("spk{}-u{i:02}", i % 4),
            16000 + 977 * i as usize,
            i,
        );
    }
    let data = d.write();
    let run_into = |feat: &Path, extra: &[&str]| -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_amdistill"));
        c.current_dir(root)
            .arg("--threads")
            .arg("1")
            .arg("compute-fbank")
            .args(extra);
        c.arg(&data).arg(feat);
        c
    };
    let old = fbank_with(root, &data, "old", &["--num-mel-bins=40"]);
    let start = std::time::Instant::now();
    assert!(run_into(&root.join("new"), &[])
        .output()
        .unwrap()
        .status
        .success());
    let full = start.elapsed();
    let new = read_feats(&root.join("new"));

    let feat = root.join("feats");
    assert!(run_into(&feat, &["--num-mel-bins=40"])
        .output()
        .unwrap()
        .status
        .success());
    let mut complete_after_kill = 0;
    for k in 0..12u32 {
        let mut child = run_into(&feat, &[])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread over twice the uninterrupted run, so the last kills come after it ends.
        std::thread::sleep(full.mul_f64(2.0 * (k as f64 + 0.5) / 12.0));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if feat.join("feats.scp").exists() {
            complete_after_kill += 1;
            let got = read_feats(&feat);
            assert!(
                got == old || got == new,
                "kill {k}: feats.scp is neither run's complete output"
            );
        }
        assert!(
            run_into(&feat, &[]).output().unwrap().status.success(),
            "rerun after kill {k}"
        );
        assert_eq!(read_feats(&feat), new, "rerun after kill {k}");
        assert_eq!(
            table(&feat.join("utt2num_frames")),
            table(&root.join("new/utt2num_frames"))
        );
        assert!(amdistill::features::store::FeatureStore::open(&feat).is_ok());
        // Back to the old result for the next kill.
        assert!(run_into(&feat, &["--num-mel-bins=40"])
            .output()
            .unwrap()
            .status
            .success());
    }
    eprintln!(
        "12 kills over a {full:?} run: feats.scp present (and complete) after {complete_after_kill}; \
         temporaries left by the killed runs: {}",
        leftover_temporaries(root).len()
    );
}
