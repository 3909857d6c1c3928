//! Command-line interface: one module per subcommand; each module's doc comments are its
//! `--help`. Errors are printed once, with their context; a batch command whose items partly
//! failed exits with status 1 after its "done N of M" line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod align;
mod build_tree;
mod compare;
mod compute_cmvn;
mod compute_fbank;
mod copy_feats;
mod dump_posteriors;
mod export;
mod fbank_args;
mod import;
mod make_alignments;
mod score;
mod stream;
mod synth_corpus;
mod train;
mod validate_data_dir;

/// amdistill: distil large speech acoustic models into compact students.
#[derive(Parser)]
#[command(name = "amdistill", version, about, long_about = None)]
struct Cli {
    /// Worker threads for parallel stages (default: all cores).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    Align(align::Args),
    BuildTree(build_tree::Args),
    ComputeCmvn(compute_cmvn::Args),
    ComputeFbank(compute_fbank::Args),
    Compare(compare::Args),
    CopyFeats(copy_feats::Args),
    DumpPosteriors(dump_posteriors::Args),
    Export(export::Args),
    Import(import::Args),
    MakeAlignments(make_alignments::Args),
    Score(score::Args),
    Stream(stream::Args),
    SynthCorpus(synth_corpus::Args),
    Train(train::Args),
    ValidateDataDir(validate_data_dir::Args),
}

/// Parses the command line, runs the command and maps the outcome to an exit status:
/// 0 success, 1 failure (including a batch with failed items), 2 bad usage (from clap).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        // candle's matrix multiplies size their thread count from this variable, not from
        // rayon's global pool; set it before any model code runs.
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            eprintln!("amdistill: error: --threads={n}: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Align(args) => align::run(args),
        Command::BuildTree(args) => build_tree::run(args),
        Command::ComputeCmvn(args) => compute_cmvn::run(args),
        Command::ComputeFbank(args) => compute_fbank::run(args),
        Command::Compare(args) => compare::run(args),
        Command::CopyFeats(args) => copy_feats::run(args),
        Command::DumpPosteriors(args) => dump_posteriors::run(args),
        Command::Export(args) => export::run(args),
        Command::Import(args) => import::run(args),
        Command::MakeAlignments(args) => make_alignments::run(args),
        Command::Score(args) => score::run(args),
        Command::Stream(args) => stream::run(args),
        Command::SynthCorpus(args) => synth_corpus::run(args),
        Command::Train(args) => train::run(args),
        Command::ValidateDataDir(args) => validate_data_dir::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("amdistill: error: {}", describe(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes joined by ": ", as `{:#}` does, but without repeating a cause
/// that the message before it already ends with (an I/O error names its path and its cause).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}
