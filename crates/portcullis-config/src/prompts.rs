//! Prompt templates from config.

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::validate::{Issue, is_identifier, issue};

/// A prompt template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    /// Prompt name, as in `prompts/get`.
    pub name: String,
    /// Human-readable title.
    pub title: Option<String>,
    /// What the prompt is for.
    pub description: Option<String>,
    /// Declared arguments; an argument not declared here is refused.
    #[serde(default)]
    pub arguments: Vec<PromptArgumentConfig>,
    /// The template text (minijinja syntax, arguments as variables). Give this or
    /// `template_file`, not both.
    pub template: Option<String>,
    /// File holding the template, relative to the config file's directory.
    pub template_file: Option<PathBuf>,
    /// Scopes a principal needs to see and get this prompt (all of them). Replaces
    /// `[packs.prompts] required_scopes` for this prompt.
    pub required_scopes: Option<Vec<String>>,
}

/// One argument of a prompt template.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromptArgumentConfig {
    /// Argument name, used as the template variable.
    pub name: String,
    /// What to pass.
    pub description: Option<String>,
    /// Whether `prompts/get` must supply it.
    #[serde(default)]
    pub required: bool,
    /// Suggested values, offered by `completion/complete` (filtered by what the user typed).
    #[serde(default)]
    pub values: Vec<String>,
}

/// Checks the `[[prompts]]`: names, one template source, arguments.
pub(crate) fn validate(prompts: &[PromptConfig]) -> Result<(), Issue> {
    let mut names = crate::validate::Unique::new("prompt");
    for (i, prompt) in prompts.iter().enumerate() {
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
        names.check(format!("{key}.name"), prompt.name.as_str())?;
        if prompt.template.is_some() == prompt.template_file.is_some() {
            return Err(issue(
                key,
                "give exactly one of `template` and `template_file`",
            ));
        }
        let mut args = crate::validate::Unique::new("argument");
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
            args.check(format!("{key}.arguments[{j}].name"), arg.name.as_str())?;
        }
    }

    Ok(())
}
