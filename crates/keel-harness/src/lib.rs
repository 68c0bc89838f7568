//! A local cluster of real `keel node` processes on 127.0.0.1: start, kill
//! (SIGKILL), stop (SIGTERM), pause (SIGSTOP), restart, add nodes, and wait
//! on conditions with deadlines. `keel up`, `keel demo` and the integration
//! tests all use it, so what the tests prove is what users run.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use keel_client::Client;

pub mod host;
pub mod links;
pub mod net;
pub mod supervise;
pub mod tls;
pub mod writer;
pub use links::LinkProxies;
pub use net::Network;

/// How often conditions are polled while waiting on them.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Longest a node gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How much of the end of a node's log [`LocalCluster::exit_notice`] reads
/// for a panic: a panic's message and backtrace, and the node's error with
/// its own backtrace after it, take some tens of KiB; a whole log of a long
/// run may take hundreds of MiB.
pub const EXIT_LOG_TAIL_BYTES: u64 = 256 * 1024;
/// How long a local cluster, or its gateway, gets to elect a leader and
/// answer ready: a few election rounds of nodes started from nothing, with
/// room for a loaded machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a cluster operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A process could not be started or signalled.
    #[error("process: {0}")]
    Process(String),
    /// A process's plumbing failed: its directory, log file or a socket.
    #[error("process: {0}")]
    ProcessIo(#[source] std::io::Error),
    /// The host's tooling failed (a free port, a package, a secret).
    #[error("process: {0}")]
    Host(#[source] host::HostError),
    /// A condition was not met before its deadline.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        after: Duration,
    },
    /// Unknown node id.
    #[error("no node {0}")]
    NoNode(u64),
    /// The cluster's certificates could not be made or read.
    #[error("TLS: {0}")]
    Tls(#[from] keel_tls::TlsError),
    /// A file or directory could not be read, written or removed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Removes `dir` and everything under it, if it exists: the scratch data
/// directory a demo or benchmark starts from (and leaves behind).
pub fn clear_dir(dir: &Path) -> Result<(), HarnessError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|source| HarnessError::Io {
            what: format!("clearing {}", dir.display()),
            source,
        })?;
    }
    Ok(())
}

/// The spec of a local cluster: `nodes` nodes of `binary` on 127.0.0.1, node
/// N on `base_port + N - 1` (free ports when `base_port` is 0), data and
/// logs under `dir`, and `admin_token` for every node.
pub fn local_spec(
    binary: impl Into<PathBuf>,
    nodes: u64,
    base_port: u16,
    dir: impl Into<PathBuf>,
    admin_token: &str,
) -> ClusterSpec {
    let mut spec = ClusterSpec::new(binary, dir, nodes);
    spec.base_port = base_port;
    spec.admin_token = admin_token.to_owned();
    spec
}

/// What a cluster is made of.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// The `keel` binary to run.
    pub binary: PathBuf,
    /// Data directories (`node-N/`) and logs (`node-N.log`) go here.
    pub base_dir: PathBuf,
    /// Number of initial voters.
    pub nodes: u64,
    /// First port, or 0 to pick free ports.
    pub base_port: u16,
    /// Admin token given to every node.
    pub admin_token: String,
    /// Cluster secret given to every node.
    pub cluster_secret: String,
    /// Extra `keel node` arguments for every node.
    pub extra_args: Vec<String>,
    /// A restored seed every node's first start begins from, instead of a
    /// new empty cluster (`keel node --from-seed`).
    pub seed: Option<PathBuf>,
    /// Run each node in its own network namespace ([`Network`]; needs
    /// root), so links between nodes can be cut.
    pub netns: bool,
    /// With `netns`, route every node-to-node connection through a
    /// [`LinkProxies`] so latency and dropped connections can be injected
    /// (needs iptables). Nodes added later are not proxied.
    pub link_proxies: bool,
    /// libfaketime to preload into every node, so its wall clock can be
    /// skewed at run time ([`LocalCluster::set_clock_offset`]); monotonic
    /// time is left alone.
    pub faketime: Option<PathBuf>,
    /// Serve each node's data directory through a [`keel_lazyfs::LazyFs`]
    /// mounted by this process (needs root or fusermount3, and /dev/fuse),
    /// so [`LocalCluster::lose_unsynced`] can drop what a node wrote but
    /// never fsynced, as a power loss does. The files themselves live in
    /// `node-N.disk/` beside the mount point.
    pub lazyfs: bool,
    /// Run every link over TLS, with a CA made under `base_dir/ca` (kept
    /// across restarts) and certificates as `keel certs` issues them:
    /// nodes with mutual TLS between them, the gateway, and every client
    /// the harness makes. Without it, nodes in namespaces (outside
    /// loopback) are started with `--insecure-plaintext`.
    pub tls: bool,
}

impl ClusterSpec {
    /// A spec with development secrets.
    pub fn new(binary: impl Into<PathBuf>, base_dir: impl Into<PathBuf>, nodes: u64) -> Self {
        Self {
            binary: binary.into(),
            base_dir: base_dir.into(),
            nodes,
            base_port: 0,
            admin_token: "keel-admin-dev".into(),
            cluster_secret: "keel-cluster-dev".into(),
            extra_args: Vec::new(),
            seed: None,
            netns: false,
            link_proxies: false,
            faketime: None,
            lazyfs: false,
            tls: false,
        }
    }
}

struct NodeProc {
    addr: String,
    child: Option<Child>,
    paused: bool,
}

/// A running local cluster. Dropping it kills every node it started.
pub struct LocalCluster {
    spec: ClusterSpec,
    nodes: BTreeMap<u64, NodeProc>,
    bootstrap: String,
    /// Nodes started at least once.
    started: std::collections::BTreeSet<u64>,
    gateway: Option<GatewayProc>,
    /// The private network, when nodes run in namespaces. Dropped after
    /// the nodes are killed (fields drop after `Drop::drop`).
    net: Option<Network>,
    /// The link proxies, when node-to-node links go through them.
    links: Option<LinkProxies>,
    /// Each node's lazy filesystem, when `spec.lazyfs`. Unmounted after
    /// the nodes are killed (fields drop after `Drop::drop`).
    lazy: BTreeMap<u64, keel_lazyfs::LazyFs>,
    /// The cluster's CA, when `spec.tls`.
    tls: Option<tls::ClusterTls>,
}

struct GatewayProc {
    addr: String,
    child: Option<Child>,
    /// The extra arguments it was started with, for a restart.
    extra_args: Vec<String>,
}

/// Removes everything inside `dir`, keeping `dir` itself.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)?;
        } else {
            std::fs::remove_file(&path)?;
        }
    }
    Ok(())
}

fn free_port() -> Result<u16, HarnessError> {
    host::free_port().map_err(HarnessError::Host)
}

/// A proxy listener on the bridge for every ordered pair of nodes, and the
/// DNAT rule that sends the first node's connections to the second there.
fn proxy_links(net: &Network, ids: &[u64]) -> Result<LinkProxies, HarnessError> {
    let mut links = Vec::new();
    for &from in ids {
        for &to in ids.iter().filter(|&&t| t != from) {
            let listener = TcpListener::bind(format!("{}:0", net.bridge_ip()))
                .map_err(|e| HarnessError::Process(format!("link proxy listener: {e}")))?;
            let via = listener
                .local_addr()
                .map_err(HarnessError::ProcessIo)?
                .to_string();
            net.redirect(from, to, &via)?;
            links.push(links::Link {
                listener,
                peer: net.node_addr(to),
            });
        }
    }
    LinkProxies::start(links)
}

impl LocalCluster {
    /// Starts `spec.nodes` nodes; node 1 bootstraps the cluster of all.
    pub fn start(spec: ClusterSpec) -> Result<Self, HarnessError> {
        std::fs::create_dir_all(&spec.base_dir).map_err(HarnessError::ProcessIo)?;
        let ids: Vec<u64> = (1..=spec.nodes).collect();
        let net = if spec.netns {
            Some(Network::create(&ids)?)
        } else {
            None
        };
        let links = match (&net, spec.link_proxies) {
            (Some(n), true) => Some(proxy_links(n, &ids)?),
            (None, true) => {
                return Err(HarnessError::Process(
                    "link proxies need the nodes in network namespaces".into(),
                ))
            }
            _ => None,
        };
        let mut addrs = BTreeMap::new();
        for &id in &ids {
            let addr = match &net {
                Some(n) => n.node_addr(id),
                None if spec.base_port == 0 => format!("127.0.0.1:{}", free_port()?),
                None => format!("127.0.0.1:{}", spec.base_port + id as u16 - 1),
            };
            addrs.insert(id, addr);
        }
        let bootstrap = addrs
            .iter()
            .map(|(id, a)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        let tls = if spec.tls {
            Some(tls::ClusterTls::open(&spec.base_dir.join("ca"))?)
        } else {
            None
        };
        let mut c = Self {
            tls,
            spec,
            nodes: BTreeMap::new(),
            bootstrap,
            started: Default::default(),
            gateway: None,
            net,
            links,
            lazy: BTreeMap::new(),
        };
        for (id, addr) in addrs {
            c.nodes.insert(
                id,
                NodeProc {
                    addr,
                    child: None,
                    paused: false,
                },
            );
            c.spawn(id)?;
        }
        Ok(c)
    }

    /// The data directory of node `id`.
    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.spec.base_dir.join(format!("node-{id}"))
    }

    /// Where node `id`'s files really live when its data directory is a
    /// lazy filesystem's mount point.
    pub fn disk_dir(&self, id: u64) -> PathBuf {
        self.spec.base_dir.join(format!("node-{id}.disk"))
    }

    /// Mounts node `id`'s lazy filesystem if the spec asks for one and it
    /// is not mounted yet.
    fn mount_lazy(&mut self, id: u64) -> Result<(), HarnessError> {
        if !self.spec.lazyfs || self.lazy.contains_key(&id) {
            return Ok(());
        }
        let (disk, dir) = (self.disk_dir(id), self.data_dir(id));
        for d in [&disk, &dir] {
            std::fs::create_dir_all(d)
                .map_err(|e| HarnessError::Process(format!("{}: {e}", d.display())))?;
        }
        let fs = keel_lazyfs::LazyFs::mount(&disk, &dir, keel_lazyfs::Limits::default())
            .map_err(|e| HarnessError::Process(format!("lazy filesystem for node {id}: {e}")))?;
        self.lazy.insert(id, fs);
        Ok(())
    }

    /// Forgets every write node `id` made that was not fsynced, as if its
    /// machine lost power; returns the bytes lost. The node must not be
    /// running, and the cluster must have been started with
    /// [`ClusterSpec::lazyfs`].
    pub fn lose_unsynced(&self, id: u64) -> Result<u64, HarnessError> {
        if self.pid(id).is_ok() {
            return Err(HarnessError::Process(format!(
                "node {id} is running; kill it before dropping its unsynced writes"
            )));
        }
        let fs = self.lazy.get(&id).ok_or_else(|| {
            HarnessError::Process(format!(
                "node {id} has no lazy filesystem; start the cluster with lazyfs"
            ))
        })?;
        Ok(fs.drop_unsynced().bytes)
    }

    /// Makes node `id`'s disk fail as `fault` says (or work again with
    /// [`keel_lazyfs::DiskFault::Healthy`]); the cluster must have been
    /// started with [`ClusterSpec::lazyfs`].
    pub fn set_disk_fault(
        &self,
        id: u64,
        fault: keel_lazyfs::DiskFault,
    ) -> Result<(), HarnessError> {
        let fs = self.lazy.get(&id).ok_or_else(|| {
            HarnessError::Process(format!(
                "node {id} has no lazy filesystem; start the cluster with lazyfs"
            ))
        })?;
        fs.set_fault(fault);
        Ok(())
    }

    /// Whether node `id`'s process has exited by itself (it is reaped then;
    /// [`restart`](Self::restart) starts it again).
    pub fn has_exited(&mut self, id: u64) -> Result<bool, HarnessError> {
        let n = self.nodes.get_mut(&id).ok_or(HarnessError::NoNode(id))?;
        match n.child.as_mut() {
            None => Ok(false),
            Some(c) => Ok(c
                .try_wait()
                .map_err(|e| HarnessError::Process(format!("node {id}: {e}")))?
                .is_some()),
        }
    }

    /// The log file of node `id`.
    pub fn log_file(&self, id: u64) -> PathBuf {
        self.spec.base_dir.join(format!("node-{id}.log"))
    }

    fn spawn(&mut self, id: u64) -> Result<(), HarnessError> {
        self.mount_lazy(id)?;
        let addr = self
            .nodes
            .get(&id)
            .ok_or(HarnessError::NoNode(id))?
            .addr
            .clone();
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_file(id))
            .map_err(HarnessError::ProcessIo)?;
        let log2 = log.try_clone().map_err(HarnessError::ProcessIo)?;
        let mut cmd = match &self.net {
            Some(net) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.namespace(id)])
                    .arg(&self.spec.binary);
                c
            }
            None => Command::new(&self.spec.binary),
        };
        if let Some(lib) = &self.spec.faketime {
            let file = self.clock_file(id);
            if !file.exists() {
                std::fs::write(&file, "+0\n").map_err(HarnessError::ProcessIo)?;
            }
            // Re-read every second; CLOCK_MONOTONIC stays real, so timers,
            // timeouts and Raft's election clocks are not affected.
            cmd.env("LD_PRELOAD", lib)
                .env("FAKETIME_TIMESTAMP_FILE", &file)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
                .env("FAKETIME_CACHE_DURATION", "1");
        }
        cmd.arg("node")
            .arg("--id")
            .arg(id.to_string())
            .arg("--listen")
            .arg(&addr)
            .arg("--data-dir")
            .arg(self.data_dir(id))
            // Secrets by environment, never on a command line other users
            // can read in /proc.
            .env("KEEL_ADMIN_TOKEN", &self.spec.admin_token)
            .env("KEEL_CLUSTER_SECRET", &self.spec.cluster_secret);
        match &self.tls {
            Some(t) => {
                cmd.args(tls::flags(&t.node(id, &addr)?));
            }
            // Outside loopback, plaintext is the operator's explicit choice.
            None if self.net.is_some() => {
                cmd.arg("--insecure-plaintext");
            }
            None => {}
        }
        cmd.args(&self.spec.extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        // Only node 1's first start bootstraps: a later start finds its log
        // (and ignores the flag), but a node whose data was wiped to rejoin
        // must not found a second cluster.
        let first_start = !self.started.contains(&id);
        match &self.spec.seed {
            // From a seed, every initial node starts with the same state
            // and the members' list; none of them initialises a log.
            Some(seed) if id <= self.spec.nodes && first_start => {
                cmd.arg("--from-seed")
                    .arg(seed)
                    .arg("--bootstrap")
                    .arg(&self.bootstrap);
            }
            None if id == 1 && id <= self.spec.nodes && first_start => {
                cmd.arg("--bootstrap").arg(&self.bootstrap);
            }
            _ => {}
        }
        let child = cmd
            .spawn()
            .map_err(|e| HarnessError::Process(format!("{}: {e}", self.spec.binary.display())))?;
        if let Some(n) = self.nodes.get_mut(&id) {
            n.child = Some(child);
            n.paused = false;
        }
        self.started.insert(id);
        Ok(())
    }

    /// Deletes node `id`'s data directory; the node must be stopped. Its
    /// next start is empty and must join as a learner.
    pub fn wipe(&mut self, id: u64) -> Result<(), HarnessError> {
        if self.pid(id).is_ok() {
            return Err(HarnessError::Process(format!(
                "node {id} is running; stop it before wiping its data"
            )));
        }
        let dir = self.data_dir(id);
        let wiped = if self.lazy.contains_key(&id) {
            // A mount point cannot be removed, only emptied.
            empty_dir(&dir)
        } else {
            std::fs::remove_dir_all(&dir)
        };
        match wiped {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(HarnessError::Process(format!("wiping node {id}: {e}"))),
        }
    }

    /// Adds a node process that is not (yet) a member: join it as a learner.
    pub fn add_node(&mut self, id: u64) -> Result<String, HarnessError> {
        let addr = match self.net.as_mut() {
            Some(net) => {
                net.add(id)?;
                net.node_addr(id)
            }
            None => format!("127.0.0.1:{}", free_port()?),
        };
        self.nodes.insert(
            id,
            NodeProc {
                addr: addr.clone(),
                child: None,
                paused: false,
            },
        );
        self.spawn(id)?;
        Ok(addr)
    }

    fn clock_file(&self, id: u64) -> PathBuf {
        self.spec.base_dir.join(format!("node-{id}.faketime"))
    }

    /// Moves node `id`'s wall clock `secs` seconds from the real one (0
    /// restores it); it takes effect within a second. Needs
    /// [`ClusterSpec::faketime`].
    pub fn set_clock_offset(&self, id: u64, secs: i64) -> Result<(), HarnessError> {
        if self.spec.faketime.is_none() {
            return Err(HarnessError::Process(
                "clock offsets need the cluster started with libfaketime".into(),
            ));
        }
        let file = self.clock_file(id);
        let tmp = file.with_extension("faketime.tmp");
        // Renamed into place, so libfaketime never reads half a line.
        std::fs::write(&tmp, format!("{secs:+}\n"))
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(|e| HarnessError::Process(format!("{}: {e}", file.display())))
    }

    /// The link proxies, when node-to-node links go through them.
    pub fn link_proxies(&self) -> Option<&LinkProxies> {
        self.links.as_ref()
    }

    /// The private network, when nodes run in namespaces.
    pub fn network(&self) -> Option<&Network> {
        self.net.as_ref()
    }

    /// Every node id the harness knows.
    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
    }

    /// Ids of nodes whose process is running (paused counts as running).
    pub fn running(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.child.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The address of node `id`.
    pub fn addr(&self, id: u64) -> Result<String, HarnessError> {
        Ok(self
            .nodes
            .get(&id)
            .ok_or(HarnessError::NoNode(id))?
            .addr
            .clone())
    }

    /// Addresses of all nodes.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.values().map(|n| n.addr.clone()).collect()
    }

    /// An admin client over all endpoints.
    pub fn admin_client(&self) -> Client {
        self.client(self.endpoints(), Some(self.spec.admin_token.clone()))
    }

    /// An admin client of one node only.
    pub fn node_client(&self, id: u64) -> Result<Client, HarnessError> {
        Ok(self.client(vec![self.addr(id)?], Some(self.spec.admin_token.clone())))
    }

    /// A client of `endpoints` (nodes or the gateway) with `token`, over
    /// TLS trusting the cluster's CA when the cluster runs TLS.
    pub fn client(&self, endpoints: Vec<String>, token: Option<String>) -> Client {
        match &self.tls {
            Some(t) => Client::with_tls(endpoints, token, t.client()),
            None => Client::new(endpoints, token),
        }
    }

    /// The cluster's CA, when it runs TLS.
    pub fn tls(&self) -> Option<&tls::ClusterTls> {
        self.tls.as_ref()
    }

    /// The admin token the cluster's nodes were started with.
    pub fn admin_token(&self) -> &str {
        &self.spec.admin_token
    }

    /// The cluster secret the cluster's nodes were started with.
    pub fn cluster_secret(&self) -> &str {
        &self.spec.cluster_secret
    }

    /// The OS process id of node `id` while it runs (for reading its
    /// `/proc` entry, e.g. resident memory in `keel bench growth`).
    pub fn process_id(&self, id: u64) -> Option<u32> {
        self.nodes.get(&id)?.child.as_ref().map(Child::id)
    }

    fn pid(&self, id: u64) -> Result<Pid, HarnessError> {
        let n = self.nodes.get(&id).ok_or(HarnessError::NoNode(id))?;
        let c = n
            .child
            .as_ref()
            .ok_or_else(|| HarnessError::Process(format!("node {id} is not running")))?;
        Ok(Pid::from_raw(c.id() as i32))
    }

    fn signal(&self, id: u64, s: Signal) -> Result<(), HarnessError> {
        kill(self.pid(id)?, s)
            .map_err(|e| HarnessError::Process(format!("signal {s} to node {id}: {e}")))
    }

    /// SIGKILL: the process dies at once, with whatever was not fsynced.
    pub fn kill(&mut self, id: u64) -> Result<(), HarnessError> {
        let n = self.nodes.get_mut(&id).ok_or(HarnessError::NoNode(id))?;
        if let Some(mut c) = n.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        Ok(())
    }

    /// SIGKILL without taking `&mut`, for a cluster shared with running
    /// tasks; the dead process is reaped by a later restart or drop.
    pub fn kill_shared(&self, id: u64) -> Result<(), HarnessError> {
        self.signal(id, Signal::SIGKILL)
    }

    /// SIGTERM and wait for a clean exit (SIGKILL after [`STOP_GRACE`]).
    pub fn stop(&mut self, id: u64) -> Result<(), HarnessError> {
        if self.nodes.get(&id).ok_or(HarnessError::NoNode(id))?.paused {
            self.resume(id)?;
        }
        if self.pid(id).is_err() {
            return Ok(());
        }
        let n = self.nodes.get_mut(&id).ok_or(HarnessError::NoNode(id))?;
        if let Some(c) = n.child.take() {
            stop_child(c);
        }
        Ok(())
    }

    /// SIGSTOP: the process freezes (a GC-like stall or a hung machine).
    pub fn pause(&mut self, id: u64) -> Result<(), HarnessError> {
        self.signal(id, Signal::SIGSTOP)?;
        if let Some(n) = self.nodes.get_mut(&id) {
            n.paused = true;
        }
        Ok(())
    }

    /// SIGCONT after a pause.
    pub fn resume(&mut self, id: u64) -> Result<(), HarnessError> {
        self.signal(id, Signal::SIGCONT)?;
        if let Some(n) = self.nodes.get_mut(&id) {
            n.paused = false;
        }
        Ok(())
    }

    /// Starts a stopped or killed node again on the same data and address.
    pub fn restart(&mut self, id: u64) -> Result<(), HarnessError> {
        if self
            .nodes
            .get(&id)
            .ok_or(HarnessError::NoNode(id))?
            .child
            .is_some()
        {
            self.kill(id)?;
        }
        self.spawn(id)
    }

    /// If node `id`'s process has ended though nothing here stopped it (it
    /// failed or panicked), says so: its exit status and the panic message
    /// at the end of its log, if there is one. Reaps the process.
    pub fn exit_notice(&mut self, id: u64) -> Option<String> {
        let status = self.exited(id).ok()??;
        let said = log_tail(&self.log_file(id), EXIT_LOG_TAIL_BYTES)
            .as_deref()
            .and_then(last_panic)
            .map_or_else(String::new, |p| format!(", {p}"));
        Some(format!(
            "node {id} exited on its own ({status}){said} (see node-{id}.log)"
        ))
    }

    /// Whether node `id`'s process has exited (and reaps it).
    pub fn exited(&mut self, id: u64) -> Result<Option<std::process::ExitStatus>, HarnessError> {
        let n = self.nodes.get_mut(&id).ok_or(HarnessError::NoNode(id))?;
        match n.child.as_mut() {
            None => Ok(None),
            Some(c) => {
                let st = c.try_wait().map_err(HarnessError::ProcessIo)?;
                if st.is_some() {
                    n.child = None;
                }
                Ok(st)
            }
        }
    }

    /// Node `id`'s self-reported status from `/v1/cluster`, if it answers.
    pub async fn status(&self, id: u64) -> Option<Value> {
        let c = self.node_client(id).ok()?;
        let ep = self.addr(id).ok()?;
        c.call_at(&ep, keel_client::method_get(), "/v1/cluster", None, None)
            .await
            .ok()
            .map(|r| r.body)
    }

    /// The leader that a majority of running nodes agree on, if any.
    pub async fn leader(&self) -> Option<u64> {
        let mut votes: BTreeMap<u64, usize> = BTreeMap::new();
        for id in self.running() {
            if self.nodes.get(&id).is_some_and(|n| n.paused) {
                continue;
            }
            if let Some(s) = self.status(id).await {
                if let Some(l) = s["leader_id"].as_u64() {
                    *votes.entry(l).or_insert(0) += 1;
                }
            }
        }
        let quorum = self.spec.nodes as usize / 2 + 1;
        votes
            .into_iter()
            .find(|(_, n)| *n >= quorum)
            .map(|(l, _)| l)
    }

    /// Waits until every running node answers `/readyz` and a leader exists.
    pub async fn wait_ready(&self, timeout: Duration) -> Result<u64, HarnessError> {
        self.wait_for(
            "every running node ready with a leader",
            timeout,
            || async {
                for id in self.running() {
                    self.readiness(id).await.ok()?;
                }
                self.leader().await
            },
        )
        .await
    }

    /// Why each running node is not ready now, one `/readyz` attempt each;
    /// ready nodes are left out. For reports of a cluster that did not heal.
    pub async fn not_ready(&self) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for id in self.running() {
            if let Err(why) = self.readiness(id).await {
                out.push((id, why));
            }
        }
        out
    }

    /// One `/readyz` attempt at node `id`: why it is not ready, if it is not.
    async fn readiness(&self, id: u64) -> Result<(), String> {
        let c = self.node_client(id).map_err(|e| e.to_string())?;
        let ep = self.addr(id).map_err(|e| e.to_string())?;
        match c
            .call_at(&ep, keel_client::method_get(), "/readyz", None, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(keel_client::AttemptError::Problem(p)) => Err(p.to_string()),
            Err(
                keel_client::AttemptError::NotSent(m)
                | keel_client::AttemptError::Lost(m)
                | keel_client::AttemptError::Invalid(m),
            ) => Err(m),
        }
    }

    /// Waits for a leader other than `not`.
    pub async fn wait_new_leader(&self, not: u64, timeout: Duration) -> Result<u64, HarnessError> {
        self.wait_for("a new leader", timeout, || async {
            self.leader().await.filter(|l| *l != not)
        })
        .await
    }

    /// `(applied_index, digest)` of node `id`.
    pub async fn digest(&self, id: u64) -> Option<(u64, String)> {
        let c = self.node_client(id).ok()?;
        let ep = self.addr(id).ok()?;
        let r = c
            .call_at(&ep, keel_client::method_get(), "/v1/digest", None, None)
            .await
            .ok()?;
        Some((
            r.body["applied_index"].as_u64()?,
            r.body["digest"].as_str()?.to_owned(),
        ))
    }

    /// Waits until every node in `ids` reports the same applied index and
    /// digest, and returns them. Call when no writes are in flight.
    pub async fn wait_converged(
        &self,
        ids: &[u64],
        timeout: Duration,
    ) -> Result<(u64, String), HarnessError> {
        self.wait_for(
            "replicas at the same index with equal digests",
            timeout,
            || async {
                let mut seen: Option<(u64, String)> = None;
                for id in ids {
                    let d = self.digest(*id).await?;
                    match &seen {
                        None => seen = Some(d),
                        Some(s) if *s == d => {}
                        Some(_) => return None,
                    }
                }
                seen
            },
        )
        .await
    }

    /// Polls `f` every [`POLL_INTERVAL`] until it returns `Some` or the
    /// deadline passes.
    pub async fn wait_for<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: F,
    ) -> Result<T, HarnessError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        wait_for(what, timeout, &mut f).await
    }

    /// Starts a `keel gateway` process in front of every node, listening on
    /// `port` (0 picks a free one), with `extra_args` appended; logs go to
    /// `gateway.log`. Returns its address.
    pub fn start_gateway(
        &mut self,
        port: u16,
        extra_args: &[String],
    ) -> Result<String, HarnessError> {
        self.stop_gateway();
        let port = if port == 0 { free_port()? } else { port };
        let addr = format!("127.0.0.1:{port}");
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.gateway_log_file())
            .map_err(HarnessError::ProcessIo)?;
        let log2 = log.try_clone().map_err(HarnessError::ProcessIo)?;
        let tls_flags = match &self.tls {
            Some(t) => tls::flags(&t.gateway(&addr)?).to_vec(),
            None => Vec::new(),
        };
        let child = Command::new(&self.spec.binary)
            .arg("gateway")
            .arg("--listen")
            .arg(&addr)
            .arg("--nodes")
            .arg(self.endpoints().join(","))
            .env("KEEL_ADMIN_TOKEN", &self.spec.admin_token)
            .args(tls_flags)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| HarnessError::Process(format!("{}: {e}", self.spec.binary.display())))?;
        self.gateway = Some(GatewayProc {
            addr: addr.clone(),
            child: Some(child),
            extra_args: extra_args.to_vec(),
        });
        Ok(addr)
    }

    /// Starts the gateway on `port` (0 picks a free one), as
    /// [`start_gateway`](Self::start_gateway) with no extra arguments, and
    /// waits up to [`READY_TIMEOUT`] until it knows the leader; returns its
    /// address. A gateway that is not ready in time is an error naming its
    /// log.
    pub async fn start_gateway_ready(&mut self, port: u16) -> Result<String, HarnessError> {
        self.start_gateway(port, &[])?;
        self.wait_gateway_ready(READY_TIMEOUT)
            .await
            .map_err(|e| match e {
                HarnessError::Timeout { what, after } => HarnessError::Timeout {
                    what: format!("{what} (see {})", self.gateway_log_file().display()),
                    after,
                },
                other => other,
            })
    }

    /// The gateway's address, if one was started.
    pub fn gateway_addr(&self) -> Option<String> {
        self.gateway.as_ref().map(|g| g.addr.clone())
    }

    /// The gateway's log file.
    pub fn gateway_log_file(&self) -> PathBuf {
        self.spec.base_dir.join("gateway.log")
    }

    /// Waits until the gateway answers `/readyz` with 200 and knows the
    /// leader (it has probed the nodes).
    pub async fn wait_gateway_ready(&self, timeout: Duration) -> Result<String, HarnessError> {
        let addr = self
            .gateway_addr()
            .ok_or_else(|| HarnessError::Process("no gateway started".into()))?;
        let c = self.client(vec![addr.clone()], None);
        self.wait_for("gateway ready with a leader", timeout, || async {
            let v = c
                .call_at(&addr, keel_client::method_get(), "/status", None, None)
                .await
                .ok()?
                .body;
            v["leader"].as_str()?;
            (v["eligible"].as_u64()? > 0).then_some(())
        })
        .await?;
        Ok(addr)
    }

    /// The gateway's exit status if it exited on its own since the last
    /// look (a gateway stopped through [`stop_gateway`](Self::stop_gateway)
    /// is not running and is not reported).
    pub fn gateway_exited(&mut self) -> Option<std::process::ExitStatus> {
        let g = self.gateway.as_mut()?;
        let status = g.child.as_mut()?.try_wait().ok()??;
        g.child = None;
        Some(status)
    }

    /// Starts the gateway again on the same port with the same arguments.
    pub fn restart_gateway(&mut self) -> Result<(), HarnessError> {
        let g = self
            .gateway
            .as_ref()
            .ok_or_else(|| HarnessError::Process("no gateway started".into()))?;
        let port = g
            .addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .ok_or_else(|| HarnessError::Process(format!("gateway address {}", g.addr)))?;
        let extra = g.extra_args.clone();
        self.start_gateway(port, &extra).map(drop)
    }

    /// Stops the gateway (SIGTERM, then SIGKILL after the grace period).
    pub fn stop_gateway(&mut self) {
        if let Some(mut g) = self.gateway.take() {
            if let Some(c) = g.child.take() {
                stop_child(c);
            }
        }
    }

    /// Stops every node (SIGTERM, then SIGKILL after the grace period).
    pub fn stop_all(&mut self) {
        self.stop_gateway();
        for id in self.ids() {
            let _ = self.stop(id);
        }
    }

    /// The directory holding the cluster's data and logs.
    pub fn base_dir(&self) -> &Path {
        &self.spec.base_dir
    }
}

/// Polls `f` until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    f: &mut F,
) -> Result<T, HarnessError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                after: timeout,
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Whether process `pid` is gone: dead and reaped, so not even a zombie
/// answers a signal. What a kill must leave behind.
pub fn process_gone(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    matches!(
        kill(Pid::from_raw(raw), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// Whether process `pid` is stopped (SIGSTOP): its state in
/// `/proc/PID/stat` is `T`. What a pause must leave behind. False when the
/// process is gone or its state cannot be read.
pub fn process_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat_state(&stat))
        .is_some_and(|state| state == 'T' || state == 't')
}

/// The state letter of a `/proc/PID/stat` line: the first field after the
/// command name, which is in parentheses and may itself hold spaces or
/// parentheses.
fn stat_state(stat: &str) -> Option<char> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().next()?.chars().next()
}

/// Whether the environment says this is a CI run (`CI=true`, as CI
/// services set it), where a test whose precondition is missing must fail
/// rather than skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// For a test whose precondition is missing (`why`): fails it under CI
/// ([`in_ci`]), else says it skips. Returns so the caller can `return`.
///
/// # Panics
/// Under CI, always: a test that cannot run there must not pass.
pub fn skip_unless_ci(test: &str, why: &str) {
    assert!(
        !in_ci(),
        "{test}: precondition missing under CI=true: {why}"
    );
    eprintln!("{test}: SKIPPED (precondition missing: {why}; CI=true would fail)");
}

/// SIGTERM, wait up to [`STOP_GRACE`], then SIGKILL.
fn stop_child(mut c: Child) {
    let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    loop {
        if let Ok(Some(_)) = c.try_wait() {
            return;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            return;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if let Some(c) = self.gateway.as_mut().and_then(|g| g.child.take()) {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
        for n in self.nodes.values_mut() {
            if let Some(mut c) = n.child.take() {
                if n.paused {
                    let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGCONT);
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// The value of the unlabelled counter or gauge `name` (e.g.
/// `keel_snapshots_installed_total`) in a Prometheus text exposition, as
/// a node's `/metrics` serves it.
pub fn prometheus_value(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name)
            .then(|| v.trim().parse::<f64>().ok())?
            .map(|v| v as u64)
    })
}

/// Node `endpoint`'s value of the unlabelled metric `name`, read from its
/// `/metrics`; `None` when the node does not answer or has no such metric.
pub async fn node_metric(client: &Client, endpoint: &str, name: &str) -> Option<u64> {
    let r = client
        .call_at(endpoint, keel_client::method_get(), "/metrics", None, None)
        .await
        .ok()?;
    prometheus_value(r.body.as_str()?, name)
}

/// Seeds the small shop the integration tests share: merchant `shop`,
/// external account `world`, product `SKU-1` at 250 EUR cents with `stock`
/// units, and customers `c0`, `c1`, … each credited `funds` (none when 0).
/// Every write has a fixed idempotency key, so seeding twice changes
/// nothing.
pub async fn seed_test_shop(
    c: &keel_client::Client,
    customers: u64,
    stock: u64,
    funds: i64,
) -> Result<(), keel_client::ClientError> {
    c.open_account("shop", "merchant", "EUR", "s-shop").await?;
    c.open_account("world", "external", "EUR", "s-world")
        .await?;
    c.upsert_product("SKU-1", "Thing", 250, "EUR", "s-p1")
        .await?;
    c.restock("SKU-1", stock, "s-r1").await?;
    for i in 0..customers {
        let id = format!("c{i}");
        c.open_account(&id, "customer", "EUR", &format!("s-a{i}"))
            .await?;
        if funds > 0 {
            c.deposit(&id, funds, &format!("s-d{i}")).await?;
        }
    }
    Ok(())
}

/// The last `bytes` of the file at `path` (lossy UTF-8), if it reads.
fn log_tail(path: &Path, bytes: u64) -> Option<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(bytes))).ok()?;
    let mut buf = Vec::new();
    f.read_to_end(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The last panic in a process's output: Rust's `panicked at FILE:LINE:COL:`
/// line and the message's first line after it.
fn last_panic(log: &str) -> Option<String> {
    let mut lines = log.lines();
    let mut found = None;
    while let Some(line) = lines.next() {
        if let Some(at) = line.find("panicked at ") {
            let place = line[at..].trim_end_matches(':');
            let message = lines.next().unwrap_or("").trim();
            found = Some(format!("{place}: {message}"));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_state_from_a_proc_stat_line() {
        assert_eq!(super::stat_state("4242 (keel) T 1 4242 0"), Some('T'));
        assert_eq!(super::stat_state("4242 (a (b) c) S 1 4242"), Some('S'));
        assert_eq!(super::stat_state("garbage"), None);
    }

    #[test]
    fn sees_a_stopped_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        assert!(!super::process_stopped(pid));
        let raw = nix::unistd::Pid::from_raw(pid as i32);
        nix::sys::signal::kill(raw, nix::sys::signal::Signal::SIGSTOP).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !super::process_stopped(pid) {
            assert!(std::time::Instant::now() < deadline, "never seen stopped");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!super::process_stopped(pid));
    }

    #[test]
    fn reads_an_unlabelled_value_from_prometheus_text() {
        let text = "# HELP keel_snapshots_installed Snapshots\n\
                    # TYPE keel_snapshots_installed counter\n\
                    keel_snapshots_installed_total 2\n\
                    keel_snapshot_chunks_received_total 17\n";
        assert_eq!(
            super::prometheus_value(text, "keel_snapshots_installed_total"),
            Some(2)
        );
        assert_eq!(
            super::prometheus_value(text, "keel_snapshot_chunks_received_total"),
            Some(17)
        );
        assert_eq!(
            super::prometheus_value(text, "keel_snapshots_installed"),
            None
        );
        assert_eq!(
            super::prometheus_value("keel_x_total oops", "keel_x_total"),
            None
        );
    }

    use super::*;

    #[test]
    fn the_last_panic_is_read_from_a_log() {
        let log = "INFO node serving\n\
            thread 'main' panicked at src/a.rs:1:2:\n\
            first\n\
            thread 'tokio-rt-worker' (3669) panicked at src/leader.rs:75:9:\n\
            vote T1-N2:committed must GE last_leader_log_id.last() [T2-N2-158]\n\
            stack backtrace:\n";
        assert_eq!(
            last_panic(log).as_deref(),
            Some(
                "panicked at src/leader.rs:75:9: vote T1-N2:committed must GE \
                 last_leader_log_id.last() [T2-N2-158]"
            )
        );
        assert_eq!(last_panic("ERROR storage failed\n"), None);
    }

    #[test]
    fn a_killed_and_reaped_process_is_gone_and_a_live_one_is_not() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = child.id();
        assert!(!process_gone(pid));
        child.kill().unwrap();
        // Dead but not reaped: a zombie still counts as there.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| !s.contains(") Z "))
        {
            assert!(Instant::now() < deadline, "never died");
            std::thread::sleep(POLL_INTERVAL);
        }
        assert!(!process_gone(pid));
        child.wait().unwrap();
        assert!(process_gone(pid));
    }
}
