//! Streamable HTTP: an axum app with the rmcp Streamable HTTP service at the MCP path, plus
//! `/healthz` and `/readyz`. Both protocol eras share the endpoint: 2026-07-28 requests are
//! served statelessly, 2025-era clients get `Mcp-Session-Id` sessions (when enabled).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::TransportError;
use crate::PortcullisHandler;
use crate::catalog::Catalog;

/// Settings of the HTTP transport.
#[derive(Debug, Clone)]
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
    /// Serve 2025-era clients with sessions.
    pub legacy_sessions: bool,
}

/// The axum application: MCP endpoint, health and readiness. `mcp_ct` ends every MCP stream
/// and session when cancelled.
pub fn app(handler: PortcullisHandler, options: &HttpOptions, mcp_ct: CancellationToken) -> Router {
    // Origin is always validated (an empty list refuses every browser origin), as the MCP
    // transport spec requires against DNS rebinding.
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(options.allowed_hosts.clone())
        .with_allowed_origins(options.allowed_origins.clone())
        .enforce_origin_validation()
        .with_legacy_session_mode(options.legacy_sessions)
        .with_json_response(true)
        .with_cancellation_token(mcp_ct);
    config.max_request_body_bytes = options.max_body_bytes;
    let catalog = Arc::clone(handler.catalog());
    let mcp = StreamableHttpService::new(
        move || Ok(handler.for_session()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    // rmcp answers an unparsable body with 415; JSON-RPC wants a -32700 parse error (400).
    let mcp = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn_with_state(
            options.max_body_bytes,
            reject_malformed_json,
        ))
        .service(mcp);
    Router::new()
        .route_service(&options.path, mcp)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(catalog)
        // Outermost first: every request gets an id before it is traced, and the id is echoed
        // on the response so clients can quote it.
        .layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http())
                .layer(PropagateRequestIdLayer::x_request_id()),
        )
}

/// Buffers a POST body (bounded) and answers non-JSON with a JSON-RPC parse error, so rmcp
/// only ever sees well-formed JSON.
async fn reject_malformed_json(
    State(limit): State<usize>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, limit).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {limit} bytes"),
        )
            .into_response();
    };
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let body = json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32700, "message": format!("parse error: {error}") } });
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(catalog): State<Arc<Catalog>>) -> impl IntoResponse {
    let results = catalog.readiness().await;
    let ready = results.iter().all(|(_, r)| r.is_ok());
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, result)| (name, json!(result.err().unwrap_or_else(|| "ok".to_owned()))))
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({ "status": if ready { "ready" } else { "not_ready" }, "checks": checks })),
    )
}

/// Binds the listening socket, refusing non-loopback addresses (no authentication exists yet).
pub async fn bind(options: &HttpOptions) -> Result<TcpListener, TransportError> {
    if !options.listen.ip().is_loopback() {
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
    let mcp_ct = CancellationToken::new();
    let app = app(handler, options, mcp_ct.clone());
    // Small JSON-RPC messages: Nagle's algorithm would add up to 40 ms per response.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::warn!(%error, "cannot set TCP_NODELAY");
        }
    });
    let server =
        axum::serve(listener, app).with_graceful_shutdown(shutdown.clone().cancelled_owned());
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
