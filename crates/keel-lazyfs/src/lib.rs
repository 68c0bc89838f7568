//! A FUSE filesystem that keeps file data not yet fsynced in memory and can forget it on
//! command, so fault-injection tests can simulate "the machine lost power and its un-fsynced
//! writes are gone" (the idea of Jepsen's LazyFS).
//!
//! # What it does
//!
//! [`LazyFs::mount`] shows a backing directory at a mountpoint. Every path under the mountpoint
//! is the same path under the backing directory, with these rules:
//!
//! - **File data and file length are lazy.** A `write` lands in an in-memory overlay of that
//!   file; a write past the end, a `truncate`/`ftruncate` and `fallocate` (mode 0) change only a
//!   pending length. Reads and `stat` see the overlay and the pending length on top of the
//!   backing file (bytes past the backing file's end, or past a truncation, read as zeros).
//! - **`fsync` and `fdatasync` are the only way data becomes durable.** They write the file's
//!   pending length and overlay to the backing file, then `fsync`/`fdatasync` the backing file.
//!   `close` persists nothing, as with a page cache.
//! - **[`LazyFs::drop_unsynced`] is the power loss.** Every overlay and pending length is
//!   forgotten; afterwards reads see exactly the backing files.
//! - **Metadata is durable at once** (a documented simplification): `mkdir`, `rmdir`, `create`,
//!   `mknod`, `symlink`, `unlink`, `rename` (including over an existing target and with
//!   `RENAME_NOREPLACE`/`RENAME_EXCHANGE`), `chmod`, `chown` and `utimes` are applied to the
//!   backing directory when they happen, and survive a drop. A file created and never fsynced
//!   therefore survives a drop empty (or at whatever length was made durable).
//! - **Memory is bounded.** When the dirty bytes of all files would exceed
//!   [`Limits::dirty_bytes_max`], the files holding the most are written back to their backing
//!   files *without* fsync until the total is within the limit. A real kernel may write dirty
//!   pages back at any moment too, so data written back this way may survive a drop: a test
//!   may only rely on fsynced data surviving and on un-fsynced data that stayed under the limit
//!   being gone.
//! - **Unlinked files.** When a file's last name goes (unlink, or a rename over it), its unsynced
//!   data is forgotten at once if no handle is open on it, else at the last close; until then
//!   the open handles keep reading and writing it.
//! - **No kernel caching.** Files are opened with `FOPEN_DIRECT_IO` and attributes and names
//!   have a zero cache lifetime, so every read and `stat` reaches the daemon and nothing cached
//!   in the kernel outlives a drop. A consequence: shared writable `mmap` of a file on the mount
//!   fails (`ENODEV`), as on any direct-I/O FUSE filesystem.
//! - **Not supported:** hard links (`EPERM`), extended attributes (`EOPNOTSUPP`). POSIX and
//!   `flock` locks are handled by the kernel locally, which is all one machine's processes need
//!   (redb's file locks work).
//!
//! # Using it
//!
//! Call [`LazyFs::drop_unsynced`] only while no process is in the middle of using the files:
//! after the process using them was killed and reaped. A process killed while waiting on the
//! daemon is not reaped before its request is answered, so once `waitpid` returns none of its
//! writes can land after the drop.
//!
//! # Mounting
//!
//! Mounting uses fuser's pure-Rust mount: with `CAP_SYS_ADMIN` (root) it calls `mount(2)` on
//! `/dev/fuse` directly and needs no helper binary; without it, fuser runs the setuid
//! `fusermount3` (or `fusermount`) helper, which must then be installed. [`available`] says which
//! of these this machine lacks. As is FUSE's default, only processes of the user that mounted
//! may use the mount (the harness runs its nodes as that same user).
//!
//! A mountpoint left mounted by a crashed earlier process (`ENOTCONN` on it) is detached lazily
//! (`umount2(MNT_DETACH)`, which needs `CAP_SYS_ADMIN`; without it the mount fails with
//! [`LazyFsError::StaleMount`] and `fusermount3 -u -z <mountpoint>` clears it). A mountpoint that
//! is still a live mount is refused with [`LazyFsError::AlreadyMounted`].
//!
//! Unmounting (by [`LazyFs::unmount`] or drop) is a plain unmount; if a process still has a
//! file open there, the mount is detached lazily instead: the mountpoint is free at once, and
//! the open files keep working until closed.
//!
//! All requests are served by one daemon thread and one lock; this filesystem is built to make
//! crashes honest, not to be fast.

mod daemon;
mod overlay;
mod state;

use std::fs::OpenOptions;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use daemon::{Daemon, Shared};
use state::State;

/// Default for [`Limits::dirty_bytes_max`]: room for the working set of a few test nodes'
/// databases between fsyncs, while keeping a runaway writer far from the machine's memory.
pub const DIRTY_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Name the mount shows in `/proc/mounts`, so a stale mount is easy to recognise.
const FS_NAME: &str = "keel-lazyfs";

/// FUSE daemon threads. Every request takes the one state lock, so more threads would only
/// wait on each other.
const DAEMON_THREADS: usize = 1;

/// Linux's capability number of `CAP_SYS_ADMIN`, which `mount(2)` requires.
const CAP_SYS_ADMIN: u32 = 21;

/// Helper binaries fuser runs to mount when the process may not call `mount(2)` itself.
const FUSERMOUNT_BINARIES: [&str; 2] = ["fusermount3", "fusermount"];

/// Limits of one mount.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Bytes written but not yet durable, over all files, that the mount keeps in memory before
    /// writing the largest files back (without fsync).
    pub dirty_bytes_max: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            dirty_bytes_max: DIRTY_BYTES_MAX,
        }
    }
}

/// A failing disk, as [`LazyFs::set_fault`] injects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskFault {
    /// Every call does what it should.
    #[default]
    Healthy,
    /// Every write fails with `ENOSPC`: the disk is full.
    NoSpaceOnWrite,
    /// Every write fails with `EIO`.
    IoErrorOnWrite,
    /// Every fsync fails with `EIO`, and the data it was to make durable is
    /// gone, as Linux drops the dirty pages of a failed writeback (so a
    /// program that retries the fsync and sees it succeed has lost data).
    IoErrorOnFsync,
    /// Every fsync fails with `ENOSPC` (a thin-provisioned or network disk
    /// finds no room at writeback), losing the data as `IoErrorOnFsync`.
    NoSpaceOnFsync,
}

/// What [`LazyFs::drop_unsynced`] forgot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    /// Files that had unsynced data or an unsynced length change.
    pub files: u64,
    /// Bytes of file data forgotten (length changes count no bytes).
    pub bytes: u64,
}

/// Why a mount or unmount failed.
#[derive(Debug, thiserror::Error)]
pub enum LazyFsError {
    /// This machine cannot mount FUSE filesystems; the text says what is missing.
    #[error("FUSE is not available here: {0}")]
    Unavailable(String),
    /// The backing directory is missing or not a directory.
    #[error("backing directory {path}: {source}")]
    Backing {
        /// The backing directory asked for.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The mountpoint is missing or not a directory.
    #[error("mountpoint {path}: {source}")]
    Mountpoint {
        /// The mountpoint asked for.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The backing directory and the mountpoint contain one another: the daemon would serve
    /// requests by making requests to itself.
    #[error(
        "backing directory {backing} and mountpoint {mountpoint} must not contain one another"
    )]
    Overlap {
        /// The canonical backing directory.
        backing: PathBuf,
        /// The canonical mountpoint.
        mountpoint: PathBuf,
    },
    /// Something is already mounted at the mountpoint.
    #[error("{0} is already a mount point; unmount it first")]
    AlreadyMounted(PathBuf),
    /// The mountpoint is a dead FUSE mount left by an earlier process, and detaching it failed.
    #[error("{path} is a stale FUSE mount and could not be detached: {source}")]
    StaleMount {
        /// The mountpoint.
        path: PathBuf,
        /// Why detaching failed.
        source: io::Error,
    },
    /// The kernel or the mount helper refused the mount.
    #[error("mounting at {path}: {source}")]
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// Unmounting failed; the mount may still be there.
    #[error("unmounting {path}: {source}")]
    Unmount {
        /// The mountpoint.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
}

/// A mounted lazy filesystem: every path under `mountpoint` is the same path under `backing`,
/// except that file data written but not yet fsynced lives only in this process's memory.
/// Unmounts on drop. See the crate documentation for the exact rules.
#[derive(Debug)]
pub struct LazyFs {
    shared: Arc<Shared>,
    /// `None` once unmounted.
    session: Option<fuser::BackgroundSession>,
    mountpoint: PathBuf,
}

impl LazyFs {
    /// Mounts `backing` at `mountpoint` (both existing directories, neither inside the other)
    /// and serves it from a background thread until unmounted.
    pub fn mount(backing: &Path, mountpoint: &Path, limits: Limits) -> Result<LazyFs, LazyFsError> {
        available().map_err(LazyFsError::Unavailable)?;
        let backing = canonical_dir(backing).map_err(|source| LazyFsError::Backing {
            path: backing.to_path_buf(),
            source,
        })?;
        let mountpoint = prepare_mountpoint(mountpoint)?;
        if backing.starts_with(&mountpoint) || mountpoint.starts_with(&backing) {
            return Err(LazyFsError::Overlap {
                backing,
                mountpoint,
            });
        }
        let shared = Arc::new(Shared::new(State::new(backing, limits)));
        let session = fuser::spawn_mount2(Daemon(shared.clone()), &mountpoint, &session_config())
            .map_err(|source| LazyFsError::Mount {
            path: mountpoint.clone(),
            source,
        })?;
        Ok(LazyFs {
            shared,
            session: Some(session),
            mountpoint,
        })
    }

    /// Forgets every write not yet made durable by fsync/fdatasync (power loss). Call it while
    /// no process has the files open (after the process using them was SIGKILLed and reaped).
    pub fn drop_unsynced(&self) -> Dropped {
        self.shared.lock().drop_unsynced()
    }

    /// Makes every later write or fsync fail as `fault` says, until set
    /// back to [`DiskFault::Healthy`]; reads and metadata are unaffected.
    pub fn set_fault(&self, fault: DiskFault) {
        self.shared.lock().set_fault(fault);
    }

    /// Bytes written but not yet durable.
    pub fn dirty_bytes(&self) -> u64 {
        self.shared.lock().dirty_bytes()
    }

    /// Where the filesystem is mounted (canonical).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts. Unsynced data is lost with the mount, as in a power loss. If a process still
    /// uses the mount, it is detached lazily (it disappears from the mountpoint now and goes
    /// away when the last user lets go), and this still returns `Ok`.
    pub fn unmount(mut self) -> Result<(), LazyFsError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), LazyFsError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.umount_and_join() {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => detach(&self.mountpoint),
            Err(source) => Err(LazyFsError::Unmount {
                path: self.mountpoint.clone(),
                source,
            }),
        }
    }
}

impl Drop for LazyFs {
    fn drop(&mut self) {
        // Drop cannot report; `unmount` is there for callers who want the error.
        let _ = self.unmount_inner();
    }
}

/// Whether this machine can mount a LazyFs: `/dev/fuse` must open, and the process must either
/// hold `CAP_SYS_ADMIN` (root) or find `fusermount3`/`fusermount` on `PATH`. `Err` says what is
/// missing, for a test to print when it skips.
pub fn available() -> Result<(), String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(|e| format!("cannot open /dev/fuse: {e}"))?;
    if has_cap_sys_admin() || fusermount_on_path() {
        return Ok(());
    }
    Err(
        "not privileged to mount (no CAP_SYS_ADMIN) and no fusermount3 or fusermount on PATH"
            .to_string(),
    )
}

fn session_config() -> fuser::Config {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::FSName(FS_NAME.to_string()),
        fuser::MountOption::Subtype(FS_NAME.to_string()),
        // The kernel checks permissions against the mode bits, as on any local filesystem.
        fuser::MountOption::DefaultPermissions,
    ];
    config.n_threads = Some(DAEMON_THREADS);
    config
}

fn canonical_dir(path: &Path) -> io::Result<PathBuf> {
    let canonical = path.canonicalize()?;
    if !canonical.metadata()?.is_dir() {
        return Err(io::Error::from_raw_os_error(libc::ENOTDIR));
    }
    Ok(canonical)
}

/// Detaches a stale mount at `mountpoint` if there is one, then checks it is a directory that
/// nothing is mounted on. Returns it canonical.
fn prepare_mountpoint(mountpoint: &Path) -> Result<PathBuf, LazyFsError> {
    let path = mountpoint.to_path_buf();
    if let Err(e) = mountpoint.metadata() {
        if e.raw_os_error() != Some(libc::ENOTCONN) {
            return Err(LazyFsError::Mountpoint { path, source: e });
        }
        // A FUSE mount whose daemon died: nobody can use it, so detaching it hurts no one.
        detach(mountpoint).map_err(|e| match e {
            LazyFsError::Unmount { path, source } => LazyFsError::StaleMount { path, source },
            other => other,
        })?;
    }
    let canonical =
        canonical_dir(mountpoint).map_err(|source| LazyFsError::Mountpoint { path, source })?;
    if is_mount_point(&canonical) {
        return Err(LazyFsError::AlreadyMounted(canonical));
    }
    Ok(canonical)
}

/// Whether something is mounted at `dir`: its device differs from its parent's (or it is `/`).
fn is_mount_point(dir: &Path) -> bool {
    let Some(parent) = dir.parent() else {
        return true;
    };
    match (dir.metadata(), parent.metadata()) {
        (Ok(dir), Ok(parent)) => dir.dev() != parent.dev(),
        _ => false,
    }
}

/// Detaches every LazyFs mount at or below `dir`, which a process killed before it could
/// unmount leaves behind (its files answer `ENOTCONN`), so `dir` can be removed; returns how
/// many. Reads `/proc/self/mounts`; a machine without it has no mounts to detach.
pub fn detach_stale_under(dir: &Path) -> Result<usize, LazyFsError> {
    let Ok(table) = std::fs::read_to_string("/proc/self/mounts") else {
        return Ok(0);
    };
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    // The table escapes spaces in paths as \040; the mounts this crate makes have none.
    let mut points: Vec<PathBuf> = table
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let source = fields.next()?;
            let point = fields.next()?;
            (source == FS_NAME).then(|| PathBuf::from(point))
        })
        .filter(|p| p.starts_with(&dir))
        .collect();
    // Deepest first, so a mount inside another goes before it.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in &points {
        detach(p)?;
    }
    Ok(points.len())
}

/// Lazily unmounts `mountpoint` (`umount2(MNT_DETACH)`): it leaves the namespace now and goes
/// when its last user does.
fn detach(mountpoint: &Path) -> Result<(), LazyFsError> {
    nix::mount::umount2(mountpoint, nix::mount::MntFlags::MNT_DETACH).map_err(|e| {
        LazyFsError::Unmount {
            path: mountpoint.to_path_buf(),
            source: io::Error::from_raw_os_error(e as i32),
        }
    })
}

/// Whether the effective capability set holds `CAP_SYS_ADMIN`, read from `/proc/self/status`.
fn has_cap_sys_admin() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Whether a fusermount helper is where fuser looks for it: `$FUSERMOUNT_PATH` or `$PATH`.
fn fusermount_on_path() -> bool {
    if std::env::var_os("FUSERMOUNT_PATH").is_some_and(|p| is_executable(Path::new(&p))) {
        return true;
    }
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| {
        FUSERMOUNT_BINARIES
            .iter()
            .any(|name| is_executable(&dir.join(name)))
    })
}

fn is_executable(path: &Path) -> bool {
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn lazyfs_is_send_and_sync() {
        assert_send_sync::<LazyFs>();
    }

    #[test]
    fn default_limit_is_the_named_constant() {
        assert_eq!(Limits::default().dirty_bytes_max, DIRTY_BYTES_MAX);
    }
}
