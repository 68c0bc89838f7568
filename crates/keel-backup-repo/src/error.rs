//! The one error type of the crate. Each message says what went wrong and
//! what an operator can do about it, because a failed backup or restore is
//! usually read by a person at a bad moment.

use std::path::PathBuf;

use crate::chain::ChainError;

/// Everything that can go wrong in the backup repository.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// A key file could not be read.
    #[error(
        "cannot read the backup key file {path}: {source}; check the path and its permissions"
    )]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },

    /// Key material that is not exactly 32 bytes.
    #[error("the backup key from {origin} is {reason}; a key is 32 bytes: a file of exactly 32 raw bytes, or 64 hex characters (make one with `head -c 32 /dev/urandom | xxd -p -c 64`)")]
    KeyFormat {
        /// Where the key came from (file path or env var name).
        origin: String,
        /// What was wrong with it.
        reason: String,
    },

    /// A target specification string that does not parse.
    #[error("invalid backup target `{spec}`: {reason}; use `dir:/path`, a bare path, or `s3://bucket/prefix?endpoint=http://host:port&region=us-east-1`")]
    TargetSpec {
        /// The spec as given.
        spec: String,
        /// What was wrong with it.
        reason: String,
    },

    /// Repository configuration that cannot work (layout versus targets).
    #[error("invalid backup repository configuration: {reason}")]
    Config {
        /// What was wrong.
        reason: String,
    },

    /// A string that is not a valid backup id.
    #[error("invalid backup id `{id}`: {reason}")]
    InvalidId {
        /// The offending string.
        id: String,
        /// What was wrong with it.
        reason: String,
    },

    /// Caller-given metadata that would make an unusable manifest.
    #[error("invalid backup metadata for {id}: {reason}; this is a bug in the caller")]
    InvalidMeta {
        /// The backup being written.
        id: String,
        /// What was wrong.
        reason: String,
    },

    /// Objects with this id already exist; writing would reuse AEAD nonces.
    #[error("backup id {id} is already in use on target {target}; pick a new id (a new created_ms or sequence number), or run prune if it is left over from an interrupted write")]
    IdInUse {
        /// The id.
        id: String,
        /// The target that holds objects under it.
        target: String,
    },

    /// No target holds a manifest for this id.
    #[error("backup {id} not found on any target; run list to see the backups that exist")]
    NotFound {
        /// The id asked for.
        id: String,
    },

    /// Every copy of a manifest failed its MAC.
    #[error("the manifest of backup {id} failed authentication on every target: either the repository key is wrong or every copy was altered; check the key first, then run verify")]
    ManifestAuth {
        /// The backup.
        id: String,
    },

    /// A manifest that authenticates but makes no sense (or an unknown format).
    #[error("the manifest of backup {id} is unusable: {reason}")]
    ManifestInvalid {
        /// The backup.
        id: String,
        /// What was wrong.
        reason: String,
    },

    /// Not enough good shards (or copies) survive to rebuild a chunk.
    #[error("chunk {chunk} of backup {id} cannot be rebuilt: {have} good shards/copies found, {need} needed; check that every target is reachable, then run verify to see which objects are missing or corrupt")]
    TooFewShards {
        /// The backup.
        id: String,
        /// Chunk number.
        chunk: u64,
        /// Good shards found.
        have: usize,
        /// Shards needed.
        need: usize,
    },

    /// A chunk was rebuilt but failed its checksum, AEAD or decompression.
    #[error("chunk {chunk} of backup {id} is corrupt after rebuilding: {reason}; run verify and repair, or restore from another backup")]
    ChunkCorrupt {
        /// The backup.
        id: String,
        /// Chunk number.
        chunk: u64,
        /// Which check failed.
        reason: String,
    },

    /// A value past one of the crate's named limits.
    #[error("{what} is {got}, above the limit of {max}")]
    TooLarge {
        /// What was measured.
        what: &'static str,
        /// Its size.
        got: u64,
        /// The limit.
        max: u64,
    },

    /// An object name that could escape its target or is not ours to write.
    #[error("backup target {target}: refusing object name `{name}`; this is a bug in the caller")]
    ObjectName {
        /// The target.
        target: String,
        /// The offending name.
        name: String,
    },

    /// A local directory target failed.
    #[error("backup target {target}: {op} {object} failed: {source}; check the disk is mounted, writable and not full")]
    DirIo {
        /// The target.
        target: String,
        /// What was being done.
        op: &'static str,
        /// The object name.
        object: String,
        /// What the OS said.
        source: std::io::Error,
    },

    /// An S3 target failed.
    #[error("backup target {target}: {op} {object} failed: {source}; check the endpoint, bucket and AWS credentials")]
    S3 {
        /// The target.
        target: String,
        /// What was being done.
        op: &'static str,
        /// The object name.
        object: String,
        /// What object_store said.
        source: Box<object_store::Error>,
    },

    /// A target call that did not finish in time.
    #[error("backup target {target}: {op} {object} timed out after {timeout_ms} ms; check the network path to the target")]
    Timeout {
        /// The target.
        target: String,
        /// What was being done.
        op: &'static str,
        /// The object name.
        object: String,
        /// The deadline.
        timeout_ms: u64,
    },

    /// Reading the caller's backup content failed.
    #[error("reading the content to back up failed: {0}")]
    Input(#[source] std::io::Error),

    /// Writing restored content to the caller's writer failed.
    #[error("writing restored content failed: {0}; check the restore destination has space")]
    Output(#[source] std::io::Error),

    /// No restore chain reaches the requested point.
    #[error(transparent)]
    Chain(#[from] ChainError),

    /// A local file (work space, restore destination) failed.
    #[error("{path}: {source}; check the disk has space and the path is writable")]
    Io {
        /// The file or directory.
        path: String,
        /// What the OS said.
        source: std::io::Error,
    },

    /// A blocking task (compression, encryption, file I/O) panicked or was
    /// cancelled; a bug, not an operational problem.
    #[error("internal task failed: {0}")]
    Task(String),
}
