//! A node's configuration: one TOML file, every field overridable by the
//! binary's flags and `KEEL_*` environment variables. Defaults work for a
//! local three-node cluster on one laptop.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Largest `clock_offset_max_ms` accepted: the state machine moves its clock
/// at most `keel_domain::apply::CLOCK_STEP_MAX_MS` per entry, and an offset
/// limit beyond that would let the first guard pass what the second must
/// then catch.
pub const CLOCK_OFFSET_MAX_MS_LIMIT: u64 = keel_domain::apply::CLOCK_STEP_MAX_MS;

/// Everything a node needs to run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// This node's Raft id (unique in the cluster, > 0).
    pub id: u64,
    /// Address the HTTP server (public API and internal RPC) listens on.
    pub listen: SocketAddr,
    /// Address other nodes and clients use to reach this node (defaults to `listen`).
    pub advertise: Option<String>,
    /// Where the Raft log, state and snapshots live.
    pub data_dir: PathBuf,
    /// Bearer token that grants the admin role on the public API. Never
    /// written out when the configuration is serialised.
    #[serde(skip_serializing)]
    pub admin_token: String,
    /// Shared secret nodes present to each other on internal RPC, and the key
    /// customer tokens are derived from. Must be equal on all nodes.
    #[serde(skip_serializing)]
    pub cluster_secret: String,
    /// Raft timing and limits.
    pub raft: RaftTiming,
    /// Proposer batching limits.
    pub batch: BatchLimits,
    /// Largest offset of this node's wall clock from a majority of the
    /// voters' (ms) with which it may stand for election and lead; past it
    /// the node steps down and says why (see `crate::clock`).
    pub clock_offset_max_ms: u64,
    /// TLS for the listener and for calls to peers (`[tls]`: the CA bundle,
    /// this node's certificate, which must name its member id, and its
    /// key; each read again when it changes). None means plaintext, which
    /// a listener outside loopback refuses unless
    /// [`insecure_plaintext`](Self::insecure_plaintext) says otherwise.
    pub tls: Option<keel_tls::TlsFiles>,
    /// A file whose first line is the admin token (mode 0600): how a
    /// configuration file names the token without holding it. Read at
    /// start; `KEEL_ADMIN_TOKEN` or `--admin-token-file` take precedence.
    pub admin_token_file: Option<PathBuf>,
    /// A file whose first line is the cluster secret, as
    /// [`admin_token_file`](Self::admin_token_file).
    pub cluster_secret_file: Option<PathBuf>,
    /// Serve plaintext outside loopback: the operator's explicit choice for
    /// a network they trust (tokens and the cluster secret cross it in
    /// clear).
    pub insecure_plaintext: bool,
    /// Where alerts are POSTed as they open and close (`http://` or
    /// `https://`, the latter checked against the cluster's CA); none: the
    /// alerts are only served at `GET /v1/alerts` and logged.
    pub alert_webhook: Option<String>,
}

/// Raft timing. The heartbeat interval is also openraft 0.9's AppendEntries
/// timeout, so it must exceed a follower's fsync plus a round trip.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTiming {
    /// Leader heartbeat period and AppendEntries timeout (ms), 20..=5000.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout (ms).
    pub election_min_ms: u64,
    /// Upper bound of the randomised election timeout (ms).
    pub election_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every_entries: u64,
    /// Entries kept in the log behind a snapshot, so a briefly lagging
    /// follower catches up from the log rather than a snapshot.
    pub keep_entries_behind_snapshot: u64,
    /// Most bytes of a snapshot sent in one install RPC, within
    /// [`SNAPSHOT_CHUNK_BYTES_MIN`]..=[`SNAPSHOT_CHUNK_BYTES_MAX`]. Smaller
    /// chunks mean more round trips and a longer transfer, which the chaos
    /// suite uses to cut the power while a snapshot is being installed.
    pub snapshot_chunk_bytes: u64,
}

/// Smallest snapshot chunk accepted by the configuration.
pub const SNAPSHOT_CHUNK_BYTES_MIN: u64 = 4 << 10;
/// Largest snapshot chunk: well inside the internal RPC body limit
/// (`rpc::RPC_BODY_BYTES_MAX`, 64 MiB), with room for the request's framing.
pub const SNAPSHOT_CHUNK_BYTES_MAX: u64 = 32 << 20;
/// Default snapshot chunk: openraft's own default (3 MiB).
pub const SNAPSHOT_CHUNK_BYTES_DEFAULT: u64 = 3 << 20;

impl Default for RaftTiming {
    fn default() -> Self {
        // openraft 0.9 lets a follower that has seen a committed leader
        // wait election_max (the leader's lease) plus its own randomised
        // election timeout, checked every 1.5 heartbeats, before it stands:
        // with 50 ms and 150-300 ms that is 450-675 ms after the leader's
        // last heartbeat, and `keel demo` measures a client-visible gap of
        // about 0.5 s around a leader kill (1.5 s with 100 ms and
        // 500-900 ms). A follower's fsync takes well under 1 ms here and
        // the p99 of a loaded cluster's commit is about 20 ms, so 50 ms
        // heartbeats (also openraft's AppendEntries timeout) cause no
        // spurious elections under `keel bench cluster`.
        Self {
            heartbeat_ms: 50,
            election_min_ms: 150,
            election_max_ms: 300,
            snapshot_every_entries: 20_000,
            keep_entries_behind_snapshot: 5_000,
            snapshot_chunk_bytes: SNAPSHOT_CHUNK_BYTES_DEFAULT,
        }
    }
}

/// Limits of one proposed batch (one Raft entry).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchLimits {
    /// Most commands per entry (at most `keel_domain::command::BATCH_COMMANDS_MAX`).
    pub commands_max: usize,
    /// Most encoded bytes of commands per entry.
    pub bytes_max: usize,
    /// Longest a command waits for its batch to fill while no batch is in
    /// flight (µs). 0: propose at once when the pipeline has room.
    pub delay_us: u64,
    /// Batches proposed but not yet committed at once; more commands wait and
    /// fill the next batch. This is what makes batching adaptive. The
    /// default is 2: one batch fills and replicates while the one before is
    /// applied. It was 1 while each entry paid its own state commit on
    /// every replica and the nodes were CPU-bound (`keel bench cluster`,
    /// 64 clients: 6,631 orders/s at 1, 5,937 at 2); since applied entries
    /// share a commit, 2 gives about 10 % more than 1, and 3 less than 2
    /// (see BENCHMARKS.md).
    pub in_flight_max: usize,
    /// Commands waiting for a batch; beyond this the node answers 503.
    pub queue_max: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            commands_max: 1_000,
            bytes_max: 1 << 20,
            delay_us: 0,
            in_flight_max: 2,
            queue_max: 50_000,
        }
    }
}

/// The development admin token: public (it is in this source), so a node
/// accepts it only while it listens on loopback.
pub const DEV_ADMIN_TOKEN: &str = "keel-admin-dev";
/// The development cluster secret: public, loopback only, as
/// [`DEV_ADMIN_TOKEN`].
pub const DEV_CLUSTER_SECRET: &str = "keel-cluster-dev";

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            id: 1,
            listen: SocketAddr::from(([127, 0, 0, 1], 7101)),
            advertise: None,
            data_dir: PathBuf::from("keel-data/node-1"),
            admin_token: DEV_ADMIN_TOKEN.into(),
            cluster_secret: DEV_CLUSTER_SECRET.into(),
            raft: RaftTiming::default(),
            batch: BatchLimits::default(),
            clock_offset_max_ms: crate::clock::CLOCK_OFFSET_MAX_MS_DEFAULT,
            tls: None,
            admin_token_file: None,
            cluster_secret_file: None,
            insecure_plaintext: false,
            alert_webhook: None,
        }
    }
}

/// A configuration value is out of range.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

impl NodeConfig {
    /// Reads a TOML file.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// The address peers and clients use for this node.
    pub fn advertised(&self) -> String {
        self.advertise
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }

    /// Checks ranges; a node refuses to start on a bad configuration.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.id == 0 {
            return bad("id must be > 0".into());
        }
        let r = &self.raft;
        if !(20..=5_000).contains(&r.heartbeat_ms) {
            return bad("raft.heartbeat_ms must be 20 to 5000".into());
        }
        if r.election_min_ms < 3 * r.heartbeat_ms || r.election_max_ms <= r.election_min_ms {
            return bad(
                "raft.election_min_ms must be >= 3 x heartbeat_ms and < election_max_ms".into(),
            );
        }
        if r.snapshot_every_entries == 0 {
            return bad("raft.snapshot_every_entries must be > 0".into());
        }
        if !(SNAPSHOT_CHUNK_BYTES_MIN..=SNAPSHOT_CHUNK_BYTES_MAX).contains(&r.snapshot_chunk_bytes)
        {
            return bad(format!(
                "raft.snapshot_chunk_bytes must be {SNAPSHOT_CHUNK_BYTES_MIN} to {SNAPSHOT_CHUNK_BYTES_MAX}"
            ));
        }
        if !(1..=CLOCK_OFFSET_MAX_MS_LIMIT).contains(&self.clock_offset_max_ms) {
            return bad(format!(
                "clock_offset_max_ms must be 1 to {CLOCK_OFFSET_MAX_MS_LIMIT}"
            ));
        }
        let b = &self.batch;
        if b.commands_max == 0 || b.commands_max > keel_domain::command::BATCH_COMMANDS_MAX {
            return bad(format!(
                "batch.commands_max must be 1 to {}",
                keel_domain::command::BATCH_COMMANDS_MAX
            ));
        }
        if b.bytes_max < 1024 || b.bytes_max > 16 << 20 {
            return bad("batch.bytes_max must be 1 KiB to 16 MiB".into());
        }
        if b.delay_us > 100_000 {
            return bad("batch.delay_us must be at most 100000".into());
        }
        if b.in_flight_max == 0 || b.in_flight_max > 64 {
            return bad("batch.in_flight_max must be 1 to 64".into());
        }
        if b.queue_max == 0 || b.queue_max > 1_000_000 {
            return bad("batch.queue_max must be 1 to 1000000".into());
        }
        if self.admin_token.len() < 8 || self.cluster_secret.len() < 8 {
            return bad("admin_token and cluster_secret must be at least 8 characters".into());
        }
        if !self.listen.ip().is_loopback() && self.tls.is_none() && !self.insecure_plaintext {
            return bad(format!(
                "listening on {} (outside loopback) without TLS: the admin token, customer tokens and the cluster secret would cross the network in clear. Give the node its certificates (tls.ca, tls.cert, tls.key, or --tls-ca/--tls-cert/--tls-key; `keel certs` makes them), or pass --insecure-plaintext on a network you trust",
                self.listen
            ));
        }
        if !self.listen.ip().is_loopback() {
            let public = [
                (
                    self.admin_token == DEV_ADMIN_TOKEN,
                    "admin token",
                    "KEEL_ADMIN_TOKEN",
                ),
                (
                    self.cluster_secret == DEV_CLUSTER_SECRET,
                    "cluster secret",
                    "KEEL_CLUSTER_SECRET",
                ),
            ];
            if let Some((_, what, var)) = public.iter().find(|(dev, _, _)| *dev) {
                return bad(format!(
                    "listening on {} (outside loopback) with the development {what}, which is public: set {var} (or the configuration file's field) to a secret of your own",
                    self.listen
                ));
            }
        }
        // Both travel in HTTP headers: visible ASCII only.
        let printable = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
        if !printable(&self.admin_token) || !printable(&self.cluster_secret) {
            return bad("admin_token and cluster_secret must be visible ASCII (no spaces)".into());
        }
        Ok(())
    }
}

/// Values given beside the configuration file (the binary's flags and
/// `KEEL_*` environment variables); each one present overrides the file's.
#[derive(Clone, Debug, Default)]
pub struct NodeOverrides {
    /// [`NodeConfig::id`].
    pub id: Option<u64>,
    /// [`NodeConfig::listen`].
    pub listen: Option<SocketAddr>,
    /// [`NodeConfig::advertise`].
    pub advertise: Option<String>,
    /// [`NodeConfig::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// [`NodeConfig::admin_token`].
    pub admin_token: Option<String>,
    /// [`NodeConfig::cluster_secret`].
    pub cluster_secret: Option<String>,
    /// [`NodeConfig::tls`].
    pub tls: Option<keel_tls::TlsFiles>,
    /// Sets [`NodeConfig::insecure_plaintext`] when true.
    pub insecure_plaintext: bool,
    /// [`RaftTiming::heartbeat_ms`].
    pub heartbeat_ms: Option<u64>,
    /// [`RaftTiming::election_min_ms`].
    pub election_min_ms: Option<u64>,
    /// [`RaftTiming::election_max_ms`].
    pub election_max_ms: Option<u64>,
    /// [`RaftTiming::snapshot_every_entries`].
    pub snapshot_every: Option<u64>,
    /// [`RaftTiming::keep_entries_behind_snapshot`].
    pub snapshot_keep: Option<u64>,
    /// [`RaftTiming::snapshot_chunk_bytes`].
    pub snapshot_chunk_bytes: Option<u64>,
    /// [`BatchLimits::in_flight_max`].
    pub batch_in_flight_max: Option<usize>,
    /// [`BatchLimits::delay_us`].
    pub batch_delay_us: Option<u64>,
    /// [`NodeConfig::clock_offset_max_ms`].
    pub clock_offset_max_ms: Option<u64>,
    /// [`NodeConfig::alert_webhook`].
    pub alert_webhook: Option<String>,
}

impl NodeOverrides {
    /// Writes every value present into `c`.
    pub fn apply(self, c: &mut NodeConfig) {
        let set = |slot: &mut u64, v: Option<u64>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut c.id, self.id);
        set(&mut c.raft.heartbeat_ms, self.heartbeat_ms);
        set(&mut c.raft.election_min_ms, self.election_min_ms);
        set(&mut c.raft.election_max_ms, self.election_max_ms);
        set(&mut c.raft.snapshot_every_entries, self.snapshot_every);
        set(&mut c.raft.keep_entries_behind_snapshot, self.snapshot_keep);
        set(&mut c.raft.snapshot_chunk_bytes, self.snapshot_chunk_bytes);
        set(&mut c.batch.delay_us, self.batch_delay_us);
        set(&mut c.clock_offset_max_ms, self.clock_offset_max_ms);
        if let Some(v) = self.batch_in_flight_max {
            c.batch.in_flight_max = v;
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.advertise {
            c.advertise = Some(v);
        }
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.admin_token {
            c.admin_token = v;
        }
        if let Some(v) = self.cluster_secret {
            c.cluster_secret = v;
        }
        if let Some(v) = self.tls {
            c.tls = Some(v);
        }
        c.insecure_plaintext |= self.insecure_plaintext;
        if let Some(v) = self.alert_webhook {
            c.alert_webhook = Some(v);
        }
    }
}

/// Why a node's configuration could not be put together.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The configuration file could not be read.
    #[error("reading {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The configuration file is not a valid configuration.
    #[error("parsing {}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        #[source]
        source: ConfigError,
    },
    /// A secret file the configuration names could not be read.
    #[error("the configuration's secret file: {0}")]
    Secret(#[from] keel_secrets::SecretError),
    /// The merged configuration is out of range.
    #[error(transparent)]
    Invalid(#[from] ConfigError),
}

impl NodeConfig {
    /// The configuration in `file` (defaults without one) with `overrides`
    /// applied, checked. Without a file or a data directory, an `id` also
    /// names the data directory (`keel-data/node-<id>`), so nodes started
    /// by id alone on one host do not share one.
    pub fn load(file: Option<&Path>, mut overrides: NodeOverrides) -> Result<Self, LoadError> {
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
            c.admin_token = keel_secrets::from_file(f)?;
        }
        if let Some(f) = &c.cluster_secret_file {
            c.cluster_secret = keel_secrets::from_file(f)?;
        }
        if let (None, None, Some(id)) = (file, &overrides.data_dir, overrides.id) {
            overrides.data_dir = Some(PathBuf::from(format!("keel-data/node-{id}")));
        }
        overrides.apply(&mut c);
        c.validate()?;
        Ok(c)
    }
}

/// A `--bootstrap` member list that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MembersError {
    /// A member without `=`.
    #[error("member {0:?} is not id=host:port")]
    NotAMember(String),
    /// A member whose id is not a number.
    #[error("bad node id in {part:?}")]
    BadId {
        /// The member as written.
        part: String,
        /// Why the id is not a number.
        #[source]
        source: std::num::ParseIntError,
    },
    /// A member whose address is not `host:port`.
    #[error("bad address in {0:?}: expected host:port, the host an IP address or a DNS name, like 10.0.0.5:7101 or keel-1:7101")]
    BadAddress(String),
    /// One id named twice.
    #[error("node id {0} appears twice")]
    Duplicate(u64),
    /// No member at all.
    #[error("--bootstrap names no members")]
    Empty,
}

/// Parses a member list, `1=host:port,2=host:port` (empty parts ignored).
pub fn parse_members(s: &str) -> Result<BTreeMap<u64, String>, MembersError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| MembersError::NotAMember(part.to_owned()))?;
        let id: u64 = id.trim().parse().map_err(|source| MembersError::BadId {
            part: part.to_owned(),
            source,
        })?;
        let addr = addr.trim();
        if keel_protocol::addr::parse_host_port(addr).is_err() {
            return Err(MembersError::BadAddress(part.to_owned()));
        }
        if out.insert(id, addr.to_owned()).is_some() {
            return Err(MembersError::Duplicate(id));
        }
    }
    if out.is_empty() {
        return Err(MembersError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_toml_overrides_fields() {
        NodeConfig::default().validate().unwrap();
        let c = NodeConfig::from_toml("id = 3\n[raft]\nheartbeat_ms = 40\n").unwrap();
        assert_eq!(c.id, 3);
        assert_eq!(c.raft.heartbeat_ms, 40);
        // A field the file leaves out keeps its default.
        assert_eq!(
            c.raft.election_min_ms,
            RaftTiming::default().election_min_ms
        );
        assert!(NodeConfig::from_toml("nonsense = 1").is_err());
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let mut c = NodeConfig::default();
        c.raft.election_min_ms = 100;
        assert!(c.validate().is_err());
        let mut c = NodeConfig::default();
        c.batch.commands_max = 5_000;
        assert!(c.validate().is_err());
        for (chunk, ok) in [
            (SNAPSHOT_CHUNK_BYTES_MIN - 1, false),
            (SNAPSHOT_CHUNK_BYTES_MIN, true),
            (SNAPSHOT_CHUNK_BYTES_MAX, true),
            (SNAPSHOT_CHUNK_BYTES_MAX + 1, false),
        ] {
            let mut c = NodeConfig::default();
            c.raft.snapshot_chunk_bytes = chunk;
            assert_eq!(c.validate().is_ok(), ok, "snapshot chunk of {chunk} bytes");
        }
        // A secret with a space or a control byte cannot travel in a header.
        for secret in ["cluster secret", "cluster\nsecret"] {
            let c = NodeConfig {
                cluster_secret: secret.into(),
                ..NodeConfig::default()
            };
            assert!(c.validate().is_err(), "{secret:?}");
        }
        let c = NodeConfig {
            id: 0,
            ..NodeConfig::default()
        };
        assert!(c.validate().is_err());
    }

    #[test]
    fn development_secrets_are_refused_outside_loopback() {
        let outside = SocketAddr::from(([10, 0, 0, 5], 7101));
        let c = NodeConfig {
            listen: outside,
            insecure_plaintext: true,
            ..NodeConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("KEEL_ADMIN_TOKEN"), "{e}");
        let c = NodeConfig {
            listen: outside,
            insecure_plaintext: true,
            admin_token: "a-real-admin-token".into(),
            ..NodeConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("KEEL_CLUSTER_SECRET"), "{e}");
        let c = NodeConfig {
            listen: outside,
            insecure_plaintext: true,
            admin_token: "a-real-admin-token".into(),
            cluster_secret: "a-real-cluster-secret".into(),
            ..NodeConfig::default()
        };
        c.validate().unwrap();
        // Loopback keeps the development defaults working for `keel up`.
        NodeConfig::default().validate().unwrap();
    }

    #[test]
    fn plaintext_outside_loopback_needs_the_operator_to_say_so() {
        let secret = |c: NodeConfig| NodeConfig {
            listen: SocketAddr::from(([10, 0, 0, 5], 7101)),
            admin_token: "a-real-admin-token".into(),
            cluster_secret: "a-real-cluster-secret".into(),
            ..c
        };
        let e = secret(NodeConfig::default())
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("without TLS") && e.contains("--insecure-plaintext"),
            "{e}"
        );
        let with_tls = NodeConfig {
            tls: Some(keel_tls::TlsFiles {
                ca: "ca.pem".into(),
                cert: "node-1.pem".into(),
                key: "node-1.key".into(),
            }),
            ..NodeConfig::default()
        };
        secret(with_tls).validate().unwrap();
        let insecure = NodeConfig {
            insecure_plaintext: true,
            ..NodeConfig::default()
        };
        secret(insecure).validate().unwrap();
    }

    #[test]
    fn members_parse_and_bad_ones_are_refused() {
        let m = parse_members("1=127.0.0.1:7101,2=127.0.0.1:7102").unwrap();
        assert_eq!(m.len(), 2);
        assert!(parse_members("1=nope").is_err());
        assert!(parse_members("x=127.0.0.1:1").is_err());
        assert!(parse_members("1=127.0.0.1:1,1=127.0.0.1:2").is_err());
        assert!(parse_members("").is_err());
        let named = parse_members("1=keel-1:7101,2=keel-2.shop.example:7101").unwrap();
        assert_eq!(named[&2], "keel-2.shop.example:7101");
    }

    #[test]
    fn a_configuration_file_names_its_secrets_by_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("admin-token"), "a-token-from-a-file\n").unwrap();
        std::fs::write(dir.path().join("cluster-secret"), "a-secret-from-a-file\n").unwrap();
        let toml = format!(
            "admin_token_file = {:?}\ncluster_secret_file = {:?}\n",
            dir.path().join("admin-token"),
            dir.path().join("cluster-secret")
        );
        let file = dir.path().join("node.toml");
        std::fs::write(&file, toml).unwrap();
        let c = NodeConfig::load(Some(&file), NodeOverrides::default()).unwrap();
        assert_eq!(c.admin_token, "a-token-from-a-file");
        assert_eq!(c.cluster_secret, "a-secret-from-a-file");
        // Never written out.
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("a-token-from-a-file") && !json.contains("a-secret-from-a-file"));
        // A missing file is an error naming it.
        std::fs::remove_file(dir.path().join("admin-token")).unwrap();
        let e = NodeConfig::load(Some(&file), NodeOverrides::default()).unwrap_err();
        assert!(format!("{e:#}").contains("secret file"), "{e:#}");
    }

    #[test]
    fn overrides_win_and_an_id_alone_names_the_data_dir() {
        let o = NodeOverrides {
            id: Some(2),
            heartbeat_ms: Some(40),
            ..NodeOverrides::default()
        };
        let c = NodeConfig::load(None, o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("keel-data/node-2"));
        assert_eq!(c.raft.heartbeat_ms, 40);
        let o = NodeOverrides {
            id: Some(2),
            data_dir: Some("elsewhere".into()),
            ..NodeOverrides::default()
        };
        assert_eq!(
            NodeConfig::load(None, o).unwrap().data_dir,
            PathBuf::from("elsewhere")
        );
        let o = NodeOverrides {
            heartbeat_ms: Some(1),
            ..NodeOverrides::default()
        };
        assert!(matches!(
            NodeConfig::load(None, o),
            Err(LoadError::Invalid(_))
        ));
    }
}
