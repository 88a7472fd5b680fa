//! Fault injection at the provider boundary, through the admin API: off
//! unless enabled, audited, expiring, and seen by the failover path exactly
//! as a real vendor failure.

mod common;

use std::time::Duration;

use common::{drain, start, user, Env, ADMIN_TOKEN};
use serde_json::{json, Value};
use switchyard::sim::Vendor;

async fn inject(env: &Env, target: &str, fault: Value, ttl: &str) -> (u16, Value) {
    let resp = env
        .http
        .post(env.admin_url(&format!("/admin/targets/{target}/chaos")))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"fault": fault, "for": ttl}))
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

async fn explain(env: &Env, route: &str, stream: bool) -> (String, String, String) {
    let mut body = user(route, "chaos");
    body["stream"] = json!(stream);
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth("k")
        .header("x-switchyard-explain", "1")
        .json(&body)
        .send()
        .await
        .unwrap();
    let h = |n: &str| {
        resp.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (target, trail) = (h("x-switchyard-target"), h("x-switchyard-explain"));
    (target, trail, drain(resp).await.0)
}

#[tokio::test]
async fn chaos_is_refused_unless_enabled() {
    let env = start(|_| {}).await;
    let (status, body) = inject(&env, "claude", json!({"kind": "unavailable"}), "1m").await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"].as_str().unwrap().contains("[chaos] enabled"));
}

#[tokio::test]
async fn injected_faults_look_like_vendor_failures_to_the_failover_path() {
    let env = start(|c| {
        c.chaos.enabled = true;
        c.health.consecutive_failures = 100;
        c.routes.get_mut("frontier").unwrap().first_token_timeout = Duration::from_millis(300);
    })
    .await;
    for (fault, reason, stream) in [
        (json!({"kind": "unavailable"}), "model_unavailable", false),
        (
            json!({"kind": "status", "status": 529}),
            "overloaded",
            false,
        ),
        (json!({"kind": "reset"}), "connection_broken", false),
        (json!({"kind": "no_answer"}), "first_token_timeout", true),
        (
            json!({"kind": "slow_first_token", "ms": 1000}),
            "first_token_timeout",
            true,
        ),
    ] {
        let (status, body) = inject(&env, "claude", fault.clone(), "1m").await;
        assert_eq!(status, 200, "{body}");
        let (target, trail, _) = explain(&env, "frontier", stream).await;
        assert_eq!(target, "gpt", "{fault}");
        assert!(
            trail.starts_with(&format!("claude;outcome={reason};")),
            "{fault}: {trail}"
        );
    }
    assert_eq!(
        env.sim.count(Vendor::Anthropic, "claude-sonnet-4-5"),
        0,
        "injected before the vendor"
    );
    let events: Value = env
        .http
        .get(env.admin_url("/admin/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let set: Vec<&Value> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "chaos_set")
        .collect();
    assert_eq!(set.len(), 5);
    assert!(
        set[0]["reason"].as_str().unwrap().contains("unavailable"),
        "{}",
        set[0]
    );
}

#[tokio::test]
async fn stream_faults_cut_garble_and_slow_the_answer() {
    let env = start(|c| c.chaos.enabled = true).await;
    inject(&env, "gpt", json!({"kind": "cut_after", "chunks": 3}), "1m").await;
    let (_, _, text) = explain(&env, "gpt", true).await;
    assert!(
        text.contains("\"error\"") && !text.contains("[DONE]"),
        "{text}"
    );

    inject(
        &env,
        "gpt",
        json!({"kind": "malformed", "after_chunks": 2}),
        "1m",
    )
    .await;
    let (_, _, text) = explain(&env, "gpt", true).await;
    assert!(
        text.ends_with("data: [DONE]\n\n") && !text.contains("malformed"),
        "{text}"
    );

    inject(
        &env,
        "gpt",
        json!({"kind": "slow_tokens", "ms_per_chunk": 5}),
        "1m",
    )
    .await;
    let (_, _, text) = explain(&env, "gpt", true).await;
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    let resp = env
        .http
        .delete(env.admin_url("/admin/targets/gpt/chaos"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap()["cleared"], true);
}

#[tokio::test]
async fn a_fault_expires_on_its_own() {
    let env = start(|c| c.chaos.enabled = true).await;
    inject(&env, "claude", json!({"kind": "unavailable"}), "1s").await;
    assert_eq!(explain(&env, "frontier", false).await.0, "gpt");
    let mut expired = false;
    for _ in 0..60 {
        let v: Value = env
            .http
            .get(env.admin_url("/admin/events"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "chaos_expired")
        {
            expired = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(expired);
    assert_eq!(explain(&env, "frontier", false).await.0, "claude");
    let (status, _) = inject(
        &env,
        "claude",
        json!({"kind": "latency", "ms": 1, "colour": 2}),
        "1m",
    )
    .await;
    assert_eq!(status, 400, "unknown fields are rejected");
}

#[tokio::test]
async fn injected_latency_runs_under_the_same_deadline_as_a_vendor_delay() {
    let env = start(|c| {
        c.chaos.enabled = true;
        let r = c.routes.get_mut("frontier").unwrap();
        r.header_timeout = Duration::from_millis(400);
        r.first_token_timeout = Duration::from_millis(400);
    })
    .await;
    let (status, body) = inject(&env, "claude", json!({"kind": "latency", "ms": 3000}), "1m").await;
    assert_eq!(status, 200, "{body}");
    for (stream, reason) in [(false, "timeout"), (true, "first_token_timeout")] {
        let (target, trail, _) = explain(&env, "frontier", stream).await;
        assert_eq!(target, "gpt", "the delay counts against the deadline");
        assert!(
            trail.starts_with(&format!("claude;outcome={reason};")),
            "{trail}"
        );
    }
}
