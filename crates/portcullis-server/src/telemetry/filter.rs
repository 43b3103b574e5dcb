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
/// A guarded crate keeps its cap unless a directive names exactly it or a module of it: a
/// shorter prefix (`r=trace`) does not raise it.
pub fn log_filter(spec: &str) -> String {
    let mut directives = Vec::new();
    let mut others = "warn".to_owned();
    let mut named: Vec<String> = Vec::new();
    for directive in spec.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let target = directive
            .split(['=', '['])
            .next()
            .unwrap_or_default()
            .trim();
        if directive.contains('=') || directive.contains('[') {
            named.push(target.to_owned());
            directives.push(directive.to_owned());
        } else if tracing::Level::from_str(directive).is_ok()
            || directive.eq_ignore_ascii_case("off")
        {
            for own in OWN_CRATES {
                directives.push(format!("{own}={directive}"));
            }
            // A stricter bare level (`error`, `off`) quiets the others too.
            if matches!(directive.to_ascii_lowercase().as_str(), "error" | "off") {
                others = directive.to_owned();
            }
        } else {
            // A bare target (`sqlx`): the operator names it on purpose.
            named.push(target.to_owned());
            directives.push(directive.to_owned());
        }
    }
    let names = |krate: &str| {
        named.iter().any(|t| {
            t == krate
                || t.strip_prefix(krate)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
    };
    let strict = matches!(others.to_ascii_lowercase().as_str(), "error" | "off");
    for (krate, cap) in portcullis_config::GUARDED_LOG_TARGETS.iter().rev() {
        if !names(krate) {
            // A bare `error` or `off` is at least as strict as every cap: it holds for them.
            let cap = if strict { others.as_str() } else { cap };
            directives.insert(0, format!("{krate}={cap}"));
        }
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
                "warn,rmcp=error,notify=error,sqlx=warn,sqlparser=warn,hyper=warn,hyper_util=warn,h2=warn,reqwest=warn,tower_http=warn,portcullis=info,portcullis_server=info,portcullis_packs=info,portcullis_config=info",
            ),
            (
                "trace",
                "warn,rmcp=error,notify=error,sqlx=warn,sqlparser=warn,hyper=warn,hyper_util=warn,h2=warn,reqwest=warn,tower_http=warn,portcullis=trace,portcullis_server=trace,portcullis_packs=trace,portcullis_config=trace",
            ),
            (
                "info,sqlx=debug",
                "warn,rmcp=error,notify=error,sqlparser=warn,hyper=warn,hyper_util=warn,h2=warn,reqwest=warn,tower_http=warn,portcullis=info,portcullis_server=info,portcullis_packs=info,portcullis_config=info,sqlx=debug",
            ),
            (
                "rmcp=debug",
                "warn,notify=error,sqlx=warn,sqlparser=warn,hyper=warn,hyper_util=warn,h2=warn,reqwest=warn,tower_http=warn,rmcp=debug",
            ),
            // `off` (any case) is off for the guarded crates too.
            (
                "OFF",
                "OFF,rmcp=OFF,notify=OFF,sqlx=OFF,sqlparser=OFF,hyper=OFF,hyper_util=OFF,h2=OFF,reqwest=OFF,tower_http=OFF,portcullis=OFF,portcullis_server=OFF,portcullis_packs=OFF,portcullis_config=OFF",
            ),
            // A prefix of a guarded crate does not raise it (the attack review: `r=trace`
            // reached rmcp::service).
            (
                "r=trace,rmcpx=off",
                "warn,rmcp=error,notify=error,sqlx=warn,sqlparser=warn,hyper=warn,hyper_util=warn,h2=warn,reqwest=warn,tower_http=warn,r=trace,rmcpx=off",
            ),
            (
                "error",
                "error,rmcp=error,notify=error,sqlx=error,sqlparser=error,hyper=error,hyper_util=error,h2=error,reqwest=error,tower_http=error,portcullis=error,portcullis_server=error,portcullis_packs=error,portcullis_config=error",
            ),
        ] {
            assert_eq!(log_filter(spec), expect, "{spec}");
        }
    }
}
