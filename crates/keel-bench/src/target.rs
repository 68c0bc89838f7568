//! What a load driver drives: one operation against one system.

use std::future::Future;

/// How one operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpResult {
    /// Done.
    Ok,
    /// A correct business refusal (e.g. `out_of_stock`): the system
    /// answered and is up, but nothing was sold.
    Refused(String),
    /// An error, by type (problem `type`, SQLSTATE, `connect`, ...).
    Error(String),
}

/// A system under load. Each client task keeps its own [`Target::Conn`]
/// (an endpoint choice, a database connection) across operations.
pub trait Target: Send + Sync + 'static {
    /// Per-client state.
    type Conn: Send + 'static;

    /// Fresh state for client `client`.
    fn conn(&self, client: u64) -> Self::Conn;

    /// Runs client `client`'s `seq`-th operation; never panics, and gives
    /// up within its own timeout.
    fn op(
        &self,
        conn: &mut Self::Conn,
        client: u64,
        seq: u64,
    ) -> impl Future<Output = OpResult> + Send;

    /// Business items (orders) one operation carries: more than one for a
    /// batch.
    fn items_per_op(&self) -> u64 {
        1
    }
}
