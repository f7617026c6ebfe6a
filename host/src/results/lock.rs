//! One writer per run folder: an advisory `flock` on the folder itself.
//!
//! `clemhost run` holds the lock from before it reads `run.json` until it
//! has written it for the last time, so two runs into the same
//! `<results>/<models>/` folder never mix their episodes, never remove each
//! other's temp files and never lose each other's `run.json` entry. A second
//! run does not wait: it stops at once with a message that says which
//! folder is busy (waiting could block a scheduled job for hours on a run
//! that was forgotten in another terminal). The lock lives on the folder's
//! own file descriptor, so it leaves no file in the tree and is released
//! by the kernel when the process ends, however it ends.

use std::fs::File;
use std::path::{Path, PathBuf};

/// A held lock on a run folder; released when dropped.
#[derive(Debug)]
pub struct RunLock {
    _dir: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("another clemhost run is writing into {}; wait for it to finish, or pass another -r DIR", path.display())]
    Busy {
        /// The run folder.
        path: PathBuf,
    },
    /// The folder could not be opened or locked.
    #[error("cannot lock {}: {source}", path.display())]
    Io {
        /// The run folder.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

impl RunLock {
    /// Takes the lock on `dir` (which must exist), or fails at once when
    /// another process holds it.
    pub fn try_acquire(dir: &Path) -> Result<RunLock, LockError> {
        let io = |source| LockError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let file = File::open(dir).map_err(io)?;
        try_lock_exclusive(&file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                LockError::Busy {
                    path: dir.to_path_buf(),
                }
            } else {
                io(e)
            }
        })?;
        Ok(RunLock {
            _dir: file,
            path: dir.to_path_buf(),
        })
    }

    /// The locked folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(unix)]
fn try_lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: flock takes a file descriptor that `file` keeps open for the
    // duration of the call, and two integer flags; it touches no memory.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn try_lock_exclusive(_file: &File) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_folder_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = RunLock::try_acquire(dir.path()).expect("free");
        let second = RunLock::try_acquire(dir.path()).expect_err("busy");
        assert!(matches!(second, LockError::Busy { .. }), "{second}");
        assert!(
            second.to_string().contains("another clemhost run"),
            "{second}"
        );
        drop(first);
        RunLock::try_acquire(dir.path()).expect("free again");
    }
}
