//! Authentication of HTTP requests: API keys and OAuth 2.1 JWT access tokens, the RFC 9728
//! protected-resource metadata, `WWW-Authenticate` challenges, and the per-IP (failed
//! attempts) and per-principal rate limits that sit next to them.
//!
//! The layer attaches a [`Principal`] to every request it lets through; the guard pipeline,
//! logs and the session binding read it from there. On stdio the principal is the local
//! user.

mod api_key;
mod client_ip;
mod jwt;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::request::Outcome;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use portcullis_config::Config;
use serde_json::json;

pub use api_key::{KEY_PREFIX, generate_key, hash_key};
pub use portcullis_core::{Principal, Scopes};

use crate::error::HttpRefusal;
use crate::limits::{LocalRateLimiter, RateLimitStore, Refusal};
use api_key::ApiKeys;
use client_ip::TrustedProxies;
use jwt::{JwtError, JwtValidator};

/// Well-known path of the RFC 9728 metadata.
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource";

/// Everything the authentication layer needs. Built once from the config.
pub struct AuthState {
    api_keys: ApiKeys,
    jwt: Option<JwtValidator>,
    accept_x_api_key: bool,
    resource: Option<String>,
    scopes_supported: Vec<String>,
    server_name: String,
    mcp_path: String,
    per_ip: Option<Arc<dyn RateLimitStore>>,
    per_principal: Option<Arc<dyn RateLimitStore>>,
    /// The limits themselves, to share them across replicas.
    limits: (
        Option<portcullis_config::RateLimit>,
        Option<portcullis_config::RateLimit>,
    ),
    trusted_proxies: TrustedProxies,
    /// `http.allowed_hosts`: without `resource`, only a Host this list accepts is named in
    /// challenges and metadata.
    allowed_hosts: Vec<String>,
}

impl AuthState {
    /// Builds the state from `config`; `Err` says what is wrong with the auth settings.
    pub fn from_config(config: &Config) -> Result<Self, crate::SetupError> {
        let auth = &config.auth;
        let jwt = auth
            .jwt
            .as_ref()
            .map(|jwt| JwtValidator::new(jwt, auth.resource.as_deref(), &config.base_dir))
            .transpose()?;
        let limiter = |limit: Option<portcullis_config::RateLimit>| {
            limit.map(|l| Arc::new(LocalRateLimiter::new(l)) as Arc<dyn RateLimitStore>)
        };
        Ok(Self {
            api_keys: ApiKeys::new(&auth.api_keys),
            jwt,
            accept_x_api_key: auth.accept_x_api_key,
            resource: auth.resource.clone(),
            scopes_supported: auth.scopes_supported.clone(),
            server_name: config.server.name.clone(),
            mcp_path: config.http.path.clone(),
            per_ip: limiter(config.limits.per_ip_unauthenticated),
            per_principal: limiter(config.limits.per_principal),
            limits: (
                config.limits.per_ip_unauthenticated,
                config.limits.per_principal,
            ),
            trusted_proxies: TrustedProxies::new(&config.http.trusted_proxies)?,
            allowed_hosts: config.http.allowed_hosts.clone(),
        })
    }

    /// [`AuthState::from_config`], with the limits shared through `cluster` when there is
    /// one (start-up and every reload build it this way).
    pub fn for_replica(
        config: &Config,
        cluster: Option<&Arc<crate::cluster::Cluster>>,
    ) -> Result<Self, crate::SetupError> {
        let state = Self::from_config(config)?;
        Ok(match cluster {
            Some(cluster) => state.shared(cluster),
            None => state,
        })
    }

    /// The same settings with the per-IP and per-principal limits shared by every replica
    /// through `cluster`.
    #[must_use]
    pub fn shared(mut self, cluster: &Arc<crate::cluster::Cluster>) -> Self {
        let shared = |namespace, limit: Option<portcullis_config::RateLimit>, when_down| {
            limit.map(|l| {
                Arc::new(crate::cluster::SharedLimiter::new(
                    Arc::clone(cluster),
                    namespace,
                    l,
                    when_down,
                )) as Arc<dyn RateLimitStore>
            })
        };
        self.per_ip = shared("ip", self.limits.0, cluster.unauthenticated_when_down);
        self.per_principal = shared("principal", self.limits.1, cluster.authenticated_when_down);
        self
    }

    /// `principal` as these settings see it, for a stream that outlives a config reload: an
    /// API key's principal with the scopes its key has now (`None` when the key is gone or
    /// was rotated, even under the same name);
    /// a JWT's while JWTs are still accepted and the token has not expired (the token itself
    /// is checked again on its next request); the local user only while authentication is
    /// off.
    pub fn revalidate(&self, principal: &Principal) -> Option<Principal> {
        // An expired credential is gone whatever the new config says.
        if principal.expired() {
            return None;
        }
        let id = principal.id();
        if id.starts_with("key:") {
            return self.api_keys.current(principal);
        }
        if id.starts_with("jwt:") || id.starts_with("jwt-client:") {
            return self.jwt.is_some().then(|| principal.clone());
        }
        (!self.is_enabled()).then(|| principal.clone())
    }

    /// Whether requests must authenticate.
    pub fn is_enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt.is_some()
    }

    /// Fetches JWT signing keys once so a broken key source shows in the logs at start-up.
    pub async fn warm_up(&self) {
        if let Some(jwt) = &self.jwt {
            jwt.warm_up().await;
        }
    }

    /// The request's `Host`, to name this server when `resource` is unset: only one that
    /// `http.allowed_hosts` accepts (`Err` is the answer to a request with another, as
    /// rmcp gives it); `localhost` without one.
    fn request_host<'h>(&self, headers: &'h HeaderMap) -> Result<&'h str, HttpRefusal> {
        let Some(host) = headers.get(header::HOST) else {
            return Ok("localhost");
        };
        // With a Host header the URI is not consulted.
        crate::request::check_host(&axum::http::Uri::default(), headers, &self.allowed_hosts)?;
        host.to_str().map_err(|_| {
            HttpRefusal::from((
                StatusCode::BAD_REQUEST,
                "Bad Request: Invalid Host header encoding",
            ))
        })
    }

    /// The metadata URL for `WWW-Authenticate`: next to the configured resource, or derived
    /// from the request's `Host` (when the allow-list accepts it).
    fn metadata_url(&self, headers: &HeaderMap) -> String {
        if let Some(resource) = &self.resource
            && let Some((scheme, rest)) = resource.split_once("://")
        {
            let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
            let path = if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            };
            return format!("{scheme}://{authority}{METADATA_PATH}{path}");
        }
        let host = self.request_host(headers).unwrap_or("localhost");
        format!("http://{host}{METADATA_PATH}{}", self.mcp_path)
    }

    /// A 401 or 403 with the Bearer challenge RFC 6750 and RFC 9728 describe.
    pub(crate) fn challenge(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        error: Option<(&str, &str)>,
        scope: Option<&str>,
    ) -> HttpRefusal {
        let mut parts = Vec::new();
        if let Some((code, description)) = error {
            parts.push(format!("error=\"{code}\""));
            parts.push(format!(
                "error_description=\"{}\"",
                description.replace('"', "'")
            ));
        }
        if let Some(scope) = scope {
            parts.push(format!("scope=\"{scope}\""));
        }
        parts.push(format!(
            "resource_metadata=\"{}\"",
            self.metadata_url(headers)
        ));
        HttpRefusal::Challenge {
            status,
            www_authenticate: format!("Bearer {}", parts.join(", ")),
            error: error.map(|(code, description)| (code.to_owned(), description.to_owned())),
            rpc: None,
        }
    }

    async fn principal(&self, headers: &HeaderMap) -> Result<Principal, Failure> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let api_key = self
            .accept_x_api_key
            .then(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .flatten();
        let Some(token) = bearer.or(api_key).filter(|t| !t.is_empty()) else {
            return Err(Failure::Missing);
        };
        if let Some(principal) = self.api_keys.authenticate(token) {
            return Ok(principal);
        }
        match &self.jwt {
            Some(jwt) if token.matches('.').count() == 2 => {
                jwt.validate(token).await.map_err(|e| match e {
                    JwtError::Invalid(message) => Failure::Invalid(message),
                    JwtError::KeysUnavailable(message) => Failure::Unavailable(message),
                })
            }
            _ => Err(Failure::Invalid("the credentials are not valid".to_owned())),
        }
    }
}

enum Failure {
    Missing,
    Invalid(String),
    Unavailable(String),
}

/// The authentication middleware for the MCP endpoint.
pub async fn authenticate(
    State(state): State<Arc<AuthState>>,
    mut request: Request,
    next: Next,
) -> Response {
    if !state.is_enabled() {
        request.extensions_mut().insert(Principal::local_user());
        return next.run(request).await;
    }
    // The Host allow-list first, so that a challenge never names a Host that the endpoint
    // behind refuses (DNS rebinding, a forged Host turned into a metadata URL).
    if let Err(refused) =
        crate::request::check_host(request.uri(), request.headers(), &state.allowed_hosts)
    {
        return HttpRefusal::from(refused).into_response();
    }
    let headers = request.headers();
    let principal = match state.principal(headers).await {
        Ok(principal) => principal,
        Err(failure) => {
            let peer = request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip());
            let ip = peer
                .map(|peer| state.trusted_proxies.client_ip(peer, headers).to_string())
                .unwrap_or_default();
            // Failed attempts count against the client's address; past the limit the answer
            // is 429 instead of another chance to guess.
            if let Some(limiter) = &state.per_ip
                && let Err(refusal) = limiter.check(&ip).await
            {
                let response = match refusal {
                    Refusal::Wait(wait) => {
                        tracing::warn!(%ip, "authentication failures over the per-IP limit");
                        metrics::counter!("portcullis_rate_limited_total", "limit" => "per_ip")
                            .increment(1);
                        HttpRefusal::rate_limited(
                            wait,
                            "too many unauthenticated requests from this address",
                        )
                    }
                    Refusal::Unavailable => limits_unavailable(),
                };
                return refused(response, Outcome::RateLimited, None, Some(ip));
            }
            let reason = match &failure {
                Failure::Missing => "missing",
                Failure::Invalid(_) => "invalid",
                Failure::Unavailable(_) => "unavailable",
            };
            metrics::counter!("portcullis_auth_failures_total", "reason" => reason).increment(1);
            let response = match failure {
                Failure::Missing => state.challenge(headers, StatusCode::UNAUTHORIZED, None, None),
                Failure::Invalid(message) => {
                    tracing::info!(%ip, reason = %message, "authentication failed");
                    state.challenge(
                        headers,
                        StatusCode::UNAUTHORIZED,
                        Some(("invalid_token", &message)),
                        None,
                    )
                }
                Failure::Unavailable(message) => {
                    tracing::error!(error = %message, "cannot validate tokens: signing keys unavailable");
                    HttpRefusal::Unavailable {
                        description: "token validation is temporarily unavailable",
                    }
                }
            };
            return refused(response, Outcome::Unauthenticated, None, Some(ip));
        }
    };
    if let Some(limiter) = &state.per_principal
        && let Err(refusal) = limiter.check(principal.id()).await
    {
        let response = match refusal {
            Refusal::Wait(wait) => {
                metrics::counter!("portcullis_rate_limited_total", "limit" => "per_principal")
                    .increment(1);
                HttpRefusal::rate_limited(wait, "rate limit exceeded for this principal")
            }
            Refusal::Unavailable => limits_unavailable(),
        };
        return refused(response, Outcome::RateLimited, Some(principal), None);
    }
    tracing::debug!(principal = %principal, "authenticated");
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// 503 for a rate limit that cannot be checked (its shared buckets are unreachable and it
/// fails closed).
fn limits_unavailable() -> HttpRefusal {
    HttpRefusal::Unavailable {
        description: "rate limits cannot be checked right now; retry shortly",
    }
}

/// A refusal made before the request was read, for the layer that records it (audit
/// log): attached to the response.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub(crate) outcome: Outcome,
    pub(crate) principal: Option<Principal>,
    /// The client's address as `trusted_proxies` decide it (refusals before
    /// authentication).
    pub(crate) client_ip: Option<String>,
}

fn refused(
    refusal: HttpRefusal,
    outcome: Outcome,
    principal: Option<Principal>,
    client_ip: Option<String>,
) -> Response {
    let mut response = refusal.into_response();
    response.extensions_mut().insert(Refused {
        outcome,
        principal,
        client_ip,
    });
    response
}

/// `GET /.well-known/oauth-protected-resource[/path]` (RFC 9728).
pub async fn metadata(State(state): State<Arc<AuthState>>, headers: HeaderMap) -> Response {
    if !state.is_enabled() {
        return HttpRefusal::NotFound.into_response();
    }
    let resource = match &state.resource {
        Some(resource) => resource.clone(),
        None => match state.request_host(&headers) {
            Ok(host) => format!("http://{host}{}", state.mcp_path),
            Err(refused) => return refused.into_response(),
        },
    };
    let authorization_servers: Vec<&str> = state.jwt.iter().map(|j| j.issuer()).collect();
    Json(json!({
        "resource": resource,
        "authorization_servers": authorization_servers,
        "scopes_supported": state.scopes_supported,
        "bearer_methods_supported": ["header"],
        "resource_name": state.server_name,
    }))
    .into_response()
}
