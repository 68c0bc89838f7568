//! Keel's load-balancing gateway: one address in front of a cluster that
//! sends writes and linearizable reads to the leader, balances local reads,
//! notices dead and paused nodes, and retries what is safe to retry, so
//! clients never see a node die.
//!
//! Two layers. The rules are a functional core: which backend gets a
//! request ([`balance`]), which backends are believed dead ([`detect`]), and
//! which requests are refused or delayed to protect the cluster
//! ([`protect`]). Nothing there does I/O, spawns tasks, reads a clock or
//! draws OS entropy: every time-dependent call takes `now: Instant` and
//! every random choice uses a generator the caller seeded, so tests drive
//! them with a fake clock and a surprising decision can be replayed from
//! its inputs. Backends are named by [`NodeIndex`]; per-request eligibility
//! is a copyable [`EligibleSet`].
//!
//! The shell around them is a hyper/axum reverse proxy ([`Gateway`]): the
//! request path with retries (`proxy`), the node table and its locks
//! (`pool`), connections to the nodes (`keel_http_client`), probers and discovery
//! (`server`), configuration ([`config`])
//! and metrics.
#![deny(missing_docs)]

pub mod balance;
pub mod config;
pub mod detect;
mod error;
mod metrics;
mod node;
mod pool;
mod problem;
pub mod protect;
mod proxy;
mod server;
mod shared;

pub use balance::{
    BackendSpec, Balancer, BalancerConfig, Policy, EWMA_DECAY_DEFAULT, RTT_INITIAL_DEFAULT,
    WEIGHT_MAX,
};
pub use config::GatewayConfig;
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
pub use server::{Gateway, GatewayError, SHUTDOWN_GRACE};
