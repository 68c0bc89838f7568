//! A configuration built from files and built again when they change.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::files::{stamp, Stamp};
use crate::{TlsError, RELOAD_CHECK_INTERVAL};

/// A configuration `C` built from `paths` by `build`, rebuilt on the first
/// use at least [`RELOAD_CHECK_INTERVAL`] after a check that finds a file
/// changed. A rebuild that fails keeps the last good configuration.
pub(crate) struct Reloading<C> {
    what: &'static str,
    paths: Vec<PathBuf>,
    build: Box<dyn Fn() -> Result<C, TlsError> + Send + Sync>,
    state: Mutex<State<C>>,
}

struct State<C> {
    current: Arc<C>,
    /// The files as last looked at (built from, or failed to build from).
    seen: Stamp,
    checked: Instant,
}

impl<C> Reloading<C> {
    /// Builds the first configuration; an error here is the caller's to
    /// report (a process does not start on bad files).
    pub(crate) fn load(
        what: &'static str,
        paths: Vec<PathBuf>,
        build: impl Fn() -> Result<C, TlsError> + Send + Sync + 'static,
    ) -> Result<Self, TlsError> {
        let seen = stamp_of(&paths);
        let current = Arc::new(build()?);
        Ok(Self {
            what,
            paths,
            build: Box::new(build),
            state: Mutex::new(State {
                current,
                seen,
                checked: Instant::now(),
            }),
        })
    }

    /// The configuration to use now, rebuilt first if a file changed.
    pub(crate) fn current(&self) -> Arc<C> {
        // Each critical section replaces whole values: a poisoned lock holds
        // a consistent state and is used as it is.
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if s.checked.elapsed() >= RELOAD_CHECK_INTERVAL {
            s.checked = Instant::now();
            let now = stamp_of(&self.paths);
            if now != s.seen {
                s.seen = now;
                match (self.build)() {
                    Ok(c) => {
                        s.current = Arc::new(c);
                        tracing::info!(what = self.what, "TLS certificates reloaded");
                    }
                    Err(e) => tracing::warn!(
                        what = self.what,
                        error = %e,
                        "TLS certificates changed but do not load; still using the previous ones"
                    ),
                }
            }
        }
        s.current.clone()
    }
}

fn stamp_of(paths: &[PathBuf]) -> Stamp {
    let refs: Vec<&std::path::Path> = paths.iter().map(PathBuf::as_path).collect();
    stamp(&refs)
}
