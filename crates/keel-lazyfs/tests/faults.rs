//! Injected disk faults: writes and fsyncs fail as a full or failing disk's
//! do, a failed fsync loses what it was to make durable, and the disk works
//! again once healed.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;

use keel_lazyfs::{DiskFault, Limits};

#[test]
fn a_full_or_failing_disk_refuses_writes_until_healed() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let file = File::create(m.at("a")).unwrap();
    for (fault, errno) in [
        (DiskFault::NoSpaceOnWrite, libc::ENOSPC),
        (DiskFault::IoErrorOnWrite, libc::EIO),
    ] {
        m.fs.set_fault(fault);
        let e = file.write_all_at(b"x", 0).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(errno), "{fault:?}: {e}");
    }
    m.fs.set_fault(DiskFault::Healthy);
    file.write_all_at(b"ok", 0).unwrap();
    file.sync_all().unwrap();
    assert_eq!(fs::read(m.backing_at("a")).unwrap(), b"ok");
}

#[test]
fn a_failed_fsync_loses_the_data_and_a_retried_one_does_not_bring_it_back() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    for (fault, errno) in [
        (DiskFault::IoErrorOnFsync, libc::EIO),
        (DiskFault::NoSpaceOnFsync, libc::ENOSPC),
    ] {
        let mut file = File::create(m.at("b")).unwrap();
        file.write_all(b"durable").unwrap();
        file.sync_all().unwrap();
        file.write_all_at(b"LOST", 0).unwrap();
        m.fs.set_fault(fault);
        let e = file.sync_all().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(errno), "{fault:?}: {e}");
        m.fs.set_fault(DiskFault::Healthy);
        // The retry succeeds with nothing left to write, as on Linux.
        file.sync_all().unwrap();
        assert_eq!(fs::read(m.at("b")).unwrap(), b"durable");
        assert_eq!(fs::read(m.backing_at("b")).unwrap(), b"durable");
        assert_eq!(m.fs.dirty_bytes(), 0);
    }
}
