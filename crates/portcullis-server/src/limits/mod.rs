//! Rate limits: token buckets (GCRA, from `governor`) keyed by principal, principal × tool,
//! or client IP. The store sits behind [`RateLimitStore`] so a shared (Redis) store can
//! replace the in-memory one for many replicas.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use portcullis_config::RateLimit;

/// A keyed rate limit.
pub trait RateLimitStore: Send + Sync + 'static {
    /// Takes one token for `key`; `Err` carries how long until one is available.
    fn check(&self, key: &str) -> Result<(), Duration>;
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

impl RateLimitStore for LocalRateLimiter {
    fn check(&self, key: &str) -> Result<(), Duration> {
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

/// Whole seconds to put in `Retry-After` (at least 1).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}
