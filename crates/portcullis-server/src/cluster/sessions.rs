//! 2025-era sessions any replica can serve. Redis holds, per session, the `initialize`
//! parameters rmcp replays to restore it on another replica (its [`SessionStore`] hook),
//! its owner, log level and subscriptions, all expiring when the session idles; and two
//! sorted sets (all sessions, and each principal's) by expiry time, which the caps count.
//!
//! Keys, after the prefix: `s:{digest(id)}` (hash: `init`, `owner`, `owner_key`, `level`),
//! `s:{digest(id)}:subs` (set of URIs), `sessions` and `sessions:{digest(principal)}`
//! (sorted sets of session digests and reservations by expiry, milliseconds). Session ids
//! are bearer secrets of a kind: Redis holds only their digests (the owner's principal id
//! is kept as it is, to compare).
//!
//! The replica that holds a session's GET stream is the one that delivers its
//! notifications: every replica with a worker for the session follows the changes, and
//! only the one with the stream sends (see [`Cluster::holds_stream`]).

#![allow(
    deprecated,
    reason = "MCP logging is deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use rmcp::model::LoggingLevel;
use rmcp::transport::streamable_http_server::session::store::{
    SessionState, SessionStore, SessionStoreError,
};

use tokio_util::sync::CancellationToken;

use super::fanout::Message;
use super::{Cluster, Unavailable, digest};

/// Every script starts with Redis's clock, in milliseconds (the replicas' clocks do not
/// matter).
const NOW_MS: &str = "local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
";

fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{NOW_MS}{body}"))
}

static ADMIT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(ADMIT));
static BIND_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(BIND));
static TOUCH_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(TOUCH));
static FORGET_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| script(FORGET));

/// Takes a slot for a new session if the caps allow: 0 admitted, 1 the cluster is full,
/// 2 the principal has its most.
const ADMIT: &str = "
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[2]) then return 2 end
local till = now + tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], till, ARGV[3])
redis.call('ZADD', KEYS[2], till, ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 0
";

/// Turns a reservation into session `ARGV[2]` owned by `ARGV[3]`; 1 when rmcp did not
/// store the session's `initialize` (no other replica could restore it).
const BIND: &str = "
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HEXISTS', KEYS[3], 'init') == 0 then return 1 end
local till = now + tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], till, ARGV[2])
redis.call('ZADD', KEYS[2], till, ARGV[2])
redis.call('HSET', KEYS[3], 'owner', ARGV[3], 'owner_key', KEYS[2])
redis.call('PEXPIRE', KEYS[3], ARGV[4])
if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[2], ARGV[4]) end
return 0
";

/// The owner of session `ARGV[2]` (nil when it does not exist or expired), keeping it
/// alive for another idle period when `ARGV[3]` is its owner.
const TOUCH: &str = "
local owner = redis.call('HGET', KEYS[2], 'owner')
if not owner then return false end
if owner ~= ARGV[3] then return owner end
local mine = redis.call('HGET', KEYS[2], 'owner_key')
local till = now + tonumber(ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
redis.call('ZADD', KEYS[1], till, ARGV[2])
if mine then
  redis.call('ZADD', mine, till, ARGV[2])
  if redis.call('PTTL', mine) < tonumber(ARGV[1]) then redis.call('PEXPIRE', mine, ARGV[1]) end
end
return owner
";

/// Removes session `ARGV[1]` everywhere.
const FORGET: &str = "
local mine = redis.call('HGET', KEYS[2], 'owner_key')
redis.call('ZREM', KEYS[1], ARGV[1])
if mine then redis.call('ZREM', mine, ARGV[1]) end
redis.call('DEL', KEYS[2], KEYS[3])
return 0
";

/// Where a 2025 session's state lives on this replica, shared with its handler.
#[derive(Debug, Default)]
pub(crate) struct SessionLink {
    pub(crate) subscriptions: Arc<Mutex<HashSet<String>>>,
    pub(crate) log_level: Arc<Mutex<Option<LoggingLevel>>>,
}

/// This replica's side: the sessions it runs a worker for (by digest, with the token that
/// stops their change listener) and the GET streams it holds.
#[derive(Default)]
pub(super) struct Local {
    links: Mutex<HashMap<String, (Weak<SessionLink>, CancellationToken)>>,
    streams: Mutex<HashMap<String, usize>>,
}

/// The transport's promise of a new session's id, for the handler serving its
/// `initialize`: kept when the session is made and bound in Redis.
#[derive(Debug, Clone)]
pub(crate) struct SessionTicket(tokio::sync::watch::Receiver<Option<String>>);

/// The transport's side of a [`SessionTicket`].
pub(crate) struct TicketSender(tokio::sync::watch::Sender<Option<String>>);

impl SessionTicket {
    pub(crate) fn new() -> (TicketSender, Self) {
        let (tx, rx) = tokio::sync::watch::channel(None);
        (TicketSender(tx), Self(rx))
    }

    /// The session's id, once made (`None` if it never was).
    pub(crate) async fn id(&self) -> Option<String> {
        let mut rx = self.0.clone();
        let waited = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(Option::is_some));
        match waited.await {
            Ok(Ok(id)) => id.clone(),
            _ => None,
        }
    }
}

impl TicketSender {
    pub(crate) fn keep(&self, id: &str) {
        let _ = self.0.send(Some(id.to_owned()));
    }
}

/// A GET stream of a session held open on this replica; dropped when the stream ends.
pub(crate) struct StreamHeld {
    cluster: Arc<Cluster>,
    id: String,
    /// Keeps the session alive in Redis while only its stream is open.
    keep_alive: tokio::task::AbortHandle,
}

impl Drop for StreamHeld {
    fn drop(&mut self) {
        self.keep_alive.abort();
        let mut streams = self
            .cluster
            .sessions
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = streams.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                streams.remove(&self.id);
            }
        }
    }
}

/// What a cap said to a new session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Admitted,
    ClusterFull,
    PrincipalFull,
}

/// Session ids as rmcp makes them (UUIDs); anything else is not looked up.
pub(crate) fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Cluster {
    fn session_keys(&self, id: &str) -> (String, String) {
        let id = digest(id);
        (self.key(&["s", &id]), self.key(&["s", &id, "subs"]))
    }

    fn all_sessions(&self) -> String {
        self.key(&["sessions"])
    }

    fn sessions_of(&self, principal: &str) -> String {
        self.key(&["sessions", &digest(principal)])
    }

    async fn script<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        script: &redis::Script,
        keys: &[&str],
        args: &[&str],
    ) -> Result<T, Unavailable> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(*key);
        }
        for arg in args {
            invocation.arg(*arg);
        }
        let mut conn = self.conn.clone();
        self.run(
            op,
            async move { invocation.invoke_async::<T>(&mut conn).await },
        )
        .await
    }

    /// Reserves a slot for a new session of `principal` (held `hold` until bound).
    pub(crate) async fn admit(
        &self,
        principal: &str,
        reservation: &str,
        max_total: usize,
        max_per_principal: usize,
        hold: Duration,
        idle: Duration,
    ) -> Result<Admission, Unavailable> {
        let answer: i64 = self
            .script(
                "session_admit",
                &ADMIT_SCRIPT,
                &[&self.all_sessions(), &self.sessions_of(principal)],
                &[
                    &max_total.to_string(),
                    &max_per_principal.to_string(),
                    reservation,
                    &hold.as_millis().to_string(),
                    &(hold + idle).as_millis().to_string(),
                ],
            )
            .await?;
        Ok(match answer {
            0 => Admission::Admitted,
            1 => Admission::ClusterFull,
            _ => Admission::PrincipalFull,
        })
    }

    /// Turns `reservation` into session `id` of `principal`.
    pub(crate) async fn bind(
        &self,
        principal: &str,
        reservation: &str,
        id: &str,
        idle: Duration,
    ) -> Result<(), Unavailable> {
        let (hash, _) = self.session_keys(id);
        let stored: i64 = self
            .script(
                "session_bind",
                &BIND_SCRIPT,
                &[&self.all_sessions(), &self.sessions_of(principal), &hash],
                &[
                    reservation,
                    &digest(id),
                    principal,
                    &idle.as_millis().to_string(),
                ],
            )
            .await?;
        if stored != 0 {
            return Err(Unavailable {
                op: "session_bind",
                message: "the session's initialize parameters were not stored".to_owned(),
            });
        }
        Ok(())
    }

    /// Gives back a reservation no session was made for.
    pub(crate) async fn release(&self, principal: &str, reservation: &str) {
        let mut conn = self.conn.clone();
        let (all, mine) = (self.all_sessions(), self.sessions_of(principal));
        let _ = self
            .run("session_release", async move {
                redis::pipe()
                    .zrem(all, reservation)
                    .zrem(mine, reservation)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }

    /// The owner of session `id`, keeping it alive if `principal` owns it; `None` when it
    /// does not exist (never did, was deleted, or idled out).
    pub(crate) async fn touch(
        &self,
        id: &str,
        principal: &str,
        idle: Duration,
    ) -> Result<Option<String>, Unavailable> {
        let (hash, subs) = self.session_keys(id);
        self.script(
            "session_touch",
            &TOUCH_SCRIPT,
            &[&self.all_sessions(), &hash, &subs],
            &[&idle.as_millis().to_string(), &digest(id), principal],
        )
        .await
    }

    /// Removes session `id` (deleted by its client); every replica serving it stops
    /// following it.
    pub(crate) async fn forget(&self, id: &str) -> Result<(), Unavailable> {
        let (hash, subs) = self.session_keys(id);
        self.script::<i64>(
            "session_forget",
            &FORGET_SCRIPT,
            &[&self.all_sessions(), &hash, &subs],
            &[&digest(id)],
        )
        .await?;
        let payload = Message::Closed {
            session: digest(id),
        }
        .encode();
        self.publish(payload).await.map(|_| ())
    }

    /// Follows (or stops following) `uri` for session `id`, on every replica.
    pub(crate) async fn subscribe(&self, id: &str, uri: &str, on: bool) -> Result<(), Unavailable> {
        let (_, subs) = self.session_keys(id);
        let message = Message::Subscription {
            from: self.replica.clone(),
            session: digest(id),
            uri: uri.to_owned(),
            on,
        };
        let channel = self.channel();
        let payload = message.encode();
        let idle = self.session_idle_ms();
        let mut conn = self.conn.clone();
        self.run("session_subscribe", async move {
            let mut pipe = redis::pipe();
            pipe.atomic();
            if on {
                pipe.sadd(&subs, uri);
            } else {
                pipe.srem(&subs, uri);
            }
            pipe.pexpire(&subs, idle);
            pipe.publish(channel, payload);
            pipe.query_async::<()>(&mut conn).await
        })
        .await
    }

    /// Sets session `id`'s log level, on every replica.
    pub(crate) async fn set_level(&self, id: &str, level: LoggingLevel) -> Result<(), Unavailable> {
        let (hash, _) = self.session_keys(id);
        let text = serde_json::to_value(level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let message = Message::Level {
            from: self.replica.clone(),
            session: digest(id),
            level: text.clone(),
        };
        let channel = self.channel();
        let payload = message.encode();
        let idle = self.session_idle_ms();
        let mut conn = self.conn.clone();
        self.run("session_level", async move {
            redis::pipe()
                .atomic()
                .hset(&hash, "level", text)
                .pexpire(&hash, idle)
                .publish(channel, payload)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    /// Registers the state of session `id` served here, filled from Redis (a session
    /// restored on this replica keeps its log level and subscriptions), and kept in step
    /// with what other replicas change; `stop` ends its change listener when the session
    /// is deleted elsewhere. The link lives as long as the caller keeps it.
    pub(crate) async fn link(
        &self,
        id: &str,
        link: &Arc<SessionLink>,
        stop: CancellationToken,
    ) -> Result<(), Unavailable> {
        // Registered first, loaded second: a change made elsewhere in between arrives as a
        // message, one made before is in what is loaded.
        self.sessions
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(digest(id), (Arc::downgrade(link), stop));
        let (hash, subs) = self.session_keys(id);
        let mut conn = self.conn.clone();
        let (level, uris): (Option<String>, Vec<String>) = self
            .run("session_load", async move {
                redis::pipe()
                    .hget(&hash, "level")
                    .smembers(&subs)
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        if let Some(level) = level.and_then(|l| serde_json::from_value(l.into()).ok()) {
            let mut current = link
                .log_level
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            current.get_or_insert(level);
        }
        let mut subscriptions = link
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for uri in uris {
            if subscriptions.len() >= crate::limits::MAX_SUBSCRIPTIONS {
                break;
            }
            subscriptions.insert(uri);
        }
        Ok(())
    }

    /// Reloads every local session's subscriptions and log level from Redis (after this
    /// replica was not listening, and missed what others changed).
    pub(super) async fn resync(&self) {
        let links: Vec<(String, Arc<SessionLink>)> = self
            .sessions
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|(digest, (link, _))| Some((digest.clone(), link.upgrade()?)))
            .collect();
        for (digest, link) in links {
            let (hash, subs) = (self.key(&["s", &digest]), self.key(&["s", &digest, "subs"]));
            let mut conn = self.conn.clone();
            let loaded: Result<(Option<String>, Vec<String>), _> = self
                .run("session_load", async move {
                    redis::pipe()
                        .hget(&hash, "level")
                        .smembers(&subs)
                        .query_async(&mut conn)
                        .await
                })
                .await;
            let Ok((level, uris)) = loaded else {
                return;
            };
            if let Some(level) = level.and_then(|l| serde_json::from_value(l.into()).ok()) {
                *link
                    .log_level
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(level);
            }
            *link
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = uris
                .into_iter()
                .take(crate::limits::MAX_SUBSCRIPTIONS)
                .collect();
        }
    }

    /// Forgets the local state of session `id` (its worker here ended), unless a newer
    /// worker's state has taken its place.
    pub(crate) fn unlink(&self, id: &str, state: &Arc<SessionLink>) {
        let mut links = self
            .sessions
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let key = digest(id);
        if links
            .get(&key)
            .is_some_and(|(link, _)| std::ptr::eq(link.as_ptr(), Arc::as_ptr(state)))
        {
            links.remove(&key);
        }
        links.retain(|_, (link, _)| link.strong_count() > 0);
    }

    /// The local entry of a session (by digest): its state and the token of its listener.
    fn entry(&self, session: &str) -> Option<(Weak<SessionLink>, CancellationToken)> {
        self.sessions
            .links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(session)
            .cloned()
    }

    /// Applies another replica's change to a session (by digest) served here too.
    pub(super) fn apply(&self, session: &str, change: impl FnOnce(&SessionLink)) {
        if let Some(link) = self.entry(session).and_then(|(link, _)| link.upgrade()) {
            change(&link);
        }
    }

    /// Stops following session `session` (by digest): it was deleted elsewhere.
    pub(super) fn closed(&self, session: &str) {
        if let Some((_, stop)) = self.entry(session) {
            stop.cancel();
        }
    }

    /// Marks a GET stream of session `id` (owned by `principal`) as open here until the
    /// guard is dropped, keeping the session alive in Redis meanwhile.
    pub(crate) fn stream_opened(
        self: &Arc<Self>,
        id: &str,
        principal: &str,
        idle: Duration,
    ) -> StreamHeld {
        *self
            .sessions
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(digest(id))
            .or_default() += 1;
        let (cluster, session, owner) = (Arc::downgrade(self), id.to_owned(), principal.to_owned());
        let keep_alive = tokio::spawn(async move {
            let mut tick = tokio::time::interval((idle / 3).max(Duration::from_secs(1)));
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(cluster) = cluster.upgrade() else {
                    return;
                };
                let _ = cluster.touch(&session, &owner, idle).await;
            }
        })
        .abort_handle();
        StreamHeld {
            cluster: Arc::clone(self),
            id: digest(id),
            keep_alive,
        }
    }

    /// Whether this replica holds a GET stream of session `id` (and so delivers its
    /// notifications).
    pub(crate) fn holds_stream(&self, id: &str) -> bool {
        self.sessions
            .streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(&digest(id))
    }
}

/// rmcp's session store hook on Redis: the `initialize` parameters of every session, so
/// any replica can restore it.
pub(crate) struct RedisSessions {
    pub(crate) cluster: Arc<Cluster>,
}

#[async_trait::async_trait]
impl SessionStore for RedisSessions {
    async fn load(&self, session_id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        if !plausible_id(session_id) {
            return Ok(None);
        }
        let (hash, _) = self.cluster.session_keys(session_id);
        let mut conn = self.cluster.conn.clone();
        let init: Option<String> = self
            .cluster
            .run("session_load", async move {
                redis::cmd("HGET")
                    .arg(&hash)
                    .arg("init")
                    .query_async(&mut conn)
                    .await
            })
            .await?;
        Ok(init
            .map(|json| serde_json::from_str(&json))
            .transpose()?
            .map(SessionState::new))
    }

    async fn store(&self, session_id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        let (hash, _) = self.cluster.session_keys(session_id);
        let json = serde_json::to_string(&state.initialize_params)?;
        let idle = self.cluster.session_idle_ms();
        let mut conn = self.cluster.conn.clone();
        self.cluster
            .run("session_store", async move {
                redis::pipe()
                    .atomic()
                    .hset(&hash, "init", json)
                    .pexpire(&hash, idle)
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn delete(&self, session_id: &str) -> Result<(), SessionStoreError> {
        Ok(self.cluster.forget(session_id).await?)
    }
}
