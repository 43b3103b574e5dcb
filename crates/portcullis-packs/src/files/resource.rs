//! Files as resources: the template `file:///{root}/{+path}`. The path part is
//! percent-decoded once and then goes through the same jail as the tools.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use portcullis_core::{ResourceError, ResourceSource};
use rmcp::model::{ReadResourceResult, ResourceContents, ResourceTemplate};

use super::Roots;

const PREFIX: &str = "file:///";

/// The URI of the file at root-relative `rel` in root `root`.
pub(super) fn uri(root: &str, rel: &str) -> String {
    format!("{PREFIX}{root}/{}", crate::jail::uri_path(rel))
}

pub(super) struct FileResources {
    roots: Arc<Roots>,
}

impl FileResources {
    pub(super) fn new(roots: Arc<Roots>) -> Self {
        Self { roots }
    }
}

#[async_trait]
impl ResourceSource for FileResources {
    fn pack(&self) -> &str {
        super::PACK
    }

    fn complete(&self, _uri_template: &str, argument: &str, prefix: &str) -> Vec<String> {
        if argument != "root" {
            return Vec::new();
        }
        self.roots
            .roots
            .iter()
            .map(|r| r.jail.name())
            .filter(|name| name.starts_with(prefix))
            .map(str::to_owned)
            .collect()
    }

    fn templates(&self) -> Vec<ResourceTemplate> {
        let names: Vec<&str> = self.roots.roots.iter().map(|r| r.jail.name()).collect();
        vec![
            ResourceTemplate::new(format!("{PREFIX}{{root}}/{{+path}}"), "file")
                .with_title("File in a root")
                .with_description(format!(
                    "A file under one of the roots ({}); `path` is relative to the root.",
                    names.join(", ")
                )),
        ]
    }

    fn claims(&self, uri: &str) -> bool {
        uri.starts_with("file:")
    }

    fn live(&self) -> bool {
        self.roots.roots.iter().any(|r| r.watch.enabled())
    }

    /// A file of a watched root, in the canonical form the watcher publishes (no `.`/`..`,
    /// no empty segments, no query), that the deny list does not refuse.
    fn subscribable(&self, uri: &str) -> bool {
        let Some((root_name, encoded)) = uri.strip_prefix(PREFIX).and_then(|r| r.split_once('/'))
        else {
            return false;
        };
        let Some(root) = self.roots.by_name(root_name) else {
            return false;
        };
        let Ok(path) = percent_encoding::percent_decode_str(encoded).decode_utf8() else {
            return false;
        };
        root.watch.enabled()
            && !path.is_empty()
            && !uri.contains(['?', '#'])
            && path
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
            && !root.jail.is_denied(&path)
            && uri == self::uri(root_name, &path)
    }

    async fn read(&self, uri: &str) -> Result<ReadResourceResult, ResourceError> {
        let rest = uri.strip_prefix(PREFIX).ok_or_else(|| {
            ResourceError::Rejected(format!(
                "`{uri}` is not of the form `file:///{{root}}/{{path}}`"
            ))
        })?;
        if rest.contains('?') || rest.contains('#') {
            return Err(ResourceError::Rejected(
                "file URIs take no query or fragment".to_owned(),
            ));
        }
        let (root_name, encoded) = rest.split_once('/').unwrap_or((rest, ""));
        let root = self.roots.by_name(root_name).ok_or_else(|| {
            let names: Vec<&str> = self.roots.roots.iter().map(|r| r.jail.name()).collect();
            ResourceError::NotFound(format!(
                "no root named `{root_name}`; roots: {}",
                names.join(", ")
            ))
        })?;
        let path = percent_encoding::percent_decode_str(encoded)
            .decode_utf8()
            .map_err(|_| {
                ResourceError::Rejected(
                    "the path is not valid UTF-8 after percent-decoding".to_owned(),
                )
            })?;
        let at = root.jail.locate(&path).await.map_err(ResourceError::from)?;
        let mime = mime_guess::from_path(&at.rel).first_raw();
        let bytes = root
            .jail
            .read_bytes(&path, &at, root.max_read_bytes)
            .await?;
        let blob = |bytes: Vec<u8>| {
            ResourceContents::blob(base64::engine::general_purpose::STANDARD.encode(bytes), uri)
                .with_mime_type(mime.unwrap_or("application/octet-stream"))
        };
        let contents = if content_inspector::inspect(&bytes).is_binary() {
            blob(bytes)
        } else {
            match String::from_utf8(bytes) {
                Ok(text) => {
                    ResourceContents::text(text, uri).with_mime_type(mime.unwrap_or("text/plain"))
                }
                Err(not_text) => blob(not_text.into_bytes()),
            }
        };
        Ok(ReadResourceResult::new(vec![contents]))
    }
}
