//! The fault script the shoppers live through: the leader is SIGKILLed at
//! [`KILL_AT`] of the shopping time and restarted at [`RESTART_AT`], while a
//! progress bar counts the orders acknowledged.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use keel_harness::LocalCluster;

use crate::shoppers::Shoppers;
use crate::DemoError;

/// When the leader is killed, as a share of the shopping time: late enough
/// for the shop to be busy, early enough for the failover to be watched.
pub const KILL_AT: f64 = 0.4;
/// When the killed node is restarted, as a share of the shopping time: it
/// must then catch up on what it missed while the load goes on.
pub const RESTART_AT: f64 = 0.7;
/// How often the script looks at the clock and updates the progress bar.
const TICK: Duration = Duration::from_millis(200);

/// The leader kill, as it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kill {
    /// The node killed.
    pub node: u64,
    /// When, since the shopping began.
    pub at: Duration,
}

/// A step of the script.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Kill,
    Restart,
}

/// The step due at `elapsed` of `total`, given whether the kill and the
/// restart were done.
fn due(elapsed: Duration, total: Duration, killed: bool, restarted: bool) -> Option<Step> {
    if !killed && elapsed >= total.mul_f64(KILL_AT) {
        return Some(Step::Kill);
    }
    if killed && !restarted && elapsed >= total.mul_f64(RESTART_AT) {
        return Some(Step::Restart);
    }
    None
}

/// Plays the script on `cluster` for `total` while `shoppers` shop (or
/// until they stop on their own), and returns the kill. `first_leader` is
/// killed if no leader is known at that moment.
pub async fn play(
    cluster: &mut LocalCluster,
    first_leader: u64,
    total: Duration,
    shoppers: &Shoppers,
) -> Result<Option<Kill>, DemoError> {
    let t0 = shoppers.t0();
    let bar = progress_bar(total);
    let mut kill: Option<Kill> = None;
    let mut restarted = false;
    while t0.elapsed() < total && !shoppers.stopped() {
        tokio::time::sleep(TICK).await;
        let at = t0.elapsed();
        match due(at, total, kill.is_some(), restarted) {
            Some(Step::Kill) => {
                let node = cluster.leader().await.unwrap_or(first_leader);
                cluster.kill(node)?;
                kill = Some(Kill { node, at });
                say(
                    &bar,
                    format!("[{:>5.1}s] SIGKILL leader node {node}", at.as_secs_f64()),
                );
            }
            Some(Step::Restart) => {
                if let Some(k) = kill {
                    cluster.restart(k.node)?;
                    restarted = true;
                    say(
                        &bar,
                        format!("[{:>5.1}s] restarted node {}", at.as_secs_f64(), k.node),
                    );
                }
            }
            None => {}
        }
        bar.set_position(at.as_secs().min(total.as_secs()));
        bar.set_message(format!("{} orders acknowledged", shoppers.placed()));
    }
    bar.finish_and_clear();
    Ok(kill)
}

/// Prints `line` on stdout above the bar. Not `ProgressBar::println`,
/// which prints nothing when the bar is hidden (stderr not a terminal), and
/// a log of the demo must still say when the leader was killed.
fn say(bar: &ProgressBar, line: String) {
    bar.suspend(|| println!("{line}"));
}

fn progress_bar(total: Duration) -> ProgressBar {
    let bar = ProgressBar::new(total.as_secs());
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len}s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_killed_at_40_percent_and_restarted_at_70() {
        let total = Duration::from_secs(20);
        let at = Duration::from_millis;
        assert_eq!(due(at(7_900), total, false, false), None);
        assert_eq!(due(at(8_000), total, false, false), Some(Step::Kill));
        assert_eq!(due(at(13_900), total, true, false), None);
        assert_eq!(due(at(14_000), total, true, false), Some(Step::Restart));
        assert_eq!(due(at(19_000), total, true, true), None);
        // A late tick still kills first, restarts on the next.
        assert_eq!(due(at(15_000), total, false, false), Some(Step::Kill));
    }
}
