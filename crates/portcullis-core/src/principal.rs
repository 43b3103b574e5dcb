//! Who is calling.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

/// The authenticated identity behind a request, visible to the guard pipeline, logs and
/// tools.
/// Cheap to clone: it travels with every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    id: Arc<str>,
    scopes: Arc<Scopes>,
    /// A JWT's issuer and `client_id`, for the audit log.
    token: Option<Arc<TokenClaims>>,
    /// The SHA-256 of the API key it presented, so a reload can tell a rotated key.
    credential: Option<[u8; 32]>,
    /// When its credential stops being valid (a JWT's `exp` plus the leeway), in seconds
    /// since the Unix epoch: streams it opened end then.
    expires: Option<u64>,
}

/// What the audit log keeps of a JWT besides its subject.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TokenClaims {
    issuer: String,
    client_id: Option<String>,
}

/// What a principal may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scopes {
    /// Everything: the local user on stdio, or anyone on a loopback listener without
    /// authentication configured (the operating system is the perimeter there).
    All,
    /// Exactly these scopes.
    Granted(BTreeSet<String>),
}

impl Principal {
    /// The local user (stdio, and loopback HTTP without authentication).
    pub fn local_user() -> Self {
        static LOCAL: std::sync::LazyLock<Principal> = std::sync::LazyLock::new(|| Principal {
            id: Arc::from("local"),
            scopes: Arc::new(Scopes::All),
            token: None,
            credential: None,
            expires: None,
        });
        LOCAL.clone()
    }

    /// An authenticated principal with `scopes`.
    pub fn new(id: impl Into<String>, scopes: impl IntoIterator<Item = String>) -> Self {
        let id: String = id.into();
        Self {
            id: Arc::from(id),
            scopes: Arc::new(Scopes::Granted(scopes.into_iter().collect())),
            token: None,
            credential: None,
            expires: None,
        }
    }

    /// The principal of the `[[auth.api_keys]]` entry `name`: `key:NAME` with its scopes
    /// (the authentication layer adds the key's hash as its credential).
    pub fn api_key(name: &str, scopes: impl IntoIterator<Item = String>) -> Self {
        Self::new(format!("key:{name}"), scopes)
    }

    /// The same principal, authenticated by the API key whose SHA-256 is `hash`.
    #[must_use]
    pub fn with_credential(mut self, hash: [u8; 32]) -> Self {
        self.credential = Some(hash);
        self
    }

    /// The SHA-256 of the API key this principal presented, if it presented one.
    pub fn credential(&self) -> Option<&[u8; 32]> {
        self.credential.as_ref()
    }

    /// The same principal, authenticated by a JWT from `issuer` (with its `client_id`).
    #[must_use]
    pub fn with_token(mut self, issuer: String, client_id: Option<String>) -> Self {
        self.token = Some(Arc::new(TokenClaims { issuer, client_id }));
        self
    }

    /// The same principal, whose credential is valid until `unix_secs` (seconds since the
    /// Unix epoch): streams it opens end then.
    #[must_use]
    pub fn valid_until(mut self, unix_secs: u64) -> Self {
        self.expires = Some(unix_secs);
        self
    }

    /// When this principal's credential stops being valid, if it does.
    pub fn expires_at(&self) -> Option<std::time::SystemTime> {
        // A time past what the clock can hold (an `exp` of 2^63) is as good as never.
        self.expires.and_then(|secs| {
            std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(secs))
        })
    }

    /// Whether this principal's credential has expired.
    pub fn expired(&self) -> bool {
        self.expires_at()
            .is_some_and(|at| at <= std::time::SystemTime::now())
    }

    /// The time left until this principal's credential expires (`None`: it does not).
    pub fn time_left(&self) -> Option<std::time::Duration> {
        self.expires_at().map(|at| {
            at.duration_since(std::time::SystemTime::now())
                .unwrap_or_default()
        })
    }

    /// The issuer of the JWT this principal presented, if it presented one.
    pub fn issuer(&self) -> Option<&str> {
        self.token.as_deref().map(|t| t.issuer.as_str())
    }

    /// The `client_id` claim of the JWT this principal presented, if any.
    pub fn client_id(&self) -> Option<&str> {
        self.token.as_deref().and_then(|t| t.client_id.as_deref())
    }

    /// A stable identifier: `local`, `key:NAME`, `jwt:SUBJECT` (a token with `sub`) or
    /// `jwt-client:CLIENT_ID` (a token with only `client_id`, e.g. client credentials).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The scopes of `required` this principal lacks (empty when it may proceed).
    pub fn missing<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        match self.scopes.as_ref() {
            Scopes::All => Vec::new(),
            Scopes::Granted(granted) => required
                .iter()
                .filter(|s| !granted.contains(*s))
                .map(String::as_str)
                .collect(),
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)
    }
}
