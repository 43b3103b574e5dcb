//! OAuth 2.1 resource server: JWT access tokens validated against the issuer's JWKS.
//!
//! Only asymmetric algorithms from the configured list are accepted (never `none`, never
//! HMAC, so a public key can never be used as an HMAC secret); `iss`, `aud` (RFC 8707), `exp`
//! and `nbf` (with leeway) are checked. Keys come from a JWKS URL, OIDC discovery or a local
//! file, are cached, and are refreshed when a token names an unknown `kid` (at most once per
//! `jwks_min_refresh_secs`, so random `kid`s cannot make us hammer the identity provider).

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use super::Principal;

/// Why a token was not accepted.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwtError {
    /// The token is not valid; the message goes into `error_description`.
    #[error("{0}")]
    Invalid(String),
    /// The signing keys could not be obtained (identity provider unreachable).
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
}

enum KeySource {
    Url(String),
    File(PathBuf),
    Discovery(String),
}

struct CachedKey {
    key: DecodingKey,
    algorithm: Option<Algorithm>,
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, CachedKey>,
    fetched: Option<Instant>,
}

pub(crate) struct JwtValidator {
    issuer: String,
    audience: String,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    source: KeySource,
    http: reqwest::Client,
    cache: tokio::sync::RwLock<KeyCache>,
    /// Serialises refreshes and remembers the last one.
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    cache_ttl: Duration,
    min_refresh: Duration,
    /// Tokens already verified (by SHA-256 of the token): a signature check costs far more
    /// than the rest of a request, and clients reuse one token for many requests.
    verified: std::sync::Mutex<HashMap<[u8; 32], Verified>>,
}

struct Verified {
    principal: Principal,
    /// The token's `exp`, re-checked on every hit.
    exp: u64,
    /// Entries are trusted for at most `VERIFIED_TTL`, so a key removed from the JWKS stops
    /// being honoured soon after.
    at: Instant,
}

/// How long a verified token is trusted without checking its signature again.
const VERIFIED_TTL: Duration = Duration::from_secs(60);
/// Most verified tokens remembered; past it the cache starts over.
const VERIFIED_MAX: usize = 10_000;

#[derive(Deserialize)]
struct Claims {
    /// Required by the validation; optional here so its absence gets the precise message.
    exp: Option<u64>,
    sub: Option<String>,
    client_id: Option<String>,
    scope: Option<String>,
    scp: Option<ScopeList>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ScopeList {
    List(Vec<String>),
    Text(String),
}

impl JwtValidator {
    pub(crate) fn new(
        config: &portcullis_config::JwtConfig,
        resource: Option<&str>,
        base_dir: &std::path::Path,
    ) -> Result<Self, crate::SetupError> {
        let audience = config
            .audience
            .as_deref()
            .or(resource)
            .ok_or_else(|| {
                crate::SetupError::setting(
                    "auth.jwt.audience",
                    "not configured (nor auth.resource)",
                )
            })?
            .to_owned();
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| {
                Algorithm::from_str(a).map_err(|_| {
                    crate::SetupError::setting(
                        "auth.jwt.algorithms",
                        format_args!("unknown JWT algorithm `{a}`"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let source = match (&config.jwks_url, &config.jwks_file, config.discovery) {
            (Some(url), _, _) => KeySource::Url(url.clone()),
            (None, Some(file), _) => KeySource::File(base_dir.join(file)),
            _ => KeySource::Discovery(config.issuer.trim_end_matches('/').to_owned()),
        };
        // Keys only over https, redirects included; plain http only when the configured
        // source is a loopback test server.
        let loopback_http = [config.jwks_url.as_deref(), Some(config.issuer.as_str())]
            .into_iter()
            .flatten()
            .any(|u| u.starts_with("http://") && portcullis_config::is_key_url(u));
        let http = crate::outbound::client(&crate::outbound::ClientOptions {
            ca_file: config.ca_file.as_ref().map(|f| base_dir.join(f)),
            https_only: !loopback_http,
            ..crate::outbound::ClientOptions::default()
        })
        .map_err(|e| crate::SetupError::setting("auth.jwt", e))?;
        Ok(Self {
            issuer: config.issuer.clone(),
            audience,
            algorithms,
            leeway: config.leeway_secs,
            source,
            http,
            cache: tokio::sync::RwLock::default(),
            last_refresh: tokio::sync::Mutex::default(),
            cache_ttl: Duration::from_secs(config.jwks_cache_secs),
            min_refresh: Duration::from_secs(config.jwks_min_refresh_secs),
            verified: std::sync::Mutex::default(),
        })
    }

    /// Loads the keys once at start-up so a broken key source is visible early (logged;
    /// requests retry later).
    pub(crate) async fn warm_up(&self) {
        if let Err(error) = self.refresh(true).await {
            tracing::warn!(%error, "JWT signing keys could not be loaded at start-up; will retry on demand");
        }
    }

    /// Validates `token` and returns its principal.
    async fn verify(&self, token: &str) -> Result<(Principal, u64), JwtError> {
        let header = decode_header(token)
            .map_err(|_| JwtError::Invalid("the token is not a well-formed JWT".to_owned()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(JwtError::Invalid(format!(
                "tokens signed with {:?} are not accepted",
                header.alg
            )));
        }
        let kid = header.kid.clone().unwrap_or_default();
        if !self.has_key(&kid).await {
            self.refresh(false).await?;
        }
        let cache = self.cache.read().await;
        let cached = cache
            .keys
            .get(&kid)
            .or_else(|| {
                if kid.is_empty() && cache.keys.len() == 1 {
                    cache.keys.values().next()
                } else {
                    None
                }
            })
            .ok_or_else(|| JwtError::Invalid("the token's signing key is unknown".to_owned()))?;
        if cached.algorithm.is_some_and(|a| a != header.alg) {
            return Err(JwtError::Invalid(
                "the token's algorithm does not match its key".to_owned(),
            ));
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.leeway = self.leeway;
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = decode::<Claims>(token, &cached.key, &validation)
            .map_err(|e| JwtError::Invalid(describe(&e)))?;
        let claims = data.claims;
        let client_id = claims.client_id.clone();
        // A user (`sub`) and a client acting for itself (`client_id` only) are two
        // namespaces: a client named like a user must not share that user's sessions and
        // limits.
        // An empty or blank claim names no one: it counts as absent (else every such token
        // would be the one principal `jwt:`).
        let named = |claim: Option<String>| claim.filter(|c| !c.trim().is_empty());
        let id = match (named(claims.sub), named(claims.client_id)) {
            (Some(subject), _) => format!("jwt:{subject}"),
            (None, Some(client)) => format!("jwt-client:{client}"),
            (None, None) => {
                return Err(JwtError::Invalid(
                    "the token has neither a `sub` nor a `client_id` that names someone".to_owned(),
                ));
            }
        };
        let mut scopes: Vec<String> = claims
            .scope
            .map(|s| s.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        match claims.scp {
            Some(ScopeList::List(list)) => scopes.extend(list),
            Some(ScopeList::Text(text)) => {
                scopes.extend(text.split_whitespace().map(str::to_owned))
            }
            None => {}
        }
        Ok((
            Principal::new(id, scopes)
                .with_token(self.issuer.clone(), client_id)
                // Streams opened with this token end when it does.
                .valid_until(claims.exp.unwrap_or(0).saturating_add(self.leeway)),
            claims.exp.unwrap_or(0),
        ))
    }

    /// Validates `token` and returns its principal, from the cache of verified tokens when it
    /// was seen in the last minute (expiry is still checked every time).
    pub(crate) async fn validate(&self, token: &str) -> Result<Principal, JwtError> {
        use sha2::Digest as _;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        {
            let mut verified = self
                .verified
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(entry) = verified.get(&digest) {
                if entry.at.elapsed() < VERIFIED_TTL && now <= entry.exp.saturating_add(self.leeway)
                {
                    return Ok(entry.principal.clone());
                }
                verified.remove(&digest);
            }
        }
        let (principal, exp) = self.verify(token).await?;
        let mut verified = self
            .verified
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if verified.len() >= VERIFIED_MAX {
            verified.clear();
        }
        verified.insert(
            digest,
            Verified {
                principal: principal.clone(),
                exp,
                at: Instant::now(),
            },
        );
        Ok(principal)
    }

    /// The issuer, for the protected-resource metadata.
    pub(crate) fn issuer(&self) -> &str {
        &self.issuer
    }

    async fn has_key(&self, kid: &str) -> bool {
        let cache = self.cache.read().await;
        let fresh = cache
            .fetched
            .is_some_and(|at| at.elapsed() < self.cache_ttl);
        fresh && (cache.keys.contains_key(kid) || (kid.is_empty() && cache.keys.len() == 1))
    }

    /// Fetches the key set again, unless the last refresh was less than `min_refresh` ago
    /// (`force` skips that check, for start-up).
    async fn refresh(&self, force: bool) -> Result<(), JwtError> {
        let mut last = self.last_refresh.lock().await;
        if !force && last.is_some_and(|at| at.elapsed() < self.min_refresh) {
            let cache = self.cache.read().await;
            return if cache.fetched.is_some() {
                Ok(())
            } else {
                Err(JwtError::KeysUnavailable(
                    "waiting before the next attempt".to_owned(),
                ))
            };
        }
        *last = Some(Instant::now());
        let set = self.fetch().await.map_err(JwtError::KeysUnavailable)?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Ok(key) = DecodingKey::from_jwk(jwk) else {
                continue;
            };
            let algorithm = jwk
                .common
                .key_algorithm
                .and_then(|a| serde_json::to_value(a).ok())
                .and_then(|v| v.as_str().and_then(|s| Algorithm::from_str(s).ok()));
            keys.insert(
                jwk.common.key_id.clone().unwrap_or_default(),
                CachedKey { key, algorithm },
            );
        }
        tracing::info!(keys = keys.len(), "JWT signing keys loaded");
        *self.cache.write().await = KeyCache {
            keys,
            fetched: Some(Instant::now()),
        };
        Ok(())
    }

    async fn fetch(&self) -> Result<JwkSet, String> {
        match &self.source {
            KeySource::File(path) => {
                let path = path.clone();
                let text = tokio::task::spawn_blocking(move || {
                    portcullis_core::operator_file::read_to_string(&path)
                })
                .await
                .map_err(|e| format!("read JWKS file: {e}"))?
                .map_err(|e| format!("read JWKS file: {e}"))?;
                serde_json::from_str(&text).map_err(|e| format!("JWKS file is not a key set: {e}"))
            }
            KeySource::Url(url) => self.get_json(url, "the JWKS").await,
            KeySource::Discovery(issuer) => {
                #[derive(Deserialize)]
                struct Metadata {
                    issuer: Option<String>,
                    jwks_uri: String,
                }
                let mut last_error = String::new();
                for path in [
                    "/.well-known/openid-configuration",
                    "/.well-known/oauth-authorization-server",
                ] {
                    match self
                        .get_json::<Metadata>(&format!("{issuer}{path}"), "the discovery document")
                        .await
                    {
                        Ok(metadata) => {
                            // RFC 8414 §3.3: the document must be the configured issuer's.
                            let same = metadata.issuer.as_deref().map(|i| i.trim_end_matches('/'))
                                == Some(issuer.as_str());
                            if !same {
                                return Err(
                                    "the discovery document names another issuer".to_owned()
                                );
                            }
                            if !portcullis_config::is_key_url(&metadata.jwks_uri) {
                                return Err(
                                    "the discovery document's jwks_uri is not https".to_owned()
                                );
                            }
                            return self
                                .get_json(&metadata.jwks_uri, "the discovered JWKS")
                                .await;
                        }
                        Err(error) => last_error = error,
                    }
                }
                Err(last_error)
            }
        }
    }

    /// GETs `url` (TLS-verified, capped at [`MAX_KEY_DOCUMENT`]) and parses it. Errors name
    /// `what` was fetched, never the URL.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        what: &str,
    ) -> Result<T, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("fetching {what}: {}", crate::outbound::describe(&e)))?;
        if !response.status().is_success() {
            return Err(format!("fetching {what}: HTTP {}", response.status()));
        }
        let body = crate::outbound::read_capped(response, MAX_KEY_DOCUMENT)
            .await
            .map_err(|e| format!("fetching {what}: {e}"))?;
        serde_json::from_slice(&body).map_err(|e| format!("{what} is not valid JSON: {e}"))
    }
}

/// Largest JWKS or discovery document accepted.
const MAX_KEY_DOCUMENT: usize = 1024 * 1024;

/// A client-facing description of a validation failure.
fn describe(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "the token has expired".to_owned(),
        ErrorKind::ImmatureSignature => "the token is not valid yet".to_owned(),
        ErrorKind::InvalidIssuer => "the token's issuer is not accepted".to_owned(),
        ErrorKind::InvalidAudience => {
            "the token is not meant for this server (audience)".to_owned()
        }
        ErrorKind::InvalidSignature => "the token's signature is invalid".to_owned(),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            "the token's algorithm is not accepted".to_owned()
        }
        ErrorKind::MissingRequiredClaim(claim) => format!("the token lacks the `{claim}` claim"),
        _ => "the token is invalid".to_owned(),
    }
}
