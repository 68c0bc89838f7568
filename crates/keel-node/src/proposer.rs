//! The proposer: coalesces concurrent commands into one Raft entry.
//!
//! openraft 0.9 flushes the leader's log once per `client_write`, so the
//! throughput of the cluster is (commands per entry) x (entries in flight) /
//! (commit latency). Commands queue here; a batch closes when it reaches
//! `commands_max` or `bytes_max`, or when a pipeline slot is free and the
//! optional `delay_us` has passed. While `in_flight_max` batches are being
//! replicated, new commands accumulate into the next batch, so batches grow
//! with load by themselves and a lone command is proposed at once.
//!
//! Commands arrive in [`Group`]s (a single write is a group of one; a
//! `/v1/batch` request is one group). A group is one item of the queue and
//! always lands whole, contiguous and in its own order in one entry: an
//! entry only takes a group that fits, and a group too large for any entry
//! (`commands_max` or `bytes_max` configured below it) is an entry of its
//! own. So a batch's commands are applied in order with nothing between
//! them, and they commit or fail together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::Raft;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use keel_domain::command::BATCH_COMMANDS_MAX;
use keel_domain::{Applied, Batch, Envelope};
use keel_store::{NodeId, TypeConfig};

use crate::config::BatchLimits;
use crate::metrics::Metrics;

/// Most commands in one [`Group`]: the API's batch limit, so a whole
/// `/v1/batch` request is one group and, since a group is never split, one
/// Raft entry. Entries of this size are what the state machine and
/// `apply_batch` are sized for.
pub const GROUP_COMMANDS_MAX: usize = BATCH_COMMANDS_MAX;

/// Commands that must be applied contiguously, in this order, in one Raft
/// entry: 1 to [`GROUP_COMMANDS_MAX`] of them. Only built through
/// [`Group::new`] (also when decoded from a peer), so an empty or oversized
/// group cannot reach the proposer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group(Vec<Envelope>);

/// A [`Group`] was built with no command or more than [`GROUP_COMMANDS_MAX`].
#[derive(Debug, thiserror::Error)]
#[error("a group holds 1 to {GROUP_COMMANDS_MAX} commands, not {0}")]
pub struct GroupSizeError(pub usize);

impl Group {
    /// The commands as a group, if there are 1 to [`GROUP_COMMANDS_MAX`].
    pub fn new(envs: Vec<Envelope>) -> Result<Self, GroupSizeError> {
        if envs.is_empty() || envs.len() > GROUP_COMMANDS_MAX {
            return Err(GroupSizeError(envs.len()));
        }
        Ok(Self(envs))
    }

    /// A group of one command.
    pub fn one(env: Envelope) -> Self {
        Self(vec![env])
    }

    /// The commands, in order.
    pub fn envelopes(&self) -> &[Envelope] {
        &self.0
    }

    /// How many commands.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true: a group holds at least one command.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Group {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(Vec::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

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

/// What the proposer writes its entries to: openraft on a node; tests put
/// a recording log in its place to watch how groups are packed.
pub trait EntryLog: Clone + Send + Sync + 'static {
    /// Appends `entry` through consensus and returns one result per command.
    fn write(
        &self,
        entry: Batch,
    ) -> impl Future<Output = Result<Vec<Applied>, ProposeError>> + Send;
}

impl EntryLog for Raft<TypeConfig> {
    async fn write(&self, entry: Batch) -> Result<Vec<Applied>, ProposeError> {
        match self.client_write(entry).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                // openraft answers ForwardToLeader both before appending and
                // for appended entries a lost leadership orphaned; only the
                // latter is unknown, and the two cannot be told apart here.
                Err(ProposeError::Indeterminate(format!(
                    "leadership changed (new leader {:?})",
                    f.leader_id
                )))
            }
            Err(other) => Err(ProposeError::Indeterminate(other.to_string())),
        }
    }
}

type GroupReply = oneshot::Sender<Result<Vec<Applied>, ProposeError>>;

/// One queued group.
struct Pending {
    envs: Vec<Envelope>,
    bytes: usize,
    reply: GroupReply,
    /// Its commands' places under `queue_max`, held until its entry is
    /// proposed.
    _queued: OwnedSemaphorePermit,
}

/// Handle to submit commands to the proposer task.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<Pending>,
    /// Commands queued and not yet proposed, bounded by `queue_max`: the
    /// queue holds groups, but its limit is in commands, as before groups.
    queued: Arc<Semaphore>,
    queue_max: usize,
    /// The pipeline's places: a batch holds one while it is replicated.
    slots: Arc<Semaphore>,
    in_flight_max: usize,
}

/// Held while the proposer is paused ([`Proposer::pause`]): every
/// pipeline place, so nothing is proposed until it is dropped.
pub struct Paused {
    _places: OwnedSemaphorePermit,
}

impl Proposer {
    /// Starts the proposer task; it stops when `shutdown` fires, failing
    /// queued commands with `ShuttingDown`.
    pub fn start<L: EntryLog>(
        log: L,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        // Each queued group holds at least one command's place, so the
        // channel never fills before the semaphore does.
        let (tx, rx) = mpsc::channel(limits.queue_max);
        let queued = Arc::new(Semaphore::new(limits.queue_max));
        let queue_max = limits.queue_max;
        let in_flight_max = limits.in_flight_max;
        let slots = Arc::new(Semaphore::new(in_flight_max));
        let task = tokio::spawn(run(log, limits, metrics, rx, slots.clone(), shutdown));
        (
            Self {
                tx,
                queued,
                queue_max,
                slots,
                in_flight_max,
            },
            task,
        )
    }

    /// Stops proposing: waits until every batch in flight has its outcome
    /// (at most `within`), then holds every pipeline place, so commands
    /// queue (up to `queue_max`) and no new entry is appended until the
    /// guard is dropped. A leadership transfer pauses the leader so its
    /// chosen successor can hold its whole log. `None` if the batches in
    /// flight did not finish in time.
    pub async fn pause(&self, within: Duration) -> Option<Paused> {
        let places = u32::try_from(self.in_flight_max).unwrap_or(u32::MAX);
        let all = self.slots.clone().acquire_many_owned(places);
        match tokio::time::timeout(within, all).await {
            Ok(Ok(p)) => Some(Paused { _places: p }),
            _ => None,
        }
    }

    /// Commands queued and not yet proposed.
    pub fn queued(&self) -> usize {
        self.queue_max
            .saturating_sub(self.queued.available_permits())
    }

    /// Proposes one command and waits for its result.
    pub async fn propose(&self, env: Envelope) -> Result<Applied, ProposeError> {
        only_result(self.propose_group(Group::one(env)).await)
    }

    /// Proposes a group's commands contiguously, in order, in one entry,
    /// and waits for their results: one per command, in the same order.
    pub async fn propose_group(&self, group: Group) -> Result<Vec<Applied>, ProposeError> {
        let envs = group.0;
        let bytes = envs
            .iter()
            .map(|e| postcard::experimental::serialized_size(e).unwrap_or(256))
            .sum();
        // A group larger than the whole queue takes all of it: it waits for
        // an empty queue rather than never fitting.
        let places = u32::try_from(envs.len().min(self.queue_max)).unwrap_or(u32::MAX);
        let queued = self
            .queued
            .clone()
            .try_acquire_many_owned(places)
            .map_err(|_| ProposeError::QueueFull)?;
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            envs,
            bytes,
            reply,
            _queued: queued,
        };
        self.tx.try_send(pending).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => ProposeError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => ProposeError::ShuttingDown,
        })?;
        rx.await
            .unwrap_or_else(|_| Err(ProposeError::Indeterminate("proposer stopped".into())))
    }
}

/// The one result of a group of one.
pub fn only_result(r: Result<Vec<Applied>, ProposeError>) -> Result<Applied, ProposeError> {
    r?.pop()
        .ok_or_else(|| ProposeError::Indeterminate("missing result".into()))
}

/// The entry being filled: whole groups in arrival order.
struct Filling {
    groups: Vec<Pending>,
    commands: usize,
    bytes: usize,
}

impl Filling {
    /// An entry opened by `first`, which it takes whatever its size: a
    /// group is never split, so one too large for the limits is an entry
    /// of its own.
    fn new(first: Pending) -> Self {
        let mut f = Self {
            groups: Vec::new(),
            commands: 0,
            bytes: 0,
        };
        f.take(first);
        f
    }

    fn take(&mut self, p: Pending) {
        self.commands += p.envs.len();
        self.bytes += p.bytes;
        self.groups.push(p);
    }

    /// Whether no more groups may join.
    fn full(&self, limits: &BatchLimits) -> bool {
        self.commands >= limits.commands_max || self.bytes >= limits.bytes_max
    }

    /// Takes `p` if it fits whole; otherwise hands it back to open the
    /// next entry.
    fn offer(&mut self, p: Pending, limits: &BatchLimits) -> Option<Pending> {
        if self.commands + p.envs.len() > limits.commands_max
            || self.bytes + p.bytes > limits.bytes_max
        {
            return Some(p);
        }
        self.take(p);
        None
    }

    /// The entry's commands and, per group in the same order, how many of
    /// them are its and where its results go.
    fn into_parts(self) -> (Vec<Envelope>, Vec<(usize, GroupReply)>) {
        let mut envs = Vec::with_capacity(self.commands);
        let mut replies = Vec::with_capacity(self.groups.len());
        for p in self.groups {
            replies.push((p.envs.len(), p.reply));
            envs.extend(p.envs);
        }
        (envs, replies)
    }
}

/// Hands each group its own run of the entry's results, in order.
fn deliver(replies: Vec<(usize, GroupReply)>, results: Vec<Applied>) {
    let mut results = results.into_iter();
    for (n, reply) in replies {
        let mine: Vec<Applied> = results.by_ref().take(n).collect();
        // apply_batch returns exactly one result per command.
        let out = if mine.len() == n {
            Ok(mine)
        } else {
            Err(ProposeError::Indeterminate("missing result".into()))
        };
        let _ = reply.send(out);
    }
}

async fn run<L: EntryLog>(
    log: L,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Pending>,
    slots: Arc<Semaphore>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
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
        let mut batch = Filling::new(first);
        // Take whatever is already queued.
        while !batch.full(&limits) && carry.is_none() {
            match rx.try_recv() {
                Ok(p) => carry = batch.offer(p, &limits),
                Err(_) => break,
            }
        }
        // Wait for a pipeline slot (and the optional linger), accumulating.
        let linger = tokio::time::sleep(Duration::from_micros(limits.delay_us));
        tokio::pin!(linger);
        let mut lingered = limits.delay_us == 0;
        let permit = loop {
            let can_take = !batch.full(&limits) && carry.is_none();
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
                    Some(p) => carry = batch.offer(p, &limits),
                    None => lingered = true,
                },
                _ = shutdown.changed() => {
                    fail_all(batch, ProposeError::ShuttingDown);
                    break_out(&mut rx, carry.take());
                    return;
                }
            }
        };
        metrics.batch_commands.observe(batch.commands as f64);
        let (envs, replies) = batch.into_parts();
        let names: Vec<&'static str> = envs.iter().map(|e| e.command.name()).collect();
        let log = log.clone();
        let metrics = metrics.clone();
        in_flight.spawn(async move {
            let entry = Batch {
                // The only place wall time enters the log. The node proposes
                // only while its clock agrees with a majority's
                // (`Node::propose_here`), and the state machine bounds what
                // one entry can do with it (`StateClock`).
                leader_time_ms: keel_protocol::wall_ms(),
                commands: envs,
            };
            let res = log.write(entry).await;
            drop(permit);
            match res {
                Ok(results) => {
                    for (name, applied) in names.iter().zip(&results) {
                        metrics.business.observe(name, applied);
                    }
                    deliver(replies, results)
                }
                Err(err) => {
                    for (_, r) in replies {
                        let _ = r.send(Err(err.clone()));
                    }
                }
            }
        });
    }
    break_out(&mut rx, carry.take());
    while in_flight.join_next().await.is_some() {}
}

fn fail_all(batch: Filling, err: ProposeError) {
    for p in batch.groups {
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

#[cfg(test)]
mod tests {
    use super::*;
    use keel_domain::{Command, DomainError, Principal, RequestId, Sku};
    use std::sync::Mutex;

    /// A log that records each entry's request ids and answers every
    /// command with a result naming its own id, once `gate` lets it.
    #[derive(Clone)]
    struct Recorder {
        entries: Arc<Mutex<Vec<Vec<String>>>>,
        gate: Arc<Semaphore>,
        writes_started: Arc<std::sync::atomic::AtomicUsize>,
    }

    impl EntryLog for Recorder {
        async fn write(&self, entry: Batch) -> Result<Vec<Applied>, ProposeError> {
            self.writes_started
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _pass = self.gate.acquire().await;
            let ids: Vec<String> = entry
                .commands
                .iter()
                .map(|e| e.request_id.as_str().to_owned())
                .collect();
            self.entries.lock().unwrap().push(ids.clone());
            Ok(ids.into_iter().map(echo).collect())
        }
    }

    fn echo(id: String) -> Applied {
        Applied {
            result: Err(DomainError::NotFound {
                entity: "echo".into(),
                id,
            }),
            replayed: false,
        }
    }

    fn env(id: &str) -> Envelope {
        Envelope {
            request_id: RequestId::new(id).unwrap(),
            principal: Principal::Admin,
            origin: None,
            command: Command::Restock {
                sku: Sku::new("SKU-1").unwrap(),
                qty: 1,
            },
        }
    }

    fn ids(group: usize, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("g{group}#{i}")).collect()
    }

    fn limits(commands_max: usize, bytes_max: usize) -> BatchLimits {
        BatchLimits {
            commands_max,
            bytes_max,
            delay_us: 0,
            in_flight_max: 1,
            queue_max: 100_000,
        }
    }

    /// Proposes groups of `sizes` at once while the log is held, so they
    /// queue behind one another, then lets the log go. Returns the entries
    /// written and each group's results.
    async fn propose_queued(limits: BatchLimits, sizes: &[usize]) -> Vec<Vec<String>> {
        let log = Recorder {
            entries: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            writes_started: Arc::default(),
        };
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let (proposer, _task) =
            Proposer::start(log.clone(), limits, Arc::new(Metrics::new()), stop_rx);
        // A lone command first: it takes the one pipeline slot, so every
        // group below waits in the queue.
        let lone = tokio::spawn({
            let p = proposer.clone();
            async move { p.propose(env("lone")).await }
        });
        while log.writes_started.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let mut calls = Vec::new();
        for (g, &n) in sizes.iter().enumerate() {
            let p = proposer.clone();
            let group = Group::new(ids(g, n).iter().map(|i| env(i)).collect()).unwrap();
            calls.push(tokio::spawn(async move { p.propose_group(group).await }));
            // In this order: the queue is what is under test, not the
            // scheduler.
            let queued: usize = sizes[..=g].iter().sum();
            while proposer.queue_max - proposer.queued.available_permits() < queued {
                tokio::task::yield_now().await;
            }
        }
        log.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        assert!(lone.await.unwrap().is_ok());
        for (g, call) in calls.into_iter().enumerate() {
            let results = call.await.unwrap().unwrap();
            let got: Vec<String> = results
                .into_iter()
                .map(|a| match a.result {
                    Err(DomainError::NotFound { id, .. }) => id,
                    other => panic!("unexpected result {other:?}"),
                })
                .collect();
            assert_eq!(got, ids(g, sizes[g]), "group {g}'s results, in order");
        }
        let entries = log.entries.lock().unwrap().clone();
        assert_eq!(entries[0], vec!["lone".to_string()]);
        entries[1..].to_vec()
    }

    /// Every group sits whole, in order and with nothing between its
    /// commands, in exactly one entry; an entry over the command limit
    /// holds a single group.
    fn assert_whole(entries: &[Vec<String>], sizes: &[usize], commands_max: usize) {
        let total: usize = entries.iter().map(Vec::len).sum();
        assert_eq!(total, sizes.iter().sum::<usize>(), "every command once");
        for (g, &n) in sizes.iter().enumerate() {
            let want = ids(g, n);
            let holding: Vec<&Vec<String>> =
                entries.iter().filter(|e| e.contains(&want[0])).collect();
            assert_eq!(holding.len(), 1, "group {g} in one entry: {entries:?}");
            let e = holding[0];
            let at = e.iter().position(|x| *x == want[0]).unwrap();
            assert_eq!(e[at..at + n], want[..], "group {g} contiguous: {e:?}");
        }
        for e in entries {
            if e.len() > commands_max {
                let first = e[0].split('#').next().unwrap();
                assert!(
                    e.iter().all(|x| x.starts_with(&format!("{first}#"))),
                    "an oversized entry holds one group: {e:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn groups_are_never_split_or_interleaved() {
        let sizes = [1, 3, 7, 10, 25, 2, 1, 4, 9, 1, 6, 6, 1000, 5, 1];
        let entries = propose_queued(limits(10, 1 << 20), &sizes).await;
        assert_whole(&entries, &sizes, 10);
        // Groups were packed together where they fit, in arrival order.
        assert_eq!(entries[0], [ids(0, 1), ids(1, 3)].concat());
        assert_eq!(entries[1], ids(2, 7));
    }

    #[tokio::test]
    async fn a_group_over_the_byte_limit_is_an_entry_of_its_own() {
        let one = postcard::experimental::serialized_size(&env("g0#0")).unwrap();
        let per_entry = 1024 / one;
        let sizes = [1, per_entry * 3, 1, 2];
        let entries = propose_queued(limits(1_000, 1024), &sizes).await;
        assert_whole(&entries, &sizes, 1_000);
        assert!(entries.contains(&ids(1, per_entry * 3)), "{entries:?}");
    }

    #[test]
    fn a_short_entry_answers_no_group_with_the_wrong_results() {
        let (a, ra) = oneshot::channel();
        let (b, rb) = oneshot::channel();
        deliver(
            vec![(2, a), (2, b)],
            ["a", "b", "c"].map(|s| echo(s.into())).to_vec(),
        );
        let ra = ra.blocking_recv().unwrap().unwrap();
        assert_eq!(ra, vec![echo("a".into()), echo("b".into())]);
        assert!(matches!(
            rb.blocking_recv().unwrap(),
            Err(ProposeError::Indeterminate(_))
        ));
    }

    #[test]
    fn a_group_holds_one_to_the_batch_limit_of_commands() {
        assert!(Group::new(Vec::new()).is_err());
        let full: Vec<Envelope> = (0..GROUP_COMMANDS_MAX)
            .map(|i| env(&i.to_string()))
            .collect();
        assert!(Group::new(full.clone()).is_ok());
        let mut over = full;
        over.push(env("over"));
        // Nor can a peer send one: decoding checks the same bounds.
        let bytes = postcard::to_stdvec(&over).unwrap();
        assert!(postcard::from_bytes::<Group>(&bytes).is_err());
        assert!(postcard::from_bytes::<Group>(
            &postcard::to_stdvec(&Vec::<Envelope>::new()).unwrap()
        )
        .is_err());
        assert!(Group::new(over).is_err());
    }
}
