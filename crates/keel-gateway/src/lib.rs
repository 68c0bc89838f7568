//! The decision logic of Keel's load-balancing gateway: which backend gets a
//! request ([`balance`]), which backends are believed dead ([`detect`]), and
//! which requests are refused or delayed to protect the cluster ([`protect`]).
//!
//! This crate is the functional core of the gateway; the hyper proxy around
//! it is the imperative shell. Nothing here does I/O, spawns tasks, reads a
//! clock or draws OS entropy: every time-dependent call takes `now:
//! Instant` (or a `Duration`) and every random choice uses a generator the
//! caller seeded. That keeps the rules deterministic, so the tests drive
//! them with a fake clock (a base `Instant` plus `Duration`s) instead of
//! sleeping, and a surprising decision seen in production can be replayed
//! exactly from the inputs that produced it.
//!
//! Backends are named by [`NodeIndex`], a position in the gateway's node
//! list; per-request eligibility (healthy, not ejected, breaker closed) is a
//! copyable [`EligibleSet`] the shell builds from the detectors and hands to
//! the [`Balancer`].
#![deny(missing_docs)]

pub mod balance;
pub mod detect;
mod error;
mod node;
pub mod protect;

pub use balance::{
    BackendSpec, Balancer, BalancerConfig, Policy, EWMA_DECAY_DEFAULT, RTT_INITIAL_DEFAULT,
    WEIGHT_MAX,
};
pub use detect::{
    ActiveHealth, ActiveHealthConfig, HealthState, OutlierConfig, OutlierEjection, PhiAccrual,
    PhiAccrualConfig, Probe, EJECTION_PERCENT_CAP, HEALTH_THRESHOLD_MAX, PHI_SAMPLES_MAX,
    PHI_THRESHOLD_DEFAULT,
};
pub use error::ConfigError;
pub use node::{EligibleSet, NodeIndex, NODES_MAX};
pub use protect::{
    Backoff, BackoffConfig, BreakerConfig, BreakerDecision, BreakerState, CircuitBreaker,
    RateDecision, RateLimiter, RetryBudget, RetryBudgetConfig, TokenBucket, TokenBucketConfig,
    BREAKER_TRIALS_MAX, RATE_LIMITER_CLIENTS_MAX, RETRY_ATTEMPTS_MAX,
};
