//! CMVN statistics: hand-computed sums, Kaldi's matrix layout, normalisation, the cmvn.ark /
//! cmvn.scp table, and the `compute-cmvn` command.

use std::path::Path;
use std::process::Command;

use amdistill::features::cmvn::{read_cmvn_table, write_cmvn_table, CmvnStats};
use amdistill::features::kaldi_io::{ArkWriter, DoubleMatrix};
use amdistill::features::Matrix;
use amdistill::Error;

fn m(rows: usize, cols: usize, data: &[f32]) -> Matrix {
    Matrix::from_vec(rows, cols, data.to_vec())
}

fn pseudo(rows: usize, cols: usize, seed: u32) -> Matrix {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(99);
    let data = (0..rows * cols)
        .map(|i| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            // Different offsets and spreads per column, as real features have.
            let c = (i % cols) as f32;
            ((s >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * (1.0 + c) + 3.0 * c - 5.0
        })
        .collect();
    Matrix::from_vec(rows, cols, data)
}

fn column_moments(x: &Matrix) -> (Vec<f64>, Vec<f64>) {
    let n = x.rows as f64;
    let mut mean = vec![0f64; x.cols];
    let mut var = vec![0f64; x.cols];
    for r in x.rows_iter() {
        for (c, &v) in r.iter().enumerate() {
            mean[c] += v as f64 / n;
        }
    }
    for r in x.rows_iter() {
        for (c, &v) in r.iter().enumerate() {
            var[c] += (v as f64 - mean[c]).powi(2) / n;
        }
    }
    (mean, var)
}

#[test]
fn statistics_match_hand_computation() {
    let feats = m(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 9.0]);
    let mut s = CmvnStats::new(2);
    s.accumulate(&feats).unwrap();
    assert_eq!(s.count, 3.0);
    assert_eq!(s.sum, vec![9.0, 15.0]);
    assert_eq!(s.sum_sq, vec![35.0, 101.0]);
    assert_eq!(s.mean(), vec![3.0, 5.0]);
    let var = s.variance();
    assert!(
        (var[0] - 8.0 / 3.0).abs() < 1e-12 && (var[1] - 26.0 / 3.0).abs() < 1e-12,
        "{var:?}"
    );
}

#[test]
fn add_equals_accumulating_everything() {
    let (a, b) = (pseudo(17, 4, 1), pseudo(9, 4, 2));
    let mut sa = CmvnStats::new(4);
    sa.accumulate(&a).unwrap();
    let mut sb = CmvnStats::new(4);
    sb.accumulate(&b).unwrap();
    sa.add(&sb).unwrap();
    let mut all = CmvnStats::new(4);
    all.accumulate(&a).unwrap();
    all.accumulate(&b).unwrap();
    assert_eq!(all.count, sa.count);
    for (x, y) in all
        .sum
        .iter()
        .zip(&sa.sum)
        .chain(all.sum_sq.iter().zip(&sa.sum_sq))
    {
        assert!((x - y).abs() <= 1e-9 * x.abs().max(1.0), "{x} vs {y}");
    }
    assert!(matches!(
        sa.add(&CmvnStats::new(3)),
        Err(Error::Mismatch(_))
    ));
    assert!(matches!(
        sa.accumulate(&pseudo(2, 5, 0)),
        Err(Error::Mismatch(_))
    ));
}

#[test]
fn kaldi_matrix_layout_and_round_trip() {
    let mut s = CmvnStats::new(2);
    s.accumulate(&m(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 9.0]))
        .unwrap();
    let k = s.to_kaldi_matrix();
    assert_eq!((k.rows, k.cols), (2, 3));
    assert_eq!(k.data, vec![9.0, 15.0, 3.0, 35.0, 101.0, 0.0]);
    assert_eq!(CmvnStats::from_kaldi_matrix(&k).unwrap(), s);
    let bad = DoubleMatrix {
        rows: 1,
        cols: 3,
        data: vec![1.0, 2.0, 3.0],
    };
    assert!(CmvnStats::from_kaldi_matrix(&bad).is_err());
}

#[test]
fn apply_gives_zero_mean_and_unit_variance() {
    let feats = pseudo(200, 6, 7);
    let mut s = CmvnStats::new(6);
    s.accumulate(&feats).unwrap();

    let mut mean_only = feats.clone();
    s.apply(&mut mean_only, false).unwrap();
    let (mean, var) = column_moments(&mean_only);
    let (_, var_before) = column_moments(&feats);
    for c in 0..6 {
        assert!(mean[c].abs() < 1e-5, "column {c} mean {}", mean[c]);
        // Mean subtraction leaves the spread alone.
        assert!(
            (var[c] - var_before[c]).abs() < 1e-4 * var_before[c],
            "column {c}"
        );
    }

    let mut normed = feats.clone();
    s.apply(&mut normed, true).unwrap();
    let (mean, var) = column_moments(&normed);
    for c in 0..6 {
        assert!(mean[c].abs() < 1e-5, "column {c} mean {}", mean[c]);
        assert!(
            (var[c] - 1.0).abs() < 1e-4,
            "column {c} variance {}",
            var[c]
        );
    }
}

#[test]
fn apply_refuses_bad_statistics() {
    let s = CmvnStats::new(3);
    let mut x = pseudo(4, 3, 1);
    let err = s.apply(&mut x, false).unwrap_err().to_string();
    assert!(err.contains("count = 0"), "{err}");
    let mut s = CmvnStats::new(2);
    s.accumulate(&pseudo(4, 2, 1)).unwrap();
    assert!(matches!(s.apply(&mut x, true), Err(Error::Mismatch(_))));
    // A constant column has zero variance: floored, not a division by zero.
    let mut c = m(3, 1, &[2.0, 2.0, 2.0]);
    let mut sc = CmvnStats::new(1);
    sc.accumulate(&c).unwrap();
    sc.apply(&mut c, true).unwrap();
    assert!(
        c.data.iter().all(|v| v.is_finite() && v.abs() < 1e-3),
        "{:?}",
        c.data
    );
}

#[test]
fn cmvn_table_round_trip_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (ark, scp) = (dir.path().join("cmvn.ark"), dir.path().join("cmvn.scp"));
    let mut s1 = CmvnStats::new(2);
    s1.accumulate(&m(3, 2, &[1.0, 2.0, 3.0, 4.0, 5.0, 9.0]))
        .unwrap();
    let mut s2 = CmvnStats::new(2);
    s2.accumulate(&pseudo(10, 2, 3)).unwrap();
    write_cmvn_table(&ark, &scp, [("spkA", &s1), ("spkB", &s2)]).unwrap();

    // "spkA " \0B "DM " \4 rows \4 cols then 6 little-endian doubles.
    let bytes = std::fs::read(&ark).unwrap();
    let mut expected = b"spkA \0BDM \x04\x02\x00\x00\x00\x04\x03\x00\x00\x00".to_vec();
    for v in [9.0f64, 15.0, 3.0, 35.0, 101.0, 0.0] {
        expected.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(&bytes[..expected.len()], &expected[..]);
    let scp_text = std::fs::read_to_string(&scp).unwrap();
    assert_eq!(
        scp_text.lines().next().unwrap(),
        format!("spkA {}:5", ark.display())
    );

    let table = read_cmvn_table(&scp).unwrap();
    assert_eq!(table.len(), 2);
    assert_eq!(table["spkA"], s1);
    assert_eq!(table["spkB"], s2);
}

// ---------------------------------------------------------------------------------------------
// compute-cmvn
// ---------------------------------------------------------------------------------------------

fn make_store(dir: &Path, utts: &[(&str, Matrix)]) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut w = ArkWriter::create(&dir.join("data/feats.1.ark")).unwrap();
    let mut scp = String::new();
    let mut n2f = String::new();
    for (k, mat) in utts {
        scp.push_str(&format!("{k} {}\n", w.write_matrix(k, mat).unwrap()));
        n2f.push_str(&format!("{k} {}\n", mat.rows));
    }
    w.commit().unwrap();
    std::fs::write(dir.join("feats.scp"), scp).unwrap();
    std::fs::write(dir.join("utt2num_frames"), n2f).unwrap();
    std::fs::write(dir.join("frame_shift"), "0.01\n").unwrap();
}

fn run_cmvn(dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .arg("compute-cmvn")
        .arg(dir)
        .args(extra)
        .output()
        .unwrap()
}

fn stats_of(mats: &[&Matrix]) -> CmvnStats {
    let mut s = CmvnStats::new(mats[0].cols);
    for x in mats {
        s.accumulate(x).unwrap();
    }
    s
}

#[test]
fn compute_cmvn_per_speaker_utterance_and_global() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feats");
    let (a1, a2, b1) = (pseudo(20, 3, 1), pseudo(11, 3, 2), pseudo(7, 3, 3));
    make_store(
        &dir,
        &[
            ("a-1", a1.clone()),
            ("a-2", a2.clone()),
            ("b-1", b1.clone()),
        ],
    );

    // No utt2spk: per utterance, with a note.
    let out = run_cmvn(&dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("per-utterance") && err.contains("done 3 of 3"),
        "{err}"
    );
    let t = read_cmvn_table(&dir.join("cmvn.scp")).unwrap();
    assert_eq!(t.keys().collect::<Vec<_>>(), ["a-1", "a-2", "b-1"]);
    assert_eq!(t["a-2"], stats_of(&[&a2]));

    std::fs::write(dir.join("utt2spk"), "a-1 spkA\na-2 spkA\nb-1 spkB\n").unwrap();
    let out = run_cmvn(&dir, &["--per", "spk"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = read_cmvn_table(&dir.join("cmvn.scp")).unwrap();
    assert_eq!(t.keys().collect::<Vec<_>>(), ["spkA", "spkB"]);
    assert_eq!(t["spkA"], stats_of(&[&a1, &a2]));
    assert_eq!(t["spkB"], stats_of(&[&b1]));
    // The script names the archive by absolute path, as Kaldi's scripts do.
    let scp = std::fs::read_to_string(dir.join("cmvn.scp")).unwrap();
    let path = scp.split_whitespace().nth(1).unwrap();
    assert!(
        Path::new(path.rsplit_once(':').unwrap().0).is_absolute(),
        "{scp}"
    );

    let out = run_cmvn(&dir, &["--per", "global"]);
    assert!(out.status.success());
    let t = read_cmvn_table(&dir.join("cmvn.scp")).unwrap();
    assert_eq!(t.keys().collect::<Vec<_>>(), ["global"]);
    assert_eq!(t["global"], stats_of(&[&a1, &a2, &b1]));
    assert_eq!(t["global"].count, 38.0);

    let out = run_cmvn(&dir, &["--per", "utt"]);
    assert!(out.status.success());
    assert_eq!(read_cmvn_table(&dir.join("cmvn.scp")).unwrap().len(), 3);
    let leftovers = std::fs::read_dir(&dir).unwrap().filter(|e| {
        e.as_ref()
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp")
    });
    assert_eq!(leftovers.count(), 0);
}

#[test]
fn compute_cmvn_counts_utterances_without_speaker_as_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feats");
    make_store(&dir, &[("a-1", pseudo(5, 2, 1)), ("b-1", pseudo(5, 2, 2))]);
    std::fs::write(dir.join("utt2spk"), "a-1 spkA\n").unwrap();
    let out = run_cmvn(&dir, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("done 1 of 2") && err.contains("no speaker"),
        "{err}"
    );
    // The speakers that could be computed are still written, as Kaldi does.
    assert_eq!(read_cmvn_table(&dir.join("cmvn.scp")).unwrap().len(), 1);

    let out = run_cmvn(&tmp.path().join("absent"), &[]);
    assert!(!out.status.success());
}
