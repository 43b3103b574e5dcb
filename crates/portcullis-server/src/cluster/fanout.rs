//! Change notifications across replicas, through one pub/sub channel (`{prefix}events`).
//!
//! Each catalog's changes are relayed to the channel ([`Cluster::relay`]); every replica
//! delivers what the channel carries to its own subscribers, its own changes included, so
//! each subscriber hears each change once whichever replica saw it. Replicas watching the
//! same files all see the same change: a claim key per change (its URI and version, or for
//! a change without a version its kind and URI for a moment) lets one of them announce
//! it. While Redis is unreachable, changes are delivered on the replica that saw them.
//!
//! The channel also carries the subscriptions and log levels of 2025 sessions, so that
//! every replica serving a session knows them.

use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock, PoisonError, Weak};
use std::time::Duration;

use futures::StreamExt as _;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;

use super::{Cluster, digest};
use crate::catalog::{Catalog, Published, ResourceChange};

/// How often each replica checks that the channel still carries its own messages.
const HEARTBEAT: Duration = Duration::from_secs(2);

/// How long a version's claim is kept (replicas see a shared file change within it).
const CLAIM_VERSION_MS: u64 = 60_000;
/// How long a change without a version stays claimed: the same change seen by several
/// replicas within this window is announced once.
const CLAIM_MOMENT_MS: u64 = 500;

/// Publishes `ARGV[1]` unless the change was already claimed.
static CLAIM_AND_PUBLISH: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        "if redis.call('SET', KEYS[1], '1', 'NX', 'PX', ARGV[2]) then
  return redis.call('PUBLISH', KEYS[2], ARGV[1])
end
return -1",
    )
});

/// What travels on the channel.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(super) enum Message {
    Updated {
        uri: String,
    },
    UpdatedUnder {
        prefix: String,
    },
    ListChanged {
        pack: Option<String>,
    },
    Subscription {
        from: String,
        session: String,
        uri: String,
        on: bool,
    },
    Level {
        from: String,
        session: String,
        level: String,
    },
    /// A session (by digest) was deleted: every replica stops following it.
    Closed {
        session: String,
    },
    /// Each replica hears its own now and then, or reconnects: a half-open subscription
    /// must not silence the notifications.
    Heartbeat {
        from: String,
    },
}

impl Message {
    pub(super) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn of(change: &ResourceChange) -> Self {
        match change {
            ResourceChange::Updated(uri) => Self::Updated { uri: uri.clone() },
            ResourceChange::UpdatedUnder(prefix) => Self::UpdatedUnder {
                prefix: prefix.clone(),
            },
            ResourceChange::ListChanged { pack } => Self::ListChanged { pack: pack.clone() },
        }
    }
}

impl Cluster {
    pub(super) fn channel(&self) -> String {
        self.key(&["events"])
    }

    /// Relays `catalog`'s changes to every replica for as long as the catalog serves.
    pub fn relay(self: &Arc<Self>, catalog: &Catalog) {
        let mut changes = catalog.changes().subscribe();
        let cluster = Arc::clone(self);
        catalog.spawn(async move {
            loop {
                match changes.recv().await {
                    Ok(published) => cluster.announce(published).await,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(
                            missed,
                            "changes were published faster than relayed; some were lost"
                        );
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    /// Publishes `payload` on the channel (through `run`).
    pub(super) async fn publish(&self, payload: String) -> Result<i64, super::Unavailable> {
        let (channel, mut conn) = (self.channel(), self.conn.clone());
        self.run("publish", async move {
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut conn)
                .await
        })
        .await
    }

    /// Claims and publishes one change; delivered here directly when it cannot be.
    async fn announce(&self, published: Published) {
        if self.listening.load(Ordering::Relaxed) {
            let message = Message::of(&published.change);
            let payload = message.encode();
            // An update with its version is claimed by that version; "re-list" and "re-read
            // below" changes for a moment (several within it mean the same). An update
            // without a version is always announced: two real changes must not merge into
            // one, and a duplicate only makes a client read twice.
            let claim = match (&published.version, &published.change) {
                (Some(version), ResourceChange::Updated(uri)) => Some((
                    self.key(&["claim", &digest(&format!("{uri}\0{version}"))]),
                    CLAIM_VERSION_MS,
                )),
                (None, ResourceChange::Updated(_)) => None,
                _ => Some((self.key(&["claim", &digest(&payload)]), CLAIM_MOMENT_MS)),
            };
            let (channel, mut conn) = (self.channel(), self.conn.clone());
            let sent = match claim {
                Some((key, ms)) => {
                    let mut invocation = CLAIM_AND_PUBLISH.key(key);
                    invocation.key(channel).arg(payload).arg(ms);
                    self.run("publish", async move {
                        invocation.invoke_async::<i64>(&mut conn).await
                    })
                    .await
                }
                None => self.publish(payload).await,
            };
            if sent.is_ok() {
                return;
            }
        }
        let _ = self.deliveries.send(Published {
            change: published.change,
            version: None,
        });
    }

    /// Handles one message; `true` when it is this replica's own heartbeat.
    fn receive(&self, payload: &str) -> bool {
        let Ok(message) = serde_json::from_str::<Message>(payload) else {
            tracing::warn!("an unreadable message on the cluster channel was ignored");
            return false;
        };
        let change = match message {
            Message::Heartbeat { from } => return from == self.replica,
            Message::Closed { session } => {
                self.closed(&session);
                return false;
            }
            Message::Updated { uri } => ResourceChange::Updated(uri),
            Message::UpdatedUnder { prefix } => ResourceChange::UpdatedUnder(prefix),
            Message::ListChanged { pack } => ResourceChange::ListChanged { pack },
            Message::Subscription {
                from,
                session,
                uri,
                on,
            } => {
                if from != self.replica {
                    self.apply(&session, |link| {
                        let mut subscriptions = link
                            .subscriptions
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner);
                        if !on {
                            subscriptions.remove(&uri);
                        } else if subscriptions.len() < crate::limits::MAX_SUBSCRIPTIONS {
                            subscriptions.insert(uri);
                        }
                    });
                }
                return false;
            }
            Message::Level {
                from,
                session,
                level,
            } => {
                if from != self.replica
                    && let Ok(level) = serde_json::from_value(level.into())
                {
                    self.apply(&session, |link| {
                        *link
                            .log_level
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner) = Some(level);
                    });
                }
                return false;
            }
        };
        let _ = self.deliveries.send(Published {
            change,
            version: None,
        });
        false
    }

    /// Publishes this replica's heartbeat straight on the connection (not through `run`:
    /// a slow heartbeat must neither trip the fail-fast nor be skipped by it).
    async fn heartbeat(&self) {
        let payload = Message::Heartbeat {
            from: self.replica.clone(),
        }
        .encode();
        let (channel, mut conn) = (self.channel(), self.conn.clone());
        let _ = tokio::time::timeout(
            HEARTBEAT,
            redis::cmd("PUBLISH")
                .arg(channel)
                .arg(payload)
                .query_async::<i64>(&mut conn),
        )
        .await;
    }
}

/// Subscribes to the channel and delivers what it carries, reconnecting with backoff, for
/// as long as the cluster exists.
pub(super) async fn listen(cluster: Weak<Cluster>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let Some(strong) = cluster.upgrade() else {
            return;
        };
        let client = strong.client.clone();
        let channel = strong.channel();
        let connect = tokio::time::timeout(strong.connect_timeout * 2, async move {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        let pubsub = match connect {
            Ok(Ok(pubsub)) => pubsub,
            Ok(Err(e)) => {
                metrics::counter!("portcullis_redis_errors_total", "op" => "subscribe")
                    .increment(1);
                tracing::debug!(error = %e, "cannot subscribe to the cluster channel yet");
                drop(strong);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
            Err(_) => {
                metrics::counter!("portcullis_redis_errors_total", "op" => "subscribe")
                    .increment(1);
                drop(strong);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        strong.listening.store(true, Ordering::Relaxed);
        tracing::info!("subscribed to the cluster channel");
        // What other replicas changed while this one was not listening is in Redis.
        strong.resync().await;
        drop(strong);
        let subscribed = tokio::time::Instant::now();
        let mut messages = pubsub.into_on_message();
        let mut beat = tokio::time::interval(HEARTBEAT);
        let mut heard = tokio::time::Instant::now();
        loop {
            tokio::select! {
                message = messages.next() => {
                    let Some(message) = message else { break };
                    let Some(strong) = cluster.upgrade() else {
                        return;
                    };
                    if let Ok(payload) = message.get_payload::<String>()
                        && strong.receive(&payload)
                    {
                        heard = tokio::time::Instant::now();
                    }
                }
                _ = beat.tick() => {
                    if heard.elapsed() > HEARTBEAT * 3 {
                        tracing::warn!("the cluster channel carries nothing back; resubscribing");
                        break;
                    }
                    let Some(strong) = cluster.upgrade() else {
                        return;
                    };
                    strong.heartbeat().await;
                }
            }
        }
        // Not listening from now on: this replica's changes go to its own subscribers until
        // the channel is back.
        if let Some(strong) = cluster.upgrade() {
            strong.listening.store(false, Ordering::Relaxed);
            tracing::warn!(
                "lost the cluster channel; notifications reach this replica's subscribers only until it is back"
            );
        }
        // A subscription that lasted resets the backoff; one dropped at once does not.
        if subscribed.elapsed() > HEARTBEAT * 5 {
            backoff = Duration::from_millis(100);
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}
