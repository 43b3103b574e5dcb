//! Text templates of tool results (minijinja), compiled at start-up: the HTTP pack renders a
//! JSON response through one, the command pack a program's output.

/// One compiled template.
pub(crate) struct TextTemplate {
    env: minijinja::Environment<'static>,
}

impl TextTemplate {
    pub(crate) fn compile(source: &str) -> Result<Self, minijinja::Error> {
        let mut env = minijinja::Environment::new();
        // Results are plain text for a model, never HTML.
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.add_template_owned("text", source.to_owned())?;
        Ok(Self { env })
    }

    pub(crate) fn render(&self, context: minijinja::Value) -> Result<String, minijinja::Error> {
        self.env.get_template("text")?.render(context)
    }
}
