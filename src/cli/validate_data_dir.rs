//! `amdistill validate-data-dir`: check a Kaldi data directory, or repair it with `--fix`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use amdistill::corpus::validate::{fix_data_dir, validate_data_dir, Problem, ValidateOptions};
use amdistill::corpus::DataDir;
use anyhow::bail;

/// Check a Kaldi data directory and report every problem, one `FILE:LINE: message` line each.
///
/// Checks wav.scp, text, utt2spk, spk2utt and, when present, segments, feats.scp,
/// utt2num_frames, utt2dur, cmvn.scp, spk2gender and reco2dur: keys sorted in C-locale byte
/// order (LC_ALL=C sort) and unique, well-formed values, the same utterances in every
/// utterance-keyed file, spk2utt agreeing with utt2spk, segments naming known recordings with
/// valid times, no empty files, and the audio files of wav.scp present. wav.scp must hold plain
/// paths (pipe commands are reported as unsupported); relative paths are resolved against the
/// current directory, as in Kaldi, not against DIR.
///
/// Prints the problems, then a summary; the exit status is 1 if there is any problem.
#[derive(clap::Args)]
pub struct Args {
    /// The data directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Transcripts are optional: a missing `text` is not a problem (an existing one is still
    /// checked).
    #[arg(long)]
    no_text: bool,
    /// Do not check that the audio files of wav.scp exist (faster on huge corpora).
    #[arg(long)]
    no_wav_check: bool,
    /// Repair the directory first, like Kaldi's utils/fix_data_dir.sh: sort every file, drop
    /// duplicate keys (keeping the first), bad lines and (unless --no-wav-check) recordings
    /// whose audio is missing, keep the utterances present in every file, drop recordings and
    /// speakers no longer used, regenerate spk2utt. Each changed file is first copied into
    /// DIR/.backup/. Then validates what is left.
    #[arg(long)]
    fix: bool,
}

/// Runs the command.
pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = ValidateOptions {
        require_text: !args.no_text,
        check_audio: !args.no_wav_check,
    };
    let dir = args.dir.display().to_string();
    let mut out = std::io::stdout().lock();

    if args.fix {
        let report = fix_data_dir(&args.dir, &opts)?;
        for p in &report.dropped_lines {
            writeln!(
                out,
                "{}",
                Problem {
                    msg: format!("dropped: {}", p.msg),
                    ..p.clone()
                }
            )?;
        }
        let reasons: Vec<String> = report
            .drop_reasons
            .iter()
            .map(|(why, n)| format!("{n} {why}"))
            .collect();
        let reasons = if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        };
        writeln!(
            out,
            "{dir}: fix kept {}, dropped {}{reasons}; dropped {} and {}",
            count(report.utts_kept, "utterance"),
            report.utts_dropped,
            count(report.recordings_dropped, "recording"),
            count(report.speakers_dropped, "speaker")
        )?;
        if report.changed.is_empty() {
            writeln!(out, "{dir}: nothing to rewrite")?;
        } else {
            let names: Vec<String> = report
                .changed
                .iter()
                .map(|p| {
                    p.file_name().map_or_else(
                        || p.display().to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    )
                })
                .collect();
            writeln!(
                out,
                "{dir}: rewrote {}; previous versions are in {}",
                names.join(", "),
                report.backup_dir.display()
            )?;
        }
    }

    let problems = validate_data_dir(&args.dir, &opts)?;
    for p in &problems {
        writeln!(out, "{p}")?;
    }
    if problems.is_empty() {
        // A valid directory reads cleanly; the counts are a courtesy, so a failure is not fatal.
        match DataDir::read(&args.dir) {
            Ok(dd) => writeln!(
                out,
                "{dir}: no problems ({}, {}, {})",
                count(dd.utt2spk.len(), "utterance"),
                count(dd.spk2utt().len(), "speaker"),
                count(dd.wav_scp.len(), "recording")
            )?,
            Err(_) => writeln!(out, "{dir}: no problems")?,
        }
        return Ok(());
    }
    let mut per_file: BTreeMap<String, usize> = BTreeMap::new();
    for p in &problems {
        let name = p
            .file
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        *per_file.entry(name).or_insert(0) += 1;
    }
    let per_file: Vec<String> = per_file.iter().map(|(f, n)| format!("{f}: {n}")).collect();
    writeln!(
        out,
        "{dir}: {} ({})",
        count(problems.len(), "problem"),
        per_file.join(", ")
    )?;
    out.flush()?;
    let hint = if args.fix {
        ""
    } else {
        "; --fix repairs what can be repaired"
    };
    bail!(
        "{dir}: not a valid data directory ({}{hint})",
        count(problems.len(), "problem")
    )
}

/// `1 problem`, `2 problems`.
fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
