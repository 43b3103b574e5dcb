//! The gateway's configuration: MCP servers Portcullis fronts (`[[upstreams]]`), how each is
//! reached, which of its items are served under which names, and where their pinned
//! definitions live (`[gateway]`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::Secret;
use crate::http::PrivateAddresses;
use crate::validate::{Issue, issue};

/// An MCP server whose tools, resources and prompts Portcullis serves as its own, behind the
/// same guard pipeline as every pack's.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Upstream {
    /// Name of the upstream (lowercase letters, digits and `-`, starting with a letter; at
    /// most 32): the default `prefix`, the scheme its resources are served under
    /// (`NAME+file:///…`), and what errors, `/readyz`, logs and the lock file call it.
    pub name: String,
    /// A stdio upstream: the program and its arguments (no shell). The program is a name
    /// looked up in `search_path`, or a path (relative to the config's directory). Give this
    /// or `url`.
    pub command: Option<Vec<String>>,
    /// A remote upstream: its MCP endpoint (`https://mcp.example.com/mcp`). Give this or
    /// `command`.
    pub url: Option<String>,
    /// How `url` is spoken: `streamable-http` (the default), or `sse`, the legacy HTTP+SSE
    /// transport (2024-11-05: `url` is its event stream, `/sse` on most servers).
    #[serde(default)]
    pub transport: UpstreamTransport,
    /// The protocol revision spoken to the upstream: unset (the default) negotiates it
    /// (`server/discover` for 2026-07-28, falling back to `initialize`); a 2025 or 2024
    /// revision (`"2025-11-25"`) always uses `initialize` with it (an upstream whose
    /// elicitation or sampling works only in a session); `"2026-07-28"` never falls back.
    pub protocol_version: Option<String>,
    /// stdio: the only environment the program gets besides `PATH`, `LANG` and a scratch
    /// `HOME` (values may use `${VAR}`). Never logged.
    #[serde(default)]
    pub env: BTreeMap<String, Secret>,
    /// stdio: directories the program is looked up in (also its `PATH`). Default:
    /// `/usr/local/bin`, `/usr/bin`, `/bin`.
    #[serde(default)]
    pub search_path: Vec<PathBuf>,
    /// stdio: the working directory, relative to the config's directory (default: the
    /// config's directory). It must be a directory.
    pub working_dir: Option<PathBuf>,
    /// stdio: limits set on the program (and everything it starts) with `setrlimit`.
    #[serde(default)]
    pub limits: UpstreamLimits,
    /// HTTP: headers sent with every request to the upstream (values may use `${VAR}`:
    /// `Authorization = "Bearer ${UP_KEY}"`). Never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// HTTP: the upstream's bearer token from an OAuth 2.1 client-credentials grant,
    /// fetched before connecting, cached, and fetched again (with a new connection) shortly
    /// before it expires.
    pub oauth: Option<UpstreamOAuth>,
    /// HTTP: whether the upstream may be on a private, loopback or link-local address:
    /// `false` (the default), `true`, or a list of CIDRs, as for an `[[api]]` source.
    #[serde(default)]
    pub allow_private_addresses: PrivateAddresses,
    /// HTTP: a PEM file of extra certificate authorities to trust, relative to the config.
    pub ca_file: Option<PathBuf>,
    /// Scopes a principal needs for every item of this upstream, replacing `[packs.upstreams]`
    /// (a `[tools."PREFIX__NAME"]` policy still replaces them for that tool).
    pub required_scopes: Option<Vec<String>>,
    /// Prefix of the names its tools and prompts are served under: `py` serves `greet` as
    /// `py__greet`. Default: the upstream's `name`; `""` serves them under their own names.
    pub prefix: Option<String>,
    /// Only these items (by the upstream's own name or resource URI) are served; empty: all.
    #[serde(default)]
    pub include: Vec<String>,
    /// These items (by the upstream's own name or resource URI) are never served.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// What happens to an item the upstream starts offering that is not in the lock file:
    /// `withhold` (the default: not served until `portcullis upstreams pin` accepts it) or
    /// `allow` (served at once, and pinned in memory from then on).
    #[serde(default)]
    pub on_new: OnNew,
    /// Per item (by the upstream's own name): the name it is served under (instead of the
    /// prefixed one) and a description that replaces the upstream's.
    #[serde(default)]
    pub items: BTreeMap<String, ItemOverride>,
    /// Seconds to connect and complete the handshake, and for every request that is not a
    /// client's call (listing).
    #[serde(default = "default_connect_timeout_secs")]
    pub connect_timeout_secs: u64,
    /// Largest message accepted from the upstream, in bytes (a stdio line, an HTTP body or
    /// event); a larger one is dropped.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
}

/// An OAuth 2.1 client-credentials grant (RFC 6749 §4.4) for a remote upstream.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamOAuth {
    /// The authorization server's token endpoint. It passes the same address checks as
    /// the upstream's `url` (and its `allow_private_addresses`).
    pub token_url: String,
    /// The client's id.
    pub client_id: String,
    /// The client's secret (`${VAR}`), sent with HTTP Basic authentication. Never logged.
    pub client_secret: Secret,
    /// The scopes asked for (space-separated), if the server needs them.
    pub scope: Option<String>,
}

/// The transport of a remote upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamTransport {
    /// Streamable HTTP (2025-03-26 and later).
    #[default]
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse,
}

/// What to do with an item the lock file does not pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OnNew {
    /// Not served until an operator pins it.
    #[default]
    Withhold,
    /// Served at once.
    Allow,
}

/// How one upstream item is served.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemOverride {
    /// The name it is served under (tools and prompts), instead of `PREFIX__NAME`.
    pub name: Option<String>,
    /// The description the model sees, instead of the upstream's.
    pub description: Option<String>,
}

/// Limits on a stdio upstream's process. Unset ones are left as the server's own.
#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamLimits {
    /// CPU seconds over the process's whole life (it is restarted when it hits them).
    pub cpu_secs: Option<u64>,
    /// Address space in MiB (runtimes such as Node reserve a lot of it: leave unset for them).
    pub memory_mib: Option<u64>,
    /// Open files.
    pub open_files: u64,
    /// Largest file the process may write, in MiB.
    pub file_size_mib: Option<u64>,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        Self {
            cpu_secs: None,
            memory_mib: None,
            open_files: 1024,
            file_size_mib: None,
        }
    }
}

/// Settings of the gateway as a whole.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// The file that pins what each upstream advertises (relative to the config's
    /// directory). Written on an upstream's first contact and by `portcullis upstreams pin`.
    pub lock_file: PathBuf,
    /// Seconds between two listings of a connected upstream that sends no `list_changed`
    /// (a changed definition is withheld at the latest this long after it changed; calls
    /// check it on every call).
    pub refresh_secs: u64,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            lock_file: PathBuf::from("portcullis.lock"),
            refresh_secs: 300,
        }
    }
}

impl Upstream {
    /// The prefix of its tool and prompt names (`""`: none).
    pub fn prefix(&self) -> &str {
        self.prefix.as_deref().unwrap_or(&self.name)
    }

    /// The name an upstream tool or prompt called `name` is served under.
    pub fn served_name(&self, name: &str) -> String {
        if let Some(own) = self.items.get(name).and_then(|o| o.name.clone()) {
            return own;
        }
        match self.prefix() {
            "" => name.to_owned(),
            prefix => format!("{prefix}__{name}"),
        }
    }

    /// Whether the item the upstream calls `name` (or a resource's URI) is served at all.
    pub fn serves(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|n| n == name))
            && !self.exclude.iter().any(|n| n == name)
    }
}

fn default_connect_timeout_secs() -> u64 {
    10
}
fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}

/// The protocol revisions an upstream may be pinned to, oldest first.
const PROTOCOL_VERSIONS: [&str; 5] = [
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// An upstream name: a URI scheme's characters, lowercase, so that `NAME+…` is one.
fn is_upstream_name(name: &str) -> bool {
    name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub(crate) fn validate(upstreams: &[Upstream], gateway: &GatewaySection) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("upstream");
    for (i, upstream) in upstreams.iter().enumerate() {
        let key = format!("upstreams[{i}]");
        if !is_upstream_name(&upstream.name) {
            return Err(issue(
                format!("{key}.name"),
                format!(
                    "`{}` must be lowercase letters, digits and `-`, start with a letter, and be at most 32 characters",
                    upstream.name
                ),
            ));
        }
        names.check(format!("{key}.name"), upstream.name.as_str())?;
        match (&upstream.command, &upstream.url) {
            (Some(command), None) => {
                if command.is_empty() || command[0].is_empty() {
                    return Err(issue(
                        format!("{key}.command"),
                        "must name a program: `[\"python3\", \"server.py\"]`",
                    ));
                }
                if upstream.oauth.is_some() {
                    return Err(issue(
                        format!("{key}.oauth"),
                        "is for HTTP upstreams; give a stdio upstream its secrets in `env`",
                    ));
                }
                if !upstream.headers.is_empty() {
                    return Err(issue(
                        format!("{key}.headers"),
                        "are sent to HTTP upstreams only; give a stdio upstream its secrets in `env`",
                    ));
                }
            }
            (None, Some(url)) => {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(issue(
                        format!("{key}.url"),
                        format!("`{url}` must be an http:// or https:// URL"),
                    ));
                }
                if let Some(oauth) = &upstream.oauth {
                    if !(oauth.token_url.starts_with("https://")
                        || oauth.token_url.starts_with("http://"))
                    {
                        return Err(issue(
                            format!("{key}.oauth.token_url"),
                            format!("`{}` must be an http:// or https:// URL", oauth.token_url),
                        ));
                    }
                    if upstream
                        .headers
                        .keys()
                        .any(|h| h.eq_ignore_ascii_case("authorization"))
                    {
                        return Err(issue(
                            format!("{key}.headers"),
                            "give the upstream's `Authorization` either as a header or through `oauth`, not both",
                        ));
                    }
                }
                if !upstream.env.is_empty() {
                    return Err(issue(
                        format!("{key}.env"),
                        "is the environment of a stdio upstream; send an HTTP upstream its credentials in `headers`",
                    ));
                }
            }
            _ => {
                return Err(issue(
                    key,
                    "give exactly one of `command` (a stdio upstream) or `url` (an HTTP upstream)",
                ));
            }
        }
        if let Some(version) = &upstream.protocol_version
            && !PROTOCOL_VERSIONS.contains(&version.as_str())
        {
            return Err(issue(
                format!("{key}.protocol_version"),
                format!(
                    "`{version}` is not a protocol revision this server speaks; revisions: {}",
                    PROTOCOL_VERSIONS.join(", ")
                ),
            ));
        }
        let prefix = upstream.prefix();
        if !prefix.is_empty()
            && !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(issue(
                format!("{key}.prefix"),
                format!("`{prefix}` may use only A-Z, a-z, 0-9, `_` and `-`"),
            ));
        }
        for (item, own) in &upstream.items {
            if let Some(name) = &own.name
                && !crate::validate::is_identifier(name)
            {
                return Err(issue(
                    format!("{key}.items.{item}.name"),
                    format!("`{name}` may use only A-Z, a-z, 0-9, `_`, `-` and `.`"),
                ));
            }
        }
        if upstream.connect_timeout_secs == 0 {
            return Err(issue(
                format!("{key}.connect_timeout_secs"),
                "must be at least 1 second",
            ));
        }
        if upstream.max_message_bytes < 1024 {
            return Err(issue(
                format!("{key}.max_message_bytes"),
                "must be at least 1024 bytes",
            ));
        }
    }
    if gateway.refresh_secs == 0 {
        return Err(issue("gateway.refresh_secs", "must be at least 1 second"));
    }
    Ok(())
}
