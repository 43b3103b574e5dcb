//! Admission of HTTP requests to the MCP routes: what may be served, decided once, on the
//! message that is served, and held for as long as the response lasts.
//!
//! - **One parse.** A POST body is read (bounded in size and in time) and deserialized into
//!   rmcp's own [`ClientJsonRpcMessage`], with the same function rmcp serves it with, so the
//!   two readings cannot disagree (rmcp offers no way to hand it the parsed message, so it
//!   deserializes its copy again: a cost, not a second opinion).
//!   Everything decided here and after — the scope pre-check, the session caps and owners,
//!   the method for logs — reads that typed message ([`Parsed`]). A body that is not one
//!   valid JSON-RPC message is refused here, before anything is served. Params that do
//!   not fit the method they name make the message a custom request of that name (rmcp's
//!   deserializer does so): never read as that method by any layer, and refused here with
//!   `-32602` (for the methods the current revision still has).
//! - **Bounded for the whole response.** A request holds its principal's in-flight slot and
//!   a global in-flight permit until its response body ends (or the client goes away), so
//!   a stream counts as long as it is open. A principal's share is taken before its body is
//!   read: a slow upload costs only its own share, never the global permits.
//! - **Streams end with their credential.** A GET stream opened with a credential that
//!   expires (a JWT) ends then.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, Reference};
use serde_json::json;
use tokio::sync::Semaphore;

use crate::PortcullisHandler;
use crate::auth::{AuthState, Principal};
use crate::error::HttpRefusal;
use crate::limits::Slots;
use crate::request::Target;

/// The one parsed JSON-RPC message of a POST, for the layers after the inspection and the
/// transport that serves it.
#[derive(Debug, Clone)]
pub(crate) struct Parsed(pub(crate) ClientJsonRpcMessage);

impl Parsed {
    /// The request's typed body, when it is a request.
    pub(crate) fn request(&self) -> Option<&ClientRequest> {
        match &self.0 {
            ClientJsonRpcMessage::Request(request) => Some(&request.request),
            _ => None,
        }
    }

    /// Whether this is the `initialize` request rmcp opens a session for.
    pub(crate) fn is_initialize(&self) -> bool {
        matches!(self.request(), Some(ClientRequest::InitializeRequest(_)))
    }

    /// The request's id (`None` for a notification or a response).
    pub(crate) fn id(&self) -> Option<&rmcp::model::RequestId> {
        match &self.0 {
            ClientJsonRpcMessage::Request(request) => Some(&request.id),
            _ => None,
        }
    }

    /// The request's method, as rmcp will dispatch it (`None` for anything else).
    pub(crate) fn method(&self) -> Option<&str> {
        self.request().map(ClientRequest::method)
    }

    /// The refusal of a request that names a method of the protocol but whose params are
    /// not that method's (rmcp would read it as a custom request): refused here, so that
    /// no layer reads it as the method it names.
    fn misnamed(&self) -> Option<Response> {
        let ClientJsonRpcMessage::Request(request) = &self.0 else {
            return None;
        };
        let ClientRequest::CustomRequest(custom) = &request.request else {
            return None;
        };
        let method = custom.method.as_str();
        if !PROTOCOL_METHODS.contains(&method) {
            return None;
        }
        Some(
            HttpRefusal::bad_request(json!(request.id), crate::error::misnamed_params(method))
                .into_response(),
        )
    }

    /// What the request is for, for the methods that reach a pack (`subscriptions/listen`:
    /// every resource it follows). Read from the typed request rmcp dispatches.
    fn targets(&self) -> Vec<Target<'_>> {
        let Some(request) = self.request() else {
            return Vec::new();
        };
        match request {
            ClientRequest::CallToolRequest(r) => vec![Target::Tool(&r.params.name)],
            ClientRequest::GetPromptRequest(r) => vec![Target::Prompt(&r.params.name)],
            ClientRequest::ReadResourceRequest(r) => vec![Target::Resource(&r.params.uri)],
            ClientRequest::SubscribeRequest(r) => vec![Target::Resource(&r.params.uri)],
            ClientRequest::CompleteRequest(r) => match &r.params.r#ref {
                Reference::Prompt(prompt) => vec![Target::Prompt(&prompt.name)],
                Reference::Resource(template) => vec![Target::Template(&template.uri)],
                _ => Vec::new(),
            },
            // The whole listen, as the guard decides it: the scopes of every URI at once.
            ClientRequest::SubscriptionsListenRequest(r) => r
                .params
                .notifications
                .resource_subscriptions
                .as_deref()
                .map(|uris| vec![Target::Listen(uris)])
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Methods rmcp deserializes into typed requests and every protocol era serves: one of
/// these whose params do not fit arrives as a custom request of the same name, which is
/// refused here with a clear `-32602`. (Such a request could not be read as the method it
/// names anyway: every decision here reads the typed variant. The methods the 2026-07-28
/// revision removed — `initialize`, `logging/setLevel`, `resources/subscribe` and
/// `resources/unsubscribe` — are left to rmcp, which answers them 404 `-32601` there.)
const PROTOCOL_METHODS: [&str; 17] = {
    use rmcp::model::*;
    [
        PingRequestMethod::VALUE,
        DiscoverRequestMethod::VALUE,
        CompleteRequestMethod::VALUE,
        GetPromptRequestMethod::VALUE,
        ListPromptsRequestMethod::VALUE,
        ListResourcesRequestMethod::VALUE,
        ListResourceTemplatesRequestMethod::VALUE,
        ReadResourceRequestMethod::VALUE,
        SubscriptionsListenRequestMethod::VALUE,
        CallToolRequestMethod::VALUE,
        ListToolsRequestMethod::VALUE,
        GetTaskMethod::VALUE,
        UpdateTaskMethod::VALUE,
        CancelTaskMethod::VALUE,
        ListSkillsRequestMethod::VALUE,
        GetSkillRequestMethod::VALUE,
        ReadResourceDirectoryRequestMethod::VALUE,
    ]
};

/// The per-principal side of admission: in-flight shares and GET streams.
pub(crate) struct Admission {
    in_flight: Arc<Slots>,
    get_streams: Arc<Slots>,
    /// Tells when a stream's credential is gone.
    handler: PortcullisHandler,
}

impl Admission {
    pub(crate) fn new(
        per_principal: usize,
        get_streams: usize,
        handler: PortcullisHandler,
    ) -> Self {
        Self {
            in_flight: Slots::new(per_principal),
            get_streams: Slots::new(get_streams),
            handler,
        }
    }
}

/// Takes the principal's in-flight slot (and for a GET, a stream slot) and holds them until
/// the response body ends; a GET stream of an expiring credential ends when it does.
/// Runs after authentication (it needs the principal), before the body is read.
pub(crate) async fn admit(
    State(admission): State<Arc<Admission>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        // Authentication attaches a principal to every request it lets through.
        return HttpRefusal::NoPrincipal.into_response();
    };
    let Some(slot) = admission.in_flight.try_acquire(principal.id()) else {
        tracing::warn!(principal = %principal, limit = admission.in_flight.cap(), "per-principal in-flight limit reached; request refused");
        metrics::counter!("portcullis_rate_limited_total", "limit" => "in_flight").increment(1);
        return HttpRefusal::rate_limited(
            Duration::from_secs(1),
            "too many requests in flight for this principal (limits.max_in_flight_per_principal); wait for some to finish",
        )
        .into_response();
    };
    let stream = if request.method() == Method::GET {
        let Some(stream) = admission.get_streams.try_acquire(principal.id()) else {
            tracing::warn!(principal = %principal, limit = admission.get_streams.cap(), "per-principal GET stream limit reached; stream refused");
            metrics::counter!("portcullis_rate_limited_total", "limit" => "streams").increment(1);
            return HttpRefusal::rate_limited(
                Duration::from_secs(5),
                "too many open streams for this principal (limits.max_get_streams_per_principal); close one first",
            )
            .into_response();
        };
        Some(stream)
    } else {
        None
    };
    // A GET stream ends when its credential does: at a token's expiry, or at a reload that
    // removes it.
    let ends = stream
        .is_some()
        .then(|| Box::pin(admission.handler.credential_gone(principal)) as Ends);
    let response = next.run(request).await;
    hold(response, Box::new((slot, stream)), ends)
}

/// Takes a global in-flight permit (503 when none is free) and holds it until the response
/// body ends. Runs after the body is read.
pub(crate) async fn in_flight(
    State(permits): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    let Ok(permit) = permits.try_acquire_owned() else {
        return HttpRefusal::Overloaded.into_response();
    };
    let response = next.run(request).await;
    hold(response, Box::new(permit), None)
}

/// What the inspection needs besides the request.
pub(crate) struct Inspector {
    pub(crate) handler: PortcullisHandler,
    pub(crate) auth: Arc<arc_swap::ArcSwap<AuthState>>,
    pub(crate) max_body: usize,
    pub(crate) body_timeout: Duration,
}

/// Reads a POST body (bounded in size and time), parses it once into the message that is
/// served, refuses a request for a tool, resource, template or prompt the principal lacks
/// scopes for (403 `insufficient_scope`, from the same policies the guard applies), and
/// hands the parsed message on ([`Parsed`]).
pub(crate) async fn inspect(
    State(inspector): State<Arc<Inspector>>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let limit = inspector.max_body;
    let (mut parts, body) = request.into_parts();
    let bytes =
        match tokio::time::timeout(inspector.body_timeout, axum::body::to_bytes(body, limit)).await
        {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(_)) => return HttpRefusal::TooLarge { limit }.into_response(),
            Err(_) => {
                return HttpRefusal::BodyTimeout {
                    after: inspector.body_timeout,
                }
                .into_response();
            }
        };
    let parsed = match serde_json::from_slice::<ClientJsonRpcMessage>(&bytes) {
        Ok(message) => Parsed(message),
        Err(error) => return not_a_message(&bytes, &error),
    };
    if let Some(refused) = parsed.misnamed() {
        return refused;
    }
    if let Some(principal) = parts.extensions.get::<Principal>() {
        let now = inspector.handler.inner();
        for target in parsed.targets() {
            let Some(missing) = now.guard.missing_scopes(&now.catalog, principal, target) else {
                continue;
            };
            if missing.is_empty() {
                continue;
            }
            let method = parsed.method().unwrap_or_default().to_owned();
            let origin = crate::request::Origin {
                request_id: super::http::header_text(&parts.headers, "x-request-id"),
                trace_id: super::http::header_text(&parts.headers, "traceparent")
                    .as_deref()
                    .and_then(crate::request::trace_id_of),
                client: None,
                client_ip: None,
                ..Default::default()
            };
            now.guard
                .refused_forbidden(&now.catalog, &method, target, principal, origin)
                .await;
            let scope = missing.join(" ");
            let description = format!("{} needs the scope(s): {scope}", target.describe());
            let mut refused = inspector.auth.load().challenge(
                &parts.headers,
                StatusCode::FORBIDDEN,
                Some(("insufficient_scope", &description)),
                Some(&scope),
            );
            // The challenge is in `WWW-Authenticate` (RFC 6750); the body is the guard's own
            // JSON-RPC refusal for this request, which the SDKs show their caller instead of
            // a bare "error response".
            let missing: Vec<&str> = missing.iter().map(String::as_str).collect();
            let mut error = crate::error::forbidden(&target.describe(), &missing);
            if let Some(serde_json::Value::Object(data)) = error.data.as_mut() {
                data.insert("error".to_owned(), json!("insufficient_scope"));
            }
            if let HttpRefusal::Challenge { rpc, .. } = &mut refused {
                *rpc = Some(Box::new((json!(parsed.id()), error)));
            }
            return refused.into_response();
        }
    }
    parts.extensions.insert(parsed);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The answer to a body that is not one JSON-RPC message: a parse error when it is not
/// JSON at all, an invalid request otherwise (a batch, a message of no known shape).
fn not_a_message(bytes: &[u8], error: &serde_json::Error) -> Response {
    let error = match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
        Err(error) => crate::error::parse_error(&error),
        Ok(_) => crate::error::not_a_message(Some(
            // serde's message may quote the client's text: cut like all of it.
            &crate::request::client_text::cut(&error.to_string()),
        )),
    };
    HttpRefusal::bad_request(serde_json::Value::Null, error).into_response()
}

/// What ends a stream early: its credential gone.
type Ends = Pin<Box<dyn Future<Output = ()> + Send>>;

/// `response` whose body keeps `held` until it ends or is dropped, and ends when `ends`
/// resolves.
fn hold(
    response: Response,
    held: Box<dyn std::any::Any + Send + Sync>,
    ends: Option<Ends>,
) -> Response {
    response.map(|inner| {
        Body::new(Held {
            inner,
            _held: held,
            ends,
        })
    })
}

/// A response body holding slots and permits for as long as it lasts.
struct Held {
    inner: Body,
    _held: Box<dyn std::any::Any + Send + Sync>,
    ends: Option<Ends>,
}

impl HttpBody for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Some(ends) = self.ends.as_mut()
            && ends.as_mut().poll(cx).is_ready()
        {
            tracing::info!("a stream ends: its credential expired or was removed");
            return Poll::Ready(None);
        }
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
