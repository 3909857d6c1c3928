//! `amdistill compute-cmvn FEAT_DIR`: CMVN statistics per speaker, utterance or corpus, as
//! Kaldi's `compute-cmvn-stats` writes them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use rayon::prelude::*;

use amdistill::corpus::table::read_map;
use amdistill::features::cmvn::{write_cmvn_table, CmvnStats};
use amdistill::features::store::FeatureStore;
use amdistill::progress::{bar, BatchSummary};

/// Which frames are pooled into one set of statistics.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Per {
    /// One set per utterance (key: utterance id).
    Utt,
    /// One set per speaker of utt2spk (key: speaker id).
    Spk,
    /// One set over every utterance (key: `global`).
    Global,
}

/// Accumulate CMVN statistics over a feature directory.
///
/// Writes FEAT_DIR/cmvn.ark (binary 2 x (dim+1) double matrices: sums and frame count, sums
/// of squares) and FEAT_DIR/cmvn.scp, readable by Kaldi's apply-cmvn.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Feature directory (feats.scp, utt2num_frames, frame_shift ...).
    #[arg(value_name = "FEAT_DIR")]
    pub feat_dir: PathBuf,
    /// Pool statistics per speaker, per utterance, or over the whole corpus.
    #[arg(long, value_enum, default_value = "spk")]
    pub per: Per,
    /// utt2spk for --per spk [default: FEAT_DIR/utt2spk; without it, per utterance].
    #[arg(long, value_name = "FILE")]
    pub utt2spk: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = FeatureStore::open(&args.feat_dir)?;
    let utts = store.utts();
    let dim = store.dim();

    // Group utterances: key -> its utterances, in feats.scp order.
    let mut groups: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut missing = 0usize;
    match args.per {
        Per::Spk => {
            let path = args
                .utt2spk
                .clone()
                .unwrap_or_else(|| args.feat_dir.join("utt2spk"));
            if !path.exists() && args.utt2spk.is_none() {
                eprintln!(
                    "amdistill: note: {} not found; computing per-utterance statistics",
                    path.display()
                );
                for u in utts {
                    groups.insert(u.clone(), vec![u.as_str()]);
                }
            } else {
                let utt2spk = read_map(&path)?;
                for u in utts {
                    match utt2spk.get(u) {
                        Some(spk) => groups.entry(spk.clone()).or_default().push(u.as_str()),
                        None => missing += 1,
                    }
                }
                if missing > 0 {
                    eprintln!(
                        "amdistill: warning: {missing} utterances of feats.scp have no speaker in {}; left out",
                        path.display()
                    );
                }
                let absent = utt2spk
                    .keys()
                    .filter(|u| store.num_frames(u).is_none())
                    .count();
                if absent > 0 {
                    eprintln!(
                        "amdistill: warning: {absent} utterances of {} have no features",
                        path.display()
                    );
                }
            }
        }
        Per::Utt => {
            for u in utts {
                groups.insert(u.clone(), vec![u.as_str()]);
            }
        }
        Per::Global => {
            groups.insert(
                "global".to_string(),
                utts.iter().map(String::as_str).collect(),
            );
        }
    }

    let total: usize = groups.values().map(Vec::len).sum::<usize>() + missing;
    let pb = bar(total as u64, "compute-cmvn");
    // Groups in parallel; inside a group, frames in order, so the sums are Kaldi's.
    let results: Vec<(String, CmvnStats, usize)> = groups
        .into_par_iter()
        .map(|(key, members)| {
            let mut stats = CmvnStats::new(dim);
            let mut ok = 0usize;
            for u in members {
                match store.get(u).and_then(|m| stats.accumulate(&m)) {
                    Ok(()) => ok += 1,
                    Err(e) => pb.suspend(|| eprintln!("amdistill: warning: {e}")),
                }
                pb.inc(1);
            }
            (key, stats, ok)
        })
        .collect();
    pb.finish_and_clear();

    let done: usize = results.iter().map(|r| r.2).sum();
    let written: Vec<(&str, &CmvnStats)> = results
        .iter()
        .filter(|r| r.2 > 0)
        .map(|(k, s, _)| (k.as_str(), s))
        .collect();
    if written.is_empty() && total > 0 {
        bail!("no statistics: every utterance failed");
    }
    // Kaldi tools read the archive from anywhere, so the script names it by absolute path.
    let dir = std::fs::canonicalize(&args.feat_dir)
        .with_context(|| args.feat_dir.display().to_string())?;
    write_cmvn_table(
        &dir.join("cmvn.ark"),
        &dir.join("cmvn.scp"),
        written.iter().copied(),
    )?;
    let summary = BatchSummary { done, total };
    eprintln!("{summary}");
    if summary.failed() > 0 {
        bail!(
            "{} of {} utterances failed",
            summary.failed(),
            summary.total
        );
    }
    Ok(())
}
