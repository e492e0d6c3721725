//! What the server keeps to itself: the secret values in its own environment, and its
//! files at rest.
//!
//! A process of the same user can read `/proc/<pid>/environ` of the server, and root
//! can read any; the values stay in that block for the life of the process even after
//! `unsetenv`. So once the configuration is parsed, the values of the secret variables
//! are overwritten in place, and the process is marked not dumpable (its `/proc` files
//! then belong to root). Runs never start from this environment anyway (runs/sandbox.rs).

use std::ffi::CStr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::config::Paths;

unsafe extern "C" {
    static mut environ: *const *mut libc::c_char;
}

/// Overwrite the values of `names` in this process's environment with NUL bytes, and
/// make the process not dumpable.
///
/// # Safety
/// Call it while the process has one thread and nothing holds a value read from the
/// environment by reference (right after parsing the command line).
pub unsafe fn scrub_environment(names: &[&str]) {
    // SAFETY: `environ` is the C library's NULL-terminated array of NUL-terminated
    // strings; the caller guarantees nobody else reads or writes it meanwhile. Bytes
    // are overwritten within each string's own length.
    unsafe {
        let mut entry = environ;
        while !entry.is_null() && !(*entry).is_null() {
            let text = *entry;
            let bytes = CStr::from_ptr(text).to_bytes();
            if let Some(eq) = bytes.iter().position(|b| *b == b'=')
                && names.iter().any(|n| n.as_bytes() == &bytes[..eq])
            {
                std::ptr::write_bytes(text.add(eq + 1), 0, bytes.len() - eq - 1);
            }
            entry = entry.add(1);
        }
        libc::prctl(libc::PR_SET_DUMPABLE, 0);
    }
}

/// The data folder mode 700; the store, the index (with their `-wal` and `-shm`), the
/// vault and its key file mode 600. Missing database files are created empty with mode
/// 600 first, since SQLite gives its `-wal` and `-shm` the database file's mode. Wider
/// modes found on existing files are tightened, with a log line.
pub fn secure_files(paths: &Paths) -> anyhow::Result<()> {
    tighten(&paths.data_dir, 0o700)?;
    let store_file = match &paths.store {
        crate::config::StoreLocation::Sqlite(file) => Some(file),
        crate::config::StoreLocation::Postgres(_) => None,
    };
    for db in store_file.into_iter().chain([&paths.index_db]) {
        if !db.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(db)?;
        }
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut file = db.as_os_str().to_owned();
            file.push(suffix);
            tighten(Path::new(&file), 0o600)?;
        }
    }
    tighten(&paths.workspace.join(crate::vault::VAULT_FILE), 0o600)?;
    if let crate::vault::KeySource::File(key) = &paths.vault_key {
        tighten(key, 0o600)?;
    }
    Ok(())
}

/// Take group and other permissions away from `path` if it has any.
fn tighten(path: &Path, mode: u32) -> anyhow::Result<()> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let current = meta.permissions().mode() & 0o777;
    if current & 0o077 == 0 {
        return Ok(());
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| {
        anyhow::anyhow!(
            "{} is mode {current:o} (readable by others) and cannot be made {mode:o}: {e}",
            path.display()
        )
    })?;
    tracing::info!(
        path = %path.display(),
        from = format!("{current:o}"),
        to = format!("{mode:o}"),
        "tightened permissions"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tighten_takes_away_group_and_other() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "x").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        tighten(&f, 0o600).unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        tighten(&dir.path().join("missing"), 0o600).unwrap();
    }
}
