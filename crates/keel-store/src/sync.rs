//! The store's one policy for poisoned locks.
//!
//! A lock is poisoned when a thread panicked while holding it. Two kinds of
//! lock live here, and each kind has one rule:
//! - a lock whose every critical section is one assignment or one map
//!   operation (the applied log id, the observers, the log's in-memory
//!   index) cannot be left half-changed, so a poisoned one is used as it is,
//!   through these helpers (`keel_protocol::sync`); never skipped (skipping
//!   once left the applied index behind the state);
//! - a lock that guards several steps (the open apply transaction, the
//!   snapshot files) turns poisoning into a [`crate::StoreError`]: the
//!   store refuses further work and the node stops, to recover from disk.

pub(crate) use keel_protocol::sync::{lock, read, write};
