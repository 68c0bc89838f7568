//! Mounting and unmounting: refusals, a crashed process's stale mount, a busy unmount.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use keel_lazyfs::{LazyFs, LazyFsError, Limits};

#[test]
fn mount_refuses_a_live_mountpoint_and_overlapping_directories() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let other = m.dir.path().join("other");
    fs::create_dir(&other).unwrap();
    match LazyFs::mount(&other, &m.mnt, Limits::default()) {
        Err(LazyFsError::AlreadyMounted(_)) => {}
        other => panic!("expected AlreadyMounted, got {other:?}"),
    }
    let inner = m.backing.join("inner");
    fs::create_dir(&inner).unwrap();
    match LazyFs::mount(&m.backing, &inner, Limits::default()) {
        Err(LazyFsError::Overlap { .. }) => {}
        other => panic!("expected Overlap, got {other:?}"),
    }
}

/// Environment variable naming the directory a child process mounts in and then abandons.
const STALE_CHILD_ENV: &str = "KEEL_LAZYFS_STALE_MOUNT_DIR";

/// Not a test on its own: the child process of `stale_mount_of_a_crashed_process_is_replaced`.
/// It mounts, writes, and exits without unmounting, as a crashed harness would.
#[test]
fn stale_mount_child() {
    let Some(dir) = std::env::var_os(STALE_CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let fs = LazyFs::mount(&dir.join("backing"), &dir.join("mnt"), Limits::default()).unwrap();
    fs::write(dir.join("mnt/f"), b"written by the dead").unwrap();
    std::mem::forget(fs);
    std::process::exit(0);
}

/// A directory holding `backing` and `mnt`, with a mount on `mnt` left behind by a child
/// process that exited without unmounting; `None` (after saying why) where FUSE is missing.
fn stale_mount() -> Option<(tempfile::TempDir, PathBuf, PathBuf)> {
    if !common::fuse_or_skip() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let (backing, mnt) = common::dirs_in(dir.path());
    let status = common::run_child("stale_mount_child", &[(STALE_CHILD_ENV, dir.path())]);
    assert!(status.success());
    Some((dir, backing, mnt))
}

#[test]
fn stale_mount_of_a_crashed_process_is_replaced() {
    let Some((_dir, backing, mnt)) = stale_mount() else {
        return;
    };
    assert_eq!(
        fs::metadata(&mnt).unwrap_err().raw_os_error(),
        Some(libc::ENOTCONN),
        "the dead process left its mount behind"
    );

    let fs = LazyFs::mount(&backing, &mnt, Limits::default()).unwrap();
    // The dead process never fsynced: its file exists (metadata is immediate) but is empty.
    assert_eq!(fs::read(mnt.join("f")).unwrap(), b"");
    fs.unmount().unwrap();
    assert!(common::names(&mnt).is_empty());
}

#[test]
fn stale_mounts_under_a_directory_are_detached_so_it_can_be_removed() {
    let Some((dir, _, mnt)) = stale_mount() else {
        return;
    };
    assert!(
        fs::remove_dir_all(dir.path()).is_err(),
        "a stale mount blocks removal"
    );

    assert_eq!(keel_lazyfs::detach_stale_under(dir.path()).unwrap(), 1);
    assert!(
        common::names(&mnt).is_empty(),
        "the mountpoint is a plain directory again"
    );
    assert_eq!(keel_lazyfs::detach_stale_under(dir.path()).unwrap(), 0);
    fs::remove_dir_all(dir.path()).unwrap();
}

#[test]
fn unmount_while_a_file_is_open_detaches_and_the_file_keeps_working() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.at("open"))
        .unwrap();
    let common::Mounted { fs, mnt, dir, .. } = m;
    fs.unmount().unwrap();
    assert!(
        common::names(&mnt).is_empty(),
        "the mountpoint is free again"
    );

    file.write_all(b"after").unwrap();
    file.seek(SeekFrom::Start(0)).unwrap();
    let mut content = String::new();
    file.read_to_string(&mut content).unwrap();
    assert_eq!(content, "after");
    drop(file);
    drop(dir);
}
