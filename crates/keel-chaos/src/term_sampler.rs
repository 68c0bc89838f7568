//! Takes the samples [`crate::terms`] judges: every node is asked for its
//! term and leader (`GET /v1/cluster` as admin) every
//! [`TERM_SAMPLE_INTERVAL`] for as long as the run lasts, through faults
//! and restarts.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_client::{method_get, Client};
use keel_harness::{HarnessError, LocalCluster};
use serde_json::Value;

use crate::sync::lock;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::terms::{TermRecord, TermSample};

/// How often each answering node is asked.
pub const TERM_SAMPLE_INTERVAL: Duration = Duration::from_millis(250);
/// How soon a node that did not answer is asked again. A restarted node's
/// first answers show the term it recovered from its disk, before its own
/// election timer (150 ms at the least by default) or a peer's vote
/// request can raise it: that is the answer a lost vote shows in, so a node
/// coming back is watched this closely.
pub const TERM_SAMPLE_RETRY: Duration = Duration::from_millis(20);
/// Longest one question waits: `/v1/cluster` probes every peer for up to
/// 300 ms, and a paused node never answers.
pub const TERM_SAMPLE_TIMEOUT: Duration = Duration::from_secs(2);
/// Most samples a run keeps. Only changes are kept (a node's term or
/// leader moving, a few per election), so an hour of faults every few
/// seconds stays far below it.
pub const TERM_SAMPLES_MAX: usize = 100_000;

/// The sampling of a run in progress.
pub struct TermSampler {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    record: Arc<Mutex<Record>>,
}

/// The record, and each node's last answer (to keep only changes).
#[derive(Default)]
struct Record {
    kept: TermRecord,
    last: std::collections::BTreeMap<u64, (u64, Option<u64>)>,
}

impl Record {
    fn add(&mut self, s: TermSample) {
        self.kept.answered += 1;
        let now = (s.term, s.leader);
        if self.last.insert(s.node, now) == Some(now) {
            return;
        }
        if self.kept.samples.len() >= TERM_SAMPLES_MAX {
            self.kept.dropped += 1;
            return;
        }
        self.kept.samples.push(s);
    }
}

impl TermSampler {
    /// Starts asking every node `cluster` knows now, each through its own
    /// admin client from the cluster ([`LocalCluster::node_client`]: the
    /// cluster's token, and its TLS when it runs TLS); times count from
    /// `t0`.
    pub fn start(cluster: &LocalCluster, t0: Instant) -> Result<Self, HarnessError> {
        let (stop, stopped) = watch::channel(false);
        let record = Arc::new(Mutex::new(Record::default()));
        let mut tasks = Vec::new();
        for id in cluster.ids() {
            tasks.push(tokio::spawn(sample_node(
                id,
                cluster.addr(id)?,
                cluster.node_client(id)?,
                t0,
                stopped.clone(),
                record.clone(),
            )));
        }
        Ok(Self {
            stop,
            tasks,
            record,
        })
    }

    /// Stops the sampling and returns what it saw.
    pub async fn finish(self) -> TermRecord {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        std::mem::take(&mut lock(&self.record).kept)
    }
}

/// Asks node `id` until told to stop.
async fn sample_node(
    id: u64,
    addr: String,
    client: Client,
    t0: Instant,
    mut stopped: watch::Receiver<bool>,
    record: Arc<Mutex<Record>>,
) {
    while !*stopped.borrow() {
        let at_ns = t0.elapsed().as_nanos() as u64;
        let ask = client.call_at(&addr, method_get(), "/v1/cluster", None, None);
        let answer = tokio::select! {
            r = tokio::time::timeout(TERM_SAMPLE_TIMEOUT, ask) => r.ok().and_then(Result::ok),
            _ = stopped.changed() => return,
        };
        let sample = answer.and_then(|r| read_sample(id, at_ns, &r.body));
        let wait = match sample {
            Some(s) => {
                lock(&record).add(s);
                TERM_SAMPLE_INTERVAL
            }
            None => TERM_SAMPLE_RETRY,
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// The sample in a `/v1/cluster` answer. An answer with no members is
/// from a node whose Raft core has not reported yet: openraft's metrics
/// start at term 0 with an empty membership whatever the disk holds, so it
/// says nothing of the node's term and is not a sample.
fn read_sample(node: u64, at_ns: u64, body: &Value) -> Option<TermSample> {
    let started = body["members"].as_array().is_some_and(|m| !m.is_empty());
    if !started {
        return None;
    }
    Some(TermSample {
        node,
        at_ns,
        term: body["term"].as_u64()?,
        leader: body["leader_id"].as_u64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_changes_are_kept_and_the_record_is_bounded() {
        let s = |node, term, leader| TermSample {
            node,
            at_ns: 0,
            term,
            leader,
        };
        let mut r = Record::default();
        r.add(s(1, 1, Some(1)));
        r.add(s(2, 1, Some(1)));
        r.add(s(1, 1, Some(1)));
        r.add(s(1, 2, Some(1)));
        r.add(s(1, 2, None));
        assert_eq!(r.kept.answered, 5);
        assert_eq!(r.kept.samples.len(), 4);
        for i in 0..TERM_SAMPLES_MAX as u64 {
            r.add(s(3, i, None));
        }
        assert_eq!(r.kept.samples.len(), TERM_SAMPLES_MAX);
        assert_eq!(r.kept.dropped, 4);
    }

    #[test]
    fn an_answer_before_raft_has_reported_is_not_a_sample() {
        let started = json!({"term": 3, "leader_id": 2, "members": [{"id": 1}]});
        assert_eq!(
            read_sample(1, 5, &started),
            Some(TermSample {
                node: 1,
                at_ns: 5,
                term: 3,
                leader: Some(2)
            })
        );
        let initial = json!({"term": 0, "leader_id": null, "members": []});
        assert_eq!(read_sample(1, 5, &initial), None);
        assert_eq!(read_sample(1, 5, &json!({"members": [{"id": 1}]})), None);
    }
}
