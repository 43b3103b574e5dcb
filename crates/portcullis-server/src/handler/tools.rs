//! `tools/list` and `tools/call`: the call goes through the guard with its validation, and
//! the tool reads resources as its caller (`CallerReads`).

#![allow(
    deprecated,
    reason = "MCP logging and resources/subscribe are deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use super::*;

/// Reads resources for one tool call, as its caller (see [`CallContext::read_resource`]):
/// the config the call started on, its principal, its origin (so its reads are recorded as
/// part of it).
pub(super) struct CallerReads {
    inner: Arc<Inner>,
    principal: Option<Principal>,
    origin: guard::Origin,
}

impl std::fmt::Debug for CallerReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerReads")
            .field("principal", &self.principal)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl portcullis_core::ReadResource for CallerReads {
    fn request_state(&self) -> &rmcp::model::RequestStateCodec {
        &self.inner.guard.request_state
    }

    async fn read(
        &self,
        uri: &str,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.inner
            .read_resource(
                uri.to_owned(),
                self.principal.clone(),
                cancel,
                self.origin.clone(),
            )
            .await
    }
}

impl PortcullisHandler {
    pub(super) async fn tools_list(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let inner = self.inner();
        let tools = inner.catalog.tools();
        let policies = &inner.guard.policies;
        if !policies.hide_unauthorized {
            return Ok(ListToolsResult::with_all_items(tools.to_vec()));
        }
        let principal = self.principal(&context);
        let visible = tools
            .iter()
            .filter(|t| Self::visible(&inner, principal.as_ref(), &policies.tool(&t.name).scopes))
            .cloned()
            .collect();
        Ok(ListToolsResult::with_all_items(visible))
    }

    pub(super) async fn tools_call(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let name = request.name;
        let catalog = &inner.catalog;
        let guard = &inner.guard;
        let origin = guard::Origin::of(&context);
        let Some(entry) = catalog.tool(&name) else {
            if let Some(withheld) = catalog.withheld_item("tool", &name) {
                guard
                    .refused_as(
                        "tools/call",
                        &name,
                        principal.as_ref(),
                        Outcome::Withheld,
                        origin,
                    )
                    .await;
                return Err(crate::error::withheld(withheld));
            }
            guard
                .refused_unknown("tools/call", &name, principal.as_ref(), origin)
                .await;
            return Err(crate::error::unknown_tool(&name));
        };
        let arguments = request.arguments.unwrap_or_default();
        let logged = Request {
            method: "tools/call",
            target: Target::Tool(&name),
            item: &name,
            what: format!("`{name}`"),
            principal: principal.clone(),
            arguments: guard.tool_arguments(&entry.definition, &arguments),
            origin: origin.clone(),
            ask: None,
        };
        let (call_context, cancel) = CallContext::new(
            context,
            self.session_log_level(),
            principal.clone(),
            Arc::new(CallerReads {
                inner: Arc::clone(&inner),
                principal,
                origin,
            }),
        );
        let (mut input_responses, mut request_state) =
            (request.input_responses, request.request_state);
        // A tool under approval: the call's part in it (its answers and state are the
        // approval's, never the tool's).
        let ask = guard.policies.tool(&name).approval.as_ref().map(|_| {
            let inline = call_context.meta().protocol_version().is_some();
            crate::approval::Ask {
                tool: name.to_string(),
                arguments: arguments.clone(),
                shown: crate::approval::shown(&entry.definition.input_schema, &arguments),
                peer: (!inline).then(|| call_context.peer().clone()),
                // Forms: declared, or the 2025-06 `elicitation: {}` (forms only then).
                elicitation: call_context
                    .client_capabilities()
                    .and_then(|c| c.elicitation.as_ref())
                    .is_some_and(|e| e.form.is_some() || e.url.is_none()),
                input_responses: input_responses.take(),
                request_state: request_state.take(),
                resume: Arc::default(),
            }
        });
        // Once approved, what the tool gets of this round and what seals its next.
        let resume = ask.as_ref().map(|ask| Arc::clone(&ask.resume));
        let codec = &guard.request_state;
        let logged = Request { ask, ..logged };
        let name: &str = &name;
        // What the client declared, read only for a tool that requires something of it.
        let declared = entry
            .required_capabilities
            .as_ref()
            .map(|_| call_context.client_capabilities().cloned());
        let check = || validate::tool_arguments(entry, arguments, declared.flatten().as_ref());
        let call = guard.run_checked(
            catalog,
            logged,
            cancel,
            check,
            |arguments, cancel, deadline| async move {
                let (input_responses, request_state, sealer) = match resume {
                    Some(slot) => {
                        let resume = slot
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .take()
                            .unwrap_or_default();
                        (resume.input_responses, resume.request_state, resume.sealer)
                    }
                    None => (input_responses, request_state, None),
                };
                let call = ToolCall {
                    arguments,
                    cancel,
                    deadline,
                    context: call_context,
                    input_responses,
                    request_state,
                };
                // The second level of a trace: the tool's own work (no span when traces are off).
                let tool_span = crate::traces::tool_span(name);
                let (result, outcome) =
                    match entry.tool.call(call).instrument(tool_span.clone()).await {
                        Ok(response) => {
                            let outcome = match &response {
                                CallToolResponse::Complete(result)
                                    if result.is_error == Some(true) =>
                                {
                                    Outcome::ToolError
                                }
                                CallToolResponse::InputRequired(_) => Outcome::InputRequired,
                                _ => Outcome::Ok,
                            };
                            (Ok(response), outcome)
                        }
                        Err(error) => {
                            let outcome = match error {
                                ToolError::Internal { .. } => Outcome::InternalError,
                                _ => Outcome::ToolError,
                            };
                            (tool_error_result(name, error).map(Into::into), outcome)
                        }
                    };
                if !matches!(outcome, Outcome::Ok | Outcome::InputRequired) {
                    crate::traces::tool_failed(&tool_span, outcome);
                }
                // An approved call whose tool asks for input: its next round carries the
                // tool's state inside ours, bound to this call, and needs no new approval.
                let result = match (result, sealer) {
                    (Ok(CallToolResponse::InputRequired(mut asked)), Some(sealer)) => {
                        match sealer.seal(codec, asked.request_state.take()) {
                            Ok(state) => {
                                asked.request_state = Some(state);
                                Ok(CallToolResponse::InputRequired(asked))
                            }
                            Err(error) => tool_error_result(
                                name,
                                ToolError::internal("sealing a round of an approved call", error),
                            )
                            .map(Into::into),
                        }
                    }
                    (result, _) => result,
                };
                (result, outcome)
            },
        );
        self.shared.in_flight.track_future(call).await
    }
}
