//! What an upstream answered, as the tool's result: JSON as structured content (narrowed by
//! `response_path`) with a readable text or a rendered template; text as text; binary
//! summarised. Error statuses and transport failures become messages the model can act on,
//! never the upstream's body unless the tool opts in (then capped and scrubbed).

use portcullis_core::outbound::{ReadError, refusal_of};
use portcullis_core::{ToolError, ToolOutput};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;

use super::{ApiTool, Upstream};

/// Longest excerpt of an upstream error body shown with `include_error_body`.
const ERROR_EXCERPT_CHARS: usize = 300;

/// How much of an upstream error body is scrubbed to make the excerpt: room for
/// [`ERROR_EXCERPT_CHARS`] characters of four bytes each and for the secrets removed
/// before them.
const ERROR_EXCERPT_WINDOW_BYTES: usize = 16 * 1024;

/// A failed request: a refusal by the outbound guard, a timeout, an unreachable upstream.
pub(super) fn transport_error(upstream: &Upstream, error: &reqwest::Error) -> ToolError {
    let name = &upstream.name;
    if let Some(refusal) = refusal_of(error) {
        // A name that does not resolve is an unreachable upstream, not a refusal.
        if matches!(refusal, portcullis_core::outbound::Refusal::Unresolved(_)) {
            return ToolError::rejected(format!("`{name}` is unreachable; try again later"));
        }
        return ToolError::rejected(format!("request to `{name}` refused: {refusal}"));
    }
    if error.is_timeout() {
        return ToolError::rejected(format!(
            "`{name}` did not answer within {} s",
            upstream.timeout.as_secs()
        ));
    }
    if error.is_connect() {
        return ToolError::rejected(format!("`{name}` is unreachable; try again later"));
    }
    if error.is_redirect() {
        return ToolError::rejected(format!("`{name}` redirected too many times"));
    }
    ToolError::internal(
        format!("request to `{name}`"),
        portcullis_core::outbound::describe(error),
    )
}

/// Why reading the body failed.
pub(super) fn read_error(upstream: &Upstream, error: ReadError) -> ToolError {
    match error {
        ReadError::TooLarge(max) => ToolError::rejected(format!(
            "the response of `{}` is larger than {max} bytes and was not read; narrow the request",
            upstream.name
        )),
        ReadError::Transport(detail) => ToolError::internal(
            format!("reading the response of `{}`", upstream.name),
            detail,
        ),
    }
}

/// Seconds to wait from a `Retry-After` header (seconds or an HTTP date).
fn retry_after(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .map_or(0, |d| d.as_secs()),
    )
}

/// An error status as a message; with `include_error_body`, a scrubbed excerpt of the body.
pub(super) fn status_error(
    upstream: &Upstream,
    tool: &ApiTool,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ToolError {
    let name = &upstream.name;
    let code = status.as_u16();
    let mut message = match code {
        401 | 403 => format!("authentication with `{name}` failed (HTTP {code})"),
        404 => format!("not found: `{name}` has nothing at that address (HTTP 404)"),
        429 => match retry_after(headers) {
            Some(secs) => format!("rate limited by `{name}`; retry after {secs} s"),
            None => format!("rate limited by `{name}`; retry later"),
        },
        300..=399 => {
            format!("`{name}` answered with a redirect that was not followed (HTTP {code})")
        }
        500..=599 => format!("`{name}` failed (HTTP {code})"),
        _ => format!("`{name}` refused the request (HTTP {code})"),
    };
    if tool.include_error_body {
        let excerpt = excerpt(upstream, tool, body);
        if !excerpt.is_empty() {
            message.push_str(": ");
            message.push_str(&excerpt);
        }
    }
    if code == 404 {
        ToolError::NotFound(message)
    } else {
        ToolError::rejected(message)
    }
}

/// A short, single-line excerpt of `body` with control characters, configured header values
/// and recognisable secrets removed.
///
/// The window is cut first and only the window is scrubbed, so the work is bounded by
/// [`ERROR_EXCERPT_WINDOW_BYTES`] whatever the upstream sent (up to `max_response_bytes`).
fn excerpt(upstream: &Upstream, tool: &ApiTool, body: &[u8]) -> String {
    let cut = body.len() > ERROR_EXCERPT_WINDOW_BYTES;
    let mut text =
        String::from_utf8_lossy(&body[..body.len().min(ERROR_EXCERPT_WINDOW_BYTES)]).into_owned();
    if cut {
        // The last word may be a secret cut short (a JWT missing its signature no longer
        // looks like one), and scrubbing shortens what comes before it: it goes.
        let end = text.rfind(char::is_whitespace).unwrap_or(0);
        text.truncate(end);
    }
    // Longest first, so a token inside a longer value goes with it.
    let mut secrets: Vec<&String> = upstream.secrets.iter().chain(&tool.secrets).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        if !secret.is_empty() {
            text = text.replace(secret.as_str(), "***");
        }
    }
    let text: String = portcullis_core::redact_secrets(&text)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_EXCERPT_CHARS)
        .collect();
    text.trim().to_owned()
}

fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence == "application/json" || essence.ends_with("+json")
}

fn is_text(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.starts_with("text/")
        || matches!(
            essence,
            "application/xml"
                | "application/javascript"
                | "application/x-yaml"
                | "application/yaml"
        )
        || essence.ends_with("+xml")
}

/// The value at a dotted path (`web.results`; numbers index arrays).
fn narrow<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .try_fold(value, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// A successful response as the tool's result.
pub(super) fn success(
    upstream: &Upstream,
    tool: &ApiTool,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<ToolOutput, ToolError> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let looks_json = is_json(&content_type)
        || (content_type.is_empty() && matches!(body.first(), Some(b'{' | b'[')));
    if looks_json {
        let parsed: Value = serde_json::from_slice(&body).map_err(|_| {
            ToolError::rejected(format!(
                "`{}` answered with invalid JSON ({} bytes)",
                upstream.name,
                body.len()
            ))
        })?;
        return json_result(upstream, tool, &parsed);
    }
    if tool.response_path.is_some() || tool.template.is_some() {
        return Err(ToolError::rejected(format!(
            "`{}` answered with `{}` instead of JSON",
            upstream.name,
            if content_type.is_empty() {
                "no content type"
            } else {
                content_type.as_str()
            }
        )));
    }
    let textual = is_text(&content_type) || !content_inspector::inspect(&body).is_binary();
    match String::from_utf8(body) {
        Ok(text) if textual => Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into()),
        Ok(text) => Ok(binary(&content_type, text.len())),
        Err(e) => Ok(binary(&content_type, e.as_bytes().len())),
    }
}

fn binary(content_type: &str, len: usize) -> ToolOutput {
    let kind = if content_type.is_empty() {
        "unknown type"
    } else {
        content_type
    };
    CallToolResult::success(vec![ContentBlock::text(format!(
        "binary response ({kind}, {len} bytes); not shown"
    ))])
    .into()
}

fn json_result(
    upstream: &Upstream,
    tool: &ApiTool,
    parsed: &Value,
) -> Result<ToolOutput, ToolError> {
    let narrowed = match &tool.response_path {
        Some(path) => narrow(parsed, path).ok_or_else(|| {
            ToolError::rejected(format!(
                "the response of `{}` has no `{path}`",
                upstream.name
            ))
        })?,
        None => parsed,
    };
    let text = match &tool.template {
        Some(template) => template
            .render_result(
                minijinja::context! { data => minijinja::Value::from(minijinja::value::Serde(narrowed)) },
                &tool.name,
            )?,
        None => serde_json::to_string_pretty(narrowed).unwrap_or_default(),
    };
    let structured = match narrowed {
        Value::Object(_) => narrowed.clone(),
        other => {
            let key = tool
                .response_path
                .as_deref()
                .and_then(|p| p.rsplit('.').next())
                .unwrap_or("result");
            serde_json::json!({ key: other })
        }
    };
    let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    Ok(result.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_narrow_objects_and_arrays() {
        let value =
            serde_json::json!({ "web": { "results": [{ "title": "a" }, { "title": "b" }] } });
        assert_eq!(
            narrow(&value, "web.results.1.title"),
            Some(&serde_json::json!("b"))
        );
        assert_eq!(narrow(&value, "web.missing"), None);
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "17".parse().expect("value"));
        assert_eq!(retry_after(&headers), Some(17));
        let later = httpdate::fmt_http_date(
            std::time::SystemTime::now() + std::time::Duration::from_secs(120),
        );
        headers.insert(RETRY_AFTER, later.parse().expect("value"));
        assert!(retry_after(&headers).is_some_and(|s| (100..=120).contains(&s)));
    }
}
