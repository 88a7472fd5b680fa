//! The live abuse detector end to end: a real gateway in `keys` mode
//! against the simulator, fed over real HTTP with the traffic of the
//! labelled generator (a campaign key and genuine keys, each body sent in
//! its own dialect to its own endpoint with its own key). The detector's
//! clock is pinned to each generated request's time, so hours of traffic
//! replay in seconds while the request path stays the real one.

mod common;
mod replay;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::abuse::live::{Action, Mode};
use switchyard::abuse::synth::{self, Event};

use replay::*;

#[tokio::test]
async fn enforce_suspends_the_campaign_key_and_ops_lift_it() {
    let traffic = synth::generate(SEED, HOURS);
    let cast = cast(&traffic, 40);
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<&str> = cast.genuine.iter().map(String::as_str).collect();
    names.push(&cast.campaign);
    let mut cfg = abuse_config(Mode::Enforce, Action::Suspend);
    cfg.quarantine_file = Some(dir.path().join("quarantines.json"));
    let live = start(dir.path(), &names, cfg).await;

    let statuses = replay(&live, &cast.events).await;
    let flag = wait_for_flag(&live, &cast.campaign).await;
    assert!(flag["score"].as_f64().unwrap() >= 0.7, "{flag}");
    assert!(!flag["reasons"].as_array().unwrap().is_empty(), "{flag}");
    assert_eq!(flag["quarantined"], json!([cast.campaign]), "{flag}");
    let campaign = &statuses[&cast.campaign];
    assert!(campaign.first() == Some(&200), "{campaign:?}");
    assert_genuine_untouched(&live, &cast, &statuses).await;

    // Quarantined: the admin API lists it, the file holds it.
    let view = live.admin("/admin/abuse").await;
    let q = &view["quarantines"][0];
    assert_eq!(
        (q["key"].as_str(), q["action"].as_str()),
        (Some(cast.campaign.as_str()), Some("suspend")),
        "{view}"
    );
    let saved = std::fs::read_to_string(dir.path().join("quarantines.json")).unwrap();
    assert!(saved.contains(&cast.campaign), "{saved}");

    // Audited with the flag's fields; counted.
    let events = live.admin("/admin/events").await;
    let flagged = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "abuse_flag" && e["target"] == cast.campaign.as_str())
        .unwrap_or_else(|| panic!("no abuse_flag event: {events}"));
    assert_eq!(flagged["detail"]["key"], cast.campaign.as_str());
    assert_eq!(flagged["detail"]["kind"], flag["kind"]);
    assert_eq!(flagged["detail"]["reasons"], flag["reasons"]);
    assert!(flagged["detail"]["score"].is_number() && flagged["detail"].get("cluster").is_some());
    assert_eq!(flagged["after"], "quarantined (suspend)");
    let metrics = live.metrics().await;
    let line = format!(
        "switchyard_abuse_flags_total{{kind=\"{}\"}}",
        flag["kind"].as_str().unwrap()
    );
    assert!(metrics.contains(&line), "no {line} in:\n{metrics}");

    // Refused in every dialect it may speak, each in that dialect's shape;
    // genuine keys are still served.
    for dialect in ["openai", "anthropic", "gemini"] {
        let (status, body) = live.send(&in_dialect(&cast, dialect)).await;
        refused_in_dialect(dialect, status, &body);
    }
    let genuine = cast
        .events
        .iter()
        .find(|e| e.key == cast.genuine[0])
        .unwrap();
    assert_eq!(live.send(genuine).await.0, 200);

    // A restarted gateway (same quarantine file) refuses it from its
    // first request.
    let dir2 = tempfile::tempdir().unwrap();
    let mut cfg2 = abuse_config(Mode::Enforce, Action::Suspend);
    cfg2.quarantine_file = Some(dir.path().join("quarantines.json"));
    let restarted = start(dir2.path(), &names, cfg2).await;
    let (status, body) = restarted.send(&in_dialect(&cast, "anthropic")).await;
    refused_in_dialect("anthropic", status, &body);
    assert_eq!(restarted.send(genuine).await.0, 200);
    restarted.gw.shutdown().await;

    // Ops lift it with the CLI, through the admin API: served again, audited.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["keys", "unquarantine", &cast.campaign, "--admin"])
        .arg(live.admin_url(""))
        .env("SWITCHYARD_ADMIN_TOKEN", TOKEN)
        .env("USER", "ops-test")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("unquarantined"), "{stdout}");
    let (status, body) = live.send(&in_dialect(&cast, "openai")).await;
    assert_eq!(status, 200, "{body}");
    let events = live.admin("/admin/events").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "abuse_unquarantine"
                && e["target"] == cast.campaign.as_str()
                && e["actor"] == "cli:ops-test"),
        "{events}"
    );
    assert_eq!(live.admin("/admin/abuse").await["quarantines"], json!([]));
    let saved = std::fs::read_to_string(dir.path().join("quarantines.json")).unwrap();
    assert!(!saved.contains(&cast.campaign), "{saved}");
    // A second lift: nothing to lift, said so.
    let resp = live
        .http
        .post(live.admin_url(&format!("/admin/keys/{}/unquarantine", cast.campaign)))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    live.gw.shutdown().await;
}

#[tokio::test]
async fn throttle_keeps_a_low_rate_for_the_flagged_key() {
    let traffic = synth::generate(SEED, HOURS);
    let cast = cast(&traffic, 40);
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = vec![cast.campaign.as_str()];
    let mut cfg = abuse_config(Mode::Enforce, Action::Throttle);
    cfg.throttle_rpm = std::num::NonZeroU32::new(2).unwrap();
    let live = start(dir.path(), &names, cfg).await;
    let campaign: Vec<Event> = cast
        .events
        .iter()
        .filter(|e| e.key == cast.campaign)
        .cloned()
        .collect();
    replay(&live, &campaign).await;
    let flag = wait_for_flag(&live, &cast.campaign).await;
    assert_eq!(flag["action"], "throttle", "{flag}");
    // Two a minute: within a few requests, one is refused with 429 and a
    // Retry-After, in its dialect.
    let mut refused = None;
    for _ in 0..4 {
        let (status, body) = live.send(&in_dialect(&cast, "anthropic")).await;
        if status == 429 {
            refused = Some(body);
            break;
        }
        assert_eq!(status, 200, "{body}");
    }
    let body = refused.expect("a throttled key is refused beyond its rate");
    assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("throttled for suspected abuse"),
        "{body}"
    );
    live.gw.shutdown().await;
}

#[tokio::test]
async fn observe_flags_and_never_refuses_and_the_log_scans_the_same() {
    let traffic = synth::generate(SEED, HOURS);
    let cast = cast(&traffic, 40);
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<&str> = cast.genuine.iter().map(String::as_str).collect();
    names.push(&cast.campaign);
    let log = dir.path().join("traffic.jsonl");
    let mut cfg = abuse_config(Mode::Observe, Action::Suspend);
    cfg.log = Some(log.clone());
    cfg.log_bodies = true;
    let live = start(dir.path(), &names, cfg).await;

    let statuses = replay(&live, &cast.events).await;
    let flag = wait_for_flag(&live, &cast.campaign).await;
    assert_eq!(flag["mode"], "observe");
    assert_eq!(flag["quarantined"], json!([]));
    assert!(
        statuses[&cast.campaign].iter().all(|s| *s == 200),
        "observe refused: {:?}",
        statuses[&cast.campaign]
    );
    assert_genuine_untouched(&live, &cast, &statuses).await;
    assert_eq!(live.admin("/admin/abuse").await["quarantines"], json!([]));
    let (status, body) = live.send(&in_dialect(&cast, "gemini")).await;
    assert_eq!(status, 200, "{body}");

    // The recorded log, scanned offline by the CLI, flags the same key at
    // the same request: the live detector saw exactly what the log holds.
    let expected = cast.events.len() + 1;
    let text = wait_for_lines(&log, expected).await;
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    for field in [
        "ts",
        "key",
        "ip",
        "user_agent",
        "dialect",
        "route",
        "body",
        "output_tokens",
    ] {
        assert!(first.get(field).is_some(), "{field} missing: {first}");
    }
    assert_eq!(first["ip"], "127.0.0.1");
    let mut last_ts = 0.0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert!(
            ["openai", "anthropic", "gemini"].contains(&v["dialect"].as_str().unwrap()),
            "{v}"
        );
        let ts = v["ts"].as_f64().unwrap();
        assert!(
            ts >= last_ts,
            "the log is sorted by ts: {ts} after {last_ts}"
        );
        last_ts = ts;
        assert!(v["output_tokens"].as_u64().unwrap() > 0, "{v}");
    }
    // Bodies were asked for: the prompt text is there as sent.
    let mut words = Vec::new();
    texts(&cast.events[0].body, &mut words);
    assert!(
        words
            .iter()
            .all(|w| text.contains(&serde_json::to_string(w).unwrap())),
        "{words:?}"
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["abuse", "scan"])
        .arg(&log)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let flags: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let offline = flags
        .iter()
        .find(|f| f["key"] == cast.campaign.as_str())
        .unwrap_or_else(|| panic!("the scan did not flag {}: {flags:?}", cast.campaign));
    assert_eq!(offline["flagged_at"], flag["flagged_at"]);
    assert_eq!(offline["reasons"], flag["reasons"]);
    live.gw.shutdown().await;
}

#[tokio::test]
async fn off_records_nothing() {
    let traffic = synth::generate(SEED, HOURS);
    let cast = cast(&traffic, 40);
    let dir = tempfile::tempdir().unwrap();
    let names = [cast.campaign.as_str(), "marker"];
    let log = dir.path().join("traffic.jsonl");
    let mut cfg = abuse_config(Mode::Off, Action::Suspend);
    cfg.log = Some(log.clone());
    let live = start(dir.path(), &names, cfg.clone()).await;
    let campaign: Vec<Event> = cast
        .events
        .iter()
        .filter(|e| e.key == cast.campaign)
        .cloned()
        .collect();
    let statuses = replay(&live, &campaign).await;
    assert!(statuses[&cast.campaign].iter().all(|s| *s == 200));

    // Switched to observe (as a reload would): the next request is
    // recorded. Once its line is in the log, every earlier record would be
    // too (one queue, in order): there is none.
    cfg.mode = Mode::Observe;
    live.gw
        .live
        .abuse
        .set_policy(switchyard::abuse::live::Policy::of(&cfg));
    let mut marker = campaign[0].clone();
    marker.key = "marker".into();
    assert_eq!(live.send(&marker).await.0, 200);
    let text = wait_for_lines(&log, 1).await;
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains("\"key\":\"marker\""), "{text}");
    // Bodies were not asked for: the structure is there, the text is not.
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert!(line["body"].is_object(), "{line}");
    let mut words = Vec::new();
    texts(&campaign[0].body, &mut words);
    assert!(!words.is_empty(), "{}", campaign[0].body);
    let body = line["body"].to_string();
    for w in words {
        let encoded = serde_json::to_string(&w).unwrap();
        assert!(
            !body.contains(&encoded),
            "prompt text `{w}` in the log: {body}"
        );
    }
    // The scan reads a log without bodies too.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["abuse", "scan"])
        .arg(&log)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("scanned 1 lines"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = live.admin("/admin/abuse").await;
    assert_eq!(view["flags"], json!([]), "{view}");
    assert_eq!(view["records_dropped"], 0);
    live.gw.shutdown().await;
}

#[tokio::test]
async fn a_reload_changes_the_policy_but_not_the_start_only_keys() {
    let dir = tempfile::tempdir().unwrap();
    let (env, path, table) = common::start_from_file(dir.path()).await;
    let admin = |path: &str| env.http.get(env.admin_url(path)).bearer_auth(TOKEN).send();
    let view: Value = admin("/admin/abuse").await.unwrap().json().await.unwrap();
    assert_eq!(view["mode"], "observe", "{view}");

    let enforce = table.replace(
        "[abuse]\nmode = \"observe\"",
        "[abuse]\nmode = \"enforce\"\naction = \"suspend\"\nscope = \"cluster\"",
    );
    assert_ne!(enforce, table, "the demo table has an [abuse] section");
    std::fs::write(&path, &enforce).unwrap();
    switchyard::reload::reload(env.gw.live.clone(), "test".into())
        .await
        .unwrap();
    let view: Value = admin("/admin/abuse").await.unwrap().json().await.unwrap();
    assert_eq!(
        (&view["mode"], &view["action"], &view["scope"]),
        (&json!("enforce"), &json!("suspend"), &json!("cluster")),
        "{view}"
    );

    let logged = enforce.replace(
        "scope = \"cluster\"",
        &format!(
            "scope = \"cluster\"\nlog = \"{}\"",
            dir.path().join("t.jsonl").display()
        ),
    );
    std::fs::write(&path, &logged).unwrap();
    let err = switchyard::reload::reload(env.gw.live.clone(), "test".into())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("[abuse] log is read only at start"),
        "{err}"
    );
    let view: Value = admin("/admin/abuse").await.unwrap().json().await.unwrap();
    assert_eq!(view["mode"], "enforce", "{view}");
    env.gw.shutdown().await;
}

#[tokio::test]
async fn every_dialect_is_recorded_with_the_output_tokens_of_its_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("traffic.jsonl");
    let path = log.clone();
    let env = common::start(move |c| {
        c.abuse.log = Some(path);
    })
    .await;
    let key = "sk-any-key-for-the-log";
    let user = |text: &str| json!([{"role": "user", "content": text}]);
    let sends = [
        (
            "/v1/chat/completions",
            json!({"model": "gpt", "messages": user("chat plain")}),
        ),
        (
            "/v1/chat/completions",
            json!({"model": "claude", "stream": true, "stream_options": {"include_usage": true}, "messages": user("chat stream")}),
        ),
        (
            "/v1/responses",
            json!({"model": "gemini", "input": "responses plain"}),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt", "stream": true, "input": "responses stream"}),
        ),
        (
            "/v1/messages",
            json!({"model": "local", "max_tokens": 50, "stream": true, "messages": user("anthropic stream")}),
        ),
        (
            "/v1beta/models/frontier:streamGenerateContent?alt=sse",
            json!({"contents": [{"role": "user", "parts": [{"text": "gemini stream"}]}]}),
        ),
    ];
    for (path, body) in &sends {
        let resp = env
            .http
            .post(env.url(path))
            .bearer_auth(key)
            .header("x-api-key", key)
            .header("x-goog-api-key", key)
            .header("user-agent", "log-test/1.0")
            .json(body)
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let (text, broke) = common::drain(resp).await;
        assert!(status.is_success() && !broke, "{path}: {status} {text}");
    }
    let text = wait_for_lines(&log, sends.len()).await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let name = switchyard::abuse::live::anonymous_name(key);
    // Sorted: a stream's record is handed over when its body is dropped,
    // which may come a moment after the app read its end.
    let mut seen: Vec<(&str, &str)> = lines
        .iter()
        .map(|l| (l["dialect"].as_str().unwrap(), l["route"].as_str().unwrap()))
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        [
            ("anthropic", "local"),
            ("gemini", "frontier"),
            ("openai", "claude"),
            ("openai", "gemini"),
            ("openai", "gpt"),
            ("openai", "gpt"),
        ],
        "{text}"
    );
    for l in &lines {
        assert_eq!(l["key"], name.as_str(), "{l}");
        assert_eq!(l["user_agent"], "log-test/1.0");
        // Streams too: the record waits for the usage at the end.
        assert!(l["output_tokens"].as_u64().unwrap() > 0, "{l}");
        assert!(!text.contains(key), "the key itself is never logged");
    }
    // No bodies asked for: shapes only.
    assert!(
        !text.contains("chat plain") && !text.contains("gemini stream"),
        "{text}"
    );
    let responses = lines.iter().find(|l| l["route"] == "gemini").unwrap();
    assert_eq!(responses["body"]["input"], "", "{responses}");
    let chat = lines.iter().find(|l| l["route"] == "claude").unwrap();
    assert_eq!(chat["body"]["messages"][0]["role"], "user", "{chat}");
    assert_eq!(chat["body"]["messages"][0]["content"], "", "{chat}");
    env.gw.shutdown().await;
}

#[tokio::test]
async fn cluster_scope_quarantines_the_farm_and_no_genuine_key() {
    use switchyard::abuse::{scan::scan_str, Settings};
    let traffic = synth::generate(SEED, HOURS);
    let farm: Vec<String> = traffic
        .labels
        .iter()
        .filter(|l| l.family == "hydra_farm")
        .map(|l| l.key.clone())
        .collect();
    let offline = scan_str(&traffic.log_jsonl(), Settings::default()).unwrap();
    let first = offline
        .iter()
        .filter(|f| farm.contains(&f.key))
        .map(|f| f.flagged_at)
        .fold(f64::MAX, f64::min);
    assert!(first < f64::MAX, "the scan flags the farm");
    let genuine = cast(&traffic, 0).genuine;
    // The farm up to a little after its first offline flag, and genuine
    // keys that share its client network (every request comes from
    // loopback here).
    let mut taken: HashMap<&str, usize> = HashMap::new();
    let events: Vec<Event> = traffic
        .events
        .iter()
        .filter(|e| {
            if farm.contains(&e.key) {
                return e.ts <= first + 600.0;
            }
            let n = taken.entry(e.key.as_str()).or_default();
            *n += 1;
            genuine.contains(&e.key) && *n <= GENUINE_REQUESTS
        })
        .cloned()
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<&str> = farm.iter().chain(&genuine).map(String::as_str).collect();
    let mut cfg = abuse_config(Mode::Enforce, Action::Suspend);
    cfg.scope = switchyard::abuse::live::Scope::Cluster;
    let live = start(dir.path(), &names, cfg).await;
    let statuses = replay(&live, &events).await;

    let deadline = Instant::now() + Duration::from_secs(20);
    let flag = loop {
        let view = live.admin("/admin/abuse").await;
        // The oldest farm flag: later ones find their siblings already
        // quarantined by it.
        let farm_flag = view["flags"]
            .as_array()
            .unwrap()
            .iter()
            .rfind(|f| f["kind"] == "key_farm")
            .cloned();
        if let Some(f) = farm_flag {
            break f;
        }
        assert!(Instant::now() < deadline, "no key_farm flag: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let quarantined: Vec<String> = flag["quarantined"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    assert!(quarantined.len() >= 2, "{flag}");
    assert!(flag["cluster"].is_string(), "{flag}");
    for k in &quarantined {
        assert!(farm.contains(k), "{k} is not in the farm: {flag}");
    }
    let view = live.admin("/admin/abuse").await;
    for q in view["quarantines"].as_array().unwrap() {
        assert!(
            farm.contains(&q["key"].as_str().unwrap().to_string()),
            "{q}"
        );
    }
    // A sibling quarantined by the cluster's flag is refused, and audited.
    let sibling = quarantined
        .iter()
        .find(|k| **k != flag["key"].as_str().unwrap())
        .unwrap();
    let mut e = events.iter().find(|e| &e.key == sibling).unwrap().clone();
    e.body = json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]});
    e.dialect = "openai";
    let (status, body) = live.send(&e).await;
    refused_in_dialect("openai", status, &body);
    let events_seen = live.admin("/admin/events").await;
    assert!(
        events_seen["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "abuse_quarantine" && e["target"] == sibling.as_str()),
        "{events_seen}"
    );
    let cast_genuine = Cast {
        campaign: String::new(),
        genuine,
        events: Vec::new(),
    };
    assert_genuine_untouched(&live, &cast_genuine, &statuses).await;
    live.gw.shutdown().await;
}
