//! Which requests the gateway refuses or delays so overload and failure do
//! not spread: per-client rate limits, per-node circuit breakers, a retry
//! budget and retry backoff.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::ConfigError;

/// Most clients a [`RateLimiter`] tracks at once.
///
/// A Keel deployment has at most a few thousand active API clients; 10 000
/// buckets cost about a megabyte, and the eviction sweep that runs when the
/// map is full scans them in tens of microseconds.
pub const RATE_LIMITER_CLIENTS_MAX: usize = 10_000;

/// Most attempts a [`Backoff`] may be configured for.
///
/// With a 20 ms base, ten doublings reach 20 s: past that a client's own
/// deadline has expired and further retries only add load to a cluster that
/// is already failing.
pub const RETRY_ATTEMPTS_MAX: u32 = 10;

/// Most half-open trial requests a [`CircuitBreaker`] may allow at once: a
/// trial exists to test a node, not to load it.
pub const BREAKER_TRIALS_MAX: u32 = 100;

/// Whether a rate-limited request may proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Go ahead; one token was taken.
    Allowed,
    /// Refuse (HTTP 429); a token will be available after `retry_after`,
    /// which the shell sends as the `Retry-After` header.
    Limited {
        /// Wait until the next token.
        retry_after: Duration,
    },
}

/// Settings of a [`TokenBucket`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucketConfig {
    /// Sustained requests per second (at least 1).
    pub rate_per_s: u32,
    /// Requests allowed back to back after an idle period (at least 1).
    pub burst: u32,
}

/// A token bucket for one client, in the GCRA formulation: the whole state
/// is the instant at which the bucket would next be full ("theoretical
/// arrival time"), so there are no fractional tokens to round away and
/// refill is exact however often it is polled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    /// Time one token takes to refill.
    emission_interval: Duration,
    /// How far ahead of `now` the full-time may run: `(burst - 1)` tokens.
    burst_allowance: Duration,
    /// When the bucket is full again (at or before `now` = full).
    full_at: Instant,
}

impl TokenBucket {
    /// A full bucket as of `now`.
    pub fn new(config: TokenBucketConfig, now: Instant) -> Result<Self, ConfigError> {
        Self::validate(config)?;
        Ok(Self::full(config, now))
    }

    fn validate(config: TokenBucketConfig) -> Result<(), ConfigError> {
        if config.rate_per_s == 0 {
            return Err(ConfigError::Invalid {
                field: "rate_per_s",
                reason: "must be at least 1",
            });
        }
        if config.burst == 0 {
            return Err(ConfigError::Invalid {
                field: "burst",
                reason: "must be at least 1",
            });
        }
        Ok(())
    }

    /// A full bucket; `config` must have passed [`validate`](Self::validate)
    /// (a zero rate would divide by zero).
    fn full(config: TokenBucketConfig, now: Instant) -> Self {
        let emission_interval = Duration::from_secs(1) / config.rate_per_s;
        Self {
            emission_interval,
            burst_allowance: emission_interval * config.burst.saturating_sub(1),
            full_at: now,
        }
    }

    /// Takes a token if one is available at `now`.
    pub fn try_acquire(&mut self, now: Instant) -> RateDecision {
        let full_at = self.full_at.max(now);
        let debt = full_at - now;
        if debt > self.burst_allowance {
            return RateDecision::Limited {
                retry_after: debt - self.burst_allowance,
            };
        }
        self.full_at = full_at + self.emission_interval;
        RateDecision::Allowed
    }

    /// Whether the bucket is full at `now`: such a bucket behaves exactly
    /// like a fresh one, so forgetting it loses nothing.
    pub fn is_full(&self, now: Instant) -> bool {
        self.full_at <= now
    }

    /// Whole tokens available at `now` (for metrics and tests).
    pub fn tokens(&self, now: Instant) -> u32 {
        let debt = self.full_at.saturating_duration_since(now);
        let capacity = self.burst_allowance + self.emission_interval;
        let available = capacity.saturating_sub(debt);
        u32::try_from(available.as_nanos() / self.emission_interval.as_nanos()).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone)]
struct ClientBucket {
    bucket: TokenBucket,
    seen_at: Instant,
}

/// One [`TokenBucket`] per client key, in a map bounded by `clients_max`.
///
/// Keys are ordered (`BTreeMap`), not hashed, so eviction order is the same
/// on every run. When a new client arrives at a full map, every bucket that
/// is full is dropped first (losslessly: a full bucket is a fresh one); if
/// none is, the least recently seen client is dropped and starts over with
/// a full burst when it returns — the price of bounding memory against a
/// flood of distinct keys, paid by the client least likely to be active.
#[derive(Debug, Clone)]
pub struct RateLimiter<K> {
    config: TokenBucketConfig,
    clients_max: usize,
    buckets: BTreeMap<K, ClientBucket>,
}

impl<K: Ord + Clone> RateLimiter<K> {
    /// An empty limiter giving every client `config`; `clients_max` must be
    /// in `1..=RATE_LIMITER_CLIENTS_MAX`.
    pub fn new(config: TokenBucketConfig, clients_max: usize) -> Result<Self, ConfigError> {
        if !(1..=RATE_LIMITER_CLIENTS_MAX).contains(&clients_max) {
            return Err(ConfigError::Invalid {
                field: "clients_max",
                reason: "must be in 1..=RATE_LIMITER_CLIENTS_MAX",
            });
        }
        // Validated once, here, so `check` has no error path.
        TokenBucket::validate(config)?;
        Ok(Self {
            config,
            clients_max,
            buckets: BTreeMap::new(),
        })
    }

    /// Takes a token from `client`'s bucket at `now`.
    pub fn check(&mut self, client: &K, now: Instant) -> RateDecision {
        if let Some(entry) = self.buckets.get_mut(client) {
            entry.seen_at = now;
            return entry.bucket.try_acquire(now);
        }
        if self.buckets.len() >= self.clients_max {
            self.evict(now);
        }
        let mut bucket = TokenBucket::full(self.config, now);
        let decision = bucket.try_acquire(now);
        self.buckets.insert(
            client.clone(),
            ClientBucket {
                bucket,
                seen_at: now,
            },
        );
        decision
    }

    /// Clients currently tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no client is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    fn evict(&mut self, now: Instant) {
        self.buckets.retain(|_, entry| !entry.bucket.is_full(now));
        if self.buckets.len() < self.clients_max {
            return;
        }
        // `min_by_key` keeps the first minimum, i.e. the smallest key among
        // equally old clients: deterministic.
        let oldest = self
            .buckets
            .iter()
            .min_by_key(|(_, entry)| entry.seen_at)
            .map(|(key, _)| key.clone());
        if let Some(key) = oldest {
            self.buckets.remove(&key);
        }
    }
}

/// Settings of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker. Consecutive rather than a
    /// ratio over a window: it needs no history, and a healthy node almost
    /// never fails five times in a row.
    pub consecutive_failures: u32,
    /// How long the breaker stays open before trying the node again.
    pub open_cooldown: Duration,
    /// Trial requests allowed at once while half-open,
    /// `1..=BREAKER_TRIALS_MAX`.
    pub half_open_trials_max: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            open_cooldown: Duration::from_secs(10),
            half_open_trials_max: 1,
        }
    }
}

/// The breaker's state as the caller sees it (for logs and metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Requests flow; failures are being counted.
    Closed,
    /// Requests are refused until `until`.
    Open {
        /// End of the cool-down.
        until: Instant,
    },
    /// A few trial requests test whether the node has recovered.
    HalfOpen,
}

/// Whether a circuit breaker lets a request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerDecision {
    /// Send it, and report its outcome with `record_success`/`record_failure`.
    Allowed,
    /// Do not send it to this node; it may be tried after `retry_after`.
    Rejected {
        /// Time until the breaker may let a request through.
        retry_after: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// `since` starts the current trial window; if its trials never report
    /// back (a cancelled request), a new window opens one cool-down later,
    /// so a lost outcome cannot wedge the breaker half-open forever.
    HalfOpen {
        trials_in_flight: u32,
        since: Instant,
    },
}

/// A circuit breaker for one node: after repeated failures it stops sending
/// the node traffic for a cool-down, so a dying node is not hammered and
/// callers fail fast, then lets a few trials through to detect recovery.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    state: Breaker,
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Result<Self, ConfigError> {
        if config.consecutive_failures == 0 {
            return Err(ConfigError::Invalid {
                field: "consecutive_failures",
                reason: "must be at least 1",
            });
        }
        if config.open_cooldown.is_zero() {
            return Err(ConfigError::Invalid {
                field: "open_cooldown",
                reason: "must be positive",
            });
        }
        if !(1..=BREAKER_TRIALS_MAX).contains(&config.half_open_trials_max) {
            return Err(ConfigError::Invalid {
                field: "half_open_trials_max",
                reason: "must be in 1..=BREAKER_TRIALS_MAX",
            });
        }
        Ok(Self {
            config,
            state: Breaker::Closed { failures: 0 },
        })
    }

    /// Asks to send one request at `now`; an allowed half-open request
    /// takes a trial slot until its outcome is recorded.
    pub fn try_acquire(&mut self, now: Instant) -> BreakerDecision {
        let cooldown = self.config.open_cooldown;
        match &mut self.state {
            Breaker::Closed { .. } => BreakerDecision::Allowed,
            Breaker::Open { until } if now < *until => BreakerDecision::Rejected {
                retry_after: *until - now,
            },
            Breaker::Open { .. } => {
                self.state = Breaker::HalfOpen {
                    trials_in_flight: 1,
                    since: now,
                };
                BreakerDecision::Allowed
            }
            Breaker::HalfOpen {
                trials_in_flight,
                since,
            } => {
                if *trials_in_flight < self.config.half_open_trials_max {
                    *trials_in_flight += 1;
                    return BreakerDecision::Allowed;
                }
                let window_end = *since + cooldown;
                if now < window_end {
                    return BreakerDecision::Rejected {
                        retry_after: window_end - now,
                    };
                }
                *trials_in_flight = 1;
                *since = now;
                BreakerDecision::Allowed
            }
        }
    }

    /// Whether [`try_acquire`](Self::try_acquire) would allow a request at
    /// `now`, without taking a slot: for building the eligible set.
    pub fn allows_request(&self, now: Instant) -> bool {
        match self.state {
            Breaker::Closed { .. } => true,
            Breaker::Open { until } => now >= until,
            Breaker::HalfOpen {
                trials_in_flight,
                since,
            } => {
                trials_in_flight < self.config.half_open_trials_max
                    || now >= since + self.config.open_cooldown
            }
        }
    }

    /// A request succeeded. Returns the new state if this closed the breaker.
    /// Outcomes arriving while open are of requests sent before it opened
    /// and are ignored.
    pub fn record_success(&mut self) -> Option<BreakerState> {
        match self.state {
            Breaker::Closed { .. } => {
                self.state = Breaker::Closed { failures: 0 };
                None
            }
            Breaker::Open { .. } => None,
            Breaker::HalfOpen { .. } => {
                self.state = Breaker::Closed { failures: 0 };
                Some(BreakerState::Closed)
            }
        }
    }

    /// A request failed at `now`. Returns the new state if this opened the
    /// breaker.
    pub fn record_failure(&mut self, now: Instant) -> Option<BreakerState> {
        let until = now + self.config.open_cooldown;
        match &mut self.state {
            Breaker::Closed { failures } => {
                *failures += 1;
                if *failures < self.config.consecutive_failures {
                    return None;
                }
            }
            Breaker::Open { .. } => return None,
            Breaker::HalfOpen { .. } => {}
        }
        self.state = Breaker::Open { until };
        Some(BreakerState::Open { until })
    }

    /// Closes the breaker whatever its state, for when the node is known to
    /// be back by other means than a trial request. Returns whether it was
    /// not already closed.
    pub fn close(&mut self) -> bool {
        let was_closed = matches!(self.state, Breaker::Closed { .. });
        self.state = Breaker::Closed { failures: 0 };
        !was_closed
    }

    /// The state at `now`: an open breaker whose cool-down has passed reads
    /// as half-open, since the next request will be a trial.
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            Breaker::Closed { .. } => BreakerState::Closed,
            Breaker::Open { until } if now < until => BreakerState::Open { until },
            Breaker::Open { .. } | Breaker::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Settings of a [`RetryBudget`]; the defaults are Envoy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryBudgetConfig {
    /// Retries in flight allowed as a percentage of active requests,
    /// `0..=100` (Envoy default 20).
    pub budget_percent: u32,
    /// Retries in flight always allowed, so a quiet gateway can still retry
    /// (Envoy default 3).
    pub min_retry_concurrency: u32,
}

impl Default for RetryBudgetConfig {
    fn default() -> Self {
        Self {
            budget_percent: 20,
            min_retry_concurrency: 3,
        }
    }
}

/// Envoy's retry budget: retries in flight may not exceed
/// `max(min_retry_concurrency, budget_percent % of active requests)`, so
/// when a backend fails broadly, retries add at most a fixed fraction of
/// load instead of multiplying it (a retry storm).
#[derive(Debug, Clone)]
pub struct RetryBudget {
    config: RetryBudgetConfig,
    requests_active: u32,
    retries_active: u32,
}

impl RetryBudget {
    /// A budget with nothing in flight.
    pub fn new(config: RetryBudgetConfig) -> Result<Self, ConfigError> {
        if config.budget_percent > 100 {
            return Err(ConfigError::Invalid {
                field: "budget_percent",
                reason: "must be at most 100",
            });
        }
        Ok(Self {
            config,
            requests_active: 0,
            retries_active: 0,
        })
    }

    /// A request attempt (first try or retry) began.
    pub fn on_request_start(&mut self) {
        self.requests_active = self.requests_active.saturating_add(1);
    }

    /// A request attempt ended; an end without a start is ignored.
    pub fn on_request_end(&mut self) {
        self.requests_active = self.requests_active.saturating_sub(1);
    }

    /// Asks to start a retry; on `true` it is counted as in flight until
    /// [`on_retry_end`](Self::on_retry_end).
    pub fn try_start_retry(&mut self) -> bool {
        if self.retries_active >= self.retries_allowed() {
            return false;
        }
        self.retries_active += 1;
        true
    }

    /// A retry ended; an end without a start is ignored.
    pub fn on_retry_end(&mut self) {
        self.retries_active = self.retries_active.saturating_sub(1);
    }

    /// Client requests in flight, which the allowance is a share of.
    pub fn requests_active(&self) -> u32 {
        self.requests_active
    }

    /// Most retries that may be in flight right now.
    pub fn retries_allowed(&self) -> u32 {
        let by_percent =
            u64::from(self.requests_active) * u64::from(self.config.budget_percent) / 100;
        // At most `requests_active`, as the percentage is at most 100.
        let by_percent = u32::try_from(by_percent).unwrap_or(u32::MAX);
        by_percent.max(self.config.min_retry_concurrency)
    }

    /// Retries in flight.
    pub fn retries_active(&self) -> u32 {
        self.retries_active
    }
}

/// Settings of a [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first wait; doubles each attempt.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
    /// Retries allowed, `1..=RETRY_ATTEMPTS_MAX`.
    pub attempts_max: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(20),
            cap: Duration::from_secs(2),
            attempts_max: 5,
        }
    }
}

/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential
/// Backoff and Jitter"): wait = random(0, min(cap, base · 2^attempt)).
/// Full jitter spreads retrying clients evenly over the window, so clients
/// that failed together do not retry together.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    config: BackoffConfig,
}

impl Backoff {
    /// A backoff schedule; `base` must be positive and at most `cap`.
    pub fn new(config: BackoffConfig) -> Result<Self, ConfigError> {
        if config.base.is_zero() || config.cap < config.base {
            return Err(ConfigError::Invalid {
                field: "base",
                reason: "must be positive and at most cap",
            });
        }
        if !(1..=RETRY_ATTEMPTS_MAX).contains(&config.attempts_max) {
            return Err(ConfigError::Invalid {
                field: "attempts_max",
                reason: "must be in 1..=RETRY_ATTEMPTS_MAX",
            });
        }
        Ok(Self { config })
    }

    /// The wait before retry number `attempt` (0-based), drawn from `rng`;
    /// `None` once `attempt` reaches `attempts_max`: give up.
    pub fn delay<R: Rng + ?Sized>(&self, attempt: u32, rng: &mut R) -> Option<Duration> {
        if attempt >= self.config.attempts_max {
            return None;
        }
        let ceiling_ns = u64::try_from(self.ceiling(attempt).as_nanos()).unwrap_or(u64::MAX);
        Some(Duration::from_nanos(rng.random_range(0..=ceiling_ns)))
    }

    /// The upper bound of the wait before retry `attempt`:
    /// `min(cap, base · 2^attempt)`, without overflow.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        2u32.checked_pow(attempt)
            .and_then(|factor| self.config.base.checked_mul(factor))
            .map_or(self.config.cap, |d| d.min(self.config.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn bucket(rate_per_s: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket::new(TokenBucketConfig { rate_per_s, burst }, now).unwrap()
    }

    #[test]
    fn token_bucket_allows_the_burst_then_limits_with_retry_after() {
        let t0 = Instant::now();
        let mut b = bucket(10, 3, t0);
        assert_eq!(b.tokens(t0), 3);
        for _ in 0..3 {
            assert_eq!(b.try_acquire(t0), RateDecision::Allowed);
        }
        assert_eq!(b.tokens(t0), 0);
        assert_eq!(
            b.try_acquire(t0),
            RateDecision::Limited {
                retry_after: ms(100)
            }
        );
        assert_eq!(
            b.try_acquire(t0 + ms(40)),
            RateDecision::Limited {
                retry_after: ms(60)
            }
        );
        // Waiting exactly `retry_after` is enough.
        assert_eq!(b.try_acquire(t0 + ms(100)), RateDecision::Allowed);
        assert!(matches!(
            b.try_acquire(t0 + ms(100)),
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn token_bucket_refills_at_the_rate_and_caps_at_the_burst() {
        let t0 = Instant::now();
        let mut b = bucket(100, 10, t0);
        let mut allowed = 0;
        // Polled every 0.1 ms for 10 s: fine polling must not lose refill.
        for i in 0..100_000u64 {
            if b.try_acquire(t0 + Duration::from_micros(100 * i)) == RateDecision::Allowed {
                allowed += 1;
            }
        }
        // The burst, plus one token per 10 ms over the 10 s that follow.
        assert_eq!(allowed, 10 + 999);
        let later = t0 + Duration::from_secs(3600);
        assert!(b.is_full(later));
        assert_eq!(b.tokens(later), 10);
    }

    #[test]
    fn token_bucket_rejects_zero_rate_or_burst() {
        let now = Instant::now();
        for (rate_per_s, burst) in [(0, 1), (1, 0)] {
            assert!(TokenBucket::new(TokenBucketConfig { rate_per_s, burst }, now).is_err());
        }
    }

    #[test]
    fn rate_limiter_isolates_clients() {
        let config = TokenBucketConfig {
            rate_per_s: 1,
            burst: 2,
        };
        let mut limiter = RateLimiter::new(config, 100).unwrap();
        let now = Instant::now();
        assert_eq!(limiter.check(&"alice", now), RateDecision::Allowed);
        assert_eq!(limiter.check(&"alice", now), RateDecision::Allowed);
        assert!(matches!(
            limiter.check(&"alice", now),
            RateDecision::Limited { .. }
        ));
        assert_eq!(limiter.check(&"bob", now), RateDecision::Allowed);
        assert_eq!(limiter.len(), 2);
    }

    #[test]
    fn rate_limiter_is_bounded_and_drops_full_buckets_first() {
        let config = TokenBucketConfig {
            rate_per_s: 1,
            burst: 5,
        };
        let mut limiter = RateLimiter::new(config, 3).unwrap();
        let t0 = Instant::now();
        limiter.check(&1u64, t0);
        limiter.check(&2u64, t0 + Duration::from_secs(1));
        limiter.check(&3u64, t0 + Duration::from_secs(4));
        // At 4.5 s clients 1 and 2 are full again (one token used, one second
        // to refill), client 3 is not: both full ones go, 3 stays.
        let t = t0 + Duration::from_millis(4_500);
        limiter.check(&4u64, t);
        assert_eq!(limiter.len(), 2);
        // Client 3 kept its state: 4 whole tokens, not a fresh 5.
        for _ in 0..4 {
            assert_eq!(limiter.check(&3u64, t), RateDecision::Allowed);
        }
        assert!(matches!(
            limiter.check(&3u64, t),
            RateDecision::Limited { .. }
        ));
    }

    #[test]
    fn rate_limiter_evicts_the_least_recently_seen_when_none_is_full() {
        let config = TokenBucketConfig {
            rate_per_s: 1,
            burst: 1,
        };
        let mut limiter = RateLimiter::new(config, 3).unwrap();
        let t0 = Instant::now();
        limiter.check(&"c", t0);
        limiter.check(&"a", t0 + ms(1));
        limiter.check(&"b", t0 + ms(2));
        limiter.check(&"d", t0 + ms(3));
        assert_eq!(limiter.len(), 3);
        // "c" (seen first) was evicted, so it starts with a fresh token;
        // "a" (still tracked until now) would have been limited.
        assert_eq!(limiter.check(&"c", t0 + ms(4)), RateDecision::Allowed);
        assert!(limiter.buckets.contains_key("b"));
        assert!(!limiter.buckets.contains_key("a"));
        assert_eq!(limiter.len(), 3);
    }

    #[test]
    fn rate_limiter_rejects_bad_limits() {
        let config = TokenBucketConfig {
            rate_per_s: 1,
            burst: 1,
        };
        assert!(RateLimiter::<u64>::new(config, 0).is_err());
        assert!(RateLimiter::<u64>::new(config, RATE_LIMITER_CLIENTS_MAX + 1).is_err());
        let bad = TokenBucketConfig {
            rate_per_s: 0,
            burst: 1,
        };
        assert!(RateLimiter::<u64>::new(bad, 10).is_err());
    }

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 3,
            open_cooldown: Duration::from_secs(10),
            half_open_trials_max: 2,
        })
        .unwrap()
    }

    #[test]
    fn breaker_opens_after_consecutive_failures() {
        let mut b = breaker();
        let t0 = Instant::now();
        assert_eq!(b.record_failure(t0), None);
        assert_eq!(b.record_failure(t0), None);
        let until = t0 + Duration::from_secs(10);
        assert_eq!(b.record_failure(t0), Some(BreakerState::Open { until }));
        assert_eq!(b.state(t0), BreakerState::Open { until });
        assert!(!b.allows_request(t0));
        assert_eq!(
            b.try_acquire(t0 + Duration::from_secs(4)),
            BreakerDecision::Rejected {
                retry_after: Duration::from_secs(6)
            }
        );
        // Outcomes of requests sent before it opened change nothing.
        assert_eq!(b.record_success(), None);
        assert_eq!(b.state(t0), BreakerState::Open { until });
    }

    #[test]
    fn breaker_success_resets_the_failure_count() {
        let mut b = breaker();
        let t0 = Instant::now();
        for _ in 0..10 {
            b.record_failure(t0);
            b.record_failure(t0);
            b.record_success();
        }
        assert_eq!(b.state(t0), BreakerState::Closed);
    }

    fn opened(b: &mut CircuitBreaker, t0: Instant) -> Instant {
        for _ in 0..3 {
            b.record_failure(t0);
        }
        t0 + Duration::from_secs(10)
    }

    #[test]
    fn breaker_half_open_allows_limited_trials_and_success_closes() {
        let mut b = breaker();
        let t0 = Instant::now();
        let reopen = opened(&mut b, t0);
        assert_eq!(b.state(reopen), BreakerState::HalfOpen);
        assert!(b.allows_request(reopen));
        assert_eq!(b.try_acquire(reopen), BreakerDecision::Allowed);
        assert_eq!(b.try_acquire(reopen), BreakerDecision::Allowed);
        assert!(!b.allows_request(reopen));
        assert!(matches!(
            b.try_acquire(reopen),
            BreakerDecision::Rejected { .. }
        ));
        assert_eq!(b.record_success(), Some(BreakerState::Closed));
        assert_eq!(b.try_acquire(reopen + ms(5)), BreakerDecision::Allowed);
    }

    #[test]
    fn breaker_half_open_failure_reopens() {
        let mut b = breaker();
        let t0 = Instant::now();
        let reopen = opened(&mut b, t0);
        assert_eq!(b.try_acquire(reopen), BreakerDecision::Allowed);
        let until = reopen + ms(5) + Duration::from_secs(10);
        assert_eq!(
            b.record_failure(reopen + ms(5)),
            Some(BreakerState::Open { until })
        );
        assert!(matches!(
            b.try_acquire(reopen + ms(6)),
            BreakerDecision::Rejected { .. }
        ));
    }

    #[test]
    fn breaker_lost_trials_do_not_wedge_it_half_open() {
        let mut b = breaker();
        let t0 = Instant::now();
        let reopen = opened(&mut b, t0);
        b.try_acquire(reopen);
        b.try_acquire(reopen);
        // Both trials were cancelled and never reported.
        let later = reopen + Duration::from_secs(10);
        assert!(b.allows_request(later));
        assert_eq!(b.try_acquire(later), BreakerDecision::Allowed);
    }

    #[test]
    fn breaker_rejects_bad_configuration() {
        let default = BreakerConfig::default();
        let bad = [
            BreakerConfig {
                consecutive_failures: 0,
                ..default
            },
            BreakerConfig {
                open_cooldown: Duration::ZERO,
                ..default
            },
            BreakerConfig {
                half_open_trials_max: 0,
                ..default
            },
            BreakerConfig {
                half_open_trials_max: BREAKER_TRIALS_MAX + 1,
                ..default
            },
        ];
        for config in bad {
            assert!(CircuitBreaker::new(config).is_err(), "{config:?}");
        }
    }

    #[test]
    fn retry_budget_allows_min_concurrency_when_quiet() {
        let mut budget = RetryBudget::new(RetryBudgetConfig::default()).unwrap();
        budget.on_request_start();
        assert!(budget.try_start_retry());
        assert!(budget.try_start_retry());
        assert!(budget.try_start_retry());
        assert!(!budget.try_start_retry());
        budget.on_retry_end();
        assert!(budget.try_start_retry());
        assert_eq!(budget.retries_active(), 3);
    }

    #[test]
    fn retry_budget_scales_with_active_requests() {
        let mut budget = RetryBudget::new(RetryBudgetConfig::default()).unwrap();
        for _ in 0..100 {
            budget.on_request_start();
        }
        assert_eq!(budget.retries_allowed(), 20);
        let granted = (0..50).filter(|_| budget.try_start_retry()).count();
        assert_eq!(granted, 20);
        // Load drops: no new retry until in-flight retries fall under the limit.
        for _ in 0..90 {
            budget.on_request_end();
        }
        assert_eq!(budget.retries_allowed(), 3);
        assert!(!budget.try_start_retry());
        for _ in 0..18 {
            budget.on_retry_end();
        }
        assert!(budget.try_start_retry());
        // Ends without starts cannot underflow.
        for _ in 0..100 {
            budget.on_request_end();
            budget.on_retry_end();
        }
        assert_eq!(budget.retries_active(), 0);
        assert_eq!(budget.retries_allowed(), 3);
    }

    #[test]
    fn retry_budget_rejects_over_100_percent() {
        let config = RetryBudgetConfig {
            budget_percent: 101,
            min_retry_concurrency: 0,
        };
        assert!(RetryBudget::new(config).is_err());
    }

    fn backoff() -> Backoff {
        Backoff::new(BackoffConfig {
            base: ms(10),
            cap: ms(1000),
            attempts_max: RETRY_ATTEMPTS_MAX,
        })
        .unwrap()
    }

    #[test]
    fn backoff_ceiling_doubles_until_the_cap() {
        let b = backoff();
        let ceilings: Vec<u64> = (0..10).map(|a| b.ceiling(a).as_millis() as u64).collect();
        assert_eq!(
            ceilings,
            vec![10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]
        );
        assert_eq!(b.ceiling(u32::MAX), ms(1000));
    }

    #[test]
    fn backoff_is_bounded_in_attempts() {
        let b = backoff();
        let mut rng = SmallRng::seed_from_u64(1);
        assert!(b.delay(RETRY_ATTEMPTS_MAX - 1, &mut rng).is_some());
        assert_eq!(b.delay(RETRY_ATTEMPTS_MAX, &mut rng), None);
    }

    #[test]
    fn backoff_full_jitter_spreads_over_the_whole_window() {
        let b = backoff();
        let mut rng = SmallRng::seed_from_u64(42);
        let draws: Vec<Duration> = (0..10_000).map(|_| b.delay(3, &mut rng).unwrap()).collect();
        assert!(draws.iter().all(|d| *d <= ms(80)));
        let mean_ms = draws.iter().map(|d| d.as_secs_f64() * 1000.0).sum::<f64>() / 10_000.0;
        assert!((mean_ms - 40.0).abs() < 2.0, "mean {mean_ms}");
        assert!(draws.iter().any(|d| *d < ms(4)));
        assert!(draws.iter().any(|d| *d > ms(76)));
    }

    #[test]
    fn backoff_is_deterministic_for_a_seed() {
        let b = backoff();
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            (0..RETRY_ATTEMPTS_MAX)
                .map(|a| b.delay(a, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(9), run(9));
        assert_ne!(run(9), run(10));
    }

    #[test]
    fn backoff_rejects_bad_configuration() {
        let default = BackoffConfig::default();
        let bad = [
            BackoffConfig {
                base: Duration::ZERO,
                ..default
            },
            BackoffConfig {
                cap: ms(1),
                ..default
            },
            BackoffConfig {
                attempts_max: 0,
                ..default
            },
            BackoffConfig {
                attempts_max: RETRY_ATTEMPTS_MAX + 1,
                ..default
            },
        ];
        for config in bad {
            assert!(Backoff::new(config).is_err(), "{config:?}");
        }
    }

    proptest! {
        /// Over any request pattern, a bucket allows at most
        /// `burst + rate · elapsed` requests.
        #[test]
        fn token_bucket_never_exceeds_burst_plus_rate(
            rate_per_s in 1u32..1000,
            burst in 1u32..50,
            gaps_us in prop::collection::vec(0u64..20_000, 1..500),
        ) {
            let t0 = Instant::now();
            let mut b = bucket(rate_per_s, burst, t0);
            let mut now = t0;
            let mut allowed = 0u64;
            for gap in gaps_us {
                now += Duration::from_micros(gap);
                if b.try_acquire(now) == RateDecision::Allowed {
                    allowed += 1;
                }
            }
            let elapsed_s = (now - t0).as_secs_f64();
            let bound = f64::from(burst) + f64::from(rate_per_s) * elapsed_s + 1e-6;
            prop_assert!(allowed as f64 <= bound, "{} > {}", allowed, bound);
        }

        /// A refused request's `retry_after` is exact: waiting it succeeds,
        /// waiting a nanosecond less does not.
        #[test]
        fn token_bucket_retry_after_is_exact(rate_per_s in 1u32..1000, burst in 1u32..10) {
            let t0 = Instant::now();
            let mut b = bucket(rate_per_s, burst, t0);
            for _ in 0..burst {
                prop_assert_eq!(b.try_acquire(t0), RateDecision::Allowed);
            }
            let RateDecision::Limited { retry_after } = b.try_acquire(t0) else {
                return Err(TestCaseError::fail("expected Limited"));
            };
            let mut early = b;
            let almost = retry_after - Duration::from_nanos(1);
            let early_refused = matches!(early.try_acquire(t0 + almost), RateDecision::Limited { .. });
            prop_assert!(early_refused);
            prop_assert_eq!(b.try_acquire(t0 + retry_after), RateDecision::Allowed);
        }

        /// Backoff delays never exceed their ceiling, and ceilings never
        /// shrink as attempts grow.
        #[test]
        fn backoff_delay_within_ceiling(seed in any::<u64>(), attempt in 0u32..RETRY_ATTEMPTS_MAX) {
            let b = backoff();
            let mut rng = SmallRng::seed_from_u64(seed);
            let delay = b.delay(attempt, &mut rng).unwrap();
            prop_assert!(delay <= b.ceiling(attempt));
            prop_assert!(b.ceiling(attempt) <= b.ceiling(attempt + 1));
        }
    }
}
