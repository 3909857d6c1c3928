//! Progress for batch commands: a bar on a terminal (nothing when piped), and the closing
//! "done N of M" line that Kaldi's batch tools print.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A progress bar over `total` items that draws only when stderr is a terminal.
pub fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    if !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("static template")
        .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// Outcome of a batch command: how many items succeeded out of how many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSummary {
    pub done: usize,
    pub total: usize,
}

impl BatchSummary {
    pub fn failed(&self) -> usize {
        self.total - self.done
    }
}

impl std::fmt::Display for BatchSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "done {} of {}", self.done, self.total)?;
        if self.failed() > 0 {
            write!(f, " ({} failed)", self.failed())?;
        }
        Ok(())
    }
}
