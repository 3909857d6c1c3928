//! Fbank parity with kaldi-native-fbank (knf), the C++ port of Kaldi's compute-fbank-feats.
//!
//! - `golden_parity`: the three clips of `../shared/peers/golden` (copied to
//!   tests/fixtures/golden, provenance in its PROVENANCE.md): 80 bins, dither 0, snip-edges true.
//! - `manifest_parity`: tests/fixtures/fbank_refs/manifest.txt, references made by
//!   tests/fixtures/fbank_refs/make_refs.py for the `kaldi` and `modern80` profiles and every
//!   option that changes values (windows, snip-edges, energy, htk-compat, linear and magnitude
//!   outputs, 8 kHz, frequency range, frame sizes), options set by their Kaldi names.
//! - `tolerance_rejects_wrong_variants`: the same check fails known-wrong front ends, so it
//!   can tell a correct port from a near miss.
//!
//! Tolerances (the golden README's study): independent correct float32 ports differ by up to
//! ~0.1 only in the lowest mel bins of near-silent frames (DC removal cancels almost
//! everything there) and by <= 3e-3 where the log energy is > 5. So: mean |diff| < 1e-4,
//! max |diff| < 0.15, and max |diff| < 1e-2 where the reference is > 5, in natural-log units.

use std::path::{Path, PathBuf};

use amdistill::features::fbank::num_frames;
use amdistill::features::{Fbank, FbankOptions, Matrix, StreamingFbank};

const MEAN_TOL: f64 = 1e-4;
const MAX_TOL: f64 = 0.15;
const MAX_HIGH_TOL: f64 = 1e-2;
/// "High energy" bins: reference log value above this.
const HIGH: f64 = 5.0;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A 16-bit PCM mono WAV as (sample rate, samples in [-1, 1]), i16 / 32768 like the crate's
/// audio reader, so that the fbank's internal x32768 gives back the exact int16 values.
fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = r.spec();
    assert_eq!(
        (spec.channels, spec.bits_per_sample, spec.sample_format),
        (1, 16, hound::SampleFormat::Int),
        "{}: fixtures are mono 16-bit PCM",
        path.display()
    );
    let samples = r
        .samples::<i16>()
        .map(|s| s.map(|v| v as f32 / 32768.0))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (spec.sample_rate, samples)
}

/// A reference text file: one frame per line, space-separated values -> `[rows, cols]` (f64).
fn read_ref(path: &Path) -> (usize, usize, Vec<f64>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (mut rows, mut cols, mut data) = (0, 0, Vec::new());
    for (i, line) in text.lines().enumerate() {
        let before = data.len();
        for tok in line.split_whitespace() {
            let v: f64 = tok
                .parse()
                .unwrap_or_else(|_| panic!("{}:{}: bad number '{tok}'", path.display(), i + 1));
            data.push(v);
        }
        let n = data.len() - before;
        if rows == 0 {
            cols = n;
        }
        assert_eq!(
            n,
            cols,
            "{}:{}: {n} values, expected {cols}",
            path.display(),
            i + 1
        );
        rows += 1;
    }
    (rows, cols, data)
}

/// |ours - reference| over every (frame, bin), in natural-log units.
#[derive(Debug, Clone, Copy)]
struct Diff {
    mean: f64,
    max: f64,
    /// Max over the bins whose reference is above [`HIGH`].
    max_high: f64,
}

impl Diff {
    fn passes(&self) -> bool {
        self.mean < MEAN_TOL && self.max < MAX_TOL && self.max_high < MAX_HIGH_TOL
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mean {:.2e}  max {:.2e}  max where ref > 5 {:.2e}",
            self.mean, self.max, self.max_high
        )
    }
}

/// Compares `ours` with the reference in log units. Columns holding linear mel energies
/// (use-log-fbank false) go through Kaldi's own log floor, `ln(max(v, FLT_EPSILON))`, first:
/// a relative error e of a linear value is, to first order, an error e of its log, so the log
/// tolerances bound the relative error of linear outputs the same way, and digital silence
/// (exactly 0 in linear output) compares equal at the floor. The energy column is always a log.
/// Errors if the shapes differ.
fn diff(
    opts: &FbankOptions,
    ours: &Matrix,
    ref_rows: usize,
    ref_cols: usize,
    reference: &[f64],
) -> Result<Diff, String> {
    if (ours.rows, ours.cols) != (ref_rows, ref_cols) {
        return Err(format!(
            "shape [{}, {}], reference [{ref_rows}, {ref_cols}]",
            ours.rows, ours.cols
        ));
    }
    let bins = opts.mel.num_bins;
    let mel_start = usize::from(opts.use_energy && !opts.htk_compat);
    let linear = |c: usize| !opts.use_log_fbank && (mel_start..mel_start + bins).contains(&c);
    let to_log = |v: f64| v.max(f32::EPSILON as f64).ln();
    let (mut sum, mut max, mut max_high) = (0.0f64, 0.0f64, 0.0f64);
    for (i, (&o, &r)) in ours.data.iter().zip(reference).enumerate() {
        let (o, r) = if linear(i % ref_cols) {
            (to_log(o as f64), to_log(r))
        } else {
            (o as f64, r)
        };
        let d = (o - r).abs();
        if !d.is_finite() {
            return Err(format!(
                "non-finite value at frame {}, bin {}: ours {o}, reference {r}",
                i / ref_cols,
                i % ref_cols
            ));
        }
        sum += d;
        max = max.max(d);
        if r > HIGH {
            max_high = max_high.max(d);
        }
    }
    Ok(Diff {
        mean: sum / reference.len().max(1) as f64,
        max,
        max_high,
    })
}

/// The golden configuration: Kaldi defaults, 80 bins, dither 0, snip-edges true.
fn golden_options() -> FbankOptions {
    let mut opts = FbankOptions::profile("kaldi").unwrap();
    opts.set("num-mel-bins", "80").unwrap();
    opts.set("dither", "0").unwrap();
    opts.set("snip-edges", "true").unwrap();
    opts
}

const GOLDEN: [&str; 3] = ["golden_edge", "golden_espeak", "golden_synth"];

/// Our features for a golden clip under `opts`, and the diff to its reference.
fn golden_diff(clip: &str, opts: &FbankOptions, scale: f32) -> Result<Diff, String> {
    let dir = fixtures().join("golden");
    let (rate, mut samples) = read_wav(&dir.join(format!("{clip}.wav")));
    assert_eq!(rate, 16000);
    samples.iter_mut().for_each(|s| *s *= scale);
    let (rows, cols, reference) = read_ref(&dir.join(format!("{clip}.fbank.txt")));
    let feats = Fbank::new(opts)
        .map_err(|e| e.to_string())?
        .compute(&samples, 0);
    diff(opts, &feats, rows, cols, &reference)
}

#[test]
fn golden_parity() {
    let opts = golden_options();
    let mut failures = Vec::new();
    for clip in GOLDEN {
        let (_, samples) = read_wav(&fixtures().join(format!("golden/{clip}.wav")));
        let (rows, cols, _) = read_ref(&fixtures().join(format!("golden/{clip}.fbank.txt")));
        assert_eq!(num_frames(samples.len(), &opts), rows, "{clip}: num_frames");
        assert_eq!(cols, 80, "{clip}: reference has 80 bins");
        match golden_diff(clip, &opts, 1.0) {
            Ok(d) => {
                eprintln!("{clip:<14} {rows:>4} x {cols}  {d}");
                if !d.passes() {
                    failures.push(format!("{clip}: {d}"));
                }
            }
            Err(e) => failures.push(format!("{clip}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "golden parity failed:\n{}",
        failures.join("\n")
    );
}

/// The digital-zero gap of golden_edge comes out exactly at the log floor, ln(FLT_EPSILON).
#[test]
fn golden_edge_silence_hits_the_log_floor() {
    let (_, samples) = read_wav(&fixtures().join("golden/golden_edge.wav"));
    let (rows, cols, reference) = read_ref(&fixtures().join("golden/golden_edge.fbank.txt"));
    let feats = Fbank::new(&golden_options()).unwrap().compute(&samples, 0);
    let floor = f32::EPSILON.ln();
    let silent: Vec<usize> = (0..rows)
        .filter(|&t| {
            reference[t * cols..(t + 1) * cols]
                .iter()
                .all(|&v| (v - floor as f64).abs() < 1e-6)
        })
        .collect();
    assert!(
        silent.len() >= 5,
        "golden_edge should have a digital-zero gap, found {} silent frames",
        silent.len()
    );
    for t in silent {
        assert!(
            feats.row(t).iter().all(|&v| v == floor),
            "frame {t}: {:?}",
            &feats.row(t)[..4]
        );
    }
}

/// One manifest line: `name profile clip ref [--option=value ...]`, paths relative to tests/fixtures.
struct Case {
    name: String,
    opts: FbankOptions,
    clip: PathBuf,
    reference: PathBuf,
}

fn manifest() -> Vec<Case> {
    let path = fixtures().join("fbank_refs/manifest.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(
            f.len() >= 4,
            "{}: expected name profile clip ref [options]",
            at()
        );
        let mut opts = FbankOptions::profile(f[1]).unwrap_or_else(|e| panic!("{}: {e}", at()));
        for opt in &f[4..] {
            let body = opt
                .strip_prefix("--")
                .unwrap_or_else(|| panic!("{}: '{opt}' is not --name=value", at()));
            let (name, value) = body.split_once('=').unwrap_or((body, ""));
            opts.set(name, value)
                .unwrap_or_else(|e| panic!("{}: {e}", at()));
        }
        cases.push(Case {
            name: f[0].to_string(),
            opts,
            clip: fixtures().join(f[2]),
            reference: fixtures().join(f[3]),
        });
    }
    cases
}

#[test]
fn manifest_parity() {
    let cases = manifest();
    // make_refs.py writes 21; fewer means the manifest was truncated, not that all is well.
    assert!(cases.len() >= 21, "manifest has only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let (rate, samples) = read_wav(&case.clip);
        assert_eq!(
            rate as f32, case.opts.frame.sample_frequency,
            "{}: clip rate vs --sample-frequency",
            case.name
        );
        let (rows, cols, reference) = read_ref(&case.reference);
        assert_eq!(
            num_frames(samples.len(), &case.opts),
            rows,
            "{}: num_frames",
            case.name
        );
        let feats = Fbank::new(&case.opts)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name))
            .compute(&samples, 0);
        match diff(&case.opts, &feats, rows, cols, &reference) {
            Ok(d) => {
                eprintln!("{:<30} {rows:>4} x {cols:<3} {d}", case.name);
                if !d.passes() {
                    failures.push(format!("{}: {d}", case.name));
                }
            }
            Err(e) => failures.push(format!("{}: {e}", case.name)),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} references differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// The tolerance is tight enough to reject each near-miss front end of the golden README's
/// study that options can express (and a wrong sample scale).
#[test]
fn tolerance_rejects_wrong_variants() {
    /// (what is wrong, the option that makes it so, sample scale).
    type Variant = (&'static str, Option<(&'static str, &'static str)>, f32);
    let variants: [Variant; 5] = [
        ("a Hann window", Some(("window-type", "hanning")), 1.0),
        ("a Hamming window", Some(("window-type", "hamming")), 1.0),
        ("no DC removal", Some(("remove-dc-offset", "false")), 1.0),
        (
            "no preemphasis",
            Some(("preemphasis-coefficient", "0")),
            1.0,
        ),
        (
            "samples left in [-1, 1] (not int16 scale)",
            None,
            1.0 / 32768.0,
        ),
    ];
    for (what, option, scale) in variants {
        let mut opts = golden_options();
        if let Some((name, value)) = option {
            opts.set(name, value).unwrap();
        }
        let rejected = GOLDEN
            .iter()
            .any(|clip| match golden_diff(clip, &opts, scale) {
                Ok(d) => !d.passes(),
                Err(_) => true,
            });
        assert!(rejected, "the parity check accepts a port with {what}");
    }
}

/// Streaming in 1600-sample chunks gives the offline features bit for bit on real clips, for
/// both snip-edges settings.
#[test]
fn streaming_matches_offline_on_fixtures() {
    let (_, samples) = read_wav(&fixtures().join("golden/golden_edge.wav"));
    for profile in ["kaldi", "modern80"] {
        let mut opts = FbankOptions::profile(profile).unwrap();
        opts.set("dither", "0").unwrap();
        let fbank = Fbank::new(&opts).unwrap();
        let offline = fbank.compute(&samples, 7);
        let mut stream = StreamingFbank::new(&fbank, 7);
        let mut out = Vec::new();
        for chunk in samples.chunks(1600) {
            stream.accept(chunk, &mut out);
        }
        stream.finish(&mut out);
        assert_eq!(out.len(), offline.data.len(), "{profile}: frame count");
        assert!(
            out.iter()
                .zip(&offline.data)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{profile}: values differ"
        );
    }
}
