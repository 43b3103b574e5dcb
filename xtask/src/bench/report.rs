//! Results: the table printed on stdout and the JSON written to `target/bench/results.json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::Options;
use super::load::{Point, TOOL};
use super::scaling::{BinarySize, Scaling};
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
    /// `RssAnon` at the same moment: the process's own memory, without mapped code.
    pub idle_anon_mb: f64,
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
const RATIOS: [(&str, &str, &str); 25] = [
    (
        "portcullis-full",
        "bare-rmcp",
        "the full production stack vs the bare rmcp floor",
    ),
    (
        "portcullis-full",
        "portcullis",
        "the full production stack vs the defaults",
    ),
    (
        "bare-rmcp",
        "axum-ceiling",
        "bare rmcp vs plain axum + JSON (no MCP)",
    ),
    (
        "portcullis",
        "axum-ceiling",
        "Portcullis vs plain axum + JSON (no MCP)",
    ),
    (
        "portcullis-full",
        "python",
        "the full stack vs the Python SDK",
    ),
    (
        "portcullis-full",
        "typescript",
        "the full stack vs the TypeScript SDK",
    ),
    (
        "portcullis-sql-sqlite",
        "bare-rmcp-sql",
        "SQLite statement tool vs the same sqlx statement in bare rmcp",
    ),
    (
        "portcullis-sql-sqlite",
        "python-sql",
        "SQLite statement tool vs the Python SDK tutorial server",
    ),
    (
        "portcullis-api",
        "bare-rmcp-api",
        "HTTP pack GET tool vs the same GET in bare rmcp + reqwest",
    ),
    (
        "portcullis-gateway",
        "upstream-direct",
        "an upstream MCP server's tool through the gateway vs the upstream called directly",
    ),
    (
        "portcullis-sql-postgres",
        "bare-rmcp-postgres",
        "PostgreSQL statement tool vs the same sqlx statement and transaction in bare rmcp",
    ),
    (
        "portcullis-sql-postgres",
        "python-sql",
        "PostgreSQL statement tool vs the Python SDK tutorial server (SQLite)",
    ),
    (
        "portcullis-jwt",
        "portcullis-apikey",
        "a JWT (verified-token cache) vs an API key",
    ),
    (
        "portcullis-audit",
        "portcullis",
        "the audit log on vs off (metrics on in both)",
    ),
    (
        "portcullis-gateway",
        "portcullis",
        "an upstream's tool through the gateway vs a pack's tool on the same stack",
    ),
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaling: Option<Scaling>,
    pub binaries: Vec<BinarySize>,
    /// What each production layer adds to p50 at one connection.
    pub layers: Vec<LayerCost>,
    /// Issue 27's targets, each met or not (none: not measured in this run).
    pub targets: Vec<TargetCheck>,
}

#[derive(Debug, Serialize)]
pub struct TargetCheck {
    pub target: String,
    pub measured: String,
    pub met: Option<bool>,
}

impl Report {
    pub fn new(
        root: &Path,
        options: &Options,
        lineup: &Lineup,
        servers: Vec<ServerResult>,
        scaling: Option<Scaling>,
        binaries: Vec<BinarySize>,
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
            .collect::<Vec<_>>();
        let layers = layer_costs(&servers);
        let targets = targets(
            &servers,
            &throughput_ratios,
            &layers,
            scaling.as_ref(),
            &binaries,
        );
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
            scaling,
            binaries,
            layers,
            targets,
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
            "\n{:<23} {:>22} {:>12} {:>13} {:>12} {:>16}",
            "server",
            "stdio first resp. ms",
            "idle RSS MB",
            "(anon) MB",
            "peak RSS MB",
            "stderr under load"
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
                "{:<23} {:>22} {:>12.1} {:>13.1} {:>12.1} {:>16}",
                server.name,
                stdio,
                process.idle_rss_mb,
                process.idle_anon_mb,
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

        render_extra(&mut out, self);

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

/// What one production layer adds to the median latency at one connection: the p50 of the
/// row with it minus the p50 of the row without it (the same run).
#[derive(Debug, Serialize)]
pub struct LayerCost {
    pub layer: &'static str,
    pub with: &'static str,
    pub without: &'static str,
    pub added_p50_us: f64,
}

/// The layers and the pair of rows that differ by exactly that layer.
const LAYERS: [(&str, &str, &str); 5] = [
    ("audit", "portcullis-audit", "portcullis"),
    ("local limits", "portcullis-limited", "portcullis-apikey"),
    ("auth (API key)", "portcullis-apikey", "portcullis"),
    ("metrics", "portcullis", "portcullis-plain"),
    ("log line", "portcullis", "portcullis-warn"),
];

/// Most a layer may add to p50 at one connection.
const LAYER_BUDGET_US: f64 = 10.0;

fn layer_costs(servers: &[ServerResult]) -> Vec<LayerCost> {
    let p50 = |name: &str| {
        servers
            .iter()
            .find(|s| s.name == name)?
            .http
            .as_ref()?
            .points
            .iter()
            .find(|p| p.concurrency == 1)
            .map(|p| p.p50_ms)
    };
    LAYERS
        .into_iter()
        .filter_map(|(layer, with, without)| {
            Some(LayerCost {
                layer,
                with,
                without,
                added_p50_us: (p50(with)? - p50(without)?) * 1000.0,
            })
        })
        .collect()
}

/// Issue 27's targets against this run's numbers.
fn targets(
    servers: &[ServerResult],
    ratios: &[Ratio],
    layers: &[LayerCost],
    scaling: Option<&Scaling>,
    binaries: &[BinarySize],
) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let mut check = |target: &str, measured: Option<(String, bool)>| {
        let (measured, met) = match measured {
            Some((text, met)) => (text, Some(met)),
            None => ("not measured in this run".to_owned(), None),
        };
        checks.push(TargetCheck {
            target: target.to_owned(),
            measured,
            met,
        });
    };
    let ratio = |numerator: &str, against: &str| {
        ratios
            .iter()
            .find(|r| r.numerator == numerator && r.against == against)
    };
    // Every concurrency at least `floor`, or the given ones.
    let at_least = |numerator: &str, against: &str, floors: &[(Option<usize>, f64)]| {
        let ratio = ratio(numerator, against)?;
        // A floor for a concurrency this run did not measure: not measured.
        if floors
            .iter()
            .any(|(at, _)| at.is_some_and(|at| !ratio.by_concurrency.contains_key(&at)))
        {
            return None;
        }
        let mut text = Vec::new();
        let mut met = true;
        for (&c, &r) in &ratio.by_concurrency {
            let floor = floors
                .iter()
                .find(|(at, _)| at.is_none_or(|at| at == c))
                .map(|&(_, floor)| floor);
            text.push(format!("c={c} {r:.2}"));
            if let Some(floor) = floor {
                met &= r >= floor;
            }
        }
        Some((text.join(", "), met))
    };
    for (layer, with, without) in LAYERS {
        check(
            &format!("{layer} adds ≤ {LAYER_BUDGET_US} µs to p50 at c=1 ({with} − {without})"),
            layers.iter().find(|l| l.layer == layer).map(|l| {
                (
                    format!("{:+.1} µs", l.added_p50_us),
                    l.added_p50_us <= LAYER_BUDGET_US,
                )
            }),
        );
    }
    check(
        "portcullis-full ≥ 0.9× bare-rmcp at every concurrency",
        at_least("portcullis-full", "bare-rmcp", &[(None, 0.9)]),
    );
    check(
        "portcullis-audit ≥ 0.95× portcullis-plain at every concurrency",
        at_least("portcullis-audit", "portcullis-plain", &[(None, 0.95)]),
    );
    check(
        "portcullis-jwt ≥ 0.95× portcullis-apikey at every concurrency",
        at_least("portcullis-jwt", "portcullis-apikey", &[(None, 0.95)]),
    );
    check(
        "portcullis-redis ≥ 0.8× portcullis-limited at every concurrency",
        at_least("portcullis-redis", "portcullis-limited", &[(None, 0.8)]),
    );
    check(
        "portcullis-sql-sqlite ≥ 0.8× bare-rmcp-sql at every concurrency",
        at_least("portcullis-sql-sqlite", "bare-rmcp-sql", &[(None, 0.8)]),
    );
    check(
        "portcullis-sql-postgres ≥ 0.8× bare-rmcp-postgres at every concurrency",
        at_least(
            "portcullis-sql-postgres",
            "bare-rmcp-postgres",
            &[(None, 0.8)],
        ),
    );
    check(
        "portcullis-sql-sqlite ≥ 10× python-sql at 32 connections",
        at_least("portcullis-sql-sqlite", "python-sql", &[(Some(32), 10.0)]),
    );
    check(
        "portcullis-gateway ≥ 0.7× upstream-direct at 8 and 32 connections",
        at_least(
            "portcullis-gateway",
            "upstream-direct",
            &[(Some(8), 0.7), (Some(32), 0.7)],
        ),
    );
    let find = |name: &str| servers.iter().find(|s| s.name == name);
    let process = |name: &str| find(name)?.http.as_ref()?.process.as_ref();
    check(
        "idle RSS of the demo profile ≤ 15 MB",
        process("portcullis").map(|p| {
            (
                format!(
                    "{:.1} MB ({:.1} MB of it the process's own, the rest mapped code)",
                    p.idle_rss_mb, p.idle_anon_mb
                ),
                p.idle_rss_mb <= 15.0,
            )
        }),
    );
    check(
        "stripped binary with every pack ≤ 25 MB",
        binaries
            .iter()
            .find(|b| b.every_pack)
            .map(|b| (format!("{:.1} MB", b.stripped_mb), b.stripped_mb <= 25.0)),
    );
    check(
        "stripped binary with the files pack only ≤ 12 MB",
        binaries
            .iter()
            .find(|b| !b.every_pack)
            .map(|b| (format!("{:.1} MB", b.stripped_mb), b.stripped_mb <= 12.0)),
    );
    check(
        "Portcullis's cost per idle 2025 session ≤ 10 KiB above bare rmcp's",
        scaling.and_then(|s| {
            let per = |server: &str| {
                s.sessions
                    .iter()
                    .filter(|p| p.server == server)
                    .max_by_key(|p| p.sessions)?
                    .kib_per_session
            };
            let (ours, bare) = (per("portcullis")?, per("bare-rmcp")?);
            Some((
                format!(
                    "{ours:.1} KiB vs {bare:.1} KiB per session ({:+.1} KiB)",
                    ours - bare
                ),
                ours - bare <= 10.0,
            ))
        }),
    );
    check(
        "40 hostile listen streams ≤ 150 MB RSS",
        scaling.and_then(|s| s.hostile_streams.as_ref()).map(|h| {
            (
                format!("{:.1} MB with {} streams held unread", h.rss_mb, h.streams),
                h.rss_mb <= 150.0,
            )
        }),
    );
    check(
        "stdio time to first response ≤ 3 ms median",
        find("portcullis")
            .and_then(|s| s.stdio.as_ref())
            .map(|s| (format!("{:.1} ms", s.median_ms), s.median_ms <= 3.0)),
    );
    check(
        "tools/list with 1000 tools ≤ 5 ms (p50)",
        scaling
            .and_then(|s| s.tools.iter().find(|t| t.tools == 1000))
            .map(|t| (format!("{:.2} ms", t.list_p50_ms), t.list_p50_ms <= 5.0)),
    );
    check(
        "fan-out to 1000 subscribers: last delivery ≤ 100 ms after the first",
        scaling
            .and_then(|s| s.fanout.iter().find(|f| f.subscribers == 1000))
            .map(|f| {
                let spread = f.last_ms - f.first_ms;
                (
                    format!(
                        "first {:.1} ms, last {:.1} ms after the write ({spread:.1} ms apart)",
                        f.first_ms, f.last_ms
                    ),
                    spread <= 100.0,
                )
            }),
    );
    check(
        "resources/list of 10 000 notes, every page, ≤ 100 ms (p50)",
        scaling.and_then(|s| s.notes_list.as_ref()).map(|n| {
            (
                format!("{:.1} ms for {} pages", n.all_pages_p50_ms, n.pages),
                n.all_pages_p50_ms <= 100.0,
            )
        }),
    );
    checks
}

/// The scaling table, the binary sizes and the targets, as text.
fn render_extra(out: &mut String, report: &Report) {
    if let Some(scaling) = &report.scaling {
        let _ = writeln!(out, "\nScaling (c=1 latencies, p50 of 300 requests):");
        let _ = writeln!(out, "  idle RSS per pack:");
        for pack in &scaling.idle_rss_by_pack {
            let _ = writeln!(
                out,
                "    {:<30} {:>7.1} MB ({:.1} MB anon)",
                pack.config, pack.idle_rss_mb, pack.idle_anon_mb
            );
        }
        let _ = writeln!(
            out,
            "  {:>6} {:>16} {:>12} {:>16}",
            "tools", "tools/list ms", "list bytes", "tools/call ms"
        );
        for t in &scaling.tools {
            let _ = writeln!(
                out,
                "  {:>6} {:>16.3} {:>12} {:>16.3}",
                t.tools, t.list_p50_ms, t.list_bytes, t.call_p50_ms
            );
        }
        let _ = writeln!(
            out,
            "  {:<11} {:>9} {:>10} {:>14} {:>16}",
            "server", "sessions", "RSS MB", "KiB/session", "opened in s"
        );
        for p in &scaling.sessions {
            let per = p
                .kib_per_session
                .map_or_else(|| "-".to_owned(), |k| format!("{k:.1}"));
            let _ = writeln!(
                out,
                "  {:<11} {:>9} {:>10.1} {:>14} {:>16.2}",
                p.server, p.sessions, p.rss_mb, per, p.open_secs
            );
        }
        let _ = writeln!(
            out,
            "  {:>12} {:>14} {:>14}   (note changed on disk → notifications/resources/updated \
             on each stream, debounce 20 ms included, median of rounds)",
            "subscribers", "first ms", "last ms"
        );
        for f in &scaling.fanout {
            let _ = writeln!(
                out,
                "  {:>12} {:>14.1} {:>14.1}",
                f.subscribers, f.first_ms, f.last_ms
            );
        }
        if let Some(h) = &scaling.hostile_streams {
            let _ = writeln!(
                out,
                "  {} hostile listen streams: idle {:.1} MB, peak {:.1} MB ({} held open unread)",
                h.streams, h.idle_rss_mb, h.rss_mb, h.held_open
            );
        }
        if let Some(n) = &scaling.notes_list {
            let _ = writeln!(
                out,
                "  resources/list on {} notes: first page ({} items) p50 {:.2} ms; all {} pages \
                 p50 {:.1} ms",
                n.notes, n.first_page_items, n.first_page_p50_ms, n.pages, n.all_pages_p50_ms
            );
        }
        for failure in &scaling.failures {
            let _ = writeln!(out, "  not measured: {failure}");
        }
    }
    for b in &report.binaries {
        let _ = writeln!(
            out,
            "\nBinary: {} {:.1} MB stripped ({:.1} MB as built): {}",
            b.binary, b.stripped_mb, b.as_built_mb, b.features
        );
    }
    if !report.layers.is_empty() {
        let _ = writeln!(
            out,
            "\nAdded p50 at one connection, per layer (row − row without it):"
        );
        for l in &report.layers {
            let _ = writeln!(
                out,
                "  {:<14} {:>+8.1} µs   {} − {}",
                l.layer, l.added_p50_us, l.with, l.without
            );
        }
    }
    let _ = writeln!(out, "\nTargets (issue 27):");
    for t in &report.targets {
        let mark = match t.met {
            Some(true) => "met    ",
            Some(false) => "NOT met",
            None => "-      ",
        };
        let _ = writeln!(out, "  {mark}  {}: {}", t.target, t.measured);
    }
}
