//! `prompts/list`, `prompts/get` (arguments validated by the guard) and
//! `completion/complete`.

#![allow(
    deprecated,
    reason = "MCP logging and resources/subscribe are deprecated in 2026-07-28 but still served to 2025-era clients"
)]

use super::*;

impl PortcullisHandler {
    pub(super) async fn prompts_list(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let inner = self.inner();
        let policies = &inner.guard.policies;
        let principal = self.principal(&context);
        let visible = inner
            .catalog
            .prompts()
            .iter()
            .filter(|p| Self::visible(&inner, principal.as_ref(), &policies.prompt(&p.name).scopes))
            .cloned()
            .collect();
        Ok(ListPromptsResult::with_all_items(visible))
    }

    pub(super) async fn prompts_get(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let name = request.name;
        let guard = &inner.guard;
        let origin = guard::Origin::of(&context);
        let Some(entry) = inner.catalog.prompt(&name) else {
            if let Some(withheld) = inner.catalog.withheld_item("prompt", &name) {
                guard
                    .refused_as(
                        "prompts/get",
                        &name,
                        principal.as_ref(),
                        Outcome::Withheld,
                        origin,
                    )
                    .await;
                return Err(crate::error::withheld(withheld));
            }
            guard
                .refused_unknown("prompts/get", &name, principal.as_ref(), origin)
                .await;
            return Err(crate::error::unknown_prompt(&name));
        };
        let given = request.arguments.unwrap_or_default();
        let logged = Request {
            method: "prompts/get",
            target: Target::Prompt(&name),
            item: &name,
            what: format!("prompt `{name}`"),
            principal,
            arguments: guard.arguments(&given),
            origin,
            ask: None,
        };
        let call = PromptCall {
            arguments: HashMap::new(),
            input_responses: request.input_responses,
            request_state: request.request_state,
            client_capabilities: context.client_capabilities(),
        };
        let check = || {
            validate::prompt_arguments(&entry.definition, given)
                .map_err(|error| Box::new(Err(prompt_error(&name, error))))
        };
        let get = guard.run_checked(
            &inner.catalog,
            logged,
            context.ct,
            check,
            |arguments, _, _| async {
                match entry
                    .template
                    .render(PromptCall { arguments, ..call })
                    .await
                {
                    Ok(response) => (Ok(response), Outcome::Ok),
                    Err(error) => {
                        let outcome = match error {
                            PromptError::InvalidArguments(_) => Outcome::InvalidArguments,
                            PromptError::Internal { .. } => Outcome::InternalError,
                        };
                        (Err(prompt_error(&name, error)), outcome)
                    }
                }
            },
        );
        self.shared.in_flight.track_future(get).await
    }

    pub(super) async fn completion_complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let inner = self.inner();
        let principal = self.principal(&context);
        let catalog = &inner.catalog;
        let guard = &inner.guard;
        let argument = &request.argument;
        let (target, item) = match &request.r#ref {
            Reference::Prompt(prompt) => (Target::Prompt(&prompt.name), prompt.name.as_str()),
            Reference::Resource(template) => {
                (Target::Template(&template.uri), template.uri.as_str())
            }
            _ => {
                return Err(crate::error::not_completable());
            }
        };
        if guard.policies.scopes_for(catalog, target).is_none() {
            guard
                .refused_unknown(
                    "completion/complete",
                    item,
                    principal.as_ref(),
                    guard::Origin::of(&context),
                )
                .await;
            return Err(crate::error::nothing_to_complete(item));
        }
        let logged = Request {
            method: "completion/complete",
            target,
            item,
            what: match target {
                Target::Prompt(_) => format!("prompt `{item}`"),
                _ => format!("resource template `{item}`"),
            },
            principal,
            arguments: guard.argument(&argument.name, &argument.value),
            origin: guard::Origin::of(&context),
            ask: None,
        };
        guard
            .run(catalog, logged, context.ct, |_, _| async {
                let values = match target {
                    Target::Prompt(name) => catalog
                        .prompt(name)
                        .map(|p| p.template.complete(&argument.name, &argument.value))
                        .unwrap_or_default(),
                    _ => catalog
                        .template_source(item)
                        .map(|s| s.source.complete(item, &argument.name, &argument.value))
                        .unwrap_or_default(),
                };
                let values: Vec<String> = values
                    .into_iter()
                    .take(CompletionInfo::MAX_VALUES)
                    .collect();
                match CompletionInfo::new(values) {
                    Ok(info) => (Ok(CompleteResult::new(info)), Outcome::Ok),
                    Err(message) => (Err(crate::error::internal(message)), Outcome::InternalError),
                }
            })
            .await
    }
}
