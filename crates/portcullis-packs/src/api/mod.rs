//! The HTTP API pack (`[[api]]`): tools that send one request each to a configured upstream,
//! with typed parameters (the guard validates them before anything is sent), secrets in
//! headers from the environment, timeouts and size caps, upstream errors turned into safe
//! messages, and every request and redirect through the outbound SSRF guard
//! (`portcullis_core::outbound`).

pub mod openapi;
mod request;
mod response;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use portcullis_config::{
    Config, HttpMethod, HttpSource, HttpTool, Param, PrivateAddresses, Template,
};
use portcullis_core::outbound::{self, AddressPolicy, ClientOptions, PrivateAllowance};
use portcullis_core::{CatalogBuilder, NotReady, Readiness, Tool, ToolCall, ToolError, ToolOutput};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use rmcp::model::{Tool as ToolDef, ToolAnnotations};
use serde_json::Value;

use crate::params::{input_schema, require_confirm, values};
use crate::template::TextTemplate;

/// The pack's name, for `[packs.api]`.
pub const PACK: &str = "api";

/// One configured upstream: its client (with the guard), base URL and headers.
pub(crate) struct Upstream {
    pub(crate) name: String,
    base: Url,
    headers: HeaderMap,
    /// The header values, to scrub them out of error excerpts.
    pub(crate) secrets: Vec<String>,
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    pub(crate) timeout: Duration,
    max_bytes: usize,
    health: Option<Url>,
}

/// One tool of an upstream.
pub(crate) struct ApiTool {
    upstream: Arc<Upstream>,
    pub(crate) name: String,
    title: Option<String>,
    description: String,
    method: reqwest::Method,
    read_only: bool,
    destructive: bool,
    path: Option<Template>,
    /// The parameter whose value is the whole URL.
    url_param: Option<String>,
    query: BTreeMap<String, Template>,
    body: Option<Value>,
    headers: HeaderMap,
    /// The tool's own configured header values (scrubbed from error excerpts).
    pub(crate) secrets: Vec<String>,
    params: Vec<Param>,
    pub(crate) response_path: Option<String>,
    pub(crate) template: Option<TextTemplate>,
    output_schema: Option<Value>,
    pub(crate) include_error_body: bool,
}

fn headers_of(
    source: &str,
    configured: &BTreeMap<String, portcullis_config::Secret>,
    secrets: &mut Vec<String>,
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in configured {
        // An unset optional secret (`"Bearer ${TOKEN:-}"`) leaves an empty value or a bare
        // scheme: such a header is not sent at all.
        let trimmed = value.expose().trim();
        if trimmed.is_empty() || (value.expose().ends_with(' ') && !trimmed.contains(' ')) {
            continue;
        }
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("api `{source}`: `{name}` is not a valid header name"))?;
        // The value is never echoed: it usually holds a secret.
        let mut value = HeaderValue::from_str(value.expose()).map_err(|_| {
            format!("api `{source}`: the value of header `{name}` is not a valid header value")
        })?;
        value.set_sensitive(true);
        // The whole value, and each longer word of it (`Bearer TOKEN`: an upstream may echo
        // just the token).
        let text = value.to_str().unwrap_or_default();
        secrets.push(text.to_owned());
        secrets.extend(
            text.split([' ', ',', ';', '='])
                .filter(|word| word.len() >= 8 && *word != text)
                .map(str::to_owned),
        );
        headers.insert(header, value);
    }
    Ok(headers)
}

/// Adds the tools of every `[[api]]` source, and a readiness check (`api:NAME`) for each one
/// with a `health_url`. Nothing connects at start-up.
pub(crate) fn register(
    config: &Config,
    catalog: &mut CatalogBuilder,
    shared: &mut crate::Shared,
) -> Result<(), String> {
    for source in &config.api {
        let upstream = Arc::new(upstream(source, &config.base_dir)?);
        for tool in &source.tools {
            let built = Arc::new(api_tool(&upstream, tool)?);
            shared
                .api
                .insert((source.name.clone(), tool.name.clone()), Arc::clone(&built));
            catalog.shared_tool(built);
        }
        if upstream.health.is_some() {
            catalog.readiness(
                format!("api:{}", source.name),
                Health(Arc::clone(&upstream)),
            );
        }
    }
    Ok(())
}

fn upstream(source: &HttpSource, base_dir: &std::path::Path) -> Result<Upstream, String> {
    let name = &source.name;
    let base = Url::parse(&source.base_url)
        .map_err(|_| format!("api `{name}`: `base_url` is not a URL"))?;
    if base.host_str().is_none() {
        return Err(format!("api `{name}`: `base_url` has no host"));
    }
    let private = private_allowance(&source.allow_private_addresses)
        .map_err(|e| format!("api `{name}`: {e}"))?;
    // Configured headers (credentials) must not follow a redirect to another origin.
    let policy = Arc::new(
        AddressPolicy::new(&base, &source.allowed_hosts, private).same_origin_redirects(
            !source.headers.is_empty() || source.tools.iter().any(|t| !t.headers.is_empty()),
        ),
    );
    policy
        .check_url(&base)
        .map_err(|refusal| format!("api `{name}`: `base_url` is refused: {refusal}"))?;
    let timeout = Duration::from_secs(source.timeout_secs);
    let client = outbound::client(&ClientOptions {
        timeout,
        connect_timeout: timeout.min(Duration::from_secs(5)),
        max_redirects: source.max_redirects,
        ca_file: source.ca_file.as_ref().map(|f| base_dir.join(f)),
        guard: Some(Arc::clone(&policy)),
        https_only: false,
    })
    .map_err(|e| format!("api `{name}`: {e}"))?;
    let mut secrets = Vec::new();
    let headers = headers_of(name, &source.headers, &mut secrets)?;
    let health = source
        .health_url
        .as_ref()
        .map(|h| {
            join(&base, h).map_err(|_| format!("api `{name}`: `health_url` is not a URL or path"))
        })
        .transpose()?;
    Ok(Upstream {
        name: name.clone(),
        base,
        headers,
        secrets,
        client,
        policy,
        timeout,
        max_bytes: source.max_response_bytes,
        health,
    })
}

/// The outbound guard's allowance of a source's `allow_private_addresses`.
pub(crate) fn private_allowance(setting: &PrivateAddresses) -> Result<PrivateAllowance, String> {
    Ok(match setting {
        PrivateAddresses::All(false) => PrivateAllowance::None,
        PrivateAddresses::All(true) => PrivateAllowance::All,
        PrivateAddresses::Networks(networks) => PrivateAllowance::Networks(
            networks
                .iter()
                .map(|n| n.parse().map_err(|_| format!("`{n}` is not a network")))
                .collect::<Result<_, _>>()?,
        ),
    })
}

/// `path` (already encoded) appended to `base`'s path, or an absolute URL.
fn join(base: &Url, path: &str) -> Result<Url, url::ParseError> {
    if path.contains("://") {
        return Url::parse(path);
    }
    let mut url = base.clone();
    let joined = format!("{}{path}", base.path().trim_end_matches('/'));
    url.set_path(&joined);
    Ok(url)
}

fn api_tool(upstream: &Arc<Upstream>, tool: &HttpTool) -> Result<ApiTool, String> {
    let source = &upstream.name;
    let template = tool
        .text_template
        .as_deref()
        .map(|text| TextTemplate::compile(text, &["data"]))
        .transpose()
        .map_err(|e| format!("api `{source}` tool `{}`: text_template: {e}", tool.name))?;
    let mut secrets = Vec::new();
    let headers = headers_of(source, &tool.headers, &mut secrets)?;
    let url_param = tool
        .url
        .as_ref()
        .map(|u| u.trim_matches(['{', '}']).to_owned());
    Ok(ApiTool {
        upstream: Arc::clone(upstream),
        name: tool.name.clone(),
        title: tool.title.clone(),
        description: tool.description.clone(),
        method: reqwest::Method::from_bytes(tool.method.as_str().as_bytes())
            .map_err(|_| format!("api `{source}`: bad method"))?,
        read_only: tool.method == HttpMethod::Get,
        destructive: tool.destructive,
        path: tool.path.as_deref().map(Template::parse),
        url_param,
        query: tool
            .query
            .iter()
            .map(|(key, value)| (key.clone(), Template::parse(value)))
            .collect(),
        body: tool.body.clone(),
        headers,
        secrets,
        params: tool.params.clone(),
        response_path: tool.response_path.clone(),
        template,
        output_schema: tool.output_schema.clone(),
        include_error_body: tool.include_error_body,
    })
}

impl ApiTool {
    /// The URL of one call: the base URL and the expanded path, or the URL parameter,
    /// checked by the guard either way.
    fn url(&self, values: &request::Values<'_>) -> Result<Url, ToolError> {
        let upstream = &self.upstream;
        let mut url = match (&self.path, &self.url_param) {
            (Some(template), _) => {
                let path = request::expand_path(template, values)?;
                join(&upstream.base, &path)
                    .map_err(|e| ToolError::internal("building the request URL", e))?
            }
            (None, Some(param)) => {
                let raw = match values.get(param.as_str()) {
                    Some(crate::params::Typed::Text(raw)) => raw.as_str(),
                    _ => "",
                };
                Url::parse(raw).map_err(|_| {
                    ToolError::rejected(format!("`{param}` must be an absolute http(s) URL"))
                })?
            }
            (None, None) => unreachable!("config validation requires `path` or `url`"),
        };
        let pairs = request::query_pairs(&self.query, values);
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        upstream.policy.check_url(&url).map_err(|refusal| {
            ToolError::rejected(format!("request to `{}` refused: {refusal}", upstream.name))
        })?;
        Ok(url)
    }
}

#[async_trait]
impl Tool for ApiTool {
    /// Long work: a task when the client can take one.
    fn task_support(&self) -> portcullis_core::TaskSupport {
        portcullis_core::TaskSupport::Optional
    }

    fn pack(&self) -> &str {
        PACK
    }

    fn definition(&self) -> ToolDef {
        let mut input = input_schema(&self.params);
        let mut description = self.description.clone();
        if self.destructive {
            require_confirm(
                &mut input,
                &format!(
                    "Must be true: this changes data in `{}`.",
                    self.upstream.name
                ),
            );
            description.push_str("\n\nChanges data: requires `confirm: true`.");
        }
        let annotations = ToolAnnotations::new()
            .read_only(self.read_only)
            .destructive(self.destructive)
            .idempotent(self.read_only || self.method == reqwest::Method::PUT)
            .open_world(true);
        let mut tool =
            ToolDef::new(self.name.clone(), description, input).with_annotations(annotations);
        if let Some(title) = &self.title {
            tool = tool.with_title(title.clone());
        }
        if let Some(Value::Object(schema)) = &self.output_schema {
            tool = tool.with_raw_output_schema(Arc::new(schema.clone()));
        }
        tool
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        if self.destructive && !crate::definition::confirmed(&call.arguments) {
            return Err(ToolError::rejected(format!(
                "`{}` changes data in `{}`; call again with `confirm: true` to send it",
                self.name, self.upstream.name
            )));
        }
        self.send(&call.arguments).await
    }
}

impl ApiTool {
    /// The tool's declared parameters (a resource template backed by it takes its variables
    /// from them).
    pub(crate) fn params(&self) -> &[portcullis_config::Param] {
        &self.params
    }

    /// Sends the request for validated `arguments` and turns the answer into the tool's
    /// result (also a resource template's read).
    pub(crate) async fn send(
        &self,
        arguments: &rmcp::model::JsonObject,
    ) -> Result<ToolOutput, ToolError> {
        let typed = values(&self.params, arguments);
        let values: request::Values<'_> = self
            .params
            .iter()
            .map(|p| p.name.as_str())
            .zip(typed)
            .collect();
        let url = self.url(&values)?;
        let upstream = &self.upstream;
        let mut request = upstream
            .client
            .request(self.method.clone(), url)
            .headers(upstream.headers.clone())
            .headers(self.headers.clone());
        if let Some(body) = &self.body {
            request = request.json(&request::body(body, &values));
        }
        let response = request
            .send()
            .await
            .map_err(|e| response::transport_error(upstream, &e))?;
        let status = response.status();
        metrics::counter!(
            "portcullis_upstream_responses_total",
            "source" => upstream.name.clone(),
            "status" => status.as_u16().to_string(),
        )
        .increment(1);
        let headers = response.headers().clone();
        let body = outbound::read_capped(response, upstream.max_bytes)
            .await
            .map_err(|e| response::read_error(upstream, e))?;
        tracing::debug!(source = %upstream.name, status = status.as_u16(), bytes = body.len(), "upstream answered");
        if !status.is_success() {
            return Err(response::status_error(
                upstream, self, status, &headers, &body,
            ));
        }
        response::success(upstream, self, &headers, body)
    }
}

/// `/readyz` for a source with a `health_url`.
struct Health(Arc<Upstream>);

#[async_trait]
impl Readiness for Health {
    async fn check(&self) -> Result<(), NotReady> {
        let upstream = &self.0;
        let Some(url) = &upstream.health else {
            return Ok(());
        };
        let not_ready = |why: &str| NotReady::new(format!("api `{}`: {why}", upstream.name));
        let unready = |why: String| Err(not_ready(&why));
        if let Err(refusal) = upstream.policy.check_url(url) {
            return unready(format!("health check refused: {refusal}"));
        }
        match upstream
            .client
            .get(url.clone())
            .headers(upstream.headers.clone())
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => unready(format!(
                "health check answered HTTP {}",
                response.status().as_u16()
            )),
            Err(error) if error.is_timeout() => unready("health check timed out".to_owned()),
            // `describe` leaves the URL out: a health URL's query may hold a credential.
            Err(error) => Err(not_ready("unreachable").because(outbound::describe(&error))),
        }
    }
}
