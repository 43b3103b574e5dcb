//! Human approval of a tool call, bound to the exact call: a digest of (principal, tool,
//! canonical arguments, the config's generation and the tool's definition and rule) and an
//! expiry, used once. The guard asks
//! [`Approvals::decide`] after validation and before the call's audit intent; nothing the
//! model sends (an argument named `confirm`, anything in the arguments) counts.
//!
//! - **elicit**, 2025 session: `elicitation/create` to the calling client, waited for.
//! - **elicit**, 2026-07-28: an input-required result whose `requestState` is sealed with
//!   the server's codec (`cluster.state_keys`, so any replica opens it) and carries the
//!   digest, a nonce and its issue time; the retry is verified (opens, issued after the last
//!   reload that changed a rule, same digest) and the nonce claimed once (in Redis with
//!   `[cluster]`, else in this process), and only an accept runs the call.
//! - A tool under approval that itself asks for input gets its next rounds through a state
//!   of ours sealed around its own (`Sealer`), bound to the call, used once.
//! - **console**: a pending approval in this process's queue, decided by an approver in the
//!   console (or its JSON API); the call waits, bounded by the approval timeout and its
//!   own timeout, and when it stops waiting it answers with the pending id, so the same
//!   call repeated after approval runs once.
//!
//! Every request, decision and expiry is an audit record and counted
//! (`portcullis_approvals_total{mode, event}`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use portcullis_config::{APPROVE_SCOPE, ApprovalMode};
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, ElicitRequestParams, ElicitationAction,
    ElicitationSchema, InputRequest, InputRequests, InputRequiredResult, InputResponses,
    JsonObject,
};
use rmcp::service::Peer;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, Event};
use crate::auth::Principal;
use crate::request::Outcome;

/// The key of an approval in `inputRequests` / `inputResponses` of 2026-07-28.
pub const INPUT_KEY: &str = "portcullis/approval";
/// Pending console approvals one principal may have at once.
pub const MAX_PENDING_PER_PRINCIPAL: usize = 16;
/// Pending console approvals in this process.
pub const MAX_PENDING: usize = 1024;
/// Nonces of used 2026-07-28 approvals remembered in this process (without `[cluster]`).
const MAX_USED: usize = 65_536;
/// Of which one principal's at most.
const MAX_USED_PER_PRINCIPAL: usize = 4096;
/// What binds a sealed approval state to its purpose (no other state of the codec opens
/// as one).
const STATE_PURPOSE: &[u8] = b"portcullis/approval/v1";

/// The approval rule of one tool, resolved from `[tools.NAME]` or `[packs.NAME]`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) mode: ApprovalMode,
    pub(crate) timeout: Duration,
    /// Scopes or principal ids, any one of which may approve in the console.
    pub(crate) approvers: Vec<String>,
    /// The digest of the tool's configuration as served: the config's generation (the
    /// digest of the whole config), the tool's definition (an upstream's may change
    /// without the config) and this rule. A reload that changes any of them voids the
    /// approvals given before it.
    pub(crate) config_digest: String,
}

impl Rule {
    pub(crate) fn new(
        mode: ApprovalMode,
        timeout: Duration,
        approvers: Option<Vec<String>>,
        definition: &rmcp::model::Tool,
        scopes: &[String],
        generation: &str,
    ) -> Self {
        let approvers = approvers.unwrap_or_else(|| vec![APPROVE_SCOPE.to_owned()]);
        let config_digest = portcullis_core::digest::canonical_digest(&json!({
            "generation": generation,
            "definition": serde_json::to_value(definition).unwrap_or(Value::Null),
            "scopes": scopes,
            "approval": mode.as_str(),
            "approval_timeout_secs": timeout.as_secs(),
            "approvers": approvers,
        }));
        Self {
            mode,
            timeout,
            approvers,
            config_digest,
        }
    }
}

/// What a tool call brings to the approval step besides its principal.
pub(crate) struct Ask {
    pub(crate) tool: String,
    pub(crate) arguments: JsonObject,
    /// The arguments for people: secret parameters redacted, long values cut.
    pub(crate) shown: Value,
    /// The 2025 session's connection (server-to-client requests); `None` in 2026-07-28.
    pub(crate) peer: Option<Peer<RoleServer>>,
    /// Whether the client declared elicitation (forms).
    pub(crate) elicitation: bool,
    /// A 2026-07-28 retry's answers and state.
    pub(crate) input_responses: Option<InputResponses>,
    pub(crate) request_state: Option<String>,
    /// Filled once the call is approved: what the tool itself gets.
    pub(crate) resume: Arc<Mutex<Option<Resume>>>,
}

/// What an approved call's tool receives of its round: its own answers and state (the
/// approval's taken out), and what seals the state of its next round.
#[derive(Default)]
pub struct Resume {
    pub input_responses: Option<InputResponses>,
    pub request_state: Option<String>,
    pub sealer: Option<Sealer>,
}

/// Seals the state of an approved call's next round to that call.
pub struct Sealer {
    digest: String,
    ttl: Duration,
}

impl Sealer {
    /// The tool's own `state` (if any) sealed inside a state of ours bound to the call's
    /// digest: the next round needs no new approval, and no other call can use it.
    pub fn seal(
        &self,
        codec: &rmcp::model::RequestStateCodec,
        state: Option<String>,
    ) -> Result<String, rmcp::model::RequestStateError> {
        let continued = Continued {
            d: self.digest.clone(),
            n: uuid::Uuid::new_v4().simple().to_string(),
            s: state,
            t: now_ms(),
        };
        codec.seal_json_with(
            &continued,
            &rmcp::model::SealOptions::new()
                .associated_data(CONTINUED)
                .ttl(self.ttl),
        )
    }
}

/// The state of an approved call's next round.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continued {
    d: String,
    n: String,
    s: Option<String>,
    /// Issued at (Unix ms).
    t: u64,
}

/// Binds a continuation's state to its purpose.
const CONTINUED: &[u8] = b"portcullis/approval-continued/v1";

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How the approval step ended.
pub(crate) enum Verdict {
    /// Run the call.
    Approved,
    /// Do not run it; answer this instead.
    Halt {
        outcome: Outcome,
        answer: Result<CallToolResponse, ErrorData>,
    },
}

fn refuse(outcome: Outcome, message: String) -> Verdict {
    Verdict::Halt {
        outcome,
        answer: Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into()),
    }
}

/// The state of a pending console approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Waiting,
    Approved {
        by: String,
    },
    Denied {
        by: String,
    },
    /// The approved call ran (the approval is spent).
    Used,
    Expired,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Waiting => "pending",
            Self::Approved { .. } => "approved",
            Self::Denied { .. } => "denied",
            Self::Used => "used",
            Self::Expired => "expired",
        }
    }
}

/// One call waiting for an approver in the console.
#[derive(Debug)]
pub struct Pending {
    pub id: String,
    pub digest: String,
    pub principal: String,
    pub tool: String,
    pub summary: String,
    /// The whole arguments as people read them ([`shown_text`]).
    pub arguments: String,
    pub requested_at: SystemTime,
    pub expires_at: SystemTime,
    expires: Instant,
    approvers: Vec<String>,
    /// The tool's configuration it was requested under ([`Rule::config_digest`]).
    config_digest: String,
    state: watch::Sender<State>,
}

impl Pending {
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Ends it as expired unless it was used, denied or expired already; `true` when this
    /// did it.
    fn expire(&self) -> bool {
        self.state.send_if_modified(|s| {
            if matches!(s, State::Waiting | State::Approved { .. }) {
                *s = State::Expired;
                true
            } else {
                false
            }
        })
    }

    /// The audit record and count of its expiry (`changed`: by a reload that changed its
    /// tool's configuration).
    async fn note_expired(&self, audit: Option<&AuditLog>, changed: bool) {
        let mut details =
            json!({ "id": self.id, "digest": self.digest, "requested_by": self.principal });
        if changed {
            details["reason"] = json!("the configuration changed");
        }
        note(
            audit,
            "portcullis",
            &self.tool,
            "console",
            "expired",
            details,
        )
        .await;
    }

    /// Whether `principal` may decide it: holds one of the approver scopes, or is named by
    /// id. A principal never decides its own call unless it is named by id.
    pub fn may_decide(&self, principal: &Principal) -> bool {
        let (ids, scopes): (Vec<&String>, Vec<&String>) =
            self.approvers.iter().partition(|a| is_principal_id(a));
        if ids.iter().any(|id| *id == principal.id()) {
            return true;
        }
        principal.id() != self.principal
            && scopes
                .iter()
                .any(|scope| principal.missing(std::slice::from_ref(*scope)).is_empty())
    }
}

/// Whether an `approvers` entry names a principal (`key:…`, `jwt:…`, `jwt-client:…`,
/// `local`) rather than a scope: never both, so a scope spelled like an id grants nothing.
pub fn is_principal_id(entry: &str) -> bool {
    entry == "local"
        || ["key:", "jwt:", "jwt-client:"]
            .iter()
            .any(|prefix| entry.starts_with(prefix))
}

/// Why a console decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("no pending approval with this id (it may have expired or been used)")]
    NotFound,
    #[error("this principal may not decide this approval")]
    NotAllowed,
    #[error("the approval was already {0}")]
    Decided(&'static str),
    #[error(
        "the tool's configuration changed since this call was requested; it must be called again"
    )]
    Changed,
}

/// The approvals of this process: the console's queue and the used 2026-07-28 nonces.
/// Kept across reloads.
#[derive(Default)]
pub struct Approvals {
    pending: Mutex<HashMap<String, Arc<Pending>>>,
    /// Used nonces: principal and until when.
    used: Mutex<HashMap<String, (String, std::time::Instant)>>,
    cluster: Mutex<Option<Arc<crate::cluster::Cluster>>>,
    /// Where expiries found by the sweep are recorded.
    audit: Mutex<Option<Arc<AuditLog>>>,
    /// Whether the sweep of expired approvals runs.
    sweeping: std::sync::atomic::AtomicBool,
    /// When (Unix ms) a reload last changed each tool's approval configuration: its sealed
    /// approvals and rounds issued before it are void, even if the change is reverted. One
    /// entry per tool that ever had a rule.
    changed_at: Mutex<HashMap<String, u64>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals").finish_non_exhaustive()
    }
}

fn count(mode: &'static str, event: &'static str) {
    metrics::counter!("portcullis_approvals_total", "mode" => mode, "event" => event).increment(1);
}

/// The digest an approval is bound to.
pub(crate) fn call_digest(
    principal: &str,
    tool: &str,
    arguments: &JsonObject,
    rule: &Rule,
) -> String {
    portcullis_core::digest::canonical_digest(&json!({
        "principal": principal,
        "tool": tool,
        "arguments": Value::Object(arguments.clone()),
        "config": rule.config_digest,
    }))
}

/// A line for people: `path = "notes/a.md", force = true` (at most 20 arguments, each
/// value cut to 120 characters, and saying so; characters that hide or reorder text shown
/// as spaces). The whole arguments are in [`shown_text`].
pub(crate) fn summary(shown: &Value) -> String {
    let Some(object) = shown.as_object() else {
        return String::new();
    };
    let mut parts: Vec<String> = object
        .iter()
        .take(20)
        .map(|(k, v)| {
            let text = v.to_string();
            let count = text.chars().count();
            let text = if count > 120 {
                let cut: String = text.chars().take(119).collect();
                format!("{cut}…(+{} characters)", count - 119)
            } else {
                text
            };
            format!("{} = {}", visible(k), visible(&text))
        })
        .collect();
    if object.len() > 20 {
        parts.push(format!("… (+{} more arguments)", object.len() - 20));
    }
    if parts.is_empty() {
        "(no arguments)".to_owned()
    } else {
        parts.join(", ")
    }
}

/// The arguments as an approver sees them: whole, but for the parameters the schema marks
/// `writeOnly` (declared `secret`), shown as `"<redacted>"`. (Not the audit log's form,
/// which cuts strings at 4 KiB: an approver must be able to read past that.)
pub(crate) fn shown(schema: &JsonObject, arguments: &JsonObject) -> Value {
    let properties = schema.get("properties").and_then(Value::as_object);
    let secret = |key: &str| {
        properties
            .and_then(|p| p.get(key))
            .and_then(|p| p.get("writeOnly"))
            .and_then(Value::as_bool)
            == Some(true)
    };
    Value::Object(
        arguments
            .iter()
            .map(|(k, v)| {
                let v = if secret(k) {
                    Value::String("<redacted>".to_owned())
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect(),
    )
}

/// The largest text of a call's arguments shown to an approver.
const MAX_SHOWN: usize = 64 * 1024;

/// The whole arguments for people ([`shown`]), as indented JSON, at most 64 KiB and saying
/// where it was cut; characters that hide or reorder text shown as spaces.
pub(crate) fn shown_text(shown: &Value) -> String {
    let text = serde_json::to_string_pretty(shown).unwrap_or_default();
    let text = visible(&text);
    if text.len() <= MAX_SHOWN {
        return text;
    }
    let mut end = MAX_SHOWN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}\n…(cut: {} more bytes not shown; deny a call you cannot read whole)",
        &text[..end],
        text.len() - end
    )
}

/// `text` with control characters and Unicode format characters (bidirectional overrides,
/// zero-width characters) replaced by spaces, so what a person reads is what runs.
fn visible(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\n' || is_format(c) {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// Unicode's format characters (general category Cf) that can hide or reorder text.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{0600}'..='\u{0605}' | '\u{061C}' | '\u{06DD}' | '\u{070F}'
        | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}'
        // Line and paragraph separators, fillers and joiners that render as nothing.
        | '\u{2028}' | '\u{2029}' | '\u{034F}' | '\u{115F}' | '\u{1160}' | '\u{3164}'
        | '\u{FFA0}' | '\u{FE00}'..='\u{FE0F}' | '\u{E0100}'..='\u{E01EF}'
        | '\u{0890}' | '\u{0891}' | '\u{08E2}' | '\u{110BD}' | '\u{110CD}'
        | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}')
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    /// The call's digest.
    d: String,
    /// Used once.
    n: String,
    /// Issued at (Unix ms).
    t: u64,
}

impl Approvals {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A reload changed (or removed) the approval configuration of `tools`: what was
    /// sealed for them before is void.
    pub(crate) fn configuration_changed(&self, tools: &[&str]) {
        let now = now_ms();
        let mut changed = lock(&self.changed_at);
        for tool in tools {
            changed.insert((*tool).to_owned(), now);
        }
    }

    /// Whether something sealed for `tool` at `issued` (Unix ms) predates the last change
    /// of its configuration.
    fn voided(&self, tool: &str, issued: u64) -> bool {
        lock(&self.changed_at)
            .get(tool)
            .is_some_and(|changed| issued < *changed)
    }

    /// Expires every pending approval whose tool's configuration is not `current`'s (a
    /// reload changed it): it can never be given, even if the change is reverted. Returns
    /// those that were still open, for [`Approvals::record_voided`].
    pub(crate) fn void_changed(
        &self,
        current: impl Fn(&str) -> Option<String>,
    ) -> Vec<Arc<Pending>> {
        let stale: Vec<Arc<Pending>> = {
            let mut pending = lock(&self.pending);
            let ids: Vec<String> = pending
                .values()
                .filter(|p| current(&p.tool).as_deref() != Some(p.config_digest.as_str()))
                .map(|p| p.id.clone())
                .collect();
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        stale.into_iter().filter(|entry| entry.expire()).collect()
    }

    /// Records the approvals a reload voided.
    pub(crate) async fn record_voided(voided: Vec<Arc<Pending>>, audit: Option<&AuditLog>) {
        for entry in voided {
            entry.note_expired(audit, true).await;
        }
    }

    /// Records what the sweep finds in `audit`.
    pub(crate) fn record_in(&self, audit: &Arc<AuditLog>) {
        *lock(&self.audit) = Some(Arc::clone(audit));
    }

    /// Starts, once, the sweep that expires pending approvals nobody looks at (every 5 s,
    /// ending with the last reference to the queue), so each expiry is recorded in time.
    fn sweep(self: &Arc<Self>) {
        if self
            .sweeping
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let queue = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let Some(queue) = queue.upgrade() else {
                    break;
                };
                let audit = lock(&queue.audit).clone();
                queue.expire(audit.as_deref()).await;
            }
        });
    }

    /// Claims used nonces in Redis, for every replica.
    pub(crate) fn share(&self, cluster: &Arc<crate::cluster::Cluster>) {
        *lock(&self.cluster) = Some(Arc::clone(cluster));
    }

    /// Decides whether the call described by `ask` may run. Any wait is bounded by the
    /// earlier of the approval timeout and the call's own timeout. Once approved, the
    /// tool's own multi-round answers and state are in `ask.resume` for the call.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn decide(
        self: &Arc<Self>,
        rule: &Rule,
        mut ask: Ask,
        principal: &Principal,
        codec: &rmcp::model::RequestStateCodec,
        audit: Option<&AuditLog>,
        cancel: &CancellationToken,
        call_timeout: Duration,
    ) -> Verdict {
        let digest = call_digest(principal.id(), &ask.tool, &ask.arguments, rule);
        let sealer = Sealer {
            digest: digest.clone(),
            ttl: rule.timeout,
        };
        let slot = Arc::clone(&ask.resume);
        // A later round of a call already approved (the tool asked its caller for input):
        // its state is ours, sealed around the tool's, bound to this very call, used once.
        if let Some(state) = ask.request_state.as_deref()
            && let Ok(continued) = codec.open_json_with::<Continued>(state, CONTINUED)
        {
            let (tool, digest_ref) = (ask.tool.as_str(), sealer.digest.as_str());
            let refused = |event: &'static str, text: String| {
                refused(audit, principal, tool, "continued", digest_ref, event, text)
            };
            if self.voided(&ask.tool, continued.t) {
                return refused(
                    "expired",
                    format!("the configuration of tool `{tool}` changed since this call was approved; call the tool again"),
                )
                .await;
            }
            if continued.d != digest {
                return refused(
                    "mismatch",
                    format!("this round's requestState belongs to a different call of tool `{tool}` (its arguments, caller or configuration differ); call the tool again"),
                )
                .await;
            }
            match self.claim(principal.id(), &continued.n, rule.timeout).await {
                Ok(true) => {}
                Ok(false) => {
                    return refused(
                        "replayed",
                        format!(
                            "this round of tool `{tool}` was already answered; call the tool again"
                        ),
                    )
                    .await;
                }
                Err(()) => {
                    return refused(
                        "unavailable",
                        format!("the round of tool `{tool}` cannot be recorded as used now (too many recent approvals, or the shared state is unavailable); try again later"),
                    )
                    .await;
                }
            }
            *lock(&slot) = Some(Resume {
                input_responses: ask.input_responses.take(),
                request_state: continued.s,
                sealer: Some(sealer),
            });
            return Verdict::Approved;
        }
        // The tool's own answers, if any, besides the approval's.
        let mut own = ask.input_responses.clone().unwrap_or_default();
        own.remove(INPUT_KEY);
        let verdict = self
            .fresh(
                rule,
                ask,
                principal,
                digest,
                codec,
                audit,
                cancel,
                call_timeout,
            )
            .await;
        if matches!(verdict, Verdict::Approved) {
            *lock(&slot) = Some(Resume {
                input_responses: (!own.is_empty()).then_some(own),
                request_state: None,
                sealer: Some(sealer),
            });
        }
        verdict
    }

    #[allow(clippy::too_many_arguments)]
    async fn fresh(
        self: &Arc<Self>,
        rule: &Rule,
        ask: Ask,
        principal: &Principal,
        digest: String,
        codec: &rmcp::model::RequestStateCodec,
        audit: Option<&AuditLog>,
        cancel: &CancellationToken,
        call_timeout: Duration,
    ) -> Verdict {
        let wait = rule.timeout.min(call_timeout);
        let elicit = match rule.mode {
            ApprovalMode::Elicit => true,
            ApprovalMode::Console => false,
            ApprovalMode::ElicitOrConsole => ask.elicitation,
        };
        if !elicit {
            return self
                .console(rule, ask, principal, digest, audit, cancel, wait)
                .await;
        }
        if !ask.elicitation {
            count("elicit", "unsupported");
            return refuse(
                Outcome::ApprovalDenied,
                format!(
                    "tool `{}` needs a human's approval of each call, and this client did not declare elicitation: use a client that supports approval (elicitation), or ask the operator to allow console approval",
                    ask.tool
                ),
            );
        }
        match ask.peer.clone() {
            Some(peer) => {
                self.elicit_session(ask, principal, &digest, peer, audit, cancel, wait)
                    .await
            }
            None => {
                self.elicit_inline(rule, ask, principal, digest, codec, audit)
                    .await
            }
        }
    }

    /// 2025 session: `elicitation/create` to the caller's client.
    #[allow(clippy::too_many_arguments)]
    async fn elicit_session(
        &self,
        ask: Ask,
        principal: &Principal,
        digest: &str,
        peer: Peer<RoleServer>,
        audit: Option<&AuditLog>,
        cancel: &CancellationToken,
        wait: Duration,
    ) -> Verdict {
        note(
            audit,
            principal.id(),
            &ask.tool,
            "elicit",
            "requested",
            json!({ "digest": digest }),
        )
        .await;
        let params = ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: message(&ask.tool, principal.id(), &ask.shown, digest),
            requested_schema: ElicitationSchema::new(Default::default()),
        };
        let asked = tokio::select! {
            answer = peer.create_elicitation_with_timeout(params, Some(wait)) => answer,
            () = cancel.cancelled() => return Verdict::Halt { outcome: Outcome::Cancelled, answer: Err(crate::error::cancelled()) },
        };
        let (event, outcome, text) = match asked {
            Ok(result) if result.action == ElicitationAction::Accept => {
                note(
                    audit,
                    principal.id(),
                    &ask.tool,
                    "elicit",
                    "approved",
                    json!({ "digest": digest, "by": principal.id() }),
                )
                .await;
                return Verdict::Approved;
            }
            Ok(result) => (
                "declined",
                Outcome::ApprovalDenied,
                format!(
                    "the call of tool `{}` was not approved (the user chose {}); it did not run",
                    ask.tool,
                    match result.action {
                        ElicitationAction::Cancel => "cancel",
                        _ => "decline",
                    }
                ),
            ),
            Err(rmcp::service::ServiceError::Timeout { .. }) => (
                "expired",
                Outcome::ApprovalExpired,
                format!(
                    "no answer to the approval of tool `{}` within {} s; the call did not run",
                    ask.tool,
                    wait.as_secs()
                ),
            ),
            Err(error) => {
                tracing::warn!(tool = %ask.tool, %error, "approval request to the client failed");
                (
                    "failed",
                    Outcome::ApprovalDenied,
                    format!(
                        "the client did not answer the approval of tool `{}`; the call did not run",
                        ask.tool
                    ),
                )
            }
        };
        note(
            audit,
            principal.id(),
            &ask.tool,
            "elicit",
            event,
            json!({ "digest": digest }),
        )
        .await;
        refuse(outcome, text)
    }

    /// 2026-07-28: ask with an input-required result, or verify the retry's answer.
    async fn elicit_inline(
        &self,
        rule: &Rule,
        ask: Ask,
        principal: &Principal,
        digest: String,
        codec: &rmcp::model::RequestStateCodec,
        audit: Option<&AuditLog>,
    ) -> Verdict {
        let answer = ask
            .input_responses
            .as_ref()
            .and_then(|responses| responses.get(INPUT_KEY));
        let (Some(answer), Some(state)) = (answer, ask.request_state.as_deref()) else {
            let sealed = Sealed {
                d: digest.clone(),
                n: uuid::Uuid::new_v4().simple().to_string(),
                t: now_ms(),
            };
            let options = rmcp::model::SealOptions::new()
                .associated_data(STATE_PURPOSE)
                .ttl(rule.timeout);
            let state = match codec.seal_json_with(&sealed, &options) {
                Ok(state) => state,
                Err(error) => return internal(&ask.tool, "sealing an approval", error),
            };
            let request: InputRequest = match serde_json::from_value(json!({
                "method": "elicitation/create",
                "params": {
                    "mode": "form",
                    "message": message(&ask.tool, principal.id(), &ask.shown, &digest),
                    "requestedSchema": { "type": "object", "properties": {} }
                }
            })) {
                Ok(request) => request,
                Err(error) => return internal(&ask.tool, "building an approval request", error),
            };
            let mut requests = InputRequests::new();
            requests.insert(INPUT_KEY.to_owned(), request);
            note(
                audit,
                principal.id(),
                &ask.tool,
                "elicit",
                "requested",
                json!({ "digest": digest }),
            )
            .await;
            // The call did not run: its record says it waits for approval.
            return Verdict::Halt {
                outcome: Outcome::ApprovalPending,
                answer: Ok(InputRequiredResult::new(Some(requests), Some(state)).into()),
            };
        };
        let tool = ask.tool.as_str();
        let digest_ref = digest.as_str();
        let invalid = |event: &'static str, text: String| {
            refused(audit, principal, tool, "elicit", digest_ref, event, text)
        };
        let opened: Result<Sealed, _> = codec.open_json_with(state, STATE_PURPOSE);
        let sealed = match opened {
            Ok(sealed) => sealed,
            Err(rmcp::model::RequestStateError::Expired) => {
                return invalid(
                    "expired",
                    format!(
                        "the approval of tool `{}` expired; call the tool again to be asked anew",
                        ask.tool
                    ),
                )
                .await;
            }
            Err(error) => {
                tracing::warn!(tool = %ask.tool, %error, "an approval's requestState did not open");
                return invalid(
                    "invalid",
                    format!("the approval's requestState of tool `{}` is not valid (altered, or sealed by another server); call the tool again to be asked anew", ask.tool),
                )
                .await;
            }
        };
        if self.voided(&ask.tool, sealed.t) {
            return invalid(
                "expired",
                format!("the configuration of tool `{}` changed since this approval was asked for; call the tool again to be asked anew", ask.tool),
            )
            .await;
        }
        if sealed.d != digest {
            return invalid(
                "mismatch",
                format!("the approval was given for a different call of tool `{}` (its arguments, caller or configuration differ); call the tool again to be asked for this one", ask.tool),
            )
            .await;
        }
        match self.claim(principal.id(), &sealed.n, rule.timeout).await {
            Ok(true) => {}
            Ok(false) => {
                return invalid(
                    "replayed",
                    format!("this approval of tool `{}` was already used; call the tool again to be asked anew", ask.tool),
                )
                .await;
            }
            Err(()) => {
                return invalid(
                    "unavailable",
                    format!("the approval of tool `{}` cannot be recorded as used now (too many recent approvals, or the shared state is unavailable); try again later", ask.tool),
                )
                .await;
            }
        }
        // Any answer spends the question: a decline cannot be turned into an accept later.
        let action = answer.get("action").and_then(Value::as_str);
        if action != Some("accept") {
            return invalid(
                "declined",
                format!(
                    "the call of tool `{}` was not approved; it did not run",
                    ask.tool
                ),
            )
            .await;
        }
        note(
            audit,
            principal.id(),
            &ask.tool,
            "elicit",
            "approved",
            json!({ "digest": digest, "by": principal.id() }),
        )
        .await;
        Verdict::Approved
    }

    /// Claims a nonce once: in Redis with `[cluster]` (fails closed when it cannot be
    /// reached), else in this process (bounded; full: refused).
    async fn claim(&self, principal: &str, nonce: &str, ttl: Duration) -> Result<bool, ()> {
        let cluster = lock(&self.cluster).clone();
        if let Some(cluster) = cluster {
            return cluster
                .claim_once(&format!("approval:{nonce}"), ttl)
                .await
                .map_err(|error| tracing::warn!(%error, "claiming an approval failed"));
        }
        let now = std::time::Instant::now();
        let mut used = lock(&self.used);
        if used.contains_key(nonce) {
            return Ok(false);
        }
        // One principal's approvals cannot crowd out everyone else's; only the unexpired
        // ones count.
        let mut mine = used.values().filter(|(p, _)| p == principal).count();
        if used.len() >= MAX_USED / 2 || mine >= MAX_USED_PER_PRINCIPAL {
            used.retain(|_, (_, until)| *until > now);
            mine = used.values().filter(|(p, _)| p == principal).count();
        }
        if used.len() >= MAX_USED || mine >= MAX_USED_PER_PRINCIPAL {
            tracing::warn!(
                principal,
                "too many approvals remembered as used; refusing another"
            );
            return Err(());
        }
        used.insert(nonce.to_owned(), (principal.to_owned(), now + ttl));
        Ok(true)
    }

    /// Console: find or open the call's pending approval and wait for a decision.
    #[allow(clippy::too_many_arguments)]
    async fn console(
        self: &Arc<Self>,
        rule: &Rule,
        ask: Ask,
        principal: &Principal,
        digest: String,
        audit: Option<&AuditLog>,
        cancel: &CancellationToken,
        wait: Duration,
    ) -> Verdict {
        self.sweep();
        self.expire(audit).await;
        let opened = {
            let mut pending = lock(&self.pending);
            let existing = pending
                .values()
                .find(|p| {
                    p.digest == digest
                        && matches!(
                            p.state(),
                            State::Waiting | State::Approved { .. } | State::Denied { .. }
                        )
                })
                .cloned();
            match existing {
                Some(entry) => Ok((entry, false)),
                None => {
                    let mine = pending
                        .values()
                        .filter(|p| p.principal == principal.id())
                        .count();
                    if mine >= MAX_PENDING_PER_PRINCIPAL || pending.len() >= MAX_PENDING {
                        Err(mine >= MAX_PENDING_PER_PRINCIPAL)
                    } else {
                        let now = SystemTime::now();
                        let entry = Arc::new(Pending {
                            id: uuid::Uuid::new_v4().simple().to_string(),
                            digest: digest.clone(),
                            principal: principal.id().to_owned(),
                            tool: ask.tool.clone(),
                            summary: summary(&ask.shown),
                            arguments: shown_text(&ask.shown),
                            requested_at: now,
                            expires_at: now + rule.timeout,
                            expires: Instant::now() + rule.timeout,
                            approvers: rule.approvers.clone(),
                            config_digest: rule.config_digest.clone(),
                            state: watch::Sender::new(State::Waiting),
                        });
                        pending.insert(entry.id.clone(), Arc::clone(&entry));
                        Ok((entry, true))
                    }
                }
            }
        };
        let entry = match opened {
            Ok((entry, new)) => {
                if new {
                    note(
                        audit,
                        principal.id(),
                        &ask.tool,
                        "console",
                        "requested",
                        json!({ "id": entry.id, "digest": digest }),
                    )
                    .await;
                }
                entry
            }
            Err(per_principal) => {
                count("console", "full");
                return Verdict::Halt {
                    outcome: Outcome::RateLimited,
                    answer: Err(if per_principal {
                        crate::error::over_cap(
                            "pending approvals for this principal",
                            "approval (per principal)",
                            MAX_PENDING_PER_PRINCIPAL,
                        )
                    } else {
                        crate::error::over_cap(
                            "pending approvals",
                            "approval (per server)",
                            MAX_PENDING,
                        )
                    }),
                };
            }
        };
        let mut states = entry.state.subscribe();
        // Never past the approval's own expiry (a call may join one that is about to end).
        let until = (Instant::now() + wait).min(entry.expires);
        loop {
            let state = states.borrow_and_update().clone();
            match state {
                State::Approved { .. } => {
                    // Single use: only one call takes an approval.
                    let took = entry.state.send_if_modified(|s| {
                        if matches!(s, State::Approved { .. }) {
                            *s = State::Used;
                            true
                        } else {
                            false
                        }
                    });
                    if took {
                        self.remove(&entry.id);
                        count("console", "used");
                        return Verdict::Approved;
                    }
                }
                State::Denied { .. } => {
                    self.remove(&entry.id);
                    return refuse(
                        Outcome::ApprovalDenied,
                        format!(
                            "the call of tool `{}` was denied by an approver (approval {}); it did not run",
                            ask.tool, entry.id
                        ),
                    );
                }
                State::Expired => {
                    return refuse(
                        Outcome::ApprovalExpired,
                        format!(
                            "the approval {} of tool `{}` expired; call the tool again to ask anew",
                            entry.id, ask.tool
                        ),
                    );
                }
                State::Used => {
                    return refuse(
                        Outcome::ApprovalDenied,
                        format!(
                            "approval {} of tool `{}` was used by another call with the same arguments; call again to ask anew",
                            entry.id, ask.tool
                        ),
                    );
                }
                State::Waiting => {}
            }
            tokio::select! {
                changed = states.changed() => if changed.is_err() { break },
                () = tokio::time::sleep_until(until) => break,
                () = cancel.cancelled() => {
                    return Verdict::Halt { outcome: Outcome::Cancelled, answer: Err(crate::error::cancelled()) };
                }
            }
        }
        refuse(
            Outcome::ApprovalPending,
            format!(
                "tool `{}` needs approval in the console: approval {} is pending (until {}). Call the tool again with the same arguments once it is approved; it then runs once.",
                ask.tool,
                entry.id,
                humantime::format_rfc3339_seconds(entry.expires_at)
            ),
        )
    }

    fn remove(&self, id: &str) {
        lock(&self.pending).remove(id);
    }

    /// Marks pending approvals past their time expired (recorded), and forgets them.
    pub(crate) async fn expire(&self, audit: Option<&AuditLog>) {
        let now = Instant::now();
        let expired: Vec<Arc<Pending>> = {
            let mut pending = lock(&self.pending);
            let gone: Vec<String> = pending
                .values()
                .filter(|p| p.expires <= now)
                .map(|p| p.id.clone())
                .collect();
            gone.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for entry in expired {
            if entry.expire() {
                entry.note_expired(audit, false).await;
            }
        }
    }

    /// The pending approvals `viewer` may decide, or asked for itself, oldest first.
    pub async fn visible(&self, viewer: &Principal, audit: Option<&AuditLog>) -> Vec<Arc<Pending>> {
        self.expire(audit).await;
        let pending = lock(&self.pending);
        let mut out: Vec<Arc<Pending>> = pending
            .values()
            .filter(|p| p.state() == State::Waiting || matches!(p.state(), State::Approved { .. }))
            .filter(|p| p.may_decide(viewer) || p.principal == viewer.id())
            .cloned()
            .collect();
        out.sort_by_key(|p| p.requested_at);
        out
    }

    /// An approver's decision on pending approval `id`.
    /// `current` tells the tool's configuration digest served now: an approval requested
    /// under another (a reload changed the tool, its rule or its approvers) is not decided
    /// but expired.
    pub async fn decide_pending(
        &self,
        id: &str,
        approver: &Principal,
        approve: bool,
        audit: Option<&AuditLog>,
        current: impl Fn(&str) -> Option<String>,
    ) -> Result<Arc<Pending>, DecideError> {
        self.expire(audit).await;
        let entry = lock(&self.pending)
            .get(id)
            .cloned()
            .ok_or(DecideError::NotFound)?;
        if !entry.may_decide(approver) {
            // Someone who may neither decide nor see it learns nothing of it.
            return Err(if entry.principal == approver.id() {
                DecideError::NotAllowed
            } else {
                DecideError::NotFound
            });
        }
        if current(&entry.tool).as_deref() != Some(entry.config_digest.as_str()) {
            let expired = entry.expire();
            self.remove(&entry.id);
            if expired {
                entry.note_expired(audit, true).await;
            }
            return Err(DecideError::Changed);
        }
        let by = approver.id().to_owned();
        let next = if approve {
            State::Approved { by: by.clone() }
        } else {
            State::Denied { by: by.clone() }
        };
        let mut previous = "pending";
        let decided = entry.state.send_if_modified(|s| {
            if *s == State::Waiting {
                *s = next.clone();
                true
            } else {
                previous = s.as_str();
                false
            }
        });
        if !decided {
            return Err(DecideError::Decided(previous));
        }
        let event = if approve { "approved" } else { "denied" };
        note(
            audit,
            &by,
            &entry.tool,
            "console",
            event,
            json!({ "id": entry.id, "digest": entry.digest, "requested_by": entry.principal }),
        )
        .await;
        // A denial stays until the call (waiting, or repeated) is told of it; then the same
        // call asked again opens a new request.
        Ok(entry)
    }
}

/// The elicitation's message: the tool, the caller, the whole arguments for people (cut at
/// 4000 characters, saying so), the digest.
fn message(tool: &str, principal: &str, shown: &Value, digest: &str) -> String {
    let mut arguments = shown_text(shown);
    let count = arguments.chars().count();
    if count > 4000 {
        arguments = arguments.chars().take(4000).collect::<String>()
            + &format!(
                "\n…(cut: {} more characters not shown; decline a call you cannot read whole)",
                count - 4000
            );
    }
    format!(
        "Approve this call of tool `{tool}` by {principal}?\nArguments:\n{arguments}\nCall digest: {}",
        &digest[..16.min(digest.len())]
    )
}

/// An internal failure of the approval step: logged with a reference, the client told only
/// the reference (the core's one wording of internal errors).
fn internal(tool: &str, context: &str, error: impl Into<portcullis_core::BoxError>) -> Verdict {
    Verdict::Halt {
        outcome: Outcome::InternalError,
        answer: portcullis_core::error::tool_error_result(
            tool,
            portcullis_core::ToolError::internal(context, error),
        )
        .map(Into::into),
    }
}

/// A 2026-07-28 round that does not approve the call: recorded, counted, refused.
async fn refused(
    audit: Option<&AuditLog>,
    principal: &Principal,
    tool: &str,
    mode: &'static str,
    digest: &str,
    event: &'static str,
    text: String,
) -> Verdict {
    note(
        audit,
        principal.id(),
        tool,
        mode,
        event,
        json!({ "digest": digest }),
    )
    .await;
    refuse(Outcome::ApprovalDenied, text)
}

/// One step of the approval flow, by `who`: counted
/// (`portcullis_approvals_total{mode, event}`) and an audit record of its own
/// (`approval/request` for `requested`, else `approval/decision`), `details` with the mode.
async fn note(
    audit: Option<&AuditLog>,
    who: &str,
    tool: &str,
    mode: &'static str,
    event: &'static str,
    mut details: Value,
) {
    count(mode, event);
    let Some(audit) = audit else {
        return;
    };
    let (method, decision) = match event {
        "requested" => ("approval/request", "pending"),
        _ => ("approval/decision", event),
    };
    if let Some(details) = details.as_object_mut() {
        details.insert("mode".to_owned(), Value::String(mode.to_owned()));
    }
    let event = Event::by_server(who, method.to_owned(), tool, decision, event, details);
    audit.record(event, true).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(mode: ApprovalMode, approvers: Option<Vec<String>>) -> Rule {
        let tool = rmcp::model::Tool::new("rm", "removes", Arc::new(JsonObject::new()));
        Rule::new(mode, Duration::from_secs(60), approvers, &tool, &[], "g1")
    }

    fn args(value: Value) -> JsonObject {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn a_digest_binds_principal_tool_arguments_and_configuration() {
        let r = rule(ApprovalMode::Console, None);
        let base = call_digest("key:alice", "rm", &args(json!({"path": "a", "n": 1})), &r);
        assert_eq!(
            base,
            call_digest("key:alice", "rm", &args(json!({"n": 1, "path": "a"})), &r)
        );
        assert_ne!(
            base,
            call_digest("key:bob", "rm", &args(json!({"path": "a", "n": 1})), &r)
        );
        assert_ne!(
            base,
            call_digest(
                "key:alice",
                "rmdir",
                &args(json!({"path": "a", "n": 1})),
                &r
            )
        );
        assert_ne!(
            base,
            call_digest("key:alice", "rm", &args(json!({"path": "a ", "n": 1})), &r)
        );
        assert_ne!(
            base,
            call_digest("key:alice", "rm", &args(json!({"path": "a", "n": 1.0})), &r)
        );
        let tool = rmcp::model::Tool::new("rm", "removes", Arc::new(JsonObject::new()));
        let reloaded = Rule::new(
            ApprovalMode::Console,
            Duration::from_secs(60),
            None,
            &tool,
            &[],
            "g2",
        );
        assert_ne!(
            base,
            call_digest(
                "key:alice",
                "rm",
                &args(json!({"path": "a", "n": 1})),
                &reloaded
            ),
            "another config generation"
        );
        let other = rule(ApprovalMode::Console, Some(vec!["key:boss".to_owned()]));
        assert_ne!(
            base,
            call_digest(
                "key:alice",
                "rm",
                &args(json!({"path": "a", "n": 1})),
                &other
            )
        );
    }

    #[tokio::test]
    async fn used_approvals_are_capped_per_principal_and_expired_ones_do_not_count() {
        let approvals = Approvals::default();
        let ttl = Duration::from_secs(60);
        for i in 0..MAX_USED_PER_PRINCIPAL {
            assert_eq!(
                approvals.claim("key:a", &format!("a{i}"), ttl).await,
                Ok(true)
            );
        }
        assert_eq!(
            approvals.claim("key:a", "over", ttl).await,
            Err(()),
            "at the cap"
        );
        assert_eq!(
            approvals.claim("key:b", "b0", ttl).await,
            Ok(true),
            "another principal"
        );
        assert_eq!(
            approvals.claim("key:a", "a0", ttl).await,
            Ok(false),
            "still used once"
        );
        for i in 0..MAX_USED_PER_PRINCIPAL {
            assert_eq!(
                approvals
                    .claim("key:c", &format!("c{i}"), Duration::from_millis(1))
                    .await,
                Ok(true)
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(
            approvals.claim("key:c", "after", ttl).await,
            Ok(true),
            "expired ones left"
        );
    }

    #[test]
    fn an_approver_entry_is_an_id_or_a_scope_never_both() {
        let pending = |approvers: &[&str]| Pending {
            id: "p".into(),
            digest: "d".into(),
            principal: "key:alice".into(),
            tool: "rm".into(),
            summary: String::new(),
            arguments: String::new(),
            requested_at: SystemTime::now(),
            expires_at: SystemTime::now(),
            expires: Instant::now(),
            approvers: approvers.iter().map(|a| (*a).to_owned()).collect(),
            config_digest: String::new(),
            state: watch::Sender::new(State::Waiting),
        };
        let holder = |id: &str, scopes: &[&str]| {
            Principal::new(
                id,
                scopes.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            )
        };
        let by_id = pending(&["key:boss"]);
        assert!(by_id.may_decide(&holder("key:boss", &[])));
        assert!(
            !by_id.may_decide(&holder("key:mallory", &["key:boss"])),
            "a scope spelled like an id"
        );
        let by_scope = pending(&["approve"]);
        assert!(by_scope.may_decide(&holder("key:boss", &["approve"])));
        assert!(
            !by_scope.may_decide(&holder("key:alice", &["approve"])),
            "never one's own call"
        );
        assert!(
            pending(&["key:alice"]).may_decide(&holder("key:alice", &[])),
            "unless named"
        );
    }

    #[test]
    fn a_summary_is_bounded_and_shows_no_control_characters() {
        let long = "x".repeat(500);
        let text = summary(&json!({ "path": "a\nb", "body": long }));
        assert!(text.contains("path = \"a\\nb\""), "{text}");
        assert!(text.len() < 300, "{text}");
        let many: serde_json::Map<String, Value> =
            (0..30).map(|i| (format!("k{i:02}"), json!(i))).collect();
        assert!(summary(&Value::Object(many)).ends_with("… (+10 more arguments)"));
        assert!(text.contains("…(+"), "a cut says so: {text}");
        // A right-to-left override cannot make `txt.exe` read as `exe.txt`.
        let tricky = summary(&json!({ "path": "a\u{202E}txt.exe" }));
        assert!(!tricky.contains('\u{202E}'), "{tricky}");
        let whole = shown_text(&json!({ "body": "y".repeat(100_000) }));
        assert!(whole.len() < 70_000 && whole.contains("more bytes not shown"));
    }
}
