//! The multi-host kit, followed as `docs/deploy.md` tells an operator to,
//! on three network namespaces standing in for three hosts: names from a
//! hosts file, certificates from `keel certs`, secrets in files, and each
//! host configured only from its files in `deploy/example/` (paths moved
//! under a scratch directory). With TLS on every link, the cluster must
//! survive its leader's node killed and then a gateway killed with no
//! client-visible error, and the backup schedule of `keel-1`'s gateway must
//! take a backup over TLS that restores with its invariants holding.
#![allow(clippy::unwrap_used)] // Tests: a failed unwrap is a failed test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use keel_client::Client;
use keel_harness::net::Network;
use keel_tls::ClientTls;

const HOSTS: [u64; 3] = [1, 2, 3];
const KEEL: &str = env!("CARGO_BIN_EXE_keel");
const DEADLINE: Duration = Duration::from_secs(60);

/// The repository's `deploy/example/keel-<id>/<file>`.
fn example(id: u64, file: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../deploy/example")
        .join(format!("keel-{id}"))
        .join(file);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Runs `keel args…` to completion; its stdout, or a panic with stderr.
fn keel(args: &[&str]) -> String {
    let out = Command::new(KEEL).args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "keel {args:?}: {err}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One stand-in host: its namespace, its `/etc/keel` and `/var` under the
/// scratch directory, and the processes it runs.
struct Host {
    id: u64,
    namespace: String,
    ip: String,
    etc: PathBuf,
    var: PathBuf,
    node: Option<Child>,
    gateway: Option<Child>,
}

impl Host {
    /// A file of `deploy/example/keel-<id>/` with the host's paths moved
    /// under the scratch directory, written to the host's `/etc/keel`.
    fn install(&self, file: &str) -> PathBuf {
        let text = example(self.id, file)
            .replace("/etc/keel", &self.etc.display().to_string())
            .replace(
                "/var/lib/keel-gateway",
                &self.var.join("lib/keel-gateway").display().to_string(),
            )
            .replace(
                "/var/lib/keel",
                &self.var.join("lib/keel").display().to_string(),
            )
            .replace(
                "/var/backups/keel",
                &self.var.join("backups/keel").display().to_string(),
            );
        let path = self.etc.join(file);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// `keel args…` inside the host's namespace, its output in `log`.
    fn spawn(&self, args: &[&str], env: &[(&str, &str)], log: &str) -> Child {
        let log = std::fs::File::create(self.var.join(log)).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.namespace, KEEL])
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn start_node(&mut self) {
        let config = self.etc.join("node.toml");
        let config = config.to_str().unwrap();
        let bootstrap = (self.id == 1).then(|| {
            let env = example(1, "node.env");
            let line = env
                .lines()
                .find(|l| l.starts_with("KEEL_BOOTSTRAP="))
                .unwrap();
            line.trim_start_matches("KEEL_BOOTSTRAP=").to_owned()
        });
        let env: Vec<(&str, &str)> = bootstrap
            .as_deref()
            .map(|b| vec![("KEEL_BOOTSTRAP", b)])
            .unwrap_or_default();
        self.node = Some(self.spawn(&["node", "--config", config], &env, "node.log"));
    }

    fn start_gateway(&mut self) {
        let config = self.etc.join("gateway.toml");
        let config = config.to_str().unwrap().to_owned();
        self.gateway = Some(self.spawn(&["gateway", "--config", &config], &[], "gateway.log"));
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for c in [self.node.as_mut(), self.gateway.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(&self.namespace));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_hosts_from_the_deploy_kit_survive_a_node_and_a_gateway_kill_and_back_up() {
    if let Some(why) = keel_harness::net::unavailable() {
        return keel_harness::skip_unless_ci("deploy test", &why);
    }
    let net = Network::create(&HOSTS).unwrap();
    let root = tempfile::tempdir().unwrap();
    let hosts_file: String = HOSTS
        .iter()
        .map(|&id| format!("{} keel-{id}\n", net.node_ip(id)))
        .collect();
    let mut hosts: Vec<Host> = HOSTS
        .iter()
        .map(|&id| {
            let dir = root.path().join(format!("keel-{id}"));
            let (etc, var) = (dir.join("etc/keel"), dir.join("var"));
            std::fs::create_dir_all(etc.join("tls")).unwrap();
            std::fs::create_dir_all(var.join("lib/keel-gateway")).unwrap();
            // `ip netns exec` shows the namespace /etc/netns/<ns>/hosts as
            // /etc/hosts: the names resolve there as they would on hosts.
            let namespace = net.namespace(id);
            let netns_etc = Path::new("/etc/netns").join(&namespace);
            std::fs::create_dir_all(&netns_etc).unwrap();
            std::fs::write(
                netns_etc.join("hosts"),
                format!("127.0.0.1 localhost\n{hosts_file}"),
            )
            .unwrap();
            Host {
                id,
                ip: net.node_ip(id),
                namespace,
                etc,
                var,
                node: None,
                gateway: None,
            }
        })
        .collect();

    // Step 2: certificates, as the operator makes them.
    let ca = root.path().join("keel-ca");
    let ca_s = ca.to_str().unwrap();
    keel(&["certs", "init", "--dir", ca_s]);
    for h in &hosts {
        let (id, name) = (h.id.to_string(), format!("keel-{}", h.id));
        keel(&[
            "certs", "node", "--dir", ca_s, "--id", &id, "--dns", &name, "--ip", &h.ip,
        ]);
        keel(&[
            "certs", "gateway", "--dir", ca_s, "--name", &name, "--dns", &name, "--ip", &h.ip,
        ]);
        for f in [
            "ca.pem".to_owned(),
            format!("node-{}.pem", h.id),
            format!("node-{}.key", h.id),
            format!("gateway-{name}.pem"),
            format!("gateway-{name}.key"),
        ] {
            std::fs::copy(ca.join(&f), h.etc.join("tls").join(&f)).unwrap();
        }
    }
    // Step 3: secrets in files.
    let token = keel_harness::host::random_secret().unwrap();
    let secret = keel_harness::host::random_secret().unwrap();
    for h in &hosts {
        std::fs::write(h.etc.join("admin-token"), format!("{token}\n")).unwrap();
        std::fs::write(h.etc.join("cluster-secret"), format!("{secret}\n")).unwrap();
        std::fs::write(h.etc.join("backup-key"), [7u8; 32]).unwrap();
    }
    // Step 4: each host's configuration from deploy/, then the services.
    for h in &mut hosts {
        h.install("node.toml");
        h.install("gateway.toml");
        std::fs::create_dir_all(h.var.join("lib/keel")).unwrap();
    }
    for h in &mut hosts {
        h.start_node();
    }
    for h in &mut hosts {
        h.start_gateway();
    }

    // Step 5: a client of every gateway, over TLS with the cluster's CA.
    let tls = Arc::new(ClientTls::anonymous(ca.join("ca.pem")).unwrap());
    let gateways: Vec<String> = hosts.iter().map(|h| format!("{}:7100", h.ip)).collect();
    let client = Arc::new(Client::with_tls(gateways, Some(token.clone()), tls.clone()));
    keel_harness::wait_for(
        "the cluster serving through its gateways",
        DEADLINE,
        &mut || {
            let client = client.clone();
            async move { client.summary().await.ok() }
        },
    )
    .await
    .unwrap();
    keel_harness::seed_test_shop(&client, 4, 1_000_000, 1_000_000_000)
        .await
        .unwrap();
    let plain = Client::new(vec![format!("{}:7100", hosts[0].ip)], Some(token.clone()));
    assert!(plain.summary().await.is_err(), "a gateway served plaintext");

    // Writers through the gateways run across both kills.
    let writer = keel_harness::writer::Writer::start(client.clone(), 4, "deploy");
    writer.more(20, DEADLINE).await.unwrap();

    // The leader's node killed.
    let cluster = client.get("/v1/cluster").await.unwrap().body;
    let leader = cluster["leader_id"].as_u64().unwrap();
    let h = &mut hosts[(leader - 1) as usize];
    let mut node = h.node.take().unwrap();
    node.kill().unwrap();
    node.wait().unwrap();
    writer.more(20, DEADLINE).await.unwrap();
    // A gateway killed (another host's).
    let other = (leader % 3) as usize;
    let mut gw = hosts[other].gateway.take().unwrap();
    gw.kill().unwrap();
    gw.wait().unwrap();
    writer.more(20, DEADLINE).await.unwrap();
    let (_, failed) = writer.stop().await;
    assert_eq!(failed, 0, "a client saw an error");

    // Step 6: keel-1's gateway took a full backup at start; it restores.
    let backups = hosts[0].var.join("backups/keel");
    let targets = ["a", "b", "c"]
        .map(|t| format!("dir:{}", backups.join(t).display()))
        .join(",");
    let key = hosts[0].etc.join("backup-key");
    let key = key.to_str().unwrap();
    let listed = keel_harness::wait_for("a backup in keel-1's repository", DEADLINE, &mut || {
        let (targets, key) = (targets.clone(), key.to_owned());
        async move {
            let out = Command::new(KEEL)
                .args([
                    "backup",
                    "list",
                    "--target",
                    &targets,
                    "--layout",
                    "2+1",
                    "--key-file",
                    &key,
                ])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("full")).then_some(text)
        }
    })
    .await
    .unwrap();
    assert!(listed.contains("full"), "{listed}");
    let drill = root.path().join("drill");
    let restored = keel(&[
        "restore",
        "--target",
        &targets,
        "--layout",
        "2+1",
        "--key-file",
        key,
        "--to",
        drill.to_str().unwrap(),
    ]);
    assert!(restored.contains("invariants: hold"), "{restored}");

    // No secret in any log.
    for h in &hosts {
        for log in ["node.log", "gateway.log"] {
            let text = std::fs::read_to_string(h.var.join(log)).unwrap();
            assert!(
                !text.contains(&token),
                "keel-{} {log} holds the admin token",
                h.id
            );
            assert!(
                !text.contains(&secret),
                "keel-{} {log} holds the cluster secret",
                h.id
            );
        }
    }
}
