//! MCP over stdin/stdout. stdout carries JSON-RPC and nothing else; logs go to stderr.

use rmcp::ServiceExt;
use tokio_util::sync::CancellationToken;

use super::TransportError;
use crate::PortcullisHandler;

/// Serves one client on stdin/stdout until it disconnects or `shutdown` is cancelled.
/// In-flight calls get up to `grace` to finish after `shutdown`.
pub async fn serve(
    handler: PortcullisHandler,
    shutdown: CancellationToken,
    grace: std::time::Duration,
) -> Result<(), TransportError> {
    let session_ct = CancellationToken::new();
    let in_flight = handler.in_flight();
    let service = handler
        .serve_with_ct(rmcp::transport::stdio(), session_ct.clone())
        .await
        .map_err(|e| TransportError::Session(e.to_string()))?;
    tracing::info!(transport = "stdio", "serving");
    let waiting = service.waiting();
    tokio::pin!(waiting);
    tokio::select! {
        reason = &mut waiting => {
            tracing::info!(reason = ?reason.ok(), "stdio session ended");
            return Ok(());
        }
        () = shutdown.cancelled() => {}
    }
    in_flight.close();
    if tokio::time::timeout(grace, in_flight.wait()).await.is_err() {
        tracing::warn!(grace_secs = grace.as_secs_f64(), "in-flight calls did not finish before the shutdown deadline");
    }
    session_ct.cancel();
    let _ = waiting.await;
    Ok(())
}
