//! Static resources from config.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::params::Param;
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
    let mut uris = crate::validate::Unique::new("resource");
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
        uris.check(format!("{key}.uri"), resource.uri.as_str())?;
        if resource.text.is_some() == resource.file.is_some() {
            return Err(issue(key, "give exactly one of `text` and `file`"));
        }
    }
    Ok(())
}

/// A resource template: `uri_template` (RFC 6570, `{var}` for one path segment, `{+var}`
/// for the rest of the URI) whose variables are typed `params`, backed by exactly one of
/// `text`, `sql` or `api`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceTemplateConfig {
    /// The URI template, for example `users://{user_id}/profile`.
    pub uri_template: String,
    /// Short name.
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the resources hold.
    pub description: Option<String>,
    /// MIME type of what a read returns; defaults to `text/plain` for `text`, and
    /// `application/json` for `sql` (the row as a JSON object).
    pub mime_type: Option<String>,
    /// The template's variables, typed: a URI whose values do not fit is refused before
    /// anything runs. Every variable of `uri_template` must be declared; a variable with
    /// an `enum` is offered as completions. With `api`, leave this empty: the variables are
    /// the HTTP tool's own parameters.
    #[serde(default)]
    pub params: Vec<Param>,
    /// A text template (minijinja) rendered with the variables: `Hello, {{ name }}!`.
    pub text: Option<String>,
    /// A SQL statement of a `[[sql]]` source, run read-only with the variables bound in
    /// declaration order; its first row is the resource, as a JSON object. No row: the
    /// resource does not exist.
    pub sql: Option<TemplateSql>,
    /// An HTTP tool of an `[[api]]` source (read-only, GET) called with the variables; its
    /// result is the resource.
    pub api: Option<TemplateApi>,
    /// Scopes a principal needs to see, complete and read these resources (all of them).
    /// Replaces `[packs.resources] required_scopes` for this template. What backs the
    /// template adds its own: for `sql` those of the source's query tool (`[tools.NAME]`),
    /// else `[packs.sql]`'s; for `api` the HTTP tool's (`[tools.NAME]`, else `[packs.api]`).
    pub required_scopes: Option<Vec<String>>,
}

/// The SQL behind a resource template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSql {
    /// Name of the `[[sql]]` source.
    pub source: String,
    /// The statement, with the engine's placeholders (`?`, or `$1`, `$2`, … on PostgreSQL).
    pub statement: String,
}

/// The HTTP tool behind a resource template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateApi {
    /// Name of the `[[api]]` source.
    pub source: String,
    /// Name of one of its tools.
    pub tool: String,
}

/// The variable names of an RFC 6570 URI template (`{name}`, `{+name}`), in order; `Err`
/// says what is malformed.
pub fn template_variables(template: &str) -> Result<Vec<(String, bool)>, crate::TemplateError> {
    Ok(crate::Template::parse_uri(template)?
        .variables()
        .map(|(name, reserved)| (name.to_owned(), reserved))
        .collect())
}

/// Checks the `[[resource_templates]]`: templates, variables, exactly one backing, and that
/// the backing source (and tool) exist.
pub(crate) fn validate_templates(config: &crate::Config) -> Result<(), Issue> {
    let mut seen = crate::validate::Unique::new("resource template");
    for (i, template) in config.resource_templates.iter().enumerate() {
        let key = format!("resource_templates[{i}]");
        let variables = template_variables(&template.uri_template)
            .map_err(|e| issue(format!("{key}.uri_template"), e.to_string()))?;
        if variables.is_empty() || !template.uri_template.contains(':') {
            return Err(issue(
                format!("{key}.uri_template"),
                "a template is a URI with at least one `{variable}`, such as `users://{user_id}/profile`",
            ));
        }
        if template.uri_template.starts_with("file:") {
            return Err(issue(
                format!("{key}.uri_template"),
                "`file:` URIs belong to the files pack",
            ));
        }
        seen.check(
            format!("{key}.uri_template"),
            template.uri_template.as_str(),
        )?;
        let backings = [
            template.text.is_some(),
            template.sql.is_some(),
            template.api.is_some(),
        ];
        if backings.iter().filter(|b| **b).count() != 1 {
            return Err(issue(key, "give exactly one of `text`, `sql` and `api`"));
        }
        crate::params::validate_params(&key, &template.params, &[], false)?;
        if let Some(api) = &template.api {
            if !template.params.is_empty() {
                return Err(issue(
                    format!("{key}.params"),
                    "an `api` template takes its variables from the tool's parameters; leave `params` empty",
                ));
            }
            let source = config
                .api
                .iter()
                .find(|s| s.name == api.source)
                .ok_or_else(|| {
                    issue(
                        format!("{key}.api.source"),
                        format!("no `[[api]]` source is named `{}`", api.source),
                    )
                })?;
            let tool = source
                .tools
                .iter()
                .find(|t| t.name == api.tool)
                .ok_or_else(|| {
                    issue(
                        format!("{key}.api.tool"),
                        format!("`{}` has no tool `{}`", api.source, api.tool),
                    )
                })?;
            if tool.method != crate::HttpMethod::Get {
                return Err(issue(
                    format!("{key}.api.tool"),
                    "a resource is read, so its tool must be a GET",
                ));
            }
            for (name, _) in &variables {
                if !tool.params.iter().any(|p| &p.name == name) {
                    return Err(issue(
                        format!("{key}.uri_template"),
                        format!("`{name}` is not a parameter of `{}`", api.tool),
                    ));
                }
            }
            if let Some(missing) = tool
                .params
                .iter()
                .find(|p| p.is_required() && !variables.iter().any(|(v, _)| v == &p.name))
            {
                return Err(issue(
                    format!("{key}.uri_template"),
                    format!(
                        "`{}` needs `{}`, which the template does not give",
                        api.tool, missing.name
                    ),
                ));
            }
            continue;
        }
        for (name, _) in &variables {
            if !template.params.iter().any(|p| &p.name == name) {
                return Err(issue(
                    format!("{key}.params"),
                    format!("declare the variable `{name}` (its type, at least)"),
                ));
            }
        }
        if let Some(param) = template
            .params
            .iter()
            .find(|p| !variables.iter().any(|(v, _)| v == &p.name))
        {
            return Err(issue(
                format!("{key}.params"),
                format!("`{}` is not a variable of the template", param.name),
            ));
        }
        if let Some(param) = template
            .params
            .iter()
            .find(|p| p.kind == crate::ParamType::Array)
        {
            return Err(issue(
                format!("{key}.params"),
                format!("`{}`: a URI variable cannot be an array", param.name),
            ));
        }
        if let Some(sql) = &template.sql
            && !config.sql.iter().any(|s| s.name == sql.source)
        {
            return Err(issue(
                format!("{key}.sql.source"),
                format!("no `[[sql]]` source is named `{}`", sql.source),
            ));
        }
    }
    Ok(())
}
