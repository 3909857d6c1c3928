//! Kaldi archives and script files: byte layout, round trips, text output, DM and compressed
//! decoding, malformed input, the feature store, and the `copy-feats` command.

use std::path::{Path, PathBuf};
use std::process::Command;

use amdistill::features::kaldi_io::{
    format_g6, parse_rxspec, read_double_matrix_at, read_matrix_at, write_text_matrix, ArkReader,
    ArkWriter, ScpReader,
};
use amdistill::features::store::FeatureStore;
use amdistill::features::{FbankOptions, Matrix};
use amdistill::Error;

fn m(rows: usize, cols: usize, data: &[f32]) -> Matrix {
    Matrix::from_vec(rows, cols, data.to_vec())
}

/// A deterministic pseudo-random matrix (features-like values).
fn pseudo(rows: usize, cols: usize, seed: u32) -> Matrix {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    let data = (0..rows * cols)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 * 30.0 - 10.0
        })
        .collect();
    Matrix::from_vec(rows, cols, data)
}

fn write_ark(path: &Path, entries: &[(&str, &Matrix)]) -> Vec<String> {
    let mut w = ArkWriter::create(path).unwrap();
    let specs = entries
        .iter()
        .map(|(k, m)| w.write_matrix(k, m).unwrap())
        .collect();
    w.commit().unwrap();
    specs
}

fn expect_format_error(r: Result<impl std::fmt::Debug, Error>, needles: &[&str]) -> String {
    match r {
        Err(e @ Error::Format { .. }) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "error '{msg}' should mention '{n}'");
            }
            msg
        }
        other => panic!("expected a format error, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Binary layout and round trips
// ---------------------------------------------------------------------------------------------

#[test]
fn binary_entry_bytes_match_kaldi_layout() {
    let dir = tempfile::tempdir().unwrap();
    let ark = dir.path().join("a.ark");
    let mat = m(2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, -0.5]);
    let specs = write_ark(&ark, &[("utt1", &mat), ("u2", &m(1, 1, &[0.25]))]);
    #[rustfmt::skip]
    let expected: Vec<u8> = vec![
        b'u', b't', b't', b'1', b' ',
        0, b'B', b'F', b'M', b' ',
        4, 2, 0, 0, 0,
        4, 3, 0, 0, 0,
        0x00, 0x00, 0x80, 0x3f, // 1.0
        0x00, 0x00, 0x00, 0x40, // 2.0
        0x00, 0x00, 0x40, 0x40, // 3.0
        0x00, 0x00, 0x80, 0x40, // 4.0
        0x00, 0x00, 0xa0, 0x40, // 5.0
        0x00, 0x00, 0x00, 0xbf, // -0.5
        b'u', b'2', b' ',
        0, b'B', b'F', b'M', b' ',
        4, 1, 0, 0, 0,
        4, 1, 0, 0, 0,
        0x00, 0x00, 0x80, 0x3e, // 0.25
    ];
    assert_eq!(std::fs::read(&ark).unwrap(), expected);
    // Offsets point at the \0B marker just after "KEY ".
    assert_eq!(specs[0], format!("{}:5", ark.display()));
    assert_eq!(
        specs[1],
        format!("{}:{}", ark.display(), 5 + 5 + 10 + 24 + 3)
    );
}

#[test]
fn binary_round_trip_via_offsets_reader_and_scp() {
    let dir = tempfile::tempdir().unwrap();
    let ark = dir.path().join("feats.1.ark");
    let mats: Vec<(String, Matrix)> = (0..5)
        .map(|i| (format!("utt-{i:02}"), pseudo(7 + i * 13, 23, i as u32)))
        .collect();
    let mut w = ArkWriter::create(&ark).unwrap();
    // Nothing appears under the final name before commit.
    let mut scp = String::new();
    for (k, mat) in &mats {
        let spec = w.write_matrix(k, mat).unwrap();
        scp.push_str(&format!("{k} {spec}\n"));
    }
    assert!(!ark.exists());
    w.commit().unwrap();
    assert!(ark.exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    for line in scp.lines() {
        let (k, spec) = line.split_once(' ').unwrap();
        let want = &mats.iter().find(|(kk, _)| kk == k).unwrap().1;
        assert_eq!(&read_matrix_at(spec).unwrap(), want, "{k} via {spec}");
    }
    let read: Vec<(String, Matrix)> = ArkReader::open(&ark).unwrap().map(Result::unwrap).collect();
    assert_eq!(read, mats);

    let scp_path = dir.path().join("feats.scp");
    std::fs::write(&scp_path, &scp).unwrap();
    let reader = ScpReader::open(&scp_path).unwrap();
    assert_eq!(reader.len(), 5);
    for (i, (k, mat)) in mats.iter().enumerate() {
        assert_eq!(reader.key(i), k);
        assert_eq!(reader.shape(i).unwrap(), (mat.rows, mat.cols));
        assert_eq!(&reader.read(i).unwrap(), mat);
    }
}

#[test]
fn dropped_writer_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ark = dir.path().join("x.ark");
    {
        let mut w = ArkWriter::create(&ark).unwrap();
        w.write_matrix("a", &pseudo(3, 4, 1)).unwrap();
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_keys_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = ArkWriter::create(&dir.path().join("x.ark")).unwrap();
    for key in ["", "a b", "tab\tkey", "nl\n"] {
        assert!(
            w.write_matrix(key, &pseudo(1, 1, 0)).is_err(),
            "key {key:?} accepted"
        );
    }
}

#[test]
fn ranges_select_rows_and_columns() {
    let dir = tempfile::tempdir().unwrap();
    let ark = dir.path().join("r.ark");
    let mat = m(3, 3, &[0., 1., 2., 10., 11., 12., 20., 21., 22.]);
    let spec = write_ark(&ark, &[("k", &mat)]).remove(0);
    assert_eq!(
        read_matrix_at(&format!("{spec}[1:2]")).unwrap(),
        m(2, 3, &[10., 11., 12., 20., 21., 22.])
    );
    assert_eq!(
        read_matrix_at(&format!("{spec}[0:1,1:2]")).unwrap(),
        m(2, 2, &[1., 2., 11., 12.])
    );
    assert_eq!(
        read_matrix_at(&format!("{spec}[,2:2]")).unwrap(),
        m(3, 1, &[2., 12., 22.])
    );
    assert!(read_matrix_at(&format!("{spec}[1:3]")).is_err());
    assert!(parse_rxspec("x.ark:12[3:1]").is_err());
    assert!(parse_rxspec("gunzip -c x.ark.gz |").is_err());
    let s = parse_rxspec("/a:b/c.ark:123").unwrap();
    assert_eq!((s.path, s.offset), (PathBuf::from("/a:b/c.ark"), Some(123)));
}

// ---------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------

#[test]
fn text_output_matches_copy_feats() {
    let mut out = Vec::new();
    let mat = m(2, 3, &[1.0, -15.942_4, 1e-5, 1_234_567.0, 0.1, 0.0]);
    write_text_matrix(&mut out, "spk1-utt1", &mat).unwrap();
    write_text_matrix(&mut out, "empty", &Matrix::zeros(0, 0)).unwrap();
    write_text_matrix(&mut out, "one", &m(1, 1, &[-3.25])).unwrap();
    let expected =
        "spk1-utt1  [\n  1 -15.9424 1e-05 \n  1.23457e+06 0.1 0 ]\nempty  [ ]\none  [\n  -3.25 ]\n";
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn floats_print_like_cpp_streams() {
    let cases: &[(f32, &str)] = &[
        (0.0, "0"),
        (-0.0, "-0"),
        (1.0, "1"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (123456.7, "123457"),
        (999999.5, "1e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (0.000123456, "0.000123456"),
        (std::f32::consts::PI, "3.14159"),
        (2.718_281_7, "2.71828"),
        (-2.5e-7, "-2.5e-07"),
        (1.0e20, "1e+20"),
        (3.402_823_5e38, "3.40282e+38"),
        (f32::from_bits(1), "1.4013e-45"),
        (12.5, "12.5"),
        (-15.942_4, "-15.9424"),
        (f32::INFINITY, "inf"),
        (f32::NEG_INFINITY, "-inf"),
        (f32::NAN, "nan"),
    ];
    for &(v, s) in cases {
        assert_eq!(format_g6(v), s, "formatting {v:e}");
    }
}

#[test]
fn text_archives_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let ark = dir.path().join("t.ark");
    let text = "a  [\n  1 -2.5 1e-05 \n  4 5 6 ]\nb  [ ]\nc [ 7 8\n 9 10 ]\n";
    std::fs::write(&ark, text).unwrap();
    let read: Vec<(String, Matrix)> = ArkReader::open(&ark).unwrap().map(Result::unwrap).collect();
    assert_eq!(
        read,
        vec![
            ("a".to_string(), m(2, 3, &[1.0, -2.5, 1e-5, 4.0, 5.0, 6.0])),
            ("b".to_string(), Matrix::zeros(0, 0)),
            ("c".to_string(), m(2, 2, &[7.0, 8.0, 9.0, 10.0])),
        ]
    );
    // A text archive written by ArkWriter, read by offset.
    let ark2 = dir.path().join("t2.ark");
    let mut w = ArkWriter::create_text(&ark2).unwrap();
    let mat = m(2, 2, &[0.5, 1.5, -2.0, 1e-3]);
    let spec = w.write_matrix("x", &mat).unwrap();
    let spec_b = w.write_matrix("y", &m(1, 2, &[3.0, 4.0])).unwrap();
    w.commit().unwrap();
    assert!(std::fs::read_to_string(&ark2)
        .unwrap()
        .starts_with("x  [\n  0.5 1.5 \n"));
    assert_eq!(read_matrix_at(&spec).unwrap(), mat);
    assert_eq!(read_matrix_at(&spec_b).unwrap(), m(1, 2, &[3.0, 4.0]));
}

#[test]
fn text_errors_are_reported() {
    let cases: &[(&str, &str)] = &[
        ("a [\n 1 2\n 3 ]\n", "row 1 has 1 values"),
        ("a [ 1 x 3 ]\n", "expected a number"),
        ("a [ 1 2 3\n", "missing ']'"),
        ("a 1 2 3\n", "expected '['"),
    ];
    for (text, needle) in cases {
        let r: Result<Vec<_>, _> =
            ArkReader::from_bytes("mem.ark", text.as_bytes().to_vec()).collect();
        expect_format_error(r, &["mem.ark", needle, "key 'a'"]);
    }
}

// ---------------------------------------------------------------------------------------------
// Double and compressed matrices, built by hand from Kaldi's format
// ---------------------------------------------------------------------------------------------

fn entry(key: &str, body: &[u8]) -> Vec<u8> {
    let mut v = key.as_bytes().to_vec();
    v.push(b' ');
    v.extend_from_slice(b"\0B");
    v.extend_from_slice(body);
    v
}

fn i32_field(v: i32) -> Vec<u8> {
    let mut b = vec![4u8];
    b.extend_from_slice(&v.to_le_bytes());
    b
}

/// Compressed header after the token: min_value, range, num_rows, num_cols.
fn cm_header(min: f32, range: f32, rows: i32, cols: i32) -> Vec<u8> {
    [
        min.to_le_bytes(),
        range.to_le_bytes(),
        rows.to_le_bytes(),
        cols.to_le_bytes(),
    ]
    .concat()
}

fn assert_close(got: &Matrix, rows: usize, cols: usize, want: &[f64], tol: f64) {
    assert_eq!((got.rows, got.cols), (rows, cols));
    for (i, (&g, &w)) in got.data.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol,
            "element {i}: got {g}, want {w}"
        );
    }
}

#[test]
fn double_matrices_decode() {
    let mut body = b"DM ".to_vec();
    body.extend(i32_field(2));
    body.extend(i32_field(2));
    for v in [0.1f64, -2.0, 1.0e-300, 12345.678901234] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let bytes = entry("d", &body);
    let mut r = ArkReader::from_bytes("d.ark", bytes.clone());
    let (k, dm) = r.next_double().unwrap().unwrap();
    assert_eq!(k, "d");
    assert_eq!((dm.rows, dm.cols), (2, 2));
    assert_eq!(dm.data, vec![0.1, -2.0, 1.0e-300, 12345.678901234]);
    assert!(r.next_double().is_none());
    // As f32, each value is rounded.
    let (_, fm) = ArkReader::from_bytes("d.ark", bytes.clone())
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(fm.data, vec![0.1f32, -2.0, 0.0, 12345.679]);

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("d.ark");
    std::fs::write(&p, &bytes).unwrap();
    assert_eq!(
        read_double_matrix_at(&format!("{}:2", p.display())).unwrap(),
        dm
    );
}

#[test]
fn compressed_cm_decodes_per_column_percentiles() {
    // min 0, range 65535: percentile u16 p decodes to ~p (65535 * (1/65535) * p).
    // Column 0: p0 = 0, p25 = 100, p75 = 300, p100 = 363.
    // Column 1: p0 = 1000, p25 = 1064, p75 = 1192, p100 = 1255.
    let mut body = b"CM ".to_vec();
    body.extend(cm_header(0.0, 65535.0, 4, 2));
    for p in [0u16, 100, 300, 363, 1000, 1064, 1192, 1255] {
        body.extend_from_slice(&p.to_le_bytes());
    }
    // Column-major bytes: column 0 then column 1.
    body.extend_from_slice(&[0, 32, 128, 255]);
    body.extend_from_slice(&[64, 96, 193, 224]);
    // Hand-computed with Kaldi's CharToFloat:
    //   v <= 64:  p0 + (p25 - p0) * v / 64
    //   v <= 192: p25 + (p75 - p25) * (v - 64) / 128
    //   else:     p75 + (p100 - p75) * (v - 192) / 63
    // col 0: 0 -> 0; 32 -> 50; 128 -> 100 + 200 * 64/128 = 200; 255 -> 363
    // col 1: 64 -> 1064; 96 -> 1064 + 128 * 32/128 = 1096; 193 -> 1192 + 63/63 = 1193;
    //        224 -> 1192 + 63 * 32/63 = 1224
    let want = [0.0, 1064.0, 50.0, 1096.0, 200.0, 1193.0, 363.0, 1224.0];
    let mut bytes = entry("cm", &body);
    // A following float entry proves the reader consumed exactly the compressed bytes.
    bytes.extend(b"next ".iter().copied());
    let mut fm = b"\0BFM ".to_vec();
    fm.extend(i32_field(1));
    fm.extend(i32_field(1));
    fm.extend_from_slice(&7.5f32.to_le_bytes());
    bytes.extend(fm);
    let read: Vec<(String, Matrix)> = ArkReader::from_bytes("c.ark", bytes)
        .map(Result::unwrap)
        .collect();
    assert_eq!(read.len(), 2);
    assert_eq!(read[0].0, "cm");
    assert_close(&read[0].1, 4, 2, &want, 0.02);
    assert_eq!(read[1], ("next".to_string(), m(1, 1, &[7.5])));
}

#[test]
fn compressed_cm2_and_cm3_decode() {
    // CM2: value = min + u16 * range / 65535, row-major.
    let mut body = b"CM2 ".to_vec();
    body.extend(cm_header(-1.0, 2.0, 2, 2));
    for v in [0u16, 65535, 32768, 16384] {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let want2 = [
        -1.0,
        1.0,
        -1.0 + 2.0 * 32768.0 / 65535.0,
        -1.0 + 2.0 * 16384.0 / 65535.0,
    ];
    let (_, m2) = ArkReader::from_bytes("c2.ark", entry("a", &body))
        .next()
        .unwrap()
        .unwrap();
    assert_close(&m2, 2, 2, &want2, 1e-6);

    // CM3: value = min + u8 * range / 255, row-major.
    let mut body = b"CM3 ".to_vec();
    body.extend(cm_header(10.0, 255.0, 2, 3));
    body.extend_from_slice(&[0, 1, 255, 128, 2, 3]);
    let want3 = [10.0, 11.0, 265.0, 138.0, 12.0, 13.0];
    let (_, m3) = ArkReader::from_bytes("c3.ark", entry("b", &body))
        .next()
        .unwrap()
        .unwrap();
    assert_close(&m3, 2, 3, &want3, 1e-4);
}

#[test]
fn empty_compressed_matrix_as_kaldi_writes_it() {
    // Kaldi writes an empty CompressedMatrix as "CM " + the whole 20-byte GlobalHeader.
    let mut body = b"CM ".to_vec();
    body.extend_from_slice(&1i32.to_le_bytes()); // format field (Kaldi leaves it unset)
    body.extend(cm_header(0.0, 0.0, 0, 0));
    let mut bytes = entry("e", &body);
    bytes.extend(b"f ");
    bytes.extend(b"\0BFM ");
    bytes.extend(i32_field(1));
    bytes.extend(i32_field(2));
    bytes.extend_from_slice(&[1.0f32.to_le_bytes(), 2.0f32.to_le_bytes()].concat());
    let read: Vec<(String, Matrix)> = ArkReader::from_bytes("e.ark", bytes)
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        read,
        vec![
            ("e".to_string(), Matrix::zeros(0, 0)),
            ("f".to_string(), m(1, 2, &[1.0, 2.0]))
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Malformed input: errors, never panics
// ---------------------------------------------------------------------------------------------

fn valid_ark() -> Vec<u8> {
    let mut out = Vec::new();
    amdistill::features::kaldi_io::write_binary_matrix(&mut out, "one", &pseudo(3, 4, 1)).unwrap();
    amdistill::features::kaldi_io::write_binary_matrix(&mut out, "two", &pseudo(2, 4, 2)).unwrap();
    out
}

#[test]
fn truncated_archives_give_errors() {
    let full = valid_ark();
    for cut in 1..full.len() {
        let results: Vec<_> = ArkReader::from_bytes("cut.ark", full[..cut].to_vec()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        let first_len = 4 + 15 + 48;
        if cut < first_len {
            assert_eq!(ok, 0, "cut at {cut}");
        } else {
            assert!(ok <= 1, "cut at {cut}");
        }
        if cut != first_len {
            let err = results
                .last()
                .unwrap()
                .as_ref()
                .expect_err(&format!("cut at {cut} must fail"));
            let msg = err.to_string();
            assert!(
                msg.contains("cut.ark") && msg.contains("byte"),
                "cut at {cut}: {msg}"
            );
        }
    }
}

#[test]
fn huge_negative_and_bad_headers_are_refused() {
    let mut huge = b"FM ".to_vec();
    huge.extend(i32_field(i32::MAX));
    huge.extend(i32_field(i32::MAX));
    let r: Result<Vec<_>, _> = ArkReader::from_bytes("h.ark", entry("big", &huge)).collect();
    expect_format_error(r, &["h.ark", "key 'big'", "exceeds"]);

    let mut neg = b"FM ".to_vec();
    neg.extend(i32_field(-3));
    neg.extend(i32_field(2));
    let r: Result<Vec<_>, _> = ArkReader::from_bytes("n.ark", entry("neg", &neg)).collect();
    expect_format_error(r, &["negative"]);

    let mut cm = b"CM ".to_vec();
    cm.extend(cm_header(0.0, 1.0, 1 << 30, 1 << 30));
    let r: Result<Vec<_>, _> = ArkReader::from_bytes("c.ark", entry("cm", &cm)).collect();
    expect_format_error(r, &["exceeds"]);

    let mut bad = b"XM ".to_vec();
    bad.extend(i32_field(1));
    bad.extend(i32_field(1));
    bad.extend_from_slice(&[0; 4]);
    let r: Result<Vec<_>, _> = ArkReader::from_bytes("b.ark", entry("tok", &bad)).collect();
    expect_format_error(r, &["unknown matrix token 'XM'", "byte 6"]);

    let mut size_byte = b"FM ".to_vec();
    size_byte.extend_from_slice(&[8, 1, 0, 0, 0, 0, 0, 0, 0]);
    let r: Result<Vec<_>, _> = ArkReader::from_bytes("s.ark", entry("sz", &size_byte)).collect();
    expect_format_error(r, &["size byte"]);

    let r: Result<Vec<_>, _> = ArkReader::from_bytes("z.ark", b"k \0XFM ".to_vec()).collect();
    expect_format_error(r, &["binary marker"]);

    let r: Result<Vec<_>, _> = ArkReader::from_bytes("k.ark", b"lonely".to_vec()).collect();
    expect_format_error(r, &["key without a value"]);
}

#[test]
fn corrupted_bytes_never_panic() {
    let full = valid_ark();
    let mut state = 0x2545_f491u32;
    for _ in 0..3000 {
        let mut bytes = full.clone();
        for _ in 0..3 {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let pos = state as usize % bytes.len();
            bytes[pos] = (state >> 24) as u8;
        }
        // Any outcome but a panic (or a huge allocation) is acceptable.
        let _ = ArkReader::from_bytes("fuzz.ark", bytes).count();
    }
}

#[test]
fn bad_offsets_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let ark = dir.path().join("o.ark");
    write_ark(&ark, &[("a", &pseudo(2, 2, 3))]);
    let msg = expect_format_error(
        read_matrix_at(&format!("{}:9999", ark.display())),
        &["past the end"],
    );
    assert!(msg.contains("o.ark"));
    // Offset 3 lands inside the key: no \0B and no '['.
    expect_format_error(
        read_matrix_at(&format!("{}:3", ark.display())),
        &["expected '['"],
    );
    assert!(matches!(
        read_matrix_at("/nonexistent/x.ark:5"),
        Err(Error::Io { .. })
    ));

    let scp = dir.path().join("feats.scp");
    std::fs::write(&scp, "a missing.ark:5\n").unwrap();
    let err = ScpReader::open(&scp).err().unwrap().to_string();
    assert!(
        err.contains("feats.scp:1") && err.contains("missing.ark"),
        "{err}"
    );
    std::fs::write(&scp, format!("a {0}:5\na {0}:5\n", ark.display())).unwrap();
    let err = ScpReader::open(&scp).err().unwrap().to_string();
    assert!(err.contains("duplicate key"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Feature store
// ---------------------------------------------------------------------------------------------

/// Writes a feature directory the way compute-fbank does, with relative archive paths.
fn make_store(dir: &Path, utts: &[(&str, Matrix)]) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut w = ArkWriter::create(&dir.join("data/feats.1.ark")).unwrap();
    let mut scp = String::new();
    let mut n2f = String::new();
    for (k, mat) in utts {
        let spec = w.write_matrix(k, mat).unwrap();
        // Store paths relative to the feature directory.
        let rel = spec.replace(&format!("{}/", dir.display()), "");
        scp.push_str(&format!("{k} {rel}\n"));
        n2f.push_str(&format!("{k} {}\n", mat.rows));
    }
    w.commit().unwrap();
    std::fs::write(dir.join("feats.scp"), scp).unwrap();
    std::fs::write(dir.join("utt2num_frames"), n2f).unwrap();
    std::fs::write(dir.join("frame_shift"), "0.01\n").unwrap();
}

#[test]
fn feature_store_opens_and_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feats");
    let utts = [
        ("s1-a", pseudo(12, 5, 1)),
        ("s1-b", pseudo(3, 5, 2)),
        ("s2-a", pseudo(40, 5, 3)),
    ];
    make_store(&dir, &utts);
    assert!(std::fs::read_to_string(dir.join("feats.scp"))
        .unwrap()
        .starts_with("s1-a data/feats.1.ark:5\n"));
    let store = FeatureStore::open(&dir).unwrap();
    assert_eq!(store.utts(), ["s1-a", "s1-b", "s2-a"]);
    assert_eq!(store.dim(), 5);
    assert_eq!(store.frame_shift(), 0.01);
    assert_eq!(store.num_frames("s2-a"), Some(40));
    assert_eq!(store.num_frames("nope"), None);
    assert_eq!(store.total_frames(), 55);
    for (k, mat) in &utts {
        assert_eq!(&store.get(k).unwrap(), mat);
    }
    assert!(matches!(store.get("nope"), Err(Error::Utterance { .. })));
    // Training reads utterances from several threads at once.
    fn shared<T: Send + Sync>(_: &T) {}
    shared(&store);
}

#[test]
fn feature_store_detects_utt2num_frames_disagreement() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feats");
    make_store(&dir, &[("a", pseudo(4, 3, 1)), ("b", pseudo(6, 3, 2))]);

    std::fs::write(dir.join("utt2num_frames"), "a 4\nb 7\n").unwrap();
    let err = FeatureStore::open(&dir).err().unwrap();
    assert!(matches!(err, Error::Mismatch(_)));
    let msg = err.to_string();
    assert!(
        msg.contains("utt2num_frames:2") && msg.contains("b has 7 frames") && msg.contains("6"),
        "{msg}"
    );

    std::fs::write(dir.join("utt2num_frames"), "a 4\n").unwrap();
    let msg = FeatureStore::open(&dir).err().unwrap().to_string();
    assert!(
        msg.contains("b is in") && msg.contains("not in utt2num_frames"),
        "{msg}"
    );

    std::fs::write(dir.join("utt2num_frames"), "a 4\nb 6\nc 1\n").unwrap();
    let msg = FeatureStore::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("c is not in"), "{msg}");

    std::fs::write(dir.join("utt2num_frames"), "a 4\nb six\n").unwrap();
    let msg = FeatureStore::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("utt2num_frames:2"), "{msg}");
}

#[test]
fn feature_store_checks_dimension_and_frame_shift() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feats");
    make_store(&dir, &[("a", pseudo(4, 3, 1)), ("b", pseudo(6, 4, 2))]);
    let msg = FeatureStore::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("utterance b has dimension 4"), "{msg}");

    make_store(&dir, &[("a", pseudo(4, 23, 1))]);
    std::fs::remove_file(dir.join("frame_shift")).unwrap();
    let msg = FeatureStore::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("frame_shift"), "{msg}");
    // fbank.json supplies the frame shift and the dimension (Kaldi defaults: 23 bins, 10 ms).
    let opts = FbankOptions::default();
    std::fs::write(
        dir.join("fbank.json"),
        serde_json::to_string(&opts).unwrap(),
    )
    .unwrap();
    let store = FeatureStore::open(&dir).unwrap();
    assert_eq!((store.dim(), store.frame_shift()), (23, 0.01));
    assert_eq!(store.options(), Some(&opts));

    make_store(&dir, &[("a", pseudo(4, 80, 1))]);
    let msg = FeatureStore::open(&dir).err().unwrap().to_string();
    assert!(msg.contains("fbank.json says 23"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// The copy-feats command
// ---------------------------------------------------------------------------------------------

fn amdistill(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_amdistill"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn copy_feats_prints_kaldi_text_and_copies_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feats");
    make_store(
        &dir,
        &[
            ("u1", m(2, 2, &[1.0, -0.5, 1e-5, 12345.678])),
            ("u2", m(1, 3, &[0.0, 2.0, -7.25])),
        ],
    );
    let d = dir.to_str().unwrap();
    // 12345.678 prints with 6 significant digits, as Kaldi's copy-feats does.
    let expected = "u1  [\n  1 -0.5 \n  1e-05 12345.7 ]\nu2  [\n  0 2 -7.25 ]\n";

    let out = amdistill(&["copy-feats", d]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), expected);
    assert!(String::from_utf8_lossy(&out.stderr).contains("done 2 of 2"));

    let scp = dir.join("feats.scp");
    let out = amdistill(&[
        "copy-feats",
        &format!("scp:{}", scp.display()),
        "--utt",
        "u2",
    ]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "u2  [\n  0 2 -7.25 ]\n"
    );

    // Binary copy: identical bytes to the store's archive (same keys, same order).
    let copy = tmp.path().join("copy.ark");
    let out = amdistill(&[
        "copy-feats",
        scp.to_str().unwrap(),
        &format!("ark:{}", copy.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&copy).unwrap(),
        std::fs::read(dir.join("data/feats.1.ark")).unwrap()
    );

    // Archive in, text out, via ark,scp the script points into the new archive.
    let text_ark = tmp.path().join("copy.txt.ark");
    let text_scp = tmp.path().join("copy.scp");
    let out = amdistill(&[
        "copy-feats",
        &format!("ark:{}", copy.display()),
        &format!("ark,t,scp:{},{}", text_ark.display(), text_scp.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&text_ark).unwrap(), expected);
    let r = ScpReader::open(&text_scp).unwrap();
    assert_eq!(r.read(1).unwrap(), m(1, 3, &[0.0, 2.0, -7.25]));

    let out = amdistill(&["copy-feats", d, "--utt", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}

#[test]
fn copy_feats_reports_a_corrupt_archive() {
    let tmp = tempfile::tempdir().unwrap();
    let ark = tmp.path().join("bad.ark");
    let mut bytes = valid_ark();
    bytes.truncate(bytes.len() - 3);
    std::fs::write(&ark, bytes).unwrap();
    let out = amdistill(&["copy-feats", ark.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.ark") && err.contains("key 'two'") && err.contains("truncated"),
        "{err}"
    );
}

/// Archives written by an independent implementation (the Python package kaldiio 2.18.1,
/// `save_ark(..., compression_method=2 / 3 / 5)`) of one 10 x 3 matrix, with the values
/// kaldiio decodes them to: checks the byte layout against someone else's reading of Kaldi.
#[test]
fn compressed_archives_from_kaldiio_decode_to_its_values() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "cm",
            "636d200042434d206b0bc1c04fb081410a0000000300000033906ca42caf33b90000a303623d2c7f4ee959f5f2fcffffb533c040c4ff0088ca4fd095ffd863002e40b1c09f4082ffc0871cf100d7",
            "5.001706123352051 -1.0874804258346558 9.861210823059082 4.119334697723389 -3.3740015029907227 9.504127502441406 5.060207843780518 2.020582675933838 9.752206802368164 4.379458904266357 -0.558448314666748 10.178443908691406 5.100524425506592 -4.8024396896362305 9.985250473022461 5.695194721221924 -6.032643795013428 9.770999908447266 3.0988478660583496 -5.867117881774902 9.075148582458496 4.762380123138428 -5.802346706390381 10.135512351989746 5.160999298095703 -2.574075937271118 8.741498947143555 4.459234237670898 -2.1455445289611816 10.055781364440918",
        ),
        (
            "cm2",
            "636d32200042434d32206b0bc1c04fb081410a000000030000003eaed64d04fb28a0242a59f52caf2c7f4bf96ca4e356ffffe3af9a13f2fc33b9000091f933909702a3ee82aaa30352ffb2b0d3364ee9b7a5623d13fe",
            "5.001335620880127 -1.1036415100097656 9.863052368164062 4.109335422515869 -3.3640663623809814 9.504127502441406 5.060207843780518 2.020582675933838 9.753965377807617 4.379458904266357 -0.5304961204528809 10.178443908691406 5.105475902557373 -4.791364669799805 9.985250473022461 5.695194721221924 -6.032643795013428 9.771280288696289 3.0988478660583496 -5.868640422821045 9.079153060913086 4.7648539543151855 -5.802346706390381 10.135648727416992 5.156680583953857 -2.560871124267578 8.741498947143555 4.461336612701416 -2.1455445289611816 10.056739807128906",
        ),
        (
            "cm3",
            "636d33200042434d33206b0bc1c04fb081410a00000003000000ae4efaa02af4ae7ff8a457ffaf14fcb800f99003eeaa04feb037e8a53dfd",
            "5.0290398597717285 -1.073957920074463 9.860580444335938 4.13901948928833 -3.362582206726074 9.479143142700195 5.0290398597717285 2.0411133766174316 9.733434677124023 4.393311023712158 -0.5018019676208496 10.178443908691406 5.0926127433776855 -4.761185646057129 9.987726211547852 5.664769649505615 -6.032643795013428 9.797006607055664 3.1218533515930176 -5.841925144195557 9.097705841064453 4.7747483253479 -5.7783522605896 10.114870071411133 5.156185626983643 -2.5361344814300537 8.716268539428711 4.456883907318115 -2.1546971797943115 10.051298141479492",
        ),
    ];
    for (key, hex, values) in cases {
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let want: Vec<f64> = values.split(' ').map(|v| v.parse().unwrap()).collect();
        let read: Vec<(String, Matrix)> = ArkReader::from_bytes("kaldiio.ark", bytes)
            .map(Result::unwrap)
            .collect();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].0, *key);
        assert_close(&read[0].1, 10, 3, &want, 1e-5);
    }
}
