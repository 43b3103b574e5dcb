//! The grammar of a log filter (`logging.level`, `PORTCULLIS_LOG`, `--log-level`), checked
//! at load so that a typo is an error, not a filter that silently drops lines.

/// Crates that log message bodies, SQL text, headers or paths at their lower levels, with
/// the most they may log unless a filter names them exactly (`rmcp=debug`): a shorter prefix
/// (`r=trace`, `r[span]=trace`) never raises them.
pub const GUARDED_LOG_TARGETS: [(&str, &str); 9] = [
    ("rmcp", "error"),
    ("notify", "error"),
    ("sqlx", "warn"),
    ("sqlparser", "warn"),
    ("hyper", "warn"),
    ("hyper_util", "warn"),
    ("h2", "warn"),
    ("reqwest", "warn"),
    ("tower_http", "warn"),
];

/// The levels a filter may name.
pub const LOG_LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];

/// Why a log filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogFilterError {
    /// The filter names nothing.
    #[error("the log filter is empty; give a level: {}", LOG_LEVELS.join(", "))]
    Empty,
    /// A bare word that is not a level (`verbose`, `verbos`, `inf`).
    #[error(
        "`{0}` is not a log level; a level is one of {levels}, and one crate's level is written `crate=level` (for example `info,portcullis_packs=debug`)",
        levels = LOG_LEVELS.join(", ")
    )]
    NotALevel(String),
    /// `target=level` whose level is not one.
    #[error(
        "`{directive}`: `{level}` is not a log level; use one of {levels}",
        levels = LOG_LEVELS.join(", ")
    )]
    BadLevel {
        /// The directive as written.
        directive: String,
        /// Its level part.
        level: String,
    },
    /// A span or field filter (`target[span]=level`) without a target would raise every
    /// crate inside that span, including those that log message bodies.
    #[error(
        "`{0}`: a span filter must name its crate first (`portcullis_server[call]=debug`): without one it raises every crate inside that span, some of which log message bodies"
    )]
    SpanWithoutTarget(String),
    /// A span filter whose target is a prefix of a guarded crate (tracing matches targets by
    /// prefix, and a span filter wins over the crate's cap inside its span).
    #[error(
        "`{directive}`: `{target}` would reach `{guarded}` inside that span, which logs message bodies at low levels; name the crate you mean in full"
    )]
    SpanTooBroad {
        /// The directive as written.
        directive: String,
        /// Its target.
        target: String,
        /// The guarded crate it would reach.
        guarded: &'static str,
    },
    /// A span or field filter that does not parse.
    #[error("`{0}` is not a span filter; the form is `crate[span{{field=value}}]=level`")]
    BadSpan(String),
    /// `target=level` whose target is not a module path.
    #[error(
        "`{0}`: the part before `=` must be a crate or module path (letters, digits, `_` and `::`)"
    )]
    BadTarget(String),
}

fn is_level(word: &str) -> bool {
    LOG_LEVELS
        .iter()
        .any(|level| level.eq_ignore_ascii_case(word))
}

fn check_target(target: &str, directive: &str) -> Result<(), LogFilterError> {
    let target_ok = !target.is_empty()
        && target.split("::").all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if target_ok {
        Ok(())
    } else {
        Err(LogFilterError::BadTarget(directive.to_owned()))
    }
}

/// Checks a filter: comma-separated directives, each a level (`info`) or `target=level`
/// (`sqlx=debug`), or a span filter that names its crate (`portcullis_server[call]=debug`;
/// one without a crate would raise every crate inside the span). A bare target (tracing's "everything from this crate") is refused: it is what a
/// misspelt level looks like.
pub fn check_log_filter(spec: &str) -> Result<(), LogFilterError> {
    let directives: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    if directives.is_empty() {
        return Err(LogFilterError::Empty);
    }
    for directive in directives {
        if let Some((target, rest)) = directive.split_once('[') {
            if target.trim().is_empty() {
                return Err(LogFilterError::SpanWithoutTarget(directive.to_owned()));
            }
            let Some((_, after)) = rest.rsplit_once(']') else {
                return Err(LogFilterError::BadSpan(directive.to_owned()));
            };
            let level = match after.trim() {
                "" => None,
                after => match after.strip_prefix('=') {
                    Some(level) => Some(level.trim()),
                    None => return Err(LogFilterError::BadSpan(directive.to_owned())),
                },
            };
            if let Some(level) = level
                && !is_level(level)
            {
                return Err(LogFilterError::BadLevel {
                    directive: directive.to_owned(),
                    level: level.to_owned(),
                });
            }
            check_target(target, directive)?;
            let target = target.trim();
            if let Some((guarded, _)) = GUARDED_LOG_TARGETS
                .iter()
                .find(|(krate, _)| krate.starts_with(target) && *krate != target)
            {
                return Err(LogFilterError::SpanTooBroad {
                    directive: directive.to_owned(),
                    target: target.to_owned(),
                    guarded,
                });
            }
            continue;
        }
        match directive.split_once('=') {
            None if is_level(directive) => {}
            None => return Err(LogFilterError::NotALevel(directive.to_owned())),
            Some((target, level)) => {
                check_target(target, directive)?;
                if !is_level(level.trim()) {
                    return Err(LogFilterError::BadLevel {
                        directive: directive.to_owned(),
                        level: level.trim().to_owned(),
                    });
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_levels_or_target_levels() {
        for (spec, ok) in [
            ("info", true),
            ("DEBUG", true),
            ("info,portcullis_packs=debug", true),
            ("warn,sqlx::query=trace", true),
            ("off", true),
            ("info,rmcp[serve]=debug", true),
            ("portcullis_server[call{item=x}]=trace", true),
            ("info,[serve_inner]=debug", false),
            ("info,[call]=trace", false),
            ("info,[{}]=trace", false),
            ("info,[call]=verbose", false),
            ("info,x[", false),
            ("info,[call", false),
            ("info,x[call]=verbose", false),
            ("info,x[call]junk", false),
            ("r[serve_inner]=trace", false),
            ("rmcp[serve_inner]=debug", true),
            ("r=trace,rmcpx=off", true),
            ("verbose", false),
            ("verbos", false),
            ("info,sqlx", false),
            ("", false),
            (" , ", false),
            ("sqlx=loud", false),
            ("=debug", false),
            ("a b=debug", false),
        ] {
            assert_eq!(check_log_filter(spec).is_ok(), ok, "{spec:?}");
        }
        assert_eq!(
            check_log_filter("verbose").unwrap_err().to_string(),
            "`verbose` is not a log level; a level is one of trace, debug, info, warn, error, off, and one crate's level is written `crate=level` (for example `info,portcullis_packs=debug`)"
        );
    }
}
