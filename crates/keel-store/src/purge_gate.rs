//! How far a node's log may be purged: never past what its state database
//! holds durably.
//!
//! openraft 0.9 installs a snapshot on a follower by handing it to the
//! state-machine task and, in the same step, asking the log store to purge
//! the log up to the snapshot. Nothing orders the two: the purge (and the
//! entries the leader sends next, which follow the purge) could reach the
//! disk before the installed state does. A crash in between left a log
//! purged up to the snapshot and a state without it, a hole no restart can
//! cross (openraft asks for index 0 and finds the first entry after the
//! snapshot). [`PurgeGate`] closes it: the state store advances it after
//! each fsynced commit that covers a log index (an installed snapshot, a
//! built one), and the log store waits on it before it purges.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Longest a purge waits for the state to hold its index durably. An
/// install of the largest snapshot takes seconds; past this the purge fails
/// (openraft stops the node, and a restart finds log and state consistent,
/// nothing having been purged).
pub const PURGE_AWAIT_STATE_MAX: Duration = Duration::from_secs(120);

/// What the state database holds durably, as the log sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    /// Every log index up to this one (none: nothing applied).
    Through(Option<u64>),
    /// A snapshot install failed; the state will not reach further in
    /// this process.
    InstallFailed,
}

/// Shared by a node's state store (which advances it) and its log store
/// (which waits on it before purging).
#[derive(Debug, Clone)]
pub(crate) struct PurgeGate {
    durable: Arc<watch::Sender<Durable>>,
}

/// Why a purge may not go ahead.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum PurgeRefused {
    /// The state did not hold the index durably in time.
    #[error(
        "the state database did not hold log index {index} durably within {waited:?}; \
         the log is not purged past it"
    )]
    TimedOut { index: u64, waited: Duration },
    /// The snapshot install the purge waits for failed.
    #[error("the snapshot install up to log index {index} failed; the log is not purged past it")]
    InstallFailed { index: u64 },
}

impl PurgeGate {
    /// A gate open up to `durable_through`: what the state database held
    /// when it was opened (everything on disk at open is durable).
    pub(crate) fn new(durable_through: Option<u64>) -> Self {
        let (tx, _) = watch::channel(Durable::Through(durable_through));
        Self {
            durable: Arc::new(tx),
        }
    }

    /// The state now holds every index up to `index` durably. Called after
    /// the fsynced commit, never before.
    pub(crate) fn advance(&self, index: Option<u64>) {
        self.durable.send_if_modified(|d| match *d {
            Durable::Through(now) if index > now => {
                *d = Durable::Through(index);
                true
            }
            _ => false,
        });
    }

    /// A snapshot install failed: purges waiting for it give up at once.
    pub(crate) fn install_failed(&self) {
        self.durable.send_replace(Durable::InstallFailed);
    }

    /// Waits (at most `timeout`) until the state holds `index` durably.
    pub(crate) async fn wait_for(&self, index: u64, timeout: Duration) -> Result<(), PurgeRefused> {
        let mut rx = self.durable.subscribe();
        let reached = |d: &Durable| match *d {
            Durable::Through(t) => t >= Some(index),
            Durable::InstallFailed => true,
        };
        let seen = match tokio::time::timeout(timeout, rx.wait_for(reached)).await {
            Ok(Ok(d)) => *d,
            // The sender lives in this gate: it cannot be gone while we
            // hold `self`; treat it as a timeout all the same.
            Ok(Err(_)) | Err(_) => {
                return Err(PurgeRefused::TimedOut {
                    index,
                    waited: timeout,
                })
            }
        };
        match seen {
            Durable::Through(_) => Ok(()),
            Durable::InstallFailed => Err(PurgeRefused::InstallFailed { index }),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // A failed unwrap is a failed test.

    use super::*;

    const SHORT: Duration = Duration::from_millis(200);

    #[tokio::test]
    async fn a_purge_within_the_durable_state_goes_ahead_at_once() {
        let g = PurgeGate::new(Some(10));
        assert_eq!(g.wait_for(10, SHORT).await, Ok(()));
        assert_eq!(g.wait_for(3, SHORT).await, Ok(()));
    }

    #[tokio::test]
    async fn a_purge_past_the_durable_state_waits_for_it() {
        let g = PurgeGate::new(None);
        let waiting = tokio::spawn({
            let g = g.clone();
            async move { g.wait_for(29_710, PURGE_AWAIT_STATE_MAX).await }
        });
        g.advance(Some(5));
        assert_eq!(
            g.wait_for(29_710, SHORT).await,
            Err(PurgeRefused::TimedOut {
                index: 29_710,
                waited: SHORT
            })
        );
        assert!(!waiting.is_finished());
        g.advance(Some(29_710));
        assert_eq!(waiting.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn the_gate_never_goes_back() {
        let g = PurgeGate::new(Some(10));
        g.advance(Some(4));
        g.advance(None);
        assert_eq!(g.wait_for(10, SHORT).await, Ok(()));
    }

    #[tokio::test]
    async fn a_failed_install_releases_the_waiting_purge_with_an_error() {
        let g = PurgeGate::new(None);
        let waiting = tokio::spawn({
            let g = g.clone();
            async move { g.wait_for(7, PURGE_AWAIT_STATE_MAX).await }
        });
        g.install_failed();
        assert_eq!(
            waiting.await.unwrap(),
            Err(PurgeRefused::InstallFailed { index: 7 })
        );
    }
}
