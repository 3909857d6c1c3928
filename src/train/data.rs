//! Chunked, shuffled, prefetched training batches from a feature store and alignments.
//!
//! ```text
//! FeatureStore + Normaliser + alignments --TrainData::new--> usable utterances (store order)
//! TrainData::epoch(cfg, left, right, seed, epoch, skip) --> BatchIter of Batch:
//!   feats  [chunks, chunk_frames + left + right, dim]   CMVN applied, edges repeat the end frames
//!   labels [chunks, chunk_frames]                        PAD_LABEL past an utterance's end,
//!                                                        UNLABELLED on untranscribed utterances
//! ```
//!
//! Each utterance is cut into chunks of `chunk_frames` labelled frames (the last one padded), so
//! every labelled frame of an epoch is in exactly one chunk. Shuffling keeps memory bounded for
//! corpora larger than RAM: the order of blocks of `block_utts` consecutive utterances
//! (`feats.scp` order, so a block is a sequential read of an archive) is shuffled, utterances are
//! read in that order into a shuffle buffer whose feature bytes stay within `memory_limit_mb`,
//! refilled whenever it falls below half, and chunks are drawn from the buffer at random.
//!
//! The random stream (ChaCha8 seeded by `seed`, stream `epoch`) decides the block order and the
//! draws from frame counts alone, never from feature values. So the same `(seed, epoch)` always
//! gives the same batches, and resuming at batch `k` replays the first `k` batches' draws without
//! reading their features, then reads only the utterances still in the buffer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::features::store::FeatureStore;
use crate::features::Matrix;
use crate::labels::frame_labels::{check_frame_counts, DEFAULT_FRAME_TOLERANCE};
use crate::labels::senone_pipeline::Normaliser;

/// Label of a frame that is not there: a chunk that runs past its utterance's end.
pub const PAD_LABEL: u32 = u32::MAX;

/// Label of a real frame without an alignment (an untranscribed utterance kept by
/// [`TrainData::with_untranscribed`]): only a teacher's soft targets can train on it.
pub const UNLABELLED: u32 = u32::MAX - 1;

/// How batches are cut, shuffled and prepared (`[loader]` of the training config).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LoaderConfig {
    /// Frames labelled per chunk.
    pub chunk_frames: usize,
    /// Labelled frames per batch; a batch has `batch_frames / chunk_frames` chunks (the last
    /// batch of an epoch may have fewer).
    pub batch_frames: usize,
    /// Cap on the shuffle buffer's feature bytes, in MiB (the `prefetch_batches` batches in
    /// flight come on top: `chunks * width * dim * 4` bytes each).
    pub memory_limit_mb: f64,
    /// Consecutive utterances read together as one sequential block.
    pub block_utts: usize,
    /// Batches prepared ahead on the background thread.
    pub prefetch_batches: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            chunk_frames: 8,
            batch_frames: 512,
            memory_limit_mb: 512.0,
            block_utts: 32,
            prefetch_batches: 4,
        }
    }
}

impl LoaderConfig {
    /// Checks the values that the loader cannot work with.
    pub fn validate(&self) -> Result<()> {
        if self.chunk_frames == 0 || self.batch_frames < self.chunk_frames {
            return Err(Error::config(format!(
                "[loader] need chunk_frames >= 1 and batch_frames >= chunk_frames, got {} and {}",
                self.chunk_frames, self.batch_frames
            )));
        }
        if !(self.memory_limit_mb.is_finite() && self.memory_limit_mb > 0.0) {
            return Err(Error::config(format!(
                "[loader] memory_limit_mb must be positive, got {}",
                self.memory_limit_mb
            )));
        }
        if self.block_utts == 0 {
            return Err(Error::config("[loader] block_utts must be at least 1"));
        }
        Ok(())
    }

    /// Chunks in a full batch.
    pub fn chunks_per_batch(&self) -> usize {
        (self.batch_frames / self.chunk_frames.max(1)).max(1)
    }

    /// The shuffle buffer's cap in bytes.
    pub fn memory_limit_bytes(&self) -> usize {
        (self.memory_limit_mb * 1024.0 * 1024.0) as usize
    }
}

/// Which utterance and frames one chunk of a batch labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Index into [`TrainData::utts`].
    pub utt: u32,
    /// First labelled frame.
    pub start: u32,
    /// Labelled frames, `<= chunk_frames`; the rest of the chunk is padding.
    pub len: u32,
}

/// One batch of chunks, plain vectors for the trainer to turn into tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[chunks, width, dim]`, CMVN applied; context beyond an utterance's ends repeats its
    /// first/last frame (as Kaldi nnet3 does).
    pub feats: Vec<f32>,
    /// `[chunks, chunk_frames]`; [`PAD_LABEL`] where a chunk runs past its utterance's end.
    pub labels: Vec<u32>,
    /// `[chunks]`: what each chunk labels.
    pub spans: Vec<Span>,
    /// Chunks in this batch.
    pub chunks: usize,
    /// Frames per chunk of `feats`: `chunk_frames + left + right`.
    pub width: usize,
    /// Feature dimension.
    pub dim: usize,
    /// Labelled frames per chunk (padding included).
    pub chunk_frames: usize,
}

impl Batch {
    /// Real frames (not [`PAD_LABEL`]; [`UNLABELLED`] ones included).
    pub fn labelled_frames(&self) -> usize {
        self.spans.iter().map(|s| s.len as usize).sum()
    }
}

/// Features, normalisation and frame labels of a corpus; cheap to clone and shared with the
/// prefetch thread.
#[derive(Clone)]
pub struct TrainData {
    inner: Arc<Inner>,
}

struct Inner {
    store: FeatureStore,
    norm: Normaliser,
    /// Usable utterances in `feats.scp` order.
    utts: Vec<String>,
    index: HashMap<String, usize>,
    /// Frames per utterance, `utts` order.
    frames: Vec<usize>,
    /// `[frames[i]]` labels per utterance, fitted to the feature frame count.
    labels: Vec<Vec<u32>>,
    dim: usize,
    num_classes: usize,
}

impl TrainData {
    /// Keeps the utterances of `store` that have labels whose frame count agrees with the
    /// features within [`DEFAULT_FRAME_TOLERANCE`] frames; labels are cut, or extended by
    /// repeating the last one, to the feature frame count. The others are returned as one line
    /// per utterance saying why it was left out. A label `>= num_classes` is an error naming its
    /// utterance and frame (the alignments belong to another senone set).
    pub fn new(
        store: FeatureStore,
        normaliser: Normaliser,
        labels: BTreeMap<String, Vec<u32>>,
        num_classes: usize,
    ) -> Result<(Self, Vec<String>)> {
        Self::build(store, normaliser, labels, num_classes, false)
    }

    /// As [`TrainData::new`], but utterances with features and no alignment are kept, every
    /// frame labelled [`UNLABELLED`] (for a KD student learning from a teacher alone there).
    /// There must still be at least one aligned utterance.
    pub fn with_untranscribed(
        store: FeatureStore,
        normaliser: Normaliser,
        labels: BTreeMap<String, Vec<u32>>,
        num_classes: usize,
    ) -> Result<(Self, Vec<String>)> {
        Self::build(store, normaliser, labels, num_classes, true)
    }

    fn build(
        store: FeatureStore,
        normaliser: Normaliser,
        labels: BTreeMap<String, Vec<u32>>,
        num_classes: usize,
        keep_untranscribed: bool,
    ) -> Result<(Self, Vec<String>)> {
        if num_classes == 0 || num_classes >= UNLABELLED as usize {
            return Err(Error::config(format!(
                "number of classes must be in 1..{UNLABELLED}, got {num_classes}"
            )));
        }
        for (utt, ids) in &labels {
            if let Some((frame, &id)) = ids
                .iter()
                .enumerate()
                .find(|(_, &id)| id as usize >= num_classes)
            {
                return Err(Error::utterance(
                    utt,
                    format!("frame {frame} has label {id}, not below the {num_classes} classes"),
                ));
            }
        }
        let feature_frames: BTreeMap<String, usize> = store
            .utts()
            .iter()
            .map(|u| (u.clone(), store.num_frames(u).unwrap_or(0)))
            .collect();
        let label_frames: BTreeMap<String, usize> =
            labels.iter().map(|(u, l)| (u.clone(), l.len())).collect();
        let report = check_frame_counts(&label_frames, &feature_frames, DEFAULT_FRAME_TOLERANCE);

        let mut skipped = Vec::new();
        for m in &report.mismatches {
            skipped.push(format!(
                "utterance {}: the alignment has {} frames but the features {} (difference {} > tolerance {}); skipped",
                m.utt,
                m.label_frames,
                m.feature_frames,
                m.label_frames.abs_diff(m.feature_frames),
                report.tolerance
            ));
        }
        if !keep_untranscribed {
            for u in &report.missing_labels {
                skipped.push(format!("utterance {u}: features but no alignment; skipped"));
            }
        }
        for u in &report.missing_features {
            skipped.push(format!(
                "utterance {u}: an alignment but no features; skipped"
            ));
        }

        let mut labels = labels;
        let mut utts = Vec::new();
        let mut frames = Vec::new();
        let mut kept = Vec::new();
        let mut aligned = 0usize;
        for utt in store.utts() {
            let n = feature_frames[utt];
            let Some(mut ids) = labels.remove(utt) else {
                if keep_untranscribed && n > 0 {
                    utts.push(utt.clone());
                    frames.push(n);
                    kept.push(vec![UNLABELLED; n]);
                }
                continue;
            };
            if ids.len().abs_diff(n) > report.tolerance {
                continue; // reported above
            }
            if n == 0 {
                skipped.push(format!("utterance {utt}: no frames; skipped"));
                continue;
            }
            let Some(&last) = ids.last() else {
                skipped.push(format!(
                    "utterance {utt}: an empty alignment for {n} frames; skipped"
                ));
                continue;
            };
            ids.resize(n, last);
            utts.push(utt.clone());
            frames.push(n);
            kept.push(ids);
            aligned += 1;
        }
        if aligned == 0 {
            return Err(Error::Mismatch(format!(
                "{}: no utterance has both features and an agreeing alignment ({} left out{})",
                store.dir().display(),
                skipped.len(),
                skipped
                    .first()
                    .map(|s| format!(", e.g. {s}"))
                    .unwrap_or_default()
            )));
        }
        let index = utts
            .iter()
            .enumerate()
            .map(|(i, u)| (u.clone(), i))
            .collect();
        let dim = store.dim();
        let inner = Inner {
            store,
            norm: normaliser,
            utts,
            index,
            frames,
            labels: kept,
            dim,
            num_classes,
        };
        Ok((
            TrainData {
                inner: Arc::new(inner),
            },
            skipped,
        ))
    }

    /// Usable utterances, in `feats.scp` order; [`Span::utt`] indexes this.
    pub fn utts(&self) -> &[String] {
        &self.inner.utts
    }

    /// Frames per utterance, in [`TrainData::utts`] order.
    pub fn frame_counts(&self) -> &[usize] {
        &self.inner.frames
    }

    /// Frames of `utt`, 0 when it is not one of [`TrainData::utts`].
    pub fn num_frames(&self, utt: &str) -> usize {
        self.inner
            .index
            .get(utt)
            .map_or(0, |&i| self.inner.frames[i])
    }

    /// The `[frames]` labels of utterance `index`.
    pub fn labels(&self, index: usize) -> &[u32] {
        &self.inner.labels[index]
    }

    /// Labelled frames over all usable utterances.
    pub fn total_frames(&self) -> usize {
        self.inner.frames.iter().sum()
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.inner.dim
    }

    /// Number of label classes the labels were checked against.
    pub fn num_classes(&self) -> usize {
        self.inner.num_classes
    }

    /// Chunks of `chunk_frames` over all utterances.
    fn total_chunks(&self, chunk_frames: usize) -> u64 {
        self.inner
            .frames
            .iter()
            .map(|&n| n.div_ceil(chunk_frames) as u64)
            .sum()
    }

    /// The number of batches [`TrainData::epoch`] yields with `cfg` and no skip (0 for an
    /// invalid `cfg`).
    pub fn batches_per_epoch(&self, cfg: &LoaderConfig) -> u64 {
        if cfg.validate().is_err() {
            return 0;
        }
        self.total_chunks(cfg.chunk_frames)
            .div_ceil(cfg.chunks_per_batch() as u64)
    }

    /// Batches of one epoch, shuffled by `(seed, epoch)`, without the first `skip` (so that a
    /// resumed epoch continues exactly where it stopped), prepared `cfg.prefetch_batches` ahead
    /// on a background thread. `left`/`right` are the context frames around each chunk. An
    /// utterance that cannot be read or normalised ends the epoch with an error naming it.
    pub fn epoch(
        &self,
        cfg: &LoaderConfig,
        left: usize,
        right: usize,
        seed: u64,
        epoch: u64,
        skip: u64,
    ) -> Result<BatchIter> {
        cfg.validate()?;
        let limit = cfg.memory_limit_bytes();
        let bytes_per_frame = self.inner.dim * std::mem::size_of::<f32>();
        if let Some((i, &n)) = self
            .inner
            .frames
            .iter()
            .enumerate()
            .max_by_key(|(_, &n)| n)
            .filter(|(_, &n)| n * bytes_per_frame > limit)
        {
            return Err(Error::config(format!(
                "[loader] memory_limit_mb {} is below one utterance: {} needs {:.2} MiB ({} frames)",
                cfg.memory_limit_mb,
                self.inner.utts[i],
                (n * bytes_per_frame) as f64 / (1024.0 * 1024.0),
                n
            )));
        }
        let total = self.batches_per_epoch(cfg);
        let remaining = total.saturating_sub(skip);
        let (tx, rx) = sync_channel(cfg.prefetch_batches);
        let peak = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            data: self.inner.clone(),
            shuffle: Shuffle::new(&self.inner.frames, cfg, bytes_per_frame, seed, epoch),
            resident: HashMap::new(),
            resident_bytes: 0,
            peak: peak.clone(),
            chunk_frames: cfg.chunk_frames,
            chunks_per_batch: cfg.chunks_per_batch(),
            left,
            right,
        };
        let handle = std::thread::Builder::new()
            .name("amdistill-loader".into())
            .spawn(move || worker.run(skip, tx))
            .map_err(|e| Error::config(format!("cannot start the loader thread: {e}")))?;
        Ok(BatchIter {
            rx: Some(rx),
            handle: Some(handle),
            peak,
            remaining,
        })
    }

    /// Utterance `index` whole, unshuffled, for validation and scoring: one chunk of its own
    /// length, feats `[1, frames + left + right, dim]`, labels `[1, frames]`.
    pub fn utterance(&self, index: usize, left: usize, right: usize) -> Result<Batch> {
        let d = &self.inner;
        if index >= d.utts.len() {
            return Err(Error::config(format!(
                "utterance index {index} is beyond the {} utterances",
                d.utts.len()
            )));
        }
        let feats = d.read(index)?;
        let n = d.frames[index];
        let width = n + left + right;
        let mut out = Vec::with_capacity(width * d.dim);
        push_window(&mut out, &feats, 0, n, left, right);
        Ok(Batch {
            feats: out,
            labels: d.labels[index].clone(),
            spans: vec![Span {
                utt: index as u32,
                start: 0,
                len: n as u32,
            }],
            chunks: 1,
            width,
            dim: d.dim,
            chunk_frames: n,
        })
    }
}

impl Inner {
    /// Normalised features of utterance `i`, `[frames, dim]`.
    fn read(&self, i: usize) -> Result<Matrix> {
        let utt = &self.utts[i];
        let named = |e: Error| match e {
            e @ Error::Utterance { .. } => e,
            e => Error::utterance(utt, e),
        };
        let mut m = self.store.get(utt).map_err(named)?;
        self.norm.apply(utt, &mut m).map_err(named)?;
        Ok(m)
    }
}

/// Appends `[len + left + right, dim]` frames of `feats` around `start..start + len`, rows
/// outside the utterance replaced by its first or last row.
fn push_window(
    out: &mut Vec<f32>,
    feats: &Matrix,
    start: usize,
    len: usize,
    left: usize,
    right: usize,
) {
    let n = feats.rows as isize;
    let lo = start as isize - left as isize;
    let hi = (start + len + right) as isize; // exclusive
    let inside_lo = lo.clamp(0, n);
    let inside_hi = hi.clamp(0, n);
    for _ in lo..inside_lo.min(hi) {
        out.extend_from_slice(feats.row(0));
    }
    if inside_lo < inside_hi {
        let d = feats.cols;
        out.extend_from_slice(&feats.data[inside_lo as usize * d..inside_hi as usize * d]);
    }
    for _ in inside_hi.max(lo)..hi {
        out.extend_from_slice(feats.row(feats.rows - 1));
    }
}

/// One chunk: utterance index and first labelled frame.
#[derive(Debug, Clone, Copy)]
struct ChunkRef {
    utt: u32,
    start: u32,
}

/// What to do before drawing more chunks.
enum Step {
    /// Read these utterances into the buffer.
    Load(Vec<u32>),
    /// Take this chunk out of the buffer.
    Draw(ChunkRef),
    /// The epoch is over.
    Done,
}

/// The epoch's order, from frame counts and the random stream alone (never feature values),
/// so that it can run ahead without reading anything.
struct Shuffle {
    rng: ChaCha8Rng,
    /// Frames per utterance.
    frames: Vec<usize>,
    chunk_frames: usize,
    bytes_per_frame: usize,
    limit: usize,
    /// Utterance indices in reading order: shuffled blocks of consecutive utterances.
    order: Vec<u32>,
    /// Next position in `order`.
    next: usize,
    /// Chunks available to draw.
    pool: Vec<ChunkRef>,
    /// Utterance -> its chunks still in `pool`.
    left_in_pool: HashMap<u32, u32>,
    /// Feature bytes of the utterances with chunks in `pool`.
    bytes: usize,
}

impl Shuffle {
    fn new(
        frames: &[usize],
        cfg: &LoaderConfig,
        bytes_per_frame: usize,
        seed: u64,
        epoch: u64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch);
        let n = frames.len();
        let mut blocks: Vec<(usize, usize)> = (0..n)
            .step_by(cfg.block_utts)
            .map(|a| (a, (a + cfg.block_utts).min(n)))
            .collect();
        blocks.shuffle(&mut rng);
        let order = blocks
            .into_iter()
            .flat_map(|(a, b)| (a as u32)..(b as u32))
            .collect();
        Shuffle {
            rng,
            frames: frames.to_vec(),
            chunk_frames: cfg.chunk_frames,
            bytes_per_frame,
            limit: cfg.memory_limit_bytes(),
            order,
            next: 0,
            pool: Vec::new(),
            left_in_pool: HashMap::new(),
            bytes: 0,
        }
    }

    fn utt_bytes(&self, u: u32) -> usize {
        self.frames[u as usize] * self.bytes_per_frame
    }

    /// The next step: a refill while the buffer is below half its cap and utterances remain
    /// (as many as fit under the cap), else a random draw.
    fn step(&mut self) -> Step {
        if self.bytes < self.limit / 2 || self.pool.is_empty() {
            let mut load = Vec::new();
            while let Some(&u) = self.order.get(self.next) {
                let b = self.utt_bytes(u);
                // `epoch` checked that every utterance fits an empty buffer.
                if self.bytes + b > self.limit {
                    break;
                }
                self.bytes += b;
                self.next += 1;
                let n = self.frames[u as usize];
                let chunks = n.div_ceil(self.chunk_frames);
                self.pool.extend((0..chunks).map(|c| ChunkRef {
                    utt: u,
                    start: (c * self.chunk_frames) as u32,
                }));
                self.left_in_pool.insert(u, chunks as u32);
                load.push(u);
            }
            if !load.is_empty() {
                return Step::Load(load);
            }
        }
        if self.pool.is_empty() {
            return Step::Done;
        }
        let j = self.rng.gen_range(0..self.pool.len());
        let c = self.pool.swap_remove(j);
        let left = self
            .left_in_pool
            .get_mut(&c.utt)
            .expect("a pooled utterance");
        *left -= 1;
        if *left == 0 {
            self.left_in_pool.remove(&c.utt);
            self.bytes -= self.utt_bytes(c.utt);
        }
        Step::Draw(c)
    }
}

/// The prefetch thread's state: the order plus the features of the buffered utterances.
struct Worker {
    data: Arc<Inner>,
    shuffle: Shuffle,
    /// Utterance -> normalised features `[frames, dim]` and its chunks not yet emitted.
    resident: HashMap<u32, (Matrix, u32)>,
    resident_bytes: usize,
    peak: Arc<AtomicUsize>,
    chunk_frames: usize,
    chunks_per_batch: usize,
    left: usize,
    right: usize,
}

impl Worker {
    fn run(mut self, skip: u64, tx: SyncSender<Result<Batch>>) {
        if let Err(e) = self.fast_forward(skip) {
            let _ = tx.send(Err(e));
            return;
        }
        loop {
            match self.next_batch() {
                Ok(Some(b)) => {
                    if tx.send(Ok(b)).is_err() {
                        return; // the iterator was dropped
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            }
        }
    }

    /// Replays the draws of the first `skip` batches without reading features, then reads the
    /// utterances that still have chunks in the buffer.
    fn fast_forward(&mut self, skip: u64) -> Result<()> {
        if skip == 0 {
            return Ok(());
        }
        let mut drawn = 0u64;
        let target = skip.saturating_mul(self.chunks_per_batch as u64);
        while drawn < target {
            match self.shuffle.step() {
                Step::Load(_) => {}
                Step::Draw(_) => drawn += 1,
                Step::Done => break,
            }
        }
        let mut live: Vec<u32> = self.shuffle.left_in_pool.keys().copied().collect();
        live.sort_unstable();
        self.load(&live)?;
        for (u, left) in &self.shuffle.left_in_pool {
            if let Some(r) = self.resident.get_mut(u) {
                r.1 = *left;
            }
        }
        Ok(())
    }

    /// Reads and normalises `utts` in parallel into the buffer.
    fn load(&mut self, utts: &[u32]) -> Result<()> {
        let data = &self.data;
        let read: Vec<(u32, Matrix)> = utts
            .par_iter()
            .map(|&u| data.read(u as usize).map(|m| (u, m)))
            .collect::<Result<_>>()?;
        for (u, m) in read {
            self.resident_bytes += m.data.len() * std::mem::size_of::<f32>();
            let chunks = data.frames[u as usize].div_ceil(self.chunk_frames) as u32;
            self.resident.insert(u, (m, chunks));
        }
        self.peak.fetch_max(self.resident_bytes, Ordering::Relaxed);
        Ok(())
    }

    /// The next batch, `None` at the end of the epoch.
    fn next_batch(&mut self) -> Result<Option<Batch>> {
        let (c, d) = (self.chunk_frames, self.data.dim);
        let width = c + self.left + self.right;
        let mut feats = Vec::with_capacity(self.chunks_per_batch * width * d);
        let mut labels = Vec::with_capacity(self.chunks_per_batch * c);
        let mut spans = Vec::with_capacity(self.chunks_per_batch);
        while spans.len() < self.chunks_per_batch {
            let chunk = match self.shuffle.step() {
                Step::Load(utts) => {
                    self.load(&utts)?;
                    continue;
                }
                Step::Draw(chunk) => chunk,
                Step::Done => break,
            };
            let u = chunk.utt as usize;
            let start = chunk.start as usize;
            let n = self.data.frames[u];
            let len = c.min(n - start);
            let entry = self
                .resident
                .get_mut(&chunk.utt)
                .expect("drawn chunks are resident");
            push_window(&mut feats, &entry.0, start, c, self.left, self.right);
            labels.extend_from_slice(&self.data.labels[u][start..start + len]);
            labels.resize(labels.len() + (c - len), PAD_LABEL);
            spans.push(Span {
                utt: chunk.utt,
                start: chunk.start,
                len: len as u32,
            });
            entry.1 -= 1;
            if entry.1 == 0 {
                if let Some((m, _)) = self.resident.remove(&chunk.utt) {
                    self.resident_bytes -= m.data.len() * std::mem::size_of::<f32>();
                }
            }
        }
        if spans.is_empty() {
            return Ok(None);
        }
        Ok(Some(Batch {
            feats,
            labels,
            chunks: spans.len(),
            spans,
            width,
            dim: d,
            chunk_frames: c,
        }))
    }
}

/// The batches of one epoch, in order; an `Err` ends it. Dropping it stops the prefetch thread.
pub struct BatchIter {
    rx: Option<Receiver<Result<Batch>>>,
    handle: Option<JoinHandle<()>>,
    peak: Arc<AtomicUsize>,
    /// Batches still to come.
    remaining: u64,
}

impl BatchIter {
    /// The largest feature bytes the shuffle buffer held so far (batches in flight excluded).
    pub fn peak_buffer_bytes(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Batches still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl Iterator for BatchIter {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        let rx = self.rx.as_ref()?;
        match rx.recv() {
            Ok(Ok(b)) => {
                self.remaining = self.remaining.saturating_sub(1);
                Some(Ok(b))
            }
            Ok(Err(e)) => {
                self.rx = None;
                self.remaining = 0;
                Some(Err(e))
            }
            Err(_) => {
                // The thread ended: normally after the last batch, else it panicked.
                self.rx = None;
                let short = std::mem::take(&mut self.remaining);
                let panicked = self
                    .handle
                    .take()
                    .map(|h| h.join().is_err())
                    .unwrap_or(false);
                (panicked || short > 0).then(|| {
                    Err(Error::config(format!(
                        "the loader thread stopped {short} batches before the end of the epoch{}",
                        if panicked { " (it panicked)" } else { "" }
                    )))
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.remaining as usize;
        (n, Some(n))
    }
}

impl Drop for BatchIter {
    fn drop(&mut self) {
        // Closing the channel first makes a thread blocked on a full channel return.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(rows: usize) -> Matrix {
        // Row r is [r, r + 0.5].
        let data = (0..rows).flat_map(|r| [r as f32, r as f32 + 0.5]).collect();
        Matrix::from_vec(rows, 2, data)
    }

    fn rows_of(v: &[f32]) -> Vec<f32> {
        v.chunks(2).map(|r| r[0]).collect()
    }

    #[test]
    fn window_replicates_both_edges() {
        let m = matrix(3);
        let mut out = Vec::new();
        push_window(&mut out, &m, 0, 3, 2, 2);
        assert_eq!(rows_of(&out), vec![0., 0., 0., 1., 2., 2., 2.]);
        out.clear();
        // A chunk that runs past the end: padding rows repeat the last frame.
        push_window(&mut out, &m, 2, 4, 1, 0);
        assert_eq!(rows_of(&out), vec![1., 2., 2., 2., 2.]);
        out.clear();
        // Context wider than the utterance on both sides.
        push_window(&mut out, &matrix(1), 0, 1, 3, 2);
        assert_eq!(rows_of(&out), vec![0.; 6]);
        assert_eq!(out[1], 0.5);
    }

    #[test]
    fn shuffle_draws_every_chunk_once_within_the_cap() {
        let frames = vec![5, 17, 1, 8, 30, 9, 2];
        let cfg = LoaderConfig {
            chunk_frames: 4,
            memory_limit_mb: 40.0 * 8.0 / (1024.0 * 1024.0), // 40 frames of 8 bytes
            block_utts: 2,
            ..LoaderConfig::default()
        };
        let mut s = Shuffle::new(&frames, &cfg, 8, 7, 1);
        let mut seen = Vec::new();
        loop {
            match s.step() {
                Step::Load(_) => assert!(s.bytes <= s.limit),
                Step::Draw(c) => seen.push((c.utt, c.start)),
                Step::Done => break,
            }
        }
        let mut want: Vec<(u32, u32)> = frames
            .iter()
            .enumerate()
            .flat_map(|(u, &n)| (0..n.div_ceil(4)).map(move |c| (u as u32, 4 * c as u32)))
            .collect();
        seen.sort_unstable();
        want.sort_unstable();
        assert_eq!(seen, want);
    }
}
