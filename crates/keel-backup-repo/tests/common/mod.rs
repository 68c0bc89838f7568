//! Shared helpers for the repository tests: temp-directory targets,
//! deterministic content, metadata.

#![allow(dead_code)] // Each test binary uses a different subset.
#![allow(clippy::unwrap_used)] // Test helpers: a failed unwrap is a failed test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use keel_backup_repo::{BackupId, BackupMeta, DirTarget, Key, Kind, Layout, Repository, Target};

/// Chunk size in tests: small, so a few hundred KiB make several chunks.
pub const TEST_CHUNK_BYTES: usize = 64 * 1024;

pub fn key() -> Key {
    Key::from_bytes([42; 32])
}

/// `n` target directories under `root` (not created: the first write
/// creates them).
pub fn dirs(root: &Path, n: usize) -> Vec<PathBuf> {
    (0..n).map(|i| root.join(format!("t{i}"))).collect()
}

pub fn repo_on(dirs: &[PathBuf], layout: Layout) -> Repository {
    repo_with_key(dirs, layout, key())
}

pub fn repo_with_key(dirs: &[PathBuf], layout: Layout, key: Key) -> Repository {
    let targets = dirs
        .iter()
        .map(|d| Target::Dir(DirTarget::new(d)))
        .collect();
    Repository::open(targets, layout, key)
        .unwrap()
        .with_chunk_bytes(TEST_CHUNK_BYTES)
        .unwrap()
}

/// Deterministic content: a mix of incompressible and repetitive runs so
/// both zstd paths are exercised.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|i| {
            if (i / 10_000) % 2 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            } else {
                (i % 7) as u8
            }
        })
        .collect()
}

pub fn meta(kind: Kind, seq: u64, first: u64, last: u64, parent: Option<&BackupId>) -> BackupMeta {
    BackupMeta {
        kind,
        seq,
        created_ms: 1_790_000_000_000 + seq * 1000,
        first_index: first,
        last_index: last,
        first_time_ms: first * 10,
        last_time_ms: last * 10,
        parent: parent.cloned(),
        labels: BTreeMap::from([("node".to_owned(), "n1".to_owned())]),
    }
}

pub fn full(seq: u64, last: u64) -> BackupMeta {
    meta(Kind::Full, seq, 1, last, None)
}

pub async fn restore(
    repo: &Repository,
    id: &BackupId,
) -> Result<Vec<u8>, keel_backup_repo::BackupError> {
    let mut out = Vec::new();
    repo.read(id, &mut out).await?;
    Ok(out)
}

/// Every file under `dir` (recursively), sorted.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
