//! The gateway's configuration: one TOML file, every field overridable by
//! the binary's flags. Defaults suit a local three-node cluster: detection
//! of a killed node well under a second, retries that ride through a leader
//! election, protection limits a shop's front end will not hit by accident.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{
    ActiveHealthConfig, BackoffConfig, BreakerConfig, ConfigError, HealthState, OutlierConfig,
    PhiAccrualConfig, Policy, RetryBudgetConfig, TokenBucketConfig, NODES_MAX, WEIGHT_MAX,
};

/// Everything a gateway needs to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address clients connect to.
    pub listen: SocketAddr,
    /// Threads serving clients, each with its own single-threaded runtime,
    /// listening socket (`SO_REUSEPORT`) and node connections, as nginx
    /// runs one worker process per core. 0 (the default): one per CPU core.
    pub workers: usize,
    /// The nodes to start from. With discovery on, more are learnt from the
    /// cluster; with it off, this is the whole list.
    pub nodes: Vec<NodeEntry>,
    /// Bearer token for the gateway's admin routes (`/gateway/...`) and for
    /// reading the cluster's membership from `/v1/cluster`. Without it,
    /// admin routes answer 401 and discovery learns only from the leader
    /// hints nodes put on every reply. Never written out when the
    /// configuration is serialised.
    #[serde(skip_serializing)]
    pub admin_token: Option<String>,
    /// Where each class of request goes.
    pub routing: RoutingConfig,
    /// Active health checks and the phi-accrual detector.
    pub health: HealthConfig,
    /// Passive outlier ejection.
    pub outlier: OutlierSection,
    /// The per-node circuit breaker.
    pub breaker: BreakerSection,
    /// Transparent retries.
    pub retry: RetrySection,
    /// Caps and timeouts.
    pub limits: LimitsConfig,
    /// Per-client rate limits.
    pub rate_limit: RateLimitConfig,
    /// Membership discovery.
    pub discovery: DiscoveryConfig,
    /// Scheduled backups of the cluster, run by `keel gateway` beside the
    /// proxy (the gateway is the one long-lived process that already knows
    /// the nodes and the admin token). Absent: no backups.
    pub backup: Option<BackupSection>,
    /// The operations dashboard (`/dashboard`).
    pub dashboard: DashboardSection,
    /// TLS (`[tls]`): clients are served with `cert` and `key`, and the
    /// nodes are dialled trusting only the CAs in `ca` (each node must
    /// present a certificate naming the address dialled); each file is read
    /// again when it changes. Absent: plaintext both ways, which a listener
    /// outside loopback refuses unless `insecure_plaintext` is set.
    pub tls: Option<keel_tls::TlsFiles>,
    /// A file whose first line is the admin token (mode 0600), read at
    /// start; `KEEL_ADMIN_TOKEN` or `--admin-token-file` take precedence.
    pub admin_token_file: Option<std::path::PathBuf>,
    /// Serve and dial plaintext outside loopback: the operator's explicit
    /// choice for a network they trust.
    pub insecure_plaintext: bool,
}

/// Most client-serving threads a gateway runs (`workers`).
pub const WORKERS_MAX: usize = 64;

impl GatewayConfig {
    /// How many client-serving threads to run: `workers`, or one per CPU
    /// core when it is 0 (one if the count is unknown).
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(WORKERS_MAX)
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7100)),
            workers: 0,
            nodes: Vec::new(),
            admin_token: None,
            routing: RoutingConfig::default(),
            health: HealthConfig::default(),
            outlier: OutlierSection::default(),
            breaker: BreakerSection::default(),
            retry: RetrySection::default(),
            limits: LimitsConfig::default(),
            rate_limit: RateLimitConfig::default(),
            discovery: DiscoveryConfig::default(),
            backup: None,
            dashboard: DashboardSection::default(),
            tls: None,
            admin_token_file: None,
            insecure_plaintext: false,
        }
    }
}

/// The `[backup]` section: where backups go and when they are taken. The
/// gateway's crate only carries it; `keel gateway` hands it to
/// `keel-backup`'s scheduler, which validates the targets, layout and key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupSection {
    /// Targets: directories (`dir:/path` or a path) or `s3://bucket/...`.
    pub targets: Vec<String>,
    /// `mirror`, or `K+M` for Reed-Solomon erasure coding.
    #[serde(default = "BackupSection::default_layout")]
    pub layout: String,
    /// The 32-byte key (raw or 64 hex digits); without it the key comes
    /// from `KEEL_BACKUP_KEY`.
    pub key_file: Option<std::path::PathBuf>,
    /// Local scratch space for pieces in transit.
    #[serde(default = "BackupSection::default_work_dir")]
    pub work_dir: std::path::PathBuf,
    /// A full backup this often (s); the first runs at start.
    pub full_every_s: Option<u64>,
    /// An incremental this often (s).
    pub incremental_every_s: Option<u64>,
    /// An incremental after this many committed entries (event trigger).
    pub after_entries: Option<u64>,
    /// Continuous archive: close a log segment at this age (ms).
    pub archive_every_ms: Option<u64>,
    /// ... or at this many bytes.
    #[serde(default = "BackupSection::default_archive_bytes")]
    pub archive_bytes: u64,
    /// Keep this many fulls (and the chains they need) after each backup.
    pub keep_full: Option<u64>,
    /// Pace of a full backup, MiB/s (0: no limit); unset, the backup
    /// command's default.
    pub rate_mib_s: Option<u64>,
}

impl BackupSection {
    fn default_layout() -> String {
        "mirror".into()
    }

    fn default_work_dir() -> std::path::PathBuf {
        "keel-backup-work".into()
    }

    fn default_archive_bytes() -> u64 {
        16 << 20
    }

    /// Checks what can be checked without the backup crate: something is
    /// scheduled, there is a target, and no period is zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.targets.is_empty() {
            return Err(ConfigError::Invalid {
                field: "backup.targets",
                reason: "at least one target is needed",
            });
        }
        let periods = [
            self.full_every_s,
            self.incremental_every_s,
            self.after_entries,
            self.archive_every_ms,
        ];
        if periods.iter().all(Option::is_none) {
            return Err(ConfigError::Invalid {
                field: "backup",
                reason: "nothing scheduled: set full_every_s, incremental_every_s, after_entries or archive_every_ms",
            });
        }
        if periods.contains(&Some(0)) || self.keep_full == Some(0) || self.archive_bytes == 0 {
            return Err(ConfigError::Invalid {
                field: "backup",
                reason: "periods, counts and sizes must be positive",
            });
        }
        Ok(())
    }
}

/// Values given beside the configuration file (the binary's flags and
/// `KEEL_GATEWAY_*` environment variables); each one present overrides the
/// file's. Lists and names are still text, parsed by [`Self::apply`].
#[derive(Clone, Debug, Default)]
pub struct GatewayOverrides {
    /// [`GatewayConfig::listen`].
    pub listen: Option<SocketAddr>,
    /// [`GatewayConfig::workers`].
    pub workers: Option<usize>,
    /// [`GatewayConfig::nodes`], as `host:port[*weight],...`.
    pub nodes: Option<String>,
    /// [`GatewayConfig::admin_token`].
    pub admin_token: Option<String>,
    /// [`GatewayConfig::tls`].
    pub tls: Option<keel_tls::TlsFiles>,
    /// Sets [`GatewayConfig::insecure_plaintext`] when true.
    pub insecure_plaintext: bool,
    /// [`RoutingConfig::writes`], by name.
    pub writes: Option<String>,
    /// [`RoutingConfig::linearizable_reads`], by name.
    pub linearizable_reads: Option<String>,
    /// [`RoutingConfig::local_reads`], by name.
    pub local_reads: Option<String>,
    /// [`HealthConfig::interval_ms`].
    pub health_interval_ms: Option<u64>,
    /// [`HealthConfig::phi_threshold`].
    pub phi_threshold: Option<f64>,
    /// [`RateLimitConfig::rate_per_s`].
    pub rate_per_s: Option<u32>,
    /// [`RateLimitConfig::burst`].
    pub rate_burst: Option<u32>,
    /// [`LimitsConfig::body_bytes_max`].
    pub body_bytes_max: Option<usize>,
    /// [`RetrySection::request_timeout_ms`].
    pub request_timeout_ms: Option<u64>,
    /// Clears [`RetrySection::add_idempotency_key`] when true.
    pub no_idempotency_key: bool,
    /// Clears [`DiscoveryConfig::enabled`] when true.
    pub no_discovery: bool,
    /// [`DashboardSection::backup_repo`].
    pub backup_repo: Option<std::path::PathBuf>,
    /// [`DashboardSection::backup_key_file`].
    pub backup_key_file: Option<std::path::PathBuf>,
}

/// An override that cannot be read, named by its flag and value.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {value:?}")]
pub struct OverrideError {
    /// The flag, e.g. `--nodes`.
    pub flag: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    #[source]
    pub source: ConfigError,
}

impl GatewayOverrides {
    /// Writes every value present into `c`.
    pub fn apply(self, c: &mut GatewayConfig) -> Result<(), OverrideError> {
        let bad = |flag: &'static str, value: &str| {
            let value = value.to_owned();
            move |source| OverrideError {
                flag,
                value,
                source,
            }
        };
        if let Some(n) = &self.nodes {
            c.nodes = n
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(NodeEntry::parse)
                .collect::<Result<_, _>>()
                .map_err(bad("--nodes", n))?;
        }
        for (flag, value, slot) in [
            ("--writes", &self.writes, &mut c.routing.writes),
            (
                "--linearizable-reads",
                &self.linearizable_reads,
                &mut c.routing.linearizable_reads,
            ),
            (
                "--local-reads",
                &self.local_reads,
                &mut c.routing.local_reads,
            ),
        ] {
            if let Some(v) = value {
                *slot = Target::parse(v).map_err(bad(flag, v))?;
            }
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.workers {
            c.workers = v;
        }
        if let Some(v) = self.admin_token {
            c.admin_token = Some(v);
        }
        if let Some(v) = self.tls {
            c.tls = Some(v);
        }
        c.insecure_plaintext |= self.insecure_plaintext;
        if let Some(v) = self.health_interval_ms {
            c.health.interval_ms = v;
        }
        if let Some(v) = self.phi_threshold {
            c.health.phi_threshold = v;
        }
        if let Some(v) = self.rate_per_s {
            c.rate_limit.rate_per_s = v;
        }
        if let Some(v) = self.rate_burst {
            c.rate_limit.burst = v;
        }
        if let Some(v) = self.body_bytes_max {
            c.limits.body_bytes_max = v;
        }
        if let Some(v) = self.request_timeout_ms {
            c.retry.request_timeout_ms = v;
        }
        c.retry.add_idempotency_key &= !self.no_idempotency_key;
        c.discovery.enabled &= !self.no_discovery;
        if let Some(v) = self.backup_repo {
            c.dashboard.backup_repo = Some(v);
        }
        if let Some(v) = self.backup_key_file {
            c.dashboard.backup_key_file = Some(v);
        }
        Ok(())
    }
}

/// Why a gateway's configuration could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not valid TOML for a gateway.
    #[error("parsing {}", path.display())]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// What was wrong.
        #[source]
        source: toml::de::Error,
    },
    /// A flag or environment variable cannot be read.
    #[error(transparent)]
    Override(#[from] OverrideError),
    /// The merged configuration is refused.
    #[error("gateway configuration")]
    Invalid(#[source] ConfigError),
    /// A secret file the configuration names could not be read.
    #[error("the configuration's secret file: {0}")]
    Secret(#[from] keel_secrets::SecretError),
    /// A `[backup]` section without the admin token its backups need.
    #[error("[backup] needs admin_token: backups read the nodes' admin endpoints")]
    BackupWithoutToken,
}

impl GatewayConfig {
    /// The configuration in `file` (defaults without one) with `overrides`
    /// applied, checked; a `[backup]` section also needs the admin token.
    pub fn load(
        file: Option<&std::path::Path>,
        overrides: GatewayOverrides,
    ) -> Result<Self, LoadError> {
        let mut c = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
                    path: path.to_owned(),
                    source,
                })?;
                Self::from_toml(&text).map_err(|source| LoadError::Parse {
                    path: path.to_owned(),
                    source,
                })?
            }
            None => Self::default(),
        };
        if let Some(f) = &c.admin_token_file {
            c.admin_token = Some(keel_secrets::from_file(f)?);
        }
        overrides.apply(&mut c)?;
        c.validate().map_err(LoadError::Invalid)?;
        if c.backup.is_some() && c.admin_token.is_none() {
            return Err(LoadError::BackupWithoutToken);
        }
        Ok(c)
    }
}

/// One node the gateway starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeEntry {
    /// `host:port` of the node's public API.
    pub addr: String,
    /// Share under weighted round robin (`0..=WEIGHT_MAX`, 0 drains it).
    #[serde(default = "weight_default")]
    pub weight: u32,
}

fn weight_default() -> u32 {
    1
}

impl NodeEntry {
    /// Parses `host:port` or `host:port*weight` (the flag syntax).
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        let (addr, weight) = match s.split_once('*') {
            Some((a, w)) => {
                let w = w.trim().parse().map_err(|_| ConfigError::Invalid {
                    field: "nodes",
                    reason: "a weight after '*' must be a whole number",
                })?;
                (a.trim(), w)
            }
            None => (s.trim(), 1),
        };
        let entry = Self {
            addr: addr.to_owned(),
            weight,
        };
        entry.validate()?;
        Ok(entry)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if keel_protocol::addr::parse_host_port(&self.addr).is_err() {
            return Err(ConfigError::Invalid {
                field: "nodes",
                reason: "each node is host:port, the host an IP address or a DNS name, like 10.0.0.5:7101 or keel-1.shop.example:7101",
            });
        }
        if self.weight > WEIGHT_MAX {
            return Err(ConfigError::WeightTooLarge {
                weight: self.weight,
                max: WEIGHT_MAX,
            });
        }
        Ok(())
    }
}

/// Where a class of requests goes: to the Raft leader, or balanced over the
/// eligible nodes by one of the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The leader as the gateway last learnt it; while none is known, round
    /// robin over eligible nodes (a follower forwards writes to the leader).
    Leader,
    /// [`Policy::RoundRobin`].
    RoundRobin,
    /// [`Policy::WeightedRoundRobin`].
    WeightedRoundRobin,
    /// [`Policy::LeastOutstanding`].
    LeastOutstanding,
    /// [`Policy::P2cEwma`].
    P2cEwma,
    /// [`Policy::ConsistentHash`] on the routing hash header.
    ConsistentHash,
}

impl Target {
    /// The balancing policy: the configured one, or round robin for
    /// `leader` (used while no leader is known).
    pub fn policy(self) -> Policy {
        match self {
            Target::Leader | Target::RoundRobin => Policy::RoundRobin,
            Target::WeightedRoundRobin => Policy::WeightedRoundRobin,
            Target::LeastOutstanding => Policy::LeastOutstanding,
            Target::P2cEwma => Policy::P2cEwma,
            Target::ConsistentHash => Policy::ConsistentHash,
        }
    }

    /// Parses the snake_case name used in files and flags.
    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            ConfigError::Invalid {
                field: "routing",
                reason: "one of leader, round_robin, weighted_round_robin, least_outstanding, p2c_ewma, consistent_hash",
            }
        })
    }
}

/// Where each class of request goes.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RoutingConfig {
    /// Writes (POST, PUT, PATCH, DELETE). `leader` saves the follower's
    /// forwarding hop; a policy spreads the parsing and forwarding work.
    pub writes: Target,
    /// Reads without `consistency=local`. `leader` is one hop; a policy
    /// spreads them, each follower asking the leader for its read index.
    pub linearizable_reads: Target,
    /// Reads with `consistency=local`: any replica may answer.
    pub local_reads: Target,
    /// Request header whose value keys consistent hashing (lower case);
    /// `authorization` keeps one customer on one node.
    pub hash_header: String,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            writes: Target::Leader,
            linearizable_reads: Target::Leader,
            local_reads: Target::P2cEwma,
            hash_header: "authorization".into(),
        }
    }
}

/// Active health checks (HAProxy's `inter`, `timeout check`, `rise`,
/// `fall`) and the phi-accrual detector fed by their answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Path probed on each node; 200 counts as healthy.
    pub path: String,
    /// Time between probes of one node (ms).
    pub interval_ms: u64,
    /// Longest a probe may take (ms).
    pub timeout_ms: u64,
    /// Consecutive successes that bring a node back.
    pub rise: u32,
    /// Consecutive failures that take a node out.
    pub fall: u32,
    /// Phi above which a node is suspected (8 as in Akka and Cassandra).
    pub phi_threshold: f64,
    /// Silence tolerated beyond the mean probe interval before phi climbs
    /// (ms); Akka's 3 s suits 1 s heartbeats, ours are 100 ms.
    pub phi_pause_ms: u64,
    /// Floor of the interval deviation phi assumes (ms).
    pub phi_std_min_ms: u64,
}

impl Default for HealthConfig {
    fn default() -> Self {
        // A killed node refuses the next probe or request, which marks it
        // down on the spot; a paused one stops answering, which
        // phi flags about 0.7 s after its last answer (mean 100 ms + 300 ms
        // pause + about 6 deviations of 50 ms) and the 3-strike rule after
        // 3 timed-out probes. Three probes a second per node cost nothing.
        Self {
            path: "/readyz".into(),
            interval_ms: 100,
            timeout_ms: 250,
            rise: 2,
            fall: 3,
            phi_threshold: crate::PHI_THRESHOLD_DEFAULT,
            phi_pause_ms: 300,
            phi_std_min_ms: 50,
        }
    }
}

impl HealthConfig {
    /// The rise/fall rules; a node starts Up so a restarted gateway serves
    /// at once.
    pub fn active(&self) -> ActiveHealthConfig {
        ActiveHealthConfig {
            rise: self.rise,
            fall: self.fall,
            start: HealthState::Up,
        }
    }

    /// The phi-accrual settings.
    pub fn phi(&self) -> PhiAccrualConfig {
        PhiAccrualConfig {
            samples_max: 200,
            std_deviation_min: Duration::from_millis(self.phi_std_min_ms),
            heartbeat_pause_acceptable: Duration::from_millis(self.phi_pause_ms),
            heartbeat_first_estimate: Duration::from_millis(self.interval_ms),
            threshold: self.phi_threshold,
        }
    }
}

/// Envoy-style outlier ejection on consecutive failed requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutlierSection {
    /// Consecutive failures (refused, reset, timed out, 500) that eject.
    pub consecutive_failures: u32,
    /// First ejection (ms); the n-th lasts n times this.
    pub ejection_base_ms: u64,
    /// Longest ejection (ms).
    pub ejection_max_ms: u64,
    /// Most nodes ejected at once, percent.
    pub ejection_percent_max: u8,
}

impl Default for OutlierSection {
    fn default() -> Self {
        let d = OutlierConfig::default();
        Self {
            consecutive_failures: d.consecutive_failures,
            ejection_base_ms: duration_ms(d.ejection_base),
            ejection_max_ms: duration_ms(d.ejection_max),
            ejection_percent_max: d.ejection_percent_max,
        }
    }
}

impl OutlierSection {
    /// The rule's settings.
    pub fn rule(&self) -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: self.consecutive_failures,
            ejection_base: Duration::from_millis(self.ejection_base_ms),
            ejection_max: Duration::from_millis(self.ejection_max_ms),
            ejection_percent_max: self.ejection_percent_max,
        }
    }
}

/// The per-node circuit breaker.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// Consecutive failures that open it.
    pub consecutive_failures: u32,
    /// How long it stays open (ms).
    pub open_ms: u64,
    /// Trial requests while half-open.
    pub half_open_trials: u32,
}

impl Default for BreakerSection {
    fn default() -> Self {
        let d = BreakerConfig::default();
        Self {
            consecutive_failures: d.consecutive_failures,
            open_ms: duration_ms(d.open_cooldown),
            half_open_trials: d.half_open_trials_max,
        }
    }
}

impl BreakerSection {
    /// The rule's settings.
    pub fn rule(&self) -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: self.consecutive_failures,
            open_cooldown: Duration::from_millis(self.open_ms),
            half_open_trials_max: self.half_open_trials,
        }
    }
}

/// Transparent retries.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// Retries after the first attempt (`1..=RETRY_ATTEMPTS_MAX`).
    pub attempts_max: u32,
    /// Ceiling of the first backoff (ms); doubles each retry, full jitter.
    pub backoff_base_ms: u64,
    /// Largest backoff ceiling (ms).
    pub backoff_cap_ms: u64,
    /// Longest one attempt may take (ms).
    pub attempt_timeout_ms: u64,
    /// Longest a request may take over all attempts (ms).
    pub request_timeout_ms: u64,
    /// Retries in flight as a share of requests in flight, percent.
    pub budget_percent: u32,
    /// Retries in flight always allowed.
    pub budget_min: u32,
    /// Give keyless writes an `Idempotency-Key` before the first attempt,
    /// so they too can be retried exactly once.
    pub add_idempotency_key: bool,
}

impl Default for RetrySection {
    fn default() -> Self {
        // Backoff ceilings 10, 20, 40, ... 320 ms over 8 retries span about
        // a second of waiting on average, more than a leader election takes
        // (0.5-0.7 s); the 10 s request deadline bounds everything else.
        let budget = RetryBudgetConfig::default();
        Self {
            attempts_max: 8,
            backoff_base_ms: 10,
            backoff_cap_ms: 320,
            attempt_timeout_ms: 2_000,
            request_timeout_ms: 10_000,
            budget_percent: budget.budget_percent,
            budget_min: budget.min_retry_concurrency,
            add_idempotency_key: true,
        }
    }
}

impl RetrySection {
    /// The backoff schedule.
    pub fn backoff(&self) -> BackoffConfig {
        BackoffConfig {
            base: Duration::from_millis(self.backoff_base_ms),
            cap: Duration::from_millis(self.backoff_cap_ms),
            attempts_max: self.attempts_max,
        }
    }

    /// The retry budget.
    pub fn budget(&self) -> RetryBudgetConfig {
        RetryBudgetConfig {
            budget_percent: self.budget_percent,
            min_retry_concurrency: self.budget_min,
        }
    }
}

/// Caps and timeouts that protect the gateway and the cluster.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Client connections open at once; more wait in the listen backlog.
    pub connections_max: usize,
    /// Requests being handled at once; more get 503 `overloaded`.
    pub pending_max: usize,
    /// Largest request body (bytes), as the nodes' own limit.
    pub body_bytes_max: usize,
    /// Largest response body the gateway will buffer from a node (bytes).
    pub response_bytes_max: usize,
    /// Longest a client may take to send its body (ms).
    pub body_timeout_ms: u64,
    /// Longest a node connection attempt may take (ms).
    pub connect_timeout_ms: u64,
    /// Idle pooled connections kept per node.
    pub idle_connections_per_node: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            connections_max: 10_000,
            pending_max: 4_096,
            body_bytes_max: 1 << 20,
            response_bytes_max: 16 << 20,
            body_timeout_ms: 10_000,
            connect_timeout_ms: 250,
            idle_connections_per_node: 256,
        }
    }
}

/// Per-client token buckets.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Sustained requests per second per client; 0 turns limiting off (the
    /// default, as in nginx and Envoy, since only the operator knows the
    /// shop's traffic).
    pub rate_per_s: u32,
    /// Requests a client may send back to back.
    pub burst: u32,
    /// Header naming the client (lower case); without it the client is its
    /// IP address.
    pub client_header: String,
    /// Clients tracked at once (least recently seen are forgotten).
    pub clients_max: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            rate_per_s: 0,
            burst: 0,
            client_header: "authorization".into(),
            clients_max: crate::RATE_LIMITER_CLIENTS_MAX,
        }
    }
}

impl RateLimitConfig {
    /// The bucket settings, or `None` when limiting is off.
    pub fn bucket(&self) -> Option<TokenBucketConfig> {
        (self.rate_per_s > 0).then(|| TokenBucketConfig {
            rate_per_s: self.rate_per_s,
            burst: self.burst.max(1),
        })
    }
}

/// The `[dashboard]` section.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardSection {
    /// A local backup repository (a directory `keel backup` writes to)
    /// whose last full and incremental backups and recovery point the
    /// dashboard shows. Absent: the panel says none is configured.
    pub backup_repo: Option<std::path::PathBuf>,
    /// The repository's key file (raw or 64 hex digits); without it the
    /// key comes from `KEEL_BACKUP_KEY`. The key authenticates the
    /// manifests the panel lists.
    pub backup_key_file: Option<std::path::PathBuf>,
}

/// Membership discovery.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoveryConfig {
    /// Learn nodes from the cluster: from `/v1/cluster` when an admin token
    /// is set, and from the leader named on replies always. Off: only the
    /// configured nodes are used.
    pub enabled: bool,
    /// Time between membership polls (ms).
    pub interval_ms: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_ms: 1_000,
        }
    }
}

/// Smallest interval or timeout accepted, so a typo cannot make the gateway
/// spin.
pub const INTERVAL_MS_MIN: u64 = 10;

impl GatewayConfig {
    /// Reads a TOML file.
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks everything the rules do not check themselves.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.listen.ip().is_loopback() && self.tls.is_none() && !self.insecure_plaintext {
            return Err(ConfigError::Invalid {
                field: "tls",
                reason: "listening outside loopback without TLS: tokens would cross the network in clear; give [tls] ca, cert and key (or --tls-ca/--tls-cert/--tls-key; `keel certs` makes them), or set insecure_plaintext (--insecure-plaintext) on a network you trust",
            });
        }
        if self.nodes.is_empty() {
            return Err(ConfigError::Invalid {
                field: "nodes",
                reason: "at least one node address is needed",
            });
        }
        if self.nodes.len() > NODES_MAX {
            return Err(ConfigError::TooManyNodes {
                count: self.nodes.len(),
                max: NODES_MAX,
            });
        }
        for n in &self.nodes {
            n.validate()?;
        }
        for (field, ms) in [
            ("health.interval_ms", self.health.interval_ms),
            ("health.timeout_ms", self.health.timeout_ms),
            ("retry.attempt_timeout_ms", self.retry.attempt_timeout_ms),
            ("retry.request_timeout_ms", self.retry.request_timeout_ms),
            ("limits.body_timeout_ms", self.limits.body_timeout_ms),
            ("limits.connect_timeout_ms", self.limits.connect_timeout_ms),
            ("discovery.interval_ms", self.discovery.interval_ms),
        ] {
            if ms < INTERVAL_MS_MIN {
                return Err(ConfigError::Invalid {
                    field,
                    reason: "must be at least INTERVAL_MS_MIN (10 ms)",
                });
            }
        }
        if self.workers > WORKERS_MAX {
            return Err(ConfigError::Invalid {
                field: "workers",
                reason: "at most WORKERS_MAX (64); 0 means one per CPU core",
            });
        }
        if self.limits.connections_max == 0 || self.limits.pending_max == 0 {
            return Err(ConfigError::Invalid {
                field: "limits",
                reason: "connections_max and pending_max must be positive",
            });
        }
        if self.limits.body_bytes_max == 0 || self.limits.response_bytes_max == 0 {
            return Err(ConfigError::Invalid {
                field: "limits",
                reason: "body and response byte limits must be positive",
            });
        }
        if !self.health.path.starts_with('/') {
            return Err(ConfigError::Invalid {
                field: "health.path",
                reason: "must start with /",
            });
        }
        // The rules validate their own settings; build each once so a bad
        // file fails at start, not on the first request.
        crate::ActiveHealth::new(self.health.active())?;
        crate::PhiAccrual::new(self.health.phi())?;
        crate::OutlierEjection::new(self.outlier.rule(), self.nodes.len())?;
        crate::CircuitBreaker::new(self.breaker.rule())?;
        crate::RetryBudget::new(self.retry.budget())?;
        crate::Backoff::new(self.retry.backoff())?;
        if let Some(bucket) = self.rate_limit.bucket() {
            crate::RateLimiter::<String>::new(bucket, self.rate_limit.clients_max)?;
        }
        if let Some(b) = &self.backup {
            b.validate()?;
        }
        Ok(())
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_once_nodes_are_given() {
        let mut c = GatewayConfig::default();
        assert!(c.validate().is_err(), "no nodes");
        c.nodes = vec![NodeEntry::parse("127.0.0.1:7101").unwrap()];
        c.validate().unwrap();
    }

    #[test]
    fn node_entries_parse_with_and_without_weight() {
        assert_eq!(
            NodeEntry::parse("127.0.0.1:7101*5").unwrap(),
            NodeEntry {
                addr: "127.0.0.1:7101".into(),
                weight: 5
            }
        );
        assert_eq!(NodeEntry::parse("127.0.0.1:7101").unwrap().weight, 1);
        assert!(NodeEntry::parse("localhost").is_err());
        assert!(NodeEntry::parse("127.0.0.1:1*x").is_err());
        assert!(NodeEntry::parse("127.0.0.1:1*20000").is_err());
    }

    #[test]
    fn toml_file_sets_sections_and_rejects_unknown_fields() {
        let c = GatewayConfig::from_toml(
            r#"
            listen = "127.0.0.1:9000"
            nodes = [{ addr = "127.0.0.1:7101", weight = 5 }, { addr = "127.0.0.1:7102" }]
            [routing]
            local_reads = "weighted_round_robin"
            linearizable_reads = "least_outstanding"
            [health]
            interval_ms = 200
            "#,
        )
        .unwrap();
        assert_eq!(c.nodes[0].weight, 5);
        assert_eq!(c.nodes[1].weight, 1);
        assert_eq!(c.routing.local_reads, Target::WeightedRoundRobin);
        assert_eq!(c.health.interval_ms, 200);
        assert_eq!(c.health.fall, 3, "unset fields keep defaults");
        c.validate().unwrap();
        assert!(GatewayConfig::from_toml("listne = \"x\"").is_err());
    }

    #[test]
    fn a_backup_section_parses_and_must_schedule_something() {
        let base = r#"
            nodes = [{ addr = "127.0.0.1:7101" }]
            [backup]
            targets = ["/var/backups/a", "/var/backups/b", "/var/backups/c"]
            layout = "2+1"
            "#;
        let c = GatewayConfig::from_toml(&format!("{base}full_every_s = 3600\nkeep_full = 2\n"))
            .unwrap();
        let b = c.backup.as_ref().unwrap();
        assert_eq!(b.full_every_s, Some(3600));
        assert_eq!(b.archive_bytes, 16 << 20, "unset fields keep defaults");
        c.validate().unwrap();
        let idle = GatewayConfig::from_toml(base).unwrap();
        assert!(idle.validate().is_err(), "nothing scheduled");
        let zero = GatewayConfig::from_toml(&format!("{base}after_entries = 0\n")).unwrap();
        assert!(zero.validate().is_err(), "a zero trigger");
        assert!(GatewayConfig::from_toml(&format!("{base}fulll_every_s = 1\n")).is_err());
        assert!(GatewayConfig::default().backup.is_none());
    }

    #[test]
    fn targets_parse_by_name() {
        assert_eq!(Target::parse("leader").unwrap(), Target::Leader);
        assert_eq!(Target::parse("p2c_ewma").unwrap().policy(), Policy::P2cEwma);
        assert!(Target::parse("random").is_err());
    }

    #[test]
    fn too_small_timeouts_are_refused() {
        let mut c = GatewayConfig {
            nodes: vec![NodeEntry::parse("127.0.0.1:7101").unwrap()],
            ..GatewayConfig::default()
        };
        c.health.interval_ms = 1;
        assert!(c.validate().is_err());
    }

    #[test]
    fn overrides_replace_the_file_and_bad_ones_name_their_flag() {
        let o = GatewayOverrides {
            nodes: Some("127.0.0.1:7101*2, ,127.0.0.1:7102".into()),
            local_reads: Some("p2c_ewma".into()),
            no_discovery: true,
            ..GatewayOverrides::default()
        };
        let c = GatewayConfig::load(None, o).unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[0].weight, 2);
        assert_eq!(c.routing.local_reads, Target::P2cEwma);
        assert!(!c.discovery.enabled);
        let o = GatewayOverrides {
            nodes: Some("127.0.0.1:7101".into()),
            writes: Some("nearest".into()),
            ..GatewayOverrides::default()
        };
        let e = GatewayConfig::load(None, o).unwrap_err();
        assert_eq!(e.to_string(), "--writes \"nearest\"");
        let e = GatewayConfig::load(None, GatewayOverrides::default()).unwrap_err();
        assert!(matches!(e, LoadError::Invalid(_)), "{e}");
        let file = std::env::temp_dir().join(format!("keel-gateway-{}.toml", std::process::id()));
        std::fs::write(
            &file,
            "nodes = [{ addr = \"127.0.0.1:7101\" }]\n[backup]\ntargets = [\"b\"]\nfull_every_s = 3600\n",
        )
        .unwrap();
        let e = GatewayConfig::load(Some(&file), GatewayOverrides::default()).unwrap_err();
        assert!(matches!(e, LoadError::BackupWithoutToken), "{e}");
        let o = GatewayOverrides {
            admin_token: Some("a-real-admin-token".into()),
            ..GatewayOverrides::default()
        };
        let c = GatewayConfig::load(Some(&file), o).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(c.backup.map(|b| b.targets), Some(vec!["b".to_owned()]));
    }
}
