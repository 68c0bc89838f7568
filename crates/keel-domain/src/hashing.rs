//! BLAKE3 over a stream of many small pieces (a row's length, its key, its
//! value, ...), gathered into blocks before they reach the hasher.
//!
//! The hash is the same as feeding the pieces one by one; only the speed
//! differs. BLAKE3 hashes 1 KiB chunks several at a time with SIMD when it
//! is handed many at once, and one 64-byte block at a time, with a call's
//! overhead each, when it is handed a few bytes per call.

/// Bytes gathered before they are hashed: many 1 KiB BLAKE3 chunks at once.
pub const HASH_BLOCK_BYTES: usize = 64 << 10;

/// A BLAKE3 hasher that takes small pieces cheaply.
#[derive(Clone, Debug)]
pub struct GatheringHasher {
    h: blake3::Hasher,
    pending: Vec<u8>,
}

impl Default for GatheringHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl GatheringHasher {
    /// A hasher of nothing yet.
    pub fn new() -> Self {
        Self {
            h: blake3::Hasher::new(),
            pending: Vec::with_capacity(HASH_BLOCK_BYTES),
        }
    }

    /// Adds `b` to what is hashed.
    pub fn update(&mut self, b: &[u8]) {
        if self.pending.len() + b.len() > HASH_BLOCK_BYTES {
            self.h.update(&self.pending);
            self.pending.clear();
            if b.len() >= HASH_BLOCK_BYTES {
                self.h.update(b);
                return;
            }
        }
        self.pending.extend_from_slice(b);
    }

    /// The hash of everything added.
    pub fn finalize(mut self) -> blake3::Hash {
        self.h.update(&self.pending);
        self.h.finalize()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// However the input is cut, the hash is BLAKE3 of the whole.
        #[test]
        fn gathered_pieces_hash_as_the_whole(
            pieces in proptest::collection::vec(
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..16),
                    proptest::collection::vec(any::<u8>(), 0..(HASH_BLOCK_BYTES * 2 + 7)),
                ],
                0..12,
            )
        ) {
            let mut g = GatheringHasher::new();
            let mut whole = Vec::new();
            for p in &pieces {
                g.update(p);
                whole.extend_from_slice(p);
            }
            prop_assert_eq!(g.finalize(), blake3::hash(&whole));
        }
    }
}
