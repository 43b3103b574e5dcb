//! Static resources from config.

use std::collections::HashSet;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, issue};

/// A static resource.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaticResourceConfig {
    /// Resource URI, for example `config://review-rules`.
    pub uri: String,
    /// Short name.
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the resource holds.
    pub description: Option<String>,
    /// MIME type; defaults to `text/plain` (or `text/markdown` for a `.md` file). A `file`
    /// whose content is not UTF-8 text is served as binary (base64 `blob`), for example an
    /// image with `mime_type = "image/png"`.
    pub mime_type: Option<String>,
    /// The content, inline. Give this or `file`, not both.
    pub text: Option<String>,
    /// File holding the content, relative to the config file's directory.
    pub file: Option<PathBuf>,
    /// Scopes a principal needs to see and read this resource (all of them). Replaces
    /// `[packs.resources] required_scopes` for this resource.
    pub required_scopes: Option<Vec<String>>,
}

/// Checks the `[[resources]]`: URIs, one content source.
pub(crate) fn validate(resources: &[StaticResourceConfig]) -> Result<(), Issue> {
    let mut uris = HashSet::new();
    for (i, resource) in resources.iter().enumerate() {
        let key = format!("resources[{i}]");
        let scheme_ok = resource.uri.split_once(':').is_some_and(|(scheme, rest)| {
            !scheme.is_empty()
                && !rest.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        if !scheme_ok {
            return Err(issue(
                format!("{key}.uri"),
                format!(
                    "`{}` is not a URI; write `scheme:rest`, for example `config://review-rules`",
                    resource.uri
                ),
            ));
        }
        if resource.uri.starts_with("file:") {
            return Err(issue(
                format!("{key}.uri"),
                "`file:` URIs belong to the files pack; use another scheme such as `config://`",
            ));
        }
        if !uris.insert(resource.uri.as_str()) {
            return Err(issue(
                format!("{key}.uri"),
                format!("resource `{}` is defined twice", resource.uri),
            ));
        }
        if resource.text.is_some() == resource.file.is_some() {
            return Err(issue(key, "give exactly one of `text` and `file`"));
        }
    }
    Ok(())
}
