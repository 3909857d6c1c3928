//! `amdistill build-tree FEAT_DIR OUT_DIR`: a phonetic decision tree whose leaves are the
//! senones, from a feature directory and its phone times (DOMAIN.md §3).
//!
//! Reads FEAT_DIR (feats.scp, utt2num_frames, fbank.json, utt2spk) and the CTM
//! (FEAT_DIR/phones.ctm by default); writes OUT_DIR/phones.txt, phone_classes.txt,
//! senones.txt, tree_report.txt and, last, OUT_DIR/tree, each atomically, so a directory with
//! a `tree` file is complete.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};

use amdistill::atomic::write_atomic;
use amdistill::corpus::table::read_map;
use amdistill::features::store::FeatureStore;
use amdistill::labels::frame_labels::{
    read_phone_times, FrameLabeler, DEFAULT_FRAME_TOLERANCE, NUM_STATES,
};
use amdistill::labels::senone_pipeline::{
    accumulate_tree_stats, build_senone_tree, load_phone_set, skipped_lines, store_geometry,
    CmvnGrouping, Normaliser,
};
use amdistill::labels::tree::TreeConfig;
use amdistill::progress::{bar, BatchSummary};

/// Per what features are normalised before their statistics go into the tree.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmvnPer {
    /// Each utterance by its own mean.
    Utt,
    /// Each speaker by the mean of all its utterances (utt2spk; per utterance without it).
    Spk,
    /// Raw features.
    None,
}

/// Grow a phonetic decision tree (the senones) from features and phone times.
///
/// Frame labels come from the CTM with the features' own framing (fbank.json): each phone's
/// frames are split into 3 states, with the phones before and after as context. Utterances
/// whose label and feature frame counts differ by more than --tolerance are listed and
/// skipped. Questions: the phone set's phonetic classes plus a clustering of the phones' own
/// statistics. Writes OUT_DIR/tree (text), senones.txt, phones.txt, phone_classes.txt and
/// tree_report.txt (also printed): leaves, total log-likelihood gain, occupancy histogram.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Feature directory from compute-fbank (feats.scp, utt2num_frames, fbank.json ...).
    #[arg(value_name = "FEAT_DIR")]
    pub feat_dir: PathBuf,
    /// Output directory for the tree.
    #[arg(value_name = "OUT_DIR")]
    pub out_dir: PathBuf,
    /// Phone set: arpabet, timit61, timit48, timit39, or a phones.txt file or directory
    /// (with phone_classes.txt).
    #[arg(long, default_value = "arpabet", value_name = "SET|PATH")]
    pub phones: String,
    /// Target number of leaves (senones); at least 3 per phone of the set.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub num_leaves: usize,
    /// Fewest frames a split may leave in a leaf.
    #[arg(long, default_value_t = 100.0, value_name = "FRAMES")]
    pub min_occupancy: f64,
    /// Stop splitting when the best split gains less log-likelihood than this (nats).
    #[arg(
        long,
        default_value_t = 0.0,
        value_name = "NATS",
        allow_negative_numbers = true
    )]
    pub min_gain: f64,
    /// Phone times, `utt-id channel start duration phone` [default: FEAT_DIR/phones.ctm].
    #[arg(long, value_name = "FILE")]
    pub ctm: Option<PathBuf>,
    /// Normalise features per speaker, per utterance or not at all before accumulating, so
    /// that speaker and voice differences do not dominate the splits.
    #[arg(long, value_enum, default_value = "spk")]
    pub cmvn: CmvnPer,
    /// Normalise the variance too, not only the mean.
    #[arg(long)]
    pub norm_vars: bool,
    /// Speaker of each utterance for --cmvn spk [default: FEAT_DIR/utt2spk].
    #[arg(long, value_name = "FILE")]
    pub utt2spk: Option<PathBuf>,
    /// Largest allowed difference, in frames, between the frames the phone times cover and
    /// the features' frame count.
    #[arg(long, default_value_t = DEFAULT_FRAME_TOLERANCE, value_name = "FRAMES")]
    pub tolerance: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t_start = Instant::now();
    let set = load_phone_set(&args.phones)?;
    let cfg = TreeConfig {
        num_leaves: args.num_leaves,
        min_occupancy: args.min_occupancy,
        min_gain: args.min_gain,
    };
    let roots = set.len() * NUM_STATES as usize;
    if cfg.num_leaves < roots {
        bail!(
            "--num-leaves {} is below the {roots} (phone, state) roots of phone set {} ({} phones x {NUM_STATES} states)",
            cfg.num_leaves,
            set.name(),
            set.len()
        );
    }
    let ctm_path = args
        .ctm
        .clone()
        .unwrap_or_else(|| args.feat_dir.join("phones.ctm"));
    let (store, geometry, phone_times) =
        open_store_and_phone_times(&args.feat_dir, &ctm_path, &set)?;
    let labeler = FrameLabeler::new(&set, geometry).with_tolerance(args.tolerance);

    let grouping = match args.cmvn {
        CmvnPer::None => CmvnGrouping::None,
        CmvnPer::Utt => CmvnGrouping::PerUtterance,
        CmvnPer::Spk => {
            let path = args
                .utt2spk
                .clone()
                .unwrap_or_else(|| args.feat_dir.join("utt2spk"));
            if args.utt2spk.is_none() && !path.exists() {
                eprintln!(
                    "amdistill: note: {} not found; normalising per utterance",
                    path.display()
                );
                CmvnGrouping::PerUtterance
            } else {
                CmvnGrouping::PerSpeaker(read_map(&path)?)
            }
        }
    };
    let norm = Normaliser::new(&store, &grouping, args.norm_vars);

    let pb = bar(store.utts().len() as u64, "build-tree: accumulate");
    let acc = accumulate_tree_stats(&store, &phone_times, &labeler, &norm, &|| pb.inc(1))?;
    pb.finish_and_clear();
    let skipped = skipped_lines(&acc.frame_counts, &acc.failures);
    for line in &skipped {
        eprintln!("amdistill: warning: {line}");
    }
    let summary = BatchSummary {
        done: acc.done,
        total: acc.total,
    };
    if acc.stats.is_empty() {
        eprintln!("{summary}");
        bail!("no utterance could be used; nothing to build a tree from");
    }
    let t_acc = t_start.elapsed();

    let tree = build_senone_tree(&acc.stats, &set, &cfg)?;
    let t_build = t_start.elapsed() - t_acc;
    let tree_report = tree.report();

    let mut report = String::new();
    report.push_str(&format!(
        "# amdistill build-tree {} {} --phones {} --num-leaves {} --min-occupancy {} --min-gain {} --cmvn {}{} --tolerance {}\n",
        args.feat_dir.display(),
        args.out_dir.display(),
        args.phones,
        args.num_leaves,
        args.min_occupancy,
        args.min_gain,
        match args.cmvn {
            CmvnPer::Utt => "utt",
            CmvnPer::Spk => "spk",
            CmvnPer::None => "none",
        },
        if args.norm_vars { " --norm-vars" } else { "" },
        args.tolerance
    ));
    report.push_str(&format!(
        "phone set {} ({} phones), {} contexts seen\n",
        set.name(),
        set.len(),
        acc.stats.len()
    ));
    report.push_str(&format!(
        "utterances: {summary}, {} frames; {} skipped\n",
        acc.frames,
        skipped.len()
    ));
    for line in &skipped {
        report.push_str(&format!("  {line}\n"));
    }
    report.push_str(&tree_report.to_string());

    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("creating {}", args.out_dir.display()))?;
    set.save(&args.out_dir)?;
    tree.write_senones(args.out_dir.join("senones.txt"))?;
    write_atomic(args.out_dir.join("tree_report.txt"), |w| {
        w.write_all(report.as_bytes())
    })?;
    // The tree last: its presence marks a complete directory.
    tree.save(args.out_dir.join("tree"))?;

    print!("{report}");
    eprintln!(
        "build-tree: accumulate {:.2} s, grow {:.2} s",
        t_acc.as_secs_f64(),
        t_build.as_secs_f64()
    );
    eprintln!("{summary}");
    Ok(())
}

/// Opens a feature directory and reads the phone times in `ctm` to label it with: the common
/// start of `build-tree` and `make-alignments`.
pub(super) fn open_store_and_phone_times(
    feat_dir: &std::path::Path,
    ctm: &std::path::Path,
    set: &amdistill::labels::PhoneSet,
) -> anyhow::Result<(
    FeatureStore,
    amdistill::labels::frame_labels::FrameGeometry,
    std::collections::BTreeMap<String, Vec<amdistill::labels::PhoneSegment>>,
)> {
    let store = FeatureStore::open(feat_dir)
        .with_context(|| format!("opening feature directory {}", feat_dir.display()))?;
    let (geometry, assumed) = store_geometry(&store);
    if assumed {
        eprintln!(
            "amdistill: note: {} has no fbank.json; assuming {} s frames with snip-edges",
            feat_dir.display(),
            geometry.length_s
        );
    }
    let phone_times = read_phone_times(ctm, set)?;
    Ok((store, geometry, phone_times))
}
