//! The wire vocabulary every Keel process shares.
//!
//! Nodes, the gateway, the typed client and the backup tool talk to each
//! other over HTTP. What they must agree on byte for byte lives here, once:
//! the names of Keel's headers and the form of the leader hint
//! ([`header`]), the form of an address ([`addr`]), how bytes are written as text ([`hex`]), how a presented
//! secret is compared with the expected one ([`constant_time_eq`]), how a
//! process reads the wall clock ([`wall_ms`]), how a duration is written
//! ([`duration`]), the errors servers answer with ([`problem`]), and how it
//! takes a lock whose poisoning it tolerates ([`sync`]). Each of these had
//! drifted apart as copies in several crates; one of the copies compared the
//! cluster secret with `==`, whose running time tells an attacker how many
//! leading bytes were right.
//!
//! The crate does no I/O and nothing async, and depends on no other Keel
//! crate, so any of them can use it without a cycle. The one thing it reads
//! from the world is the wall clock, in [`wall_ms`], which the commerce
//! state machine (`keel-domain`) must never call: its time enters only
//! through leader-stamped log entries.
#![deny(missing_docs)]

pub mod addr;
pub mod clock;
pub mod duration;
pub mod header;
pub mod hex;
pub mod problem;
pub mod sync;

mod secret;

pub use clock::wall_ms;
pub use duration::parse_duration;
pub use secret::constant_time_eq;
