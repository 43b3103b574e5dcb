//! Many replicas on one Redis: shared rate limits (GCRA in a script, one round trip per
//! check), 2025-era sessions any replica can serve (owner, caps, idle expiry, the
//! `initialize` parameters rmcp replays, log level and subscriptions), and change
//! notifications fanned out through pub/sub, each announced once.
//!
//! Every Redis command goes through [`Cluster::run`]: bounded by `cluster.timeout_ms`,
//! timed and counted (`portcullis_redis_duration_seconds`, `portcullis_redis_errors_total`),
//! and remembered for `/readyz`. What a request does while Redis is unreachable is decided
//! per concern by the caller: rate limits by `*_limits_when_down`, sessions refuse with 503,
//! notifications are delivered on this replica only.

mod fanout;
mod limits;
mod sessions;
mod tasks;
pub(crate) use tasks::NewTask;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use portcullis_config::{ClusterSection, FailMode};
use redis::aio::ConnectionManager;
use tokio::sync::broadcast;

pub use limits::SharedLimiter;
pub(crate) use sessions::{Admission, RedisSessions, SessionLink, SessionTicket, plausible_id};

use crate::catalog::Published;

/// The connection to the shared state, one per process.
pub struct Cluster {
    client: redis::Client,
    conn: ConnectionManager,
    prefix: String,
    replica: String,
    timeout: Duration,
    pub(crate) unauthenticated_when_down: FailMode,
    pub(crate) authenticated_when_down: FailMode,
    /// Whether the last command failed (Redis counts as down until one succeeds).
    down: AtomicBool,
    /// While Redis is down, commands fail at once until this instant (milliseconds since
    /// `epoch`), then one goes through to see whether it is back: a hanging Redis costs
    /// each request its timeout only once in a while, not on every check.
    retry_at_ms: AtomicU64,
    epoch: Instant,
    /// Idle time of a 2025 session (`limits.session_idle_secs`), for the keys that follow
    /// its life.
    session_idle_ms: AtomicU64,
    connect_timeout: Duration,
    /// Changes to deliver to this replica's subscribers: every replica's, from pub/sub,
    /// or while Redis is down this replica's own.
    deliveries: broadcast::Sender<Published>,
    /// Whether the pub/sub subscription is live (otherwise changes are delivered locally).
    listening: AtomicBool,
    sessions: sessions::Local,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("replica", &self.replica)
            .finish_non_exhaustive()
    }
}

/// Redis could not be reached in time (or answered an error); the message is for logs.
#[derive(Debug, thiserror::Error)]
#[error("redis {op}: {message}")]
pub struct Unavailable {
    op: &'static str,
    message: String,
}

impl Cluster {
    /// Connects lazily to `section.redis_url` (the first command connects) and starts
    /// listening for other replicas' notifications. `None` without a `redis_url`.
    pub fn start(section: &ClusterSection) -> Result<Option<Arc<Self>>, crate::SetupError> {
        let Some(url) = &section.redis_url else {
            return Ok(None);
        };
        let client = redis::Client::open(url.expose()).map_err(|e| {
            crate::SetupError::setting("cluster.redis_url", format_args!("{:?}", e.kind()))
        })?;
        let timeout = Duration::from_millis(section.timeout_ms);
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(section.connect_timeout_ms)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn =
            ConnectionManager::new_lazy_with_config(client.clone(), config).map_err(|e| {
                crate::SetupError::setting("cluster.redis_url", format_args!("{:?}", e.kind()))
            })?;
        let cluster = Arc::new(Self {
            client,
            conn,
            prefix: section.key_prefix.clone(),
            replica: section.replica.clone().unwrap_or_else(crate::host_name),
            timeout,
            unauthenticated_when_down: section.unauthenticated_limits_when_down,
            authenticated_when_down: section.authenticated_limits_when_down,
            down: AtomicBool::new(false),
            retry_at_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            session_idle_ms: AtomicU64::new(300_000),
            connect_timeout: Duration::from_millis(section.connect_timeout_ms),
            deliveries: broadcast::channel(1024).0,
            listening: AtomicBool::new(false),
            sessions: sessions::Local::default(),
        });
        tokio::spawn(fanout::listen(Arc::downgrade(&cluster)));
        Ok(Some(cluster))
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.replica
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut key = self.prefix.clone();
        key.push_str(&parts.join(":"));
        key
    }

    /// Claims `name` once across every replica for `ttl` (`SET NX PX`): `Ok(true)` for the
    /// first claim, `Ok(false)` when it was claimed already. An approval's `requestState`
    /// is used once this way.
    pub(crate) async fn claim_once(&self, name: &str, ttl: Duration) -> Result<bool, Unavailable> {
        let key = self.key(&["once", name]);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut conn = self.conn.clone();
        let answer: Option<String> = self
            .run("claim_once", async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg("1")
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl_ms)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(answer.is_some())
    }

    /// The idle time of 2025 sessions (set by the HTTP transport).
    pub(crate) fn set_session_idle(&self, idle: Duration) {
        self.session_idle_ms.store(
            u64::try_from(idle.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn session_idle_ms(&self) -> i64 {
        i64::try_from(self.session_idle_ms.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs one Redis round trip, bounded, timed and counted.
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, Unavailable>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if self.down.load(Ordering::Relaxed) && !self.claim_probe() {
            metrics::counter!("portcullis_redis_errors_total", "op" => op).increment(1);
            return Err(Unavailable {
                op,
                message: "redis is down; not retried yet".to_owned(),
            });
        }
        let started = Instant::now();
        // The connection's own response timeout (`timeout`) fires first and lets it
        // reconnect; this one is the backstop.
        let result = tokio::time::timeout(self.timeout * 2, f).await;
        metrics::histogram!("portcullis_redis_duration_seconds", "op" => op)
            .record(started.elapsed().as_secs_f64());
        let (failure, unreachable) = match result {
            Ok(Ok(value)) => {
                if self.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(op, "redis reachable again");
                }
                return Ok(value);
            }
            // Only a connection that fails makes Redis "down" for everyone; an error reply
            // (out of memory, read-only replica, a script error) fails this command alone.
            Ok(Err(e)) => (
                e.to_string(),
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal(),
            ),
            Err(_) => (
                format!("no answer within {} ms", (self.timeout * 2).as_millis()),
                true,
            ),
        };
        metrics::counter!("portcullis_redis_errors_total", "op" => op).increment(1);
        if unreachable {
            self.retry_at_ms
                .store(self.now_ms() + 500, Ordering::Relaxed);
            if !self.down.swap(true, Ordering::Relaxed) {
                tracing::error!(op, error = %failure, "redis unreachable: shared rate limits, sessions and notifications degrade as configured");
            }
        } else {
            tracing::warn!(op, error = %failure, "redis refused a command");
        }
        Err(Unavailable {
            op,
            message: failure,
        })
    }

    /// While Redis is down: whether this command is the one let through to see whether it
    /// is back (at most one every 500 ms; every other fails at once).
    fn claim_probe(&self) -> bool {
        let now = self.now_ms();
        let retry_at = self.retry_at_ms.load(Ordering::Relaxed);
        now >= retry_at
            && self
                .retry_at_ms
                .compare_exchange(retry_at, now + 500, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    /// Whether the last attempt found Redis unreachable.
    pub(crate) fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// What `/readyz` warns of: Redis unreachable (this replica still serves, degraded).
    pub fn warning(&self) -> Option<String> {
        if self.down.load(Ordering::Relaxed) {
            Some("redis unreachable: rate limits as configured when down, 2025-era sessions refused (503), notifications reach this replica's subscribers only".to_owned())
        } else if !self.listening.load(Ordering::Relaxed) {
            Some(
                "not subscribed to redis: notifications reach this replica's subscribers only"
                    .to_owned(),
            )
        } else {
            None
        }
    }

    /// Checks Redis with a `PING` (for `/readyz`).
    pub async fn ping(&self) -> Result<(), Unavailable> {
        let mut conn = self.conn.clone();
        self.run("ping", async move {
            redis::cmd("PING").query_async::<String>(&mut conn).await
        })
        .await
        .map(|_| ())
    }

    /// Changes to deliver to this replica's subscribers.
    pub(crate) fn deliveries(&self) -> broadcast::Receiver<Published> {
        self.deliveries.subscribe()
    }
}

/// Hex SHA-256 of `value`, cut to 32 characters: a key part of bounded length that shows
/// nothing of a principal's name or a client's address.
fn digest(value: &str) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(value.as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}
