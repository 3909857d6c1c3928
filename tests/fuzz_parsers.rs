//! Fuzzing every parser of the stages built so far with proptest: audio (WAV, NIST SPHERE,
//! FLAC), table files and data directories, segments, CTM, TIMIT `.PHN`, HTS and festival
//! labels, TextGrid, Kaldi archives, script files and read specifiers, alignment text, fbank
//! conf files, senone trees and `senones.txt`, phone sets, CMVN statistics.
//!
//! Inputs are random bytes, grammar-made lines (tokens a parser knows mixed with hostile ones)
//! and mutations of valid files (bytes set, 32-bit words overwritten with extreme values,
//! truncations, insertions, deleted and duplicated lines, tokens replaced). Every case checks:
//!
//! - no panic (an `Err` is fine);
//! - no hang: each case must finish within [`CASE_SECONDS`];
//! - no allocation sized by an unchecked header field: a counting global allocator records the
//!   largest single allocation made by the parsing thread, which must stay under
//!   [`alloc_limit`] (a few MiB plus a small multiple of the input's size);
//! - what a parser returns holds together (shapes match data, times are ordered and finite,
//!   a tree file read back and written again is the same tree ...).
//!
//! Cases per property: [`DEFAULT_CASES`], or `AMDISTILL_FUZZ_CASES`; the seed is fixed (the
//! run is reproducible) unless `AMDISTILL_FUZZ_SEED` gives another. Each property prints its
//! case count and time on stderr (`cargo test --release --test fuzz_parsers -- --nocapture`).

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

use amdistill::audio::{read_audio, read_audio_segment, AudioOptions, ChannelSelect};
use amdistill::corpus::import::probe_sample_rate;
use amdistill::corpus::table::{read_map, read_table, scan_table_bytes, write_table};
use amdistill::corpus::{fix_data_dir, validate_data_dir, DataDir, Segment, ValidateOptions};
use amdistill::features::cmvn::CmvnStats;
use amdistill::features::kaldi_io::{
    parse_rxspec, read_matrix_at, write_binary_matrix, ArkReader, DoubleMatrix, ScpReader,
};
use amdistill::features::store::FeatureStore;
use amdistill::features::{FbankOptions, Matrix};
use amdistill::labels::ctm::read_ctm;
use amdistill::labels::hts::{read_festival_lab, read_hts_labels, read_hts_phones};
use amdistill::labels::kaldi_ali::{read_alignments, write_binary_alignments};
use amdistill::labels::phones::PhoneSet;
use amdistill::labels::textgrid::{parse_textgrid, read_textgrid, TierContent};
use amdistill::labels::timit::read_phn;
use amdistill::labels::tree::{read_senones, SenoneTree};

// ---------------------------------------------------------------------------------------------
// The allocation watch

/// A global allocator that records, per thread, the largest single allocation requested.
mod alloc_watch {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Watch;

    thread_local! {
        static LARGEST: Cell<usize> = const { Cell::new(0) };
    }

    fn note(size: usize) {
        // `try_with`: allocations during thread teardown are not watched.
        let _ = LARGEST.try_with(|l| {
            if size > l.get() {
                l.set(size)
            }
        });
    }

    // SAFETY: every call is forwarded unchanged to the system allocator.
    unsafe impl GlobalAlloc for Watch {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc(layout)
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            note(layout.size());
            System.alloc_zeroed(layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            note(new_size);
            System.realloc(ptr, layout, new_size)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
    }

    /// Forgets what this thread allocated so far.
    pub fn reset() {
        LARGEST.with(|l| l.set(0));
    }

    /// The largest single allocation on this thread since [`reset`], in bytes.
    pub fn largest() -> usize {
        LARGEST.with(|l| l.get())
    }
}

#[global_allocator]
static WATCH: alloc_watch::Watch = alloc_watch::Watch;

// ---------------------------------------------------------------------------------------------
// The harness

/// Cases per property when `AMDISTILL_FUZZ_CASES` is not set.
const DEFAULT_CASES: u32 = 1000;

/// The longest one case may take, in seconds (a parser that loops on some input fails here,
/// or hangs the test where the loop never ends).
const CASE_SECONDS: f64 = 5.0;

/// The largest single allocation accepted while parsing `input_len` bytes: 8 MiB (buffers,
/// FFT plans, 64 KiB readers) plus 128 bytes per input byte (a 1-byte sample becomes an f32,
/// upsampled up to 16 times; an ark value decoded from 1 byte to f64).
fn alloc_limit(input_len: usize) -> usize {
    (8 << 20) + 128 * input_len
}

fn cases() -> u32 {
    std::env::var("AMDISTILL_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

fn seed() -> u64 {
    std::env::var("AMDISTILL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed_a11d)
}

thread_local! {
    /// Cases of the running property whose input was accepted (parsed without error).
    static ACCEPTED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Counts the current case as accepted by the parser (for the figures in ROBUSTNESS.md: a
/// property whose inputs are all refused tests only the first checks of a parser).
fn accepted() {
    ACCEPTED.with(|a| a.set(a.get() + 1));
}

/// Runs `test` on `cases()` values of `strategy` and fails with proptest's minimal failing
/// input. `name` and the seed mix into the RNG, so properties draw different inputs.
fn fuzz<S>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S: Strategy,
    S::Value: Debug,
{
    let cases = cases();
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed().to_le_bytes());
    for (i, b) in name.bytes().enumerate() {
        key[8 + i % 24] ^= b;
    }
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2000,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key));
    ACCEPTED.with(|a| a.set(0));
    let start = Instant::now();
    let result = runner.run(&strategy, test);
    let took = start.elapsed();
    eprintln!(
        "fuzz {name}: {cases} cases in {:.2} s ({:.0} us/case), {} accepted, seed {}",
        took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / cases.max(1) as f64,
        ACCEPTED.with(|a| a.get()),
        seed()
    );
    if let Err(e) = result {
        panic!("fuzz {name}: {e}");
    }
}

/// Runs one parse of an `input_len`-byte input and checks its time and largest allocation.
fn guarded<T>(what: &str, input_len: usize, f: impl FnOnce() -> T) -> Result<T, TestCaseError> {
    alloc_watch::reset();
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    let largest = alloc_watch::largest();
    prop_assert!(
        took < Duration::from_secs_f64(CASE_SECONDS),
        "{what}: took {took:?} on a {input_len}-byte input"
    );
    prop_assert!(
        largest <= alloc_limit(input_len),
        "{what}: allocated {largest} bytes at once for a {input_len}-byte input"
    );
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Mutations

/// 32-bit values that break size and count fields.
fn extreme_u32() -> impl Strategy<Value = u32> {
    prop_oneof![
        3 => prop::sample::select(vec![
            0u32, 1, 2, 3, 4, 7, 8, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0x1_0000,
            0x7fff_ffff, 0x8000_0000, 0xffff_fffe, 0xffff_ffff, 16000, 44100,
        ]),
        1 => any::<u32>(),
    ]
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum ByteEdit {
    Set(Index, u8),
    /// Little-endian (false) or big-endian (true) 32-bit word.
    Word(Index, u32, bool),
    Truncate(Index),
    Remove(Index, usize),
    Insert(Index, Vec<u8>),
    /// Copies a span over another place (repeats a header, a chunk).
    Copy(Index, Index, usize),
}

fn byte_edit() -> impl Strategy<Value = ByteEdit> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteEdit::Set(i, b)),
        3 => (any::<Index>(), extreme_u32(), any::<bool>()).prop_map(|(i, w, be)| ByteEdit::Word(i, w, be)),
        1 => any::<Index>().prop_map(ByteEdit::Truncate),
        1 => (any::<Index>(), 1..64usize).prop_map(|(i, n)| ByteEdit::Remove(i, n)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..32)).prop_map(|(i, v)| ByteEdit::Insert(i, v)),
        1 => (any::<Index>(), any::<Index>(), 1..64usize).prop_map(|(a, b, n)| ByteEdit::Copy(a, b, n)),
    ]
}

fn apply_byte_edits(base: &[u8], edits: &[ByteEdit]) -> Vec<u8> {
    let mut v = base.to_vec();
    for e in edits {
        let len = v.len();
        if len == 0 {
            if let ByteEdit::Insert(_, b) = e {
                v.extend_from_slice(b);
            }
            continue;
        }
        match e {
            ByteEdit::Set(i, b) => v[i.index(len)] = *b,
            ByteEdit::Word(i, w, be) => {
                let at = i.index(len);
                let bytes = if *be {
                    w.to_be_bytes()
                } else {
                    w.to_le_bytes()
                };
                for (k, b) in bytes.iter().enumerate() {
                    if at + k < len {
                        v[at + k] = *b;
                    }
                }
            }
            ByteEdit::Truncate(i) => v.truncate(i.index(len)),
            ByteEdit::Remove(i, n) => {
                let at = i.index(len);
                v.drain(at..(at + n).min(len));
            }
            ByteEdit::Insert(i, b) => {
                let at = i.index(len + 1);
                v.splice(at..at, b.iter().copied());
            }
            ByteEdit::Copy(a, b, n) => {
                let (from, to) = (a.index(len), b.index(len));
                let n = (*n).min(len - from).min(len - to);
                v.copy_within(from..from + n, to);
            }
        }
    }
    v
}

/// `base` with 1 to 8 byte edits.
fn mutated_bytes(base: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(byte_edit(), 1..8).prop_map(move |e| apply_byte_edits(&base, &e))
}

/// Tokens that break text parsers: huge, negative, non-finite, empty, quotes, brackets,
/// separators, non-ASCII.
const HOSTILE_TOKENS: &[&str] = &[
    "0",
    "1",
    "-1",
    "-0",
    "0.5",
    "1e308",
    "-1e308",
    "1e-320",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "infinity",
    "18446744073709551616",
    "18446744073709551615",
    "4294967296",
    "4294967295",
    "2147483648",
    "99999999999999999999999",
    "1099511627776",
    "",
    " ",
    "\"",
    "\"\"",
    "[",
    "]",
    "{",
    "}",
    ":",
    ";",
    "#",
    "!",
    "|",
    "-",
    "--",
    "=",
    "\t",
    "\r",
    "\u{feff}",
    "é",
    "\u{85}",
    "\u{a0}",
    "\u{2028}",
    "\0",
    "<exists>",
    "<absent>",
    "end_head",
    "-i",
    "-s2",
    "-r",
];

/// One edit of a text file, by line or token.
#[derive(Debug, Clone)]
enum TextEdit {
    DeleteLine(Index),
    DuplicateLine(Index),
    SwapLines(Index, Index),
    ReplaceToken(Index, String),
    InsertToken(Index, String),
    Bytes(ByteEdit),
}

fn hostile_token() -> BoxedStrategy<String> {
    prop_oneof![
        4 => prop::sample::select(HOSTILE_TOKENS).prop_map(str::to_string),
        1 => "[ -~]{0,12}",
        1 => any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ]
    .boxed()
}

fn text_edit() -> impl Strategy<Value = TextEdit> {
    prop_oneof![
        2 => any::<Index>().prop_map(TextEdit::DeleteLine),
        2 => any::<Index>().prop_map(TextEdit::DuplicateLine),
        1 => (any::<Index>(), any::<Index>()).prop_map(|(a, b)| TextEdit::SwapLines(a, b)),
        5 => (any::<Index>(), hostile_token()).prop_map(|(i, t)| TextEdit::ReplaceToken(i, t)),
        2 => (any::<Index>(), hostile_token()).prop_map(|(i, t)| TextEdit::InsertToken(i, t)),
        2 => byte_edit().prop_map(TextEdit::Bytes),
    ]
}

fn apply_text_edits(base: &str, edits: &[TextEdit]) -> Vec<u8> {
    let mut text = base.to_string();
    for e in edits {
        match e {
            TextEdit::DeleteLine(i) | TextEdit::DuplicateLine(i) => {
                let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
                if lines.is_empty() {
                    continue;
                }
                let at = i.index(lines.len());
                if matches!(e, TextEdit::DeleteLine(_)) {
                    lines.remove(at);
                } else {
                    lines.insert(at, lines[at]);
                }
                text = lines.concat();
            }
            TextEdit::SwapLines(a, b) => {
                let mut lines: Vec<&str> = text.split_inclusive('\n').collect();
                if lines.is_empty() {
                    continue;
                }
                let (x, y) = (a.index(lines.len()), b.index(lines.len()));
                lines.swap(x, y);
                text = lines.concat();
            }
            TextEdit::ReplaceToken(i, t) | TextEdit::InsertToken(i, t) => {
                // Token spans: maximal runs of non-whitespace.
                let spans: Vec<(usize, usize)> = {
                    let mut v = Vec::new();
                    let mut start = None;
                    for (k, c) in text.char_indices() {
                        match (c.is_whitespace(), start) {
                            (false, None) => start = Some(k),
                            (true, Some(s)) => {
                                v.push((s, k));
                                start = None;
                            }
                            _ => {}
                        }
                    }
                    if let Some(s) = start {
                        v.push((s, text.len()));
                    }
                    v
                };
                if spans.is_empty() {
                    text.push_str(t);
                    continue;
                }
                let (s, end) = spans[i.index(spans.len())];
                if matches!(e, TextEdit::ReplaceToken(..)) {
                    text.replace_range(s..end, t);
                } else {
                    text.insert_str(s, &format!("{t} "));
                }
            }
            TextEdit::Bytes(b) => {
                let bytes = apply_byte_edits(text.as_bytes(), std::slice::from_ref(b));
                text = String::from_utf8_lossy(&bytes).into_owned();
            }
        }
    }
    text.into_bytes()
}

/// `base` with 1 to 4 text edits; the result may not be UTF-8 only through `Bytes` edits
/// (which are made lossy), so it is always UTF-8.
fn mutated_text(base: &'static str) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(text_edit(), 1..5).prop_map(move |e| apply_text_edits(base, &e))
}

/// A line made of 0..`max` tokens from `vocab` (and hostile ones), joined by blanks.
fn line_of(vocab: Vec<String>, max: usize) -> impl Strategy<Value = String> {
    let token = prop_oneof![
        5 => prop::sample::select(vocab),
        1 => hostile_token(),
    ];
    let sep = prop::sample::select(vec![" ", " ", " ", "\t", "  ", " \t "]);
    prop::collection::vec((token, sep), 0..=max).prop_map(|toks| {
        let mut s = String::new();
        for (i, (t, sep)) in toks.iter().enumerate() {
            if i > 0 {
                s.push_str(sep);
            }
            s.push_str(t);
        }
        s
    })
}

/// A file of up to `lines` lines from [`line_of`]; sometimes with CRLF or no final newline,
/// sometimes random bytes instead.
fn text_file(vocab: &[&str], max_tokens: usize, lines: usize) -> impl Strategy<Value = Vec<u8>> {
    let vocab: Vec<String> = vocab.iter().map(|s| s.to_string()).collect();
    prop_oneof![
        8 => (prop::collection::vec(line_of(vocab, max_tokens), 0..lines), any::<bool>(), any::<bool>())
            .prop_map(|(ls, crlf, final_nl)| {
                let nl = if crlf { "\r\n" } else { "\n" };
                let mut s = ls.join(nl);
                if final_nl {
                    s.push_str(nl);
                }
                s.into_bytes()
            }),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Writes `bytes` to `dir/name` and returns the path.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

// ---------------------------------------------------------------------------------------------
// Audio

/// A RIFF/WAVE file from its parts (`fmt` is the fmt chunk's body).
fn wav_bytes(
    fmt: &[u8],
    extra_chunk: Option<&[u8]>,
    data: &[u8],
    data_len: Option<u32>,
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(b"RIFF");
    let riff_len = 4 + 8 + fmt.len() + extra_chunk.map_or(0, |c| 8 + c.len()) + 8 + data.len();
    v.extend_from_slice(&(riff_len as u32).to_le_bytes());
    v.extend_from_slice(b"WAVE");
    v.extend_from_slice(b"fmt ");
    v.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
    v.extend_from_slice(fmt);
    if let Some(c) = extra_chunk {
        v.extend_from_slice(b"LIST");
        v.extend_from_slice(&(c.len() as u32).to_le_bytes());
        v.extend_from_slice(c);
        if c.len() % 2 == 1 {
            v.push(0);
        }
    }
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.unwrap_or(data.len() as u32).to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// A 16-byte fmt body (or 40 with the WAVE_FORMAT_EXTENSIBLE extension when `sub` is given).
fn fmt_body(
    tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    block_align: u16,
    sub: Option<u16>,
) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&rate.wrapping_mul(block_align as u32).to_le_bytes());
    f.extend_from_slice(&block_align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    if let Some(sub) = sub {
        f.extend_from_slice(&22u16.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f.extend_from_slice(&0u32.to_le_bytes());
        f.extend_from_slice(&sub.to_le_bytes());
        f.extend_from_slice(&[
            0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
        ]);
    }
    f
}

/// A pseudo-random test signal of `n` values in [-0.5, 0.5].
fn tone(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            (i as f32 * 0.07 + seed as f32).sin() * 0.4
                + ((i * 7919 + seed as usize) % 97) as f32 / 970.0
        })
        .collect()
}

fn pcm(samples: &[f32], bits: u16) -> Vec<u8> {
    let mut v = Vec::new();
    for &s in samples {
        match bits {
            8 => v.push(((s * 127.0) as i32 + 128) as u8),
            16 => v.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes()),
            24 => v.extend_from_slice(&((s * 8388607.0) as i32).to_le_bytes()[..3]),
            _ => v.extend_from_slice(&((s as f64 * 2147483647.0) as i32).to_le_bytes()),
        }
    }
    v
}

/// A NIST SPHERE file: the fields as given (`name -type value`), padded to 1024 bytes.
fn sphere_bytes(fields: &[String], data: &[u8]) -> Vec<u8> {
    let mut h = String::from("NIST_1A\n   1024\n");
    for f in fields {
        h.push_str(f);
        h.push('\n');
    }
    h.push_str("end_head\n");
    let mut v = h.into_bytes();
    v.resize(v.len().max(1024), b' ');
    v.extend_from_slice(data);
    v
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/audio")
            .join(name),
    )
    .unwrap()
}

/// Valid files of every format and encoding, for mutation.
fn valid_audio() -> Vec<Vec<u8>> {
    let x = tone(1200, 1);
    let stereo: Vec<f32> = tone(800, 2).iter().flat_map(|&s| [s, -s]).collect();
    let f32_bytes: Vec<u8> = x.iter().flat_map(|s| s.to_le_bytes()).collect();
    let be16: Vec<u8> = x
        .iter()
        .flat_map(|&s| ((s * 32767.0) as i16).to_be_bytes())
        .collect();
    vec![
        wav_bytes(
            &fmt_body(1, 1, 16000, 16, 2, None),
            None,
            &pcm(&x, 16),
            None,
        ),
        wav_bytes(
            &fmt_body(1, 2, 8000, 8, 2, None),
            Some(b"INFOjunk!"),
            &pcm(&stereo, 8),
            None,
        ),
        wav_bytes(
            &fmt_body(0xFFFE, 1, 16000, 24, 3, Some(1)),
            None,
            &pcm(&x, 24),
            None,
        ),
        wav_bytes(
            &fmt_body(1, 1, 22050, 32, 4, None),
            None,
            &pcm(&x, 32),
            None,
        ),
        wav_bytes(&fmt_body(3, 1, 16000, 32, 4, None), None, &f32_bytes, None),
        sphere_bytes(
            &[
                "sample_count -i 1200".into(),
                "sample_rate -i 16000".into(),
                "channel_count -i 1".into(),
                "sample_n_bytes -i 2".into(),
                "sample_byte_format -s2 01".into(),
                "sample_coding -s3 pcm".into(),
            ],
            &pcm(&x, 16),
        ),
        sphere_bytes(
            &[
                "sample_count -i 600".into(),
                "sample_rate -i 8000".into(),
                "channel_count -i 2".into(),
                "sample_n_bytes -i 2".into(),
                "sample_byte_format -s2 10".into(),
            ],
            &be16,
        ),
        fixture("mono16.flac"),
        fixture("mono24.flac"),
        fixture("stereo16.flac"),
        fixture("mono16.sph"),
    ]
}

/// How a file is read: options, and an optional segment (start, end seconds).
fn audio_read() -> impl Strategy<Value = (AudioOptions, Option<(f64, f64)>)> {
    let channel = prop_oneof![
        3 => Just(ChannelSelect::Downmix),
        1 => (0usize..3).prop_map(ChannelSelect::Channel),
    ];
    let time = prop_oneof![
        4 => 0.0f64..0.2,
        1 => prop::sample::select(vec![-1.0, 0.0, 1e-9, 1e9, f64::NAN, f64::INFINITY, -0.5]),
    ];
    let segment = prop_oneof![3 => Just(None), 1 => (time.clone(), time).prop_map(Some)];
    (
        prop::sample::select(vec![16000u32, 8000, 16000]),
        any::<bool>(),
        channel,
        segment,
    )
        .prop_map(|(rate, resample, channel, seg)| {
            (
                AudioOptions {
                    sample_rate: rate,
                    resample,
                    channel,
                },
                seg,
            )
        })
}

/// Writes `bytes` as an audio file, reads it, and checks what comes back.
fn check_audio(
    dir: &Path,
    bytes: &[u8],
    how: &(AudioOptions, Option<(f64, f64)>),
) -> Result<(), TestCaseError> {
    let path = put(dir, "audio.bin", bytes);
    let (opts, seg) = how;
    if let Ok(rate) = guarded("probe_sample_rate", bytes.len(), || {
        probe_sample_rate(&path)
    })? {
        prop_assert!(rate.is_finite() && rate > 0.0);
    }
    let result = guarded("read_audio", bytes.len(), || match seg {
        None => read_audio(&path, opts),
        Some((s, e)) => read_audio_segment(&path, *s, *e, opts),
    })?;
    match result {
        Ok(w) => {
            accepted();
            prop_assert_eq!(w.sample_rate, opts.sample_rate);
            prop_assert!(!w.samples.is_empty());
            prop_assert!(
                w.samples.iter().all(|v| v.is_finite()),
                "non-finite sample returned"
            );
        }
        Err(e) => {
            // Errors name the file.
            let msg = e.to_string();
            prop_assert!(
                msg.contains("audio.bin") || msg.contains("sample rate"),
                "{}",
                msg
            );
        }
    }
    Ok(())
}

#[test]
fn audio_random_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = prop::sample::select(vec![
        Vec::new(),
        b"RIFF\x24\0\0\0WAVE".to_vec(),
        b"RIFF\xff\xff\xff\xffWAVEfmt ".to_vec(),
        b"NIST_1A\n   1024\n".to_vec(),
        b"NIST_1A\n".to_vec(),
        b"fLaC".to_vec(),
        b"fLaC\0\0\0\x22".to_vec(),
    ]);
    let input = (prefix, prop::collection::vec(any::<u8>(), 0..1500)).prop_map(|(mut p, rest)| {
        p.extend(rest);
        p
    });
    fuzz(
        "audio_random_bytes",
        (input, audio_read()),
        |(bytes, how)| check_audio(tmp.path(), &bytes, &how),
    );
}

#[test]
fn audio_mutated_valid_files() {
    let tmp = tempfile::tempdir().unwrap();
    let input = prop::sample::select(valid_audio()).prop_flat_map(mutated_bytes);
    fuzz(
        "audio_mutated_valid_files",
        (input, audio_read()),
        |(bytes, how)| check_audio(tmp.path(), &bytes, &how),
    );
}

#[test]
fn wav_headers_with_any_field_values() {
    let tmp = tempfile::tempdir().unwrap();
    let tag = prop::sample::select(vec![1u16, 1, 3, 6, 7, 2, 0x11, 0xFFFE, 0, 0xFFFF]);
    let channels = prop_oneof![3 => 1u16..4, 1 => any::<u16>()];
    let rate = prop_oneof![
        3 => prop::sample::select(vec![16000u32, 8000, 44100, 48000, 11025]),
        1 => extreme_u32(),
    ];
    let bits =
        prop_oneof![3 => prop::sample::select(vec![8u16, 16, 24, 32, 12, 64]), 1 => any::<u16>()];
    let block = prop_oneof![3 => 1u16..9, 1 => any::<u16>()];
    let sub = prop_oneof![2 => Just(None), 1 => prop::sample::select(vec![1u16, 3, 6, 0x55]).prop_map(Some)];
    let data_len = prop_oneof![3 => Just(None), 1 => extreme_u32().prop_map(Some)];
    let input = (
        tag,
        channels,
        rate,
        bits,
        block,
        sub,
        prop::option::of(prop::collection::vec(any::<u8>(), 0..9)),
        prop::collection::vec(any::<u8>(), 0..800),
        data_len,
    )
        .prop_map(|(tag, ch, rate, bits, block, sub, extra, data, data_len)| {
            wav_bytes(
                &fmt_body(tag, ch, rate, bits, block, sub),
                extra.as_deref(),
                &data,
                data_len,
            )
        });
    // Headers that agree with their data (every encoding, plain or extensible), as they are
    // and mutated.
    let consistent = (
        1u16..4,
        prop::sample::select(vec![(1u16, 8u16), (1, 16), (1, 24), (1, 32), (3, 32)]),
        any::<bool>(),
        prop::sample::select(vec![16000u32, 8000, 22050, 44100]),
        0usize..400,
        any::<u32>(),
    )
        .prop_map(|(ch, (tag, bits), ext, rate, frames, seed)| {
            let x = tone(frames * ch as usize, seed % 1000);
            let data = if tag == 3 {
                x.iter().flat_map(|v| v.to_le_bytes()).collect()
            } else {
                pcm(&x, bits)
            };
            let (tag, sub) = if ext {
                (0xFFFE, Some(tag))
            } else {
                (tag, None)
            };
            wav_bytes(
                &fmt_body(tag, ch, rate, bits, ch * bits / 8, sub),
                None,
                &data,
                None,
            )
        });
    let input = prop_oneof![
        2 => input,
        1 => consistent.clone(),
        2 => consistent.prop_flat_map(mutated_bytes),
    ];
    fuzz(
        "wav_headers_with_any_field_values",
        (input, audio_read()),
        |(bytes, how)| check_audio(tmp.path(), &bytes, &how),
    );
}

#[test]
fn sphere_headers_with_any_field_values() {
    let tmp = tempfile::tempdir().unwrap();
    let int = || {
        prop_oneof![
            4 => (0i64..5000).prop_map(|v| v.to_string()),
            2 => prop::sample::select(vec!["1", "2", "3", "4", "16000", "8000", "1099511627776", "-1", "0"]).prop_map(str::to_string),
            1 => any::<i64>().prop_map(|v| v.to_string()),
            1 => hostile_token(),
        ]
    };
    let field = |name: &'static str, ty: &'static str, value: BoxedStrategy<String>| {
        prop::option::weighted(0.85, value).prop_map(move |v| v.map(|v| format!("{name} {ty} {v}")))
    };
    let byte_format = prop::sample::select(vec![
        "01",
        "10",
        "0123",
        "3210",
        "012",
        "210",
        "1",
        "shortpack-v0",
        "xx",
    ])
    .prop_map(str::to_string)
    .boxed();
    let coding = prop::sample::select(vec![
        "pcm",
        "PCM",
        "ulaw",
        "pcm,embedded-shorten-v2.00",
        "alaw",
        "wavpack",
        "raw",
    ])
    .prop_map(str::to_string)
    .boxed();
    let fields = (
        field("sample_count", "-i", int().boxed()),
        field("sample_rate", "-i", int().boxed()),
        field("channel_count", "-i", int().boxed()),
        field("sample_n_bytes", "-i", int().boxed()),
        field("sample_byte_format", "-s2", byte_format),
        field("sample_coding", "-s3", coding),
        prop::option::of(line_of(
            vec![
                "database_id".into(),
                "-s5".into(),
                "TIMIT".into(),
                "-r".into(),
                "1.5".into(),
            ],
            4,
        )),
    );
    let header_size = prop_oneof![8 => Just(None), 1 => hostile_token().prop_map(Some)];
    let input = (
        fields,
        prop::collection::vec(any::<u8>(), 0..600),
        header_size,
    )
        .prop_map(|((a, b, c, d, e, f, g), data, size)| {
            let fields: Vec<String> = [a, b, c, d, e, f, g].into_iter().flatten().collect();
            let mut bytes = sphere_bytes(&fields, &data);
            if let Some(size) = size {
                let line = format!("{size:>7}\n");
                let n = line.len().min(8);
                bytes[8..8 + n].copy_from_slice(&line.as_bytes()[..n]);
            }
            bytes
        });
    // Headers that agree with their data, as they are, with one field spoilt, and mutated.
    let consistent = (
        1usize..4,
        2usize..5,
        any::<bool>(),
        prop::sample::select(vec![16000u32, 8000, 20000]),
        0usize..300,
        prop::option::of((0usize..6, hostile_token())),
    )
        .prop_map(|(ch, nb, big_endian, rate, frames, spoil)| {
            let ascending: String = (0..nb).map(|i| char::from(b'0' + i as u8)).collect();
            let order = if big_endian {
                ascending.chars().rev().collect()
            } else {
                ascending
            };
            let mut fields = vec![
                format!("sample_count -i {frames}"),
                format!("sample_rate -i {rate}"),
                format!("channel_count -i {ch}"),
                format!("sample_n_bytes -i {nb}"),
                format!("sample_byte_format -s{nb} {order}"),
                "sample_coding -s3 pcm".to_string(),
            ];
            if let Some((k, token)) = spoil {
                let name_and_type: Vec<&str> = fields[k].split(' ').take(2).collect();
                fields[k] = format!("{} {token}", name_and_type.join(" "));
            }
            let data: Vec<u8> = (0..frames * ch * nb).map(|i| (i * 37 + 11) as u8).collect();
            sphere_bytes(&fields, &data)
        });
    let input = prop_oneof![
        2 => input,
        1 => consistent.clone(),
        2 => consistent.prop_flat_map(mutated_bytes),
    ];
    fuzz(
        "sphere_headers_with_any_field_values",
        (input, audio_read()),
        |(bytes, how)| check_audio(tmp.path(), &bytes, &how),
    );
}

/// The metadata blocks of tests/fixtures/audio/mono16.flac: `(type, body)`, and where its
/// frames start.
fn fixture_blocks() -> (Vec<(u8, Vec<u8>)>, usize) {
    let f = fixture("mono16.flac");
    let (mut blocks, mut at) = (Vec::new(), 4);
    loop {
        let (head, len) = (
            f[at],
            u32::from_be_bytes([0, f[at + 1], f[at + 2], f[at + 3]]) as usize,
        );
        blocks.push((head & 0x7f, f[at + 4..at + 4 + len].to_vec()));
        at += 4 + len;
        if head & 0x80 != 0 {
            return (blocks, at);
        }
    }
}

/// The audio frames of mono16.flac.
fn fixture_frames() -> Vec<u8> {
    fixture("mono16.flac")[fixture_blocks().1..].to_vec()
}

/// mono16.flac with its STREAMINFO, then one block of `kind` holding `body`, then its frames.
fn flac_with_block(kind: u8, body: &[u8]) -> Vec<u8> {
    let (blocks, _) = fixture_blocks();
    let mut v = b"fLaC".to_vec();
    v.push(0);
    v.extend_from_slice(&(blocks[0].1.len() as u32).to_be_bytes()[1..]);
    v.extend_from_slice(&blocks[0].1);
    v.push(0x80 | kind);
    v.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    v.extend_from_slice(body);
    v.extend(fixture_frames());
    v
}

#[test]
fn flac_metadata_blocks_that_fit_are_read() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = read_once(tmp.path(), &fixture("mono16.flac")).0;
    assert_eq!(plain, "ok");
    let mut comment = 4u32.to_le_bytes().to_vec();
    comment.extend_from_slice(b"test");
    comment.extend_from_slice(&2u32.to_le_bytes());
    for c in ["ARTIST=x", "TITLE=a title"] {
        comment.extend_from_slice(&(c.len() as u32).to_le_bytes());
        comment.extend_from_slice(c.as_bytes());
    }
    let mut picture = 3u32.to_be_bytes().to_vec();
    for field in [&b"image/png"[..], b"a cover"] {
        picture.extend_from_slice(&(field.len() as u32).to_be_bytes());
        picture.extend_from_slice(field);
    }
    for v in [1u32, 1, 24, 0] {
        picture.extend_from_slice(&v.to_be_bytes());
    }
    picture.extend_from_slice(&4u32.to_be_bytes());
    picture.extend_from_slice(&[0x89, b'P', b'N', b'G']);
    for (kind, body) in [(4, comment), (6, picture), (1, vec![0; 100])] {
        let (err, _, _) = read_once(tmp.path(), &flac_with_block(kind, &body));
        assert_eq!(err, "ok", "block type {kind}");
    }
}

#[test]
fn resampling_any_samples_between_any_rates() {
    let value = prop_oneof![
        8 => -1.0f32..1.0,
        1 => prop::sample::select(vec![f32::MAX, f32::MIN, 1e16, -1e15, 1e15, f32::NAN, f32::INFINITY, 0.0]),
    ];
    let rate = prop_oneof![
        3 => prop::sample::select(vec![8000u32, 16000, 22050, 44100, 48000, 11025]),
        1 => prop::sample::select(vec![0u32, 1, 7, 999, 1000, 65537, 999_983, 2_147_483_647, u32::MAX]),
    ];
    let input = (prop::collection::vec(value, 0..3000), rate.clone(), rate);
    fuzz(
        "resampling_any_samples_between_any_rates",
        input,
        |(x, from, to)| {
            let r = guarded("resample", x.len() * 4, || {
                amdistill::audio::resample(&x, from, to)
            })?;
            if let Ok(y) = r {
                accepted();
                prop_assert_eq!(
                    y.len(),
                    amdistill::audio::resample::resampled_len(x.len(), from, to)
                );
                prop_assert!(y.iter().all(|v| v.is_finite()) || from == to);
            }
            Ok(())
        },
    );
}

/// Reads `bytes` as audio with default options; returns the error text (or "ok").
fn read_once(dir: &Path, bytes: &[u8]) -> (String, Duration, usize) {
    let path = put(dir, "one.bin", bytes);
    alloc_watch::reset();
    let start = Instant::now();
    let r = read_audio(&path, &AudioOptions::default());
    let took = start.elapsed();
    let largest = alloc_watch::largest();
    (
        r.err().map_or("ok".to_string(), |e| e.to_string()),
        took,
        largest,
    )
}

#[test]
fn audio_headers_claiming_huge_sizes_are_refused_without_allocating_them() {
    let tmp = tempfile::tempdir().unwrap();
    let x = pcm(&tone(1000, 3), 16);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();
    for count in ["1099511627776", "4294967296", "9223372036854775807"] {
        cases.push((
            "SPHERE sample_count",
            sphere_bytes(
                &[
                    format!("sample_count -i {count}"),
                    "sample_rate -i 16000".into(),
                    "channel_count -i 1".into(),
                    "sample_n_bytes -i 2".into(),
                    "sample_byte_format -s2 01".into(),
                ],
                &x,
            ),
            "truncated",
        ));
    }
    cases.push((
        "SPHERE channel_count",
        sphere_bytes(
            &[
                "sample_count -i 1000".into(),
                "sample_rate -i 16000".into(),
                "channel_count -i 1099511627776".into(),
                "sample_n_bytes -i 2".into(),
                "sample_byte_format -s2 01".into(),
            ],
            &x,
        ),
        "channel_count",
    ));
    let mut big_header = sphere_bytes(&["sample_rate -i 16000".into()], &x);
    big_header[8..16].copy_from_slice(b"99999999");
    cases.push(("SPHERE header size", big_header, "header size"));
    cases.push((
        "WAV data length 0xfffffffe",
        wav_bytes(
            &fmt_body(1, 1, 16000, 16, 2, None),
            None,
            &x,
            Some(u32::MAX - 1),
        ),
        "truncated",
    ));
    cases.push((
        "WAV 65535 channels",
        wav_bytes(
            &fmt_body(1, u16::MAX, 16000, 16, u16::MAX, None),
            None,
            &x,
            Some(u32::MAX),
        ),
        "",
    ));
    // A sample rate of 1 Hz: resampling it to 16 kHz would make 16000 samples of each one.
    cases.push((
        "WAV at 1 Hz",
        wav_bytes(&fmt_body(1, 1, 1, 16, 2, None), None, &x, None),
        "sample rate",
    ));
    cases.push((
        "WAV at 2147483647 Hz",
        wav_bytes(&fmt_body(1, 1, 2_147_483_647, 16, 2, None), None, &x, None),
        "sample rate",
    ));
    cases.push((
        "SPHERE at 1 Hz",
        sphere_bytes(
            &[
                "sample_count -i 1000".into(),
                "sample_rate -i 1".into(),
                "sample_n_bytes -i 2".into(),
                "sample_byte_format -s2 01".into(),
            ],
            &x,
        ),
        "sample rate",
    ));
    // FLAC STREAMINFO: 36-bit total samples set to 2^36 - 1 on a 1600-sample file.
    let mut flac = fixture("mono16.flac");
    flac[21] |= 0x0F;
    flac[22..26].copy_from_slice(&[0xFF; 4]);
    cases.push(("FLAC total samples 2^36-1", flac, "STREAMINFO"));
    // Lengths inside FLAC metadata blocks, which symphonia would allocate before reading.
    let mut comment = Vec::new();
    comment.extend_from_slice(&4u32.to_le_bytes());
    comment.extend_from_slice(b"test");
    comment.extend_from_slice(&1u32.to_le_bytes());
    comment.extend_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    comment.extend_from_slice(b"ARTIST=x");
    cases.push((
        "FLAC comment length 2^32-16",
        flac_with_block(4, &comment),
        "VORBIS_COMMENT",
    ));
    let mut count = 4u32.to_le_bytes().to_vec();
    count.extend_from_slice(b"test");
    count.extend_from_slice(&u32::MAX.to_le_bytes());
    cases.push((
        "FLAC comment count 2^32-1",
        flac_with_block(4, &count),
        "VORBIS_COMMENT",
    ));
    let picture = [
        &3u32.to_be_bytes()[..],
        &u32::MAX.to_be_bytes(),
        b"image/png",
    ]
    .concat();
    cases.push((
        "FLAC picture MIME length 2^32-1",
        flac_with_block(6, &picture),
        "PICTURE",
    ));
    let mut padding = flac_with_block(1, &[0; 8]);
    let at = padding.len() - fixture_frames().len() - 8 - 4;
    padding[at + 1..at + 4].copy_from_slice(&[0xFF; 3]);
    cases.push((
        "FLAC block length 2^24-1",
        padding,
        "declares 16777215 bytes",
    ));
    for (what, bytes, needle) in cases {
        let (err, took, largest) = read_once(tmp.path(), &bytes);
        assert!(err != "ok", "{what}: accepted");
        assert!(err.contains(needle), "{what}: {err}");
        assert!(took < Duration::from_secs(1), "{what}: took {took:?}");
        assert!(
            largest <= alloc_limit(bytes.len()),
            "{what}: allocated {largest} bytes at once"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Table files and data directories

#[test]
fn table_lines_from_any_bytes() {
    fuzz(
        "table_lines_from_any_bytes",
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..2000),
            text_file(DATA_DIR_VOCAB, 6, 20),
        ],
        |bytes| {
            let scan = guarded("scan_table_bytes", bytes.len(), || scan_table_bytes(&bytes))?;
            if scan.bad_lines.is_empty() && !scan.entries.is_empty() {
                accepted();
            }
            let lines = bytes.split(|&b| b == b'\n').count();
            prop_assert!(scan.entries.len() + scan.bad_lines.len() <= lines);
            let mut prev = 0;
            for e in &scan.entries {
                prop_assert!(
                    !e.key.is_empty() && !e.key.contains(char::is_whitespace),
                    "key {:?}",
                    e.key
                );
                prop_assert_eq!(e.value.trim(), e.value.as_str());
                prop_assert!(e.line > prev && e.line <= lines);
                prev = e.line;
            }
            Ok(())
        },
    );
}

#[test]
fn tables_written_are_read_back_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let key = "[!-~]{1,12}";
    let value = prop_oneof![Just(String::new()), "[!-~]{1,8}( [!-~]{1,8}){0,3}"];
    let entries = prop::collection::btree_map(key, value, 0..30);
    fuzz(
        "tables_written_are_read_back_unchanged",
        entries,
        |entries| {
            let path = tmp.path().join("table");
            write_table(&path, &entries).unwrap();
            let back = read_map(&path).unwrap();
            accepted();
            prop_assert_eq!(back, entries);
            Ok(())
        },
    );
}

/// Tokens of data-directory files.
const DATA_DIR_VOCAB: &[&str] = &[
    "u1",
    "u2",
    "u3",
    "a-u1",
    "spk1",
    "spk2",
    "r1",
    "r2",
    "0",
    "0.5",
    "1.5",
    "2",
    "-1",
    "m",
    "f",
    "100",
    "x.wav",
    "/dev/null",
    "cmd |",
    "-",
    "ark:1",
    "feats.ark:17",
];

/// A data directory: each known file absent or made by [`text_file`].
fn data_dir_files() -> impl Strategy<Value = Vec<(&'static str, Option<Vec<u8>>)>> {
    let names = [
        "wav.scp",
        "utt2spk",
        "spk2utt",
        "text",
        "segments",
        "utt2num_frames",
        "feats.scp",
        "utt2dur",
        "reco2dur",
        "cmvn.scp",
        "spk2gender",
    ];
    let common = ["wav.scp", "utt2spk", "spk2utt", "text"];
    names
        .iter()
        .map(|&n| {
            let p = if common.contains(&n) { 0.9 } else { 0.25 };
            prop::option::weighted(p, text_file(DATA_DIR_VOCAB, 5, 8)).prop_map(move |f| (n, f))
        })
        .collect::<Vec<_>>()
}

#[test]
fn data_directories_read_validate_and_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let case = std::sync::atomic::AtomicUsize::new(0);
    let opts =
        (any::<bool>(), any::<bool>()).prop_map(|(require_text, check_audio)| ValidateOptions {
            require_text,
            check_audio,
        });
    fuzz(
        "data_directories_read_validate_and_fix",
        (data_dir_files(), opts),
        |(files, opts)| {
            let dir = tmp.path().join(format!(
                "d{}",
                case.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).unwrap();
            let mut size = 0;
            for (name, bytes) in &files {
                if let Some(b) = bytes {
                    put(&dir, name, b);
                    size += b.len();
                }
            }
            if let Ok(d) = guarded("DataDir::read", size, || DataDir::read(&dir))? {
                accepted();
                let _ = d.utt_audio();
                prop_assert_eq!(
                    d.spk2utt().values().map(Vec::len).sum::<usize>(),
                    d.utt2spk.len()
                );
            }
            let _ = guarded("read_table", size, || read_table(dir.join("wav.scp")))?;
            let problems =
                guarded("validate_data_dir", size, || validate_data_dir(&dir, &opts))?.unwrap();
            for p in &problems {
                prop_assert!(p.file.starts_with(&dir), "{}", p);
            }
            if let Ok(report) = guarded("fix_data_dir", size, || fix_data_dir(&dir, &opts))? {
                // What a fix leaves validates clean, but for what cannot be fixed: a missing
                // `text`, files left empty.
                let after = validate_data_dir(&dir, &opts).unwrap();
                for p in &after {
                    prop_assert!(
                        p.line == 0 && (p.msg.starts_with("missing") || p.msg == "empty file"),
                        "after a fix ({} kept): {}",
                        report.utts_kept,
                        p
                    );
                }
                // And a second fix changes nothing.
                let again = fix_data_dir(&dir, &opts).unwrap();
                prop_assert!(
                    again.changed.is_empty(),
                    "second fix changed {:?}",
                    again.changed
                );
                prop_assert_eq!(again.utts_kept, report.utts_kept);
            }
            std::fs::remove_dir_all(&dir).unwrap();
            Ok(())
        },
    );
}

#[test]
fn segment_lines() {
    let vocab = [
        "r1", "rec-2", "0", "0.0", "1", "1.25", "-1", "-1.0", "1e3", "0x10", "+2", ".5",
    ];
    let line = prop_oneof![
        4 => line_of(vocab.iter().map(|s| s.to_string()).collect(), 4),
        1 => any::<String>(),
    ];
    fuzz("segment_lines", line, |line| {
        if let Ok(s) = guarded("Segment::parse", line.len(), || Segment::parse(&line))? {
            accepted();
            prop_assert!(s.start.is_finite() && s.start >= 0.0);
            prop_assert!(s.end == -1.0 || (s.end.is_finite() && s.end > s.start));
            prop_assert!(!s.recording.is_empty());
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Label files

/// Runs a file parser on `bytes` written to `dir/name`.
fn parse_file<T>(
    dir: &Path,
    name: &str,
    bytes: &[u8],
    f: impl FnOnce(PathBuf) -> T,
) -> Result<T, TestCaseError> {
    let path = put(dir, name, bytes);
    guarded(name, bytes.len(), || f(path))
}

#[test]
fn ctm_files() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = [
        "u1", "u2", "1", "A", "0", "0.01", "0.25", "1.5", "sil", "ah", "-0.5", "1e300",
    ];
    fuzz("ctm_files", text_file(&vocab, 6, 12), |bytes| {
        if let Ok(ctm) = parse_file(tmp.path(), "phones.ctm", &bytes, read_ctm)? {
            accepted();
            for phones in ctm.values() {
                for p in phones {
                    prop_assert!(p.start.is_finite() && p.start >= 0.0 && p.end >= p.start);
                }
            }
        }
        Ok(())
    });
}

#[test]
fn pronouncing_dictionaries() {
    let tmp = tempfile::tempdir().unwrap();
    let set = amdistill::labels::phones::PhoneSet::arpabet();
    let vocab = [
        "one",
        "one(2)",
        "word(x)",
        "(",
        ")",
        "W",
        "AH1",
        "N",
        "ax",
        "sil",
        "ZZ9",
        ";;;",
        "#",
        "\u{e9}t\u{e9}",
        "AH0",
    ];
    fuzz(
        "pronouncing_dictionaries",
        text_file(&vocab, 6, 12),
        |bytes| {
            let parsed = parse_file(tmp.path(), "lexicon.dict", &bytes, |p| {
                amdistill::align::Lexicon::read(p, &set)
            })?;
            if let Ok(lex) = parsed {
                accepted();
                for (word, prons) in lex.iter() {
                    prop_assert!(!word.is_empty() && !prons.is_empty());
                    prop_assert!(prons
                        .iter()
                        .all(|p| !p.is_empty() && p.iter().all(|&id| set.phone(id).is_some())));
                }
                // What is read writes back and reads again to the same lexicon.
                let out = tmp.path().join("written.dict");
                lex.write(&out, &set).unwrap();
                prop_assert_eq!(amdistill::align::Lexicon::read(&out, &set).unwrap(), lex);
            }
            Ok(())
        },
    );
}

#[test]
fn letter_to_sound_rules_on_any_string() {
    fuzz(
        "letter_to_sound_rules_on_any_string",
        any::<String>(),
        |word| {
            let phones = guarded("rule_lts", word.len(), || {
                amdistill::align::lexicon::rule_lts(&word)
            })?;
            accepted();
            let set = amdistill::labels::phones::PhoneSet::arpabet();
            prop_assert!(phones.iter().all(|p| set.lookup(p).is_some()));
            prop_assert!(phones.len() <= 3 * word.len());
            Ok(())
        },
    );
}

#[test]
fn timit_phn_files() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = [
        "0", "3050", "4559", "5723", "h#", "sh", "ix", "pau", "16000", "-5", "1.5",
    ];
    let input = prop_oneof![
        text_file(&vocab, 4, 12),
        mutated_text("0 3050 h#\n3050 4559 sh\n4559 5723 ix\n5723 6400 hv\n6400 9000 h#\n"),
    ];
    fuzz("timit_phn_files", input, |bytes| {
        if let Ok(phones) = parse_file(tmp.path(), "SI1.PHN", &bytes, |p| read_phn(p, 16000.0))? {
            accepted();
            prop_assert!(!phones.is_empty());
            let mut prev_end = 0.0;
            for p in &phones {
                prop_assert!(p.start >= prev_end && p.end >= p.start && p.end.is_finite());
                prev_end = p.end;
            }
        }
        Ok(())
    });
}

const HTS_LAB: &str = "0 3000000 x^x-sil+hh=iy@x_x/A:0_0_0\n\
3000000 3650000 x^sil-hh+iy=t@1_2/A:0_0_0\n3650000 4500000 sil^hh-iy+t=sil@2_1/A:0_0_0\n\
4500000 6000000 hh^iy-t+sil=x@1_1/A:0_0_0\n";

const HTS_STATE_LAB: &str = "0 500000 sil[2]\n500000 1000000 sil[3]\n1000000 1500000 sil[4]\n\
1500000 1700000 a-hh+iy[2]\n1700000 2100000 a-hh+iy[3]\n2100000 2500000 hh-iy+t[2]\n";

const FESTIVAL_LAB: &str = "separator ;\nnfields 1\n#\n    0.19500  125 pau\n    0.27500  125 hh\n\
    0.33500  125 ah\n    0.43000  125 l\n    0.67500  125 ow\n    1.10500  125 pau\n";

#[test]
fn hts_and_festival_label_files() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = [
        "0",
        "500000",
        "1200000",
        "2000000",
        "sil",
        "x^sil-hh+iy=t@1_2/A:0_0_0",
        "hh[2]",
        "hh[3]",
        "a-b+c[4]",
        "a[x]",
        "#",
        "0.05",
        "0.2",
        "125",
        ";",
        "separator",
        "ax-h",
        "-",
        "+",
        "[",
        "]",
    ];
    fuzz(
        "hts_and_festival_label_files",
        prop_oneof![
            text_file(&vocab, 4, 12),
            mutated_text(HTS_LAB),
            mutated_text(HTS_STATE_LAB),
            mutated_text(FESTIVAL_LAB),
        ],
        |bytes| {
            let check = |phones: &[amdistill::labels::PhoneLabel]| -> Result<(), TestCaseError> {
                prop_assert!(!phones.is_empty());
                for p in phones {
                    prop_assert!(
                        p.start.is_finite() && p.end.is_finite() && p.end >= p.start,
                        "{:?}",
                        p
                    );
                    prop_assert!(!p.phone.is_empty());
                }
                Ok(())
            };
            if let Ok(labels) = parse_file(tmp.path(), "hts.lab", &bytes, read_hts_labels)? {
                accepted();
                for l in &labels {
                    prop_assert!(l.end >= l.start && !l.phone.is_empty());
                }
            }
            if let Ok(p) = parse_file(tmp.path(), "fest.lab", &bytes, read_festival_lab)? {
                check(&p)?;
            }
            if let Ok(p) = parse_file(tmp.path(), "auto.lab", &bytes, read_hts_phones)? {
                check(&p)?;
            }
            Ok(())
        },
    );
}

const TEXTGRID_LONG: &str = r#"File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0
xmax = 2.3
tiers? <exists>
size = 2
item []:
    item [1]:
        class = "IntervalTier"
        name = "phones"
        xmin = 0
        xmax = 2.3
        intervals: size = 3
        intervals [1]:
            xmin = 0
            xmax = 0.5
            text = "sil"
        intervals [2]:
            xmin = 0.5
            xmax = 1.2
            text = "a ""quoted"" one"
        intervals [3]:
            xmin = 1.2
            xmax = 2.3
            text = ""
    item [2]:
        class = "TextTier"
        name = "events"
        xmin = 0
        xmax = 2.3
        points: size = 1
        points [1]:
            number = 1.0
            mark = "click"
"#;

const TEXTGRID_SHORT: &str =
    "File type = \"ooTextFile\"\nObject class = \"TextGrid\"\n\n0\n2.3\n<exists>\n1\n\
\"IntervalTier\"\n\"phones\"\n0\n2.3\n2\n0\n1\n\"a\"\n1\n2.3\n\"b\" ! a comment\n";

#[test]
fn textgrid_files() {
    let tmp = tempfile::tempdir().unwrap();
    let base = prop_oneof![mutated_text(TEXTGRID_LONG), mutated_text(TEXTGRID_SHORT)];
    // As UTF-8, UTF-8 with a BOM, or UTF-16 (either byte order) with a BOM.
    let encoded = (base, 0u8..5, any::<bool>()).prop_map(|(bytes, enc, odd)| {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut out = match enc {
            0 | 1 => bytes,
            2 => [&[0xEF, 0xBB, 0xBF][..], &bytes].concat(),
            3 => [
                vec![0xFF, 0xFE],
                text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect(),
            ]
            .concat(),
            _ => [
                vec![0xFE, 0xFF],
                text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect(),
            ]
            .concat(),
        };
        if odd && enc >= 3 {
            out.pop();
        }
        out
    });
    fuzz("textgrid_files", encoded, |bytes| {
        if let Ok(tg) = parse_file(tmp.path(), "a.TextGrid", &bytes, read_textgrid)? {
            accepted();
            prop_assert!(tg.xmin.is_finite() && tg.xmax.is_finite());
            for tier in &tg.tiers {
                if let TierContent::Intervals(v) = &tier.content {
                    for w in v.windows(2) {
                        prop_assert!(w[1].xmin + 1e-9 >= w[0].xmax);
                    }
                    for i in v {
                        prop_assert!(i.xmax >= i.xmin);
                    }
                }
            }
        }
        Ok(())
    });
}

#[test]
fn textgrid_counts_claiming_huge_sizes_are_refused() {
    for count in ["1e15", "4294967296", "99999999999", "-3", "2.5"] {
        let text =
            TEXTGRID_LONG.replace("intervals: size = 3", &format!("intervals: size = {count}"));
        alloc_watch::reset();
        let r = parse_textgrid("big.TextGrid", &text);
        assert!(r.is_err(), "{count}: accepted");
        assert!(
            alloc_watch::largest() <= alloc_limit(text.len()),
            "{count}: allocated {}",
            alloc_watch::largest()
        );
        let text = TEXTGRID_LONG.replace("size = 2\n", &format!("size = {count}\n"));
        alloc_watch::reset();
        assert!(
            parse_textgrid("big.TextGrid", &text).is_err(),
            "{count}: accepted"
        );
        assert!(alloc_watch::largest() <= alloc_limit(text.len()));
    }
}

#[test]
fn alignment_text_files() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = [
        "u1",
        "u2",
        "0",
        "1",
        "2",
        "17",
        "4294967295",
        "4294967296",
        "-1",
        "1.0",
    ];
    fuzz("alignment_text_files", text_file(&vocab, 12, 10), |bytes| {
        if let Ok(ali) = parse_file(tmp.path(), "ali.txt", &bytes, read_alignments)? {
            accepted();
            for ids in ali.values() {
                prop_assert!(!ids.is_empty());
            }
        }
        Ok(())
    });
}

/// A valid binary archive (as `ali-to-pdf ... ark:-` writes), then mutated: sizes, widths
/// and keys of any value are refused without allocating what they claim.
#[test]
fn alignment_binary_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let valid = tmp.path().join("valid.ark");
    let ali = std::collections::BTreeMap::from([
        ("u1".to_string(), vec![0u32, 5, 5, 17]),
        ("u2".to_string(), vec![3u32; 9]),
    ]);
    write_binary_alignments(&valid, &ali).unwrap();
    let base = std::fs::read(&valid).unwrap();
    assert_eq!(read_alignments(&valid).unwrap(), ali);
    fuzz("alignment_binary_archives", mutated_bytes(base), |bytes| {
        if let Ok(ali) = parse_file(tmp.path(), "ali.ark", &bytes, read_alignments)? {
            accepted();
            let frames: usize = ali.values().map(Vec::len).sum();
            prop_assert!(ali.values().all(|v| !v.is_empty()));
            prop_assert!(frames * 2 <= bytes.len());
        }
        Ok(())
    });
}

#[test]
fn phone_set_files() {
    let tmp = tempfile::tempdir().unwrap();
    let phones_vocab = [
        "sil", "aa", "ae", "b", "h#", "sp", "0", "1", "2", "3", "x:y", "-1",
    ];
    let classes_vocab = [
        "vowel:",
        "stop:",
        "silence:",
        "sil",
        "aa",
        "ae",
        "b",
        "#",
        "zz",
        ":",
        "# amdistill phone classes, set timit",
    ];
    let input = (
        prop_oneof![
            text_file(&phones_vocab, 3, 8),
            mutated_text("sil 0\naa 1\nae 2\nb 3\nd 4\nsp 5\n"),
        ],
        prop::option::of(prop_oneof![
            text_file(&classes_vocab, 5, 6),
            mutated_text(
                "# amdistill phone classes, set mine\nsilence: sil sp\nvowel: aa ae\nstop: b d\n"
            ),
        ]),
    );
    fuzz("phone_set_files", input, |(phones, classes)| {
        let p = put(tmp.path(), "phones.txt", &phones);
        let c = classes
            .as_ref()
            .map(|c| put(tmp.path(), "phone_classes.txt", c));
        let size = phones.len() + classes.as_ref().map_or(0, Vec::len);
        if let Ok(set) = guarded("PhoneSet::load", size, || PhoneSet::load(&p, c.as_deref()))? {
            accepted();
            prop_assert!(!set.is_empty());
            for (i, name) in set.phones().iter().enumerate() {
                prop_assert_eq!(set.id(name), Some(i as u32));
            }
            for class in set.classes() {
                prop_assert!(class.phones.iter().all(|&id| (id as usize) < set.len()));
            }
        }
        Ok(())
    });
}

const TREE_TEXT: &str = "# amdistill senone tree\n\
senone-tree 1 nodes 6 senones 4\n\
root 0 1 0\n\
node 0 count 10 gain 1.5 question vowel: if left in { 1 2 } then 1 else 2\n\
leaf 1 senone 0 count 4\n\
node 2 count 6 gain 0.5 question nasal: if right in { 3 } then 3 else 4\n\
leaf 3 senone 1 count 3\n\
leaf 4 senone 2 count 3\n\
root 1 0 5\n\
leaf 5 senone 3 count 2\n";

#[test]
fn senone_tree_files() {
    assert!(
        SenoneTree::parse(TREE_TEXT, Path::new("tree")).is_ok(),
        "the base tree parses"
    );
    fuzz("senone_tree_files", mutated_text(TREE_TEXT), |bytes| {
        let text = String::from_utf8_lossy(&bytes);
        let parsed = guarded("SenoneTree::parse", bytes.len(), || {
            SenoneTree::parse(&text, Path::new("tree"))
        })?;
        if let Ok(tree) = parsed {
            accepted();
            // Written and read back, it is the same tree; every root leads to a senone.
            let again = SenoneTree::parse(&tree.to_text(), Path::new("tree2")).unwrap();
            prop_assert_eq!(&again, &tree);
            let roots: Vec<(u32, u8)> = tree.roots().collect();
            for (phone, state) in roots {
                for (left, right) in [(0, 0), (1, 3), (2, 7), (u32::MAX, 1)] {
                    let key = amdistill::labels::tree::ContextKey {
                        left,
                        phone,
                        right,
                        state,
                    };
                    let s = tree.senone(&key).unwrap();
                    prop_assert!((s as usize) < tree.num_senones());
                }
            }
            let _ = tree.report();
        }
        Ok(())
    });
}

#[test]
fn senone_tree_headers_claiming_huge_sizes_are_refused() {
    for (nodes, senones) in [
        ("18446744073709551615", "4"),
        ("6", "18446744073709551615"),
        ("1099511627776", "1099511627776"),
    ] {
        let text = TREE_TEXT.replace(
            "nodes 6 senones 4",
            &format!("nodes {nodes} senones {senones}"),
        );
        alloc_watch::reset();
        assert!(SenoneTree::parse(&text, Path::new("tree")).is_err());
        assert!(
            alloc_watch::largest() <= alloc_limit(text.len()),
            "{nodes} {senones}"
        );
    }
}

#[test]
fn senones_txt_files() {
    let tmp = tempfile::tempdir().unwrap();
    let vocab = [
        "0",
        "1",
        "2",
        "3",
        "12",
        "1.5",
        "nan",
        "-1",
        "*",
        "left=vowel&right!=nasal",
        "#",
    ];
    fuzz("senones_txt_files", text_file(&vocab, 6, 8), |bytes| {
        if let Ok(senones) = parse_file(tmp.path(), "senones.txt", &bytes, read_senones)? {
            accepted();
            for (i, s) in senones.iter().enumerate() {
                prop_assert_eq!(s.senone as usize, i);
            }
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Kaldi archives, scripts, read specifiers, CMVN statistics

fn i32_field(v: i32) -> [u8; 5] {
    let b = v.to_le_bytes();
    [4, b[0], b[1], b[2], b[3]]
}

/// A binary `DM` entry.
fn dm_entry(key: &str, rows: i32, cols: i32, values: &[f64]) -> Vec<u8> {
    let mut v = format!("{key} \0BDM ").into_bytes();
    v.extend_from_slice(&i32_field(rows));
    v.extend_from_slice(&i32_field(cols));
    for x in values {
        v.extend_from_slice(&x.to_le_bytes());
    }
    v
}

/// A compressed-matrix entry (`CM`, `CM2`, `CM3`) with the given header and payload.
fn cm_entry(
    key: &str,
    token: &str,
    min: f32,
    range: f32,
    rows: i32,
    cols: i32,
    payload: &[u8],
) -> Vec<u8> {
    let mut v = format!("{key} \0B{token} ").into_bytes();
    v.extend_from_slice(&min.to_le_bytes());
    v.extend_from_slice(&range.to_le_bytes());
    v.extend_from_slice(&rows.to_le_bytes());
    v.extend_from_slice(&cols.to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// An archive with one entry of every kind: FM, DM, CM, CM2, CM3, empty, text.
fn valid_ark() -> Vec<u8> {
    let mut v = Vec::new();
    let m = Matrix::from_vec(3, 4, (0..12).map(|i| i as f32 * 0.5 - 2.0).collect());
    write_binary_matrix(&mut v, "fm", &m).unwrap();
    v.extend(dm_entry("dm", 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    // CM: 2 columns, 3 rows: per-column 4 x u16 percentiles, then bytes column by column.
    let mut payload = Vec::new();
    for _ in 0..2 {
        for p in [0u16, 16384, 49152, 65535] {
            payload.extend_from_slice(&p.to_le_bytes());
        }
    }
    payload.extend_from_slice(&[0, 64, 255, 10, 128, 200]);
    v.extend(cm_entry("cm", "CM", -1.0, 2.0, 3, 2, &payload));
    v.extend(cm_entry(
        "cm2",
        "CM2",
        0.0,
        1.0,
        2,
        2,
        &[0, 0, 255, 255, 0, 128, 1, 0],
    ));
    v.extend(cm_entry(
        "cm3",
        "CM3",
        0.0,
        1.0,
        2,
        3,
        &[0, 1, 2, 3, 4, 255],
    ));
    write_binary_matrix(&mut v, "empty", &Matrix::default()).unwrap();
    v.extend_from_slice(b"text  [\n  1 2.5 -3 \n  4 5e-3 6 ]\n");
    v
}

/// Reads every entry of `bytes` as f32 and as f64; checks shapes and that reading stops at
/// the first error.
fn check_ark(bytes: &[u8]) -> Result<(), TestCaseError> {
    let entries: Vec<_> = guarded("ArkReader", bytes.len(), || {
        ArkReader::from_bytes("fuzz.ark", bytes.to_vec()).collect()
    })?;
    if !entries.is_empty() && entries.iter().all(|e| e.is_ok()) {
        accepted();
    }
    for (i, e) in entries.iter().enumerate() {
        match e {
            Ok((key, m)) => {
                prop_assert!(!key.is_empty());
                prop_assert_eq!(m.data.len(), m.rows * m.cols);
            }
            Err(err) => {
                prop_assert_eq!(i, entries.len() - 1, "entries after an error");
                prop_assert!(err.to_string().contains("fuzz.ark"));
            }
        }
    }
    let doubles = guarded("ArkReader::next_double", bytes.len(), || {
        let mut r = ArkReader::from_bytes("fuzz.ark", bytes.to_vec());
        let mut out = Vec::new();
        while let Some(e) = r.next_double() {
            out.push(e.map(|(k, m)| (k, m.rows, m.cols, m.data.len())));
        }
        out
    })?;
    prop_assert_eq!(doubles.len(), entries.len());
    for (d, e) in doubles.iter().zip(&entries) {
        match (d, e) {
            (Ok((k, r, c, n)), Ok((key, m))) => {
                prop_assert_eq!((k, *r, *c), (key, m.rows, m.cols));
                prop_assert_eq!(*n, r * c);
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "f32 and f64 reads disagree"),
        }
    }
    Ok(())
}

#[test]
fn kaldi_archives_mutated() {
    let base = valid_ark();
    let entries: Vec<_> = ArkReader::from_bytes("base", base.clone()).collect();
    assert_eq!(entries.len(), 7);
    assert!(entries.iter().all(|e| e.is_ok()), "{entries:?}");
    fuzz("kaldi_archives_mutated", mutated_bytes(base), |bytes| {
        check_ark(&bytes)
    });
}

#[test]
fn kaldi_archives_random_and_structured() {
    let token = prop::sample::select(vec![
        "FM", "DM", "CM", "CM2", "CM3", "XX", "FM\0", "FV", "CM4",
    ]);
    let size = prop_oneof![
        3 => -2i32..8,
        1 => prop::sample::select(vec![i32::MAX, i32::MIN, 1 << 16, 1 << 30, 0x7fff_fff0]),
    ];
    let structured = (
        token,
        size.clone(),
        size,
        prop::collection::vec(any::<u8>(), 0..400),
        any::<bool>(),
    )
        .prop_map(|(token, rows, cols, payload, compressed_layout)| {
            if token.starts_with("CM") && compressed_layout {
                cm_entry("k", token, -1.0, 2.0, rows, cols, &payload)
            } else {
                let mut v = format!("k \0B{token} ").into_bytes();
                v.extend_from_slice(&i32_field(rows));
                v.extend_from_slice(&i32_field(cols));
                v.extend_from_slice(&payload);
                v
            }
        });
    let text = "k( |\t|\n)+\\[[ 0-9.e+\\-\n;\\]nainf]{0,60}".prop_map(String::into_bytes);
    let input = prop_oneof![
        3 => structured,
        1 => text,
        1 => prop::collection::vec(any::<u8>(), 0..600),
    ];
    fuzz("kaldi_archives_random_and_structured", input, |bytes| {
        check_ark(&bytes)
    });
}

#[test]
fn kaldi_headers_claiming_huge_matrices_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for token in ["FM", "DM", "CM", "CM2", "CM3"] {
        for (rows, cols) in [
            (i32::MAX, i32::MAX),
            (1 << 20, 1 << 11),
            (1, i32::MAX),
            (i32::MAX, 1),
        ] {
            let bytes = if token.starts_with("CM") {
                cm_entry("big", token, 0.0, 1.0, rows, cols, &[0; 64])
            } else {
                let mut v = format!("big \0B{token} ").into_bytes();
                v.extend_from_slice(&i32_field(rows));
                v.extend_from_slice(&i32_field(cols));
                v.extend_from_slice(&[0; 64]);
                v
            };
            alloc_watch::reset();
            let start = Instant::now();
            let r: Vec<_> = ArkReader::from_bytes("big.ark", bytes.clone()).collect();
            assert!(
                matches!(r.as_slice(), [Err(_)]),
                "{token} {rows}x{cols}: {r:?}"
            );
            // The same through a script file and a read specifier, shape included.
            let ark = put(tmp.path(), "big.ark", &bytes);
            let scp = put(
                tmp.path(),
                "big.scp",
                format!("big {}:4\n", ark.display()).as_bytes(),
            );
            let reader = ScpReader::open(&scp).unwrap();
            assert!(
                reader.read(0).is_err() && reader.shape(0).is_err(),
                "{token} {rows}x{cols}"
            );
            assert!(read_matrix_at(&format!("{}:4", ark.display())).is_err());
            assert!(start.elapsed() < Duration::from_secs(1));
            assert!(
                alloc_watch::largest() <= alloc_limit(bytes.len()),
                "{token} {rows}x{cols}: {}",
                alloc_watch::largest()
            );
        }
    }
}

#[test]
fn script_files_and_read_specifiers() {
    let tmp = tempfile::tempdir().unwrap();
    let ark_bytes = valid_ark();
    let ark = put(tmp.path(), "feats.ark", &ark_bytes);
    // The offsets of the valid entries (just after "KEY ").
    let mut offsets = Vec::new();
    let mut r = ArkReader::from_bytes("a", ark_bytes.clone());
    let mut at = 0;
    while let Some(Ok((key, _))) = r.next() {
        offsets.push((at + key.len() + 1).to_string());
        at = r.position();
        while ark_bytes.get(at).is_some_and(|b| b.is_ascii_whitespace()) {
            at += 1;
        }
    }
    offsets.extend(
        [
            "0",
            "1",
            "3",
            "99999",
            "18446744073709551615",
            "18446744073709551616",
        ]
        .map(String::from),
    );
    let ark_path = ark.display().to_string();
    let spec = (
        prop::sample::select(vec![
            ark_path.clone(),
            "feats.ark".into(),
            "missing.ark".into(),
            "-".into(),
            String::new(),
        ]),
        prop::option::of(prop::sample::select(offsets)),
        prop::option::of(prop::sample::select(vec![
            "[0:1]",
            "[1:2,0:1]",
            "[0:0,2:3]",
            "[:,1:1]",
            "[5:1]",
            "[0:9999]",
            "[a:b]",
            "[",
            "]",
            "[0:1,]",
            "[18446744073709551615:18446744073709551615]",
        ])),
        prop::option::of(hostile_token()),
    )
        .prop_map(|(path, offset, range, junk)| {
            let mut s = path;
            if let Some(o) = offset {
                s.push(':');
                s.push_str(&o);
            }
            if let Some(r) = range {
                s.push_str(r);
            }
            if let Some(j) = junk {
                s.push_str(&j);
            }
            s
        });
    let line = (
        prop::sample::select(vec!["u1", "u2", "u3", "u1"]),
        prop::option::of(spec),
    )
        .prop_map(|(k, s)| match s {
            Some(s) => format!("{k} {s}"),
            None => k.to_string(),
        });
    let scp_text = prop::collection::vec(line, 0..6).prop_map(|l| l.join("\n"));
    fuzz("script_files_and_read_specifiers", scp_text, |text| {
        let scp = put(tmp.path(), "feats.scp", text.as_bytes());
        let size = text.len() + ark_bytes.len();
        if let Ok(reader) = guarded("ScpReader::open", size, || ScpReader::open(&scp))? {
            accepted();
            for i in 0..reader.len() {
                let m = guarded("ScpReader::read", size, || reader.read(i))?;
                let shape = guarded("ScpReader::shape", size, || reader.shape(i))?;
                match (m, shape) {
                    (Ok(m), Ok(s)) => {
                        prop_assert_eq!(
                            (m.rows, m.cols),
                            s,
                            "shape and read disagree for {}",
                            reader.key(i)
                        );
                        prop_assert_eq!(m.data.len(), m.rows * m.cols);
                    }
                    (Err(_), Err(_)) => {}
                    (m, s) => prop_assert!(
                        false,
                        "read {:?} but shape {:?}",
                        m.map(|m| (m.rows, m.cols)),
                        s
                    ),
                }
                let _ = reader.read_double(i);
            }
        }
        Ok(())
    });
}

#[test]
fn read_specifiers_from_any_string() {
    fuzz("read_specifiers_from_any_string", any::<String>(), |s| {
        if let Ok(spec) = guarded("parse_rxspec", s.len(), || parse_rxspec(&s))? {
            accepted();
            prop_assert!(!spec.path.as_os_str().is_empty());
            if let Some(r) = spec.range {
                for (a, b) in [r.rows, r.cols].into_iter().flatten() {
                    prop_assert!(a <= b);
                }
            }
        }
        Ok(())
    });
}

#[test]
fn cmvn_statistics_matrices() {
    let value = prop_oneof![
        4 => -1e3f64..1e3,
        1 => prop::sample::select(vec![0.0, -0.0, f64::NAN, f64::INFINITY, -1.0, 1e300, 1e-300]),
    ];
    let shape = prop_oneof![3 => (Just(2usize), 2usize..6), 1 => (0usize..4, 0usize..6)];
    let input = (shape, any::<bool>(), 0usize..4, any::<bool>()).prop_flat_map(
        move |((rows, cols), exact, frames, norm_vars)| {
            let n = if exact { rows * cols } else { rows * cols + 1 };
            (
                Just(rows),
                Just(cols),
                prop::collection::vec(value.clone(), n),
                Just(frames),
                Just(norm_vars),
            )
        },
    );
    fuzz(
        "cmvn_statistics_matrices",
        input,
        |(rows, cols, data, frames, norm_vars)| {
            let m = DoubleMatrix { rows, cols, data };
            if let Ok(stats) = guarded("CmvnStats::from_kaldi_matrix", m.data.len() * 8, || {
                CmvnStats::from_kaldi_matrix(&m)
            })? {
                accepted();
                let dim = stats.dim();
                let mut feats = Matrix::from_vec(frames, dim, vec![0.25; frames * dim]);
                if stats.apply(&mut feats, norm_vars).is_ok() {
                    prop_assert!(
                        feats.data.iter().all(|v| v.is_finite()),
                        "apply gave non-finite features"
                    );
                }
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Fbank conf files

#[test]
fn fbank_conf_files() {
    let mut vocab: Vec<String> = Vec::new();
    for (name, _) in amdistill::features::options::OPTION_NAMES {
        for v in [
            "0", "1", "true", "false", "80", "-400", "0.97", "hamming", "1e30", "nan", "", "x",
        ] {
            vocab.push(format!("--{name}={v}"));
        }
        vocab.push(format!("--{name}"));
        vocab.push(format!("--{}=3", name.replace('-', "_")));
    }
    vocab.extend(
        [
            "# comment",
            "--config=other.conf",
            "--verbose=2",
            "--no-such=1",
            "num-mel-bins=40",
            "--=",
            "--",
        ]
        .map(String::from),
    );
    let line = prop_oneof![4 => prop::sample::select(vocab), 1 => any::<String>()];
    let text =
        prop::collection::vec((line, prop::option::of(hostile_token())), 0..10).prop_map(|ls| {
            ls.into_iter()
                .map(|(l, tail)| match tail {
                    Some(t) => format!("{l} {t}"),
                    None => l,
                })
                .collect::<Vec<_>>()
                .join("\n")
        });
    fuzz("fbank_conf_files", text, |text| {
        let mut opts = FbankOptions::default();
        if guarded("apply_conf_str", text.len(), || opts.apply_conf_str(&text))?.is_ok()
            && guarded("validate", text.len(), || opts.validate())?.is_ok()
        {
            accepted();
            // What validates can be written as a conf file and read back unchanged (compared
            // as conf text: NaN != NaN).
            let mut back = FbankOptions::default();
            back.apply_conf_str(&opts.to_conf_string()).unwrap();
            // --dither-seed is written as a comment (Kaldi refuses unknown options); fbank.json
            // keeps it.
            back.frame.dither_seed = opts.frame.dither_seed;
            prop_assert_eq!(back.to_conf_string(), opts.to_conf_string());
        }
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Feature directories

#[test]
fn feature_store_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("feats");
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let ark = dir.join("data/feats.1.ark");
    let mut w = amdistill::features::kaldi_io::ArkWriter::create(&ark).unwrap();
    let (mut scp, mut n2f) = (String::new(), String::new());
    for (utt, rows) in [("a-1", 3usize), ("a-2", 1), ("b-1", 5)] {
        let m = Matrix::from_vec(rows, 4, (0..rows * 4).map(|i| i as f32).collect());
        scp.push_str(&format!("{utt} {}\n", w.write_matrix(utt, &m).unwrap()));
        n2f.push_str(&format!("{utt} {rows}\n"));
    }
    w.commit().unwrap();
    let mut opts = FbankOptions::default();
    opts.mel.num_bins = 4;
    let json = serde_json::to_string_pretty(&opts).unwrap();
    let files: Vec<(&'static str, String)> = vec![
        ("feats.scp", scp),
        ("utt2num_frames", n2f),
        ("frame_shift", "0.01\n".to_string()),
        ("fbank.json", json),
    ];
    for (name, text) in &files {
        put(&dir, name, text.as_bytes());
    }
    assert_eq!(FeatureStore::open(&dir).unwrap().total_frames(), 9);
    let choice = (
        0..files.len(),
        prop::collection::vec(text_edit(), 1..4),
        any::<bool>(),
    );
    fuzz("feature_store_directories", choice, |(k, edits, remove)| {
        let (name, text) = &files[k];
        let mutated = apply_text_edits(text, &edits);
        if remove && *name != "feats.scp" {
            std::fs::remove_file(dir.join(name)).unwrap();
        } else {
            put(&dir, name, &mutated);
        }
        let size = mutated.len() + 200;
        if let Ok(store) = guarded("FeatureStore::open", size, || FeatureStore::open(&dir))? {
            accepted();
            prop_assert!(store.frame_shift().is_finite() && store.frame_shift() > 0.0);
            let mut total = 0;
            for utt in store.utts() {
                let n = store.num_frames(utt).unwrap();
                total += n;
                if let Ok(m) = store.get(utt) {
                    prop_assert_eq!(m.rows, n);
                    prop_assert!(m.rows == 0 || m.cols == store.dim());
                }
            }
            prop_assert_eq!(total, store.total_frames());
        }
        // Back to the valid directory for the next case.
        put(&dir, name, text.as_bytes());
        Ok(())
    });
}

// ---------------------------------------------------------------------------------------------
// Training configurations, model directories, checkpoints and bundles

#[path = "common/export_fixture.rs"]
mod export_fixture;

/// A training configuration with every section, as a recipe writes one.
const TRAIN_TOML: &str = "[data]\ntrain = \"feats/train\"\ntrain_ali = \"ali/train.txt\"\n\
valid = \"feats/dev\"\nvalid_ali = \"ali/dev.txt\"\nsenones = \"tree/senones.txt\"\ncmvn = \"spk\"\n\n\
[model]\ntype = \"dnn\"\nhidden = 768\nlayers = 4\nsplice = 5\ndropout = 0.1\n\n\
[optim]\nlr = 0.002\nwarmup_steps = 300\nlabel_smoothing = 0.1\n\n\
[train]\nepochs = 4\nseed = 3\ncheckpoint_every = 500\npatience = 2\n\n\
[loader]\nbatch_frames = 4096\nchunk_frames = 64\nmemory_limit_mb = 512\n\n\
[kd]\ntargets = \"exp/targets\"\ntemperature = 2.0\nalpha = 0.5\n";

/// `TrainConfig::parse` on mutated and grammar-made TOML with `--set` overrides: no panic, and
/// an accepted configuration describes a model whose size can be computed without overflow
/// and stays under the limit every model loader enforces.
#[test]
fn training_config_files() {
    use amdistill::models::MAX_PARAMS;
    use amdistill::train::config::TrainConfig;
    let vocab = [
        "[data]",
        "[model]",
        "[optim]",
        "[train]",
        "[loader]",
        "[kd]",
        "type",
        "=",
        "\"dnn\"",
        "\"tdnn\"",
        "\"tdnnf\"",
        "\"lstm\"",
        "hidden",
        "layers",
        "splice",
        "dim",
        "bottleneck",
        "cell",
        "lr",
        "epochs",
        "batch_frames",
        "chunk_frames",
        "temperature",
        "alpha",
        "true",
        "[1, 2]",
        "\"x\"",
        "1",
        "0",
        "-1",
        "4294967296",
        "1e308",
        "nan",
        "inf",
    ];
    let overrides = prop::collection::vec(
        (
            prop::sample::select(vec![
                "model.hidden",
                "model.layers",
                "model.splice",
                "model.dim",
                "model.type",
                "optim.lr",
                "train.epochs",
                "loader.batch_frames",
                "kd.temperature",
                "kd.alpha",
                "x",
                "model",
                "model.hidden.deep",
                "",
            ]),
            prop_oneof![
                hostile_token(),
                prop::sample::select(vec![
                    "2".to_string(),
                    "0.5".to_string(),
                    "\"lstm\"".to_string(),
                    "65536".to_string(),
                    "1048576".to_string(),
                    "[1]".to_string(),
                    "{a = 1}".to_string(),
                ])
            ],
        )
            .prop_map(|(k, v)| format!("{k}={v}")),
        0..3,
    );
    let input = (
        prop_oneof![
            3 => mutated_text(TRAIN_TOML),
            1 => text_file(&vocab, 4, 12),
        ],
        overrides,
    );
    fuzz("training_config_files", input, |(bytes, overrides)| {
        let text = String::from_utf8_lossy(&bytes);
        let size = bytes.len() + overrides.iter().map(String::len).sum::<usize>();
        let parsed = guarded("TrainConfig::parse", size, || {
            TrainConfig::parse(&text, Path::new("train.toml"), &overrides)
        })?;
        if let Ok(cfg) = parsed {
            accepted();
            prop_assert!(cfg.optim.lr.is_finite() && cfg.optim.lr > 0.0);
            if let Ok(n) = cfg.model.check_size(80 * 11, 2000) {
                prop_assert!(n <= MAX_PARAMS);
            }
        }
        Ok(())
    });
}

/// A trained model directory (model.json, model.safetensors, senones.txt) with either file
/// mutated: `TrainedModel::load` refuses it or returns a model that runs; a model.json that
/// claims a model of 2^40 parameters is refused before anything that size is allocated.
#[test]
fn model_directories() {
    use amdistill::models::{DnnConfig, ModelConfig};
    use amdistill::train::trained::TrainedModel;
    let tmp = tempfile::tempdir().unwrap();
    let valid = tmp.path().join("valid");
    let cfg = ModelConfig::Dnn(DnnConfig {
        hidden: 16,
        layers: 2,
        splice: 1,
        ..Default::default()
    });
    export_fixture::model_dir(&valid, &cfg, amdistill::train::config::CmvnMode::Global);
    let json = std::fs::read(valid.join("model.json")).unwrap();
    let weights = std::fs::read(valid.join("model.safetensors")).unwrap();
    let dir = tmp.path().join("case");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(valid.join("senones.txt"), dir.join("senones.txt")).unwrap();
    let json_text: &'static str =
        Box::leak(String::from_utf8(json.clone()).unwrap().into_boxed_str());
    let input = prop_oneof![
        (
            prop_oneof![mutated_text(json_text), mutated_bytes(json.clone())],
            Just(weights.clone())
        ),
        (Just(json.clone()), mutated_bytes(weights.clone())),
    ];
    fuzz("model_directories", input, |(json, weights)| {
        std::fs::write(dir.join("model.json"), &json).unwrap();
        std::fs::write(dir.join("model.safetensors"), &weights).unwrap();
        let size = json.len() + weights.len();
        let loaded = guarded("TrainedModel::load", size, || {
            TrainedModel::load(&dir, None, &candle_core::Device::Cpu)
        })?;
        if let Ok(m) = loaded {
            accepted();
            let feats = Matrix::from_vec(7, m.card.input_dim, vec![0.5; 7 * m.card.input_dim]);
            let out = guarded("TrainedModel::logits", size, || m.logits(&feats))?;
            if let Ok(l) = out {
                prop_assert_eq!(l.len(), 7 * m.card.num_senones);
            }
        }
        Ok(())
    });
}

/// An export bundle with bundle.json or a weights file mutated (the checksum in bundle.json
/// updated, so the weights parser itself is reached): `Bundle::load` and the fp32 and int8
/// runtimes refuse it or run; dimensions claimed by bundle.json are never allocated unchecked.
#[test]
fn bundles() {
    use amdistill::export::{export, Bundle, ExportOptions, Precision};
    use amdistill::models::{DnnConfig, ModelConfig};
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    let cfg = ModelConfig::Dnn(DnnConfig {
        hidden: 16,
        layers: 2,
        splice: 1,
        ..Default::default()
    });
    export_fixture::model_dir(&model, &cfg, amdistill::train::config::CmvnMode::Global);
    let valid = tmp.path().join("bundle");
    let opts = ExportOptions {
        onnx: false,
        evaluation: None,
    };
    export(&model, &valid, &opts).unwrap();
    let manifest = std::fs::read(valid.join("bundle.json")).unwrap();
    let fp32 = std::fs::read(valid.join("model.safetensors")).unwrap();
    let int8 = std::fs::read(valid.join("model.int8.safetensors")).unwrap();
    let manifest_text: &'static str = Box::leak(
        String::from_utf8(manifest.clone())
            .unwrap()
            .into_boxed_str(),
    );
    let case = tmp.path().join("case");
    copy_dir(&valid, &case);
    // Which file is mutated: 0 bundle.json, 1 fp32 weights, 2 int8 weights.
    let input = prop_oneof![
        (
            Just(0usize),
            prop_oneof![mutated_text(manifest_text), mutated_bytes(manifest.clone())]
        ),
        (Just(1usize), mutated_bytes(fp32.clone())),
        (Just(2usize), mutated_bytes(int8.clone())),
    ];
    fuzz("bundles", input, |(which, bytes)| {
        let names = ["bundle.json", "model.safetensors", "model.int8.safetensors"];
        std::fs::write(case.join("bundle.json"), &manifest).unwrap();
        std::fs::write(case.join(names[1]), &fp32).unwrap();
        std::fs::write(case.join(names[2]), &int8).unwrap();
        std::fs::write(case.join(names[which]), &bytes).unwrap();
        if which > 0 {
            // The checksum follows the mutation, as if the bundle had been written so.
            let mut m: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
            m["files"][names[which]]["bytes"] = bytes.len().into();
            m["files"][names[which]]["sha256"] = sha256_hex(&bytes).into();
            std::fs::write(case.join("bundle.json"), m.to_string()).unwrap();
        }
        let size = bytes.len() + manifest.len();
        let Ok(bundle) = guarded("Bundle::load", size, || Bundle::load(&case))? else {
            return Ok(());
        };
        let _ = guarded("Bundle::fbank_options", size, || bundle.fbank_options())?;
        for precision in [Precision::Fp32, Precision::Int8] {
            if let Ok(rt) = guarded("Bundle::runtime", size, || bundle.runtime(precision))? {
                accepted();
                let dim = rt.input_dim();
                let feats = Matrix::from_vec(9, dim, vec![0.25; 9 * dim]);
                let out = guarded("Runtime::forward_utterance", size, || {
                    rt.forward_utterance(&feats)
                })?;
                if let Ok(out) = out {
                    prop_assert_eq!(out.data.len(), 9 * rt.output_dim());
                }
            }
        }
        Ok(())
    });
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
