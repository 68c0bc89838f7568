//! Nemeses: the faults a chaos run injects into a live cluster of real
//! processes, each paired with its heal, chosen on a seeded schedule so a
//! failing run can be replayed fault for fault.

use std::time::{Duration, Instant};

use keel_client::{method_delete, method_get, method_post};
use keel_harness::LocalCluster;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::ChaosError;

/// How long a nemesis waits for the cluster to elect or converge.
pub const RECOVERY_TIMEOUT: Duration = Duration::from_secs(30);

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    /// SIGKILL the leader; restart it at heal.
    KillLeader,
    /// SIGKILL one follower; restart it at heal.
    KillFollower,
    /// SIGKILL a node chosen by the seed; restart it at heal.
    KillRandom,
    /// SIGSTOP the leader (a long GC pause or a hung VM); SIGCONT at heal.
    PauseLeader,
    /// SIGSTOP one follower; SIGCONT at heal.
    PauseFollower,
    /// SIGKILL every node at once (power loss); restart them all at heal.
    PowerLoss,
    /// Power loss that also loses what the disks had not made durable:
    /// SIGKILL every node at once, then forget every write no node fsynced
    /// (through the lazy filesystem their data directories are mounted on);
    /// restart them all at heal. Needs FUSE.
    LoseUnsynced,
    /// Stop and restart each node in turn, waiting for the cluster between.
    RollingRestart,
    /// Remove a follower from the membership, wipe its data, and at heal
    /// bring it back empty as a learner and promote it.
    MembershipChurn,
    /// Cut the leader off from every other node (both directions); clients
    /// still reach it. Needs network namespaces.
    IsolateLeader,
    /// Split the nodes into a minority and a majority chosen by the seed.
    SplitHalves,
    /// Two sides that cannot see each other, and one node in the middle
    /// that sees both (Jepsen's bridge).
    Bridge,
    /// The leader stops hearing from every other node while its own
    /// packets still leave.
    OneWayLeader,
    /// Every node drops each packet from its peers with probability
    /// [`LOSSY_DROP_PROBABILITY`] (iptables' `statistic` match).
    LossyLinks,
    /// Every node-to-node link gets [`SLOW_LINK_LATENCY_MS`] of added
    /// latency each way, through the link proxies.
    SlowLinks,
    /// Every open node-to-node connection is dropped (at the fault and
    /// again at the heal), through the link proxies.
    DropConnections,
    /// The leader's wall clock jumps [`CLOCK_SKEW_S`] seconds ahead or
    /// behind (seeded), through libfaketime, more than any reservation's
    /// lifetime and the idempotency retention: the node must stop leading
    /// and nothing may expire or be forgotten early.
    ClockSkew,
    /// Two faults at once: the leader is cut off from every other node and,
    /// while the partition holds, a follower is SIGKILLed; at heal the
    /// links come back and the follower restarts. Needs namespaces.
    KillDuringPartition,
    /// Two faults at once: a follower is removed from the membership and
    /// wiped, and while the membership is one short the leader is cut off;
    /// at heal the links come back and the follower rejoins empty (learner,
    /// then voter). Needs namespaces.
    PartitionDuringChurn,
    /// Power loss during a snapshot install: a follower is removed and
    /// wiped, every node compacts its log, and the follower rejoins empty
    /// as a learner; once the leader's snapshot has begun to arrive (and
    /// before it is installed) every node is SIGKILLed and loses what it
    /// had not fsynced. At heal every node restarts and the follower,
    /// caught up again, is promoted. Needs FUSE.
    PowerLossInSnapshot,
}

/// Longest a pause nemesis waits to see its target stopped.
pub const PAUSE_CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

/// Longest a [`Nemesis::PowerLossInSnapshot`] waits for the leader's
/// snapshot to begin arriving at the rejoining follower.
pub const SNAPSHOT_ARRIVAL_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the rejoining follower's snapshot counters are read while a
/// [`Nemesis::PowerLossInSnapshot`] waits to cut the power.
pub const SNAPSHOT_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Snapshot chunk size of a chaos run's nodes (bytes): the smallest a node
/// accepts, so a snapshot of even a young run's state takes many round
/// trips and a [`Nemesis::PowerLossInSnapshot`] can strike mid-transfer.
pub const CHAOS_SNAPSHOT_CHUNK_BYTES: u64 = 64 << 10;

/// Latency a [`Nemesis::SlowLinks`] fault adds to each direction of each
/// node-to-node link. openraft times an AppendEntries out after one
/// heartbeat (50 ms by default), so a round trip must stay below that: at
/// 150 ms each way the cluster commits nothing until the links heal
/// (measured: 2.3 s without a write through a 2 s fault).
pub const SLOW_LINK_LATENCY_MS: u64 = 15;

/// How far a [`Nemesis::ClockSkew`] moves the leader's wall clock: two
/// days, beyond a chaos run's reservation lifetimes (the run plus an hour)
/// and the 24-hour idempotency retention, so a skewed clock that reached
/// the state would expire reservations and forget keys the checkers see.
pub const CLOCK_SKEW_S: i64 = 2 * 24 * 3600;

/// How close a node's clock, read back through `/v1/clock`, must come to
/// the skew the nemesis set before the fault counts as in force (ms):
/// libfaketime rereads its offset file every second.
pub const CLOCK_SKEW_READ_BACK_TOLERANCE_MS: i64 = 5_000;

/// File a [`Nemesis::LoseUnsynced`] writes, unsynced, into each node's data
/// directory just before the power goes: it must be gone after.
pub const CANARY_FILE: &str = "chaos-unsynced-canary";
/// Its size.
pub const CANARY_BYTES: usize = 4096;

/// Share of packets between nodes a [`Nemesis::LossyLinks`] fault drops.
pub const LOSSY_DROP_PROBABILITY: f64 = 0.2;

impl Nemesis {
    /// Every nemesis, in a fixed order.
    pub const ALL: [Nemesis; 20] = [
        Nemesis::KillLeader,
        Nemesis::KillFollower,
        Nemesis::KillRandom,
        Nemesis::PauseLeader,
        Nemesis::PauseFollower,
        Nemesis::PowerLoss,
        Nemesis::LoseUnsynced,
        Nemesis::RollingRestart,
        Nemesis::MembershipChurn,
        Nemesis::IsolateLeader,
        Nemesis::SplitHalves,
        Nemesis::Bridge,
        Nemesis::OneWayLeader,
        Nemesis::LossyLinks,
        Nemesis::SlowLinks,
        Nemesis::DropConnections,
        Nemesis::ClockSkew,
        Nemesis::KillDuringPartition,
        Nemesis::PartitionDuringChurn,
        Nemesis::PowerLossInSnapshot,
    ];

    /// Whether it moves a node's clock, which needs libfaketime.
    pub fn needs_faketime(self) -> bool {
        self == Nemesis::ClockSkew
    }

    /// Whether it drops unsynced writes, which needs every data directory
    /// on a lazy filesystem.
    pub fn needs_lazyfs(self) -> bool {
        matches!(self, Nemesis::LoseUnsynced | Nemesis::PowerLossInSnapshot)
    }

    /// Whether it cuts or degrades links, which needs each node in its own
    /// network namespace.
    pub fn needs_network(self) -> bool {
        matches!(
            self,
            Nemesis::IsolateLeader
                | Nemesis::SplitHalves
                | Nemesis::Bridge
                | Nemesis::OneWayLeader
                | Nemesis::LossyLinks
                | Nemesis::SlowLinks
                | Nemesis::DropConnections
                | Nemesis::KillDuringPartition
                | Nemesis::PartitionDuringChurn
        )
    }

    /// Whether it wipes a node's data (its first target), which then
    /// rejoins empty: a new member whose log and vote start again.
    pub fn wipes_a_node(self) -> bool {
        matches!(
            self,
            Nemesis::MembershipChurn | Nemesis::PartitionDuringChurn
        )
    }

    /// Whether it acts through the link proxies.
    pub fn needs_link_proxies(self) -> bool {
        matches!(self, Nemesis::SlowLinks | Nemesis::DropConnections)
    }

    /// The kebab-case name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Nemesis::KillLeader => "kill-leader",
            Nemesis::KillFollower => "kill-follower",
            Nemesis::KillRandom => "kill-random",
            Nemesis::PauseLeader => "pause-leader",
            Nemesis::PauseFollower => "pause-follower",
            Nemesis::PowerLoss => "power-loss",
            Nemesis::LoseUnsynced => "lose-unsynced",
            Nemesis::RollingRestart => "rolling-restart",
            Nemesis::MembershipChurn => "membership-churn",
            Nemesis::IsolateLeader => "isolate-leader",
            Nemesis::SplitHalves => "split-halves",
            Nemesis::Bridge => "bridge",
            Nemesis::OneWayLeader => "one-way-leader",
            Nemesis::LossyLinks => "lossy-links",
            Nemesis::SlowLinks => "slow-links",
            Nemesis::DropConnections => "drop-connections",
            Nemesis::ClockSkew => "clock-skew",
            Nemesis::KillDuringPartition => "kill-during-partition",
            Nemesis::PartitionDuringChurn => "partition-during-churn",
            Nemesis::PowerLossInSnapshot => "power-loss-in-snapshot",
        }
    }

    /// Parses a name, or `all`, into nemeses.
    pub fn parse_list(s: &str) -> Result<Vec<Nemesis>, ChaosError> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "all" {
                out.extend(Nemesis::ALL);
                continue;
            }
            let n = Nemesis::ALL
                .into_iter()
                .find(|n| n.name() == part)
                .ok_or_else(|| {
                    ChaosError::Config(format!(
                        "unknown nemesis {part:?}; known: all, {}",
                        Nemesis::ALL.map(Nemesis::name).join(", ")
                    ))
                })?;
            out.push(n);
        }
        if out.is_empty() {
            return Err(ChaosError::Config("no nemesis given".into()));
        }
        Ok(out)
    }
}

/// This process's wall clock, ms since the epoch.
fn local_wall_ms() -> i64 {
    // Signed, to add a negative skew to; past i64::MAX ms is 292 million
    // years away.
    i64::try_from(keel_protocol::wall_ms()).unwrap_or(i64::MAX)
}

/// SplitMix64: the schedule's generator, so a seed replays the same faults
/// on the same targets.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The order in which a run applies its nemeses: every one at least once
/// (in a seeded shuffle), then seeded picks for as long as the run lasts.
pub fn schedule(nemeses: &[Nemesis], steps: usize, seed: u64) -> Vec<Nemesis> {
    let mut rng = SplitMix64::new(seed);
    let mut first: Vec<Nemesis> = nemeses.to_vec();
    first.sort();
    first.dedup();
    // Fisher-Yates with the seeded generator.
    for i in (1..first.len()).rev() {
        first.swap(i, rng.below(i + 1));
    }
    let mut out = first;
    while out.len() < steps {
        out.push(nemeses[rng.below(nemeses.len())]);
    }
    out
}

/// One fault as it happened, for the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    /// The nemesis.
    pub nemesis: Nemesis,
    /// Nodes it hit.
    pub targets: Vec<u64>,
    /// When it was injected (ns since the run began).
    pub injected_ns: u64,
    /// When it was healed (ns since the run began).
    pub healed_ns: u64,
    /// When the cluster was whole again after the heal (ns), if it was.
    pub recovered_ns: Option<u64>,
    /// What could not be confirmed to have taken effect: a killed process
    /// still there, a cut node its peers still reach, a power loss that
    /// dropped no unsynced write. Empty when every check held (faults with
    /// no such check leave it empty).
    #[serde(default)]
    pub unconfirmed: Vec<String>,
}

impl FaultRecord {
    /// The node whose data this fault wiped, if it wiped one: done before
    /// [`FaultRecord::injected_ns`], and the node is back only after
    /// [`FaultRecord::healed_ns`].
    pub fn wiped(&self) -> Option<u64> {
        self.nemesis
            .wipes_a_node()
            .then(|| self.targets.first().copied())
            .flatten()
    }
}

/// A fault in force, to be healed.
#[derive(Debug)]
pub struct Active {
    nemesis: Nemesis,
    targets: Vec<u64>,
    injected_ns: u64,
    unconfirmed: Vec<String>,
}

/// Injects and heals faults on one cluster.
pub struct Nemeses<'a> {
    cluster: &'a mut LocalCluster,
    rng: SplitMix64,
    t0: Instant,
    /// The cluster's admin token, for membership changes.
    admin: keel_client::Client,
}

impl<'a> Nemeses<'a> {
    /// Faults for `cluster`, targets chosen from `seed`, times measured from
    /// `t0`.
    pub fn new(cluster: &'a mut LocalCluster, seed: u64, t0: Instant) -> Self {
        let admin = cluster.admin_client();
        Self {
            cluster,
            rng: SplitMix64::new(seed ^ 0x006e_656d_6573_6973),
            t0,
            admin,
        }
    }

    fn network(&self) -> Result<&keel_harness::Network, ChaosError> {
        self.cluster.network().ok_or_else(|| {
            ChaosError::Fault("this nemesis needs the nodes in network namespaces".into())
        })
    }

    /// Applies `fault(net, leader, peer)` to the leader's link with every
    /// other running node; the leader is the target. Returns it and the
    /// links that must now be dead, as `(from, to)`.
    async fn leader_links(
        &mut self,
        fault: fn(&keel_harness::Network, u64, u64) -> Result<(), keel_harness::HarnessError>,
    ) -> Result<(u64, Vec<(u64, u64)>), ChaosError> {
        let l = self.leader().await?;
        let net = self.network()?;
        let peers = self.running_except(l);
        for p in &peers {
            fault(net, l, *p)?;
        }
        Ok((l, peers.into_iter().map(|p| (p, l)).collect()))
    }

    /// SIGKILLs node `id` and checks that its process is gone. A process
    /// that had already ended on its own (a panic, a fatal error) was not
    /// killed by this fault, and the run says so with what it left behind.
    fn kill(&mut self, id: u64, unconfirmed: &mut Vec<String>) -> Result<(), ChaosError> {
        if let Some(notice) = self.cluster.exit_notice(id) {
            unconfirmed.push(format!("{notice}, before the kill"));
            return Ok(());
        }
        let pid = self.cluster.process_id(id);
        self.cluster.kill(id)?;
        match pid {
            None => unconfirmed.push(format!("node {id} was not running to be killed")),
            Some(pid) if !keel_harness::process_gone(pid) => {
                unconfirmed.push(format!("node {id} (pid {pid}) still there after SIGKILL"))
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// SIGSTOPs node `id` and checks that the kernel stopped it.
    async fn pause(&mut self, id: u64, unconfirmed: &mut Vec<String>) -> Result<(), ChaosError> {
        let pid = self.cluster.process_id(id);
        self.cluster.pause(id)?;
        let Some(pid) = pid else {
            unconfirmed.push(format!("node {id} was not running to be paused"));
            return Ok(());
        };
        // The signal is delivered asynchronously; a stop shows at once on
        // an idle machine and within milliseconds on a loaded one.
        let deadline = Instant::now() + PAUSE_CONFIRM_TIMEOUT;
        while !keel_harness::process_stopped(pid) {
            if Instant::now() >= deadline {
                unconfirmed.push(format!(
                    "node {id} (pid {pid}) not stopped {PAUSE_CONFIRM_TIMEOUT:?} after SIGSTOP"
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Drops node `id`'s unsynced writes and checks that the drop worked: a
    /// correct node fsyncs what it writes at once, so it may well have
    /// nothing unsynced when the power goes, and the bytes it loses prove
    /// nothing. A canary written (not fsynced) just before must be gone.
    fn lose_unsynced(&mut self, id: u64, unconfirmed: &mut Vec<String>) -> Result<(), ChaosError> {
        let canary = self.cluster.data_dir(id).join(CANARY_FILE);
        let io = |e: std::io::Error| ChaosError::Fault(format!("{}: {e}", canary.display()));
        std::fs::write(&canary, [0xC5; CANARY_BYTES]).map_err(io)?;
        let bytes = self.cluster.lose_unsynced(id)?;
        let left = std::fs::metadata(&canary).map_err(io)?.len();
        std::fs::remove_file(&canary).map_err(io)?;
        let node_bytes = bytes.saturating_sub(CANARY_BYTES as u64);
        tracing::info!(node = id, bytes = node_bytes, "dropped unsynced writes");
        unconfirmed.extend(canary_survived(id, left, bytes));
        Ok(())
    }

    /// Checks that each `(from, to)` link is dead: a TCP connection from
    /// inside `from`'s namespace to `to`'s port gets no answer.
    async fn check_cut(
        &self,
        links: &[(u64, u64)],
        unconfirmed: &mut Vec<String>,
    ) -> Result<(), ChaosError> {
        let net = self.network()?;
        let probes = links
            .iter()
            .map(|&(from, to)| net.probe(from, to))
            .collect::<Result<Vec<_>, _>>()?;
        let reached = tokio::task::spawn_blocking(move || keel_harness::net::reached(probes))
            .await
            .map_err(|e| ChaosError::Fault(format!("probing the cut: {e}")))??;
        unconfirmed.extend(reached.iter().map(|p| {
            format!(
                "node {} still reaches node {} through the cut",
                p.from, p.to
            )
        }));
        Ok(())
    }

    fn links(&self) -> Result<&keel_harness::LinkProxies, ChaosError> {
        self.cluster.link_proxies().ok_or_else(|| {
            ChaosError::Fault("this nemesis needs the link proxies (network namespaces)".into())
        })
    }

    /// The running nodes in a seeded order.
    fn shuffled(&mut self) -> Vec<u64> {
        let mut ids = self.cluster.running();
        for i in (1..ids.len()).rev() {
            ids.swap(i, self.rng.below(i + 1));
        }
        ids
    }

    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    async fn leader(&self) -> Result<u64, ChaosError> {
        self.cluster
            .wait_for("a leader", RECOVERY_TIMEOUT, || self.cluster.leader())
            .await
            .map_err(ChaosError::from)
    }

    /// The running nodes but `id`.
    fn running_except(&self, id: u64) -> Vec<u64> {
        self.cluster
            .running()
            .into_iter()
            .filter(|n| *n != id)
            .collect()
    }

    async fn follower(&mut self) -> Result<u64, ChaosError> {
        let leader = self.leader().await?;
        let followers = self.running_except(leader);
        if followers.is_empty() {
            return Err(ChaosError::Fault("no follower is running".into()));
        }
        Ok(followers[self.rng.below(followers.len())])
    }

    /// Injects `nemesis`; the returned fault is in force until [`heal`](Self::heal).
    pub async fn inject(&mut self, nemesis: Nemesis) -> Result<Active, ChaosError> {
        let mut unconfirmed = Vec::new();
        // Links that must be dead while the fault holds, as (from, to).
        let mut cut: Vec<(u64, u64)> = Vec::new();
        let targets = match nemesis {
            Nemesis::KillLeader => {
                let l = self.leader().await?;
                self.kill(l, &mut unconfirmed)?;
                vec![l]
            }
            Nemesis::KillFollower => {
                let f = self.follower().await?;
                self.kill(f, &mut unconfirmed)?;
                vec![f]
            }
            Nemesis::KillRandom => {
                let ids = self.cluster.running();
                let n = ids[self.rng.below(ids.len())];
                self.kill(n, &mut unconfirmed)?;
                vec![n]
            }
            Nemesis::PauseLeader => {
                let l = self.leader().await?;
                self.pause(l, &mut unconfirmed).await?;
                vec![l]
            }
            Nemesis::PauseFollower => {
                let f = self.follower().await?;
                self.pause(f, &mut unconfirmed).await?;
                vec![f]
            }
            Nemesis::PowerLoss | Nemesis::LoseUnsynced => {
                let ids = self.cluster.running();
                for id in &ids {
                    self.kill(*id, &mut unconfirmed)?;
                }
                // Every process is dead before any cache is dropped, as
                // when the power goes: no node runs on with a disk that
                // forgot what it said.
                if nemesis.needs_lazyfs() {
                    for id in &ids {
                        self.lose_unsynced(*id, &mut unconfirmed)?;
                    }
                }
                ids
            }
            Nemesis::RollingRestart => {
                let ids = self.cluster.ids();
                for id in &ids {
                    let before = self.cluster.process_id(*id);
                    self.cluster.stop(*id)?;
                    if let Some(pid) = before.filter(|p| !keel_harness::process_gone(*p)) {
                        unconfirmed
                            .push(format!("node {id} (pid {pid}) still there after its stop"));
                    }
                    self.cluster.restart(*id)?;
                    if before.is_none() || self.cluster.process_id(*id) == before {
                        unconfirmed.push(format!("node {id} was not restarted as a new process"));
                    }
                    self.cluster.wait_ready(RECOVERY_TIMEOUT).await?;
                }
                ids
            }
            Nemesis::IsolateLeader => {
                let (l, links) = self.leader_links(keel_harness::Network::cut).await?;
                cut = links;
                vec![l]
            }
            Nemesis::SplitHalves => {
                let ids = self.shuffled();
                let (minority, majority) = ids.split_at(ids.len() / 2);
                let net = self.network()?;
                for a in minority {
                    for b in majority {
                        net.cut(*a, *b)?;
                        cut.push((*b, *a));
                    }
                }
                minority.to_vec()
            }
            Nemesis::Bridge => {
                let ids = self.shuffled();
                let mid = ids.len() / 2;
                let net = self.network()?;
                for a in &ids[..mid] {
                    for b in &ids[mid + 1..] {
                        net.cut(*a, *b)?;
                        cut.push((*b, *a));
                    }
                }
                vec![ids[mid]]
            }
            Nemesis::OneWayLeader => {
                // The leader hears nothing, so its own connections get no
                // answer (its peers' may, through the link proxies).
                let (l, links) = self.leader_links(keel_harness::Network::drop_from).await?;
                cut = links.into_iter().map(|(p, l)| (l, p)).collect();
                vec![l]
            }
            Nemesis::LossyLinks => {
                let ids = self.cluster.running();
                let net = self.network()?;
                for id in &ids {
                    net.lossy(*id, LOSSY_DROP_PROBABILITY)?;
                }
                ids
            }
            Nemesis::SlowLinks => {
                self.links()?.set_latency_ms(SLOW_LINK_LATENCY_MS);
                self.cluster.running()
            }
            Nemesis::DropConnections => {
                self.links()?.drop_connections();
                self.cluster.running()
            }
            Nemesis::ClockSkew => {
                let l = self.leader().await?;
                let sign = if self.rng.below(2) == 0 { 1 } else { -1 };
                self.cluster.set_clock_offset(l, sign * CLOCK_SKEW_S)?;
                self.confirm_clock(l, sign * CLOCK_SKEW_S).await?;
                vec![l]
            }
            Nemesis::MembershipChurn => vec![self.remove_follower().await?],
            Nemesis::KillDuringPartition => {
                let (l, links) = self.leader_links(keel_harness::Network::cut).await?;
                cut = links;
                let followers = self.running_except(l);
                let f = *followers
                    .get(self.rng.below(followers.len()))
                    .ok_or_else(|| ChaosError::Fault("no follower is running".into()))?;
                self.kill(f, &mut unconfirmed)?;
                vec![l, f]
            }
            Nemesis::PartitionDuringChurn => {
                let f = self.remove_follower().await?;
                let (l, links) = self.leader_links(keel_harness::Network::cut).await?;
                cut = links;
                vec![f, l]
            }
            Nemesis::PowerLossInSnapshot => self.power_loss_in_snapshot(&mut unconfirmed).await?,
        };
        let injected_ns = self.now_ns();
        if !cut.is_empty() {
            self.check_cut(&cut, &mut unconfirmed).await?;
        }
        Ok(Active {
            nemesis,
            targets,
            injected_ns,
            unconfirmed,
        })
    }

    /// Heals a fault and waits until the cluster is whole again.
    pub async fn heal(&mut self, active: Active) -> Result<FaultRecord, ChaosError> {
        let healed_ns = self.now_ns();
        match active.nemesis {
            Nemesis::KillLeader
            | Nemesis::KillFollower
            | Nemesis::KillRandom
            | Nemesis::PowerLoss
            | Nemesis::LoseUnsynced => {
                for id in &active.targets {
                    self.cluster.restart(*id)?;
                }
            }
            Nemesis::PauseLeader | Nemesis::PauseFollower => {
                for id in &active.targets {
                    self.cluster.resume(*id)?;
                }
            }
            Nemesis::RollingRestart => {}
            Nemesis::IsolateLeader
            | Nemesis::SplitHalves
            | Nemesis::Bridge
            | Nemesis::OneWayLeader
            | Nemesis::LossyLinks => self.network()?.heal()?,
            Nemesis::ClockSkew => {
                for id in &active.targets {
                    self.cluster.set_clock_offset(*id, 0)?;
                    self.confirm_clock(*id, 0).await?;
                }
            }
            Nemesis::SlowLinks => self.links()?.set_latency_ms(0),
            Nemesis::DropConnections => self.links()?.drop_connections(),
            Nemesis::MembershipChurn => {
                for id in &active.targets {
                    self.rejoin(*id).await?;
                }
            }
            Nemesis::KillDuringPartition => {
                self.network()?.heal()?;
                if let Some(f) = active.targets.get(1) {
                    self.cluster.restart(*f)?;
                }
            }
            Nemesis::PartitionDuringChurn => {
                self.network()?.heal()?;
                if let Some(f) = active.targets.first() {
                    self.rejoin(*f).await?;
                }
            }
            Nemesis::PowerLossInSnapshot => {
                for id in &active.targets {
                    self.cluster.restart(*id)?;
                }
                if let Some(f) = active.targets.first() {
                    self.admit(*f).await?;
                }
            }
        }
        let recovered_ns = match self.cluster.wait_ready(RECOVERY_TIMEOUT).await {
            Ok(_) => Some(self.now_ns()),
            Err(_) => None,
        };
        Ok(FaultRecord {
            nemesis: active.nemesis,
            targets: active.targets,
            injected_ns: active.injected_ns,
            healed_ns,
            recovered_ns,
            unconfirmed: active.unconfirmed,
        })
    }

    /// Waits until node `id` reports a wall clock `skew_s` off this
    /// process's: a skew that never reached the node is a fault that did
    /// not take effect, and the run says so instead of passing.
    async fn confirm_clock(&self, id: u64, skew_s: i64) -> Result<(), ChaosError> {
        let addr = self.cluster.addr(id)?;
        let admin = &self.admin;
        let mut last = String::from("no answer");
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        while Instant::now() < deadline {
            let expected = local_wall_ms() + skew_s * 1_000;
            match admin
                .call_at(&addr, method_get(), "/v1/clock", None, None)
                .await
            {
                Ok(r) => match r.body["wall_ms"].as_i64() {
                    Some(w) if (w - expected).abs() <= CLOCK_SKEW_READ_BACK_TOLERANCE_MS => {
                        return Ok(())
                    }
                    Some(w) => last = format!("node reads {} s off", (w - local_wall_ms()) / 1_000),
                    None => last = format!("no wall_ms in {}", r.body),
                },
                Err(e) => last = format!("{e:?}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(ChaosError::Fault(format!(
            "node {id}'s clock never read {skew_s} s off ({last}): the skew did not take effect"
        )))
    }

    /// Removes a follower from the membership through the leader, stops it
    /// and wipes its data; returns it.
    async fn remove_follower(&mut self) -> Result<u64, ChaosError> {
        let f = self.follower().await?;
        // A deliberate fault: the two voters left survive no further failure,
        // which the leader refuses without `force`.
        let path = format!("/v1/cluster/members/{f}?force=true");
        // A membership change waits for a quorum of the old and the new
        // membership, and its reply may be lost or late (a lagging voter,
        // a leader change): ask the current leader again until the node is
        // gone, an answer that it is no member meaning an earlier ask
        // went through.
        let deadline = Instant::now() + RECOVERY_TIMEOUT;
        loop {
            let leader = self.leader().await?;
            let ep = self.cluster.addr(leader)?;
            match self
                .admin
                .call_at(&ep, method_delete(), &path, None, None)
                .await
            {
                Ok(_) => break,
                Err(e) if not_member(&e) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(ChaosError::Fault(format!("removing node {f}: {e:?}")))
                }
                Err(e) => {
                    tracing::info!(node = f, error = ?e, "removing a node: asking again");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        self.cluster.stop(f)?;
        self.cluster.wipe(f)?;
        Ok(f)
    }

    /// Brings a wiped node back: start it empty, add it as a learner, and
    /// promote it once it has caught up.
    async fn rejoin(&mut self, id: u64) -> Result<(), ChaosError> {
        self.cluster.restart(id)?;
        self.admit(id).await
    }

    /// Makes running node `id` a voter: adds it as a learner unless the
    /// membership already holds it (an addition that survived a power
    /// loss), then promotes it once it has caught up.
    async fn admit(&mut self, id: u64) -> Result<(), ChaosError> {
        let addr = self.cluster.addr(id)?;
        for (path, body) in [
            ("/v1/cluster/learners", json!({"id": id, "addr": addr})),
            ("/v1/cluster/members", json!({"id": id})),
        ] {
            let (admin, cluster) = (&self.admin, &self.cluster);
            self.cluster
                .wait_for(
                    &format!("{path} for node {id}"),
                    RECOVERY_TIMEOUT,
                    || async {
                        // The leader of this attempt: the one of the last may
                        // have stepped down (after a power loss, a node whose
                        // clock no majority has measured yet does).
                        let ep = cluster.addr(cluster.leader().await?).ok()?;
                        match admin
                            .call_at(&ep, method_post(), path, Some(&body), None)
                            .await
                        {
                            Ok(_) => Some(()),
                            Err(e) if path.ends_with("learners") && already_member(&e) => Some(()),
                            Err(_) => None,
                        }
                    },
                )
                .await?;
        }
        Ok(())
    }

    /// [`Nemesis::PowerLossInSnapshot`]'s injection; returns its targets,
    /// the rejoining follower first.
    async fn power_loss_in_snapshot(
        &mut self,
        unconfirmed: &mut Vec<String>,
    ) -> Result<Vec<u64>, ChaosError> {
        let f = self.remove_follower().await?;
        let others = self.cluster.running();
        for id in &others {
            self.compact(*id).await?;
        }
        self.cluster.restart(f)?;
        let arrival = self.await_snapshot_arrival(f).await;
        let mut targets = vec![f];
        targets.extend(others);
        for id in &targets {
            self.kill(*id, unconfirmed)?;
        }
        for id in &targets {
            self.lose_unsynced(*id, unconfirmed)?;
        }
        unconfirmed.extend(arrival.err());
        Ok(targets)
    }

    /// Snapshots node `id`'s state and purges its log up to it, so a node
    /// that rejoins empty must install a snapshot.
    async fn compact(&self, id: u64) -> Result<(), ChaosError> {
        let ep = self.cluster.addr(id)?;
        let r = self
            .admin
            .call_at(&ep, method_post(), "/v1/cluster/compact", None, None)
            .await
            .map_err(|e| ChaosError::Fault(format!("compacting node {id}: {e:?}")))?;
        tracing::info!(node = id, compaction = %r.body, "compacted");
        Ok(())
    }

    /// Adds the empty node `f` as a learner (in the background: the call
    /// returns only once `f` has caught up) and waits until the leader's
    /// snapshot has begun to arrive there but is not yet installed. Says
    /// why when the moment was missed: then the power loss that follows did
    /// not strike a snapshot install.
    async fn await_snapshot_arrival(&self, f: u64) -> Result<(), String> {
        let addr = self.cluster.addr(f).map_err(|e| e.to_string())?;
        let leader = self.leader().await.map_err(|e| e.to_string())?;
        let mut ep = self.cluster.addr(leader).map_err(|e| e.to_string())?;
        let body = json!({"id": f, "addr": addr});
        let add = |ep: &str| {
            let admin = self.cluster.admin_client();
            let (ep, body) = (ep.to_owned(), body.clone());
            tokio::spawn(async move {
                admin
                    .call_at(
                        &ep,
                        method_post(),
                        "/v1/cluster/learners",
                        Some(&body),
                        None,
                    )
                    .await
            })
        };
        let mut adding = add(&ep);
        let mut added = false;
        let mut _abort_on_return = AbortOnDrop(adding.abort_handle());
        let deadline = Instant::now() + SNAPSHOT_ARRIVAL_TIMEOUT;
        let mut last = String::from("no reading");
        while Instant::now() < deadline {
            match self.snapshot_counters(&addr).await {
                Ok((_, installed)) if installed > 0 => {
                    return Err(format!(
                        "node {f} installed the leader's snapshot before the power went"
                    ))
                }
                Ok((chunks, _)) if chunks > 0 => return Ok(()),
                Ok(_) => last = "no snapshot chunk yet".into(),
                Err(e) => last = e,
            }
            if !added && adding.is_finished() {
                match (&mut adding).await {
                    // openraft may answer before the learner has caught up;
                    // its snapshot is still to come.
                    Ok(Ok(_)) => added = true,
                    // Refused or lost (a leader change, the node not yet
                    // listening): ask again.
                    Ok(Err(e)) => last = format!("adding the learner: {e:?}"),
                    Err(e) => last = format!("adding the learner: {e}"),
                }
                if !added {
                    // The leader may have changed.
                    if let Ok(l) = self.leader().await {
                        ep = self.cluster.addr(l).map_err(|e| e.to_string())?;
                    }
                    adding = add(&ep);
                    _abort_on_return = AbortOnDrop(adding.abort_handle());
                }
            }
            tokio::time::sleep(SNAPSHOT_POLL_INTERVAL).await;
        }
        Err(format!(
            "no snapshot began to arrive at node {f} within {SNAPSHOT_ARRIVAL_TIMEOUT:?} ({last})"
        ))
    }

    /// Node `addr`'s snapshot chunks received and snapshots installed, from
    /// its metrics.
    async fn snapshot_counters(&self, addr: &str) -> Result<(u64, u64), String> {
        let r = self
            .admin
            .call_at(addr, method_get(), "/metrics", None, None)
            .await
            .map_err(|e| format!("{e:?}"))?;
        let text = r.body.as_str().unwrap_or_default();
        let chunks = keel_harness::prometheus_value(text, "keel_snapshot_chunks_received_total")
            .ok_or("no snapshot chunk counter in the metrics")?;
        let installed = keel_harness::prometheus_value(text, "keel_snapshots_installed_total")
            .ok_or("no snapshot install counter in the metrics")?;
        Ok((chunks, installed))
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether a failed membership removal says the node is no member.
fn not_member(e: &keel_client::AttemptError) -> bool {
    matches!(
        e,
        keel_client::AttemptError::Problem(keel_client::ClientError::Problem { status: 409, detail, .. })
            if detail.contains("is not a member")
    )
}

/// Whether a failed membership addition says the node is already a member.
fn already_member(e: &keel_client::AttemptError) -> bool {
    matches!(
        e,
        keel_client::AttemptError::Problem(keel_client::ClientError::Problem { status: 409, detail, .. })
            if detail.contains("already a member")
    )
}

/// What a power loss that kept node `id`'s canary says: `left` canary
/// bytes still there after `dropped` bytes were forgotten.
fn canary_survived(id: u64, left: u64, dropped: u64) -> Option<String> {
    (left > 0 || dropped < CANARY_BYTES as u64).then(|| {
        format!(
            "node {id}: an unsynced write survived the power loss \
             ({left} of {CANARY_BYTES} canary bytes left, {dropped} bytes dropped)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_loss_that_kept_the_canary_did_not_take_effect() {
        let all = CANARY_BYTES as u64;
        assert_eq!(canary_survived(1, 0, all), None);
        assert_eq!(canary_survived(1, 0, all + 900), None);
        let kept = canary_survived(2, all, 0).unwrap();
        assert!(
            kept.starts_with("node 2: an unsynced write survived"),
            "{kept}"
        );
        // Gone from view but never counted as dropped: not a drop either.
        assert!(canary_survived(3, 0, 0).is_some());
    }

    #[test]
    fn only_the_churns_wipe_a_node_and_it_is_their_first_target() {
        let record = |nemesis, targets: Vec<u64>| FaultRecord {
            nemesis,
            targets,
            injected_ns: 0,
            healed_ns: 0,
            recovered_ns: None,
            unconfirmed: Vec::new(),
        };
        assert_eq!(record(Nemesis::MembershipChurn, vec![2]).wiped(), Some(2));
        assert_eq!(
            record(Nemesis::PartitionDuringChurn, vec![3, 1]).wiped(),
            Some(3)
        );
        for n in Nemesis::ALL.into_iter().filter(|n| !n.wipes_a_node()) {
            assert_eq!(record(n, vec![1, 2, 3]).wiped(), None, "{n:?}");
        }
    }

    #[test]
    fn names_round_trip_and_all_expands() {
        for n in Nemesis::ALL {
            assert_eq!(Nemesis::parse_list(n.name()).unwrap(), vec![n]);
        }
        assert_eq!(
            Nemesis::parse_list("all").unwrap().len(),
            Nemesis::ALL.len()
        );
        assert!(Nemesis::parse_list("kill-everyone").is_err());
        assert!(Nemesis::parse_list("").is_err());
    }

    #[test]
    fn a_schedule_covers_every_nemesis_and_replays_from_its_seed() {
        let s = schedule(&Nemesis::ALL, 20, 7);
        assert_eq!(s.len(), 20);
        for n in Nemesis::ALL {
            assert!(s[..Nemesis::ALL.len()].contains(&n), "{n:?} missing");
        }
        assert_eq!(s, schedule(&Nemesis::ALL, 20, 7));
        assert_ne!(s, schedule(&Nemesis::ALL, 20, 8));
        // Fewer steps than nemeses still strikes each once.
        assert_eq!(schedule(&Nemesis::ALL, 3, 7).len(), Nemesis::ALL.len());
    }
}
