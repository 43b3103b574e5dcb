//! Human approval of tool calls (`approval`, `approval_timeout_secs`, `approvers` in
//! `[tools.NAME]` and `[packs.NAME]`) and the web console (`[console]`).

use schemars::JsonSchema;
use serde::Deserialize;

/// How a call of a tool under approval is approved by a human before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ApprovalMode {
    /// The calling client asks its user: `elicitation/create` in a 2025 session, an
    /// input-required result with a sealed `requestState` in 2026-07-28. A client that did
    /// not declare elicitation cannot call the tool.
    Elicit,
    /// An approver approves or denies the call in the console (or its JSON API); the call
    /// waits, and when it stops waiting the same call repeated after approval runs once.
    Console,
    /// `elicit` when the client declared elicitation, else `console`.
    ElicitOrConsole,
}

impl ApprovalMode {
    /// The name as written in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Elicit => "elicit",
            Self::Console => "console",
            Self::ElicitOrConsole => "elicit-or-console",
        }
    }
}

/// Default `approval_timeout_secs`: how long an approval may be asked for, and is valid.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 300;
/// The largest `approval_timeout_secs` (one day).
pub const MAX_APPROVAL_TIMEOUT_SECS: u64 = 86_400;
/// The scope whose holders approve console approvals when `approvers` is not set, and may
/// use the console's approvals, audit and withheld-items API.
pub const APPROVE_SCOPE: &str = "approve";

/// The web console at `/console` on the MCP listener: try tools, read resources, get
/// prompts, approve pending calls, read the audit tail. Off by default.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Serve the console. On a loopback listener without `[auth]` it acts as the local
    /// user; otherwise the operator signs in with an API key or a bearer token and sees
    /// what that principal may see.
    #[serde(default)]
    pub enabled: bool,
}

/// Checks an approval policy at `path` (`tools.NAME` or `packs.NAME`).
pub(crate) fn validate(
    path: &str,
    mode: Option<ApprovalMode>,
    timeout: Option<u64>,
    approvers: Option<&[String]>,
    console: bool,
) -> Result<(), crate::validate::Issue> {
    use crate::validate::issue;
    if matches!(
        mode,
        Some(ApprovalMode::Console | ApprovalMode::ElicitOrConsole)
    ) && !console
    {
        return Err(issue(
            format!("{path}.approval"),
            "console approval needs `[console] enabled = true`: approvers decide in the console (or its API under /console/api/); without it a call could never be approved",
        ));
    }
    if mode.is_none() && (timeout.is_some() || approvers.is_some()) {
        return Err(issue(
            format!("{path}.approval"),
            "`approval_timeout_secs` and `approvers` need `approval = \"elicit\" | \"console\" | \"elicit-or-console\"`",
        ));
    }
    if let Some(secs) = timeout
        && !(1..=MAX_APPROVAL_TIMEOUT_SECS).contains(&secs)
    {
        return Err(issue(
            format!("{path}.approval_timeout_secs"),
            format!("must be between 1 and {MAX_APPROVAL_TIMEOUT_SECS} seconds"),
        ));
    }
    if let Some(approvers) = approvers {
        if mode == Some(ApprovalMode::Elicit) {
            return Err(issue(
                format!("{path}.approvers"),
                "`approval = \"elicit\"` is approved by the caller's own client; `approvers` applies to `console` and `elicit-or-console`",
            ));
        }
        if approvers.is_empty() {
            return Err(issue(
                format!("{path}.approvers"),
                "must name at least one scope or principal (leave it out for holders of the `approve` scope)",
            ));
        }
        for (i, approver) in approvers.iter().enumerate() {
            if approver.trim().is_empty() || approver.chars().any(char::is_whitespace) {
                return Err(issue(
                    format!("{path}.approvers[{i}]"),
                    "must be a scope (`approve`) or a principal id (`key:alice`, `jwt:SUB`, `jwt-client:ID`, `local`), without spaces",
                ));
            }
        }
    }
    Ok(())
}

/// What `portcullis check` warns about approvals in a valid config: console approvals
/// nobody can give, and approvers that name no API key.
pub(crate) fn warnings(config: &crate::Config) -> Vec<String> {
    let mut out = Vec::new();
    let policies = config
        .tools
        .iter()
        .map(|(n, t)| (format!("tools.{n}"), t.approval, t.approvers.as_ref()))
        .chain(
            config
                .packs
                .iter()
                .map(|(n, p)| (format!("packs.{n}"), p.approval, p.approvers.as_ref())),
        );
    for (path, mode, approvers) in policies {
        let Some(mode) = mode else { continue };
        let console = matches!(mode, ApprovalMode::Console | ApprovalMode::ElicitOrConsole);
        let names_local = approvers.is_some_and(|a| a.iter().any(|x| x == "local"));
        if console && !config.auth.is_enabled() && !names_local {
            out.push(format!(
                "{path}.approval: without [auth] every caller is `local`, and a caller never approves its own call: add `approvers = [\"local\"]` to let the console's user approve, or configure [auth]"
            ));
        }
        for key in approvers
            .into_iter()
            .flatten()
            .filter_map(|a| a.strip_prefix("key:"))
        {
            if !config.auth.api_keys.iter().any(|k| k.name == key) {
                out.push(format!(
                    "{path}.approvers: `key:{key}` names no [[auth.api_keys]] entry"
                ));
            }
        }
    }
    out
}
