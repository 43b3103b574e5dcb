//! Authentication, authorization and limits: who may call, what they may call, how often.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

/// Authentication of HTTP requests. Every request to the MCP endpoint must pass one of the
/// configured methods; `/healthz`, `/readyz` and the protected-resource metadata stay open.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// API keys, each stored as the SHA-256 of the key (`portcullis keys new` prints one).
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// OAuth 2.1 resource server: JWT access tokens from your identity provider.
    pub jwt: Option<JwtConfig>,
    /// Also accept API keys in an `X-API-Key` header (besides `Authorization: Bearer`).
    #[serde(default)]
    pub accept_x_api_key: bool,
    /// The protected resource's URI (RFC 9728 `resource`, and the JWT audience unless
    /// `jwt.audience` says otherwise), for example `https://mcp.example.com/mcp`.
    pub resource: Option<String>,
    /// Scopes listed in the protected-resource metadata (`scopes_supported`).
    #[serde(default)]
    pub scopes_supported: Vec<String>,
    /// Show each principal only what it has the scopes for in `tools/list`,
    /// `resources/list`, `resources/templates/list` and `prompts/list` (calls, reads and gets
    /// without the scopes are refused either way). Also accepted under its first name,
    /// `hide_unauthorized_tools`.
    #[serde(default = "yes", alias = "hide_unauthorized_tools")]
    pub hide_unauthorized: bool,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            jwt: None,
            accept_x_api_key: false,
            resource: None,
            scopes_supported: Vec::new(),
            hide_unauthorized: true,
        }
    }
}

fn yes() -> bool {
    true
}

impl AuthSection {
    /// Whether any method is configured.
    pub fn is_enabled(&self) -> bool {
        !self.api_keys.is_empty() || self.jwt.is_some()
    }
}

/// One API key.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Who holds the key; the principal's name in logs and audit.
    pub name: String,
    /// Lowercase hex SHA-256 of the key. Keys are 256-bit random tokens, so a fast hash is
    /// enough (a slow password hash would only add latency to every request). Use
    /// `${ENV}` to keep it out of the file.
    pub sha256: String,
    /// Scopes this key grants.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// JWT validation (the MCP authorization spec's resource-server role).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// Expected `iss`; also the authorization server listed in the protected-resource
    /// metadata.
    pub issuer: String,
    /// Expected `aud` (RFC 8707 audience binding). Defaults to `auth.resource`.
    pub audience: Option<String>,
    /// Where the signing keys come from: `jwks_url`, `jwks_file`, or OIDC discovery from the
    /// issuer (`discovery = true`). Exactly one.
    pub jwks_url: Option<String>,
    /// A local JWKS file (air-gapped setups and tests), relative to the config file.
    pub jwks_file: Option<PathBuf>,
    /// Find `jwks_uri` through `{issuer}/.well-known/openid-configuration`.
    #[serde(default)]
    pub discovery: bool,
    /// A PEM file of extra certificate authorities to trust when fetching the JWKS and the
    /// discovery document over HTTPS (a private identity provider), relative to the config
    /// file. The public web's roots (Mozilla's, built in) are always trusted.
    pub ca_file: Option<PathBuf>,
    /// Accepted signature algorithms; only asymmetric ones are allowed (`RS256`, `RS384`,
    /// `RS512`, `PS256`, `PS384`, `PS512`, `ES256`, `ES384`, `EdDSA`). Never `none` or HMAC.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// Seconds a fetched JWKS is cached before it is fetched again (an unknown `kid` also
    /// triggers a refresh, at most once per `jwks_min_refresh_secs`).
    #[serde(default = "default_jwks_cache")]
    pub jwks_cache_secs: u64,
    /// Least time between two JWKS refreshes triggered by unknown `kid`s.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_secs: u64,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "ES256", "EdDSA"].map(str::to_owned).to_vec()
}
fn default_leeway() -> u64 {
    30
}
fn default_jwks_cache() -> u64 {
    600
}
fn default_jwks_min_refresh() -> u64 {
    30
}

/// Whether `url` may carry signing keys: `https://`, or `http://` to a loopback host (a
/// local test identity provider). Keys fetched over plain HTTP from anywhere else could be
/// replaced on the way, and every token forged.
pub fn is_key_url(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    match parsed.scheme() {
        "https" => true,
        "http" => match parsed.host() {
            Some(url::Host::Domain(host)) => host == "localhost",
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        },
        _ => false,
    }
}

/// Per-tool policy, keyed by tool name in `[tools.NAME]`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolPolicy {
    /// Scopes a principal needs to call the tool (all of them). Replaces the pack's
    /// `required_scopes`.
    pub required_scopes: Option<Vec<String>>,
    /// Hard ceiling for one call, in seconds (overrides `limits.tool_timeout_secs`).
    pub timeout_secs: Option<u64>,
    /// Calls per principal to this tool.
    pub rate_limit: Option<RateLimit>,
    /// A human approves each call before it runs, bound to the exact call (principal, tool,
    /// arguments, the config's generation and the tool's definition) and used once:
    /// `elicit` (the calling client asks its user), `console` (an approver decides in the
    /// console; needs `[console] enabled`) or `elicit-or-console`. An argument such as
    /// `confirm` never counts as approval. Replaces the pack's.
    pub approval: Option<crate::ApprovalMode>,
    /// How long an approval is waited for and stays valid (default 300 s, at most a day).
    /// A call waits at most this long and its own timeout.
    pub approval_timeout_secs: Option<u64>,
    /// Who may approve in the console, any one of: principal ids (entries starting with
    /// `key:`, `jwt:` or `jwt-client:`, or `local`) and scopes (every other entry, e.g.
    /// `approve`). Default: holders of the `approve` scope. A principal never approves its
    /// own call in the console unless it is listed here by id.
    pub approvers: Option<Vec<String>>,
    /// Whether calls run as tasks (`never`, `optional`, `required`; see `[tasks]`).
    /// Replaces the pack's.
    pub task: Option<crate::TaskMode>,
}

/// Per-pack policy, keyed by pack name in `[packs.NAME]` (`files`, `sql`, `prompts`,
/// `resources`, `custom` for library tools). It covers everything the pack serves: tools,
/// resources, resource templates and prompts.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackPolicy {
    /// Scopes a principal needs to see and use anything of the pack (all of them): call its
    /// tools, read its resources, get its prompts, complete their arguments, subscribe.
    /// `[tools.NAME]` and a prompt's or resource's own `required_scopes` replace it.
    #[serde(default)]
    pub required_scopes: Vec<String>,
    /// Hard ceiling in seconds for one call, read or get of the pack (overrides
    /// `limits.tool_timeout_secs`; `[tools.NAME] timeout_secs` overrides this).
    pub timeout_secs: Option<u64>,
    /// Calls, reads and gets per principal, counted for each tool, prompt, static resource
    /// or resource template of the pack separately (all reads through one template share a
    /// count); `[tools.NAME] rate_limit` overrides it for that tool.
    pub rate_limit: Option<RateLimit>,
    /// Human approval of every tool call of the pack (see `[tools.NAME] approval`);
    /// `[tools.NAME] approval` replaces it for that tool.
    pub approval: Option<crate::ApprovalMode>,
    /// How long an approval is waited for and stays valid (default 300 s).
    pub approval_timeout_secs: Option<u64>,
    /// Who may approve in the console (see `[tools.NAME] approvers`).
    pub approvers: Option<Vec<String>>,
    /// Whether the pack's tool calls run as tasks (see `[tools.NAME] task`); default:
    /// `optional` for commands, SQL, HTTP API and upstream tools, `never` for the rest.
    pub task: Option<crate::TaskMode>,
}

/// A token bucket: `per_minute` steady rate, `burst` calls at once.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained calls per minute.
    pub per_minute: u32,
    /// Calls allowed at once before the rate applies (default: `per_minute / 6`, at least 1).
    pub burst: Option<u32>,
}

impl RateLimit {
    /// The bucket size in effect: `burst`, or `per_minute / 6` (at least 1) when unset.
    pub fn effective_burst(&self) -> u32 {
        self.burst.unwrap_or((self.per_minute / 6).max(1))
    }
}

/// Per-tool and per-pack policies.
pub type ToolPolicies = BTreeMap<String, ToolPolicy>;
/// Per-pack policies.
pub type PackPolicies = BTreeMap<String, PackPolicy>;

/// The signature algorithms a JWT may use: asymmetric only.
pub const ASYMMETRIC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// The largest `limits.max_subscriptions`: resources one subscriber may follow.
pub const MAX_SUBSCRIPTIONS: usize = 1000;

pub(crate) fn validate(config: &crate::Config) -> Result<(), crate::validate::Issue> {
    use crate::validate::issue;
    let auth = &config.auth;
    let mut names = crate::validate::Unique::new("key name");
    // One key, one principal: a key listed twice would be whichever entry matched last.
    let mut hashes = crate::validate::Unique::new("key hash (sha256)");
    for (i, key) in auth.api_keys.iter().enumerate() {
        if key.name.trim().is_empty() {
            return Err(issue(
                format!("auth.api_keys[{i}].name"),
                "must not be empty",
            ));
        }
        names.check(format!("auth.api_keys[{i}].name"), key.name.as_str())?;
        let hex = key.sha256.len() == 64
            && key
                .sha256
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c));
        if !hex {
            return Err(issue(
                format!("auth.api_keys[{i}].sha256"),
                "must be 64 lowercase hex characters (the SHA-256 of the key); `portcullis keys new` prints one",
            ));
        }
        hashes.check(format!("auth.api_keys[{i}].sha256"), &key.sha256)?;
    }
    if let Some(jwt) = &auth.jwt {
        let sources = usize::from(jwt.jwks_url.is_some())
            + usize::from(jwt.jwks_file.is_some())
            + usize::from(jwt.discovery);
        if sources != 1 {
            return Err(issue(
                "auth.jwt",
                "give exactly one key source: `jwks_url`, `jwks_file` or `discovery = true`",
            ));
        }
        if let Some(url) = &jwt.jwks_url
            && !is_key_url(url)
        {
            return Err(issue(
                "auth.jwt.jwks_url",
                "must be an https:// URL (http:// only to a loopback host): keys fetched over plain HTTP can be replaced on the way",
            ));
        }
        if jwt.discovery && !is_key_url(&jwt.issuer) {
            return Err(issue(
                "auth.jwt.issuer",
                "discovery needs an https:// issuer (http:// only to a loopback host): the document names the keys",
            ));
        }
        if jwt.audience.is_none() && auth.resource.is_none() {
            return Err(issue(
                "auth.jwt.audience",
                "set `auth.jwt.audience` or `auth.resource`: tokens must be bound to this server (RFC 8707)",
            ));
        }
        if jwt.algorithms.is_empty() {
            return Err(issue(
                "auth.jwt.algorithms",
                "must list at least one algorithm",
            ));
        }
        for algorithm in &jwt.algorithms {
            if !ASYMMETRIC_ALGORITHMS.contains(&algorithm.as_str()) {
                return Err(issue(
                    "auth.jwt.algorithms",
                    format!(
                        "`{algorithm}` is not allowed; use asymmetric algorithms only: {}",
                        ASYMMETRIC_ALGORITHMS.join(", ")
                    ),
                ));
            }
        }
    }
    let console = config.console.enabled;
    // An elicit approval's state is used once: across replicas and restarts only Redis
    // can remember that.
    let shared_state_without_redis = config
        .cluster
        .as_ref()
        .is_some_and(|c| !c.state_keys.is_empty() && c.redis_url.is_none());
    let elicits = |mode: Option<crate::ApprovalMode>| {
        matches!(
            mode,
            Some(crate::ApprovalMode::Elicit | crate::ApprovalMode::ElicitOrConsole)
        )
    };
    if shared_state_without_redis
        && (config.tools.values().any(|t| elicits(t.approval))
            || config.packs.values().any(|p| elicits(p.approval)))
    {
        return Err(crate::validate::issue(
            "cluster.redis_url",
            "elicit approvals with `cluster.state_keys` need `cluster.redis_url`: a sealed approval opens on every replica and after a restart, and only Redis can remember that it was used",
        ));
    }
    for (name, policy) in &config.tools {
        crate::approval::validate(
            &format!("tools.{name}"),
            policy.approval,
            policy.approval_timeout_secs,
            policy.approvers.as_deref(),
            console,
        )?;
    }
    for (name, policy) in &config.packs {
        crate::approval::validate(
            &format!("packs.{name}"),
            policy.approval,
            policy.approval_timeout_secs,
            policy.approvers.as_deref(),
            console,
        )?;
    }
    let limits = &config.limits;
    for (key, limit) in [
        ("limits.per_principal", &limits.per_principal),
        (
            "limits.per_ip_unauthenticated",
            &limits.per_ip_unauthenticated,
        ),
    ] {
        if limit.is_some_and(|l| l.per_minute == 0 || l.burst == Some(0)) {
            return Err(issue(
                key,
                "`per_minute` and `burst` must be at least 1 (leave the limit out to disable it)",
            ));
        }
    }
    for (key, value) in [
        ("max_in_flight", limits.max_in_flight as u64),
        ("body_timeout_secs", limits.body_timeout_secs),
        (
            "max_listen_streams_per_principal",
            limits.max_listen_streams_per_principal as u64,
        ),
        (
            "max_get_streams_per_principal",
            limits.max_get_streams_per_principal as u64,
        ),
        ("max_subscriptions", limits.max_subscriptions as u64),
        ("max_sessions", limits.max_sessions as u64),
        (
            "max_sessions_per_principal",
            limits.max_sessions_per_principal as u64,
        ),
        ("session_idle_secs", limits.session_idle_secs),
    ] {
        if value == 0 {
            return Err(issue(
                format!("limits.{key}"),
                "must be at least 1 (these caps cannot be turned off; raise them instead)",
            ));
        }
    }
    if let Some(share) = limits.max_in_flight_per_principal
        && (share == 0 || (share >= limits.max_in_flight && limits.max_in_flight > 1))
    {
        return Err(issue(
            "limits.max_in_flight_per_principal",
            format!(
                "must be at least 1 and below limits.max_in_flight ({}): one principal must not take every place (leave it out for an eighth of max_in_flight)",
                limits.max_in_flight
            ),
        ));
    }
    if limits.max_subscriptions > MAX_SUBSCRIPTIONS {
        return Err(issue(
            "limits.max_subscriptions",
            format!("must be at most {MAX_SUBSCRIPTIONS}"),
        ));
    }
    let policies = config
        .tools
        .iter()
        .map(|(name, p)| (format!("tools.{name}"), p.timeout_secs, p.rate_limit))
        .chain(
            config
                .packs
                .iter()
                .map(|(name, p)| (format!("packs.{name}"), p.timeout_secs, p.rate_limit)),
        );
    for (key, timeout, rate_limit) in policies {
        if timeout == Some(0) {
            return Err(issue(
                format!("{key}.timeout_secs"),
                "must be at least 1 second",
            ));
        }
        if rate_limit.is_some_and(|l| l.per_minute == 0 || l.burst == Some(0)) {
            return Err(issue(
                format!("{key}.rate_limit"),
                "`per_minute` and `burst` must be at least 1",
            ));
        }
    }
    Ok(())
}
