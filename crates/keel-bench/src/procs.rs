//! Child processes of the anchors (etcd members, PostgreSQL servers):
//! finding and installing their binaries (with `keel_harness::host`), starting them in
//! their own process group, and stopping them, also on an error path and on
//! Ctrl-C (the guard's `Drop`). Plus what `/proc` tells about a process.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::BenchError;

pub use keel_harness::host::{apt_install, find_binary, free_port, is_root};

/// Longest a child gets to exit after its stop signal before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// How often a stopping child or a readiness condition is polled.
pub const POLL: Duration = Duration::from_millis(50);
/// Runs `cmd` to completion; its output goes to `log`. An error names
/// `what` and the log.
pub fn run_logged(cmd: &mut Command, what: &str, log: &Path) -> Result<(), BenchError> {
    let out = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    let st = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|e| BenchError::setup(what, e))?;
    if st.success() {
        Ok(())
    } else {
        Err(BenchError::setup(
            what,
            format!("{st}; see {}", log.display()),
        ))
    }
}

/// A child process in its own process group, stopped when dropped: the
/// stop signal to the whole group, then SIGKILL after [`STOP_GRACE`].
pub struct Guard {
    child: Option<Child>,
    stop_signal: Signal,
    /// What it is, for messages.
    pub name: String,
}

impl Guard {
    /// Spawns `cmd` in a new process group with output appended to `log`.
    pub fn spawn(
        name: &str,
        cmd: &mut Command,
        log: &Path,
        stop_signal: Signal,
    ) -> Result<Self, BenchError> {
        use std::os::unix::process::CommandExt;
        let out = std::fs::File::options()
            .create(true)
            .append(true)
            .open(log)?;
        let err = out.try_clone()?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| BenchError::setup(format!("starting {name}"), e))?;
        Ok(Self {
            child: Some(child),
            stop_signal,
            name: name.to_owned(),
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether it has exited (and reaps it).
    pub fn exited(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => false,
            Some(_) => {
                self.child = None;
                true
            }
            None => true,
        }
    }

    /// SIGKILL to the whole group at once: a crash, nothing flushed.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
            let _ = c.wait();
        }
    }

    /// The stop signal, then SIGKILL after [`STOP_GRACE`].
    pub fn stop(&mut self) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let pgid = Pid::from_raw(c.id() as i32);
        let _ = killpg(pgid, self.stop_signal);
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                // Children of the leader (PostgreSQL backends) go with it.
                let _ = killpg(pgid, Signal::SIGKILL);
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = c.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `f` (as [`keel_harness::wait_for`] does) until it gives `Some`,
/// or fails as a setup error after `timeout`.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<T, BenchError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    keel_harness::wait_for(what, timeout, &mut f)
        .await
        .map_err(|_| BenchError::setup(what, format!("not within {timeout:?}")))
}

/// `VmRSS` in KiB from `/proc/<pid>/status` text.
pub fn parse_vm_rss_kib(proc_status: &str) -> Option<u64> {
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Resident memory of process `pid`, KiB.
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    parse_vm_rss_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// Bytes of the regular files under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

/// `(uid, gid)` of `user` from `/etc/passwd` text.
pub fn parse_passwd(passwd: &str, user: &str) -> Option<(u32, u32)> {
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 4 && f[0] == user).then(|| Some((f[2].parse().ok()?, f[3].parse().ok()?)))?
    })
}

/// The first line of `bin --version`, or "unknown".
pub fn version_line(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_status_fields() {
        let s = "Name:\tkeel\nUid:\t1000\t0\t1000\t1000\nVmRSS:\t  123456 kB\n";
        assert_eq!(parse_vm_rss_kib(s), Some(123_456));
        assert_eq!(parse_vm_rss_kib("Name:\tx\n"), None);
    }

    #[test]
    fn passwd_lookup() {
        let p = "root:x:0:0:root:/root:/bin/bash\npostgres:x:101:104:PostgreSQL:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(parse_passwd(p, "postgres"), Some((101, 104)));
        assert_eq!(parse_passwd(p, "nobody"), None);
    }
}
