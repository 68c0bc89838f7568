//! Which eligible backend gets the next request.
//!
//! One [`Balancer`] holds the per-node state every policy needs (weights,
//! outstanding requests, latency estimates), so the shell can switch
//! [`Policy`] by configuration without changing how it reports requests:
//! it always calls [`Balancer::pick`], then [`Balancer::on_request_start`]
//! and [`Balancer::on_request_end`] around the proxied call.

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::{ConfigError, EligibleSet, NodeIndex, NODES_MAX};

/// Largest weight for weighted round robin.
///
/// Ratios finer than 1:10 000 mean nothing across a handful of nodes, and the
/// bound keeps the smooth-WRR running sums (at most `NODES_MAX * WEIGHT_MAX`
/// per step) nowhere near `i64` overflow.
pub const WEIGHT_MAX: u32 = 10_000;

/// Default time constant of the peak-EWMA latency estimate.
///
/// Finagle and Linkerd use 10 s: long enough that one fast reply does not
/// erase a slow streak, short enough that a recovered node wins traffic back
/// within seconds.
pub const EWMA_DECAY_DEFAULT: Duration = Duration::from_secs(10);

/// Default latency charged per in-flight request to a node that has not
/// replied yet.
///
/// Roughly a Keel write's commit latency on a LAN: high enough that a fresh
/// node is not flooded before it has proved itself, low enough that it keeps
/// getting work once the others carry any queue.
pub const RTT_INITIAL_DEFAULT: Duration = Duration::from_millis(30);

/// The balancing algorithm; in configuration files it is written in
/// snake_case (`round_robin`, `weighted_round_robin`, `least_outstanding`,
/// `p2c_ewma`, `consistent_hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Each eligible node in turn: the simplest spread for identical nodes.
    #[default]
    RoundRobin,
    /// nginx's smooth weighted round robin: shares follow weights and a
    /// heavy node's turns are interleaved rather than bunched.
    WeightedRoundRobin,
    /// The node with the fewest requests in flight (ties in rotation):
    /// adapts to slow nodes without any latency model.
    LeastOutstanding,
    /// Power of two random choices by peak-EWMA latency × load (Finagle,
    /// Linkerd): avoids slow nodes quickly and without herding.
    P2cEwma,
    /// Rendezvous hashing on a request key, so one customer's requests keep
    /// landing on the same node (warm caches) and only ~1/N of keys move
    /// when a node leaves.
    ConsistentHash,
}

/// How one backend takes part in balancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendSpec {
    /// A stable identity for consistent hashing (e.g. the node's Raft id).
    /// Hashing on this rather than the index keeps a key on the same node
    /// when the gateway's node list is reordered. Must be unique.
    pub hash_id: u64,
    /// Share for weighted round robin, `0..=WEIGHT_MAX`; 0 means never picked
    /// by that policy (draining).
    pub weight: u32,
}

/// Settings of a [`Balancer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BalancerConfig {
    /// The algorithm.
    pub policy: Policy,
    /// Time constant of the peak-EWMA latency estimate (P2C only).
    pub ewma_decay: Duration,
    /// Latency charged per in-flight request to a node that has not yet
    /// replied (P2C only).
    pub rtt_initial: Duration,
    /// Seed of the P2C random choices: the shell passes real entropy, tests
    /// a constant, so runs are reproducible.
    pub seed: u64,
}

impl Default for BalancerConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            ewma_decay: EWMA_DECAY_DEFAULT,
            rtt_initial: RTT_INITIAL_DEFAULT,
            seed: 0,
        }
    }
}

/// Per-node balancing state.
#[derive(Debug, Clone)]
struct NodeState {
    weight: u32,
    /// nginx's `current_weight`.
    weight_current: i64,
    outstanding: u32,
    /// `mix64(hash_id)`: precomputed so a rendezvous pick is one mix per node.
    hash_seed: u64,
    /// Peak-EWMA latency estimate in nanoseconds.
    ewma_ns: f64,
    /// When `ewma_ns` was last updated; `None` until the first reply, while
    /// `ewma_ns` is still the configured guess.
    ewma_at: Option<Instant>,
}

impl NodeState {
    /// Finagle's/tower's peak-EWMA update: a slower sample replaces the
    /// estimate at once (peak); otherwise the estimate moves toward the
    /// sample with weight `1 - e^(-elapsed/decay)`. Called with a zero
    /// sample when reading the load, so an idle node's estimate decays and
    /// it eventually gets probed again.
    fn ewma_update(&mut self, rtt_ns: f64, now: Instant, decay_ns: f64) -> f64 {
        match self.ewma_at {
            // The first real sample replaces the configured guess; a zero
            // sample (a load read) must not erase the guess before then.
            None if rtt_ns == 0.0 => return self.ewma_ns,
            None => self.ewma_ns = rtt_ns,
            Some(_) if rtt_ns > self.ewma_ns => self.ewma_ns = rtt_ns,
            Some(at) => {
                let elapsed_ns = now.saturating_duration_since(at).as_nanos() as f64;
                let keep = (-elapsed_ns / decay_ns).exp();
                self.ewma_ns = self.ewma_ns * keep + rtt_ns * (1.0 - keep);
            }
        }
        self.ewma_at = Some(now);
        self.ewma_ns
    }
}

/// Picks a backend for each request under one [`Policy`], from the set the
/// detectors currently allow.
#[derive(Debug, Clone)]
pub struct Balancer {
    config: BalancerConfig,
    nodes: Vec<NodeState>,
    /// Next index to consider first, for round robin and for rotating
    /// least-outstanding ties.
    cursor: usize,
    rng: SmallRng,
}

impl Balancer {
    /// A balancer over `backends` (index `i` is `NodeIndex(i)`). Fails on
    /// more than [`NODES_MAX`] backends, a weight above [`WEIGHT_MAX`],
    /// duplicate `hash_id`s, or a zero `ewma_decay`.
    pub fn new(config: BalancerConfig, backends: &[BackendSpec]) -> Result<Self, ConfigError> {
        if backends.len() > NODES_MAX {
            return Err(ConfigError::TooManyNodes {
                count: backends.len(),
                max: NODES_MAX,
            });
        }
        if config.ewma_decay.is_zero() {
            return Err(ConfigError::Invalid {
                field: "ewma_decay",
                reason: "must be positive",
            });
        }
        for (i, spec) in backends.iter().enumerate() {
            check_weight(spec.weight)?;
            if backends[..i].iter().any(|b| b.hash_id == spec.hash_id) {
                return Err(ConfigError::Invalid {
                    field: "hash_id",
                    reason: "must be unique across backends",
                });
            }
        }
        let rtt_initial_ns = config.rtt_initial.as_nanos() as f64;
        let nodes = backends
            .iter()
            .map(|spec| NodeState {
                weight: spec.weight,
                weight_current: 0,
                outstanding: 0,
                hash_seed: mix64(spec.hash_id),
                ewma_ns: rtt_initial_ns,
                ewma_at: None,
            })
            .collect();
        Ok(Self {
            config,
            nodes,
            cursor: 0,
            rng: SmallRng::seed_from_u64(config.seed),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> Policy {
        self.config.policy
    }

    /// How many backends this balancer knows.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether it knows no backend (every pick is then `None`).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The backend for the next request, or `None` when no eligible node can
    /// take it (empty set, or only zero-weight nodes under weighted round
    /// robin). `key` is the consistent-hashing key (e.g. a customer id);
    /// without one that policy falls back to round robin, and the other
    /// policies ignore it. `now` feeds the P2C latency decay.
    pub fn pick(
        &mut self,
        eligible: EligibleSet,
        key: Option<&[u8]>,
        now: Instant,
    ) -> Option<NodeIndex> {
        let eligible = eligible.truncate(self.nodes.len());
        if eligible.is_empty() {
            return None;
        }
        match (self.config.policy, key) {
            (Policy::RoundRobin, _) | (Policy::ConsistentHash, None) => {
                Some(self.pick_round_robin(eligible))
            }
            (Policy::WeightedRoundRobin, _) => self.pick_smooth_weighted(eligible),
            (Policy::LeastOutstanding, _) => Some(self.pick_least_outstanding(eligible)),
            (Policy::P2cEwma, _) => self.pick_p2c(eligible, now),
            (Policy::ConsistentHash, Some(key)) => self.pick_rendezvous(eligible, key),
        }
    }

    /// Reports that a request was sent to `node`; pair with
    /// [`on_request_end`](Self::on_request_end).
    pub fn on_request_start(&mut self, node: NodeIndex) {
        if let Some(state) = self.node_mut(node) {
            state.outstanding = state.outstanding.saturating_add(1);
        }
    }

    /// Reports that a request to `node` ended after `latency` (success or
    /// failure alike: a node that fails slowly is slow). An end without a
    /// start cannot drive the count below zero.
    pub fn on_request_end(&mut self, node: NodeIndex, latency: Duration, now: Instant) {
        let decay_ns = self.decay_ns();
        if let Some(state) = self.node_mut(node) {
            state.outstanding = state.outstanding.saturating_sub(1);
            state.ewma_update(latency.as_nanos() as f64, now, decay_ns);
        }
    }

    /// Requests in flight to `node` (0 for an unknown node).
    pub fn outstanding(&self, node: NodeIndex) -> u32 {
        self.nodes.get(node.0).map_or(0, |s| s.outstanding)
    }

    /// The current peak-EWMA latency estimate of `node`, undecayed since its
    /// last update (for metrics).
    pub fn latency_estimate(&self, node: NodeIndex) -> Option<Duration> {
        self.nodes
            .get(node.0)
            .map(|s| Duration::from_nanos(s.ewma_ns as u64))
    }

    /// Changes `node`'s weighted-round-robin share at run time (0 drains it).
    /// Its smooth-WRR credit restarts at zero so a revived node does not
    /// burst on credit it built before the change.
    pub fn set_weight(&mut self, node: NodeIndex, weight: u32) -> Result<(), ConfigError> {
        check_weight(weight)?;
        let count = self.nodes.len();
        let state = self
            .nodes
            .get_mut(node.0)
            .ok_or(ConfigError::NodeOutOfRange {
                node: node.0,
                count,
            })?;
        state.weight = weight;
        state.weight_current = 0;
        Ok(())
    }

    /// `node`'s weight (0 for an unknown node).
    pub fn weight(&self, node: NodeIndex) -> u32 {
        self.nodes.get(node.0).map_or(0, |s| s.weight)
    }

    fn node_mut(&mut self, node: NodeIndex) -> Option<&mut NodeState> {
        debug_assert!(node.0 < self.nodes.len(), "{node} is not a backend");
        self.nodes.get_mut(node.0)
    }

    fn decay_ns(&self) -> f64 {
        self.config.ewma_decay.as_nanos() as f64
    }

    /// The first node of `among` at or after the cursor (wrapping), and the
    /// cursor moves past it: the rotation both round robin and
    /// least-outstanding ties use. `among` must not be empty.
    fn rotate(&mut self, among: EligibleSet) -> NodeIndex {
        let first = among.iter().next();
        let next = among.iter().find(|n| n.0 >= self.cursor).or(first);
        // Invariant: callers pass a non-empty set, so `first` is `Some`; the
        // fallback only keeps the function total.
        let node = next.unwrap_or(NodeIndex(0));
        self.cursor = node.0 + 1;
        node
    }

    fn pick_round_robin(&mut self, eligible: EligibleSet) -> NodeIndex {
        self.rotate(eligible)
    }

    /// nginx `ngx_http_upstream_get_peer`: every eligible node earns its
    /// weight, the richest wins and pays back the total. Ties go to the
    /// lowest index, as in nginx's list order.
    fn pick_smooth_weighted(&mut self, eligible: EligibleSet) -> Option<NodeIndex> {
        let mut total: i64 = 0;
        let mut best: Option<(NodeIndex, i64)> = None;
        for node in eligible.iter() {
            let state = &mut self.nodes[node.0];
            if state.weight == 0 {
                continue;
            }
            state.weight_current += i64::from(state.weight);
            total += i64::from(state.weight);
            if best.is_none_or(|(_, w)| state.weight_current > w) {
                best = Some((node, state.weight_current));
            }
        }
        let (node, _) = best?;
        self.nodes[node.0].weight_current -= total;
        Some(node)
    }

    fn pick_least_outstanding(&mut self, eligible: EligibleSet) -> NodeIndex {
        let least = eligible
            .iter()
            .map(|n| self.nodes[n.0].outstanding)
            .min()
            .unwrap_or(0);
        let tied = EligibleSet::from_fn(self.nodes.len(), |n| {
            eligible.contains(n) && self.nodes[n.0].outstanding == least
        });
        self.rotate(tied)
    }

    /// Two distinct eligible nodes drawn uniformly; the cheaper wins, where
    /// cost = decayed peak-EWMA latency × (outstanding + 1).
    fn pick_p2c(&mut self, eligible: EligibleSet, now: Instant) -> Option<NodeIndex> {
        let count = eligible.len();
        if count == 1 {
            return eligible.iter().next();
        }
        let i = self.rng.random_range(0..count);
        let mut j = self.rng.random_range(0..count - 1);
        if j >= i {
            j += 1;
        }
        let a = eligible.iter().nth(i)?;
        let b = eligible.iter().nth(j)?;
        let cost_a = self.p2c_cost(a, now);
        let cost_b = self.p2c_cost(b, now);
        Some(if cost_a <= cost_b { a } else { b })
    }

    /// A node that has never replied costs nothing while idle, so a new or
    /// restarted node is tried at once; while its first requests are in
    /// flight each counts as `rtt_initial`, so it is probed, not flooded
    /// (Finagle's cold-start rule with a configurable penalty).
    fn p2c_cost(&mut self, node: NodeIndex, now: Instant) -> f64 {
        let decay_ns = self.decay_ns();
        let state = &mut self.nodes[node.0];
        if state.ewma_at.is_none() && state.outstanding == 0 {
            return 0.0;
        }
        let estimate_ns = state.ewma_update(0.0, now, decay_ns);
        estimate_ns * f64::from(state.outstanding.saturating_add(1))
    }

    /// Rendezvous (highest random weight) hashing: every eligible node scores
    /// the key and the highest wins. When a node leaves, only the keys it
    /// won move (≈1/N), each to its runner-up; all other keys stay put, and
    /// skipping ineligible nodes needs no ring walk. O(N) per pick, which is
    /// nothing at [`NODES_MAX`].
    fn pick_rendezvous(&mut self, eligible: EligibleSet, key: &[u8]) -> Option<NodeIndex> {
        let key_hash = fnv1a64(key);
        eligible.iter().max_by_key(|n| {
            (
                mix64(key_hash ^ self.nodes[n.0].hash_seed),
                std::cmp::Reverse(n.0),
            )
        })
    }
}

fn check_weight(weight: u32) -> Result<(), ConfigError> {
    if weight > WEIGHT_MAX {
        return Err(ConfigError::WeightTooLarge {
            weight,
            max: WEIGHT_MAX,
        });
    }
    Ok(())
}

/// 64-bit FNV-1a of `bytes`.
///
/// Chosen because the key → node mapping must be identical across gateway
/// restarts, Rust versions and platforms (std's `Hasher`s promise none of
/// that), and FNV-1a is a few lines with published test vectors, so it needs
/// no dependency. Its weak avalanche is repaired by [`mix64`].
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The SplitMix64 finalizer: a bijective mix in which every input bit
/// affects every output bit, so rendezvous scores of similar keys or node ids
/// are independent. Stable by construction (fixed constants, pure arithmetic).
fn mix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ALL_POLICIES: [Policy; 5] = [
        Policy::RoundRobin,
        Policy::WeightedRoundRobin,
        Policy::LeastOutstanding,
        Policy::P2cEwma,
        Policy::ConsistentHash,
    ];

    fn specs(weights: &[u32]) -> Vec<BackendSpec> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| BackendSpec {
                hash_id: 1000 + i as u64,
                weight,
            })
            .collect()
    }

    fn balancer(policy: Policy, weights: &[u32]) -> Balancer {
        let config = BalancerConfig {
            policy,
            seed: 7,
            ..BalancerConfig::default()
        };
        Balancer::new(config, &specs(weights)).unwrap()
    }

    /// Picks `picks` times, finishing each request at once, and counts hits.
    fn counts(b: &mut Balancer, eligible: EligibleSet, picks: usize) -> Vec<usize> {
        let now = Instant::now();
        let mut hits = vec![0; b.len()];
        for i in 0..picks {
            let key = format!("customer-{i}");
            let node = b.pick(eligible, Some(key.as_bytes()), now).unwrap();
            b.on_request_start(node);
            b.on_request_end(node, Duration::from_millis(5), now);
            hits[node.0] += 1;
        }
        hits
    }

    fn assert_within(hits: &[usize], expected: &[f64], tolerance: f64) {
        let total: usize = hits.iter().sum();
        for (i, (&h, &e)) in hits.iter().zip(expected).enumerate() {
            let share = h as f64 / total as f64;
            assert!(
                (share - e).abs() <= tolerance,
                "node {i}: share {share:.4}, expected {e:.4} ± {tolerance} (hits {hits:?})"
            );
        }
    }

    #[test]
    fn policy_deserialises_from_snake_case_names() {
        let names = [
            "round_robin",
            "weighted_round_robin",
            "least_outstanding",
            "p2c_ewma",
            "consistent_hash",
        ];
        for (name, policy) in names.iter().zip(ALL_POLICIES) {
            let parsed: Policy = serde_json::from_str(&format!("\"{name}\"")).unwrap();
            assert_eq!(parsed, policy);
            assert_eq!(
                serde_json::to_string(&policy).unwrap(),
                format!("\"{name}\"")
            );
        }
        assert!(serde_json::from_str::<Policy>("\"RoundRobin\"").is_err());
    }

    #[test]
    fn new_rejects_bad_configuration() {
        let too_many = specs(&[1; NODES_MAX + 1]);
        assert_eq!(
            Balancer::new(BalancerConfig::default(), &too_many).unwrap_err(),
            ConfigError::TooManyNodes {
                count: NODES_MAX + 1,
                max: NODES_MAX
            }
        );
        assert!(matches!(
            Balancer::new(BalancerConfig::default(), &specs(&[1, WEIGHT_MAX + 1])),
            Err(ConfigError::WeightTooLarge { .. })
        ));
        let mut dup = specs(&[1, 1]);
        dup[1].hash_id = dup[0].hash_id;
        assert!(matches!(
            Balancer::new(BalancerConfig::default(), &dup),
            Err(ConfigError::Invalid {
                field: "hash_id",
                ..
            })
        ));
        let zero_decay = BalancerConfig {
            ewma_decay: Duration::ZERO,
            ..BalancerConfig::default()
        };
        assert!(Balancer::new(zero_decay, &specs(&[1])).is_err());
    }

    #[test]
    fn empty_eligible_set_returns_none_for_every_policy() {
        let now = Instant::now();
        for policy in ALL_POLICIES {
            let mut b = balancer(policy, &[1, 1, 1]);
            assert_eq!(
                b.pick(EligibleSet::empty(), Some(b"k"), now),
                None,
                "{policy:?}"
            );
            // A set naming only nodes this balancer does not have is empty too.
            let foreign: EligibleSet = [NodeIndex(5)].into_iter().collect();
            assert_eq!(b.pick(foreign, Some(b"k"), now), None, "{policy:?}");
        }
        let mut none = Balancer::new(BalancerConfig::default(), &[]).unwrap();
        assert!(none.is_empty());
        assert_eq!(none.pick(EligibleSet::all(3), None, now), None);
    }

    #[test]
    fn ineligible_backends_are_never_picked_by_any_policy() {
        let eligible: EligibleSet = [1, 3, 4].into_iter().map(NodeIndex).collect();
        for policy in ALL_POLICIES {
            let mut b = balancer(policy, &[3, 2, 1, 1, 2]);
            let hits = counts(&mut b, eligible, 5_000);
            assert_eq!(
                hits[0] + hits[2],
                0,
                "{policy:?} picked an ineligible node: {hits:?}"
            );
            assert_eq!(hits.iter().sum::<usize>(), 5_000);
        }
    }

    #[test]
    fn round_robin_cycles_in_order_and_spreads_exactly() {
        let mut b = balancer(Policy::RoundRobin, &[1, 1, 1]);
        let now = Instant::now();
        let seq: Vec<usize> = (0..6)
            .map(|_| b.pick(EligibleSet::all(3), None, now).unwrap().0)
            .collect();
        assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
        let hits = counts(&mut b, EligibleSet::all(3), 30_000);
        assert_eq!(hits, vec![10_000; 3]);
    }

    #[test]
    fn round_robin_keeps_rotating_when_eligibility_changes() {
        let mut b = balancer(Policy::RoundRobin, &[1, 1, 1, 1]);
        let now = Instant::now();
        let mut pick = |set: EligibleSet| b.pick(set, None, now).unwrap().0;
        assert_eq!(pick(EligibleSet::all(4)), 0);
        assert_eq!(pick(EligibleSet::all(4)), 1);
        let without_2: EligibleSet = [0, 1, 3].into_iter().map(NodeIndex).collect();
        assert_eq!(pick(without_2), 3);
        assert_eq!(pick(without_2), 0);
        assert_eq!(pick(EligibleSet::all(4)), 1);
    }

    #[test]
    fn smooth_weighted_5_1_1_gives_the_nginx_sequence() {
        let mut b = balancer(Policy::WeightedRoundRobin, &[5, 1, 1]);
        let now = Instant::now();
        let seq: String = (0..14)
            .map(
                |_| match b.pick(EligibleSet::all(3), None, now).unwrap().0 {
                    0 => 'a',
                    1 => 'b',
                    _ => 'c',
                },
            )
            .collect();
        assert_eq!(seq, "aabacaaaabacaa");
    }

    #[test]
    fn smooth_weighted_distribution_follows_weights() {
        let mut b = balancer(Policy::WeightedRoundRobin, &[5, 3, 2]);
        let hits = counts(&mut b, EligibleSet::all(3), 10_000);
        assert_eq!(hits, vec![5_000, 3_000, 2_000]);
    }

    #[test]
    fn weight_zero_is_never_picked_and_weights_change_at_run_time() {
        let mut b = balancer(Policy::WeightedRoundRobin, &[1, 0, 1]);
        let hits = counts(&mut b, EligibleSet::all(3), 10_000);
        assert_eq!(hits, vec![5_000, 0, 5_000]);

        b.set_weight(NodeIndex(1), 2).unwrap();
        assert_eq!(b.weight(NodeIndex(1)), 2);
        let hits = counts(&mut b, EligibleSet::all(3), 12_000);
        assert_within(&hits, &[0.25, 0.5, 0.25], 0.001);

        b.set_weight(NodeIndex(0), 0).unwrap();
        b.set_weight(NodeIndex(2), 0).unwrap();
        let only_zero: EligibleSet = [0, 2].into_iter().map(NodeIndex).collect();
        assert_eq!(b.pick(only_zero, None, Instant::now()), None);

        assert!(matches!(
            b.set_weight(NodeIndex(9), 1),
            Err(ConfigError::NodeOutOfRange { node: 9, count: 3 })
        ));
        assert!(b.set_weight(NodeIndex(0), WEIGHT_MAX + 1).is_err());
    }

    #[test]
    fn least_outstanding_favours_idle_backends() {
        let mut b = balancer(Policy::LeastOutstanding, &[1, 1, 1]);
        let now = Instant::now();
        // Nodes 0 and 1 are busy with requests that have not returned.
        for _ in 0..3 {
            b.on_request_start(NodeIndex(0));
        }
        b.on_request_start(NodeIndex(1));
        let first = b.pick(EligibleSet::all(3), None, now).unwrap();
        assert_eq!(first, NodeIndex(2));
        b.on_request_start(first);
        // Now 1 and 2 tie on one each: the rotation takes the other one next.
        let second = b.pick(EligibleSet::all(3), None, now).unwrap();
        assert_eq!(second, NodeIndex(1));
        b.on_request_start(second);
        assert_eq!(b.outstanding(NodeIndex(1)), 2);
        assert_eq!(b.pick(EligibleSet::all(3), None, now), Some(NodeIndex(2)));
    }

    #[test]
    fn least_outstanding_spreads_ties_evenly() {
        let mut b = balancer(Policy::LeastOutstanding, &[1, 1, 1, 1]);
        let hits = counts(&mut b, EligibleSet::all(4), 12_000);
        assert_eq!(hits, vec![3_000; 4]);
    }

    #[test]
    fn least_outstanding_tracks_a_slow_backend_under_concurrency() {
        // Node 0 holds each request for 10 rounds, the others for 1: it should
        // end up with far fewer requests.
        let mut b = balancer(Policy::LeastOutstanding, &[1, 1, 1]);
        let now = Instant::now();
        let mut in_flight: Vec<(NodeIndex, u32)> = Vec::new();
        let mut hits = [0usize; 3];
        for _round in 0..10_000 {
            in_flight.retain_mut(|(node, left)| {
                *left -= 1;
                if *left == 0 {
                    b.on_request_end(*node, Duration::from_millis(1), now);
                }
                *left > 0
            });
            for _ in 0..3 {
                let node = b.pick(EligibleSet::all(3), None, now).unwrap();
                b.on_request_start(node);
                hits[node.0] += 1;
                in_flight.push((node, if node.0 == 0 { 10 } else { 1 }));
            }
        }
        assert!(hits[0] * 3 < hits[1], "slow node not avoided: {hits:?}");
    }

    #[test]
    fn p2c_spreads_evenly_over_equal_backends() {
        let mut b = balancer(Policy::P2cEwma, &[1, 1, 1, 1]);
        let hits = counts(&mut b, EligibleSet::all(4), 20_000);
        assert_within(&hits, &[0.25; 4], 0.03);
    }

    #[test]
    fn p2c_avoids_a_slow_backend() {
        let mut b = balancer(Policy::P2cEwma, &[1, 1, 1]);
        let start = Instant::now();
        let mut hits = [0usize; 3];
        for i in 0..12_000u64 {
            let now = start + Duration::from_millis(i);
            let node = b.pick(EligibleSet::all(3), None, now).unwrap();
            b.on_request_start(node);
            let latency = if node.0 == 2 { 200 } else { 10 };
            b.on_request_end(node, Duration::from_millis(latency), now);
            hits[node.0] += 1;
        }
        let total: usize = hits.iter().sum();
        assert!(hits[2] * 100 < total * 2, "slow node got {hits:?}");
        assert!(b.latency_estimate(NodeIndex(2)).unwrap() > Duration::from_millis(50));
    }

    #[test]
    fn p2c_probes_a_cold_node_without_flooding_it() {
        let mut b = balancer(Policy::P2cEwma, &[1, 1]);
        let now = Instant::now();
        b.on_request_start(NodeIndex(0));
        b.on_request_end(NodeIndex(0), Duration::from_millis(1), now);
        // Node 1 has never replied: idle, it is tried at once.
        assert_eq!(b.pick(EligibleSet::all(2), None, now), Some(NodeIndex(1)));
        b.on_request_start(NodeIndex(1));
        // With its probe in flight it costs 2 × rtt_initial: node 0 wins.
        for _ in 0..100 {
            assert_eq!(b.pick(EligibleSet::all(2), None, now), Some(NodeIndex(0)));
        }
    }

    #[test]
    fn p2c_weighs_outstanding_requests() {
        let mut b = balancer(Policy::P2cEwma, &[1, 1]);
        let now = Instant::now();
        for _ in 0..5 {
            b.on_request_start(NodeIndex(0));
        }
        for _ in 0..100 {
            assert_eq!(b.pick(EligibleSet::all(2), None, now), Some(NodeIndex(1)));
        }
    }

    #[test]
    fn peak_ewma_jumps_to_peaks_and_decays_with_the_time_constant() {
        let mut b = balancer(Policy::P2cEwma, &[1]);
        let t0 = Instant::now();
        let node = NodeIndex(0);
        assert_eq!(b.latency_estimate(node), Some(RTT_INITIAL_DEFAULT));
        b.on_request_end(node, Duration::from_millis(10), t0);
        assert_eq!(b.latency_estimate(node), Some(Duration::from_millis(10)));
        b.on_request_end(
            node,
            Duration::from_millis(100),
            t0 + Duration::from_millis(1),
        );
        assert_eq!(b.latency_estimate(node), Some(Duration::from_millis(100)));
        // One time constant later a 0 ms sample leaves e^-1 of the peak.
        let later = t0 + Duration::from_millis(1) + EWMA_DECAY_DEFAULT;
        b.on_request_end(node, Duration::ZERO, later);
        let ms = b.latency_estimate(node).unwrap().as_secs_f64() * 1000.0;
        assert!((ms - 100.0 / std::f64::consts::E).abs() < 0.01, "{ms}");
    }

    #[test]
    fn consistent_hash_maps_a_key_to_the_same_node() {
        let mut b = balancer(Policy::ConsistentHash, &[1, 1, 1, 1, 1]);
        let now = Instant::now();
        let first = b.pick(EligibleSet::all(5), Some(b"customer-42"), now);
        for _ in 0..100 {
            assert_eq!(
                b.pick(EligibleSet::all(5), Some(b"customer-42"), now),
                first
            );
        }
    }

    #[test]
    fn consistent_hash_spreads_keys_evenly() {
        let mut b = balancer(Policy::ConsistentHash, &[1, 1, 1, 1, 1]);
        let hits = counts(&mut b, EligibleSet::all(5), 20_000);
        assert_within(&hits, &[0.2; 5], 0.03);
    }

    #[test]
    fn consistent_hash_moves_about_one_nth_of_keys_when_a_node_leaves() {
        const KEYS: usize = 20_000;
        const NODES: usize = 5;
        let mut b = balancer(Policy::ConsistentHash, &[1; NODES]);
        let now = Instant::now();
        let all = EligibleSet::all(NODES);
        let mut without_3 = all;
        without_3.remove(NodeIndex(3));
        let mut moved = 0;
        for i in 0..KEYS {
            let key = format!("customer-{i}");
            let before = b.pick(all, Some(key.as_bytes()), now).unwrap();
            let after = b.pick(without_3, Some(key.as_bytes()), now).unwrap();
            if before != after {
                moved += 1;
                assert_eq!(
                    before,
                    NodeIndex(3),
                    "key {key} moved between unaffected nodes"
                );
            }
            // When the node returns, every key goes back where it was.
            assert_eq!(b.pick(all, Some(key.as_bytes()), now), Some(before));
        }
        let fraction = moved as f64 / KEYS as f64;
        let one_nth = 1.0 / NODES as f64;
        assert!(
            (0.5 * one_nth..=1.7 * one_nth).contains(&fraction),
            "moved fraction {fraction}"
        );
    }

    #[test]
    fn consistent_hash_follows_hash_id_not_list_position() {
        let now = Instant::now();
        let forward = specs(&[1, 1, 1]);
        let reversed: Vec<BackendSpec> = forward.iter().rev().copied().collect();
        let config = BalancerConfig {
            policy: Policy::ConsistentHash,
            ..BalancerConfig::default()
        };
        let mut a = Balancer::new(config, &forward).unwrap();
        let mut b = Balancer::new(config, &reversed).unwrap();
        for i in 0..1_000 {
            let key = format!("k{i}");
            let na = a
                .pick(EligibleSet::all(3), Some(key.as_bytes()), now)
                .unwrap();
            let nb = b
                .pick(EligibleSet::all(3), Some(key.as_bytes()), now)
                .unwrap();
            assert_eq!(forward[na.0].hash_id, reversed[nb.0].hash_id);
        }
    }

    #[test]
    fn consistent_hash_without_key_falls_back_to_round_robin() {
        let mut b = balancer(Policy::ConsistentHash, &[1, 1, 1]);
        let now = Instant::now();
        let seq: Vec<usize> = (0..4)
            .map(|_| b.pick(EligibleSet::all(3), None, now).unwrap().0)
            .collect();
        assert_eq!(seq, vec![0, 1, 2, 0]);
    }

    #[test]
    fn stable_hash_matches_reference_vectors() {
        // Published FNV-1a 64 test vectors: if these change, every key moves.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
        // SplitMix64's first output for seed 0 (state advanced by the golden gamma).
        assert_eq!(mix64(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn p2c_is_deterministic_for_a_seed() {
        let run = || {
            let mut b = balancer(Policy::P2cEwma, &[1, 1, 1, 1, 1]);
            let now = Instant::now();
            (0..200)
                .map(|_| b.pick(EligibleSet::all(5), None, now).unwrap().0)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    proptest! {
        /// Over one period of `sum(weights)` picks from a fresh state, smooth
        /// WRR gives every node exactly its weight.
        #[test]
        fn smooth_weighted_is_exact_over_one_period(weights in prop::collection::vec(0u32..20, 1..8)) {
            let total: u32 = weights.iter().sum();
            prop_assume!(total > 0);
            let mut b = balancer(Policy::WeightedRoundRobin, &weights);
            let hits = counts(&mut b, EligibleSet::all(weights.len()), total as usize);
            let expected: Vec<usize> = weights.iter().map(|&w| w as usize).collect();
            prop_assert_eq!(hits, expected);
        }

        /// Whatever the policy and the eligible set, a pick is eligible, and
        /// there is one whenever the set has a node with positive weight.
        #[test]
        fn picks_are_always_eligible(
            policy in prop::sample::select(ALL_POLICIES.to_vec()),
            bits in any::<u8>(),
            picks in 1usize..50,
        ) {
            let mut b = balancer(policy, &[1, 2, 3, 1, 2, 3, 1, 2]);
            let eligible = EligibleSet::from_fn(8, |n| bits & (1 << n.0) != 0);
            let now = Instant::now();
            for i in 0..picks {
                let key = i.to_string();
                let picked = b.pick(eligible, Some(key.as_bytes()), now);
                match picked {
                    Some(node) => prop_assert!(eligible.contains(node)),
                    None => prop_assert!(eligible.is_empty()),
                }
            }
        }
    }
}
