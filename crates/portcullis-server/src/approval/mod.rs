//! Human approval of a tool call, bound to the exact call: a digest of (principal, tool,
//! canonical arguments, the tool's configuration) and an expiry, used once. The guard asks
//! [`Approvals::decide`] after validation and before the call's audit intent; nothing the
//! model sends (an argument named `confirm`, anything in the arguments) counts.
//!
//! - **elicit**, 2025 session: `elicitation/create` to the calling client, waited for.
//! - **elicit**, 2026-07-28: an input-required result whose `requestState` is sealed with
//!   the server's codec (`cluster.state_keys`, so any replica opens it) and carries the
//!   digest and a nonce; the retry is verified (opens, same digest, accepted) and the nonce
//!   claimed once (in Redis with `[cluster]`, else in this process) before anything runs.
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
    /// The digest of the tool's configuration as served (its definition and this rule):
    /// a reload that changes either voids approvals given before it.
    pub(crate) config_digest: String,
}

impl Rule {
    pub(crate) fn new(
        mode: ApprovalMode,
        timeout: Duration,
        approvers: Option<Vec<String>>,
        definition: &rmcp::model::Tool,
        scopes: &[String],
    ) -> Self {
        let approvers = approvers.unwrap_or_else(|| vec![APPROVE_SCOPE.to_owned()]);
        let config_digest = portcullis_core::digest::canonical_digest(&json!({
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
    pub arguments: Value,
    pub requested_at: SystemTime,
    pub expires_at: SystemTime,
    expires: Instant,
    approvers: Vec<String>,
    state: watch::Sender<State>,
}

impl Pending {
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Whether `principal` may decide it: holds one of the approver scopes, or is named by
    /// id. A principal never decides its own call unless it is named by id.
    pub fn may_decide(&self, principal: &Principal) -> bool {
        let named = self.approvers.iter().any(|a| a == principal.id());
        if named {
            return true;
        }
        principal.id() != self.principal
            && self
                .approvers
                .iter()
                .any(|scope| principal.missing(std::slice::from_ref(scope)).is_empty())
    }
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
}

/// The approvals of this process: the console's queue and the used 2026-07-28 nonces.
/// Kept across reloads.
#[derive(Default)]
pub struct Approvals {
    pending: Mutex<HashMap<String, Arc<Pending>>>,
    used: Mutex<HashMap<String, std::time::Instant>>,
    cluster: Mutex<Option<Arc<crate::cluster::Cluster>>>,
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
/// value cut to 120 characters, control characters shown as spaces).
pub(crate) fn summary(shown: &Value) -> String {
    let Some(object) = shown.as_object() else {
        return String::new();
    };
    let mut parts: Vec<String> = object
        .iter()
        .take(20)
        .map(|(k, v)| {
            let mut text = v.to_string();
            if text.chars().count() > 120 {
                text = text.chars().take(119).collect::<String>() + "…";
            }
            let text: String = text
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            format!("{k} = {text}")
        })
        .collect();
    if object.len() > 20 {
        parts.push(format!("… (+{} more)", object.len() - 20));
    }
    if parts.is_empty() {
        "(no arguments)".to_owned()
    } else {
        parts.join(", ")
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    /// The call's digest.
    d: String,
    /// Used once.
    n: String,
}

impl Approvals {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Claims used nonces in Redis, for every replica.
    pub(crate) fn share(&self, cluster: &Arc<crate::cluster::Cluster>) {
        *self
            .cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(cluster));
    }

    /// Decides whether the call described by `ask` may run. `wait_until` bounds any wait
    /// (the earlier of the approval timeout and the call's own timeout).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn decide(
        &self,
        rule: &Rule,
        ask: Ask,
        principal: &Principal,
        codec: &rmcp::model::RequestStateCodec,
        audit: Option<&AuditLog>,
        cancel: &CancellationToken,
        call_timeout: Duration,
    ) -> Verdict {
        let digest = call_digest(principal.id(), &ask.tool, &ask.arguments, rule);
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
        record(
            audit,
            principal.id(),
            &ask.tool,
            "approval/request",
            "pending",
            "requested",
            json!({ "mode": "elicit", "digest": digest }),
        )
        .await;
        count("elicit", "requested");
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
                record(
                    audit,
                    principal.id(),
                    &ask.tool,
                    "approval/decision",
                    "approved",
                    "approved",
                    json!({ "mode": "elicit", "digest": digest, "by": principal.id() }),
                )
                .await;
                count("elicit", "approved");
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
        record(
            audit,
            principal.id(),
            &ask.tool,
            "approval/decision",
            event,
            event,
            json!({ "mode": "elicit", "digest": digest }),
        )
        .await;
        count("elicit", event);
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
            };
            let options = rmcp::model::SealOptions::new()
                .associated_data(STATE_PURPOSE)
                .ttl(rule.timeout);
            let state = match codec.seal_json_with(&sealed, &options) {
                Ok(state) => state,
                Err(error) => {
                    let message = portcullis_core::error::describe_internal(&error);
                    let reference = portcullis_core::error::new_reference();
                    tracing::error!(reference, error = %message, "sealing an approval failed");
                    return Verdict::Halt {
                        outcome: Outcome::InternalError,
                        answer: Ok(CallToolResult::error(vec![ContentBlock::text(
                            portcullis_core::error::internal_message(&reference),
                        )])
                        .into()),
                    };
                }
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
                Err(error) => {
                    tracing::error!(%error, "building an approval request failed");
                    return refuse(Outcome::InternalError, "internal error".to_owned());
                }
            };
            let mut requests = InputRequests::new();
            requests.insert(INPUT_KEY.to_owned(), request);
            record(
                audit,
                principal.id(),
                &ask.tool,
                "approval/request",
                "pending",
                "requested",
                json!({ "mode": "elicit", "digest": digest }),
            )
            .await;
            count("elicit", "requested");
            // The call did not run: its record says it waits for approval.
            return Verdict::Halt {
                outcome: Outcome::ApprovalPending,
                answer: Ok(InputRequiredResult::new(Some(requests), Some(state)).into()),
            };
        };
        let tool = ask.tool.as_str();
        let digest_ref = digest.as_str();
        let invalid = |event: &'static str, text: String| async move {
            record(
                audit,
                principal.id(),
                tool,
                "approval/decision",
                event,
                event,
                json!({ "mode": "elicit", "digest": digest_ref }),
            )
            .await;
            count("elicit", event);
            refuse(Outcome::ApprovalDenied, text)
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
        if sealed.d != digest {
            return invalid(
                "mismatch",
                format!("the approval was given for a different call of tool `{}` (its arguments, caller or configuration differ); call the tool again to be asked for this one", ask.tool),
            )
            .await;
        }
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
        match self.claim(&sealed.n, rule.timeout).await {
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
                    format!("the approval of tool `{}` cannot be checked now (shared state unavailable); try again later", ask.tool),
                )
                .await;
            }
        }
        record(
            audit,
            principal.id(),
            &ask.tool,
            "approval/decision",
            "approved",
            "approved",
            json!({ "mode": "elicit", "digest": digest, "by": principal.id() }),
        )
        .await;
        count("elicit", "approved");
        Verdict::Approved
    }

    /// Claims a nonce once: in Redis with `[cluster]` (fails closed when it cannot be
    /// reached), else in this process (bounded; full: refused).
    async fn claim(&self, nonce: &str, ttl: Duration) -> Result<bool, ()> {
        let cluster = self
            .cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(cluster) = cluster {
            return cluster
                .claim_once(&format!("approval:{nonce}"), ttl)
                .await
                .map_err(|error| tracing::warn!(%error, "claiming an approval failed"));
        }
        let now = std::time::Instant::now();
        let mut used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if used.len() >= MAX_USED {
            used.retain(|_, until| *until > now);
        }
        if used.contains_key(nonce) {
            return Ok(false);
        }
        if used.len() >= MAX_USED {
            return Err(());
        }
        used.insert(nonce.to_owned(), now + ttl);
        Ok(true)
    }

    /// Console: find or open the call's pending approval and wait for a decision.
    #[allow(clippy::too_many_arguments)]
    async fn console(
        &self,
        rule: &Rule,
        ask: Ask,
        principal: &Principal,
        digest: String,
        audit: Option<&AuditLog>,
        cancel: &CancellationToken,
        wait: Duration,
    ) -> Verdict {
        self.expire(audit).await;
        let opened = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
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
                            arguments: ask.shown.clone(),
                            requested_at: now,
                            expires_at: now + rule.timeout,
                            expires: Instant::now() + rule.timeout,
                            approvers: rule.approvers.clone(),
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
                    record(
                        audit,
                        principal.id(),
                        &ask.tool,
                        "approval/request",
                        "pending",
                        "requested",
                        json!({ "mode": "console", "id": entry.id, "digest": digest }),
                    )
                    .await;
                    count("console", "requested");
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
        let until = Instant::now() + wait;
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
                State::Denied { by } => {
                    self.remove(&entry.id);
                    return refuse(
                        Outcome::ApprovalDenied,
                        format!(
                            "the call of tool `{}` was denied by {by} (approval {}); it did not run",
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
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Marks pending approvals past their time expired (recorded), and forgets them.
    pub(crate) async fn expire(&self, audit: Option<&AuditLog>) {
        let now = Instant::now();
        let expired: Vec<Arc<Pending>> = {
            let mut pending = self
                .pending
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let gone: Vec<String> = pending
                .values()
                .filter(|p| p.expires <= now)
                .map(|p| p.id.clone())
                .collect();
            gone.iter().filter_map(|id| pending.remove(id)).collect()
        };
        for entry in expired {
            let was_waiting = entry.state.send_if_modified(|s| {
                if matches!(s, State::Waiting | State::Approved { .. }) {
                    *s = State::Expired;
                    true
                } else {
                    false
                }
            });
            if was_waiting {
                record(audit, "portcullis", &entry.tool, "approval/decision", "expired", "expired", json!({ "mode": "console", "id": entry.id, "digest": entry.digest, "requested_by": entry.principal })).await;
                count("console", "expired");
            }
        }
    }

    /// The pending approvals `viewer` may decide, or asked for itself, oldest first.
    pub async fn visible(&self, viewer: &Principal, audit: Option<&AuditLog>) -> Vec<Arc<Pending>> {
        self.expire(audit).await;
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
    pub async fn decide_pending(
        &self,
        id: &str,
        approver: &Principal,
        approve: bool,
        audit: Option<&AuditLog>,
    ) -> Result<Arc<Pending>, DecideError> {
        self.expire(audit).await;
        let entry = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        record(audit, &by, &entry.tool, "approval/decision", event, event, json!({ "mode": "console", "id": entry.id, "digest": entry.digest, "requested_by": entry.principal })).await;
        count("console", event);
        // A denial stays until the call (waiting, or repeated) is told of it; then the same
        // call asked again opens a new request.
        Ok(entry)
    }
}

/// The elicitation's message: the tool, the caller, the arguments for people, the digest.
fn message(tool: &str, principal: &str, shown: &Value, digest: &str) -> String {
    format!(
        "Approve this call of tool `{tool}` by {principal}?\nArguments: {}\nCall digest: {}",
        summary(shown),
        &digest[..16.min(digest.len())]
    )
}

/// An audit record of the approval flow (not of a request: its own method).
async fn record(
    audit: Option<&AuditLog>,
    principal: &str,
    tool: &str,
    method: &str,
    decision: &'static str,
    outcome: &'static str,
    details: Value,
) {
    let Some(audit) = audit else {
        return;
    };
    let event = Event {
        request_id: None,
        trace_id: None,
        principal: principal.to_owned(),
        issuer: None,
        client_id: None,
        client: None,
        client_ip: None,
        method: method.to_owned(),
        item: tool.to_owned(),
        arg_keys: Vec::new(),
        args_fp: String::new(),
        arguments: Some(details),
        decision,
        outcome,
        duration_ms: 0.0,
    };
    audit.record(event, true).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(mode: ApprovalMode, approvers: Option<Vec<String>>) -> Rule {
        let tool = rmcp::model::Tool::new("rm", "removes", Arc::new(JsonObject::new()));
        Rule::new(mode, Duration::from_secs(60), approvers, &tool, &[])
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

    #[test]
    fn a_summary_is_bounded_and_shows_no_control_characters() {
        let long = "x".repeat(500);
        let text = summary(&json!({ "path": "a\nb", "body": long }));
        assert!(text.contains("path = \"a\\nb\""), "{text}");
        assert!(text.len() < 300, "{text}");
        let many: serde_json::Map<String, Value> =
            (0..30).map(|i| (format!("k{i:02}"), json!(i))).collect();
        assert!(summary(&Value::Object(many)).ends_with("… (+10 more)"));
    }
}
