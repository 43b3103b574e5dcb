//! `portcullis explain`: what one principal may call and read, with the timeouts and rate
//! limits that apply. Every answer comes from the guard's own resolution
//! (`GuardConfig::tool_rules` and friends, i.e. `Policies::scopes_for`) and the principal's
//! own check (`Principal::missing`), never from a second reading of the config.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use portcullis_config::RateLimit;
use portcullis_server::{ItemRules, Principal};

use portcullis_server::Prepared;

use crate::EX_USAGE;

/// Who to explain.
pub(crate) enum Who {
    /// `--principal key:NAME`: the scopes of that `[[auth.api_keys]]` entry.
    Key(String),
    /// `--scopes a,b`: an ad-hoc set (a JWT with those scopes, say).
    Scopes(Vec<String>),
    /// Neither: the local user (stdio, or loopback HTTP without `[auth]`).
    Local,
}

impl Who {
    /// From the command line's `--principal` and `--scopes`.
    pub(crate) fn from_args(
        principal: Option<String>,
        scopes: Vec<String>,
    ) -> Result<Self, String> {
        match (principal, scopes.is_empty()) {
            (Some(_), false) => Err("give either --principal or --scopes, not both".to_owned()),
            (Some(principal), true) => match principal.strip_prefix("key:") {
                Some(name) if !name.is_empty() => Ok(Self::Key(name.to_owned())),
                _ => Err(format!(
                    "--principal `{principal}`: expected `key:NAME`, the name of an [[auth.api_keys]] entry (for token scopes use --scopes)"
                )),
            },
            (None, false) => Ok(Self::Scopes(
                scopes
                    .iter()
                    .flat_map(|s| s.split(','))
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            )),
            (None, true) => Ok(Self::Local),
        }
    }
}

pub(crate) fn run(path: &Path, who: Who) -> ExitCode {
    let loaded = match crate::load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match render(&loaded, &who) {
        Ok(report) => {
            #[allow(
                clippy::print_stdout,
                reason = "`explain` is a CLI command whose output is its report"
            )]
            {
                print!("{report}");
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("portcullis: {}: {message}", path.display());
            ExitCode::from(EX_USAGE)
        }
    }
}

/// The `[[auth.api_keys]]` entry `name`, or an error naming the keys there are.
pub(crate) fn api_key<'c>(
    config: &'c portcullis_config::Config,
    name: &str,
) -> Result<&'c portcullis_config::ApiKeyConfig, String> {
    config
        .auth
        .api_keys
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = config
                .auth
                .api_keys
                .iter()
                .map(|k| k.name.as_str())
                .collect();
            format!(
                "no API key named `{name}`; keys: {}",
                if names.is_empty() {
                    "none ([[auth.api_keys]] is empty)".to_owned()
                } else {
                    names.join(", ")
                }
            )
        })
}

/// The principal an API key authenticates as: `key:NAME` with the key's scopes (as the
/// authentication layer makes it).
pub(crate) fn key_principal(key: &portcullis_config::ApiKeyConfig) -> Principal {
    Principal::api_key(&key.name, key.scopes.iter().cloned())
}

/// The report for `who`, or why there is none (an unknown key).
fn render(loaded: &Prepared, who: &Who) -> Result<String, String> {
    let Prepared {
        config,
        catalog,
        guard,
        ..
    } = loaded;
    let mut out = String::new();
    let (principal, per_principal) = match who {
        Who::Key(name) => {
            let key = api_key(config, name)?;
            let principal = key_principal(key);
            let _ = writeln!(
                out,
                "principal: {} (API key), scopes: {}",
                principal.id(),
                list_or(&key.scopes, "none")
            );
            (principal, config.limits.per_principal)
        }
        Who::Scopes(scopes) => {
            let _ = writeln!(
                out,
                "principal: any holder of scopes {} (an API key or JWT with exactly these)",
                list_or(scopes, "none")
            );
            (
                Principal::new("scopes", scopes.iter().cloned()),
                config.limits.per_principal,
            )
        }
        Who::Local => {
            let _ = writeln!(
                out,
                "principal: the local user (stdio, or loopback HTTP without [auth]), which has every scope"
            );
            // The per-principal HTTP limit is applied by authentication, which the local user
            // does not pass through.
            (Principal::local_user(), None)
        }
    };
    let _ = writeln!(
        out,
        "requests per principal over HTTP: {}",
        per_principal.map_or_else(|| "no limit".to_owned(), |l| rate(&l))
    );
    let _ = writeln!(
        out,
        "lists: {}",
        if guard.hides_unauthorized() {
            "show only what is allowed below"
        } else {
            "show everything (auth.hide_unauthorized = false); what is not allowed is still refused"
        }
    );

    let allowed = |rules: &ItemRules| principal.missing(&rules.scopes).is_empty();
    let tools: Vec<(String, ItemRules)> = catalog
        .tools()
        .iter()
        .filter_map(|t| Some((t.name.to_string(), guard.tool_rules(catalog, &t.name)?)))
        .collect();
    let resources: Vec<(String, ItemRules)> = catalog
        .resources()
        .iter()
        .filter_map(|r| Some((r.uri.clone(), guard.resource_rules(catalog, &r.uri)?)))
        .collect();
    let templates: Vec<(String, ItemRules)> = catalog
        .resource_templates()
        .iter()
        .filter_map(|t| {
            Some((
                t.uri_template.clone(),
                guard.template_rules(catalog, &t.uri_template)?,
            ))
        })
        .collect();
    let prompts: Vec<(String, ItemRules)> = catalog
        .prompts()
        .iter()
        .filter_map(|p| Some((p.name.clone(), guard.prompt_rules(catalog, &p.name)?)))
        .collect();
    for (title, items) in [
        ("tools", &tools),
        ("resources", &resources),
        ("resource templates", &templates),
        ("prompts", &prompts),
    ] {
        let (yes, no): (Vec<_>, Vec<_>) = items.iter().partition(|(_, rules)| allowed(rules));
        let _ = writeln!(out, "\n{title}: {} of {} allowed", yes.len(), items.len());
        let width = items.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
        for (name, rules) in &yes {
            let limit = rules.rate_limit.map_or_else(
                || "no rate limit".to_owned(),
                |l| format!("rate limit {} per principal", rate(&l)),
            );
            let approval = rules
                .approval
                .map(|mode| format!(", approval by {mode}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {name:<width$}  timeout {} s, {limit}{approval}",
                rules.timeout.as_secs_f64()
            );
        }
        if !no.is_empty() {
            let _ = writeln!(out, "  not allowed:");
            for (name, rules) in &no {
                let missing = principal.missing(&rules.scopes).join(" ");
                let _ = writeln!(out, "    {name:<width$}  needs {missing}");
            }
        }
    }
    Ok(out)
}

fn rate(limit: &RateLimit) -> String {
    format!(
        "{}/min (burst {})",
        limit.per_minute,
        limit.effective_burst()
    )
}

fn list_or(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(" ")
    }
}
