//! Resource templates from config (`[[resource_templates]]`): an RFC 6570 URI template
//! (`{var}` for one segment, `{+var}` for the rest) whose variables are typed parameters,
//! backed by a text template, a SQL statement of a `[[sql]]` source, or an HTTP tool of an
//! `[[api]]` source. A URI is matched, its variables percent-decoded, converted to their
//! declared types and validated against the same JSON Schema machinery as tool arguments
//! before anything runs.

use async_trait::async_trait;
use portcullis_config::{Param, ParamType, ResourceTemplateConfig};
use portcullis_core::{ArgumentValidator, ResourceError, ResourceSource};
use rmcp::model::{JsonObject, ReadResourceResult, ResourceContents, ResourceTemplate};
use serde_json::Value;

use crate::params::input_schema;
use crate::template::TextTemplate;

/// Most completions offered for one variable.
const MAX_COMPLETIONS: usize = 100;

/// What a template reads from.
pub(crate) enum Backing {
    Text(Box<TextTemplate>),
    #[cfg(feature = "sql")]
    Sql {
        source: std::sync::Arc<crate::sql::Source>,
        statement: String,
    },
    #[cfg(feature = "api")]
    Api(std::sync::Arc<crate::api::ApiTool>),
}

/// One configured template.
pub(crate) struct Template {
    uri: portcullis_config::Template,
    listing: ResourceTemplate,
    params: Vec<Param>,
    validator: ArgumentValidator,
    backing: Backing,
    /// The item whose policy bounds the reads besides the template's own (the guard's
    /// `Policies` combines them).
    item: Option<portcullis_core::Backing>,
    mime: Option<String>,
    /// Its own `required_scopes`; `None`: the resources pack's. `item`'s are needed too.
    scopes: Option<Vec<String>>,
}

impl Template {
    pub(crate) fn new(
        config: &ResourceTemplateConfig,
        params: Vec<Param>,
        backing: Backing,
        item: Option<portcullis_core::Backing>,
    ) -> Result<Self, String> {
        let what = |e: String| format!("resource template `{}`: {e}", config.uri_template);
        let uri = portcullis_config::Template::parse_uri(&config.uri_template)
            .map_err(|e| what(e.to_string()))?;
        let validator =
            ArgumentValidator::compile(&input_schema(&params)).map_err(|e| what(e.to_string()))?;
        let mut listing = ResourceTemplate::new(&config.uri_template, &config.name);
        if let Some(title) = &config.title {
            listing = listing.with_title(title);
        }
        if let Some(description) = &config.description {
            listing = listing.with_description(description);
        }
        let mime = config.mime_type.clone().or_else(|| match &backing {
            Backing::Text(_) => Some("text/plain".to_owned()),
            #[cfg(feature = "sql")]
            Backing::Sql { .. } => Some("application/json".to_owned()),
            #[cfg(feature = "api")]
            Backing::Api(_) => None,
        });
        if let Some(mime) = &mime {
            listing = listing.with_mime_type(mime);
        }
        Ok(Self {
            uri,
            listing,
            params,
            validator,
            backing,
            item,
            mime,
            scopes: config.required_scopes.clone(),
        })
    }

    /// The variables of `uri` as typed, validated arguments.
    fn arguments(
        &self,
        uri: &str,
        raw: Vec<(String, String)>,
    ) -> Result<JsonObject, ResourceError> {
        let mut arguments = JsonObject::new();
        let mut problems = Vec::new();
        for (name, value) in raw {
            let kind = self
                .params
                .iter()
                .find(|p| p.name == name)
                .map_or(ParamType::String, |p| p.kind);
            match typed(kind, &value) {
                Some(value) => {
                    arguments.insert(name, value);
                }
                None => problems.push(format!(
                    "`{name}`: `{value}` is not {}",
                    match kind {
                        ParamType::Integer => "an integer",
                        ParamType::Number => "a number",
                        ParamType::Boolean => "`true` or `false`",
                        _ => "a valid value",
                    }
                )),
            }
        }
        if problems.is_empty() {
            problems = self.validator.violations(&Value::Object(arguments.clone()));
        }
        if problems.is_empty() {
            Ok(arguments)
        } else {
            Err(ResourceError::Rejected(format!(
                "`{uri}` does not fit `{}`:\n- {}",
                self.listing.uri_template,
                problems.join("\n- ")
            )))
        }
    }

    async fn read(
        &self,
        uri: &str,
        arguments: JsonObject,
    ) -> Result<ReadResourceResult, ResourceError> {
        let (text, mime) = match &self.backing {
            Backing::Text(template) => {
                let text = template
                    .render(minijinja::Value::from(minijinja::value::Serde(&arguments)))
                    .map_err(|e| ResourceError::Internal {
                        context: format!("render `{}`", self.listing.uri_template),
                        source: Box::new(e),
                    })?;
                (text, self.mime.clone())
            }
            #[cfg(feature = "sql")]
            Backing::Sql { source, statement } => {
                let values = crate::sql::bind_values(source.engine, &self.params, &arguments);
                let deadline = tokio::time::Instant::now() + source.timeout;
                // One row is the resource: collect no more.
                let outcome = source
                    .run_capped(statement, &values, crate::sql::Access::Read, deadline, 1)
                    .await
                    .map_err(|e| ResourceError::from(e.into_tool_error(source)))?;
                let crate::sql::Outcome::Rows(rows) = outcome else {
                    return Err(ResourceError::NotFound(format!("no resource at `{uri}`")));
                };
                let Some(first) = rows.rows.first() else {
                    return Err(ResourceError::NotFound(format!("no resource at `{uri}`")));
                };
                let object: serde_json::Map<String, Value> = rows
                    .columns
                    .iter()
                    .cloned()
                    .zip(first.iter().cloned())
                    .collect();
                let text =
                    serde_json::to_string_pretty(&object).map_err(|e| ResourceError::Internal {
                        context: "serialise the row".to_owned(),
                        source: Box::new(e),
                    })?;
                (text, self.mime.clone())
            }
            #[cfg(feature = "api")]
            Backing::Api(tool) => {
                let output = tool.send(&arguments).await.map_err(ResourceError::from)?;
                let rmcp::model::CallToolResponse::Complete(result) = output else {
                    return Err(ResourceError::Rejected(format!(
                        "`{uri}` cannot be read without further input"
                    )));
                };
                match result.structured_content {
                    Some(structured) => (
                        structured.to_string(),
                        self.mime
                            .clone()
                            .or_else(|| Some("application/json".to_owned())),
                    ),
                    None => {
                        let text: Vec<String> = result
                            .content
                            .iter()
                            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
                            .collect();
                        (
                            text.join("\n"),
                            self.mime.clone().or_else(|| Some("text/plain".to_owned())),
                        )
                    }
                }
            }
        };
        let mut contents = ResourceContents::text(text, uri);
        if let Some(mime) = mime {
            contents = contents.with_mime_type(mime);
        }
        Ok(ReadResourceResult::new(vec![contents]))
    }
}

/// A URI variable's text as the JSON value of its declared type.
fn typed(kind: ParamType, text: &str) -> Option<Value> {
    match kind {
        ParamType::Integer => text.parse::<i64>().ok().map(Value::from),
        ParamType::Number => text
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite())
            .map(Value::from),
        ParamType::Boolean => match text {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            _ => None,
        },
        _ => Some(Value::String(text.to_owned())),
    }
}

/// Every configured template, as one resource source.
pub(crate) struct TemplateResources(pub(crate) Vec<Template>);

impl TemplateResources {
    fn find(&self, uri: &str) -> Option<(&Template, Vec<(String, String)>)> {
        self.0
            .iter()
            .find_map(|t| t.uri.matches(uri).map(|values| (t, values)))
    }
}

#[async_trait]
impl ResourceSource for TemplateResources {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn templates(&self) -> Vec<ResourceTemplate> {
        self.0.iter().map(|t| t.listing.clone()).collect()
    }

    fn required_scopes(&self, uri: &str) -> Option<Vec<String>> {
        self.find(uri).and_then(|(t, _)| t.scopes.clone())
    }

    fn template_scopes(&self, uri_template: &str) -> Option<Vec<String>> {
        self.0
            .iter()
            .find(|t| t.listing.uri_template == uri_template)
            .and_then(|t| t.scopes.clone())
    }

    fn backing(&self, uri: &str) -> Option<portcullis_core::Backing> {
        self.find(uri).and_then(|(t, _)| t.item.clone())
    }

    fn template_backing(&self, uri_template: &str) -> Option<portcullis_core::Backing> {
        self.0
            .iter()
            .find(|t| t.listing.uri_template == uri_template)
            .and_then(|t| t.item.clone())
    }

    fn claims(&self, uri: &str) -> bool {
        self.find(uri).is_some()
    }

    fn complete(&self, uri_template: &str, argument: &str, prefix: &str) -> Vec<String> {
        let Some(template) = self
            .0
            .iter()
            .find(|t| t.listing.uri_template == uri_template)
        else {
            return Vec::new();
        };
        template
            .params
            .iter()
            .find(|p| p.name == argument)
            .and_then(|p| p.allowed.as_ref())
            .into_iter()
            .flatten()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .filter(|v| v.starts_with(prefix))
            .take(MAX_COMPLETIONS)
            .collect()
    }

    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError> {
        let (template, raw) = self
            .find(uri)
            .ok_or_else(|| ResourceError::NotFound(format!("no resource at `{uri}`")))?;
        let arguments = template.arguments(uri, raw)?;
        template.read(uri, arguments).await
    }
}
