//! `cargo xtask bench`: Portcullis next to a bare rmcp server and the official Python and
//! TypeScript SDK servers, in one run on this machine; also Portcullis with auth on (API key,
//! JWT), and a SQL statement tool next to the same query issued directly with sqlx. A benchmark, not a test: it reports
//! numbers, and fails only when a server answers a request wrongly or Portcullis or bare rmcp
//! cannot run.
//!
//! For each server, one at a time: start it over HTTP, validate one `tools/call`, read its idle
//! RSS, drive it at each concurrency (warm-up, then a fixed duration), read its peak RSS, stop
//! it. Then time stdio start-up (spawn → first response). Results go to stdout as a table and
//! to `target/bench/results.json`.

mod api;
mod auth;
mod load;
mod procfs;
mod report;
mod scaling;
mod servers;
mod sql;
mod stdio;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// Command-line settings of one run.
#[derive(Debug, Clone, serde::Serialize)]
struct Options {
    /// Measured seconds per concurrency point.
    duration_secs: f64,
    /// Unmeasured seconds before each point.
    warmup_secs: f64,
    /// Concurrent connections per point.
    concurrency: Vec<usize>,
    /// Measured stdio start-ups per server (after one unmeasured run).
    stdio_runs: usize,
    /// Threads of the load generator's runtime.
    client_threads: usize,
    /// Skip the Python and TypeScript servers.
    rust_only: bool,
    /// Measure only these rows (all when empty).
    only: Vec<String>,
    /// Skip the scaling table.
    no_scaling: bool,
}

/// Set for the optimised (dist) xtask the dev one hands over to: the binaries are already built.
const BUILT_ENV: &str = "PORTCULLIS_BENCH_BUILT";

const USAGE: &str = "usage: cargo xtask bench [--duration SECS] [--warmup SECS] \
    [--concurrency 1,8,32] [--stdio-runs N] [--client-threads N] [--rust-only] \
    [--only ROW,ROW] [--no-scaling]";

impl Options {
    fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Self> {
        let mut options = Self {
            duration_secs: 5.0,
            warmup_secs: 1.0,
            concurrency: vec![1, 8, 32],
            stdio_runs: 9,
            client_threads: 1,
            rust_only: false,
            only: Vec::new(),
            no_scaling: false,
        };
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("{name} needs a value\n{USAGE}"))
            };
            match arg.as_str() {
                "--duration" => options.duration_secs = positive(&value("--duration")?)?,
                "--warmup" => options.warmup_secs = value("--warmup")?.parse()?,
                "--concurrency" => {
                    options.concurrency = value("--concurrency")?
                        .split(',')
                        .map(|n| n.trim().parse::<usize>())
                        .collect::<Result<_, _>>()
                        .context("--concurrency takes a comma-separated list, e.g. 1,8,32")?;
                }
                "--stdio-runs" => options.stdio_runs = value("--stdio-runs")?.parse()?,
                "--client-threads" => {
                    options.client_threads = value("--client-threads")?.parse()?
                }
                "--rust-only" => options.rust_only = true,
                "--only" => {
                    options.only = value("--only")?
                        .split(',')
                        .map(|name| name.trim().to_owned())
                        .collect();
                }
                "--no-scaling" => options.no_scaling = true,
                other => bail!("unknown argument `{other}`\n{USAGE}"),
            }
        }
        if options.concurrency.is_empty() || options.concurrency.iter().any(|&c| c == 0 || c > 1024)
        {
            bail!("--concurrency values must be between 1 and 1024");
        }
        if !(1..=1000).contains(&options.stdio_runs) {
            bail!("--stdio-runs must be between 1 and 1000");
        }
        if options.client_threads == 0 {
            bail!("--client-threads must be at least 1");
        }
        if !(0.0..=3600.0).contains(&options.warmup_secs) || options.duration_secs > 3600.0 {
            bail!("--duration and --warmup are limited to an hour");
        }
        Ok(options)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration_secs)
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_secs)
    }
}

fn positive(value: &str) -> anyhow::Result<f64> {
    let n: f64 = value
        .parse()
        .with_context(|| format!("`{value}` is not a number"))?;
    if n <= 0.0 {
        bail!("`{value}` must be greater than zero");
    }
    Ok(n)
}

/// Entry point of `cargo xtask bench`; `args` are the arguments after `bench`.
pub fn run(args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let args: Vec<String> = args.collect();
    let options = Options::parse(args.iter().cloned())?;
    let root = crate::workspace_root();
    if std::env::var_os(BUILT_ENV).is_none() {
        crate::cargo(&[
            "build",
            "--profile",
            "dist",
            "-p",
            "portcullis",
            "-p",
            "portcullis-test",
            "-p",
            "portcullis-task-api",
            "-p",
            "xtask",
            "--bins",
        ])?;
        // The smallest deployment, for its size: its own target directory, so it never
        // replaces the binary with every pack.
        let files_only = crate::target_dir().join("files-only");
        crate::cargo(&[
            "build",
            "--profile",
            "dist",
            "-p",
            "portcullis",
            "--no-default-features",
            "--features",
            "files",
            "--target-dir",
            &files_only.to_string_lossy(),
        ])?;
    }
    if cfg!(debug_assertions) {
        // `cargo xtask` is a dev build; an unoptimised HTTP client would be the bottleneck
        // of the measurement, so the optimised xtask just built (the `dist` profile, as
        // shipped binaries are built) runs it.
        let status = command(crate::target_dir().join("dist/xtask"))
            .arg("bench")
            .args(&args)
            .env(BUILT_ENV, "1")
            .status()
            .context("run the dist build of xtask")?;
        if !status.success() {
            bail!("bench failed ({status})");
        }
        return Ok(());
    }
    // The workspace builds reqwest without a crypto provider of its own (the server sets TLS
    // up explicitly); the load generator's plain-HTTP clients use ring's.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let out_dir = crate::target_dir().join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;

    let runtime = if options.client_threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.client_threads)
            .enable_all()
            .build()?
    };
    // A benchmark, not a test: without PostgreSQL its rows say why they are missing.
    let postgres_url = sql::postgres_url();
    let postgres = runtime
        .block_on(sql::prepare_postgres(&postgres_url))
        .map(|version| (postgres_url, version))
        .map_err(|e| format!("PostgreSQL unreachable or unusable: {e:#}"));
    let upstream = runtime
        .block_on(api::start(&out_dir))
        .map_err(|e| format!("the task API (upstream of the HTTP pack rows) did not start: {e:#}"));
    // The gateway rows' upstream: a bare rmcp server over Streamable HTTP, running for the
    // whole lineup (Portcullis fronts it in one row, the load generator calls it in another).
    let mcp_upstream = servers::RunningServer::start(&servers::bare_launch())
        .map_err(|e| format!("the gateway's upstream (bare-rmcp over HTTP) did not start: {e:#}"));
    let lineup = servers::lineup(
        &root,
        &out_dir,
        &options,
        postgres,
        upstream.as_ref(),
        mcp_upstream.as_ref(),
    )?;

    let mut results = Vec::new();
    for server in &lineup.servers {
        if !options.only.is_empty() && !options.only.iter().any(|name| name == server.name) {
            continue;
        }
        let result = match &server.launch {
            Err(reason) => {
                eprintln!("bench: {}: unavailable: {reason}", server.name);
                report::ServerResult::unavailable(server, reason)
            }
            Ok(servers::Target::Direct(direct)) => {
                eprintln!("bench: {}: direct queries", server.name);
                let http = runtime
                    .block_on(sql::measure(direct, &options))
                    .with_context(|| format!("{}: direct benchmark failed", server.name))?;
                report::ServerResult::measured(server, http, None)
            }
            Ok(servers::Target::Running {
                addr,
                pid,
                workload,
            }) => {
                eprintln!("bench: {}: HTTP (already running)", server.name);
                let url = format!("http://{addr}/mcp");
                let http = runtime
                    .block_on(measure_points(
                        &url,
                        *pid,
                        workload,
                        &options,
                        (0, 0),
                        String::new,
                    ))
                    .with_context(|| format!("{}: HTTP benchmark failed", server.name))?;
                report::ServerResult::measured(server, http, None)
            }
            Ok(servers::Target::Mcp(launch)) => {
                eprintln!("bench: {}: HTTP", server.name);
                let http = runtime
                    .block_on(measure_http(launch, &options))
                    .with_context(|| format!("{}: HTTP benchmark failed", server.name))?;
                let stdio = match &launch.stdio {
                    Some(stdio) => {
                        eprintln!("bench: {}: stdio start-up", server.name);
                        Some(
                            stdio::time_to_first_response(stdio, options.stdio_runs).with_context(
                                || format!("{}: stdio benchmark failed", server.name),
                            )?,
                        )
                    }
                    None => None,
                };
                report::ServerResult::measured(server, http, stdio)
            }
        };
        results.push(result);
    }
    drop(upstream);
    drop(mcp_upstream);
    let scaling =
        (!options.no_scaling).then(|| runtime.block_on(scaling::measure(&root, &out_dir)));
    drop(runtime);
    let files_only = crate::target_dir().join("files-only/dist");
    let binaries = scaling::binary_sizes(
        &crate::target_dir().join("dist"),
        files_only
            .join("portcullis")
            .exists()
            .then_some(files_only.as_path()),
        &out_dir,
    );

    let report = report::Report::new(&root, &options, &lineup, results, scaling, binaries);
    report.print();
    let json = serde_json::to_string_pretty(&report)?;
    let path = out_dir.join("results.json");
    write(&path, &format!("{json}\n"))?;
    eprintln!("bench: wrote {}", path.display());
    Ok(())
}

/// Starts the server over HTTP and runs every concurrency point against it.
async fn measure_http(
    launch: &servers::Launch,
    options: &Options,
) -> anyhow::Result<report::HttpResult> {
    let server = servers::RunningServer::start(&launch.http)?;
    let url = format!("http://{}/mcp", server.addr);
    let mut result = measure_points(
        &url,
        server.pid(),
        &launch.workload,
        options,
        (0, 0),
        || server.log_tail(),
    )
    .await?;
    if let Some(process) = result.process.as_mut() {
        (process.stderr_lines, process.stderr_bytes) = server.log_volume();
    }
    Ok(result)
}

/// Every concurrency point against the server at `url` (process `pid`), after one validated
/// call; `tail` says what the server logged last, for errors.
async fn measure_points(
    url: &str,
    pid: u32,
    workload: &load::Workload,
    options: &Options,
    log_volume: (u64, u64),
    tail: impl Fn() -> String,
) -> anyhow::Result<report::HttpResult> {
    // One validated call before anything is measured: a server that answers wrongly fails the
    // run here, with its response in the error.
    load::probe(url, workload).await.with_context(&tail)?;
    let idle = procfs::memory(pid)?;
    let mut points = Vec::new();
    for &concurrency in &options.concurrency {
        let point = load::point(
            url,
            workload,
            pid,
            concurrency,
            options.warmup(),
            options.duration(),
        )
        .await
        .with_context(|| format!("{concurrency} connections\n{}", tail()))?;
        eprintln!(
            "bench:   c={concurrency:<3} {:>9.0} req/s  p50 {:.3} ms  p99 {:.3} ms",
            point.requests_per_sec, point.p50_ms, point.p99_ms
        );
        points.push(point);
    }
    let after = procfs::memory(pid)?;
    let (log_lines, log_bytes) = log_volume;
    Ok(report::HttpResult {
        points,
        process: Some(report::ProcessStats {
            idle_rss_mb: idle.rss_mb(),
            idle_anon_mb: idle.anon_mb(),
            peak_rss_mb: after.hwm_mb(),
            stderr_lines: log_lines,
            stderr_bytes: log_bytes,
        }),
    })
}

/// A command for a program the benchmark runs: the servers under test and their toolchains
/// (cargo, python, npm, node, git).
#[allow(
    clippy::disallowed_methods,
    reason = "xtask spawns the servers it benchmarks and the tools that set them up"
)]
fn command(program: impl AsRef<OsStr>) -> Command {
    Command::new(program)
}

#[allow(
    clippy::disallowed_methods,
    reason = "xtask writes benchmark scripts, configs and results under target/ and examples/demo/"
)]
fn write(path: &Path, content: &str) -> anyhow::Result<()> {
    std::fs::write(path, content).with_context(|| format!("write {}", path.display()))
}
