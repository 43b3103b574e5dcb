//! Reading a config file: parse with spans, expand `${ENV}` in string values, deserialize,
//! validate; every error carries file, line, column and the key it concerns.

use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::env::{ExpandError, expand};
use crate::model::Config;
use crate::validate::{Issue, validate};

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file was read but is not a valid configuration.
    #[error("{}:{line}:{column}: {}{message}", path.display(), key.as_deref().map(|k| format!("`{k}`: ")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line of the offending key or value.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Dotted key path, when known (`files[0].name`).
        key: Option<String>,
        /// What was wrong and what is allowed.
        message: String,
    },
}

/// Loads and validates the configuration at `path`, expanding `${VAR}` from the process
/// environment. Relative paths inside it resolve against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, |name| std::env::var(name).ok())
}

/// Every environment variable the config at `path` refers to (`${VAR}` in any string
/// value), once each in order of appearance, with whether every reference to it has a
/// `:-default`. Nothing is looked up: `client-config` uses it to list what a client must
/// pass to a server it starts.
pub fn variables(path: &Path) -> Result<Vec<(String, bool)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |span: Option<Range<usize>>, message: String| {
        let (line, column) = span.map_or((1, 1), |s| line_col(&text, s.start));
        ConfigError::Invalid {
            path: path.to_owned(),
            line,
            column,
            key: None,
            message,
        }
    };
    let root = DeTable::parse(&text).map_err(|e| invalid(e.span(), e.message().to_owned()))?;
    fn walk(
        value: &Spanned<DeValue<'_>>,
        out: &mut Vec<(String, bool)>,
    ) -> Result<(), (Range<usize>, ExpandError)> {
        match value.get_ref() {
            DeValue::String(s) => {
                for (name, defaulted) in crate::env::references(s).map_err(|e| (value.span(), e))? {
                    match out.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, all_defaulted)) => *all_defaulted &= defaulted,
                        None => out.push((name, defaulted)),
                    }
                }
            }
            DeValue::Array(items) => {
                for item in items {
                    walk(item, out)?;
                }
            }
            DeValue::Table(table) => {
                for (_, item) in table.iter() {
                    walk(item, out)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let mut out = Vec::new();
    for (_, value) in root.get_ref().iter() {
        walk(value, &mut out).map_err(|(span, e)| invalid(Some(span), e.to_string()))?;
    }
    Ok(out)
}

/// The value a `${VAR}` without a default stands in for when the config is described for a
/// process that will get the real value (a client's entry, a bundle): `<VAR>`.
pub fn placeholder(name: &str) -> String {
    format!("<{name}>")
}

/// Loads the config at `path` for a server another process starts (a client, an installed
/// bundle): `${VAR}`s take this shell's values, and those without a default that it does
/// not set take [`placeholder`]s. Also returns every variable without a default, set here
/// or not: what that process must be given.
pub fn load_with_placeholders(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
    let required: Vec<String> = variables(path)?
        .into_iter()
        .filter(|(_, defaulted)| !defaulted)
        .map(|(name, _)| name)
        .collect();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let config = parse(&text, path, |name| {
        std::env::var(name).ok().or_else(|| {
            required
                .iter()
                .any(|r| r == name)
                .then(|| placeholder(name))
        })
    })?;
    Ok((config, required))
}

/// Parses and validates configuration `text` that came from `origin` (used for messages and
/// to resolve relative paths), looking variables up with `lookup`.
pub fn parse(
    text: &str,
    origin: &Path,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let invalid = |span: Option<Range<usize>>, key: Option<String>, message: String| {
        let (line, column) = span.map_or((1, 1), |s| line_col(text, s.start));
        ConfigError::Invalid {
            path: origin.to_owned(),
            line,
            column,
            key,
            message,
        }
    };

    let mut root =
        DeTable::parse(text).map_err(|e| invalid(e.span(), None, e.message().to_owned()))?;
    let pristine = root.clone();
    expand_table(root.get_mut(), &lookup, &mut Vec::new())
        .map_err(|(span, key, e)| invalid(Some(span), Some(key), e.to_string()))?;

    let mut config = Config::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
        let key = e.span().and_then(|s| key_at(pristine.get_ref(), &s));
        invalid(e.span(), key, e.message().to_owned())
    })?;
    config.base_dir = origin
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);

    validate(&config).map_err(|Issue { key, message }| {
        let span = span_of(pristine.get_ref(), &key);
        invalid(span, Some(key), message)
    })?;
    Ok(config)
}

type ExpandFailure = (Range<usize>, String, ExpandError);

fn expand_table(
    table: &mut DeTable<'_>,
    lookup: &impl Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
) -> Result<(), ExpandFailure> {
    for (key, value) in table.iter_mut() {
        path.push(key.get_ref().to_string());
        expand_value(value, lookup, path)?;
        path.pop();
    }
    Ok(())
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    lookup: &impl Fn(&str) -> Option<String>,
    path: &mut Vec<String>,
) -> Result<(), ExpandFailure> {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(s) => {
            let expanded = expand(s, lookup).map_err(|e| (span, path.join("."), e))?;
            if let std::borrow::Cow::Owned(owned) = expanded {
                *s = std::borrow::Cow::Owned(owned);
            }
        }
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let last = path.pop().unwrap_or_default();
                path.push(format!("{last}[{i}]"));
                let result = expand_value(item, lookup, path);
                path.pop();
                path.push(last);
                result?;
            }
        }
        DeValue::Table(table) => expand_table(table, lookup, path)?,
        _ => {}
    }
    Ok(())
}

/// The dotted key path whose key or value span contains `span.start`.
fn key_at(table: &DeTable<'_>, span: &Range<usize>) -> Option<String> {
    fn walk(table: &DeTable<'_>, at: usize, prefix: &str) -> Option<String> {
        for (key, value) in table.iter() {
            let name = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            if let Some(found) = walk_value(value, at, &name) {
                return Some(found);
            }
            if key.span().contains(&at) || value.span().contains(&at) {
                return Some(name);
            }
        }
        None
    }
    fn walk_value(value: &Spanned<DeValue<'_>>, at: usize, name: &str) -> Option<String> {
        match value.get_ref() {
            DeValue::Table(t) => walk(t, at, name),
            DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                let item_name = format!("{name}[{i}]");
                walk_value(item, at, &item_name)
                    .or_else(|| item.span().contains(&at).then_some(item_name))
            }),
            _ => None,
        }
    }
    walk(table, span.start, "")
}

/// The span of the value at a dotted key path such as `files[1].name` (or of the nearest
/// existing ancestor).
fn span_of(table: &DeTable<'_>, key: &str) -> Option<Range<usize>> {
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    let mut best = None;
    for segment in key.split('.') {
        let (name, index) = match segment.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let scope = match current.map(Spanned::get_ref) {
            None => table,
            Some(DeValue::Table(t)) => t,
            _ => break,
        };
        let Some((k, v)) = scope.iter().find(|(k, _)| k.get_ref() == name) else {
            break;
        };
        best = Some(k.span());
        current = Some(v);
        if let Some(i) = index {
            match v.get_ref() {
                DeValue::Array(items) if i < items.len() => {
                    best = Some(items[i].span());
                    current = Some(&items[i]);
                }
                _ => break,
            }
        } else if !matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_)) {
            best = Some(v.span());
        }
    }
    best
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_err(text: &str, expect: &str) {
        let err = parse(text, Path::new("p.toml"), |name| {
            (name == "SET").then(|| "v".to_owned())
        })
        .expect_err("config should be rejected");
        assert_eq!(err.to_string(), expect);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        check_err(
            "[server]\nname = \"x\"\n[http]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n",
            "p.toml:5:1: `http.lisen`: unknown field `lisen`, expected one of `listen`, `path`, `allowed_hosts`, `allowed_origins`, `max_body_bytes`, `shutdown_grace_secs`, `drain_secs`, `legacy_sessions`, `legacy_sse`, `trusted_proxies`",
        );
        check_err(
            "[server]\nname = \"${NOPE}\"\n",
            "p.toml:2:8: `server.name`: environment variable `NOPE` is not set (set it, or write `${NOPE:-default}`)",
        );
        check_err(
            "[server]\nname = \"x\"\n[[files]]\nname = \"a\"\npath = \".\"\n[[files]]\nname = \"a\"\npath = \"..\"\n",
            "p.toml:7:8: `files[1].name`: root name `a` is used twice; each must be unique",
        );
        check_err(
            "[server]\nname = 3\n",
            "p.toml:2:8: `server.name`: invalid type: integer `3`, expected a string",
        );
        check_err("[server\n", "p.toml:1:8: unclosed table, expected `]`");
        // One key hash under two names would be whichever entry matched last.
        check_err(
            "[server]\nname = \"x\"\n[[auth.api_keys]]\nname = \"alice\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n[[auth.api_keys]]\nname = \"admin\"\nsha256 = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"\n",
            "p.toml:8:10: `auth.api_keys[1].sha256`: key hash (sha256) `aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa` is used twice; each must be unique",
        );
        check_err(
            "[server]\nname = \"x\"\n[http]\ntrusted_proxies = [\"10.0.0.0/8\", \"nginx\"]\n",
            "p.toml:4:34: `http.trusted_proxies[1]`: `nginx` is not a network in CIDR notation (`10.0.0.0/8`, `127.0.0.1/32`)",
        );
    }

    #[test]
    fn env_values_cannot_change_structure() {
        let config = parse(
            "[server]\nname = \"${SET}\"\ninstructions = \"${Q:-a\\\"b}\"\n",
            Path::new("dir/p.toml"),
            |name| (name == "SET").then(|| "x\"\n[http]\nlisten = \"0.0.0.0:1\"".to_owned()),
        )
        .expect("valid");
        assert_eq!(config.server.name, "x\"\n[http]\nlisten = \"0.0.0.0:1\"");
        assert_eq!(config.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.base_dir, PathBuf::from("dir"));
    }
}
