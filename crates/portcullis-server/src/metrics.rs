//! Prometheus metrics: the recorder (installed once per process by whoever serves
//! `/metrics`), the names the server records under, and the `/metrics` text.
//!
//! Names follow the OpenTelemetry MCP semantic conventions where they exist
//! (`mcp_server_operation_duration_seconds` with `mcp_method_name`, `gen_ai_tool_name`,
//! `gen_ai_prompt_name`, `error_type`); the rest are `portcullis_*`. Without a recorder every
//! call here is a no-op.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::request::Outcome;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder for this process (once; later calls return the same
/// handle), and records the build info.
pub fn install() -> Option<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Some(handle.clone());
    }
    let buckets = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), &buckets)
        .ok()?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        return None;
    }
    let _ = HANDLE.set(handle.clone());
    describe();
    metrics::gauge!("portcullis_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    Some(handle)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "mcp_server_operation_duration_seconds",
        Unit::Seconds,
        "MCP request duration as observed on the server, by method, tool or prompt, and error type"
    );
    describe_counter!(
        "portcullis_requests_total",
        "Requests that reached the guard, by method, item and outcome"
    );
    describe_gauge!("portcullis_in_flight_calls", "Calls running in a pack now");
    describe_gauge!("portcullis_sessions", "Open 2025-era sessions");
    describe_gauge!(
        "portcullis_subscribers",
        "Subscribers hearing of resource changes now"
    );
    describe_counter!(
        "portcullis_auth_failures_total",
        "HTTP requests refused for missing or invalid credentials, by reason"
    );
    describe_counter!(
        "portcullis_rate_limited_total",
        "Requests refused by a rate limit, by limit"
    );
    describe_counter!("portcullis_audit_records_total", "Audit records written");
    describe_counter!(
        "portcullis_audit_failures_total",
        "Failed writes of the audit log (file or table)"
    );
    describe_counter!(
        "portcullis_audit_lost_records_total",
        "Audit records that could not be written to the file"
    );
    describe_gauge!("portcullis_build_info", "Build information (always 1)");
    describe_counter!("portcullis_audit_rotations_total", "Audit files rotated");
    describe_counter!(
        "portcullis_audit_postgres_dropped_total",
        "Audit records the PostgreSQL sink dropped past its backlog (the file has them)"
    );
    describe_gauge!(
        "portcullis_sql_pool_connections",
        "SQL pool connections per source: open, and in use, as of the last call"
    );
    describe_counter!(
        "portcullis_upstream_responses_total",
        "HTTP pack responses by source and status"
    );
    describe_counter!(
        "portcullis_command_runs_total",
        "Command pack runs by tool and outcome (ok, failed, killed)"
    );
    describe_counter!(
        "portcullis_config_reloads_total",
        "Config reloads by result (ok, error)"
    );
    describe_counter!(
        "portcullis_catalog_rebuilds_failed_total",
        "Catalog rebuilds a pack asked for (an upstream's changed offer) that failed"
    );
    describe_gauge!(
        "portcullis_withheld_items",
        "Upstream items withheld now (changed since pinned, or new and not pinned)"
    );
    describe_counter!(
        "portcullis_withheld_total",
        "Upstream items withheld, by kind, each time one starts being withheld"
    );
    describe_counter!(
        "portcullis_upstream_restarts_total",
        "Upstream connections that ended or failed and were started again, by upstream"
    );
}

/// A probe returns `false` once what it reads is gone; it is then dropped.
type Probe = Box<dyn Fn() -> bool + Send + Sync>;

static PROBES: std::sync::Mutex<Vec<Probe>> = std::sync::Mutex::new(Vec::new());

/// Registers `probe`, run before every scrape to set gauges that are cheaper to read then
/// than to keep current (open sessions).
pub(crate) fn on_scrape(probe: impl Fn() -> bool + Send + Sync + 'static) {
    PROBES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Box::new(probe));
}

/// The `/metrics` text, or `None` when no recorder is installed.
pub fn render() -> Option<String> {
    let handle = HANDLE.get()?;
    PROBES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .retain(|probe| probe());
    Some(handle.render())
}

/// One request's end.
pub(crate) fn request(method: &'static str, item: &str, outcome: Outcome, duration: Duration) {
    if HANDLE.get().is_none() {
        return;
    }
    // A name the catalog does not have is the client's text: as a label it would let a
    // client grow the series without bound.
    let item = if outcome == Outcome::NotFound {
        "<unknown>"
    } else {
        item
    };
    let outcome = outcome.as_str();
    let error_type = if matches!(outcome, "ok" | "input_required") {
        ""
    } else {
        outcome
    };
    let item = item.to_owned();
    let name_label = match method {
        "tools/call" => "gen_ai_tool_name",
        "prompts/get" => "gen_ai_prompt_name",
        _ => "mcp_resource",
    };
    metrics::histogram!(
        "mcp_server_operation_duration_seconds",
        "mcp_method_name" => method,
        name_label => item.clone(),
        "error_type" => error_type,
    )
    .record(duration.as_secs_f64());
    metrics::counter!(
        "portcullis_requests_total",
        "method" => method,
        "name" => item,
        "outcome" => outcome,
    )
    .increment(1);
}

/// Counts a call as in flight until dropped.
pub(crate) struct InFlight(());

impl InFlight {
    pub(crate) fn start() -> Self {
        metrics::gauge!("portcullis_in_flight_calls").increment(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("portcullis_in_flight_calls").decrement(1.0);
    }
}
