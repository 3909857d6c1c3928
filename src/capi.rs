//! The C ABI (`include/amdistill.h`): a bundle's streaming recogniser front end for a voice
//! assistant written in C, C++, Swift or anything else with a C FFI.
//!
//! ```c
//! char err[512];
//! amdistill_stream *s = amdistill_stream_create("exp/export/student_kd", 1, err, sizeof err);
//! amdistill_stream_push(s, pcm, n);          /* any chunk size, f32 in [-1, 1] */
//! while ((k = amdistill_stream_pop(s, out, 16)) > 0) { /* k frames of S log-posteriors */ }
//! amdistill_stream_finish(s);                /* end of utterance: flush, pop the rest */
//! amdistill_stream_free(s);
//! ```
//!
//! Conventions: functions returning `int` give a count (>= 0) or -1 on error, with the
//! message in [`amdistill_stream_last_error`]; no Rust panic crosses the boundary (each call
//! catches it and reports it as an error). A handle is used from one thread at a time;
//! different handles are independent (they share nothing).

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::export::{Bundle, Precision, Streamer};

/// Opaque handle: a [`Streamer`] plus the log-posterior frames not yet popped.
pub struct AmdistillStream {
    streamer: Streamer,
    /// Ready frames, `num_senones` values each; `read` values already popped.
    ready: Vec<f32>,
    read: usize,
    /// Scratch for int16 input.
    scaled: Vec<f32>,
    last_error: CString,
}

impl AmdistillStream {
    fn pending_frames(&self) -> usize {
        (self.ready.len() - self.read) / self.streamer.num_senones()
    }

    /// Runs `f`, turning an error or a panic into -1 and `last_error`.
    fn guard(&mut self, f: impl FnOnce(&mut Self) -> crate::Result<usize>) -> c_int {
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(Ok(n)) => n.min(c_int::MAX as usize) as c_int,
            Ok(Err(e)) => {
                self.set_error(&e.to_string());
                -1
            }
            Err(_) => {
                self.set_error("internal error (panic) in amdistill; the stream was reset");
                self.streamer.reset();
                self.ready.clear();
                self.read = 0;
                -1
            }
        }
    }

    fn set_error(&mut self, msg: &str) {
        self.last_error = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    }

    fn compact(&mut self) {
        if self.read > 0 && self.read == self.ready.len() {
            self.ready.clear();
            self.read = 0;
        }
    }
}

/// Copies `msg` into the caller's buffer, NUL-terminated and cut to fit.
unsafe fn write_error(buf: *mut c_char, len: usize, msg: &str) {
    if buf.is_null() || len == 0 {
        return;
    }
    let bytes = msg.as_bytes();
    let n = bytes.len().min(len - 1);
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf as *mut u8, n);
    *buf.add(n) = 0;
}

/// Opens the bundle directory `bundle_dir` (checksums verified) and returns a stream, or
/// NULL with the reason in `err` (`err_len` bytes, may be NULL). `int8` != 0 runs the int8
/// weights.
///
/// # Safety
/// `bundle_dir` is a NUL-terminated path; `err` is NULL or writable for `err_len` bytes.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_create(
    bundle_dir: *const c_char,
    int8: c_int,
    err: *mut c_char,
    err_len: usize,
) -> *mut AmdistillStream {
    if bundle_dir.is_null() {
        write_error(err, err_len, "amdistill_stream_create: bundle_dir is NULL");
        return std::ptr::null_mut();
    }
    let dir = match CStr::from_ptr(bundle_dir).to_str() {
        Ok(d) => d.to_string(),
        Err(_) => {
            write_error(
                err,
                err_len,
                "amdistill_stream_create: bundle_dir is not UTF-8",
            );
            return std::ptr::null_mut();
        }
    };
    let precision = if int8 != 0 {
        Precision::Int8
    } else {
        Precision::Fp32
    };
    let made = catch_unwind(|| -> crate::Result<Streamer> {
        let bundle = Bundle::load(Path::new(&dir))?;
        Streamer::new(&bundle, precision)
    });
    match made {
        Ok(Ok(streamer)) => Box::into_raw(Box::new(AmdistillStream {
            streamer,
            ready: Vec::new(),
            read: 0,
            scaled: Vec::new(),
            last_error: CString::default(),
        })),
        Ok(Err(e)) => {
            write_error(err, err_len, &e.to_string());
            std::ptr::null_mut()
        }
        Err(_) => {
            write_error(
                err,
                err_len,
                "internal error (panic) while loading the bundle",
            );
            std::ptr::null_mut()
        }
    }
}

/// Frees a stream (NULL is ignored).
///
/// # Safety
/// `s` came from [`amdistill_stream_create`] and is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_free(s: *mut AmdistillStream) {
    if !s.is_null() {
        drop(Box::from_raw(s));
    }
}

/// Borrows the handle, or reports a NULL one.
unsafe fn handle<'a>(s: *mut AmdistillStream) -> Option<&'a mut AmdistillStream> {
    s.as_mut()
}

/// Appends `n` samples (f32, full scale = 1.0, at [`amdistill_stream_sample_rate`]).
/// Returns the number of frames ready to pop, or -1.
///
/// # Safety
/// `s` is a live handle; `samples` is readable for `n` floats (may be NULL when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_push(
    s: *mut AmdistillStream,
    samples: *const f32,
    n: usize,
) -> c_int {
    let Some(h) = handle(s) else { return -1 };
    if samples.is_null() && n > 0 {
        h.set_error("amdistill_stream_push: samples is NULL");
        return -1;
    }
    let chunk: &[f32] = if n == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(samples, n)
    };
    h.guard(|h| {
        h.compact();
        h.streamer.push(chunk, &mut h.ready);
        Ok(h.pending_frames())
    })
}

/// As [`amdistill_stream_push`] for 16-bit PCM (divided by 32768, as the WAV reader does).
///
/// # Safety
/// `s` is a live handle; `samples` is readable for `n` values (may be NULL when `n` is 0).
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_push_s16(
    s: *mut AmdistillStream,
    samples: *const i16,
    n: usize,
) -> c_int {
    let Some(h) = handle(s) else { return -1 };
    if samples.is_null() && n > 0 {
        h.set_error("amdistill_stream_push_s16: samples is NULL");
        return -1;
    }
    let chunk: &[i16] = if n == 0 {
        &[]
    } else {
        std::slice::from_raw_parts(samples, n)
    };
    h.guard(|h| {
        h.compact();
        let mut scaled = std::mem::take(&mut h.scaled);
        scaled.clear();
        scaled.extend(chunk.iter().map(|&v| v as f32 / 32768.0));
        h.streamer.push(&scaled, &mut h.ready);
        h.scaled = scaled;
        Ok(h.pending_frames())
    })
}

/// Ends the utterance: flushes the frames held back for right context. Returns the number
/// of frames ready to pop, or -1. The stream then takes the next utterance.
///
/// # Safety
/// `s` is a live handle.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_finish(s: *mut AmdistillStream) -> c_int {
    let Some(h) = handle(s) else { return -1 };
    h.guard(|h| {
        h.compact();
        h.streamer.finish(&mut h.ready);
        Ok(h.pending_frames())
    })
}

/// Copies up to `max_frames` ready frames into `out` (`max_frames * num_senones` floats,
/// frame-major) and returns how many it copied (0 when none is ready), or -1.
///
/// # Safety
/// `s` is a live handle; `out` is writable for `max_frames * num_senones` floats.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_pop(
    s: *mut AmdistillStream,
    out: *mut f32,
    max_frames: usize,
) -> c_int {
    let Some(h) = handle(s) else { return -1 };
    if out.is_null() && max_frames > 0 {
        h.set_error("amdistill_stream_pop: out is NULL");
        return -1;
    }
    let frames = h.pending_frames().min(max_frames);
    let values = frames * h.streamer.num_senones();
    if values > 0 {
        std::ptr::copy_nonoverlapping(h.ready.as_ptr().add(h.read), out, values);
        h.read += values;
        h.compact();
    }
    frames as c_int
}

/// Frames ready to pop, or -1 for a NULL handle.
///
/// # Safety
/// `s` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_pending(s: *mut AmdistillStream) -> c_int {
    handle(s).map_or(-1, |h| h.pending_frames() as c_int)
}

/// Drops the utterance in progress and every frame not yet popped.
///
/// # Safety
/// `s` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_reset(s: *mut AmdistillStream) {
    if let Some(h) = handle(s) {
        h.streamer.reset();
        h.ready.clear();
        h.read = 0;
    }
}

/// Log-posteriors per frame (the senone count), or -1 for a NULL handle.
///
/// # Safety
/// `s` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_num_senones(s: *mut AmdistillStream) -> c_int {
    handle(s).map_or(-1, |h| h.streamer.num_senones() as c_int)
}

/// Audio rate the bundle expects, Hz, or -1 for a NULL handle.
///
/// # Safety
/// `s` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_sample_rate(s: *mut AmdistillStream) -> c_int {
    handle(s).map_or(-1, |h| h.streamer.sample_rate() as c_int)
}

/// The model's right context in frames (how far the output lags the input), or -1.
///
/// # Safety
/// `s` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_latency_frames(s: *mut AmdistillStream) -> c_int {
    handle(s).map_or(-1, |h| h.streamer.latency_frames() as c_int)
}

/// Algorithmic latency in seconds (right context plus the window past the shift), or -1.
///
/// # Safety
/// `s` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_latency_seconds(s: *mut AmdistillStream) -> f64 {
    handle(s).map_or(-1.0, |h| h.streamer.latency_seconds())
}

/// The last error on this handle ("" when none); valid until the next call on it.
///
/// # Safety
/// `s` is a live handle or NULL.
#[no_mangle]
pub unsafe extern "C" fn amdistill_stream_last_error(s: *mut AmdistillStream) -> *const c_char {
    static NULL_HANDLE: &CStr = c"amdistill: NULL stream handle";
    match handle(s) {
        Some(h) => h.last_error.as_ptr(),
        None => NULL_HANDLE.as_ptr(),
    }
}

/// The library version, e.g. "0.1.0".
#[no_mangle]
pub extern "C" fn amdistill_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr() as *const c_char
}
