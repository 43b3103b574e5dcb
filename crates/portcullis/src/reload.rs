//! Config reload: on SIGHUP (and, with `reload.watch`, when the file changes) the config is
//! read and checked again; a valid one replaces catalog, policies, keys and limits at once
//! (calls in flight finish on the old one, clients hear which lists changed); an invalid
//! one is refused, logged and counted, and the old config keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use portcullis_config::Config;
use portcullis_server::transport::http::HttpOptions;
use portcullis_server::{GuardConfig, PortcullisHandler, ServerIdentity};

/// What a reload replaces, and what it must keep.
pub(crate) struct Reloader {
    pub(crate) path: PathBuf,
    pub(crate) handler: PortcullisHandler,
    /// The HTTP transport's authentication, swapped in place.
    pub(crate) auth: Arc<arc_swap::ArcSwap<portcullis_server::auth::AuthState>>,
    /// The audit log of this process (kept across reloads).
    pub(crate) audit: Option<Arc<portcullis_server::audit::AuditLog>>,
    /// The shared state of many replicas (kept across reloads; new limits share it too).
    pub(crate) cluster: Option<Arc<portcullis_server::cluster::Cluster>>,
    /// The config the process started with: what the listener, caps, audit and metrics
    /// really run on, whatever later reloads said.
    pub(crate) started: Config,
    pub(crate) stdio: bool,
}

impl Reloader {
    /// Reloads on every request from `signals` and, when the config says so, on every
    /// change of the file; until the process ends.
    pub(crate) async fn run(mut self, mut signals: tokio::sync::mpsc::Receiver<()>) {
        let mut seen = stamp(&self.path);
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.started.reload.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut signals_open = true;
        loop {
            tokio::select! {
                signal = signals.recv(), if signals_open => {
                    if signal.is_none() {
                        // No signals here: only the file watch can trigger a reload.
                        signals_open = false;
                        continue;
                    }
                }
                _ = tick.tick(), if self.started.reload.watch || !signals_open => {
                    if !self.started.reload.watch {
                        continue;
                    }
                    let now = stamp(&self.path);
                    if now == seen {
                        continue;
                    }
                    // A file being written in place may be read half-written: wait until it
                    // has stayed the same for one whole interval.
                    tokio::time::sleep(Duration::from_millis(self.started.reload.interval_ms)).await;
                    if stamp(&self.path) != now {
                        continue;
                    }
                    tracing::info!("config file changed; reloading");
                }
            }
            self.reload().await;
            seen = stamp(&self.path);
        }
    }

    async fn reload(&mut self) {
        let started = std::time::Instant::now();
        let path = self.path.clone();
        let stdio = self.stdio;
        let audit = self.audit.clone();
        let cluster = self.cluster.clone();
        let started_with = self.started.clone();
        // Building a catalog reads files (notes, static resources): off the async threads.
        let built = tokio::task::spawn_blocking(move || {
            build(&path, &started_with, stdio, audit, cluster.as_ref())
        })
        .await;
        let built = match built {
            Ok(built) => built,
            Err(error) => Err(format!("the reload panicked: {error}")),
        };
        match built {
            Ok((config, catalog, guard, options)) => {
                let catalog = Arc::new(catalog);
                let (tools, resources, prompts) = (
                    catalog.tools().len(),
                    catalog.resource_templates().len(),
                    catalog.prompts().len(),
                );
                // On stdio nothing reads the HTTP authentication.
                let auth = (!self.stdio).then(|| options.auth.load_full());
                if let Some(auth) = &auth {
                    auth.warm_up().await;
                    self.auth.store(Arc::clone(auth));
                }
                self.handler
                    .reload(catalog, ServerIdentity::from(&config), guard, auth);
                for warning in needs_restart(&self.started, &config) {
                    tracing::warn!(
                        setting = warning,
                        "changed in the config, but only a restart applies it"
                    );
                }
                metrics::counter!("portcullis_config_reloads_total", "result" => "ok").increment(1);
                tracing::info!(
                    tools,
                    resource_templates = resources,
                    prompts,
                    duration_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "config reloaded"
                );
            }
            Err(error) => {
                metrics::counter!("portcullis_config_reloads_total", "result" => "error")
                    .increment(1);
                tracing::error!(%error, "config reload refused; the previous config keeps serving");
            }
        }
    }
}

type Built = (Config, portcullis_server::Catalog, GuardConfig, HttpOptions);

/// Loads and checks the config at `path` the way start-up does. `started` is the config the
/// process started with: its listener is the one that stays bound.
fn build(
    path: &Path,
    started: &Config,
    stdio: bool,
    audit: Option<Arc<portcullis_server::audit::AuditLog>>,
    cluster: Option<&Arc<portcullis_server::cluster::Cluster>>,
) -> Result<Built, String> {
    let config = portcullis_config::load(path).map_err(|e| e.to_string())?;
    let in_file = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let catalog = portcullis_packs::catalog(&config).map_err(|e| in_file(&e))?;
    let guard = GuardConfig::new(&config, &catalog).map_err(|e| in_file(&e))?;
    let options = HttpOptions::from_config(&config).map_err(|e| in_file(&e))?;
    // The listener stays where it is: it must not lose its authentication.
    if !stdio && !started.http.listen.ip().is_loopback() && !config.auth.is_enabled() {
        return Err(format!(
            "{}: the server listens on {}, which is not a loopback address, and the new config has no authentication",
            path.display(),
            started.http.listen
        ));
    }
    let guard = match audit {
        Some(audit) => guard.with_audit(audit),
        None => guard,
    };
    // New limits are shared like the old ones.
    let guard = match cluster {
        Some(cluster) => {
            let auth = portcullis_server::auth::AuthState::for_replica(&config, Some(cluster))
                .map_err(|e| in_file(&e))?;
            options.auth.store(Arc::new(auth));
            guard.shared(cluster)
        }
        None => guard,
    };
    Ok((config, catalog, guard, options))
}

/// Settings a reload reads but cannot apply to a running process.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    let (a, b) = (&old.http, &new.http);
    if a.listen != b.listen || a.path != b.path {
        changed.push("http.listen / http.path");
    }
    if a.allowed_hosts != b.allowed_hosts
        || a.allowed_origins != b.allowed_origins
        || a.max_body_bytes != b.max_body_bytes
        || a.legacy_sessions != b.legacy_sessions
        || a.legacy_sse != b.legacy_sse
        || a.shutdown_grace_secs != b.shutdown_grace_secs
    {
        changed.push("http");
    }
    let (a, b) = (&old.limits, &new.limits);
    if a.max_in_flight != b.max_in_flight
        || a.max_in_flight_per_principal != b.max_in_flight_per_principal
        || a.body_timeout_secs != b.body_timeout_secs
        || a.max_listen_streams_per_principal != b.max_listen_streams_per_principal
        || a.max_get_streams_per_principal != b.max_get_streams_per_principal
        || a.max_subscriptions != b.max_subscriptions
        || a.max_sessions != b.max_sessions
        || a.max_sessions_per_principal != b.max_sessions_per_principal
        || a.session_idle_secs != b.session_idle_secs
    {
        changed.push("limits (in-flight, stream, subscription and session caps)");
    }
    if old.audit != new.audit {
        changed.push("audit");
    }
    if old.metrics.enabled != new.metrics.enabled
        || old.metrics.listen != new.metrics.listen
        || old.metrics.bearer_token != new.metrics.bearer_token
    {
        changed.push("metrics");
    }
    if old.traces != new.traces {
        changed.push("traces");
    }
    // The state keys apply at a reload (the guard seals with them); the rest of the
    // cluster's settings are its connection.
    let cluster = |c: &Config| {
        c.cluster.as_ref().map(|c| {
            (
                c.redis_url.clone(),
                c.replica.clone(),
                c.key_prefix.clone(),
                c.timeout_ms,
                c.connect_timeout_ms,
                c.unauthenticated_limits_when_down,
                c.authenticated_limits_when_down,
            )
        })
    };
    if cluster(old) != cluster(new) {
        changed.push("cluster (all but state_keys)");
    }
    if old.reload.interval_ms != new.reload.interval_ms || old.reload.watch != new.reload.watch {
        changed.push("reload");
    }
    if old.logging.level != new.logging.level || old.logging.format != new.logging.format {
        changed.push("logging");
    }
    changed
}

/// What identifies the file's content cheaply: size, modification time, inode.
fn stamp(path: &Path) -> Option<(u64, std::time::SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}
