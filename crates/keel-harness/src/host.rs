//! Host tooling every harness, test and benchmark shares: whether we are
//! root, finding a binary, installing a Debian package, a free port, and
//! libfaketime. Defined once here so no crate keeps its own copy.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// apt's per-connection timeout and retries, so an install cannot hang on
/// a dead mirror, and how long to wait for another apt holding its lock.
const APT_OPTIONS: [&str; 6] = [
    "-o",
    "Acquire::http::Timeout=30",
    "-o",
    "Acquire::Retries=2",
    "-o",
    "DPkg::Lock::Timeout=120",
];
/// Directories searched after `PATH` (Debian puts daemons in sbin).
const EXTRA_DIRS: [&str; 3] = ["/usr/sbin", "/sbin", "/usr/local/bin"];
/// Where Debian's libfaketime keeps its multi-threaded library.
const FAKETIME_GLOB_DIRS: &str = "/usr/lib";

/// Why a host tool could not be had.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Installing needs root.
    #[error("installing {packages}: not root; install them with apt-get, or run as root")]
    NotRoot {
        /// The packages asked for.
        packages: String,
    },
    /// `apt-get install` did not succeed.
    #[error("installing {packages}: apt-get install failed")]
    InstallFailed {
        /// The packages asked for.
        packages: String,
    },
    /// The package installed but what it should provide is not there.
    #[error("{what} installed but not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// No free port could be bound.
    #[error("binding a free loopback port: {0}")]
    Port(#[from] std::io::Error),
}

/// The effective uid from `/proc/self/status` text.
pub fn parse_euid(proc_status: &str) -> Option<u32> {
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Whether this process runs as root (and so may apt-get and switch users).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| parse_euid(&s))
        == Some(0)
}

/// `name` in `PATH`, then in the sbin directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Runs a command with its output on our stderr (stdout may carry JSON).
fn run_to_stderr(cmd: &mut Command) -> bool {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::from(std::io::stderr()))
        .status()
        .is_ok_and(|s| s.success())
}

/// `apt-get install -y packages` (after an `apt-get update`), as root only.
pub fn apt_install(packages: &[&str]) -> Result<(), HostError> {
    let joined = packages.join(" ");
    if !is_root() {
        return Err(HostError::NotRoot { packages: joined });
    }
    tracing::info!(packages = %joined, "installing from Debian with apt-get");
    let apt = |args: &[&str]| {
        run_to_stderr(
            Command::new("apt-get")
                .args(APT_OPTIONS)
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )
    };
    if !apt(&["update"]) {
        tracing::warn!("apt-get update failed; trying the install anyway");
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend_from_slice(packages);
    if apt(&args) {
        Ok(())
    } else {
        Err(HostError::InstallFailed { packages: joined })
    }
}

/// Bytes of randomness in a [`random_secret`].
const SECRET_BYTES: usize = 16;

/// A fresh secret (token or cluster secret) for a cluster the harness
/// starts where the development defaults are refused (outside loopback):
/// 16 bytes from the kernel's random source, as 32 hex characters.
pub fn random_secret() -> Result<String, HostError> {
    use std::io::Read;
    let mut bytes = [0u8; SECRET_BYTES];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A free loopback port, picked by the kernel.
pub fn free_port() -> Result<u16, HostError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// The multi-threaded libfaketime, installing Debian's `faketime` package
/// when it is missing.
pub fn ensure_faketime() -> Result<PathBuf, HostError> {
    let find = || -> Option<PathBuf> {
        let dirs = std::fs::read_dir(FAKETIME_GLOB_DIRS).ok()?;
        dirs.filter_map(Result::ok)
            .map(|d| d.path().join("faketime/libfaketimeMT.so.1"))
            .find(|p| p.is_file())
    };
    if let Some(p) = find() {
        return Ok(p);
    }
    // Tests that need it run on threads of one process: one install at a
    // time, and the others then find it. The guarded value is `()`, so a
    // poisoned lock is used as it is.
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = keel_protocol::sync::lock(&INSTALL);
    if let Some(p) = find() {
        return Ok(p);
    }
    apt_install(&["faketime"])?;
    find().ok_or_else(|| HostError::NotFound {
        what: format!("libfaketimeMT.so.1 under {FAKETIME_GLOB_DIRS}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_gives_the_effective_uid() {
        let s = "Name:\tkeel\nUid:\t1000\t0\t1000\t1000\n";
        assert_eq!(parse_euid(s), Some(0));
        assert_eq!(parse_euid("Name:\tx\n"), None);
    }

    #[test]
    fn random_secrets_are_hex_and_differ() {
        let (a, b) = (random_secret().unwrap(), random_secret().unwrap());
        assert_eq!(a.len(), 2 * SECRET_BYTES);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn a_free_port_can_be_bound() {
        let port = free_port().expect("a free port");
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind it");
    }
}
