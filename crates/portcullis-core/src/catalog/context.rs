//! What a tool can do besides returning a result: report progress, send log messages (only
//! those the client asked for), ask the client things (2025 sessions), and see who is calling.

#![allow(
    deprecated,
    reason = "MCP logging is deprecated by SEP-2577 but still part of both eras we serve"
)]

use rmcp::ErrorData;
use rmcp::RoleServer;
use rmcp::model::{
    ClientCapabilities, LoggingLevel, LoggingMessageNotificationParam, ProgressNotificationParam,
    ProgressToken, ReadResourceResponse, ReadResourceResult, RequestMetaObject,
};
use rmcp::service::{Peer, RequestContext};
use serde_json::Value;

use crate::Principal;

/// Reads resources of the server for one tool call, as that call's caller: through the same
/// guard as the caller's own `resources/read`. The server gives every call one.
#[async_trait::async_trait]
pub trait ReadResource: Send + Sync + std::fmt::Debug {
    /// The codec of 2026-07-28 multi-round `requestState` (see
    /// [`CallContext::request_state`]).
    fn request_state(&self) -> &rmcp::model::RequestStateCodec;

    /// Reads `uri` as the caller; `cancel` ends the read.
    async fn read(
        &self,
        uri: &str,
        cancel: tokio_util::sync::CancellationToken,
    ) -> Result<ReadResourceResponse, ErrorData>;
}

/// The request-scoped context of a tool call.
#[derive(Debug, Clone)]
pub struct CallContext {
    peer: Peer<RoleServer>,
    meta: RequestMetaObject,
    inline: bool,
    progress_token: Option<ProgressToken>,
    log_threshold: Option<LoggingLevel>,
    /// Deserialised from `_meta` (or the session) on first use only: most calls never ask.
    client_capabilities: std::sync::OnceLock<Option<ClientCapabilities>>,
    principal: Option<Principal>,
    /// Reads as the caller; its reads are recorded as part of this call.
    resources: std::sync::Arc<dyn ReadResource>,
    /// The call's cancellation, which also ends the reads it makes.
    cancel: tokio_util::sync::CancellationToken,
}

impl CallContext {
    /// Takes the request's context apart (no copies on the hot path); returns the context and
    /// the request's cancellation token. The server builds one per tool call.
    pub fn new(
        context: RequestContext<RoleServer>,
        session_log_level: Option<LoggingLevel>,
        principal: Option<Principal>,
        resources: std::sync::Arc<dyn ReadResource>,
    ) -> (Self, tokio_util::sync::CancellationToken) {
        // 2026-07-28 requests carry their own log level in `_meta`; without one the server
        // must not log to the client. 2025 sessions use the level set by `logging/setLevel`.
        let inline = context.meta.protocol_version().is_some();
        let log_threshold = if inline {
            context.meta.log_level()
        } else {
            context.meta.log_level().or(session_log_level)
        };
        let call = Self {
            progress_token: context.meta.get_progress_token(),
            peer: context.peer,
            meta: context.meta,
            inline,
            log_threshold,
            client_capabilities: std::sync::OnceLock::new(),
            principal,
            resources,
            cancel: context.ct.clone(),
        };
        (call, context.ct)
    }

    /// The same context whose reads end with `cancel` instead of the request's token (a
    /// call that runs as a task outlives its request).
    #[must_use]
    pub fn cancelled_by(mut self, cancel: tokio_util::sync::CancellationToken) -> Self {
        self.cancel = cancel;
        self
    }

    /// Reports progress, if the client asked for it (a `progressToken` in the request).
    pub async fn progress(&self, progress: f64, total: Option<f64>, message: Option<&str>) {
        let Some(token) = &self.progress_token else {
            return;
        };
        let mut params = ProgressNotificationParam::new(token.clone(), progress);
        if let Some(total) = total {
            params = params.with_total(total);
        }
        if let Some(message) = message {
            params = params.with_message(message);
        }
        if let Err(error) = self.peer.notify_progress(params).await {
            tracing::debug!(%error, "progress notification not delivered");
        }
    }

    /// Sends a log message to the client if it asked for messages at `level` or above.
    pub async fn log(&self, level: LoggingLevel, logger: &str, data: Value) {
        let Some(threshold) = self.log_threshold else {
            return;
        };
        if rank(level) < rank(threshold) {
            return;
        }
        let params = LoggingMessageNotificationParam::new(level, data).with_logger(logger);
        if let Err(error) = self.peer.notify_logging_message(params).await {
            tracing::debug!(%error, "log notification not delivered");
        }
    }

    /// The client connection, for server-to-client requests (sampling, elicitation) in 2025
    /// sessions. 2026-07-28 tools ask through an input-required result instead.
    pub fn peer(&self) -> &Peer<RoleServer> {
        &self.peer
    }

    /// The capabilities the client declared (per request in 2026-07-28, per session before).
    pub fn client_capabilities(&self) -> Option<&ClientCapabilities> {
        self.client_capabilities
            .get_or_init(|| {
                // Per request in 2026-07-28; a 2025 session declared them at `initialize`.
                let from_meta = self.meta.client_capabilities();
                if self.inline {
                    from_meta
                } else {
                    from_meta
                        .or_else(|| self.peer.peer_info().map(|info| info.capabilities.clone()))
                }
            })
            .as_ref()
    }

    /// Who is calling, as the transport attached it. The guard refuses calls without one,
    /// so a tool never sees `None`.
    pub fn principal(&self) -> Option<&Principal> {
        self.principal.as_ref()
    }

    /// Seals and opens the `requestState` of 2026-07-28 multi-round calls: sealed with the
    /// first of `cluster.state_keys` and opened with any of them, so a round may land on any
    /// replica (without `state_keys`, with a random key of this process). A state that does
    /// not open was made up or altered by the client: answer it with
    /// [`ToolError::rejected`](crate::ToolError::rejected).
    pub fn request_state(&self) -> &rmcp::model::RequestStateCodec {
        self.resources.request_state()
    }

    /// Reads a resource of this server as the caller: the same guard as the caller's own
    /// `resources/read` (scopes, rate limits, timeout, audit line), so a tool can never read
    /// what its caller could not. The error is the one the caller would have received.
    ///
    /// ```no_run
    /// # use portcullis_core::{CallContext, ToolError};
    /// # async fn body(context: &CallContext) -> Result<String, ToolError> {
    /// let notes = context
    ///     .read_resource("note://meeting")
    ///     .await
    ///     .map_err(|error| ToolError::Rejected(error.message.to_string()))?;
    /// # Ok(format!("{} contents", notes.contents.len()))
    /// # }
    /// ```
    pub async fn read_resource(&self, uri: &str) -> Result<ReadResourceResult, ErrorData> {
        match self.resources.read(uri, self.cancel.child_token()).await? {
            ReadResourceResponse::Complete(result) => Ok(result),
            // Resource sources only ever answer complete results.
            _ => Err(crate::error::internal(
                "the resource needs input to be read",
            )),
        }
    }

    /// The request's `_meta`.
    pub fn meta(&self) -> &RequestMetaObject {
        &self.meta
    }
}

/// Severity order of MCP log levels (RFC 5424, lowest first).
fn rank(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}
