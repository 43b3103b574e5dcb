//! The vocabulary of a request, at the bottom of the server: what it is for ([`Target`]),
//! where it came from ([`Origin`], the client's text cut by [`client_text`]), how it ended
//! ([`Outcome`]), and whether its Host and Origin may be served ([`check_host`]). Every
//! layer above speaks it (the transports, authentication, the guard, metrics, traces,
//! audit); it imports nothing of theirs.

pub(crate) mod client_text;
mod host;

pub(crate) use host::{check_host, check_host_and_origin};

/// What a request is for, as far as authorization is concerned.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Target<'a> {
    /// `tools/call`.
    Tool(&'a str),
    /// `prompts/get`, and completions of its arguments.
    Prompt(&'a str),
    /// `resources/read` and `resources/subscribe` of a URI.
    Resource(&'a str),
    /// Completions of a resource template's variables.
    Template(&'a str),
    /// A `subscriptions/listen` stream following these resources: decided once for the
    /// whole listen (it needs the scopes of every one; one log line, one audit record).
    Listen(&'a [String]),
}

impl Target<'_> {
    /// How the refusal names it. Tool and prompt names are the catalog's; a resource is
    /// named by its scheme only, since the rest of the URI is the client's text.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Tool(name) => format!("`{name}`"),
            Self::Prompt(name) => format!("prompt `{name}`"),
            Self::Resource(uri) => {
                let scheme = uri.split_once(':').map_or("", |(s, _)| s);
                format!("this `{scheme}:` resource")
            }
            Self::Template(template) => format!("resource template `{template}`"),
            Self::Listen(uris) => format!("a listen following {} resources", uris.len()),
        }
    }
}

/// How a request ended, for logs (and later metrics and audit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    InputRequired,
    Unauthenticated,
    Forbidden,
    RateLimited,
    NotFound,
    /// A tool or prompt a pack knows of and does not serve (an upstream item whose
    /// definition changed since it was pinned).
    Withheld,
    InvalidArguments,
    ToolError,
    InternalError,
    Panicked,
    TimedOut,
    Cancelled,
    /// Refused because the audit log cannot be written (`audit.fail_closed`).
    AuditUnavailable,
    /// The intent record of a call that changes data, written before it runs.
    Started,
    /// A call under approval that is waiting for an approver (it did not run).
    ApprovalPending,
    /// A call under approval that was declined, denied, or brought an approval that is not
    /// valid for it (it did not run).
    ApprovalDenied,
    /// A call under approval whose approval was not given in time (it did not run).
    ApprovalExpired,
}

impl Outcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::InputRequired => "input_required",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::NotFound => "not_found",
            Self::Withheld => "withheld",
            Self::InvalidArguments => "invalid_arguments",
            Self::ToolError => "tool_error",
            Self::InternalError => "internal_error",
            Self::Panicked => "panicked",
            Self::TimedOut => "timed_out",
            Self::Cancelled => "cancelled",
            Self::AuditUnavailable => "audit_unavailable",
            Self::Started => "started",
            Self::ApprovalPending => "approval_pending",
            Self::ApprovalDenied => "approval_denied",
            Self::ApprovalExpired => "approval_expired",
        }
    }

    /// Whether the guard let the request through to the pack.
    pub(crate) fn decision(self) -> &'static str {
        match self {
            Self::Unauthenticated
            | Self::Forbidden
            | Self::RateLimited
            | Self::NotFound
            | Self::Withheld
            | Self::InvalidArguments
            | Self::AuditUnavailable
            | Self::ApprovalPending
            | Self::ApprovalDenied
            | Self::ApprovalExpired => "refused",
            _ => "allowed",
        }
    }
}

/// Where a request came from: its ids and the client, as the transport and `_meta` say.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origin {
    /// The HTTP request's `X-Request-Id`, or the JSON-RPC id.
    pub(crate) request_id: Option<String>,
    /// The W3C trace id of `_meta.traceparent` or the HTTP `traceparent` header.
    pub(crate) trace_id: Option<String>,
    /// The client's name (`clientInfo`).
    pub(crate) client: Option<String>,
    /// The client's address, when the refusal came before the request was read.
    pub(crate) client_ip: Option<String>,
    /// The JSON-RPC id, for traces.
    pub(crate) jsonrpc_id: Option<String>,
    /// The `Mcp-Session-Id` header of a 2025 session, for traces.
    pub(crate) session_id: Option<String>,
    /// The W3C `traceparent` and `tracestate` the trace continues, when traces are on.
    pub(crate) traceparent: Option<String>,
    pub(crate) tracestate: Option<String>,
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), if well formed.
pub(crate) fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.trim().split('-');
    let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(trace, 32) && hex(span, 16) && trace.bytes().any(|b| b != b'0'))
        .then(|| trace.to_ascii_lowercase())
}
