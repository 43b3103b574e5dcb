//! `portcullis check`: the config as the server would serve it (its tools with their risk
//! and scopes, resources, prompts), the warnings that depend on the environment on stderr,
//! and with `--connect` every dependency's probe (`Readiness::probe`).

use std::process::ExitCode;

use portcullis_server::{Prepared, Transport};

use crate::{EX_FAILURE, EX_UNAVAILABLE, load};

pub(crate) fn run(path: &std::path::Path, connect: bool) -> ExitCode {
    let loaded = match load(path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let report = render_check(&loaded);
    #[allow(
        clippy::print_stdout,
        reason = "`check` is a CLI command whose output is its report"
    )]
    {
        print!("{report}");
    }
    // Warnings depend on the environment (database grants, file permissions, installed
    // programs), so they go to stderr and leave the report on stdout stable.
    if let Err(error) = loaded.check_listener(Transport::Http) {
        eprintln!(
            "portcullis: warning: `serve` over HTTP would refuse this config: {error} (`serve --stdio` serves it)"
        );
    }
    for warning in portcullis_config::warnings(&loaded.config) {
        eprintln!("portcullis: warning: {warning}");
    }
    #[cfg(feature = "command")]
    for (tool, program, found) in portcullis_packs::command::programs(&loaded.config) {
        match found {
            Some(path) => eprintln!(
                "portcullis: command `{tool}` runs `{program}` = {}",
                path.display()
            ),
            None => eprintln!(
                "portcullis: warning: command `{tool}`: `{program}` is not installed (not found in its search path)"
            ),
        }
    }
    #[cfg(feature = "sql")]
    for warning in portcullis_packs::sql::credential_warnings(&loaded.config) {
        eprintln!("portcullis: warning: {warning}");
    }
    // A policy for an upstream's tool is accepted before the upstream has been listed; one
    // that names no tool it serves now may be a typo.
    for name in loaded.config.tools.keys() {
        if loaded.catalog.tool(name).is_none() {
            eprintln!(
                "portcullis: warning: [tools.\"{name}\"] names no tool served now (no upstream has listed it yet, or its name is misspelt); `check --connect` lists what the upstreams offer"
            );
        }
    }
    if connect {
        return check_connect(&loaded);
    }
    ExitCode::SUCCESS
}

/// `check --connect`: every dependency's probe, one line each on stdout (`ok` with what was
/// checked, or each problem with its root cause); exit 69 when one cannot be used.
fn check_connect(loaded: &Prepared) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portcullis: cannot start a runtime: {error}");
            return ExitCode::from(EX_FAILURE);
        }
    };
    let probes = runtime.block_on(loaded.catalog.probe());
    let mut out = String::from("\nconnect:\n");
    let mut failed = 0;
    use std::fmt::Write as _;
    if probes.is_empty() {
        let _ = writeln!(out, "  nothing to connect to");
    }
    for (name, result) in probes {
        match result {
            Ok(what) => {
                let _ = writeln!(out, "  ok      {name}: {what}");
            }
            Err(problems) => {
                for problem in problems {
                    failed += 1;
                    let _ = match &problem.cause {
                        Some(cause) => {
                            writeln!(out, "  FAILED  {name}: {}: {cause}", problem.reason)
                        }
                        None => writeln!(out, "  FAILED  {name}: {}", problem.reason),
                    };
                }
            }
        }
    }
    #[allow(
        clippy::print_stdout,
        reason = "`check --connect` reports on stdout, after the config report"
    )]
    {
        print!("{out}");
    }
    if failed > 0 {
        eprintln!("portcullis: {failed} problem(s) found connecting to this config's sources");
        return ExitCode::from(EX_UNAVAILABLE);
    }
    ExitCode::SUCCESS
}

fn render_check(
    Prepared {
        config,
        catalog,
        guard,
        ..
    }: &Prepared,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "config ok: {}", config.server.name);
    let _ = writeln!(
        out,
        "http: {}{} (legacy sessions: {})",
        config.http.listen, config.http.path, config.http.legacy_sessions
    );
    let auth = &config.auth;
    let auth_line = match (auth.api_keys.len(), &auth.jwt) {
        (0, None) => "none (loopback only)".to_owned(),
        (keys, None) => format!("{keys} API key(s)"),
        (0, Some(jwt)) => format!("JWT from {}", jwt.issuer),
        (keys, Some(jwt)) => format!("{keys} API key(s), JWT from {}", jwt.issuer),
    };
    let _ = writeln!(out, "auth: {auth_line}");

    let _ = writeln!(out, "\ntools ({}):", catalog.tools().len());
    for tool in catalog.tools() {
        let annotations = tool.annotations.clone().unwrap_or_default();
        let risk = if annotations.read_only_hint == Some(true) {
            "read-only"
        } else if annotations.destructive_hint == Some(true) {
            "WRITES (destructive, needs confirm)"
        } else {
            "writes"
        };
        let scopes = guard.required_scopes(&tool.name);
        if scopes.is_empty() {
            let _ = writeln!(out, "  {:<16} {risk}", tool.name);
        } else {
            let _ = writeln!(
                out,
                "  {:<16} {risk}; needs scope(s) {}",
                tool.name,
                scopes.join(" ")
            );
        }
    }
    let needs = |scopes: &[String]| {
        if scopes.is_empty() {
            String::new()
        } else {
            format!("; needs scope(s) {}", scopes.join(" "))
        }
    };
    let _ = writeln!(out, "\nresources ({}):", catalog.resources().len());
    for resource in catalog.resources() {
        let scopes = guard.resource_scopes(catalog, &resource.uri);
        let _ = writeln!(out, "  {}{}", resource.uri, needs(&scopes));
    }
    let _ = writeln!(
        out,
        "\nresource templates ({}):",
        catalog.resource_templates().len()
    );
    for template in catalog.resource_templates() {
        let scopes = guard.template_scopes(catalog, &template.uri_template);
        let _ = writeln!(out, "  {}{}", template.uri_template, needs(&scopes));
    }
    let _ = writeln!(out, "\nprompts ({}):", catalog.prompts().len());
    for prompt in catalog.prompts() {
        let args: Vec<String> = prompt
            .arguments
            .iter()
            .flatten()
            .map(|a| {
                if a.required == Some(true) {
                    a.name.clone()
                } else {
                    format!("{}?", a.name)
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "  {}({}){}",
            prompt.name,
            args.join(", "),
            needs(guard.prompt_scopes(&prompt.name))
        );
    }
    if !config.upstreams.is_empty() {
        #[cfg(feature = "upstreams")]
        let pinned = portcullis_packs::upstreams::pinned(config);
        #[cfg(not(feature = "upstreams"))]
        let pinned: std::collections::BTreeMap<String, Vec<()>> = std::collections::BTreeMap::new();
        let _ = writeln!(out, "\nupstreams ({}):", config.upstreams.len());
        for upstream in &config.upstreams {
            let how = match (&upstream.command, &upstream.url) {
                (Some(argv), _) => format!("stdio `{}`", argv.join(" ")),
                (None, Some(url)) => format!("streamable HTTP {url}"),
                (None, None) => String::new(),
            };
            let items = pinned.get(&upstream.name).map_or(0, Vec::len);
            let state = if items == 0 {
                "nothing pinned yet (its first contact pins what it offers)".to_owned()
            } else {
                format!(
                    "{items} item(s) pinned; `check --connect` compares them with what it offers now"
                )
            };
            let _ = writeln!(out, "  {}: {how}; {state}", upstream.name);
        }
        for item in catalog.withheld() {
            let _ = writeln!(
                out,
                "  WITHHELD {} `{}` ({}): {}",
                item.kind, item.name, item.source, item.reason
            );
        }
    }
    out
}
