//! `cargo xtask conformance`: the official MCP conformance suite against the Portcullis
//! conformance fixture (`examples/conformance`), for both protocol revisions.
//!
//! Installs the pinned suite and a pinned Node 22 from npm into `target/conformance/` (no
//! global install; a stamp file skips reinstalling), builds and starts the fixture on an
//! ephemeral loopback port, runs `--requirements 2025-11-25` and `--requirements 2026-07-28`,
//! then every server scenario the suite lists as an extension's (Tasks, Skills) on each
//! revision (`--scenario NAME --spec-version REV --force`), prints a per-scenario table and
//! the pass counts, and fails when any required or extension scenario fails.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};

/// `@modelcontextprotocol/conformance`: the newest release with frozen per-revision
/// requirement sets (`latest` on npm, 0.1.x, has no 2026-07-28 scenarios).
const SUITE: &str = "@modelcontextprotocol/conformance@0.2.0-alpha.12";
/// The suite needs Node 22+; the per-platform package ships the binary without install scripts.
const NODE_VERSION: &str = "22.23.3";
const REVISIONS: [&str; 2] = ["2025-11-25", "2026-07-28"];
/// Extension scenarios the pinned suite ships as placeholders without checks (it reports
/// them skipped whatever the server does).
const PLACEHOLDERS: [&str; 1] = ["tasks-status-notifications"];

/// The outcome of one scenario.
#[derive(Debug, Default)]
struct Scenario {
    passed: usize,
    failed: usize,
    warnings: usize,
    first_failure: Option<String>,
}

#[allow(
    clippy::disallowed_methods,
    reason = "xtask runs npm, node, cargo and the fixture"
)]
pub fn run() -> anyhow::Result<()> {
    let target = crate::target_dir();
    let dir = target.join("conformance");
    let node = install(&dir)?;
    let suite = dir.join("node_modules/@modelcontextprotocol/conformance");

    crate::cargo(&["build", "--quiet", "-p", "portcullis-conformance-fixture"])?;
    let fixture = target.join("debug/portcullis-conformance-fixture");
    let (mut child, addr) = start_fixture(&fixture)?;
    let url = format!("http://{addr}/mcp");
    eprintln!("fixture listening at {url}");

    let mut all_required_pass = true;
    let mut summary = Vec::new();
    for revision in REVISIONS {
        let results = dir.join("results").join(revision);
        let _ = std::fs::remove_dir_all(&results);
        std::fs::create_dir_all(&results)?;
        let output = Command::new(&node)
            .arg(suite.join("dist/index.js"))
            .args(["server", "--url", &url, "--requirements", revision, "-o"])
            .arg(&results)
            .output()
            .context("run the conformance suite")?;
        std::fs::write(results.join("suite-output.txt"), &output.stdout)?;
        let (required, not_scored) =
            requirements(&suite.join(format!("requirements/{revision}.yaml")))?;
        let outcomes = outcomes(&results)?;
        let (passed, total) = print_table(revision, &required, &not_scored, &outcomes);
        let suite_ok = output.status.success();
        all_required_pass &= suite_ok && passed == total;
        let extensions_passed = not_scored
            .keys()
            .filter(|s| {
                outcomes
                    .get(*s)
                    .is_some_and(|o| o.failed == 0 && o.passed > 0)
            })
            .count();
        summary.push(format!(
            "conformance {revision}: {passed}/{total} required scenarios passed; not scored: {extensions_passed}/{} passed (suite exit: {})",
            not_scored.len(),
            output.status.code().map_or_else(|| "signal".to_owned(), |c| c.to_string())
        ));
        // The extensions' scenarios, each on this revision's wire.
        let extensions = extension_scenarios(&node, &suite)?;
        let results = results.join("extensions");
        std::fs::create_dir_all(&results)?;
        // The Tasks extension (SEP-2663) is built on 2026-07-28 (`resultType`, input-required
        // rounds, `Mcp-Method` headers): its scenarios run on that revision only.
        let extensions: Vec<String> = extensions
            .into_iter()
            .filter(|s| revision == "2026-07-28" || !s.starts_with("tasks-"))
            .collect();
        for scenario in &extensions {
            let output = Command::new(&node)
                .arg(suite.join("dist/index.js"))
                .args(["server", "--url", &url, "--scenario", scenario])
                .args(["--spec-version", revision, "--force", "-o"])
                .arg(&results)
                .output()
                .with_context(|| format!("run the conformance scenario {scenario}"))?;
            std::fs::write(
                results.join(format!("{scenario}-output.txt")),
                &output.stdout,
            )?;
        }
        let extension_outcomes = self::outcomes(&results)?;
        let (passed, skipped) = print_extensions(revision, &extensions, &extension_outcomes);
        all_required_pass &= passed + skipped == extensions.len();
        summary.push(format!(
            "conformance {revision}: {passed}/{} extension scenarios passed ({skipped} skipped by the suite itself)",
            extensions.len()
        ));
    }
    let _ = child.kill();
    let _ = child.wait();
    println_stdout("");
    for line in &summary {
        println_stdout(line);
    }
    if !all_required_pass {
        bail!(
            "a required or extension conformance scenario failed; see the tables above and target/conformance/results/"
        );
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "xtask reports to its terminal")]
fn println_stdout(line: &str) {
    println!("{line}");
}

/// Installs the suite and Node into `dir` unless the stamp says they are there already.
/// Returns the path of the `node` binary.
#[allow(
    clippy::disallowed_methods,
    reason = "xtask runs npm and writes its install stamp"
)]
fn install(dir: &Path) -> anyhow::Result<PathBuf> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => other,
    };
    let node_package = format!("node-{}-{arch}", std::env::consts::OS);
    let node = dir
        .join("node_modules")
        .join(&node_package)
        .join("bin/node");
    let wanted = format!("{SUITE} {node_package}@{NODE_VERSION}\n");
    let stamp = dir.join(".installed");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) && node.exists() {
        return Ok(node);
    }
    std::fs::create_dir_all(dir)?;
    eprintln!(
        "installing {SUITE} and node {NODE_VERSION} into {}",
        dir.display()
    );
    let status = Command::new("npm")
        .args(["install", "--prefix"])
        .arg(dir)
        .args([
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
            SUITE,
        ])
        .arg(format!("{node_package}@{NODE_VERSION}"))
        .status()
        .context("run npm (is Node/npm installed?)")?;
    ensure!(
        status.success(),
        "npm install of the conformance suite failed ({status})"
    );
    ensure!(
        node.exists(),
        "npm installed {node_package} but {} is missing",
        node.display()
    );
    std::fs::write(&stamp, wanted)?;
    Ok(node)
}

/// Starts the fixture and waits for its `listening` log line.
#[allow(clippy::disallowed_methods, reason = "xtask starts the fixture server")]
fn start_fixture(binary: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(binary)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let stderr = child.stderr.take().context("piped stderr")?;
    let (tx, rx) = mpsc::channel();
    // Keep draining stderr for the whole run so the fixture never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(addr) = listening_addr(&line) {
                let _ = tx.send(addr);
                sent = true;
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => Ok((child, addr)),
        Err(_) => {
            let _ = child.kill();
            bail!("the conformance fixture did not report a listening address within 60 s")
        }
    }
}

fn listening_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = value.get("fields")?;
    (fields.get("message")?.as_str()? == "listening")
        .then(|| fields.get("addr")?.as_str().map(str::to_owned))?
}

/// The required server scenarios and the not-scored ones (with their reason) of a revision,
/// from the suite's frozen requirements file.
fn requirements(path: &Path) -> anyhow::Result<(Vec<String>, BTreeMap<String, String>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut required = Vec::new();
    let mut not_scored = BTreeMap::new();
    let mut section = "";
    let mut pending: Option<(String, String)> = None;
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if !line.starts_with(' ') {
            section = line.trim_end_matches(':').trim();
            continue;
        }
        let item = line.trim().trim_start_matches("- ").trim();
        match section {
            "server" => required.push(item.to_owned()),
            "not_scored" => {
                if let Some(scenario) = item.strip_prefix("scenario:") {
                    pending = Some((scenario.trim().to_owned(), String::new()));
                } else if let Some(leg) = item.strip_prefix("leg:") {
                    if let Some(entry) = pending.as_mut() {
                        entry.1 = leg.trim().to_owned();
                    }
                } else if let Some(reason) = item.strip_prefix("reason:")
                    && let Some((scenario, leg)) = pending.take()
                    && leg == "server"
                {
                    not_scored.insert(scenario, reason.trim().to_owned());
                }
            }
            _ => {}
        }
    }
    ensure!(
        !required.is_empty(),
        "no server scenarios found in {}",
        path.display()
    );
    Ok((required, not_scored))
}

/// Reads every `server-<scenario>-<timestamp>/checks.json` under `results`.
fn outcomes(results: &Path) -> anyhow::Result<BTreeMap<String, Scenario>> {
    // The suite names result directories `server-<scenario>-<ISO timestamp, 24 chars>`.
    const TIMESTAMP: usize = "-2026-11-21T01-01-33-599Z".len();
    let mut outcomes = BTreeMap::new();
    for entry in std::fs::read_dir(results)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix("server-") else {
            continue;
        };
        if rest.len() <= TIMESTAMP {
            continue;
        }
        let scenario = rest[..rest.len() - TIMESTAMP].to_owned();
        let checks: Vec<serde_json::Value> =
            serde_json::from_str(&std::fs::read_to_string(entry.path().join("checks.json"))?)?;
        let outcome: &mut Scenario = outcomes.entry(scenario).or_default();
        for check in checks {
            match check["status"].as_str().unwrap_or_default() {
                "SUCCESS" => outcome.passed += 1,
                "FAILURE" => {
                    outcome.failed += 1;
                    if outcome.first_failure.is_none() {
                        let message = check["errorMessage"].as_str().unwrap_or("no message");
                        outcome.first_failure = Some(format!(
                            "{}: {}",
                            check["id"].as_str().unwrap_or("?"),
                            message
                        ));
                    }
                }
                "WARNING" => outcome.warnings += 1,
                _ => {}
            }
        }
    }
    Ok(outcomes)
}

/// Prints the table of one revision; returns (required scenarios passed, required total).
fn print_table(
    revision: &str,
    required: &[String],
    not_scored: &BTreeMap<String, String>,
    outcomes: &BTreeMap<String, Scenario>,
) -> (usize, usize) {
    println_stdout(&format!(
        "\nMCP conformance, server scenarios, revision {revision}"
    ));
    println_stdout(&format!(
        "{:<46} {:<32} {:>6} {:>6} {:>5}  result",
        "scenario", "requirement", "passed", "failed", "warn"
    ));
    let mut passed = 0;
    let rows = required
        .iter()
        .map(|s| (s.as_str(), "required".to_owned()))
        .chain(
            not_scored
                .iter()
                .map(|(s, reason)| (s.as_str(), format!("not scored ({reason})"))),
        );
    for (scenario, requirement) in rows {
        let (result, p, f, w) = match outcomes.get(scenario) {
            Some(o) if o.failed == 0 && o.passed == 0 => ("skipped", 0, 0, o.warnings),
            Some(o) if o.failed == 0 => ("pass", o.passed, o.failed, o.warnings),
            Some(o) => ("FAIL", o.passed, o.failed, o.warnings),
            None => ("NOT RUN", 0, 0, 0),
        };
        if requirement == "required" && result == "pass" {
            passed += 1;
        }
        println_stdout(&format!(
            "{scenario:<46} {requirement:<32} {p:>6} {f:>6} {w:>5}  {result}"
        ));
        if requirement == "required"
            && let Some(message) = outcomes
                .get(scenario)
                .and_then(|o| o.first_failure.as_deref())
        {
            println_stdout(&format!(
                "    {}",
                message.chars().take(300).collect::<String>()
            ));
        }
    }
    (passed, required.len())
}

/// The server scenarios the suite lists as an extension's (`  - NAME [extension]` under
/// "Server scenarios" in `list`).
#[allow(clippy::disallowed_methods, reason = "xtask runs the suite")]
fn extension_scenarios(node: &Path, suite: &Path) -> anyhow::Result<Vec<String>> {
    let output = Command::new(node)
        .arg(suite.join("dist/index.js"))
        .arg("list")
        .output()
        .context("list the conformance scenarios")?;
    ensure!(output.status.success(), "the suite's `list` failed");
    let text = String::from_utf8_lossy(&output.stdout);
    let mut in_server = false;
    let mut scenarios = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_server = line.starts_with("Server scenarios");
            continue;
        }
        if in_server
            && let Some(name) = line
                .trim()
                .strip_prefix("- ")
                .and_then(|rest| rest.strip_suffix(" [extension]"))
        {
            scenarios.push(name.to_owned());
        }
    }
    ensure!(
        !scenarios.is_empty(),
        "the suite lists no extension server scenarios"
    );
    Ok(scenarios)
}

/// Prints the extension scenarios' table of one revision; returns (passed, skipped by the
/// suite: a placeholder scenario with no checks).
fn print_extensions(
    revision: &str,
    scenarios: &[String],
    outcomes: &BTreeMap<String, Scenario>,
) -> (usize, usize) {
    println_stdout(&format!(
        "\nMCP conformance, extension server scenarios, revision {revision}"
    ));
    let (mut passed, mut skipped) = (0, 0);
    for scenario in scenarios {
        let (result, p, f, w) = match outcomes.get(scenario) {
            // Only a scenario the suite itself leaves empty may skip; any other that skips
            // (an extension not declared) fails the run.
            Some(o)
                if o.failed == 0 && o.passed == 0 && PLACEHOLDERS.contains(&scenario.as_str()) =>
            {
                skipped += 1;
                ("skipped", 0, 0, o.warnings)
            }
            Some(o) if o.failed == 0 && o.passed == 0 => ("SKIPPED", 0, 0, o.warnings),
            Some(o) if o.failed == 0 => {
                passed += 1;
                ("pass", o.passed, o.failed, o.warnings)
            }
            Some(o) => ("FAIL", o.passed, o.failed, o.warnings),
            None => ("NOT RUN", 0, 0, 0),
        };
        println_stdout(&format!(
            "{scenario:<46} {:<32} {p:>6} {f:>6} {w:>5}  {result}",
            "extension"
        ));
        if let Some(message) = outcomes
            .get(scenario)
            .and_then(|o| o.first_failure.as_deref())
        {
            println_stdout(&format!(
                "    {}",
                message.chars().take(300).collect::<String>()
            ));
        }
    }
    (passed, skipped)
}
