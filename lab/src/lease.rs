//! One owner per run folder (issue 16): an advisory file lock on `<run>.lock` beside the run folder, and a lease
//! file `<run>.lease` (host, pid, start and a heartbeat refreshed every [`HEARTBEAT`]) for what a file lock cannot
//! see (another host over a shared filesystem whose locks do not travel). Both live beside the run folder, not
//! in it, so moving an unfinished folder aside never moves its lock.
//!
//! A second process on the same run is refused in one line naming the holder, or with `--wait` waits for it. A
//! lease left by a dead process of this host (its lock is free) is taken over at once; one of another host when
//! its heartbeat is older than [`STALE`] (its holder died, or its host is gone). Both with a message.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// How often a holder refreshes its lease.
pub const HEARTBEAT: Duration = Duration::from_secs(30);
/// A lease not refreshed for this long is stale: its holder is taken to be dead.
pub const STALE: Duration = Duration::from_secs(300);

/// The refusal when another live process holds a run folder (a worker skips such a run).
#[derive(Debug)]
pub struct InUse {
    pub dir: PathBuf,
    pub holder: String,
}

impl std::fmt::Display for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is in use by {}: two processes on one run folder would corrupt it; wait for it with --wait (a \
             holder on another host that is gone is taken over once its heartbeat is {} s old)",
            self.dir.display(),
            self.holder,
            STALE.as_secs()
        )
    }
}

impl std::error::Error for InUse {}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LeaseInfo {
    pub host: String,
    pub pid: u32,
    /// Unix seconds.
    pub started: u64,
    pub heartbeat: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub use physlab_generators::fsio::hostname;

/// `<dir>.lock` and `<dir>.lease`.
fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    let base = dir.display().to_string();
    (
        PathBuf::from(format!("{base}.lock")),
        PathBuf::from(format!("{base}.lease")),
    )
}

/// The lease of run folder `dir`, if one is written (for `plan`/`status`: reads, never locks).
pub fn read_lease(dir: &Path) -> Option<LeaseInfo> {
    let (_, lease) = paths(dir);
    serde_json::from_slice(&std::fs::read(lease).ok()?).ok()
}

/// Whether a lease is fresh (its holder alive as far as anyone can tell).
pub fn is_fresh(l: &LeaseInfo) -> bool {
    now().saturating_sub(l.heartbeat) < STALE.as_secs()
}

/// The held ownership of a run folder: the lock, and a thread refreshing the lease. Dropping it stops the
/// heartbeat, removes the lease and releases the lock.
pub struct RunLease {
    file: File,
    lease: PathBuf,
    stop: Arc<AtomicBool>,
    beat: Option<std::thread::JoinHandle<()>>,
}

fn describe(l: &LeaseInfo) -> String {
    format!(
        "pid {} on {} (since {} s ago, last heartbeat {} s ago)",
        l.pid,
        l.host,
        now().saturating_sub(l.started),
        now().saturating_sub(l.heartbeat)
    )
}

impl RunLease {
    /// Takes the run folder `dir` (which need not exist yet). Refuses, naming the holder, when another live
    /// process holds it; with `wait`, waits for it instead.
    pub fn acquire(dir: &Path, wait: bool) -> Result<RunLease> {
        let (lock, lease) = paths(dir);
        if let Some(parent) = lock.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .with_context(|| format!("opening {}", lock.display()))?;
        let mut announced = false;
        loop {
            let held_here = match file.try_lock() {
                Ok(()) => None,
                Err(std::fs::TryLockError::WouldBlock) => {
                    Some("a process on this host".to_string())
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("locking {}", lock.display()))
                }
            };
            // The lock is ours (or held here); a fresh lease of another host still wins: that host may not share
            // our file locks. A lease of this host whose lock we could take is its dead holder's (the kernel
            // releases a killed process's locks).
            let other = read_lease(dir).filter(|l| is_fresh(l) && l.host != hostname());
            let holder = match (&held_here, &other) {
                (None, None) => break,
                (_, Some(l)) => describe(l),
                // Locked here: the lease names the holder (it is written right after the lock is taken).
                (Some(h), None) => read_lease(dir).map_or_else(|| h.clone(), |l| describe(&l)),
            };
            if held_here.is_none() {
                let _ = file.unlock();
            }
            if !wait {
                return Err(InUse {
                    dir: dir.to_path_buf(),
                    holder,
                }
                .into());
            }
            if !announced {
                tracing::info!("{} is in use by {holder}: waiting for it", dir.display());
                announced = true;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
        if let Some(old) = read_lease(dir) {
            if old.host == hostname() {
                tracing::warn!(
                    "{}: its lease by {} was left by a process that is gone (its lock was free): taken over",
                    dir.display(),
                    describe(&old)
                );
            } else if !is_fresh(&old) {
                tracing::warn!(
                    "{}: its lease by {} is stale (no heartbeat for {} s): taken over",
                    dir.display(),
                    describe(&old),
                    STALE.as_secs()
                );
            }
        }
        let info = LeaseInfo {
            host: hostname(),
            pid: std::process::id(),
            started: now(),
            heartbeat: now(),
        };
        write_lease(&lease, &info)?;
        let stop = Arc::new(AtomicBool::new(false));
        let beat = {
            let (stop, lease, mut info) = (stop.clone(), lease.clone(), info.clone());
            std::thread::spawn(move || {
                let tick = Duration::from_millis(200);
                let mut since = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    since += tick;
                    if since >= HEARTBEAT {
                        since = Duration::ZERO;
                        info.heartbeat = now();
                        if let Err(e) = write_lease(&lease, &info) {
                            tracing::warn!("{e:#}");
                        }
                    }
                }
            })
        };
        Ok(RunLease {
            file,
            lease,
            stop,
            beat: Some(beat),
        })
    }
}

fn write_lease(path: &Path, info: &LeaseInfo) -> Result<()> {
    physlab_generators::fsio::atomic_write(path, &serde_json::to_vec_pretty(info)?)
        .with_context(|| format!("writing {}", path.display()))
}

impl Drop for RunLease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(b) = self.beat.take() {
            let _ = b.join();
        }
        let _ = std::fs::remove_file(&self.lease);
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_a_stale_lease_is_taken_over() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("exp/point/s0");
        let held = RunLease::acquire(&run, false).unwrap();
        let l = read_lease(&run).unwrap();
        assert_eq!(l.pid, std::process::id());
        assert!(is_fresh(&l));
        drop(held);
        assert!(
            read_lease(&run).is_none(),
            "the lease is removed on release"
        );
        // A fresh lease of another host refuses, naming it, even though no local lock is held.
        let (_, lease) = paths(&run);
        let other = LeaseInfo {
            host: "node-7".into(),
            pid: 4242,
            started: now() - 100,
            heartbeat: now() - 10,
        };
        write_lease(&lease, &other).unwrap();
        let e = RunLease::acquire(&run, false).err().unwrap().to_string();
        assert!(
            e.contains("pid 4242 on node-7") && e.contains("in use"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
        // A lease of this host whose lock is free was left by a killed process: taken over at once.
        let dead = LeaseInfo {
            host: hostname(),
            pid: 4243,
            ..other.clone()
        };
        write_lease(&lease, &dead).unwrap();
        drop(RunLease::acquire(&run, false).unwrap());
        // The other host's lease gone stale is taken over.
        let stale = LeaseInfo {
            heartbeat: now() - STALE.as_secs() - 1,
            ..other
        };
        write_lease(&lease, &stale).unwrap();
        let held = RunLease::acquire(&run, false).unwrap();
        assert_eq!(read_lease(&run).unwrap().pid, std::process::id());
        drop(held);
    }
}
