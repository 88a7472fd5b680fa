//! Metrics: every name in one place, typed helpers to record them, and the
//! Prometheus rendering for `GET /metrics`. One prefix, base units,
//! `_total` counters, `_seconds` histograms, and only low-cardinality labels
//! (route, target, dialect, outcome, reason — all from the config or enums).

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

pub const REQUESTS: &str = "switchyard_requests_total";
pub const FAILOVERS: &str = "switchyard_failovers_total";
pub const ATTEMPT_DURATION: &str = "switchyard_attempt_duration_seconds";
pub const TIME_TO_FIRST_TOKEN: &str = "switchyard_time_to_first_token_seconds";
pub const TOKENS: &str = "switchyard_tokens_total";
pub const TARGET_STATE: &str = "switchyard_target_state";
pub const RELOADS: &str = "switchyard_reloads_total";
pub const CONFIG_VERSION: &str = "switchyard_config_version";
pub const MALFORMED_EVENTS: &str = "switchyard_malformed_stream_events_total";

/// Latency buckets, in seconds: 1 ms to 2 min.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once; later calls reuse it (tests
/// start several gateways in one process).
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed, which this
            // crate never does; metrics then go to that recorder.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
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

pub fn attempt(target: &str, outcome: &'static str, duration: Duration) {
    histogram!(ATTEMPT_DURATION, "target" => target.to_string(), "outcome" => outcome)
        .record(duration.as_secs_f64());
}

pub fn time_to_first_token(target: &str, duration: Duration) {
    histogram!(TIME_TO_FIRST_TOKEN, "target" => target.to_string()).record(duration.as_secs_f64());
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

/// Values read at scrape time from the live state.
pub fn target_state(target: &str, state: &'static str, all: &[&'static str]) {
    for s in all {
        gauge!(TARGET_STATE, "target" => target.to_string(), "state" => *s).set(if *s == state {
            1.0
        } else {
            0.0
        });
    }
}

pub fn reloads(ok: u64, failed: u64, version: u64) {
    counter!(RELOADS, "result" => "ok").absolute(ok);
    counter!(RELOADS, "result" => "rejected").absolute(failed);
    gauge!(CONFIG_VERSION).set(version as f64);
}
