//! The in-memory layer of one file: bytes written but not yet made durable, and the file's
//! pending length. Pure logic over a [`Backing`] so it can be tested against a model without a
//! mount; the daemon uses it over a real backing [`File`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// What the overlay needs from the file beneath it. Implemented for [`File`] and, in tests, for
/// an in-memory vector.
pub(crate) trait Backing {
    /// The backing file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; the caller only asks for bytes below [`Backing::len`].
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `data` at `offset`, growing the file if needed.
    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()>;
    /// Cuts or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

impl Backing for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, data, offset)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        File::set_len(self, len)
    }
}

/// The not-yet-durable state of one file.
///
/// Invariants (checked by the property test against a model):
/// - extents never overlap, and `bytes` is the sum of their lengths;
/// - every extent ends at or before the logical length;
/// - `cut` is only set together with `len`.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// Written bytes by the offset they start at.
    extents: BTreeMap<u64, Vec<u8>>,
    /// The file's logical length when it differs from the backing file's (after a write past
    /// the end or a truncate); `None` means "the backing file's length".
    len: Option<u64>,
    /// The lowest length the file was truncated to since it was last made durable: backing bytes
    /// at or past it are gone, even if the file later grew again (they read as zeros).
    cut: Option<u64>,
    /// Total bytes held in `extents`: what counts against the mount's dirty limit.
    bytes: u64,
}

impl Overlay {
    /// Whether there is nothing to make durable or to forget.
    pub(crate) fn is_clean(&self) -> bool {
        self.extents.is_empty() && self.len.is_none() && self.cut.is_none()
    }

    /// Bytes of file data held in memory.
    pub(crate) fn dirty_bytes(&self) -> u64 {
        self.bytes
    }

    /// The length readers see, given the backing file's length.
    pub(crate) fn logical_len(&self, backing_len: u64) -> u64 {
        self.len.unwrap_or(backing_len)
    }

    /// Records a write of `data` at `offset`; a write past the end grows the logical length.
    pub(crate) fn write(&mut self, offset: u64, data: &[u8], backing_len: u64) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = end_of(offset, data.len())?;
        let logical = self.logical_len(backing_len);
        if !self.overwrite_in_place(offset, data) {
            self.punch(offset, end);
            self.insert(offset, data);
        }
        if end > logical {
            self.len = Some(end);
        }
        Ok(())
    }

    /// Sets the logical length: shrinking forgets overlay bytes and hides backing bytes past
    /// `new_len`; growing adds zeros.
    pub(crate) fn truncate(&mut self, new_len: u64, backing_len: u64) {
        if new_len == self.logical_len(backing_len) {
            return;
        }
        self.punch(new_len, u64::MAX);
        if new_len < backing_len {
            self.cut = Some(self.cut.map_or(new_len, |cut| cut.min(new_len)));
        }
        self.len = Some(new_len);
    }

    /// Reads up to `size` bytes at `offset` as a reader of the file sees them: the backing file,
    /// then zeros where it was cut or is too short, then the overlay on top.
    pub(crate) fn read(
        &self,
        backing: &impl Backing,
        offset: u64,
        size: usize,
    ) -> io::Result<Vec<u8>> {
        let backing_len = backing.len()?;
        let logical = self.logical_len(backing_len);
        if offset >= logical {
            return Ok(Vec::new());
        }
        let end = end_of(offset, size)?.min(logical);
        let mut buf = vec![0u8; to_usize(end - offset)?];
        let visible_backing = backing_len.min(self.cut.unwrap_or(u64::MAX));
        if offset < visible_backing {
            let upto = end.min(visible_backing);
            backing.read_exact_at(&mut buf[..to_usize(upto - offset)?], offset)?;
        }
        for (&start, data) in self.overlapping(offset, end) {
            copy_intersection(&mut buf, offset, start, data);
        }
        Ok(buf)
    }

    /// Writes the pending length and every extent to the backing file (without syncing it) and
    /// empties the overlay. On error the overlay is kept: applying it again is harmless.
    /// Returns the dirty bytes that left memory.
    pub(crate) fn apply(&mut self, backing: &impl Backing) -> io::Result<u64> {
        if self.is_clean() {
            return Ok(0);
        }
        let backing_len = backing.len()?;
        let logical = self.logical_len(backing_len);
        let mut current = backing_len;
        if let Some(cut) = self.cut.filter(|&cut| cut < backing_len) {
            backing.set_len(cut)?;
            current = cut;
        }
        if current != logical {
            backing.set_len(logical)?;
        }
        for (&start, data) in &self.extents {
            backing.write_all_at(data, start)?;
        }
        Ok(self.clear())
    }

    /// Forgets everything not yet applied. Returns the dirty bytes forgotten.
    pub(crate) fn clear(&mut self) -> u64 {
        let bytes = self.bytes;
        *self = Overlay::default();
        bytes
    }

    /// Overwrites inside one existing extent when it covers the whole write; the common case
    /// of a database rewriting a page it wrote moments ago.
    fn overwrite_in_place(&mut self, offset: u64, data: &[u8]) -> bool {
        let Some((&start, existing)) = self.extents.range_mut(..=offset).next_back() else {
            return false;
        };
        let rel = offset - start;
        let Ok(rel) = usize::try_from(rel) else {
            return false;
        };
        let Some(target) = rel
            .checked_add(data.len())
            .and_then(|upto| existing.get_mut(rel..upto))
        else {
            return false;
        };
        target.copy_from_slice(data);
        true
    }

    /// Removes overlay bytes in `[start, end)`, splitting extents that straddle the edges.
    fn punch(&mut self, start: u64, end: u64) {
        let doomed: Vec<u64> = self
            .overlapping(start, end)
            .map(|(&extent_start, _)| extent_start)
            .collect();
        for extent_start in doomed {
            let Some(mut data) = self.extents.remove(&extent_start) else {
                continue;
            };
            self.bytes -= data.len() as u64;
            let extent_end = extent_start + data.len() as u64;
            if extent_end > end {
                // `end - extent_start` < data.len(), so it fits in usize.
                let tail = data.split_off((end - extent_start) as usize);
                self.put(end, tail);
            }
            if extent_start < start {
                // `start - extent_start` < data.len(), so it fits in usize.
                data.truncate((start - extent_start) as usize);
                self.put(extent_start, data);
            }
        }
    }

    /// Adds `data` at `offset` (a range `punch` has just emptied), appending to the extent that
    /// ends exactly there so sequential writes stay one extent.
    fn insert(&mut self, offset: u64, data: &[u8]) {
        if let Some((&start, prev)) = self.extents.range_mut(..offset).next_back() {
            if start + prev.len() as u64 == offset {
                prev.extend_from_slice(data);
                self.bytes += data.len() as u64;
                return;
            }
        }
        self.put(offset, data.to_vec());
    }

    fn put(&mut self, offset: u64, data: Vec<u8>) {
        self.bytes += data.len() as u64;
        self.extents.insert(offset, data);
    }

    /// Extents that share at least one byte with `[start, end)`. Extents do not overlap, so
    /// walking back from `end` their ends decrease too and the first one ending at or before
    /// `start` ends the walk.
    fn overlapping(&self, start: u64, end: u64) -> impl Iterator<Item = (&u64, &Vec<u8>)> {
        self.extents
            .range(..end)
            .rev()
            .take_while(move |(&extent_start, data)| extent_start + data.len() as u64 > start)
    }
}

/// Copies the part of the extent `data` at `start` that falls in `buf`, which holds the file
/// from `offset`.
fn copy_intersection(buf: &mut [u8], offset: u64, start: u64, data: &[u8]) {
    let buf_end = offset + buf.len() as u64;
    let from = start.max(offset);
    let to = (start + data.len() as u64).min(buf_end);
    if from >= to {
        return;
    }
    // All four indexes are below buf.len() or data.len(), so they fit in usize.
    let dst = &mut buf[(from - offset) as usize..(to - offset) as usize];
    dst.copy_from_slice(&data[(from - start) as usize..(to - start) as usize]);
}

/// `offset + len`, or EFBIG when a file could not be that long.
fn end_of(offset: u64, len: usize) -> io::Result<u64> {
    offset
        .checked_add(len as u64)
        .filter(|&end| end <= i64::MAX as u64)
        .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))
}

fn to_usize(n: u64) -> io::Result<usize> {
    usize::try_from(n).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

    use std::cell::RefCell;

    use proptest::prelude::*;

    use super::*;

    /// A backing file in memory.
    #[derive(Default)]
    struct VecBacking(RefCell<Vec<u8>>);

    impl Backing for VecBacking {
        fn len(&self) -> io::Result<u64> {
            Ok(self.0.borrow().len() as u64)
        }

        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let data = self.0.borrow();
            let start = offset as usize;
            let src = data
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        }

        fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
            let mut file = self.0.borrow_mut();
            let end = offset as usize + data.len();
            if file.len() < end {
                file.resize(end, 0);
            }
            file[offset as usize..end].copy_from_slice(data);
            Ok(())
        }

        fn set_len(&self, len: u64) -> io::Result<()> {
            self.0.borrow_mut().resize(len as usize, 0);
            Ok(())
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Write { offset: u64, len: usize, byte: u8 },
        Truncate(u64),
        Fsync,
        Drop,
        Read { offset: u64, len: usize },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..96, 0usize..40, any::<u8>())
                .prop_map(|(offset, len, byte)| Op::Write { offset, len, byte }),
            1 => (0u64..120).prop_map(Op::Truncate),
            1 => Just(Op::Fsync),
            1 => Just(Op::Drop),
            3 => (0u64..140, 0usize..80).prop_map(|(offset, len)| Op::Read { offset, len }),
        ]
    }

    /// The model: what survives a power loss, and what a reader sees now.
    #[derive(Default)]
    struct Model {
        durable: Vec<u8>,
        visible: Vec<u8>,
    }

    impl Model {
        fn read(&self, offset: u64, len: usize) -> Vec<u8> {
            let start = (offset as usize).min(self.visible.len());
            let end = (start + len).min(self.visible.len());
            self.visible[start..end].to_vec()
        }
    }

    fn check_invariants(overlay: &Overlay, backing_len: u64) {
        let sum: u64 = overlay.extents.values().map(|e| e.len() as u64).sum();
        assert_eq!(sum, overlay.bytes, "bytes counts the extents");
        let logical = overlay.logical_len(backing_len);
        let mut prev_end = 0;
        for (&start, data) in &overlay.extents {
            assert!(start >= prev_end, "extents do not overlap");
            assert!(!data.is_empty(), "no empty extents");
            prev_end = start + data.len() as u64;
        }
        assert!(prev_end <= logical, "extents end inside the file");
        assert!(overlay.cut.is_none() || overlay.len.is_some());
    }

    fn run(ops: &[Op]) {
        let backing = VecBacking::default();
        let mut overlay = Overlay::default();
        let mut model = Model::default();
        for op in ops {
            match *op {
                Op::Write { offset, len, byte } => {
                    let data = vec![byte; len];
                    overlay
                        .write(offset, &data, backing.len().unwrap())
                        .unwrap();
                    if len > 0 {
                        let end = offset as usize + len;
                        if model.visible.len() < end {
                            model.visible.resize(end, 0);
                        }
                        model.visible[offset as usize..end].copy_from_slice(&data);
                    }
                }
                Op::Truncate(len) => {
                    overlay.truncate(len, backing.len().unwrap());
                    model.visible.resize(len as usize, 0);
                }
                Op::Fsync => {
                    overlay.apply(&backing).unwrap();
                    model.durable = model.visible.clone();
                    assert_eq!(*backing.0.borrow(), model.durable);
                    assert!(overlay.is_clean());
                }
                Op::Drop => {
                    overlay.clear();
                    model.visible = model.durable.clone();
                }
                Op::Read { offset, len } => {
                    let got = overlay.read(&backing, offset, len).unwrap();
                    assert_eq!(got, model.read(offset, len), "read({offset}, {len})");
                }
            }
            let backing_len = backing.len().unwrap();
            check_invariants(&overlay, backing_len);
            assert_eq!(
                overlay.logical_len(backing_len),
                model.visible.len() as u64,
                "logical length after {op:?}"
            );
            let whole = overlay.read(&backing, 0, 1 << 16).unwrap();
            assert_eq!(whole, model.visible, "whole file after {op:?}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn overlay_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
            run(&ops);
        }
    }

    #[test]
    fn truncate_then_extend_reads_zeros_not_old_bytes() {
        run(&[
            Op::Write {
                offset: 0,
                len: 10,
                byte: 7,
            },
            Op::Fsync,
            Op::Truncate(2),
            Op::Truncate(10),
            Op::Read { offset: 0, len: 10 },
            Op::Fsync,
            Op::Drop,
            Op::Read { offset: 0, len: 10 },
        ]);
    }

    #[test]
    fn sequential_writes_stay_one_extent() {
        let mut overlay = Overlay::default();
        for i in 0..100u64 {
            overlay.write(i * 4, &[1, 2, 3, 4], 0).unwrap();
        }
        assert_eq!(overlay.extents.len(), 1);
        assert_eq!(overlay.dirty_bytes(), 400);
    }

    #[test]
    fn write_past_u64_end_is_efbig() {
        let mut overlay = Overlay::default();
        let err = overlay.write(u64::MAX - 1, &[1, 2, 3], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EFBIG));
    }
}
