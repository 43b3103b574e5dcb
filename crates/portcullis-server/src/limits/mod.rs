//! Rate limits: token buckets (GCRA) keyed by principal, principal × tool, or client IP.
//! One replica keeps them in memory (`governor`); many share them in Redis
//! (`cluster::SharedLimiter`, a layer above), behind the same [`RateLimitStore`].
//! Concurrency caps per principal (requests in flight, streams) are [`Slots`].

/// The ceiling of `limits.max_subscriptions` (the cluster's per-session bound, for a
/// session another replica serves).
pub(crate) const MAX_SUBSCRIPTIONS: usize = portcullis_config::MAX_SUBSCRIPTIONS;

mod slots;

pub use slots::{Slot, Slots};

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use portcullis_config::RateLimit;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the limit: a token is available after this long (429, `-32029`).
    Wait(Duration),
    /// The shared buckets are unreachable and the limit fails closed (503).
    Unavailable,
}

/// A keyed rate limit.
#[async_trait::async_trait]
pub trait RateLimitStore: Send + Sync + 'static {
    /// Takes one token for `key`.
    async fn check(&self, key: &str) -> Result<(), Refusal>;
}

/// In-memory keyed token buckets for one replica.
pub struct LocalRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl LocalRateLimiter {
    /// Buckets of `limit.burst` tokens refilled at `limit.per_minute`.
    pub fn new(limit: RateLimit) -> Self {
        let per_minute = NonZeroU32::new(limit.per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = limit.effective_burst();
        let quota = Quota::per_minute(per_minute)
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            limiter: RateLimiter::keyed(quota),
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        }
    }
}

impl LocalRateLimiter {
    /// Takes one token for `key`; `Err` carries how long until one is available.
    pub fn take(&self, key: &str) -> Result<(), Duration> {
        // Forget idle keys now and then so a flood of distinct keys (IPs) cannot grow memory
        // without bound.
        if self.checks.fetch_add(1, Ordering::Relaxed) % 4096 == 4095 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&key.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[async_trait::async_trait]
impl RateLimitStore for LocalRateLimiter {
    async fn check(&self, key: &str) -> Result<(), Refusal> {
        self.take(key).map_err(Refusal::Wait)
    }
}

pub(crate) use crate::error::retry_after_secs;
