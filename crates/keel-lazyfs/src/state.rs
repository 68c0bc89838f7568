//! The daemon's state: inode numbers mapped to backing paths, open handles, and each file's
//! [`Overlay`]. Every FUSE request and every call from the [`crate::LazyFs`] handle goes through
//! one `State` behind one mutex, so the operations here are plain sequential code.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions, Permissions};
use std::io;
use std::ops::Deref;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::statvfs::Statvfs;
use nix::sys::time::TimeSpec;

use crate::overlay::{Backing, Overlay};
use crate::{DiskFault, Dropped, Limits};

/// Result of one filesystem operation; the error is what the caller's syscall returns.
pub(crate) type OpResult<T> = Result<T, Errno>;

/// Open file and directory handles at once. Far above what any test or node opens (the kernel's
/// own fd limits bite first); it only stops a handle leak from growing memory without bound.
pub(crate) const HANDLES_MAX: usize = 1 << 20;

/// FUSE's inode number for the mount's root directory.
const ROOT_INO: u64 = INodeNo::ROOT.0;

/// Permission bits of a mode (with setuid, setgid and sticky), without the file type.
const PERMISSION_BITS: u32 = 0o7777;

/// One file, directory or other node the kernel knows by inode number.
#[derive(Debug, Default)]
struct Node {
    /// Path relative to the backing directory; `None` once unlinked.
    path: Option<PathBuf>,
    /// The backing file, open while `handles > 0`, so an unlinked file stays readable.
    file: Option<File>,
    /// Open FUSE file handles on this node.
    handles: u32,
    /// Data and length not yet durable.
    overlay: Overlay,
}

/// One directory entry as listed by `opendir`.
#[derive(Debug)]
pub(crate) struct DirEntry {
    pub(crate) ino: u64,
    pub(crate) kind: FileType,
    pub(crate) name: OsString,
}

/// Attribute changes asked by `setattr`.
#[derive(Debug, Default)]
pub(crate) struct SetAttr {
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<TimeOrNow>,
    pub(crate) mtime: Option<TimeOrNow>,
}

/// See the module doc.
#[derive(Debug)]
pub(crate) struct State {
    /// The canonical backing directory.
    backing: PathBuf,
    limits: Limits,
    nodes: HashMap<u64, Node>,
    by_path: HashMap<PathBuf, u64>,
    next_ino: u64,
    /// Open file handles and the inode each is on.
    files: HashMap<u64, u64>,
    /// Open directory handles and the listing taken when each was opened.
    dirs: HashMap<u64, Vec<DirEntry>>,
    next_fh: u64,
    /// Sum of every overlay's dirty bytes.
    dirty_bytes: u64,
    /// The injected disk failure, if any.
    fault: DiskFault,
}

impl State {
    pub(crate) fn new(backing: PathBuf, limits: Limits) -> State {
        let root = Node {
            path: Some(PathBuf::new()),
            ..Node::default()
        };
        State {
            backing,
            limits,
            nodes: HashMap::from([(ROOT_INO, root)]),
            by_path: HashMap::from([(PathBuf::new(), ROOT_INO)]),
            next_ino: ROOT_INO + 1,
            files: HashMap::new(),
            dirs: HashMap::new(),
            next_fh: 1,
            dirty_bytes: 0,
            fault: DiskFault::Healthy,
        }
    }

    pub(crate) fn dirty_bytes(&self) -> u64 {
        self.dirty_bytes
    }

    pub(crate) fn set_fault(&mut self, fault: DiskFault) {
        self.fault = fault;
    }

    pub(crate) fn drop_unsynced(&mut self) -> Dropped {
        let mut dropped = Dropped { files: 0, bytes: 0 };
        for node in self.nodes.values_mut().filter(|n| !n.overlay.is_clean()) {
            dropped.files += 1;
            dropped.bytes += node.overlay.clear();
        }
        self.dirty_bytes = 0;
        dropped
    }

    // ---- names and attributes -------------------------------------------------------------

    pub(crate) fn lookup(&mut self, parent: u64, name: &OsStr) -> OpResult<FileAttr> {
        let rel = self.child_rel(parent, name)?;
        self.attr_of_rel(rel)
    }

    pub(crate) fn getattr(&self, ino: u64) -> OpResult<FileAttr> {
        let node = self.node(ino)?;
        let meta = match (&node.file, &node.path) {
            (Some(file), _) => file.metadata(),
            (None, Some(rel)) => fs::symlink_metadata(self.backing.join(rel)),
            (None, None) => return Err(Errno::ENOENT),
        }
        .map_err(Errno::from)?;
        Ok(attr(ino, &meta, &node.overlay))
    }

    pub(crate) fn setattr(&mut self, ino: u64, set: &SetAttr) -> OpResult<FileAttr> {
        if let Some(size) = set.size {
            self.truncate(ino, size)?;
        }
        self.set_metadata(ino, set)?;
        self.getattr(ino)
    }

    pub(crate) fn readlink(&self, ino: u64) -> OpResult<Vec<u8>> {
        let rel = self.node(ino)?.path.as_ref().ok_or(Errno::ENOENT)?;
        let target = fs::read_link(self.backing.join(rel)).map_err(Errno::from)?;
        Ok(target.into_os_string().into_encoded_bytes())
    }

    // ---- creating and removing names ------------------------------------------------------

    pub(crate) fn mkdir(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
    ) -> OpResult<FileAttr> {
        let rel = self.child_rel(parent, name)?;
        let full = self.backing.join(&rel);
        let perm = mode & !umask & PERMISSION_BITS;
        DirBuilder::new()
            .mode(perm)
            .create(&full)
            .map_err(Errno::from)?;
        // The daemon's own umask applied to the mkdir too; the caller's mode is what counts.
        fs::set_permissions(&full, Permissions::from_mode(perm)).map_err(Errno::from)?;
        self.attr_of_rel(rel)
    }

    pub(crate) fn mknod(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
    ) -> OpResult<FileAttr> {
        let rel = self.child_rel(parent, name)?;
        let full = self.backing.join(&rel);
        let perm = mode & !umask & PERMISSION_BITS;
        let kind = mode & libc::S_IFMT;
        if kind == 0 || kind == libc::S_IFREG {
            create_new(&full, perm).map_err(Errno::from)?;
        } else {
            nix::sys::stat::mknod(
                &full,
                SFlag::from_bits_truncate(kind),
                Mode::from_bits_truncate(perm),
                libc::dev_t::from(rdev),
            )
            .map_err(|e| Errno::from_i32(e as i32))?;
            fs::set_permissions(&full, Permissions::from_mode(perm)).map_err(Errno::from)?;
        }
        self.attr_of_rel(rel)
    }

    pub(crate) fn symlink(
        &mut self,
        parent: u64,
        name: &OsStr,
        target: &Path,
    ) -> OpResult<FileAttr> {
        let rel = self.child_rel(parent, name)?;
        std::os::unix::fs::symlink(target, self.backing.join(&rel)).map_err(Errno::from)?;
        self.attr_of_rel(rel)
    }

    /// Creates and opens a regular file; returns its attributes and the new handle.
    pub(crate) fn create(
        &mut self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
    ) -> OpResult<(FileAttr, u64)> {
        let rel = self.child_rel(parent, name)?;
        let full = self.backing.join(&rel);
        let file = match create_new(&full, mode & !umask & PERMISSION_BITS) {
            Ok(file) => file,
            // The kernel only asks to create a name it saw missing; someone made it since.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && flags & libc::O_EXCL == 0 => {
                open_backing(&full).map_err(Errno::from)?
            }
            Err(e) => return Err(Errno::from(e)),
        };
        let ino = self.ino_for(rel);
        let fh = self.open_handle(ino, Some(file))?;
        Ok((self.getattr(ino)?, fh))
    }

    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr) -> OpResult<()> {
        let rel = self.child_rel(parent, name)?;
        fs::remove_file(self.backing.join(&rel)).map_err(Errno::from)?;
        self.detach_path(&rel);
        Ok(())
    }

    pub(crate) fn rmdir(&mut self, parent: u64, name: &OsStr) -> OpResult<()> {
        let rel = self.child_rel(parent, name)?;
        fs::remove_dir(self.backing.join(&rel)).map_err(Errno::from)?;
        self.detach_path(&rel);
        Ok(())
    }

    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        new_parent: u64,
        new_name: &OsStr,
        flags: u32,
    ) -> OpResult<()> {
        let from = self.child_rel(parent, name)?;
        let to = self.child_rel(new_parent, new_name)?;
        rename_backing(&self.backing.join(&from), &self.backing.join(&to), flags)?;
        if flags & libc::RENAME_EXCHANGE != 0 {
            self.move_subtrees(&[(from.clone(), to.clone()), (to, from)]);
        } else if from != to {
            self.detach_path(&to);
            self.move_subtrees(&[(from, to)]);
        }
        Ok(())
    }

    // ---- file data ------------------------------------------------------------------------

    pub(crate) fn open(&mut self, ino: u64) -> OpResult<u64> {
        self.open_handle(ino, None)
    }

    pub(crate) fn release(&mut self, fh: u64) {
        let Some(ino) = self.files.remove(&fh) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.handles = node.handles.saturating_sub(1);
        if node.handles > 0 {
            return;
        }
        node.file = None;
        if node.path.is_none() {
            self.remove_node(ino);
        }
    }

    pub(crate) fn read(&self, ino: u64, offset: u64, size: u32) -> OpResult<Vec<u8>> {
        let node = self.node(ino)?;
        let file = backing_file(node.file.as_ref(), node.path.as_deref(), &self.backing)?;
        let size = usize::try_from(size).map_err(|_| Errno::EINVAL)?;
        node.overlay.read(&*file, offset, size).map_err(Errno::from)
    }

    /// Records a write in memory; with `append`, at the logical end whatever `offset` says.
    pub(crate) fn write(
        &mut self,
        ino: u64,
        offset: u64,
        data: &[u8],
        append: bool,
    ) -> OpResult<u32> {
        let written = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        match self.fault {
            DiskFault::NoSpaceOnWrite => return Err(Errno::ENOSPC),
            DiskFault::IoErrorOnWrite => return Err(Errno::EIO),
            _ => {}
        }
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let file = backing_file(node.file.as_ref(), node.path.as_deref(), &self.backing)?;
        let backing_len = file.len().map_err(Errno::from)?;
        drop(file);
        let offset = if append {
            node.overlay.logical_len(backing_len)
        } else {
            offset
        };
        let before = node.overlay.dirty_bytes();
        node.overlay
            .write(offset, data, backing_len)
            .map_err(Errno::from)?;
        self.dirty_bytes = self.dirty_bytes - before + node.overlay.dirty_bytes();
        self.enforce_limit()?;
        Ok(written)
    }

    /// `fallocate`: mode 0 may grow the file (a length change, so lazy like any other);
    /// `FALLOC_FL_KEEP_SIZE` has nothing to do since space is not reserved ahead anyway.
    pub(crate) fn fallocate(
        &mut self,
        ino: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> OpResult<()> {
        match mode {
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            0 => {
                let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
                let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
                let file = backing_file(node.file.as_ref(), node.path.as_deref(), &self.backing)?;
                let backing_len = file.len().map_err(Errno::from)?;
                drop(file);
                if end > node.overlay.logical_len(backing_len) {
                    node.overlay.truncate(end, backing_len);
                }
                Ok(())
            }
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// Makes the file's data and length durable: the only way anything written gets there.
    pub(crate) fn fsync(&mut self, ino: u64, datasync: bool) -> OpResult<()> {
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let failed = match self.fault {
            DiskFault::IoErrorOnFsync => Some(Errno::EIO),
            DiskFault::NoSpaceOnFsync => Some(Errno::ENOSPC),
            _ => None,
        };
        if let Some(errno) = failed {
            // The writeback failed: what it was to make durable is gone.
            self.dirty_bytes -= node.overlay.clear();
            return Err(errno);
        }
        let file = backing_file(node.file.as_ref(), node.path.as_deref(), &self.backing)?;
        let applied = node.overlay.apply(&*file).map_err(Errno::from)?;
        self.dirty_bytes -= applied;
        let synced = if datasync {
            file.sync_data()
        } else {
            file.sync_all()
        };
        synced.map_err(Errno::from)
    }

    // ---- directories ----------------------------------------------------------------------

    pub(crate) fn opendir(&mut self, ino: u64) -> OpResult<u64> {
        let rel = self.node(ino)?.path.clone().ok_or(Errno::ENOENT)?;
        if self.files.len() + self.dirs.len() >= HANDLES_MAX {
            return Err(Errno::EMFILE);
        }
        let parent_ino = rel
            .parent()
            .and_then(|p| self.by_path.get(p).copied())
            .unwrap_or(ROOT_INO);
        let mut entries = vec![
            dir_entry(ino, FileType::Directory, "."),
            dir_entry(parent_ino, FileType::Directory, ".."),
        ];
        let listing = fs::read_dir(self.backing.join(&rel)).map_err(Errno::from)?;
        for entry in listing {
            let entry = entry.map_err(Errno::from)?;
            let name = entry.file_name();
            let kind = entry
                .file_type()
                .ok()
                .and_then(FileType::from_std)
                .unwrap_or(FileType::RegularFile);
            let child = self.ino_for(rel.join(&name));
            entries.push(DirEntry {
                ino: child,
                kind,
                name,
            });
        }
        let fh = self.next_fh();
        self.dirs.insert(fh, entries);
        Ok(fh)
    }

    pub(crate) fn dir_entries(&self, fh: u64) -> OpResult<&[DirEntry]> {
        self.dirs.get(&fh).map(Vec::as_slice).ok_or(Errno::EBADF)
    }

    pub(crate) fn releasedir(&mut self, fh: u64) {
        self.dirs.remove(&fh);
    }

    /// Metadata is applied to the backing directory at once; this makes it durable there too.
    pub(crate) fn fsyncdir(&self, ino: u64) -> OpResult<()> {
        let rel = self.node(ino)?.path.as_ref().ok_or(Errno::ENOENT)?;
        let dir = File::open(self.backing.join(rel)).map_err(Errno::from)?;
        dir.sync_all().map_err(Errno::from)
    }

    pub(crate) fn statfs(&self) -> OpResult<Statvfs> {
        nix::sys::statvfs::statvfs(&self.backing).map_err(|e| Errno::from_i32(e as i32))
    }

    // ---- helpers --------------------------------------------------------------------------

    fn node(&self, ino: u64) -> OpResult<&Node> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    /// The relative path of `name` in directory `parent`; refuses names that are not one
    /// plain path component, so no request can reach outside the backing directory.
    fn child_rel(&self, parent: u64, name: &OsStr) -> OpResult<PathBuf> {
        let bytes = name.as_bytes();
        if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
            return Err(Errno::EINVAL);
        }
        let dir = self.node(parent)?.path.as_ref().ok_or(Errno::ENOENT)?;
        Ok(dir.join(name))
    }

    /// The inode number of a path, assigning a new one the first time it is seen.
    fn ino_for(&mut self, rel: PathBuf) -> u64 {
        if let Some(&ino) = self.by_path.get(&rel) {
            return ino;
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.by_path.insert(rel.clone(), ino);
        self.nodes.insert(
            ino,
            Node {
                path: Some(rel),
                ..Node::default()
            },
        );
        ino
    }

    fn attr_of_rel(&mut self, rel: PathBuf) -> OpResult<FileAttr> {
        let meta = fs::symlink_metadata(self.backing.join(&rel)).map_err(Errno::from)?;
        let ino = self.ino_for(rel);
        Ok(attr(ino, &meta, &self.node(ino)?.overlay))
    }

    fn next_fh(&mut self) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        fh
    }

    /// Opens a FUSE handle on a file node, keeping its backing file open (`file` if the caller
    /// already opened it).
    fn open_handle(&mut self, ino: u64, file: Option<File>) -> OpResult<u64> {
        if self.files.len() + self.dirs.len() >= HANDLES_MAX {
            return Err(Errno::EMFILE);
        }
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        if node.file.is_none() {
            let file = match file {
                Some(file) => file,
                None => {
                    let rel = node.path.as_ref().ok_or(Errno::ENOENT)?;
                    open_backing(&self.backing.join(rel)).map_err(Errno::from)?
                }
            };
            node.file = Some(file);
        }
        node.handles += 1;
        let fh = self.next_fh();
        self.files.insert(fh, ino);
        Ok(fh)
    }

    fn truncate(&mut self, ino: u64, size: u64) -> OpResult<()> {
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let file = backing_file(node.file.as_ref(), node.path.as_deref(), &self.backing)?;
        let meta = file.metadata().map_err(Errno::from)?;
        drop(file);
        if meta.is_dir() {
            return Err(Errno::EISDIR);
        }
        if !meta.is_file() {
            return Err(Errno::EINVAL);
        }
        let before = node.overlay.dirty_bytes();
        node.overlay.truncate(size, meta.len());
        self.dirty_bytes = self.dirty_bytes - before + node.overlay.dirty_bytes();
        Ok(())
    }

    /// Applies mode, owner and times at once (metadata is never lazy). By path when the node
    /// has one, so a FIFO is never opened (that would block the daemon); through the open
    /// backing file for an unlinked one.
    fn set_metadata(&self, ino: u64, set: &SetAttr) -> OpResult<()> {
        let node = self.node(ino)?;
        let target = match (&node.path, &node.file) {
            (Some(rel), _) => Target::Path(self.backing.join(rel)),
            (None, Some(file)) => Target::File(file),
            (None, None) => return Err(Errno::ENOENT),
        };
        if let Some(mode) = set.mode {
            target.chmod(mode & PERMISSION_BITS)?;
        }
        if set.uid.is_some() || set.gid.is_some() {
            target.chown(set.uid, set.gid)?;
        }
        if set.atime.is_some() || set.mtime.is_some() {
            target.set_times(timespec(set.atime), timespec(set.mtime))?;
        }
        Ok(())
    }

    /// Forgets that `rel` names a node (after unlink, rmdir, or a rename over it). Its unsynced
    /// data goes now if no handle is open, else at the last release: nothing can reach it by
    /// name again, and a real machine would not keep it either.
    fn detach_path(&mut self, rel: &Path) {
        let Some(ino) = self.by_path.remove(rel) else {
            return;
        };
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.path = None;
        if node.handles == 0 {
            self.remove_node(ino);
        }
    }

    fn remove_node(&mut self, ino: u64) {
        if let Some(node) = self.nodes.remove(&ino) {
            self.dirty_bytes -= node.overlay.dirty_bytes();
        }
    }

    /// Renames every node at or below each `from` to the same place below its `to`.
    fn move_subtrees(&mut self, pairs: &[(PathBuf, PathBuf)]) {
        let mut moves = Vec::new();
        for (&ino, node) in &self.nodes {
            let Some(path) = &node.path else { continue };
            for (from, to) in pairs {
                if let Ok(rest) = path.strip_prefix(from) {
                    let new = if rest.as_os_str().is_empty() {
                        to.clone()
                    } else {
                        to.join(rest)
                    };
                    moves.push((ino, path.clone(), new));
                    break;
                }
            }
        }
        for (_, old, _) in &moves {
            self.by_path.remove(old);
        }
        for (ino, _, new) in moves {
            self.by_path.insert(new.clone(), ino);
            if let Some(node) = self.nodes.get_mut(&ino) {
                node.path = Some(new);
            }
        }
    }

    /// Writes back (without fsync, as a kernel under memory pressure would) the overlays
    /// holding the most bytes until the total is within the limit.
    fn enforce_limit(&mut self) -> OpResult<()> {
        while self.dirty_bytes > self.limits.dirty_bytes_max {
            let victim = self
                .nodes
                .iter()
                .filter(|(_, n)| n.overlay.dirty_bytes() > 0)
                .max_by_key(|(_, n)| n.overlay.dirty_bytes())
                .map(|(&ino, _)| ino);
            let Some(victim) = victim else {
                // dirty_bytes is the sum of the overlays; a total above zero with no dirty
                // overlay is an accounting bug: stop instead of spinning.
                debug_assert!(
                    false,
                    "dirty_bytes {} with no dirty overlay",
                    self.dirty_bytes
                );
                return Err(Errno::EIO);
            };
            let node = self.nodes.get_mut(&victim).ok_or(Errno::EIO)?;
            let file = backing_file(node.file.as_ref(), node.path.as_deref(), &self.backing)?;
            let applied = node.overlay.apply(&*file).map_err(Errno::from)?;
            self.dirty_bytes -= applied;
        }
        Ok(())
    }
}

/// A backing file, borrowed from a node with open handles or opened just for this call.
enum FileRef<'a> {
    Borrowed(&'a File),
    Owned(File),
}

impl Deref for FileRef<'_> {
    type Target = File;

    fn deref(&self) -> &File {
        match self {
            FileRef::Borrowed(file) => file,
            FileRef::Owned(file) => file,
        }
    }
}

/// The node's open backing file (`file`), or its path `rel` opened for this call.
fn backing_file<'a>(
    file: Option<&'a File>,
    rel: Option<&Path>,
    backing: &Path,
) -> OpResult<FileRef<'a>> {
    if let Some(file) = file {
        return Ok(FileRef::Borrowed(file));
    }
    let rel = rel.ok_or(Errno::ENOENT)?;
    let full = backing.join(rel);
    if !fs::symlink_metadata(&full).map_err(Errno::from)?.is_file() {
        // Never open a FIFO or device for this: it could block the daemon.
        return Err(Errno::EINVAL);
    }
    Ok(FileRef::Owned(open_backing(&full).map_err(Errno::from)?))
}

/// Opens a backing file read-write whatever the caller asked for, so overlays from any handle
/// can be written back through it (the kernel has already checked the caller's permissions);
/// read-only when the backing filesystem refuses writing.
fn open_backing(path: &Path) -> io::Result<File> {
    match OpenOptions::new().read(true).write(true).open(path) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EACCES | libc::EPERM | libc::EROFS)
            ) =>
        {
            File::open(path)
        }
        result => result,
    }
}

/// Creates a new regular file with exactly `perm` (not reduced by the daemon's umask).
fn create_new(path: &Path, perm: u32) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(perm)
        .open(path)?;
    file.set_permissions(Permissions::from_mode(perm))?;
    Ok(file)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_backing(from: &Path, to: &Path, flags: u32) -> OpResult<()> {
    if flags == 0 {
        return fs::rename(from, to).map_err(Errno::from);
    }
    let flags = nix::fcntl::RenameFlags::from_bits(flags).ok_or(Errno::EINVAL)?;
    nix::fcntl::renameat2(nix::fcntl::AT_FDCWD, from, nix::fcntl::AT_FDCWD, to, flags)
        .map_err(|e| Errno::from_i32(e as i32))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_backing(from: &Path, to: &Path, flags: u32) -> OpResult<()> {
    if flags == 0 {
        return fs::rename(from, to).map_err(Errno::from);
    }
    Err(Errno::EINVAL)
}

/// Where `setattr` applies metadata.
enum Target<'a> {
    Path(PathBuf),
    File(&'a File),
}

impl Target<'_> {
    fn chmod(&self, perm: u32) -> OpResult<()> {
        match self {
            Target::Path(path) => {
                if fs::symlink_metadata(path)
                    .map_err(Errno::from)?
                    .is_symlink()
                {
                    // Linux has no mode on symlinks; chmod would follow it.
                    return Err(Errno::EOPNOTSUPP);
                }
                fs::set_permissions(path, Permissions::from_mode(perm))
            }
            Target::File(file) => file.set_permissions(Permissions::from_mode(perm)),
        }
        .map_err(Errno::from)
    }

    fn chown(&self, uid: Option<u32>, gid: Option<u32>) -> OpResult<()> {
        match self {
            Target::Path(path) => std::os::unix::fs::lchown(path, uid, gid),
            Target::File(file) => std::os::unix::fs::fchown(file, uid, gid),
        }
        .map_err(Errno::from)
    }

    fn set_times(&self, atime: TimeSpec, mtime: TimeSpec) -> OpResult<()> {
        match self {
            Target::Path(path) => nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                path,
                &atime,
                &mtime,
                UtimensatFlags::NoFollowSymlink,
            ),
            Target::File(file) => nix::sys::stat::futimens(file, &atime, &mtime),
        }
        .map_err(|e| Errno::from_i32(e as i32))
    }
}

fn timespec(time: Option<TimeOrNow>) -> TimeSpec {
    match time {
        None => TimeSpec::UTIME_OMIT,
        Some(TimeOrNow::Now) => TimeSpec::UTIME_NOW,
        Some(TimeOrNow::SpecificTime(at)) => match at.duration_since(UNIX_EPOCH) {
            Ok(since) => TimeSpec::from_duration(since),
            Err(before) => before_epoch(before.duration()),
        },
    }
}

/// A time `before` ahead of the epoch, with the non-negative nanoseconds timespec wants.
fn before_epoch(before: Duration) -> TimeSpec {
    let secs = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
    let nanos = i64::from(before.subsec_nanos());
    if nanos == 0 {
        TimeSpec::new(-secs, 0)
    } else {
        TimeSpec::new(-secs - 1, 1_000_000_000 - nanos)
    }
}

fn dir_entry(ino: u64, kind: FileType, name: &str) -> DirEntry {
    DirEntry {
        ino,
        kind,
        name: OsString::from(name),
    }
}

/// FUSE attributes of a node: the backing file's, with the logical size of a regular file.
fn attr(ino: u64, meta: &Metadata, overlay: &Overlay) -> FileAttr {
    let size = if meta.is_file() {
        overlay.logical_len(meta.len())
    } else {
        meta.len()
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: meta.blocks(),
        atime: meta.accessed().unwrap_or(UNIX_EPOCH),
        mtime: meta.modified().unwrap_or(UNIX_EPOCH),
        ctime: system_time(meta.ctime(), meta.ctime_nsec()),
        crtime: meta.created().unwrap_or(UNIX_EPOCH),
        kind: FileType::from_std(meta.file_type()).unwrap_or(FileType::RegularFile),
        perm: (meta.mode() & PERMISSION_BITS) as u16,
        nlink: u32::try_from(meta.nlink()).unwrap_or(u32::MAX),
        uid: meta.uid(),
        gid: meta.gid(),
        rdev: u32::try_from(meta.rdev()).unwrap_or(u32::MAX),
        blksize: u32::try_from(meta.blksize()).unwrap_or(u32::MAX),
        flags: 0,
    }
}

fn system_time(secs: i64, nanos: i64) -> SystemTime {
    let nanos = u32::try_from(nanos).unwrap_or(0);
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::new(secs, nanos),
        Err(_) => UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nanos),
    }
}
