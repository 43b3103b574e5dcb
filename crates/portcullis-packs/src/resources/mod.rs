//! Static resources from config: inline text or a file read once at start-up.

use std::path::Path;

use async_trait::async_trait;
use portcullis_config::StaticResourceConfig;
use portcullis_server::{CatalogBuilder, ResourceError, ResourceSource};
use rmcp::model::{ReadResourceResult, Resource, ResourceContents};

/// Why a static resource could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("resource `{uri}`: cannot read `{file}`: {source}")]
pub struct ResourcesError {
    uri: String,
    file: String,
    source: std::io::Error,
}

struct Loaded {
    listing: Resource,
    mime: String,
    text: String,
}

struct StaticResources(Vec<Loaded>);

/// Adds the static resources of the config. File contents are read now, so a missing file
/// fails start-up instead of the first read.
pub fn register(
    resources: &[StaticResourceConfig],
    base_dir: &Path,
    catalog: &mut CatalogBuilder,
) -> Result<(), ResourcesError> {
    if resources.is_empty() {
        return Ok(());
    }
    let mut loaded = Vec::with_capacity(resources.len());
    for config in resources {
        let text = match (&config.text, &config.file) {
            (Some(text), _) => text.clone(),
            (None, Some(file)) => {
                std::fs::read_to_string(base_dir.join(file)).map_err(|source| ResourcesError {
                    uri: config.uri.clone(),
                    file: file.display().to_string(),
                    source,
                })?
            }
            (None, None) => String::new(),
        };
        let is_markdown = config
            .file
            .as_ref()
            .is_some_and(|f| f.extension().is_some_and(|e| e == "md"));
        let mime = config.mime_type.clone().unwrap_or_else(|| {
            if is_markdown {
                "text/markdown"
            } else {
                "text/plain"
            }
            .to_owned()
        });
        let mut listing = Resource::new(&config.uri, &config.name)
            .with_mime_type(&mime)
            .with_size(text.len() as u64);
        if let Some(title) = &config.title {
            listing = listing.with_title(title);
        }
        if let Some(description) = &config.description {
            listing = listing.with_description(description);
        }
        loaded.push(Loaded {
            listing,
            mime,
            text,
        });
    }
    catalog.resources(StaticResources(loaded));
    Ok(())
}

#[async_trait]
impl ResourceSource for StaticResources {
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
        Ok(ReadResourceResult::new(vec![
            ResourceContents::text(&found.text, uri).with_mime_type(&found.mime),
        ]))
    }
}
