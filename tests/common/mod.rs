//! Shared by the integration tests: a synthetic corpus whose spectrum depends on the phone
//! and its neighbours (tones with coarticulated glides plus noise), written as a Kaldi data
//! directory with phone times, and helpers to run the real binary.
#![allow(dead_code)]

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub const RATE: u32 = 16000;

/// One synthetic utterance: phones with times in whole milliseconds.
pub struct Utt {
    pub id: String,
    pub spk: String,
    /// `(phone, start_ms, end_ms)`, contiguous from 0.
    pub phones: Vec<(&'static str, u32, u32)>,
}

/// Tone frequency (Hz) and noise level of each phone: what makes phones tell apart.
pub fn signature(phone: &str) -> (f64, f64) {
    match phone {
        "sil" => (0.0, 0.002),
        "aa" => (700.0, 0.02),
        "iy" => (2300.0, 0.02),
        "uw" => (350.0, 0.02),
        "eh" => (1700.0, 0.02),
        "m" => (250.0, 0.01),
        "n" => (450.0, 0.01),
        "s" => (5500.0, 0.25),
        "t" => (3500.0, 0.15),
        "zh" => (4500.0, 0.1),
        other => panic!("no signature for {other}"),
    }
}

/// `n` utterances of random phone strings from `inventory`, silence at both ends, 2 speakers.
pub fn make_utts(seed: u64, prefix: &str, n: usize, inventory: &[&'static str]) -> Vec<Utt> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let spk = format!("{prefix}spk{}", i % 2 + 1);
            let mut phones = Vec::new();
            let mut t = 0;
            let mut push = |p: &'static str, dur: u32, t: &mut u32| {
                phones.push((p, *t, *t + dur));
                *t += dur;
            };
            push("sil", rng.gen_range(80..150), &mut t);
            for _ in 0..rng.gen_range(10..16) {
                let p = inventory[rng.gen_range(0..inventory.len())];
                push(p, rng.gen_range(60..140), &mut t);
            }
            push("sil", rng.gen_range(80..150), &mut t);
            Utt {
                id: format!("{spk}-{prefix}u{i:02}"),
                spk,
                phones,
            }
        })
        .collect()
}

/// Samples of `utt`: each phone a tone that glides from the mean with its left neighbour's
/// frequency to its own and on to the mean with its right neighbour's (coarticulation, so that
/// context matters at the phone edges), plus white noise.
pub fn synthesise(utt: &Utt, seed: u64) -> Vec<i16> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::new();
    let mut phase = 0.0f64;
    let n = utt.phones.len();
    for (k, &(p, start, end)) in utt.phones.iter().enumerate() {
        let (f, noise) = signature(p);
        let fl = if k > 0 {
            signature(utt.phones[k - 1].0).0
        } else {
            0.0
        };
        let fr = if k + 1 < n {
            signature(utt.phones[k + 1].0).0
        } else {
            0.0
        };
        let samples = (end - start) * RATE / 1000;
        for s in 0..samples {
            let x = s as f64 / samples as f64;
            let freq = if f == 0.0 {
                0.0
            } else if x < 0.33 {
                let a = x / 0.33;
                (0.5 * (fl + f)) * (1.0 - a) + f * a
            } else if x > 0.67 {
                let a = (x - 0.67) / 0.33;
                f * (1.0 - a) + 0.5 * (f + fr) * a
            } else {
                f
            };
            phase += 2.0 * PI * freq / RATE as f64;
            let tone = if f == 0.0 { 0.0 } else { 0.3 * phase.sin() };
            let v = tone + noise * (rng.gen::<f64>() * 2.0 - 1.0);
            out.push((v * 32767.0).round().clamp(-32768.0, 32767.0) as i16);
        }
    }
    out
}

/// A data directory (wav.scp, utt2spk, text, phones.ctm) with one WAV per utterance.
pub fn write_data_dir(dir: &Path, utts: &[Utt], seed: u64) {
    std::fs::create_dir_all(dir.join("wav")).unwrap();
    let (mut scp, mut u2s, mut text, mut ctm) =
        (String::new(), String::new(), String::new(), String::new());
    for (i, u) in utts.iter().enumerate() {
        let wav = dir.join("wav").join(format!("{}.wav", u.id));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&wav, spec).unwrap();
        for s in synthesise(u, seed + i as u64) {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
        scp.push_str(&format!("{} {}\n", u.id, wav.display()));
        u2s.push_str(&format!("{} {}\n", u.id, u.spk));
        let words: Vec<&str> = u.phones.iter().map(|p| p.0).collect();
        text.push_str(&format!("{} {}\n", u.id, words.join(" ")));
        for &(p, s, e) in &u.phones {
            // Upper case with stress, as the CMU dictionary writes them: the set normalises.
            let label = match p {
                "sil" => "SIL".to_string(),
                "aa" | "iy" | "uw" | "eh" => format!("{}1", p.to_uppercase()),
                _ => p.to_uppercase(),
            };
            ctm.push_str(&format!(
                "{} 1 {:.3} {:.3} {label}\n",
                u.id,
                s as f64 / 1000.0,
                (e - s) as f64 / 1000.0
            ));
        }
    }
    std::fs::write(dir.join("wav.scp"), scp).unwrap();
    std::fs::write(dir.join("utt2spk"), u2s).unwrap();
    std::fs::write(dir.join("text"), text).unwrap();
    std::fs::write(dir.join("phones.ctm"), ctm).unwrap();
}

pub fn amdistill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .args(args)
        .output()
        .expect("run amdistill")
}

pub fn ok(args: &[&str]) -> Output {
    let out = amdistill(args);
    assert!(
        out.status.success(),
        "amdistill {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub const TRAIN_PHONES: &[&str] = &["aa", "iy", "uw", "eh", "m", "n", "s", "t"];

/// A feature directory of `n` synthetic utterances (a data dir under `root/data_NAME`, features
/// in `root/feat_NAME`).
pub fn feature_dir(
    root: &Path,
    name: &str,
    seed: u64,
    n: usize,
    inventory: &[&'static str],
) -> PathBuf {
    let data = root.join(format!("data_{name}"));
    let feat = root.join(format!("feat_{name}"));
    write_data_dir(&data, &make_utts(seed, name, n, inventory), seed * 1000);
    ok(&["compute-fbank", s(&data), s(&feat)]);
    feat
}

/// A train + dev corpus through the real pipeline (compute-fbank, build-tree,
/// make-alignments) under `root`: (train features, train ali, dev features, dev ali, tree dir).
pub fn small_pipeline(
    root: &Path,
    n_train: usize,
    n_dev: usize,
) -> (PathBuf, PathBuf, PathBuf, PathBuf, PathBuf) {
    let train = feature_dir(root, "train", 11, n_train, TRAIN_PHONES);
    let dev = feature_dir(root, "dev", 12, n_dev, TRAIN_PHONES);
    let tree = root.join("tree");
    ok(&[
        "build-tree",
        s(&train),
        s(&tree),
        "--min-occupancy",
        "10",
        "--num-leaves",
        "150",
    ]);
    let mut alis = Vec::new();
    for (name, feat) in [("train", &train), ("dev", &dev)] {
        let dir = root.join("ali").join(name);
        ok(&["make-alignments", s(feat), s(&tree), s(&dir)]);
        alis.push(dir.join("ali.txt"));
    }
    let dev_ali = alis.pop().unwrap();
    let train_ali = alis.pop().unwrap();
    (train, train_ali, dev, dev_ali, tree)
}
