//! `amdistill make-alignments FEAT_DIR TREE_DIR OUT`: one senone id per feature frame, in the
//! text shape of Kaldi's `ali-to-pdf final.mdl ark:ali.1 ark,t:-`.
//!
//! Only the frame counts (utt2num_frames), the framing (fbank.json) and the phone times are
//! read, not the features, so a tree built on train aligns dev and test as well; contexts
//! never seen in training go through the tree's questions like any other.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};

use amdistill::atomic::write_atomic;
use amdistill::labels::frame_labels::{FrameLabeler, DEFAULT_FRAME_TOLERANCE};
use amdistill::labels::kaldi_ali::write_alignments;
use amdistill::labels::phones::PhoneSet;
use amdistill::labels::senone_pipeline::{
    align_corpus, check_tree_covers, skipped_lines, store_frame_counts, AlignmentReport,
};
use amdistill::labels::tree::SenoneTree;
use amdistill::progress::BatchSummary;

/// Map every feature frame to its senone through a tree from build-tree.
///
/// Frame labels come from the CTM with the features' own framing; each utterance gets exactly
/// utt2num_frames ids (labels padded with silence or cut within --tolerance; utterances
/// beyond it are listed and skipped). Writes ali.txt (`utt-id id id ...`, one line per
/// utterance) and ali_report.txt (utterances, frames, senones used, frames per senone).
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Feature directory (utt2num_frames, fbank.json; phones.ctm unless --ctm).
    #[arg(value_name = "FEAT_DIR")]
    pub feat_dir: PathBuf,
    /// Directory written by build-tree (tree, phones.txt, phone_classes.txt).
    #[arg(value_name = "TREE_DIR")]
    pub tree_dir: PathBuf,
    /// Output: a directory (gets ali.txt and ali_report.txt) or a file NAME.txt (the report
    /// goes to NAME_report.txt beside it).
    #[arg(value_name = "OUT_FILE_OR_DIR")]
    pub out: PathBuf,
    /// Phone times, `utt-id channel start duration phone` [default: FEAT_DIR/phones.ctm].
    #[arg(long, value_name = "FILE")]
    pub ctm: Option<PathBuf>,
    /// Largest allowed difference, in frames, between the frames the phone times cover and
    /// the features' frame count.
    #[arg(long, default_value_t = DEFAULT_FRAME_TOLERANCE, value_name = "FRAMES")]
    pub tolerance: usize,
}

/// `(ali.txt path, report path)` for OUT: an existing directory, a path ending in `/`, or a
/// path without an extension is a directory; anything else is the alignment file.
fn output_paths(out: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    let as_dir = out.is_dir()
        || out.as_os_str().to_string_lossy().ends_with('/')
        || out.extension().is_none();
    if as_dir {
        std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
        return Ok((out.join("ali.txt"), out.join("ali_report.txt")));
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "ali".to_string());
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    Ok((
        out.to_path_buf(),
        out.with_file_name(format!("{stem}_report.txt")),
    ))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let t_start = Instant::now();
    let set = PhoneSet::load_dir(&args.tree_dir)
        .with_context(|| format!("reading the phone set of {}", args.tree_dir.display()))?;
    let tree = SenoneTree::load(args.tree_dir.join("tree"))?;
    check_tree_covers(&tree, &set)?;
    let ctm_path = args
        .ctm
        .clone()
        .unwrap_or_else(|| args.feat_dir.join("phones.ctm"));
    let (store, geometry, phone_times) =
        super::build_tree::open_store_and_phone_times(&args.feat_dir, &ctm_path, &set)?;
    let labeler = FrameLabeler::new(&set, geometry).with_tolerance(args.tolerance);
    let feature_frames = store_frame_counts(&store);

    let aligned = align_corpus(&tree, &labeler, &phone_times, &feature_frames);
    let skipped = skipped_lines(&aligned.frame_counts, &aligned.failures);
    for line in &skipped {
        eprintln!("amdistill: warning: {line}");
    }
    let summary = BatchSummary {
        done: aligned.alignments.len(),
        total: aligned.total,
    };
    if aligned.alignments.is_empty() {
        eprintln!("{summary}");
        bail!("no utterance could be aligned");
    }
    let ali_report = AlignmentReport::new(&tree, &aligned.alignments)?;

    let mut report = String::new();
    report.push_str(&format!(
        "# amdistill make-alignments {} {} {} --ctm {} --tolerance {}\n",
        args.feat_dir.display(),
        args.tree_dir.display(),
        args.out.display(),
        ctm_path.display(),
        args.tolerance
    ));
    report.push_str(&format!(
        "utterances: {summary}; {} skipped\n",
        skipped.len()
    ));
    for line in &skipped {
        report.push_str(&format!("  {line}\n"));
    }
    report.push_str(&ali_report.to_string());

    let (ali_path, report_path) = output_paths(&args.out)?;
    write_alignments(&ali_path, &aligned.alignments)?;
    write_atomic(&report_path, |w| w.write_all(report.as_bytes()))?;

    print!("{report}");
    eprintln!(
        "make-alignments: {:.2} s; wrote {} and {}",
        t_start.elapsed().as_secs_f64(),
        ali_path.display(),
        report_path.display()
    );
    eprintln!("{summary}");
    Ok(())
}
