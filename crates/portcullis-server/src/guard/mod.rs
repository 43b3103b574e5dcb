//! The guard pipeline: the one path every request that reaches a pack takes, whatever the
//! method or transport — tool calls, resource reads and subscriptions, prompt gets and
//! completions.
//!
//! principal (attached by the transport; none: refused) → scopes (the item's or its pack's)
//! → rate limit (principal × item) → validation → timeout and cancellation → the pack's code,
//! with panics caught → error policy → one log line (method, item, principal, argument keys
//! and a keyed fingerprint of the values, duration, outcome).

mod fingerprint;
mod policy;
pub(crate) mod validate;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;
use rmcp::ErrorData;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, JsonObject};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::audit::{AuditLog, Event};
use crate::auth::Principal;
use crate::catalog::Catalog;
use crate::error;
use crate::limits::{Refusal, Slot, retry_after_secs};
pub(crate) use crate::request::{Origin, Outcome, Target, client_text, trace_id_of};
pub(crate) use fingerprint::Fingerprint;
pub use policy::Policies;

/// Everything the guard decides with: per-item policies and the fingerprint key.
#[derive(Clone)]
pub struct GuardConfig {
    pub(crate) policies: Policies,
    pub(crate) fingerprint: Fingerprint,
    /// Where every decision is recorded, when `[audit]` is configured.
    pub(crate) audit: Option<Arc<AuditLog>>,
    /// Seals the `requestState` of multi-round calls (`cluster.state_keys`).
    pub(crate) request_state: rmcp::model::RequestStateCodec,
    /// Whether `request_state` has the configured keys (else a random key of the process).
    keyed_state: bool,
    /// Tool calls running per principal (`limits.max_in_flight_per_principal`), each until
    /// it ends, whatever its transport does meanwhile. Kept across reloads
    /// ([`GuardConfig::keeps_counts_of`]), so calls on the old config still count.
    pub(crate) calls: Arc<crate::limits::Slots>,
    /// `subscriptions/listen` streams open per principal
    /// (`limits.max_listen_streams_per_principal`), kept across reloads like `calls`.
    pub(crate) listens: Arc<crate::limits::Slots>,
    /// Resources one listen, or one 2025 session, follows (`limits.max_subscriptions`).
    pub(crate) max_subscriptions: usize,
    /// Pending console approvals and used approvals, kept across reloads like `calls`.
    pub(crate) approvals: Arc<crate::approval::Approvals>,
    /// Tool calls run as tasks, kept across reloads like `calls`.
    pub(crate) tasks: Arc<crate::tasks::Tasks>,
}

impl GuardConfig {
    /// Resolves the config's tool and pack policies against `catalog`; the fingerprint key
    /// is `logging.fingerprint_key`, or random for this process.
    pub fn new(
        config: &portcullis_config::Config,
        catalog: &Catalog,
    ) -> Result<Self, crate::SetupError> {
        Ok(Self {
            policies: Policies::resolve(config, catalog)?,
            fingerprint: Fingerprint::new(
                config
                    .logging
                    .fingerprint_key
                    .as_ref()
                    .map(portcullis_config::Secret::expose),
            ),
            audit: None,
            request_state: request_state_codec(config.cluster.as_ref())?,
            keyed_state: config
                .cluster
                .as_ref()
                .is_some_and(|c| !c.state_keys.is_empty()),
            calls: crate::limits::Slots::new(config.limits.in_flight_per_principal()),
            listens: crate::limits::Slots::new(config.limits.max_listen_streams_per_principal),
            max_subscriptions: config.limits.max_subscriptions,
            approvals: crate::approval::Approvals::new(),
            tasks: crate::tasks::Tasks::new((&config.tasks).into()),
        })
    }

    /// Counts its running calls and open listen streams in `old`'s tables (a reload: what
    /// started on the old config still counts against the principal's caps, which need a
    /// restart to change).
    #[must_use]
    pub(crate) fn keeps_counts_of(mut self, old: &GuardConfig) -> Self {
        self.calls = Arc::clone(&old.calls);
        self.listens = Arc::clone(&old.listens);
        self.max_subscriptions = old.max_subscriptions;
        self.approvals = Arc::clone(&old.approvals);
        self.tasks = old.tasks.reconfigured(&self.tasks);
        // Without `cluster.state_keys` the key is this process's own: kept, so a reload
        // does not void the multi-round states in flight.
        if !self.keyed_state {
            self.request_state = old.request_state.clone();
        }
        self
    }

    /// Records every decision in `audit` too.
    #[must_use]
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.approvals.record_in(&audit);
        self.audit = Some(audit);
        self
    }

    /// Shares every per-principal × item rate limit with the other replicas through
    /// `cluster`.
    #[must_use]
    pub fn shared(mut self, cluster: &Arc<crate::cluster::Cluster>) -> Self {
        self.policies.shared(cluster);
        self.approvals.share(cluster);
        self.tasks.share(cluster);
        self
    }

    /// The audit log, if any (for `/readyz`).
    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// The scopes a principal needs to call `tool` (empty: none).
    pub fn required_scopes(&self, tool: &str) -> &[String] {
        &self.policies.tool(tool).scopes
    }

    /// The scopes a principal needs to see and get prompt `name`.
    pub fn prompt_scopes(&self, name: &str) -> &[String] {
        &self.policies.prompt(name).scopes
    }

    /// The scopes a principal needs to read the resource at `uri` (empty also when no
    /// source claims it).
    pub fn resource_scopes(&self, catalog: &Catalog, uri: &str) -> Vec<String> {
        self.policies
            .scopes_for(catalog, Target::Resource(uri))
            .map(|s| s.into_owned())
            .unwrap_or_default()
    }

    /// The scopes a principal needs to use the resource template `uri_template`.
    pub fn template_scopes(&self, catalog: &Catalog, uri_template: &str) -> Vec<String> {
        self.policies
            .scopes_for(catalog, Target::Template(uri_template))
            .map(|s| s.into_owned())
            .unwrap_or_default()
    }

    /// Only a timeout for everything, no scopes or rate limits (library use without a
    /// config); a random fingerprint key; the default per-principal caps.
    pub fn with_timeout(timeout: Duration) -> Self {
        let defaults = portcullis_config::LimitsSection::default();
        Self {
            policies: Policies::with_timeout(timeout),
            fingerprint: Fingerprint::new(None),
            audit: None,
            request_state: random_state_codec(),
            keyed_state: false,
            calls: crate::limits::Slots::new(defaults.in_flight_per_principal()),
            listens: crate::limits::Slots::new(defaults.max_listen_streams_per_principal),
            max_subscriptions: defaults.max_subscriptions,
            approvals: crate::approval::Approvals::new(),
            tasks: crate::tasks::Tasks::new((&portcullis_config::TasksSection::default()).into()),
        }
    }
}

/// What the guard applies to one item of the catalog, resolved exactly as for a request to
/// it (the same [`Policies`] lookups [`GuardConfig::run`] makes): the scopes a principal
/// needs, the timeout, and the per-principal rate limit, if any.
#[derive(Debug, Clone)]
pub struct ItemRules {
    /// Every one of these is needed (empty: none).
    pub scopes: Vec<String>,
    /// How long one call, read or get may run before it is stopped.
    pub timeout: Duration,
    /// Calls per principal to this item (its own or its pack's), if limited. A resource
    /// template backed by a tool is bounded by both limits (each read counts against the
    /// tool's calls too); this is the stricter.
    pub rate_limit: Option<portcullis_config::RateLimit>,
    /// How a tool's calls are approved by a human (`elicit`, `console`,
    /// `elicit-or-console`), if they must be.
    pub approval: Option<&'static str>,
}

impl GuardConfig {
    /// The rules of tool `name`, or `None` when the catalog has no such tool.
    pub fn tool_rules(&self, catalog: &Catalog, name: &str) -> Option<ItemRules> {
        self.rules(catalog, Target::Tool(name))
    }

    /// The rules of prompt `name`, or `None` when the catalog has no such prompt.
    pub fn prompt_rules(&self, catalog: &Catalog, name: &str) -> Option<ItemRules> {
        self.rules(catalog, Target::Prompt(name))
    }

    /// The rules of a read of `uri`, or `None` when no source claims it.
    pub fn resource_rules(&self, catalog: &Catalog, uri: &str) -> Option<ItemRules> {
        self.rules(catalog, Target::Resource(uri))
    }

    /// The rules of the resource template `uri_template`, or `None` when there is none.
    pub fn template_rules(&self, catalog: &Catalog, uri_template: &str) -> Option<ItemRules> {
        self.rules(catalog, Target::Template(uri_template))
    }

    /// Whether lists show a principal only what it may use (`auth.hide_unauthorized`).
    pub fn hides_unauthorized(&self) -> bool {
        self.policies.hide_unauthorized
    }

    fn rules(&self, catalog: &Catalog, target: Target<'_>) -> Option<ItemRules> {
        let scopes = self.policies.scopes_for(catalog, target)?.into_owned();
        let policy = self.policies.policy_for(catalog, target);
        Some(ItemRules {
            scopes,
            timeout: policy.timeout,
            rate_limit: policy.strictest(),
            approval: policy.approval.map(|rule| rule.mode.as_str()),
        })
    }
}

/// The codec of `cluster.state_keys` (the first seals, all open), or of a random key of
/// this process.
fn request_state_codec(
    cluster: Option<&portcullis_config::ClusterSection>,
) -> Result<rmcp::model::RequestStateCodec, crate::SetupError> {
    use sha2::Digest as _;
    let keys: Vec<(String, Vec<u8>)> = cluster
        .map(|c| c.state_keys.as_slice())
        .unwrap_or_default()
        .iter()
        .map(|key| {
            let id: String = sha2::Sha256::digest(key.expose().as_bytes())
                .iter()
                .take(4)
                .map(|b| format!("{b:02x}"))
                .collect();
            (format!("k{id}"), key.expose().as_bytes().to_vec())
        })
        .collect();
    let Some((active, _)) = keys.first() else {
        return Ok(random_state_codec());
    };
    rmcp::model::RequestStateCodec::new_with_keyring(active.clone(), keys.clone())
        .map_err(|e| crate::SetupError::setting("cluster.state_keys", e))
}

/// A codec with a random key of this process.
fn random_state_codec() -> rmcp::model::RequestStateCodec {
    let key = [
        uuid::Uuid::new_v4().into_bytes(),
        uuid::Uuid::new_v4().into_bytes(),
    ]
    .concat();
    // 32 random bytes: as long as the codec asks for.
    rmcp::model::RequestStateCodec::new_unchecked(key)
}

/// One request on its way through the pipeline.
pub(crate) struct Request<'a> {
    /// The JSON-RPC method (`tools/call`, `resources/read`, …).
    pub(crate) method: &'static str,
    /// What it is for: the guard derives the scopes, timeout and rate limit from it.
    pub(crate) target: Target<'a>,
    /// What it is for, as logged: a tool or prompt name, a resource's label (never the
    /// client's URI, see `CatalogSource::label`).
    pub(crate) item: &'a str,
    /// How the item is named in messages to the client (``tool `x` ``).
    pub(crate) what: String,
    /// Who sent it, as the transport attached it.
    pub(crate) principal: Option<Principal>,
    /// The arguments as the log line shows them.
    pub(crate) arguments: Arguments,
    /// Where the request came from, for the audit log and traces.
    pub(crate) origin: Origin,
    /// A tool call's part in its approval (read only when the tool needs one).
    pub(crate) ask: Option<crate::approval::Ask>,
}

// An `Origin` read from an rmcp request (here, above `traces`, whose switch it reads).
impl Origin {
    /// What `context` tells of the request's origin.
    pub(crate) fn of(context: &rmcp::service::RequestContext<rmcp::RoleServer>) -> Self {
        let parts = context.extensions.get::<http::request::Parts>();
        let header = |name: &str| {
            parts
                .and_then(|p| p.headers.get(name))
                .and_then(|v| v.to_str().ok())
        };
        // The client's text: cut and counted before it reaches records and spans.
        let short = |text: &str| client_text::cut(text).into_owned();
        let request_id = header("x-request-id")
            .map(short)
            .or_else(|| Some(short(&context.id.to_string())));
        // `_meta` first (SEP-414), then the HTTP headers; tracestate goes with the
        // traceparent it came with.
        let (traceparent, tracestate) = match context.meta.get_traceparent() {
            Some(tp) => (Some(tp), context.meta.get_tracestate()),
            None => (header("traceparent"), header("tracestate")),
        };
        let traced = crate::traces::enabled();
        Self {
            request_id,
            trace_id: traceparent.and_then(trace_id_of),
            client: context.client_info().map(|info| short(&info.name)),
            client_ip: None,
            jsonrpc_id: traced.then(|| short(&context.id.to_string())),
            session_id: header("mcp-session-id")
                .filter(|_| traced)
                .map(str::to_owned),
            traceparent: traceparent.filter(|_| traced).map(str::to_owned),
            tracestate: tracestate.filter(|_| traced).map(str::to_owned),
        }
    }
}

/// What a log line shows of a request's arguments: their keys and a keyed fingerprint of
/// their values, never the values.
pub(crate) struct Arguments {
    /// The client's keys, cut and counted ([`client_text::keys`]).
    keys: Vec<String>,
    fingerprint: String,
    /// For the audit log of a tool that changes data: the arguments, secrets redacted.
    full: Option<serde_json::Value>,
    /// Whether the request changes data (a tool not marked read-only).
    changes_data: bool,
}

impl GuardConfig {
    /// The keys (at most 64, each cut; see [`client_text`]) and the fingerprint of all of
    /// `arguments`.
    pub(crate) fn arguments(&self, arguments: &JsonObject) -> Arguments {
        Arguments {
            keys: client_text::keys(arguments.keys()),
            fingerprint: self.fingerprint.of(arguments),
            full: None,
            changes_data: false,
        }
    }

    /// The arguments of a call of `tool`: for a tool that may change data (not annotated
    /// read-only), the audit log also keeps the values, with parameters the schema marks
    /// `writeOnly` (declared `secret`) redacted and long strings cut.
    pub(crate) fn tool_arguments(
        &self,
        tool: &rmcp::model::Tool,
        arguments: &JsonObject,
    ) -> Arguments {
        let mut logged = self.arguments(arguments);
        let read_only = tool
            .annotations
            .as_ref()
            .is_some_and(|a| a.read_only_hint == Some(true));
        logged.changes_data = !read_only;
        if !read_only && self.audit.is_some() {
            logged.full = Some(crate::audit::redacted(&tool.input_schema, arguments));
        }
        logged
    }

    /// The key and fingerprint of one named value (a URI, a completion prefix); the key
    /// may be the client's (a completion's argument name).
    pub(crate) fn argument(&self, key: &str, value: &str) -> Arguments {
        let mut object = JsonObject::new();
        object.insert(key.to_owned(), serde_json::Value::String(value.to_owned()));
        self.arguments(&object)
    }

    /// No arguments (a refusal before any were read).
    pub(crate) fn no_arguments() -> Arguments {
        Arguments {
            keys: Vec::new(),
            fingerprint: String::new(),
            full: None,
            changes_data: false,
        }
    }
}

/// What a method answers when the pipeline, not the pack, ends the request.
pub(crate) trait Answer: Sized {
    /// The pack's code ran out of time and was stopped.
    fn timed_out(what: &str, after: Duration) -> Result<Self, ErrorData> {
        Err(crate::error::timed_out(what, after))
    }

    /// The pack's code panicked; `message` carries only the reference id.
    fn internal(message: String) -> Result<Self, ErrorData> {
        Err(crate::error::internal(message))
    }

    /// The approval step's answer (only tool calls have one).
    fn approval(answer: Result<CallToolResponse, ErrorData>) -> Result<Self, ErrorData> {
        answer.and_then(|_| {
            Err(crate::error::internal(
                "an approval answered a request that is not a tool call",
            ))
        })
    }
}

pub use crate::error::REQUEST_TIMED_OUT;

impl Answer for CallToolResponse {
    fn timed_out(what: &str, after: Duration) -> Result<Self, ErrorData> {
        let message = format!(
            "{what} timed out after {} s and was stopped",
            after.as_secs_f64()
        );
        Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into())
    }

    fn internal(message: String) -> Result<Self, ErrorData> {
        Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into())
    }

    fn approval(answer: Result<CallToolResponse, ErrorData>) -> Result<Self, ErrorData> {
        answer
    }
}

impl Answer for rmcp::model::ReadResourceResponse {}
impl Answer for rmcp::model::GetPromptResponse {}
impl Answer for rmcp::model::CompleteResult {}
impl Answer for rmcp::model::GetSkillResult {}
impl Answer for rmcp::model::ListResourcesResult {}
impl Answer for () {}

impl GuardConfig {
    /// The scopes `principal` lacks for `target` (empty: it may proceed), or `None` when the
    /// catalog has no such target. The HTTP layer asks this to answer 403 before rmcp sees
    /// the request; [`GuardConfig::run`] checks the same scopes for every request anyway.
    pub(crate) fn missing_scopes(
        &self,
        catalog: &Catalog,
        principal: &Principal,
        target: Target<'_>,
    ) -> Option<Vec<String>> {
        let scopes = self.policies.scopes_for(catalog, target)?;
        Some(
            principal
                .missing(&scopes)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        )
    }

    /// [`GuardConfig::run_checked`] for a request with nothing to validate (its target
    /// names everything there is: a resource read, a subscription, a completion).
    pub(crate) async fn run<T, F, Fut>(
        &self,
        catalog: &Catalog,
        request: Request<'_>,
        cancel: CancellationToken,
        work: F,
    ) -> Result<T, ErrorData>
    where
        T: Answer,
        F: FnOnce(CancellationToken, Instant) -> Fut,
        Fut: Future<Output = (Result<T, ErrorData>, Outcome)>,
    {
        self.run_checked(
            catalog,
            request,
            cancel,
            || Ok(()),
            |(), cancel, deadline| work(cancel, deadline),
        )
        .await
    }

    /// Runs `request` through the whole pipeline: principal, the target's scopes, its rate
    /// limits, `check` (the validation of its input, [`validate`]), the principal's call
    /// slot, the audit intent of a call that changes data, then `work` under the timeout
    /// (from [`Policies`]) with panics caught and cancellation obeyed; then the log line,
    /// metrics and audit record.
    ///
    /// `check` returns the validated input, or the answer to give instead (which ends the
    /// request as `InvalidArguments`). `work` receives the validated input, a token
    /// cancelled on timeout or when the client cancels, and the deadline.
    pub(crate) async fn run_checked<T, V, C, F, Fut>(
        &self,
        catalog: &Catalog,
        request: Request<'_>,
        cancel: CancellationToken,
        check: C,
        work: F,
    ) -> Result<T, ErrorData>
    where
        T: Answer,
        C: FnOnce() -> Result<V, validate::Invalid<T>>,
        F: FnOnce(V, CancellationToken, Instant) -> Fut,
        Fut: Future<Output = (Result<T, ErrorData>, Outcome)>,
    {
        self.run_holding(catalog, request, cancel, check, work)
            .await
            .map(|(answer, _slot)| answer)
    }

    /// [`GuardConfig::run_checked`] that hands back the slot the request holds (a listen
    /// stream's, which lasts as long as the stream, after the request itself is answered).
    pub(crate) async fn run_holding<T, V, C, F, Fut>(
        &self,
        catalog: &Catalog,
        request: Request<'_>,
        cancel: CancellationToken,
        check: C,
        work: F,
    ) -> Result<(T, Option<Slot>), ErrorData>
    where
        T: Answer,
        C: FnOnce() -> Result<V, validate::Invalid<T>>,
        F: FnOnce(V, CancellationToken, Instant) -> Fut,
        Fut: Future<Output = (Result<T, ErrorData>, Outcome)>,
    {
        let started = std::time::Instant::now();
        let Request {
            method,
            target,
            item,
            what,
            principal,
            arguments,
            origin,
            ask,
        } = request;
        // The request's span, the server span of traces: made before the checks so that
        // refused requests are traced too, entered only around the pack's work and the log
        // line of a request let through (as before traces existed).
        // Its item is `item`: a span's field called `name` would sit beside the span's own
        // name in a JSON log line, one key twice. Its principal is set here, not recorded
        // later: a JSON span's fields are formatted once, and a `record` formats them again.
        let span = tracing::info_span!(
            "call",
            rpc.method = method,
            item,
            principal = principal.as_ref().map(tracing::field::display),
            otel.name = tracing::field::Empty,
            otel.kind = tracing::field::Empty,
        );
        crate::traces::start_request(&span, method, target, item, &origin);
        let seen = Seen {
            method,
            item,
            arguments: &arguments,
            origin: &origin,
            started,
            span: &span,
        };
        let (Some(scopes), policy) = (
            self.policies.scopes_for(catalog, target),
            self.policies.policy_for(catalog, target),
        ) else {
            self.finish(&seen, principal.as_ref(), Outcome::NotFound)
                .await;
            return Err(crate::error::does_not_exist(&what));
        };
        let Some(principal) = principal else {
            tracing::warn!(
                rpc.method = method,
                name = item,
                "request without a principal refused"
            );
            self.finish(&seen, None, Outcome::Unauthenticated).await;
            return Err(error::unauthenticated());
        };
        let missing = principal.missing(&scopes);
        if !missing.is_empty() {
            self.finish(&seen, Some(&principal), Outcome::Forbidden)
                .await;
            return Err(error::forbidden(&what, &missing));
        }
        if policy.backing_needs_approval {
            self.finish(&seen, Some(&principal), Outcome::ApprovalDenied)
                .await;
            return Err(error::read_needs_approval(&what));
        }
        // Every bucket the request draws from: its own, and its backing tool's (whose calls
        // share that budget), each keyed by principal and the item it names.
        for limit in &policy.limits {
            let key = format!("{}\0{}", principal.id(), limit.item.unwrap_or(item));
            if let Err(refusal) = limit.limiter.check(&key).await {
                self.finish(&seen, Some(&principal), Outcome::RateLimited)
                    .await;
                return Err(match refusal {
                    Refusal::Wait(wait) => {
                        metrics::counter!("portcullis_rate_limited_total", "limit" => "item")
                            .increment(1);
                        error::rate_limited(&what, retry_after_secs(wait))
                    }
                    Refusal::Unavailable => error::limits_unavailable(&what),
                });
            }
        }
        // Validation: after authorization and limits, before anything is held or recorded.
        let input = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(check)) {
            Ok(Ok(input)) => input,
            Ok(Err(answer)) => {
                self.finish(&seen, Some(&principal), Outcome::InvalidArguments)
                    .await;
                return (*answer).map(|answer| (answer, None));
            }
            Err(payload) => {
                let message = span.in_scope(|| error::panicked(item, payload.as_ref()));
                self.finish(&seen, Some(&principal), Outcome::Panicked)
                    .await;
                return T::internal(message).map(|answer| (answer, None));
            }
        };
        // A tool call holds its principal's call slot until it ends (a 2025 session's call
        // goes on after its client hung up, beyond any slot the transport held); a listen
        // holds its stream slot for as long as the stream is open.
        let slots = match target {
            Target::Tool(_) => Some((
                &self.calls,
                "tool calls running for this principal",
                "limits.max_in_flight_per_principal",
                "calls",
            )),
            Target::Listen(_) => Some((
                &self.listens,
                "open listen streams",
                "limits.max_listen_streams_per_principal",
                "listens",
            )),
            _ => None,
        };
        let held = match slots {
            None => None,
            Some((slots, what_is_capped, key, limit)) => match slots.try_acquire(principal.id()) {
                Some(slot) => Some(slot),
                None => {
                    self.finish(&seen, Some(&principal), Outcome::RateLimited)
                        .await;
                    metrics::counter!("portcullis_rate_limited_total", "limit" => limit)
                        .increment(1);
                    return Err(error::over_cap(what_is_capped, key, slots.cap()));
                }
            },
        };
        // A call the audit log would refuse is refused before anyone is asked to approve it.
        if let Some(audit) = &self.audit
            && audit.refuses(arguments.changes_data)
        {
            self.finish(&seen, Some(&principal), Outcome::AuditUnavailable)
                .await;
            return Err(error::audit_unavailable(&what));
        }
        // A human's approval of this exact call: after validation (only a valid call is
        // put to a person), before the intent record and the work.
        if let Some(rule) = policy.approval {
            let verdict = match ask {
                Some(ask) => {
                    self.approvals
                        .decide(
                            rule,
                            ask,
                            &principal,
                            &self.request_state,
                            self.audit.as_deref(),
                            &cancel,
                            policy.timeout,
                        )
                        .await
                }
                None => crate::approval::Verdict::Halt {
                    outcome: Outcome::ApprovalDenied,
                    answer: Err(error::internal(
                        "a call under approval came without its approval context",
                    )),
                },
            };
            if let crate::approval::Verdict::Halt { outcome, answer } = verdict {
                self.finish(&seen, Some(&principal), outcome).await;
                return T::approval(answer).map(|answer| (answer, None));
            }
        }
        if let Some(audit) = &self.audit {
            // A call that changes data runs only once its intent is in the audit log.
            let recorded = !audit.refuses(arguments.changes_data)
                && (!arguments.changes_data
                    || audit
                        .record_intent(self.event(&seen, Some(&principal), Outcome::Started))
                        .await);
            if !recorded {
                self.finish(&seen, Some(&principal), Outcome::AuditUnavailable)
                    .await;
                return Err(error::audit_unavailable(&what));
            }
        }

        let timeout = policy.timeout;
        let deadline = Instant::now() + timeout;
        let work_cancel = cancel.child_token();
        // Boxed: the pack's work is the largest part of the request's future, and the
        // wrappers below would each move it.
        let guarded =
            std::panic::AssertUnwindSafe(Box::pin(work(input, work_cancel.clone(), deadline)))
                .catch_unwind()
                .instrument(span.clone());
        let in_flight = crate::metrics::InFlight::start();
        let (result, outcome) = tokio::select! {
            finished = tokio::time::timeout_at(deadline, guarded) => match finished {
                Ok(Ok(answered)) => answered,
                Ok(Err(payload)) => {
                    let message = span.in_scope(|| error::panicked(item, payload.as_ref()));
                    (T::internal(message), Outcome::Panicked)
                }
                Err(_elapsed) => {
                    work_cancel.cancel();
                    (T::timed_out(&what, timeout), Outcome::TimedOut)
                }
            },
            () = cancel.cancelled() => {
                work_cancel.cancel();
                (Err(error::cancelled()), Outcome::Cancelled)
            }
        };
        drop(in_flight);
        self.finish(&seen, Some(&principal), outcome)
            .instrument(span.clone())
            .await;
        result.map(|answer| (answer, held))
    }

    /// The end of every request: its log line, its metrics and its audit record.
    async fn finish(&self, seen: &Seen<'_>, principal: Option<&Principal>, outcome: Outcome) {
        let duration = seen.started.elapsed();
        let principal_id = principal.map_or("none", Principal::id);
        crate::traces::finish_request(seen.span, outcome);
        // The trace the request belongs to: OpenTelemetry's when traces are on (a new one
        // when the client sent none), else the client's.
        let trace_id = crate::traces::trace_id(seen.span).or_else(|| seen.origin.trace_id.clone());
        log_line(
            seen.method,
            seen.item,
            principal_id,
            seen.arguments,
            trace_id.as_deref(),
            duration,
            outcome,
        );
        crate::metrics::request(seen.method, seen.item, outcome, duration);
        if let Some(audit) = &self.audit {
            let event = self.event(seen, principal, outcome);
            audit.record(event, seen.arguments.changes_data).await;
        }
    }

    /// The audit record of `seen` ending in `outcome`.
    fn event(&self, seen: &Seen<'_>, principal: Option<&Principal>, outcome: Outcome) -> Event {
        Event {
            request_id: seen.origin.request_id.clone(),
            trace_id: crate::traces::trace_id(seen.span).or_else(|| seen.origin.trace_id.clone()),
            principal: principal.map_or("none", Principal::id).to_owned(),
            issuer: principal.and_then(Principal::issuer).map(str::to_owned),
            client_id: principal.and_then(Principal::client_id).map(str::to_owned),
            client: seen.origin.client.clone(),
            client_ip: seen.origin.client_ip.clone(),
            method: seen.method.to_owned(),
            item: seen.item.to_owned(),
            arg_keys: seen.arguments.keys.clone(),
            args_fp: seen.arguments.fingerprint.clone(),
            arguments: seen.arguments.full.clone(),
            decision: outcome.decision(),
            outcome: outcome.as_str(),
            duration_ms: seen.started.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// Records a request the HTTP layer refused for missing scopes, as the guard would have:
    /// the same line, with the item's label (never a client's URI).
    pub(crate) async fn refused_forbidden(
        &self,
        catalog: &Catalog,
        method: &str,
        target: Target<'_>,
        principal: &Principal,
        origin: Origin,
    ) {
        let item = match target {
            Target::Tool(name) | Target::Prompt(name) | Target::Template(name) => name.to_owned(),
            Target::Resource(uri) => catalog
                .resource_source(uri)
                .map_or_else(|| "<unknown resource>".to_owned(), |s| s.label(uri)),
            Target::Listen(_) => "<listen>".to_owned(),
        };
        let arguments = no_arguments();
        let seen = Seen {
            method: static_method(method),
            item: &item,
            arguments: &arguments,
            origin: &origin,
            started: std::time::Instant::now(),
            span: &tracing::Span::none(),
        };
        self.finish(&seen, Some(principal), Outcome::Forbidden)
            .await;
    }

    /// Records a request refused before it named anything the catalog has (an unknown
    /// tool, prompt or resource). A name that is not a plausible identifier is not echoed:
    /// it is the client's text.
    pub(crate) async fn refused_unknown(
        &self,
        method: &'static str,
        name: &str,
        principal: Option<&Principal>,
        origin: Origin,
    ) {
        self.refused_as(method, name, principal, Outcome::NotFound, origin)
            .await;
    }

    /// Records a request refused with `outcome` before it reached the pipeline.
    pub(crate) async fn refused_as(
        &self,
        method: &'static str,
        name: &str,
        principal: Option<&Principal>,
        outcome: Outcome,
        origin: Origin,
    ) {
        let plausible = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c));
        let item = if plausible {
            name
        } else {
            "<not an identifier>"
        };
        let arguments = no_arguments();
        let seen = Seen {
            method,
            item,
            arguments: &arguments,
            origin: &origin,
            started: std::time::Instant::now(),
            span: &tracing::Span::none(),
        };
        self.finish(&seen, principal, outcome).await;
    }

    /// Records a request refused by the HTTP layer before it was read: failed
    /// authentication or a rate limit.
    pub(crate) async fn refused_http(
        &self,
        principal: Option<&Principal>,
        outcome: Outcome,
        origin: Origin,
    ) {
        let arguments = no_arguments();
        let seen = Seen {
            method: "http",
            item: "-",
            arguments: &arguments,
            origin: &origin,
            started: std::time::Instant::now(),
            span: &tracing::Span::none(),
        };
        self.finish(&seen, principal, outcome).await;
    }
}

fn no_arguments() -> Arguments {
    GuardConfig::no_arguments()
}

/// What the end of a request is told about it.
struct Seen<'a> {
    method: &'static str,
    item: &'a str,
    arguments: &'a Arguments,
    origin: &'a Origin,
    started: std::time::Instant,
    /// The request's span ([`tracing::Span::none`] for refusals recorded outside the guard).
    span: &'a tracing::Span,
}

/// The method names the HTTP layer refuses, as static text (logs and metrics keep them).
fn static_method(method: &str) -> &'static str {
    match method {
        "tools/call" => "tools/call",
        "resources/read" => "resources/read",
        "resources/subscribe" => "resources/subscribe",
        "subscriptions/listen" => "subscriptions/listen",
        "prompts/get" => "prompts/get",
        "completion/complete" => "completion/complete",
        _ => "other",
    }
}

/// The one log line of a request.
fn log_line(
    method: &str,
    item: &str,
    principal: &str,
    arguments: &Arguments,
    trace_id: Option<&str>,
    duration: Duration,
    outcome: Outcome,
) {
    tracing::info!(
        rpc.method = method,
        name = item,
        principal,
        arg_keys = ?arguments.keys,
        args_fp = %arguments.fingerprint,
        trace_id,
        duration_ms = duration.as_secs_f64() * 1000.0,
        outcome = outcome.as_str(),
        "{}",
        message_of(method)
    );
}

/// The log line's message per method: what the operator greps for.
fn message_of(method: &str) -> &'static str {
    match method {
        "tools/call" => "tool call",
        "resources/read" => "resource read",
        "resources/subscribe" => "resource subscription",
        "prompts/get" => "prompt get",
        "completion/complete" => "completion",
        "http" => "request refused",
        _ => "request",
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    /// What a reload keeps of the guard: the per-principal tables and the caps that need a
    /// restart (`server/reload.rs` warns so), here `max_subscriptions`.
    #[test]
    fn a_reload_keeps_the_caps_that_need_a_restart() {
        let config = |max: usize| {
            portcullis_config::parse(
                &format!("[server]\nname = \"g\"\n[limits]\nmax_subscriptions = {max}\n"),
                std::path::Path::new("/srv/g.toml"),
                |_| None,
            )
            .expect("config")
        };
        let catalog = crate::catalog::CatalogBuilder::new()
            .build()
            .expect("catalog");
        let old = GuardConfig::new(&config(100), &catalog).expect("guard");
        let new = GuardConfig::new(&config(5), &catalog).expect("guard");
        assert_eq!(new.max_subscriptions, 5);
        let kept = new.keeps_counts_of(&old);
        assert_eq!(kept.max_subscriptions, 100);
        assert!(Arc::ptr_eq(&kept.calls, &old.calls));
        assert!(Arc::ptr_eq(&kept.listens, &old.listens));
    }
}
