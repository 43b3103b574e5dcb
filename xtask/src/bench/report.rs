//! Results: the table printed on stdout and the JSON written to `target/bench/results.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::Options;
use super::load::{Point, TOOL};
use super::servers::{Lineup, Server};
use super::stdio::StdioResult;

/// The measured points of a row (over HTTP, or direct database queries).
#[derive(Debug, Serialize)]
pub struct HttpResult {
    pub points: Vec<Point>,
    /// The server process's memory and output; none for the direct database rows.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessStats>,
}

#[derive(Debug, Serialize)]
pub struct ProcessStats {
    /// `VmRSS` after start-up and one validated call, before any load.
    pub idle_rss_mb: f64,
    /// `VmHWM` after every load point.
    pub peak_rss_mb: f64,
    /// What the server wrote on stderr over the whole run (drained by the harness).
    pub stderr_lines: u64,
    pub stderr_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct ServerResult {
    pub name: &'static str,
    pub description: String,
    pub available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable_reason: Option<String>,
    pub http: Option<HttpResult>,
    pub stdio: Option<StdioResult>,
}

impl ServerResult {
    pub fn unavailable(server: &Server, reason: &str) -> Self {
        Self {
            name: server.name,
            description: server.description.clone(),
            available: false,
            unavailable_reason: Some(reason.to_owned()),
            http: None,
            stdio: None,
        }
    }

    pub fn measured(server: &Server, http: HttpResult, stdio: Option<StdioResult>) -> Self {
        Self {
            name: server.name,
            description: server.description.clone(),
            available: true,
            unavailable_reason: None,
            http: Some(http),
            stdio,
        }
    }

    fn rps(&self, concurrency: usize) -> Option<f64> {
        self.http
            .as_ref()?
            .points
            .iter()
            .find(|p| p.concurrency == concurrency)
            .map(|p| p.requests_per_sec)
    }
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu: Option<String>,
    pub kernel: Option<String>,
    pub date: Option<String>,
    pub git_commit: Option<String>,
    /// Uncommitted changes in the tree that was measured.
    pub git_dirty: Option<bool>,
}

/// Throughput of one row divided by another's, per concurrency.
#[derive(Debug, Serialize)]
pub struct Ratio {
    /// `numerator req/s ÷ against req/s`.
    pub numerator: &'static str,
    pub against: &'static str,
    /// What the ratio shows.
    pub meaning: &'static str,
    pub by_concurrency: BTreeMap<usize, f64>,
}

/// Every ratio the report shows: (numerator, denominator, meaning).
const RATIOS: [(&str, &str, &str); 10] = [
    (
        "portcullis-audit",
        "portcullis-plain",
        "audit log and metrics on vs both off",
    ),
    (
        "portcullis-redis",
        "portcullis-limited",
        "a limit shared in Redis vs this process's buckets",
    ),
    (
        "portcullis",
        "bare-rmcp",
        "Portcullis vs the bare rmcp floor",
    ),
    ("portcullis", "python", "Portcullis vs the Python SDK"),
    (
        "portcullis",
        "typescript",
        "Portcullis vs the TypeScript SDK",
    ),
    (
        "portcullis-apikey",
        "portcullis",
        "auth on (API key) vs auth off",
    ),
    (
        "portcullis-jwt",
        "portcullis",
        "auth on (RS256 JWT) vs auth off",
    ),
    (
        "portcullis-sql-sqlite",
        "direct-sqlite",
        "SQLite statement through Portcullis vs sqlx directly",
    ),
    (
        "portcullis-sql-postgres",
        "direct-postgres",
        "PostgreSQL statement through Portcullis vs sqlx directly",
    ),
    (
        "portcullis-api",
        "direct-api",
        "HTTP pack GET tool through Portcullis vs the same GET sent directly",
    ),
];

#[derive(Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub settings: Options,
    pub workload: String,
    pub load_generator: String,
    pub versions: BTreeMap<String, String>,
    pub servers: Vec<ServerResult>,
    pub throughput_ratios: Vec<Ratio>,
}

impl Report {
    pub fn new(
        root: &Path,
        options: &Options,
        lineup: &Lineup,
        servers: Vec<ServerResult>,
    ) -> Self {
        let find = |name: &str| servers.iter().find(|s| s.name == name);
        let throughput_ratios = RATIOS
            .into_iter()
            .filter_map(|(numerator, against, meaning)| {
                let (top, bottom) = (find(numerator)?, find(against)?);
                let by_concurrency = options
                    .concurrency
                    .iter()
                    .filter_map(|&c| Some((c, top.rps(c)? / bottom.rps(c)?)))
                    .collect::<BTreeMap<_, _>>();
                (!by_concurrency.is_empty()).then_some(Ratio {
                    numerator: top.name,
                    against: bottom.name,
                    meaning,
                    by_concurrency,
                })
            })
            .collect();
        Self {
            machine: machine(root),
            settings: options.clone(),
            workload: format!(
                "HTTP POST /mcp tools/call {TOOL} {{\"path\":\"README.md\"}} on examples/demo/workspace, \
                 protocol 2026-07-28 stateless (MCP-Protocol-Version, Mcp-Method, Mcp-Name headers; \
                 _meta protocolVersion/clientInfo/clientCapabilities); every response checked \
                 (200, JSON-RPC result, not isError). The portcullis-sql-* rows call a SQL \
                 statement tool instead, and the direct-* rows run the same query with sqlx in \
                 this process (every query must return rows); portcullis-api calls an HTTP pack \
                 GET tool and direct-api sends the same GET to the upstream; see each row's \
                 description"
            ),
            load_generator: format!(
                "in-process tokio + reqwest (HTTP/1.1), {} runtime thread(s), one keep-alive \
                 connection per worker, on the same machine as the server",
                options.client_threads
            ),
            versions: lineup.versions.clone(),
            servers,
            throughput_ratios,
        }
    }

    /// The human-readable tables, on stdout.
    #[allow(
        clippy::print_stdout,
        reason = "the results table is the command's output"
    )]
    pub fn print(&self) {
        print!("{}", self.render());
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\nPortcullis benchmark: {} CPU(s) {}, {}, commit {}{}",
            m.nproc,
            m.cpu.as_deref().unwrap_or("?"),
            m.date.as_deref().unwrap_or("?"),
            m.git_commit
                .as_deref()
                .map_or("?", |c| &c[..c.len().min(12)]),
            if m.git_dirty == Some(true) {
                " (dirty tree)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "HTTP tools/call {TOOL}, 2026-07-28 stateless; {} s per point after {} s warm-up; \
             load generator: {} thread(s) in this process, one keep-alive connection per worker\n",
            self.settings.duration_secs, self.settings.warmup_secs, self.settings.client_threads
        );
        let _ = writeln!(
            out,
            "{:<23} {:>5} {:>10} {:>9} {:>9} {:>14} {:>10}",
            "server", "conns", "req/s", "p50 ms", "p99 ms", "srv CPU µs/req", "client CPU"
        );
        for server in &self.servers {
            match &server.http {
                None => {
                    let _ = writeln!(
                        out,
                        "{:<23} unavailable: {}",
                        server.name,
                        server.unavailable_reason.as_deref().unwrap_or("?")
                    );
                }
                Some(http) => {
                    for p in &http.points {
                        let server_cpu = p
                            .server_cpu_us_per_request
                            .map_or_else(|| "-".to_owned(), |cpu| format!("{cpu:.0}"));
                        let _ = writeln!(
                            out,
                            "{:<23} {:>5} {:>10.0} {:>9.3} {:>9.3} {:>14} {:>9.0}%",
                            server.name,
                            p.concurrency,
                            p.requests_per_sec,
                            p.p50_ms,
                            p.p99_ms,
                            server_cpu,
                            p.client_cpu_percent
                        );
                    }
                }
            }
        }

        let _ = writeln!(
            out,
            "\n{:<23} {:>22} {:>12} {:>12} {:>16}",
            "server", "stdio first resp. ms", "idle RSS MB", "peak RSS MB", "stderr under load"
        );
        for server in &self.servers {
            let Some(http) = &server.http else {
                let _ = writeln!(out, "{:<23} unavailable", server.name);
                continue;
            };
            let Some(process) = &http.process else {
                // A direct database row: no server process of its own.
                continue;
            };
            let stdio = server.stdio.as_ref().map_or_else(
                || "-".to_owned(),
                |s| {
                    let method = if s.method == "initialize" {
                        " (init)"
                    } else {
                        ""
                    };
                    format!("{:.1}{method}", s.median_ms)
                },
            );
            let _ = writeln!(
                out,
                "{:<23} {:>22} {:>12.1} {:>12.1} {:>16}",
                server.name,
                stdio,
                process.idle_rss_mb,
                process.peak_rss_mb,
                format!(
                    "{} lines, {:.1} MB",
                    process.stderr_lines,
                    process.stderr_bytes as f64 / 1e6
                )
            );
        }
        let methods: Vec<&str> = self
            .servers
            .iter()
            .filter_map(|s| s.stdio.as_ref().map(|r| r.method))
            .collect();
        let _ = writeln!(
            out,
            "stdio: spawn → one {} request → first response line, median of {} runs after one \
             unmeasured run",
            if methods.iter().all(|&m| m == "server/discover") {
                "2026-07-28 server/discover"
            } else {
                "server/discover (or initialize where marked)"
            },
            self.settings.stdio_runs
        );

        let _ = writeln!(out, "\nThroughput ratios (req/s ÷ req/s):");
        let _ = writeln!(out, "{}", ratio_header(&self.settings.concurrency));
        for ratio in &self.throughput_ratios {
            let mut line = format!(
                "{:<RATIO_WIDTH$}",
                format!("{} / {}", ratio.numerator, ratio.against)
            );
            for c in &self.settings.concurrency {
                let cell = ratio
                    .by_concurrency
                    .get(c)
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
                let _ = write!(line, " {cell:>8}");
            }
            let _ = writeln!(out, "{line}   {}", ratio.meaning);
        }

        let _ = writeln!(out, "\nServers:");
        for server in &self.servers {
            let _ = writeln!(out, "  {:<23} {}", server.name, server.description);
        }
        let versions: Vec<String> = self
            .versions
            .iter()
            .map(|(name, version)| format!("{name} {version}"))
            .collect();
        let _ = writeln!(out, "Versions: {}", versions.join(", "));
        let _ = writeln!(
            out,
            "Notes: the load generator shares the {} CPU(s) with the server (see client CPU); \
             Portcullis's stderr (one JSON line per call at the default info level) goes to a \
             pipe the harness drains in a thread, as a log shipper would; the Rust servers use \
             a multi-threaded runtime, Python (uvicorn) and Node one process each.",
            self.machine.nproc
        );
        out
    }
}

const RATIO_WIDTH: usize = 40;

fn ratio_header(concurrency: &[usize]) -> String {
    let mut header = format!("{:<RATIO_WIDTH$}", "");
    for c in concurrency {
        let _ = write!(header, " {:>8}", format!("c={c}"));
    }
    header
}

fn machine(root: &Path) -> Machine {
    let text = |program: &str, args: &[&str]| -> Option<String> {
        let out = super::command(program)
            .args(args)
            .current_dir(root)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        cpu: std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            }),
        kernel: text("uname", &["-r"]),
        date: text("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        git_commit: text("git", &["rev-parse", "HEAD"]),
        git_dirty: text("git", &["status", "--porcelain"]).map(|s| !s.is_empty()),
    }
}
