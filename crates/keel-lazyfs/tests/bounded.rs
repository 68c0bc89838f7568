//! Dirty data is bounded: past the limit the largest files are written back (without fsync).

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::fs::{self, File};
use std::os::unix::fs::FileExt;

use keel_lazyfs::Limits;

/// Small enough that the test writes many times the limit.
const LIMIT_BYTES: u64 = 64 * 1024;
const CHUNK_BYTES: usize = 4096;
const CHUNKS_PER_FILE: usize = 128;

fn chunk(file: usize, index: usize) -> Vec<u8> {
    vec![(file * 31 + index) as u8; CHUNK_BYTES]
}

#[test]
fn dirty_bytes_stay_under_the_limit_and_reads_see_every_write() {
    let Some(m) = common::mount(Limits {
        dirty_bytes_max: LIMIT_BYTES,
    }) else {
        return;
    };
    let files: Vec<File> = (0..2)
        .map(|i| File::create(m.at(&format!("f{i}"))).unwrap())
        .collect();
    for index in 0..CHUNKS_PER_FILE {
        for (i, file) in files.iter().enumerate() {
            file.write_all_at(&chunk(i, index), (index * CHUNK_BYTES) as u64)
                .unwrap();
            assert!(m.fs.dirty_bytes() <= LIMIT_BYTES, "{}", m.fs.dirty_bytes());
        }
    }
    drop(files);
    assert!(
        m.fs.dirty_bytes() > 0,
        "the last writes are still in memory"
    );

    for i in 0..2 {
        let expected: Vec<u8> = (0..CHUNKS_PER_FILE).flat_map(|c| chunk(i, c)).collect();
        assert_eq!(fs::read(m.at(&format!("f{i}"))).unwrap(), expected);
    }
    let dropped = m.fs.drop_unsynced();
    assert!(dropped.bytes > 0 && dropped.bytes <= LIMIT_BYTES);
    assert_eq!(m.fs.dirty_bytes(), 0);
}

#[test]
fn a_single_write_larger_than_the_limit_goes_straight_back() {
    let Some(m) = common::mount(Limits {
        dirty_bytes_max: LIMIT_BYTES,
    }) else {
        return;
    };
    let data = vec![7u8; 4 * LIMIT_BYTES as usize];
    fs::write(m.at("big"), &data).unwrap();
    assert!(m.fs.dirty_bytes() <= LIMIT_BYTES);
    assert_eq!(fs::read(m.at("big")).unwrap(), data);
}
