//! The log filter every Portcullis binary installs (the `portcullis` CLI, the library
//! example, your own): a level from the config applies to Portcullis's crates only, so no
//! value reaches a log line by raising a level.

use std::str::FromStr as _;

/// Portcullis's own crates: a bare level in the log filter applies to these.
const OWN_CRATES: [&str; 4] = [
    "portcullis",
    "portcullis_server",
    "portcullis_packs",
    "portcullis_config",
];

/// Turns the operator's filter into the one installed. A bare level (`debug`) applies to
/// Portcullis's own crates; everything else logs at `warn` at most, and rmcp at `error`,
/// unless named: other crates log message bodies (rmcp), SQL text (sqlparser, sqlx) or
/// headers at their lower levels, and no value may reach a log line by a level change.
pub fn log_filter(spec: &str) -> String {
    let mut directives = Vec::new();
    let mut others = "warn".to_owned();
    let mut names_rmcp = false;
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if directive.contains('=') || directive.contains('[') {
            names_rmcp |= directive.starts_with("rmcp");
            directives.push(directive.to_owned());
        } else if tracing::Level::from_str(directive).is_ok() || directive == "off" {
            for own in OWN_CRATES {
                directives.push(format!("{own}={directive}"));
            }
            // A stricter bare level (`error`, `off`) quiets the others too.
            if matches!(directive.to_ascii_lowercase().as_str(), "error" | "off") {
                others = directive.to_owned();
            }
        } else {
            // A bare target (`sqlx`): the operator names it on purpose.
            names_rmcp |= directive.starts_with("rmcp");
            directives.push(directive.to_owned());
        }
    }
    if !names_rmcp {
        directives.insert(0, "rmcp=error".to_owned());
    }
    // The file watcher's warnings name the files they are about.
    if !spec.contains("notify") {
        directives.insert(0, "notify=error".to_owned());
    }
    directives.insert(0, others);
    directives.join(",")
}

#[cfg(test)]
mod tests {
    use super::log_filter;

    #[test]
    fn a_bare_level_applies_to_portcullis_and_others_stay_quiet() {
        for (spec, expect) in [
            (
                "info",
                "warn,notify=error,rmcp=error,portcullis=info,portcullis_server=info,portcullis_packs=info,portcullis_config=info",
            ),
            (
                "trace",
                "warn,notify=error,rmcp=error,portcullis=trace,portcullis_server=trace,portcullis_packs=trace,portcullis_config=trace",
            ),
            (
                "info,sqlx=debug",
                "warn,notify=error,rmcp=error,portcullis=info,portcullis_server=info,portcullis_packs=info,portcullis_config=info,sqlx=debug",
            ),
            ("rmcp=debug", "warn,notify=error,rmcp=debug"),
            (
                "error",
                "error,notify=error,rmcp=error,portcullis=error,portcullis_server=error,portcullis_packs=error,portcullis_config=error",
            ),
        ] {
            assert_eq!(log_filter(spec), expect, "{spec}");
        }
    }
}
