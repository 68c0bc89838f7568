//! The crate's one policy for poisoned locks: every critical section here
//! is one push, one insert or one counter step, so a lock a panicking
//! thread held cannot be half-changed and is used as it is. Never skipped:
//! a record dropped because a lock was poisoned would weaken the checkers
//! without a word.

pub(crate) use keel_protocol::sync::lock;
