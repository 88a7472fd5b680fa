//! Observability: every metric and attribute name in one place, typed
//! helpers to record them, the Prometheus rendering for `GET /metrics`, and
//! (when configured) OpenTelemetry traces and metrics over OTLP.
//!
//! One source of truth: each number is recorded once, through the
//! `metrics` facade. Its recorder is the Prometheus registry alone, or,
//! when OTLP export is on, a fan-out to that registry and to the OTel meter
//! ([`bridge`]), so `/metrics` and the collector see the same counts and
//! the same histogram buckets.
//!
//! Prometheus names: one prefix, base units, `_total` counters, `_seconds`
//! histograms, and only low-cardinality labels (route, target, dialect,
//! outcome, reason, provider, upstream model: all from the config or enums).

pub mod attributes;
mod bridge;
mod export;
pub mod otel;
pub mod span;

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use attributes as attr;

pub use span::{tracing_on, Operation, OperationTarget, Parent, RequestSpan};

pub const REQUESTS: &str = "switchyard_requests_total";
pub const FAILOVERS: &str = "switchyard_failovers_total";
pub const EJECTIONS: &str = "switchyard_ejections_total";
pub const SUSPENSIONS: &str = "switchyard_suspensions_total";
pub const ATTEMPT_DURATION: &str = "switchyard_attempt_duration_seconds";
pub const OPERATION_DURATION: &str = "switchyard_gen_ai_client_operation_duration_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "switchyard_time_to_first_token_seconds";
pub const TOKEN_USAGE: &str = "switchyard_gen_ai_client_token_usage";
pub const TOKENS: &str = "switchyard_tokens_total";
pub const TARGET_STATE: &str = "switchyard_target_state";
pub const RELOADS: &str = "switchyard_reloads_total";
pub const CONFIG_VERSION: &str = "switchyard_config_version";
pub const MALFORMED_EVENTS: &str = "switchyard_malformed_stream_events_total";
pub const SPANS_DROPPED: &str = "switchyard_telemetry_spans_dropped_total";
pub const EXPORT_FAILURES: &str = "switchyard_telemetry_export_failures_total";
pub const STATE_PERSIST_FAILURES: &str = "switchyard_state_persist_failures_total";
pub const ACCEPT_ERRORS: &str = "switchyard_accept_errors_total";
pub const FLEET_LINK_UP: &str = "switchyard_fleet_link_up";
pub const ABUSE_FLAGS: &str = "switchyard_abuse_flags_total";
pub const ABUSE_DROPPED: &str = "switchyard_abuse_records_dropped_total";

/// What kind of instrument a metric is, on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: its Prometheus name, its OTLP name, unit and buckets.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub prometheus: &'static str,
    pub otel: &'static str,
    pub kind: Kind,
    pub unit: &'static str,
    pub help: &'static str,
    /// Histogram bucket bounds, identical in both exports.
    pub buckets: &'static [f64],
}

/// Latency buckets, in seconds: 1 ms to 2 min.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Token-count buckets: the GenAI conventions' powers of four.
const TOKEN_BUCKETS: &[f64] = &[
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

const fn def(
    prometheus: &'static str,
    otel: &'static str,
    kind: Kind,
    unit: &'static str,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        prometheus,
        otel,
        kind,
        unit,
        help,
        buckets: match kind {
            Kind::Histogram => BUCKETS,
            _ => &[],
        },
    }
}

/// Every metric the gateway records.
pub const METRICS: &[MetricDef] = &[
    def(REQUESTS, "switchyard.requests", Kind::Counter, "{request}", "Client requests, by route, serving target, dialect and outcome."),
    def(FAILOVERS, "switchyard.failovers", Kind::Counter, "{failover}", "Attempts whose failure moved a request on, by route, target and reason."),
    def(EJECTIONS, "switchyard.ejections", Kind::Counter, "{ejection}", "Targets taken out by outlier detection or a disabled account."),
    def(SUSPENSIONS, "switchyard.suspensions", Kind::Counter, "{suspension}", "Targets suspended by ops."),
    def(ATTEMPT_DURATION, "switchyard.attempt.duration", Kind::Histogram, "s", "Time from sending an attempt to a good answer (first content for a stream) or its failure."),
    def(OPERATION_DURATION, "gen_ai.client.operation.duration", Kind::Histogram, "s", "GenAI operation duration: one upstream attempt, to the end of its answer."),
    def(TIME_TO_FIRST_TOKEN, "gen_ai.client.operation.time_to_first_chunk", Kind::Histogram, "s", "Time from sending a streamed attempt to its first content chunk."),
    MetricDef {
        buckets: TOKEN_BUCKETS,
        ..def(TOKEN_USAGE, "gen_ai.client.token.usage", Kind::Histogram, "{token}", "Tokens per upstream operation, by token type.")
    },
    def(TOKENS, "switchyard.tokens", Kind::Counter, "{token}", "Tokens served, by route, target and direction."),
    def(TARGET_STATE, "switchyard.target.state", Kind::Gauge, "1", "1 for the state each target is in, 0 for the others."),
    def(RELOADS, "switchyard.reloads", Kind::Counter, "{reload}", "Routes-table reloads, by result."),
    def(CONFIG_VERSION, "switchyard.config.version", Kind::Gauge, "1", "Version of the live routes table."),
    def(MALFORMED_EVENTS, "switchyard.malformed_stream_events", Kind::Counter, "{event}", "Upstream stream events dropped as malformed."),
    def(SPANS_DROPPED, "switchyard.telemetry.spans_dropped", Kind::Counter, "{span}", "Spans dropped because the export queue was full."),
    def(EXPORT_FAILURES, "switchyard.telemetry.export_failures", Kind::Counter, "{export}", "Span batches the collector did not take."),
    def(STATE_PERSIST_FAILURES, "switchyard.state.persist_failures", Kind::Counter, "{write}", "Writes of the state file (suspensions) that failed; the change stayed in force."),
    def(ACCEPT_ERRORS, "switchyard.accept_errors", Kind::Counter, "{error}", "Failed accepts of client connections, by error (out_of_fds, out_of_memory, other)."),
    def(FLEET_LINK_UP, "switchyard.fleet.link_up", Kind::Gauge, "1", "1 while this replica's link to the fleet's Redis works, 0 while it serves on its last known state."),
    def(ABUSE_FLAGS, "switchyard.abuse.flags", Kind::Counter, "{flag}", "Keys flagged by the live abuse detector, by kind."),
    def(ABUSE_DROPPED, "switchyard.abuse.records_dropped", Kind::Counter, "{record}", "Request records dropped because a full queue would have made the request wait, by queue (detector, log)."),
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The Prometheus handle, installing the process-wide recorder on first
/// use (Prometheus alone unless [`otel::start`] installed the fan-out
/// first). Tests start several gateways in one process and share it.
pub fn install() -> PrometheusHandle {
    HANDLE.get_or_init(|| recorder(None)).clone()
}

/// Folds recorded histogram samples into their buckets. The Prometheus
/// recorder keeps samples until this runs (or a scrape renders them): call
/// it on a timer, or memory grows with traffic when nobody scrapes.
pub fn upkeep() {
    if let Some(h) = HANDLE.get() {
        h.run_upkeep();
    }
}

/// Installs the fan-out to `otel`; false if a recorder was installed already.
fn install_otel(otel: bridge::OtelRecorder) -> bool {
    let mut used = false;
    HANDLE.get_or_init(|| {
        used = true;
        recorder(Some(otel))
    });
    used
}

/// Whether OTLP metric export is on (gauges are then refreshed on a timer,
/// not only at scrape time).
pub fn otel_metrics_on() -> bool {
    OTEL_METRICS.get().is_some()
}

static OTEL_METRICS: OnceLock<()> = OnceLock::new();

/// Installs the process-wide recorder: Prometheus, fanned out to `otel`.
fn recorder(otel: Option<bridge::OtelRecorder>) -> PrometheusHandle {
    let mut builder = PrometheusBuilder::new();
    for m in METRICS.iter().filter(|m| m.kind == Kind::Histogram) {
        builder = builder
            .set_buckets_for_metric(Matcher::Full(m.prometheus.into()), m.buckets)
            .expect("static buckets are valid");
    }
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    // Fails only if another recorder is installed, which this crate never
    // does; metrics then go to that recorder.
    let _ = match otel {
        Some(otel) => {
            let _ = OTEL_METRICS.set(());
            metrics::set_global_recorder(bridge::Cached::new(
                metrics_util::layers::FanoutBuilder::default()
                    .add_recorder(recorder)
                    .add_recorder(otel)
                    .build(),
            ))
            .is_ok()
        }
        None => metrics::set_global_recorder(recorder).is_ok(),
    };
    for m in METRICS {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.prometheus, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.prometheus, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.prometheus, m.help),
        }
    }
    handle
}

/// One client request's end: `outcome` is `ok`, `error` or `rejected`.
pub fn request(route: &str, target: &str, dialect: &'static str, outcome: &'static str) {
    counter!(REQUESTS, "route" => route.to_string(), "target" => target.to_string(),
        "dialect" => dialect, "outcome" => outcome)
    .increment(1);
}

pub fn failover(route: &str, target: &str, reason: &'static str) {
    counter!(FAILOVERS, "route" => route.to_string(), "target" => target.to_string(), "reason" => reason)
        .increment(1);
}

/// `why` is `outlier` (outlier detection) or the failure class of a provider
/// take-out (`account_disabled`, `quota_exhausted`).
pub fn ejection(target: &str, why: &'static str) {
    counter!(EJECTIONS, "target" => target.to_string(), "reason" => why).increment(1);
}

pub fn suspension(target: &str) {
    counter!(SUSPENSIONS, "target" => target.to_string()).increment(1);
}

pub fn attempt(target: &str, outcome: &'static str, duration: Duration) {
    histogram!(ATTEMPT_DURATION, "target" => target.to_string(), "outcome" => outcome)
        .record(duration.as_secs_f64());
}

/// The GenAI labels of one upstream operation.
fn gen_ai_labels(t: &OperationTarget<'_>) -> [(&'static str, String); 4] {
    [
        (attr::GEN_AI_OPERATION_NAME, "chat".to_string()),
        (attr::GEN_AI_PROVIDER_NAME, t.provider.to_string()),
        (attr::GEN_AI_REQUEST_MODEL, t.model.to_string()),
        ("target", t.target.to_string()),
    ]
}

pub fn time_to_first_token(t: &OperationTarget<'_>, duration: Duration) {
    histogram!(TIME_TO_FIRST_TOKEN, &gen_ai_labels(t)).record(duration.as_secs_f64());
}

/// One upstream operation's end; `error` is its reason code if it failed.
pub fn operation(t: &OperationTarget<'_>, error: Option<&'static str>, duration: Duration) {
    let labels = gen_ai_labels(t);
    match error {
        None => histogram!(OPERATION_DURATION, &labels).record(duration.as_secs_f64()),
        Some(e) => {
            let [a, b, c, d] = labels;
            histogram!(
                OPERATION_DURATION,
                &[a, b, c, d, (attr::ERROR_TYPE, e.to_string())]
            )
            .record(duration.as_secs_f64())
        }
    }
}

pub fn token_usage(t: &OperationTarget<'_>, input: u64, output: u64) {
    for (kind, n) in [("input", input), ("output", output)] {
        let [a, b, c, d] = gen_ai_labels(t);
        histogram!(
            TOKEN_USAGE,
            &[a, b, c, d, (attr::GEN_AI_TOKEN_TYPE, kind.to_string())]
        )
        .record(n as f64);
    }
}

pub fn tokens(route: &str, target: &str, input: u64, output: u64) {
    counter!(TOKENS, "route" => route.to_string(), "target" => target.to_string(), "direction" => "input")
        .increment(input);
    counter!(TOKENS, "route" => route.to_string(), "target" => target.to_string(), "direction" => "output")
        .increment(output);
}

pub fn malformed_event(target: &str) {
    counter!(MALFORMED_EVENTS, "target" => target.to_string()).increment(1);
}

/// Values read from the live state (at scrape time, and once a second
/// while OTLP export is on).
pub fn target_state(target: &str, state: &'static str, all: &[&'static str]) {
    for s in all {
        gauge!(TARGET_STATE, "target" => target.to_string(), "state" => *s).set(if *s == state {
            1.0
        } else {
            0.0
        });
    }
}

/// One reload of the routes table: `ok` or `rejected`.
pub fn reload(result: &'static str) {
    counter!(RELOADS, "result" => result).increment(1);
}

/// A write of the state file failed (the ops change it carried stayed).
pub fn state_persist_failure() {
    counter!(STATE_PERSIST_FAILURES).increment(1);
}

/// The fleet link of `replica` went up or down (fleet mode only).
pub fn fleet_link(replica: &str, up: bool) {
    gauge!(FLEET_LINK_UP, "replica" => replica.to_string()).set(if up { 1.0 } else { 0.0 });
}

/// The live abuse detector flagged a key; `kind` is the flag's kind.
pub fn abuse_flag(kind: &'static str) {
    counter!(ABUSE_FLAGS, "kind" => kind).increment(1);
}

/// A request's record did not fit its queue (`detector` or `log`).
pub fn abuse_record_dropped(queue: &'static str) {
    counter!(ABUSE_DROPPED, "queue" => queue).increment(1);
}

pub fn config_version(version: u64) {
    gauge!(CONFIG_VERSION).set(version as f64);
}

/// One failed `accept` on a listener; `error` is `out_of_fds`,
/// `out_of_memory` or `other`.
pub fn accept_error(error: &'static str) {
    counter!(ACCEPT_ERRORS, "error" => error).increment(1);
}

pub(crate) fn spans_dropped(n: u64) {
    counter!(SPANS_DROPPED).increment(n);
}

pub(crate) fn export_failure() {
    counter!(EXPORT_FAILURES).increment(1);
}
