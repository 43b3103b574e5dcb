//! 2026-07-28 multi-round requests (SEP-2322): tools and a prompt that answer with
//! `input_required`, and an integrity-protected `requestState` (sealed with the server's
//! codec, `CallContext::request_state`: the keys of `cluster.state_keys`, so a round may land
//! on any replica) that the client must echo unchanged.

use async_trait::async_trait;
use portcullis_server::rmcp::model::{
    CallToolResult, ContentBlock, GetPromptResponse, GetPromptResult, InputRequest, InputRequests,
    InputRequiredResult, InputResponses, Prompt, PromptMessage, RequestStateCodec, Role,
    Tool as ToolDef,
};
use portcullis_server::{
    CatalogBuilder, PromptCall, PromptError, PromptTemplate, Tool, ToolCall, ToolError, ToolOutput,
};
use serde_json::{Value, json};

pub fn register(builder: &mut CatalogBuilder) {
    for (name, flow) in [
        ("test_input_required_result_elicitation", Flow::Elicitation),
        ("test_input_required_result_sampling", Flow::Sampling),
        ("test_input_required_result_list_roots", Flow::ListRoots),
        (
            "test_input_required_result_request_state",
            Flow::RequestState,
        ),
        (
            "test_input_required_result_multiple_inputs",
            Flow::MultipleInputs,
        ),
        ("test_input_required_result_multi_round", Flow::MultiRound),
        (
            "test_input_required_result_tampered_state",
            Flow::TamperedState,
        ),
        (
            "test_input_required_result_capabilities",
            Flow::Capabilities,
        ),
    ] {
        builder.tool(InputTool { name, flow });
    }
    builder.prompt(InputPrompt);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Flow {
    Elicitation,
    Sampling,
    ListRoots,
    RequestState,
    MultipleInputs,
    MultiRound,
    TamperedState,
    Capabilities,
}

struct InputTool {
    name: &'static str,
    flow: Flow,
}

fn request(value: Value) -> Result<InputRequest, ToolError> {
    serde_json::from_value(value).map_err(|e| ToolError::internal("building an input request", e))
}

fn elicit(message: &str, field: &str, kind: &str) -> Result<InputRequest, ToolError> {
    request(json!({
        "method": "elicitation/create",
        "params": {
            "message": message,
            "requestedSchema": { "type": "object", "properties": { field: { "type": kind } }, "required": [field] }
        }
    }))
}

fn sample(text: &str, max_tokens: u32) -> Result<InputRequest, ToolError> {
    request(json!({
        "method": "sampling/createMessage",
        "params": { "messages": [{ "role": "user", "content": { "type": "text", "text": text } }], "maxTokens": max_tokens }
    }))
}

fn roots() -> Result<InputRequest, ToolError> {
    request(json!({ "method": "roots/list", "params": {} }))
}

fn ask(requests: Vec<(&str, InputRequest)>, state: Option<String>) -> ToolOutput {
    let requests: InputRequests = requests
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    InputRequiredResult::new(Some(requests), state).into()
}

fn text(message: impl Into<String>) -> ToolOutput {
    CallToolResult::success(vec![ContentBlock::text(message)]).into()
}

/// An accepted elicitation answer's content field, if the response has the right shape.
fn accepted(responses: &InputResponses, key: &str, field: &str) -> Option<String> {
    let response = responses.get(key)?.as_object()?;
    if response.get("action")?.as_str()? != "accept" {
        return None;
    }
    response
        .get("content")?
        .get(field)?
        .as_str()
        .map(str::to_owned)
}

impl InputTool {
    fn seal(&self, codec: &RequestStateCodec, step: &str) -> Result<String, ToolError> {
        codec
            .seal_json(&json!({ "tool": self.name, "step": step }))
            .map_err(|e| ToolError::internal("sealing request state", e))
    }

    /// Opens the echoed state; a missing or tampered one is the client's error.
    fn open(&self, codec: &RequestStateCodec, state: Option<&str>) -> Result<String, ToolError> {
        let state = state.ok_or_else(|| {
            ToolError::InvalidParams(
                "requestState is missing; echo the one the previous round returned".to_owned(),
            )
        })?;
        let value: Value = codec.open_json(state).map_err(|_| {
            ToolError::InvalidParams(
                "requestState failed its integrity check; echo it unchanged".to_owned(),
            )
        })?;
        if value["tool"] != self.name {
            return Err(ToolError::InvalidParams(
                "requestState belongs to another tool".to_owned(),
            ));
        }
        Ok(value["step"].as_str().unwrap_or_default().to_owned())
    }
}

#[async_trait]
impl Tool for InputTool {
    fn definition(&self) -> ToolDef {
        let schema = json!({ "type": "object", "properties": {} });
        ToolDef::new(
            self.name,
            "Asks the client for input before completing (SEP-2322)",
            schema.as_object().cloned().unwrap_or_default(),
        )
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let responses = call.input_responses.clone().unwrap_or_default();
        let state = call.request_state.as_deref();
        let codec = call.context.request_state();
        match self.flow {
            Flow::Elicitation => match accepted(&responses, "user_name", "name") {
                Some(name) => Ok(text(format!("Hello, {name}!"))),
                // Missing, wrong-keyed or malformed answers: ask again.
                None => Ok(ask(
                    vec![("user_name", elicit("What is your name?", "name", "string")?)],
                    None,
                )),
            },
            Flow::Sampling => match responses.get("capital_question") {
                Some(answer) => {
                    let reply = answer["content"]["text"].as_str().unwrap_or("(no text)");
                    Ok(text(format!("The model said: {reply}")))
                }
                None => Ok(ask(
                    vec![(
                        "capital_question",
                        sample("What is the capital of France?", 100)?,
                    )],
                    None,
                )),
            },
            Flow::ListRoots => match responses
                .get("client_roots")
                .and_then(|r| r["roots"].as_array())
            {
                Some(roots) => {
                    let uris: Vec<&str> = roots.iter().filter_map(|r| r["uri"].as_str()).collect();
                    Ok(text(format!("Client roots: {}", uris.join(", "))))
                }
                None => Ok(ask(vec![("client_roots", roots()?)], None)),
            },
            Flow::RequestState => {
                if responses.contains_key("confirm") {
                    self.open(codec, state)?;
                    return Ok(text("state-ok: confirmation received"));
                }
                let confirm = request(json!({
                    "method": "elicitation/create",
                    "params": {
                        "message": "Please confirm",
                        "requestedSchema": { "type": "object", "properties": { "ok": { "type": "boolean" } }, "required": ["ok"] }
                    }
                }))?;
                Ok(ask(
                    vec![("confirm", confirm)],
                    Some(self.seal(codec, "confirm")?),
                ))
            }
            Flow::MultipleInputs => {
                if ["user_name", "greeting", "client_roots"]
                    .iter()
                    .all(|k| responses.contains_key(*k))
                {
                    self.open(codec, state)?;
                    let name = accepted(&responses, "user_name", "name").unwrap_or_default();
                    return Ok(text(format!("Received all inputs for {name}")));
                }
                Ok(ask(
                    vec![
                        ("user_name", elicit("What is your name?", "name", "string")?),
                        ("greeting", sample("Generate a greeting", 50)?),
                        ("client_roots", roots()?),
                    ],
                    Some(self.seal(codec, "all")?),
                ))
            }
            Flow::MultiRound => {
                if call.request_state.is_none() {
                    return Ok(ask(
                        vec![(
                            "step1",
                            elicit("Step 1: What is your name?", "name", "string")?,
                        )],
                        Some(self.seal(codec, "step1")?),
                    ));
                }
                match self.open(codec, state)?.as_str() {
                    "step1" => match accepted(&responses, "step1", "name") {
                        Some(_) => Ok(ask(
                            vec![(
                                "step2",
                                elicit("Step 2: What is your favorite color?", "color", "string")?,
                            )],
                            Some(self.seal(codec, "step2")?),
                        )),
                        None => Ok(ask(
                            vec![(
                                "step1",
                                elicit("Step 1: What is your name?", "name", "string")?,
                            )],
                            Some(self.seal(codec, "step1")?),
                        )),
                    },
                    _ => match accepted(&responses, "step2", "color") {
                        Some(color) => {
                            Ok(text(format!("All steps complete; favorite color {color}")))
                        }
                        None => Ok(ask(
                            vec![(
                                "step2",
                                elicit("Step 2: What is your favorite color?", "color", "string")?,
                            )],
                            Some(self.seal(codec, "step2")?),
                        )),
                    },
                }
            }
            Flow::TamperedState => {
                if call.request_state.is_some() {
                    self.open(codec, state)?;
                    return Ok(text("state verified"));
                }
                Ok(ask(
                    vec![("confirm", elicit("Please confirm", "ok", "boolean")?)],
                    Some(self.seal(codec, "confirm")?),
                ))
            }
            Flow::Capabilities => {
                let capabilities = call.context.client_capabilities();
                let mut requests = Vec::new();
                if capabilities.is_some_and(|c| c.elicitation.is_some()) {
                    requests.push(("user_name", elicit("What is your name?", "name", "string")?));
                }
                if capabilities.is_some_and(|c| c.sampling.is_some()) {
                    requests.push(("greeting", sample("Generate a greeting", 50)?));
                }
                if capabilities.is_some_and(|c| c.roots.is_some()) {
                    requests.push(("client_roots", roots()?));
                }
                if requests.is_empty() || !responses.is_empty() {
                    return Ok(text("done with the inputs the client can give"));
                }
                Ok(ask(requests, None))
            }
        }
    }
}

/// `prompts/get` that needs the user's context first.
struct InputPrompt;

#[async_trait]
impl PromptTemplate for InputPrompt {
    fn definition(&self) -> Prompt {
        Prompt::new(
            "test_input_required_result_prompt",
            Some("A prompt that asks the user for context first"),
            None::<Vec<_>>,
        )
    }

    async fn render(&self, call: PromptCall) -> Result<GetPromptResponse, PromptError> {
        let responses = call.input_responses.unwrap_or_default();
        if let Some(context) = accepted(&responses, "user_context", "context") {
            return Ok(GetPromptResult::new(vec![PromptMessage::new_text(
                Role::User,
                format!("Use this context: {context}"),
            )])
            .into());
        }
        let request =
            elicit("What context should the prompt use?", "context", "string").map_err(|e| {
                PromptError::Internal {
                    context: "building the input request".to_owned(),
                    source: Box::new(e),
                }
            })?;
        let requests: InputRequests = [("user_context".to_owned(), request)].into_iter().collect();
        Ok(InputRequiredResult::new(Some(requests), None).into())
    }
}
