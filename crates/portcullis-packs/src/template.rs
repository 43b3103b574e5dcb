//! Text templates (minijinja), compiled at start-up: the HTTP pack renders a JSON response
//! through one, the command pack a program's output, a resource template its variables;
//! prompts use [`unknown_variables`] too. A template may only name the variables its
//! context will have — a misspelt one is an error when the config is loaded, not empty
//! text — and a result template is rendered semi-strictly: printing or iterating something
//! undefined (a field the response does not have) fails the call instead of printing
//! nothing; testing it (`{% if t.assignee %}`) is allowed.

use std::collections::BTreeSet;

/// Instructions a template may run per render: far more than any result or prompt needs
/// (a thousand rows with a dozen fields each is under a hundred thousand), and a bound on
/// what a large upstream answer can cost a template with nested loops (tens of milliseconds
/// in a release build) — a render runs on the async workers.
pub(crate) const FUEL: u64 = 2_000_000;

/// Names minijinja defines inside macros, which a template may use there.
const MACRO_NAMES: [&str; 3] = ["varargs", "kwargs", "caller"];

/// One compiled template.
pub(crate) struct TextTemplate {
    env: minijinja::Environment<'static>,
}

/// Why a template was refused at load.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TemplateError {
    /// It does not compile.
    #[error("template does not compile: {0}")]
    Syntax(#[from] minijinja::Error),
    /// It names variables its context will not have.
    #[error(
        "the template uses {}, which {} not among the variables it is given ({})",
        quoted(.unknown), if .unknown.len() == 1 { "is" } else { "are" }, quoted(.known)
    )]
    Unknown {
        /// The names it uses that nothing defines.
        unknown: Vec<String>,
        /// What it may use.
        known: Vec<String>,
    },
}

fn quoted(names: &[String]) -> String {
    if names.is_empty() {
        return "none".to_owned();
    }
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The variables `name` in `env` uses that are neither in `known` nor the environment's
/// globals (`range`, `dict`, `namespace`, …), sorted.
pub(crate) fn unknown_variables(
    env: &minijinja::Environment<'_>,
    name: &str,
    known: &[&str],
) -> Result<Vec<String>, minijinja::Error> {
    let template = env.get_template(name)?;
    let globals: BTreeSet<&str> = env.globals().map(|(name, _)| name).collect();
    let mut unknown: Vec<String> = template
        .undeclared_variables(false)
        .into_iter()
        .filter(|v| {
            !known.contains(&v.as_str())
                && !globals.contains(v.as_str())
                && !MACRO_NAMES.contains(&v.as_str())
        })
        .collect();
    unknown.sort();
    Ok(unknown)
}

/// Refuses a template that names a variable outside `known`.
pub(crate) fn check_variables(
    env: &minijinja::Environment<'_>,
    name: &str,
    known: &[&str],
) -> Result<(), TemplateError> {
    let unknown = unknown_variables(env, name, known)?;
    if unknown.is_empty() {
        return Ok(());
    }
    Err(TemplateError::Unknown {
        unknown,
        known: known.iter().map(|k| (*k).to_owned()).collect(),
    })
}

impl TextTemplate {
    /// Compiles `source`, whose context will have exactly the variables `known`.
    pub(crate) fn compile(source: &str, known: &[&str]) -> Result<Self, TemplateError> {
        let mut env = minijinja::Environment::new();
        // Results are plain text for a model, never HTML.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_undefined_behavior(minijinja::UndefinedBehavior::SemiStrict);
        env.set_fuel(Some(FUEL));
        env.add_template_owned("text", source.to_owned())?;
        check_variables(&env, "text", known)?;
        Ok(Self { env })
    }

    pub(crate) fn render(&self, context: minijinja::Value) -> Result<String, minijinja::Error> {
        self.env.get_template("text")?.render(context)
    }

    /// The text of `tool`'s result. An answer the template cannot render — a field it prints
    /// that the answer lacks, or an answer too large for its loops — is a tool error the
    /// model can act on (no upstream content in it); anything else is internal.
    pub(crate) fn render_result(
        &self,
        context: minijinja::Value,
        tool: &str,
    ) -> Result<String, portcullis_core::ToolError> {
        use minijinja::ErrorKind;
        self.render(context).map_err(|e| match e.kind() {
            ErrorKind::UndefinedError => portcullis_core::ToolError::rejected(format!(
                "the answer for `{tool}` lacks a field its result template prints; the operator's template expects another shape"
            )),
            ErrorKind::OutOfFuel => portcullis_core::ToolError::rejected(format!(
                "the answer for `{tool}` is too large for its result template; narrow the request"
            )),
            _ => portcullis_core::ToolError::internal(format!("rendering the text of `{tool}`"), e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_names_only_what_it_is_given() {
        for (source, ok) in [
            ("{{ data.title }}", true),
            ("{% for r in data or [] %}{{ r.url }}{% endfor %}", true),
            ("{% for i in range(3) %}{{ i }}{% endfor %}", true),
            ("{% set x = data %}{{ x }}", true),
            ("{{ dta.title }}", false),
            ("{{ data }}{{ stdout }}", false),
        ] {
            assert_eq!(
                TextTemplate::compile(source, &["data"]).is_ok(),
                ok,
                "{source}"
            );
        }
        let error = TextTemplate::compile("{{ titel }}", &["data"])
            .err()
            .expect("refused")
            .to_string();
        assert_eq!(
            error,
            "the template uses `titel`, which is not among the variables it is given (`data`)"
        );
        // Rendering: a field the data lacks fails, testing it does not.
        let template = TextTemplate::compile(
            "{% if data.a %}{{ data.a }}{% endif %}|{{ data.b }}",
            &["data"],
        )
        .expect("compiles");
        let data = |v: serde_json::Value| minijinja::context! { data => minijinja::Value::from(minijinja::value::Serde(v)) };
        assert_eq!(
            template
                .render(data(serde_json::json!({ "b": 2 })))
                .expect("renders"),
            "|2"
        );
        assert!(
            template
                .render(data(serde_json::json!({ "a": 1 })))
                .is_err()
        );
        // Nested loops over a large answer run out of fuel instead of holding a thread (the
        // attack review: 100 000 items looped twice kept a worker busy past the timeout).
        let quadratic = TextTemplate::compile(
            "{% for a in data %}{% for b in data %}{% endfor %}{% endfor %}done",
            &["data"],
        )
        .expect("compiles");
        let started = std::time::Instant::now();
        let items: Vec<u32> = (0..100_000).collect();
        let error = quadratic
            .render(data(serde_json::json!(items)))
            .expect_err("out of fuel");
        assert_eq!(error.kind(), minijinja::ErrorKind::OutOfFuel, "{error}");
        // Both are told to the model as what they are, not as internal errors.
        for (template, answer, said) in [
            (&quadratic, serde_json::json!(items), "too large"),
            (&template, serde_json::json!({ "a": 1 }), "lacks a field"),
        ] {
            match template.render_result(data(answer), "t") {
                Err(portcullis_core::ToolError::Rejected(message)) => {
                    assert!(message.contains(said), "{message}");
                }
                other => panic!("{other:?}"),
            }
        }
        eprintln!("out of fuel after {:?}", started.elapsed());
        // Macros may use the names minijinja gives them there.
        assert!(
            TextTemplate::compile(
                "{% macro m() %}{{ varargs }}{% endmacro %}{{ m(data) }}",
                &["data"]
            )
            .is_ok()
        );
    }
}
