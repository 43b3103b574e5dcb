//! The HTTP pack's configuration: upstream APIs (`[[api]]`; `[http]` is the transport), the
//! hosts and addresses each may reach, and the tools defined on them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::Secret;
use crate::params::{Param, ParamType, validate_params};
use crate::validate::{Issue, is_identifier, issue};

/// One upstream HTTP API and the tools defined on it.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSource {
    /// Name of the source: lowercase letters, digits, `-` and `_`. Shown in tool errors
    /// ("`NAME` is unreachable") and on `/readyz`.
    pub name: String,
    /// Base URL the tools' paths are appended to (`https://api.example.com/v1`). Use
    /// `${VAR:-default}` to point a profile at another deployment.
    pub base_url: String,
    /// Headers sent with every request of this source. Values may use `${ENV}` for
    /// secrets (`Authorization = "Bearer ${TASK_API_KEY}"`); they are never logged or shown.
    /// A header whose value is empty, or only a scheme (`"Bearer ${TOKEN:-}"` with `TOKEN`
    /// unset), is not sent.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Seconds one request may take (connect, send and the whole response).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Largest response body in bytes; a larger one is refused without being read whole.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: usize,
    /// A PEM file of extra certificate authorities to trust (an internal API), relative to
    /// the config file. Mozilla's roots (built in) are always trusted.
    pub ca_file: Option<PathBuf>,
    /// Hosts this source may reach besides the base URL's own host and port, in requests and
    /// redirects: `api.example.com` (the default port of the base URL's scheme) or
    /// `cdn.example.com:8443` (that port only). Every URL keeps the base URL's scheme, so an
    /// https source never sends anything over plain http. A redirect to another origin is
    /// refused when the source or tool sends configured `headers`.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Whether this source may reach private, loopback, link-local and other non-public
    /// addresses: `false` (the default: every such address is refused, after DNS), `true`
    /// for an internal service, or a list of CIDRs (`["10.20.0.0/16"]`) to allow only
    /// those. It applies to this source's own hosts only.
    #[serde(default)]
    pub allow_private_addresses: PrivateAddresses,
    /// Redirects followed, each one re-checked against the allowed hosts and addresses.
    #[serde(default = "default_max_redirects")]
    pub max_redirects: usize,
    /// A path (relative to the base URL) or URL that `/readyz` GETs to check the source;
    /// any 2xx is ready. Absent: the source is not part of readiness.
    pub health_url: Option<String>,
    /// Tools defined as requests to this source.
    #[serde(default)]
    pub tools: Vec<HttpTool>,
}

/// Which non-public addresses a source may reach.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum PrivateAddresses {
    /// All of them (`true`) or none (`false`).
    All(bool),
    /// Only these networks (CIDR notation, IPv4 or IPv6).
    Networks(Vec<String>),
}

impl Default for PrivateAddresses {
    fn default() -> Self {
        Self::All(false)
    }
}

fn default_timeout_secs() -> u64 {
    10
}
fn default_max_response_bytes() -> usize {
    1024 * 1024
}
fn default_max_redirects() -> usize {
    3
}

/// HTTP methods a tool may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// Read (the default); the only method whose tools are marked read-only.
    #[default]
    Get,
    /// Create.
    Post,
    /// Replace.
    Put,
    /// Update part.
    Patch,
    /// Delete.
    Delete,
}

impl HttpMethod {
    /// The method's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
        }
    }
}

/// A tool that sends one request to its source.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpTool {
    /// Tool name (A-Z, a-z, 0-9, `_`, `-`, `.`; 1 to 64 characters).
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the tool does, for the model.
    pub description: String,
    /// HTTP method. Methods other than GET change something: their tools are not marked
    /// read-only.
    #[serde(default)]
    pub method: HttpMethod,
    /// Path appended to the base URL, with placeholders: `{name}` is the parameter's value
    /// as one segment (`/`, `?`, `#`, `..` and control characters cannot get through);
    /// `{+name}` may span segments (`/` kept) but no segment may be `.` or `..`
    /// (`/repos/{owner}/{repo}/contents/{+path}`). Give this or `url`.
    pub path: Option<String>,
    /// The whole URL from one string parameter (`url = "{url}"`), for tools that take a
    /// link. It must be http(s), carry no user-info, and its host must be one of the
    /// source's allowed hosts. Give this or `path`.
    pub url: Option<String>,
    /// Query parameters: name → value, where the value is a literal or a placeholder
    /// (`q = "{query}"`). A placeholder whose optional parameter is absent is left out; an
    /// array repeats the name.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSON body (for POST, PUT and PATCH): a table whose string values may be
    /// placeholders. `"{name}"` alone becomes the typed value (a number stays a number) and
    /// is left out when the optional parameter is absent; placeholders inside longer text
    /// are interpolated, but never inside other braces: JSON written inside a string
    /// (`'{"title":"{title}"}'`) stays text, so a value can never close a JSON string and
    /// add keys; give the structure as a table instead.
    pub body: Option<serde_json::Value>,
    /// Headers of this tool's requests, added to the source's (values may use `${ENV}`).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// The tool's parameters; they become its input schema, checked before any request is
    /// sent.
    #[serde(default)]
    pub params: Vec<Param>,
    /// The request deletes or overwrites data: the tool requires `confirm: true`. Not
    /// allowed on GET.
    #[serde(default)]
    pub destructive: bool,
    /// Dotted path narrowing a JSON response (`tasks`, `web.results`); the narrowed value
    /// is the tool's structured content (an array or scalar is wrapped in an object under
    /// the path's last name).
    pub response_path: Option<String>,
    /// A minijinja template that renders the (narrowed) JSON response as the tool's text;
    /// the value is `data`. Default: the JSON itself.
    pub text_template: Option<String>,
    /// JSON Schema of the structured content, advertised as the tool's `outputSchema`.
    pub output_schema: Option<serde_json::Value>,
    /// Add a short, sanitised excerpt of the upstream's error body to error results (off:
    /// error bodies can carry internals).
    #[serde(default)]
    pub include_error_body: bool,
}

/// The placeholders `{name}` and `{+name}` in `text`, as (name, reserved).
pub fn placeholders(text: &str) -> Vec<(String, bool)> {
    crate::Template::parse(text)
        .variables()
        .map(|(name, reserved)| (name.to_owned(), reserved))
        .collect()
}

fn body_placeholders(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => {
            out.extend(placeholders(text).into_iter().map(|(name, _)| name));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| body_placeholders(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| body_placeholders(v, out)),
        _ => {}
    }
}

/// Checks the `[[api]]` sections: names, URLs, hosts, networks, tools and placeholders.
pub(crate) fn validate(sources: &[HttpSource]) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("source name");
    let mut tools = crate::validate::Unique::new("tool");
    for (i, source) in sources.iter().enumerate() {
        let key = format!("api[{i}]");
        let name_ok = crate::validate::is_source_name(&source.name);
        if !name_ok {
            return Err(issue(
                format!("{key}.name"),
                format!(
                    "source name `{}` may use only a-z, 0-9, `-` and `_`",
                    source.name
                ),
            ));
        }
        names.check(format!("{key}.name"), source.name.as_str())?;
        let base = url::Url::parse(&source.base_url)
            .map_err(|e| issue(format!("{key}.base_url"), format!("is not a URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(issue(
                format!("{key}.base_url"),
                "must be an http:// or https:// URL with a host",
            ));
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(issue(
                format!("{key}.base_url"),
                "must not carry user-info; send credentials in `headers`",
            ));
        }
        if source.timeout_secs == 0 || source.max_response_bytes < 1024 {
            return Err(issue(
                key.clone(),
                "`timeout_secs` must be at least 1 and `max_response_bytes` at least 1024",
            ));
        }
        for (j, host) in source.allowed_hosts.iter().enumerate() {
            if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
                return Err(issue(
                    format!("{key}.allowed_hosts[{j}]"),
                    format!("`{host}` is not a host name (`api.example.com`, optionally `:port`)"),
                ));
            }
        }
        if let PrivateAddresses::Networks(networks) = &source.allow_private_addresses {
            for (j, network) in networks.iter().enumerate() {
                if network.parse::<ipnet::IpNet>().is_err() {
                    return Err(issue(
                        format!("{key}.allow_private_addresses[{j}]"),
                        format!("`{network}` is not a network in CIDR notation (`10.0.0.0/8`)"),
                    ));
                }
            }
        }
        for header in source.headers.keys() {
            if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                return Err(issue(
                    format!("{key}.headers"),
                    format!("`{header}` is not a valid header name"),
                ));
            }
        }
        for (j, tool) in source.tools.iter().enumerate() {
            let key = format!("{key}.tools[{j}]");
            validate_tool(&key, tool)?;
            tools.check(format!("{key}.name"), tool.name.as_str())?;
        }
    }
    Ok(())
}

fn validate_tool(key: &str, tool: &HttpTool) -> Result<(), Issue> {
    if !is_identifier(&tool.name) {
        return Err(issue(
            format!("{key}.name"),
            format!(
                "tool name `{}` may use only A-Z, a-z, 0-9, `_`, `-` and `.` (1 to 64 characters)",
                tool.name
            ),
        ));
    }
    let reserved: &[&str] = if tool.destructive { &["confirm"] } else { &[] };
    validate_params(key, &tool.params, reserved, false)?;
    if tool.destructive && tool.method == HttpMethod::Get {
        return Err(issue(
            format!("{key}.destructive"),
            "a GET tool cannot be destructive; use the method that changes data",
        ));
    }
    let declared = |name: &str| tool.params.iter().find(|p| p.name == name);
    let mut used = Vec::new();
    match (&tool.path, &tool.url) {
        (Some(path), None) => {
            if !path.starts_with('/') {
                return Err(issue(format!("{key}.path"), "must start with `/`"));
            }
            if path.contains(['?', '#']) {
                return Err(issue(
                    format!("{key}.path"),
                    "must not contain `?` or `#`; put query parameters in `query`",
                ));
            }
            for (name, _) in placeholders(path) {
                let param = declared(&name).ok_or_else(|| {
                    issue(
                        format!("{key}.path"),
                        format!("`{{{name}}}` names no declared parameter"),
                    )
                })?;
                if !param.is_required() && param.default.is_none() {
                    return Err(issue(
                        format!("{key}.path"),
                        format!(
                            "`{{{name}}}` is in the path, so the parameter must be required or have a default"
                        ),
                    ));
                }
                if param.kind == ParamType::Array {
                    return Err(issue(
                        format!("{key}.path"),
                        format!("`{{{name}}}` is an array; path placeholders take one value"),
                    ));
                }
                used.push(name);
            }
        }
        (None, Some(url)) => {
            let found = placeholders(url);
            let [(name, false)] = found.as_slice() else {
                return Err(issue(
                    format!("{key}.url"),
                    "must be exactly one placeholder, `{name}`, naming a string parameter",
                ));
            };
            if url != &format!("{{{name}}}")
                || declared(name).is_none_or(|p| p.kind != ParamType::String)
            {
                return Err(issue(
                    format!("{key}.url"),
                    "must be exactly one placeholder, `{name}`, naming a string parameter",
                ));
            }
            used.push(name.clone());
        }
        _ => {
            return Err(issue(
                key.to_owned(),
                "give exactly one of `path` and `url`",
            ));
        }
    }
    for (query, value) in &tool.query {
        for (name, reserved) in placeholders(value) {
            if reserved || declared(&name).is_none() {
                return Err(issue(
                    format!("{key}.query.{query}"),
                    format!("`{value}` must use `{{name}}` placeholders of declared parameters"),
                ));
            }
            used.push(name);
        }
    }
    if let Some(body) = &tool.body {
        if matches!(tool.method, HttpMethod::Get | HttpMethod::Delete) {
            return Err(issue(
                format!("{key}.body"),
                "GET and DELETE requests have no body; use `query`",
            ));
        }
        if !body.is_object() {
            return Err(issue(
                format!("{key}.body"),
                "must be a table (a JSON object)",
            ));
        }
        let mut names = Vec::new();
        body_placeholders(body, &mut names);
        for name in names {
            if declared(&name).is_none() {
                return Err(issue(
                    format!("{key}.body"),
                    format!("`{{{name}}}` names no declared parameter"),
                ));
            }
            used.push(name);
        }
    }
    for param in &tool.params {
        if !used.contains(&param.name) {
            return Err(issue(
                format!("{key}.params"),
                format!(
                    "parameter `{}` is declared but not used in `path`, `url`, `query` or `body`",
                    param.name
                ),
            ));
        }
    }
    for header in tool.headers.keys() {
        if http::HeaderName::from_bytes(header.as_bytes()).is_err() {
            return Err(issue(
                format!("{key}.headers"),
                format!("`{header}` is not a valid header name"),
            ));
        }
    }
    if let Some(path) = &tool.response_path
        && (path.is_empty() || path.split('.').any(str::is_empty))
    {
        return Err(issue(
            format!("{key}.response_path"),
            "must be dotted names such as `web.results`",
        ));
    }
    if tool.output_schema.as_ref().is_some_and(|s| !s.is_object()) {
        return Err(issue(
            format!("{key}.output_schema"),
            "must be a JSON Schema object",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    fn error(api: &str) -> String {
        let text = format!("[server]\nname = \"t\"\n{api}");
        match crate::parse(&text, std::path::Path::new("t.toml"), |_| None) {
            Ok(_) => panic!("accepted:\n{api}"),
            Err(e) => e.to_string(),
        }
    }

    const SOURCE: &str = "[[api]]\nname = \"s\"\nbase_url = \"https://api.example.com\"\n";

    #[test]
    fn sources_and_tools_are_checked() {
        for (api, expect) in [
            (
                "[[api]]\nname = \"s\"\nbase_url = \"ftp://x\"\n",
                "http:// or https://",
            ),
            (
                "[[api]]\nname = \"s\"\nbase_url = \"https://u:p@x\"\n",
                "user-info",
            ),
            (
                "[[api]]\nname = \"s\"\nbase_url = \"https://x\"\nallow_private_addresses = [\"10.0.0.0/33\"]\n",
                "CIDR",
            ),
            (
                "[[api.tools]]\nname = \"t\"\ndescription = \"d\"\n",
                "exactly one of `path` and `url`",
            ),
            (
                "[[api.tools]]\nname = \"t\"\ndescription = \"d\"\npath = \"/x/{id}\"\n",
                "`{id}` names no declared parameter",
            ),
            (
                "[[api.tools]]\nname = \"t\"\ndescription = \"d\"\npath = \"/x\"\n[[api.tools.params]]\nname = \"q\"\ntype = \"string\"\n",
                "declared but not used",
            ),
            (
                "[[api.tools]]\nname = \"t\"\ndescription = \"d\"\npath = \"/x\"\ndestructive = true\n",
                "a GET tool cannot be destructive",
            ),
            (
                "[[api.tools]]\nname = \"t\"\ndescription = \"d\"\npath = \"/x?a=1\"\n",
                "put query parameters in `query`",
            ),
            (
                "[[api.tools]]\nname = \"t\"\ndescription = \"d\"\npath = \"/x\"\nbody = { a = 1 }\n",
                "GET and DELETE requests have no body",
            ),
            (
                "[[api.tools]]\nname = \"t\"\ndescription = \"d\"\nurl = \"https://x/{u}\"\n[[api.tools.params]]\nname = \"u\"\ntype = \"string\"\n",
                "exactly one placeholder",
            ),
            (
                "[[api.tools]]\nname = \"t\"\ndescription = \"d\"\npath = \"/x/{id}\"\n[[api.tools.params]]\nname = \"id\"\ntype = \"string\"\nrequired = false\n",
                "must be required or have a default",
            ),
        ] {
            let api = if api.starts_with("[[api]]") {
                api.to_owned()
            } else {
                format!("{SOURCE}{api}")
            };
            let message = error(&api);
            assert!(
                message.contains(expect),
                "expected `{expect}` in: {message}"
            );
        }
    }
}
