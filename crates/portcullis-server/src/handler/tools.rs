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
        let name = request.name.to_string();
        let origin = guard::Origin::of(&context);
        if inner.catalog.tool(&name).is_none() {
            let guard = &inner.guard;
            if let Some(withheld) = inner.catalog.withheld_item("tool", &name) {
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
        }
        // A task when the tool may run as one and the client declared the extension in
        // this request's `_meta`: the extension is built on 2026-07-28 (`resultType`,
        // input-required rounds, `Mcp-Method` headers), so a 2025-era session never gets a
        // task, whatever its `initialize` said.
        let tasks = Arc::clone(&inner.guard.tasks);
        let support = inner.guard.policies.task_support(&inner.catalog, &name);
        let declared = context.meta.protocol_version().is_some()
            && context
                .client_capabilities()
                .is_some_and(|c| c.supports_tasks());
        let task_refused = tasks.enabled() && support == crate::TaskSupport::Required && !declared;
        let as_task = tasks.enabled() && support != crate::TaskSupport::Never && declared;
        let arguments = request.arguments.unwrap_or_default();
        let request_cancel = context.ct.clone();
        let (call_context, cancel) = CallContext::new(
            context,
            self.session_log_level(),
            principal.clone(),
            Arc::new(CallerReads {
                inner: Arc::clone(&inner),
                principal: principal.clone(),
                origin: origin.clone(),
            }),
        );
        let parts = CallParts {
            inner,
            name,
            arguments,
            principal,
            origin,
            input_responses: request.input_responses,
            request_state: request.request_state,
            task_refused,
        };
        let owner = parts.principal.as_ref().map(|p| p.id().to_owned());
        // The call's future is large (the whole pipeline and the pack's work): boxed once,
        // so what moves it from here on (the tracker, a task, `select!`) moves a pointer.
        let (true, Some(owner)) = (as_task, owner) else {
            let call = Box::pin(run_call(parts, call_context, cancel, None));
            return self.shared.in_flight.track_future(call).await;
        };
        let record = match tasks
            .reserve(&owner, &parts.name, &parts.arguments, &self.replica())
            .await
        {
            Ok(record) => record,
            Err(refused) => {
                // Refused before the pipeline (no place for the task): logged and audited
                // as such.
                parts
                    .inner
                    .guard
                    .refused_as(
                        "tools/call",
                        &parts.name,
                        parts.principal.as_ref(),
                        Outcome::RateLimited,
                        parts.origin.clone(),
                    )
                    .await;
                return Err(refused);
            }
        };
        // From here the call answers to its task's token, not the request's.
        let task_cancel = tokio_util::sync::CancellationToken::new();
        let call_context = call_context.cancelled_by(task_cancel.clone());
        let (started, mut start) = tokio::sync::oneshot::channel();
        let handoff = Handoff {
            started,
            by_tool: parts
                .inner
                .catalog
                .tool(&parts.name)
                .is_some_and(|t| t.tool.starts_task_itself()),
        };
        let call = Box::pin(run_call(
            parts,
            call_context,
            task_cancel.clone(),
            Some(handoff),
        ));
        let mut call = tokio::spawn(self.shared.in_flight.track_future(call));
        // Should this request be dropped before it answers (its connection gone), the call
        // it started stops and its reserved task is forgotten: nothing runs unseen.
        let mut unanswered = Unanswered {
            tasks: Some((Arc::clone(&tasks), record.clone())),
            cancel: task_cancel.clone(),
        };
        let joined =
            |joined: Result<Result<CallToolResponse, ErrorData>, tokio::task::JoinError>| {
                joined.unwrap_or_else(|error| {
                    tracing::error!(%error, "a task's call ended abnormally");
                    Err(crate::error::internal("the call ended abnormally"))
                })
            };
        // Answered in the request until the tool starts: a refusal, an invalid argument, an
        // approval to ask for, a tool's first rounds.
        let answer = loop {
            tokio::select! {
                // The start first: a tool that starts and ends at once is still a task.
                biased;
                started = &mut start => {
                    if started.is_ok() {
                        let cancelled = request_cancel.is_cancelled();
                        let owner = record.owner.clone();
                        tasks.follow(record.id.clone(), record.expires_ms, task_cancel, async move {
                            joined(call.await)
                        });
                        // The client gave up as the tool started: it will never hear of the
                        // task, so the task is cancelled, not left running unseen.
                        unanswered.tasks = None;
                        if cancelled {
                            let _ = tasks.cancel(&record.id, &owner).await;
                        }
                        return Ok(tasks.created(&record));
                    }
                    break joined((&mut call).await);
                }
                answer = &mut call => break joined(answer),
                () = request_cancel.cancelled(), if !task_cancel.is_cancelled() => task_cancel.cancel(),
            }
        };
        unanswered.tasks = None;
        tasks.release(&record).await;
        answer
    }

    /// `tasks/update` gave every answer a task waited for: its next round runs, as a call
    /// of the task's principal like the first, and stores its outcome in the task.
    pub(super) fn resume_task(
        &self,
        record: crate::tasks::Record,
        context: RequestContext<RoleServer>,
    ) {
        let inner = self.inner();
        let principal = self.principal(&context);
        let origin = guard::Origin::of(&context);
        let task_cancel = tokio_util::sync::CancellationToken::new();
        let (call_context, _) = CallContext::new(
            context,
            self.session_log_level(),
            principal.clone(),
            Arc::new(CallerReads {
                inner: Arc::clone(&inner),
                principal: principal.clone(),
                origin: origin.clone(),
            }),
        );
        let call_context = call_context.cancelled_by(task_cancel.clone());
        let tasks = Arc::clone(&inner.guard.tasks);
        let parts = CallParts {
            inner,
            name: record.tool,
            arguments: record.arguments,
            principal,
            origin,
            input_responses: Some(record.answers),
            request_state: record.request_state,
            task_refused: false,
        };
        let call = Box::pin(run_call(parts, call_context, task_cancel.clone(), None));
        tasks.follow(
            record.id,
            record.expires_ms,
            task_cancel,
            self.shared.in_flight.track_future(call),
        );
    }

    /// This replica's name (the cluster's, else the host's).
    pub(super) fn replica(&self) -> String {
        self.shared
            .cluster
            .get()
            .map_or_else(crate::host_name, |c| c.replica().to_owned())
    }
}

/// What one tool call is made of, owned (a call that runs as a task outlives its request).
struct CallParts {
    inner: Arc<Inner>,
    name: String,
    arguments: rmcp::model::JsonObject,
    principal: Option<Principal>,
    origin: guard::Origin,
    input_responses: Option<rmcp::model::InputResponses>,
    request_state: Option<String>,
    /// The tool runs only as a task and the client did not declare the extension.
    task_refused: bool,
}

/// A task's request that has not answered yet; dropped so, it stops the call and forgets
/// the reserved task.
struct Unanswered {
    tasks: Option<(Arc<crate::tasks::Tasks>, crate::tasks::Record)>,
    cancel: tokio_util::sync::CancellationToken,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some((tasks, record)) = self.tasks.take() {
            self.cancel.cancel();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move { tasks.release(&record).await });
            }
        }
    }
}

/// How a call that runs as a task tells its request that the task began.
struct Handoff {
    started: tokio::sync::oneshot::Sender<()>,
    /// The tool says when ([`crate::Tool::starts_task_itself`]); else when it starts.
    by_tool: bool,
}

/// One tool call through the guard pipeline, to its answer.
async fn run_call(
    parts: CallParts,
    call_context: CallContext,
    cancel: tokio_util::sync::CancellationToken,
    handoff: Option<Handoff>,
) -> Result<CallToolResponse, ErrorData> {
    let CallParts {
        inner,
        name,
        arguments,
        principal,
        origin,
        input_responses,
        request_state,
        task_refused,
    } = parts;
    let catalog = &inner.catalog;
    let guard = &inner.guard;
    let Some(entry) = catalog.tool(&name) else {
        return Err(crate::error::unknown_tool(&name));
    };
    let logged = Request {
        method: "tools/call",
        target: Target::Tool(&name),
        item: &name,
        what: format!("`{name}`"),
        principal: principal.clone(),
        arguments: guard.tool_arguments(&entry.definition, &arguments),
        origin,
        ask: None,
    };
    let (mut input_responses, mut request_state) = (input_responses, request_state);
    // A tool under approval: the call's part in it (its answers and state are the
    // approval's, never the tool's).
    let ask = guard.policies.tool(&name).approval.as_ref().map(|_| {
        let inline = call_context.meta().protocol_version().is_some();
        crate::approval::Ask {
            tool: name.clone(),
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
    let check = || {
        if task_refused {
            return Err(Box::new(Err(crate::error::task_required())));
        }
        validate::tool_arguments(entry, arguments, declared.flatten().as_ref())
    };
    guard
        .run_checked(
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
                // A call that runs as a task becomes one now, or when the tool says.
                let task = match handoff {
                    Some(handoff) if handoff.by_tool => {
                        Some(portcullis_core::TaskStart::new(handoff.started))
                    }
                    Some(handoff) => {
                        let _ = handoff.started.send(());
                        None
                    }
                    None => None,
                };
                let call = ToolCall {
                    arguments,
                    cancel,
                    deadline,
                    context: call_context,
                    input_responses,
                    request_state,
                    task,
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
        )
        .await
}
