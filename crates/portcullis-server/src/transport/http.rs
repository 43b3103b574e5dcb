//! Streamable HTTP: an axum app with the rmcp Streamable HTTP service at the MCP path, plus
//! `/healthz`, `/readyz` and the RFC 9728 metadata. Both protocol eras share the endpoint:
//! 2026-07-28 requests are served statelessly, 2025-era clients get `Mcp-Session-Id`
//! sessions (when enabled), bound to the principal that created them.

use std::borrow::Cow;

use arc_swap::ArcSwap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use portcullis_config::Config;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde::Deserialize;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::util::BoxCloneSyncService;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::TransportError;
use super::legacy_sse::{self, LegacySse};
use super::sessions::{SessionGuard, bind_sessions};
use crate::PortcullisHandler;
use crate::auth::{self, AuthState, Principal};

use crate::guard::Target;

/// Settings of the HTTP transport.
#[derive(Clone)]
pub struct HttpOptions {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Path of the MCP endpoint, e.g. `/mcp`.
    pub path: String,
    /// Accepted `Host` values.
    pub allowed_hosts: Vec<String>,
    /// Accepted `Origin` values; requests without `Origin` pass, an empty list refuses every
    /// `Origin`.
    pub allowed_origins: Vec<String>,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Time in-flight calls get after shutdown starts.
    pub shutdown_grace: Duration,
    /// Time between the shutdown signal and closing the listener, while `/readyz` says
    /// `draining` and requests are still served.
    pub drain: Duration,
    /// Serve 2025-era clients with sessions.
    pub legacy_sessions: bool,
    /// Authentication (disabled when no method is configured).
    /// Swapped whole by a config reload (keys, JWT settings, per-IP and per-principal
    /// limits).
    pub auth: Arc<ArcSwap<AuthState>>,
    /// Requests served at once; more get 503.
    pub max_in_flight: usize,
    /// 2025-era sessions in total.
    pub max_sessions: usize,
    /// 2025-era sessions per principal.
    pub max_sessions_per_principal: usize,
    /// Idle time after which a 2025-era session is closed.
    pub session_idle: Duration,
    /// Also serve the deprecated HTTP+SSE transport (`GET /sse`, `POST /messages`).
    pub legacy_sse: bool,
    /// Where `/metrics` is served.
    pub metrics: MetricsOptions,
    /// With many replicas: where 2025-era sessions (owners, caps, idle expiry, what rmcp
    /// needs to restore them) are kept for every replica, and what `/readyz` reports.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
}

/// Where and to whom `/metrics` is served.
#[derive(Clone, Default)]
pub struct MetricsOptions {
    /// Record and serve metrics.
    pub enabled: bool,
    /// Its own listen address, instead of the MCP listener.
    pub listen: Option<SocketAddr>,
    /// The bearer token `/metrics` requires, if any.
    pub bearer_token: Option<portcullis_config::Secret>,
}

impl MetricsOptions {
    /// Whether the MCP listener at `listen` serves `/metrics`: not when it has its own
    /// address; otherwise with a token, or without one on a loopback address only.
    fn on_mcp_listener(&self, listen: SocketAddr) -> bool {
        self.enabled
            && self.listen.is_none()
            && (self.bearer_token.is_some() || listen.ip().is_loopback())
    }
}

impl HttpOptions {
    /// The HTTP settings of `config`.
    pub fn from_config(config: &Config) -> Result<Self, String> {
        let http = &config.http;
        let limits = &config.limits;
        Ok(Self {
            listen: http.listen,
            path: http.path.clone(),
            allowed_hosts: http.allowed_hosts.clone(),
            allowed_origins: http.allowed_origins.clone(),
            max_body_bytes: http.max_body_bytes,
            shutdown_grace: Duration::from_secs(http.shutdown_grace_secs),
            drain: Duration::from_secs(http.drain_secs),
            legacy_sessions: http.legacy_sessions,
            auth: Arc::new(ArcSwap::from_pointee(AuthState::from_config(config)?)),
            max_in_flight: limits.max_in_flight,
            max_sessions: limits.max_sessions,
            max_sessions_per_principal: limits.max_sessions_per_principal,
            session_idle: Duration::from_secs(limits.session_idle_secs),
            legacy_sse: http.legacy_sse,
            metrics: MetricsOptions {
                enabled: config.metrics.enabled,
                listen: config.metrics.listen,
                bearer_token: config.metrics.bearer_token.clone(),
            },
            cluster: None,
        })
    }
}

/// The JSON-RPC method of a POST body, for layers after the inspection (session caps).
#[derive(Debug, Clone)]
pub(crate) struct RpcMethod(pub(crate) String);

/// The axum application: MCP endpoint, health, readiness and protected-resource metadata.
/// `mcp_ct` ends every MCP stream and session when cancelled.
pub fn app(handler: PortcullisHandler, options: &HttpOptions, mcp_ct: CancellationToken) -> Router {
    app_draining(handler, options, mcp_ct, CancellationToken::new())
}

/// [`app`] whose `/readyz` answers 503 `draining` once `draining` is cancelled.
fn app_draining(
    handler: PortcullisHandler,
    options: &HttpOptions,
    mcp_ct: CancellationToken,
    draining: CancellationToken,
) -> Router {
    // Origin is always validated (an empty list refuses every browser origin), as the MCP
    // transport spec requires against DNS rebinding.
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(options.allowed_hosts.clone())
        .with_allowed_origins(options.allowed_origins.clone())
        .enforce_origin_validation()
        .with_legacy_session_mode(options.legacy_sessions)
        .with_json_response(true)
        .with_cancellation_token(mcp_ct.clone());
    config.max_request_body_bytes = options.max_body_bytes;
    if let Some(cluster) = &options.cluster {
        // A request for a session another replica created restores it from Redis.
        cluster.set_session_idle(options.session_idle);
        config.session_store = Some(Arc::new(crate::cluster::RedisSessions {
            cluster: Arc::clone(cluster),
        }));
    }
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(options.session_idle);
    let sessions = Arc::new(sessions);
    let session_guard = Arc::new(SessionGuard::new(
        Arc::clone(&sessions),
        options.max_sessions,
        options.max_sessions_per_principal,
        options.session_idle,
        options.cluster.clone(),
    ));
    if options.metrics.enabled {
        let sessions = std::sync::Arc::downgrade(&session_guard);
        crate::metrics::on_scrape(move || {
            let Some(sessions) = sessions.upgrade() else {
                return false;
            };
            if let Some(open) = sessions.open_sessions() {
                metrics::gauge!("portcullis_sessions").set(open as f64);
            }
            true
        });
    }
    let ready = Ready {
        handler: handler.clone(),
        cluster: options.cluster.clone(),
        draining: draining.clone(),
    };
    let inspector = Arc::new(Inspector {
        handler: handler.clone(),
        auth: Arc::clone(&options.auth),
        max_body: options.max_body_bytes,
    });
    let legacy_sse = options.legacy_sse.then(|| {
        Arc::new(LegacySse::new(
            handler.clone(),
            Arc::clone(&session_guard),
            options.allowed_hosts.clone(),
            options.allowed_origins.clone(),
            options.max_body_bytes,
            options.session_idle,
            mcp_ct,
        ))
    });
    let recorder = handler.clone();
    let mcp = StreamableHttpService::new(move || Ok(handler.for_session()), sessions, config);
    // 2025 sessions belong to the principal that created them, within caps.
    let mcp = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(session_guard, bind_sessions))
        .service(mcp);
    let front = Front {
        recorder,
        auth: Arc::clone(&options.auth),
        inspector,
        in_flight: Arc::new(tokio::sync::Semaphore::new(options.max_in_flight)),
    };
    let mut routes = Router::new().route_service(&options.path, front.wrap(mcp));
    if let Some(legacy_sse) = legacy_sse {
        let legacy = front.wrap(legacy_sse::router(legacy_sse));
        routes = routes
            .route_service(legacy_sse::SSE_PATH, legacy.clone())
            .route_service(legacy_sse::MESSAGES_PATH, legacy);
    }
    let metadata = Router::new()
        .route(auth::METADATA_PATH, get(metadata_now))
        .route(
            &format!("{}{}", auth::METADATA_PATH, options.path),
            get(metadata_now),
        )
        .with_state(Arc::clone(&options.auth));
    let metadata = metadata;
    let mut router = routes
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(ready)
        .merge(metadata);
    if options.metrics.on_mcp_listener(options.listen) {
        router = router.merge(metrics_router(&options.metrics));
    }
    router
        // Outermost first: every request gets an id before it is traced, and the id is echoed
        // on the response so clients can quote it.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http())
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

/// The layers in front of every MCP route (the MCP path, and `/sse` and `/messages` when
/// enabled), sharing one in-flight limit.
struct Front {
    /// Records what authentication refused (audit log).
    recorder: PortcullisHandler,
    auth: Arc<ArcSwap<AuthState>>,
    inspector: Arc<Inspector>,
    in_flight: Arc<tokio::sync::Semaphore>,
}

impl Front {
    fn wrap<S>(&self, service: S) -> BoxCloneSyncService<Request, Response, Infallible>
    where
        S: tower::Service<Request, Response = Response, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        // One concern per layer, outermost first.
        let service = ServiceBuilder::new()
            // Overload: refuse at once (503) instead of queueing without bound.
            .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                overloaded()
            }))
            .load_shed()
            .layer(GlobalConcurrencyLimitLayer::with_semaphore(Arc::clone(
                &self.in_flight,
            )))
            // Refusals made before the request was read reach the audit log.
            .layer(middleware::from_fn_with_state(
                self.recorder.clone(),
                record_refusals,
            ))
            // Who is calling: everything below may rely on a `Principal`.
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.auth),
                authenticate_now,
            ))
            // Well-formed JSON only (rmcp answers garbage with 415), and scopes checked where
            // the HTTP layer can see the tool (403 insufficient_scope).
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.inspector),
                inspect,
            ))
            .service(service);
        BoxCloneSyncService::new(service)
    }
}

pub(super) fn overloaded() -> Response {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "overloaded", "error_description": "too many requests in flight; retry shortly" }))).into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from_static("1"),
    );
    response
}

struct Inspector {
    handler: PortcullisHandler,
    auth: Arc<ArcSwap<AuthState>>,
    max_body: usize,
}

/// Just enough of a JSON-RPC request to route and authorize it.
#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<PeekParams<'a>>,
}

#[derive(Deserialize)]
struct PeekParams<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "ref")]
    reference: Option<PeekRef<'a>>,
    /// `subscriptions/listen`'s filter.
    #[serde(borrow)]
    notifications: Option<PeekFilter<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeekFilter<'a> {
    #[serde(borrow)]
    resource_subscriptions: Option<Vec<Cow<'a, str>>>,
}

#[derive(Deserialize)]
struct PeekRef<'a> {
    #[serde(borrow, rename = "type")]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    uri: Option<Cow<'a, str>>,
}

impl<'a> PeekParams<'a> {
    /// What the request is for, for the methods that reach a pack (`subscriptions/listen`:
    /// every resource it follows).
    fn targets(&'a self, method: &str) -> Vec<Target<'a>> {
        if method == "subscriptions/listen" {
            return self
                .notifications
                .iter()
                .flat_map(|f| f.resource_subscriptions.iter().flatten())
                .map(|uri| Target::Resource(uri))
                .collect();
        }
        self.target(method).into_iter().collect()
    }

    fn target(&'a self, method: &str) -> Option<Target<'a>> {
        match method {
            "tools/call" => self.name.as_deref().map(Target::Tool),
            "prompts/get" => self.name.as_deref().map(Target::Prompt),
            "resources/read" | "resources/subscribe" => self.uri.as_deref().map(Target::Resource),
            "completion/complete" => {
                let reference = self.reference.as_ref()?;
                match reference.kind.as_deref()? {
                    "ref/prompt" => reference.name.as_deref().map(Target::Prompt),
                    "ref/resource" => reference.uri.as_deref().map(Target::Template),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// Buffers a POST body (bounded), answers non-JSON with a JSON-RPC parse error, refuses a
/// request for a tool, resource, template or prompt the principal lacks scopes for (403
/// `insufficient_scope`, from the same policies the guard applies), and records the method
/// for the session layer.
async fn inspect(
    State(inspector): State<Arc<Inspector>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let limit = inspector.max_body;
    let (mut parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {limit} bytes"),
        )
            .into_response();
    };
    // One pass for the usual case (a request object); batches and odd shapes fall back to a
    // plain well-formedness check.
    let peek = match serde_json::from_slice::<Peek<'_>>(&bytes) {
        Ok(peek) => Some(peek),
        Err(_) => match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => None,
            Err(error) => {
                let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32700, "message": format!("parse error: {error}") } });
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
        },
    };
    if let Some(Peek {
        method: Some(method),
        params,
    }) = peek
    {
        let targets = params
            .as_ref()
            .map(|p| p.targets(&method))
            .unwrap_or_default();
        if let Some(principal) = parts.extensions.get::<Principal>() {
            let now = inspector.handler.inner();
            for target in targets {
                let Some(missing) = now.guard.missing_scopes(&now.catalog, principal, target)
                else {
                    continue;
                };
                if missing.is_empty() {
                    continue;
                }
                let origin = crate::guard::Origin {
                    request_id: header_text(&parts.headers, "x-request-id"),
                    trace_id: header_text(&parts.headers, "traceparent")
                        .as_deref()
                        .and_then(crate::guard::trace_id_of),
                    client: None,
                    client_ip: None,
                    ..Default::default()
                };
                now.guard
                    .refused_forbidden(&now.catalog, &method, target, principal, origin)
                    .await;
                let scope = missing.join(" ");
                let description = format!("{} needs the scope(s): {scope}", target.describe());
                return inspector.auth.load().challenge(
                    &parts.headers,
                    StatusCode::FORBIDDEN,
                    Some(("insufficient_scope", &description)),
                    Some(&scope),
                );
            }
        }
        parts.extensions.insert(RpcMethod(method.into_owned()));
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Authentication with the settings in force now.
async fn authenticate_now(
    State(auth): State<Arc<ArcSwap<AuthState>>>,
    request: Request,
    next: Next,
) -> Response {
    auth::authenticate(State(auth.load_full()), request, next).await
}

/// The RFC 9728 metadata with the settings in force now.
async fn metadata_now(
    State(auth): State<Arc<ArcSwap<AuthState>>>,
    headers: axum::http::HeaderMap,
) -> Response {
    auth::metadata(State(auth.load_full()), headers).await
}

/// A header's text for the audit log, cut to 128 characters (it is the client's).
fn header_text(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(128).collect())
}

/// Records in the audit log what the authentication layer refused (it marks its
/// responses with [`auth::Refused`]).
async fn record_refusals(
    State(handler): State<PortcullisHandler>,
    request: Request,
    next: Next,
) -> Response {
    let request_id = header_text(request.headers(), "x-request-id");
    let trace_id = header_text(request.headers(), "traceparent")
        .as_deref()
        .and_then(crate::guard::trace_id_of);
    let response = next.run(request).await;
    if let Some(refused) = response.extensions().get::<auth::Refused>() {
        let origin = crate::guard::Origin {
            request_id,
            trace_id,
            client: None,
            client_ip: refused.client_ip.clone(),
            ..Default::default()
        };
        handler
            .inner()
            .guard
            .refused_http(refused.principal.as_ref(), refused.outcome, origin)
            .await;
    }
    response
}

/// What `/readyz` checks: the catalog's dependencies and the audit log.
#[derive(Clone)]
struct Ready {
    handler: PortcullisHandler,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Cancelled when shutdown starts: `/readyz` then answers 503 `draining`.
    draining: CancellationToken,
}

/// `/metrics` (Prometheus text), behind the bearer token when there is one.
fn metrics_router(options: &MetricsOptions) -> Router {
    let token = options.bearer_token.clone();
    Router::new().route(
        "/metrics",
        get(move |headers: axum::http::HeaderMap| {
            let token = token.clone();
            async move {
                if let Some(token) = &token {
                    let given = headers
                        .get(axum::http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .unwrap_or_default();
                    // Compared as hashes: equal lengths, so neither the time nor an early
                    // length check tells how long the token is.
                    use sha2::Digest as _;
                    use subtle::ConstantTimeEq as _;
                    let (given, wanted) = (
                        sha2::Sha256::digest(given.as_bytes()),
                        sha2::Sha256::digest(token.expose().as_bytes()),
                    );
                    if !bool::from(given.ct_eq(&wanted)) {
                        return (
                            StatusCode::UNAUTHORIZED,
                            [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                            "metrics need the configured bearer token",
                        )
                            .into_response();
                    }
                }
                match crate::metrics::render() {
                    Some(text) => (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        text,
                    )
                        .into_response(),
                    None => StatusCode::NOT_FOUND.into_response(),
                }
            }
        }),
    )
}

/// The listener of `metrics.listen`, when metrics have their own address.
pub async fn bind_metrics(options: &MetricsOptions) -> Result<Option<TcpListener>, TransportError> {
    let (true, Some(addr)) = (options.enabled, options.listen) else {
        return Ok(None);
    };
    TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|source| TransportError::Bind { addr, source })
}

/// Serves `/metrics` alone on `listener` until `shutdown` (for `metrics.listen`).
pub async fn serve_metrics(
    options: &MetricsOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), TransportError> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "metrics listening");
    axum::serve(listener, metrics_router(options))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(TransportError::Io)
}

async fn readyz(State(ready): State<Ready>) -> Response {
    if ready.draining.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "draining", "checks": {} })),
        )
            .into_response();
    }
    let cluster = ready.cluster.clone();
    let now = ready.handler.inner();
    let mut results = now.catalog.readiness().await;
    if let Some(audit) = now.guard.audit() {
        results.push(("audit".to_owned(), audit.failure().map_or(Ok(()), Err)));
    }
    let ready = results.iter().all(|(_, r)| r.is_ok());
    let mut checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, result)| (name, json!(result.err().unwrap_or_else(|| "ok".to_owned()))))
        .collect();
    // Redis down degrades this replica but does not take it out of rotation: every
    // replica shares the same Redis, and removing them all would serve no one.
    let mut warnings = serde_json::Map::new();
    if let Some(cluster) = &cluster {
        let redis = match cluster.ping().await {
            Ok(()) => cluster.warning(),
            Err(_) => cluster
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
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(if warnings.is_empty() {
            json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": checks })
        } else {
            json!({ "status": if ready { "degraded" } else { "not_ready" }, "checks": checks, "warnings": warnings })
        }),
    )
        .into_response()
}

/// Binds the listening socket. A non-loopback address needs authentication configured.
pub async fn bind(options: &HttpOptions) -> Result<TcpListener, TransportError> {
    if !options.listen.ip().is_loopback() && !options.auth.load().is_enabled() {
        return Err(TransportError::InsecureListen(options.listen));
    }
    TcpListener::bind(options.listen)
        .await
        .map_err(|source| TransportError::Bind {
            addr: options.listen,
            source,
        })
}

/// Serves on `listener` until `shutdown` is cancelled, then stops accepting, lets in-flight
/// tool calls finish (up to the grace period), closes MCP streams and returns.
pub async fn serve(
    handler: PortcullisHandler,
    options: &HttpOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), TransportError> {
    let addr = listener.local_addr()?;
    let in_flight = handler.in_flight();
    options.auth.load_full().warm_up().await;
    let mcp_ct = CancellationToken::new();
    let draining = CancellationToken::new();
    let app = app_draining(handler, options, mcp_ct.clone(), draining.clone());
    // Small JSON-RPC messages: Nagle's algorithm would add up to 40 ms per response.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
    });
    // The listener closes after the drain period that follows the shutdown signal.
    let close = CancellationToken::new();
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(close.clone().cancelled_owned());
    let mut server = tokio::spawn(server.into_future());
    tracing::info!(transport = "http", %addr, path = %options.path, "listening");

    let finished = tokio::select! {
        biased;
        () = shutdown.cancelled() => None,
        result = &mut server => Some(result),
    };
    if let Some(result) = finished {
        flatten(result)?;
        tracing::info!("stopped");
        return Ok(());
    }
    draining.cancel();
    if !options.drain.is_zero() {
        tracing::info!(
            drain_secs = options.drain.as_secs_f64(),
            "draining: /readyz answers 503 while requests are still served"
        );
        tokio::time::sleep(options.drain).await;
    }
    close.cancel();
    tracing::info!(
        grace_secs = options.shutdown_grace.as_secs_f64(),
        "shutting down: no new connections, waiting for in-flight calls"
    );
    let deadline = tokio::time::Instant::now() + options.shutdown_grace;
    in_flight.close();
    if tokio::time::timeout_at(deadline, in_flight.wait())
        .await
        .is_err()
    {
        tracing::warn!("in-flight calls did not finish before the shutdown deadline");
    }
    // Calls are done; their responses are on the wire. Give plain request/response
    // connections a moment to drain, then end long-lived streams and sessions.
    let drain = deadline.min(tokio::time::Instant::now() + Duration::from_millis(500));
    if tokio::time::timeout_at(drain, &mut server).await.is_err() {
        mcp_ct.cancel();
        if tokio::time::timeout_at(
            deadline.max(tokio::time::Instant::now() + Duration::from_secs(1)),
            &mut server,
        )
        .await
        .is_err()
        {
            tracing::warn!("connections still open at the shutdown deadline; closing them");
            server.abort();
        }
    }
    tracing::info!("stopped");
    Ok(())
}

fn flatten(
    result: Result<std::io::Result<()>, tokio::task::JoinError>,
) -> Result<(), TransportError> {
    match result {
        Ok(inner) => inner.map_err(TransportError::Io),
        Err(join) => Err(TransportError::Io(std::io::Error::other(join))),
    }
}
