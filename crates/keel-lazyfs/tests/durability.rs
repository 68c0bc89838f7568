//! What survives `drop_unsynced`: fsynced data does, everything else written does not.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use keel_lazyfs::{Dropped, Limits};

#[test]
fn fsynced_write_survives_drop() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let mut file = File::create(m.at("a")).unwrap();
    file.write_all(b"hello").unwrap();
    file.sync_all().unwrap();
    drop(file);

    assert_eq!(m.fs.dirty_bytes(), 0);
    assert_eq!(m.fs.drop_unsynced(), Dropped { files: 0, bytes: 0 });
    assert_eq!(fs::read(m.at("a")).unwrap(), b"hello");
    assert_eq!(fs::read(m.backing_at("a")).unwrap(), b"hello");
}

#[test]
fn unsynced_write_is_gone_after_drop() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let mut file = File::create(m.at("a")).unwrap();
    file.write_all(b"durable").unwrap();
    file.sync_data().unwrap();
    file.write_all_at(b"XX", 0).unwrap();
    file.write_all_at(b"more", 7).unwrap();
    drop(file); // close persists nothing

    assert_eq!(fs::read(m.at("a")).unwrap(), b"XXrablemore");
    assert_eq!(fs::metadata(m.at("a")).unwrap().len(), 11);
    assert_eq!(m.fs.dirty_bytes(), 6);
    assert_eq!(fs::read(m.backing_at("a")).unwrap(), b"durable");

    assert_eq!(m.fs.drop_unsynced(), Dropped { files: 1, bytes: 6 });
    assert_eq!(m.fs.dirty_bytes(), 0);
    assert_eq!(fs::read(m.at("a")).unwrap(), b"durable");
    assert_eq!(fs::metadata(m.at("a")).unwrap().len(), 7);
}

#[test]
fn extended_file_gets_its_old_length_back() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let file = File::create(m.at("a")).unwrap();
    file.write_all_at(b"abcd", 0).unwrap();
    file.sync_all().unwrap();
    file.set_len(1000).unwrap();
    file.write_all_at(b"z", 2000).unwrap();

    let mut expected = b"abcd".to_vec();
    expected.resize(2001, 0);
    expected[2000] = b'z';
    assert_eq!(fs::read(m.at("a")).unwrap(), expected);
    drop(file);

    m.fs.drop_unsynced();
    assert_eq!(fs::metadata(m.at("a")).unwrap().len(), 4);
    assert_eq!(fs::read(m.at("a")).unwrap(), b"abcd");
}

#[test]
fn truncation_is_undone_by_drop_and_made_durable_by_fsync() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    fs::write(m.at("a"), b"0123456789").unwrap();
    File::open(m.at("a")).unwrap().sync_all().unwrap();

    let file = OpenOptions::new().write(true).open(m.at("a")).unwrap();
    file.set_len(2).unwrap();
    file.set_len(5).unwrap();
    assert_eq!(fs::read(m.at("a")).unwrap(), b"01\0\0\0");
    drop(file);
    assert_eq!(m.fs.drop_unsynced().files, 1);
    assert_eq!(fs::read(m.at("a")).unwrap(), b"0123456789");

    let file = OpenOptions::new().write(true).open(m.at("a")).unwrap();
    file.set_len(3).unwrap();
    file.sync_all().unwrap();
    drop(file);
    m.fs.drop_unsynced();
    assert_eq!(fs::read(m.at("a")).unwrap(), b"012");
}

#[test]
fn created_but_never_fsynced_file_survives_empty() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    fs::write(m.at("new"), b"lost on power loss").unwrap();
    m.fs.drop_unsynced();
    // Metadata is durable at once; the data is not.
    assert_eq!(fs::read(m.at("new")).unwrap(), b"");
}

#[test]
fn open_truncate_and_append_are_lazy_too() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let mut file = File::create(m.at("log")).unwrap();
    file.write_all(b"one\n").unwrap();
    file.sync_all().unwrap();
    drop(file);

    let mut log = OpenOptions::new().append(true).open(m.at("log")).unwrap();
    log.write_all(b"two\n").unwrap();
    log.write_all(b"three\n").unwrap();
    assert_eq!(fs::read(m.at("log")).unwrap(), b"one\ntwo\nthree\n");
    drop(log);

    let mut reader = File::open(m.at("log")).unwrap();
    reader.seek(SeekFrom::Start(4)).unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "two\nthree\n");

    File::create(m.at("log")).unwrap(); // O_TRUNC
    assert_eq!(fs::read(m.at("log")).unwrap(), b"");
    m.fs.drop_unsynced();
    assert_eq!(fs::read(m.at("log")).unwrap(), b"one\n");
}

#[test]
fn large_writes_round_trip() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    fs::write(m.at("big"), &data).unwrap();
    assert_eq!(fs::read(m.at("big")).unwrap(), data);
    let file = File::open(m.at("big")).unwrap();
    file.sync_data().unwrap();
    m.fs.drop_unsynced();
    assert_eq!(fs::read(m.at("big")).unwrap(), data);
}
