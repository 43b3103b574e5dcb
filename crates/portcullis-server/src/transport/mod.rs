//! Transports: the only code that touches stdio or sockets.

mod admission;
mod console;
pub mod http;
mod legacy_sse;
mod ready;
mod sessions;
pub mod stdio;

/// Why a transport could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// Listening on a non-loopback address without authentication is refused.
    #[error(
        "refusing to listen on {0}: it is not a loopback address and no authentication is configured; \
         configure [auth] (API keys or JWT) or listen on 127.0.0.1 or [::1]"
    )]
    InsecureListen(std::net::SocketAddr),
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr} (`{setting}`): {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The setting that names it (`http.listen`, `metrics.listen`).
        setting: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An I/O failure while serving.
    #[error("i/o error while serving: {0}")]
    Io(#[from] std::io::Error),
    /// The MCP session over stdio could not start.
    #[error("mcp session failed to start: {0}")]
    Session(String),
}

/// A channel that receives one message per SIGHUP (a config reload request). Empty where
/// there are no such signals.
pub fn reload_on_signal() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    tracing::info!(signal = "SIGHUP", "config reload requested");
                    // One pending request is enough: a reload reads the file as it is then.
                    let _ = tx.try_send(());
                }
            });
        }
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP; config reload by signal is off")
        }
    }
    #[cfg(not(unix))]
    drop(tx);
    rx
}

/// A token cancelled on the first SIGTERM or SIGINT (Ctrl-C).
pub fn shutdown_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(
                tokio::signal::unix::SignalKind::terminate(),
            ) {
                Ok(term) => term,
                Err(error) => {
                    tracing::warn!(%error, "cannot listen for SIGTERM; only Ctrl-C will stop the server");
                    let _ = ctrl_c.await;
                    trigger.cancel();
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => tracing::info!(signal = "SIGINT", "shutdown requested"),
                _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = ctrl_c.await;
            tracing::info!(signal = "ctrl-c", "shutdown requested");
        }
        trigger.cancel();
    });
    token
}
