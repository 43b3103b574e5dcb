//! The server, assembled once: a config and a catalog source become the guard, the HTTP
//! settings, the audit log, the cluster, metrics and the handler, in one order, here. The
//! `portcullis` binary, config reload and every embedding go through [`Server`], so none of
//! them can lose part of the production stack by wiring it differently.
//!
//! Two stages: [`Server::prepare`] checks a config against its catalog and opens nothing
//! (what `portcullis check` and a reload run); [`Prepared::start`] opens what the config
//! names (audit log, Redis, metrics) inside the Tokio runtime. [`Server::run`] then serves
//! one transport until `shutdown`, reloading on SIGHUP (and on file changes with
//! `reload.watch`) when it was told where its config lives ([`Prepared::reload_from`]).

mod reload;

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_config::Config;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::auth::AuthState;
use crate::cluster::Cluster;
use crate::transport::http::HttpOptions;
use crate::transport::stdio::StdioOptions;
use crate::transport::{self, TransportError};
use crate::{BoxError, Catalog, GuardConfig, PortcullisHandler, ServerIdentity};

/// Builds the catalog a config describes: at start-up and again at every reload.
/// `portcullis_packs::catalog` is one; an embedding registers its own tools next to the
/// packs in its own.
pub type BuildCatalog = dyn Fn(&Config) -> Result<Catalog, BoxError> + Send + Sync;

/// How long a graceful shutdown waits for the audit records of its last requests to reach
/// the file and the table.
const AUDIT_SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Where the server speaks MCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One client on stdin/stdout.
    Stdio,
    /// Streamable HTTP (and, when configured, legacy HTTP+SSE) on `http.listen`.
    Http,
}

/// Why a server could not be assembled, started or kept serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The catalog source refused the config (a pack's settings).
    #[error("{0}")]
    Catalog(#[source] BoxError),
    /// A policy, the authentication or the HTTP settings cannot be used as written.
    #[error(transparent)]
    Setup(#[from] crate::SetupError),
    /// Serving HTTP on a non-loopback address without authentication.
    #[error(transparent)]
    InsecureListen(TransportError),
    /// A reload would turn authentication off.
    #[error(
        "authentication is on, and a reload cannot turn it off; restart without [auth] (on a loopback address only) to do that"
    )]
    AuthenticationOff,
    /// The audit log named in the config cannot be opened.
    #[error("cannot open the audit log {path}: {source}")]
    Audit {
        /// The audit file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Building the new config stopped (it panicked).
    #[error("the reload stopped: {0}")]
    Reload(tokio::task::JoinError),
    /// A transport failed to start or stopped with an error.
    #[error("{transport}: {source}")]
    Transport {
        /// `stdio transport`, `http transport` or `metrics listener`.
        transport: &'static str,
        /// Why.
        source: TransportError,
    },
}

impl ServerError {
    /// Whether the config is what is wrong (a usage error to the operator, exit 64), as
    /// opposed to the environment (a file that cannot be opened, a port taken).
    pub fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Catalog(_) | Self::Setup(_) | Self::InsecureListen(_) | Self::AuthenticationOff
        )
    }
}

/// A config checked against its catalog, nothing opened yet.
pub struct Prepared {
    /// The config.
    pub config: Config,
    /// What it serves.
    pub catalog: Catalog,
    /// Its policies, limits and timeouts.
    pub guard: GuardConfig,
    http: HttpOptions,
    source: Arc<BuildCatalog>,
    path: Option<PathBuf>,
    overrides: portcullis_config::Overrides,
}

impl Prepared {
    /// Settings from the command line (`serve --listen`, `--port`) that every reload keeps
    /// over the file's. Apply them to the config given to [`Server::prepare`] as well.
    #[must_use]
    pub fn keeping(mut self, overrides: portcullis_config::Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Reload from the config file at `path` once running: on SIGHUP, and on every change
    /// of the file when the config says `reload.watch`.
    #[must_use]
    pub fn reload_from(mut self, path: impl Into<PathBuf>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Refuses to serve `transport` as configured when that would expose the server: HTTP on
    /// a non-loopback address needs authentication.
    ///
    /// # Errors
    ///
    /// [`ServerError::InsecureListen`].
    pub fn check_listener(&self, transport: Transport) -> Result<(), ServerError> {
        insecure(
            &self.config,
            self.config.auth.is_enabled(),
            &self.config,
            transport,
        )
    }

    /// Opens what the config names, in order: the cluster (Redis, connected lazily: a
    /// replica starts degraded while Redis is down), the audit log (a server told to keep
    /// one does not start without it), metrics; then builds the handler and checks the
    /// catalog's dependencies once, so problems show at start (they are logged; the server
    /// starts anyway and reports them on `/readyz`). Call it inside the Tokio runtime.
    ///
    /// # Errors
    ///
    /// The cluster settings are unusable or the audit log cannot be opened.
    pub async fn start(self) -> Result<Server, ServerError> {
        let Prepared {
            config,
            catalog,
            guard,
            mut http,
            source,
            path,
            overrides,
        } = self;
        let cluster = match &config.cluster {
            Some(section) => Cluster::start(section)?,
            None => None,
        };
        // Audit records name the replica as the cluster does, unless the config says.
        let audit = match &config.audit {
            Some(section) => {
                let mut section = section.clone();
                if section.replica.is_none() {
                    section.replica = cluster.as_ref().map(|c| c.replica().to_owned());
                }
                let log = AuditLog::open(&section, &config.base_dir).map_err(|source| {
                    ServerError::Audit {
                        path: section.path.clone(),
                        source,
                    }
                })?;
                if config.console.enabled {
                    // The console's audit tail reads the last records from memory.
                    log.keep_recent();
                }
                Some(Arc::new(log))
            }
            None => None,
        };
        let guard = attach(guard, &config, audit.as_ref(), cluster.as_ref(), &http.auth)?;
        http.cluster = cluster.clone();
        if config.metrics.enabled {
            crate::metrics::install();
        }
        let handler =
            PortcullisHandler::new(Arc::new(catalog), ServerIdentity::from(&config), guard);
        let handler = match &cluster {
            Some(cluster) => handler.with_cluster(Arc::clone(cluster)),
            None => handler,
        };
        for (check, outcome) in handler.catalog().readiness().await {
            match outcome {
                Ok(()) => tracing::info!(check, "ready"),
                Err(not) => match &not.cause {
                    Some(cause) => {
                        tracing::warn!(check, reason = %not.reason, %cause, "not ready at start-up")
                    }
                    None => tracing::warn!(check, reason = %not.reason, "not ready at start-up"),
                },
            }
        }
        announce_withheld(&handler.catalog(), &[], audit.as_deref()).await;
        Ok(Server {
            state: Arc::new(State {
                current: std::sync::Mutex::new(config.clone()),
                started: config,
                source,
                handler,
                http,
                audit,
                cluster,
                path,
                overrides,
                transport: std::sync::OnceLock::new(),
            }),
        })
    }
}

/// The guard with this process's audit log and, with a cluster, its limits shared; the
/// HTTP authentication rebuilt to share the cluster's limits too. Start-up and every reload
/// attach the same way.
fn attach(
    guard: GuardConfig,
    config: &Config,
    audit: Option<&Arc<AuditLog>>,
    cluster: Option<&Arc<Cluster>>,
    auth: &ArcSwap<AuthState>,
) -> Result<GuardConfig, ServerError> {
    let guard = match audit {
        Some(audit) => guard.with_audit(Arc::clone(audit)),
        None => guard,
    };
    Ok(match cluster {
        Some(cluster) => {
            let shared = AuthState::for_replica(config, Some(cluster))?;
            auth.store(Arc::new(shared));
            guard.shared(cluster)
        }
        None => guard,
    })
}

/// Whether HTTP may be served as `config` says by a process that started with `started`
/// and has authentication in force now (`auth_on`): never without authentication on a
/// non-loopback address, and never with authentication turned off by a reload (on loopback
/// either: a proxy on the same host forwards outside traffic there, and a watched file read
/// half-written can lack its `[auth]` table).
fn insecure(
    started: &Config,
    auth_on: bool,
    config: &Config,
    transport: Transport,
) -> Result<(), ServerError> {
    if transport != Transport::Http {
        return Ok(());
    }
    let listen = started.http.listen;
    if !listen.ip().is_loopback() && !config.auth.is_enabled() {
        return Err(ServerError::InsecureListen(TransportError::InsecureListen(
            listen,
        )));
    }
    if auth_on && !config.auth.is_enabled() {
        return Err(ServerError::AuthenticationOff);
    }
    Ok(())
}

/// A running server: what it started with and what a reload replaces.
#[derive(Clone)]
pub struct Server {
    state: Arc<State>,
}

struct State {
    /// The config the process started with: what the listener, caps, audit and metrics
    /// really run on, whatever later reloads said.
    started: Config,
    /// The config served now (the last one a reload applied): what a rebuild asked for by
    /// a pack builds again.
    current: std::sync::Mutex<Config>,
    source: Arc<BuildCatalog>,
    handler: PortcullisHandler,
    /// The HTTP settings; their authentication is swapped whole by a reload.
    http: HttpOptions,
    /// The audit log of this process (kept across reloads).
    audit: Option<Arc<AuditLog>>,
    /// The shared state of many replicas (kept across reloads; new limits share it too).
    cluster: Option<Arc<Cluster>>,
    /// The config file reloads read, if any.
    path: Option<PathBuf>,
    /// What the command line set over the file, applied to every reload.
    overrides: portcullis_config::Overrides,
    /// Set by [`Server::run`].
    transport: std::sync::OnceLock<Transport>,
}

impl Server {
    /// Checks `config` against the catalog `source` builds from it, opening nothing: the
    /// catalog, the policies (which must name real tools), the authentication and the HTTP
    /// settings.
    ///
    /// # Errors
    ///
    /// The config cannot be served as written ([`ServerError::is_config`]).
    pub fn prepare<F, E>(config: Config, source: F) -> Result<Prepared, ServerError>
    where
        F: Fn(&Config) -> Result<Catalog, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        let source: Arc<BuildCatalog> =
            Arc::new(move |config: &Config| source(config).map_err(Into::into));
        prepare(config, source)
    }

    /// [`Server::prepare`] then [`Prepared::start`].
    ///
    /// # Errors
    ///
    /// As those.
    pub async fn start<F, E>(config: Config, source: F) -> Result<Self, ServerError>
    where
        F: Fn(&Config) -> Result<Catalog, E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        Self::prepare(config, source)?.start().await
    }

    /// The MCP handler (every transport serves it; an embedding may serve it elsewhere).
    pub fn handler(&self) -> &PortcullisHandler {
        &self.state.handler
    }

    /// The HTTP settings this server was started with.
    pub fn http_options(&self) -> &HttpOptions {
        &self.state.http
    }

    /// Serves `transport` until `shutdown` is cancelled (then drains as configured). With
    /// [`Prepared::reload_from`], reloads on SIGHUP and file changes meanwhile; with metrics
    /// on their own address, serves them there.
    ///
    /// # Errors
    ///
    /// HTTP on a non-loopback address without authentication; a socket that cannot be
    /// bound; the transport failing.
    pub async fn run(
        self,
        transport: Transport,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError> {
        let state = &self.state;
        let started = &state.started;
        insecure(started, started.auth.is_enabled(), started, transport)?;
        let _ = state.transport.set(transport);
        if let Some(path) = &state.path {
            let reloader = reload::Reloader::new(self.clone(), path.clone());
            tokio::spawn(reloader.run(transport::reload_on_signal()));
        }
        tokio::spawn(reload::rebuild_on_request(self.clone()));
        let failed = |transport| move |source| ServerError::Transport { transport, source };
        let options = &state.http;
        if let Some(listener) = transport::http::bind_metrics(&options.metrics)
            .await
            .map_err(failed("metrics listener"))?
        {
            let (metrics, stop) = (options.metrics.clone(), shutdown.clone());
            tokio::spawn(async move {
                if let Err(error) = transport::http::serve_metrics(&metrics, listener, stop).await {
                    tracing::error!(%error, "metrics listener stopped");
                }
            });
        } else if options.metrics.enabled
            && transport == Transport::Http
            && options.metrics.bearer_token.is_none()
            && !options.listen.ip().is_loopback()
        {
            tracing::warn!(
                "/metrics is not served: the MCP listener is not on a loopback address; set metrics.listen or metrics.bearer_token"
            );
        }
        let handler = state.handler.clone();
        let served = match transport {
            Transport::Stdio => transport::stdio::serve(
                handler,
                shutdown,
                StdioOptions::from_config(&state.started),
            )
            .await
            .map_err(failed("stdio transport")),
            Transport::Http => {
                let listener = transport::http::bind(options)
                    .await
                    .map_err(failed("http transport"))?;
                transport::http::serve(handler, options, listener, shutdown)
                    .await
                    .map_err(failed("http transport"))
            }
        };
        // No request is left: every record they made goes where it goes (the file, the
        // table), within a bound.
        if let Some(audit) = &state.audit {
            audit.settle(AUDIT_SETTLE).await;
        }
        served
    }

    /// Serves one client speaking on `input`/`output` (the stdio framing) as `principal`,
    /// until the client closes its end or `shutdown` is cancelled, then settles the audit
    /// log. In-process requests (`portcullis call` and `read`) take this way, through the
    /// whole pipeline like any client's.
    ///
    /// # Errors
    ///
    /// The transport failing.
    pub async fn serve_pipes<R, W>(
        &self,
        input: R,
        output: W,
        principal: crate::auth::Principal,
        shutdown: CancellationToken,
    ) -> Result<(), ServerError>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let state = &self.state;
        let served = transport::stdio::serve_on(
            state.handler.with_principal(principal),
            input,
            output,
            shutdown,
            StdioOptions::from_config(&state.started),
        )
        .await
        .map_err(|source| ServerError::Transport {
            transport: "pipes",
            source,
        });
        if let Some(audit) = &state.audit {
            audit.settle(AUDIT_SETTLE).await;
        }
        served
    }

    /// Serves `config` from now on: catalog, policies, keys and limits at once. Calls in
    /// flight finish on the old config; clients hear which lists changed. What only a
    /// restart applies (the listener, caps, audit, metrics, traces, the cluster's
    /// connection) is logged as such and keeps running as started.
    ///
    /// # Errors
    ///
    /// The new config cannot be served (as [`Server::prepare`]), or it would take the
    /// authentication away from a non-loopback listener; the old config keeps serving.
    pub async fn reload(&self, config: Config) -> Result<(), ServerError> {
        reload::apply(self, config).await
    }
}

/// Logs, counts and audits the items `catalog` withholds that `before` did not.
async fn announce_withheld(
    catalog: &Catalog,
    before: &[portcullis_core::Withheld],
    audit: Option<&AuditLog>,
) {
    metrics::gauge!("portcullis_withheld_items").set(catalog.withheld().len() as f64);
    for item in catalog.withheld() {
        if before.contains(item) {
            continue;
        }
        metrics::counter!("portcullis_withheld_total", "kind" => item.kind).increment(1);
        tracing::warn!(
            kind = item.kind,
            name = %item.name,
            source = %item.source,
            reason = %item.reason,
            "withheld until an operator pins it (portcullis upstreams diff / pin)"
        );
        if let Some(audit) = audit {
            audit.withheld(item).await;
        }
    }
}

/// [`Server::prepare`] with the source already shared.
fn prepare(config: Config, source: Arc<BuildCatalog>) -> Result<Prepared, ServerError> {
    let catalog = source(&config).map_err(ServerError::Catalog)?;
    let guard = GuardConfig::new(&config, &catalog)?;
    let http = HttpOptions::from_config(&config)?;
    Ok(Prepared {
        config,
        catalog,
        guard,
        http,
        source,
        path: None,
        overrides: portcullis_config::Overrides::default(),
    })
}
