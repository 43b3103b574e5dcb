//! `/readyz`: whether this replica should get traffic.
//!
//! The checks that reach upstreams (the catalog's readiness checks: databases, HTTP health
//! URLs with their credentials; Redis's `PING`) run at most once per [`REFRESH`]: their
//! answer is kept that long, and requests that come while a check runs share that one. So
//! load on `/readyz`, from probes or from anyone who can reach the port, never turns into
//! load on an upstream. What is local (draining, the audit log, Redis failures seen by
//! requests) is read fresh on every request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::PortcullisHandler;
use crate::cluster::Cluster;
use portcullis_core::NotReady;

/// How long the upstreams' answer is kept.
pub(super) const REFRESH: Duration = Duration::from_secs(1);

/// What `/readyz` checks: the catalog's dependencies, the audit log and Redis.
#[derive(Clone)]
pub(super) struct Ready {
    handler: PortcullisHandler,
    cluster: Option<Arc<Cluster>>,
    /// Cancelled when shutdown starts: `/readyz` then answers 503 `draining`.
    draining: CancellationToken,
    /// The latest check of the upstreams, running or done. The lock is held only to look
    /// at it or replace it, never while a check runs.
    upstreams: Arc<Mutex<Option<Check>>>,
}

/// A check of the upstreams, which every request that comes while it runs awaits.
type Check = Shared<BoxFuture<'static, Arc<Upstreams>>>;

/// The answer of the upstreams.
struct Upstreams {
    checks: Vec<(String, Result<(), NotReady>)>,
    /// Whether Redis answered its `PING` (`None` without `[cluster]`).
    redis_answered: Option<bool>,
    finished: Instant,
}

impl Ready {
    pub(super) fn new(
        handler: PortcullisHandler,
        cluster: Option<Arc<Cluster>>,
        draining: CancellationToken,
    ) -> Self {
        Self {
            handler,
            cluster,
            draining,
            upstreams: Arc::new(Mutex::new(None)),
        }
    }

    /// The upstreams' answer: the one in flight, or one that finished less than
    /// [`REFRESH`] ago, or else a new check.
    async fn upstreams(&self) -> Arc<Upstreams> {
        let check = {
            let mut latest = self
                .upstreams
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match latest.as_ref() {
                Some(check)
                    if check
                        .peek()
                        .is_none_or(|done| done.finished.elapsed() < REFRESH) =>
                {
                    check.clone()
                }
                _ => {
                    let check = self.check().boxed().shared();
                    *latest = Some(check.clone());
                    check
                }
            }
        };
        check.await
    }

    /// Asks every upstream once, on the catalog in force now.
    fn check(&self) -> impl Future<Output = Arc<Upstreams>> + Send + 'static {
        let catalog = Arc::clone(&self.handler.inner().catalog);
        let cluster = self.cluster.clone();
        async move {
            let (checks, redis_answered) = futures::join!(catalog.readiness(), async {
                match &cluster {
                    Some(cluster) => Some(cluster.ping().await.is_ok()),
                    None => None,
                }
            });
            Arc::new(Upstreams {
                checks,
                redis_answered,
                finished: Instant::now(),
            })
        }
    }
}

pub(super) async fn readyz(State(ready): State<Ready>) -> Response {
    if ready.draining.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining", "checks": {} })),
        )
            .into_response();
    }
    let upstreams = ready.upstreams().await;
    let mut results = upstreams.checks.clone();
    if let Some(audit) = ready.handler.inner().guard.audit() {
        results.push((
            "audit".to_owned(),
            audit
                .failure()
                .map_or(Ok(()), |reason| Err(NotReady::new(reason))),
        ));
    }
    let is_ready = results.iter().all(|(_, r)| r.is_ok());
    let mut checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, result)| {
            let shown = result
                .err()
                .map_or_else(|| "ok".to_owned(), |not| not.reason);
            (name, json!(shown))
        })
        .collect();
    // Redis down degrades this replica but does not take it out of rotation: every
    // replica shares the same Redis, and removing them all would serve no one.
    let mut warnings = serde_json::Map::new();
    if let Some(cluster) = &ready.cluster {
        let redis = match upstreams.redis_answered {
            Some(true) => cluster.warning(),
            _ => cluster
                .warning()
                .or_else(|| Some("redis unreachable".to_owned())),
        };
        match redis {
            Some(warning) => {
                checks.insert("redis".to_owned(), json!("degraded"));
                warnings.insert("redis".to_owned(), json!(warning));
            }
            None => {
                checks.insert("redis".to_owned(), json!("ok"));
            }
        }
    }
    let status = if is_ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(if warnings.is_empty() {
            json!({ "status": if is_ready { "ready" } else { "not_ready" }, "checks": checks })
        } else {
            json!({ "status": if is_ready { "degraded" } else { "not_ready" }, "checks": checks, "warnings": warnings })
        }),
    )
        .into_response()
}
