//! The policy table's rules against the real simulator: suspension, ejection
//! and probing, retries, the commit window, all-out answers, persistence.

mod common;

use std::time::Duration;

use common::{drain, start, user, Env, ADMIN_TOKEN};
use serde_json::{json, Value};
use switchyard::sim::{Knobs, Vendor};

const CLAUDE: (Vendor, &str) = (Vendor::Anthropic, "claude-sonnet-4-5");
const GPT: (Vendor, &str) = (Vendor::Openai, "gpt-5");

fn target(resp: &reqwest::Response) -> String {
    resp.headers()["x-switchyard-target"]
        .to_str()
        .unwrap()
        .to_string()
}

impl Env {
    async fn admin(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = match body {
            Some(b) => self.http.post(self.admin_url(path)).json(&b),
            None if path.ends_with("resume") || path.ends_with("reload") => {
                self.http.post(self.admin_url(path))
            }
            None => self.http.get(self.admin_url(path)),
        };
        let resp = req
            .bearer_auth(ADMIN_TOKEN)
            .header("x-switchyard-actor", "alice")
            .send()
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    async fn state(&self, target: &str) -> String {
        let (_, v) = self.admin("/admin/routes", None).await;
        v["targets"][target]["state"]
            .as_str()
            .unwrap_or("?")
            .to_string()
    }

    async fn events(&self, kind: &str) -> Vec<Value> {
        let (_, v) = self.admin("/admin/events", None).await;
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == kind)
            .cloned()
            .collect()
    }
}

async fn eventually<F, Fut>(mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn suspending_a_target_moves_traffic_from_the_next_request_and_is_audited() {
    let env = start(|_| {}).await;
    assert_eq!(target(&env.openai(user("frontier", "a")).await), "claude");
    let (status, v) = env
        .admin(
            "/admin/targets/claude/suspend",
            Some(json!({"reason": "vendor order", "for": "2h"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["suspension"]["actor"], "alice");
    let before = env.sim.count(CLAUDE.0, CLAUDE.1);
    for _ in 0..5 {
        let resp = env.openai(user("frontier", "b")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(target(&resp), "gpt");
        assert_eq!(
            resp.headers()["x-switchyard-attempts"],
            "1",
            "a suspended target is skipped, not tried"
        );
    }
    assert_eq!(env.sim.count(CLAUDE.0, CLAUDE.1), before);
    assert_eq!(env.state("claude").await, "suspended");

    let (status, _) = env.admin("/admin/targets/claude/resume", None).await;
    assert_eq!(status, 200);
    assert_eq!(target(&env.openai(user("frontier", "c")).await), "claude");

    let suspend = &env.events("suspend").await[0];
    assert_eq!(
        (suspend["actor"].as_str(), suspend["target"].as_str()),
        (Some("alice"), Some("claude"))
    );
    assert_eq!(suspend["reason"], "vendor order");
    assert_eq!(
        (suspend["before"].as_str(), suspend["after"].as_str()),
        (Some("healthy"), Some("suspended"))
    );
    assert_eq!(env.events("resume").await.len(), 1);

    let (status, v) = env
        .admin("/admin/targets/nobody/suspend", Some(json!({})))
        .await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = env
        .admin(
            "/admin/targets/claude/suspend",
            Some(json!({"reason": "x", "colour": "red"})),
        )
        .await;
    assert_eq!(status, 400, "unknown fields are rejected");
    let resp = env
        .http
        .post(env.admin_url("/admin/targets/claude/suspend"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn a_suspension_with_a_ttl_expires_on_its_own() {
    let env = start(|_| {}).await;
    let (status, _) = env
        .admin("/admin/targets/claude/suspend", Some(json!({"for": "1s"})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(target(&env.openai(user("frontier", "a")).await), "gpt");
    assert!(eventually(|| async { !env.events("suspension_expired").await.is_empty() }).await);
    assert_eq!(env.state("claude").await, "healthy");
    assert_eq!(target(&env.openai(user("frontier", "b")).await), "claude");
}

#[tokio::test]
async fn suspensions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let s1 = state.clone();
    let env = start(move |c| c.gateway.state_file = Some(s1)).await;
    env.admin(
        "/admin/targets/claude/suspend",
        Some(json!({"reason": "persist me"})),
    )
    .await;
    env.gw.shutdown().await;

    let s2 = state.clone();
    let env = start(move |c| c.gateway.state_file = Some(s2)).await;
    assert_eq!(env.state("claude").await, "suspended");
    assert_eq!(
        target(&env.openai(user("frontier", "after restart")).await),
        "gpt"
    );
    let (_, v) = env.admin("/admin/routes", None).await;
    assert_eq!(v["targets"]["claude"]["suspension"]["reason"], "persist me");
    env.admin("/admin/targets/claude/resume", None).await;
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(saved["suspensions"], json!({}));
}

#[tokio::test]
async fn repeated_model_unavailable_answers_eject_and_tell_ops() {
    let env = start(|c| c.health.base_ejection = Duration::from_secs(30)).await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            suspended: true,
            ..Knobs::default()
        },
    );
    for _ in 0..10 {
        let resp = env.openai(user("frontier", "x")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(target(&resp), "gpt");
    }
    // Five failures eject it; after that it is not tried at all.
    assert_eq!(env.sim.count(CLAUDE.0, CLAUDE.1), 5);
    assert_eq!(env.state("claude").await, "ejected");
    let eject = &env.events("eject").await[0];
    assert!(
        eject["reason"]
            .as_str()
            .unwrap()
            .contains("switchyard suspend claude"),
        "{eject}"
    );
}

#[tokio::test]
async fn a_flapping_target_gets_its_traffic_back_after_one_probe() {
    let env = start(|c| {
        c.health.base_ejection = Duration::from_millis(300);
        c.health.max_ejection = Duration::from_millis(600);
    })
    .await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            error_status: Some(503),
            ..Knobs::default()
        },
    );
    for _ in 0..6 {
        assert_eq!(env.openai(user("frontier", "down")).await.status(), 200);
    }
    assert_eq!(env.state("claude").await, "ejected");
    env.sim.clear_knobs();
    // Back: once the back-off ends, one live request probes it and restores it.
    assert!(
        eventually(|| async { target(&env.openai(user("frontier", "up")).await) == "claude" })
            .await
    );
    assert_eq!(env.state("claude").await, "healthy");
    assert_eq!(env.events("recover").await.len(), 1);
}

#[tokio::test]
async fn a_500_is_retried_once_on_the_same_target() {
    let env = start(|_| {}).await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            error_status: Some(500),
            ..Knobs::default()
        },
    );
    let resp = env.openai(user("frontier", "x")).await;
    assert_eq!(target(&resp), "gpt");
    assert_eq!(resp.headers()["x-switchyard-attempts"], "3");
    assert_eq!(env.sim.count(CLAUDE.0, CLAUDE.1), 2);
}

#[tokio::test]
async fn a_short_retry_after_is_waited_for_on_the_same_target() {
    let env = start(|_| {}).await;
    // Every second request fails, starting with the first.
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            error_status: Some(429),
            error_rate: Some(0.5),
            retry_after_secs: Some(1),
            ..Knobs::default()
        },
    );
    let resp = env.openai(user("frontier", "x")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(target(&resp), "claude");
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    assert_eq!(env.sim.count(GPT.0, GPT.1), 0);
}

#[tokio::test]
async fn a_timeout_is_never_retried_on_the_same_target() {
    let env = start(|c| {
        c.routes.get_mut("frontier").unwrap().first_token_timeout = Duration::from_millis(200)
    })
    .await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            latency_ms: 2_000,
            ..Knobs::default()
        },
    );
    let mut body = user("frontier", "x");
    body["stream"] = json!(true);
    let resp = env.openai(body).await;
    assert_eq!(target(&resp), "gpt");
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
    assert_eq!(env.sim.count(CLAUDE.0, CLAUDE.1), 1);
}

#[tokio::test]
async fn when_every_target_is_out_the_answer_is_one_fast_error_in_each_dialect() {
    let env = start(|_| {}).await;
    for t in ["claude", "gpt", "gemini", "local"] {
        env.admin(
            &format!("/admin/targets/{t}/suspend"),
            Some(json!({"reason": "drill"})),
        )
        .await;
    }
    let resp = env.openai(user("frontier", "x")).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap();
    for t in [
        "claude: suspended (drill)",
        "gpt: suspended",
        "gemini: suspended",
        "local: suspended",
    ] {
        assert!(msg.contains(t), "{msg}");
    }
    let resp = env
        .http
        .post(env.url("/v1/messages"))
        .header("x-api-key", "k")
        .json(&json!({"model": "frontier", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 529);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    let resp = env
        .http
        .post(env.url("/v1beta/models/frontier:generateContent"))
        .header("x-goog-api-key", "k")
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "x"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "UNAVAILABLE");
    let total: u64 = env.sim.counts().values().sum();
    assert_eq!(total, 0, "nothing was sent upstream");
}

#[tokio::test]
async fn the_commit_window_turns_an_early_cut_into_an_invisible_failover() {
    let env = start(|c| c.routes.get_mut("frontier").unwrap().commit_tokens = 6).await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    let mut body = user("frontier", "x");
    body["stream"] = json!(true);
    let resp = env.openai(body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(target(&resp), "gpt");
    let text = resp.text().await.unwrap();
    assert!(
        !text.contains("anthropic"),
        "nothing from the cut stream reached the app: {text}"
    );
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn without_a_commit_window_an_early_cut_is_an_error_event() {
    let env = start(|_| {}).await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    let mut body = user("frontier", "x");
    body["stream"] = json!(true);
    let resp = env.openai(body).await;
    assert_eq!(target(&resp), "claude");
    let (text, _) = drain(resp).await;
    assert!(text.contains("\"error\""), "{text}");
    assert!(!text.contains("[DONE]"));
}

fn continuing(c: &mut switchyard::config::Config) {
    c.routes.get_mut("frontier").unwrap().continue_on_cut = true;
    c.targets.get_mut("gpt").unwrap().prefill = true;
}

async fn stream_text(env: &Env, route: &str) -> (String, reqwest::header::HeaderMap) {
    let mut body = user(route, "tell me a story");
    body["stream"] = json!(true);
    let resp = env.openai(body).await;
    let headers = resp.headers().clone();
    (drain(resp).await.0, headers)
}

#[tokio::test]
async fn a_cut_stream_continues_on_a_prefill_target_when_the_route_opts_in() {
    let env = start(continuing).await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    let (text, headers) = stream_text(&env, "frontier").await;
    assert_eq!(headers["x-switchyard-target"], "claude");
    assert!(text.contains("[anthropic/claude-sonnet-4-5]"), "{text}");
    assert!(
        text.contains("[openai/gpt-5]"),
        "the continuation was forwarded: {text}"
    );
    assert!(!text.contains("\"error\""), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert_eq!(
        text.matches("\"role\":\"assistant\"").count(),
        1,
        "one answer, not two: {text}"
    );
    assert_eq!(env.sim.count(GPT.0, GPT.1), 1);
}

#[tokio::test]
async fn a_refused_continuation_never_becomes_the_error_the_app_sees() {
    let env = start(continuing).await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    env.sim.set_knobs(
        GPT.0,
        GPT.1,
        Knobs {
            suspended: true,
            ..Knobs::default()
        },
    );
    let (text, _) = stream_text(&env, "frontier").await;
    assert!(text.contains("\"error\""), "{text}");
    assert!(
        !text.contains("model_unavailable") && !text.contains("not found"),
        "{text}"
    );
    assert!(!text.contains("[DONE]"));
    assert_eq!(
        env.sim.count(GPT.0, GPT.1),
        1,
        "one continuation attempt, no more"
    );
}

#[tokio::test]
async fn no_continuation_without_opting_in_or_into_a_tool_call_turn() {
    let env = start(|c| c.targets.get_mut("gpt").unwrap().prefill = true).await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    let (text, _) = stream_text(&env, "frontier").await;
    assert!(text.contains("\"error\""), "{text}");
    assert_eq!(env.sim.count(GPT.0, GPT.1), 0);

    let env = start(continuing).await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            reset_after_tokens: Some(2),
            ..Knobs::default()
        },
    );
    let mut body = user("frontier", "weather?");
    body["stream"] = json!(true);
    body["tools"] = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}}]);
    let text = env.openai(body).await.text().await.unwrap_or_default();
    assert!(!text.contains("[DONE]"), "{text}");
    assert_eq!(
        env.sim.count(GPT.0, GPT.1),
        0,
        "never continue into a turn with tool calls"
    );
}

#[tokio::test]
async fn same_target_retries_never_starve_the_last_fallback() {
    let env = start(|_| {}).await;
    for (v, m) in [CLAUDE, GPT, (Vendor::Gemini, "gemini-2.5-pro")] {
        env.sim.set_knobs(
            v,
            m,
            Knobs {
                error_status: Some(500),
                ..Knobs::default()
            },
        );
    }
    let resp = env.openai(user("frontier", "anyone?")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(target(&resp), "local");
}

/// The body of a golden vendor-error fixture (`tests/golden/errors`).
fn vendor_body(vendor: &str, case: &str) -> Value {
    let path = format!(
        "{}/tests/golden/errors/{vendor}/{case}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let case: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    case["body"].clone()
}

/// Adds a second target on `provider` (`NAME` serving `model`) and a route
/// `ROUTE` over `targets`.
fn with_sibling(
    c: &mut switchyard::config::Config,
    of: &str,
    name: &str,
    model: &str,
    route: &str,
    targets: &[&str],
) {
    let mut t = c.targets[of].clone();
    t.model = model.into();
    c.targets.insert(name.into(), t);
    let mut r = c.routes[of].clone();
    r.targets = targets.iter().map(|t| t.to_string()).collect();
    c.routes.insert(route.into(), r);
}

#[tokio::test]
async fn a_gemini_account_suspension_takes_every_gemini_target_out_after_one_request() {
    let env = start(|c| {
        with_sibling(
            c,
            "gemini",
            "gemini-flash",
            "gemini-2.5-flash",
            "gem",
            &["gemini", "gemini-flash", "gpt"],
        )
    })
    .await;
    env.sim.set_knobs(
        Vendor::Gemini,
        "*",
        Knobs {
            error_status: Some(403),
            error_body: Some(vendor_body("gemini", "account_disabled")),
            ..Knobs::default()
        },
    );
    for i in 0..3 {
        let resp = env.openai(user("gem", "hello")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(target(&resp), "gpt");
        let attempts = if i == 0 { "2" } else { "1" };
        assert_eq!(resp.headers()["x-switchyard-attempts"], attempts);
    }
    assert_eq!(
        env.sim.total(Vendor::Gemini),
        1,
        "one upstream request, then the whole provider is out"
    );
    assert_eq!(env.state("gemini").await, "ejected");
    assert_eq!(env.state("gemini-flash").await, "ejected");
    let alerts = env.events("alert").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let why = alerts[0]["reason"].as_str().unwrap();
    assert!(
        why.contains("`gemini`") && why.contains("account_disabled"),
        "{why}"
    );
    assert!(env.events("eject").await.is_empty(), "no outlier ejection");
}

#[tokio::test]
async fn concurrent_account_deactivations_raise_one_alert() {
    let env = start(|c| {
        with_sibling(
            c,
            "gpt",
            "gpt-mini",
            "gpt-5-mini",
            "oa",
            &["gpt", "gpt-mini", "claude"],
        )
    })
    .await;
    env.sim.set_knobs(
        Vendor::Openai,
        "*",
        Knobs {
            // Every request is in flight before the first answer returns.
            latency_ms: 300,
            error_status: Some(401),
            error_body: Some(vendor_body("openai", "account_disabled")),
            ..Knobs::default()
        },
    );
    let answers = futures::future::join_all((0..8).map(|_| env.openai(user("oa", "hi")))).await;
    for resp in answers {
        assert_eq!(resp.status(), 200);
        assert_eq!(target(&resp), "claude");
    }
    assert!(
        env.sim.total(Vendor::Openai) >= 2,
        "the failures were concurrent"
    );
    let alerts = env.events("alert").await;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(env.state("gpt").await, "ejected");
    assert_eq!(env.state("gpt-mini").await, "ejected");
}

#[tokio::test]
async fn exhausted_quota_takes_the_provider_out_without_a_retry() {
    let env = start(|_| {}).await;
    env.sim.set_knobs(
        GPT.0,
        GPT.1,
        Knobs {
            error_status: Some(429),
            error_body: Some(vendor_body("openai", "quota_exhausted")),
            retry_after_secs: Some(0),
            ..Knobs::default()
        },
    );
    let resp = env.openai(user("gpt", "hi")).await;
    assert_eq!(resp.status(), 502, "a one-target route has nowhere to go");
    assert_eq!(
        env.sim.count(GPT.0, GPT.1),
        1,
        "quota is not retried on the same target, even with a short Retry-After"
    );
    assert_eq!(env.state("gpt").await, "ejected");
    let alerts = env.events("alert").await;
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0]["reason"]
        .as_str()
        .unwrap()
        .contains("quota_exhausted"));
}

#[tokio::test]
async fn a_mid_stream_cut_that_ejects_a_target_is_audited_and_counted() {
    let env = start(|c| {
        c.health.consecutive_failures = 1;
        with_sibling(
            c,
            "claude",
            "claude-cut",
            "claude-cut-model",
            "cut",
            &["claude-cut"],
        )
    })
    .await;
    env.sim.set_knobs(
        Vendor::Anthropic,
        "claude-cut-model",
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    let mut body = user("cut", "x");
    body["stream"] = json!(true);
    let resp = env.openai(body).await;
    assert_eq!(resp.status(), 200, "the stream began before the cut");
    let (_, broke) = drain(resp).await;
    assert!(broke);
    assert!(eventually(|| async { env.state("claude-cut").await == "ejected" }).await);
    let ejects = env.events("eject").await;
    assert_eq!(ejects.len(), 1, "{ejects:?}");
    assert_eq!(ejects[0]["target"], "claude-cut");
    let text = env
        .http
        .get(env.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.lines().any(|l| l
            .starts_with(r#"switchyard_ejections_total{target="claude-cut",reason="outlier"} "#)),
        "{text}"
    );
}

#[tokio::test]
async fn a_vendor_that_never_sends_headers_is_failed_over_at_the_header_deadline() {
    let env = start(|c| {
        c.routes.get_mut("frontier").unwrap().header_timeout = Duration::from_millis(400)
    })
    .await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            latency_ms: 5_000,
            ..Knobs::default()
        },
    );
    let resp = env.openai(user("frontier", "anyone home?")).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        target(&resp),
        "gpt",
        "not after the 10-minute total deadline"
    );
    assert_eq!(resp.headers()["x-switchyard-attempts"], "2");
}

#[tokio::test]
async fn the_commit_window_ends_on_an_event_so_a_stall_right_after_it_is_still_caught() {
    let env = start(|c| {
        let r = c.routes.get_mut("frontier").unwrap();
        r.commit_time = Some(Duration::from_millis(150));
        r.idle_timeout = Duration::from_millis(800);
    })
    .await;
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            stall_after_tokens: Some(2),
            ..Knobs::default()
        },
    );
    let mut body = user("frontier", "x");
    body["stream"] = json!(true);
    let resp = env.openai(body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        target(&resp),
        "gpt",
        "the stall came before any event after the window: still inside it"
    );
    let (text, broke) = drain(resp).await;
    assert!(!broke);
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
}

#[tokio::test]
async fn a_prompt_too_long_for_every_target_gets_the_vendors_400() {
    let env = start(|c| {
        let mut r = c.routes["frontier"].clone();
        // claude states 200k; gpt's window is not configured (unknown).
        r.targets = vec!["claude".into(), "gpt".into()];
        c.routes.insert("long".into(), r);
    })
    .await;
    for (vendor, model, fixture) in [
        (Vendor::Anthropic, CLAUDE.1, "anthropic"),
        (Vendor::Openai, GPT.1, "openai"),
    ] {
        env.sim.set_knobs(
            vendor,
            model,
            Knobs {
                error_status: Some(400),
                error_body: Some(vendor_body(fixture, "context_length")),
                ..Knobs::default()
            },
        );
    }
    let resp = env.openai(user("long", "a very long prompt")).await;
    assert_eq!(resp.status(), 400, "not a 502");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded", "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("maximum context length"));
    assert_eq!(
        env.sim.count(GPT.0, GPT.1),
        1,
        "a target of unknown window is tried after a context-length error"
    );
}

#[tokio::test]
async fn after_a_continuation_the_usage_counts_both_attempts() {
    let usage_of = |text: &str| -> Value {
        text.lines()
            .rev()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .find(|v| !v["usage"].is_null())
            .map(|v| v["usage"].clone())
            .expect("a usage chunk")
    };
    let ask = |route: &str| {
        let mut body = user(route, "tell me a story");
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        body
    };
    let env = start(continuing).await;
    // The same question answered by gpt alone, for its own output count.
    let alone = usage_of(&drain(env.openai(ask("gpt")).await).await.0);
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            reset_after_tokens: Some(3),
            ..Knobs::default()
        },
    );
    let (text, _) = drain(env.openai(ask("frontier")).await).await;
    assert!(text.contains("[openai/gpt-5]"), "continued: {text}");
    let usage = usage_of(&text);
    let out = usage["completion_tokens"].as_u64().unwrap();
    let alone_out = alone["completion_tokens"].as_u64().unwrap();
    // The continuation alone answers like gpt alone (plus a prefill in its
    // prompt); the app received claude's first words on top of that.
    assert!(
        out > alone_out,
        "output counts both attempts: {usage} vs gpt alone {alone}"
    );
    assert!(
        usage["prompt_tokens"].as_u64() <= alone["prompt_tokens"].as_u64(),
        "the prompt is counted once, without the prefill: {usage} vs {alone}"
    );
}
