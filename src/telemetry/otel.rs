//! Turning OpenTelemetry export on, the standard way: `OTEL_*` variables
//! first, then the `[telemetry]` table, else off (and then nothing on the
//! request path beyond one check of a `OnceLock`).
//!
//! Exporters run on the SDK's own threads (batch span processor, periodic
//! metric reader); the request path only hands a finished span to a bounded
//! queue ([`super::export`]), so a collector that is down or slow costs
//! requests nothing.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

use crate::config::{OtlpProtocol, TelemetryConfig};

/// How long shutdown waits for the last spans and metrics to go out.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Why telemetry could not be started; the gateway refuses to start with a
/// telemetry setup it cannot honour rather than run without it unnoticed.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("{var}=`{value}`: Switchyard exports OTLP as `grpc` or `http/protobuf`")]
    Protocol { var: &'static str, value: String },
    #[error("{var}=`{value}`: Switchyard exports `otlp` or `none`")]
    Exporter { var: &'static str, value: String },
    #[error("{var}=`{value}`: not a whole number")]
    Number { var: &'static str, value: String },
    #[error("cannot build the OTLP {signal} exporter: {message}")]
    Build {
        signal: &'static str,
        message: String,
    },
}

/// What to export, where and how, resolved from env and config.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `None`: this signal is not exported.
    pub traces: Option<Signal>,
    pub metrics: Option<Signal>,
    /// Service name to set when the environment names none.
    pub service_name: Option<String>,
    pub capture_content: bool,
    pub propagate_to_upstream: bool,
    pub queue_size: usize,
}

/// One signal's transport.
#[derive(Debug, Clone, PartialEq)]
pub struct Signal {
    pub protocol: OtlpProtocol,
    /// Set only when no `OTEL_EXPORTER_OTLP_*ENDPOINT` variable applies, so
    /// the exporter reads the environment itself otherwise.
    pub endpoint: Option<String>,
}

fn protocol(var: &'static str, value: &str) -> Result<OtlpProtocol, OtelError> {
    match value.trim() {
        "grpc" => Ok(OtlpProtocol::Grpc),
        "http/protobuf" => Ok(OtlpProtocol::HttpProtobuf),
        other => Err(OtelError::Protocol {
            var,
            value: other.to_string(),
        }),
    }
}

/// `OTEL_TRACES_EXPORTER` / `OTEL_METRICS_EXPORTER`: `otlp` (default) or
/// `none`.
fn exporter_on(var: &'static str, env: &dyn Fn(&str) -> Option<String>) -> Result<bool, OtelError> {
    match env(var).as_deref().map(str::trim) {
        None | Some("") | Some("otlp") => Ok(true),
        Some("none") => Ok(false),
        Some(other) => Err(OtelError::Exporter {
            var,
            value: other.to_string(),
        }),
    }
}

/// Resolves the settings; `Ok(None)` means export is off.
pub fn resolve(
    cfg: &TelemetryConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Settings>, OtelError> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let general = get("OTEL_EXPORTER_OTLP_ENDPOINT");
    let general_protocol = match get("OTEL_EXPORTER_OTLP_PROTOCOL") {
        Some(v) => protocol("OTEL_EXPORTER_OTLP_PROTOCOL", &v)?,
        None => cfg.otlp_protocol,
    };
    let signal = |on: bool,
                  endpoint_var: &'static str,
                  protocol_var: &'static str,
                  path: &str|
     -> Result<Option<Signal>, OtelError> {
        let env_endpoint = general.is_some() || get(endpoint_var).is_some();
        if !on || !(env_endpoint || cfg.otlp_endpoint.is_some()) {
            return Ok(None);
        }
        let protocol = match get(protocol_var) {
            Some(v) => protocol(protocol_var, &v)?,
            None => general_protocol,
        };
        let endpoint = match (&cfg.otlp_endpoint, env_endpoint) {
            (Some(base), false) => Some(match protocol {
                OtlpProtocol::Grpc => base.clone(),
                OtlpProtocol::HttpProtobuf => format!("{}{path}", base.trim_end_matches('/')),
            }),
            _ => None,
        };
        Ok(Some(Signal { protocol, endpoint }))
    };
    let traces = signal(
        exporter_on("OTEL_TRACES_EXPORTER", env)?,
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "/v1/traces",
    )?;
    let metrics = signal(
        exporter_on("OTEL_METRICS_EXPORTER", env)?,
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        "/v1/metrics",
    )?;
    if traces.is_none() && metrics.is_none() {
        return Ok(None);
    }
    let names_service = get("OTEL_SERVICE_NAME").is_some()
        || get("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let queue_size = match get("OTEL_BSP_MAX_QUEUE_SIZE") {
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or(OtelError::Number {
                var: "OTEL_BSP_MAX_QUEUE_SIZE",
                value: v,
            })?,
        None => cfg.queue_size,
    };
    Ok(Some(Settings {
        traces,
        metrics,
        service_name: (!names_service)
            .then(|| cfg.service_name.clone().unwrap_or("switchyard".into())),
        capture_content: cfg.capture_content
            || get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
        propagate_to_upstream: cfg.propagate_to_upstream,
        queue_size,
    }))
}

/// The running exporters; [`Guard::shutdown`] flushes them.
pub struct Guard {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

/// Starts export if env or config ask for it. Call before the gateway is
/// built, so the metrics recorder is the fan-out from the first sample.
pub async fn start(cfg: &TelemetryConfig) -> Result<Option<Guard>, OtelError> {
    let Some(settings) = resolve(cfg, &|k| std::env::var(k).ok())? else {
        return Ok(None);
    };
    // Off the async workers: the HTTP exporter's blocking client must not be
    // built on one, and the gRPC one needs the runtime context (which a
    // blocking-pool thread has).
    tokio::task::spawn_blocking(move || build(settings))
        .await
        .map_err(|e| OtelError::Build {
            signal: "telemetry",
            message: e.to_string(),
        })?
        .map(Some)
}

fn build(s: Settings) -> Result<Guard, OtelError> {
    let mut resource = Resource::builder();
    if let Some(name) = &s.service_name {
        resource = resource.with_service_name(name.clone());
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let tracer = match &s.traces {
        None => None,
        Some(signal) => {
            let exporter = span_exporter(signal)?;
            let provider = SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_span_processor(super::export::Bounded::new(exporter, s.queue_size))
                .build();
            super::span::install(
                &provider,
                super::span::Options {
                    capture_content: s.capture_content,
                    propagate_to_upstream: s.propagate_to_upstream,
                },
            );
            Some(provider)
        }
    };
    let meter = match &s.metrics {
        None => None,
        Some(signal) => {
            let reader = PeriodicReader::builder(metric_exporter(signal)?).build();
            let provider = SdkMeterProvider::builder()
                .with_resource(resource)
                .with_reader(reader)
                .build();
            let meter = opentelemetry::metrics::MeterProvider::meter(&provider, "switchyard");
            if !super::install_otel(super::bridge::OtelRecorder::new(&meter)) {
                tracing::warn!(
                    "metrics were recorded before OTLP export started; they are not exported"
                );
            }
            Some(provider)
        }
    };
    tracing::info!(
        traces = ?s.traces.as_ref().map(|t| t.protocol),
        metrics = ?s.metrics.as_ref().map(|m| m.protocol),
        capture_content = s.capture_content,
        "OpenTelemetry export on"
    );
    Ok(Guard { tracer, meter })
}

fn build_error(
    signal: &'static str,
) -> impl Fn(opentelemetry_otlp::ExporterBuildError) -> OtelError {
    move |e| OtelError::Build {
        signal,
        message: e.to_string(),
    }
}

/// Builds one signal's OTLP exporter: the span and metric builders have the
/// same methods but no common trait to write a function over.
macro_rules! exporter {
    ($builder:expr, $signal:expr, $name:literal) => {{
        let signal: &Signal = $signal;
        match (signal.protocol, &signal.endpoint) {
            (OtlpProtocol::Grpc, Some(e)) => $builder.with_tonic().with_endpoint(e).build(),
            (OtlpProtocol::Grpc, None) => $builder.with_tonic().build(),
            (OtlpProtocol::HttpProtobuf, e) => {
                let b = $builder
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
                match e {
                    Some(e) => b.with_endpoint(e).build(),
                    None => b.build(),
                }
            }
        }
        .map_err(build_error($name))
    }};
}

fn span_exporter(signal: &Signal) -> Result<opentelemetry_otlp::SpanExporter, OtelError> {
    exporter!(opentelemetry_otlp::SpanExporter::builder(), signal, "trace")
}

fn metric_exporter(signal: &Signal) -> Result<opentelemetry_otlp::MetricExporter, OtelError> {
    exporter!(
        opentelemetry_otlp::MetricExporter::builder(),
        signal,
        "metric"
    )
}

impl Guard {
    /// Flushes spans and metrics, then stops the exporters; waits at most
    /// [`FLUSH_TIMEOUT`] for a collector that does not answer.
    pub async fn shutdown(self) {
        let done = tokio::task::spawn_blocking(move || {
            if let Some(t) = self.tracer {
                let _ = t.force_flush();
                let _ = t.shutdown_with_timeout(FLUSH_TIMEOUT);
            }
            if let Some(m) = self.meter {
                let _ = m.force_flush();
                let _ = m.shutdown_with_timeout(FLUSH_TIMEOUT);
            }
        });
        if tokio::time::timeout(FLUSH_TIMEOUT * 2, done).await.is_err() {
            tracing::warn!("telemetry did not flush in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn with(vars: &[(&str, &str)], cfg: &TelemetryConfig) -> Result<Option<Settings>, OtelError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(cfg, &move |k| map.get(k).cloned())
    }

    #[test]
    fn off_without_an_endpoint_and_when_disabled() {
        let cfg = TelemetryConfig::default();
        assert_eq!(with(&[], &cfg).unwrap(), None);
        let on = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
        assert!(with(&on, &cfg).unwrap().is_some());
        let off = [on[0], ("OTEL_SDK_DISABLED", "TRUE")];
        assert_eq!(with(&off, &cfg).unwrap(), None);
        let both_none = [
            on[0],
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ];
        assert_eq!(with(&both_none, &cfg).unwrap(), None);
    }

    #[test]
    fn traces_none_keeps_metrics() {
        let cfg = TelemetryConfig::default();
        let s = with(
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_TRACES_EXPORTER", "none"),
            ],
            &cfg,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.traces, None);
        let m = s.metrics.unwrap();
        assert_eq!(m.protocol, OtlpProtocol::Grpc);
        assert_eq!(
            m.endpoint, None,
            "the exporter reads the env endpoint itself"
        );
    }

    #[test]
    fn the_file_endpoint_gets_signal_paths_for_http_and_env_wins() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://collector:4318/".into()),
            ..TelemetryConfig::default()
        };
        let s = with(&[], &cfg).unwrap().unwrap();
        assert_eq!(
            s.traces.unwrap().endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(
            s.metrics.unwrap().endpoint.as_deref(),
            Some("http://collector:4318/v1/metrics")
        );
        let s = with(
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://other:4318")],
            &cfg,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.traces.unwrap().endpoint, None);
        let grpc = TelemetryConfig {
            otlp_protocol: OtlpProtocol::Grpc,
            ..cfg
        };
        let s = with(&[], &grpc).unwrap().unwrap();
        assert_eq!(
            s.traces.unwrap().endpoint.as_deref(),
            Some("http://collector:4318/")
        );
    }

    #[test]
    fn service_name_only_when_the_environment_names_none() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://c:4318".into()),
            ..TelemetryConfig::default()
        };
        let s = with(&[], &cfg).unwrap().unwrap();
        assert_eq!(s.service_name.as_deref(), Some("switchyard"));
        let s = with(&[("OTEL_SERVICE_NAME", "edge")], &cfg)
            .unwrap()
            .unwrap();
        assert_eq!(s.service_name, None);
        let s = with(
            &[(
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=prod, service.name=gw",
            )],
            &cfg,
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.service_name, None);
    }

    #[test]
    fn content_capture_is_opt_in_and_bad_values_are_errors() {
        let cfg = TelemetryConfig {
            otlp_endpoint: Some("http://c:4318".into()),
            ..TelemetryConfig::default()
        };
        assert!(!with(&[], &cfg).unwrap().unwrap().capture_content);
        let on = [("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")];
        assert!(with(&on, &cfg).unwrap().unwrap().capture_content);
        let bad = [("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")];
        assert!(matches!(with(&bad, &cfg), Err(OtelError::Protocol { .. })));
        let bad = [("OTEL_TRACES_EXPORTER", "zipkin")];
        assert!(matches!(with(&bad, &cfg), Err(OtelError::Exporter { .. })));
        let bad = [("OTEL_BSP_MAX_QUEUE_SIZE", "0")];
        assert!(matches!(with(&bad, &cfg), Err(OtelError::Number { .. })));
    }
}
