//! Streamable HTTP: an axum app with the rmcp Streamable HTTP service at the MCP path, plus
//! `/healthz`, `/readyz` and the RFC 9728 metadata. Both protocol eras share the endpoint:
//! 2026-07-28 requests are served statelessly, 2025-era clients get `Mcp-Session-Id`
//! sessions (when enabled), bound to the principal that created them.

use arc_swap::ArcSwap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use portcullis_config::Config;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::util::BoxCloneSyncService;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::TransportError;
use super::admission::{self, Admission, Inspector};
use super::legacy_sse::{self, LegacySse};
use super::ready::{Ready, readyz};
use super::sessions::{SessionGuard, bind_sessions};
use crate::PortcullisHandler;
use crate::auth::{self, AuthState};
use crate::error::HttpRefusal;

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
    /// Requests served at once, each until its response ends; more get 503.
    pub max_in_flight: usize,
    /// Requests one principal has in flight at once, streams included; more get 429.
    pub max_in_flight_per_principal: usize,
    /// GET streams one principal has open at once; more get 429.
    pub max_get_streams_per_principal: usize,
    /// Time a client gets to send a request body; a slower one gets 408.
    pub body_timeout: Duration,
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
    /// Serve the web console at `/console` (`console.enabled`).
    pub console: bool,
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
    /// address; otherwise with a token, or without one on a loopback address only, and
    /// then only while authentication is off (checked per request by [`metrics_router`]).
    fn on_mcp_listener(&self, listen: SocketAddr) -> bool {
        self.enabled
            && self.listen.is_none()
            && (self.bearer_token.is_some() || listen.ip().is_loopback())
    }
}

impl HttpOptions {
    /// The HTTP settings of `config`.
    pub fn from_config(config: &Config) -> Result<Self, crate::SetupError> {
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
            max_in_flight_per_principal: limits.in_flight_per_principal(),
            max_get_streams_per_principal: limits.max_get_streams_per_principal,
            body_timeout: Duration::from_secs(limits.body_timeout_secs),
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
            console: config.console.enabled,
        })
    }
}

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
    let ready = Ready::new(handler.clone(), options.cluster.clone(), draining.clone());
    let inspector = Arc::new(Inspector {
        handler: handler.clone(),
        auth: Arc::clone(&options.auth),
        max_body: options.max_body_bytes,
        body_timeout: options.body_timeout,
    });
    let legacy_sse = options.legacy_sse.then(|| {
        Arc::new(LegacySse::new(
            handler.clone(),
            Arc::clone(&session_guard),
            options.allowed_hosts.clone(),
            options.allowed_origins.clone(),
            options.session_idle,
            mcp_ct,
        ))
    });
    let recorder = handler.clone();
    let recorder_for_console = handler.clone();
    let mcp = SharedMcp(Arc::new(StreamableHttpService::new(
        move || Ok(handler.for_session()),
        sessions,
        config,
    )));
    // 2025 sessions belong to the principal that created them, within caps.
    let mcp = ServiceBuilder::new()
        .layer(middleware::from_fn_with_state(session_guard, bind_sessions))
        .service(mcp);
    let front = Front {
        admission: Arc::new(Admission::new(
            options.max_in_flight_per_principal,
            options.max_get_streams_per_principal,
            recorder.clone(),
        )),
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
    if options.console {
        router = router.merge(super::console::router(
            recorder_for_console,
            Arc::clone(&options.auth),
            options.allowed_hosts.clone(),
            options.allowed_origins.clone(),
            &options.path,
        ));
    }
    if options.metrics.on_mcp_listener(options.listen) {
        router = router.merge(metrics_router(
            &options.metrics,
            Some(Arc::clone(&options.auth)),
        ));
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

/// rmcp's HTTP service behind an `Arc`. Every `from_fn` layer above it clones its inner
/// service for each request, and a `StreamableHttpService` clone copies its whole config
/// (host and origin lists, the session store): behind the `Arc` those clones are a count.
#[derive(Clone)]
struct SharedMcp(Arc<StreamableHttpService<PortcullisHandler, LocalSessionManager>>);

impl tower::Service<Request> for SharedMcp {
    type Response = Response;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let service = Arc::clone(&self.0);
        Box::pin(async move { Ok(service.handle(request).await.map(axum::body::Body::new)) })
    }
}

/// The layers in front of every MCP route (the MCP path, and `/sse` and `/messages` when
/// enabled), sharing one in-flight limit.
struct Front {
    /// Records what authentication refused (audit log).
    recorder: PortcullisHandler,
    auth: Arc<ArcSwap<AuthState>>,
    inspector: Arc<Inspector>,
    /// Per-principal in-flight shares and GET streams.
    admission: Arc<Admission>,
    /// Global in-flight permits.
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
            // Refusals made before the request was read reach the audit log.
            .layer(middleware::from_fn_with_state(
                self.recorder.clone(),
                record_refusals,
            ))
            // Who is calling, from the headers alone: everything below may rely on a
            // `Principal`, and nothing is queued or read for a caller not yet known.
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.auth),
                authenticate_now,
            ))
            // The caller's own share (429), taken before its body is read and held until
            // the response ends: a principal's slow uploads and open streams cost only it.
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.admission),
                admission::admit,
            ))
            // The body, read within its deadline and parsed once into the message that is
            // served; scopes checked where the HTTP layer can see the item (403).
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.inspector),
                admission::inspect,
            ))
            // Overload: a global permit, refused at once (503) rather than queued, taken once
            // the request is whole and held until its response ends.
            .layer(middleware::from_fn_with_state(
                Arc::clone(&self.in_flight),
                admission::in_flight,
            ))
            .service(service);
        BoxCloneSyncService::new(service)
    }
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

/// A header's text for the audit log, cut and counted like all client text.
pub(super) fn header_text(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| crate::request::client_text::cut(v).into_owned())
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
        .and_then(crate::request::trace_id_of);
    let response = next.run(request).await;
    if let Some(refused) = response.extensions().get::<auth::Refused>() {
        let origin = crate::request::Origin {
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

/// `/metrics` (Prometheus text), behind the bearer token when there is one. On the MCP
/// listener (`mcp_auth`), a `/metrics` without a token is not there while authentication is
/// configured: whoever may not call a tool may not read the server's counters either, even
/// on a loopback address (a proxy in front of it, another local user).
fn metrics_router(options: &MetricsOptions, mcp_auth: Option<Arc<ArcSwap<AuthState>>>) -> Router {
    let token = options.bearer_token.clone();
    Router::new().route(
        "/metrics",
        get(move |headers: axum::http::HeaderMap| {
            let token = token.clone();
            let mcp_auth = mcp_auth.clone();
            async move {
                if token.is_none() && mcp_auth.is_some_and(|auth| auth.load().is_enabled()) {
                    return HttpRefusal::NotFound.into_response();
                }
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
                        // RFC 6750: no error code for a request that sent no token.
                        let sent = headers.contains_key(axum::http::header::AUTHORIZATION);
                        return HttpRefusal::Challenge {
                            status: StatusCode::UNAUTHORIZED,
                            www_authenticate: "Bearer".to_owned(),
                            error: sent.then(|| {
                                (
                                    "invalid_token".to_owned(),
                                    "metrics need the configured bearer token".to_owned(),
                                )
                            }),
                            rpc: None,
                        }
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
                    None => HttpRefusal::NotFound.into_response(),
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
        .map_err(|source| TransportError::Bind {
            addr,
            setting: "metrics.listen",
            source,
        })
}

/// Serves `/metrics` alone on `listener` until `shutdown` (for `metrics.listen`).
pub async fn serve_metrics(
    options: &MetricsOptions,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<(), TransportError> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "metrics listening");
    axum::serve(listener, metrics_router(options, None))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(TransportError::Io)
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
            setting: "http.listen, or serve --listen/--port",
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
