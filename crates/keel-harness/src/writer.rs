//! A writer that places keyed orders through a client until stopped and
//! counts what was acknowledged and what failed: the load a fault test
//! runs across its faults to show no client sees an error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keel_client::Client;
use tokio::task::JoinHandle;

use crate::HarnessError;

/// Orders placed one after another for customers `c0..c<customers>` (as
/// [`crate::seed_test_shop`] opens them), one unit of `SKU-1` each, every
/// one with its own idempotency key.
pub struct Writer {
    stop: Arc<AtomicBool>,
    placed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Writer {
    /// Starts writing through `client`; keys begin with `tag`.
    pub fn start(client: Arc<Client>, customers: u64, tag: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (placed, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let task = {
            let (stop, placed, failed) = (stop.clone(), placed.clone(), failed.clone());
            let tag = tag.to_owned();
            tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let lines = vec![("SKU-1".to_string(), 1)];
                    let customer = format!("c{}", n % customers.max(1));
                    match client
                        .place_order(&customer, &lines, &format!("{tag}-{n}"))
                        .await
                    {
                        Ok(_) => placed.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            eprintln!("write {tag}-{n} failed: {e}");
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        };
        Self {
            stop,
            placed,
            failed,
            task,
        }
    }

    /// Waits up to `timeout` for `n` more acknowledged orders.
    pub async fn more(&self, n: u64, timeout: Duration) -> Result<(), HarnessError> {
        let want = self.placed.load(Ordering::Relaxed) + n;
        crate::wait_for("more writes acknowledged", timeout, &mut || async {
            (self.placed.load(Ordering::Relaxed) >= want).then_some(())
        })
        .await
    }

    /// Stops writing; returns (acknowledged, failed).
    pub async fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        (
            self.placed.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}
