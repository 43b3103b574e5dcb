//! Rate limits shared by every replica: GCRA (the same algorithm `governor` runs in memory)
//! in one Lua script per check, timed by Redis's own clock so the replicas' clocks do not
//! matter.

use std::sync::Arc;
use std::time::Duration;

use portcullis_config::{FailMode, RateLimit};

use super::Cluster;
use crate::limits::{LocalRateLimiter, RateLimitStore, Refusal};

/// One round trip: reads the bucket's theoretical arrival time, admits or says how long to
/// wait (microseconds), and stores the new time with an expiry so idle buckets vanish.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return allow_at - now end
local new_tat = tat + emission
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
";

/// A keyed limit whose buckets live in Redis; while Redis is unreachable it fails open
/// (this replica's own buckets) or closed, as configured.
pub struct SharedLimiter {
    cluster: Arc<Cluster>,
    /// Which limit (`ip`, `principal`, `item`): its buckets are its own.
    namespace: &'static str,
    emission_us: u64,
    tolerance_us: u64,
    when_down: FailMode,
    local: LocalRateLimiter,
    script: redis::Script,
}

impl SharedLimiter {
    /// `limit` shared through `cluster` under `namespace`.
    pub fn new(
        cluster: Arc<Cluster>,
        namespace: &'static str,
        limit: RateLimit,
        when_down: FailMode,
    ) -> Self {
        let emission_us = 60_000_000 / u64::from(limit.per_minute.max(1));
        let burst = u64::from(limit.effective_burst().max(1));
        Self {
            cluster,
            namespace,
            emission_us,
            tolerance_us: emission_us * (burst - 1),
            when_down,
            local: LocalRateLimiter::new(limit),
            script: redis::Script::new(GCRA),
        }
    }
}

#[async_trait::async_trait]
impl RateLimitStore for SharedLimiter {
    async fn check(&self, key: &str) -> Result<(), Refusal> {
        let redis_key = self
            .cluster
            .key(&["rl", self.namespace, &super::digest(key)]);
        let mut conn = self.cluster.conn.clone();
        let mut invocation = self.script.key(redis_key);
        invocation.arg(self.emission_us).arg(self.tolerance_us);
        let answer = self
            .cluster
            .run("rate_limit", async move {
                invocation.invoke_async::<i64>(&mut conn).await
            })
            .await;
        match answer {
            Ok(0) => Ok(()),
            Ok(wait_us) => Err(Refusal::Wait(Duration::from_micros(
                u64::try_from(wait_us).unwrap_or(1),
            ))),
            Err(_) => match self.when_down {
                FailMode::Open => self.local.take(key).map_err(Refusal::Wait),
                FailMode::Closed => Err(Refusal::Unavailable),
            },
        }
    }
}
