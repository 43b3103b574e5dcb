//! The web console (`[console] enabled = true`): a page served by the binary (assets
//! embedded at build time, no external request, a strict Content-Security-Policy) that
//! talks to the MCP endpoint (2026-07-28) with the signed-in credential, plus a small JSON
//! API for what MCP has no method for: pending approvals, the audit tail and withheld
//! upstream items.
//!
//! The API is behind the same Host/Origin allow-lists and the same authentication as the
//! MCP endpoint; credentials travel in the `Authorization` header set by the page, never a
//! cookie, and every state-changing request must be `application/json` (which a cross-site
//! form cannot send without a CORS preflight this server never grants).

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::PortcullisHandler;
use crate::approval::{DecideError, Pending};
use crate::auth::{AuthState, Principal};
use crate::error::HttpRefusal;

/// Where the console is served.
pub const PATH: &str = "/console";

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

/// No inline script or style, nothing from elsewhere; images only from results (`data:`).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

#[derive(Clone)]
struct Console {
    handler: PortcullisHandler,
    auth: Arc<ArcSwap<AuthState>>,
    allowed_hosts: Arc<Vec<String>>,
    allowed_origins: Arc<Vec<String>>,
    mcp_path: Arc<str>,
}

/// The console's routes: the page and its assets, and the JSON API.
pub(super) fn router(
    handler: PortcullisHandler,
    auth: Arc<ArcSwap<AuthState>>,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    mcp_path: &str,
) -> Router {
    let console = Console {
        handler,
        auth,
        allowed_hosts: Arc::new(allowed_hosts),
        allowed_origins: Arc::new(allowed_origins),
        mcp_path: Arc::from(mcp_path),
    };
    let api = Router::new()
        .route("/console/api/session", get(session))
        .route("/console/api/approvals", get(approvals))
        .route("/console/api/approvals/{id}", post(decide))
        .route("/console/api/audit", get(audit))
        .route("/console/api/withheld", get(withheld))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&console.auth),
            authenticate_now,
        ))
        .with_state(console.clone());
    Router::new()
        .route(
            PATH,
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        .merge(api)
        // Anything else under the console is not found, with the same headers.
        .route(
            "/console/{*rest}",
            axum::routing::any(|| async { StatusCode::NOT_FOUND }),
        )
        .layer(middleware::from_fn_with_state(console, allowed))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The Host and Origin allow-lists of the MCP endpoint, and the security headers of every
/// console response.
async fn allowed(State(console): State<Console>, request: Request, next: Next) -> Response {
    if let Err(refused) = crate::request::check_host_and_origin(
        request.uri(),
        request.headers(),
        &console.allowed_hosts,
        &console.allowed_origins,
    ) {
        return HttpRefusal::from(refused).into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

async fn authenticate_now(
    State(auth): State<Arc<ArcSwap<AuthState>>>,
    request: Request,
    next: Next,
) -> Response {
    crate::auth::authenticate(State(auth.load_full()), request, next).await
}

fn principal(
    request_principal: Option<axum::Extension<Principal>>,
) -> Result<Principal, HttpRefusal> {
    request_principal
        .map(|axum::Extension(p)| p)
        .ok_or(HttpRefusal::NoPrincipal)
}

fn refusal(
    status: StatusCode,
    code: &'static str,
    description: impl Into<std::borrow::Cow<'static, str>>,
) -> HttpRefusal {
    HttpRefusal::Console {
        status,
        code,
        description: description.into(),
    }
}

/// Whether `principal` may read the audit tail and withheld items: holders of the
/// `approve` scope.
fn is_approver(principal: &Principal) -> bool {
    principal
        .missing(&[portcullis_config::APPROVE_SCOPE.to_owned()])
        .is_empty()
}

/// Who the page is signed in as, and what it may show.
async fn session(
    State(console): State<Console>,
    request_principal: Option<axum::Extension<Principal>>,
) -> Result<Response, HttpRefusal> {
    let principal = principal(request_principal)?;
    let info = rmcp::ServerHandler::get_info(&console.handler);
    Ok(Json(json!({
        "principal": principal.id(),
        "approver": is_approver(&principal),
        "authenticated": console.auth.load().is_enabled(),
        "mcp_path": &*console.mcp_path,
        "server": { "name": info.server_info.name, "version": info.server_info.version },
        "audit": console.handler.audit().is_some(),
    }))
    .into_response())
}

fn shown(pending: &Pending, viewer: &Principal) -> serde_json::Value {
    json!({
        "id": pending.id,
        "tool": pending.tool,
        "principal": pending.principal,
        "summary": pending.summary,
        "arguments": pending.arguments,
        "digest": pending.digest,
        "state": pending.state().as_str(),
        "requested_at": humantime::format_rfc3339_seconds(pending.requested_at).to_string(),
        "expires_at": humantime::format_rfc3339_seconds(pending.expires_at).to_string(),
        "may_decide": pending.may_decide(viewer),
    })
}

/// The pending approvals the principal may decide, or asked for itself.
async fn approvals(
    State(console): State<Console>,
    request_principal: Option<axum::Extension<Principal>>,
) -> Result<Response, HttpRefusal> {
    let principal = principal(request_principal)?;
    let audit = console.handler.audit();
    let pending = console
        .handler
        .approvals()
        .visible(&principal, audit.as_deref())
        .await;
    let items: Vec<serde_json::Value> = pending.iter().map(|p| shown(p, &principal)).collect();
    Ok(Json(json!({ "approvals": items })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Decision {
    decision: String,
}

/// Approves or denies one pending approval.
async fn decide(
    State(console): State<Console>,
    Path(id): Path<String>,
    request_principal: Option<axum::Extension<Principal>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpRefusal> {
    let principal = principal(request_principal)?;
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return Err(refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_request",
            "send the decision as application/json: {\"decision\": \"approve\" | \"deny\"}",
        ));
    }
    let decision: Decision = serde_json::from_slice(&body).map_err(|_| {
        refusal(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be {\"decision\": \"approve\" | \"deny\"}",
        )
    })?;
    let approve = match decision.decision.as_str() {
        "approve" => true,
        "deny" => false,
        _ => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "`decision` must be \"approve\" or \"deny\"",
            ));
        }
    };
    let audit = console.handler.audit();
    let current = |tool: &str| console.handler.approval_digest(tool);
    match console
        .handler
        .approvals()
        .decide_pending(&id, &principal, approve, audit.as_deref(), current)
        .await
    {
        Ok(pending) => Ok(Json(shown(&pending, &principal)).into_response()),
        Err(error @ DecideError::NotFound) => Err(refusal(
            StatusCode::NOT_FOUND,
            "not_found",
            error.to_string(),
        )),
        Err(error @ DecideError::NotAllowed) => Err(refusal(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "{error}: a call is approved by someone else (an approver of the tool), never by its own caller"
            ),
        )),
        Err(error @ (DecideError::Decided(_) | DecideError::Changed)) => {
            Err(refusal(StatusCode::CONFLICT, "conflict", error.to_string()))
        }
    }
}

#[derive(Deserialize)]
struct AuditQuery {
    principal: Option<String>,
    item: Option<String>,
    decision: Option<String>,
    limit: Option<usize>,
}

/// The newest audit records (of the last `audit::RECENT` this process wrote), filtered.
async fn audit(
    State(console): State<Console>,
    request_principal: Option<axum::Extension<Principal>>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, HttpRefusal> {
    let principal = principal(request_principal)?;
    if !is_approver(&principal) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the audit tail needs the `approve` scope",
        ));
    }
    let Some(log) = console.handler.audit() else {
        return Ok(Json(json!({ "enabled": false, "records": [] })).into_response());
    };
    let records = log.recent(
        query.principal.as_deref(),
        query.item.as_deref(),
        query.decision.as_deref(),
        query.limit.unwrap_or(100).min(crate::audit::RECENT),
    );
    Ok(Json(json!({ "enabled": true, "records": records })).into_response())
}

/// Upstream items the gateway withholds (changed or new since they were pinned).
async fn withheld(
    State(console): State<Console>,
    request_principal: Option<axum::Extension<Principal>>,
) -> Result<Response, HttpRefusal> {
    let principal = principal(request_principal)?;
    if !is_approver(&principal) {
        return Err(refusal(
            StatusCode::FORBIDDEN,
            "forbidden",
            "withheld items need the `approve` scope",
        ));
    }
    let catalog = console.handler.catalog();
    let items: Vec<serde_json::Value> = catalog
        .withheld()
        .iter()
        .map(|w| json!({ "kind": w.kind, "name": w.name, "source": w.source, "reason": w.reason, "diff": w.diff }))
        .collect();
    Ok(Json(json!({ "withheld": items })).into_response())
}
