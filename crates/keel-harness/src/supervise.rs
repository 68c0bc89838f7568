//! Keeps a cluster's processes running, as systemd's `Restart=on-failure`
//! would: a node or gateway that exits on its own is restarted after a
//! backoff that doubles with each quick failure, and every exit and restart
//! is reported. `keel up` runs one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use crate::LocalCluster;

/// Wait before the first restart of a process that exited.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(500);
/// Longest wait between restarts of a process that keeps failing.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A process that ran this long before it exited starts again from
/// [`BACKOFF_FIRST`].
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// A supervised process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Supervised {
    /// Node `id`.
    Node(u64),
    /// The gateway.
    Gateway,
}

impl fmt::Display for Supervised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Supervised::Node(id) => write!(f, "node {id}"),
            Supervised::Gateway => f.write_str("the gateway"),
        }
    }
}

/// What a look at the processes found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A process exited on its own; it is restarted after `backoff`.
    Exited {
        /// Which.
        what: Supervised,
        /// Its exit status.
        status: String,
        /// The wait before its restart.
        backoff: Duration,
    },
    /// A process was started again, for the `attempt`-th time in a row.
    Restarted {
        /// Which.
        what: Supervised,
        /// Restarts since it last ran for [`STABLE_AFTER`].
        attempt: u32,
    },
    /// A restart failed to start the process; it is tried again later.
    RestartFailed {
        /// Which.
        what: Supervised,
        /// Why.
        error: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Exited {
                what,
                status,
                backoff,
            } => write!(f, "{what} exited ({status}); restarting in {backoff:?}"),
            Event::Restarted { what, attempt } => {
                write!(f, "{what} restarted (restart {attempt} in a row)")
            }
            Event::RestartFailed { what, error } => {
                write!(f, "{what} could not be restarted: {error}")
            }
        }
    }
}

/// One process's restart bookkeeping.
#[derive(Debug)]
struct Track {
    /// Restarts since it last ran for [`STABLE_AFTER`].
    attempt: u32,
    /// When it was last started.
    started: Instant,
    /// When it is due to be restarted, while it is down.
    due: Option<Instant>,
}

/// Restarts a cluster's processes that exit on their own.
#[derive(Debug, Default)]
pub struct Supervisor {
    tracks: BTreeMap<Supervised, Track>,
}

/// The wait before restart number `attempt` (1 for the first).
pub fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    BACKOFF_FIRST
        .saturating_mul(1 << doublings)
        .min(BACKOFF_MAX)
}

impl Supervisor {
    /// A supervisor that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// One look at every process of `cluster` at `now`: notes those that
    /// exited on its own (a process stopped through the cluster is not
    /// one) and restarts those whose backoff has passed.
    pub fn tick(&mut self, cluster: &mut LocalCluster, now: Instant) -> Vec<Event> {
        let mut events = Vec::new();
        let mut watched: Vec<Supervised> =
            cluster.ids().into_iter().map(Supervised::Node).collect();
        if cluster.gateway_addr().is_some() {
            watched.push(Supervised::Gateway);
        }
        for what in watched {
            let track = self.tracks.entry(what).or_insert(Track {
                attempt: 0,
                started: now,
                due: None,
            });
            if track.due.is_none() {
                let exited = match what {
                    Supervised::Node(id) => cluster.exited(id).ok().flatten(),
                    Supervised::Gateway => cluster.gateway_exited(),
                };
                let Some(status) = exited else { continue };
                if now.duration_since(track.started) >= STABLE_AFTER {
                    track.attempt = 0;
                }
                track.attempt += 1;
                let wait = backoff(track.attempt);
                track.due = Some(now + wait);
                events.push(Event::Exited {
                    what,
                    status: status.to_string(),
                    backoff: wait,
                });
            }
            if track.due.is_some_and(|due| now >= due) {
                let started = match what {
                    Supervised::Node(id) => cluster.restart(id),
                    Supervised::Gateway => cluster.restart_gateway(),
                };
                match started {
                    Ok(()) => {
                        track.due = None;
                        track.started = now;
                        events.push(Event::Restarted {
                            what,
                            attempt: track.attempt,
                        });
                    }
                    Err(e) => {
                        track.attempt += 1;
                        track.due = Some(now + backoff(track.attempt));
                        events.push(Event::RestartFailed {
                            what,
                            error: e.to_string(),
                        });
                    }
                }
            }
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_from_the_first_wait_up_to_its_cap() {
        assert_eq!(backoff(1), BACKOFF_FIRST);
        assert_eq!(backoff(2), BACKOFF_FIRST * 2);
        assert_eq!(backoff(3), BACKOFF_FIRST * 4);
        assert_eq!(backoff(40), BACKOFF_MAX);
    }
}
