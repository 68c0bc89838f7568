//! The PostgreSQL anchor: a primary and a synchronous streaming standby on
//! loopback (`synchronous_commit = on`, `synchronous_standby_names` naming
//! the standby, `fsync = on`), data on the same disk, installed from
//! Debian's `postgresql` when missing. As root, every server command runs
//! as the `postgres` OS user (PostgreSQL refuses to run as root).
//!
//! One transaction per order: decrement the SKU's stock only if enough
//! remains, insert the order, commit (which waits for the standby's flush);
//! roll back when no row was updated. PostgreSQL has no automatic failover
//! without an external manager: this module kills the primary but promotes
//! nothing.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tokio_postgres::{Client, NoTls, Statement};

use crate::keel_target::spread_sku;
use crate::procs::{apt_install, find_binary, parse_passwd, run_logged, wait_until, Guard};
use crate::target::{OpResult, Target};
use crate::BenchError;

/// The standby's `application_name`, named in `synchronous_standby_names`.
pub const STANDBY_NAME: &str = "keel_bench_standby";
/// Longest a server gets to accept connections, and the standby to
/// become synchronous.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for a connection (a TCP connect plus startup).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Timeout of one order transaction, as Keel's client attempt (6 s).
pub const OP_TIMEOUT: Duration = Duration::from_secs(6);
/// Wait before a client tries to reconnect after a failed connect, so a
/// dead primary is not hammered in a tight loop.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// Timeout of a setup or read-back query (schema and seed, replication
/// state, the flash-sale stock): generous, since seeding inserts every SKU.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// `max_connections`: the largest client count plus the standby and admin
/// connections.
const MAX_CONNECTIONS: u32 = 300;
/// Units of every uniform SKU: more than any run can order.
const SKU_STOCK: i64 = 1_000_000_000;

/// The directory with `initdb`, `postgres` and `pg_basebackup`:
/// Debian's newest `/usr/lib/postgresql/N/bin`, else `initdb` on `PATH`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, p)| p)
        .or_else(|| find_binary("initdb")?.parent().map(Path::to_path_buf))
}

/// PostgreSQL's binary directory, installing Debian's `postgresql` when
/// missing.
pub fn ensure_postgres() -> Result<PathBuf, BenchError> {
    if let Some(p) = find_bin_dir() {
        return Ok(p);
    }
    apt_install(&["postgresql"])?;
    find_bin_dir().ok_or_else(|| BenchError::setup("postgresql", "installed but initdb not found"))
}

/// Who runs the server: the `postgres` user when we are root, else us.
#[derive(Clone, Copy, Debug)]
struct RunAs(Option<(u32, u32)>);

impl RunAs {
    fn detect() -> Result<Self, BenchError> {
        if !crate::procs::is_root() {
            return Ok(Self(None));
        }
        let passwd = std::fs::read_to_string("/etc/passwd")?;
        let ids = parse_passwd(&passwd, "postgres").ok_or_else(|| {
            BenchError::setup(
                "postgresql",
                "running as root but there is no postgres user",
            )
        })?;
        Ok(Self(Some(ids)))
    }

    fn command(&self, bin: &Path) -> Command {
        let mut c = Command::new(bin);
        if let Some((uid, gid)) = self.0 {
            c.uid(uid).gid(gid);
        }
        c
    }

    fn own(&self, p: &Path) -> Result<(), BenchError> {
        if let Some((uid, gid)) = self.0 {
            std::os::unix::fs::chown(p, Some(uid), Some(gid))?;
        }
        Ok(())
    }
}

/// The primary's settings, appended to its `postgresql.conf` (the standby
/// gets them with the base backup).
pub fn primary_conf(port: u16) -> String {
    format!(
        "\n# keel bench compare\nlisten_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
         fsync = on\nsynchronous_commit = on\nfull_page_writes = on\nwal_level = replica\nmax_wal_senders = 4\n\
         synchronous_standby_names = '{STANDBY_NAME}'\nmax_connections = {MAX_CONNECTIONS}\n"
    )
}

/// The standby's own settings, appended to its `postgresql.auto.conf`
/// (read last, so they win over the copied primary settings).
pub fn standby_conf(port: u16, primary_port: u16) -> String {
    format!(
        "\n# keel bench compare\nport = {port}\nprimary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres application_name={STANDBY_NAME}'\n"
    )
}

fn conninfo(port: u16) -> String {
    format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout={}",
        CONNECT_TIMEOUT.as_secs()
    )
}

/// A connection whose driver task is aborted when it is dropped.
struct Conn {
    client: Client,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(port: u16) -> Result<Conn, String> {
    let info = conninfo(port);
    let fut = tokio_postgres::connect(&info, NoTls);
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, fut)
        .await
        .map_err(|_| "connect timeout".to_owned())?
        .map_err(|e| error_type(&e))?;
    let task = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn { client, task })
}

/// A running primary and synchronous standby; dropping it stops both.
pub struct PgPair {
    primary: Guard,
    standby: Guard,
    /// The primary's port.
    pub primary_port: u16,
    /// `postgres --version`.
    pub version: String,
}

impl PgPair {
    /// Creates both servers under `dir` (wiped first), seeds `skus`
    /// uniform SKUs and `flash_stock` units of SKU `FLASH`, and waits until
    /// the standby is synchronous.
    pub async fn start(
        bin_dir: &Path,
        dir: &Path,
        primary_port: u16,
        standby_port: u16,
        skus: u64,
        flash_stock: u64,
    ) -> Result<Self, BenchError> {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
        std::fs::create_dir_all(dir)?;
        let dir = std::fs::canonicalize(dir)?;
        let run_as = RunAs::detect()?;
        run_as.own(&dir)?;
        let (primary_dir, standby_dir) = (dir.join("primary"), dir.join("standby"));
        let log = dir.join("setup.log");
        run_logged(
            run_as
                .command(&bin_dir.join("initdb"))
                .arg("-D")
                .arg(&primary_dir)
                .args(["-U", "postgres", "-A", "trust", "-E", "UTF8"]),
            "initdb",
            &log,
        )?;
        append(
            &primary_dir.join("postgresql.conf"),
            &primary_conf(primary_port),
        )?;
        let mut primary_cmd = run_as.command(&bin_dir.join("postgres"));
        primary_cmd.arg("-D").arg(&primary_dir);
        let primary = Guard::spawn(
            "postgres primary",
            &mut primary_cmd,
            &dir.join("primary.log"),
            Signal::SIGINT,
        )?;
        wait_until(
            "postgres primary accepting connections",
            READY_TIMEOUT,
            || async { connect(primary_port).await.ok() },
        )
        .await?;
        run_logged(
            run_as
                .command(&bin_dir.join("pg_basebackup"))
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &primary_port.to_string(),
                    "-U",
                    "postgres",
                ])
                .arg("-D")
                .arg(&standby_dir)
                .args(["-X", "stream", "-R", "-c", "fast"]),
            "pg_basebackup",
            &log,
        )?;
        append(
            &standby_dir.join("postgresql.auto.conf"),
            &standby_conf(standby_port, primary_port),
        )?;
        let mut standby_cmd = run_as.command(&bin_dir.join("postgres"));
        standby_cmd.arg("-D").arg(&standby_dir);
        let standby = Guard::spawn(
            "postgres standby",
            &mut standby_cmd,
            &dir.join("standby.log"),
            Signal::SIGINT,
        )?;
        let pair = Self {
            primary,
            standby,
            primary_port,
            version: crate::procs::version_line(&bin_dir.join("postgres")),
        };
        pair.wait_sync().await?;
        pair.seed(skus, flash_stock).await?;
        Ok(pair)
    }

    async fn wait_sync(&self) -> Result<(), BenchError> {
        let port = self.primary_port;
        wait_until(
            "postgres standby synchronous",
            READY_TIMEOUT,
            || async move {
                let c = connect(port).await.ok()?;
                let q = c.client.query_opt(
                    "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
                    &[&STANDBY_NAME],
                );
                let row = tokio::time::timeout(QUERY_TIMEOUT, q).await.ok()?.ok()??;
                let state: String = row.get(0);
                (state == "sync").then_some(())
            },
        )
        .await
    }

    async fn seed(&self, skus: u64, flash_stock: u64) -> Result<(), BenchError> {
        let c = connect(self.primary_port)
            .await
            .map_err(|e| BenchError::setup("postgres connect", e))?;
        let sql = format!(
            "CREATE TABLE stock (sku text PRIMARY KEY, qty bigint NOT NULL CHECK (qty >= 0));
             CREATE TABLE orders (id bigserial PRIMARY KEY, customer text NOT NULL, sku text NOT NULL,
                                  qty bigint NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO stock SELECT 'S' || g, {SKU_STOCK} FROM generate_series(0, {}) g;
             INSERT INTO stock VALUES ('FLASH', {flash_stock});
             ANALYZE stock;",
            skus.max(1) - 1
        );
        tokio::time::timeout(QUERY_TIMEOUT, c.client.batch_execute(&sql))
            .await
            .map_err(|_| BenchError::setup("postgres schema", "timed out"))?
            .map_err(|e| BenchError::setup("postgres schema", e))
    }

    /// Units of `FLASH` left, read from the primary.
    pub async fn flash_left(&self) -> Option<i64> {
        let c = connect(self.primary_port).await.ok()?;
        let q = c
            .client
            .query_one("SELECT qty FROM stock WHERE sku = 'FLASH'", &[]);
        let row = tokio::time::timeout(QUERY_TIMEOUT, q).await.ok()?.ok()?;
        Some(row.get(0))
    }

    /// Process ids of the two postmasters.
    pub fn pids(&self) -> Vec<u32> {
        [self.primary.pid(), self.standby.pid()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// SIGKILL the primary and all its backends: a crash of the machine
    /// it runs on, as far as clients can tell.
    pub fn kill_primary(&mut self) {
        self.primary.kill();
    }

    /// Stops both servers (fast shutdown, then SIGKILL).
    pub fn stop(&mut self) {
        self.primary.stop();
        self.standby.stop();
    }
}

fn append(path: &Path, text: &str) -> Result<(), BenchError> {
    use std::io::Write;
    let mut f = std::fs::File::options().append(true).open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The error type of a failed statement: the SQLSTATE's name for the
/// common ones, the code otherwise, or how the connection failed.
pub fn error_type(e: &tokio_postgres::Error) -> String {
    if let Some(code) = e.code() {
        return sqlstate_name(code.code());
    }
    if e.is_closed() {
        return "connection closed".into();
    }
    let msg = e.to_string();
    if msg.contains("connect") || msg.contains("refused") {
        "connect".into()
    } else {
        "connection error".into()
    }
}

/// A readable name for the SQLSTATEs a failover shows.
pub fn sqlstate_name(code: &str) -> String {
    match code {
        "57P01" => "admin_shutdown".into(),
        "57P02" => "crash_shutdown".into(),
        "57P03" => "cannot_connect_now".into(),
        "40001" => "serialization_failure".into(),
        "40P01" => "deadlock_detected".into(),
        "53300" => "too_many_connections".into(),
        other => format!("sqlstate {other}"),
    }
}

/// Which SKU the orders name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PgSkus {
    /// Spread over `S0..S{n-1}`.
    Uniform(u64),
    /// All on `FLASH`.
    Flash,
}

/// One order transaction per operation against the primary.
pub struct PgOrders {
    port: u16,
    skus: PgSkus,
}

impl PgOrders {
    /// Orders against the primary on `port`.
    pub fn new(port: u16, skus: PgSkus) -> Self {
        Self { port, skus }
    }
}

/// A client's connection and its prepared statements, made on first use
/// and again after a failure.
pub struct PgConn {
    db: Option<(Conn, Statement, Statement)>,
    retry_at: Option<Instant>,
}

async fn prepare(port: u16) -> Result<(Conn, Statement, Statement), String> {
    let c = connect(port).await?;
    let upd = c
        .client
        .prepare("UPDATE stock SET qty = qty - $1 WHERE sku = $2 AND qty >= $1")
        .await
        .map_err(|e| error_type(&e))?;
    let ins = c
        .client
        .prepare("INSERT INTO orders (customer, sku, qty) VALUES ($1, $2, $3)")
        .await
        .map_err(|e| error_type(&e))?;
    Ok((c, upd, ins))
}

/// Decrements and inserts in one transaction; `false` when out of stock
/// (rolled back).
async fn order_tx(
    db: &mut (Conn, Statement, Statement),
    customer: &str,
    sku: &str,
) -> Result<bool, tokio_postgres::Error> {
    let qty: i64 = 1;
    let (conn, upd, ins) = db;
    let tx = conn.client.transaction().await?;
    if tx.execute(&*upd, &[&qty, &sku]).await? == 0 {
        tx.rollback().await?;
        return Ok(false);
    }
    tx.execute(&*ins, &[&customer, &sku, &qty]).await?;
    tx.commit().await?;
    Ok(true)
}

impl Target for PgOrders {
    type Conn = PgConn;

    fn conn(&self, _client: u64) -> PgConn {
        PgConn {
            db: None,
            retry_at: None,
        }
    }

    async fn op(&self, conn: &mut PgConn, client: u64, seq: u64) -> OpResult {
        if conn.db.is_none() {
            if let Some(at) = conn.retry_at.take() {
                tokio::time::sleep_until(at.into()).await;
            }
            match prepare(self.port).await {
                Ok(db) => conn.db = Some(db),
                Err(kind) => {
                    conn.retry_at = Some(Instant::now() + RECONNECT_PAUSE);
                    return OpResult::Error(kind);
                }
            }
        }
        let Some(db) = conn.db.as_mut() else {
            return OpResult::Error("connect".into());
        };
        let sku = match self.skus {
            PgSkus::Uniform(n) => format!("S{}", spread_sku(client, seq, n)),
            PgSkus::Flash => "FLASH".to_owned(),
        };
        let customer = format!("c{client}");
        match tokio::time::timeout(OP_TIMEOUT, order_tx(db, &customer, &sku)).await {
            Ok(Ok(true)) => OpResult::Ok,
            Ok(Ok(false)) => OpResult::Refused("out_of_stock".into()),
            Ok(Err(e)) => {
                // A statement error leaves the connection usable only when
                // the server answered; anything else starts over.
                if e.code().is_none() || e.is_closed() {
                    conn.db = None;
                }
                OpResult::Error(error_type(&e))
            }
            Err(_) => {
                conn.db = None;
                OpResult::Error("timeout".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primary_settings_make_commits_wait_for_the_standby() {
        let c = primary_conf(7601);
        for needle in [
            "port = 7601",
            "fsync = on",
            "synchronous_commit = on",
            "synchronous_standby_names = 'keel_bench_standby'",
            "listen_addresses = '127.0.0.1'",
        ] {
            assert!(c.contains(needle), "missing {needle} in {c}");
        }
        let s = standby_conf(7602, 7601);
        assert!(s.contains("port = 7602"));
        assert!(s.contains("port=7601 user=postgres application_name=keel_bench_standby"));
    }

    #[test]
    fn sqlstates_have_names() {
        assert_eq!(sqlstate_name("57P01"), "admin_shutdown");
        assert_eq!(sqlstate_name("XX000"), "sqlstate XX000");
    }
}
