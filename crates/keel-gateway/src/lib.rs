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
//!
//! # How a request goes through
//!
//! `keel gateway` (`crates/keel-gateway`) is one address in front of the nodes.
//! Per request (`proxy.rs`): take a pending slot (`limits.pending_max`, else
//! 503 `overloaded`), a token from the client's bucket when rate limits are on
//! (else 429 with `Retry-After`), read the body whole (`limits.body_bytes_max`,
//! else 413, so it can be sent again), and classify it: writes and
//! linearizable reads go to the leader, `consistency=local` reads to the
//! balancing policy of their class. A keyless write to a keyed route gets an
//! `Idempotency-Key` before the first attempt (returned in the response) so it
//! too can be retried exactly once. `pool.rs` picks a node: healthy by probes,
//! trusted by phi-accrual, not ejected, breaker not open, and not already
//! failed for this request; with none left, any member (Envoy's panic mode).
//! An attempt has its own timeout inside the request's deadline. A refused
//! connection takes the node down at once and forgets it as leader; a timeout,
//! reset or 500 counts toward ejection and the breaker; a 503 or 504 is the
//! cluster's answer, not the node's fault. Reads and keyed writes are retried
//! on another node after a refusal, timeout, lost reply, 503 or 504; a write
//! without a key only after a refusal (it never left). Once an attempt of a
//! write may have applied it (lost reply, 504, 500), the request's answer is
//! never a definite failure: a later attempt's 503 (or no node left) becomes
//! 504 `indeterminate` (`unknown_if` in `proxy.rs`). Retries back off with
//! full jitter and wait for a slot in the retry budget (20% of live requests)
//! rather than fail, bounded by the deadline. Every node reply names the leader
//! (`keel-leader`) and its term (`keel-term`), so the gateway follows a new
//! leader from the first answer after an election and ignores a cut-off old
//! leader that still names itself at a lower term. A resendable attempt on a
//! leader that has since been deposed is abandoned and sent to the new one
//! (without counting against the old node). A node newly named leader has its
//! circuit breaker closed and its outlier ejection lifted: a quorum has just
//! elected it, and only it can take a write, so a breaker left open by an
//! earlier kill must not keep writes on a cut-off old leader until it heals.
//!
//! Connections (`server.rs`, `keel-http-server`, `keel-http-client`): clients
//! are served by `workers` threads (default one per core), each with a
//! single-threaded tokio runtime, its own listening socket on the same address
//! (`SO_REUSEPORT`, so the kernel spreads connections) and its own pool of node
//! connections (a connection is driven by the runtime it was opened on), as
//! nginx runs one worker process per core; the node table, balancers, metrics,
//! the pending cap, the connection cap (`ConnectionSlots`, shared) and the key
//! generator are shared. Probes and discovery run on the process's own
//! runtime with a pool of their own. Each
//! client connection is one task running hyper's HTTP/1.1 server; the gateway's own routes
//! (`/healthz`, `/readyz`, `/metrics`, `/status`, `/gateway/weights`,
//! `/gateway/availability`, `/gateway/dashboard`, and the [`dashboard`]'s
//! page and assets under `/dashboard`) go to an
//! axum router, every other path to the proxy. An attempt checks a kept-alive
//! connection to its node out of a per-node idle list
//! (`limits.idle_connections_per_node`, each idle at most
//! `UPSTREAM_IDLE_TIMEOUT`), drives hyper's client state machine itself while
//! it waits for the reply, and checks it back in; a connection the node closed
//! while idle is found at checkout and dropped. So a proxied request is served
//! by one task from the client's bytes to the node's reply and back, as an
//! nginx worker does, instead of crossing to a connection task and back
//! (hyper-util's pooled client); BENCHMARKS.md has what it gained. The
//! server speaks HTTP/1.1 only, as
//! nginx's default `listen` does (no h2c).
//!
//! Each node is probed on `/readyz` every 100 ms (timeout 250 ms, rise 2, fall
//! 3): any answer is a heartbeat for phi-accrual (which catches a paused
//! process, whose kernel still accepts connections), only a 200 counts as
//! healthy. With an admin token the gateway also follows `/v1/cluster` to learn
//! members; without one it learns nodes from leader hints. Every pick asks
//! whether each node is trusted; phi only grows with the silence, so after
//! each heartbeat the detector finds by bisection the silence at which phi
//! reaches its threshold, and a pick compares against that (phi itself
//! decides within 0.01 ms of it). Per-request values that are really
//! per-connection (the client's `X-Forwarded-For` entry) or per-node (a node's
//! answered-attempts counter) are made once, when the connection or node
//! arrives.
//!
//! What the workers share, a request touches as few times as it can: the
//! pool's lock twice per attempt (its pick, which for a request's first
//! attempt also counts the request live for the retry budget; its finish,
//! which also takes the reply's leader hint and, for the last attempt, ends
//! the request), the pending cap as one atomic add each way (a request past
//! it is refused, never queued, so it needs no semaphore), and each class's
//! `requests` and `request_seconds` series looked up once rather than in
//! their families on every request.
//!
//! # Availability as clients saw it
//!
//! Every proxied request, once answered, feeds one outcome to a pure
//! tracker ([`availability`]) under a mutex of its own, stamped with the
//! wall clock: served, or failed server-side (a status of 500 or more; the
//! module says why 429 is not). The tracker keeps per-minute counts of the
//! last hour, totals since start, and outages (first failed request to the
//! first success after it) with their time to recover. `/metrics` sets the
//! `availability_ratio`, `failures_per_thousand`, `outages_total`,
//! `last_recovery_seconds` and `outage_open` series from it at scrape time;
//! `GET /gateway/availability` (admin, operator or support) answers all of
//! it as JSON ([`AvailabilityReport`]). The gateway's own routes are not
//! counted: they measure the gateway, not the cluster behind it.
//!
//! # The dashboard
//!
//! `/dashboard` is a page embedded in the binary that polls
//! `GET /gateway/dashboard` (same roles as the availability report): the
//! cluster, alerts and clock offsets asked of the nodes with the caller's
//! credential, a ring of 5 s points of the gateway's rates and the nodes'
//! business series that a sampler task fills (stopped with the others on
//! shutdown), availability, and an optional backup repository's recovery
//! point. See [`dashboard`] and docs/OPERATIONS.md.
#![deny(missing_docs)]

pub mod availability;
pub mod backup_view;
pub mod balance;
pub mod config;
pub mod dashboard;
pub mod dashboard_state;
pub mod detect;
mod error;
mod metrics;
mod node;
mod pool;
mod problem;
pub mod protect;
mod proxy;
pub mod series;
mod server;
mod shared;

pub use availability::{
    Availability, AvailabilityReport, Counts, MinuteReport, OpenOutage, Outage, Window,
    WindowReport, Windows, MINUTES_KEPT, MINUTE_MS, OUTAGES_KEPT,
};
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
