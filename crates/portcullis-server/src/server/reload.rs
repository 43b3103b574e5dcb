//! Config reload: on SIGHUP (and, with `reload.watch`, when the file changes) the config is
//! read and checked again; a valid one replaces catalog, policies, keys and limits at once
//! (calls in flight finish on the old one, clients hear which lists changed); an invalid
//! one is refused, logged and counted, and the old config keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_config::Config;

use super::{Server, ServerError, Transport};
use crate::ServerIdentity;

/// Watches for reload requests of one server.
pub(super) struct Reloader {
    server: Server,
    path: PathBuf,
    /// What the watch looks at: the config file, then every file the config last read
    /// names (`Config::referenced_files`: templates, resource files, seeds, CA and JWKS
    /// files).
    watched: Vec<PathBuf>,
}

impl Reloader {
    pub(super) fn new(server: Server, path: PathBuf) -> Self {
        let mut watched = vec![path.clone()];
        watched.extend(server.state.started.referenced_files());
        Self {
            server,
            path,
            watched,
        }
    }

    fn stamps(&self) -> Vec<Stamp> {
        self.watched.iter().map(|path| stamp(path)).collect()
    }

    /// Reloads on every request from `signals` and, when the config says so, on every
    /// change of the file; until the process ends.
    pub(super) async fn run(mut self, mut signals: tokio::sync::mpsc::Receiver<()>) {
        let settings = &self.server.state.started.reload;
        let (watch, interval) = (settings.watch, Duration::from_millis(settings.interval_ms));
        let mut seen = self.stamps();
        let mut tick = tokio::time::interval(interval);
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
                _ = tick.tick(), if watch || !signals_open => {
                    if !watch {
                        continue;
                    }
                    let now = self.stamps();
                    if now == seen {
                        continue;
                    }
                    // A file being written in place may be read half-written: wait until it
                    // has stayed the same for one whole interval.
                    tokio::time::sleep(interval).await;
                    if self.stamps() != now {
                        continue;
                    }
                    let changed: Vec<String> = self
                        .watched
                        .iter()
                        .zip(now.iter().zip(&seen))
                        .filter(|(_, (now, before))| now != before)
                        .map(|(path, _)| path.display().to_string())
                        .collect();
                    tracing::info!(files = %changed.join(", "), "config changed; reloading");
                }
            }
            if let Some(files) = self.reload().await {
                self.watched.truncate(1);
                self.watched.extend(files);
            }
            seen = self.stamps();
        }
    }

    /// Reads the file and applies it; a refusal is logged and counted, never fatal. Returns
    /// the files the config that was read names (also when it was refused, so that fixing
    /// one of them is seen), or `None` when it could not be read.
    async fn reload(&self) -> Option<Vec<PathBuf>> {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || portcullis_config::load(&path)).await;
        let mut files = None;
        let outcome = match loaded {
            // The loader's errors name the file and line; the others get the file.
            Ok(Ok(config)) => {
                files = Some(config.referenced_files());
                apply(&self.server, config)
                    .await
                    .map_err(|error| format!("{}: {error}", self.path.display()))
            }
            Ok(Err(error)) => Err(error.to_string()),
            Err(error) => Err(format!("the reload panicked: {error}")),
        };
        if let Err(error) = outcome {
            metrics::counter!("portcullis_config_reloads_total", "result" => "error").increment(1);
            tracing::error!(%error, "config reload refused; the previous config keeps serving");
        }
        files
    }
}

/// Checks `config` as start-up does and serves it from now on.
pub(super) async fn apply(server: &Server, mut config: Config) -> Result<(), ServerError> {
    // The command line's settings (`serve --port`, …) hold for every config served, however
    // the reload came (signal, watch, `Server::reload`).
    server.state.overrides.apply(&mut config);
    let started = Instant::now();
    let state = Arc::clone(&server.state);
    // Building a catalog reads files (notes, static resources): off the async threads.
    let prepared = tokio::task::spawn_blocking({
        let state = Arc::clone(&state);
        move || {
            let prepared = super::prepare(config, Arc::clone(&state.source))?;
            // The listener stays where it is: it must not lose its authentication. Before
            // `run` the transport is not known: checked as HTTP.
            let transport = state.transport.get().copied().unwrap_or(Transport::Http);
            let auth_on = state.http.auth.load().is_enabled();
            super::insecure(&state.started, auth_on, &prepared.config, transport)?;
            let guard = super::attach(
                prepared.guard,
                &prepared.config,
                state.audit.as_ref(),
                state.cluster.as_ref(),
                &prepared.http.auth,
            )?;
            Ok::<_, ServerError>((prepared.config, prepared.catalog, guard, prepared.http))
        }
    })
    .await
    .map_err(ServerError::Reload)?;
    let (config, catalog, guard, http) = prepared?;
    let catalog = Arc::new(catalog);
    let before = state.handler.catalog();
    super::announce_withheld(&catalog, before.withheld(), state.audit.as_deref()).await;
    drop(before);
    let (tools, resources, prompts) = (
        catalog.tools().len(),
        catalog.resource_templates().len(),
        catalog.prompts().len(),
    );
    // On stdio nothing reads the HTTP authentication.
    let auth = (state.transport.get() != Some(&Transport::Stdio)).then(|| http.auth.load_full());
    if let Some(auth) = &auth {
        auth.warm_up().await;
        state.http.auth.store(Arc::clone(auth));
    }
    state
        .handler
        .reload(catalog, ServerIdentity::from(&config), guard, auth);
    *state
        .current
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = config.clone();
    for warning in needs_restart(&state.started, &config) {
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
    Ok(())
}

/// The least time between two rebuilds a pack asked for.
const MIN_REBUILD_INTERVAL: Duration = Duration::from_secs(1);

/// Builds the catalog again from the config served now whenever a pack asks
/// ([`portcullis_core::Rebuild`]: an upstream server changed what it offers), as a reload
/// does; until the process ends.
pub(super) async fn rebuild_on_request(server: Server) {
    loop {
        let catalog = server.state.handler.catalog();
        // A reload may replace the catalog meanwhile: its packs ask the new one.
        let asked = tokio::time::timeout(Duration::from_secs(1), catalog.rebuild_requested())
            .await
            .is_ok();
        drop(catalog);
        if !asked {
            continue;
        }
        let config = server
            .state
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        tracing::info!("a pack's offer changed; building the catalog again");
        if let Err(error) = apply(&server, config).await {
            metrics::counter!("portcullis_catalog_rebuilds_failed_total").increment(1);
            tracing::error!(%error, "rebuilding the catalog failed; the previous one keeps serving");
        }
        // At most one rebuild a second, however often an upstream changes what it offers:
        // the changes of that second are taken together by the next one.
        tokio::time::sleep(MIN_REBUILD_INTERVAL).await;
    }
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
/// A file's size, modification time and inode (`None`: not there).
type Stamp = Option<(u64, std::time::SystemTime, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.modified().ok()?, meta.ino()))
}
