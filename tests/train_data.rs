//! The training data loader on tiny feature stores: coverage, order, resume, memory, padding,
//! CMVN and the checks on labels and frame counts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

use amdistill::features::cmvn::CmvnStats;
use amdistill::features::kaldi_io::ArkWriter;
use amdistill::features::store::FeatureStore;
use amdistill::features::Matrix;
use amdistill::labels::senone_pipeline::{CmvnGrouping, Normaliser};
use amdistill::train::data::{Batch, LoaderConfig, TrainData, PAD_LABEL, UNLABELLED};

const CLASSES: usize = 50;

/// Features that say where they come from: row `t` of utterance `u` is
/// `[t, u, sin(t + u), ...]`, `[frames, dim]`.
fn feats(u: usize, frames: usize, dim: usize) -> Matrix {
    let mut m = Matrix::zeros(frames, dim);
    for t in 0..frames {
        let row = m.row_mut(t);
        row[0] = t as f32;
        row[1] = u as f32;
        for (d, x) in row.iter_mut().enumerate().skip(2) {
            *x = ((t * 31 + u * 7 + d) as f32 * 0.1).sin();
        }
    }
    m
}

fn label(u: usize, t: usize) -> u32 {
    ((u * 13 + t * 7) % CLASSES) as u32
}

fn utt_name(u: usize) -> String {
    format!("utt{u:04}")
}

/// A store of utterances `u` with `frames[u]` frames, split over `arks` archives.
fn make_store(dir: &Path, frames: &[usize], dim: usize, arks: usize) {
    std::fs::create_dir_all(dir.join("data")).unwrap();
    let mut scp = String::new();
    let per_ark = frames.len().div_ceil(arks);
    for (a, part) in frames.chunks(per_ark).enumerate() {
        let mut w = ArkWriter::create(&dir.join(format!("data/feats.{}.ark", a + 1))).unwrap();
        for (i, &n) in part.iter().enumerate() {
            let u = a * per_ark + i;
            let key = utt_name(u);
            scp.push_str(&format!(
                "{key} {}\n",
                w.write_matrix(&key, &feats(u, n, dim)).unwrap()
            ));
        }
        w.commit().unwrap();
    }
    std::fs::write(dir.join("feats.scp"), scp).unwrap();
    std::fs::write(dir.join("frame_shift"), "0.01\n").unwrap();
}

fn alignments(frames: &[usize]) -> BTreeMap<String, Vec<u32>> {
    frames
        .iter()
        .enumerate()
        .map(|(u, &n)| (utt_name(u), (0..n).map(|t| label(u, t)).collect()))
        .collect()
}

fn data(dir: &Path, frames: &[usize], dim: usize) -> TrainData {
    make_store(dir, frames, dim, 3);
    let store = FeatureStore::open(dir).unwrap();
    let (d, skipped) =
        TrainData::new(store, Normaliser::none(), alignments(frames), CLASSES).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    d
}

/// Lengths 1 ..: shorter than a chunk, exact multiples, and ragged ends.
fn lengths(n: usize) -> Vec<usize> {
    (0..n).map(|u| 1 + (u * 37) % 45).collect()
}

fn small_cfg() -> LoaderConfig {
    LoaderConfig {
        chunk_frames: 4,
        batch_frames: 20, // 5 chunks
        memory_limit_mb: 1.0,
        block_utts: 3,
        prefetch_batches: 2,
    }
}

fn collect(
    d: &TrainData,
    cfg: &LoaderConfig,
    l: usize,
    r: usize,
    seed: u64,
    epoch: u64,
    skip: u64,
) -> Vec<Batch> {
    d.epoch(cfg, l, r, seed, epoch, skip)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

/// Checks every chunk of `batches` against the features and labels it claims to come from
/// (identity features, no CMVN) and returns the `(utt, frame)` pairs it labels.
fn check_batches(
    d: &TrainData,
    batches: &[Batch],
    left: usize,
    right: usize,
) -> Vec<(usize, usize)> {
    let mut seen = Vec::new();
    for b in batches {
        let (c, w, dim) = (b.chunk_frames, b.width, b.dim);
        assert_eq!(w, c + left + right);
        assert_eq!(dim, d.dim());
        assert_eq!(b.feats.len(), b.chunks * w * dim);
        assert_eq!(b.labels.len(), b.chunks * c);
        assert_eq!(b.spans.len(), b.chunks);
        for (k, s) in b.spans.iter().enumerate() {
            let u = s.utt as usize;
            let n = d.frame_counts()[u];
            let (start, len) = (s.start as usize, s.len as usize);
            assert_eq!(start % c, 0, "chunks tile the utterance");
            assert_eq!(len, c.min(n - start));
            for j in 0..c {
                let got = b.labels[k * c + j];
                if j < len {
                    assert_eq!(got, label(u, start + j));
                    seen.push((u, start + j));
                } else {
                    assert_eq!(got, PAD_LABEL, "padding past the end of {}", d.utts()[u]);
                }
            }
            for j in 0..w {
                let want_t = (start + j).saturating_sub(left).min(n - 1);
                let row = &b.feats[(k * w + j) * dim..(k * w + j + 1) * dim];
                assert_eq!(
                    row[0],
                    want_t as f32,
                    "chunk row {j} of {} at {start}",
                    d.utts()[u]
                );
                assert_eq!(row[1], u as f32);
                assert_eq!(row, feats(u, n, dim).row(want_t));
            }
        }
    }
    seen
}

#[test]
fn every_labelled_frame_appears_once_per_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = lengths(40);
    let d = data(tmp.path(), &frames, 6);
    let cfg = small_cfg();
    for (left, right) in [(0, 0), (3, 2), (50, 7)] {
        let batches = collect(&d, &cfg, left, right, 1, 0, 0);
        assert_eq!(batches.len() as u64, d.batches_per_epoch(&cfg));
        for b in &batches[..batches.len() - 1] {
            assert_eq!(b.chunks, 5, "only the last batch may be short");
        }
        let mut seen = check_batches(&d, &batches, left, right);
        assert_eq!(seen.len(), d.total_frames());
        seen.sort_unstable();
        let unique: BTreeSet<_> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "a frame was labelled twice");
        let want: BTreeSet<_> = frames
            .iter()
            .enumerate()
            .flat_map(|(u, &n)| (0..n).map(move |t| (u, t)))
            .collect();
        assert_eq!(unique, want);
    }
}

#[test]
fn padding_labels_and_edge_frames_of_a_short_utterance() {
    let tmp = tempfile::tempdir().unwrap();
    // One utterance of 6 frames, chunks of 4: [0..4) and [4..6) + 2 padded frames.
    let d = data(tmp.path(), &[6], 3);
    let cfg = LoaderConfig {
        chunk_frames: 4,
        batch_frames: 8,
        ..LoaderConfig::default()
    };
    let batches = collect(&d, &cfg, 2, 3, 0, 0, 0);
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    assert_eq!((b.chunks, b.width), (2, 9));
    let k = b.spans.iter().position(|s| s.start == 4).unwrap();
    assert_eq!(b.spans[k].len, 2);
    assert_eq!(
        &b.labels[k * 4..k * 4 + 4],
        &[label(0, 4), label(0, 5), PAD_LABEL, PAD_LABEL]
    );
    // Rows: frames 2 3 | 4 5 pad pad | right context: all the last frame.
    let rows: Vec<f32> = (0..9).map(|j| b.feats[(k * 9 + j) * 3]).collect();
    assert_eq!(rows, vec![2., 3., 4., 5., 5., 5., 5., 5., 5.]);
    let first = 1 - k;
    let rows: Vec<f32> = (0..9).map(|j| b.feats[(first * 9 + j) * 3]).collect();
    assert_eq!(rows, vec![0., 0., 0., 1., 2., 3., 4., 5., 5.]);
    assert_eq!(b.labelled_frames(), 6);
}

#[test]
fn same_seed_and_epoch_same_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path(), &lengths(30), 4);
    let cfg = small_cfg();
    let a = collect(&d, &cfg, 1, 1, 42, 3, 0);
    let b = collect(&d, &cfg, 1, 1, 42, 3, 0);
    assert_eq!(a, b);
    let other_epoch = collect(&d, &cfg, 1, 1, 42, 4, 0);
    let other_seed = collect(&d, &cfg, 1, 1, 43, 3, 0);
    let order = |bs: &[Batch]| bs.iter().flat_map(|b| b.spans.clone()).collect::<Vec<_>>();
    assert_ne!(order(&a), order(&other_epoch));
    assert_ne!(order(&a), order(&other_seed));
    // Shuffled, not in store order.
    let mut sorted = order(&a);
    sorted.sort_by_key(|s| (s.utt, s.start));
    assert_ne!(order(&a), sorted);
}

#[test]
fn skip_resumes_exactly_where_the_epoch_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = lengths(60);
    let d = data(tmp.path(), &frames, 4);
    // A small buffer, so that a resume point falls between refills.
    let cfg = LoaderConfig {
        memory_limit_mb: 300.0 * 16.0 / (1024.0 * 1024.0), // 300 frames of 4 floats
        ..small_cfg()
    };
    let full = collect(&d, &cfg, 2, 1, 9, 2, 0);
    let n = full.len() as u64;
    assert_eq!(n, d.batches_per_epoch(&cfg));
    for k in [1, 2, 7, n / 2, n - 1, n, n + 3] {
        let it = d.epoch(&cfg, 2, 1, 9, 2, k).unwrap();
        assert_eq!(it.remaining(), n.saturating_sub(k));
        let rest: Vec<Batch> = it.collect::<Result<_, _>>().unwrap();
        assert_eq!(rest.len() as u64, n.saturating_sub(k), "skip {k}");
        assert_eq!(&rest[..], &full[(k.min(n) as usize)..], "skip {k}");
    }
}

#[test]
fn a_store_ten_times_the_memory_limit_stays_under_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dim = 16;
    let frames: Vec<usize> = (0..200).map(|u| 20 + (u * 53) % 80).collect();
    let d = data(tmp.path(), &frames, dim);
    let store_bytes = d.total_frames() * dim * 4;
    let limit_mb = store_bytes as f64 / 10.0 / (1024.0 * 1024.0);
    let cfg = LoaderConfig {
        chunk_frames: 8,
        batch_frames: 64,
        memory_limit_mb: limit_mb,
        block_utts: 4,
        prefetch_batches: 3,
    };
    let limit = cfg.memory_limit_bytes();
    let mut it = d.epoch(&cfg, 4, 4, 5, 0, 0).unwrap();
    let mut batches = Vec::new();
    while let Some(b) = it.next() {
        batches.push(b.unwrap());
        assert!(it.peak_buffer_bytes() <= limit);
    }
    let peak = it.peak_buffer_bytes();
    assert!(peak <= limit, "peak {peak} > limit {limit}");
    assert!(
        peak > limit / 2,
        "the buffer was barely used: {peak} of {limit}"
    );
    let mut seen = check_batches(&d, &batches, 4, 4);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), d.total_frames());
}

#[test]
fn cmvn_is_applied_to_batches_and_whole_utterances() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = lengths(12);
    make_store(tmp.path(), &frames, 5, 2);
    let store = FeatureStore::open(tmp.path()).unwrap();
    let norm = Normaliser::new(&store, &CmvnGrouping::PerUtterance, true);
    let (d, _) = TrainData::new(store, norm, alignments(&frames), CLASSES).unwrap();
    // The reference: the store's features through the same normalisation.
    let store = FeatureStore::open(tmp.path()).unwrap();
    let norm = Normaliser::new(&store, &CmvnGrouping::PerUtterance, true);
    let normalised = |u: usize| {
        let mut m = store.get(&utt_name(u)).unwrap();
        norm.apply(&utt_name(u), &mut m).unwrap();
        m
    };
    let (l, r) = (2, 3);
    for u in [0, 5, 11] {
        let b = d.utterance(u, l, r).unwrap();
        let n = frames[u];
        assert_eq!(
            (b.chunks, b.width, b.dim, b.chunk_frames),
            (1, n + l + r, 5, n)
        );
        assert_eq!(b.labels, (0..n).map(|t| label(u, t)).collect::<Vec<_>>());
        let m = normalised(u);
        assert_ne!(m, feats(u, n, 5), "CMVN changes the features");
        for j in 0..n + l + r {
            let t = j.saturating_sub(l).min(n - 1);
            assert_eq!(&b.feats[j * 5..(j + 1) * 5], m.row(t), "{u} row {j}");
        }
    }
    for b in collect(&d, &small_cfg(), l, r, 0, 0, 0) {
        for (k, s) in b.spans.iter().enumerate() {
            let u = s.utt as usize;
            let m = normalised(u);
            for j in 0..b.width {
                let t = (s.start as usize + j).saturating_sub(l).min(frames[u] - 1);
                let at = (k * b.width + j) * 5;
                assert_eq!(&b.feats[at..at + 5], m.row(t));
            }
        }
    }
    assert!(d.utterance(12, 0, 0).is_err());
}

#[test]
fn frame_counts_within_tolerance_are_fitted_and_beyond_it_skipped_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = vec![10, 10, 10, 10, 10];
    make_store(tmp.path(), &frames, 3, 1);
    let mut ali = alignments(&frames);
    ali.get_mut("utt0001").unwrap().truncate(8); // 2 short: padded with its last label
    ali.get_mut("utt0002").unwrap().extend([1, 2]); // 2 long: cut
    ali.get_mut("utt0003").unwrap().truncate(7); // 3 short: skipped
    ali.remove("utt0004"); // no alignment: skipped
    ali.insert("ghost".into(), vec![0; 5]); // no features: reported
    let store = FeatureStore::open(tmp.path()).unwrap();
    let (d, skipped) = TrainData::new(store, Normaliser::none(), ali, CLASSES).unwrap();
    assert_eq!(d.utts(), &["utt0000", "utt0001", "utt0002"]);
    assert_eq!(d.total_frames(), 30);
    assert_eq!(d.num_frames("utt0001"), 10);
    assert_eq!(d.num_frames("utt0003"), 0);
    let l1 = d.labels(1);
    assert_eq!(&l1[7..], &[label(1, 7); 3]);
    assert_eq!(
        d.labels(2),
        &(0..10).map(|t| label(2, t)).collect::<Vec<_>>()[..]
    );
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    let line = skipped
        .iter()
        .find(|s| s.contains("utt0003"))
        .expect("utt0003 reported");
    assert!(line.contains("7") && line.contains("10"), "{line}");
    assert!(skipped.iter().any(|s| s.contains("utt0004")));
    assert!(skipped.iter().any(|s| s.contains("ghost")));
}

#[test]
fn untranscribed_utterances_are_kept_unlabelled_only_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = vec![10, 7, 12];
    make_store(tmp.path(), &frames, 3, 1);
    let mut ali = alignments(&frames);
    ali.remove("utt0001");
    let open = || FeatureStore::open(tmp.path()).unwrap();
    let (d, skipped) =
        TrainData::with_untranscribed(open(), Normaliser::none(), ali.clone(), CLASSES).unwrap();
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(d.utts(), &["utt0000", "utt0001", "utt0002"]);
    assert_eq!(d.total_frames(), 29);
    assert_eq!(d.labels(1), &[UNLABELLED; 7]);
    assert_eq!(d.labels(2)[3], label(2, 3));
    // Every frame of an epoch comes out once, the untranscribed ones as UNLABELLED.
    let cfg = LoaderConfig {
        chunk_frames: 4,
        batch_frames: 8,
        ..LoaderConfig::default()
    };
    let mut unlabelled = 0;
    let mut real = 0;
    for b in d.epoch(&cfg, 0, 0, 1, 0, 0).unwrap() {
        let b = b.unwrap();
        real += b.labelled_frames();
        unlabelled += b.labels.iter().filter(|&&y| y == UNLABELLED).count();
    }
    assert_eq!((real, unlabelled), (29, 7));
    // Without asking, it is left out by name.
    let (d, skipped) = TrainData::new(open(), Normaliser::none(), ali, CLASSES).unwrap();
    assert_eq!(d.utts(), &["utt0000", "utt0002"]);
    assert!(skipped[0].contains("utt0001"), "{skipped:?}");
    // Untranscribed alone is not a training set: a label must come from somewhere.
    let e = TrainData::with_untranscribed(open(), Normaliser::none(), BTreeMap::new(), CLASSES)
        .err()
        .expect("an error")
        .to_string();
    assert!(
        e.contains("no utterance has both features and an agreeing alignment"),
        "{e}"
    );
}

#[test]
fn a_label_out_of_range_names_utterance_and_frame() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = vec![5, 6];
    make_store(tmp.path(), &frames, 3, 1);
    let mut ali = alignments(&frames);
    ali.get_mut("utt0001").unwrap()[4] = CLASSES as u32;
    let store = FeatureStore::open(tmp.path()).unwrap();
    let e = TrainData::new(store, Normaliser::none(), ali, CLASSES)
        .err()
        .expect("an error")
        .to_string();
    assert!(
        e.contains("utt0001") && e.contains("frame 4") && e.contains("50"),
        "{e}"
    );
}

#[test]
fn a_failing_utterance_ends_the_epoch_with_its_name() {
    let tmp = tempfile::tempdir().unwrap();
    let frames = vec![5, 6, 7];
    make_store(tmp.path(), &frames, 3, 1);
    let store = FeatureStore::open(tmp.path()).unwrap();
    // Global statistics without frames: CMVN refuses every utterance.
    let norm = Normaliser::new(&store, &CmvnGrouping::Global(CmvnStats::new(3)), false);
    let (d, _) = TrainData::new(store, norm, alignments(&frames), CLASSES).unwrap();
    let results: Vec<_> = d.epoch(&small_cfg(), 0, 0, 0, 0, 0).unwrap().collect();
    assert_eq!(results.len(), 1);
    let e = results[0].as_ref().expect_err("an error").to_string();
    assert!(e.contains("utterance utt000"), "{e}");
    let e = d.utterance(2, 0, 0).expect_err("an error").to_string();
    assert!(e.contains("utt0002"), "{e}");
}

#[test]
fn bad_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path(), &[100, 3], 8);
    let bad = [
        LoaderConfig {
            chunk_frames: 0,
            ..LoaderConfig::default()
        },
        LoaderConfig {
            chunk_frames: 16,
            batch_frames: 8,
            ..LoaderConfig::default()
        },
        LoaderConfig {
            block_utts: 0,
            ..LoaderConfig::default()
        },
        LoaderConfig {
            memory_limit_mb: 0.0,
            ..LoaderConfig::default()
        },
    ];
    for cfg in &bad {
        assert!(d.epoch(cfg, 0, 0, 0, 0, 0).is_err(), "{cfg:?}");
        assert_eq!(d.batches_per_epoch(cfg), 0);
    }
    // 100 frames of 8 floats = 3200 bytes do not fit 1000 bytes.
    let tiny = LoaderConfig {
        memory_limit_mb: 1000.0 / (1024.0 * 1024.0),
        ..LoaderConfig::default()
    };
    let e = d
        .epoch(&tiny, 0, 0, 0, 0, 0)
        .err()
        .expect("an error")
        .to_string();
    assert!(e.contains("utt0000"), "{e}");
    // The defaults, and a config file holding only what differs from them.
    let cfg: LoaderConfig = serde_json::from_str(r#"{"chunk_frames": 16}"#).unwrap();
    assert_eq!(
        cfg,
        LoaderConfig {
            chunk_frames: 16,
            ..LoaderConfig::default()
        }
    );
    assert!(serde_json::from_str::<LoaderConfig>(r#"{"chunk": 16}"#).is_err());
}

#[test]
fn dropping_the_iterator_early_stops_the_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let d = data(tmp.path(), &lengths(50), 4);
    let cfg = LoaderConfig {
        prefetch_batches: 1,
        ..small_cfg()
    };
    for _ in 0..20 {
        let mut it = d.epoch(&cfg, 1, 1, 0, 0, 0).unwrap();
        assert!(it.next().unwrap().is_ok());
        drop(it); // joins the thread; would hang if it stayed blocked on the full channel
    }
}

/// Loader throughput on ~1 M frames of 80 dims with per-utterance CMVN and chunks of 8;
/// `cargo test --release --test train_data -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_on_a_million_frames() {
    let tmp = tempfile::tempdir().unwrap();
    let dim = 80;
    // 3000 utterances of 200..460 frames (2 to 4.6 s).
    let frames: Vec<usize> = (0..3000).map(|u| 200 + (u * 97) % 261).collect();
    let t0 = Instant::now();
    make_store(tmp.path(), &frames, dim, 8);
    let store = FeatureStore::open(tmp.path()).unwrap();
    let norm = Normaliser::new(&store, &CmvnGrouping::PerUtterance, false);
    let (d, _) = TrainData::new(store, norm, alignments(&frames), CLASSES).unwrap();
    eprintln!(
        "store: {} utterances, {} frames, {:.0} MiB, written in {:.1} s",
        d.utts().len(),
        d.total_frames(),
        (d.total_frames() * dim * 4) as f64 / (1024.0 * 1024.0),
        t0.elapsed().as_secs_f64()
    );
    for (left, right, mb) in [(0, 0, 512.0), (16, 16, 512.0), (16, 16, 64.0)] {
        let cfg = LoaderConfig {
            memory_limit_mb: mb,
            ..LoaderConfig::default()
        };
        let t = Instant::now();
        let mut it = d.epoch(&cfg, left, right, 1, 0, 0).unwrap();
        let mut labelled = 0usize;
        for b in it.by_ref() {
            labelled += b.unwrap().labelled_frames();
        }
        let s = t.elapsed().as_secs_f64();
        assert_eq!(labelled, d.total_frames());
        eprintln!(
            "chunk 8, context {left}+{right}, limit {mb} MiB: {:.2} M frames/s ({:.2} s, peak buffer {:.0} MiB)",
            labelled as f64 / s / 1e6,
            s,
            it.peak_buffer_bytes() as f64 / (1024.0 * 1024.0)
        );
    }
    let cfg = LoaderConfig::default();
    let n = d.batches_per_epoch(&cfg);
    let t = Instant::now();
    let rest = d.epoch(&cfg, 16, 16, 1, 0, n - 10).unwrap().count();
    eprintln!(
        "resume at batch {} of {n}: {rest} batches in {:.2} s",
        n - 10,
        t.elapsed().as_secs_f64()
    );
}
