//! With `propagate_to_upstream` on, each attempt carries its own
//! `traceparent` to the vendor: the app's trace id, the attempt span's id.
//! The app's other trace headers still never leave. (Off, the default, is
//! checked at the real receiver in tests/python/test_telemetry.py.) Its own
//! test binary: tracing is set up once per process.

mod common;

use serde_json::json;
use switchyard::config::TelemetryConfig;
use switchyard::sim::Vendor;

#[tokio::test]
async fn attempts_carry_their_own_traceparent_when_configured() {
    // Nothing listens there: export fails quietly, serving does not care.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let cfg = TelemetryConfig {
        otlp_endpoint: Some(endpoint),
        propagate_to_upstream: true,
        ..TelemetryConfig::default()
    };
    let otel = switchyard::telemetry::otel::start(&cfg)
        .await
        .expect("telemetry starts")
        .expect("an endpoint turns export on");
    assert!(switchyard::telemetry::tracing_on());
    let env = common::start(|_| {}).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let app_parent = "00f067aa0ba902b7";
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth("app-key")
        .header("traceparent", format!("00-{trace_id}-{app_parent}-01"))
        .header("tracestate", "vendor=app-internal")
        .header("baggage", "user=alice")
        .json(&json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let sent = env
        .sim
        .last_headers(Vendor::Openai)
        .expect("the vendor saw it");
    let tp = sent
        .get("traceparent")
        .expect("propagation is on")
        .to_str()
        .unwrap();
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(parts[1], trace_id, "the app's trace goes on");
    assert_ne!(
        parts[2], app_parent,
        "the parent is the attempt span, not the app's"
    );
    assert_eq!(parts[3], "01");
    assert!(sent.get("baggage").is_none());
    assert!(
        sent.get("tracestate")
            .is_none_or(|v| !v.to_str().unwrap().contains("app-internal")),
        "the app's tracestate is not forwarded verbatim"
    );
    env.gw.shutdown().await;
    otel.shutdown().await;
}
