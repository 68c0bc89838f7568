//! The proposer: coalesces concurrent commands into one Raft entry.
//!
//! openraft 0.9 flushes the leader's log once per `client_write`, so the
//! throughput of the cluster is (commands per entry) x (entries in flight) /
//! (commit latency). Commands queue here; a batch closes when it reaches
//! `commands_max` or `bytes_max`, or when a pipeline slot is free and the
//! optional `delay_us` has passed. While `in_flight_max` batches are being
//! replicated, new commands accumulate into the next batch, so batches grow
//! with load by themselves and a lone command is proposed at once.

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinSet;

use keel_domain::{Applied, Batch, Envelope};
use keel_store::{NodeId, TypeConfig};

use crate::config::BatchLimits;
use crate::metrics::Metrics;

/// Why a command was not applied by this node's proposer.
#[derive(Clone, Debug, Serialize, Deserialize, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the leader; nothing was proposed.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader's id and address, if known.
        leader: Option<(NodeId, String)>,
    },
    /// The queue is full; nothing was proposed. Retry later.
    #[error("proposal queue full")]
    QueueFull,
    /// The entry was proposed but the node lost leadership or stopped before
    /// it committed: it may still commit. Retry with the same key to learn.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// The node is shutting down; nothing was proposed.
    #[error("shutting down")]
    ShuttingDown,
    /// This node leads but its wall clock does not agree with a majority's,
    /// so it stamps nothing and is stepping down; nothing was proposed.
    #[error("leader's clock may not lead: {0}")]
    ClockUnsafe(String),
}

struct Pending {
    env: Envelope,
    bytes: usize,
    reply: oneshot::Sender<Result<Applied, ProposeError>>,
}

/// Handle to submit commands to the proposer task.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the proposer task; it stops when `shutdown` fires, failing
    /// queued commands with `ShuttingDown`.
    pub fn start(
        raft: Raft<TypeConfig>,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(limits.queue_max);
        let task = tokio::spawn(run(raft, limits, metrics, rx, shutdown));
        (Self { tx }, task)
    }

    /// Proposes one command and waits for its result.
    pub async fn propose(&self, env: Envelope) -> Result<Applied, ProposeError> {
        let bytes = postcard::experimental::serialized_size(&env).unwrap_or(256);
        let (reply, rx) = oneshot::channel();
        self.tx
            .try_send(Pending { env, bytes, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ProposeError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => ProposeError::ShuttingDown,
            })?;
        rx.await
            .unwrap_or_else(|_| Err(ProposeError::Indeterminate("proposer stopped".into())))
    }
}

async fn run(
    raft: Raft<TypeConfig>,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Pending>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.in_flight_max));
    let mut in_flight = JoinSet::new();
    let mut carry: Option<Pending> = None;
    loop {
        // Reap finished batches so the set stays bounded by in_flight_max.
        while in_flight.try_join_next().is_some() {}
        let first = match carry.take() {
            Some(p) => p,
            None => tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => break },
                _ = shutdown.changed() => break,
            },
        };
        let mut batch = vec![first];
        let mut bytes = batch[0].bytes;
        let full = |n: usize, b: usize| n >= limits.commands_max || b >= limits.bytes_max;
        let add = |p: Pending, batch: &mut Vec<Pending>, bytes: &mut usize| -> Option<Pending> {
            if *bytes + p.bytes > limits.bytes_max {
                return Some(p);
            }
            *bytes += p.bytes;
            batch.push(p);
            None
        };
        // Take whatever is already queued.
        while !full(batch.len(), bytes) && carry.is_none() {
            match rx.try_recv() {
                Ok(p) => carry = add(p, &mut batch, &mut bytes),
                Err(_) => break,
            }
        }
        // Wait for a pipeline slot (and the optional linger), accumulating.
        let linger = tokio::time::sleep(Duration::from_micros(limits.delay_us));
        tokio::pin!(linger);
        let mut lingered = limits.delay_us == 0;
        let permit = loop {
            let can_take = !full(batch.len(), bytes) && carry.is_none();
            if lingered || !can_take {
                if let Ok(p) = slots.clone().try_acquire_owned() {
                    break p;
                }
            }
            tokio::select! {
                p = slots.clone().acquire_owned(), if lingered || !can_take => match p {
                    Ok(p) => break p,
                    Err(_) => return,
                },
                _ = &mut linger, if !lingered => lingered = true,
                p = rx.recv(), if can_take => match p {
                    Some(p) => carry = add(p, &mut batch, &mut bytes),
                    None => lingered = true,
                },
                _ = shutdown.changed() => {
                    fail_all(batch, ProposeError::ShuttingDown);
                    break_out(&mut rx, carry.take());
                    return;
                }
            }
        };
        metrics.batch_commands.observe(batch.len() as f64);
        let raft = raft.clone();
        in_flight.spawn(async move {
            let (envs, replies): (Vec<_>, Vec<_>) =
                batch.into_iter().map(|p| (p.env, p.reply)).unzip();
            let entry = Batch {
                // The only place wall time enters the log. The node proposes
                // only while its clock agrees with a majority's
                // (`Node::propose_here`), and the state machine bounds what
                // one entry can do with it (`StateClock`).
                leader_time_ms: crate::clock::wall_ms(),
                commands: envs,
            };
            let res = raft.client_write(entry).await;
            drop(permit);
            match res {
                Ok(resp) => {
                    let mut results = resp.data.into_iter();
                    for r in replies {
                        // apply_batch returns exactly one result per command.
                        let out = results
                            .next()
                            .ok_or_else(|| ProposeError::Indeterminate("missing result".into()));
                        let _ = r.send(out);
                    }
                }
                Err(e) => {
                    let err = match e {
                        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                            // openraft answers ForwardToLeader both before
                            // appending and for appended entries a lost
                            // leadership orphaned; only the latter is unknown,
                            // and the two cannot be told apart here.
                            ProposeError::Indeterminate(format!(
                                "leadership changed (new leader {:?})",
                                f.leader_id
                            ))
                        }
                        other => ProposeError::Indeterminate(other.to_string()),
                    };
                    for r in replies {
                        let _ = r.send(Err(err.clone()));
                    }
                }
            }
        });
    }
    break_out(&mut rx, carry.take());
    while in_flight.join_next().await.is_some() {}
}

fn fail_all(batch: Vec<Pending>, err: ProposeError) {
    for p in batch {
        let _ = p.reply.send(Err(err.clone()));
    }
}

fn break_out(rx: &mut mpsc::Receiver<Pending>, carry: Option<Pending>) {
    rx.close();
    if let Some(p) = carry {
        let _ = p.reply.send(Err(ProposeError::ShuttingDown));
    }
    while let Ok(p) = rx.try_recv() {
        let _ = p.reply.send(Err(ProposeError::ShuttingDown));
    }
}
