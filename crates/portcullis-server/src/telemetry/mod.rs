//! Telemetry of the process: log lines on stderr (batched, filtered so that no value reaches
//! a log line by raising a level) and OpenTelemetry traces, both from the config's
//! `[logging]` and `[traces]` sections. The `portcullis` binary and every embedding set it
//! up the same way, with [`Telemetry::init`].

mod batch;
mod filter;
mod otlp;

use std::io::IsTerminal as _;

use opentelemetry_sdk::trace::SdkTracerProvider;
use portcullis_config::{Config, LOG_ENV, LogFormat};

pub use filter::log_filter;
pub use otlp::TracesError;

/// Why telemetry could not be set up; nothing is installed then.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The traces settings cannot be used.
    #[error(transparent)]
    Traces(#[from] TracesError),
    /// The log filter in force (`--log-level`, `PORTCULLIS_LOG` or `logging.level`) is not
    /// one.
    #[error("{source_name}: {error}")]
    LogFilter {
        /// Where the filter came from.
        source_name: &'static str,
        /// What is wrong with it.
        error: portcullis_config::LogFilterError,
    },
    /// The filter passed the check but tracing cannot read it.
    #[error("{source_name}: not a log filter tracing can read ({error})")]
    Unparsed {
        /// Where the filter came from.
        source_name: &'static str,
        /// tracing's reason.
        error: String,
    },
}

/// What the command line may override in `[logging]`.
#[derive(Debug, Clone, Default)]
pub struct LogOverrides {
    /// The line format (`auto` is the config's choice).
    pub format: Option<LogFormat>,
    /// The filter, e.g. `debug` (before [`LOG_ENV`] and `logging.level`).
    pub level: Option<String>,
}

/// The installed logging and tracing. Keep it until the process ends: dropping it writes
/// the log lines still batched (waiting a bounded time for a stalled reader).
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    // Declared last: dropped after the tracer, so its last lines are written.
    _flush: batch::FlushGuard,
}

impl Telemetry {
    /// Installs the process's `tracing` subscriber: log lines on stderr as the config and
    /// `overrides` say, and with `[traces]` (or the `OTEL_*` variables) naming an endpoint,
    /// the OpenTelemetry layer beside them; and the panic hook that logs panics. Call it
    /// once, inside the Tokio runtime when traces may be on (spans are batched on it).
    ///
    /// # Errors
    ///
    /// The traces settings cannot be used (an unsupported protocol or scheme, a malformed
    /// endpoint), or the log filter in force is not one; nothing is installed then.
    pub fn init(config: &Config, overrides: LogOverrides) -> Result<Self, TelemetryError> {
        let (spec, source_name) = match (&overrides.level, std::env::var(LOG_ENV).ok()) {
            (Some(level), _) => (level.clone(), "--log-level"),
            (None, Some(level)) => (level, LOG_ENV),
            (None, None) => (config.logging.level.clone(), "logging.level"),
        };
        portcullis_config::check_log_filter(&spec)
            .map_err(|error| TelemetryError::LogFilter { source_name, error })?;
        // What the check lets through, tracing must read too: never a silent fallback.
        let filter =
            tracing_subscriber::EnvFilter::try_new(log_filter(&spec)).map_err(|error| {
                TelemetryError::Unparsed {
                    source_name,
                    error: error.to_string(),
                }
            })?;
        let tracer = match otlp::settings(config, |name| std::env::var(name).ok())? {
            Some(settings) => Some(otlp::provider(&settings)?),
            None => None,
        };
        let flush = install(config, overrides.format, filter, tracer.as_ref());
        crate::install_panic_hook();
        Ok(Self {
            tracer,
            _flush: flush,
        })
    }

    /// Exports the spans still batched, waiting at most the export timeout. It blocks: call
    /// it where blocking is allowed (after `block_on` returns, or in `spawn_blocking`),
    /// while the runtime still runs.
    pub fn flush_traces(&self) {
        if let Some(provider) = &self.tracer
            && let Err(error) = provider.shutdown()
        {
            tracing::warn!(%error, "traces: the last spans could not be exported");
        }
    }
}

/// Installs the subscriber; the returned guard flushes buffered lines when dropped.
fn install(
    config: &Config,
    format: Option<LogFormat>,
    filter: tracing_subscriber::EnvFilter,
    tracer: Option<&SdkTracerProvider>,
) -> batch::FlushGuard {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let json = match format.unwrap_or(config.logging.format) {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    // Logs go to stderr, always: on stdio, stdout carries only JSON-RPC. Lines are written
    // in batches by one thread (batch.rs); when a batch is large, its caller writes it
    // rather than lines being dropped.
    let (writer, guard) = batch::init();
    // The log filter is the fmt layer's own (not global), so the OpenTelemetry layer's
    // filter decides alone what becomes a span: enabling traces changes nothing on stderr.
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    let fmt = if json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter)
            .boxed()
    };
    let registry = tracing_subscriber::registry().with(fmt);
    match tracer {
        Some(provider) => {
            registry.with(otlp::layer(provider)).init();
            crate::traces::enable();
        }
        None => registry.init(),
    }
    guard
}
