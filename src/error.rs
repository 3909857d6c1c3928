//! The library's error type. Every variant names the file (and line) or the utterance it is about,
//! so a batch command can print one clear line per failure and carry on.

use std::path::{Path, PathBuf};

/// Errors raised by the amdistill library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system error while touching `path`.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A text file that does not parse; `line` is 1-based (0 when no line applies).
    #[error("{}{}: {msg}", path.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
    Parse {
        path: PathBuf,
        line: usize,
        msg: String,
    },
    /// A binary file (audio, archive) whose content is wrong or unsupported.
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
    /// One utterance failed; wraps the reason.
    #[error("utterance {utt}: {msg}")]
    Utterance { utt: String, msg: String },
    /// Bad options or configuration values.
    #[error("{0}")]
    Config(String),
    /// Two artefacts that must agree do not (frame counts, feature configs, senone sets ...).
    #[error("{0}")]
    Mismatch(String),
}

/// `Result` with [`Error`] as the default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
    pub fn parse(path: impl AsRef<Path>, line: usize, msg: impl Into<String>) -> Self {
        Error::Parse {
            path: path.as_ref().to_path_buf(),
            line,
            msg: msg.into(),
        }
    }
    pub fn format(path: impl AsRef<Path>, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.as_ref().to_path_buf(),
            msg: msg.into(),
        }
    }
    pub fn utterance(utt: &str, msg: impl std::fmt::Display) -> Self {
        Error::Utterance {
            utt: utt.to_string(),
            msg: msg.to_string(),
        }
    }
    pub fn config(msg: impl Into<String>) -> Self {
        Error::Config(msg.into())
    }
}
