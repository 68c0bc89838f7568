//! Names through the mount: directories, renames and unlinks are applied at once, while the
//! data of the files they move stays lazy.

#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use keel_lazyfs::Limits;

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[test]
fn mkdir_readdir_rename_unlink_rmdir() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    fs::create_dir(m.at("d")).unwrap();
    fs::write(m.at("d/a"), b"a").unwrap();
    fs::write(m.at("d/b"), b"b").unwrap();
    fs::create_dir(m.at("d/sub")).unwrap();
    assert_eq!(common::names(&m.at("d")), set(&["a", "b", "sub"]));

    fs::rename(m.at("d/a"), m.at("d/c")).unwrap();
    fs::remove_file(m.at("d/b")).unwrap();
    assert_eq!(common::names(&m.at("d")), set(&["c", "sub"]));
    assert_eq!(common::names(&m.backing_at("d")), set(&["c", "sub"]));
    assert_eq!(fs::read(m.at("d/c")).unwrap(), b"a");

    let err = fs::remove_dir(m.at("d")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTEMPTY));
    let err = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.at("d/c"))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AlreadyExists);
    assert_eq!(
        File::open(m.at("d/missing")).unwrap_err().kind(),
        ErrorKind::NotFound
    );

    fs::remove_dir(m.at("d/sub")).unwrap();
    fs::remove_file(m.at("d/c")).unwrap();
    fs::remove_dir(m.at("d")).unwrap();
    assert!(common::names(&m.mnt).is_empty());
    assert!(common::names(&m.backing).is_empty());
}

#[test]
fn renamed_file_keeps_unsynced_data_until_drop() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    fs::create_dir(m.at("dir")).unwrap();
    let file = File::create(m.at("dir/f")).unwrap();
    file.write_all_at(b"abc", 0).unwrap();
    file.sync_all().unwrap();
    file.write_all_at(b"xyz", 3).unwrap();
    drop(file);

    fs::rename(m.at("dir/f"), m.at("dir/g")).unwrap();
    assert_eq!(fs::read(m.at("dir/g")).unwrap(), b"abcxyz");
    fs::rename(m.at("dir"), m.at("moved")).unwrap();
    assert_eq!(fs::read(m.at("moved/g")).unwrap(), b"abcxyz");
    assert_eq!(fs::read(m.backing_at("moved/g")).unwrap(), b"abc");

    m.fs.drop_unsynced();
    assert_eq!(fs::read(m.at("moved/g")).unwrap(), b"abc");
}

#[test]
fn rename_over_an_existing_file_replaces_it() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    fs::write(m.at("old"), b"old target").unwrap();
    fs::write(m.at("new"), b"replacement").unwrap();
    fs::rename(m.at("new"), m.at("old")).unwrap();
    assert_eq!(common::names(&m.mnt), set(&["old"]));
    assert_eq!(fs::read(m.at("old")).unwrap(), b"replacement");
    // The replaced file's unsynced data goes with its name (once the kernel has released the
    // handle `fs::write` closed).
    let replacement_bytes = b"replacement".len() as u64;
    assert!(common::eventually(
        || m.fs.dirty_bytes() == replacement_bytes
    ));
}

#[test]
fn unlinked_file_stays_readable_through_its_open_handle() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(m.at("tmp"))
        .unwrap();
    file.write_all(b"still here").unwrap();
    fs::remove_file(m.at("tmp")).unwrap();
    assert!(!m.at("tmp").exists());

    file.seek(SeekFrom::Start(0)).unwrap();
    let mut content = String::new();
    file.read_to_string(&mut content).unwrap();
    assert_eq!(content, "still here");
    assert_eq!(m.fs.dirty_bytes(), 10);
    drop(file);
    // The kernel sends the release after close returns.
    assert!(
        common::eventually(|| m.fs.dirty_bytes() == 0),
        "the last close forgets an unlinked file's data"
    );
}

#[test]
fn metadata_changes_are_applied_to_the_backing_directory_at_once() {
    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    fs::write(m.at("f"), b"x").unwrap();
    fs::set_permissions(m.at("f"), fs::Permissions::from_mode(0o600)).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&m.at("f")), 0o600);
    assert_eq!(mode(&m.backing_at("f")), 0o600);

    std::os::unix::fs::symlink("f", m.at("link")).unwrap();
    assert_eq!(fs::read_link(m.at("link")).unwrap(), Path::new("f"));
    assert_eq!(fs::read(m.at("link")).unwrap(), b"x");

    File::open(&m.mnt).unwrap().sync_all().unwrap(); // fsyncdir
    let err = fs::hard_link(m.at("f"), m.at("hard")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM));
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn rename_exchange_swaps_files_with_their_unsynced_data() {
    use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

    let Some(m) = common::mount(Limits::default()) else {
        return;
    };
    fs::write(m.at("x"), b"xx").unwrap();
    fs::create_dir(m.at("d")).unwrap();
    fs::write(m.at("d/y"), b"yyyy").unwrap();

    let err = renameat2(
        AT_FDCWD,
        &m.at("x"),
        AT_FDCWD,
        &m.at("d"),
        RenameFlags::RENAME_NOREPLACE,
    )
    .unwrap_err();
    assert_eq!(err, nix::errno::Errno::EEXIST);

    renameat2(
        AT_FDCWD,
        &m.at("x"),
        AT_FDCWD,
        &m.at("d"),
        RenameFlags::RENAME_EXCHANGE,
    )
    .unwrap();
    assert_eq!(fs::read(m.at("d")).unwrap(), b"xx");
    assert_eq!(fs::read(m.at("x/y")).unwrap(), b"yyyy");
    m.fs.drop_unsynced();
    assert_eq!(fs::read(m.at("x/y")).unwrap(), b"");
}
