//! Log records as a backup holds them: frames of
//! [`keel_store::push_log_frame`], each record the log's own (version,
//! CRC-32C, postcard entry), so a record is checked by the same code that
//! checks the node's log.

use std::path::Path;

use keel_store::TypeConfig;
use openraft::{Entry, EntryPayload};

/// What a run of consecutive log records covers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogSpan {
    /// The index before the first record.
    pub after: u64,
    /// The last record's index (`after` when empty).
    pub last: u64,
    /// Records.
    pub entries: u64,
    /// Leader time of the first record that carries one, ms.
    pub first_time_ms: Option<u64>,
    /// Leader time of the last record that carries one, ms.
    pub last_time_ms: Option<u64>,
}

/// Why a log record cannot join a [`LogSpan`].
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The record does not follow the span's last one.
    #[error("log record {index} does not follow {last} (a gap in the log)")]
    Gap {
        /// The record's index.
        index: u64,
        /// The span's last index.
        last: u64,
    },
    /// The record fails its checksum or does not decode.
    #[error(transparent)]
    Corrupt(#[from] keel_store::StoreError),
}

impl LogSpan {
    /// An empty span starting after `after`.
    pub fn empty(after: u64) -> Self {
        Self {
            after,
            last: after,
            ..Self::default()
        }
    }

    /// Adds the record of `index`: verified and decoded, and it must follow
    /// the previous one without a gap.
    pub fn add(&mut self, index: u64, record: &[u8]) -> Result<Entry<TypeConfig>, FrameError> {
        if Some(index) != self.last.checked_add(1) {
            return Err(FrameError::Gap {
                index,
                last: self.last,
            });
        }
        let e = keel_store::decode_log_record(Path::new("log record"), index, record)?;
        if let Some(t) = entry_time(&e) {
            self.first_time_ms.get_or_insert(t);
            self.last_time_ms = Some(t);
        }
        self.last = index;
        self.entries += 1;
        Ok(e)
    }
}

/// The leader time an entry carries (normal entries only).
pub fn entry_time(e: &Entry<TypeConfig>) -> Option<u64> {
    match &e.payload {
        EntryPayload::Normal(b) => Some(b.leader_time_ms),
        _ => None,
    }
}

impl LogSpan {
    /// Extends this span by `next`, which starts where this one ends.
    pub fn extend(&mut self, next: &LogSpan) {
        if next.entries == 0 {
            return;
        }
        self.last = next.last;
        self.entries += next.entries;
        if self.first_time_ms.is_none() {
            self.first_time_ms = next.first_time_ms;
        }
        if next.last_time_ms.is_some() {
            self.last_time_ms = next.last_time_ms;
        }
    }
}
