//! Building a catalog: ordering and the errors a library user can make.

use async_trait::async_trait;
use portcullis_server::rmcp::model::Tool as ToolDef;
use portcullis_server::{CatalogBuilder, Tool, ToolCall, ToolError, ToolOutput};
use serde_json::json;

struct Named(&'static str, serde_json::Value);

#[async_trait]
impl Tool for Named {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            self.0,
            "test",
            self.1.as_object().cloned().unwrap_or_default(),
        )
    }

    async fn call(&self, _call: ToolCall) -> Result<ToolOutput, ToolError> {
        Err(ToolError::rejected("unused"))
    }
}

fn object() -> serde_json::Value {
    json!({ "type": "object" })
}

#[test]
fn tools_are_listed_in_name_order() {
    let mut builder = CatalogBuilder::new();
    builder
        .tool(Named("zeta", object()))
        .tool(Named("alpha", object()))
        .tool(Named("mid", object()));
    let catalog = builder.build().expect("catalog");
    let names: Vec<&str> = catalog.tools().iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

#[test]
fn duplicate_and_invalid_tools_are_refused() {
    let mut builder = CatalogBuilder::new();
    builder
        .tool(Named("same", object()))
        .tool(Named("same", object()));
    let error = builder.build().err().expect("duplicate refused");
    assert_eq!(
        error.to_string(),
        "tool `same` is defined twice; tool names must be unique"
    );

    let mut builder = CatalogBuilder::new();
    builder.tool(Named(
        "bad",
        json!({ "type": "object", "properties": { "x": { "type": "no-such-type" } } }),
    ));
    let error = builder.build().err().expect("invalid schema refused");
    assert!(
        error
            .to_string()
            .starts_with("tool `bad` has an invalid input schema: "),
        "{error}"
    );
}

/// One static resource, `static://one`.
pub struct OneResource;

#[async_trait]
impl portcullis_server::ResourceSource for OneResource {
    fn resources(&self) -> Vec<portcullis_server::rmcp::model::Resource> {
        vec![portcullis_server::rmcp::model::Resource::new(
            "static://one",
            "one",
        )]
    }

    fn claims(&self, uri: &str) -> bool {
        uri == "static://one"
    }

    async fn read(
        &self,
        uri: &str,
    ) -> Result<portcullis_server::rmcp::model::ReadResourceResult, portcullis_server::ResourceError>
    {
        Ok(portcullis_server::rmcp::model::ReadResourceResult::new(
            vec![portcullis_server::rmcp::model::ResourceContents::text(
                "one", uri,
            )],
        ))
    }
}

/// One prompt without arguments, `one`.
pub struct OnePrompt;

#[async_trait]
impl portcullis_server::PromptTemplate for OnePrompt {
    fn definition(&self) -> portcullis_server::rmcp::model::Prompt {
        portcullis_server::rmcp::model::Prompt::new("one", Some("One prompt"), None)
    }

    async fn render(
        &self,
        _call: portcullis_server::PromptCall,
    ) -> Result<portcullis_server::rmcp::model::GetPromptResponse, portcullis_server::PromptError>
    {
        Ok(portcullis_server::rmcp::model::GetPromptResult::new(vec![
            portcullis_server::rmcp::model::PromptMessage::new_text(
                portcullis_server::rmcp::model::Role::User,
                "one",
            ),
        ])
        .into())
    }
}
