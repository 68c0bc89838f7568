//! Keel's backup repository: stores opaque backups redundantly and proves
//! them.
//!
//! The caller (`keel-backup`'s jobs, or any program) hands [`Repository::write`] a byte stream
//! and a [`BackupMeta`]; the repository splits it into chunks, and for each
//! chunk takes a BLAKE3 checksum, compresses it with zstd, encrypts it with
//! ChaCha20-Poly1305 and spreads it over the [`Target`]s as whole copies or
//! Reed-Solomon shards ([`Layout`]). A MAC'd [`Manifest`] is written last on
//! every target, so a backup is visible only once complete.
//! [`Repository::read`] authenticates, rebuilds and checks every chunk
//! before writing it out; [`Repository::verify`] and
//! [`Repository::repair`] scrub every object on every target;
//! [`Repository::prune`] applies a [`Retention`]; [`plan_restore`] picks the
//! backups that restore a [`RestorePoint`].
//!
//! This crate is the repository alone: it knows nothing of Raft, redb or
//! HTTP. Content is opaque bytes and time comes from the caller (no clock
//! is read), so every rule here is tested on plain bytes and directories.
//! The cluster side (reading a running cluster, taking and scheduling
//! backups, restoring into a data directory) is the `keel-backup` crate
//! built on top of this one.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), keel_backup_repo::BackupError> {
//! use keel_backup_repo::{BackupMeta, Key, Kind, Layout, Repository, RestorePoint, Target};
//!
//! let dir = tempfile::tempdir().expect("temp dir");
//! let targets = (0..3)
//!     .map(|i| Target::parse(&format!("dir:{}/disk{i}", dir.path().display())))
//!     .collect::<Result<Vec<_>, _>>()?;
//! let repo = Repository::open(targets, Layout::Erasure { data: 2, parity: 1 }, Key::from_bytes([7; 32]))?;
//!
//! let meta = BackupMeta {
//!     kind: Kind::Full,
//!     seq: 123,
//!     created_ms: 1_795_444_021_000,
//!     first_index: 1,
//!     last_index: 123,
//!     first_time_ms: 1_795_000_000_000,
//!     last_time_ms: 1_795_444_020_000,
//!     parent: None,
//!     labels: Default::default(),
//! };
//! let manifest = repo.write(meta, &b"snapshot bytes"[..]).await?;
//! assert_eq!(manifest.id.as_str(), "20261123T142701Z-full-000123");
//!
//! let chain = repo.plan_restore(RestorePoint::Latest).await?;
//! let mut restored = Vec::new(); // a real caller writes a temp file, then renames it
//! repo.read(&chain[0].id, &mut restored).await?;
//! assert_eq!(restored, b"snapshot bytes");
//! # Ok(())
//! # }
//! ```

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod chain;
pub mod codec;
mod error;
mod ids;
pub mod layout;
pub mod manifest;
mod objects;
mod prune;
mod repo;
pub mod report;
mod scrub;
pub mod target;

pub use chain::{plan_prune, plan_restore, ChainError, PrunePlan, RestorePoint, Retention};
pub use codec::{Key, CHUNK_BYTES_MAX, CHUNK_BYTES_MIN};
pub use error::BackupError;
pub use layout::{Layout, LayoutParseError};
pub use manifest::{BackupId, BackupMeta, ChunkInfo, Digest, Kind, Manifest};
pub use objects::MANIFEST_OBJECT;
pub use repo::Repository;
pub use report::{
    CorruptObject, FailedObject, LostChunk, ObjectRef, PruneReport, RepairReport, TargetReport,
    VerifyReport,
};
pub use target::{DirTarget, ObjectEntry, S3Config, S3Target, Target};
