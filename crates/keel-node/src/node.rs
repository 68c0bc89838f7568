//! One replica: owns the Raft instance, the stores and the proposer, and
//! offers the operations the HTTP layer needs: submit a command (from any
//! node), read at a chosen consistency, inspect and change the cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft, RaftMetrics, ServerState};
use serde::{Deserialize, Serialize};

use keel_domain::query::{self, Page, QueryError};
use keel_domain::{
    Account, AccountId, Applied, Envelope, FieldError, Order, OrderId, Product, Sku, Summary,
    TableError,
};
use keel_store::{NodeId, StateMachineStore, StateReader, TypeConfig};

use crate::clock::ClockGuard;
use crate::config::NodeConfig;
use crate::election::ELECTION_POLL;
use crate::export::{ExportError, ExportSlot, HeldExport, LogRecords, EXPORTS_MAX};
use crate::metrics::{Metrics, Peer, Role, Route, RouteStatus};
use crate::proposer::{only_result, Group, ProposeError, Proposer};
use crate::rpc::{path, CallError, PeerClient};
use crate::signals::ElectionSignals;

/// Longest a write may take end to end inside the cluster, forwarding and
/// retries included, before the node gives up and says so.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(5);
/// Most attempts of one write (leader changes, forwarding failures).
pub const SUBMIT_ATTEMPTS_MAX: usize = 20;
/// First retry backoff of a write; doubles up to [`SUBMIT_BACKOFF_MAX`].
pub const SUBMIT_BACKOFF_FIRST: Duration = Duration::from_millis(10);
/// Largest retry backoff of a write.
pub const SUBMIT_BACKOFF_MAX: Duration = Duration::from_millis(200);
/// Longest a linearizable read waits for leadership confirmation and for
/// this replica to apply up to the read index.
pub const READ_DEADLINE: Duration = Duration::from_secs(3);
/// Timeout of a health probe of a peer (`/v1/cluster`, removal checks).
pub const PEER_PROBE_TIMEOUT: Duration = Duration::from_millis(300);

/// Why a write was not applied.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// Nothing was applied: no leader, or the leader could not be reached.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The write may or may not have been applied; retrying it with the same
    /// idempotency key is safe and tells which.
    #[error("outcome unknown: {0}")]
    Indeterminate(String),
    /// The proposal queue is full; nothing was applied.
    #[error("overloaded")]
    Overloaded,
}

/// Why a read could not be served at the asked consistency.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No leader could confirm the read index in time.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The store failed or is corrupt.
    #[error("storage: {0}")]
    Store(#[from] keel_store::StoreError),
    /// A table of the state failed to read or decode.
    #[error(transparent)]
    Table(#[from] TableError),
    /// A list's `limit` or `cursor` is malformed.
    #[error(transparent)]
    Invalid(FieldError),
    /// The task doing the read did not run to its end.
    #[error("{0}")]
    Interrupted(String),
}

impl From<QueryError> for ReadError {
    fn from(e: QueryError) -> Self {
        match e {
            QueryError::Invalid(f) => ReadError::Invalid(f),
            QueryError::Table(t) => ReadError::Table(t),
        }
    }
}

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began.
    Linearizable,
    /// This replica's current state; may lag the leader.
    Local,
}

/// A member's view as reported by `/v1/cluster`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberStatus {
    /// Node id.
    pub id: NodeId,
    /// Address.
    pub addr: String,
    /// `voter` or `learner`.
    pub membership: String,
    /// leader / follower / learner / candidate / unknown (as seen by itself).
    pub role: String,
    /// Its term, if it answered.
    pub term: Option<u64>,
    /// Its applied index, if it answered.
    pub applied_index: Option<u64>,
    /// The leader's last log index minus its applied index.
    pub lag: Option<u64>,
    /// Whether it answered the probe in time.
    pub healthy: bool,
}

/// `/v1/cluster`: the cluster as this node sees it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// The answering node.
    pub node_id: NodeId,
    /// The current leader, if known.
    pub leader_id: Option<NodeId>,
    /// The answering node's term.
    pub term: u64,
    /// The answering node's last log index.
    pub last_log_index: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
    /// Its snapshot's last index.
    pub snapshot_index: Option<u64>,
    /// Its purged-up-to index.
    pub purged_index: Option<u64>,
    /// Every member.
    pub members: Vec<MemberStatus>,
}

/// What a node says about itself on `/internal/self` (cheap, local).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SelfStatus {
    /// Node id.
    pub id: NodeId,
    /// Its role.
    pub role: String,
    /// Its term.
    pub term: u64,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// Its applied index.
    pub applied_index: Option<u64>,
    /// The leader it knows.
    pub leader_id: Option<NodeId>,
}

/// A membership change was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The change is unsafe or malformed; nothing changed.
    #[error("{0}")]
    Refused(String),
    /// This node is not the leader.
    #[error("not the leader")]
    NotLeader(Option<(NodeId, String)>),
    /// The change would leave the cluster unable to survive one more
    /// failure; nothing changed. The operator may insist (`force`).
    #[error("{0}")]
    AtRisk(String),
    /// Raft failed to commit the change.
    #[error("failed: {0}")]
    Failed(String),
}

/// Longest a leadership transfer may take, from pausing the leader to the
/// successor leading; past it the transfer gives up and the old leader, if
/// it still leads, resumes. Long enough for the fallback in which the
/// other voters' leader leases must run out (openraft's lease is the
/// election timeout's maximum, 300 ms by default) and a round or two of
/// elections after.
pub const TRANSFER_TIMEOUT: Duration = Duration::from_secs(3);

/// Longest a transfer waits for the batches in flight to commit and for
/// the successor to hold the leader's whole log, before giving up with
/// nothing changed.
pub const TRANSFER_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(1);

/// Timeout of the call asking the successor to stand.
pub const STAND_CALL_TIMEOUT: Duration = Duration::from_millis(500);

/// What a leadership transfer did.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Transfer {
    /// The leader before.
    pub from: NodeId,
    /// The leader now.
    pub to: NodeId,
    /// The new leader's term.
    pub term: u64,
    /// How long the old leader proposed nothing (ms): the writes' gap as
    /// this node saw it.
    pub paused_ms: u64,
}

/// Why a leadership transfer did not happen.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// This node is not the leader.
    #[error("not the leader")]
    NotLeader(Option<(NodeId, String)>),
    /// The successor cannot take over (not a voter, unhealthy, the leader
    /// itself); nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The transfer did not finish in time.
    #[error("{0}")]
    Failed(String),
}

/// A node asked to stand for leadership by the leader handing over.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StandRequest {
    /// The leader handing over.
    pub leader: NodeId,
    /// The leader's last log index: the successor stands only if it holds
    /// at least that much, or it could not win.
    pub last_log_index: u64,
}

/// Longest `POST /v1/cluster/compact` waits for the snapshot to be built
/// and for the log to be purged up to it.
pub const COMPACT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a compaction did.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Compaction {
    /// Last log index in the snapshot now on disk.
    pub snapshot_index: u64,
    /// Highest log index purged (the log now starts after it).
    pub purged_index: Option<u64>,
}

/// A compaction could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// Nothing has been applied yet, so there is nothing to snapshot.
    #[error("nothing applied yet: no snapshot to build")]
    NothingApplied,
    /// Raft stopped, or the snapshot was not built in time.
    #[error("{0}")]
    Unavailable(String),
}

/// A running replica. Its parts are private: callers say what they want
/// (submit, read a product, the cluster's status), never reach into the
/// store or Raft.
pub struct Node {
    id: NodeId,
    config: NodeConfig,
    raft: Raft<TypeConfig>,
    sm: StateMachineStore,
    log: keel_store::LogStore,
    backup_exports: Arc<tokio::sync::Semaphore>,
    proposer: Proposer,
    peers: PeerClient,
    metrics: Arc<Metrics>,
    clock: Arc<ClockGuard>,
    election: Arc<ElectionSignals>,
    /// Reads the process's, host's and data directory's figures; behind a
    /// lock because it keeps the previous CPU reading.
    host: std::sync::Mutex<keel_host::HostSampler>,
    /// Detectors and the alerts they opened ([`crate::watch`]).
    alerts: std::sync::Arc<std::sync::Mutex<keel_alert::Monitor>>,
}

/// What a [`Node`] is made of, handed over once at start-up.
pub struct NodeParts {
    /// Its configuration (its id is `config.id`).
    pub config: NodeConfig,
    /// The Raft instance.
    pub raft: Raft<TypeConfig>,
    /// The state machine store (reads).
    pub sm: StateMachineStore,
    /// The log store, for backup reads of committed entries.
    pub log: keel_store::LogStore,
    /// The proposer (leader only does real work).
    pub proposer: Proposer,
    /// Client for calls to peers.
    pub peers: PeerClient,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Whether this node's wall clock may lead ([`crate::clock`]).
    pub clock: Arc<ClockGuard>,
    /// What the election clock knows (when this node took the lead).
    pub election: Arc<ElectionSignals>,
    /// The alert monitor the watch task feeds.
    pub alerts: std::sync::Arc<std::sync::Mutex<keel_alert::Monitor>>,
}

/// A value read from this replica's state, and the applied index of the
/// read view it came from (`None` when nothing has been applied).
#[derive(Clone, Debug)]
pub struct ReadAt<T> {
    /// What was read.
    pub value: T,
    /// The read view's applied index.
    pub applied_index: Option<u64>,
}

/// This replica's state digest at its applied index.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StateDigest {
    /// The answering node.
    pub node_id: NodeId,
    /// The applied index the digest was taken at.
    pub applied_index: Option<u64>,
    /// The digest, lower-case hex.
    pub digest: String,
}

/// One peer's clock as this node last read it.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerClock {
    /// The peer's clock minus this node's (ms): positive when it is ahead.
    pub offset_ms: i64,
    /// Round trip of the reading (ms).
    pub rtt_ms: f64,
    /// Age of the reading (ms).
    pub age_ms: u64,
}

/// `/v1/clock`: this node's wall clock and what it knows of its peers'.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClockStatus {
    /// The answering node.
    pub node_id: NodeId,
    /// Its wall clock, ms since the Unix epoch.
    pub wall_ms: u64,
    /// The largest offset from a majority at which it may still lead (ms).
    pub clock_offset_max_ms: u64,
    /// Whether its clock agrees with a majority's, so it may lead.
    pub may_lead: bool,
    /// Whether it is a leader stepping down for its clock.
    pub stepping_down: bool,
    /// The latest reading of each peer's clock, by node id.
    pub peers: BTreeMap<String, PeerClock>,
}

/// The index up to which the leader knows `peer` holds its log (from its
/// replication metrics; `None` on a follower or before the first reply).
fn matched_index(m: &RaftMetrics<NodeId, BasicNode>, peer: NodeId) -> Option<u64> {
    m.replication
        .as_ref()?
        .get(&peer)
        .copied()
        .flatten()
        .map(|l| l.index)
}

/// Each follower's lag behind the leader's last log index (entries), from
/// its replication metrics; empty on a follower.
fn replication_lags(m: &RaftMetrics<NodeId, BasicNode>) -> Vec<(NodeId, u64)> {
    let last = m.last_log_index.unwrap_or(0);
    m.replication
        .iter()
        .flatten()
        .map(|(peer, matched)| (*peer, last.saturating_sub(matched.map_or(0, |l| l.index))))
        .collect()
}

/// The voter other than `leader` that holds most of the leader's log: the
/// successor that can take over soonest.
fn best_successor(leader: NodeId, m: &RaftMetrics<NodeId, BasicNode>) -> Option<NodeId> {
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != leader)
        .max_by_key(|v| (matched_index(m, *v), std::cmp::Reverse(*v)))
}

/// The role name of a server state.
pub fn role_name(s: ServerState) -> &'static str {
    match s {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shutdown",
    }
}

impl Node {
    /// Assembles the node from its parts.
    pub fn new(parts: NodeParts) -> Self {
        let host = keel_host::HostSampler::new(Some(parts.config.data_dir.clone()));
        Self {
            id: parts.config.id,
            config: parts.config,
            raft: parts.raft,
            sm: parts.sm,
            log: parts.log,
            backup_exports: Arc::new(tokio::sync::Semaphore::new(EXPORTS_MAX)),
            proposer: parts.proposer,
            peers: parts.peers,
            metrics: parts.metrics,
            clock: parts.clock,
            host: std::sync::Mutex::new(host),
            alerts: parts.alerts,
            election: parts.election,
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Its configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Whether this node leads and its clock may stamp entries: when the
    /// leader's own chores (expiry, clock ticks) should run.
    pub fn leads_with_agreed_clock(&self) -> bool {
        matches!(self.leader(), Some((id, _)) if id == self.id) && self.clock.may_lead()
    }

    fn m(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// Waits, at most `max`, until this node knows of a leader other than
    /// `tried` (the one an attempt just failed on). A retry after a leader
    /// dies then goes out the moment the election is won, instead of after
    /// a fixed backoff; while the same leader stays in place (overloaded or
    /// briefly unreachable) this is a plain backoff of `max`.
    async fn await_other_leader(&self, tried: Option<NodeId>, max: Duration) {
        let _ = tokio::time::timeout(max, self.other_leader(tried)).await;
    }

    /// Completes once this node knows a leader other than `tried`.
    async fn other_leader(&self, tried: Option<NodeId>) {
        let mut rx = self.raft.metrics();
        loop {
            let leader = rx.borrow_and_update().current_leader;
            if leader.is_some() && leader != tried {
                return;
            }
            if rx.changed().await.is_err() {
                // Raft stopped: nothing will change; let the caller's next
                // attempt report it.
                return std::future::pending().await;
            }
        }
    }

    /// This node's current term (the term of the leader it names).
    pub fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
    }

    /// The leader's id and address, as this node knows them.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        // Borrowed, not cloned: this runs on every write and every response.
        let rx = self.raft.metrics();
        let m = rx.borrow();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())?;
        Some((id, addr))
    }

    /// Applies one command through the cluster, from any node: the leader
    /// proposes it, a follower forwards it. Retries across leader changes
    /// with the same request id, so it has at most one effect.
    pub async fn submit(&self, env: Envelope) -> Result<Applied, SubmitError> {
        self.submit_group(Group::one(env))
            .await?
            .pop()
            .ok_or_else(|| SubmitError::Indeterminate("missing result".into()))
    }

    /// Applies a group of commands through the cluster as one unit, from
    /// any node: contiguously and in order in one Raft entry, with one
    /// result per command in the same order. A follower forwards the whole
    /// group in one request. Retries across leader changes with the same
    /// request ids until [`WRITE_DEADLINE`], so each command has at most
    /// one effect and a retried group answers from the stored results.
    pub async fn submit_group(&self, group: Group) -> Result<Vec<Applied>, SubmitError> {
        let deadline = Instant::now() + WRITE_DEADLINE;
        let mut backoff = SUBMIT_BACKOFF_FIRST;
        let mut maybe_proposed = false;
        let mut last = String::from("no leader");
        for _ in 0..SUBMIT_ATTEMPTS_MAX {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let leader = self.leader();
            let tried = leader.as_ref().map(|(id, _)| *id);
            let attempt = match leader {
                Some((id, _)) if id == self.id => self.propose_here(group.clone()).await,
                // A leader that stops answering (paused, cut off) would
                // hold the forward until its timeout; once another leader
                // is known, give up on it and send again there. The same
                // request ids keep that exactly-once.
                Some((id, addr)) => tokio::select! {
                    r = self.forward(&addr, &group, left) => r,
                    () = self.other_leader(Some(id)) => Err(ProposeError::Indeterminate(
                        format!("leader {id} was replaced while the write was forwarded to it"),
                    )),
                },
                None => Err(ProposeError::NotLeader { leader: None }),
            };
            match attempt {
                Ok(a) => return Ok(a),
                Err(ProposeError::QueueFull) if !maybe_proposed => {
                    return Err(SubmitError::Overloaded)
                }
                Err(ProposeError::Indeterminate(m)) => {
                    maybe_proposed = true;
                    last = m;
                }
                Err(e) => last = e.to_string(),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            self.await_other_leader(tried, backoff.min(left)).await;
            backoff = (backoff * 2).min(SUBMIT_BACKOFF_MAX);
        }
        if maybe_proposed {
            Err(SubmitError::Indeterminate(last))
        } else {
            Err(SubmitError::Unavailable(last))
        }
    }

    /// Sends a group to the leader at `addr` in one request: a single
    /// command over [`path::FORWARD`], more over [`path::FORWARD_BATCH`].
    async fn forward(
        &self,
        addr: &str,
        group: &Group,
        left: Duration,
    ) -> Result<Vec<Applied>, ProposeError> {
        self.metrics.forwards.inc();
        let res: Result<Result<Vec<Applied>, ProposeError>, CallError> = match group.envelopes() {
            [env] => self
                .peers
                .call::<_, Result<Applied, ProposeError>>(addr, path::FORWARD, env, left)
                .await
                .map(|r| r.map(|a| vec![a])),
            _ => {
                self.peers
                    .call(addr, path::FORWARD_BATCH, group, left)
                    .await
            }
        };
        match res {
            Ok(Ok(a)) if a.len() != group.len() => Err(ProposeError::Indeterminate(format!(
                "the leader answered {} results for {} commands",
                a.len(),
                group.len()
            ))),
            Ok(r) => r,
            // The connection was never made: the leader never saw it.
            Err(CallError::Unreachable(m)) => Err(ProposeError::NotLeader {
                leader: Some((0, m)),
            }),
            Err(e) => Err(ProposeError::Indeterminate(e.to_string())),
        }
    }

    /// Proposes a group on this node, which leads: only while its clock may
    /// stamp entries ([`crate::clock`]). A refusal proposed nothing, so the
    /// write is retried on the leader elected in its place.
    async fn propose_here(&self, group: Group) -> Result<Vec<Applied>, ProposeError> {
        if !self.clock.may_lead() || self.clock.stepping_down() {
            return Err(ProposeError::ClockUnsafe(
                "its clock does not agree with a majority's".into(),
            ));
        }
        self.proposer.propose_group(group).await
    }

    /// The leader's side of a forwarded command.
    pub async fn propose_forwarded(&self, env: Envelope) -> Result<Applied, ProposeError> {
        only_result(self.propose_forwarded_group(Group::one(env)).await)
    }

    /// The leader's side of a forwarded group: one entry, results in order.
    pub async fn propose_forwarded_group(
        &self,
        group: Group,
    ) -> Result<Vec<Applied>, ProposeError> {
        match self.leader() {
            Some((id, _)) if id == self.id => self.propose_here(group).await,
            leader => Err(ProposeError::NotLeader { leader }),
        }
    }

    /// The leader's side of a follower read: confirms leadership with a
    /// quorum and returns the index the reader must have applied.
    pub async fn read_index(&self) -> Result<u64, ProposeError> {
        // Confirming leadership sends AppendEntries, which would keep the
        // followers from electing the leader that replaces this one.
        if self.clock.stepping_down() {
            return Err(ProposeError::NotLeader { leader: None });
        }
        match self.raft.get_read_log_id().await {
            Ok((read, _)) => Ok(read.map(|l| l.index).unwrap_or(0)),
            Err(_) => Err(ProposeError::NotLeader {
                leader: self.leader(),
            }),
        }
    }

    /// A consistent read view at the asked consistency.
    async fn read(&self, consistency: Consistency) -> Result<StateReader, ReadError> {
        let stale = keel_domain::test_bugs::on(keel_domain::test_bugs::TestBug::StaleRead);
        if consistency == Consistency::Linearizable && !stale {
            self.catch_up().await?;
        }
        Ok(self.sm.reader_async().await?)
    }

    /// Runs `query` on one read view at the asked consistency.
    async fn read_with<T>(
        &self,
        consistency: Consistency,
        query: impl FnOnce(&StateReader) -> Result<T, ReadError>,
    ) -> Result<ReadAt<T>, ReadError> {
        let r = self.read(consistency).await?;
        let value = query(&r)?;
        // The view's own applied index; one that does not read is left out,
        // as the header it feeds is only informative.
        let applied_index = r.applied().ok().flatten().map(|l| l.index);
        Ok(ReadAt {
            value,
            applied_index,
        })
    }

    /// The product with its stock, if it exists.
    pub async fn read_product(
        &self,
        consistency: Consistency,
        sku: &Sku,
    ) -> Result<ReadAt<Option<Product>>, ReadError> {
        self.read_with(consistency, |r| Ok(query::product(r, sku)?))
            .await
    }

    /// A page of products in SKU order.
    pub async fn list_products(
        &self,
        consistency: Consistency,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ReadAt<Page<Product>>, ReadError> {
        self.read_with(consistency, |r| Ok(query::products(r, cursor, limit)?))
            .await
    }

    /// The account with its balance, if it exists.
    pub async fn read_account(
        &self,
        consistency: Consistency,
        id: &AccountId,
    ) -> Result<ReadAt<Option<Account>>, ReadError> {
        self.read_with(consistency, |r| Ok(query::account(r, id)?))
            .await
    }

    /// A page of a customer's orders, newest first.
    pub async fn customer_orders(
        &self,
        consistency: Consistency,
        id: &AccountId,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ReadAt<Page<Order>>, ReadError> {
        self.read_with(consistency, |r| {
            Ok(query::customer_orders(r, id, cursor, limit)?)
        })
        .await
    }

    /// The order, if it exists.
    pub async fn read_order(
        &self,
        consistency: Consistency,
        id: OrderId,
    ) -> Result<ReadAt<Option<Order>>, ReadError> {
        self.read_with(consistency, |r| Ok(query::order(r, id)?))
            .await
    }

    /// The counts and totals kept for conservation checks.
    pub async fn summary(&self, consistency: Consistency) -> Result<ReadAt<Summary>, ReadError> {
        self.read_with(consistency, |r| Ok(query::summary(r)?))
            .await
    }

    /// The API key `id` as this replica holds it (hash included, for
    /// checking a secret) and this replica's state clock (ms).
    pub async fn read_key(
        &self,
        id: &keel_domain::KeyId,
    ) -> Result<(Option<keel_domain::ApiKey>, u64), ReadError> {
        let r = self.sm.reader_async().await?;
        let key = query::key(&r, id)?;
        Ok((key, keel_domain::apply::load_summary(&r)?.clock_ms))
    }

    /// The token generation of `account` as this replica holds it, and
    /// this replica's state clock (ms).
    pub async fn read_token_generation(
        &self,
        account: &AccountId,
    ) -> Result<(u32, u64), ReadError> {
        let r = self.sm.reader_async().await?;
        let generation = keel_domain::token_generation(&r, account)?;
        Ok((generation, keel_domain::apply::load_summary(&r)?.clock_ms))
    }

    /// A page of the API keys, in id order, without their hashes.
    pub async fn list_keys(
        &self,
        consistency: Consistency,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ReadAt<Page<keel_domain::KeyInfo>>, ReadError> {
        self.read_with(consistency, |r| Ok(query::keys(r, cursor, limit)?))
            .await
    }

    /// A page of the audit trail, newest first.
    pub async fn audit(
        &self,
        consistency: Consistency,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ReadAt<Page<keel_domain::AuditRecord>>, ReadError> {
        self.read_with(consistency, |r| Ok(query::audit(r, cursor, limit)?))
            .await
    }

    /// What the leader's expiry chore needs from the local state: the
    /// earliest reservation due (ms), if any, and the state clock (ms, 0
    /// when unknown). A read that fails reads as nothing due at clock 0, so
    /// the chore waits for its next tick.
    pub async fn expiry_view(&self) -> (Option<u64>, u64) {
        match self.sm.reader_async().await {
            Ok(r) => (
                query::next_expiry_ms(&r).ok().flatten(),
                keel_domain::apply::load_summary(&r).map_or(0, |s| s.clock_ms),
            ),
            Err(_) => (None, 0),
        }
    }

    /// This replica's state digest at its applied index (not a linearizable
    /// read: each replica answers for itself).
    pub async fn digest(&self) -> Result<StateDigest, ReadError> {
        // Reading commits applied entries first and then hashes every table:
        // a blocking thread.
        let sm = self.sm.clone();
        let (applied, d) = tokio::task::spawn_blocking(move || {
            let r = sm.reader()?;
            Ok::<_, keel_store::StoreError>((r.applied()?, r.digest()?))
        })
        .await
        .map_err(|e| ReadError::Interrupted(format!("the digest did not run: {e}")))??;
        Ok(StateDigest {
            node_id: self.id,
            applied_index: applied.map(|l| l.index),
            digest: keel_protocol::hex::encode(&d),
        })
    }

    /// This node's applied index.
    pub fn applied_index(&self) -> Option<u64> {
        self.sm.last_applied().map(|l| l.index)
    }

    /// This node's wall clock and what it knows of its peers'.
    pub fn clock_status(&self) -> ClockStatus {
        let now = Instant::now();
        let peers = self
            .clock
            .samples()
            .into_iter()
            .map(|(id, s)| {
                let age = now.saturating_duration_since(s.at).as_millis();
                let peer = PeerClock {
                    offset_ms: s.offset_ms,
                    rtt_ms: s.rtt.as_secs_f64() * 1e3,
                    age_ms: u64::try_from(age).unwrap_or(u64::MAX),
                };
                (id.to_string(), peer)
            })
            .collect();
        ClockStatus {
            node_id: self.id,
            wall_ms: keel_protocol::wall_ms(),
            clock_offset_max_ms: self.config.clock_offset_max_ms,
            may_lead: self.clock.may_lead(),
            stepping_down: self.clock.stepping_down(),
            peers,
        }
    }

    /// Takes one of the backup export slots ([`crate::export::EXPORTS_MAX`]).
    pub fn backup_export_slot(&self) -> Result<ExportSlot, ExportError> {
        crate::export::take_slot(&self.backup_exports)
    }

    /// Writes a snapshot export of this node's state as it is now, holding
    /// `slot` as long as the export lives. Call [`Node::catch_up`] first
    /// for one that holds every acknowledged write.
    pub async fn export_snapshot(&self, slot: ExportSlot) -> Result<HeldExport, ExportError> {
        crate::export::export_snapshot(self.sm.clone(), slot).await
    }

    /// A page of committed log records above `after`, up to `upto` and never
    /// past this node's applied index.
    pub async fn log_records(
        &self,
        after: u64,
        upto: Option<u64>,
    ) -> Result<LogRecords, ExportError> {
        crate::export::log_records(self.log.clone(), self.applied_index(), after, upto).await
    }

    /// Counts one answered public request: its route, status and duration.
    pub fn observe_request(&self, route: String, status: u16, seconds: f64) {
        let m = &self.metrics;
        m.request_seconds
            .get_or_create(&Route {
                route: route.clone(),
            })
            .observe(seconds);
        m.requests
            .get_or_create(&RouteStatus { route, status })
            .inc();
        keel_protocol::sync::lock(&m.windows.requests).record(seconds, status >= 500);
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A fresh reading of the process, host and data directory.
    pub fn host_sample(&self) -> keel_host::HostSample {
        let sample = keel_protocol::sync::lock(&self.host).sample();
        self.metrics.host.update(&sample);
        sample
    }

    /// Each follower's lag behind this leader's last log index (entries);
    /// empty on a follower.
    pub fn replication_lags(&self) -> Vec<(NodeId, u64)> {
        replication_lags(&self.m())
    }

    /// Feeds sampled series to the alert monitor; returns its transitions.
    pub fn observe_series(
        &self,
        t_ms: u64,
        samples: &[(String, f64)],
    ) -> Vec<keel_alert::Transition> {
        keel_protocol::sync::lock(&self.alerts).observe(t_ms, samples)
    }

    /// Drops series the monitor should no longer judge, closing their
    /// alerts.
    pub fn forget_series(&self, t_ms: u64, keys: &[&str]) -> Vec<keel_alert::Transition> {
        let mut m = keel_protocol::sync::lock(&self.alerts);
        keys.iter().flat_map(|k| m.forget(t_ms, k)).collect()
    }

    /// Records an event alert.
    pub fn record_event(
        &self,
        t_ms: u64,
        new: keel_alert::NewAlert,
    ) -> Vec<keel_alert::Transition> {
        keel_protocol::sync::lock(&self.alerts).event(t_ms, new)
    }

    /// Alerts open now and those that ended (`GET /v1/alerts`).
    pub fn alerts(&self) -> keel_alert::AlertsResponse {
        keel_protocol::sync::lock(&self.alerts).book().response()
    }

    /// Sets `keel_alerts_active{severity}` from the book.
    pub fn refresh_alert_gauges(&self) {
        let counts = keel_protocol::sync::lock(&self.alerts)
            .book()
            .active_by_severity();
        for (severity, n) in counts {
            self.metrics
                .alerts_active
                .get_or_create(&crate::metrics::SeverityLabel {
                    severity: severity.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// Every metric in Prometheus' text format, Raft's gauges refreshed.
    pub fn render_metrics(&self) -> String {
        self.refresh_raft_gauges();
        self.metrics.render()
    }

    /// Waits until this node has applied everything the cluster had
    /// committed when it was called (the leader's read index, confirmed by
    /// a quorum), so what it reads next includes every write acknowledged
    /// before. Returns that index. Bounded by [`READ_DEADLINE`].
    pub async fn catch_up(&self) -> Result<u64, ReadError> {
        let deadline = Instant::now() + READ_DEADLINE;
        let index = self.linearizable_index(deadline).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        self.raft
            .wait(Some(left))
            .applied_index_at_least(Some(index), "linearizable read")
            .await
            .map_err(|e| ReadError::Unavailable(format!("replica catching up: {e}")))?;
        Ok(index)
    }

    async fn linearizable_index(&self, deadline: Instant) -> Result<u64, ReadError> {
        let mut backoff = SUBMIT_BACKOFF_FIRST;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Unavailable(
                    "no leader confirmed the read".into(),
                ));
            }
            let leader = self.leader();
            let tried = leader.as_ref().map(|(id, _)| *id);
            let got = match leader {
                Some((id, _)) if id == self.id => self.read_index().await.ok(),
                Some((id, addr)) => {
                    let call = self.peers.call(&addr, path::READ_INDEX, &(), left);
                    tokio::select! {
                        r = call => {
                            let r: Result<Result<u64, ProposeError>, CallError> = r;
                            r.ok().and_then(Result::ok)
                        }
                        // As for writes: a replaced leader's answer is not
                        // worth waiting for.
                        () = self.other_leader(Some(id)) => None,
                    }
                }
                None => None,
            };
            if let Some(i) = got {
                return Ok(i);
            }
            self.await_other_leader(tried, backoff.min(left)).await;
            backoff = (backoff * 2).min(SUBMIT_BACKOFF_MAX);
        }
    }

    /// This node's own status.
    pub fn self_status(&self) -> SelfStatus {
        let m = self.m();
        SelfStatus {
            id: self.id,
            role: role_name(m.state).into(),
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            leader_id: m.current_leader,
        }
    }

    async fn probe(&self, addr: &str) -> Option<SelfStatus> {
        self.peers
            .call::<_, SelfStatus>(addr, path::SELF, &(), PEER_PROBE_TIMEOUT)
            .await
            .ok()
    }

    /// The cluster as seen from here, probing every member.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let m = self.m();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let nodes: Vec<(NodeId, String)> = membership
            .nodes()
            .map(|(id, n)| (*id, n.addr.clone()))
            .collect();
        let probes = nodes.iter().map(|(id, addr)| async move {
            if *id == self.id {
                Some(self.self_status())
            } else {
                self.probe(addr).await
            }
        });
        let answers = futures::future::join_all(probes).await;
        let leader_last = answers
            .iter()
            .flatten()
            .find(|s| s.role == "leader")
            .and_then(|s| s.last_log_index);
        let members = nodes
            .into_iter()
            .zip(answers)
            .map(|((id, addr), s)| MemberStatus {
                id,
                addr,
                membership: if voters.contains(&id) {
                    "voter"
                } else {
                    "learner"
                }
                .into(),
                role: s.as_ref().map_or("unknown".into(), |s| s.role.clone()),
                term: s.as_ref().map(|s| s.term),
                applied_index: s.as_ref().and_then(|s| s.applied_index),
                lag: s
                    .as_ref()
                    .and_then(|s| Some(leader_last?.saturating_sub(s.applied_index.unwrap_or(0)))),
                healthy: s.is_some(),
            })
            .collect();
        ClusterStatus {
            node_id: self.id,
            leader_id: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            applied_index: m.last_applied.map(|l| l.index),
            snapshot_index: m.snapshot.map(|l| l.index),
            purged_index: m.purged.map(|l| l.index),
            members,
        }
    }

    fn require_leader(&self) -> Result<(), MembershipError> {
        match self.leader() {
            Some((id, _)) if id == self.id => Ok(()),
            other => Err(MembershipError::NotLeader(other)),
        }
    }

    fn membership_failed(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>,
    ) -> MembershipError {
        match e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                MembershipError::NotLeader(self.leader())
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
                MembershipError::Refused(c.to_string())
            }
            other => MembershipError::Failed(other.to_string()),
        }
    }

    /// Adds a non-voting learner and waits until it has caught up.
    pub async fn add_learner(&self, id: NodeId, addr: String) -> Result<(), MembershipError> {
        self.require_leader()?;
        if id == 0 {
            return Err(MembershipError::Refused("node id must be > 0".into()));
        }
        if self
            .m()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some()
        {
            return Err(MembershipError::Refused(format!(
                "node {id} is already a member"
            )));
        }
        self.raft
            .add_learner(id, BasicNode::new(addr), true)
            .await
            .map(|_| ())
            .map_err(|e| self.membership_failed(e))
    }

    /// Promotes a learner to voter.
    pub async fn promote(&self, id: NodeId) -> Result<(), MembershipError> {
        self.require_leader()?;
        let m = self.m();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(MembershipError::Refused(format!(
                "node {id} is not a learner; add it first"
            )));
        }
        if membership.voter_ids().any(|v| v == id) {
            return Err(MembershipError::Refused(format!(
                "node {id} is already a voter"
            )));
        }
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
            .await
            .map(|_| ())
            .map_err(|e| self.membership_failed(e))
    }

    /// Removes a member, refusing when the remaining voters that answer now
    /// would not form a quorum (the cluster would stop accepting writes),
    /// and, unless `force`, when they could not survive one more failure.
    pub async fn remove(&self, id: NodeId, force: bool) -> Result<(), MembershipError> {
        self.require_leader()?;
        let m = self.m();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if membership.get_node(&id).is_none() {
            return Err(MembershipError::Refused(format!(
                "node {id} is not a member"
            )));
        }
        if !voters.contains(&id) {
            return self
                .raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                .await
                .map(|_| ())
                .map_err(|e| self.membership_failed(e));
        }
        let remaining: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
        if remaining.is_empty() {
            return Err(MembershipError::Refused(
                "cannot remove the last voter".into(),
            ));
        }
        let status = self.cluster_status().await;
        let healthy: BTreeMap<NodeId, bool> =
            status.members.iter().map(|s| (s.id, s.healthy)).collect();
        let up = remaining
            .iter()
            .filter(|v| healthy.get(v).copied().unwrap_or(false))
            .count();
        let quorum = remaining.len() / 2 + 1;
        if up < quorum {
            return Err(MembershipError::Refused(format!(
                "removing node {id} would leave {} voters of which only {up} are healthy; \
                 a quorum needs {quorum}. Bring a node back first.",
                remaining.len()
            )));
        }
        if up.saturating_sub(1) < quorum && !force {
            return Err(MembershipError::AtRisk(format!(
                "removing node {id} would leave {} voters, {up} of them healthy, and a quorum \
                 needs {quorum}: one more failure would stop every write. Add a member first, \
                 or insist with force",
                remaining.len()
            )));
        }
        self.raft
            .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
            .await
            .map(|_| ())
            .map_err(|e| self.membership_failed(e))
    }

    /// Hands leadership to `to` (by default the voter holding most of the
    /// log), for maintenance of this node. openraft 0.9 has no transfer, so
    /// it is made of what it has:
    /// 1. The proposer pauses: batches in flight commit, nothing new is
    ///    appended, and writes wait in its queue instead of failing.
    /// 2. The leader waits until the successor holds its whole log, so the
    ///    successor can win a vote against any voter's log.
    /// 3. The successor is asked to stand ([`path::STAND`]). Voters refuse
    ///    a candidate while their leader's lease holds, except the leader
    ///    itself, whose own lease dates from its election: it grants the
    ///    vote and steps down. With three voters that is a quorum at once;
    ///    with more, the others grant once the lease they hold runs out
    ///    (the old leader no longer heartbeats), up to openraft's election
    ///    timeout later.
    /// 4. When the successor leads, the pause ends: the queued writes are
    ///    retried at the new leader with their request ids, so none is
    ///    applied twice.
    ///
    /// Safety is Raft's own: the successor wins only by a vote.
    pub async fn transfer_leader(&self, to: Option<NodeId>) -> Result<Transfer, TransferError> {
        match self.leader() {
            Some((id, _)) if id == self.id => {}
            other => return Err(TransferError::NotLeader(other)),
        }
        let m = self.m();
        let to = match to {
            Some(t) => t,
            None => best_successor(self.id, &m)
                .ok_or_else(|| TransferError::Refused("no other voter to hand over to".into()))?,
        };
        let membership = m.membership_config.membership();
        if to == self.id {
            return Err(TransferError::Refused(format!("node {to} already leads")));
        }
        if !membership.voter_ids().any(|v| v == to) {
            return Err(TransferError::Refused(format!(
                "node {to} is not a voter: only a voter can lead"
            )));
        }
        let addr = membership
            .get_node(&to)
            .map(|n| n.addr.clone())
            .ok_or_else(|| TransferError::Refused(format!("node {to} is not a member")))?;
        // This node refuses to vote for its successor until its own lease,
        // counted from its election, runs out: a leader elected moments ago
        // waits for it first, still taking writes.
        if let Some(since) = self.election.leading_since() {
            let lease = Duration::from_millis(self.config.raft.election_max_ms) + ELECTION_POLL;
            tokio::time::sleep_until((since + lease).into()).await;
        }
        let started = Instant::now();
        let paused = self
            .proposer
            .pause(TRANSFER_CATCH_UP_TIMEOUT)
            .await
            .ok_or_else(|| {
                TransferError::Failed("the writes in flight did not commit in time".into())
            })?;
        let result = self.hand_over(to, &addr, started).await;
        drop(paused);
        result
    }

    async fn hand_over(
        &self,
        to: NodeId,
        addr: &str,
        started: Instant,
    ) -> Result<Transfer, TransferError> {
        let left = TRANSFER_CATCH_UP_TIMEOUT.saturating_sub(started.elapsed());
        let caught_up = self
            .raft
            .wait(Some(left))
            .metrics(
                |m| matched_index(m, to) >= m.last_log_index,
                "successor holds the whole log",
            )
            .await
            .map_err(|_| {
                TransferError::Failed(format!(
                    "node {to} did not catch up with the leader's log within {TRANSFER_CATCH_UP_TIMEOUT:?}"
                ))
            })?;
        let req = StandRequest {
            leader: self.id,
            last_log_index: caught_up.last_log_index.unwrap_or(0),
        };
        let stood: Result<Result<(), String>, CallError> = self
            .peers
            .call(addr, path::STAND, &req, STAND_CALL_TIMEOUT)
            .await;
        match stood {
            Ok(Ok(())) => {}
            Ok(Err(why)) => return Err(TransferError::Refused(format!("node {to}: {why}"))),
            Err(e) => {
                return Err(TransferError::Failed(format!(
                    "asking node {to} to stand: {e}"
                )))
            }
        }
        let left = TRANSFER_TIMEOUT.saturating_sub(started.elapsed());
        let led = self
            .raft
            .wait(Some(left))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != self.id),
                "another node leads",
            )
            .await
            .map_err(|_| {
                TransferError::Failed(format!(
                    "node {to} did not take over within {TRANSFER_TIMEOUT:?}; this node still leads"
                ))
            })?;
        let new = led.current_leader.unwrap_or(to);
        if new != to {
            return Err(TransferError::Failed(format!(
                "node {new} won the election instead of node {to}"
            )));
        }
        Ok(Transfer {
            from: self.id,
            to,
            term: led.current_term,
            paused_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The successor's side of a transfer: stands for election at once if
    /// it is a voter, still follows the leader handing over and holds its
    /// whole log (a candidate with less could not win).
    pub async fn stand(&self, req: StandRequest) -> Result<(), String> {
        let m = self.m();
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == self.id)
        {
            return Err("not a voter".into());
        }
        if m.current_leader != Some(req.leader) {
            return Err(format!(
                "follows {:?}, not node {} that asked",
                m.current_leader, req.leader
            ));
        }
        let have = m.last_log_index.unwrap_or(0);
        if have < req.last_log_index {
            return Err(format!(
                "holds the log up to {have}, the leader up to {}",
                req.last_log_index
            ));
        }
        tracing::info!(
            leader = req.leader,
            "standing for election: the leader hands over"
        );
        self.raft.trigger().elect().await.map_err(|e| e.to_string())
    }

    /// Builds a snapshot of everything this node has applied and purges its
    /// log up to it, regardless of the snapshot policy: an operator's way
    /// to reclaim log space, and the chaos suite's way to make a rejoining
    /// node install a snapshot. Waits, at most [`COMPACT_TIMEOUT`], for the
    /// snapshot; the purge may lag while a replication stream still reads
    /// those entries (openraft delays it), so the answer says how far it got.
    pub async fn compact(&self) -> Result<Compaction, CompactError> {
        let target = self
            .m()
            .last_applied
            .map(|l| l.index)
            .ok_or(CompactError::NothingApplied)?;
        let unavailable = |e: &dyn std::fmt::Display| CompactError::Unavailable(e.to_string());
        self.raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| unavailable(&e))?;
        let deadline = Instant::now() + COMPACT_TIMEOUT;
        let m = self
            .raft
            .wait(Some(COMPACT_TIMEOUT))
            .metrics(
                |m| m.snapshot.is_some_and(|s| s.index >= target),
                "snapshot built",
            )
            .await
            .map_err(|e| unavailable(&e))?;
        // `metrics` returned once the predicate held, so a snapshot exists.
        let snapshot_index = m.snapshot.map_or(target, |s| s.index);
        self.raft
            .trigger()
            .purge_log(snapshot_index)
            .await
            .map_err(|e| unavailable(&e))?;
        let left = deadline.saturating_duration_since(Instant::now());
        let purged = self
            .raft
            .wait(Some(left))
            .metrics(
                |m| m.purged.is_some_and(|p| p.index >= snapshot_index),
                "log purged",
            )
            .await
            .map(|m| m.purged)
            .unwrap_or_else(|_| self.m().purged);
        Ok(Compaction {
            snapshot_index,
            purged_index: purged.map(|p| p.index),
        })
    }
}

impl Node {
    /// Updates the Raft gauges from openraft's metrics (called at scrape).
    fn refresh_raft_gauges(&self) {
        let m = self.m();
        let metrics = &self.metrics;
        for s in [
            ServerState::Leader,
            ServerState::Follower,
            ServerState::Candidate,
            ServerState::Learner,
            ServerState::Shutdown,
        ] {
            metrics
                .role
                .get_or_create(&Role {
                    role: role_name(s).into(),
                })
                .set(i64::from(m.state == s));
        }
        let g = |v: Option<u64>| v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX));
        metrics.term.set(g(Some(m.current_term)));
        metrics.last_log_index.set(g(m.last_log_index));
        metrics
            .applied_index
            .set(g(m.last_applied.map(|l| l.index)));
        metrics.leader_id.set(g(m.current_leader));
        // The commit point openraft last saved through the log store: on
        // the leader the quorum's, on a follower what the leader told it.
        // (openraft 0.9's metrics do not carry it.)
        match self.log.committed_index() {
            Ok(c) => {
                metrics.commit_index.set(g(c));
            }
            Err(e) => tracing::warn!(error = %e, "reading the commit index for metrics"),
        }
        metrics.replication_lag.clear();
        for (peer, lag) in replication_lags(&m) {
            metrics
                .replication_lag
                .get_or_create(&Peer { peer })
                .set(g(Some(lag)));
        }
        metrics
            .proposer_queued
            .set(g(Some(self.proposer.queued() as u64)));
        self.metrics
            .host
            .update(&keel_protocol::sync::lock(&self.host).sample());
    }
}
