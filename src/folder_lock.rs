//! One server per data folder: an exclusive lock (`flock`) on `<folder>/floom.lock`, held
//! for the life of the process and released by the kernel when the process ends, however
//! it ends, so there is never a stale lock to clean up by hand. The file holds the
//! holder's pid, to name it to whoever finds the folder taken.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The lock file's name inside a locked folder.
pub const LOCK_FILE: &str = "floom.lock";

/// A held lock; dropping it releases the folder.
#[derive(Debug)]
pub struct FolderLock {
    _file: File,
    pub path: PathBuf,
}

/// Take `folder` for this process, or fail at once naming the process that has it.
/// `what` says what the folder is, for the message ("data folder", "workspace").
pub fn acquire(folder: &Path, what: &str) -> anyhow::Result<FolderLock> {
    let path = folder.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(err).with_context(|| format!("locking {}", path.display()));
        }
        let mut holder = String::new();
        let _ = file.read_to_string(&mut holder);
        let holder = match holder.trim() {
            "" => "another process".to_string(),
            pid => format!("another floom process (pid {pid})"),
        };
        bail!(
            "the {what} {} is in use by {holder}: one floom server per folder; stop it first",
            folder.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    file.sync_all()?;
    Ok(FolderLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "data folder").unwrap();
        let err = acquire(dir.path(), "data folder").unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("data folder"), "{err}");
        drop(first);
        acquire(dir.path(), "data folder").unwrap();
    }
}
