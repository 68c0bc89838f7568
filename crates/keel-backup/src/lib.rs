//! Keel's backups of a running cluster, over the repository in
//! `keel-backup-repo`.
//!
//! - [`source`]: reads a running cluster through the node's backup
//!   endpoints (never around them): a consistent snapshot stream and the
//!   committed log after an index, at a [`Pace`];
//! - [`spec`]: a repository as an operator describes it (target, layout
//!   and key texts), opened;
//! - [`job`]: takes full, incremental, differential and cold (a stopped
//!   node's data directory) backups into a [`Repository`];
//! - [`schedule`]: runs jobs on a timer, on events and as a continuous
//!   archive of the log, also as a child process of a gateway
//!   ([`schedule::child`]);
//! - [`restore`]: replays a chain of backups into a fresh data directory
//!   through `keel-store`'s seed, to a point in time or an index, and
//!   checks the result's digest and the domain's invariants before it
//!   becomes visible;
//! - [`listing`]: manifests as an operator reads them.
//!
//! Log records travel in the log's own checksummed format ([`frames`]), so
//! a restored log is byte-for-byte what the cluster committed. The
//! repository's types are re-exported here, so a caller needs one crate.
//!
//! # How backups are taken and restored
//!
//! A node serves two admin endpoints (`keel-node/src/http/backup.rs`) and nothing
//! else is read from a running cluster:
//! `/v1/backup/snapshot` streams a snapshot of one redb read transaction
//! (the snapshot format openraft already ships to followers; it is not made
//! current, and writes go on) with its log id, state digest and clock in
//! headers; `/v1/backup/log?after=N` pages the raw log records above N up to
//! the node's applied index (applied means committed, so they are never
//! truncated), each still carrying the log's CRC. `keel backup` prefers a
//! healthy follower. A follower may not yet have applied what the leader just
//! acknowledged (or, after a leader crash, may not even hold it), so the
//! snapshot, and the applied index a log backup reads up to
//! (`&barrier=true`), first wait for `Node::catch_up`: the leader's read
//! index, confirmed by a quorum, applied here. A backup started after a 2xx
//! therefore holds that write, whichever node it is read from
//! (`a_backup_from_a_lagging_follower_holds_every_acknowledged_write`).
//!
//! - **full**: the snapshot; its manifest records the digest, checked again on
//!   restore. The node writes the export in one pass over the read view (the
//!   digest is taken in the same pass) to an unsynced temporary file it
//!   removes after sending; `keel backup` seals the bytes into the repository
//!   as they arrive while Keel's snapshot reader checks them on another
//!   thread, and the stream only ends (so the manifest is only written) once
//!   the reader has accepted the whole snapshot as the one the headers named.
//!   Nothing else touches the disk, and the download is paced (`--rate-mib-s`,
//!   20 MiB/s by default; `keel-backup/src/pace.rs`) so a hot full costs the
//!   shop little of its throughput while it runs.
//! - **incremental / differential**: the records after the newest backup of any
//!   kind, or after the newest full. If the node has purged them, a full is
//!   taken instead and the reason printed (as pgBackRest does).
//! - **cold**: `keel_store::open` on a stopped node's directory (which verifies
//!   every log record, and fails while a node holds it) gives a `cold` base plus
//!   an incremental of the committed records past its applied index.
//! - **archive**: `keel backup schedule --archive-every 5s` tails the log and
//!   closes segments by age or size; losing every node loses at most the open
//!   segment. The same command takes timed fulls and incrementals, event-driven
//!   incrementals (`--after-entries`) and prunes (`--keep-full`); the gateway
//!   runs it from a `[backup]` section of its config.
//!
//! Every backup is chunked (4 MiB), hashed, compressed, sealed with a nonce
//! derived from (backup id, chunk, content hash), hashed again, and stored as
//! whole copies (mirror) or k data + m parity shards on k+m targets. The
//! manifest is written last on every target, under a keyed BLAKE3 MAC, so a
//! half-written backup is invisible and a wrong key fails before any byte is
//! restored. `verify` scrubs every object; `repair` rebuilds from survivors.
//!
//! `keel restore --to DIR [--index N | --time-ms T]` plans the chain (base,
//! then a differential and/or contiguous incrementals and archive segments),
//! loads the base snapshot into `DIR.restoring` with `keel_store::seed::Seed`,
//! applies the records with the nodes' own `apply` up to the point, checks the
//! digest against the base's, the domain invariants, and renames. The base is
//! installed as the repository decodes it (`restore.rs::load_base`): chunks go
//! through a bounded queue (`RESTORE_QUEUE_CHUNKS`) to the installer on its
//! own thread, which checks the snapshot stream as it writes it into one redb
//! transaction, takes the digest on the way, and commits (fsynced) only once
//! the stream was whole and the repository's content checksum has also
//! passed; anything less drops the transaction, so nothing lands. A seed's
//! redb gets a page cache of `SEED_CACHE_BYTES` (1 GiB): it is offline and
//! alone, unlike a node. Small pieces are hashed through
//! `keel_domain::hashing::GatheringHasher`, which hands BLAKE3 64 KiB at a time
//! (the same hash, several times faster than row-sized updates). `keel up
//! --from DIR` (or `keel node --from-seed DIR --bootstrap …`) copies the seed
//! into each new node and adopts it: the new membership, a current snapshot,
//! an empty log purged up to the restored index and a vote at its term, so the
//! first election moves to a higher term and the log continues where the
//! backup ended (later backups of the new cluster extend the same chain).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
pub mod frames;
pub mod job;
pub mod listing;
pub mod pace;
mod queue;
pub mod restore;
pub mod schedule;
pub mod source;
pub mod spec;

pub use error::JobError;
pub use keel_backup_repo::*;
pub use pace::Pace;
pub use source::{NodeSource, SourceError};
pub use spec::{OpenError, RepoSpec, KEY_ENV};
