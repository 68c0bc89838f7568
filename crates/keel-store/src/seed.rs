//! Restoring a node's data directory from a backup, and adopting a restored
//! state into a new cluster.
//!
//! A restore happens in two steps, both offline (no node runs on the
//! directory):
//! 1. [`Seed`]: a fresh directory gets the state of a full backup's snapshot,
//!    then log entries applied in order by the same `apply` the nodes run, up
//!    to the chosen point. Its digest is then the digest the cluster had at
//!    that log index.
//! 2. [`adopt`]: each new node's copy of the seed gets the new cluster's
//!    membership, a current snapshot of the state, and an empty log that
//!    starts behind it. openraft then starts as if the log had been purged
//!    up to the restored index: the nodes elect a leader at a higher term
//!    and a node that lags gets the snapshot.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use openraft::{BasicNode, Entry, LogId, Membership, StoredMembership, Vote};

use crate::snapshot::SnapshotHeader;
use crate::state_machine::sync_dir;
use crate::{NodeId, StateMachineStore, StateReader, StoreError, TypeConfig};
use crate::{LOG_FILE, SNAPSHOT_DIR, STATE_FILE};

/// redb's page cache while a seed is built: a restore writes a whole state
/// in one transaction, offline, so redb may keep a large state's pages in
/// memory rather than write them out and read them back (a node runs with
/// far less, beside two others).
pub const SEED_CACHE_BYTES: usize = 1 << 30;

/// A data directory being restored. Nothing in it is served until
/// [`adopt`] has run on a copy.
pub struct Seed {
    dir: PathBuf,
    sm: StateMachineStore,
    /// The digest of the state at a log id, known without reading the state
    /// back (taken while a snapshot streamed in); stale once an entry is
    /// applied after it.
    digest_at: Option<(Option<LogId<NodeId>>, [u8; 32])>,
}

/// What a finished seed holds.
#[derive(Clone, Debug)]
pub struct SeedInfo {
    /// The last log id applied.
    pub applied: Option<LogId<NodeId>>,
    /// The state digest at that log id.
    pub digest: [u8; 32],
    /// The state's clock: the latest leader time applied.
    pub clock_ms: u64,
    /// Domain invariants the state breaks (empty when it is sound).
    pub violations: Vec<String>,
}

impl Seed {
    /// Starts a seed in `dir`, which must not hold a node's data already:
    /// a restore never writes over a live directory.
    pub fn create(dir: &Path) -> Result<Self, StoreError> {
        for f in [LOG_FILE, STATE_FILE] {
            let p = dir.join(f);
            if p.exists() {
                return Err(StoreError::other(
                    &p,
                    "already exists: restore into an empty or new directory",
                ));
            }
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        let sm = StateMachineStore::open_with_cache(
            &dir.join(STATE_FILE),
            &dir.join(SNAPSHOT_DIR),
            SEED_CACHE_BYTES,
        )?;
        Ok(Self {
            dir: dir.to_path_buf(),
            sm,
            digest_at: None,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Replaces the state with the snapshot read from `reader` (named
    /// `source` in errors) as it arrives, so a restore need not land it in
    /// a file first. The stream is verified as it is read and the state is
    /// committed, in one fsynced transaction, only once all of it passed
    /// and `before_commit` agrees (the caller's last word on where the
    /// bytes came from); otherwise nothing changes. The state's digest is
    /// taken on the way.
    pub fn load_snapshot_from(
        &mut self,
        source: &Path,
        reader: impl Read,
        before_commit: impl FnOnce(&SnapshotHeader) -> Result<(), StoreError>,
    ) -> Result<SnapshotHeader, StoreError> {
        let (header, digest) = self
            .sm
            .load_snapshot_stream(source, reader, before_commit)?;
        self.digest_at = Some((header.last_log_id, digest));
        Ok(header)
    }

    /// The state's digest: the one taken while the snapshot streamed in if
    /// nothing was applied since, else read from the state.
    pub fn digest(&self) -> Result<[u8; 32], StoreError> {
        match self.digest_at {
            Some((at, d)) if at == self.sm.last_applied() => Ok(d),
            _ => self.sm.reader()?.digest(),
        }
    }

    /// Applies entries, which must continue the applied log without a gap,
    /// in one transaction.
    pub fn apply(&self, entries: Vec<Entry<TypeConfig>>) -> Result<(), StoreError> {
        self.sm.apply_restored(entries)
    }

    /// The last applied log id.
    pub fn applied(&self) -> Option<LogId<NodeId>> {
        self.sm.last_applied()
    }

    /// A read view of the state so far.
    pub fn reader(&self) -> Result<StateReader, StoreError> {
        self.sm.reader()
    }

    /// Makes everything applied durable (fsync) and reports the state:
    /// digest, clock and the domain invariants it breaks, if any.
    pub fn finish(self) -> Result<SeedInfo, StoreError> {
        self.sm.sync()?;
        let r = self.sm.reader()?;
        let table = |e| crate::redb_tables::table_error(self.sm.path(), e);
        let violations = keel_domain::check_invariants(&r)
            .map_err(table)?
            .into_iter()
            .map(|v| format!("{v:?}"))
            .collect();
        Ok(SeedInfo {
            applied: r.applied()?,
            digest: self.digest()?,
            clock_ms: keel_domain::apply::load_summary(&r)
                .map_err(table)?
                .clock_ms,
            violations,
        })
    }
}

/// Makes `data_dir`, a copy of a finished [`Seed`], the data directory of
/// node `node_id` in a new cluster of `members` (id → address): the
/// membership is replaced, a snapshot of the state made current, and the
/// empty log set to start behind the restored index with it committed.
/// Each step is fsynced. Returns the restored log id.
pub fn adopt(
    data_dir: &Path,
    node_id: NodeId,
    members: &BTreeMap<NodeId, String>,
) -> Result<LogId<NodeId>, StoreError> {
    if !data_dir.join(STATE_FILE).is_file() {
        return Err(StoreError::other(
            data_dir,
            "holds no restored state: run `keel restore` into it first",
        ));
    }
    if !members.contains_key(&node_id) {
        return Err(StoreError::other(
            data_dir,
            format!("node {node_id} is not among the new members"),
        ));
    }
    let (log, sm) = crate::open(data_dir)?;
    let Some(applied) = sm.last_applied() else {
        return Err(StoreError::other(
            data_dir,
            "the restored state is empty: nothing was applied",
        ));
    };
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    let nodes: BTreeMap<NodeId, BasicNode> = members
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    let membership = StoredMembership::new(Some(applied), Membership::new(vec![voters], nodes));
    sm.adopt_membership(membership)?;
    // The vote keeps the restored term, so the first election moves to a
    // higher term and every new entry sorts after the restored ones.
    log.adopt(applied, Vote::new(applied.leader_id.term, node_id))?;
    Ok(applied)
}

/// Starts node `node_id`'s data directory from a finished seed: copies the
/// seed's state (fsynced) into `data_dir` and [`adopt`]s it into the new
/// cluster of `members`. Does nothing and returns `None` if `data_dir`
/// already holds a state (a later start of the same node); the seed itself
/// is never changed, so one seed starts every node.
pub fn start_from_seed(
    seed: &Path,
    data_dir: &Path,
    node_id: NodeId,
    members: &BTreeMap<NodeId, String>,
) -> Result<Option<LogId<NodeId>>, StoreError> {
    if data_dir.join(STATE_FILE).exists() || data_dir.join(LOG_FILE).exists() {
        return Ok(None);
    }
    if !members.contains_key(&node_id) {
        return Err(StoreError::other(
            data_dir,
            format!("node {node_id} is not among the new members"),
        ));
    }
    let state = seed.join(STATE_FILE);
    if !state.is_file() {
        return Err(StoreError::other(
            seed,
            "is not a restored seed (no state): run `keel restore --to` it first",
        ));
    }
    // The seed is only read (every node of the new cluster copies it at
    // the same time, so none may open it: redb locks an open file). The
    // copy is checked when `adopt` opens it.
    let tmp = data_dir.with_extension("seeding");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| StoreError::io(&tmp, e))?;
    }
    std::fs::create_dir_all(tmp.join(SNAPSHOT_DIR)).map_err(|e| StoreError::io(&tmp, e))?;
    copy_synced(&state, &tmp.join(STATE_FILE))?;
    let snaps = seed.join(SNAPSHOT_DIR);
    if snaps.is_dir() {
        for e in std::fs::read_dir(&snaps).map_err(|e| StoreError::io(&snaps, e))? {
            let e = e.map_err(|e| StoreError::io(&snaps, e))?;
            if e.path().is_file() {
                copy_synced(&e.path(), &tmp.join(SNAPSHOT_DIR).join(e.file_name()))?;
            }
        }
    }
    sync_dir(&tmp.join(SNAPSHOT_DIR))?;
    sync_dir(&tmp)?;
    let applied = adopt(&tmp, node_id, members)?;
    // The copy becomes the data directory only whole and adopted: a crash
    // before the rename leaves a `.seeding` directory that the next start
    // replaces.
    if let Some(parent) = data_dir.parent() {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
    }
    if data_dir.exists() {
        // An empty directory (made by an operator or a tool) is replaced.
        std::fs::remove_dir(data_dir).map_err(|e| StoreError::io(data_dir, e))?;
    }
    std::fs::rename(&tmp, data_dir).map_err(|e| StoreError::io(data_dir, e))?;
    if let Some(parent) = data_dir.parent() {
        sync_dir(parent)?;
    }
    Ok(Some(applied))
}

fn copy_synced(from: &Path, to: &Path) -> Result<(), StoreError> {
    std::fs::copy(from, to).map_err(|e| StoreError::io(to, e))?;
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|e| StoreError::io(to, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_domain::{AccountId, Batch, Command, Envelope, RequestId};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64, time: u64, commands: Vec<Envelope>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(Batch {
                leader_time_ms: time,
                commands,
            }),
        }
    }

    fn open_account(n: u32) -> Envelope {
        Envelope {
            request_id: RequestId::new(format!("req-{n}")).unwrap(),
            principal: keel_domain::Principal::Admin,
            origin: None,
            command: Command::OpenAccount {
                id: AccountId::new(format!("acct-{n}")).unwrap(),
                kind: keel_domain::AccountKind::Customer,
                currency: keel_domain::Currency::new("EUR").unwrap(),
            },
        }
    }

    #[test]
    fn a_seed_refuses_gaps_and_live_directories_and_adopts_into_a_new_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let seed_dir = dir.path().join("seed");
        let seed = Seed::create(&seed_dir).unwrap();
        // openraft's log starts at index 0.
        seed.apply(vec![entry(3, 0, 100, vec![open_account(1)])])
            .unwrap();
        // Index 2 does not follow 0.
        assert!(seed
            .apply(vec![entry(3, 2, 200, vec![open_account(2)])])
            .is_err());
        seed.apply(vec![entry(3, 1, 200, vec![open_account(2)])])
            .unwrap();
        let info = seed.finish().unwrap();
        assert_eq!(info.applied.map(|l| l.index), Some(1));
        assert_eq!(info.clock_ms, 200);
        assert!(info.violations.is_empty(), "{:?}", info.violations);

        // The seed is now a data directory: a second restore into it is
        // refused.
        assert!(Seed::create(&seed_dir).is_err());

        let members: BTreeMap<NodeId, String> = [(1, "127.0.0.1:1".to_string())].into();
        let node_dir = dir.path().join("node-1");
        assert!(start_from_seed(&seed_dir, &node_dir, 2, &members).is_err());
        let applied = start_from_seed(&seed_dir, &node_dir, 1, &members)
            .unwrap()
            .unwrap();
        assert_eq!(applied.index, 1);
        // A later start leaves the node's directory alone.
        assert_eq!(
            start_from_seed(&seed_dir, &node_dir, 1, &members).unwrap(),
            None
        );
        let (log, sm) = crate::open(&node_dir).unwrap();
        let r = sm.reader().unwrap();
        assert_eq!(r.digest().unwrap(), info.digest);
        let m = r.membership().unwrap();
        assert_eq!(m.log_id(), &Some(applied));
        assert_eq!(
            m.membership().voter_ids().collect::<Vec<_>>(),
            vec![1u64],
            "the new cluster's members replace the backup's"
        );
        let page = log.read_records(0, u64::MAX, 10, 1 << 20).unwrap();
        assert_eq!(page.purged, Some(applied));
        assert!(page.records.is_empty());
    }

    /// A seed holding `n` accounts at log indexes 0..n.
    fn seed_with_accounts(dir: &Path, n: u32) -> Seed {
        let seed = Seed::create(dir).unwrap();
        let entries = (0..n)
            .map(|i| entry(3, u64::from(i), 100 + u64::from(i), vec![open_account(i)]))
            .collect();
        seed.apply(entries).unwrap();
        seed
    }

    #[test]
    fn a_streamed_snapshot_installs_with_the_digest_of_the_state_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let from = seed_with_accounts(&dir.path().join("from"), 50);
        let export = from.sm.export_snapshot().unwrap();

        let mut to = Seed::create(&dir.path().join("to")).unwrap();
        let file = std::fs::File::open(&export.path).unwrap();
        let mut asked = None;
        let header = to
            .load_snapshot_from(&export.path, file, |h| {
                asked = h.last_log_id;
                Ok(())
            })
            .unwrap();
        assert_eq!(header.last_log_id, export.last_log_id);
        assert_eq!(asked, export.last_log_id, "asked once the stream was whole");
        assert_eq!(to.applied(), export.last_log_id);
        // The digest taken on the way is the digest of the state written,
        // and of the state it came from.
        let scanned = to.reader().unwrap().digest().unwrap();
        assert_eq!(to.digest().unwrap(), scanned);
        assert_eq!(scanned, export.digest);
        // Once an entry is applied after it, the digest is read again.
        to.apply(vec![entry(3, 50, 900, vec![open_account(50)])])
            .unwrap();
        assert_ne!(to.digest().unwrap(), scanned);
        assert_eq!(to.digest().unwrap(), to.reader().unwrap().digest().unwrap());
    }

    #[test]
    fn a_refused_or_damaged_stream_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let from = seed_with_accounts(&dir.path().join("from"), 50);
        let export = from.sm.export_snapshot().unwrap();
        let bytes = std::fs::read(&export.path).unwrap();

        let mut to = seed_with_accounts(&dir.path().join("to"), 3);
        let before = to.reader().unwrap().digest().unwrap();
        let before_applied = to.applied();
        let still = |to: &Seed| {
            assert_eq!(to.applied(), before_applied);
            assert_eq!(to.reader().unwrap().digest().unwrap(), before);
        };

        // Whole and sound, but the caller's last check says no.
        let e = to
            .load_snapshot_from(&export.path, &bytes[..], |_| {
                Err(StoreError::Refused {
                    source_name: export.path.clone(),
                    detail: "the repository's content checksum failed".into(),
                })
            })
            .unwrap_err();
        assert!(matches!(e, StoreError::Refused { .. }), "{e}");
        still(&to);

        // Cut short: the caller is never asked.
        let mut asked = false;
        let e = to
            .load_snapshot_from(&export.path, &bytes[..bytes.len() - 100], |_| {
                asked = true;
                Ok(())
            })
            .unwrap_err();
        assert!(e.is_corrupt(), "{e}");
        assert!(!asked);
        still(&to);

        // A flipped bit in a row.
        let mut flipped = bytes.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x10;
        assert!(to
            .load_snapshot_from(&export.path, &flipped[..], |_| Ok(()))
            .is_err());
        still(&to);
    }
}
