//! The link to one upstream: a supervisor that starts it (a child process, or an HTTP
//! client), speaks MCP to it as a client (whichever era it speaks), lists what it offers
//! (at connection, on its `list_changed`, and every `refresh_secs`), and restarts it with
//! backoff when it ends. Calls borrow the connected peer; nothing of the upstream outlives
//! the last catalog that uses the link.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_config::Upstream;
use portcullis_core::{CallContext, ChangeNotifier, redact_secrets};
use rmcp::model::{
    ClientCapabilities, ClientRequest, Implementation, InitializeRequestParams,
    ProgressNotificationParam, Prompt, ProtocolVersion, RequestId, RequestMetaObject, Resource,
    ResourceTemplate, ResourceUpdatedNotificationParam, ServerResult, Tool as ToolDef,
};
use rmcp::service::{
    ClientLifecycleMode, NotificationContext, Peer, PeerRequestOptions, ServiceError,
};
use rmcp::{ClientHandler, RoleClient};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::pins::{Kind, definition, digest};

/// What the upstream offers, as last listed.
#[derive(Debug, Default)]
pub(super) struct Offer {
    pub(super) tools: Vec<ToolDef>,
    pub(super) prompts: Vec<Prompt>,
    pub(super) resources: Vec<Resource>,
    pub(super) templates: Vec<ResourceTemplate>,
    /// Each item's digest, by kind and the upstream's own name (a resource's URI).
    pub(super) digests: HashMap<(Kind, String), String>,
    /// Whether the upstream lets clients subscribe to its resources.
    pub(super) subscribe: bool,
}

impl Offer {
    #[cfg(test)]
    pub(super) fn digested_for_tests(self) -> Self {
        self.digested()
    }

    fn digested(mut self) -> Self {
        let mut digests = HashMap::new();
        for tool in &self.tools {
            digests.insert(
                (Kind::Tool, tool.name.to_string()),
                digest(&definition(tool)),
            );
        }
        for prompt in &self.prompts {
            digests.insert(
                (Kind::Prompt, prompt.name.clone()),
                digest(&definition(prompt)),
            );
        }
        for resource in &self.resources {
            digests.insert(
                (Kind::Resource, resource.uri.clone()),
                digest(&definition(resource)),
            );
        }
        for template in &self.templates {
            digests.insert(
                (Kind::Template, template.uri_template.clone()),
                digest(&definition(template)),
            );
        }
        self.digests = digests;
        self
    }
}

/// The link's state, published to whoever waits on it.
#[derive(Clone, Default)]
pub(super) struct Status {
    /// The last listing (kept while the upstream restarts).
    pub(super) offer: Option<Arc<Offer>>,
    /// Bumped whenever a listing differs from the one before (any item's digest, or an
    /// item added or gone).
    pub(super) version: u64,
    /// The connected upstream, if it is connected now.
    pub(super) peer: Option<Peer<RoleClient>>,
    /// Why it is not connected (for the operator: `/readyz` shows only that it is not).
    pub(super) down: Option<String>,
}

/// Why a request to the upstream did not produce an answer.
pub(super) enum Failure {
    /// Not connected, the connection broke, or it did not answer in time: the cause is
    /// the operator's.
    Unavailable(String),
    /// The upstream answered with a JSON-RPC error.
    Refused(rmcp::ErrorData),
    /// The caller cancelled.
    Cancelled,
    /// The item is not what this catalog was built with (the message says so).
    Withheld(String),
}

/// What the client side of the connection shares with the link.
struct Relay {
    name: String,
    /// The revision the upstream is pinned to (`protocol_version`), if it is.
    protocol: Option<ProtocolVersion>,
    /// The values of the upstream's `env`, `headers` and OAuth secret: scrubbed out of
    /// everything the upstream says before it reaches the log.
    secrets: Vec<String>,
    /// Progress of calls in flight, by the token sent upstream.
    progress: Mutex<HashMap<String, CallContext>>,
    /// Told when the upstream says a list changed.
    relist: Notify,
    /// Where `resources/updated` goes (the catalog built last), and the scheme prefix that
    /// makes the upstream's URI one of ours.
    changes: Mutex<Option<(ChangeNotifier, String)>>,
}

impl Relay {
    /// The caller a server-to-client request of the upstream goes to: the one call in
    /// flight on this link, if its client declared `what` (`declared`). With several calls
    /// in flight the request cannot be told apart (nothing in it names its call), and it
    /// goes to nobody: one principal's question never reaches another's client.
    fn caller(
        &self,
        what: &str,
        declared: impl Fn(&ClientCapabilities) -> bool,
    ) -> Result<CallContext, rmcp::ErrorData> {
        let callers = self
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut calls = callers.values();
        let (Some(caller), None) = (calls.next(), calls.next()) else {
            tracing::warn!(upstream = %self.name, what, calls = callers.len(), "an upstream's request was refused: it belongs to no single call in flight");
            return Err(portcullis_core::error::not_relayed(
                what,
                "it belongs to no single call in flight",
            ));
        };
        if !caller.client_capabilities().is_some_and(declared) {
            return Err(portcullis_core::error::not_relayed(
                what,
                "the calling client did not declare it",
            ));
        }
        Ok(caller.clone())
    }

    /// A relayed request the caller's client did not answer.
    fn relay_failed(&self, what: &str, error: &rmcp::ServiceError) -> rmcp::ErrorData {
        match error {
            rmcp::ServiceError::McpError(error) => error.clone(),
            other => {
                tracing::debug!(upstream = %self.name, what, error = %self.scrub(&other.to_string()), "a relayed request got no answer");
                portcullis_core::error::not_relayed(what, "the calling client could not be asked")
            }
        }
    }

    /// `text` for the operator's log: the upstream's secrets and anything that looks like
    /// one removed.
    fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "<redacted>");
        }
        redact_secrets(&text)
    }

    /// The upstream says its resource `uri` changed: subscribers of ours hear it.
    fn updated(&self, uri: &str) {
        let changes = self
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some((notifier, scheme)) = changes {
            notifier.updated(format!("{scheme}{uri}"));
        }
    }
}

/// The client side of the connection: what the upstream sends without being asked.
#[derive(Clone)]
struct Client(Arc<Relay>);

impl ClientHandler for Client {
    /// Portcullis asks on behalf of its callers: it declares elicitation (forms) and
    /// sampling, and relays each such request to the one caller it belongs to.
    fn get_info(&self) -> InitializeRequestParams {
        let mut capabilities = ClientCapabilities::default();
        let version = self.0.protocol.clone();
        capabilities.elicitation = Some(
            rmcp::model::ElicitationCapability::new()
                .with_form(rmcp::model::FormElicitationCapability::default()),
        );
        capabilities.sampling = Some(rmcp::model::SamplingCapability::default());
        let mut info = InitializeRequestParams::new(
            capabilities,
            Implementation::new("portcullis-gateway", env!("CARGO_PKG_VERSION")),
        );
        if let Some(version) = version.filter(ProtocolVersion::has_initialize) {
            info.protocol_version = version;
        }
        info
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        let caller = self.0.caller("elicitation", |c| c.elicitation.is_some())?;
        caller
            .peer()
            .create_elicitation(request)
            .await
            .map_err(|error| self.0.relay_failed("elicitation", &error))
    }

    #[allow(
        deprecated,
        reason = "sampling is deprecated by SEP-2577 but still spoken"
    )]
    async fn create_message(
        &self,
        request: rmcp::model::CreateMessageRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::CreateMessageResult, rmcp::ErrorData> {
        let caller = self.0.caller("sampling", |c| c.sampling.is_some())?;
        caller
            .peer()
            .create_message(request)
            .await
            .map_err(|error| self.0.relay_failed("sampling", &error))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let token = token_key(&params.progress_token);
        let caller = self
            .0
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&token)
            .cloned();
        if let Some(caller) = caller {
            caller
                .progress(params.progress, params.total, params.message.as_deref())
                .await;
        }
    }

    #[allow(
        deprecated,
        reason = "MCP logging is deprecated by SEP-2577 but still spoken"
    )]
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // A log message names no call: it goes to the operator's log, never to a client
        // (it could be about another principal's call).
        let text = self.0.scrub(&params.data.to_string());
        tracing::debug!(upstream = %self.0.name, level = ?params.level, message = %text, "upstream log message");
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.0.updated(&params.uri);
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.0.relist.notify_one();
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.0.relist.notify_one();
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.0.relist.notify_one();
    }
}

fn token_key(token: &rmcp::model::ProgressToken) -> String {
    serde_json::to_string(&token.0).unwrap_or_default()
}

/// One upstream, shared by every catalog built while it is configured the same way.
pub(super) struct Link {
    pub(super) config: Upstream,
    base_dir: PathBuf,
    refresh: Duration,
    status: watch::Sender<Status>,
    relay: Arc<Relay>,
    started: std::sync::Once,
    /// Stops the supervisor (and so the upstream) when the last catalog lets go.
    stop: CancellationToken,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// The secret values of `config` (at least 4 characters: shorter ones would scrub
/// ordinary words).
fn secrets_of(config: &Upstream) -> Vec<String> {
    config
        .env
        .values()
        .chain(config.headers.values())
        .chain(config.oauth.iter().map(|o| &o.client_secret))
        .map(|s| s.expose().to_owned())
        .filter(|s| s.len() >= 4)
        .collect()
}

/// Longest stderr line kept for the log.
const STDERR_LINE: usize = 4096;
/// Stderr lines logged per second at most; the rest are counted.
const STDERR_LINES_PER_SEC: u32 = 50;
/// Why a connection was replaced on purpose (its token expires).
const RENEW: &str = "its token expires";
/// Restart delays: from the first to the longest.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(250), Duration::from_secs(30));

impl Link {
    pub(super) fn new(config: Upstream, base_dir: &Path, refresh_secs: u64) -> Self {
        let (status, _) = watch::channel(Status {
            down: Some("connecting".to_owned()),
            ..Status::default()
        });
        Self {
            relay: Arc::new(Relay {
                name: config.name.clone(),
                protocol: config.protocol_version.as_deref().and_then(|wanted| {
                    ProtocolVersion::KNOWN_VERSIONS
                        .iter()
                        .find(|known| known.as_str() == wanted)
                        .cloned()
                }),
                secrets: secrets_of(&config),
                progress: Mutex::default(),
                relist: Notify::new(),
                changes: Mutex::default(),
            }),
            config,
            base_dir: base_dir.to_owned(),
            refresh: Duration::from_secs(refresh_secs),
            status,
            started: std::sync::Once::new(),
            stop: CancellationToken::new(),
        }
    }

    /// Starts the supervisor, once (inside the runtime: the first catalog that serves).
    pub(super) fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            let supervisor = Supervisor {
                config: self.config.clone(),
                base_dir: self.base_dir.clone(),
                refresh: self.refresh,
                token: tokio::sync::Mutex::new(None),
                status: self.status.clone(),
                relay: Arc::clone(&self.relay),
                stop: self.stop.clone(),
            };
            tokio::spawn(supervisor.run());
        });
    }

    /// Where this upstream's `resources/updated` go from now on.
    pub(super) fn publish_to(&self, notifier: ChangeNotifier, scheme: String) {
        *self
            .relay
            .changes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some((notifier, scheme));
    }

    /// Publishes `offer` as the upstream's listing (unit tests of what a catalog serves).
    #[cfg(test)]
    pub(super) fn offer_for_tests(&self, offer: Offer) {
        self.status.send_modify(|s| s.offer = Some(Arc::new(offer)));
    }

    /// `text` from the upstream, for the operator's log (its secrets removed).
    pub(super) fn scrub(&self, text: &str) -> String {
        self.relay.scrub(text)
    }

    pub(super) fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    pub(super) fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// Waits until the upstream is connected, at most until `deadline`; then asks `check`
    /// of the status it is connected with.
    async fn peer(
        &self,
        deadline: tokio::time::Instant,
        check: &(dyn Fn(&Self) -> Result<(), String> + Sync),
    ) -> Result<Peer<RoleClient>, Failure> {
        let mut status = self.status.subscribe();
        let wait = status.wait_for(|s| s.peer.is_some());
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(status)) => {
                let peer = status.peer.clone();
                drop(status);
                check(self).map_err(Failure::Withheld)?;
                peer.ok_or_else(|| Failure::Unavailable("not connected".to_owned()))
            }
            _ => Err(Failure::Unavailable(
                self.status()
                    .down
                    .unwrap_or_else(|| "not connected".to_owned()),
            )),
        }
    }

    /// The digest of the item `kind` `name` as the upstream offers it now, if it does.
    pub(super) fn live_digest(&self, kind: Kind, name: &str) -> Option<String> {
        self.status
            .borrow()
            .offer
            .as_ref()
            .and_then(|o| o.digests.get(&(kind, name.to_owned())).cloned())
    }

    /// [`Link::request`] for a request that is no tool call (a prompt, a read): it waits
    /// for the upstream at most `connect_timeout_secs`; the guard's timeout bounds the rest
    /// (dropping the future cancels it upstream).
    pub(super) async fn ask(
        &self,
        request: ClientRequest,
        check: &(dyn Fn(&Self) -> Result<(), String> + Sync),
    ) -> Result<ServerResult, Failure> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.config.connect_timeout_secs);
        let never = CancellationToken::new();
        self.request(request, None, None, deadline, &never, check)
            .await
    }

    /// Sends `request` once the upstream is connected (waiting at most until `deadline`)
    /// and waits for its answer; progress the upstream
    /// reports reaches `caller`; a cancellation of `cancel` (or the caller giving up)
    /// cancels the upstream's request too.
    pub(super) async fn request(
        &self,
        request: ClientRequest,
        meta: Option<RequestMetaObject>,
        caller: Option<&CallContext>,
        deadline: tokio::time::Instant,
        cancel: &CancellationToken,
        check: &(dyn Fn(&Self) -> Result<(), String> + Sync),
    ) -> Result<ServerResult, Failure> {
        let peer = self.peer(deadline, check).await?;
        let options = {
            let mut options = PeerRequestOptions::no_options();
            options.meta = meta;
            options
        };
        let handle = peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| Failure::Unavailable(e.to_string()))?;
        let token = token_key(&handle.progress_token);
        let _progress = caller.map(|caller| {
            self.relay
                .progress
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(token.clone(), caller.clone());
            Forget {
                relay: &self.relay,
                token: token.clone(),
            }
        });
        let mut abandoned = CancelOnDrop {
            peer: Some(peer),
            id: handle.id.clone(),
        };
        // The guard's timeout bounds the wait for the answer (dropping this future, which
        // cancels the request upstream): the caller hears "timed out" from one place.
        let answer = tokio::select! {
            answer = handle.await_response() => answer,
            () = cancel.cancelled() => return Err(Failure::Cancelled),
        };
        abandoned.peer = None;
        match answer {
            Ok(result) => Ok(result),
            Err(ServiceError::McpError(error)) => Err(Failure::Refused(error)),
            Err(error) => Err(Failure::Unavailable(error.to_string())),
        }
    }
}

/// Takes a call's progress route away when the call ends.
struct Forget<'a> {
    relay: &'a Relay,
    token: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.relay
            .progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.token);
    }
}

/// Tells the upstream a request is abandoned (`notifications/cancelled`) unless it was
/// answered: on a caller's cancellation, the deadline, and the call's future being dropped.
struct CancelOnDrop {
    peer: Option<Peer<RoleClient>>,
    id: RequestId,
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(peer) = self.peer.take() else {
            return;
        };
        let id = self.id.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let params = rmcp::model::CancelledNotificationParam::new(
                    Some(id),
                    Some("the caller gave up".to_owned()),
                );
                let _ = peer.notify_cancelled(params).await;
            });
        }
    }
}

/// Resources of one upstream followed at most (subscribed to upstream).
const MAX_FOLLOWED: usize = 1000;

/// The task following an upstream's changes; stopped when dropped.
struct Follow(tokio::task::JoinHandle<()>);

impl Drop for Follow {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Follows what the upstream announces: its list changes (a 2025 upstream sends them
/// unasked; a 2026-07-28 one on a `subscriptions/listen` stream) and updates of `uris`
/// (subscribed to one by one in 2025, on the listen stream in 2026-07-28). Until the
/// connection ends; a refusal leaves only the periodic listing.
async fn follow(peer: Peer<RoleClient>, relay: Arc<Relay>, uris: Vec<String>) {
    let Some(info) = peer.peer_info() else {
        return;
    };
    if info.protocol_version.has_initialize() {
        for uri in uris {
            let params = rmcp::model::SubscribeRequestParams::new(uri);
            #[allow(
                deprecated,
                reason = "a 2025 upstream subscribes with resources/subscribe"
            )]
            let subscribed = peer.subscribe(params).await;
            if let Err(error) = subscribed {
                let error = relay.scrub(&error.to_string());
                tracing::debug!(upstream = %relay.name, %error, "resources/subscribe refused");
                return;
            }
        }
        return;
    }
    let capabilities = &info.capabilities;
    let mut filter = rmcp::model::SubscriptionFilter::builder();
    if capabilities
        .tools
        .as_ref()
        .is_some_and(|t| t.list_changed == Some(true))
    {
        filter = filter.tools_list_changed();
    }
    if capabilities
        .prompts
        .as_ref()
        .is_some_and(|p| p.list_changed == Some(true))
    {
        filter = filter.prompts_list_changed();
    }
    if capabilities
        .resources
        .as_ref()
        .is_some_and(|r| r.list_changed == Some(true))
    {
        filter = filter.resources_list_changed();
    }
    if !uris.is_empty() {
        filter = filter.resource_subscriptions(uris);
    }
    let mut subscription = match peer.listen(filter.build()).await {
        Ok(subscription) => subscription,
        Err(error) => {
            let error = relay.scrub(&error.to_string());
            tracing::debug!(upstream = %relay.name, %error, "subscriptions/listen refused; listing periodically only");
            return;
        }
    };
    while let Ok(Some(notification)) = subscription.next().await {
        match notification {
            rmcp::model::ServerNotification::ResourceUpdatedNotification(updated) => {
                relay.updated(&updated.params.uri);
            }
            rmcp::model::ServerNotification::ToolListChangedNotification(_)
            | rmcp::model::ServerNotification::PromptListChangedNotification(_)
            | rmcp::model::ServerNotification::ResourceListChangedNotification(_) => {
                relay.relist.notify_one();
            }
            _ => {}
        }
    }
}

/// What runs the upstream: connects, lists, restarts.
struct Supervisor {
    config: Upstream,
    base_dir: PathBuf,
    refresh: Duration,
    /// The OAuth token of a remote upstream, while it is good.
    token: tokio::sync::Mutex<Option<super::remote::Token>>,
    status: watch::Sender<Status>,
    relay: Arc<Relay>,
    stop: CancellationToken,
}

/// A live connection: the client's service, and what must die with it.
struct Connection {
    peer: Peer<RoleClient>,
    /// Ends when the service does (the upstream closed its end, or the process died).
    ended: tokio::task::JoinHandle<()>,
    /// Stops the service.
    cancel: CancellationToken,
    /// A stdio upstream's process group, killed when the connection goes.
    _group: Option<Group>,
    /// Its scratch `HOME`.
    _home: Option<tempfile::TempDir>,
    /// When a connection opened with an OAuth token is replaced, shortly before the token
    /// expires.
    renew: Option<tokio::time::Instant>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Kills the whole process group of a stdio upstream when dropped.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pgid) = self.0
            && let Some(pid) = rustix::process::Pid::from_raw(pgid)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Supervisor {
    async fn run(self) {
        let name = self.config.name.clone();
        let mut backoff = BACKOFF.0;
        loop {
            let connected = tokio::select! {
                connected = self.connect() => connected,
                () = self.stop.cancelled() => return,
            };
            match connected {
                Ok(connection) => {
                    let since = Instant::now();
                    tracing::info!(upstream = %name, "upstream connected");
                    let reason = self.relay.scrub(&self.serve(connection).await);
                    self.status.send_modify(|s| {
                        s.peer = None;
                        s.down = Some(reason.clone());
                    });
                    if self.stop.is_cancelled() {
                        return;
                    }
                    if reason == RENEW {
                        tracing::debug!(upstream = %name, "reconnecting with a new token");
                        continue;
                    }
                    tracing::warn!(upstream = %name, %reason, "upstream connection ended; restarting");
                    if since.elapsed() > BACKOFF.1 * 2 {
                        backoff = BACKOFF.0;
                    }
                }
                Err(reason) => {
                    let reason = self.relay.scrub(&reason);
                    tracing::warn!(upstream = %name, %reason, retry_in_ms = backoff.as_millis() as u64, "cannot connect to the upstream");
                    self.status.send_modify(|s| s.down = Some(reason));
                }
            }
            metrics::counter!("portcullis_upstream_restarts_total", "upstream" => name.clone())
                .increment(1);
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.stop.cancelled() => return,
            }
            backoff = (backoff * 2).min(BACKOFF.1);
        }
    }

    /// Lists what the upstream offers until the connection ends (or the link stops);
    /// returns why it ended.
    async fn serve(&self, mut connection: Connection) -> String {
        let refresh = self.refresh;
        let timeout = Duration::from_secs(self.config.connect_timeout_secs);
        // What follows the upstream's changes for this connection (its resources, as last
        // listed); replaced when they change, stopped with the connection.
        let mut following: Option<(Vec<String>, Follow)> = None;
        loop {
            match tokio::time::timeout(timeout, list(&connection.peer)).await {
                Ok(Ok(offer)) => {
                    let uris: Vec<String> = if offer.subscribe {
                        offer
                            .resources
                            .iter()
                            .take(MAX_FOLLOWED)
                            .map(|r| r.uri.clone())
                            .collect()
                    } else {
                        Vec::new()
                    };
                    if following.as_ref().is_none_or(|(before, _)| *before != uris) {
                        let task = tokio::spawn(follow(
                            connection.peer.clone(),
                            Arc::clone(&self.relay),
                            uris.clone(),
                        ));
                        following = Some((uris, Follow(task)));
                    }
                    // Calls are let through only once what they are checked against is
                    // this connection's own listing.
                    self.publish(offer);
                    self.status.send_if_modified(|s| {
                        let first = s.peer.is_none();
                        if first {
                            s.peer = Some(connection.peer.clone());
                            s.down = None;
                        }
                        first
                    });
                }
                Ok(Err(error)) => {
                    connection.cancel.cancel();
                    return format!("listing failed: {error}");
                }
                Err(_) => {
                    connection.cancel.cancel();
                    return "listing took longer than connect_timeout_secs".to_owned();
                }
            }
            // A connection opened with a token is replaced before the token expires.
            let renew = connection.renew;
            tokio::select! {
                () = self.relay.relist.notified() => {}
                () = tokio::time::sleep(refresh) => {}
                () = async { tokio::time::sleep_until(renew.unwrap_or_else(tokio::time::Instant::now)).await }, if renew.is_some() => {
                    connection.cancel.cancel();
                    return RENEW.to_owned();
                }
                _ = &mut connection.ended => return "the upstream closed the connection".to_owned(),
                () = self.stop.cancelled() => {
                    connection.cancel.cancel();
                    return "stopped".to_owned();
                }
            }
        }
    }

    fn publish(&self, offer: Offer) {
        let offer = offer.digested();
        self.status.send_modify(|s| {
            let same = s.offer.as_ref().is_some_and(|o| o.digests == offer.digests);
            if !same {
                s.version += 1;
            }
            s.offer = Some(Arc::new(offer));
        });
    }

    async fn connect(&self) -> Result<Connection, String> {
        let timeout = Duration::from_secs(self.config.connect_timeout_secs);
        match tokio::time::timeout(timeout, self.connect_now()).await {
            Ok(connected) => connected,
            Err(_) => Err(format!(
                "no handshake within connect_timeout_secs ({}s)",
                timeout.as_secs()
            )),
        }
    }

    async fn connect_now(&self) -> Result<Connection, String> {
        let client = Client(Arc::clone(&self.relay));
        let lifecycle = match &self.relay.protocol {
            None => ClientLifecycleMode::Auto {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
                legacy_version: None,
            },
            Some(version) if version.has_initialize() => ClientLifecycleMode::Initialize,
            Some(version) => ClientLifecycleMode::Discover {
                preferred_versions: vec![version.clone()],
            },
        };
        if let Some(command) = &self.config.command {
            let (mut child, group, home) = self.spawn(command)?;
            let stdout = child.stdout.take().ok_or("no stdout")?;
            let stdin = child.stdin.take().ok_or("no stdin")?;
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(drain_stderr(Arc::clone(&self.relay), stderr));
            }
            let transport = rmcp::transport::async_rw::AsyncRwTransport::new_client(stdout, stdin)
                .with_max_line_length(self.config.max_message_bytes);
            let cancel = CancellationToken::new();
            let service = rmcp::service::serve_client_with_lifecycle_and_ct(
                client,
                transport,
                lifecycle,
                cancel.clone(),
            )
            .await
            .map_err(|e| format!("the handshake failed: {e}"))?;
            Ok(started(service, cancel, Some(group), Some(home), child))
        } else {
            let url = self.config.url.as_deref().unwrap_or_default();
            let client_http = super::remote::client(&self.config, &self.base_dir)?;
            let mut headers = HashMap::new();
            let token = match &self.config.oauth {
                Some(oauth) => Some(self.token(oauth).await?),
                None => None,
            };
            if let Some(token) = &token {
                let value = http::HeaderValue::try_from(format!("Bearer {}", token.value))
                    .map_err(|_| "the token endpoint's access_token is not a header value")?;
                headers.insert(http::header::AUTHORIZATION, value);
            }
            for (name, value) in &self.config.headers {
                let name = http::HeaderName::try_from(name.as_str())
                    .map_err(|_| format!("`{name}` is not a header name"))?;
                let value = http::HeaderValue::try_from(value.expose())
                    .map_err(|_| format!("the value of header `{name}` is not a header value"))?;
                headers.insert(name, value);
            }
            if self.config.transport == portcullis_config::UpstreamTransport::Sse {
                let url = url::Url::parse(url).map_err(|_| "the url is not a URL".to_owned())?;
                let headers: reqwest::header::HeaderMap = headers.into_iter().collect();
                let (sink, stream) =
                    super::sse::connect(client_http, url, headers, self.config.max_message_bytes)
                        .await?;
                let cancel = CancellationToken::new();
                // The legacy transport predates `server/discover`.
                let service = rmcp::service::serve_client_with_lifecycle_and_ct(
                    client,
                    (sink, stream),
                    ClientLifecycleMode::Initialize,
                    cancel.clone(),
                )
                .await
                .map_err(|e| format!("the handshake failed: {e}"))?;
                let mut connection = started(service, cancel, None, None, ());
                connection.renew = token.map(|t| t.renew);
                return Ok(connection);
            }
            let config =
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url)
                    .custom_headers(headers)
                    .max_sse_event_size(self.config.max_message_bytes);
            let transport =
                rmcp::transport::StreamableHttpClientTransport::with_client(client_http, config);
            let cancel = CancellationToken::new();
            let service = rmcp::service::serve_client_with_lifecycle_and_ct(
                client,
                transport,
                lifecycle,
                cancel.clone(),
            )
            .await
            .map_err(|e| format!("the handshake failed: {e}"))?;
            let mut connection = started(service, cancel, None, None, ());
            connection.renew = token.map(|t| t.renew);
            Ok(connection)
        }
    }

    /// The cached OAuth token until it is due for renewal, else a new one.
    async fn token(
        &self,
        oauth: &portcullis_config::UpstreamOAuth,
    ) -> Result<super::remote::Token, String> {
        let mut cached = self.token.lock().await;
        if let Some(token) = cached.as_ref()
            && token.renew > tokio::time::Instant::now()
        {
            return Ok(token.clone());
        }
        let token = super::remote::fetch_token(&self.config, oauth, &self.base_dir).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    /// Starts the program through the command pack's launcher (its limits), in its own
    /// process group, with a clean environment and a scratch `HOME`.
    fn spawn(
        &self,
        command: &[String],
    ) -> Result<(tokio::process::Child, Group, tempfile::TempDir), String> {
        let dirs = crate::command::search_dirs(&self.config.search_path, &self.base_dir);
        let program = &command[0];
        let path = if program.contains('/') {
            let path = std::path::absolute(self.base_dir.join(program))
                .map_err(|e| format!("`{program}`: {e}"))?;
            crate::command::resolve(&path.to_string_lossy(), &dirs)
        } else {
            crate::command::resolve(program, &dirs)
        }
        .ok_or_else(|| format!("`{program}` is not an executable file in the search path"))?;
        let cwd = match &self.config.working_dir {
            Some(dir) => self.base_dir.join(dir),
            None => self.base_dir.clone(),
        };
        if !cwd.is_dir() {
            return Err(format!(
                "the working directory {} is not a directory",
                cwd.display()
            ));
        }
        let home = tempfile::tempdir().map_err(|e| format!("a scratch HOME: {e}"))?;
        let launcher = std::env::current_exe().map_err(|e| format!("the launcher: {e}"))?;
        let limits = &self.config.limits;
        let mib = 1024 * 1024u64;
        #[allow(
            clippy::disallowed_methods,
            reason = "the gateway runs the configured upstream program: no shell, clean env, own group, limits"
        )]
        let mut child = tokio::process::Command::new(&launcher);
        child
            .args(crate::command::launcher::limit_arguments(
                &[
                    ("--cpu", limits.cpu_secs),
                    ("--as", limits.memory_mib.map(|m| m.saturating_mul(mib))),
                    ("--nofile", Some(limits.open_files)),
                    (
                        "--fsize",
                        limits.file_size_mib.map(|m| m.saturating_mul(mib)),
                    ),
                ],
                true,
            ))
            .arg(&path)
            .args(&command[1..])
            .env_clear()
            .env("PATH", crate::command::joined(&dirs))
            .env("HOME", home.path())
            .env("LANG", "C.UTF-8")
            .envs(self.config.env.iter().map(|(k, v)| (k, v.expose())))
            .current_dir(&cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let child = child
            .spawn()
            .map_err(|e| format!("cannot start `{program}`: {e}"))?;
        let group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
        Ok((child, group, home))
    }
}

/// The connection around a running client service: `ended` resolves when it stops (the
/// process is reaped there too).
fn started<S, K>(
    service: rmcp::service::RunningService<RoleClient, S>,
    cancel: CancellationToken,
    group: Option<Group>,
    home: Option<tempfile::TempDir>,
    keep: K,
) -> Connection
where
    S: rmcp::Service<RoleClient>,
    K: Reap,
{
    let peer = service.peer().clone();
    let ended = tokio::spawn(async move {
        let _ = service.waiting().await;
        keep.reap().await;
    });
    Connection {
        peer,
        ended,
        cancel,
        _group: group,
        _home: home,
        renew: None,
    }
}

/// What is waited for when a connection ends.
trait Reap: Send + 'static {
    fn reap(self) -> impl Future<Output = ()> + Send;
}

impl Reap for () {
    async fn reap(self) {}
}

impl Reap for tokio::process::Child {
    async fn reap(mut self) {
        let _ = self.start_kill();
        let _ = self.wait().await;
    }
}

/// Reads a stdio upstream's stderr into the log at debug, line by line (each cut at
/// 4 KiB, secrets scrubbed), at most 50 lines a second: a flood costs reading, never the
/// log or memory.
async fn drain_stderr(relay: Arc<Relay>, stderr: tokio::process::ChildStderr) {
    let name = relay.name.clone();
    let mut reader = tokio::io::BufReader::new(stderr);
    let mut line = Vec::new();
    let mut window = Instant::now();
    let (mut logged, mut dropped) = (0u32, 0u64);
    loop {
        line.clear();
        let read = (&mut reader)
            .take(STDERR_LINE as u64)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if window.elapsed() >= Duration::from_secs(1) {
            if dropped > 0 {
                tracing::debug!(upstream = %name, lines = dropped, "upstream stderr lines not logged (over 50 a second)");
            }
            window = Instant::now();
            (logged, dropped) = (0, 0);
        }
        if logged >= STDERR_LINES_PER_SEC {
            dropped += 1;
            continue;
        }
        logged += 1;
        let text = relay.scrub(String::from_utf8_lossy(&line).trim_end());
        tracing::debug!(upstream = %name, line = %text, "upstream stderr");
    }
}

use tokio::io::AsyncReadExt as _;

/// Items of one kind an upstream may list, and pages it may take to list them.
const MAX_ITEMS: usize = 5000;
const MAX_PAGES: usize = 100;

/// Follows `next_cursor` through the pages of one list, at most [`MAX_PAGES`] pages and
/// [`MAX_ITEMS`] items: an upstream that pages on forever is an error, not an allocation.
macro_rules! list_pages {
    ($peer:expr, $method:ident, $field:ident, $what:literal) => {{
        let mut items = Vec::new();
        let mut cursor = None;
        let mut listed = Err(format!("its {} take more than {MAX_PAGES} pages", $what));
        for _ in 0..MAX_PAGES {
            let params = cursor.take().map(|cursor| {
                let mut params = rmcp::model::PaginatedRequestParams::default();
                params.cursor = Some(cursor);
                params
            });
            let page = $peer.$method(params).await.map_err(|e| e.to_string())?;
            items.extend(page.$field);
            if items.len() > MAX_ITEMS {
                listed = Err(format!("it lists more than {MAX_ITEMS} {}", $what));
                break;
            }
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => {
                    listed = Ok(std::mem::take(&mut items));
                    break;
                }
            }
        }
        listed
    }};
}

/// Everything the upstream offers, by the capabilities it declared.
async fn list(peer: &Peer<RoleClient>) -> Result<Offer, String> {
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let mut offer = Offer::default();
    if capabilities.tools.is_some() {
        offer.tools = list_pages!(peer, list_tools, tools, "tools")?;
    }
    if capabilities.prompts.is_some() {
        offer.prompts = list_pages!(peer, list_prompts, prompts, "prompts")?;
    }
    if let Some(resources) = &capabilities.resources {
        offer.resources = list_pages!(peer, list_resources, resources, "resources")?;
        offer.templates = list_pages!(
            peer,
            list_resource_templates,
            resource_templates,
            "resource templates"
        )?;
        offer.subscribe = resources.subscribe == Some(true);
    }
    Ok(offer)
}
