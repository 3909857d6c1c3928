//! `amdistill compare SCORE.json... [--names a,b] [--out DIR] [--curves NAME=metrics.jsonl]`:
//! one comparison table over scored models, and plots.

use std::path::PathBuf;

use anyhow::{bail, Context};

use amdistill::scoring::compare::{CompareTable, ScoredModel};
use amdistill::scoring::plots::{
    read_learning_curve, write_accuracy_vs_size, write_learning_curves, PlotFiles,
};

/// Compare scored models: one table (markdown and CSV) and plots.
///
/// Columns: model, parameters, MB fp32, MB int8, MFLOPs/frame, single-core RTF, frame
/// accuracy, frame accuracy without silence, teacher agreement, KL(teacher || student)
/// (nats/frame), top-5 accuracy; unknown values print as '-'. The table is printed; with
/// --out it is also written to DIR/compare.md and DIR/compare.csv, with the plot of frame
/// accuracy against parameters (DIR/accuracy_vs_size.{png,svg}, when the scores have
/// parameter counts) and, with --curves, the learning curves (DIR/learning_curves.{png,svg}).
/// PNGs need a TTF font (fonts-dejavu-core, or AMDISTILL_FONT=FILE); SVGs are always written.
///
/// Examples:
///   amdistill compare exp/teacher/score.json exp/student/score.json
///   amdistill compare exp/*/score.json --names teacher,student --out exp/compare \
///       --curves teacher=exp/teacher/metrics.jsonl --curves student=exp/student/metrics.jsonl
#[derive(clap::Args, Debug)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Score files written by the scorer (JSON).
    #[arg(value_name = "SCORE.json", required = true)]
    pub scores: Vec<PathBuf>,
    /// Display names, comma-separated, one per score file (default: the score's model name,
    /// else the file's directory for score.json, else its stem).
    #[arg(long, value_delimiter = ',', value_name = "A,B,..")]
    pub names: Vec<String>,
    /// Output directory for compare.md, compare.csv and the plots.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A learning curve: NAME=PATH of a trainer's metrics.jsonl (repeatable; needs --out).
    #[arg(long, value_name = "NAME=PATH")]
    pub curves: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if !args.names.is_empty() && args.names.len() != args.scores.len() {
        bail!(
            "--names has {} names for {} score files",
            args.names.len(),
            args.scores.len()
        );
    }
    if !args.curves.is_empty() && args.out.is_none() {
        bail!("--curves needs --out DIR for the plots");
    }
    let mut models = Vec::with_capacity(args.scores.len());
    for (i, path) in args.scores.iter().enumerate() {
        let name = args.names.get(i).map(String::as_str);
        models.push(ScoredModel::load(path, name)?);
    }
    let table = CompareTable::new(&models);
    print!("{}", table.markdown());
    let Some(out) = &args.out else {
        return Ok(());
    };
    table.write(out)?;
    eprintln!(
        "compare: wrote {} and {}",
        out.join("compare.md").display(),
        out.join("compare.csv").display()
    );
    if models.iter().any(|m| m.score.model.params.is_some()) {
        report(write_accuracy_vs_size(&models, out)?);
    } else {
        eprintln!("compare: no score has model.params; accuracy_vs_size plot skipped");
    }
    if !args.curves.is_empty() {
        let mut curves = Vec::new();
        for spec in &args.curves {
            let (name, path) = spec
                .split_once('=')
                .with_context(|| format!("--curves {spec}: expected NAME=PATH"))?;
            curves.push(read_learning_curve(name, path)?);
        }
        report(write_learning_curves(&curves, out)?);
    }
    Ok(())
}

fn report(files: PlotFiles) {
    match (&files.png, &files.warning) {
        (Some(png), _) => eprintln!(
            "compare: wrote {} and {}",
            png.display(),
            files.svg.display()
        ),
        (None, warning) => {
            eprintln!("compare: wrote {}", files.svg.display());
            if let Some(w) = warning {
                eprintln!("amdistill: warning: {w}");
            }
        }
    }
}
