//! OpenTelemetry traces: the OTLP exporter, set up from `[traces]` and the standard
//! `OTEL_*` variables. Off (no layer, no exporter) unless one of them names an endpoint.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, span_processor_with_async_runtime};
use portcullis_config::{Config, TraceProtocol};

/// Why traces cannot be set up as configured.
#[derive(Debug, thiserror::Error)]
#[error("traces: {0}")]
pub struct TracesError(String);

impl TracesError {
    fn new(message: String) -> Self {
        Self(message)
    }
}

/// Where and how spans go, resolved from the config and the environment.
#[derive(Debug, PartialEq)]
pub(crate) struct Settings {
    /// The full URL the exporter sends to (`…/v1/traces` for HTTP).
    pub(crate) endpoint: String,
    pub(crate) protocol: TraceProtocol,
    pub(crate) service_name: String,
    pub(crate) sample_ratio: f64,
}

/// What `[traces]` and the `OTEL_*` variables ask for; `None` when traces are off.
pub(crate) fn settings(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Settings>, TracesError> {
    let section = &config.traces;
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    if !section.enabled {
        return Ok(None);
    }
    let protocol = match section.protocol {
        Some(protocol) => protocol,
        None => match env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
            .map(str::trim)
        {
            None | Some("http/protobuf") => TraceProtocol::HttpProtobuf,
            Some("grpc") => TraceProtocol::Grpc,
            Some(other) => {
                return Err(TracesError::new(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL `{other}` is not supported: use `http/protobuf` or `grpc`"
                )));
            }
        },
    };
    // The specification's rules: a base URL gets the signal's path over HTTP; the
    // signal's own variable is used as is.
    let with_path = |base: &str| match protocol {
        TraceProtocol::HttpProtobuf => format!("{}/v1/traces", base.trim_end_matches('/')),
        TraceProtocol::Grpc => base.to_owned(),
    };
    let endpoint = match &section.endpoint {
        Some(endpoint) => with_path(endpoint),
        None => match env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            Some(endpoint) => endpoint,
            None => match env("OTEL_EXPORTER_OTLP_ENDPOINT") {
                Some(base) => with_path(&base),
                None => return Ok(None),
            },
        },
    };
    let url = url::Url::parse(&endpoint).map_err(|error| {
        TracesError::new(format!(
            "the traces endpoint `{endpoint}` is not a URL: {error}"
        ))
    })?;
    match (url.scheme(), protocol) {
        ("http" | "https", TraceProtocol::HttpProtobuf) | ("http", TraceProtocol::Grpc) => {}
        ("https", TraceProtocol::Grpc) => {
            return Err(TracesError::new(format!(
                "the traces endpoint `{endpoint}`: grpc is supported without TLS only (a collector beside the server); use `http/protobuf` for https"
            )));
        }
        (scheme, _) => {
            return Err(TracesError::new(format!(
                "the traces endpoint must be http:// or https://, not `{scheme}:`"
            )));
        }
    }
    let service_name = section
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| config.server.name.clone());
    Ok(Some(Settings {
        endpoint,
        protocol,
        service_name,
        sample_ratio: section.sample_ratio,
    }))
}

/// The tracer provider exporting to `settings`, batching on the Tokio runtime (call it
/// inside one). `OTEL_EXPORTER_OTLP_HEADERS` and the `OTEL_BSP_*` batch settings are read
/// by the exporter and the processor.
pub(crate) fn provider(settings: &Settings) -> Result<SdkTracerProvider, TracesError> {
    const TIMEOUT: Duration = Duration::from_secs(10);
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match settings.protocol {
        TraceProtocol::HttpProtobuf => {
            // The outbound TLS settings (rustls, webpki roots); the collector is the
            // operator's, so no SSRF guard.
            let tls = crate::outbound::tls_config(None)
                .map_err(|error| TracesError::new(error.to_string()))?;
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .timeout(TIMEOUT)
                .no_proxy()
                .build()
                .map_err(|error| {
                    TracesError::new(format!("cannot build the traces HTTP client: {error}"))
                })?;
            builder
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(&settings.endpoint)
                .with_timeout(TIMEOUT)
                .build()
        }
        TraceProtocol::Grpc => builder
            .with_tonic()
            .with_endpoint(&settings.endpoint)
            .with_timeout(TIMEOUT)
            .build(),
    }
    .map_err(|error| TracesError::new(format!("cannot set up the OTLP exporter: {error}")))?;
    let processor = span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            settings.sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}

/// The `tracing` layer feeding `provider`, filtered to Portcullis's own spans and events
/// (and the OpenTelemetry-only `execute_tool` spans), whatever the log filter says.
pub(crate) fn layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    use tracing_subscriber::Layer as _;
    let targets = tracing_subscriber::filter::Targets::new()
        .with_target("portcullis", tracing::Level::INFO)
        .with_target(crate::traces::OTEL_ONLY_TARGET, tracing::Level::INFO);
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("portcullis"))
        .with_location(false)
        .with_threads(false)
        .with_filter(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(traces: &str) -> Config {
        portcullis_config::parse(
            &format!("[server]\nname = \"svc\"\n[[files]]\nname = \"d\"\npath = \".\"\n{traces}"),
            std::path::Path::new("/tmp/portcullis.toml"),
            |_| None,
        )
        .expect("config")
    }

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn off_without_an_endpoint_and_when_disabled() {
        assert_eq!(settings(&config(""), env(&[])).unwrap(), None);
        assert_eq!(settings(&config("[traces]\n"), env(&[])).unwrap(), None);
        let vars = &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")];
        assert_eq!(
            settings(&config("[traces]\nenabled = false\n"), env(vars)).unwrap(),
            None
        );
    }

    #[test]
    fn endpoint_protocol_and_name_from_config_then_env() {
        let s = settings(
            &config("[traces]\nendpoint = \"http://c:4318/\"\n"),
            env(&[]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.endpoint, "http://c:4318/v1/traces");
        assert_eq!(s.protocol, TraceProtocol::HttpProtobuf);
        assert_eq!(s.service_name, "svc");
        let vars = &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "named"),
        ];
        let s = settings(&config(""), env(vars)).unwrap().unwrap();
        assert_eq!(
            (s.endpoint.as_str(), s.protocol, s.service_name.as_str()),
            ("http://c:4317", TraceProtocol::Grpc, "named")
        );
        let vars = &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://c/custom"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://ignored:4318"),
        ];
        let s = settings(&config(""), env(vars)).unwrap().unwrap();
        assert_eq!(s.endpoint, "https://c/custom");
    }

    #[test]
    fn unsupported_protocols_and_schemes_are_refused() {
        let vars = &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ];
        let error = settings(&config(""), env(vars)).unwrap_err().to_string();
        assert!(error.contains("`http/json` is not supported"), "{error}");
        let error = settings(
            &config("[traces]\nendpoint = \"https://c:4317\"\nprotocol = \"grpc\"\n"),
            env(&[]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("without TLS"), "{error}");
    }
}
