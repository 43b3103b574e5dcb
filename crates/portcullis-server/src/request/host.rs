//! The Host and Origin allow-lists (DNS-rebinding protection), answered as rmcp answers on
//! the MCP path: asked by authentication (so a challenge never names a refused Host) and
//! by the legacy HTTP+SSE transport.

use axum::http::{HeaderMap, StatusCode, Uri, header};

/// The Host and Origin allow-lists, with the answers rmcp gives on the MCP path: a `Host`
/// (or HTTP/2 `:authority`) not listed is 403, a malformed one 400; an `Origin` not listed
/// (every `Origin` when the list is empty) is 403, a request without one passes. An entry
/// without a port matches any port, `:*` too.
pub(crate) fn check_host_and_origin(
    uri: &Uri,
    headers: &HeaderMap,
    allowed_hosts: &[String],
    allowed_origins: &[String],
) -> Result<(), (StatusCode, &'static str)> {
    let forbidden = |message: &'static str| (StatusCode::FORBIDDEN, message);
    check_host(uri, headers, allowed_hosts)?;
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin
        .to_str()
        .map_err(|_| forbidden("Forbidden: Invalid Origin header encoding"))?;
    let origin =
        parse_origin(origin).ok_or_else(|| forbidden("Forbidden: Invalid Origin header"))?;
    let origin_allowed = allowed_origins.iter().any(|allowed| {
        let allowed = allowed.trim();
        let (base, any_port) = match allowed.strip_suffix(":*") {
            Some(base) => (base, true),
            None => (allowed, false),
        };
        match (parse_origin(base), &origin) {
            (Some(Origin::Null), Origin::Null) => !any_port,
            (Some(Origin::Tuple(scheme, name, port)), Origin::Tuple(o_scheme, o_name, o_port)) => {
                if any_port && port.is_some() {
                    return false;
                }
                *scheme == *o_scheme
                    && *name == *o_name
                    && match port {
                        // A portless entry matches any port, as rmcp does for now.
                        None => true,
                        Some(port) => o_port.or_else(|| default_port(o_scheme)) == Some(port),
                    }
            }
            _ => false,
        }
    });
    if !origin_allowed {
        tracing::warn!(
            "rejected request with disallowed Origin header (possible cross-origin attack)"
        );
        return Err(forbidden("Forbidden: Origin header is not allowed"));
    }
    Ok(())
}

/// The Host allow-list alone, with rmcp's answers (see [`check_host_and_origin`]). Also asked
/// by authentication, so that a challenge never names a Host this list refuses.
pub(crate) fn check_host(
    uri: &Uri,
    headers: &HeaderMap,
    allowed_hosts: &[String],
) -> Result<(), (StatusCode, &'static str)> {
    let bad = |message: &'static str| (StatusCode::BAD_REQUEST, message);
    let forbidden = |message: &'static str| (StatusCode::FORBIDDEN, message);
    let host = match headers.get(header::HOST) {
        Some(value) => {
            let text = value
                .to_str()
                .map_err(|_| bad("Bad Request: Invalid Host header encoding"))?;
            let authority = axum::http::uri::Authority::try_from(text)
                .map_err(|_| bad("Bad Request: Invalid Host header"))?;
            (normalize(authority.host()), authority.port_u16())
        }
        None => {
            let authority = uri
                .authority()
                .ok_or_else(|| bad("Bad Request: missing Host header"))?;
            (normalize(authority.host()), authority.port_u16())
        }
    };
    let host_allowed = allowed_hosts.is_empty()
        || allowed_hosts.iter().any(|allowed| {
            let allowed = allowed.trim();
            let (name, port) = match axum::http::uri::Authority::try_from(allowed) {
                Ok(authority) => (normalize(authority.host()), authority.port_u16()),
                Err(_) => (normalize(allowed), None),
            };
            !allowed.is_empty() && name == host.0 && port.is_none_or(|p| host.1 == Some(p))
        });
    if !host_allowed {
        tracing::warn!(
            "rejected request with disallowed Host header (possible DNS rebinding attempt)"
        );
        return Err(forbidden("Forbidden: Host header is not allowed"));
    }
    Ok(())
}

#[derive(Debug, PartialEq)]
enum Origin {
    Null,
    Tuple(String, String, Option<u16>),
}

fn parse_origin(value: &str) -> Option<Origin> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.eq_ignore_ascii_case("null") {
        return Some(Origin::Null);
    }
    let uri = Uri::try_from(value).ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    Some(Origin::Tuple(
        scheme,
        normalize(authority.host()),
        authority.port_u16(),
    ))
}

fn normalize(host: &str) -> String {
    host.trim_matches('[')
        .trim_matches(']')
        .to_ascii_lowercase()
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: Option<&str>, origin: Option<&str>, hosts: &[&str], origins: &[&str]) -> u16 {
        let mut headers = HeaderMap::new();
        if let Some(host) = host {
            headers.insert(header::HOST, host.parse().expect("host"));
        }
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, origin.parse().expect("origin"));
        }
        let hosts: Vec<String> = hosts.iter().map(ToString::to_string).collect();
        let origins: Vec<String> = origins.iter().map(ToString::to_string).collect();
        match check_host_and_origin(&Uri::from_static("/sse"), &headers, &hosts, &origins) {
            Ok(()) => 200,
            Err((status, _)) => status.as_u16(),
        }
    }

    #[test]
    fn hosts_and_origins_are_checked_like_the_mcp_path() {
        let local = ["localhost", "127.0.0.1:8080"];
        assert_eq!(check(Some("localhost:9999"), None, &local, &[]), 200);
        assert_eq!(check(Some("LOCALHOST"), None, &local, &[]), 200);
        assert_eq!(check(Some("127.0.0.1:8080"), None, &local, &[]), 200);
        assert_eq!(check(Some("127.0.0.1:8081"), None, &local, &[]), 403);
        assert_eq!(check(Some("evil.example"), None, &local, &[]), 403);
        assert_eq!(check(Some("bad host"), None, &local, &[]), 400);
        assert_eq!(check(None, None, &local, &[]), 400);
        // An empty origin list refuses every Origin; none at all passes.
        assert_eq!(
            check(
                Some("localhost"),
                Some("http://localhost:3000"),
                &local,
                &[]
            ),
            403
        );
        let origins = [
            "http://localhost:*",
            "https://app.example",
            "https://x.example:8443",
        ];
        assert_eq!(
            check(
                Some("localhost"),
                Some("http://localhost:3000"),
                &local,
                &origins
            ),
            200
        );
        assert_eq!(
            check(
                Some("localhost"),
                Some("https://app.example:1"),
                &local,
                &origins
            ),
            200
        );
        assert_eq!(
            check(
                Some("localhost"),
                Some("https://x.example:8443"),
                &local,
                &origins
            ),
            200
        );
        assert_eq!(
            check(
                Some("localhost"),
                Some("https://x.example"),
                &local,
                &origins
            ),
            403
        );
        assert_eq!(
            check(
                Some("localhost"),
                Some("http://app.example"),
                &local,
                &origins
            ),
            403
        );
        assert_eq!(
            check(Some("localhost"), Some("null"), &local, &origins),
            403
        );
        assert_eq!(check(Some("localhost"), Some("::"), &local, &origins), 403);
    }
}
