//! The configuration model. Every field's doc comment is its reference documentation: the
//! generated JSON Schema and `docs/config-reference.md` are built from them.

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::auth::{AuthSection, PackPolicies, RateLimit, ToolPolicies};

/// A whole Portcullis configuration file.
///
/// There is deliberately no `Default`: a server must be described explicitly.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Identity of this server as shown to clients.
    pub server: ServerSection,
    /// Streamable HTTP transport settings (ignored with `serve --stdio`).
    #[serde(default)]
    pub http: HttpSection,
    /// Log output on stderr.
    #[serde(default)]
    pub logging: LoggingSection,
    /// Limits on tool calls, HTTP traffic and sessions.
    #[serde(default)]
    pub limits: LimitsSection,
    /// Authentication of HTTP requests (API keys, JWT). Required to listen on a non-loopback
    /// address.
    #[serde(default)]
    pub auth: AuthSection,
    /// Policy per tool (`[tools.read_file]`): required scopes, timeout, rate limit.
    #[serde(default)]
    pub tools: ToolPolicies,
    /// Policy per pack (`[packs.files]`, `[packs.prompts]`, `[packs.resources]`, `[packs.sql]`):
    /// required scopes, timeout and rate limit for everything the pack serves.
    #[serde(default)]
    pub packs: PackPolicies,
    /// Directory roots served by the files pack. Each root is read-only unless `writable = true`.
    #[serde(default)]
    pub files: Vec<crate::files::FilesRoot>,
    /// Prompt templates offered through `prompts/list` and `prompts/get`.
    #[serde(default)]
    pub prompts: Vec<crate::prompts::PromptConfig>,
    /// Static resources (inline text or a file) offered through `resources/list`.
    #[serde(default)]
    pub resources: Vec<crate::resources::StaticResourceConfig>,
    /// SQL sources (SQLite, PostgreSQL, MySQL/MariaDB) and the tools defined on them:
    /// parameterized statements, and opt-in read-only ad-hoc query and schema tools.
    #[serde(default)]
    pub sql: Vec<crate::sql::SqlSource>,
    /// HTTP APIs (the HTTP pack) and the tools defined on them: typed parameters become a
    /// request's path, query and body; every request passes the outbound guard (allowed
    /// hosts, no private or metadata addresses unless allowed, redirects re-checked).
    #[serde(default)]
    pub api: Vec<crate::http::HttpSource>,
    /// Allowlisted programs run as tools (the command pack): argv built from typed
    /// parameters, never a shell, inside a files root, with a clean environment, time,
    /// output and resource limits.
    #[serde(default)]
    pub commands: Vec<crate::commands::CommandTool>,
    /// Folders of markdown notes (the notes pack), served as live resources: clients that
    /// subscribe hear when a note changes, and when notes are added or removed.
    #[serde(default)]
    pub notes: Vec<crate::notes::NotesFolder>,
    /// Folders of agent skills (the skills pack), served as the Skills extension
    /// (`skills/list`, `skills/get`, `resources/directory/read`) with every file a live
    /// `skill://` resource carrying its SHA-256 digest.
    #[serde(default)]
    pub skills: Vec<crate::skills::SkillsFolder>,
    /// MCP servers served through Portcullis (the gateway): a stdio program or an HTTP
    /// endpoint each, their tools, resources and prompts under a prefix, behind the same
    /// guard as everything else, and their definitions pinned in the lock file.
    #[serde(default)]
    pub upstreams: Vec<crate::upstreams::Upstream>,
    /// Settings of the gateway as a whole (the lock file).
    #[serde(default)]
    pub gateway: crate::upstreams::GatewaySection,
    /// Resource templates (RFC 6570 URI templates with typed variables), each backed by a
    /// text template, a SQL statement of a `[[sql]]` source, or an HTTP tool of an `[[api]]`
    /// source.
    #[serde(default)]
    pub resource_templates: Vec<crate::resources::ResourceTemplateConfig>,
    /// The tamper-evident audit log (off unless configured).
    pub audit: Option<crate::operations::AuditSection>,
    /// Prometheus metrics at `/metrics` (on by default; see `listen` and `bearer_token`).
    #[serde(default)]
    pub metrics: crate::operations::MetricsSection,
    /// Reloading the config while serving (SIGHUP; optionally when the file changes).
    #[serde(default)]
    pub reload: crate::operations::ReloadSection,
    /// OpenTelemetry traces over OTLP (off unless an endpoint is configured here or in the
    /// `OTEL_EXPORTER_OTLP_*` variables).
    #[serde(default)]
    pub traces: crate::operations::TracesSection,
    /// Many replicas: shared rate limits, sessions and notifications in Redis, and the
    /// keys that seal multi-round state (off unless configured).
    pub cluster: Option<crate::cluster::ClusterSection>,
    /// The web console at `/console` (off unless enabled).
    #[serde(default)]
    pub console: crate::ConsoleSection,
    /// Tasks (the Tasks extension, SEP-2663): tool calls a client may poll for, kept for
    /// a while, per principal; in Redis with `[cluster]`.
    #[serde(default)]
    pub tasks: crate::tasks::TasksSection,
    /// Directory that relative paths in this file are resolved against: the directory that
    /// holds the config file. Set by the loader, never read from the file.
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: PathBuf,
}

impl Config {
    /// Every file the config reads besides itself, resolved against [`Config::base_dir`]:
    /// prompt `template_file`s, static resources' `file`s, SQL `seed`s, `auth.jwt.jwks_file`
    /// and the `ca_file`s. A reload that watches the config file watches these too.
    pub fn referenced_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = Vec::new();
        files.extend(self.prompts.iter().filter_map(|p| p.template_file.clone()));
        files.extend(self.resources.iter().filter_map(|r| r.file.clone()));
        files.extend(self.sql.iter().filter_map(|s| s.seed.clone()));
        files.extend(self.api.iter().filter_map(|a| a.ca_file.clone()));
        files.extend(self.upstreams.iter().filter_map(|u| u.ca_file.clone()));
        if let Some(jwt) = &self.auth.jwt {
            files.extend(jwt.jwks_file.clone());
            files.extend(jwt.ca_file.clone());
        }
        if !self.upstreams.is_empty() {
            // A pin accepted with `portcullis upstreams pin` is served after a reload.
            files.push(self.gateway.lock_file.clone());
        }
        let mut resolved: Vec<PathBuf> = files.into_iter().map(|f| self.base_dir.join(f)).collect();
        resolved.sort();
        resolved.dedup();
        resolved
    }
}

/// Identity of the server.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Machine-readable server name reported in `serverInfo` (for example `acme-tools`).
    pub name: String,
    /// Human-readable title reported in `serverInfo`.
    pub title: Option<String>,
    /// Version reported in `serverInfo`; defaults to the Portcullis version.
    pub version: Option<String>,
    /// Instructions sent to clients on `initialize` / `server/discover`, telling the model how
    /// to use this server's tools.
    pub instructions: Option<String>,
}

/// Streamable HTTP transport settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Socket address to listen on. A non-loopback address requires `[auth]` to be
    /// configured.
    #[schemars(with = "String")]
    pub listen: SocketAddr,
    /// Path of the MCP endpoint.
    pub path: String,
    /// Accepted `Host` header values (host or host:port), against DNS rebinding. Loopback
    /// names by default.
    pub allowed_hosts: Vec<String>,
    /// Accepted browser `Origin` values (`scheme://host[:port]`, `:*` for any port). Requests
    /// carrying another `Origin` are refused with 403; requests without `Origin` (CLI clients,
    /// SDKs) pass. Loopback origins by default; an empty list refuses every `Origin`.
    pub allowed_origins: Vec<String>,
    /// Largest accepted request body in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Seconds that in-flight requests get to finish after SIGTERM/SIGINT before the server
    /// exits anyway.
    pub shutdown_grace_secs: u64,
    /// Seconds between SIGTERM/SIGINT and closing the listener, during which `/readyz`
    /// answers 503 `draining` and requests are still served: time for a load balancer's
    /// health check to take the replica out of rotation, so no request is sent to a closed
    /// port. 0 (the default) closes at once (Kubernetes: a `preStop` sleep does the same).
    pub drain_secs: u64,
    /// Serve 2025-era clients (`initialize` + `Mcp-Session-Id`) with sessions. 2026-07-28
    /// requests are always stateless. When false, 2025-era requests are served without a
    /// session.
    pub legacy_sessions: bool,
    /// Also serve the deprecated 2024-11-05 HTTP+SSE transport for old clients: `GET /sse`
    /// opens an event stream that announces `/messages?sessionId=…`, where the client POSTs
    /// its messages. Off by default. The endpoints sit behind the same authentication, Host
    /// and Origin checks, body limit, scope checks and session caps as the MCP path; each
    /// session belongs to the principal that opened the stream.
    pub legacy_sse: bool,
    /// Reverse proxies (CIDRs, `["10.0.0.0/8", "127.0.0.1/32"]`) whose `X-Forwarded-For`
    /// is believed. Only when the connection comes from one of them is the client's address
    /// taken from that header: the right-most address in it that is not itself a trusted
    /// proxy. Otherwise the header is ignored and the client is the connection's peer. The
    /// client's address keys `limits.per_ip_unauthenticated` and is logged. Empty (the
    /// default): the header is never believed.
    pub trusted_proxies: Vec<String>,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            path: "/mcp".to_owned(),
            allowed_hosts: vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                "[::1]".to_owned(),
            ],
            allowed_origins: ["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"]
                .map(str::to_owned)
                .to_vec(),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace_secs: 10,
            drain_secs: 0,
            legacy_sessions: true,
            legacy_sse: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Log output. Logs always go to stderr; stdout belongs to the protocol.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// `auto` (JSON unless stderr is a terminal), `json` or `pretty`.
    pub format: LogFormat,
    /// Filter: a level (`trace`, `debug`, `info` — the default —, `warn`, `error`, `off`)
    /// and any `crate=level`, for example `info,portcullis_packs=debug`. Anything else (a
    /// misspelt level such as `verbose`) is refused at load.
    /// The `PORTCULLIS_LOG` environment variable and `serve --log-level` override it (and
    /// are checked the same way). A bare level applies to Portcullis itself; other crates
    /// log at `warn` (rmcp at `error`) unless named, because some of them log message
    /// bodies, SQL text or headers at lower levels.
    pub level: String,
    /// Key of the argument fingerprint in each call's log line (HMAC-SHA-256 of the argument
    /// values, so a value can neither be read nor guessed from the log). Give every replica
    /// the same key (`fingerprint_key = "${PORTCULLIS_FINGERPRINT_KEY}"`) to correlate their
    /// lines; without one, each process draws a random key at start.
    pub fingerprint_key: Option<crate::Secret>,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info".to_owned(),
            fingerprint_key: None,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// JSON when stderr is not a terminal, pretty otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Limits on tool calls, HTTP traffic and sessions.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsSection {
    /// Hard ceiling in seconds for one tool call; on expiry the call is cancelled and the
    /// client gets a timeout error. `[tools.NAME] timeout_secs` overrides it per tool.
    pub tool_timeout_secs: u64,
    /// HTTP requests per authenticated principal, across all tools (429 with `Retry-After`
    /// when exceeded).
    pub per_principal: Option<RateLimit>,
    /// HTTP requests per client IP address that carry no valid credentials (failed logins,
    /// probes), counted before authentication.
    pub per_ip_unauthenticated: Option<RateLimit>,
    /// HTTP requests served at once; more are refused with 503 at once rather than queued.
    /// A request counts until its response ends: a stream (`subscriptions/listen`, a
    /// 2025 session's GET stream or call) holds its place for as long as it is open.
    pub max_in_flight: usize,
    /// HTTP requests one principal has in flight at once, streams included; more get 429.
    /// A request counts from before its body is read, so a principal's slow uploads take
    /// only its own share. Also the tool calls one principal has running at once on any
    /// transport, each until it ends (a 2025 session's call goes on after its client hung
    /// up); more get `-32029`. Below `max_in_flight`, so that no principal can take every
    /// place; unset, an eighth of it (at least 1).
    pub max_in_flight_per_principal: Option<usize>,
    /// Seconds a client gets to send a request body; a slower one gets 408.
    pub body_timeout_secs: u64,
    /// `subscriptions/listen` streams one principal has open at once (every transport);
    /// another is refused with `-32029` until one ends.
    pub max_listen_streams_per_principal: usize,
    /// 2025-era GET streams (a session's notification stream, or the HTTP+SSE transport's
    /// `/sse`) one principal has open at once; another gets 429 until one ends.
    pub max_get_streams_per_principal: usize,
    /// Resources one subscriber follows: URIs in one `subscriptions/listen` request, or
    /// `resources/subscribe` calls kept by one 2025 session. A listen naming more is
    /// refused with a clear error; a session's subscribe past it too. At most 1000.
    pub max_subscriptions: usize,
    /// 2025-era sessions in total.
    pub max_sessions: usize,
    /// 2025-era sessions per principal.
    pub max_sessions_per_principal: usize,
    /// Seconds of inactivity after which a 2025-era session is closed.
    pub session_idle_secs: u64,
}

impl LimitsSection {
    /// `max_in_flight_per_principal`, or its default: an eighth of `max_in_flight`, at
    /// least 1.
    pub fn in_flight_per_principal(&self) -> usize {
        self.max_in_flight_per_principal
            .unwrap_or((self.max_in_flight / 8).max(1))
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        Self {
            tool_timeout_secs: 30,
            per_principal: None,
            per_ip_unauthenticated: Some(RateLimit {
                per_minute: 120,
                burst: Some(20),
            }),
            max_in_flight: 512,
            max_in_flight_per_principal: None,
            body_timeout_secs: 10,
            max_listen_streams_per_principal: 8,
            max_get_streams_per_principal: 8,
            max_subscriptions: 100,
            max_sessions: 1000,
            max_sessions_per_principal: 32,
            session_idle_secs: 600,
        }
    }
}
