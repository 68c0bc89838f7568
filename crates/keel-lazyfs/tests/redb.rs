//! redb on the mount: a process that dies after a durable and a non-durable commit comes back,
//! after the power loss, with exactly the durable one and no corruption.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::path::Path;

use keel_lazyfs::Limits;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("t");

/// Environment variables of the child process: the database file, and whether it ends with a
/// durable commit.
const CHILD_DB_ENV: &str = "KEEL_LAZYFS_REDB_CHILD_DB";
const CHILD_LAST_DURABLE_ENV: &str = "KEEL_LAZYFS_REDB_CHILD_LAST_DURABLE";

/// redb's cache in the child: far smaller than commit B, so redb has to write B's pages to the
/// file (without fsync) before the process dies, instead of keeping them all in its memory.
const CHILD_CACHE_BYTES: usize = 256 * 1024;
/// Values per bulk commit, and their size: 2 MiB in all, eight times the cache.
const VALUES: usize = 32;
const VALUE_BYTES: usize = 64 * 1024;

fn commit(db: &Database, durability: Durability, insert: &[&str], remove: &[&str]) {
    let value = vec![0x5a; VALUE_BYTES];
    let mut txn = db.begin_write().unwrap();
    txn.set_durability(durability).unwrap();
    {
        let mut table = txn.open_table(TABLE).unwrap();
        for key in insert {
            table.insert(*key, value.as_slice()).unwrap();
        }
        for key in remove {
            table.remove(*key).unwrap();
        }
    }
    txn.commit().unwrap();
}

fn bulk_keys(prefix: &str) -> Vec<String> {
    (0..VALUES).map(|i| format!("{prefix}{i}")).collect()
}

fn as_strs(keys: &[String]) -> Vec<&str> {
    keys.iter().map(String::as_str).collect()
}

/// Not a test on its own: the child process of the tests below. It commits A durably, then B
/// (2 MiB) not durably, then, if asked, C durably, and exits without closing the database as a
/// killed node would, so redb gets no chance to make B durable on close. A durable filler,
/// written and deleted first, leaves room in the file so B's writes are not made durable by
/// the fsync redb does when it grows the file.
#[test]
fn redb_writer_child() {
    let Some(db_path) = std::env::var_os(CHILD_DB_ENV) else {
        return;
    };
    let db = Database::builder()
        .set_cache_size(CHILD_CACHE_BYTES)
        .create(&db_path)
        .unwrap();
    let filler = bulk_keys("filler");
    commit(&db, Durability::Immediate, &as_strs(&filler), &[]);
    commit(&db, Durability::Immediate, &["A"], &as_strs(&filler));
    commit(&db, Durability::Immediate, &[], &[]); // frees the filler's pages
    commit(&db, Durability::None, &as_strs(&bulk_keys("B")), &[]);
    if std::env::var_os(CHILD_LAST_DURABLE_ENV).is_some() {
        commit(&db, Durability::Immediate, &["C"], &[]);
    }
    std::process::exit(0);
}

/// Which of A, all of B, and C the database holds; panics on any partial B.
fn keys(db_path: &Path) -> Vec<&'static str> {
    let db = Database::create(db_path).unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(TABLE).unwrap();
    let has = |key: &str| table.get(key).unwrap().is_some();
    let b_count = bulk_keys("B").iter().filter(|k| has(k)).count();
    assert!(
        b_count == 0 || b_count == VALUES,
        "B is all or nothing: {b_count}"
    );
    let mut present = Vec::new();
    if has("A") {
        present.push("A");
    }
    if b_count == VALUES {
        present.push("B");
    }
    if has("C") {
        present.push("C");
    }
    assert!(bulk_keys("filler").iter().all(|k| !has(k)));
    present
}

#[test]
fn non_durable_commit_is_lost_and_durable_one_kept() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let db = m.at("store.redb");
    assert!(common::run_child("redb_writer_child", &[(CHILD_DB_ENV, &db)]).success());

    let dropped = m.fs.drop_unsynced();
    assert!(
        dropped.bytes >= (VALUE_BYTES * VALUES) as u64 / 2,
        "most of B reached the file but not the disk: {dropped:?}"
    );
    assert_eq!(keys(&db), ["A"]);
}

#[test]
fn durable_commit_after_a_non_durable_one_keeps_both() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let db = m.at("store.redb");
    let env = [
        (CHILD_DB_ENV, db.as_path()),
        (CHILD_LAST_DURABLE_ENV, Path::new("1")),
    ];
    assert!(common::run_child("redb_writer_child", &env).success());

    m.fs.drop_unsynced();
    assert_eq!(keys(&db), ["A", "B", "C"]);
}
