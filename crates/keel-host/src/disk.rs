//! The data directory's filesystem and the block device under it.

use std::path::{Path, PathBuf};

use crate::error::ReadError;
use crate::parse::{mountinfo_source, DeviceId};
use crate::read::proc_text;

/// Space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// The filesystem's size (`f_blocks`).
    pub size_bytes: u64,
    /// Free to an unprivileged process such as Keel (`f_bavail`); blocks
    /// reserved for root are not counted, so `used + free` can be less
    /// than `size`.
    pub free_bytes: u64,
    /// In use (`f_blocks - f_bfree`).
    pub used_bytes: u64,
}

/// The space of the filesystem holding `dir`.
pub fn space(dir: &Path) -> Result<Space, ReadError> {
    let vfs = rustix::fs::statvfs(dir).map_err(|e| io_error(dir, e))?;
    let bytes = |blocks: u64| blocks.saturating_mul(vfs.f_frsize);
    Ok(Space {
        size_bytes: bytes(vfs.f_blocks),
        free_bytes: bytes(vfs.f_bavail),
        used_bytes: bytes(vfs.f_blocks.saturating_sub(vfs.f_bfree)),
    })
}

/// The block device whose counters `/proc/diskstats` keeps for `dir`, or
/// `None` when there is none to find.
///
/// A filesystem on a block device (ext4, xfs) reports that device as the
/// directory's `st_dev`. Others report an anonymous device (major 0): for
/// btrfs the mount's source in `/proc/self/mountinfo` is the real device,
/// looked up by its `st_rdev`; tmpfs, overlay and network filesystems have
/// a source that is not a device, and so no device.
pub fn device_of(dir: &Path, mountinfo: &Path) -> Result<Option<DeviceId>, ReadError> {
    let dev = rustix::fs::stat(dir).map_err(|e| io_error(dir, e))?.st_dev;
    let id = device_id(dev);
    if id.major != 0 {
        return Ok(Some(id));
    }
    let text = proc_text(mountinfo)?;
    let Some(source) = mountinfo_source(&text, id).filter(|s| s.starts_with("/dev/")) else {
        return Ok(None);
    };
    let source = Path::new(source);
    let rdev = rustix::fs::stat(source)
        .map_err(|e| io_error(source, e))?
        .st_rdev;
    Ok(Some(device_id(rdev)))
}

/// Splits a `dev_t` into its major and minor numbers.
fn device_id(dev: u64) -> DeviceId {
    DeviceId {
        major: rustix::fs::major(dev),
        minor: rustix::fs::minor(dev),
    }
}

/// A [`ReadError`] for a system call on `path`.
fn io_error(path: &Path, errno: rustix::io::Errno) -> ReadError {
    ReadError::Io {
        path: PathBuf::from(path),
        source: errno.into(),
    }
}
