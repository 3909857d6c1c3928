//! The `amdistill` binary: parse, run, map errors to exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    amdistill_cli::main()
}

#[path = "cli/mod.rs"]
mod amdistill_cli;
