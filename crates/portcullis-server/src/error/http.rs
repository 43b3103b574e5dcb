//! Every answer the HTTP layers give themselves, before or instead of rmcp: one type, and
//! the one place where each becomes a status, headers and a body. The layers decide *that*
//! a request is refused and why; this decides what the client reads. A JSON-RPC error in
//! a body is one of `portcullis_core::error`'s, re-exported by the parent module.

use std::borrow::Cow;
use std::time::Duration;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rmcp::model::ErrorData;
use serde_json::{Value, json};

/// A refusal the HTTP layers answer.
#[derive(Debug)]
pub(crate) enum HttpRefusal {
    /// A JSON-RPC error for request `id` (`null` when none could be read), answered with
    /// `status` (400 for a malformed or misnamed request, 403 for missing scopes).
    Rpc {
        /// The HTTP status.
        status: StatusCode,
        /// The request's id.
        id: Value,
        /// The error.
        error: Box<ErrorData>,
    },
    /// An OAuth challenge (RFC 6750): `WWW-Authenticate: Bearer …` and the error as JSON, or
    /// the JSON-RPC error `rpc` as the body when there is one (403 for scopes), so the SDKs
    /// show their caller the reason.
    Challenge {
        /// 401 or 403.
        status: StatusCode,
        /// The header's value.
        www_authenticate: String,
        /// The OAuth error code and description, when there is one.
        error: Option<(String, String)>,
        /// A JSON-RPC error to answer instead of the OAuth body.
        rpc: Option<Box<(Value, ErrorData)>>,
    },
    /// A plain-text refusal worded as rmcp words its own (Host/Origin allow-lists, the
    /// legacy transport's missing `sessionId`).
    Text {
        /// The HTTP status.
        status: StatusCode,
        /// The text.
        text: Cow<'static, str>,
    },
    /// A request that reached a layer without the principal authentication attaches to
    /// every request it lets through (fail closed): 401, empty.
    NoPrincipal,
    /// Something this server does not serve here (a disabled endpoint): 404, empty.
    NotFound,
    /// A session that does not exist or belongs to someone else: 404, the two alike.
    SessionNotFound,
    /// A body over `limits.max_body_bytes`.
    TooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// A body that did not arrive within `limits.body_timeout_secs`.
    BodyTimeout {
        /// The limit.
        after: Duration,
    },
    /// A rate limit or a cap: 429 with `Retry-After`.
    RateLimited {
        /// How long to wait.
        wait: Duration,
        /// What was exceeded, naming the setting.
        message: Cow<'static, str>,
    },
    /// Shared state (Redis, the signing keys) is unreachable: 503 `temporarily_unavailable`
    /// with `Retry-After: 5`.
    Unavailable {
        /// What cannot be done.
        description: &'static str,
    },
    /// Every in-flight permit is taken: 503 `overloaded` with `Retry-After: 1`.
    Overloaded,
    /// A refusal of the console's JSON API: `{"error": code, "error_description": text}`.
    Console {
        /// The HTTP status.
        status: StatusCode,
        /// A short code (`not_found`, `forbidden`, `conflict`, `bad_request`).
        code: &'static str,
        /// What was wrong and what is allowed.
        description: Cow<'static, str>,
    },
}

impl From<(StatusCode, &'static str)> for HttpRefusal {
    /// The Host and Origin allow-lists' answers (`crate::request::check_host`).
    fn from((status, text): (StatusCode, &'static str)) -> Self {
        Self::Text {
            status,
            text: text.into(),
        }
    }
}

impl HttpRefusal {
    /// 400 with a JSON-RPC error.
    pub(crate) fn bad_request(id: Value, error: ErrorData) -> Self {
        Self::Rpc {
            status: StatusCode::BAD_REQUEST,
            id,
            error: Box::new(error),
        }
    }

    /// 429 with `Retry-After`.
    pub(crate) fn rate_limited(wait: Duration, message: impl Into<Cow<'static, str>>) -> Self {
        Self::RateLimited {
            wait,
            message: message.into(),
        }
    }

    /// The status this refusal is answered with.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Rpc { status, .. }
            | Self::Challenge { status, .. }
            | Self::Text { status, .. }
            | Self::Console { status, .. } => *status,
            Self::NoPrincipal => StatusCode::UNAUTHORIZED,
            Self::NotFound | Self::SessionNotFound => StatusCode::NOT_FOUND,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable { .. } | Self::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Whole seconds to wait, at least one (a `Retry-After` of 0 invites a hot loop).
pub(crate) fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

fn rpc_body(id: Value, error: &ErrorData) -> Json<Value> {
    Json(json!({ "jsonrpc": "2.0", "id": id, "error": error }))
}

fn with_retry_after(mut response: Response, secs: u64) -> Response {
    if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

impl IntoResponse for HttpRefusal {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            Self::Rpc { id, error, .. } => (status, rpc_body(id, &error)).into_response(),
            Self::Challenge {
                www_authenticate,
                error,
                rpc,
                ..
            } => {
                let mut response = match (rpc.map(|rpc| *rpc), error) {
                    (Some((id, error)), _) => (status, rpc_body(id, &error)).into_response(),
                    (None, Some((code, description))) => (
                        status,
                        Json(json!({ "error": code, "error_description": description })),
                    )
                        .into_response(),
                    (None, None) => (
                        status,
                        Json(json!({ "error": "unauthorized", "error_description": "this server requires a bearer token (API key or OAuth access token)" })),
                    )
                        .into_response(),
                };
                if let Ok(value) = HeaderValue::from_str(&www_authenticate) {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, value);
                }
                response
            }
            Self::Text { text, .. } => (status, text).into_response(),
            Self::NoPrincipal | Self::NotFound => status.into_response(),
            Self::SessionNotFound => (status, "Not Found: Session not found").into_response(),
            Self::TooLarge { limit } => (
                status,
                format!("Payload Too Large: request body exceeds {limit} bytes"),
            )
                .into_response(),
            Self::BodyTimeout { after } => (
                status,
                format!(
                    "Request Timeout: the body did not arrive within {} s (limits.body_timeout_secs)",
                    after.as_secs()
                ),
            )
                .into_response(),
            Self::RateLimited { wait, message } => {
                let secs = retry_after_secs(wait);
                let body = json!({ "error": "rate_limited", "error_description": message, "retry_after_secs": secs });
                with_retry_after((status, Json(body)).into_response(), secs)
            }
            Self::Unavailable { description } => {
                let body =
                    json!({ "error": "temporarily_unavailable", "error_description": description });
                with_retry_after((status, Json(body)).into_response(), 5)
            }
            Self::Overloaded => {
                let body = json!({ "error": "overloaded", "error_description": "too many requests in flight; retry shortly" });
                with_retry_after((status, Json(body)).into_response(), 1)
            }
            Self::Console {
                code, description, ..
            } => (
                status,
                Json(json!({ "error": code, "error_description": description })),
            )
                .into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parts(refusal: HttpRefusal) -> (StatusCode, Option<String>, String) {
        let response = refusal.into_response();
        let status = response.status();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, retry, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn each_refusal_has_its_status_its_retry_and_its_body() {
        let cases: Vec<(HttpRefusal, u16, Option<&str>, &str)> = vec![
            (
                HttpRefusal::bad_request(json!(7), ErrorData::invalid_request("no", None)),
                400,
                None,
                r#"{"error":{"code":-32600,"message":"no"},"id":7,"jsonrpc":"2.0"}"#,
            ),
            (HttpRefusal::NoPrincipal, 401, None, ""),
            (HttpRefusal::NotFound, 404, None, ""),
            (
                HttpRefusal::SessionNotFound,
                404,
                None,
                "Not Found: Session not found",
            ),
            (
                HttpRefusal::TooLarge { limit: 10 },
                413,
                None,
                "Payload Too Large: request body exceeds 10 bytes",
            ),
            (
                HttpRefusal::BodyTimeout {
                    after: Duration::from_secs(3),
                },
                408,
                None,
                "Request Timeout: the body did not arrive within 3 s (limits.body_timeout_secs)",
            ),
            (
                HttpRefusal::RateLimited {
                    wait: Duration::from_millis(1500),
                    message: "slow down".into(),
                },
                429,
                Some("2"),
                r#"{"error":"rate_limited","error_description":"slow down","retry_after_secs":2}"#,
            ),
            (
                HttpRefusal::RateLimited {
                    wait: Duration::ZERO,
                    message: "now".into(),
                },
                429,
                Some("1"),
                r#"{"error":"rate_limited","error_description":"now","retry_after_secs":1}"#,
            ),
            (
                HttpRefusal::Unavailable {
                    description: "redis is gone",
                },
                503,
                Some("5"),
                r#"{"error":"temporarily_unavailable","error_description":"redis is gone"}"#,
            ),
            (
                HttpRefusal::Overloaded,
                503,
                Some("1"),
                r#"{"error":"overloaded","error_description":"too many requests in flight; retry shortly"}"#,
            ),
            (
                HttpRefusal::Text {
                    status: StatusCode::FORBIDDEN,
                    text: "Forbidden: Host header is not allowed".into(),
                },
                403,
                None,
                "Forbidden: Host header is not allowed",
            ),
        ];
        for (refusal, status, retry, body) in cases {
            let seen = format!("{refusal:?}");
            let (got_status, got_retry, got_body) = parts(refusal).await;
            assert_eq!(got_status.as_u16(), status, "{seen}");
            assert_eq!(got_retry.as_deref(), retry, "{seen}");
            assert_eq!(got_body, body, "{seen}");
        }
    }

    #[tokio::test]
    async fn a_scope_challenge_carries_the_json_rpc_error_and_the_header() {
        let response = HttpRefusal::Challenge {
            status: StatusCode::FORBIDDEN,
            www_authenticate: "Bearer error=\"insufficient_scope\"".to_owned(),
            error: Some(("insufficient_scope".to_owned(), "needs x".to_owned())),
            rpc: Some(Box::new((
                json!(3),
                super::super::forbidden("tool `t`", &["x"]),
            ))),
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"insufficient_scope\""
        );
        let body: Value = serde_json::from_slice(
            &axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap(),
        )
        .unwrap();
        assert_eq!(body["id"], 3);
        assert_eq!(body["error"]["code"], super::super::FORBIDDEN);
        assert_eq!(body["error"]["data"]["requiredScopes"], json!(["x"]));
    }
}
