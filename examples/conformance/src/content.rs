//! A resource template and prompts whose content is not plain text: what config cannot express.

use async_trait::async_trait;
use base64::Engine as _;
use portcullis_server::rmcp::model::{
    GetPromptResponse, GetPromptResult, Prompt, PromptArgument, PromptMessage, ReadResourceResult,
    ResourceContents, ResourceTemplate, Role,
};
use portcullis_server::{
    CatalogBuilder, PromptCall, PromptError, PromptTemplate, ResourceError, ResourceSource,
};
use serde_json::json;

use crate::PNG;

pub fn register(builder: &mut CatalogBuilder) {
    builder
        .resources(TemplateData)
        .prompt(EmbeddedResourcePrompt)
        .prompt(ImagePrompt);
}

/// `test://template/{id}/data`.
struct TemplateData;

const TEMPLATE_PREFIX: &str = "test://template/";

#[async_trait]
impl ResourceSource for TemplateData {
    fn templates(&self) -> Vec<ResourceTemplate> {
        vec![
            ResourceTemplate::new("test://template/{id}/data", "template-data")
                .with_description("JSON data for an id")
                .with_mime_type("application/json"),
        ]
    }

    fn claims(&self, uri: &str) -> bool {
        uri.starts_with(TEMPLATE_PREFIX)
    }

    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError> {
        let id = uri
            .strip_prefix(TEMPLATE_PREFIX)
            .and_then(|rest| rest.strip_suffix("/data"))
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| {
                ResourceError::NotFound(format!(
                    "no resource at `{uri}`; expected test://template/{{id}}/data"
                ))
            })?;
        let body = json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(body.to_string(), uri).with_mime_type("application/json"),
        ]))
    }
}

struct EmbeddedResourcePrompt;

#[async_trait]
impl PromptTemplate for EmbeddedResourcePrompt {
    fn definition(&self) -> Prompt {
        let argument = PromptArgument::new("resourceUri")
            .with_description("URI of the resource to embed")
            .with_required(true);
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt that embeds a resource"),
            Some(vec![argument]),
        )
    }

    async fn render(&self, call: PromptCall) -> Result<GetPromptResponse, PromptError> {
        let uri = call
            .arguments
            .get("resourceUri")
            .cloned()
            .unwrap_or_default();
        Ok(GetPromptResult::new(vec![
            PromptMessage::new_resource(
                Role::User,
                uri,
                Some("text/plain".to_owned()),
                Some("Embedded resource content for testing.".to_owned()),
                None,
                None,
                None,
            ),
            PromptMessage::new_text(Role::User, "Please process the embedded resource above."),
        ])
        .into())
    }
}

struct ImagePrompt;

#[async_trait]
impl PromptTemplate for ImagePrompt {
    fn definition(&self) -> Prompt {
        Prompt::new(
            "test_prompt_with_image",
            Some("A prompt with an image"),
            None::<Vec<PromptArgument>>,
        )
    }

    async fn render(&self, _call: PromptCall) -> Result<GetPromptResponse, PromptError> {
        let png = base64::engine::general_purpose::STANDARD
            .decode(PNG)
            .map_err(|e| PromptError::Internal {
                context: "decoding the fixture image".to_owned(),
                source: Box::new(e),
            })?;
        Ok(GetPromptResult::new(vec![
            PromptMessage::new_image(Role::User, &png, "image/png", None, None),
            PromptMessage::new_text(Role::User, "Please analyze the image above."),
        ])
        .into())
    }
}
