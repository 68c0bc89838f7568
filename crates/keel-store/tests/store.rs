//! The stores on real files: keel batches applied and read back after a
//! reopen and after a simulated crash, snapshots carried from one store to
//! another, and damaged files (log records, state metadata, snapshots)
//! refused with the file and location named.
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test file: a failed unwrap is a failed test.

use std::collections::BTreeSet;
use std::path::Path;

use keel_domain::model::OrderStatus;
use keel_domain::{
    query, AccountId, AccountKind, Batch, Command, Currency, Envelope, LineRequest, Minor, OrderId,
    Principal, ProductName, RequestId, Sku, Table,
};
use keel_store::{LogStore, StateMachineStore, StoreError, TypeConfig};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader,
    RaftSnapshotBuilder, StorageError, Vote,
};
use redb::{ReadableTable, TableDefinition};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T0: u64 = 1_700_000_000_000;
const TERM: u64 = 1;
const LOG_TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(TERM, 1), index)
}

fn env(n: usize, principal: Principal, command: Command) -> Envelope {
    Envelope {
        request_id: RequestId::new(format!("req-{n}")).unwrap(),
        principal,
        origin: None,
        command,
    }
}

fn admin(n: usize, command: Command) -> Envelope {
    env(n, Principal::Admin, command)
}

fn open_account(id: &str, kind: AccountKind) -> Command {
    Command::OpenAccount {
        id: AccountId::new(id).unwrap(),
        kind,
        currency: Currency::new("EUR").unwrap(),
    }
}

fn upsert(sku: &str, price: i64) -> Command {
    Command::UpsertProduct {
        sku: Sku::new(sku).unwrap(),
        name: ProductName::new(format!("product {sku}")).unwrap(),
        price: Minor(price),
        currency: Currency::new("EUR").unwrap(),
        active: true,
    }
}

/// A small shop as a sequence of batches: accounts, products with stock,
/// deposits, then orders placed, one paid and one cancelled.
fn shop_batches() -> Vec<Batch> {
    let alice = || Principal::customer(AccountId::new("alice").unwrap());
    let place = |sku: &str, qty: u64| Command::PlaceOrder {
        customer: AccountId::new("alice").unwrap(),
        lines: vec![LineRequest {
            sku: Sku::new(sku).unwrap(),
            qty,
        }],
        ttl_seconds: None,
    };
    vec![
        Batch {
            leader_time_ms: T0,
            commands: vec![
                admin(1, open_account("shop", AccountKind::Merchant)),
                admin(2, open_account("world", AccountKind::External)),
                admin(3, open_account("alice", AccountKind::Customer)),
            ],
        },
        Batch {
            leader_time_ms: T0 + 10,
            commands: vec![
                admin(4, upsert("A", 100)),
                admin(5, upsert("B", 250)),
                admin(
                    6,
                    Command::Restock {
                        sku: Sku::new("A").unwrap(),
                        qty: 50,
                    },
                ),
                admin(
                    7,
                    Command::Restock {
                        sku: Sku::new("B").unwrap(),
                        qty: 20,
                    },
                ),
                admin(
                    8,
                    Command::Deposit {
                        account: AccountId::new("alice").unwrap(),
                        amount: Minor(100_000),
                    },
                ),
            ],
        },
        Batch {
            leader_time_ms: T0 + 20,
            commands: vec![
                env(9, alice(), place("A", 3)),
                env(10, alice(), place("B", 2)),
            ],
        },
        Batch {
            leader_time_ms: T0 + 30,
            commands: vec![
                env(11, alice(), Command::PayOrder { order: OrderId(1) }),
                env(12, alice(), Command::CancelOrder { order: OrderId(2) }),
            ],
        },
    ]
}

/// Entries for `batches` from index `first`, after a membership entry at
/// `first - 1` when `first` is 2 (a blank entry at index 0 opens the log).
fn entries(batches: Vec<Batch>, first: u64) -> Vec<Entry<TypeConfig>> {
    batches
        .into_iter()
        .enumerate()
        .map(|(i, b)| Entry {
            log_id: log_id(first + i as u64),
            payload: EntryPayload::Normal(b),
        })
        .collect()
}

fn preamble() -> Vec<Entry<TypeConfig>> {
    let members: BTreeSet<u64> = [1, 2, 3].into_iter().collect();
    vec![
        Entry {
            log_id: log_id(0),
            payload: EntryPayload::Blank,
        },
        Entry {
            log_id: log_id(1),
            payload: EntryPayload::Membership(Membership::<u64, BasicNode>::new(
                vec![members],
                None,
            )),
        },
    ]
}

/// Appends and applies the preamble and the shop, returning every entry.
async fn fill(log: &mut LogStore, sm: &mut StateMachineStore) -> Vec<Entry<TypeConfig>> {
    let mut all = preamble();
    all.extend(entries(shop_batches(), 2));
    log.blocking_append(all.clone()).await.unwrap();
    let out = sm.apply(all.clone()).await.unwrap();
    assert_eq!(out.len(), all.len(), "one response per entry");
    assert!(out[0].is_empty() && out[1].is_empty(), "blank, membership");
    for (i, r) in out[2..].iter().enumerate() {
        assert!(
            r.iter().all(|a| a.result.is_ok()),
            "batch {i} refused something: {r:?}"
        );
    }
    all
}

/// What the tests compare: digest, applied id, an order, a balance.
fn observe(sm: &StateMachineStore) -> ([u8; 32], Option<LogId<u64>>, OrderStatus, i64) {
    let r = sm.reader().unwrap();
    let order = query::order(&r, OrderId(1)).unwrap().expect("order 1");
    let alice = query::account(&r, &AccountId::new("alice").unwrap())
        .unwrap()
        .expect("alice");
    (
        r.digest().unwrap(),
        r.applied().unwrap(),
        order.status,
        alice.balance.0,
    )
}

fn open(dir: &Path) -> (LogStore, StateMachineStore) {
    keel_store::open(dir).unwrap()
}

/// A data directory holding the preamble and the shop, closed.
fn filled() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (mut log, mut sm) = open(dir.path());
        fill(&mut log, &mut sm).await;
    });
    dir
}

fn open_err(dir: &Path) -> StoreError {
    match keel_store::open(dir) {
        Ok(_) => panic!("opened a damaged store"),
        Err(e) => e,
    }
}

#[test]
fn applied_state_and_log_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let (before, all) = rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        let all = fill(&mut log, &mut sm).await;
        log.save_vote(&Vote::new(TERM, 1)).await.unwrap();
        log.save_committed(Some(log_id(5))).await.unwrap();
        assert_eq!(sm.last_applied(), Some(log_id(5)));
        (observe(&sm), all)
    });
    assert_eq!(before.1, Some(log_id(5)));
    assert_eq!(before.2, OrderStatus::Paid);
    assert_eq!(before.3, 100_000 - 300);

    rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        assert_eq!(sm.last_applied(), Some(log_id(5)));
        assert_eq!(observe(&sm), before);
        assert_eq!(log.try_get_log_entries(0..).await.unwrap(), all);
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(TERM, 1)));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(5)));
        let (applied, membership) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(5)));
        assert_eq!(membership.log_id(), &Some(log_id(1)));
    });
}

#[test]
fn the_same_entries_give_the_same_digest_on_another_store() {
    let rt = rt();
    let digests: Vec<_> = (0..2)
        .map(|_| {
            let dir = tempfile::tempdir().unwrap();
            rt.block_on(async {
                let (mut log, mut sm) = open(dir.path());
                fill(&mut log, &mut sm).await;
                observe(&sm)
            })
        })
        .collect();
    assert_eq!(digests[0], digests[1]);
}

#[test]
fn purge_and_truncate_are_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        fill(&mut log, &mut sm).await;
        // As openraft does: a snapshot covers what is purged (the log is
        // purged only behind what the state holds durably).
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(log_id(2)).await.unwrap();
        log.truncate(log_id(5)).await.unwrap();
    });
    rt.block_on(async {
        let (mut log, _sm) = open(dir.path());
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(2)));
        assert_eq!(st.last_log_id, Some(log_id(4)));
        let left: Vec<u64> = log
            .try_get_log_entries(0..)
            .await
            .unwrap()
            .iter()
            .map(|e| e.log_id.index)
            .collect();
        assert_eq!(left, vec![3, 4]);
    });
}

#[test]
fn a_wide_log_read_returns_the_whole_range_and_replication_reads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let n = keel_store::REPLICATION_READ_ENTRIES_MAX as u64 + 100;
    rt().block_on(async {
        let (mut log, _sm) = open(dir.path());
        let blanks: Vec<Entry<TypeConfig>> = (1..=n)
            .map(|i| Entry {
                log_id: log_id(i),
                payload: EntryPayload::Blank,
            })
            .collect();
        log.blocking_append(blanks).await.unwrap();
        assert_eq!(
            log.try_get_log_entries(1..=n).await.unwrap().len() as u64,
            n
        );
        let limited = log.limited_get_log_entries(1, n + 1).await.unwrap();
        assert_eq!(limited.len(), keel_store::REPLICATION_READ_ENTRIES_MAX);
        assert_eq!(limited[0].log_id.index, 1);
        assert_eq!(
            log.limited_get_log_entries(n, n + 1).await.unwrap().len(),
            1
        );
    });
}

#[test]
fn concurrent_appends_are_flushed_in_order_and_survive_a_reopen() {
    // openraft does not wait for one append's flush before the next: the
    // writer takes them in the order they were made, commits runs of them
    // together, and reports each flushed only once it is on disk.
    let dir = tempfile::tempdir().unwrap();
    let n = 3 * keel_store::LOG_WRITE_GROUP_MAX as u64 + 7;
    // One thread: tasks first run in the order they were spawned, so the
    // appends are queued in index order, all before the first is flushed.
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    one_thread.block_on(async {
        let (log, _sm) = open(dir.path());
        let appends: Vec<_> = (1..=n)
            .map(|i| {
                let mut log = log.clone();
                tokio::spawn(async move {
                    let e = Entry {
                        log_id: log_id(i),
                        payload: EntryPayload::Blank,
                    };
                    log.blocking_append([e]).await
                })
            })
            .collect();
        for a in appends {
            a.await.unwrap().unwrap();
        }
        let mut reader = log.clone();
        let got = reader.try_get_log_entries(1..=n).await.unwrap();
        let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
        assert_eq!(indexes, (1..=n).collect::<Vec<_>>());
    });
    // Flushed means on disk: a fresh open of the files finds every entry.
    rt().block_on(async {
        let (mut log, _sm) = open(dir.path());
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(log_id(n))
        );
        assert_eq!(
            log.try_get_log_entries(1..=n).await.unwrap().len() as u64,
            n
        );
    });
}

/// Streams a store's current snapshot into another store and installs it.
async fn transfer(
    from: &mut StateMachineStore,
    to: &mut StateMachineStore,
) -> Result<(), StorageError<u64>> {
    let mut snap = from.get_current_snapshot().await?.expect("a snapshot");
    let mut rx = to.begin_receiving_snapshot().await?;
    tokio::io::copy(&mut snap.snapshot, &mut *rx).await.unwrap();
    to.install_snapshot(&snap.meta, rx).await
}

async fn snapshot_bytes(
    sm: &mut StateMachineStore,
) -> (openraft::SnapshotMeta<u64, BasicNode>, Vec<u8>) {
    let mut snap = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    let mut bytes = Vec::new();
    snap.snapshot.read_to_end(&mut bytes).await.unwrap();
    (snap.meta, bytes)
}

fn snapshot_files(sm: &StateMachineStore) -> Vec<String> {
    dir_files(sm.snapshot_dir())
}

#[test]
fn a_snapshot_carries_the_state_to_a_fresh_store() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rt = rt();
    let want = rt.block_on(async {
        let (mut log_a, mut a) = open(a_dir.path());
        let (_log_b, mut b) = open(b_dir.path());
        fill(&mut log_a, &mut a).await;
        let built = a
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(built.meta.last_log_id, Some(log_id(5)));
        assert_eq!(built.meta.last_membership.log_id(), &Some(log_id(1)));
        // A second build replaces the first: one snapshot file is kept.
        let built = a
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        assert_eq!(snapshot_files(&a).len(), 1, "{:?}", snapshot_files(&a));

        transfer(&mut a, &mut b).await.unwrap();
        assert_eq!(observe(&b), observe(&a));
        assert_eq!(b.last_applied(), Some(log_id(5)));
        assert_eq!(
            b.applied_state().await.unwrap(),
            a.applied_state().await.unwrap()
        );
        let current = b.get_current_snapshot().await.unwrap().expect("installed");
        assert_eq!(current.meta, built.meta);
        assert_eq!(snapshot_files(&b).len(), 1, "{:?}", snapshot_files(&b));

        // Both go on applying the same entries and stay equal.
        let more = entries(
            vec![Batch {
                leader_time_ms: T0 + 40,
                commands: vec![admin(13, upsert("C", 5))],
            }],
            6,
        );
        a.apply(more.clone()).await.unwrap();
        b.apply(more).await.unwrap();
        assert_eq!(observe(&b), observe(&a));
        observe(&b)
    });
    // The installed state and snapshot survive a reopen.
    rt.block_on(async {
        let (_log_b, mut b) = open(b_dir.path());
        assert_eq!(observe(&b), want);
        assert!(b.get_current_snapshot().await.unwrap().is_some());
    });
}

#[test]
fn a_damaged_snapshot_is_refused_and_changes_nothing() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    rt().block_on(async {
        let (mut log_a, mut a) = open(a_dir.path());
        fill(&mut log_a, &mut a).await;
        a.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let (meta, good) = snapshot_bytes(&mut a).await;

        // The receiver has state of its own and a snapshot of it.
        let (mut log_b, mut b) = open(b_dir.path());
        let mut own = preamble();
        own.extend(entries(shop_batches()[..2].to_vec(), 2));
        log_b.blocking_append(own.clone()).await.unwrap();
        b.apply(own).await.unwrap();
        b.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let before = (b.reader().unwrap().digest().unwrap(), b.last_applied());
        let (before_meta, _) = snapshot_bytes(&mut b).await;
        let files = snapshot_files(&b);

        let mut flipped = good.clone();
        flipped[good.len() / 2] ^= 0x01;
        let mut bad_version = good.clone();
        bad_version[8] = 99;
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated in the middle", good[..good.len() / 2].to_vec()),
            ("truncated checksum", good[..good.len() - 1].to_vec()),
            ("one flipped byte", flipped),
            ("unknown version", bad_version),
            ("empty", Vec::new()),
        ];
        for (what, bytes) in cases {
            let mut rx = b.begin_receiving_snapshot().await.unwrap();
            rx.write_all(&bytes).await.unwrap();
            let err = b.install_snapshot(&meta, rx).await.unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("corrupt data in"), "{what}: {msg}");
            assert!(
                msg.contains("wipe this node's data directory"),
                "{what}: {msg}"
            );
            assert_eq!(
                (b.reader().unwrap().digest().unwrap(), b.last_applied()),
                before,
                "{what} changed the state"
            );
            let (m, _) = snapshot_bytes(&mut b).await;
            assert_eq!(m, before_meta, "{what} changed the current snapshot");
            assert_eq!(snapshot_files(&b), files, "{what} left files behind");
        }

        // A good file announced with the wrong log id is refused too.
        let mut wrong = meta.clone();
        wrong.last_log_id = Some(log_id(99));
        let mut rx = b.begin_receiving_snapshot().await.unwrap();
        rx.write_all(&good).await.unwrap();
        assert!(b.install_snapshot(&wrong, rx).await.is_err());
        assert_eq!(b.last_applied(), before.1);

        // And the good one still installs.
        let mut rx = b.begin_receiving_snapshot().await.unwrap();
        rx.write_all(&good).await.unwrap();
        b.install_snapshot(&meta, rx).await.unwrap();
        assert_eq!(observe(&b), observe(&a));
    });
}

#[test]
fn a_damaged_current_snapshot_is_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let file = rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        fill(&mut log, &mut sm).await;
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        sm.snapshot_dir().join(&snapshot_files(&sm)[0])
    });
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x80;
    std::fs::write(&file, &bytes).unwrap();
    rt.block_on(async {
        let (_log, mut sm) = open(dir.path());
        let err = sm.get_current_snapshot().await.unwrap_err().to_string();
        assert!(
            err.contains("corrupt data in") && err.contains("snap-"),
            "{err}"
        );
    });
    std::fs::remove_file(&file).unwrap();
    let err = open_err(dir.path());
    assert!(err.is_corrupt(), "{err}");
    assert!(
        err.to_string().contains("current snapshot file is missing"),
        "{err}"
    );
}

/// Every start of `needle` in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn a_flipped_byte_in_a_log_record_is_caught_at_open() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (mut log, _sm) = open(dir.path());
        // One entry per append, each carrying a SKU that marks its index.
        for i in 1..=6u64 {
            let b = Batch {
                leader_time_ms: T0,
                commands: vec![admin(i as usize, upsert(&format!("MARKER-{i:04}"), 1))],
            };
            log.blocking_append(entries(vec![b], i)).await.unwrap();
        }
    });
    let path = dir.path().join(keel_store::LOG_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    // redb copies pages on write, so stale copies may hold the marker too:
    // flip it everywhere, which certainly includes the live record.
    let hits = find_all(&bytes, b"MARKER-0004");
    assert!(!hits.is_empty(), "marker not found in the file");
    for at in hits {
        bytes[at] ^= 0x01;
    }
    std::fs::write(&path, &bytes).unwrap();

    let err = open_err(dir.path());
    let msg = err.to_string();
    assert!(err.is_corrupt(), "{msg}");
    assert!(msg.contains("log.redb"), "{msg}");
    assert!(msg.contains("log index 4"), "{msg}");
    assert!(msg.contains("checksum mismatch"), "{msg}");
    assert!(msg.contains("wipe this node's data directory"), "{msg}");
}

#[test]
fn a_torn_last_record_is_caught_at_open() {
    let dir = filled();
    // Write a short record after the last one, as a torn write would leave.
    let path = dir.path().join(keel_store::LOG_FILE);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LOG_TABLE)
            .unwrap()
            .insert(6, [1u8, 2, 3].as_slice())
            .unwrap();
        txn.commit().unwrap();
    }
    let err = open_err(dir.path());
    let msg = err.to_string();
    assert!(err.is_corrupt() && msg.contains("log index 6"), "{msg}");
    assert!(msg.contains("torn write"), "{msg}");
}

#[test]
fn a_gap_in_the_log_is_caught_at_open() {
    let dir = filled();
    let path = dir.path().join(keel_store::LOG_FILE);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(LOG_TABLE).unwrap().remove(3).unwrap();
        txn.commit().unwrap();
    }
    let msg = open_err(dir.path()).to_string();
    assert!(
        msg.contains("log index 4") && msg.contains("gap after log index 2"),
        "{msg}"
    );
}

#[test]
fn damaged_state_metadata_is_caught_at_open() {
    let dir = filled();
    let path = dir.path().join(keel_store::STATE_FILE);
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut t = txn.open_table(SM_META).unwrap();
            let mut v = t.get("applied").unwrap().unwrap().value().to_vec();
            v[1] ^= 0x10;
            t.insert("applied", v.as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = open_err(dir.path());
    let msg = err.to_string();
    assert!(err.is_corrupt(), "{msg}");
    assert!(
        msg.contains("state.redb") && msg.contains("state meta applied"),
        "{msg}"
    );
}

#[test]
fn a_second_open_of_the_same_directory_is_refused_as_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let err = open_err(dir.path());
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    assert!(!err.to_string().contains("wipe"), "{err}");
}

/// Overwrites one row of a domain table with `value` while the store is
/// closed.
fn poke_row(state: &Path, table: Table, key: &[u8], f: impl FnOnce(Vec<u8>) -> Vec<u8>) {
    let db = redb::Database::create(state).unwrap();
    let txn = db.begin_write().unwrap();
    {
        let def: TableDefinition<&[u8], &[u8]> = TableDefinition::new(table.name());
        let mut t = txn.open_table(def).unwrap();
        let v = t.get(key).unwrap().unwrap().value().to_vec();
        t.insert(key, f(v).as_slice()).unwrap();
    }
    txn.commit().unwrap();
}

#[test]
fn a_corrupt_row_met_by_apply_is_a_storage_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        fill(&mut log, &mut sm).await;
    });
    poke_row(
        &dir.path().join(keel_store::STATE_FILE),
        Table::Products,
        b"A",
        |mut v| {
            v[3] ^= 0xff;
            v
        },
    );
    rt.block_on(async {
        let (_log, mut sm) = open(dir.path());
        let before = sm.reader().unwrap().applied().unwrap();
        let restock = entries(
            vec![Batch {
                leader_time_ms: T0 + 50,
                commands: vec![admin(
                    20,
                    Command::Restock {
                        sku: Sku::new("A").unwrap(),
                        qty: 1,
                    },
                )],
            }],
            6,
        );
        let err = sm.apply(restock).await.unwrap_err().to_string();
        assert!(
            err.contains("table products") && err.contains("state.redb"),
            "{err}"
        );
        assert_eq!(sm.reader().unwrap().applied().unwrap(), before);
        assert_eq!(sm.last_applied(), before);
    });
}

fn restock(n: usize, sku: &str, qty: u64) -> Envelope {
    admin(
        n,
        Command::Restock {
            sku: Sku::new(sku).unwrap(),
            qty,
        },
    )
}

fn on_hand(sm: &StateMachineStore, sku: &str) -> u64 {
    query::product(&sm.reader().unwrap(), &Sku::new(sku).unwrap())
        .unwrap()
        .expect("product")
        .stock
        .on_hand
}

#[test]
fn applied_entries_wait_for_a_commit_but_every_reader_sees_them() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let (mut log, mut sm) = open(dir.path());
        fill(&mut log, &mut sm).await;
        let stock = on_hand(&sm, "A");
        assert_eq!(sm.uncommitted_commands(), 0, "the reader committed them");

        let one = entries(
            vec![Batch {
                leader_time_ms: T0 + 50,
                commands: vec![restock(20, "A", 1)],
            }],
            6,
        );
        sm.apply(one).await.unwrap();
        assert_eq!(sm.uncommitted_commands(), 1, "one command waits");
        assert_eq!(on_hand(&sm, "A"), stock + 1, "and a reader sees it");
        assert_eq!(sm.uncommitted_commands(), 0);

        // Without readers, the open transaction is committed once it holds
        // APPLY_COMMANDS_PER_COMMIT_MAX commands.
        let max = keel_store::APPLY_COMMANDS_PER_COMMIT_MAX as usize;
        let batches = (0..max)
            .map(|i| Batch {
                leader_time_ms: T0 + 60,
                commands: vec![restock(100 + i, "A", 1)],
            })
            .collect::<Vec<_>>();
        let mut pending = entries(batches, 7).into_iter();
        for applied in 1..max {
            sm.apply(pending.next()).await.unwrap();
            assert_eq!(sm.uncommitted_commands(), applied as u64);
        }
        sm.apply(pending.next()).await.unwrap();
        assert_eq!(sm.uncommitted_commands(), 0, "committed at the limit");
        assert_eq!(on_hand(&sm, "A"), stock + 1 + max as u64);
    });
}

#[cfg(debug_assertions)]
#[test]
fn broken_invariants_after_apply_are_a_storage_error_in_debug_builds() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        fill(&mut log, &mut sm).await;
    });
    // A well-formed record with one more unit on hand than its ledger explains.
    poke_row(
        &dir.path().join(keel_store::STATE_FILE),
        Table::Products,
        b"B",
        |v| {
            let mut p: keel_domain::Product =
                keel_domain::codec::decode(Table::Products, b"B", &v).unwrap();
            p.stock.on_hand += 1;
            keel_domain::codec::encode(&p)
        },
    );
    rt.block_on(async {
        let (_log, mut sm) = open(dir.path());
        let empty = entries(
            vec![Batch {
                leader_time_ms: T0 + 50,
                commands: Vec::new(),
            }],
            6,
        );
        let err = sm.apply(empty).await.unwrap_err().to_string();
        assert!(err.contains("invariants violated"), "{err}");
        assert_eq!(sm.last_applied(), Some(log_id(5)));
    });
}

/// Set in the child process of the crash test.
const CRASH_CHILD_DIR: &str = "KEEL_STORE_CRASH_CHILD_DIR";

/// The child half of `unsynced_applies_are_lost_in_a_crash_and_replayed`:
/// appends (fsynced) and applies (not fsynced) the shop, then dies without
/// unwinding or closing anything, as kill -9 would.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CRASH_CHILD_DIR) else {
        return;
    };
    rt().block_on(async {
        let (mut log, mut sm) = open(Path::new(&dir));
        let mut first = preamble();
        first.extend(entries(shop_batches()[..1].to_vec(), 2));
        log.blocking_append(first.clone()).await.unwrap();
        sm.apply(first).await.unwrap();
        // A snapshot makes everything up to index 2 durable.
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        let rest = entries(shop_batches()[1..].to_vec(), 3);
        log.blocking_append(rest.clone()).await.unwrap();
        sm.apply(rest).await.unwrap();
        assert_eq!(sm.last_applied(), Some(log_id(5)));
        // Die while the stores are open: dropping them would close redb
        // cleanly, which makes every commit durable.
        std::process::abort();
    });
}

#[test]
fn unsynced_applies_are_lost_in_a_crash_and_replayed_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was meant to abort");

    // What an uncrashed store holds after the same entries.
    let ref_dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let want = rt.block_on(async {
        let (mut log, mut sm) = open(ref_dir.path());
        fill(&mut log, &mut sm).await;
        observe(&sm)
    });

    rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        // The state is back at its last durable commit (the snapshot's),
        // the log kept every fsynced append.
        assert_eq!(sm.last_applied(), Some(log_id(2)));
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(5)));
        let snap = sm.get_current_snapshot().await.unwrap().expect("snapshot");
        assert_eq!(snap.meta.last_log_id, Some(log_id(2)));
        // openraft re-applies from the log; the state ends where it was.
        let replay = log.try_get_log_entries(3..).await.unwrap();
        sm.apply(replay).await.unwrap();
        assert_eq!(observe(&sm), want);
    });
}

/// The data directory's file names, sorted.
fn dir_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Builds a snapshot and purges the log up to it, as openraft does.
async fn snapshot_and_purge(log: &mut LogStore, sm: &mut StateMachineStore) {
    let snap = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    log.purge(snap.meta.last_log_id.unwrap()).await.unwrap();
}

#[test]
fn a_rebuilt_state_equals_the_one_it_replaces_with_or_without_a_snapshot() {
    for with_snapshot in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let before = rt.block_on(async {
            let (mut log, mut sm) = open(dir.path());
            let all = fill(&mut log, &mut sm).await;
            log.save_committed(Some(all.last().unwrap().log_id))
                .await
                .unwrap();
            if with_snapshot {
                snapshot_and_purge(&mut log, &mut sm).await;
            }
            observe(&sm)
        });
        let r = keel_store::rebuild::rebuild_state(dir.path()).unwrap();
        let aside = r.kept_aside.clone().expect("the old state kept aside");
        assert!(aside.is_file(), "{}", aside.display());
        assert_eq!(r.from_snapshot.is_some(), with_snapshot, "{r:?}");
        rt.block_on(async {
            let (mut log, mut sm) = open(dir.path());
            // What openraft does at start: re-apply the committed log after
            // what the state holds.
            let from = sm.applied_state().await.unwrap().0.map_or(0, |l| l.index);
            let rest = log.try_get_log_entries(from + 1..).await.unwrap();
            sm.apply(rest).await.unwrap();
            assert_eq!(observe(&sm), before, "with a snapshot: {with_snapshot}");
        });
    }
}

#[test]
fn rebuilding_refuses_when_the_log_is_purged_past_every_intact_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let snap = rt.block_on(async {
        let (mut log, mut sm) = open(dir.path());
        fill(&mut log, &mut sm).await;
        snapshot_and_purge(&mut log, &mut sm).await;
        sm.snapshot_dir().join(&snapshot_files(&sm)[0])
    });
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x80;
    std::fs::write(&snap, &bytes).unwrap();
    let files = dir_files(dir.path());
    let err = keel_store::rebuild::rebuild_state(dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("no intact snapshot") && msg.contains("new member"),
        "{msg}"
    );
    assert_eq!(
        dir_files(dir.path()),
        files,
        "a refused rebuild moved files"
    );
    assert!(snap.is_file());
}

#[test]
fn flipped_bits_in_a_state_page_are_caught_at_open_with_the_rebuild_command() {
    let dir = filled();
    let path = dir.path().join(keel_store::STATE_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let hits = find_all(&bytes, b"alice");
    assert!(!hits.is_empty());
    for at in hits {
        bytes[at + 1] ^= 0x01;
    }
    std::fs::write(&path, &bytes).unwrap();
    let err = open_err(dir.path());
    let msg = err.to_string();
    assert!(err.is_corrupt(), "{msg}");
    assert!(
        msg.contains("state.redb") && msg.contains(keel_store::REBUILD_COMMAND),
        "{msg}"
    );
}
