//! Soft targets: the teacher's top-k logits per frame, stored compactly, so that a student can
//! be trained at any temperature later (DOMAIN.md §4).
//!
//! Per frame the store keeps the `k` largest teacher logits with their senone ids, plus `r`, the
//! log-sum-exp of the `S - k` logits it drops at T = 1 and at T = 2. At k = 10 a frame costs 48
//! bytes (about 17 MB per hour at 100 frames/s, against 2.9 GB for dense f32 posteriors over
//! 2,000 senones). A dense store (`dense: true`, k = S) keeps every logit as f16 (2·S bytes
//! per frame).
//!
//! # Directory
//!
//! ```text
//! DIR/targets.json            header: format_version, k, num_senones, dense, frame_shift (s),
//!                             teacher (free JSON), senones_id, utterances, frames,
//!                             bytes_per_frame, shards
//! DIR/targets.1.bin           records (unsharded); sharded runs write targets.I-of-N.bin
//! DIR/targets.scp             `utt-id targets.1.bin:OFFSET`, sorted by utterance id (C locale);
//!                             written last: its presence marks a complete store
//! DIR/splitN/targets.I.json   one shard's header and identity (sharded runs, before merging)
//! DIR/splitN/targets.I.scp    that shard's scp lines
//! ```
//!
//! Paths in the scp are relative to `DIR`, so a store can be moved. `OFFSET` is the byte
//! position of the record's magic.
//!
//! # Record layout (little-endian, no padding)
//!
//! ```text
//! offset   size      field
//! 0        4         magic "AMST"
//! 4        4         u32 L: length of the utterance id in bytes (1..=4096)
//! 8        L         utterance id, UTF-8
//! 8+L      4         u32 F: frames
//! 12+L     4         u32 k: kept logits per frame (= S when dense)
//! 16+L     4         u32 flags: bit 0 = dense; other bits 0
//! 20+L     4         u32 FNV-1a (32-bit) checksum of the payload
//! 24+L     payload   sparse: F·k u16 ids | F·k f16 logits | F f32 rest log-sum-exp
//!                            | F f32 rest log-sum-exp at T = 2 (format 2 on)
//!                    dense:  F·S f16 logits (ids are 0..S, nothing is left over)
//! ```
//!
//! Within a frame the kept ids are ordered by decreasing logit. Logits are stored relative to
//! the frame's largest logit (which becomes 0): a shift by a constant changes no softmax at any
//! temperature, and it keeps the large values near 0, where f16 is most precise, and inside
//! f16's range. Logits below -65504 are stored as -65504 (probability 0 at any T ≤ 1000).
//! `rest` is -inf when nothing was dropped (k = S) or every dropped logit was -inf. Format 1
//! (still read) had no rest at T = 2.
//!
//! # Temperature with a stored rest
//!
//! Two numbers describe the dropped logits `z_i` (relative to the frame's maximum): `r1 = ln Σ
//! exp(z_i)` and `r2 = ln Σ exp(z_i / 2)`. [`UttTargets::probs_at`] takes the dropped logits
//! as `n` equal ones at `v`, the one such tail with both: `ln n = 2 r2 - r1`, `v = r1 - ln n`
//! (`1 <= n <= m = S - k` always holds, by the power-mean inequality), so at temperature T
//! the dropped senones have log-sum-exp `ln n + v / T`. The rest mass is exact at T = 1 and
//! T = 2 and interpolates between and beyond: on the synthetic recipe's teacher (1,000 senones,
//! k = 10, 20,468 dev frames) the true rest mass at T = 1.5 / 3 / 4 is 0.240 / 0.595 / 0.742
//! and this gives 0.254 / 0.524 / 0.608. With `r1` alone (format 1) the dropped mass is taken
//! as spread evenly over the `m` senones, `ln m + (r1 - ln m) / T`: the largest tail any
//! dropped logits with that `r1` could have (0.645 against the true 0.371 at T = 2 on that
//! teacher). The kept ids' order is never changed.
//!
//! # Validation
//!
//! Opening reads the header and every record's header: sizes are checked against the bytes
//! that remain in the file before anything is allocated, and each record's utterance id and k
//! must match its scp line and the header. [`SoftTargetStore::get`] checks the checksum, that
//! ids are below `num_senones` and that logits are finite. Errors name the file, the byte
//! offset and the utterance.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use half::f16;
use serde::{Deserialize, Serialize};

use crate::atomic::{remove_stale_temporaries, write_atomic, AtomicFile};
use crate::error::{Error, Result};
use crate::features::kaldi_io::ArkReader;
use crate::progress::BatchSummary;

/// Version of the directory and record layout described in the module docs.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest layout this build still reads (no rest log-sum-exp at T = 2).
const OLDEST_READABLE: u32 = 1;
const MAGIC: &[u8; 4] = b"AMST";
/// Longest utterance id a record may hold (a bound for the header check).
const MAX_UTT_ID: usize = 4096;
const FLAG_DENSE: u32 = 1;
/// f16's most negative finite value: the floor for stored logits.
const F16_FLOOR: f32 = -65504.0;

/// What a soft-target store holds and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftTargetMeta {
    /// Logits kept per frame (= `num_senones` when `dense`).
    pub k: usize,
    /// Senones of the teacher's output layer, S (at most 65,536: ids are u16).
    pub num_senones: usize,
    /// Every logit kept (f16), nothing dropped.
    pub dense: bool,
    /// Seconds per frame, as in the feature directory's `frame_shift`.
    pub frame_shift: f64,
    /// Free description of the teacher: name, config hash or checkpoint path, ...
    pub teacher: serde_json::Value,
    /// Identity of the senone table (its hash or another identity string); the student's
    /// table must have the same.
    pub senones_id: String,
}

impl SoftTargetMeta {
    /// Bytes of one frame in a record's payload: `4k + 8` sparse, `2S` dense.
    pub fn bytes_per_frame(&self) -> usize {
        self.bytes_per_frame_in(FORMAT_VERSION)
    }

    /// [`Self::bytes_per_frame`] in the layout of `format_version` (format 1: `4k + 4` sparse).
    fn bytes_per_frame_in(&self, format_version: u32) -> usize {
        match (self.dense, format_version) {
            (true, _) => 2 * self.num_senones,
            (false, 1) => 4 * self.k + 4,
            (false, _) => 4 * self.k + 8,
        }
    }

    fn validate(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(Error::config(format!("{what}: {m}")));
        if self.num_senones == 0 || self.num_senones > 1 << 16 {
            return bad(format!(
                "num_senones {} must be in 1..=65536 (ids are u16)",
                self.num_senones
            ));
        }
        if self.dense && self.k != self.num_senones {
            return bad(format!(
                "a dense store keeps every logit: k {} must equal num_senones {}",
                self.k, self.num_senones
            ));
        }
        if self.k == 0 || self.k > self.num_senones {
            return bad(format!(
                "k {} must be in 1..=num_senones ({})",
                self.k, self.num_senones
            ));
        }
        if !(self.frame_shift.is_finite() && self.frame_shift > 0.0) {
            return bad(format!(
                "frame_shift {} must be a positive number of seconds",
                self.frame_shift
            ));
        }
        if self.senones_id.is_empty() {
            return bad("senones_id is empty: name the senone table the teacher used".into());
        }
        Ok(())
    }
}

/// `targets.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Header {
    format_version: u32,
    #[serde(flatten)]
    meta: SoftTargetMeta,
    utterances: usize,
    frames: u64,
    bytes_per_frame: usize,
    /// How many shards wrote the records (1 when unsharded).
    shards: usize,
}

/// `splitN/targets.I.json`: one shard's identity and what it wrote, so that a merge can
/// refuse shards of another run or files changed after the shard finished.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShardHeader {
    format_version: u32,
    shard: usize,
    shards: usize,
    meta: SoftTargetMeta,
    bin: String,
    bin_bytes: u64,
    utterances: usize,
    frames: u64,
    /// FNV-1a (64-bit) of the shard's scp file.
    scp_fnv: u64,
}

/// What a writer (or a merge) produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteSummary {
    pub utterances: usize,
    pub frames: u64,
    /// Bytes of record files written.
    pub bytes: u64,
    /// Payload bytes per frame (see [`SoftTargetMeta::bytes_per_frame`]).
    pub bytes_per_frame: usize,
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= b as u32;
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

fn bin_name(shard: (usize, usize), sharded: bool) -> String {
    if sharded {
        format!("targets.{}-of-{}.bin", shard.0, shard.1)
    } else {
        "targets.1.bin".to_string()
    }
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(p, e)),
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::format(path, format!("serialising: {e}")))?;
    write_atomic(path, |w| {
        w.write_all(text.as_bytes())?;
        w.write_all(b"\n")
    })
}

fn scp_text(entries: &[(String, String, u64)]) -> String {
    let mut s = String::new();
    for (utt, bin, off) in entries {
        s.push_str(&format!("{utt} {bin}:{off}\n"));
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Writes the soft targets of one run (or one shard of it) into a store directory.
///
/// Records go to the bin file under a temporary name; [`SoftTargetWriter::finish`] renames it
/// into place and writes the index. Creating a writer removes the directory's `targets.scp`
/// (the completion marker), since the store is incomplete until this run finishes.
pub struct SoftTargetWriter {
    dir: PathBuf,
    meta: SoftTargetMeta,
    shard: (usize, usize),
    sharded: bool,
    bin: AtomicFile,
    bin_name: String,
    offset: u64,
    entries: Vec<(String, String, u64)>,
    seen: HashSet<String>,
    frames: u64,
    // Reused per-frame buffers.
    order: Vec<u32>,
}

impl SoftTargetWriter {
    /// Starts writing into `dir` (created if missing). `shard` is `Some((I, N))`, 1-based,
    /// for shard I of N (the caller picks the shard's utterances, e.g. every N-th from the
    /// I-th as `compute-fbank --shard` does); join the shards with [`merge_shards`].
    pub fn create(dir: &Path, meta: SoftTargetMeta, shard: Option<(usize, usize)>) -> Result<Self> {
        meta.validate(&format!("soft targets {}", dir.display()))?;
        if let Some((i, n)) = shard {
            if i == 0 || i > n {
                return Err(Error::config(format!("shard {i}/{n}: need 1 <= I <= N")));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        remove_stale_temporaries(dir)?;
        // The merged index no longer describes the directory once any part is rewritten.
        remove_if_exists(&dir.join("targets.scp"))?;
        remove_if_exists(&dir.join("targets.json"))?;
        let sharded = shard.is_some();
        let shard = shard.unwrap_or((1, 1));
        if sharded {
            let split = dir.join(format!("split{}", shard.1));
            std::fs::create_dir_all(&split).map_err(|e| Error::io(&split, e))?;
            remove_stale_temporaries(&split)?;
            remove_if_exists(&split.join(format!("targets.{}.scp", shard.0)))?;
            remove_if_exists(&split.join(format!("targets.{}.json", shard.0)))?;
        }
        let bin_name = bin_name(shard, sharded);
        let bin = AtomicFile::create(dir.join(&bin_name))?;
        Ok(SoftTargetWriter {
            dir: dir.to_path_buf(),
            meta,
            shard,
            sharded,
            bin,
            bin_name,
            offset: 0,
            entries: Vec::new(),
            seen: HashSet::new(),
            frames: 0,
            order: Vec::new(),
        })
    }

    /// The store's description.
    pub fn meta(&self) -> &SoftTargetMeta {
        &self.meta
    }

    /// Adds one utterance: `logits` is `[frames, S]` row-major teacher logits (any shift; log
    /// posteriors do as well). -inf is allowed (probability 0); NaN and +inf are refused, as is
    /// a frame without a finite logit. The top k are selected per frame (partial selection)
    /// and the dropped logits' log-sum-exp is computed in f64.
    pub fn add(&mut self, utt: &str, logits: &[f32], frames: usize) -> Result<()> {
        let s = self.meta.num_senones;
        let k = self.meta.k;
        if utt.is_empty() || utt.len() > MAX_UTT_ID || utt.chars().any(char::is_whitespace) {
            return Err(Error::utterance(
                utt,
                format!("utterance ids must be 1 to {MAX_UTT_ID} bytes without whitespace"),
            ));
        }
        if self.seen.contains(utt) {
            return Err(Error::utterance(
                utt,
                "added twice to the soft-target store",
            ));
        }
        if frames.checked_mul(s) != Some(logits.len()) {
            return Err(Error::utterance(
                utt,
                format!("{} logits for {frames} frames x {s} senones", logits.len()),
            ));
        }
        if frames > u32::MAX as usize {
            return Err(Error::utterance(
                utt,
                format!("{frames} frames is too many"),
            ));
        }
        let mut ids: Vec<u8> = Vec::new();
        let mut vals: Vec<u8> = Vec::with_capacity(frames * k * 2);
        let mut rest: Vec<u8> = Vec::new();
        let mut rest_half: Vec<u8> = Vec::new();
        if !self.meta.dense {
            ids.reserve(frames * k * 2);
            rest.reserve(frames * 4);
            rest_half.reserve(frames * 4);
        }
        for f in 0..frames {
            let row = &logits[f * s..(f + 1) * s];
            let mut max = f32::NEG_INFINITY;
            for (j, &x) in row.iter().enumerate() {
                if x.is_nan() || x == f32::INFINITY {
                    return Err(Error::utterance(
                        utt,
                        format!("frame {f}, senone {j}: logit {x} (teacher output not finite)"),
                    ));
                }
                max = max.max(x);
            }
            if max == f32::NEG_INFINITY {
                return Err(Error::utterance(
                    utt,
                    format!("frame {f}: every logit is -inf"),
                ));
            }
            let enc = |x: f32| {
                f16::from_f32((x - max).max(F16_FLOOR))
                    .to_bits()
                    .to_le_bytes()
            };
            if self.meta.dense {
                for &x in row {
                    vals.extend_from_slice(&enc(x));
                }
                continue;
            }
            // Larger logit first; ties by id, so that the output is deterministic.
            let cmp = |a: &u32, b: &u32| {
                row[*b as usize]
                    .partial_cmp(&row[*a as usize])
                    .expect("no NaN")
                    .then(a.cmp(b))
            };
            self.order.clear();
            self.order.extend(0..s as u32);
            if k < s {
                self.order.select_nth_unstable_by(k - 1, cmp);
            }
            let (kept, dropped) = self.order.split_at_mut(k);
            kept.sort_unstable_by(cmp);
            for &j in kept.iter() {
                ids.extend_from_slice(&(j as u16).to_le_bytes());
                vals.extend_from_slice(&enc(row[j as usize]));
            }
            let (r1, r2) = dropped_lse(dropped.iter().map(|&j| row[j as usize]), max);
            rest.extend_from_slice(&(r1 as f32).to_le_bytes());
            rest_half.extend_from_slice(&(r2 as f32).to_le_bytes());
        }
        let mut payload = ids;
        payload.extend_from_slice(&vals);
        payload.extend_from_slice(&rest);
        payload.extend_from_slice(&rest_half);
        debug_assert_eq!(payload.len(), frames * self.meta.bytes_per_frame());

        let mut head = Vec::with_capacity(24 + utt.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(utt.len() as u32).to_le_bytes());
        head.extend_from_slice(utt.as_bytes());
        head.extend_from_slice(&(frames as u32).to_le_bytes());
        head.extend_from_slice(&(k as u32).to_le_bytes());
        let flags = if self.meta.dense { FLAG_DENSE } else { 0 };
        head.extend_from_slice(&flags.to_le_bytes());
        head.extend_from_slice(&fnv1a32(&payload).to_le_bytes());
        let path = self.dir.join(&self.bin_name);
        self.bin.write_all(&head).map_err(|e| Error::io(&path, e))?;
        self.bin
            .write_all(&payload)
            .map_err(|e| Error::io(&path, e))?;
        self.entries
            .push((utt.to_string(), self.bin_name.clone(), self.offset));
        self.seen.insert(utt.to_string());
        self.offset += (head.len() + payload.len()) as u64;
        self.frames += frames as u64;
        Ok(())
    }

    /// Renames the records into place and writes the index: `targets.json` then
    /// `targets.scp` (unsharded), or `splitN/targets.I.{scp,json}` (a shard).
    pub fn finish(mut self) -> Result<WriteSummary> {
        self.bin.commit()?;
        self.entries
            .sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let scp = scp_text(&self.entries);
        let summary = WriteSummary {
            utterances: self.entries.len(),
            frames: self.frames,
            bytes: self.offset,
            bytes_per_frame: self.meta.bytes_per_frame(),
        };
        if self.sharded {
            let (i, n) = self.shard;
            let split = self.dir.join(format!("split{n}"));
            let scp_path = split.join(format!("targets.{i}.scp"));
            write_atomic(&scp_path, |w| w.write_all(scp.as_bytes()))?;
            let head = ShardHeader {
                format_version: FORMAT_VERSION,
                shard: i,
                shards: n,
                meta: self.meta.clone(),
                bin: self.bin_name.clone(),
                bin_bytes: self.offset,
                utterances: summary.utterances,
                frames: summary.frames,
                scp_fnv: fnv1a64(scp.as_bytes()),
            };
            write_json(&split.join(format!("targets.{i}.json")), &head)?;
        } else {
            let head = Header {
                format_version: FORMAT_VERSION,
                meta: self.meta.clone(),
                utterances: summary.utterances,
                frames: summary.frames,
                bytes_per_frame: summary.bytes_per_frame,
                shards: 1,
            };
            write_json(&self.dir.join("targets.json"), &head)?;
            write_atomic(self.dir.join("targets.scp"), |w| {
                w.write_all(scp.as_bytes())
            })?;
        }
        Ok(summary)
    }
}

/// `(ln Σ exp(x - max), ln Σ exp((x - max) / 2))` over `xs`, in f64 (both -inf for none, or
/// all -inf): the dropped logits' log-sum-exp at T = 1 and T = 2, in one pass of `exp` (the
/// T = 2 terms are the square roots of the T = 1 ones).
fn dropped_lse(xs: impl Iterator<Item = f32> + Clone, max: f32) -> (f64, f64) {
    let m = xs
        .clone()
        .fold(f64::NEG_INFINITY, |a, x| a.max(x as f64 - max as f64));
    if m == f64::NEG_INFINITY {
        return (m, m);
    }
    let (s1, s2) = xs.fold((0f64, 0f64), |(s1, s2), x| {
        let e = (x as f64 - max as f64 - m).exp();
        (s1 + e, s2 + e.sqrt())
    });
    (m + s1.ln(), 0.5 * m + s2.ln())
}

/// Joins the `n` shards in `dir` written by [`SoftTargetWriter`]s with `Some((I, n))` into
/// one store: writes `targets.json` and then `targets.scp`. Refuses a missing or unfinished
/// shard, shards whose descriptions differ (another teacher, senone table, k ...), a shard
/// whose files changed after it finished, and an utterance in two shards.
pub fn merge_shards(dir: &Path, n: usize) -> Result<WriteSummary> {
    if n == 0 {
        return Err(Error::config("merge_shards: need at least one shard"));
    }
    let split = dir.join(format!("split{n}"));
    let mut first: Option<(PathBuf, SoftTargetMeta)> = None;
    let mut entries: Vec<(String, String, u64)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut frames = 0u64;
    let mut bytes = 0u64;
    for i in 1..=n {
        let json_path = split.join(format!("targets.{i}.json"));
        let scp_path = split.join(format!("targets.{i}.scp"));
        let text = match std::fs::read_to_string(&json_path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::format(
                    &json_path,
                    format!("shard {i}/{n} has not finished (no shard header)"),
                ))
            }
            Err(e) => return Err(Error::io(&json_path, e)),
        };
        let head: ShardHeader = serde_json::from_str(&text)
            .map_err(|e| Error::parse(&json_path, e.line(), e.to_string()))?;
        if head.format_version != FORMAT_VERSION || head.shard != i || head.shards != n {
            return Err(Error::format(
                &json_path,
                format!(
                    "expected shard {i}/{n} of format {FORMAT_VERSION}, found shard {}/{} of format {}",
                    head.shard, head.shards, head.format_version
                ),
            ));
        }
        match &first {
            None => first = Some((json_path.clone(), head.meta.clone())),
            Some((p, meta)) if *meta != head.meta => {
                return Err(Error::Mismatch(format!(
                "stale or foreign shard: {} describes {}, but {} describes {}; rerun shard {i}/{n}",
                p.display(),
                serde_json::to_string(meta).unwrap_or_default(),
                json_path.display(),
                serde_json::to_string(&head.meta).unwrap_or_default()
            )))
            }
            Some(_) => {}
        }
        let scp = std::fs::read(&scp_path).map_err(|e| Error::io(&scp_path, e))?;
        if fnv1a64(&scp) != head.scp_fnv {
            return Err(Error::format(
                &scp_path,
                format!(
                    "changed after shard {i}/{n} finished (does not match {})",
                    json_path.display()
                ),
            ));
        }
        let bin_path = dir.join(&head.bin);
        let len = std::fs::metadata(&bin_path)
            .map_err(|e| Error::io(&bin_path, e))?
            .len();
        if len != head.bin_bytes {
            return Err(Error::format(
                &bin_path,
                format!(
                    "{len} bytes, but shard {i}/{n} wrote {} ({}); rerun the shard",
                    head.bin_bytes,
                    json_path.display()
                ),
            ));
        }
        let scp = String::from_utf8(scp).map_err(|_| Error::format(&scp_path, "not UTF-8"))?;
        let lines = parse_scp(&scp, &scp_path)?;
        if lines.len() != head.utterances {
            return Err(Error::format(
                &scp_path,
                format!(
                    "{} lines, the shard header says {}",
                    lines.len(),
                    head.utterances
                ),
            ));
        }
        for (line_no, utt, bin, off) in lines {
            if bin != head.bin {
                return Err(Error::parse(
                    &scp_path,
                    line_no,
                    format!("points into {bin}, shard {i}/{n} wrote {}", head.bin),
                ));
            }
            if let Some(j) = seen.insert(utt.clone(), i) {
                return Err(Error::Mismatch(format!(
                    "utterance {utt} is in shards {j} and {i} of {n} in {}",
                    split.display()
                )));
            }
            entries.push((utt, bin, off));
        }
        frames += head.frames;
        bytes += head.bin_bytes;
    }
    let (_, meta) = first.expect("n >= 1");
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let head = Header {
        format_version: FORMAT_VERSION,
        bytes_per_frame: meta.bytes_per_frame(),
        meta,
        utterances: entries.len(),
        frames,
        shards: n,
    };
    write_json(&dir.join("targets.json"), &head)?;
    let scp = scp_text(&entries);
    write_atomic(dir.join("targets.scp"), |w| w.write_all(scp.as_bytes()))?;
    Ok(WriteSummary {
        utterances: head.utterances,
        frames,
        bytes,
        bytes_per_frame: head.bytes_per_frame,
    })
}

/// `(line, utt, bin, offset)` for each line of a soft-target scp.
fn parse_scp(text: &str, path: &Path) -> Result<Vec<(usize, String, String, u64)>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (utt, spec) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| Error::parse(path, line_no, "expected `utt-id FILE:OFFSET`"))?;
        let (bin, off) = spec.trim().rsplit_once(':').ok_or_else(|| {
            Error::parse(path, line_no, format!("`{spec}`: expected FILE:OFFSET"))
        })?;
        let off: u64 = off
            .parse()
            .map_err(|_| Error::parse(path, line_no, format!("`{off}`: not a byte offset")))?;
        if bin.is_empty() || bin.contains('/') || bin.contains('\\') {
            return Err(Error::parse(
                path,
                line_no,
                format!("`{bin}`: record files are named relative to the store directory"),
            ));
        }
        out.push((line_no, utt.to_string(), bin.to_string(), off));
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// How an external teacher's matrices are to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitsKind {
    /// Pre-softmax outputs.
    Logits,
    /// Natural-log posteriors (nnet3-compute's default output with a log-softmax layer).
    LogPosteriors,
    /// Posteriors in [0, 1] (nnet3-compute --apply-exp=true).
    Posteriors,
}

/// One utterance's soft targets, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct UttTargets {
    pub frames: usize,
    /// Logits per frame (S for a dense store).
    pub k: usize,
    /// Senones of the teacher (for the spread of the dropped mass).
    pub num_senones: usize,
    /// `[frames, k]` senone ids, per frame by decreasing logit (sparse) or 0..S (dense).
    pub ids: Vec<u16>,
    /// `[frames, k]` logits relative to the frame's maximum, from f16.
    pub logits: Vec<f32>,
    /// `[frames]` log-sum-exp (same shift) of the dropped logits; -inf when none.
    pub rest_lse: Vec<f32>,
    /// `[frames]` log-sum-exp of the dropped logits halved (T = 2); empty for a store of
    /// format 1, which did not keep it.
    pub rest_lse_half: Vec<f32>,
}

impl UttTargets {
    /// Teacher probabilities at temperature `t` for frames `[start, start + len)`: the
    /// `[len, k]` probabilities of the kept ids, and the `[len]` probability mass of all the
    /// dropped senones together (see the module docs for the approximation at T other than 1
    /// and 2, where it is exact). Each row and its rest sum to 1. Panics when the span leaves
    /// the utterance or `t` is not positive.
    pub fn probs_at(&self, t: f32, start: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
        assert!(t > 0.0 && t.is_finite(), "temperature {t} must be positive");
        assert!(
            start.checked_add(len).is_some_and(|e| e <= self.frames),
            "frames {start}..{} outside an utterance of {} frames",
            start.saturating_add(len),
            self.frames
        );
        let k = self.k;
        let t = t as f64;
        let m = self.num_senones.saturating_sub(k);
        let ln_m = (m as f64).ln();
        let mut probs = Vec::with_capacity(len * k);
        let mut rest = Vec::with_capacity(len);
        let mut scaled = vec![0f64; k];
        for f in start..start + len {
            let row = &self.logits[f * k..(f + 1) * k];
            let r = self.rest_lse[f] as f64;
            // Log-sum-exp of the dropped senones at T: n equal logits at v (module docs).
            let b = if m > 0 && r > f64::NEG_INFINITY {
                let ln_n = match self.rest_lse_half.get(f) {
                    Some(&r2) => (2.0 * r2 as f64 - r).clamp(0.0, ln_m),
                    None => ln_m,
                };
                ln_n + (r - ln_n) / t
            } else {
                f64::NEG_INFINITY
            };
            let mut mx = b;
            for (s, &l) in scaled.iter_mut().zip(row) {
                *s = l as f64 / t;
                mx = mx.max(*s);
            }
            let z: f64 = scaled.iter().map(|s| (s - mx).exp()).sum::<f64>() + (b - mx).exp();
            probs.extend(scaled.iter().map(|s| ((s - mx).exp() / z) as f32));
            rest.push(((b - mx).exp() / z) as f32);
        }
        (probs, rest)
    }

    /// The teacher's most likely senone at `frame`.
    pub fn argmax(&self, frame: usize) -> u16 {
        let row = &self.logits[frame * self.k..(frame + 1) * self.k];
        let mut best = 0;
        for (j, &l) in row.iter().enumerate() {
            if l > row[best] {
                best = j;
            }
        }
        self.ids[frame * self.k + best]
    }
}

enum Bytes {
    Mapped(memmap2::Mmap),
    Empty,
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Empty => &[],
        }
    }
}

struct Entry {
    /// Set once the payload's checksum has been verified (reads take `&self`).
    verified: std::sync::atomic::AtomicBool,
    file: usize,
    /// Byte offset of the record's magic.
    record: usize,
    /// Byte offset of the payload.
    payload: usize,
    frames: usize,
    checksum: u32,
}

/// Read access to a soft-target directory; record files are memory-mapped and reads take
/// `&self`.
pub struct SoftTargetStore {
    dir: PathBuf,
    header: Header,
    files: Vec<(PathBuf, Bytes)>,
    utts: Vec<String>,
    index: HashMap<String, Entry>,
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl SoftTargetStore {
    /// Opens `dir`: reads `targets.json` and `targets.scp`, maps the record files and checks
    /// every record's header against the file's size, its scp line and the store's header.
    pub fn open(dir: &Path) -> Result<Self> {
        let json_path = dir.join("targets.json");
        let scp_path = dir.join("targets.scp");
        if !scp_path.exists() {
            return Err(Error::format(
                &scp_path,
                "missing: the soft-target store is incomplete (unfinished run, or shards not merged)",
            ));
        }
        let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
        let header: Header = serde_json::from_str(&text)
            .map_err(|e| Error::parse(&json_path, e.line(), e.to_string()))?;
        if !(OLDEST_READABLE..=FORMAT_VERSION).contains(&header.format_version) {
            return Err(Error::format(
                &json_path,
                format!(
                    "format_version {} (this build reads {OLDEST_READABLE} to {FORMAT_VERSION})",
                    header.format_version
                ),
            ));
        }
        header.meta.validate(&json_path.display().to_string())?;
        if header.bytes_per_frame != header.meta.bytes_per_frame_in(header.format_version) {
            return Err(Error::format(
                &json_path,
                format!(
                    "bytes_per_frame {} does not match k {} / num_senones {} / dense {}",
                    header.bytes_per_frame,
                    header.meta.k,
                    header.meta.num_senones,
                    header.meta.dense
                ),
            ));
        }
        let scp = std::fs::read_to_string(&scp_path).map_err(|e| Error::io(&scp_path, e))?;
        let lines = parse_scp(&scp, &scp_path)?;
        let mut files: Vec<(PathBuf, Bytes)> = Vec::new();
        let mut file_ix: HashMap<String, usize> = HashMap::new();
        let mut utts = Vec::with_capacity(lines.len());
        let mut index = HashMap::with_capacity(lines.len());
        let mut frames_total = 0u64;
        let k = header.meta.k;
        let bpf = header.bytes_per_frame;
        for (line_no, utt, bin, off) in lines {
            let fi = match file_ix.get(&bin) {
                Some(&i) => i,
                None => {
                    let p = dir.join(&bin);
                    let bytes = map(&p)?;
                    files.push((p, bytes));
                    file_ix.insert(bin.clone(), files.len() - 1);
                    files.len() - 1
                }
            };
            let (path, bytes) = &files[fi];
            let b = bytes.as_slice();
            let err = |msg: String| {
                Error::format(
                    path,
                    format!(
                        "utterance {utt} at byte {off} ({}:{line_no}): {msg}",
                        scp_path.display()
                    ),
                )
            };
            let off = usize::try_from(off).map_err(|_| err("offset too large".into()))?;
            if !matches!(off.checked_add(8), Some(e) if e <= b.len()) {
                return Err(err(format!(
                    "record header past the end of the file ({} bytes; truncated?)",
                    b.len()
                )));
            }
            if &b[off..off + 4] != MAGIC {
                return Err(err(
                    "no record starts here (bad magic; corrupt file or stale scp)".into(),
                ));
            }
            let l = read_u32(b, off + 4) as usize;
            if l == 0 || l > MAX_UTT_ID {
                return Err(err(format!("utterance id length {l} out of range")));
            }
            let payload = off + 8 + l + 16;
            if payload > b.len() {
                return Err(err(format!(
                    "record header past the end of the file ({} bytes; truncated?)",
                    b.len()
                )));
            }
            if &b[off + 8..off + 8 + l] != utt.as_bytes() {
                return Err(err(format!(
                    "the record holds utterance {}",
                    String::from_utf8_lossy(&b[off + 8..off + 8 + l])
                )));
            }
            let h = off + 8 + l;
            let frames = read_u32(b, h) as usize;
            let rk = read_u32(b, h + 4) as usize;
            let flags = read_u32(b, h + 8);
            let checksum = read_u32(b, h + 12);
            if rk != k || (flags & FLAG_DENSE != 0) != header.meta.dense || flags & !FLAG_DENSE != 0
            {
                return Err(err(format!(
                    "record has k {rk}, flags {flags}; the store has k {k}, dense {}",
                    header.meta.dense
                )));
            }
            let need = frames.checked_mul(bpf).and_then(|n| n.checked_add(payload));
            if !matches!(need, Some(e) if e <= b.len()) {
                return Err(err(format!(
                    "{frames} frames need {} bytes from byte {payload}, the file has {} (truncated?)",
                    frames.saturating_mul(bpf),
                    b.len()
                )));
            }
            if index.contains_key(&utt) {
                return Err(Error::parse(
                    &scp_path,
                    line_no,
                    format!("utterance {utt} listed twice"),
                ));
            }
            frames_total += frames as u64;
            utts.push(utt.clone());
            index.insert(
                utt,
                Entry {
                    verified: std::sync::atomic::AtomicBool::new(false),
                    file: fi,
                    record: off,
                    payload,
                    frames,
                    checksum,
                },
            );
        }
        if utts.len() != header.utterances || frames_total != header.frames {
            return Err(Error::Mismatch(format!(
                "{} lists {} utterances with {frames_total} frames, {} says {} with {}",
                scp_path.display(),
                utts.len(),
                json_path.display(),
                header.utterances,
                header.frames
            )));
        }
        Ok(SoftTargetStore {
            dir: dir.to_path_buf(),
            header,
            files,
            utts,
            index,
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the store holds and which teacher made it.
    pub fn meta(&self) -> &SoftTargetMeta {
        &self.header.meta
    }

    /// Utterance ids, sorted (C locale).
    pub fn utts(&self) -> &[String] {
        &self.utts
    }

    /// Frames of `utt`, or None when the store has no targets for it.
    pub fn num_frames(&self, utt: &str) -> Option<usize> {
        self.index.get(utt).map(|e| e.frames)
    }

    /// Total frames in the store.
    pub fn total_frames(&self) -> u64 {
        self.header.frames
    }

    /// Payload bytes per frame.
    pub fn bytes_per_frame(&self) -> usize {
        self.header.bytes_per_frame
    }

    /// Decodes `utt`'s record, checking its checksum, ids and values.
    pub fn get(&self, utt: &str) -> Result<UttTargets> {
        let frames = self.num_frames(utt).unwrap_or(0);
        self.get_frames(utt, 0, frames)
    }

    /// Decodes frames `[start, start + len)` of `utt`'s record (their ids and values checked;
    /// the record's checksum is verified on its first read in this process). A training batch
    /// needs a few frames of many utterances: decoding only those keeps the cost per frame
    /// used, not per frame stored.
    pub fn get_frames(&self, utt: &str, start: usize, len: usize) -> Result<UttTargets> {
        let e = self.index.get(utt).ok_or_else(|| {
            Error::utterance(utt, format!("no soft targets in {}", self.dir.display()))
        })?;
        let (path, bytes) = &self.files[e.file];
        let meta = &self.header.meta;
        let (s, k, all) = (meta.num_senones, meta.k, e.frames);
        let err = |msg: String| {
            Error::format(path, format!("utterance {utt} at byte {}: {msg}", e.record))
        };
        if start.checked_add(len).is_none_or(|end| end > all) {
            return Err(err(format!(
                "frames {start}+{len} requested of a record of {all} frames"
            )));
        }
        let payload = &bytes.as_slice()[e.payload..e.payload + all * self.header.bytes_per_frame];
        if !e.verified.load(std::sync::atomic::Ordering::Relaxed) {
            if fnv1a32(payload) != e.checksum {
                return Err(err("checksum mismatch (corrupt file)".into()));
            }
            e.verified.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        // Layout: ids u16 [all * k] (not for dense), logits f16 [all * k], rest f32 [all],
        // rest at T = 2 f32 [all] (format 2 on).
        let (frames, n_all, n) = (len, all * k, len * k);
        let u16_at = |i: usize| u16::from_le_bytes([payload[2 * i], payload[2 * i + 1]]);
        let (ids, logit_base) = if meta.dense {
            (
                ((0..frames).flat_map(|_| 0..s as u16)).collect::<Vec<u16>>(),
                0,
            )
        } else {
            let ids: Vec<u16> = (start * k..start * k + n).map(u16_at).collect();
            if let Some(i) = ids.iter().position(|&id| id as usize >= s) {
                return Err(err(format!(
                    "frame {}: senone id {} >= num_senones {s}",
                    start + i / k,
                    ids[i]
                )));
            }
            (ids, n_all)
        };
        let mut logits = Vec::with_capacity(n);
        for i in start * k..start * k + n {
            let v = f16::from_bits(u16_at(logit_base + i));
            if !v.is_finite() {
                return Err(err(format!("frame {}: logit {v} is not finite", i / k)));
            }
            logits.push(v.to_f32());
        }
        // The f32 column at `base` (rest log-sum-exp at T = 1, then at T = 2).
        let rest_column = |base: usize, what: &str| -> Result<Vec<f32>> {
            let mut r = Vec::with_capacity(frames);
            for f in start..start + frames {
                let at = base + 4 * f;
                let v = f32::from_le_bytes(payload[at..at + 4].try_into().expect("4 bytes"));
                if v.is_nan() || v == f32::INFINITY {
                    return Err(err(format!("frame {f}: {what} {v}")));
                }
                r.push(v);
            }
            Ok(r)
        };
        let (rest_lse, rest_lse_half) = if meta.dense {
            (vec![f32::NEG_INFINITY; frames], Vec::new())
        } else if self.header.format_version == 1 {
            (rest_column(4 * n_all, "rest log-sum-exp")?, Vec::new())
        } else {
            (
                rest_column(4 * n_all, "rest log-sum-exp")?,
                rest_column(4 * n_all + 4 * all, "rest log-sum-exp at T = 2")?,
            )
        };
        Ok(UttTargets {
            frames,
            k,
            num_senones: s,
            ids,
            logits,
            rest_lse,
            rest_lse_half,
        })
    }

    /// Checks that the targets were made over `num_senones` senones of the table `senones_id`
    /// at `frame_shift` seconds per frame; the error names both sides.
    pub fn check_compatible(
        &self,
        num_senones: usize,
        senones_id: &str,
        frame_shift: f64,
    ) -> Result<()> {
        let m = &self.header.meta;
        let d = self.dir.display();
        if m.num_senones != num_senones || m.senones_id != senones_id {
            return Err(Error::Mismatch(format!(
                "soft targets {d} are over {} senones of table '{}', the model's over {num_senones} of table '{senones_id}'",
                m.num_senones, m.senones_id
            )));
        }
        if (m.frame_shift - frame_shift).abs() > 1e-9 {
            return Err(Error::Mismatch(format!(
                "soft targets {d} have a frame shift of {} s, the features {frame_shift} s",
                m.frame_shift
            )));
        }
        Ok(())
    }
}

fn map(path: &Path) -> Result<Bytes> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len == 0 {
        return Ok(Bytes::Empty);
    }
    // Safety: the writers only rename complete files into place; a store's files are not
    // modified while it is open.
    let m = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    Ok(Bytes::Mapped(m))
}

// ---------------------------------------------------------------------------------------------
// External teachers
// ---------------------------------------------------------------------------------------------

/// Imports an external teacher's outputs: a Kaldi archive of `[frames, S]` matrices (as
/// `nnet3-compute` writes, binary or text) into a new store in `out_dir`, keeping the top `k`
/// (`k` replaces `meta.k`; it must equal S for a dense store). Posteriors are turned into log
/// posteriors (0 becomes -inf, probability 0). An utterance with values that do not fit
/// `input_is` (NaN, negative posteriors, log posteriors above 0) is skipped with a warning; a
/// matrix with another column count than `meta.num_senones`, or a corrupt archive, is an error.
/// Returns how many utterances were imported out of how many were read.
pub fn import_kaldi_ark(
    ark: &Path,
    out_dir: &Path,
    mut meta: SoftTargetMeta,
    input_is: LogitsKind,
    k: usize,
) -> Result<BatchSummary> {
    meta.k = k;
    let s = meta.num_senones;
    let mut writer = SoftTargetWriter::create(out_dir, meta, None)?;
    let mut total = 0;
    let mut done = 0;
    let mut buf: Vec<f32> = Vec::new();
    // Probabilities a little above 1 (or log probabilities a little above 0) are rounding.
    const SLACK: f32 = 1e-3;
    for entry in ArkReader::open(ark)? {
        let (utt, m) = entry?;
        total += 1;
        if m.cols != s {
            return Err(Error::Mismatch(format!(
                "{}: utterance {utt} has {} columns, the senone table {} senones",
                ark.display(),
                m.cols,
                s
            )));
        }
        let bad = match input_is {
            LogitsKind::Logits => m.data.iter().position(|x| !x.is_finite()),
            LogitsKind::LogPosteriors => m.data.iter().position(|&x| x.is_nan() || x > SLACK),
            LogitsKind::Posteriors => m
                .data
                .iter()
                .position(|&x| !(0.0..=1.0 + SLACK).contains(&x)),
        };
        if let Some(i) = bad {
            eprintln!(
                "amdistill: warning: {}: utterance {utt}, frame {}, senone {}: value {} is not {}; skipped",
                ark.display(),
                i / s,
                i % s,
                m.data[i],
                match input_is {
                    LogitsKind::Logits => "a finite logit",
                    LogitsKind::LogPosteriors => "a log posterior (<= 0)",
                    LogitsKind::Posteriors => "a posterior in [0, 1]",
                }
            );
            continue;
        }
        let logits: &[f32] = if input_is == LogitsKind::Posteriors {
            buf.clear();
            buf.extend(m.data.iter().map(|&p| p.ln()));
            &buf
        } else {
            &m.data
        };
        match writer.add(&utt, logits, m.rows) {
            Ok(()) => done += 1,
            Err(e) => eprintln!("amdistill: warning: {}: {e}; skipped", ark.display()),
        }
    }
    writer.finish()?;
    Ok(BatchSummary { done, total })
}
