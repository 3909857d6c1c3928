//! `amdistill compute-fbank DATA_DIR FEAT_DIR`: Kaldi-compatible log-mel filterbanks for every
//! utterance of a data directory, written as a feature store.
//!
//! FEAT_DIR becomes a data directory of its own: `feats.scp` (Kaldi scp into
//! `data/feats.JOB.ark`, readable by Kaldi), `utt2num_frames`, `frame_shift`, `fbank.conf`
//! (the complete configuration, Kaldi conf syntax), `fbank.json`, and the data directory's
//! tables restricted to the utterances that succeeded. Utterances run in parallel (rayon);
//! a bad utterance is reported by name and the rest go on; the run ends with "done N of M" and
//! exits non-zero when any failed. Every file is written under a temporary name and renamed
//! when complete, and `feats.scp` is written last, so a killed run never leaves a
//! `feats.scp` that points at missing or partial data.
//!
//! With `--shard I/N` (I in 1..=N, like Kaldi's JOB) only every N-th utterance starting at the
//! I-th is computed, into `data/feats.I-of-N.ark` and `splitN/feats.I.scp`, with the shard's
//! configuration in `splitN/fbank.I.json`. The shard that completes the set merges them into
//! `feats.scp`, and only when every shard of that N was computed with the same options from the
//! same data directory, so stale shards of an earlier run are never mixed in.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rayon::prelude::*;

use amdistill::atomic::{remove_stale_temporaries, write_atomic};
use amdistill::audio::{read_audio, read_audio_segment, AudioOptions, ChannelSelect};
use amdistill::corpus::table::{read_map, read_table, write_table};
use amdistill::corpus::{DataDir, UttAudio};
use amdistill::features::fbank::{num_frames, utterance_seed};
use amdistill::features::kaldi_io::ArkWriter;
use amdistill::features::{Fbank, Matrix};
use amdistill::progress::{bar, BatchSummary};
use amdistill::Error;

use super::fbank_args::FbankArgs;

/// Compute log-mel filterbank features for a data directory.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Kaldi data directory (wav.scp, utt2spk, optional segments and text).
    pub data_dir: PathBuf,
    /// Output feature directory.
    pub feat_dir: PathBuf,
    #[command(flatten)]
    pub fbank: FbankArgs,
    /// Process only shard I of N (1-based), e.g. --shard 3/8.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Resample audio whose rate differs from --sample-frequency (false: refuse such files).
    #[arg(long, default_value = "true", value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true", action = clap::ArgAction::Set)]
    pub resample: bool,
    /// Channel to use from multi-channel audio, 0-based; -1 mixes all channels down (Kaldi's --channel).
    #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
    pub channel: i64,
}

/// Parses `I/N` (1 <= I <= N).
fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let (i, n) = s.split_once('/').context("--shard expects I/N, e.g. 2/8")?;
    let (i, n): (usize, usize) = (i.trim().parse()?, n.trim().parse()?);
    if n == 0 || i == 0 || i > n {
        bail!("--shard {s}: need 1 <= I <= N");
    }
    Ok((i, n))
}

/// Features (or the reason for failing) of each utterance of a batch, in order.
type BatchResults = Vec<Result<Matrix, Error>>;

/// Utterances computed per parallel batch: bounds memory to a batch of feature matrices.
const BATCH_UTTS: usize = 256;

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.fbank.to_options()?;
    let fbank = Fbank::new(&opts)?;
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let data = DataDir::read(&args.data_dir)
        .with_context(|| format!("reading data directory {}", args.data_dir.display()))?;
    let all = data.utt_audio()?;
    let (job, jobs) = shard.unwrap_or((1, 1));
    let mine: Vec<&UttAudio> = all.iter().skip(job - 1).step_by(jobs).collect();

    let feat_dir = &args.feat_dir;
    let ark_dir = feat_dir.join("data");
    let split_dir = feat_dir.join(format!("split{jobs}"));
    std::fs::create_dir_all(&ark_dir).with_context(|| format!("creating {}", ark_dir.display()))?;
    let stale = remove_stale_temporaries(&ark_dir)? + remove_stale_temporaries(feat_dir)?;
    if stale > 0 {
        eprintln!(
            "amdistill: removed {stale} partial file(s) left by a killed run in {}",
            feat_dir.display()
        );
    }
    // Absolute ark paths in feats.scp (Kaldi's convention): the store reads from anywhere.
    let ark_dir = ark_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", ark_dir.display()))?;
    // The scp is the completion marker of a shard: remove the old one before the ark it
    // points into is replaced.
    let (scp_path, frames_path) = if shard.is_some() {
        std::fs::create_dir_all(&split_dir)?;
        (
            split_dir.join(format!("feats.{job}.scp")),
            split_dir.join(format!("utt2num_frames.{job}")),
        )
    } else {
        (feat_dir.join("feats.scp"), feat_dir.join("utt2num_frames"))
    };
    remove_if_exists(&scp_path)?;
    remove_if_exists(&feat_dir.join("feats.scp"))?;

    let audio_opts = AudioOptions {
        sample_rate: opts.frame.sample_frequency as u32,
        resample: args.resample,
        channel: if args.channel < 0 {
            ChannelSelect::Downmix
        } else {
            ChannelSelect::Channel(args.channel as usize)
        },
    };
    let ark_path = if jobs == 1 {
        ark_dir.join("feats.1.ark")
    } else {
        ark_dir.join(format!("feats.{job}-of-{jobs}.ark"))
    };
    let identity = shard_identity(&args.data_dir, &opts)?;
    let identity_path = split_dir.join(format!("fbank.{job}.json"));
    if shard.is_some() {
        remove_if_exists(&identity_path)?;
    }
    let mut ark = ArkWriter::create(&ark_path)?;
    let mut scp: Vec<(String, String)> = Vec::with_capacity(mine.len());
    let mut frames: Vec<(String, String)> = Vec::with_capacity(mine.len());
    let progress = bar(mine.len() as u64, "compute-fbank");
    let compute = |batch: &[&UttAudio]| -> BatchResults {
        batch
            .par_iter()
            .map(|u| {
                let r = features_of(u, &fbank, &audio_opts);
                progress.inc(1);
                r
            })
            .collect()
    };
    // Writes one computed batch in order; failures are reported and skipped.
    let mut write = |batch: &[&UttAudio], results: BatchResults| -> anyhow::Result<()> {
        for (u, r) in batch.iter().zip(results) {
            match r {
                Ok(m) => {
                    let rx = ark.write_matrix(&u.utt, &m)?;
                    scp.push((u.utt.clone(), rx));
                    frames.push((u.utt.clone(), m.rows.to_string()));
                }
                Err(e) => progress.suspend(|| eprintln!("amdistill: warning: {e}")),
            }
        }
        Ok(())
    };
    // Batch k is written while batch k+1 is computed, so the cores never wait for the disk.
    let mut pending: Option<(&[&UttAudio], BatchResults)> = None;
    for batch in mine.chunks(BATCH_UTTS) {
        let (written, results) = rayon::join(
            || pending.take().map_or(Ok(()), |(b, r)| write(b, r)),
            || compute(batch),
        );
        written?;
        pending = Some((batch, results));
    }
    if let Some((b, r)) = pending.take() {
        write(b, r)?;
    }
    progress.finish_and_clear();
    let summary = BatchSummary {
        done: scp.len(),
        total: mine.len(),
    };
    if scp.is_empty() {
        bail!(
            "{}: no utterance produced features ({summary})",
            args.data_dir.display()
        );
    }
    ark.commit()?;
    // Order matters: everything else first, feats.scp (what later stages trust) last.
    write_table(&frames_path, frames.iter().map(|(k, v)| (k, v)))?;
    if shard.is_none() {
        let done: BTreeSet<String> = scp.iter().map(|(k, _)| k.clone()).collect();
        finish_feat_dir(&args.data_dir, feat_dir, &data, &opts, &done)?;
        write_table(&scp_path, scp.iter().map(|(k, v)| (k, v)))?;
    } else {
        write_atomic(&identity_path, |w| w.write_all(identity.as_bytes()))?;
        write_table(&scp_path, scp.iter().map(|(k, v)| (k, v)))?;
        if let Some((all_scp, all_frames)) = complete_shards(feat_dir, jobs, &identity)? {
            write_table(feat_dir.join("utt2num_frames"), &all_frames)?;
            let done: BTreeSet<String> = all_scp.keys().cloned().collect();
            finish_feat_dir(&args.data_dir, feat_dir, &data, &opts, &done)?;
            write_table(feat_dir.join("feats.scp"), &all_scp)?;
            eprintln!(
                "amdistill: all {jobs} shards complete: {} utterances in {}",
                all_scp.len(),
                feat_dir.join("feats.scp").display()
            );
        }
    }
    eprintln!("amdistill compute-fbank: {summary}");
    if summary.failed() > 0 {
        bail!(
            "{} of {} utterances failed (see the warnings above)",
            summary.failed(),
            summary.total
        );
    }
    Ok(())
}

/// Reads one utterance's audio and computes its features; errors name the utterance.
fn features_of(u: &UttAudio, fbank: &Fbank, audio_opts: &AudioOptions) -> Result<Matrix, Error> {
    let wave = match u.segment {
        Some((start, end)) => read_audio_segment(&u.path, start, end, audio_opts),
        None => read_audio(&u.path, audio_opts),
    }
    .map_err(|e| Error::utterance(&u.utt, e))?;
    let opts = fbank.options();
    if num_frames(wave.samples.len(), opts) == 0 {
        return Err(Error::utterance(
            &u.utt,
            format!(
                "{} samples ({:.3} s) is shorter than one frame ({} samples with snip-edges={})",
                wave.samples.len(),
                wave.samples.len() as f64 / wave.sample_rate as f64,
                if opts.frame.snip_edges {
                    opts.window_size()
                } else {
                    opts.window_shift() / 2 + 1
                },
                opts.frame.snip_edges
            ),
        ));
    }
    let feats = fbank.compute(
        &wave.samples,
        utterance_seed(opts.frame.dither_seed, &u.utt),
    );
    if let Some(bad) = feats.data.iter().position(|v| !v.is_finite()) {
        return Err(Error::utterance(
            &u.utt,
            format!("non-finite feature at frame {}", bad / feats.cols),
        ));
    }
    Ok(feats)
}

/// What must agree between the shards of one run: the options and the data directory.
fn shard_identity(
    data_dir: &Path,
    opts: &amdistill::features::FbankOptions,
) -> anyhow::Result<String> {
    let data_dir = data_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", data_dir.display()))?;
    Ok(serde_json::to_string_pretty(
        &serde_json::json!({ "data_dir": data_dir, "fbank": opts }),
    )?)
}

/// A table read into memory: key -> value.
type TableMap = std::collections::BTreeMap<String, String>;

/// When every shard's scp exists and every shard has this run's identity, returns all the
/// shards' feats.scp and utt2num_frames entries (sorted), else None (with a warning for stale
/// shards). Two shards finishing together both write the same merged files; the renames make
/// either result whole.
fn complete_shards(
    feat_dir: &Path,
    jobs: usize,
    identity: &str,
) -> anyhow::Result<Option<(TableMap, TableMap)>> {
    let split = feat_dir.join(format!("split{jobs}"));
    let mut scp = TableMap::new();
    let mut frames = TableMap::new();
    for j in 1..=jobs {
        let p = split.join(format!("feats.{j}.scp"));
        if !p.exists() {
            return Ok(None);
        }
        let theirs =
            std::fs::read_to_string(split.join(format!("fbank.{j}.json"))).unwrap_or_default();
        if theirs != identity {
            eprintln!(
                "amdistill: warning: shard {j}/{jobs} in {} was computed with other options or another data \
                 directory; rerun it with these options before feats.scp can be written",
                split.display()
            );
            return Ok(None);
        }
        scp.extend(read_map(&p)?);
        frames.extend(read_map(split.join(format!("utt2num_frames.{j}")))?);
    }
    Ok(Some((scp, frames)))
}

/// Writes the configuration files and the data-directory tables restricted to the
/// utterances `done` (those that feats.scp will list).
fn finish_feat_dir(
    data_dir: &Path,
    feat_dir: &Path,
    data: &DataDir,
    opts: &amdistill::features::FbankOptions,
    done: &BTreeSet<String>,
) -> anyhow::Result<()> {
    let frame_shift = format!("{}\n", opts.frame_shift_seconds());
    write_atomic(feat_dir.join("frame_shift"), |w| {
        w.write_all(frame_shift.as_bytes())
    })?;
    let conf = opts.to_conf_string();
    write_atomic(feat_dir.join("fbank.conf"), |w| {
        w.write_all(conf.as_bytes())
    })?;
    let json = serde_json::to_string_pretty(opts)?;
    write_atomic(feat_dir.join("fbank.json"), |w| {
        w.write_all(json.as_bytes())
    })?;
    if data_dir.canonicalize().ok() != feat_dir.canonicalize().ok() {
        let mut kept = data.clone();
        kept.retain_utts(done);
        kept.write(feat_dir)?;
        // Per-utterance extras that later stages read (phone times), filtered the same way.
        for extra in ["phones.ctm", "utt2dur"] {
            let src = data_dir.join(extra);
            if src.exists() {
                let entries = read_table(&src)?;
                let lines: Vec<(String, String)> = entries
                    .into_iter()
                    .filter(|e| done.contains(&e.key))
                    .map(|e| (e.key, e.value))
                    .collect();
                write_table(feat_dir.join(extra), lines)?;
            }
        }
    }
    Ok(())
}

fn remove_if_exists(p: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", p.display()))
        }
        _ => Ok(()),
    }
}

use std::io::Write as _;
