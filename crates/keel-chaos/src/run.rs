//! One chaos run: start a cluster (and the gateway), seed it, run the
//! workload while the nemeses strike on their seeded schedule, heal, read
//! the final state back from the replicas, and judge the history.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_domain::{AccountId, Sku};
use keel_harness::{ClusterSpec, LocalCluster};
use serde::{Deserialize, Serialize};

pub use crate::final_state::CONVERGE_TIMEOUT;
use crate::final_state::{read_final_state, StateQuery};
use crate::history::{History, Op, OpKind, Outcome};
use crate::invariants::{check_invariants, FinalState, ReplicaDigest};
use crate::nemesis::{schedule, FaultRecord, Nemeses, Nemesis, RECOVERY_TIMEOUT};
use crate::sync::lock;
use crate::term_sampler::TermSampler;
use crate::terms::{check_terms_never_go_back, TermRecord, Wipe};
use crate::workload::{self, Recorder, WorkloadConfig};
use crate::{check_all, ChaosError, Finding};

/// Longest a node gets to start and elect.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Name of the finding that the cluster healed after the last fault.
pub const HEALED: &str = "cluster healed";
/// Name of the finding that every requested nemesis struck.
pub const NEMESES_STRUCK: &str = "every requested nemesis struck";
/// Name of the finding that every fault took effect.
pub const FAULTS_TOOK_EFFECT: &str = "every fault took effect";
/// Name of the finding that the workload ran and was answered.
pub const WORKLOAD_RAN: &str = "workload ran";
/// Name of the finding that the replicas converged after the run.
pub const REPLICAS_CONVERGED: &str = "replicas converged";
/// Name of the finding that every replica's digest was read.
pub const REPLICAS_READ: &str = "every replica's digest read";
/// Name of the finding that every fault window saw writes succeed.
pub const FAULT_WINDOWS: &str = "writes in every fault window";
/// Fewest writes that must succeed in a fault's window (its injection to
/// its recovery plus [`FAULT_WINDOW_GRACE`]). Even a fault that stops every
/// write (a power loss) leaves the grace after recovery, in which a healthy
/// cluster under the workload acknowledges hundreds; none or a handful means
/// the clients went quiet and the run judged nothing.
pub const FAULT_WINDOW_WRITES_MIN: u64 = 10;
/// Time after a fault's recovery still counted in its window: the clients'
/// first requests after the heal find the new leader through the gateway.
/// The run keeps the workload going at least this long after its last
/// fault.
pub const FAULT_WINDOW_GRACE: Duration = Duration::from_secs(3);

/// Settings of a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The `keel` binary that runs the nodes and the gateway.
    pub binary: PathBuf,
    /// Where the cluster's data, logs, history and report go (wiped first).
    pub base_dir: PathBuf,
    /// Voters in the cluster (3 or 5).
    pub nodes: u64,
    /// Least time spent under the workload; the run goes on until every
    /// nemesis has struck once.
    pub duration: Duration,
    /// Seed of the schedule, its targets and the workload's choices.
    pub seed: u64,
    /// The nemeses to draw from.
    pub nemeses: Vec<Nemesis>,
    /// Concurrent workload clients.
    pub clients: u64,
    /// Calm time before each fault.
    pub quiet: Duration,
    /// How long each fault stays in force.
    pub hold: Duration,
    /// Send the workload through the gateway (else straight to the nodes).
    pub through_gateway: bool,
    /// Without the gateway, send the workload to a follower rather than
    /// the leader: reads are served there and writes forwarded, which is
    /// where a replica answering linearizable reads without a read index
    /// shows.
    pub to_follower: bool,
    /// Extra `keel node` flags (e.g. a test-only fault build's switches).
    pub node_args: Vec<String>,
    /// Where the nodes' links live, which decides whether link faults can
    /// run.
    pub network: NetMode,
    /// Run every link over TLS, as a deployment does: mutual TLS between
    /// the nodes (through the link proxies and under every link fault),
    /// the gateway and every client of the run (workload, term sampler,
    /// nemeses, final reads) over TLS with the cluster's CA, made by the
    /// harness under `base_dir/ca`. Off only by explicit choice
    /// (`keel chaos run --plaintext`).
    pub tls: bool,
    /// Accept nemeses skipped for want of root, FUSE, libfaketime or
    /// iptables; else a skipped one fails the run.
    pub allow_skip: bool,
    /// Customers opened for each client before the run
    /// ([`workload::CUSTOMERS_SEEDED_PER_CLIENT`] by default); few of them
    /// make the clients open their own early.
    pub customers_seeded_per_client: u64,
}

/// Where a run's nodes talk to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetMode {
    /// Namespaces when the machine allows them (root, iproute2), else
    /// loopback with the link nemeses skipped and the report saying why.
    Auto,
    /// Each node in its own network namespace; fail if impossible.
    Namespaces,
    /// Every node on 127.0.0.1: no link faults.
    Loopback,
}

impl NetMode {
    /// Parses `auto`, `netns` or `loopback`.
    pub fn parse(s: &str) -> Result<Self, ChaosError> {
        match s {
            "auto" => Ok(NetMode::Auto),
            "netns" => Ok(NetMode::Namespaces),
            "loopback" => Ok(NetMode::Loopback),
            other => Err(ChaosError::Config(format!(
                "network {other:?}: expected auto, netns or loopback"
            ))),
        }
    }
}

/// Makes sure `iptables` is there for link faults, installing Debian's
/// package when it is missing.
fn ensure_iptables() -> Result<(), ChaosError> {
    let works = || {
        std::process::Command::new("iptables")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return Ok(());
    }
    keel_harness::host::apt_install(&["iptables"])
        .map_err(|e| ChaosError::Setup(format!("link faults need iptables: {e}")))?;
    if works() {
        Ok(())
    } else {
        Err(ChaosError::Setup(
            "link faults need iptables: installed, but `iptables --version` fails".into(),
        ))
    }
}

/// The clock-skew plan: libfaketime's path if any chosen nemesis needs it
/// and it can be had, else the reason to skip.
fn plan_faketime(nemeses: &[Nemesis]) -> (Option<PathBuf>, Option<String>) {
    if !nemeses.iter().any(|n| n.needs_faketime()) {
        return (None, None);
    }
    match keel_harness::host::ensure_faketime() {
        Ok(p) => (Some(p), None),
        Err(why) => (None, Some(why.to_string())),
    }
}

/// The lost-writes plan: whether the nodes' data directories go on lazy
/// filesystems (only when a chosen nemesis drops unsynced writes, since
/// FUSE slows every fsync), else the reason to skip those nemeses.
fn plan_lazyfs(nemeses: &[Nemesis]) -> (bool, Option<String>) {
    if !nemeses.iter().any(|n| n.needs_lazyfs()) {
        return (false, None);
    }
    match keel_lazyfs::available() {
        Ok(()) => (true, None),
        Err(why) => (false, Some(why)),
    }
}

/// Decides namespaces or loopback and which nemeses can run there; the
/// third value says why the rest cannot, if any were left out.
fn plan_network(
    mode: NetMode,
    nemeses: &[Nemesis],
) -> Result<(bool, Vec<Nemesis>, Option<String>), ChaosError> {
    let wants_links = nemeses.iter().any(|n| n.needs_network());
    let why_not = keel_harness::net::unavailable();
    let netns = match (mode, &why_not) {
        (NetMode::Loopback, _) => false,
        (NetMode::Namespaces, Some(w)) => {
            return Err(ChaosError::Setup(format!(
                "network namespaces unavailable: {w}"
            )))
        }
        (NetMode::Namespaces, None) => true,
        (NetMode::Auto, w) => wants_links && w.is_none(),
    };
    if netns && wants_links {
        ensure_iptables()?;
    }
    let (kept, skipped): (Vec<Nemesis>, Vec<Nemesis>) =
        nemeses.iter().partition(|n| netns || !n.needs_network());
    if kept.is_empty() {
        return Err(ChaosError::Config(format!(
            "every chosen nemesis cuts links, and the nodes cannot run in namespaces here: {}",
            why_not.unwrap_or_else(|| "loopback was chosen".into())
        )));
    }
    let why =
        (!skipped.is_empty()).then(|| why_not.unwrap_or_else(|| "loopback was chosen".into()));
    Ok((netns, kept, why))
}

/// The requested nemeses that will not run, each with why: those needing a
/// clock, a lazy filesystem or cut links (`why` in that order) that this
/// machine cannot give.
fn skipped_nemeses(
    requested: &[Nemesis],
    chosen: &[Nemesis],
    why: [Option<&str>; 3],
) -> Vec<(Nemesis, String)> {
    let requested: std::collections::BTreeSet<Nemesis> = requested.iter().copied().collect();
    requested
        .into_iter()
        .filter(|n| !chosen.contains(n))
        .map(|n| {
            let [clock, lazy, links] = why;
            let reason = if n.needs_faketime() {
                clock
            } else if n.needs_lazyfs() {
                lazy
            } else if n.needs_network() {
                links
            } else {
                None
            };
            (n, reason.unwrap_or("cannot run here").to_owned())
        })
        .collect()
}

/// Availability around one fault, from the history.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultReport {
    /// What happened and when.
    #[serde(flatten)]
    pub record: FaultRecord,
    /// From the fault to the first success of a write sent after it (ms).
    pub unavailable_ms: Option<f64>,
    /// Requests that failed or ended unknown between the fault and the
    /// cluster's recovery.
    pub errors: u64,
    /// From the heal until the cluster was ready again (ms).
    pub recovery_ms: Option<f64>,
    /// Requests invoked between the fault and the cluster's recovery.
    #[serde(default)]
    pub ops: u64,
    /// Writes invoked after the fault that succeeded by its recovery plus
    /// [`FAULT_WINDOW_GRACE`].
    #[serde(default)]
    pub writes_ok: u64,
}

/// The report of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Seed that replays the run.
    pub seed: u64,
    /// Voters.
    pub nodes: u64,
    /// Where the nodes' links lived (namespaces, or loopback without link
    /// faults) and which nemeses were skipped for it.
    pub network: String,
    /// Whether the workload went through the gateway.
    pub through_gateway: bool,
    /// Whether every link ran over TLS ([`RunConfig::tls`]); reports from
    /// before TLS read as plaintext, which they were.
    #[serde(default)]
    pub tls: bool,
    /// Seconds under load.
    pub seconds: f64,
    /// Requests by outcome (`ok`, `fail`, `unknown`).
    pub ops: BTreeMap<String, u64>,
    /// Requests sent again with the same key.
    pub replays: u64,
    /// 99th percentile latency of successful requests (ms).
    pub latency_p99_ms: f64,
    /// Every fault.
    pub faults: Vec<FaultReport>,
    /// Every node's term and leader as sampled through the run (changes
    /// only), which [`crate::terms`] judges.
    #[serde(default)]
    pub terms: TermRecord,
    /// Every checker's verdict.
    pub findings: Vec<Finding>,
    /// True when no checker found a violation.
    pub ok: bool,
}

/// Runs one chaos run; the history is returned beside the report so the
/// caller can write both.
pub async fn run(config: RunConfig) -> Result<(Report, History), ChaosError> {
    clear_base_dir(&config)?;
    let NemesisPlan {
        faketime,
        lazyfs,
        netns,
        chosen,
        skipped,
    } = plan_nemeses(&config)?;
    let spec = cluster_spec(&config, faketime, lazyfs, netns, &chosen)?;
    let mut cluster = LocalCluster::start(spec)?;
    let network = describe_network(&cluster, lazyfs, &skipped);
    cluster.wait_ready(READY_TIMEOUT).await?;
    let endpoint = workload_endpoint(&mut cluster, &config).await?;
    let admin = cluster.admin_client();
    let plan = fault_plan(&config, &chosen);
    let workload_config = workload_config(&config, endpoint, seconds_max(&config, plan.len()));
    workload::seed(&admin, &workload_config).await?;

    let recorder = Arc::new(Recorder::default());
    let stop = Arc::new(AtomicBool::new(false));
    let t0 = Instant::now();
    let sampler = TermSampler::start(&cluster, t0)?;
    // The cluster's client: over TLS, trusting its CA, when it runs TLS.
    let client = cluster.client(
        vec![workload_config.endpoint.clone()],
        Some(cluster.admin_token().to_owned()),
    );
    let work = tokio::spawn(workload::run(
        workload_config.clone(),
        Arc::new(client),
        t0,
        stop.clone(),
        recorder.clone(),
    ));
    let (faults, fault_error) = inject_faults(&mut cluster, &config, &plan, chosen.len(), t0).await;
    // The last fault's window runs until the grace after its recovery.
    tokio::time::sleep(config.quiet.max(FAULT_WINDOW_GRACE)).await;
    stop.store(true, Ordering::Relaxed);
    let _ = work.await;
    let seconds = t0.elapsed().as_secs_f64();

    let healed = healed_finding(&mut cluster, fault_error).await;
    let ids = cluster.ids();
    let converged = converged_finding(&cluster, &ids, healed.ok).await;
    let supplied = supplied_skus(&workload_config);
    let query = state_query(&workload_config, &recorder, &supplied);
    let state = read_final_state(&cluster, &admin, &query).await;
    let terms = sampler.finish().await;
    cluster.stop_all();

    let ops = lock(&recorder.ops).clone();
    let history = History::from_ops(ops)?;
    let mut findings = Vec::new();
    findings.push(workload_ran(&history));
    findings.push(converged);
    findings.extend(final_state_findings(state, &ids, &history, healed.ok)?);
    findings.insert(0, healed);
    findings.extend(history_findings(&history, &supplied, &recorder));
    let faults: Vec<FaultReport> = faults
        .into_iter()
        .map(|f| availability(f, &history))
        .collect();
    findings.extend(fault_findings(&config, &skipped, &faults));
    findings.push(never_ran_dry(
        &history,
        recorder.places_skipped.load(Ordering::Relaxed),
    ));
    findings.push(check_terms_never_go_back(&terms, &ids, &wipes(&faults)));
    let report = Report {
        seed: config.seed,
        nodes: config.nodes,
        network,
        through_gateway: config.through_gateway,
        tls: config.tls,
        seconds,
        ops: count_outcomes(&history),
        replays: recorder.replays.load(Ordering::Relaxed),
        latency_p99_ms: latency_p99_ms(&history),
        faults,
        terms,
        ok: findings.iter().all(|f| f.ok),
        findings,
    };
    Ok((report, history))
}

/// Removes what an earlier run left in the base directory.
fn clear_base_dir(config: &RunConfig) -> Result<(), ChaosError> {
    if config.base_dir.exists() {
        // A run killed before it could unmount leaves its nodes' lazy
        // filesystems behind, which would block the removal.
        keel_lazyfs::detach_stale_under(&config.base_dir)
            .map_err(|e| ChaosError::Setup(format!("{}: {e}", config.base_dir.display())))?;
        std::fs::remove_dir_all(&config.base_dir).map_err(|e| {
            ChaosError::Setup(format!("clearing {}: {e}", config.base_dir.display()))
        })?;
    }
    Ok(())
}

/// Which of the requested nemeses this machine can run, and what they need.
struct NemesisPlan {
    faketime: Option<PathBuf>,
    lazyfs: bool,
    netns: bool,
    chosen: Vec<Nemesis>,
    /// The requested nemeses that cannot run here, each with why.
    skipped: Vec<(Nemesis, String)>,
}

fn plan_nemeses(config: &RunConfig) -> Result<NemesisPlan, ChaosError> {
    let (faketime, no_clock) = plan_faketime(&config.nemeses);
    let (lazyfs, no_lazyfs) = plan_lazyfs(&config.nemeses);
    let usable: Vec<Nemesis> = config
        .nemeses
        .iter()
        .copied()
        .filter(|n| faketime.is_some() || !n.needs_faketime())
        .filter(|n| lazyfs || !n.needs_lazyfs())
        .collect();
    if usable.is_empty() {
        return Err(ChaosError::Config(format!(
            "no chosen nemesis can run here: {}",
            [no_clock.as_deref(), no_lazyfs.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ")
        )));
    }
    let (netns, chosen, no_links) = plan_network(config.network, &usable)?;
    let skipped = skipped_nemeses(
        &config.nemeses,
        &chosen,
        [
            no_clock.as_deref(),
            no_lazyfs.as_deref(),
            no_links.as_deref(),
        ],
    );
    Ok(NemesisPlan {
        faketime,
        lazyfs,
        netns,
        chosen,
        skipped,
    })
}

fn cluster_spec(
    config: &RunConfig,
    faketime: Option<PathBuf>,
    lazyfs: bool,
    netns: bool,
    chosen: &[Nemesis],
) -> Result<ClusterSpec, ChaosError> {
    let secret = |what: &str| {
        keel_harness::host::random_secret()
            .map_err(|e| ChaosError::Setup(format!("drawing the cluster's {what}: {e}")))
    };
    let mut spec = ClusterSpec::new(&config.binary, &config.base_dir, config.nodes);
    // Fresh secrets per run: in namespaces the nodes listen outside
    // loopback, where the development defaults are refused.
    spec.admin_token = secret("admin token")?;
    spec.cluster_secret = secret("cluster secret")?;
    // Small snapshot chunks, so a snapshot install spans many round trips
    // (see `Nemesis::PowerLossInSnapshot`); the caller's arguments follow.
    spec.extra_args = vec![
        "--snapshot-chunk-bytes".to_owned(),
        crate::nemesis::CHAOS_SNAPSHOT_CHUNK_BYTES.to_string(),
    ];
    spec.extra_args.extend(config.node_args.iter().cloned());
    spec.netns = netns;
    spec.link_proxies = netns && chosen.iter().any(|n| n.needs_link_proxies());
    spec.faketime = faketime;
    spec.lazyfs = lazyfs;
    spec.tls = config.tls;
    Ok(spec)
}

/// Where the nodes' links live, for the report.
fn describe_network(cluster: &LocalCluster, lazyfs: bool, skipped: &[(Nemesis, String)]) -> String {
    let network = match cluster.network() {
        Some(n) => n.describe(),
        None => {
            "loopback: processes on 127.0.0.1; kills, pauses, restarts and membership changes only"
                .into()
        }
    };
    let network = if lazyfs {
        format!("{network}; data directories on lazy filesystems")
    } else {
        network
    };
    let network = match cluster.tls() {
        Some(_) => format!("{network}; TLS on every link (mutual between nodes)"),
        None => format!("{network}; plaintext (no TLS)"),
    };
    skipped.iter().fold(network, |n, (nemesis, why)| {
        format!("{n}; {} skipped ({why})", nemesis.name())
    })
}

/// The address the workload sends to: the gateway (started here), a
/// follower, or the leader.
async fn workload_endpoint(
    cluster: &mut LocalCluster,
    config: &RunConfig,
) -> Result<String, ChaosError> {
    let endpoint = if config.through_gateway {
        cluster.start_gateway_ready(0).await?
    } else {
        let leader = cluster.leader().await.unwrap_or(1);
        let target = match cluster.ids().into_iter().find(|id| *id != leader) {
            Some(follower) if config.to_follower => follower,
            _ => leader,
        };
        cluster.addr(target)?
    };
    Ok(endpoint)
}

/// The nemeses in the order they strike.
fn fault_plan(config: &RunConfig, chosen: &[Nemesis]) -> Vec<Nemesis> {
    let step = config.quiet + config.hold;
    let steps = (config.duration.as_nanos() / step.as_nanos().max(1)) as usize;
    schedule(chosen, steps.max(chosen.len()), config.seed)
}

fn workload_config(config: &RunConfig, endpoint: String, seconds_max: u64) -> WorkloadConfig {
    WorkloadConfig {
        clients: config.clients,
        endpoint,
        seed: config.seed,
        // Longer than the run, so nothing expires.
        ttl_seconds: u32::try_from(seconds_max + 3_600).unwrap_or(u32::MAX),
        customers_seeded_per_client: config.customers_seeded_per_client,
        seconds_max,
    }
}

/// Strikes the nemeses of `plan` in turn, each after a quiet spell, until
/// the plan ends, or the run's duration has passed and the first
/// `chosen_count` of the plan have struck. Returns the
/// faults, and the error that ended them early if one did.
async fn inject_faults(
    cluster: &mut LocalCluster,
    config: &RunConfig,
    plan: &[Nemesis],
    chosen_count: usize,
    t0: Instant,
) -> (Vec<FaultRecord>, Option<String>) {
    let mut faults = Vec::new();
    let mut fault_error: Option<String> = None;
    let mut nemeses = Nemeses::new(cluster, config.seed, t0);
    for (i, nemesis) in plan.iter().enumerate() {
        let covered = i >= chosen_count;
        if covered && t0.elapsed() >= config.duration {
            break;
        }
        tokio::time::sleep(config.quiet).await;
        tracing::info!(nemesis = nemesis.name(), "injecting");
        // A fault that cannot be injected or healed (the cluster did
        // not come back in time) ends the faults, not the run: the
        // checks after them still judge what the cluster kept.
        let active = match nemeses.inject(*nemesis).await {
            Ok(a) => a,
            Err(e) => {
                fault_error = Some(format!("injecting {}: {e}", nemesis.name()));
                break;
            }
        };
        tokio::time::sleep(config.hold).await;
        let record = match nemeses.heal(active).await {
            Ok(r) => r,
            Err(e) => {
                fault_error = Some(format!("healing {}: {e}", nemesis.name()));
                break;
            }
        };
        tracing::info!(
            nemesis = nemesis.name(),
            recovered = record.recovered_ns.is_some(),
            "healed"
        );
        faults.push(record);
    }
    (faults, fault_error)
}

/// Whether every node is ready under one leader after the faults.
async fn healed_finding(cluster: &mut LocalCluster, fault_error: Option<String>) -> Finding {
    // A node that never becomes ready again is a finding, not a failed run:
    // a build that loses acknowledged data can wedge a replica for good, and
    // the checks after this still read what a leader of the rest serves.
    match cluster.wait_ready(READY_TIMEOUT).await {
        Ok(_) if fault_error.is_none() => Finding::pass(
            HEALED,
            "every node ready under one leader after the last fault",
        ),
        Ok(_) => Finding::fail(
            HEALED,
            format!(
                "{}; the run injected no further fault",
                fault_error.as_deref().unwrap_or_default()
            ),
        ),
        Err(e) => {
            let mut why: Vec<String> = cluster
                .not_ready()
                .await
                .into_iter()
                .map(|(id, why)| format!("node {id}: {why} (see node-{id}.log)"))
                .collect();
            // A node that is not ready because it died says how.
            why.extend(
                cluster
                    .ids()
                    .into_iter()
                    .filter_map(|id| cluster.exit_notice(id)),
            );
            let fault = fault_error.map(|f| format!("{f}; ")).unwrap_or_default();
            Finding::fail(HEALED, format!("{fault}{e}; {}", why.join("; ")))
        }
    }
}

/// Whether the replicas `ids` reach one applied index with equal digests
/// within [`CONVERGE_TIMEOUT`]; skipped when the cluster did not heal.
pub async fn converged_finding(cluster: &LocalCluster, ids: &[u64], healed: bool) -> Finding {
    if healed {
        match cluster.wait_converged(ids, CONVERGE_TIMEOUT).await {
            Ok((index, digest)) => Finding::pass(
                REPLICAS_CONVERGED,
                format!("{} replicas at index {index}, digest {digest}", ids.len()),
            ),
            Err(e) => Finding::fail(REPLICAS_CONVERGED, e.to_string()),
        }
    } else {
        Finding::skip(REPLICAS_CONVERGED, "the cluster did not heal")
    }
}

/// The findings on the final state: every digest read, and the invariants.
fn final_state_findings(
    state: Result<FinalState, ChaosError>,
    ids: &[u64],
    history: &History,
    healed: bool,
) -> Result<Vec<Finding>, ChaosError> {
    let mut findings = Vec::new();
    match state {
        Ok(state) => {
            findings.push(digests_read(ids, &state.replicas));
            findings.extend(check_invariants(history, &state));
        }
        // Unhealed, the state may be unreadable; the run has failed already.
        Err(e) if !healed => findings.push(Finding::skip("final state", e.to_string())),
        Err(e) => return Err(e),
    }
    Ok(findings)
}

/// Every SKU of the workload with its starting stock.
fn supplied_skus(workload_config: &WorkloadConfig) -> BTreeMap<Sku, u64> {
    workload_config
        .supplied()
        .into_iter()
        .filter_map(|(sku, qty)| Some((Sku::new(&sku).ok()?, qty)))
        .collect()
}

/// What the run set up, for reading its final state: the SKUs, the shop's
/// two accounts and every customer that must or may exist.
fn state_query(
    workload_config: &WorkloadConfig,
    recorder: &Recorder,
    supplied: &BTreeMap<Sku, u64>,
) -> StateQuery {
    let (must, may) = recorder.customers(workload_config);
    let ids = |refs: Vec<workload::CustomerRef>| -> Vec<AccountId> {
        refs.into_iter()
            .filter_map(|(p, n)| AccountId::new(workload::customer_id(p, n)).ok())
            .collect()
    };
    let mut accounts: Vec<AccountId> = ["shop", "world"]
        .into_iter()
        .filter_map(|a| AccountId::new(a).ok())
        .collect();
    accounts.extend(ids(must));
    StateQuery {
        supplied: supplied.clone(),
        accounts,
        accounts_in_doubt: ids(may),
    }
}

/// The findings on the history alone: the checkers, and replays.
fn history_findings(
    history: &History,
    supplied: &BTreeMap<Sku, u64>,
    recorder: &Recorder,
) -> Vec<Finding> {
    let mut findings = check_all(history, supplied);
    let mismatches = lock(&recorder.replay_mismatches).clone();
    findings.push(Finding::from_problems(
        "same key, same answer",
        "every replayed request answered as the first",
        &mismatches,
    ));
    findings
}

/// The findings on the faults: each struck, took effect, and let writes
/// through in its window.
fn fault_findings(
    config: &RunConfig,
    skipped: &[(Nemesis, String)],
    faults: &[FaultReport],
) -> Vec<Finding> {
    vec![
        nemeses_struck(&config.nemeses, skipped, config.allow_skip, faults),
        faults_took_effect(faults),
        fault_windows(faults),
    ]
}

/// The faults that wiped a node, for the term checker.
fn wipes(faults: &[FaultReport]) -> Vec<Wipe> {
    faults
        .iter()
        .filter_map(|f| {
            Some(Wipe {
                node: f.record.wiped()?,
                at_ns: f.record.injected_ns,
            })
        })
        .collect()
}

fn count_outcomes(history: &History) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for op in history.ops() {
        let k = match op.outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Fail(_) => "fail",
            Outcome::Unknown(_) => "unknown",
        };
        *m.entry(k.to_owned()).or_insert(0) += 1;
    }
    m
}

fn latency_p99_ms(history: &History) -> f64 {
    let mut l: Vec<u64> = history
        .ops()
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
        .map(|o| o.complete_ns - o.invoke_ns)
        .collect();
    if l.is_empty() {
        return 0.0;
    }
    l.sort_unstable();
    let i = (l.len() * 99 / 100).min(l.len() - 1);
    l[i] as f64 / 1e6
}

/// The run's verdict on its nemeses: each requested one struck, unless it
/// was skipped for want of what it needs and `allow_skip` accepts that.
pub fn nemeses_struck(
    requested: &[Nemesis],
    skipped: &[(Nemesis, String)],
    allow_skip: bool,
    faults: &[FaultReport],
) -> Finding {
    let struck: std::collections::BTreeSet<Nemesis> =
        faults.iter().map(|f| f.record.nemesis).collect();
    let requested: std::collections::BTreeSet<Nemesis> = requested.iter().copied().collect();
    let mut problems = Vec::new();
    let mut allowed = Vec::new();
    for n in requested.iter().filter(|n| !struck.contains(n)) {
        match skipped.iter().find(|(s, _)| s == n) {
            Some((_, why)) if allow_skip => allowed.push(format!("{} ({why})", n.name())),
            Some((_, why)) => problems.push(format!(
                "{} skipped: {why} (--allow-skip accepts that)",
                n.name()
            )),
            None => problems.push(format!("{} never struck", n.name())),
        }
    }
    let passed = if allowed.is_empty() {
        format!("all {} struck", requested.len())
    } else {
        format!(
            "{} struck; skipped with --allow-skip: {}",
            struck.len(),
            allowed.join(", ")
        )
    };
    Finding::from_problems(NEMESES_STRUCK, passed, &problems)
}

/// The run's verdict on whether its faults happened: what each nemesis
/// could not confirm ([`FaultRecord::unconfirmed`]).
pub fn faults_took_effect(faults: &[FaultReport]) -> Finding {
    let problems: Vec<String> = faults
        .iter()
        .flat_map(|f| {
            f.record.unconfirmed.iter().map(move |u| {
                format!(
                    "{} at {:.1}s: {u}",
                    f.record.nemesis.name(),
                    f.record.injected_ns as f64 / 1e9
                )
            })
        })
        .collect();
    Finding::from_problems(
        FAULTS_TOOK_EFFECT,
        "killed processes gone, paused ones stopped, restarted ones new, cut nodes unreachable from their peers, skewed clocks read back, unsynced writes dropped, snapshots cut mid-transfer",
        &problems,
    )
}

/// The run's verdict on its history: a run with no operation, or none
/// answered, or no write acknowledged, judged nothing.
pub fn workload_ran(history: &History) -> Finding {
    let ok = || {
        history
            .ops()
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
    };
    let (n, answered, writes) = (
        history.len(),
        ok().count(),
        ok().filter(|o| is_write(o)).count(),
    );
    let problem = if n == 0 {
        Some("no operation recorded".to_owned())
    } else if answered == 0 {
        Some(format!("all {n} operations failed or were lost"))
    } else if writes == 0 {
        Some(format!("no write succeeded among {n} operations"))
    } else {
        None
    };
    match problem {
        Some(p) => Finding::fail(WORKLOAD_RAN, p),
        None => Finding::pass(
            WORKLOAD_RAN,
            format!("{n} operations, {answered} succeeded ({writes} writes)"),
        ),
    }
}

/// The run's verdict on reading the replicas back: every node in `ids`
/// must have given its digest, else "replicas agree" judged fewer than all.
pub fn digests_read(ids: &[u64], replicas: &[ReplicaDigest]) -> Finding {
    let problems: Vec<String> = ids
        .iter()
        .map(|id| format!("node {id}"))
        .filter(|n| !replicas.iter().any(|r| &r.node == n))
        .map(|n| format!("{n}: /v1/digest did not answer"))
        .collect();
    Finding::from_problems(
        REPLICAS_READ,
        format!("all {} replicas read", ids.len()),
        &problems,
    )
}

/// Longest the run can last (s), for the workload's bounds that could run
/// out: the duration, or every planned fault's quiet, hold and the waits of
/// its injection and heal (at most [`RECOVERY_TIMEOUT`] per node and once
/// more), then the final quiet.
fn seconds_max(config: &RunConfig, faults: usize) -> u64 {
    let waits = RECOVERY_TIMEOUT * (u32::try_from(config.nodes).unwrap_or(u32::MAX) + 1);
    let per_fault = config.quiet + config.hold + waits;
    let faults = u32::try_from(faults).unwrap_or(u32::MAX);
    let planned = config.duration.max(per_fault.saturating_mul(faults));
    (planned + config.quiet.max(FAULT_WINDOW_GRACE)).as_secs() + 1
}

/// Name of the finding that the workload never ran out of what it needs.
pub const NEVER_RAN_DRY: &str = "workload never ran dry";

/// The run's verdict on the workload's own bounds: no client was left
/// without a customer to place for, and no cold SKU ran out of stock.
/// Either would change the mix of requests partway through.
pub fn never_ran_dry(history: &History, places_skipped: u64) -> Finding {
    let cold_out = history
        .ops()
        .iter()
        .filter(|o| {
            matches!(&o.kind, OpKind::PlaceOrder { sku, .. } if sku.as_str() != workload::HOT_SKU)
                && matches!(&o.outcome, Outcome::Fail(k) if k == crate::history::fail::OUT_OF_STOCK)
        })
        .count();
    let mut problems = Vec::new();
    if places_skipped > 0 {
        problems.push(format!(
            "{places_skipped} turns found no customer left to place for"
        ));
    }
    if cold_out > 0 {
        problems.push(format!("{cold_out} places found a cold SKU out of stock"));
    }
    Finding::from_problems(
        NEVER_RAN_DRY,
        "every client had a customer to place for and cold stock to place",
        &problems,
    )
}

fn is_write(op: &Op) -> bool {
    matches!(
        op.kind,
        OpKind::PlaceOrder { .. } | OpKind::Pay { .. } | OpKind::Cancel { .. }
    )
}

/// The run's verdict on its fault windows: each must see at least
/// [`FAULT_WINDOW_WRITES_MIN`] writes succeed, else the workload was not
/// there to judge the fault.
pub fn fault_windows(faults: &[FaultReport]) -> Finding {
    let problems: Vec<String> = faults
        .iter()
        .filter(|f| f.writes_ok < FAULT_WINDOW_WRITES_MIN)
        .map(|f| {
            format!(
                "{} at {:.1}s: {} writes succeeded, {} ops invoked (at least {FAULT_WINDOW_WRITES_MIN} writes expected)",
                f.record.nemesis.name(),
                f.record.injected_ns as f64 / 1e9,
                f.writes_ok,
                f.ops
            )
        })
        .collect();
    Finding::from_problems(
        FAULT_WINDOWS,
        format!(
            "each of {} faults saw at least {FAULT_WINDOW_WRITES_MIN} writes succeed by {:?} after its recovery",
            faults.len(),
            FAULT_WINDOW_GRACE
        ),
        &problems,
    )
}

/// The availability figures of one fault, from the history.
pub fn availability(record: FaultRecord, history: &History) -> FaultReport {
    let from = record.injected_ns;
    let until = record.recovered_ns.unwrap_or(record.healed_ns);
    let window_end = until.saturating_add(FAULT_WINDOW_GRACE.as_nanos() as u64);
    // The first write sent after the fault that succeeded: reads served
    // by a replica, or writes already on their way, say nothing of
    // whether the cluster takes new writes.
    let first_ok = history
        .ops()
        .iter()
        .filter(|o| matches!(o.outcome, Outcome::Ok(_)) && o.invoke_ns >= from && is_write(o))
        .map(|o| o.complete_ns)
        .min();
    let ops = history
        .ops()
        .iter()
        .filter(|o| (from..=until).contains(&o.invoke_ns))
        .count() as u64;
    let writes_ok = history
        .ops()
        .iter()
        .filter(|o| {
            matches!(o.outcome, Outcome::Ok(_))
                && is_write(o)
                && o.invoke_ns >= from
                && o.complete_ns <= window_end
        })
        .count() as u64;
    let errors = history
        .ops()
        .iter()
        .filter(|o| o.complete_ns >= from && o.invoke_ns <= until && o.is_error())
        .count() as u64;
    FaultReport {
        unavailable_ms: first_ok.map(|t| (t - from) as f64 / 1e6),
        recovery_ms: record
            .recovered_ns
            .map(|r| r.saturating_sub(record.healed_ns) as f64 / 1e6),
        errors,
        ops,
        writes_ok,
        record,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::OpResult;
    use crate::nemesis::FaultRecord;
    use keel_domain::{AccountId, OrderId, RequestId};

    const MS: u64 = 1_000_000;

    fn place(invoke_ms: u64, complete_ms: u64, ok: bool) -> Op {
        Op {
            process: invoke_ms,
            invoke_ns: invoke_ms * MS,
            complete_ns: complete_ms * MS,
            kind: OpKind::PlaceOrder {
                customer: AccountId::new("c1").unwrap(),
                sku: Sku::new("HOT").unwrap(),
                qty: 1,
                key: RequestId::new(format!("k{invoke_ms}")).unwrap(),
            },
            outcome: if ok {
                Outcome::Ok(OpResult::Placed {
                    order: OrderId(invoke_ms),
                    qty: 1,
                })
            } else {
                Outcome::Unknown("timeout".into())
            },
        }
    }

    #[test]
    fn unavailability_runs_to_the_first_write_sent_after_the_fault_that_succeeds() {
        let read = Op {
            process: 99,
            invoke_ns: 1_001 * MS,
            complete_ns: 1_002 * MS,
            kind: OpKind::ReadStock {
                sku: Sku::new("HOT").unwrap(),
            },
            outcome: Outcome::Ok(OpResult::Stock { available: 5 }),
        };
        let history = History::from_ops(vec![
            // In flight when the fault struck: says nothing of new writes.
            place(990, 1_010, true),
            read,
            place(1_100, 1_400, false),
            place(1_200, 1_600, true),
        ])
        .unwrap();
        let r = availability(
            FaultRecord {
                nemesis: Nemesis::IsolateLeader,
                targets: vec![1],
                injected_ns: 1_000 * MS,
                healed_ns: 3_000 * MS,
                recovered_ns: Some(3_100 * MS),
                unconfirmed: Vec::new(),
            },
            &history,
        );
        assert_eq!(r.unavailable_ms, Some(600.0));
        assert_eq!(r.errors, 1);
        assert_eq!(r.recovery_ms, Some(100.0));
        // Invoked in the window: the read and both places after the fault.
        assert_eq!(r.ops, 3);
        assert_eq!(r.writes_ok, 1);
    }

    fn fault_at(injected_ms: u64, recovered_ms: u64) -> FaultRecord {
        FaultRecord {
            nemesis: Nemesis::PowerLoss,
            targets: vec![1, 2, 3],
            injected_ns: injected_ms * MS,
            healed_ns: (recovered_ms - 100) * MS,
            recovered_ns: Some(recovered_ms * MS),
            unconfirmed: Vec::new(),
        }
    }

    #[test]
    fn a_fault_window_with_too_few_successful_writes_fails_the_run_naming_the_fault() {
        let grace_ms = FAULT_WINDOW_GRACE.as_millis() as u64;
        // Writes that succeed in the grace after recovery count; one
        // finishing after it, or failing, does not.
        let mut ops: Vec<Op> = (0..FAULT_WINDOW_WRITES_MIN)
            .map(|i| place(5_000 + i, 5_010 + i, true))
            .collect();
        ops.push(place(6_000, 5_000 + grace_ms + 10, true));
        ops.push(place(6_001, 6_002, false));
        let history = History::from_ops(ops).unwrap();
        let enough = availability(fault_at(1_000, 5_000), &history);
        assert_eq!(enough.writes_ok, FAULT_WINDOW_WRITES_MIN);
        assert!(fault_windows(std::slice::from_ref(&enough)).ok);
        // A second fault after the clients went quiet.
        let quiet = availability(fault_at(20_000, 21_000), &history);
        assert_eq!((quiet.writes_ok, quiet.ops), (0, 0));
        let f = fault_windows(&[enough, quiet]);
        assert!(!f.ok && !f.skipped);
        assert_eq!(f.name, FAULT_WINDOWS);
        assert!(
            f.detail.contains("power-loss at 20.0s: 0 writes"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn a_workload_that_ran_dry_fails_the_run() {
        let cold_out = |sku: &str| Op {
            process: 1,
            invoke_ns: MS,
            complete_ns: 2 * MS,
            kind: OpKind::PlaceOrder {
                customer: AccountId::new("c1").unwrap(),
                sku: Sku::new(sku).unwrap(),
                qty: 1,
                key: RequestId::new(format!("k-{sku}")).unwrap(),
            },
            outcome: Outcome::Fail(crate::history::fail::OUT_OF_STOCK.into()),
        };
        let hot = History::from_ops(vec![cold_out("HOT")]).unwrap();
        assert!(never_ran_dry(&hot, 0).ok, "the hot SKU is meant to run out");
        let f = never_ran_dry(&hot, 3);
        assert!(
            !f.ok && f.detail.contains("3 turns found no customer"),
            "{}",
            f.detail
        );
        let cold = History::from_ops(vec![cold_out("COLD-B")]).unwrap();
        let f = never_ran_dry(&cold, 0);
        assert!(
            !f.ok && f.detail.contains("cold SKU out of stock"),
            "{}",
            f.detail
        );
    }

    fn report_of(record: FaultRecord) -> FaultReport {
        availability(record, &History::from_ops(Vec::new()).unwrap())
    }

    #[test]
    fn a_skipped_or_missing_nemesis_fails_the_run_unless_skips_are_allowed() {
        let faults = vec![report_of(fault_at(1_000, 2_000))];
        let requested = [
            Nemesis::PowerLoss,
            Nemesis::SplitHalves,
            Nemesis::KillLeader,
        ];
        let skipped = vec![(Nemesis::SplitHalves, "not running as root".to_owned())];
        let f = nemeses_struck(&requested, &skipped, false, &faults);
        assert!(!f.ok && !f.skipped);
        assert!(
            f.detail
                .contains("split-halves skipped: not running as root"),
            "{}",
            f.detail
        );
        assert!(
            f.detail.contains("kill-leader never struck"),
            "{}",
            f.detail
        );
        // Allowed skips pass, and say so; a nemesis that never struck
        // without a reason still fails.
        let f = nemeses_struck(&requested[..2], &skipped, true, &faults);
        assert!(
            f.ok && f.detail.contains("split-halves (not running as root)"),
            "{}",
            f.detail
        );
        assert!(!nemeses_struck(&requested, &skipped, true, &faults).ok);
        assert!(nemeses_struck(&requested[..1], &[], false, &faults).ok);
    }

    #[test]
    fn a_fault_that_did_not_take_effect_fails_the_run_naming_it() {
        let mut record = fault_at(1_000, 2_000);
        assert!(faults_took_effect(&[report_of(record.clone())]).ok);
        record
            .unconfirmed
            .push("node 2 (pid 7) still there after SIGKILL".into());
        let f = faults_took_effect(&[report_of(record)]);
        assert!(!f.ok && !f.skipped);
        assert!(
            f.detail
                .contains("power-loss at 1.0s: node 2 (pid 7) still there"),
            "{}",
            f.detail
        );
    }

    #[test]
    fn an_empty_or_unanswered_history_fails_the_run() {
        let read = |ok: bool| Op {
            process: 1,
            invoke_ns: MS,
            complete_ns: 2 * MS,
            kind: OpKind::ReadStock {
                sku: Sku::new("HOT").unwrap(),
            },
            outcome: if ok {
                Outcome::Ok(OpResult::Stock { available: 1 })
            } else {
                Outcome::Fail("unavailable".into())
            },
        };
        let judge = |ops: Vec<Op>| workload_ran(&History::from_ops(ops).unwrap());
        let f = judge(Vec::new());
        assert!(!f.ok && f.detail.contains("no operation"), "{}", f.detail);
        let f = judge(vec![read(false), place(10, 20, false)]);
        assert!(
            !f.ok && f.detail.contains("all 2 operations failed"),
            "{}",
            f.detail
        );
        let f = judge(vec![read(true), place(10, 20, false)]);
        assert!(
            !f.ok && f.detail.contains("no write succeeded"),
            "{}",
            f.detail
        );
        assert!(judge(vec![read(true), place(10, 20, true)]).ok);
    }

    #[test]
    fn a_replica_whose_digest_was_not_read_fails_the_run() {
        let digest = |id: u64| ReplicaDigest {
            node: format!("node {id}"),
            applied_index: 9,
            digest: "d".into(),
        };
        assert!(digests_read(&[1, 2], &[digest(1), digest(2)]).ok);
        let f = digests_read(&[1, 2, 3], &[digest(1), digest(3)]);
        assert!(
            !f.ok && f.detail.contains("node 2: /v1/digest did not answer"),
            "{}",
            f.detail
        );
    }
}
