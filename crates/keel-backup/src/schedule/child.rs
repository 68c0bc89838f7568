//! A schedule run as a child `keel backup schedule` process of another
//! (a gateway with a `[backup]` section): its command line, and how the
//! child stops with its parent and on a signal.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

use crate::spec::{OpenError, RepoSpec};

/// What a schedule run as a child should do, checked by
/// [`ChildCommand::open`]. Every `None` is off.
#[derive(Clone, Debug)]
pub struct ChildSchedule {
    /// The repository.
    pub repo: RepoSpec,
    /// Local scratch space.
    pub work_dir: PathBuf,
    /// A full backup this often, seconds.
    pub full_every_s: Option<u64>,
    /// An incremental this often, seconds.
    pub incremental_every_s: Option<u64>,
    /// An incremental after this many committed entries.
    pub after_entries: Option<u64>,
    /// Close an archive segment at this age, ms.
    pub archive_every_ms: Option<u64>,
    /// ... or at this many bytes.
    pub archive_bytes: u64,
    /// Fulls (and their chains) to keep after each backup.
    pub keep_full: Option<u64>,
    /// Pace of full backups, MiB/s.
    pub rate_mib_s: Option<u64>,
}

/// The arguments of a child `keel backup schedule`, from a checked
/// [`ChildSchedule`].
#[derive(Clone, Debug)]
pub struct ChildCommand {
    args: Vec<String>,
}

/// Environment variable the child reads its admin token from.
const ADMIN_TOKEN_ENV: &str = "KEEL_ADMIN_TOKEN";

impl ChildCommand {
    /// Opens the repository once (targets, layout, key), so a bad schedule
    /// fails when its parent starts rather than at the first backup.
    pub fn open(s: &ChildSchedule) -> Result<Self, OpenError> {
        s.repo.open()?;
        let mut args: Vec<String> = vec!["backup".into(), "schedule".into()];
        for t in &s.repo.targets {
            args.extend(["--target".into(), t.clone()]);
        }
        args.extend(["--layout".into(), s.repo.layout.clone()]);
        if let Some(k) = &s.repo.key_file {
            args.extend(["--key-file".into(), k.display().to_string()]);
        }
        args.extend(["--work-dir".into(), s.work_dir.display().to_string()]);
        let timed = [
            ("--full-every", s.full_every_s.map(|s| format!("{s}s"))),
            (
                "--incremental-every",
                s.incremental_every_s.map(|s| format!("{s}s")),
            ),
            ("--after-entries", s.after_entries.map(|n| n.to_string())),
            (
                "--archive-every",
                s.archive_every_ms.map(|ms| format!("{ms}ms")),
            ),
            ("--keep-full", s.keep_full.map(|n| n.to_string())),
            ("--rate-mib-s", s.rate_mib_s.map(|n| n.to_string())),
        ];
        for (flag, value) in timed {
            if let Some(v) = value {
                args.extend([flag.into(), v]);
            }
        }
        args.extend(["--archive-bytes".into(), s.archive_bytes.to_string()]);
        Ok(Self { args })
    }

    /// The command running the schedule with the `keel` binary `exe`
    /// against `nodes` (over TLS trusting the CA bundle `ca` when given);
    /// the admin token goes by environment, never on a command line other
    /// users can read. The child stops with its parent.
    pub fn command(
        &self,
        exe: PathBuf,
        nodes: &[String],
        token: &str,
        ca: Option<&std::path::Path>,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args(&self.args)
            .arg("--with-parent")
            .arg("--nodes")
            .arg(nodes.join(","));
        if let Some(ca) = ca {
            cmd.arg("--tls-ca").arg(ca);
        }
        cmd.env(ADMIN_TOKEN_ENV, token)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        cmd
    }
}

/// Why a child schedule cannot be tied to its parent.
#[derive(Debug, thiserror::Error)]
pub enum ParentError {
    /// The kernel refused the request.
    #[error("asking to stop with the parent process")]
    Prctl(#[source] nix::errno::Errno),
    /// The parent died before the request was made.
    #[error("the process that started this schedule has already exited")]
    Gone,
}

/// Asks the kernel for SIGTERM when the parent dies, so a schedule never
/// outlives the process that runs it, even one killed with SIGKILL.
pub fn stop_with_parent() -> Result<(), ParentError> {
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .map_err(ParentError::Prctl)?;
    // The parent may have died before the request: then this process was
    // already handed to another parent and no signal will come.
    if nix::unistd::getppid() != parent {
        return Err(ParentError::Gone);
    }
    Ok(())
}

/// A stop signal for [`super::run`] that turns true on Ctrl-C or SIGTERM;
/// must be called inside a Tokio runtime.
pub fn stop_on_signal() -> watch::Receiver<bool> {
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => return,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// Longest a child schedule gets to stop after its parent asks. A backup
/// cut short leaves nothing visible (its manifest is written last), so
/// stopping it is safe, only wasteful; and the parent's own stop must stay
/// short for whoever supervises it.
pub const CHILD_STOP_GRACE: Duration = Duration::from_secs(5);

/// Stops a child schedule: SIGTERM, so it ends the backup in hand, then
/// SIGKILL after [`CHILD_STOP_GRACE`]. Returns what the operator should
/// hear, if anything went other than a clean exit.
pub async fn stop_child(mut child: tokio::process::Child) -> Option<String> {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    match tokio::time::timeout(CHILD_STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) if status.success() => None,
        Ok(Ok(status)) => Some(format!("backup schedule ended: {status}")),
        Ok(Err(e)) => Some(format!("backup schedule: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Some(format!("backup schedule killed after {CHILD_STOP_GRACE:?}"))
        }
    }
}
