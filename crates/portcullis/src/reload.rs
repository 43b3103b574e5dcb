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
    /// The config in force.
    pub(crate) config: Config,
    pub(crate) stdio: bool,
}

impl Reloader {
    /// Reloads on every request from `signals` and, when the config says so, on every
    /// change of the file; until the process ends.
    pub(crate) async fn run(mut self, mut signals: tokio::sync::mpsc::Receiver<()>) {
        let mut seen = stamp(&self.path);
        let mut tick = tokio::time::interval(Duration::from_millis(self.config.reload.interval_ms));
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
                _ = tick.tick(), if self.config.reload.watch || !signals_open => {
                    if !self.config.reload.watch {
                        continue;
                    }
                    let now = stamp(&self.path);
                    if now == seen {
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
        let old = self.config.clone();
        // Building a catalog reads files (notes, static resources): off the async threads.
        let built = tokio::task::spawn_blocking(move || build(&path, &old, stdio, audit)).await;
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
                let auth = Arc::clone(&options.auth.load());
                auth.warm_up().await;
                self.auth.store(auth);
                self.handler
                    .reload(catalog, ServerIdentity::from(&config), guard);
                for warning in needs_restart(&self.config, &config) {
                    tracing::warn!(
                        setting = warning,
                        "changed in the config, but only a restart applies it"
                    );
                }
                self.config = config;
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

/// Loads and checks the config at `path` the way start-up does.
fn build(
    path: &Path,
    old: &Config,
    stdio: bool,
    audit: Option<Arc<portcullis_server::audit::AuditLog>>,
) -> Result<Built, String> {
    let config = portcullis_config::load(path).map_err(|e| e.to_string())?;
    let in_file = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let catalog = portcullis_packs::catalog(&config).map_err(|e| in_file(&e))?;
    let guard = GuardConfig::new(&config, &catalog).map_err(|e| in_file(&e))?;
    let options = HttpOptions::from_config(&config).map_err(|e| in_file(&e))?;
    // The listener stays where it is: it must not lose its authentication.
    if !stdio && !old.http.listen.ip().is_loopback() && !config.auth.is_enabled() {
        return Err(format!(
            "{}: the server listens on {}, which is not a loopback address, and the new config has no authentication",
            path.display(),
            old.http.listen
        ));
    }
    let guard = match audit {
        Some(audit) => guard.with_audit(audit),
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
        || a.max_sessions != b.max_sessions
        || a.max_sessions_per_principal != b.max_sessions_per_principal
        || a.session_idle_secs != b.session_idle_secs
    {
        changed.push("limits (in-flight and session caps)");
    }
    if old.audit.as_ref().map(|a| &a.path) != new.audit.as_ref().map(|a| &a.path)
        || old.audit.is_some() != new.audit.is_some()
    {
        changed.push("audit");
    }
    if old.metrics.enabled != new.metrics.enabled || old.metrics.listen != new.metrics.listen {
        changed.push("metrics");
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
