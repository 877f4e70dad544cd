//! Crash-safe files and safe names, shared by every crate that writes into a run or dataset folder.
//!
//! A file is written to a temporary file in its own folder, flushed to disk (`fsync`), renamed over its final
//! name and the folder flushed, so a killed process or a power cut leaves either the old file or the new one,
//! never a truncated mix (the pattern of SQLite's and git's lock-file writes).

use std::io::Write;
use std::path::Path;

/// Characters allowed in a name that becomes a path component (experiment, dataset, point): ASCII letters and
/// digits and `- _ . = , + @`.
pub const NAME_CHARS: &str = "ASCII letters, digits and - _ . = , + @";

/// Checks that `name` (a `what`: "experiment", "dataset", "point"…) is safe as one path component: non-empty, at
/// most 200 bytes, only [`NAME_CHARS`], not starting with `.` (no `..`, no hidden folders). The error names the
/// name and what would make it right.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.=,+@".contains(*c)));
    if name.is_empty() {
        return Err(format!("{what} name is empty"));
    }
    if let Some(c) = bad {
        return Err(format!(
            "{what} name {name:?} contains {c:?}: a name becomes a folder, so it may hold only {NAME_CHARS}"
        ));
    }
    if name.starts_with('.') {
        return Err(format!(
            "{what} name {name:?} starts with '.': a name becomes a folder inside the output folder, so it may \
             not be hidden or lead out of it (`..`)"
        ));
    }
    if name.len() > 200 {
        return Err(format!(
            "{what} name {name:?} is {} bytes long: at most 200",
            name.len()
        ));
    }
    Ok(())
}

/// This machine's name (for leases and file names that say which host wrote them): /proc's, else `$HOSTNAME`, else
/// `unknown-host`.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown-host".into())
}

/// Writes `bytes` to `path` atomically and durably: a temporary file in the same folder, `fsync`, rename, then
/// `fsync` of the folder. An existing file at `path` is replaced only once the new one is complete.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    atomic_write_with(path, |mut f| {
        f.write_all(bytes)?;
        Ok(f)
    })
}

/// [`atomic_write`] for content written as a stream: `write` gets the temporary file and hands it back once it
/// has written everything; only then is it flushed and renamed over `path`. An error of `write` leaves `path` as it
/// was (the temporary file is removed).
pub fn atomic_write_with<E: From<std::io::Error>>(
    path: &Path,
    write: impl FnOnce(std::fs::File) -> Result<std::fs::File, E>,
) -> Result<(), E> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (file, tmp_path) = tempfile::Builder::new()
        .prefix(".physlab-tmp-")
        .tempfile_in(dir)?
        .into_parts();
    // A temporary file is created private (0600); the file it becomes is an ordinary one (0644), readable by the
    // other users of a shared runs folder as files written directly would be.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    }
    let file = write(file)?;
    file.sync_all()?;
    tmp_path.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)?;
    Ok(())
}

/// Flushes a folder's entries (a rename or a new file in it) to disk. A no-op where folders cannot be opened
/// (not Unix).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Flushes a file already written (by another library) to disk.
pub fn sync_file(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "capacity-law-cpu",
            "people=1000,preset=gpt2-2-1",
            "a.b_c+d@e",
            "x",
        ] {
            assert!(check_name("experiment", ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "..", "../x", "a/b", "/abs", ".hidden", "a\0b", "a\nb", "a b", "ü", "a\\b",
        ] {
            let e = check_name("experiment", bad).unwrap_err();
            assert!(e.starts_with("experiment name"), "{bad}: {e}");
        }
        assert!(check_name("point", &"a".repeat(201)).is_err());
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temporaries() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        atomic_write(&p, b"first, longer content").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(
                mode, 0o644,
                "an ordinary file, not the temporary file's 0600"
            );
        }
        let names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f.json")]);
        // A folder that does not exist is an error naming nothing half-written.
        assert!(atomic_write(&d.path().join("missing/f"), b"x").is_err());
    }
}
