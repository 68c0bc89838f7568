//! The one way a Keel process takes a lock whose poisoning it tolerates.
//!
//! A lock is poisoned when a thread panicked while holding it. A lock whose
//! every critical section is one assignment, one push, one insert or one
//! map operation cannot be left half-changed, so a poisoned one is used as
//! it is, through these helpers; never skipped (skipping once left a
//! store's applied index behind its state, and a record dropped for a
//! poisoned lock would weaken a checker without a word). A lock that guards
//! several steps must not come here: its owner turns poisoning into an
//! error and stops (see `keel-store`'s `sync` module for its policy).

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `m`, using a poisoned lock as it is (see the module's rule).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Reads `l`, using a poisoned lock as it is (see the module's rule).
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `l`, using a poisoned lock as it is (see the module's rule).
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_poisoned_rwlock_is_used_as_it_is_not_skipped() {
        let l = Arc::new(RwLock::new(1u64));
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

    #[test]
    fn a_poisoned_mutex_is_used_as_it_is_not_skipped() {
        let m = Arc::new(Mutex::new(vec![1u8]));
        let m2 = m.clone();
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            panic!("poison it");
        })
        .join();
        assert!(m.is_poisoned());
        lock(&m).push(2);
        assert_eq!(*lock(&m), vec![1, 2]);
    }
}
