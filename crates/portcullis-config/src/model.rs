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
    /// Policy per pack (`[packs.files]`): required scopes for all its tools.
    #[serde(default)]
    pub packs: PackPolicies,
    /// Directory roots served by the files pack. Each root is read-only unless `writable = true`.
    #[serde(default)]
    pub files: Vec<FilesRoot>,
    /// Prompt templates offered through `prompts/list` and `prompts/get`.
    #[serde(default)]
    pub prompts: Vec<PromptConfig>,
    /// Static resources (inline text or a file) offered through `resources/list`.
    #[serde(default)]
    pub resources: Vec<StaticResourceConfig>,
    /// SQL sources (SQLite, PostgreSQL, MySQL/MariaDB) and the tools defined on them:
    /// parameterized statements, and opt-in read-only ad-hoc query and schema tools.
    #[serde(default)]
    pub sql: Vec<crate::sql::SqlSource>,
    /// Directory that relative paths in this file are resolved against: the directory that
    /// holds the config file. Set by the loader, never read from the file.
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: PathBuf,
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
    /// Serve 2025-era clients (`initialize` + `Mcp-Session-Id`) with sessions. 2026-07-28
    /// requests are always stateless. When false, 2025-era requests are served without a
    /// session.
    pub legacy_sessions: bool,
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
            legacy_sessions: true,
        }
    }
}

/// Log output. Logs always go to stderr; stdout belongs to the protocol.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSection {
    /// `auto` (JSON unless stderr is a terminal), `json` or `pretty`.
    pub format: LogFormat,
    /// Filter in `tracing` syntax, for example `info,rmcp=warn` (the default: rmcp's own
    /// per-connection lines are noise at `info`) or `portcullis_server=debug,info`.
    /// The `PORTCULLIS_LOG` environment variable overrides it.
    pub level: String,
}

impl Default for LoggingSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            level: "info,rmcp=warn".to_owned(),
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
    pub max_in_flight: usize,
    /// 2025-era sessions in total.
    pub max_sessions: usize,
    /// 2025-era sessions per principal.
    pub max_sessions_per_principal: usize,
    /// Seconds of inactivity after which a 2025-era session is closed.
    pub session_idle_secs: u64,
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
            max_sessions: 1000,
            max_sessions_per_principal: 32,
            session_idle_secs: 600,
        }
    }
}

/// One directory served by the files pack.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilesRoot {
    /// Name of the root: lowercase letters, digits, `-` and `_`. It is the first segment of
    /// resource URIs (`file:///NAME/path`) and the value of the `root` argument when several
    /// roots are configured.
    pub name: String,
    /// Directory to serve, relative to the config file's directory (or absolute).
    pub path: PathBuf,
    /// Allow `write_file` and `edit_file` in this root. Off by default.
    #[serde(default)]
    pub writable: bool,
    /// Largest file, in bytes, that `read_file` returns or `search_files` scans.
    #[serde(default = "default_max_read_bytes")]
    pub max_read_bytes: u64,
    /// Most matches `search_files` returns.
    #[serde(default = "default_max_search_results")]
    pub max_search_results: usize,
    /// Most entries `search_files` visits before it stops and reports a partial result.
    #[serde(default = "default_max_search_entries")]
    pub max_search_entries: usize,
    /// Extra glob patterns (gitignore-like, matched against the path relative to the root and
    /// against each file name) that are refused in addition to the built-in ones: `.env*`,
    /// `.git/`, `*.pem`, `*.key`, `id_*`.
    #[serde(default)]
    pub deny: Vec<String>,
}

fn default_max_read_bytes() -> u64 {
    1024 * 1024
}
fn default_max_search_results() -> usize {
    100
}
fn default_max_search_entries() -> usize {
    10_000
}

/// A prompt template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    /// Prompt name, as in `prompts/get`.
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the prompt is for.
    pub description: Option<String>,
    /// Declared arguments; an argument not declared here is refused.
    #[serde(default)]
    pub arguments: Vec<PromptArgumentConfig>,
    /// The template text (minijinja syntax, arguments as variables). Give this or
    /// `template_file`, not both.
    pub template: Option<String>,
    /// File holding the template, relative to the config file's directory.
    pub template_file: Option<PathBuf>,
}

/// One argument of a prompt template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptArgumentConfig {
    /// Argument name, used as the template variable.
    pub name: String,
    /// What to pass.
    pub description: Option<String>,
    /// Whether `prompts/get` must supply it.
    #[serde(default)]
    pub required: bool,
    /// Suggested values, offered by `completion/complete` (filtered by what the user typed).
    #[serde(default)]
    pub values: Vec<String>,
}

/// A static resource.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticResourceConfig {
    /// Resource URI, for example `config://review-rules`.
    pub uri: String,
    /// Short name.
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the resource holds.
    pub description: Option<String>,
    /// MIME type; defaults to `text/plain` (or `text/markdown` for a `.md` file). A `file`
    /// whose content is not UTF-8 text is served as binary (base64 `blob`), for example an
    /// image with `mime_type = "image/png"`.
    pub mime_type: Option<String>,
    /// The content, inline. Give this or `file`, not both.
    pub text: Option<String>,
    /// File holding the content, relative to the config file's directory.
    pub file: Option<PathBuf>,
}
