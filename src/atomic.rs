//! Write-then-rename output files, so that no later stage ever reads a half-written artefact.
//!
//! [`AtomicFile`] writes to `NAME.tmp.PID` beside the target and renames it over the target in
//! [`AtomicFile::commit`]; dropped without a commit (an error, a panic) it deletes the temporary.
//! A process killed with SIGKILL can leave a `*.tmp.*` file behind, but never a truncated target.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file being written under a temporary name.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Starts writing `target` (its parent directory must exist).
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = target.as_ref().to_path_buf();
        let name = target
            .file_name()
            .ok_or_else(|| Error::config(format!("{}: not a file path", target.display())))?
            .to_string_lossy()
            .into_owned();
        let tmp = target.with_file_name(format!("{name}.tmp.{}", std::process::id()));
        let file = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(AtomicFile {
            target,
            tmp,
            writer: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// The path this file will have once committed.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes, syncs and renames the temporary over the target. On failure (a full disk
    /// shows here, when the buffer is flushed) the temporary is removed.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("writer present until commit");
        let result = writer
            .into_inner()
            .map_err(|e| Error::io(&self.tmp, e.into_error()))
            .and_then(|file| file.sync_all().map_err(|e| Error::io(&self.tmp, e)))
            .and_then(|()| {
                std::fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))
            });
        if result.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        result
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.writer
            .as_mut()
            .expect("writer present until commit")
            .flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes `target` atomically with the bytes produced by `fill`; an error from `fill` leaves
/// the target untouched.
pub fn write_atomic(
    target: impl AsRef<Path>,
    fill: impl FnOnce(&mut AtomicFile) -> std::io::Result<()>,
) -> Result<()> {
    let mut file = AtomicFile::create(target.as_ref())?;
    fill(&mut file).map_err(|e| Error::io(target.as_ref(), e))?;
    file.commit()
}

/// Removes `NAME.tmp.PID` files in `dir` left by processes that no longer run (a run killed
/// with SIGKILL cannot clean up after itself). Files of live processes are kept, so shards
/// running side by side do not disturb each other. Returns how many were removed. Only Linux
/// can tell whether a process runs (`/proc/PID`); elsewhere nothing is removed.
pub fn remove_stale_temporaries(dir: impl AsRef<Path>) -> Result<usize> {
    let dir = dir.as_ref();
    if !Path::new("/proc/self").exists() {
        return Ok(0);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, pid)) = name.rsplit_once(".tmp.") else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.txt");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"abc").unwrap();
        assert!(!target.exists(), "nothing visible before commit");
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"abc");
        let mut g = AtomicFile::create(dir.path().join("other.txt")).unwrap();
        g.write_all(b"x").unwrap();
        drop(g);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "dropped temporary removed"
        );
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // PID 4194304 is above Linux's pid_max limit, so it never runs.
        std::fs::write(dir.path().join("feats.1.ark.tmp.4194304"), b"partial").unwrap();
        let mine = dir
            .path()
            .join(format!("feats.2.ark.tmp.{}", std::process::id()));
        std::fs::write(&mine, b"in progress").unwrap();
        std::fs::write(dir.path().join("notes.tmp.txt"), b"not ours").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(mine.exists());
        assert!(dir.path().join("notes.tmp.txt").exists());
    }
}
