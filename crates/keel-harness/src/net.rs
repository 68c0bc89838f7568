//! A private network for a local cluster: one Linux network namespace per
//! node, each with its own address on a bridge, so faults can cut, drop
//! and slow links between nodes with iptables rules inside a namespace
//! (as Jepsen does between machines). Needs root and iproute2; faults also
//! need iptables. Everything created is removed on drop.

use std::process::Command;
use std::time::Duration;

use crate::HarnessError;

/// Most bridges tried when looking for a free subnet (10.88.K.0/24): each
/// live cluster takes one.
pub const SUBNETS_MAX: u32 = 250;
/// Port every node listens on inside its namespace.
pub const NODE_PORT: u16 = 7000;
/// Longest one `ip` or `iptables` call may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a reachability probe ([`Probe`]) waits for its connection: on
/// the bridge a live peer answers in well under a millisecond, so silence
/// this long means its packets are dropped.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// The bridge's own host number: the address the harness, the gateway
/// and the clients reach the nodes from.
const BRIDGE_HOST: u8 = 254;

/// The namespaces, links and bridge of one cluster.
#[derive(Debug)]
pub struct Network {
    k: u32,
    nodes: Vec<u64>,
}

/// Runs a command to completion within [`COMMAND_TIMEOUT`]; its stderr in
/// the error.
pub fn run(program: &str, args: &[&str]) -> Result<(), HarnessError> {
    let mut child = Command::new(program)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| HarnessError::Process(format!("{program}: {e}")))?;
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    return Ok(());
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut err);
                }
                return Err(HarnessError::Process(format!(
                    "{program} {}: {}",
                    args.join(" "),
                    err.trim()
                )));
            }
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::Process(format!(
                    "{program} {} did not finish in {COMMAND_TIMEOUT:?}",
                    args.join(" ")
                )));
            }
            Err(e) => return Err(HarnessError::Process(format!("{program}: {e}"))),
        }
    }
}

/// Why namespaces cannot be used here, or `None` if they can: root, and
/// the `ip` command of iproute2.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    if run("ip", &["netns", "list"]).is_err() {
        return Some("the `ip` command (iproute2) is missing or cannot list namespaces".into());
    }
    None
}

impl Network {
    /// Creates a bridge on a free subnet and a namespace with a veth link
    /// and its own address for each of `nodes`.
    pub fn create(nodes: &[u64]) -> Result<Self, HarnessError> {
        if let Some(why) = unavailable() {
            return Err(HarnessError::Process(format!(
                "network namespaces unavailable: {why}"
            )));
        }
        for k in 0..SUBNETS_MAX {
            // Creating the bridge claims the subnet: it fails if another
            // cluster (here or in another process) holds it.
            if run("ip", &["link", "add", &bridge(k), "type", "bridge"]).is_err() {
                continue;
            }
            let mut net = Network {
                k,
                nodes: Vec::new(),
            };
            net.build(nodes)?;
            return Ok(net);
        }
        Err(HarnessError::Process(format!(
            "no free subnet among {SUBNETS_MAX} (stale bridges keelbr*? `ip link del` them)"
        )))
    }

    fn build(&mut self, nodes: &[u64]) -> Result<(), HarnessError> {
        let br = bridge(self.k);
        let cidr = format!("{}/24", self.host(BRIDGE_HOST));
        run("ip", &["addr", "add", &cidr, "dev", &br])?;
        run("ip", &["link", "set", &br, "up"])?;
        for &id in nodes {
            self.add(id)?;
        }
        Ok(())
    }

    /// Adds a namespace for node `id` (a node that joins later).
    pub fn add(&mut self, id: u64) -> Result<(), HarnessError> {
        if id == 0 || id >= u64::from(BRIDGE_HOST) {
            return Err(HarnessError::Process(format!(
                "node id {id} has no address on a /24 (1..{BRIDGE_HOST})"
            )));
        }
        let ns = self.namespace(id);
        let (host_if, ns_if) = (format!("kv{}n{id}", self.k), format!("kp{}n{id}", self.k));
        run("ip", &["netns", "add", &ns])?;
        self.nodes.push(id);
        run(
            "ip",
            &[
                "link", "add", &host_if, "type", "veth", "peer", "name", &ns_if, "netns", &ns,
            ],
        )?;
        run("ip", &["link", "set", &host_if, "master", &bridge(self.k)])?;
        run("ip", &["link", "set", &host_if, "up"])?;
        let cidr = format!("{}/24", self.node_ip(id));
        let inside = |args: &[&str]| {
            let mut a = vec!["netns", "exec", ns.as_str(), "ip"];
            a.extend_from_slice(args);
            run("ip", &a)
        };
        inside(&["addr", "add", &cidr, "dev", &ns_if])?;
        inside(&["link", "set", &ns_if, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(())
    }

    fn host(&self, h: u8) -> String {
        format!("10.88.{}.{h}", self.k)
    }

    /// Node `id`'s address inside its namespace.
    pub fn node_ip(&self, id: u64) -> String {
        self.host(u8::try_from(id).unwrap_or(0))
    }

    /// Node `id`'s listen address.
    pub fn node_addr(&self, id: u64) -> String {
        format!("{}:{NODE_PORT}", self.node_ip(id))
    }

    /// Node `id`'s namespace name.
    pub fn namespace(&self, id: u64) -> String {
        format!("keel{}n{id}", self.k)
    }

    /// A description for reports.
    pub fn describe(&self) -> String {
        format!(
            "network namespaces: one per node on bridge {} (10.88.{}.0/24), faults by iptables inside them",
            bridge(self.k),
            self.k
        )
    }

    /// Runs `iptables` inside node `id`'s namespace.
    pub fn iptables(&self, id: u64, args: &[&str]) -> Result<(), HarnessError> {
        let ns = self.namespace(id);
        let mut a = vec!["netns", "exec", ns.as_str(), "iptables", "-w"];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    /// The bridge's address: where the harness, gateway, clients and link
    /// proxies reach the nodes from.
    pub fn bridge_ip(&self) -> String {
        self.host(BRIDGE_HOST)
    }

    /// Sends node `from`'s connections to node `to` through `via`
    /// (`ip:port`, a link proxy) by a DNAT rule in `from`'s namespace. It
    /// lives in the nat table, so [`heal`](Self::heal) leaves it alone.
    pub fn redirect(&self, from: u64, to: u64, via: &str) -> Result<(), HarnessError> {
        let ip = self.node_ip(to);
        let port = NODE_PORT.to_string();
        self.iptables(
            from,
            &[
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                &ip,
                "--dport",
                &port,
                "-j",
                "DNAT",
                "--to-destination",
                via,
            ],
        )
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn cut(&self, a: u64, b: u64) -> Result<(), HarnessError> {
        self.drop_from(a, b)?;
        self.drop_from(b, a)
    }

    /// `to` stops hearing from `from` (a one-way fault: its packets to
    /// `from` still leave).
    pub fn drop_from(&self, to: u64, from: u64) -> Result<(), HarnessError> {
        self.drop_rules(to, from, &[])
    }

    /// Node `id` drops each packet from every other node with probability
    /// `p` (iptables' `statistic` match); clients are not affected.
    pub fn lossy(&self, id: u64, p: f64) -> Result<(), HarnessError> {
        let prob = format!("{p:.3}");
        let statistic = [
            "-m",
            "statistic",
            "--mode",
            "random",
            "--probability",
            &prob,
        ];
        for &peer in self.nodes.iter().filter(|&&n| n != id) {
            self.drop_rules(id, peer, &statistic)?;
        }
        Ok(())
    }

    /// Drops what `from` sends `to` (the packets matching `matches` too,
    /// when given). A link may go through a link proxy, whose connections
    /// come from the bridge's address and are translated back only after
    /// the filter has seen them, so a rule on the source address alone
    /// lets them through: `to` also drops the proxied replies on its own
    /// connections to `from` (conntrack's original destination), and
    /// `from` what it sends through the proxy on its own connections to
    /// `to`. Each packet meets one of the three rules at most, so a
    /// probabilistic `matches` drops with that probability once.
    fn drop_rules(&self, to: u64, from: u64, matches: &[&str]) -> Result<(), HarnessError> {
        let (to_ip, from_ip) = (self.node_ip(to), self.node_ip(from));
        let rule = |id: u64, chain: &str, select: &[&str]| {
            let mut args = vec!["-A", chain];
            args.extend_from_slice(select);
            args.extend_from_slice(matches);
            args.extend_from_slice(&["-j", "DROP"]);
            self.iptables(id, &args)
        };
        let ct = ["-m", "conntrack", "--ctorigdst"];
        rule(to, "INPUT", &["-s", &from_ip])?;
        rule(
            to,
            "INPUT",
            &[&ct[..], &[&from_ip, "!", "-s", &from_ip]].concat(),
        )?;
        rule(
            from,
            "OUTPUT",
            &[&ct[..], &[&to_ip, "!", "-d", &to_ip]].concat(),
        )
    }

    /// Removes every rule in every namespace: the network is whole again.
    pub fn heal(&self) -> Result<(), HarnessError> {
        for &id in &self.nodes {
            self.iptables(id, &["-F"])?;
        }
        Ok(())
    }
}

/// A TCP connection from inside node `from`'s namespace to node `to`'s
/// port, as the node itself would open it (through any DNAT rule and link
/// proxy): what shows whether a cut really cuts.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The node the connection starts from.
    pub from: u64,
    /// The node it goes to.
    pub to: u64,
    namespace: std::path::PathBuf,
    addr: std::net::SocketAddr,
}

impl Network {
    /// A probe from node `from` to node `to`.
    pub fn probe(&self, from: u64, to: u64) -> Result<Probe, HarnessError> {
        let addr = self
            .node_addr(to)
            .parse()
            .map_err(|e| HarnessError::Process(format!("address of node {to}: {e}")))?;
        Ok(Probe {
            from,
            to,
            namespace: std::path::Path::new("/var/run/netns").join(self.namespace(from)),
            addr,
        })
    }
}

impl Probe {
    /// Tries the connection: true when `to` answered, accepting or
    /// refusing, within [`PROBE_TIMEOUT`].
    pub fn reachable(&self) -> Result<bool, HarnessError> {
        let p = self.clone();
        join(std::thread::spawn(move || p.connect_inside()))
    }

    /// Enters `from`'s namespace and connects. Only on a thread of its own:
    /// a thread cannot leave the namespace again, so it must end after.
    fn connect_inside(&self) -> Result<bool, HarnessError> {
        enter(&self.namespace)?;
        Ok(
            match std::net::TcpStream::connect_timeout(&self.addr, PROBE_TIMEOUT) {
                Ok(_) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            },
        )
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &std::path::Path) -> Result<(), HarnessError> {
    let f = std::fs::File::open(path)
        .map_err(|e| HarnessError::Process(format!("{}: {e}", path.display())))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| HarnessError::Process(format!("entering {}: {e}", path.display())))
}

fn join<T>(t: std::thread::JoinHandle<Result<T, HarnessError>>) -> Result<T, HarnessError> {
    t.join()
        .map_err(|_| HarnessError::Process("a namespace thread panicked".into()))?
}

/// Runs `probes` at once, each on a thread of its own, and returns the
/// ones that reached their node.
pub fn reached(probes: Vec<Probe>) -> Result<Vec<Probe>, HarnessError> {
    let tried: Vec<_> = probes
        .into_iter()
        .map(|p| {
            let q = p.clone();
            (p, std::thread::spawn(move || q.connect_inside()))
        })
        .collect();
    let mut out = Vec::new();
    for (p, t) in tried {
        if join(t)? {
            out.push(p);
        }
    }
    Ok(out)
}

fn bridge(k: u32) -> String {
    format!("keelbr{k}")
}

impl Drop for Network {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, and with
        // it the host end.
        for &id in &self.nodes {
            let _ = run("ip", &["netns", "del", &self.namespace(id)]);
        }
        let _ = run("ip", &["link", "del", &bridge(self.k)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener on node `id`'s address inside its namespace (a socket
    /// stays in the namespace it was made in).
    fn listen_inside(net: &Network, id: u64) -> std::net::TcpListener {
        let ns = std::path::Path::new("/var/run/netns").join(net.namespace(id));
        let addr = net.node_addr(id);
        join(std::thread::spawn(move || {
            enter(&ns)?;
            std::net::TcpListener::bind(&addr).map_err(HarnessError::ProcessIo)
        }))
        .unwrap()
    }

    /// Whether namespaces and iptables are here; if not, says so and
    /// skips `test` (fails it under CI).
    fn namespaces_or_skip(test: &str) -> bool {
        let why = unavailable().or_else(|| {
            run("iptables", &["--version"])
                .err()
                .map(|e| format!("no iptables: {e}"))
        });
        match why {
            Some(why) => {
                crate::skip_unless_ci(test, &why);
                false
            }
            None => true,
        }
    }

    #[test]
    fn a_probe_reaches_a_peer_until_the_link_between_them_is_cut() {
        if !namespaces_or_skip("a_probe_reaches_a_peer_until_the_link_between_them_is_cut") {
            return;
        }
        let net = Network::create(&[1, 2]).unwrap();
        let _node2 = listen_inside(&net, 2);
        let probe = net.probe(1, 2).unwrap();
        assert!(probe.reachable().unwrap());
        net.cut(1, 2).unwrap();
        assert!(!probe.reachable().unwrap());
        assert!(reached(vec![probe.clone(), net.probe(2, 1).unwrap()])
            .unwrap()
            .is_empty());
        net.heal().unwrap();
        assert_eq!(reached(vec![probe]).unwrap().len(), 1);
    }

    /// The same through the link proxies, which sit between the nodes on
    /// every link when slow links or dropped connections are chosen.
    #[test]
    fn a_cut_also_cuts_a_link_that_goes_through_its_proxy() {
        if !namespaces_or_skip("a_cut_also_cuts_a_link_that_goes_through_its_proxy") {
            return;
        }
        let net = Network::create(&[1, 2]).unwrap();
        let _proxies = crate::proxy_links(&net, &[1, 2]).unwrap();
        let _node2 = listen_inside(&net, 2);
        let _node1 = listen_inside(&net, 1);
        let probes = vec![net.probe(1, 2).unwrap(), net.probe(2, 1).unwrap()];
        assert_eq!(reached(probes.clone()).unwrap().len(), 2);
        net.cut(1, 2).unwrap();
        let through: Vec<(u64, u64)> = reached(probes.clone())
            .unwrap()
            .iter()
            .map(|p| (p.from, p.to))
            .collect();
        assert!(through.is_empty(), "reached through the cut: {through:?}");
        net.heal().unwrap();
        assert_eq!(reached(probes).unwrap().len(), 2);
    }
}
