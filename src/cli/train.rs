//! `amdistill train CONFIG.toml OUT_DIR`: trains an acoustic model (a teacher on alignments,
//! or a student on a teacher's soft targets when the config has a `[kd]` section).

use std::path::PathBuf;

use anyhow::Context as _;

use amdistill::train::config::TrainConfig;
use amdistill::train::trainer::train;

/// Train an acoustic model from a TOML configuration.
///
/// The configuration names the feature stores, alignments and senone table ([data]), the
/// architecture ([model]: dnn, tdnn, tdnnf, lstm), the loader ([loader]), AdamW and its
/// schedule ([optim]), epochs, seed, checkpoints and early stopping ([train]) and, for a
/// student, the teacher and the distillation loss ([kd]). OUT_DIR receives model.json,
/// model.safetensors (the best weights by validation accuracy, written when training ends),
/// senones.txt, train.toml (the configuration used), metrics.jsonl and checkpoints/. With
/// --resume, a killed run goes on from its newest checkpoint and ends with the weights an
/// uninterrupted run would have; without it, an earlier run in OUT_DIR is cleared first.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Training configuration (TOML; only values that differ from the defaults).
    #[arg(value_name = "CONFIG.toml")]
    pub config: PathBuf,
    /// Output directory of the trained model.
    #[arg(value_name = "OUT_DIR")]
    pub out_dir: PathBuf,
    /// Continue from the newest checkpoint in OUT_DIR/checkpoints.
    #[arg(long)]
    pub resume: bool,
    /// Override one configuration value, e.g. --set optim.lr=0.002 --set kd.temperature=4.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub overrides: Vec<String>,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cfg = TrainConfig::load(&args.config, &args.overrides)?;
    let summary = train(&cfg, &args.out_dir, args.resume, args.quiet)
        .with_context(|| format!("training {}", args.out_dir.display()))?;
    println!(
        "{}: {} steps, {} epochs, {:.1} s, {:.0} frames/s{}",
        args.out_dir.display(),
        summary.steps,
        summary.epochs,
        summary.seconds,
        summary.frames_per_second,
        summary
            .best_valid_acc
            .map(|a| format!(", best validation frame accuracy {:.2}%", 100.0 * a))
            .unwrap_or_default()
    );
    Ok(())
}
