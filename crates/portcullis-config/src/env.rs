//! `${VAR}` and `${VAR:-default}` expansion inside TOML string values.
//!
//! Expansion happens on parsed string values, never on the raw text, so a secret that
//! contains quotes or newlines cannot change the structure of the document.

use std::borrow::Cow;

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${NAME}` names a variable that is not set and has no `:-default`.
    #[error("environment variable `{0}` is not set (set it, or write `${{{0}:-default}}`)")]
    Unset(String),
    /// A `${` without its closing `}` or with an invalid name.
    #[error(
        "malformed variable reference `{0}`: expected `${{NAME}}` or `${{NAME:-default}}` with NAME of A-Z, a-z, 0-9 and _; write `$${{` for a literal `${{`"
    )]
    Malformed(String),
}

/// Expands every `${VAR}` / `${VAR:-default}` in `input` using `lookup`.
///
/// `$${` is an escape for a literal `${`. Returns the input unchanged (borrowed) when it
/// contains no reference.
///
/// ```
/// use portcullis_config::env::expand;
/// let out = expand("key=${K:-none}", |_| None).unwrap();
/// assert_eq!(out, "key=none");
/// ```
pub fn expand<'a>(
    input: &'a str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Cow<'a, str>, ExpandError> {
    expand_with(input, |name, _| lookup(name))
}

/// Every `${VAR}` in `input`, in order: its name and whether it has a `:-default`.
///
/// ```
/// use portcullis_config::env::references;
/// assert_eq!(
///     references("${A}/${B:-x}/$${C}").unwrap(),
///     [("A".to_owned(), false), ("B".to_owned(), true)]
/// );
/// ```
pub fn references(input: &str) -> Result<Vec<(String, bool)>, ExpandError> {
    let mut found = Vec::new();
    expand_with(input, |name, default| {
        found.push((name.to_owned(), default.is_some()));
        Some(String::new())
    })?;
    Ok(found)
}

/// The one scanner: `visit` gets each reference's name and default and answers its value
/// (`None`: the default, else the reference is unset).
fn expand_with<'a>(
    input: &'a str,
    mut visit: impl FnMut(&str, Option<&str>) -> Option<String>,
) -> Result<Cow<'a, str>, ExpandError> {
    if !input.contains("${") {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
            continue;
        }
        let Some(body_start) = tail.strip_prefix("${") else {
            out.push('$');
            rest = &tail[1..];
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(ExpandError::Malformed(tail.to_owned()));
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(ExpandError::Malformed(format!("${{{body}}}")));
        }
        match (visit(name, default), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(ExpandError::Unset(name.to_owned())),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<&str, ExpandError>) {
        let lookup = |name: &str| match name {
            "TOKEN" => Some("s3cr\"et".to_owned()),
            "EMPTY" => Some(String::new()),
            _ => None,
        };
        let got = expand(input, lookup).map(|s| s.into_owned());
        assert_eq!(got, expect.map(str::to_owned), "input: {input}");
    }

    #[test]
    fn expansion_cases() {
        check("plain", Ok("plain"));
        check("a $ b", Ok("a $ b"));
        check("Bearer ${TOKEN}", Ok("Bearer s3cr\"et"));
        check("${EMPTY:-x}", Ok(""));
        check("${MISSING:-fallback value}", Ok("fallback value"));
        check("${MISSING:-}", Ok(""));
        check("$${TOKEN}", Ok("${TOKEN}"));
        check("${TOKEN}${TOKEN}", Ok("s3cr\"ets3cr\"et"));
        check("${MISSING}", Err(ExpandError::Unset("MISSING".into())));
        check("${TOKEN", Err(ExpandError::Malformed("${TOKEN".into())));
        check(
            "${BAD-NAME}",
            Err(ExpandError::Malformed("${BAD-NAME}".into())),
        );
        check("${}", Err(ExpandError::Malformed("${}".into())));
        check("${1X}", Err(ExpandError::Malformed("${1X}".into())));
    }
}
