//! `{name}` and `{+name}` placeholders: the one parser of every template in the config (an
//! HTTP tool's path, query and body strings, a command's argv words, a resource template's
//! URI). A placeholder is exactly `{` + an optional `+` + a name of ASCII letters, digits
//! and `_` + `}`; `{+name}` is reserved expansion (it may span `/`).
//!
//! Two readings of the same grammar. [`Template::parse`] is for text where braces are also
//! ordinary characters (JSON in a body string, `find -exec {} ;`): a `{` that does not open
//! a placeholder opens literal text that runs to its matching `}` (nested braces counted,
//! braces inside JSON strings not), so a placeholder is never read inside other braces. JSON text in a template
//! stays text: a value can never land inside a JSON string, where it could close the
//! string and add keys. [`Template::parse_uri`] is for URI templates, where
//! a stray brace is a mistake: every `{` must open a placeholder, every `}` close one, and
//! two placeholders need literal text between them (or a URI could not be matched back).

use std::fmt;

/// A piece of a template, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text taken as it is.
    Literal(String),
    /// A placeholder.
    Var {
        /// Its name.
        name: String,
        /// `{+name}`: reserved expansion.
        reserved: bool,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// Why a URI template is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// A `{` without its `}`.
    #[error("a `{{` is never closed")]
    Unclosed,
    /// A `}` without its `{`.
    #[error("a `}}` is never opened")]
    Unopened,
    /// Braces around something that is not a name.
    #[error(
        "`{{{0}}}` is not supported; use `{{name}}` for one segment or `{{+name}}` for the rest"
    )]
    BadName(String),
    /// Two placeholders with nothing between them.
    #[error("two variables must be separated by literal text")]
    Adjacent,
    /// One name twice: which value would it be?
    #[error("`{{{0}}}` appears twice; each variable may appear once")]
    Repeated(String),
}

fn is_name(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// What the `{` at `open` starts: a placeholder (its name, whether reserved, its length),
/// or literal text through the matching `}` (the rest of the text when there is none).
fn span_at(text: &str, open: usize) -> (Option<(&str, bool)>, usize) {
    let after = &text[open + 1..];
    if let Some(end) = after.find('}') {
        let inner = &after[..end];
        let (name, reserved) = match inner.strip_prefix('+') {
            Some(name) => (name, true),
            None => (inner, false),
        };
        if is_name(name) {
            return (Some((name, reserved)), end + 2);
        }
    }
    (None, matching_brace(&text[open..]))
}

/// The length of `text` (which starts with `{`) through its matching `}`: nested braces
/// counted, braces inside `"…"` strings (with `\` escapes) not; all of it when unmatched.
fn matching_brace(text: &str) -> usize {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (at, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

impl Template {
    /// Reads `text`; braces that enclose no name are literal text, with all they enclose.
    pub fn parse(text: &str) -> Self {
        let mut template = Self::default();
        let mut literal = String::new();
        let mut at = 0;
        while let Some(offset) = text[at..].find('{') {
            let open = at + offset;
            let (placeholder, len) = span_at(text, open);
            match placeholder {
                Some((name, reserved)) => {
                    literal.push_str(&text[at..open]);
                    template.push_literal(&mut literal);
                    template.pieces.push(Piece::Var {
                        name: name.to_owned(),
                        reserved,
                    });
                }
                None => literal.push_str(&text[at..open + len]),
            }
            at = open + len;
        }
        literal.push_str(&text[at..]);
        template.push_literal(&mut literal);
        template
    }

    /// Reads a URI template strictly: every brace belongs to a placeholder, and
    /// placeholders are separated by literal text.
    ///
    /// # Errors
    ///
    /// What is malformed, first from the left.
    pub fn parse_uri(text: &str) -> Result<Self, TemplateError> {
        let mut template = Self::default();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let literal = &rest[..open];
            if literal.contains('}') {
                return Err(TemplateError::Unopened);
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or(TemplateError::Unclosed)?;
            let inner = &after[..close];
            let (name, reserved) = match inner.strip_prefix('+') {
                Some(name) => (name, true),
                None => (inner, false),
            };
            if !is_name(name) {
                return Err(TemplateError::BadName(inner.to_owned()));
            }
            if !literal.is_empty() {
                template.pieces.push(Piece::Literal(literal.to_owned()));
            } else if matches!(template.pieces.last(), Some(Piece::Var { .. })) {
                return Err(TemplateError::Adjacent);
            }
            if template.variables().any(|(seen, _)| seen == name) {
                return Err(TemplateError::Repeated(name.to_owned()));
            }
            template.pieces.push(Piece::Var {
                name: name.to_owned(),
                reserved,
            });
            rest = &after[close + 1..];
        }
        if rest.contains('}') {
            return Err(TemplateError::Unopened);
        }
        if !rest.is_empty() {
            template.pieces.push(Piece::Literal(rest.to_owned()));
        }
        Ok(template)
    }

    fn push_literal(&mut self, literal: &mut String) {
        if !literal.is_empty() {
            self.pieces.push(Piece::Literal(std::mem::take(literal)));
        }
    }

    /// The pieces, in order.
    pub fn pieces(&self) -> &[Piece] {
        &self.pieces
    }

    /// The placeholders, in order, as (name, reserved).
    pub fn variables(&self) -> impl Iterator<Item = (&str, bool)> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Var { name, reserved } => Some((name.as_str(), *reserved)),
            Piece::Literal(_) => None,
        })
    }

    /// The placeholder, when the template is exactly one and nothing else.
    pub fn alone(&self) -> Option<(&str, bool)> {
        match self.pieces.as_slice() {
            [Piece::Var { name, reserved }] => Some((name, *reserved)),
            _ => None,
        }
    }

    /// The text with each placeholder replaced by what `value` says; `None` keeps the
    /// placeholder as written.
    ///
    /// # Errors
    ///
    /// The first error `value` returns.
    pub fn expand<E>(
        &self,
        mut value: impl FnMut(&str, bool) -> Result<Option<String>, E>,
    ) -> Result<String, E> {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Var { name, reserved } => match value(name, *reserved)? {
                    Some(text) => out.push_str(&text),
                    None => write_var(&mut out, name, *reserved),
                },
            }
        }
        Ok(out)
    }

    /// The values of the placeholders in `uri` (percent-decoded), or `None` when it does
    /// not fit: `{name}` takes one segment (no `/`), `{+name}` the rest; neither takes `?`
    /// or `#`, nor nothing.
    pub fn matches(&self, uri: &str) -> Option<Vec<(String, String)>> {
        let mut values = Vec::new();
        let mut at = uri;
        let mut pieces = self.pieces.iter().peekable();
        while let Some(piece) = pieces.next() {
            match piece {
                Piece::Literal(literal) => at = at.strip_prefix(literal.as_str())?,
                Piece::Var { name, reserved } => {
                    let end = match pieces.peek() {
                        Some(Piece::Literal(next)) => at.find(next.as_str())?,
                        _ => at.len(),
                    };
                    let raw = &at[..end];
                    if raw.is_empty()
                        || raw.contains(['?', '#'])
                        || (!reserved && raw.contains('/'))
                    {
                        return None;
                    }
                    let value = percent_encoding::percent_decode_str(raw)
                        .decode_utf8()
                        .ok()?
                        .into_owned();
                    values.push((name.clone(), value));
                    at = &at[end..];
                }
            }
        }
        at.is_empty().then_some(values)
    }
}

fn write_var(out: &mut String, name: &str, reserved: bool) {
    out.push('{');
    if reserved {
        out.push('+');
    }
    out.push_str(name);
    out.push('}');
}

/// A piece as written.
impl fmt::Display for Piece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Literal(text) => f.write_str(text),
            Self::Var { name, reserved } => {
                let mut out = String::with_capacity(name.len() + 3);
                write_var(&mut out, name, *reserved);
                f.write_str(&out)
            }
        }
    }
}

/// The template as written.
impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.pieces.iter().try_for_each(|piece| piece.fmt(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text` read leniently, written back with `<name>` / `<+name>` for placeholders.
    fn shape(template: &Template) -> String {
        template
            .expand(|name, reserved| {
                Ok::<_, ()>(Some(format!("<{}{name}>", if reserved { "+" } else { "" })))
            })
            .unwrap_or_default()
    }

    #[test]
    fn lenient_reading_keeps_every_other_brace_as_text() {
        let check = |text: &str, expect: &str| {
            let template = Template::parse(text);
            assert_eq!(shape(&template), expect, "{text:?}");
            assert_eq!(template.to_string(), text, "{text:?} round-trips");
        };
        check("/users/{id}", "/users/<id>");
        check("/files/{+path}", "/files/<+path>");
        check("{a}-{b}", "<a>-<b>");
        check("{a}{b}", "<a><b>");
        check("find . -exec {} ;", "find . -exec {} ;");
        check("{ a }", "{ a }");
        check("{a.b}", "{a.b}");
        check("{+}", "{+}");
        check("{++a}", "{++a}");
        check("{unclosed", "{unclosed");
        check("{unclosed {x}", "{unclosed {x}");
        check("closed}", "closed}");
        check("{x} }{y}", "<x> }<y>");
        // Never a placeholder inside other braces: JSON text stays text.
        check("{{name}}", "{{name}}");
        check(r#"{"id":"{id}"}"#, r#"{"id":"{id}"}"#);
        check(r#"{"a":1} {id}"#, r#"{"a":1} <id>"#);
        check("{a{b}c}", "{a{b}c}");
        check(
            r#"{"meta":{"v":1},"title":"{title}"}"#,
            r#"{"meta":{"v":1},"title":"{title}"}"#,
        );
        check(
            r#"{"a":"}","title":"{title}"}"#,
            r#"{"a":"}","title":"{title}"}"#,
        );
        check(
            r#"{"a":"\"}","t":"{t}"} {id}"#,
            r#"{"a":"\"}","t":"{t}"} <id>"#,
        );
        check("", "");
        check("ünïcödé {ñ} {n}", "ünïcödé {ñ} <n>");
    }

    #[test]
    fn alone_is_exactly_one_placeholder() {
        let alone = |text: &str| {
            Template::parse(text)
                .alone()
                .map(|(n, r)| (n.to_owned(), r))
        };
        assert_eq!(alone("{id}"), Some(("id".to_owned(), false)));
        assert_eq!(alone("{+rest}"), Some(("rest".to_owned(), true)));
        assert_eq!(alone(" {id}"), None);
        assert_eq!(alone("{a}{b}"), None);
        assert_eq!(alone("{}"), None);
    }

    #[test]
    fn uri_templates_are_strict() {
        let check = |text: &str, expect: Result<&str, TemplateError>| {
            let got = Template::parse_uri(text).map(|t| shape(&t));
            assert_eq!(got.as_deref().map_err(Clone::clone), expect, "{text:?}");
        };
        check("users://{id}/profile", Ok("users://<id>/profile"));
        check("code://{+path}", Ok("code://<+path>"));
        check("a://{x}-{y}", Ok("a://<x>-<y>"));
        check("plain://x", Ok("plain://x"));
        check("a://{x}{y}", Err(TemplateError::Adjacent));
        check("a://{x", Err(TemplateError::Unclosed));
        check("a://x}", Err(TemplateError::Unopened));
        check("a://x}/{y}", Err(TemplateError::Unopened));
        check("a://{x.y}", Err(TemplateError::BadName("x.y".to_owned())));
        check("a://{}", Err(TemplateError::BadName(String::new())));
        check("a://{?q}", Err(TemplateError::BadName("?q".to_owned())));
        check("a://{x}{", Err(TemplateError::Unclosed));
        check("a://{x}/{x}", Err(TemplateError::Repeated("x".to_owned())));
        check("a://{x}/{+x}", Err(TemplateError::Repeated("x".to_owned())));
    }

    #[test]
    fn matching_takes_segments_back() {
        let check = |template: &str, uri: &str, expect: Option<&[(&str, &str)]>| {
            let got = Template::parse_uri(template)
                .expect("template")
                .matches(uri);
            let expect = expect.map(|pairs| {
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect::<Vec<_>>()
            });
            assert_eq!(got, expect, "{template} ~ {uri}");
        };
        check(
            "users://{id}/profile",
            "users://42/profile",
            Some(&[("id", "42")]),
        );
        check("users://{id}/profile", "users://42/other", None);
        check("users://{id}/profile", "users:///profile", None);
        check("greeting://{name}", "greeting://a/b", None);
        check(
            "greeting://{name}",
            "greeting://J%C3%BCrgen%20K",
            Some(&[("name", "Jürgen K")]),
        );
        check(
            "code://{+path}",
            "code://src/lib.rs",
            Some(&[("path", "src/lib.rs")]),
        );
        check("greeting://{name}", "greeting://x?y=1", None);
        check("greeting://{name}", "greeting://x#f", None);
        check("a://{x}-{y}", "a://1-2", Some(&[("x", "1"), ("y", "2")]));
        check("a://{x}", "a://%FF", None);
    }

    #[test]
    fn expansion_may_keep_a_placeholder_or_fail() {
        let template = Template::parse("{known}/{unknown}/{+rest}");
        let kept = template
            .expand(|name, _| Ok::<_, ()>((name == "known").then(|| "v".to_owned())))
            .expect("expands");
        assert_eq!(kept, "v/{unknown}/{+rest}");
        let failed = template.expand(|name, _| {
            if name == "unknown" {
                Err(name.to_owned())
            } else {
                Ok(Some(String::new()))
            }
        });
        assert_eq!(failed, Err("unknown".to_owned()));
    }
}
