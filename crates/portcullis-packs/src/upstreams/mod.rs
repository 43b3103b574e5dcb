//! The upstreams pack (the gateway): MCP servers Portcullis fronts. Each `[[upstreams]]`
//! is a [`link::Link`] (the upstream started and spoken to as a client, restarted when it
//! ends) whose tools, prompts, resources and resource templates become catalog items under
//! the upstream's prefix, so they pass the one guard pipeline like every pack's items.
//!
//! What an upstream offers is pinned (`pins.rs`, the lock file): an item whose definition
//! differs from its pin, or a new one (unless `on_new = "allow"`), is withheld — not
//! listed, and a call to it refused — until an operator pins it again. Every catalog is
//! built from what the link listed last (or, before it has listed, from the pins); when a
//! listing differs, the pack asks the server for a new catalog ([`portcullis_core::Rebuild`]),
//! and a call checks the item's live digest against the one it was built with.

mod link;
pub mod pins;
mod remote;
mod sse;
mod survey;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use portcullis_config::{Config, OnNew, Upstream};
use portcullis_core::{
    CatalogBuilder, NotReady, PromptCall, PromptError, PromptTemplate, Readiness, ResourceError,
    ResourceSource, Tool, ToolCall, ToolError, ToolOutput, Withheld,
};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, GetPromptRequest,
    GetPromptRequestParams, GetPromptResponse, Prompt, ReadResourceRequest,
    ReadResourceRequestParams, ReadResourceResult, RequestMetaObject, Resource, ResourceContents,
    ResourceTemplate, ServerResult, Tool as ToolDef,
};
use serde_json::Value;

use link::{Failure, Link, Offer};
use pins::{Kind, LockFile, Pin, UpstreamPins};
pub use survey::{ItemState, Survey, SurveyItem, pin, survey};

/// The pack's name, for `[packs.upstreams]`.
pub const PACK: &str = "upstreams";

/// The links of this process, by what configures them: a catalog built again from an
/// unchanged `[[upstreams]]` entry (a reload, a rebuild) keeps the running upstream.
static LINKS: Mutex<Vec<(String, Weak<Link>)>> = Mutex::new(Vec::new());

/// Everything that makes two links different, secrets' values included.
fn identity(upstream: &Upstream, base_dir: &Path, refresh_secs: u64) -> String {
    let secrets: Vec<(&str, &str)> = upstream
        .env
        .iter()
        .chain(&upstream.headers)
        .map(|(k, v)| (k.as_str(), v.expose()))
        .chain(
            upstream
                .oauth
                .iter()
                .map(|o| ("client_secret", o.client_secret.expose())),
        )
        .collect();
    format!(
        "{upstream:?}|{secrets:?}|{}|{refresh_secs}",
        base_dir.display()
    )
}

fn link_for(upstream: &Upstream, base_dir: &Path, refresh_secs: u64) -> Arc<Link> {
    let key = identity(upstream, base_dir, refresh_secs);
    let mut links = LINKS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    links.retain(|(_, link)| link.strong_count() > 0);
    if let Some(link) = links
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, link)| link.upgrade())
    {
        return link;
    }
    let link = Arc::new(Link::new(upstream.clone(), base_dir, refresh_secs));
    links.push((key, Arc::downgrade(&link)));
    link
}

/// The lock file of `config`.
pub fn lock_path(config: &Config) -> PathBuf {
    config.base_dir.join(&config.gateway.lock_file)
}

/// What the lock file pins, by upstream: (kind, the upstream's name) of each item.
pub fn pinned(config: &Config) -> HashMap<String, Vec<(&'static str, String)>> {
    let Ok(lock) = LockFile::read(&lock_path(config)) else {
        return HashMap::new();
    };
    lock.upstreams
        .into_iter()
        .map(|(name, pins)| {
            let items = pins::KINDS
                .iter()
                .flat_map(|&kind| pins.of(kind).keys().map(move |n| (kind.noun(), n.clone())))
                .collect();
            (name, items)
        })
        .collect()
}

/// Pins accepted on first sight (first contact, `on_new = "allow"`) that the lock file
/// could not take (it is not writable), by upstream: this process keeps them.
static ACCEPTED: Mutex<Vec<(String, UpstreamPins)>> = Mutex::new(Vec::new());

pub(crate) fn register(
    config: &Config,
    builder: &mut CatalogBuilder,
    _shared: &mut crate::Shared,
) -> Result<(), String> {
    let lock_path = lock_path(config);
    let mut lock = LockFile::read(&lock_path)?;
    // Pins kept in memory only for upstreams still configured (bounded by them).
    ACCEPTED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|(name, _)| config.upstreams.iter().any(|u| &u.name == name));
    // Pins taken on first sight, written to the lock file after the loop.
    let mut accepted: Vec<(String, UpstreamPins)> = Vec::new();
    let notifier = builder.notifier().for_pack(PACK);
    // Names two upstreams would both serve (a `prefix = ""`, a rename): the first keeps it.
    // Names taken by the packs registered before (read once: a lookup per item would be
    // quadratic in an upstream's thousands of tools), then by each upstream in turn.
    let mut taken: HashSet<(Kind, String)> = builder
        .tool_names()
        .into_iter()
        .map(|n| (Kind::Tool, n))
        .chain(
            builder
                .prompt_names()
                .into_iter()
                .map(|n| (Kind::Prompt, n)),
        )
        .collect();
    for upstream in &config.upstreams {
        if upstream.url.is_some() {
            remote::checked_url(upstream)
                .map_err(|e| format!("upstream `{}`: {e}", upstream.name))?;
        }
        let link = link_for(upstream, &config.base_dir, config.gateway.refresh_secs);
        let status = link.status();
        // Contacted before: the lock file has an entry for it (empty if it offered nothing),
        // or this process kept its first pins in memory.
        let mut known = lock.upstreams.get(&upstream.name).cloned();
        for (_, accepted) in ACCEPTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(n, _)| *n == upstream.name)
        {
            let pins = known.get_or_insert_with(UpstreamPins::default);
            for kind in pins::KINDS {
                for (item, pin) in accepted.of(kind) {
                    pins.of_mut(kind)
                        .entry(item.clone())
                        .or_insert_with(|| pin.clone());
                }
            }
        }
        let mut judged = judge(upstream, known.as_ref(), status.offer.as_deref());
        let mut clash = Vec::new();
        judged.tools.retain(|(_, tool, _)| {
            let fresh = taken.insert((Kind::Tool, tool.name.to_string()));
            if !fresh {
                clash.push((Kind::Tool, tool.name.to_string()));
            }
            fresh
        });
        judged.prompts.retain(|(_, prompt, _)| {
            let fresh = taken.insert((Kind::Prompt, prompt.name.clone()));
            if !fresh {
                clash.push((Kind::Prompt, prompt.name.clone()));
            }
            fresh
        });
        for (kind, name) in clash {
            judged.withheld.push((
                kind,
                name,
                "another upstream or pack is served under this name".to_owned(),
            ));
        }
        // The first listing records the upstream in the lock file, even when it pins
        // nothing: every later listing is judged against it, never taken on trust again.
        if !judged.accept.is_empty() || (known.is_none() && status.offer.is_some()) {
            let entry = lock.upstreams.entry(upstream.name.clone()).or_default();
            for kind in pins::KINDS {
                for (item, pin) in judged.accept.of(kind) {
                    tracing::warn!(
                        upstream = %upstream.name,
                        kind = kind.noun(),
                        item = %item,
                        "pinned on first sight (first contact, or on_new = \"allow\")"
                    );
                    entry.of_mut(kind).insert(item.clone(), pin.clone());
                }
            }
            accepted.push((upstream.name.clone(), judged.accept.clone()));
        }
        let source = format!("upstream:{}", upstream.name);
        for (name, definition, digest) in judged.tools {
            builder.tool(UpstreamTool {
                link: Arc::clone(&link),
                name,
                definition,
                digest,
            });
        }
        for (name, definition, digest) in judged.prompts {
            builder.prompt(UpstreamPrompt {
                link: Arc::clone(&link),
                name,
                definition,
                digest,
            });
        }
        let scheme = scheme(upstream);
        if !judged.resources.is_empty() || !judged.templates.is_empty() {
            builder.resources(UpstreamResources {
                link: Arc::clone(&link),
                scheme: scheme.clone(),
                resources: judged.resources,
                templates: judged.templates,
            });
        }
        for (kind, name, reason) in judged.withheld {
            let diff = judged.diffs.remove(&(kind, name.clone()));
            builder.withhold(Withheld {
                kind: kind.noun(),
                name,
                source: source.clone(),
                reason,
                diff,
            });
        }
        builder.readiness(source, Health(Arc::clone(&link), lock_path.clone()));
        let (rebuild, built, link) = (builder.rebuild(), status.version, Arc::clone(&link));
        let notifier = notifier.clone();
        builder.background(async move {
            // Only a catalog that is served gets the upstream's resource updates: one that
            // a reload built and then refused never starts.
            link.publish_to(notifier, scheme);
            link.start();
            let mut status = link.subscribe();
            if status.wait_for(|s| s.version != built).await.is_ok() {
                rebuild.request();
            }
        });
    }
    if !accepted.is_empty()
        && let Err(error) = lock.write(&lock_path)
    {
        tracing::warn!(%error, "the pins accepted on first sight are kept in memory only");
        ACCEPTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(accepted);
    }
    Ok(())
}

/// The scheme prefix of an upstream's resources: `NAME+` before the upstream's own URI.
fn scheme(upstream: &Upstream) -> String {
    format!("{}+", upstream.name)
}

/// What a catalog serves of one upstream, and what it withholds.
#[derive(Default)]
struct Judged {
    /// (the upstream's name, the definition served, its digest)
    tools: Vec<(String, ToolDef, String)>,
    prompts: Vec<(String, Prompt, String)>,
    resources: Vec<(Resource, String)>,
    templates: Vec<Route>,
    /// (kind, the name it would be served as, why not)
    withheld: Vec<(Kind, String, String)>,
    /// The change of each withheld changed definition, line by line.
    diffs: HashMap<(Kind, String), String>,
    /// Items pinned now: first contact, or `on_new = "allow"`.
    accept: UpstreamPins,
}

/// One item the upstream offers (or the pins remember), with its pin state.
struct Item {
    kind: Kind,
    name: String,
    definition: Value,
    digest: String,
}

fn items_of(offer: &Offer) -> Vec<Item> {
    let mut items = Vec::new();
    let mut push = |kind, name: String, definition: Value| {
        let digest = offer
            .digests
            .get(&(kind, name.clone()))
            .cloned()
            .unwrap_or_default();
        items.push(Item {
            kind,
            name,
            definition,
            digest,
        });
    };
    for t in &offer.tools {
        push(Kind::Tool, t.name.to_string(), pins::definition(t));
    }
    for p in &offer.prompts {
        push(Kind::Prompt, p.name.clone(), pins::definition(p));
    }
    for r in &offer.resources {
        push(Kind::Resource, r.uri.clone(), pins::definition(r));
    }
    for t in &offer.templates {
        push(Kind::Template, t.uri_template.clone(), pins::definition(t));
    }
    items
}

/// The name (or URI) an item is served under.
fn served_as(upstream: &Upstream, kind: Kind, name: &str) -> String {
    match kind {
        Kind::Tool | Kind::Prompt => upstream.served_name(name),
        Kind::Resource | Kind::Template => format!("{}{name}", scheme(upstream)),
    }
}

/// What a catalog serves of `upstream` given its `pins` (`None`: it was never contacted, so
/// its first listing is pinned as it is) and what it offers now (`None`: not listed yet).
/// The change from `pinned` to `offered`, as indented JSON, line by line: `- ` a pinned
/// line, `+ ` an offered one (at most 400 lines, saying so).
fn line_diff(pinned: &Value, offered: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let (before, after) = (pretty(pinned), pretty(offered));
    let diff = similar::TextDiff::from_lines(&before, &after);
    let mut lines: Vec<String> = diff
        .iter_all_changes()
        .filter_map(|change| {
            let sign = match change.tag() {
                similar::ChangeTag::Delete => "-",
                similar::ChangeTag::Insert => "+",
                similar::ChangeTag::Equal => return None,
            };
            Some(format!("{sign} {}", change.value().trim_end_matches('\n')))
        })
        .collect();
    if lines.len() > 400 {
        let more = lines.len() - 400;
        lines.truncate(400);
        lines.push(format!("… (+{more} more lines)"));
    }
    lines.join("\n")
}

fn judge(upstream: &Upstream, pins: Option<&UpstreamPins>, offer: Option<&Offer>) -> Judged {
    let first_contact = pins.is_none();
    let none = UpstreamPins::default();
    let pins = pins.unwrap_or(&none);
    let mut judged = Judged::default();
    let items: Vec<Item> = match offer {
        Some(offer) => items_of(offer),
        // Not listed yet: what was pinned is what is served (calls wait for the upstream).
        None => pins::KINDS
            .iter()
            .flat_map(|&kind| {
                pins.of(kind).iter().map(move |(name, pin)| Item {
                    kind,
                    name: name.clone(),
                    definition: pin.definition.clone(),
                    digest: pin.sha256.clone(),
                })
            })
            .collect(),
    };
    // An upstream that offers two items of one name: neither is served (which one a call
    // would reach is the upstream's secret), and neither is pinned.
    let mut seen: HashMap<(Kind, &str), usize> = HashMap::new();
    for item in &items {
        *seen.entry((item.kind, item.name.as_str())).or_default() += 1;
    }
    let twice: Vec<(Kind, String)> = seen
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((kind, name), _)| (kind, name.to_owned()))
        .collect();
    for item in items {
        if !upstream.serves(&item.name) {
            continue;
        }
        let served = served_as(upstream, item.kind, &item.name);
        if twice.contains(&(item.kind, item.name.clone())) {
            if !judged
                .withheld
                .iter()
                .any(|(k, n, _)| *k == item.kind && *n == served)
            {
                judged.withheld.push((
                    item.kind,
                    served,
                    "the upstream offers more than one item of this name".to_owned(),
                ));
            }
            continue;
        }
        // A tool whose input schema cannot be compiled could not be validated against: it
        // is never served (nor pinned), whatever else the upstream offers.
        if item.kind == Kind::Tool && !checkable(&item.definition) {
            judged.withheld.push((
                item.kind,
                served,
                "its input schema is not a JSON Schema arguments can be checked against".to_owned(),
            ));
            continue;
        }
        match pins.of(item.kind).get(&item.name) {
            Some(pin) if pin.sha256 == item.digest => {}
            Some(pin) => {
                judged.diffs.insert(
                    (item.kind, served.clone()),
                    line_diff(&pin.definition, &item.definition),
                );
                judged.withheld.push((
                    item.kind,
                    served,
                    "its definition changed since it was pinned".to_owned(),
                ));
                continue;
            }
            None if first_contact || upstream.on_new == OnNew::Allow => {
                judged
                    .accept
                    .of_mut(item.kind)
                    .insert(item.name.clone(), Pin::of(item.definition.clone()));
            }
            None => {
                judged.withheld.push((
                    item.kind,
                    served,
                    "it is new and not pinned yet".to_owned(),
                ));
                continue;
            }
        }
        let description = upstream
            .items
            .get(&item.name)
            .and_then(|o| o.description.clone());
        match item.kind {
            Kind::Tool => {
                if let Ok(mut tool) = serde_json::from_value::<ToolDef>(item.definition) {
                    tool.name = served.into();
                    if let Some(description) = description {
                        tool.description = Some(description.into());
                    }
                    judged.tools.push((item.name, tool, item.digest));
                }
            }
            Kind::Prompt => {
                if let Ok(mut prompt) = serde_json::from_value::<Prompt>(item.definition) {
                    prompt.name = served;
                    if description.is_some() {
                        prompt.description = description;
                    }
                    judged.prompts.push((item.name, prompt, item.digest));
                }
            }
            Kind::Resource => {
                if let Ok(mut resource) = serde_json::from_value::<Resource>(item.definition) {
                    resource.uri = served;
                    if description.is_some() {
                        resource.description = description;
                    }
                    judged.resources.push((resource, item.digest));
                }
            }
            Kind::Template => {
                let Ok(route) = portcullis_config::Template::parse_uri(&served) else {
                    judged.withheld.push((
                        item.kind,
                        served,
                        "its URI template uses expressions the gateway cannot route (only `{name}` and `{+name}`)".to_owned(),
                    ));
                    continue;
                };
                if let Ok(mut template) =
                    serde_json::from_value::<ResourceTemplate>(item.definition)
                {
                    template.uri_template = served;
                    if description.is_some() {
                        template.description = description;
                    }
                    judged.templates.push(Route {
                        template,
                        own: item.name,
                        digest: item.digest,
                        route,
                    });
                }
            }
        }
    }
    judged
}

/// Whether `definition` is a tool whose input schema compiles.
fn checkable(definition: &Value) -> bool {
    serde_json::from_value::<ToolDef>(definition.clone())
        .is_ok_and(|tool| portcullis_core::ArgumentValidator::compile(&tool.input_schema).is_ok())
}

/// Refuses a request for an item whose definition differs from the one this catalog was
/// built with (checked on the listing the call is served under).
fn still_pinned(link: &Link, kind: Kind, name: &str, digest: &str) -> Result<(), String> {
    match link.live_digest(kind, name) {
        Some(live) if live == digest => Ok(()),
        Some(_) => Err(format!(
            "{} `{name}` of upstream `{}` is withheld: its definition changed since it was pinned",
            kind.noun(),
            link.config.name
        )),
        None if link.status().offer.is_none() => Ok(()),
        None => Err(format!(
            "upstream `{}` no longer offers {} `{name}`",
            link.config.name,
            kind.noun()
        )),
    }
}

/// The caller's trace context, forwarded to the upstream.
fn forwarded_meta(meta: &RequestMetaObject) -> Option<RequestMetaObject> {
    let mut forwarded = RequestMetaObject::default();
    for key in ["traceparent", "tracestate"] {
        if let Some(value) = meta.get(key) {
            forwarded.insert(key.to_owned(), value.clone());
        }
    }
    (!forwarded.is_empty()).then_some(forwarded)
}

/// The two-tier policy for an upstream's failure: the operator's log has the cause, the
/// caller learns its class.
fn failure_message(link: &Link, failure: Failure, what: &str) -> String {
    let name = &link.config.name;
    match failure {
        Failure::Unavailable(cause) => {
            tracing::warn!(upstream = %name, what, cause = %link.scrub(&cause), "upstream unavailable");
            format!("upstream `{name}` is unavailable; try again later")
        }
        Failure::Refused(error) => {
            tracing::warn!(upstream = %name, what, code = error.code.0, message = %link.scrub(&error.message), "upstream refused the request");
            format!(
                "upstream `{name}` refused the request (error {})",
                error.code.0
            )
        }
        Failure::Cancelled => "the request was cancelled".to_owned(),
        Failure::Withheld(message) => message,
    }
}

/// A tool or prompt of an upstream: the definition it is served with (the upstream's,
/// renamed), the upstream's own name, and the digest the catalog was built with.
struct Served<D> {
    link: Arc<Link>,
    /// The upstream's own name.
    name: String,
    definition: D,
    digest: String,
}

/// What binds an upstream's `requestState` to the call it belongs to: sealed with the
/// server's codec (`cluster.state_keys`), so the caller cannot swap in another upstream's,
/// tool's, principal's or arguments' state, and any replica opens it.
#[derive(serde::Serialize, serde::Deserialize)]
struct Bridged {
    /// Upstream, tool, principal.
    u: String,
    t: String,
    p: String,
    /// The canonical digest of the arguments.
    a: String,
    /// The upstream's own state, opaque.
    s: Option<String>,
    #[serde(skip)]
    inline: bool,
}

/// Binds the sealed state to its purpose.
const BRIDGED: &[u8] = b"portcullis/upstream-input/v1";
/// How long a relayed round may take.
const BRIDGED_TTL: std::time::Duration = std::time::Duration::from_secs(600);

impl Bridged {
    fn bound(upstream: &str, tool: &str, call: &ToolCall) -> Self {
        Self {
            u: upstream.to_owned(),
            t: tool.to_owned(),
            p: call
                .context
                .principal()
                .map(|p| p.id().to_owned())
                .unwrap_or_default(),
            a: portcullis_core::digest::canonical_digest(&Value::Object(call.arguments.clone())),
            s: None,
            inline: call.context.meta().protocol_version().is_some(),
        }
    }

    fn seal(
        mut self,
        codec: &rmcp::model::RequestStateCodec,
        theirs: Option<String>,
    ) -> Result<String, ToolError> {
        self.s = theirs;
        codec
            .seal_json_with(
                &self,
                &rmcp::model::SealOptions::new()
                    .associated_data(BRIDGED)
                    .ttl(BRIDGED_TTL),
            )
            .map_err(|e| ToolError::internal("sealing an upstream's request state", e))
    }

    /// The upstream's state in `sealed`, once it proves to be this call's.
    fn open(
        &self,
        codec: &rmcp::model::RequestStateCodec,
        sealed: &str,
    ) -> Result<Option<String>, ToolError> {
        let opened: Self = codec.open_json_with(sealed, BRIDGED).map_err(|_| {
            ToolError::InvalidParams(
                "requestState is not valid (altered, expired or from another server); call the tool again without it".to_owned(),
            )
        })?;
        if (&opened.u, &opened.t, &opened.p, &opened.a) != (&self.u, &self.t, &self.p, &self.a) {
            return Err(ToolError::InvalidParams(
                "requestState belongs to another call (tool, caller or arguments differ); call the tool again without it".to_owned(),
            ));
        }
        Ok(opened.s)
    }
}

type UpstreamTool = Served<ToolDef>;
type UpstreamPrompt = Served<Prompt>;

#[async_trait]
impl Tool for UpstreamTool {
    fn definition(&self) -> ToolDef {
        self.definition.clone()
    }

    /// Long work: a task when the client can take one.
    fn task_support(&self) -> portcullis_core::TaskSupport {
        portcullis_core::TaskSupport::Optional
    }

    fn pack(&self) -> &str {
        PACK
    }

    fn required_scopes(&self) -> Option<Vec<String>> {
        self.link.config.required_scopes.clone()
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let link = &self.link;
        link.start();
        // A 2026-07-28 upstream may ask its caller for input (an input-required result):
        // relayed to a 2026-07-28 caller, its state sealed in ours and bound to this call.
        let bound = Bridged::bound(&link.config.name, &self.name, &call);
        let mut params = CallToolRequestParams::new(self.name.clone());
        if let Some(state) = call.request_state.as_deref()
            && let Some(theirs) = bound.open(call.context.request_state(), state)?
        {
            params = params.with_request_state(theirs);
        }
        if let Some(responses) = call.input_responses {
            params = params.with_input_responses(responses);
        }
        let params = params.with_arguments(call.arguments);
        let check = |link: &Link| still_pinned(link, Kind::Tool, &self.name, &self.digest);
        let answer = link
            .request(
                ClientRequest::CallToolRequest(CallToolRequest::new(params)),
                forwarded_meta(call.context.meta()),
                Some(&call.context),
                call.deadline,
                &call.cancel,
                &check,
            )
            .await;
        match answer {
            Ok(ServerResult::CallToolResult(result)) => Ok(result.into()),
            Ok(ServerResult::InputRequiredResult(result)) if bound.inline => {
                let state = bound.seal(call.context.request_state(), result.request_state)?;
                Ok(
                    rmcp::model::InputRequiredResult::new(result.input_requests, Some(state))
                        .into(),
                )
            }
            Ok(ServerResult::InputRequiredResult(_)) => Err(ToolError::rejected(format!(
                "upstream `{}` asks its caller for input (2026-07-28), which reaches only a 2026-07-28 client",
                link.config.name
            ))),
            Ok(_) => Err(ToolError::rejected(format!(
                "upstream `{}` answered with more than a result (a task), which the gateway does not relay yet",
                link.config.name
            ))),
            Err(failure) => Err(ToolError::rejected(failure_message(
                link,
                failure,
                "tools/call",
            ))),
        }
    }
}

#[async_trait]
impl PromptTemplate for UpstreamPrompt {
    fn definition(&self) -> Prompt {
        self.definition.clone()
    }

    fn pack(&self) -> &str {
        PACK
    }

    fn required_scopes(&self) -> Option<Vec<String>> {
        self.link.config.required_scopes.clone()
    }

    async fn render(&self, call: PromptCall) -> Result<GetPromptResponse, PromptError> {
        let link = &self.link;
        link.start();
        let arguments: serde_json::Map<String, Value> = call
            .arguments
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let mut params = GetPromptRequestParams::new(self.name.clone());
        params.arguments = Some(arguments);
        let check = |link: &Link| still_pinned(link, Kind::Prompt, &self.name, &self.digest);
        let answer = link
            .ask(
                ClientRequest::GetPromptRequest(GetPromptRequest::new(params)),
                &check,
            )
            .await;
        match answer {
            Ok(ServerResult::GetPromptResult(result)) => Ok(result.into()),
            Ok(_) => Err(PromptError::InvalidArguments(format!(
                "upstream `{}` answered with more than a prompt, which the gateway does not relay yet",
                link.config.name
            ))),
            Err(failure) => Err(PromptError::InvalidArguments(failure_message(
                link,
                failure,
                "prompts/get",
            ))),
        }
    }
}

/// A served resource template: how it is listed, the upstream's own template, its digest,
/// and the parsed template that decides which URIs are its.
struct Route {
    template: ResourceTemplate,
    own: String,
    digest: String,
    route: portcullis_config::Template,
}

/// The resources and resource templates of an upstream, under `NAME+` before their URIs.
struct UpstreamResources {
    link: Arc<Link>,
    scheme: String,
    resources: Vec<(Resource, String)>,
    templates: Vec<Route>,
}

impl UpstreamResources {
    /// What a read of `uri` is: a served resource, or a URI of a served template; with the
    /// pin the read is checked against. `None`: nothing this catalog serves (a withheld or
    /// unknown item of the upstream), so it is not read.
    fn served<'a>(&'a self, uri: &'a str) -> Option<(Kind, &'a str, &'a str)> {
        let own = uri.strip_prefix(&self.scheme)?;
        if let Some((_, digest)) = self.resources.iter().find(|(r, _)| r.uri == uri) {
            return Some((Kind::Resource, own, digest));
        }
        // A URI the upstream lists as a resource of its own is that resource, served above
        // or withheld: a template of the same upstream does not reach it.
        if self.link.live_digest(Kind::Resource, own).is_some() {
            return None;
        }
        self.templates
            .iter()
            .find(|t| t.route.matches(uri).is_some())
            .map(|t| (Kind::Template, t.own.as_str(), t.digest.as_str()))
    }
}

#[async_trait]
impl ResourceSource for UpstreamResources {
    fn pack(&self) -> &str {
        PACK
    }

    fn required_scopes(&self, _uri: &str) -> Option<Vec<String>> {
        self.link.config.required_scopes.clone()
    }

    fn template_scopes(&self, _uri_template: &str) -> Option<Vec<String>> {
        self.link.config.required_scopes.clone()
    }

    fn resources(&self) -> Vec<Resource> {
        self.resources.iter().map(|(r, _)| r.clone()).collect()
    }

    fn templates(&self) -> Vec<ResourceTemplate> {
        self.templates.iter().map(|t| t.template.clone()).collect()
    }

    fn claims(&self, uri: &str) -> bool {
        uri.starts_with(&self.scheme)
    }

    /// The upstream's updates are forwarded when it lets clients subscribe.
    fn live(&self) -> bool {
        self.link.status().offer.is_some_and(|o| o.subscribe)
    }

    fn subscribable(&self, uri: &str) -> bool {
        self.live() && self.resources.iter().any(|(r, _)| r.uri == uri)
    }

    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError> {
        let link = &self.link;
        link.start();
        let Some((kind, pinned, digest)) = self.served(uri) else {
            return Err(ResourceError::NotFound("no such resource".to_owned()));
        };
        let own = &uri[self.scheme.len()..];
        // Checked against the pin of the resource, or of the template the URI is one of.
        let check = |link: &Link| still_pinned(link, kind, pinned, digest);
        let request = ReadResourceRequest::new(ReadResourceRequestParams::new(own));
        let answer = link
            .ask(ClientRequest::ReadResourceRequest(request), &check)
            .await;
        match answer {
            Ok(ServerResult::ReadResourceResult(mut result)) => {
                for contents in &mut result.contents {
                    match contents {
                        ResourceContents::TextResourceContents { uri, .. }
                        | ResourceContents::BlobResourceContents { uri, .. } => {
                            *uri = format!("{}{uri}", self.scheme);
                        }
                        _ => {}
                    }
                }
                Ok(result)
            }
            Ok(_) => Err(ResourceError::Rejected(format!(
                "upstream `{}` answered with more than the resource, which the gateway does not relay yet",
                link.config.name
            ))),
            Err(Failure::Refused(error)) if error.code.0 == -32002 => {
                Err(ResourceError::NotFound("no such resource".to_owned()))
            }
            Err(failure) => Err(ResourceError::Rejected(failure_message(
                link,
                failure,
                "resources/read",
            ))),
        }
    }
}

/// `/readyz`: the upstream is connected. `check --connect`: it connects and lists, and
/// says what would be served and what withheld against the lock file (its path).
struct Health(Arc<Link>, PathBuf);

#[async_trait]
impl Readiness for Health {
    async fn check(&self) -> Result<(), NotReady> {
        let status = self.0.status();
        if status.peer.is_some() {
            return Ok(());
        }
        let not_ready = NotReady::new(format!("upstream `{}` is unavailable", self.0.config.name));
        Err(match status.down {
            Some(cause) => not_ready.because(cause),
            None => not_ready,
        })
    }

    async fn probe(&self) -> Result<String, Vec<NotReady>> {
        let link = &self.0;
        link.start();
        let mut status = link.subscribe();
        let timeout = std::time::Duration::from_secs(link.config.connect_timeout_secs + 1);
        let connected = matches!(
            tokio::time::timeout(timeout, status.wait_for(|s| s.peer.is_some())).await,
            Ok(Ok(_))
        );
        if !connected {
            return self
                .check()
                .await
                .map(|()| String::new())
                .map_err(|n| vec![n]);
        }
        let offer = link.status().offer.unwrap_or_default();
        let pins = LockFile::read(&self.1)
            .ok()
            .and_then(|mut lock| lock.upstreams.remove(&link.config.name));
        let judged = judge(&link.config, pins.as_ref(), Some(&offer));
        let mut report = format!(
            "connected: {} tools, {} prompts, {} resources, {} resource templates served",
            judged.tools.len(),
            judged.prompts.len(),
            judged.resources.len(),
            judged.templates.len()
        );
        if !judged.accept.is_empty() {
            report.push_str("; its first contact will pin them");
        }
        for (kind, name, reason) in &judged.withheld {
            report.push_str(&format!("; WITHHELD {} `{name}`: {reason}", kind.noun()));
        }
        Ok(report)
    }
}

impl std::fmt::Debug for UpstreamTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTool")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream(toml_text: &str) -> Upstream {
        toml::from_str(toml_text).expect("an upstream")
    }

    fn offer(tools: &[(&str, &str)], resources: &[&str], templates: &[&str]) -> Offer {
        let mut offer = Offer::default();
        for (name, description) in tools {
            let schema = serde_json::json!({ "type": "object" });
            offer.tools.push(ToolDef::new(
                name.to_string(),
                description.to_string(),
                schema.as_object().cloned().unwrap_or_default(),
            ));
        }
        for uri in resources {
            offer.resources.push(Resource::new(*uri, *uri));
        }
        for template in templates {
            offer
                .templates
                .push(ResourceTemplate::new(*template, *template));
        }
        offer.digested_for_tests()
    }

    #[test]
    fn two_items_of_one_name_are_both_withheld_and_never_pinned() {
        let up = upstream("name = \"f\"\ncommand = [\"x\"]\n");
        let judged = judge(
            &up,
            None,
            Some(&offer(
                &[("t0", "one"), ("t0", "two"), ("ok", "fine")],
                &[],
                &[],
            )),
        );
        let served: Vec<&str> = judged.tools.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(served, ["ok"]);
        assert_eq!(judged.withheld.len(), 1, "{:?}", judged.withheld);
        assert_eq!(judged.withheld[0].1, "f__t0");
        assert!(judged.accept.tools.contains_key("ok"));
        assert!(!judged.accept.tools.contains_key("t0"));
    }

    #[test]
    fn only_served_resources_and_uris_of_served_templates_are_read() {
        let up = upstream("name = \"ev\"\ncommand = [\"x\"]\n");
        let first = offer(&[], &["evil://a", "evil://b"], &["evil://t/{x}"]);
        let judged = judge(&up, None, Some(&first));
        let pins = judged.accept.clone();
        // Later: `a` and the template changed, `secret` is new; only `b` is served.
        let mut later = offer(
            &[],
            &["evil://a", "evil://b", "evil://secret"],
            &["evil://t/{x}"],
        );
        later.resources[0].description = Some("changed".to_owned());
        later.templates[0].description = Some("changed".to_owned());
        let later = later.digested_for_tests();
        let judged = judge(&up, Some(&pins), Some(&later));
        let source = UpstreamResources {
            link: Arc::new(Link::new(up.clone(), Path::new("."), 300)),
            scheme: scheme(&up),
            resources: judged.resources,
            templates: judged.templates,
        };
        assert!(source.served("ev+evil://b").is_some());
        for uri in [
            "ev+evil://a",
            "ev+evil://secret",
            "ev+evil://t/zzz",
            "ev+evil://c",
        ] {
            assert!(source.claims(uri), "{uri} is the upstream's to answer");
            assert!(source.served(uri).is_none(), "{uri} must not be read");
        }
        // A served template routes its URIs, checked against its own pin.
        let judged = judge(&up, Some(&pins), Some(&first));
        let source = UpstreamResources {
            link: Arc::new(Link::new(up.clone(), Path::new("."), 300)),
            scheme: scheme(&up),
            resources: judged.resources,
            templates: judged.templates,
        };
        let (kind, own, _) = source.served("ev+evil://t/zzz").expect("a template URI");
        assert_eq!((kind, own), (Kind::Template, "evil://t/{x}"));
        assert!(
            source.served("ev+evil://t/a/b").is_none(),
            "one segment only"
        );
    }

    #[test]
    fn a_withheld_resource_is_not_read_through_a_template_that_matches_it() {
        let up = upstream("name = \"ev\"\ncommand = [\"x\"]\n");
        let first = offer(&[], &["note://a"], &["note://{id}"]);
        let pins = judge(&up, None, Some(&first)).accept;
        // `a` changed and `secret` is new: both withheld; the template still served.
        let mut later = offer(&[], &["note://a", "note://secret"], &["note://{id}"]);
        later.resources[0].description = Some("changed".to_owned());
        let later = later.digested_for_tests();
        let judged = judge(&up, Some(&pins), Some(&later));
        assert_eq!(judged.withheld.len(), 2, "{:?}", judged.withheld);
        let link = Arc::new(Link::new(up.clone(), Path::new("."), 300));
        link.offer_for_tests(later);
        let source = UpstreamResources {
            link,
            scheme: scheme(&up),
            resources: judged.resources,
            templates: judged.templates,
        };
        assert!(source.served("ev+note://a").is_none());
        assert!(source.served("ev+note://secret").is_none());
        assert!(
            source.served("ev+note://other").is_some(),
            "the template's own URIs"
        );
    }

    #[test]
    fn a_tool_whose_input_schema_does_not_compile_is_withheld_and_never_pinned() {
        let up = upstream("name = \"ev\"\ncommand = [\"x\"]\n");
        let mut bad = offer(&[("bad", "b"), ("good", "g")], &[], &[]);
        bad.tools[0].input_schema = std::sync::Arc::new(
            serde_json::json!({ "type": "object", "properties": { "a": { "type": "bogus" } } })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let judged = judge(&up, None, Some(&bad.digested_for_tests()));
        let served: Vec<&str> = judged.tools.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(served, ["good"]);
        assert_eq!(judged.withheld[0].1, "ev__bad");
        assert!(!judged.accept.tools.contains_key("bad"));
    }

    #[test]
    fn an_upstream_once_listed_is_never_taken_on_trust_again_even_if_it_offered_nothing() {
        let up = upstream("name = \"ev\"\ncommand = [\"x\"]\n");
        // Its first listing was empty: it is recorded with no pins.
        let first = judge(&up, None, Some(&offer(&[], &[], &[])));
        assert!(first.accept.is_empty());
        // Later it offers a tool: new, so withheld (on_new = "withhold"), not pinned.
        let later = judge(
            &up,
            Some(&UpstreamPins::default()),
            Some(&offer(&[("surprise", "s")], &[], &[])),
        );
        assert!(later.tools.is_empty());
        assert_eq!(later.withheld.len(), 1, "{:?}", later.withheld);
        assert!(later.accept.is_empty());
    }
}
