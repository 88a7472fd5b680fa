//! Suspensions and their state file under pressure, over real HTTP: racing
//! operators, a restart from the file, a state file that cannot be written,
//! and durations that would overflow.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{start, user, Env, ADMIN_TOKEN};
use serde_json::{json, Value};

const TARGETS: [&str; 4] = ["claude", "gpt", "gemini", "local"];

async fn admin(
    env: &Env,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = env
        .http
        .request(method, env.admin_url(path))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("admin API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Each target's suspension as the admin API shows it (`null` when none).
async fn live_suspensions(env: &Env) -> BTreeMap<String, Value> {
    let (status, v) = admin(env, reqwest::Method::GET, "/admin/routes", None).await;
    assert_eq!(status, 200, "{v}");
    TARGETS
        .iter()
        .map(|t| (t.to_string(), v["targets"][t]["suspension"].clone()))
        .collect()
}

/// Each target's suspension as the state file holds it.
fn file_suspensions(path: &Path) -> BTreeMap<String, Value> {
    let saved = switchyard::health::load_suspensions(path).expect("state file reads");
    TARGETS
        .iter()
        .map(|t| {
            let s = saved.get(*t).map_or(Value::Null, |s| json!(s));
            (t.to_string(), s)
        })
        .collect()
}

/// 30 rounds of suspend and resume from four clients at once, on targets
/// they share; after each round the file must say what the gateway does,
/// and a gateway restarted from the file must come back the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_suspends_and_resumes_leave_the_file_equal_to_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let file = state.clone();
    let env = start(move |c| c.gateway.state_file = Some(file)).await;
    for round in 0..30usize {
        let mut clients = Vec::new();
        for client in 0..4usize {
            let (http, base) = (env.http.clone(), env.admin_url(""));
            clients.push(tokio::spawn(async move {
                for step in 0..3usize {
                    let target = TARGETS[(round + client + step) % TARGETS.len()];
                    let suspend = (round * 7 + client * 3 + step) % 2 == 0;
                    let req = if suspend {
                        http.post(format!("{base}/admin/targets/{target}/suspend"))
                            .json(&json!({"reason": format!("round {round} client {client} step {step}")}))
                    } else {
                        http.post(format!("{base}/admin/targets/{target}/resume"))
                    };
                    let resp = req
                        .bearer_auth(ADMIN_TOKEN)
                        .header("x-switchyard-actor", format!("op{client}"))
                        .send()
                        .await
                        .expect("admin API answers");
                    assert_eq!(resp.status(), 200);
                    let v: Value = resp.json().await.unwrap();
                    assert_eq!(v["persisted"], true, "{v}");
                }
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        assert_eq!(
            file_suspensions(&state),
            live_suspensions(&env).await,
            "round {round}: the state file disagrees with the live state"
        );
    }
    // Leave at least one target suspended and one serving, so the restart
    // has something to prove either way.
    admin(
        &env,
        reqwest::Method::POST,
        "/admin/targets/claude/suspend",
        Some(json!({"reason": "final"})),
    )
    .await;
    admin(
        &env,
        reqwest::Method::POST,
        "/admin/targets/gpt/resume",
        None,
    )
    .await;
    let before = live_suspensions(&env).await;
    assert_eq!(file_suspensions(&state), before);
    env.gw.shutdown().await;

    let file = state.clone();
    let again = start(move |c| c.gateway.state_file = Some(file)).await;
    let after = live_suspensions(&again).await;
    assert_eq!(after, before, "a restart restores exactly what was live");
    assert_eq!(after["claude"]["reason"], "final");
    assert_eq!(after["gpt"], Value::Null);
}

/// A state file that cannot be written does not undo an ops flip: the
/// change is applied and audited, and the problem is reported (answer,
/// alert event, metric, readiness detail) until a write succeeds again.
#[tokio::test]
async fn an_unwritable_state_file_applies_audits_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let state = state_dir.join("state.json");
    let file = state.clone();
    let env = start(move |c| c.gateway.state_file = Some(file)).await;
    // The directory turns into a regular file: every write now fails,
    // whoever the test runs as.
    std::fs::remove_dir(&state_dir).unwrap();
    std::fs::write(&state_dir, b"not a directory").unwrap();

    let (status, v) = admin(
        &env,
        reqwest::Method::POST,
        "/admin/targets/claude/suspend",
        Some(json!({"reason": "vendor incident"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["persisted"], false, "{v}");
    assert!(
        v["warning"].as_str().unwrap().contains("not persisted"),
        "{v}"
    );
    let resp = env.openai(user("frontier", "x")).await;
    assert_eq!(
        resp.headers()["x-switchyard-target"],
        "gpt",
        "the suspension is in force"
    );

    let (_, events) = admin(&env, reqwest::Method::GET, "/admin/events", None).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"suspend"), "{events}");
    let alert = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "alert")
        .unwrap_or_else(|| panic!("no alert event: {events}"));
    assert!(
        alert["reason"].as_str().unwrap().contains("cannot write"),
        "{alert}"
    );

    let metrics = env
        .http
        .get(env.admin_url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: f64 = metrics
        .lines()
        .find(|l| l.starts_with("switchyard_state_persist_failures_total"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no persist failure metric: {metrics}"));
    assert!(failures >= 1.0);

    let ready = env.http.get(env.admin_url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "still ready: requests are unaffected");
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["details"]["state_file"]["ok"], false, "{ready}");

    // The directory comes back: the next change persists everything and
    // the readiness detail clears.
    std::fs::remove_file(&state_dir).unwrap();
    std::fs::create_dir(&state_dir).unwrap();
    let (status, v) = admin(
        &env,
        reqwest::Method::POST,
        "/admin/targets/gemini/suspend",
        None,
    )
    .await;
    assert_eq!((status, &v["persisted"]), (200, &json!(true)), "{v}");
    let saved = switchyard::health::load_suspensions(&state).unwrap();
    assert!(
        saved.contains_key("claude") && saved.contains_key("gemini"),
        "{saved:?}"
    );
    let ready: Value = env
        .http
        .get(env.admin_url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["details"]["state_file"]["ok"], true, "{ready}");
}

/// Durations that would overflow `until` (or make no sense) are refused
/// with a 400 that says why, and change nothing.
#[tokio::test]
async fn absurd_durations_are_refused() {
    let env = start(|c| c.chaos.enabled = true).await;
    for bad in ["18446744073709551615s", "0s", "366days"] {
        let (status, v) = admin(
            &env,
            reqwest::Method::POST,
            "/admin/targets/claude/suspend",
            Some(json!({"for": bad})),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {v}");
        let msg = v["error"].as_str().unwrap();
        assert!(
            msg.contains("365 days") || msg.contains("more than zero"),
            "{msg}"
        );
        let (status, v) = admin(
            &env,
            reqwest::Method::POST,
            "/admin/targets/claude/chaos",
            Some(json!({"fault": {"kind": "unavailable"}, "for": bad})),
        )
        .await;
        assert_eq!(status, 400, "{bad}: {v}");
    }
    assert_eq!(live_suspensions(&env).await["claude"], Value::Null);
    let resp = env.openai(user("frontier", "x")).await;
    assert_eq!(
        resp.headers()["x-switchyard-target"],
        "claude",
        "no fault, no suspension"
    );

    let (status, v) = admin(
        &env,
        reqwest::Method::POST,
        "/admin/targets/claude/suspend",
        Some(json!({"for": "365days"})),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let until = v["suspension"]["until"].as_u64().unwrap();
    let since = v["suspension"]["since"].as_u64().unwrap();
    assert_eq!(until - since, 365 * 24 * 3600);
}
