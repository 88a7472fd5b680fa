//! Observability on a live gateway: `/metrics` and the explain header.

mod common;

use common::{start, user};
use serde_json::json;
use switchyard::sim::{Knobs, Vendor};

#[tokio::test]
async fn metrics_count_requests_failovers_tokens_and_states() {
    let env = start(|_| {}).await;
    env.sim.set_knobs(
        Vendor::Anthropic,
        "claude-sonnet-4-5",
        Knobs {
            suspended: true,
            ..Knobs::default()
        },
    );
    for _ in 0..3 {
        assert_eq!(env.openai(user("frontier", "count me")).await.status(), 200);
    }
    let mut body = user("gpt", "stream me");
    body["stream"] = json!(true);
    env.openai(body).await.text().await.unwrap();
    let text = env
        .http
        .get(env.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let line = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert!(
        line(
            r#"switchyard_requests_total{route="frontier",target="gpt",dialect="openai",outcome="ok"}"#
        ) >= 3.0,
        "{text}"
    );
    assert!(
        line(
            r#"switchyard_failovers_total{route="frontier",target="claude",reason="model_unavailable"}"#
        ) >= 3.0,
        "{text}"
    );
    assert!(
        line(r#"switchyard_tokens_total{route="gpt",target="gpt",direction="output"}"#) > 0.0,
        "{text}"
    );
    assert!(
        text.contains("switchyard_time_to_first_token_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains("switchyard_attempt_duration_seconds_bucket"),
        "{text}"
    );
    assert!(
        text.contains(r#"switchyard_target_state{target="claude",state="healthy"}"#),
        "{text}"
    );
    assert!(text.contains("switchyard_config_version"), "{text}");
    assert!(
        !text.contains("sim-key") && !text.contains("app-key"),
        "no secret in metrics"
    );
}

#[tokio::test]
async fn the_explain_header_shows_the_trail_without_secrets() {
    let env = start(|_| {}).await;
    env.sim.set_knobs(
        Vendor::Anthropic,
        "claude-sonnet-4-5",
        Knobs {
            error_status: Some(529),
            ..Knobs::default()
        },
    );
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth("app-key")
        .header("x-switchyard-explain", "1")
        .json(&user("frontier", "why"))
        .send()
        .await
        .unwrap();
    let trail = resp.headers()["x-switchyard-explain"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        trail.starts_with("claude;outcome=overloaded;ms="),
        "{trail}"
    );
    assert!(trail.contains(", gpt;outcome=ok;ms="), "{trail}");
    assert!(
        !trail.contains("key") && !trail.contains("127.0.0.1"),
        "{trail}"
    );
    // Not asked for, not sent.
    let resp = env.openai(user("frontier", "quiet")).await;
    assert!(!resp.headers().contains_key("x-switchyard-explain"));
}

#[tokio::test]
async fn the_admin_token_is_not_an_app_key_and_app_keys_do_not_open_the_admin_plane() {
    let env = start(|_| {}).await;
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&user("gpt", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = env
        .http
        .get(env.admin_url("/admin/routes"))
        .bearer_auth("app-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = env
        .http
        .get(env.admin_url("/admin/routes"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_event_stream_delivers_new_events_live() {
    use futures::StreamExt;
    let env = start(|_| {}).await;
    let resp = env
        .http
        .get(env.admin_url("/admin/events/stream"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    env.http
        .post(env.admin_url("/admin/targets/gpt/suspend"))
        .bearer_auth(common::ADMIN_TOKEN)
        .json(&json!({"reason": "live"}))
        .send()
        .await
        .unwrap();
    let chunk = tokio::time::timeout(std::time::Duration::from_secs(5), body.next())
        .await
        .expect("an event arrives")
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(
        text.contains("event: suspend") && text.contains("\"reason\":\"live\""),
        "{text}"
    );
}
