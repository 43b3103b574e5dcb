//! `portcullis upstreams diff` and `pin`: what each upstream of the gateway offers now,
//! against the lock file, and accepting it.

#![allow(
    clippy::print_stdout,
    reason = "`upstreams diff` and `pin` are CLI commands whose output is their report"
)]

use std::path::Path;
use std::process::ExitCode;

use portcullis_packs::upstreams::{self, ItemState, Survey};

use crate::{EX_FAILURE, EX_USAGE};

/// Asks the upstreams, in a runtime of its own.
fn surveyed(
    config: &Path,
    only: Option<&str>,
) -> Result<(portcullis_config::Config, Vec<Survey>), ExitCode> {
    let config = portcullis_config::load(config).map_err(|e| {
        eprintln!("portcullis: {e}");
        ExitCode::from(EX_USAGE)
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("portcullis: cannot start a runtime: {e}");
            ExitCode::from(EX_FAILURE)
        })?;
    let surveys = runtime
        .block_on(upstreams::survey(&config, only))
        .map_err(|e| {
            eprintln!("portcullis: {e}");
            ExitCode::from(EX_USAGE)
        })?;
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    Ok((config, surveys))
}

/// `upstreams diff`: one line per item that differs from its pin (and the change of each
/// changed definition, line by line); exit 0 when nothing differs, 1 otherwise.
pub(crate) fn diff(config: &Path, only: Option<&str>) -> ExitCode {
    let (_, surveys) = match surveyed(config, only) {
        Ok(found) => found,
        Err(code) => return code,
    };
    let mut out = String::new();
    use std::fmt::Write as _;
    for survey in &surveys {
        if let Some(error) = &survey.error {
            let _ = writeln!(
                out,
                "upstream `{}`: cannot be asked: {error}",
                survey.upstream
            );
            continue;
        }
        let differing: Vec<_> = survey
            .items
            .iter()
            .filter(|i| i.state != ItemState::Pinned)
            .collect();
        let _ = writeln!(
            out,
            "upstream `{}`: {} items, {} differ from the lock file",
            survey.upstream,
            survey.items.len(),
            differing.len()
        );
        for item in differing {
            let _ = writeln!(
                out,
                "  {} {} `{}` (served as `{}`)",
                item.state.as_str(),
                item.kind,
                item.name,
                item.served_as
            );
            if item.state == ItemState::Changed {
                let pretty = |v: &Option<serde_json::Value>| {
                    v.as_ref()
                        .and_then(|v| serde_json::to_string_pretty(v).ok())
                        .unwrap_or_default()
                };
                let (before, after) = (pretty(&item.pinned), pretty(&item.offered));
                let diff = similar::TextDiff::from_lines(&before, &after);
                for change in diff.iter_all_changes() {
                    let sign = match change.tag() {
                        similar::ChangeTag::Delete => "-",
                        similar::ChangeTag::Insert => "+",
                        similar::ChangeTag::Equal => continue,
                    };
                    let _ = write!(out, "    {sign} {change}");
                }
            }
        }
    }
    print!("{out}");
    if surveys.iter().any(Survey::differs) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `upstreams pin`: writes what the upstreams offer now into the lock file.
pub(crate) fn pin(config: &Path, only: Option<&str>) -> ExitCode {
    let (config, surveys) = match surveyed(config, only) {
        Ok(found) => found,
        Err(code) => return code,
    };
    for survey in &surveys {
        match &survey.error {
            Some(error) => eprintln!(
                "portcullis: upstream `{}` cannot be asked ({error}); its pins are kept",
                survey.upstream
            ),
            None => println!(
                "upstream `{}`: pinned {} items",
                survey.upstream,
                survey
                    .items
                    .iter()
                    .filter(|i| i.state != ItemState::Gone)
                    .count()
            ),
        }
    }
    match upstreams::pin(&config, &surveys) {
        Ok(path) => {
            println!("wrote {}", path.display());
            if surveys.iter().any(|s| s.error.is_some()) {
                ExitCode::from(EX_FAILURE)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("portcullis: {error}");
            ExitCode::from(EX_FAILURE)
        }
    }
}
