//! The C ABI: called from Rust through its `extern "C"` functions (chunking, popping in
//! parts, reset, errors), and from C: `examples/c/stream.c` compiled with gcc against the
//! cdylib and run on a WAV file, its output equal to the offline forward bit for bit.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "common/export_fixture.rs"]
mod export_fixture;
use export_fixture::{audio, model_dir};

use amdistill::capi::*;
use amdistill::export::{export, Bundle, ExportOptions, Precision, Streamer};
use amdistill::models::{ModelConfig, TdnnConfig};
use amdistill::train::config::CmvnMode;

/// A TDNN bundle (right context 3) exported from random weights.
fn bundle(root: &Path) -> PathBuf {
    let cfg = ModelConfig::Tdnn(TdnnConfig {
        splices: vec![vec![-2, -1, 0, 1, 2], vec![-1, 0, 1]],
        hidden: 24,
        batch_norm: true,
        ..Default::default()
    });
    let (src, out) = (root.join("model"), root.join("bundle"));
    model_dir(&src, &cfg, CmvnMode::Global);
    export(
        &src,
        &out,
        &ExportOptions {
            onnx: false,
            evaluation: None,
        },
    )
    .unwrap();
    out
}

/// Audio as 16-bit PCM would carry it (so that f32 and s16 input agree exactly).
fn pcm(seconds: f32, seed: u32) -> Vec<i16> {
    audio(seconds, seed)
        .iter()
        .map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

fn offline(dir: &Path, precision: Precision, samples: &[i16]) -> Vec<f32> {
    let b = Bundle::load(dir).unwrap();
    let x: Vec<f32> = samples.iter().map(|&v| v as f32 / 32768.0).collect();
    Streamer::new(&b, precision)
        .unwrap()
        .offline(&x)
        .unwrap()
        .data
}

fn c_path(p: &Path) -> CString {
    CString::new(p.to_str().unwrap()).unwrap()
}

#[test]
fn c_abi_streams_any_chunking_and_equals_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = bundle(tmp.path());
    let wave = pcm(0.77, 5);
    for (int8, precision) in [(0, Precision::Fp32), (1, Precision::Int8)] {
        let want = offline(&dir, precision, &wave);
        let mut err = [0 as std::ffi::c_char; 256];
        let s = unsafe {
            amdistill_stream_create(c_path(&dir).as_ptr(), int8, err.as_mut_ptr(), err.len())
        };
        assert!(!s.is_null(), "{:?}", unsafe {
            CStr::from_ptr(err.as_ptr())
        });
        let senones = unsafe { amdistill_stream_num_senones(s) } as usize;
        assert_eq!(unsafe { amdistill_stream_sample_rate(s) }, 16000);
        assert_eq!(unsafe { amdistill_stream_latency_frames(s) }, 3);
        // Two utterances on one handle: s16 in odd chunks, then f32 in big ones.
        for (chunk, as_f32) in [(37usize, false), (4000, true)] {
            let mut got = Vec::new();
            let mut frame = vec![0f32; 3 * senones];
            let mut drain = |got: &mut Vec<f32>| loop {
                let k = unsafe { amdistill_stream_pop(s, frame.as_mut_ptr(), 3) };
                assert!(k >= 0);
                got.extend_from_slice(&frame[..k as usize * senones]);
                if k < 3 {
                    break;
                }
            };
            for part in wave.chunks(chunk) {
                let ready = if as_f32 {
                    let x: Vec<f32> = part.iter().map(|&v| v as f32 / 32768.0).collect();
                    unsafe { amdistill_stream_push(s, x.as_ptr(), x.len()) }
                } else {
                    unsafe { amdistill_stream_push_s16(s, part.as_ptr(), part.len()) }
                };
                assert!(ready >= 0);
                assert_eq!(ready, unsafe { amdistill_stream_pending(s) });
                drain(&mut got);
            }
            assert!(
                unsafe { amdistill_stream_finish(s) } >= 3,
                "the right context is flushed"
            );
            drain(&mut got);
            assert_eq!(got, want, "int8={int8} chunk={chunk}: streamed != offline");
        }
        // Reset drops what is buffered; the next utterance is unaffected.
        unsafe { amdistill_stream_push_s16(s, wave.as_ptr(), 5000) };
        assert!(unsafe { amdistill_stream_pending(s) } > 0);
        unsafe { amdistill_stream_reset(s) };
        assert_eq!(unsafe { amdistill_stream_pending(s) }, 0);
        unsafe { amdistill_stream_push_s16(s, wave.as_ptr(), wave.len()) };
        unsafe { amdistill_stream_finish(s) };
        let mut all = vec![0f32; want.len() + senones];
        let k = unsafe { amdistill_stream_pop(s, all.as_mut_ptr(), want.len() / senones + 1) };
        assert_eq!(k as usize * senones, want.len());
        assert_eq!(&all[..want.len()], &want[..]);
        unsafe { amdistill_stream_free(s) };
    }
}

#[test]
fn c_abi_reports_errors_instead_of_crashing() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no_such_bundle");
    let mut err = [0 as std::ffi::c_char; 512];
    let s = unsafe {
        amdistill_stream_create(c_path(&missing).as_ptr(), 0, err.as_mut_ptr(), err.len())
    };
    assert!(s.is_null());
    let msg = unsafe { CStr::from_ptr(err.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    assert!(msg.contains("no_such_bundle"), "{msg}");
    // A message longer than the buffer is cut, NUL-terminated.
    let mut small = [1 as std::ffi::c_char; 8];
    let s = unsafe {
        amdistill_stream_create(
            c_path(&missing).as_ptr(),
            0,
            small.as_mut_ptr(),
            small.len(),
        )
    };
    assert!(s.is_null());
    assert_eq!(small[7], 0);
    assert!(
        unsafe { amdistill_stream_create(std::ptr::null(), 0, std::ptr::null_mut(), 0) }.is_null()
    );

    let null = std::ptr::null_mut();
    assert_eq!(
        unsafe { amdistill_stream_push(null, std::ptr::null(), 0) },
        -1
    );
    assert_eq!(unsafe { amdistill_stream_finish(null) }, -1);
    assert_eq!(unsafe { amdistill_stream_num_senones(null) }, -1);
    assert!(
        !unsafe { CStr::from_ptr(amdistill_stream_last_error(null)) }
            .to_bytes()
            .is_empty()
    );
    unsafe { amdistill_stream_free(null) };

    let dir = bundle(tmp.path());
    let s = unsafe { amdistill_stream_create(c_path(&dir).as_ptr(), 0, std::ptr::null_mut(), 0) };
    assert!(!s.is_null());
    assert_eq!(
        unsafe { amdistill_stream_push(s, std::ptr::null(), 10) },
        -1
    );
    let e = unsafe { CStr::from_ptr(amdistill_stream_last_error(s)) }
        .to_string_lossy()
        .into_owned();
    assert!(e.contains("samples is NULL"), "{e}");
    let wave = pcm(0.3, 1);
    assert!(unsafe { amdistill_stream_push_s16(s, wave.as_ptr(), wave.len()) } > 0);
    assert_eq!(
        unsafe { amdistill_stream_pop(s, std::ptr::null_mut(), 1) },
        -1
    );
    unsafe { amdistill_stream_free(s) };
    let v = unsafe { CStr::from_ptr(amdistill_version()) }
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}

/// The folder holding `libamdistill.so`: cargo builds the cdylib next to the test binaries.
fn cdylib_dir() -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    for d in [deps.clone(), deps.parent().unwrap().to_path_buf()] {
        if d.join("libamdistill.so").exists() {
            return d;
        }
    }
    panic!(
        "libamdistill.so is not in {} or its parent (crate-type cdylib?)",
        deps.display()
    );
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &v in samples {
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
}

#[test]
fn c_example_compiles_with_gcc_and_matches_offline() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let exe = tmp.path().join("stream");
    let lib = cdylib_dir();
    let gcc = Command::new("gcc")
        .args(["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("include"))
        .arg(root.join("examples/c/stream.c"))
        .arg("-L")
        .arg(&lib)
        .arg("-lamdistill")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("gcc is needed for this test (apt-get install gcc; scripts/install_deps.sh)");
    assert!(
        gcc.status.success(),
        "gcc failed:\n{}",
        String::from_utf8_lossy(&gcc.stderr)
    );

    let dir = bundle(tmp.path());
    let wave = pcm(1.1, 9);
    let wav = tmp.path().join("utt.wav");
    write_wav(&wav, &wave);
    for (flag, precision) in [(None, Precision::Fp32), (Some("--int8"), Precision::Int8)] {
        let post = tmp.path().join("post.f32");
        let mut cmd = Command::new(&exe);
        cmd.arg(&dir)
            .arg(&wav)
            .args(["--chunk", "333", "--out"])
            .arg(&post);
        cmd.args(flag);
        let out = cmd.output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = offline(&dir, precision, &wave);
        let got: Vec<f32> = std::fs::read(&post)
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(
            got, want,
            "{flag:?}: the C example's output differs from offline"
        );
        let frames = want.len() / export_fixture::SENONES;
        assert!(
            stdout.contains(&format!("frames {frames} senones 13 latency_frames 3")),
            "{stdout}"
        );
    }
    // A bad bundle: a clear message from the library, exit status 1.
    let out = Command::new(&exe)
        .arg(tmp.path().join("nope"))
        .arg(&wav)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("amdistill:") && stderr.contains("nope"),
        "{stderr}"
    );
}
