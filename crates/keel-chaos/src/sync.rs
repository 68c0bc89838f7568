//! The crate's one policy for poisoned locks: every critical section here
//! is one push, one insert or one counter step, so a lock a panicking
//! thread held cannot be half-changed and is used as it is. Never skipped:
//! a record dropped because a lock was poisoned would weaken the checkers
//! without a word.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, using a poisoned lock as it is (see the module's rule).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
