//! Bounded reads of the kernel's files.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::error::ReadError;

/// Longest `/proc` file read. The largest read here are `/proc/stat` (one
/// `intr` column per interrupt line, tens of KiB on a large machine) and
/// `/proc/self/mountinfo` (a host running many containers can have
/// thousands of mounts, under 1 MiB); 4 MiB leaves room for both while a
/// kernel or container runtime gone wrong cannot make a scrape allocate
/// without bound.
pub const PROC_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// Most entries of `/proc/self/fd` counted. Linux's default `fs.nr_open`
/// (the ceiling of any process's open-files limit) is 2^20, so a process
/// cannot normally hold more; counting stops here so a scrape's cost is
/// bounded even if the ceiling was raised.
pub const OPEN_FDS_COUNTED_MAX: u64 = 1 << 20;

/// Reads a whole `/proc` file as text, refusing one longer than
/// [`PROC_FILE_BYTES_MAX`] rather than parsing a cut-off copy.
pub fn proc_text(path: &Path) -> Result<String, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    File::open(path)
        .map_err(io)?
        .take(PROC_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    if text.len() as u64 > PROC_FILE_BYTES_MAX {
        return Err(ReadError::TooLong {
            path: path.to_owned(),
            cap_bytes: PROC_FILE_BYTES_MAX,
        });
    }
    Ok(text)
}

/// Counts the entries of a `/proc/<pid>/fd` directory, up to
/// [`OPEN_FDS_COUNTED_MAX`]; at the cap the count is a floor.
///
/// The directory handle this opens to list itself is one of the entries it
/// sees, so it is not counted: the result is what the process held before
/// it was asked.
pub fn count_fds(dir: &Path) -> Result<u64, ReadError> {
    let io = |source| ReadError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut count: u64 = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        entry.map_err(io)?;
        count += 1;
        if count > OPEN_FDS_COUNTED_MAX {
            break;
        }
    }
    Ok(count.saturating_sub(1))
}
