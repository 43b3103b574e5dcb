//! Semantic checks that serde cannot express: unique names, one-of fields, name syntax.

use std::collections::HashSet;

use crate::model::Config;

/// One validation failure: the dotted key it concerns and what is wrong.
#[derive(Debug)]
pub struct Issue {
    pub key: String,
    pub message: String,
}

pub(crate) fn issue(key: impl Into<String>, message: impl Into<String>) -> Issue {
    Issue {
        key: key.into(),
        message: message.into(),
    }
}

/// Names of tools, prompts and roots: what MCP clients accept everywhere.
fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

pub(crate) fn validate(config: &Config) -> Result<(), Issue> {
    if config.server.name.trim().is_empty() {
        return Err(issue("server.name", "must not be empty"));
    }
    if !config.http.path.starts_with('/') {
        return Err(issue(
            "http.path",
            format!("`{}` must start with `/`", config.http.path),
        ));
    }
    if config.http.allowed_hosts.is_empty() {
        return Err(issue(
            "http.allowed_hosts",
            "must list at least one host: an empty list would accept any `Host` header (DNS rebinding)",
        ));
    }
    if config.http.max_body_bytes < 1024 {
        return Err(issue("http.max_body_bytes", "must be at least 1024 bytes"));
    }
    crate::auth::validate(config)?;
    if config.limits.tool_timeout_secs == 0 {
        return Err(issue(
            "limits.tool_timeout_secs",
            "must be at least 1 second",
        ));
    }

    let mut roots = HashSet::new();
    for (i, root) in config.files.iter().enumerate() {
        let key = format!("files[{i}]");
        let root_name_ok = !root.name.is_empty()
            && root
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !root_name_ok {
            return Err(issue(
                format!("{key}.name"),
                format!(
                    "root name `{}` may use only a-z, 0-9, `-` and `_`",
                    root.name
                ),
            ));
        }
        if !roots.insert(root.name.as_str()) {
            return Err(issue(
                format!("{key}.name"),
                format!(
                    "root name `{}` is used twice; every root needs its own name",
                    root.name
                ),
            ));
        }
        if root.path.as_os_str().is_empty() {
            return Err(issue(format!("{key}.path"), "must not be empty"));
        }
        if root.max_read_bytes == 0 || root.max_search_results == 0 || root.max_search_entries == 0
        {
            return Err(issue(
                key,
                "`max_read_bytes`, `max_search_results` and `max_search_entries` must be at least 1",
            ));
        }
    }

    let mut prompts = HashSet::new();
    for (i, prompt) in config.prompts.iter().enumerate() {
        let key = format!("prompts[{i}]");
        if !is_identifier(&prompt.name) {
            return Err(issue(
                format!("{key}.name"),
                format!(
                    "prompt name `{}` may use only A-Z, a-z, 0-9, `_`, `-` and `.` (1 to 64 characters)",
                    prompt.name
                ),
            ));
        }
        if !prompts.insert(prompt.name.as_str()) {
            return Err(issue(
                format!("{key}.name"),
                format!("prompt `{}` is defined twice", prompt.name),
            ));
        }
        if prompt.template.is_some() == prompt.template_file.is_some() {
            return Err(issue(
                key,
                "give exactly one of `template` and `template_file`",
            ));
        }
        let mut args = HashSet::new();
        for (j, arg) in prompt.arguments.iter().enumerate() {
            if !is_identifier(&arg.name) {
                return Err(issue(
                    format!("{key}.arguments[{j}].name"),
                    format!(
                        "argument name `{}` may use only A-Z, a-z, 0-9, `_`, `-` and `.`",
                        arg.name
                    ),
                ));
            }
            if !args.insert(arg.name.as_str()) {
                return Err(issue(
                    format!("{key}.arguments[{j}].name"),
                    format!("argument `{}` is declared twice", arg.name),
                ));
            }
        }
    }

    let mut uris = HashSet::new();
    for (i, resource) in config.resources.iter().enumerate() {
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
    crate::sql::validate_sql(&config.sql)?;
    Ok(())
}
