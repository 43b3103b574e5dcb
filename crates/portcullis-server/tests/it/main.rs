//! The server as a library: custom tools through the guard pipeline, driven by a real rmcp
//! client over the stdio framing (in memory) and over HTTP (loopback).

#![allow(
    clippy::disallowed_methods,
    reason = "tests spawn processes and write fixture files"
)]

mod app;
mod catalog;
mod changes;
mod lifecycle;
mod panics;
mod principals;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use portcullis_server::rmcp::model::{CallToolResult, ContentBlock, Tool as ToolDef};
use portcullis_server::{
    Catalog, CatalogBuilder, GuardConfig, PortcullisHandler, ServerIdentity, Tool, ToolCall,
    ToolError, ToolOutput,
};
use serde_json::json;
use tokio::sync::Notify;

/// A tool that signals when it starts, then works for `duration` (or until cancelled), and
/// counts how often it finished and how often it was stopped half-way.
#[derive(Clone, Default)]
pub struct Slow {
    pub started: Arc<Notify>,
    pub finished: Arc<AtomicUsize>,
    pub stopped: Arc<AtomicUsize>,
    /// Notified when a call is stopped half-way.
    pub stopped_signal: Arc<Notify>,
}

/// Counts (and signals) a stop when dropped before being disarmed: a future dropped
/// mid-work.
struct StopCounter(Option<(Arc<AtomicUsize>, Arc<Notify>)>);

impl Drop for StopCounter {
    fn drop(&mut self) {
        if let Some((counter, signal)) = self.0.take() {
            counter.fetch_add(1, Ordering::SeqCst);
            signal.notify_one();
        }
    }
}

#[async_trait]
impl Tool for Slow {
    fn definition(&self) -> ToolDef {
        let schema = json!({
            "type": "object",
            "properties": { "millis": { "type": "integer", "minimum": 0 } },
            "required": ["millis"],
            "additionalProperties": false
        });
        ToolDef::new(
            "slow",
            "Works for `millis` milliseconds",
            schema.as_object().cloned().unwrap_or_default(),
        )
    }

    async fn call(&self, call: ToolCall) -> Result<ToolOutput, ToolError> {
        let millis = call.arguments["millis"].as_u64().unwrap_or(0);
        let mut guard = StopCounter(Some((
            Arc::clone(&self.stopped),
            Arc::clone(&self.stopped_signal),
        )));
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(millis)).await;
        guard.0 = None;
        self.finished.fetch_add(1, Ordering::SeqCst);
        Ok(CallToolResult::success(vec![ContentBlock::text(format!("worked {millis} ms"))]).into())
    }
}

/// A tool that always fails internally: its error must never reach the client.
pub struct Broken;

#[async_trait]
impl Tool for Broken {
    fn definition(&self) -> ToolDef {
        ToolDef::new(
            "broken",
            "Fails",
            json!({ "type": "object" })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        )
    }

    async fn call(&self, _call: ToolCall) -> Result<ToolOutput, ToolError> {
        let io =
            std::io::Error::other("connect to postgres://admin:hunter2@db.internal:5432 failed");
        Err(ToolError::internal("querying the orders table", io))
    }
}

pub fn handler(slow: &Slow, timeout: Duration) -> PortcullisHandler {
    let mut builder = CatalogBuilder::new();
    builder.tool(slow.clone()).tool(Broken);
    let catalog: Catalog = builder.build().expect("catalog");
    let identity = ServerIdentity {
        name: "lib-test".into(),
        title: None,
        version: "1.2.3".into(),
        instructions: None,
    };
    PortcullisHandler::new(
        Arc::new(catalog),
        identity,
        GuardConfig::with_timeout(timeout),
    )
}
