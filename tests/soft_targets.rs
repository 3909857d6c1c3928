//! The soft-target store: round trips (top-k and dense), temperature, shards and merging,
//! refusal of truncated, corrupt and stale files, compatibility checks, and Kaldi import.

use std::path::Path;

use amdistill::features::kaldi_io::ArkWriter;
use amdistill::features::matrix::Matrix;
use amdistill::labels::soft_targets::{
    import_kaldi_ark, merge_shards, LogitsKind, SoftTargetMeta, SoftTargetStore, SoftTargetWriter,
    UttTargets,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn meta(k: usize, s: usize, dense: bool) -> SoftTargetMeta {
    SoftTargetMeta {
        k,
        num_senones: s,
        dense,
        frame_shift: 0.01,
        teacher: serde_json::json!({"name": "test-teacher", "config_hash": "abc123"}),
        senones_id: "tree-sha256:0123".to_string(),
    }
}

/// `[frames, s]` logits: mostly N(0, 3), with a few frames' peaks well above.
fn random_logits(rng: &mut ChaCha8Rng, frames: usize, s: usize) -> Vec<f32> {
    (0..frames * s)
        .map(|i| {
            let x: f32 = rng.gen_range(-6.0..6.0);
            if i % s == (i / s * 7) % s {
                x + 8.0
            } else {
                x
            }
        })
        .collect()
}

/// The row as the store keeps it: shifted to a maximum of 0 and rounded to f16.
fn f16_row(row: &[f32]) -> Vec<f32> {
    let m = row.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
    row.iter()
        .map(|&x| half::f16::from_f32(x - m).to_f32())
        .collect()
}

/// Relative error of probabilities at temperature `t` that f16 logits allow: each logit is off
/// by at most |x - max| · 2^-11, the normaliser by at most the largest of those.
fn f16_tolerance(row: &[f32], t: f64) -> f64 {
    let (lo, hi) = row
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    2.0 * (hi - lo) as f64 * 2f64.powi(-11) / t + 1e-6
}

fn softmax(row: &[f32], t: f64) -> Vec<f64> {
    let m = row
        .iter()
        .fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64 / t));
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 / t - m).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|x| x / z).collect()
}

/// Utterances `utt00 ..` with 1 to 60 frames.
fn corpus(seed: u64, n: usize, s: usize) -> Vec<(String, usize, Vec<f32>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let frames = 1 + (i * 17) % 60;
            (
                format!("utt{i:02}"),
                frames,
                random_logits(&mut rng, frames, s),
            )
        })
        .collect()
}

fn write_store(dir: &Path, m: SoftTargetMeta, utts: &[(String, usize, Vec<f32>)]) {
    let mut w = SoftTargetWriter::create(dir, m, None).unwrap();
    // Out of order on purpose: the scp comes out sorted.
    for (utt, frames, logits) in utts.iter().rev() {
        w.add(utt, logits, *frames).unwrap();
    }
    let sum = w.finish().unwrap();
    assert_eq!(sum.utterances, utts.len());
    assert_eq!(sum.frames, utts.iter().map(|u| u.1 as u64).sum::<u64>());
}

fn err_of<T>(r: amdistill::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn topk_round_trip_matches_softmax_of_true_logits() {
    let (s, k) = (50, 10);
    let dir = tempfile::tempdir().unwrap();
    let utts = corpus(1, 6, s);
    write_store(dir.path(), meta(k, s, false), &utts);
    let store = SoftTargetStore::open(dir.path()).unwrap();
    assert_eq!(store.meta(), &meta(k, s, false));
    let names: Vec<&str> = store.utts().iter().map(|u| u.as_str()).collect();
    assert_eq!(names, utts.iter().map(|u| u.0.as_str()).collect::<Vec<_>>());
    for (utt, frames, logits) in &utts {
        assert_eq!(store.num_frames(utt), Some(*frames));
        let t = store.get(utt).unwrap();
        assert_eq!(
            (t.frames, t.k, t.ids.len(), t.rest_lse.len()),
            (*frames, k, frames * k, *frames)
        );
        let (probs, rest) = t.probs_at(1.0, 0, *frames);
        for f in 0..*frames {
            let row = &logits[f * s..(f + 1) * s];
            let p = softmax(row, 1.0);
            let mut order: Vec<usize> = (0..s).collect();
            order.sort_by(|&a, &b| row[b].partial_cmp(&row[a]).unwrap().then(a.cmp(&b)));
            let ids: Vec<usize> = t.ids[f * k..(f + 1) * k]
                .iter()
                .map(|&i| i as usize)
                .collect();
            assert_eq!(
                ids,
                order[..k],
                "{utt} frame {f}: the true top {k} in order"
            );
            assert_eq!(t.argmax(f) as usize, order[0]);
            // Exact for the f16 logits and the f64 rest; within f16's error of the true logits.
            let tol = f16_tolerance(&row[..], 1.0);
            let r16 = f16_row(row);
            let rest_lse = (order[k..].iter().map(|&j| p[j]).sum::<f64>() / p[order[0]]).ln();
            let z16: f64 = ids.iter().map(|&j| (r16[j] as f64).exp()).sum::<f64>() + rest_lse.exp();
            for j in 0..k {
                let (got, want) = (probs[f * k + j] as f64, p[ids[j]]);
                assert!(
                    (got - want).abs() <= tol * want,
                    "{utt} frame {f} id {}: {got} vs {want}",
                    ids[j]
                );
                let exact = (r16[ids[j]] as f64).exp() / z16;
                assert!(
                    (got - exact).abs() <= 1e-5 * exact,
                    "{utt} frame {f} id {}: {got} vs {exact}",
                    ids[j]
                );
            }
            let true_rest: f64 = order[k..].iter().map(|&j| p[j]).sum();
            assert!(
                (rest[f] as f64 - true_rest).abs() <= tol * true_rest,
                "{utt} frame {f}: rest {} vs {true_rest}",
                rest[f]
            );
            let total: f64 = probs[f * k..(f + 1) * k]
                .iter()
                .map(|&x| x as f64)
                .sum::<f64>()
                + rest[f] as f64;
            assert!((total - 1.0).abs() < 1e-5);
        }
        // A span in the middle is the same as those rows of the whole.
        if *frames >= 5 {
            let (p2, r2) = t.probs_at(1.0, 2, 3);
            assert_eq!(p2, probs[2 * k..5 * k]);
            assert_eq!(r2, rest[2..5]);
        }
    }
}

/// `get_frames` (what training reads: a chunk of an utterance) equals the same frames of
/// `get`, for every span of every utterance; spans outside the record are refused.
#[test]
fn frame_ranges_equal_the_whole_record_sliced() {
    let (s, k) = (30, 5);
    let dir = tempfile::tempdir().unwrap();
    let utts = corpus(9, 4, s);
    write_store(dir.path(), meta(k, s, false), &utts);
    let store = SoftTargetStore::open(dir.path()).unwrap();
    for (utt, frames, _) in &utts {
        let all = store.get(utt).unwrap();
        for start in 0..*frames {
            for len in [0, 1, 3, frames - start] {
                if start + len > *frames {
                    continue;
                }
                let t = store.get_frames(utt, start, len).unwrap();
                assert_eq!(t.frames, len);
                assert_eq!(t.ids, all.ids[start * k..(start + len) * k]);
                assert_eq!(t.logits, all.logits[start * k..(start + len) * k]);
                assert_eq!(t.rest_lse, all.rest_lse[start..start + len]);
            }
        }
        let e = err_of(store.get_frames(utt, *frames - 1, 2));
        assert!(e.contains(utt.as_str()) && e.contains("requested"), "{e}");
    }
}

#[test]
fn rest_mass_is_exact_at_t2_and_bounded_elsewhere() {
    let (s, k) = (200, 10);
    let dir = tempfile::tempdir().unwrap();
    let utts = corpus(2, 3, s);
    write_store(dir.path(), meta(k, s, false), &utts);
    let store = SoftTargetStore::open(dir.path()).unwrap();
    let m = (s - k) as f64;
    for (utt, frames, logits) in &utts {
        let t = store.get(utt).unwrap();
        assert_eq!(t.rest_lse_half.len(), *frames);
        let (p1, _) = t.probs_at(1.0, 0, *frames);
        for temp in [1.5f32, 2.0, 4.0] {
            let (p, rest) = t.probs_at(temp, 0, *frames);
            for f in 0..*frames {
                let row = &logits[f * s..(f + 1) * s];
                let truth = softmax(row, temp as f64);
                let kept: Vec<usize> = t.ids[f * k..(f + 1) * k]
                    .iter()
                    .map(|&i| i as usize)
                    .collect();
                let true_rest: f64 = (0..s).filter(|j| !kept.contains(j)).map(|j| truth[j]).sum();
                let got = rest[f] as f64;
                if temp == 2.0 {
                    // Both stored sums are exact at T = 2 (up to the f16 kept logits).
                    assert!(
                        (got - true_rest).abs() <= 2e-3 * true_rest + 1e-6,
                        "{utt} frame {f}: {got} vs {true_rest}"
                    );
                }
                // Never above the even spread of the dropped mass (the largest possible tail).
                let r1 = t.rest_lse[f] as f64;
                let even = m.ln() + (r1 - m.ln()) / temp as f64;
                let kept_sum: f64 = t.logits[f * k..(f + 1) * k]
                    .iter()
                    .map(|&l| (l as f64 / temp as f64).exp())
                    .sum();
                let upper = even.exp() / (even.exp() + kept_sum);
                assert!(got <= upper * (1.0 + 1e-5) + 1e-7, "{got} > {upper}");
                // Higher T flattens: the top id loses probability, the order stays.
                assert!(p[f * k] <= p1[f * k] + 1e-6);
                for j in 1..k {
                    assert!(p[f * k + j] <= p[f * k + j - 1] + 1e-7);
                }
            }
        }
    }
}

#[test]
fn format_1_stores_are_read_with_the_even_spread() {
    // A store written by format 1 (before the rest at T = 2): 2 utterances, k = 4 of 1,000.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/soft_targets_v1");
    let store = SoftTargetStore::open(&dir).unwrap();
    assert_eq!(store.bytes_per_frame(), 4 * 4 + 4);
    assert_eq!(store.total_frames(), 650);
    let m = 996f64;
    for utt in store.utts().to_vec() {
        let t = store.get(&utt).unwrap();
        assert!(t.rest_lse_half.is_empty());
        let (p2, r2) = t.probs_at(2.0, 0, t.frames);
        for f in 0..t.frames {
            let even = m.ln() + (t.rest_lse[f] as f64 - m.ln()) / 2.0;
            let kept: Vec<f64> = t.logits[f * 4..(f + 1) * 4]
                .iter()
                .map(|&l| (l as f64 / 2.0).exp())
                .collect();
            let z = kept.iter().sum::<f64>() + even.exp();
            assert!((r2[f] as f64 - even.exp() / z).abs() < 1e-6);
            for j in 0..4 {
                assert!((p2[f * 4 + j] as f64 - kept[j] / z).abs() < 1e-6);
            }
        }
    }
}

#[test]
fn dense_round_trip_is_exact_within_f16_at_any_temperature() {
    let s = 40;
    let dir = tempfile::tempdir().unwrap();
    let utts = corpus(3, 4, s);
    write_store(dir.path(), meta(s, s, true), &utts);
    let store = SoftTargetStore::open(dir.path()).unwrap();
    assert_eq!(store.bytes_per_frame(), 2 * s);
    for (utt, frames, logits) in &utts {
        let t = store.get(utt).unwrap();
        assert_eq!(t.k, s);
        for temp in [1.0f32, 2.0, 4.0] {
            let (probs, rest) = t.probs_at(temp, 0, *frames);
            assert!(rest.iter().all(|&r| r == 0.0), "nothing is dropped");
            for f in 0..*frames {
                let row = &logits[f * s..(f + 1) * s];
                let p = softmax(row, temp as f64);
                let p16 = softmax(&f16_row(row), temp as f64);
                let tol = f16_tolerance(row, temp as f64);
                for j in 0..s {
                    assert_eq!(t.ids[f * s + j] as usize, j);
                    let got = probs[f * s + j] as f64;
                    assert!(
                        (got - p16[j]).abs() <= 1e-5 * p16[j],
                        "{utt} T={temp} f{f} s{j}: {got} vs {}",
                        p16[j]
                    );
                    assert!(
                        (got - p[j]).abs() <= tol * p[j],
                        "{utt} T={temp} f{f} s{j}: {got} vs {}",
                        p[j]
                    );
                }
            }
        }
    }
}

#[test]
fn sharded_write_and_merge_equals_unsharded() {
    let (s, k) = (30, 5);
    let utts = corpus(4, 11, s);
    let whole = tempfile::tempdir().unwrap();
    write_store(whole.path(), meta(k, s, false), &utts);
    let sharded = tempfile::tempdir().unwrap();
    let n = 3;
    for i in 1..=n {
        let mut w =
            SoftTargetWriter::create(sharded.path(), meta(k, s, false), Some((i, n))).unwrap();
        for (utt, frames, logits) in utts.iter().skip(i - 1).step_by(n) {
            w.add(utt, logits, *frames).unwrap();
        }
        w.finish().unwrap();
        if i < n {
            let e = err_of(SoftTargetStore::open(sharded.path()));
            assert!(e.contains("targets.scp") && e.contains("incomplete"), "{e}");
        }
    }
    let sum = merge_shards(sharded.path(), n).unwrap();
    assert_eq!(sum.utterances, utts.len());
    let a = SoftTargetStore::open(whole.path()).unwrap();
    let b = SoftTargetStore::open(sharded.path()).unwrap();
    assert_eq!(a.meta(), b.meta());
    assert_eq!(a.utts(), b.utts());
    assert_eq!(a.total_frames(), b.total_frames());
    for utt in a.utts() {
        assert_eq!(a.get(utt).unwrap(), b.get(utt).unwrap(), "{utt}");
    }
}

#[test]
fn merge_refuses_missing_stale_and_changed_shards() {
    let (s, k) = (20, 4);
    let utts = corpus(5, 6, s);
    let dir = tempfile::tempdir().unwrap();
    let write_shard = |i: usize, m: SoftTargetMeta, list: &[(String, usize, Vec<f32>)]| {
        let mut w = SoftTargetWriter::create(dir.path(), m, Some((i, 2))).unwrap();
        for (utt, frames, logits) in list {
            w.add(utt, logits, *frames).unwrap();
        }
        w.finish().unwrap();
    };
    write_shard(1, meta(k, s, false), &utts[..3]);
    let e = err_of(merge_shards(dir.path(), 2));
    assert!(
        e.contains("targets.2.json") && e.contains("not finished"),
        "{e}"
    );

    // Shard 2 from another teacher: a stale shard of an earlier run.
    let mut other = meta(k, s, false);
    other.teacher = serde_json::json!({"name": "older-teacher"});
    write_shard(2, other, &utts[3..]);
    let e = err_of(merge_shards(dir.path(), 2));
    assert!(
        e.contains("older-teacher") && e.contains("test-teacher") && e.contains("rerun shard 2/2"),
        "{e}"
    );

    // The same utterance in both shards.
    write_shard(2, meta(k, s, false), &utts[2..]);
    let e = err_of(merge_shards(dir.path(), 2));
    assert!(e.contains("utterance utt02 is in shards 1 and 2"), "{e}");

    // A bin rewritten after its shard finished.
    write_shard(2, meta(k, s, false), &utts[3..]);
    let bin = dir.path().join("targets.2-of-2.bin");
    let mut bytes = std::fs::read(&bin).unwrap();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&bin, &bytes).unwrap();
    let e = err_of(merge_shards(dir.path(), 2));
    assert!(
        e.contains("targets.2-of-2.bin") && e.contains("rerun the shard"),
        "{e}"
    );

    write_shard(2, meta(k, s, false), &utts[3..]);
    merge_shards(dir.path(), 2).unwrap();
    assert_eq!(SoftTargetStore::open(dir.path()).unwrap().utts().len(), 6);
    // Rewriting any shard takes the merged store out of service until the next merge.
    write_shard(1, meta(k, s, false), &utts[..3]);
    assert!(SoftTargetStore::open(dir.path()).is_err());
}

#[test]
fn truncated_and_corrupt_files_are_refused_with_their_names() {
    let (s, k) = (20, 4);
    let utts = corpus(6, 3, s);
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), meta(k, s, false), &utts);
        dir
    };
    let bin_of = |d: &Path| d.join("targets.1.bin");

    // write_store adds the utterances in reverse: the file holds utt02, utt01, utt00.
    // Truncated: the last record's payload is cut.
    let dir = fresh();
    let mut bytes = std::fs::read(bin_of(dir.path())).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(bin_of(dir.path()), &bytes).unwrap();
    let e = err_of(SoftTargetStore::open(dir.path()));
    assert!(
        e.contains("targets.1.bin") && e.contains("utt00") && e.contains("truncated"),
        "{e}"
    );

    // A payload byte flipped: opens, but reading that utterance fails the checksum.
    let dir = fresh();
    let mut bytes = std::fs::read(bin_of(dir.path())).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x40;
    std::fs::write(bin_of(dir.path()), &bytes).unwrap();
    let store = SoftTargetStore::open(dir.path()).unwrap();
    store.get("utt02").unwrap();
    let e = err_of(store.get("utt00"));
    assert!(
        e.contains("targets.1.bin") && e.contains("utt00") && e.contains("checksum"),
        "{e}"
    );
    // A read of a few frames (what training does) verifies the whole record too.
    let e = err_of(store.get_frames("utt00", 0, 1));
    assert!(e.contains("checksum"), "{e}");

    // A frame count far beyond the file: refused before anything is allocated.
    let dir = fresh();
    let mut bytes = std::fs::read(bin_of(dir.path())).unwrap();
    let frames_at = 8 + "utt02".len();
    bytes[frames_at..frames_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    std::fs::write(bin_of(dir.path()), &bytes).unwrap();
    let e = err_of(SoftTargetStore::open(dir.path()));
    assert!(
        e.contains("targets.1.bin") && e.contains("utt02") && e.contains("4294967295 frames"),
        "{e}"
    );

    // Bad magic (an scp that points at the wrong byte).
    let dir = fresh();
    let scp = std::fs::read_to_string(dir.path().join("targets.scp")).unwrap();
    let scp = scp.replacen("targets.1.bin:0", "targets.1.bin:1", 1);
    std::fs::write(dir.path().join("targets.scp"), scp).unwrap();
    let e = err_of(SoftTargetStore::open(dir.path()));
    assert!(
        e.contains("targets.1.bin") && e.contains("utt02") && e.contains("bad magic"),
        "{e}"
    );

    // A header that lies about the counts.
    let dir = fresh();
    let json = std::fs::read_to_string(dir.path().join("targets.json")).unwrap();
    let json = json.replace("\"utterances\": 3", "\"utterances\": 4");
    std::fs::write(dir.path().join("targets.json"), json).unwrap();
    let e = err_of(SoftTargetStore::open(dir.path()));
    assert!(
        e.contains("targets.json") && e.contains("3 utterances"),
        "{e}"
    );
}

#[test]
fn writer_refuses_bad_input() {
    let (s, k) = (5, 2);
    let dir = tempfile::tempdir().unwrap();
    let mut w = SoftTargetWriter::create(dir.path(), meta(k, s, false), None).unwrap();
    let mut row = vec![0.0f32; 2 * s];
    let e = w.add("a", &row[..7], 2).unwrap_err().to_string();
    assert!(
        e.contains("utterance a") && e.contains("7 logits for 2 frames x 5"),
        "{e}"
    );
    row[7] = f32::NAN;
    let e = w.add("a", &row, 2).unwrap_err().to_string();
    assert!(e.contains("frame 1, senone 2"), "{e}");
    row[7] = f32::NEG_INFINITY; // probability 0 is fine
    w.add("a", &row, 2).unwrap();
    let e = w.add("a", &row, 2).unwrap_err().to_string();
    assert!(e.contains("twice"), "{e}");
    assert!(w.add("has space", &row, 2).is_err());
    let e = SoftTargetWriter::create(dir.path(), meta(3, 5, true), None)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("k 3 must equal num_senones 5"), "{e}");
    assert!(SoftTargetWriter::create(dir.path(), meta(6, 5, false), None).is_err());
    assert!(SoftTargetWriter::create(dir.path(), meta(2, 70000, false), None).is_err());
}

#[test]
fn compatibility_check_names_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), meta(4, 20, false), &corpus(7, 2, 20));
    let store = SoftTargetStore::open(dir.path()).unwrap();
    store
        .check_compatible(20, "tree-sha256:0123", 0.01)
        .unwrap();
    let e = store
        .check_compatible(30, "tree-sha256:9999", 0.01)
        .unwrap_err();
    assert!(matches!(e, amdistill::Error::Mismatch(_)));
    let e = e.to_string();
    assert!(
        e.contains("20 senones")
            && e.contains("tree-sha256:0123")
            && e.contains("30")
            && e.contains("tree-sha256:9999"),
        "{e}"
    );
    let e = store
        .check_compatible(20, "tree-sha256:0123", 0.03)
        .unwrap_err()
        .to_string();
    assert!(e.contains("0.01") && e.contains("0.03"), "{e}");
    let e = err_of(store.get("nope"));
    assert!(e.contains("nope") && e.contains("no soft targets"), "{e}");
}

#[test]
fn kaldi_ark_import_matches_direct_write() {
    let (s, k) = (25, 6);
    let utts = corpus(8, 3, s);
    let dir = tempfile::tempdir().unwrap();
    // Log posteriors and posteriors of the same logits, as nnet3-compute writes them.
    let log_post = |logits: &[f32]| -> Vec<f32> {
        logits
            .chunks(s)
            .flat_map(|row| {
                softmax(row, 1.0)
                    .into_iter()
                    .map(|p| p.ln() as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let ark_lp = dir.path().join("logpost.ark");
    let ark_p = dir.path().join("post.ark");
    let mut w_lp = ArkWriter::create(&ark_lp).unwrap();
    let mut w_p = ArkWriter::create(&ark_p).unwrap();
    for (utt, frames, logits) in &utts {
        let lp = log_post(logits);
        w_lp.write_matrix(utt, &Matrix::from_vec(*frames, s, lp.clone()))
            .unwrap();
        let p: Vec<f32> = lp.iter().map(|x| x.exp()).collect();
        w_p.write_matrix(utt, &Matrix::from_vec(*frames, s, p))
            .unwrap();
    }
    // One bad utterance (a posterior above 1) in the posterior archive: skipped.
    w_p.write_matrix("zz_bad", &Matrix::from_vec(1, s, vec![2.0; s]))
        .unwrap();
    w_lp.commit().unwrap();
    w_p.commit().unwrap();

    let direct = dir.path().join("direct");
    write_store(&direct, meta(k, s, false), &utts);
    let direct = SoftTargetStore::open(&direct).unwrap();
    for (ark, kind, expect_total) in [
        (&ark_lp, LogitsKind::LogPosteriors, 3),
        (&ark_p, LogitsKind::Posteriors, 4),
    ] {
        let out = dir.path().join(format!("{kind:?}"));
        let sum = import_kaldi_ark(ark, &out, meta(999, s, false), kind, k).unwrap();
        assert_eq!((sum.done, sum.total), (3, expect_total));
        let store = SoftTargetStore::open(&out).unwrap();
        assert_eq!(store.meta().k, k);
        for (utt, frames, _) in &utts {
            let (a, b): (UttTargets, UttTargets) =
                (direct.get(utt).unwrap(), store.get(utt).unwrap());
            assert_eq!(a.ids, b.ids, "{kind:?} {utt}");
            let (pa, ra) = a.probs_at(1.0, 0, *frames);
            let (pb, rb) = b.probs_at(1.0, 0, *frames);
            for (x, y) in pa.iter().zip(&pb).chain(ra.iter().zip(&rb)) {
                assert!(
                    (x - y).abs() <= 3e-3 * x + 1e-6,
                    "{kind:?} {utt}: {x} vs {y}"
                );
            }
        }
    }
    // A column count that is not the senone table's is an error, naming the archive.
    let e = err_of(import_kaldi_ark(
        &ark_lp,
        &dir.path().join("x"),
        meta(k, 30, false),
        LogitsKind::Logits,
        k,
    ));
    assert!(e.contains("logpost.ark") && e.contains("25 columns"), "{e}");
}

#[test]
fn bytes_per_frame_and_file_sizes() {
    // 48 bytes per frame at k = 10 (10 u16 ids, 10 f16 logits, two f32 rests); dense is 2·S.
    for (k, s, dense, want) in [
        (10, 1000, false, 48),
        (10, 2000, false, 48),
        (1000, 1000, true, 2000),
        (2000, 2000, true, 4000),
    ] {
        let m = meta(k, s, dense);
        assert_eq!(m.bytes_per_frame(), want);
        eprintln!(
            "k={k} S={s} dense={dense}: {want} bytes/frame, {:.1} MB per hour at 100 frames/s",
            want as f64 * 360_000.0 / 1e6
        );
    }
    // The records take exactly header + frames · bytes_per_frame.
    let (s, k) = (1000, 10);
    let utts = corpus(9, 3, s);
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), meta(k, s, false), &utts);
    let size = std::fs::metadata(dir.path().join("targets.1.bin"))
        .unwrap()
        .len() as usize;
    let want: usize = utts.iter().map(|(u, f, _)| 24 + u.len() + f * 48).sum();
    assert_eq!(size, want);
}
