//! Static resources from config: inline text or a file read once at start-up. Static content
//! never changes, so clients may subscribe to it (and will never be notified). And resource
//! templates from config ([`templates`]).

mod templates;

use std::path::Path;

use async_trait::async_trait;
use base64::Engine as _;
use portcullis_config::{Config, StaticResourceConfig};
use portcullis_core::{CatalogBuilder, ResourceError, ResourceSource};
use rmcp::model::{ReadResourceResult, Resource, ResourceContents};

/// The pack's name, for `[packs.resources]`.
pub const PACK: &str = "resources";

/// Why a static resource could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("resource `{uri}`: cannot read `{file}`: {source}")]
pub struct ResourcesError {
    uri: String,
    file: String,
    source: std::io::Error,
}

enum Content {
    Text(String),
    /// Base64 of a file that is not UTF-8 text.
    Blob(String),
}

struct Loaded {
    listing: Resource,
    mime: String,
    content: Content,
    /// The resource's own `required_scopes`.
    scopes: Option<Vec<String>>,
}

struct StaticResources(Vec<Loaded>);

/// Adds the config's static `[[resources]]`. File contents are read now, so a missing file
/// fails start-up instead of the first read.
pub(crate) fn register(
    config: &Config,
    catalog: &mut CatalogBuilder,
    shared: &mut crate::Shared,
) -> Result<(), String> {
    add(&config.resources, &config.base_dir, catalog).map_err(|e| e.to_string())?;
    add_templates(config, catalog, shared)
}

/// Adds the config's `[[resource_templates]]`, each backed by text, a SQL source's statement
/// or an HTTP tool (opened by their packs, found in `shared`).
fn add_templates(
    config: &Config,
    catalog: &mut CatalogBuilder,
    shared: &crate::Shared,
) -> Result<(), String> {
    use templates::{Backing, Template};
    let mut built = Vec::new();
    for template in &config.resource_templates {
        let what = |e: &dyn std::fmt::Display| {
            format!("resource template `{}`: {e}", template.uri_template)
        };
        // `item`: whose policy bounds the reads besides the template's own (the guard's
        // `Policies` combines them).
        let (params, backing, item) = if let Some(text) = &template.text {
            let names: Vec<&str> = template.params.iter().map(|p| p.name.as_str()).collect();
            let compiled =
                crate::template::TextTemplate::compile(text, &names).map_err(|e| what(&e))?;
            (
                template.params.clone(),
                Backing::Text(Box::new(compiled)),
                None,
            )
        } else if let Some(sql) = &template.sql {
            #[cfg(feature = "sql")]
            {
                let source = shared
                    .sql
                    .get(&sql.source)
                    .ok_or_else(|| what(&format!("no `[[sql]]` source `{}`", sql.source)))?;
                if let Some(count) = crate::sql::placeholder_count(source.engine, &sql.statement)
                    && count != template.params.len()
                {
                    return Err(what(&format!(
                        "the SQL has {count} placeholder(s) but {} variable(s) are declared; they bind in declaration order",
                        template.params.len()
                    )));
                }
                // It runs read-only like a configured read-only statement, and is checked the
                // same way for effects that would outlive that transaction.
                crate::sql::check_statement(source.engine, &sql.statement)
                    .map_err(|refused| what(&refused.0))?;
                // The statement is the source's work: its query tool's policy bounds the
                // reads, else the SQL pack's.
                let item = config
                    .sql
                    .iter()
                    .find(|s| s.name == sql.source)
                    .and_then(|s| s.query_tool.clone())
                    .map_or_else(
                        || portcullis_core::Backing::Pack(crate::sql::PACK.to_owned()),
                        portcullis_core::Backing::Tool,
                    );
                (
                    template.params.clone(),
                    Backing::Sql {
                        source: std::sync::Arc::clone(source),
                        statement: sql.statement.clone(),
                    },
                    Some(item),
                )
            }
            #[cfg(not(feature = "sql"))]
            {
                let _ = sql;
                return Err(crate::PackError::NotCompiled("sql").to_string());
            }
        } else if let Some(api) = &template.api {
            #[cfg(feature = "api")]
            {
                let tool = shared
                    .api
                    .get(&(api.source.clone(), api.tool.clone()))
                    .ok_or_else(|| what(&format!("no tool `{}` in `{}`", api.tool, api.source)))?;
                (
                    tool.params().to_vec(),
                    Backing::Api(std::sync::Arc::clone(tool)),
                    Some(portcullis_core::Backing::Tool(api.tool.clone())),
                )
            }
            #[cfg(not(feature = "api"))]
            {
                let _ = api;
                return Err(crate::PackError::NotCompiled("api").to_string());
            }
        } else {
            return Err(what(&"give one of `text`, `sql` and `api`"));
        };
        built.push(Template::new(template, params, backing, item)?);
    }
    if !built.is_empty() {
        catalog.resources(templates::TemplateResources(built));
    }
    Ok(())
}

fn add(
    resources: &[StaticResourceConfig],
    base_dir: &Path,
    catalog: &mut CatalogBuilder,
) -> Result<(), ResourcesError> {
    if resources.is_empty() {
        return Ok(());
    }
    let mut loaded = Vec::with_capacity(resources.len());
    for config in resources {
        let (content, size) = match (&config.text, &config.file) {
            (Some(text), _) => (Content::Text(text.clone()), text.len()),
            (None, Some(file)) => {
                let bytes = portcullis_core::operator_file::read(&base_dir.join(file)).map_err(
                    |source| ResourcesError {
                        uri: config.uri.clone(),
                        file: file.display().to_string(),
                        source,
                    },
                )?;
                let size = bytes.len();
                match String::from_utf8(bytes) {
                    Ok(text) => (Content::Text(text), size),
                    Err(e) => (
                        Content::Blob(
                            base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
                        ),
                        size,
                    ),
                }
            }
            (None, None) => (Content::Text(String::new()), 0),
        };
        let is_markdown = config
            .file
            .as_ref()
            .is_some_and(|f| f.extension().is_some_and(|e| e == "md"));
        let default_mime = match (&content, is_markdown) {
            (Content::Blob(_), _) => "application/octet-stream",
            (Content::Text(_), true) => "text/markdown",
            (Content::Text(_), false) => "text/plain",
        };
        let mime = config
            .mime_type
            .clone()
            .unwrap_or_else(|| default_mime.to_owned());
        let mut listing = Resource::new(&config.uri, &config.name)
            .with_mime_type(&mime)
            .with_size(size as u64);
        if let Some(title) = &config.title {
            listing = listing.with_title(title);
        }
        if let Some(description) = &config.description {
            listing = listing.with_description(description);
        }
        loaded.push(Loaded {
            listing,
            mime,
            content,
            scopes: config.required_scopes.clone(),
        });
    }
    catalog.resources(StaticResources(loaded));
    Ok(())
}

#[async_trait]
impl ResourceSource for StaticResources {
    fn pack(&self) -> &str {
        PACK
    }

    fn required_scopes(&self, uri: &str) -> Option<Vec<String>> {
        self.0
            .iter()
            .find(|r| r.listing.uri == uri)
            .and_then(|r| r.scopes.clone())
    }

    fn resources(&self) -> Vec<Resource> {
        self.0.iter().map(|r| r.listing.clone()).collect()
    }

    fn claims(&self, uri: &str) -> bool {
        self.0.iter().any(|r| r.listing.uri == uri)
    }

    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError> {
        let found = self
            .0
            .iter()
            .find(|r| r.listing.uri == uri)
            .ok_or_else(|| ResourceError::NotFound(format!("no resource at `{uri}`")))?;
        let contents = match &found.content {
            Content::Text(text) => ResourceContents::text(text, uri),
            Content::Blob(blob) => ResourceContents::blob(blob, uri),
        };
        Ok(ReadResourceResult::new(vec![
            contents.with_mime_type(&found.mime),
        ]))
    }

    fn subscribable(&self, uri: &str) -> bool {
        self.claims(uri)
    }
}
