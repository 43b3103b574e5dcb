//! Prompt templates from config, rendered with minijinja. Templates are compiled at start-up,
//! so a syntax error fails start-up with the prompt's name instead of failing a client.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use portcullis_config::{Config, PromptConfig};
use portcullis_core::{CatalogBuilder, PromptCall, PromptError, PromptTemplate};
use rmcp::model::{
    GetPromptResponse, GetPromptResult, Prompt, PromptArgument, PromptMessage, Role,
};

/// The pack's name, for `[packs.prompts]`.
pub const PACK: &str = "prompts";

/// Why a prompt template could not be loaded.
#[derive(Debug, thiserror::Error)]
#[error("prompt `{prompt}`: {message}")]
pub struct PromptsError {
    prompt: String,
    message: String,
}

/// Adds the config's `[[prompts]]`.
pub(crate) fn register(
    config: &Config,
    catalog: &mut CatalogBuilder,
    _shared: &mut crate::Shared,
) -> Result<(), String> {
    add(&config.prompts, &config.base_dir, catalog).map_err(|e| e.to_string())
}

fn add(
    prompts: &[PromptConfig],
    base_dir: &Path,
    catalog: &mut CatalogBuilder,
) -> Result<(), PromptsError> {
    if prompts.is_empty() {
        return Ok(());
    }
    let mut env = Environment::new();
    // Prompts are plain text for a model, never HTML.
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Optional arguments that were not given are simply undefined (falsy, empty).
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(Some(crate::template::FUEL));
    for prompt in prompts {
        let error = |message: String| PromptsError {
            prompt: prompt.name.clone(),
            message,
        };
        let source = match (&prompt.template, &prompt.template_file) {
            (Some(text), _) => text.clone(),
            (None, Some(file)) => portcullis_core::operator_file::read_to_string(
                &base_dir.join(file),
            )
            .map_err(|e| {
                error(format!(
                    "cannot read template file `{}`: {e}",
                    file.display()
                ))
            })?,
            (None, None) => return Err(error("no template".to_owned())),
        };
        env.add_template_owned(prompt.name.clone(), source)
            .map_err(|e| error(format!("template does not compile: {e}")))?;
        // Every variable it uses is an argument: a misspelt one is refused here rather than
        // rendered as empty text (an optional argument not given is empty, on purpose).
        let arguments: Vec<&str> = prompt.arguments.iter().map(|a| a.name.as_str()).collect();
        crate::template::check_variables(&env, &prompt.name, &arguments)
            .map_err(|e| error(e.to_string()))?;
    }
    let env = Arc::new(env);
    for prompt in prompts {
        let arguments = prompt
            .arguments
            .iter()
            .map(|a| {
                let mut arg = PromptArgument::new(&a.name).with_required(a.required);
                if let Some(description) = &a.description {
                    arg = arg.with_description(description);
                }
                arg
            })
            .collect();
        let mut definition =
            Prompt::new(&prompt.name, prompt.description.as_deref(), Some(arguments));
        if let Some(title) = &prompt.title {
            definition = definition.with_title(title);
        }
        let values = prompt
            .arguments
            .iter()
            .map(|a| (a.name.clone(), a.values.clone()))
            .collect();
        catalog.prompt(ConfigPrompt {
            definition,
            env: Arc::clone(&env),
            values,
            scopes: prompt.required_scopes.clone(),
        });
    }
    Ok(())
}

struct ConfigPrompt {
    definition: Prompt,
    env: Arc<Environment<'static>>,
    /// Completion suggestions per argument, from `values` in the config.
    values: HashMap<String, Vec<String>>,
    /// The prompt's own `required_scopes`.
    scopes: Option<Vec<String>>,
}

#[async_trait]
impl PromptTemplate for ConfigPrompt {
    fn definition(&self) -> Prompt {
        self.definition.clone()
    }

    fn pack(&self) -> &str {
        PACK
    }

    fn required_scopes(&self) -> Option<Vec<String>> {
        self.scopes.clone()
    }

    async fn render(&self, call: PromptCall) -> Result<GetPromptResponse, PromptError> {
        let arguments = &call.arguments;
        let internal = |e: minijinja::Error| PromptError::Internal {
            context: format!("rendering prompt `{}`", self.definition.name),
            source: Box::new(e),
        };
        let template = self
            .env
            .get_template(&self.definition.name)
            .map_err(internal)?;
        let text = template
            .render(minijinja::Value::from_pairs(
                arguments.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ))
            .map_err(internal)?;
        let mut result = GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)]);
        result.description = self.definition.description.clone();
        Ok(result.into())
    }

    fn complete(&self, argument: &str, prefix: &str) -> Vec<String> {
        self.values
            .get(argument)
            .into_iter()
            .flatten()
            .filter(|value| value.starts_with(prefix))
            .cloned()
            .collect()
    }
}
