//! Operations: the audit log, the metrics endpoint and traces.

use std::net::SocketAddr;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, issue};

/// The audit log: one record per tool call, resource read, prompt get and refused request,
/// each carrying the hash of the one before it (a chain `portcullis audit verify` checks).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// The append-only JSONL file (relative paths are resolved against the config file's
    /// directory). Rotated files are renamed `NAME.1`, `NAME.2`, … (oldest first); the chain
    /// continues across them.
    pub path: PathBuf,
    /// Key of the chain's HMAC-SHA-256 (at least 16 characters, usually
    /// `"${PORTCULLIS_AUDIT_KEY}"`): without it the chain is plain SHA-256, which detects
    /// edits but can be recomputed by whoever can edit the file. `audit verify` needs the
    /// same key (`--key-env`).
    pub hmac_key: Option<crate::Secret>,
    /// Rotate the file once it reaches this many bytes.
    #[serde(default = "default_rotate_bytes")]
    pub rotate_bytes: u64,
    /// When records reach the disk: `always` (fsync after every batch of records, before
    /// a write tool's call is answered), `interval` (fsync at most every
    /// `fsync_interval_ms`), `never` (leave it to the operating system).
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// Milliseconds between fsyncs with `fsync = "interval"`.
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// When the audit log cannot be written (disk full, unwritable file): `writes` refuses
    /// tools that change data (write and destructive tools) until it can be written again,
    /// `all` refuses every request that reaches a pack, `none` keeps serving. Either way
    /// `/readyz` reports the audit log as failing.
    #[serde(default)]
    pub fail_closed: FailClosed,
    /// Also insert every record into a PostgreSQL table (for many replicas: each replica
    /// keeps its own chain in the same table).
    pub postgres: Option<AuditPostgres>,
    /// Name of this replica in the records (default: the host name).
    pub replica: Option<String>,
}

fn default_rotate_bytes() -> u64 {
    64 * 1024 * 1024
}

fn default_fsync_interval_ms() -> u64 {
    1000
}

/// When audit records are flushed to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// After every batch.
    Always,
    /// At most every `fsync_interval_ms`.
    #[default]
    Interval,
    /// Never explicitly.
    Never,
}

/// What an unwritable audit log stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FailClosed {
    /// Tools that change data.
    #[default]
    Writes,
    /// Every request that reaches a pack.
    All,
    /// Nothing (the failure is still reported on `/readyz` and in the logs).
    None,
}

/// The PostgreSQL audit sink.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditPostgres {
    /// Connection URL (usually `"${PORTCULLIS_AUDIT_DATABASE_URL}"`) of a role that may only
    /// INSERT into the table.
    pub url: crate::Secret,
    /// The table (created by the operator, see the README; `schema.table` allowed).
    #[serde(default = "default_audit_table")]
    pub table: String,
}

fn default_audit_table() -> String {
    "portcullis_audit".to_owned()
}

/// The Prometheus metrics endpoint.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Record metrics and serve them.
    pub enabled: bool,
    /// Serve `/metrics` on its own address (for example `0.0.0.0:9464`) instead of the MCP
    /// listener.
    #[schemars(with = "Option<String>")]
    pub listen: Option<SocketAddr>,
    /// Require `Authorization: Bearer TOKEN` for `/metrics`. Without a token and without
    /// `listen`, `/metrics` is served on the MCP listener only when that listens on a
    /// loopback address and `[auth]` is not configured (with `[auth]`, `check` warns).
    pub bearer_token: Option<crate::Secret>,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            bearer_token: None,
        }
    }
}

/// Re-reading the config while serving. SIGHUP always reloads; `watch` also reloads when
/// the file changes.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadSection {
    /// Reload when the config file changes (checked every `interval_ms`: size, modification
    /// time and inode, so editors that replace the file are seen too).
    pub watch: bool,
    /// Milliseconds between checks of the file with `watch = true`.
    pub interval_ms: u64,
}

impl Default for ReloadSection {
    fn default() -> Self {
        Self {
            watch: false,
            interval_ms: 1000,
        }
    }
}

/// OpenTelemetry traces, exported over OTLP: a server span per request that reaches a pack
/// and a child span per tool call, continuing the client's `traceparent`. Off unless an
/// endpoint is named here or by `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` /
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TracesSection {
    /// Export traces when an endpoint is known; `false` keeps them off even when the
    /// `OTEL_EXPORTER_OTLP_*` variables name one.
    pub enabled: bool,
    /// The collector's base URL, for example `http://127.0.0.1:4318` (`/v1/traces` is
    /// appended for `http/protobuf`) or `http://127.0.0.1:4317` for `grpc`. Default: the
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// variable.
    pub endpoint: Option<String>,
    /// The OTLP transport: `http/protobuf` or `grpc`. Default: `OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// else `http/protobuf`.
    pub protocol: Option<TraceProtocol>,
    /// The `service.name` of the spans. Default: `OTEL_SERVICE_NAME`, else `server.name`.
    pub service_name: Option<String>,
    /// The share of new traces recorded, from 0 to 1; a request that continues a client's
    /// trace follows the client's sampling decision.
    pub sample_ratio: f64,
}

impl Default for TracesSection {
    fn default() -> Self {
        Self {
            enabled: true,
            endpoint: None,
            protocol: None,
            service_name: None,
            sample_ratio: 1.0,
        }
    }
}

/// How spans are sent to the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum TraceProtocol {
    /// Protobuf over HTTP (`POST /v1/traces`).
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
    /// OTLP over gRPC.
    #[serde(rename = "grpc")]
    Grpc,
}

pub(crate) fn validate(config: &crate::Config) -> Result<(), Issue> {
    if config.reload.interval_ms < 100 {
        return Err(issue("reload.interval_ms", "must be at least 100"));
    }
    let ratio = config.traces.sample_ratio;
    if !(0.0..=1.0).contains(&ratio) {
        return Err(issue("traces.sample_ratio", "must be between 0 and 1"));
    }
    if let Some(endpoint) = &config.traces.endpoint
        && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
    {
        return Err(issue(
            "traces.endpoint",
            "must be an `http://` or `https://` URL",
        ));
    }
    if let Some(audit) = &config.audit {
        if audit.path.as_os_str().is_empty() {
            return Err(issue("audit.path", "must name a file"));
        }
        if audit
            .hmac_key
            .as_ref()
            .is_some_and(|k| k.expose().len() < 16)
        {
            return Err(issue(
                "audit.hmac_key",
                "must be at least 16 characters: a short key could be guessed, and with it the chain recomputed",
            ));
        }
        if audit.rotate_bytes < 4096 {
            return Err(issue("audit.rotate_bytes", "must be at least 4096 bytes"));
        }
        if let Some(pg) = &audit.postgres {
            let table = &pg.table;
            let plain = |part: &str| {
                !part.is_empty()
                    && part.len() <= 63
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !part.starts_with(|c: char| c.is_ascii_digit())
            };
            let parts: Vec<&str> = table.split('.').collect();
            if parts.len() > 2 || !parts.iter().all(|p| plain(p)) {
                return Err(issue(
                    "audit.postgres.table",
                    format!(
                        "`{table}` must be `table` or `schema.table` of letters, digits and `_`"
                    ),
                ));
            }
        }
    }
    if let Some(listen) = config.metrics.listen
        && config.metrics.enabled
        && !listen.ip().is_loopback()
        && config.metrics.bearer_token.is_none()
    {
        return Err(issue(
            "metrics.listen",
            format!(
                "{listen} is not a loopback address: set metrics.bearer_token, or listen on 127.0.0.1 or [::1]"
            ),
        ));
    }
    if let Some(token) = &config.metrics.bearer_token
        && token.expose().len() < 16
    {
        return Err(issue(
            "metrics.bearer_token",
            "must be at least 16 characters",
        ));
    }
    Ok(())
}

/// What `portcullis check` warns about in the operations sections.
pub(crate) fn warnings(config: &crate::Config) -> Vec<String> {
    let metrics = &config.metrics;
    let mut out = Vec::new();
    if metrics.enabled
        && metrics.listen.is_none()
        && metrics.bearer_token.is_none()
        && config.auth.is_enabled()
    {
        out.push(
            "metrics: /metrics is not served on the MCP listener: [auth] is configured and metrics.bearer_token is not set; set metrics.bearer_token, or metrics.listen for a listener of its own, or metrics.enabled = false"
                .to_owned(),
        );
    }
    out
}
