//! The store's one policy for poisoned locks.
//!
//! A lock is poisoned when a thread panicked while holding it. Two kinds of
//! lock live here, and each kind has one rule:
//! - a lock whose every critical section is one assignment or one map
//!   operation (the applied log id, the observers, the log's in-memory
//!   index) cannot be left half-changed, so a poisoned one is used as it is,
//!   through these helpers; never skipped (skipping once left the applied
//!   index behind the state);
//! - a lock that guards several steps (the open apply transaction, the
//!   snapshot files) turns poisoning into a [`crate::StoreError`]: the
//!   store refuses further work and the node stops, to recover from disk.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, using a poisoned lock as it is (see the module's rule).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Reads `l`, using a poisoned lock as it is (see the module's rule).
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Writes `l`, using a poisoned lock as it is (see the module's rule).
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_used_as_it_is_not_skipped() {
        let l = std::sync::Arc::new(RwLock::new(1u64));
        let l2 = l.clone();
        let _ = std::thread::spawn(move || {
            let _g = l2.write();
            panic!("poison it");
        })
        .join();
        assert!(l.is_poisoned());
        *write(&l) = 2;
        assert_eq!(*read(&l), 2);
    }
}
