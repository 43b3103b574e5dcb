//! OpenTelemetry traces, the server's half: the guard's span per request carries the MCP
//! semantic-convention attributes and continues the client's W3C trace context
//! (`_meta.traceparent`, else the HTTP `traceparent` header); a tool call gets a child
//! `execute_tool` span. The exporter (OTLP) is the binary's: it installs the
//! `tracing-opentelemetry` layer and then calls [`enable`]. Until then nothing here does any
//! work beyond one relaxed atomic load, and no span gets an attribute.
//!
//! Attributes never hold argument values or a client's resource URI: a resource is named by
//! its label, as in the log line. A session id is a bearer secret: `mcp.session.id` is its
//! digest.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::trace::{
    SpanContext, SpanId, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::request::{Origin, Outcome, Target};

/// The `tracing` target of the spans only OpenTelemetry sees (the per-tool-call
/// `execute_tool` span): outside Portcullis's crates, so the log filter, which logs other
/// crates at `warn` at most, never shows them, and log lines keep the guard's span.
pub const OTEL_ONLY_TARGET: &str = "otel::mcp";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Says that a `tracing-opentelemetry` layer is installed: from now on spans carry the MCP
/// attributes and continue the client's trace. Called once by the binary, after it set up
/// the exporter.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether [`enable`] was called.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Gives the guard's span of a request its name, kind and attributes, and the client's trace
/// context as its parent.
pub(crate) fn start_request(
    span: &Span,
    method: &str,
    target: Target<'_>,
    item: &str,
    origin: &Origin,
) {
    if !enabled() {
        return;
    }
    span.record("otel.name", format!("{method} {item}"));
    span.record("otel.kind", "server");
    span.set_attribute("mcp.method.name", method.to_owned());
    match target {
        Target::Tool(_) => span.set_attribute("gen_ai.tool.name", item.to_owned()),
        Target::Prompt(_) => span.set_attribute("gen_ai.prompt.name", item.to_owned()),
        // The label (a configured URI or the template), never the client's URI.
        Target::Resource(_) | Target::Template(_) | Target::Listen(_) => {
            span.set_attribute("mcp.resource.uri", item.to_owned());
        }
    }
    if let Some(id) = &origin.jsonrpc_id {
        span.set_attribute("jsonrpc.request.id", id.clone());
    }
    if let Some(session) = &origin.session_id {
        span.set_attribute("mcp.session.id", session_digest(session));
    }
    if let Some(parent) = origin
        .traceparent
        .as_deref()
        .and_then(|tp| remote_context(tp, origin.tracestate.as_deref()))
    {
        // Fails only when the span is already closed or not OpenTelemetry's; either way
        // there is nothing to continue.
        let _ = span.set_parent(parent);
    }
}

/// What spans carry of a 2025 session id: the id is a bearer secret (whoever holds it
/// speaks in that session), so only its SHA-256, cut to 32 hex characters, which still
/// groups a session's spans.
fn session_digest(id: &str) -> String {
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(id.as_bytes());
    hash.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// Records how the request ended: `error.type` and an error status unless it succeeded.
pub(crate) fn finish_request(span: &Span, outcome: Outcome) {
    if !enabled() || matches!(outcome, Outcome::Ok | Outcome::InputRequired) {
        return;
    }
    span.set_attribute("error.type", outcome.as_str());
    span.set_status(Status::error(outcome.as_str()));
}

/// The span around one tool's code, a child of the request's span; [`Span::none`] when
/// traces are off.
pub(crate) fn tool_span(name: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: OTEL_ONLY_TARGET,
        "execute_tool",
        otel.name = format!("execute_tool {name}"),
        otel.kind = "internal",
    );
    span.set_attribute("gen_ai.operation.name", "execute_tool");
    span.set_attribute("gen_ai.tool.name", name.to_owned());
    span
}

/// Records on the tool's span that it failed (`isError: true`, or an internal error).
pub(crate) fn tool_failed(span: &Span, outcome: Outcome) {
    if enabled() {
        span.set_attribute("error.type", outcome.as_str());
        span.set_status(Status::error(outcome.as_str()));
    }
}

/// The OpenTelemetry trace id of `span`, when traces are on and it has one.
pub(crate) fn trace_id(span: &Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// The remote parent a W3C `traceparent` (and `tracestate`) names, if well formed: version
/// `00` or a later one (not `ff`), a non-zero trace id and parent id.
fn remote_context(traceparent: &str, tracestate: Option<&str>) -> Option<opentelemetry::Context> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !(hex(version, 2) && hex(trace, 32) && hex(parent, 16) && hex(flags, 2))
        || version.eq_ignore_ascii_case("ff")
        || (version == "00" && parts.next().is_some())
    {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(parent).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8();
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let remote = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, state);
    remote
        .is_valid()
        .then(|| opentelemetry::Context::new().with_remote_span_context(remote))
}

#[cfg(test)]
mod tests {
    use super::remote_context;
    use opentelemetry::trace::TraceContextExt as _;

    #[test]
    fn a_traceparent_becomes_a_remote_parent_and_garbage_does_not() {
        let cx = remote_context(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            Some("vendor=x"),
        )
        .expect("valid");
        let span = cx.span();
        let sc = span.span_context();
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(sc.span_id().to_string(), "00f067aa0ba902b7");
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_state().get("vendor"), Some("x"));
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-zzf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(remote_context(bad, None).is_none(), "{bad}");
        }
    }
}
