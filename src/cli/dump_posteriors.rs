//! `amdistill dump-posteriors TEACHER FEAT_DIR OUT_DIR`: the teacher's soft targets, stored
//! compactly (top-k logits per frame plus the log-sum-exp of the rest), so students can be
//! trained later at any temperature without running the teacher again.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context as _};

use amdistill::features::store::FeatureStore;
use amdistill::labels::soft_targets::{
    import_kaldi_ark, merge_shards, LogitsKind, SoftTargetMeta, SoftTargetStore, SoftTargetWriter,
};
use amdistill::labels::tree::{read_senones, senones_identity};
use amdistill::progress::{bar, BatchSummary};
use amdistill::train::teacher::Ensemble;
use amdistill::train::trainer::device;

/// Dump a teacher's soft targets over a feature store (or import external ones).
///
/// TEACHER is a trained model directory, or several joined by commas (an ensemble: the
/// members' posteriors are averaged). Per frame, the --top-k highest logits are kept as f16
/// with their senone ids as u16, plus the log-sum-exp of the others at T = 1 and T = 2 as f32
/// (48 bytes per frame at k = 10); --dense keeps all of them. OUT_DIR/targets.json records
/// the teacher, k, the senone table's identity and the frame shift; targets.scp, written
/// last, marks the store complete. An utterance that fails is reported by name and left out;
/// the run ends with "done N of M".
///
/// With --import-ark, TEACHER is ignored: a Kaldi binary archive of matrices [frames, senones]
/// (as nnet3-compute writes) is imported instead; --senones names the table its columns index.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Trained teacher directory, or several separated by commas (an ensemble).
    #[arg(value_name = "TEACHER[,TEACHER..]")]
    pub teacher: String,
    /// Feature store to run the teacher on (compute-fbank output).
    #[arg(value_name = "FEAT_DIR")]
    pub feat_dir: PathBuf,
    /// Output soft-target store.
    #[arg(value_name = "OUT_DIR")]
    pub out_dir: PathBuf,
    /// Logits kept per frame.
    #[arg(long, default_value_t = 10, value_name = "K")]
    pub top_k: usize,
    /// Keep every logit (f16), not only the top k.
    #[arg(long)]
    pub dense: bool,
    /// Process only shard I of N (1-based), every N-th utterance from the I-th; the shard
    /// that completes the set merges them.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Import this Kaldi binary ark of per-frame scores instead of running TEACHER.
    #[arg(long, value_name = "ARK")]
    pub import_ark: Option<PathBuf>,
    /// What the imported matrices hold.
    #[arg(long, value_enum, default_value = "log-posteriors")]
    pub import_kind: ImportKind,
    /// Senone table of the imported scores (senones.txt).
    #[arg(long, value_name = "FILE")]
    pub senones: Option<PathBuf>,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum ImportKind {
    Logits,
    LogPosteriors,
    Posteriors,
}

fn parse_shard(s: &str) -> anyhow::Result<(usize, usize)> {
    let (i, n) = s.split_once('/').context("--shard expects I/N, e.g. 2/8")?;
    let (i, n): (usize, usize) = (i.parse()?, n.parse()?);
    if i == 0 || i > n {
        bail!("--shard {s}: need 1 <= I <= N");
    }
    Ok((i, n))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let store = FeatureStore::open(&args.feat_dir)?;
    if let Some(ark) = &args.import_ark {
        let senones = args
            .senones
            .as_ref()
            .context("--import-ark needs --senones (the table the columns index)")?;
        let meta = SoftTargetMeta {
            k: args.top_k,
            num_senones: read_senones(senones)?.len(),
            dense: args.dense,
            frame_shift: store.frame_shift(),
            teacher: serde_json::json!({ "imported_from": ark.display().to_string() }),
            senones_id: senones_identity(senones)?,
        };
        let kind = match args.import_kind {
            ImportKind::Logits => LogitsKind::Logits,
            ImportKind::LogPosteriors => LogitsKind::LogPosteriors,
            ImportKind::Posteriors => LogitsKind::Posteriors,
        };
        let k = if args.dense {
            meta.num_senones
        } else {
            args.top_k
        };
        let summary = import_kaldi_ark(ark, &args.out_dir, meta, kind, k)?;
        eprintln!("{summary}");
        if summary.failed() > 0 {
            bail!("{} utterances could not be imported", summary.failed());
        }
        return Ok(());
    }

    let dev = device()?;
    let dirs: Vec<PathBuf> = args.teacher.split(',').map(PathBuf::from).collect();
    let teacher = Ensemble::load(&dirs, &dev)?;
    let normaliser = teacher.normaliser(&store)?;
    let num_senones = teacher.num_senones();
    let k = if args.dense {
        num_senones
    } else {
        args.top_k.min(num_senones)
    };
    let meta = SoftTargetMeta {
        k,
        num_senones,
        dense: args.dense,
        frame_shift: store.frame_shift(),
        teacher: serde_json::json!({
            "models": dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "description": teacher.describe(),
        }),
        senones_id: teacher.senones_id().to_string(),
    };
    let shard = args.shard.as_deref().map(parse_shard).transpose()?;
    let utts: Vec<&String> = store
        .utts()
        .iter()
        .enumerate()
        .filter(|(i, _)| shard.map_or(true, |(s, n)| i % n == s - 1))
        .map(|(_, u)| u)
        .collect();
    let mut writer = SoftTargetWriter::create(&args.out_dir, meta, shard)?;
    let pb = bar(utts.len() as u64, "dump-posteriors");
    let t0 = Instant::now();
    let mut done = 0;
    let mut frames = 0usize;
    for utt in &utts {
        let result = (|| -> anyhow::Result<usize> {
            let mut feats = store.get(utt)?;
            normaliser.apply(utt, &mut feats)?;
            if feats.rows == 0 {
                bail!("no frames");
            }
            let logits = teacher.utterance_logits(&feats, &dev)?;
            let v: Vec<f32> = logits.flatten_all()?.to_vec1()?;
            writer.add(utt, &v, feats.rows)?;
            Ok(feats.rows)
        })();
        match result {
            Ok(n) => {
                done += 1;
                frames += n;
            }
            Err(e) => pb.suspend(|| eprintln!("utterance {utt}: {e:#}")),
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    let summary = writer.finish()?;
    let secs = t0.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} frames, {} bytes per frame, {:.1} s ({:.0} frames/s)",
        args.out_dir.display(),
        frames,
        summary.bytes_per_frame,
        secs,
        frames as f64 / secs.max(1e-9)
    );
    if let Some((_, n)) = shard {
        let split = args.out_dir.join(format!("split{n}"));
        let all_done = (1..=n).all(|i| split.join(format!("targets.{i}.scp")).exists());
        if all_done {
            let merged = merge_shards(&args.out_dir, n)?;
            eprintln!("merged {n} shards: {} utterances", merged.utterances);
            SoftTargetStore::open(&args.out_dir)?;
        }
    }
    let s = BatchSummary {
        done,
        total: utts.len(),
    };
    eprintln!("{s}");
    if s.failed() > 0 {
        bail!("{} of {} utterances failed", s.failed(), s.total);
    }
    Ok(())
}
