//! Bounded load tests over loopback: the real gateway in front of the real
//! simulator, 64 concurrent workers sharing one client, while ops suspend a
//! target, a vendor silently starts refusing a model, or the routes file is
//! reloaded hundreds of times. Every test asserts on counts and outcomes
//! (client errors, where traffic went, admin state), never on speed.

mod common;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use switchyard::sim::{Knobs, Vendor};

/// Concurrent workers (and so the most requests in flight at any moment).
const WORKERS: u64 = 64;
/// Requests for the failover tests (a) and (b), as the issue asks.
const TOTAL: u64 = 20_000;
/// The switch (suspension, vendor outage) happens after this many answers.
const SWITCH_AT: u64 = TOTAL / 4;
/// Every `STREAM_EVERY`-th request is streamed.
const STREAM_EVERY: u64 = 4;
/// Reloads in test (c), and the least requests it sends in all.
const RELOADS: usize = 200;
const RELOAD_MIN_REQUESTS: u64 = 5_000;
/// Requests that must complete between two reloads in (c), so load really
/// runs through every one of them.
const REQUESTS_PER_RELOAD: u64 = 16;

const CLAUDE: (Vendor, &str) = (Vendor::Anthropic, "claude-sonnet-4-5");
const GPT: (Vendor, &str) = (Vendor::Openai, "gpt-5");
const GEMINI: (Vendor, &str) = (Vendor::Gemini, "gemini-2.5-pro");

fn count(sim: &switchyard::sim::Simulator, (vendor, model): (Vendor, &str)) -> u64 {
    sim.count(vendor, model)
}

/// A fixed-size (or open-ended) run of frontier requests by `WORKERS`
/// workers, with shared counters the test reads while it runs.
struct Load {
    http: reqwest::Client,
    url: String,
    /// Requests are claimed while `next < limit`.
    next: AtomicU64,
    limit: AtomicU64,
    /// Claimed and not yet fully answered (body read to its end). A request
    /// counts as in flight from before it is sent.
    in_flight: AtomicU64,
    /// Fully answered, whatever the outcome.
    done: AtomicU64,
    errors: AtomicU64,
    error_samples: Mutex<Vec<String>>,
    /// Good answers by `x-switchyard-target`.
    by_target: Mutex<BTreeMap<String, u64>>,
}

impl Load {
    fn new(http: reqwest::Client, gateway: std::net::SocketAddr, limit: u64) -> Arc<Load> {
        Arc::new(Load {
            http,
            url: format!("http://{gateway}/v1/chat/completions"),
            next: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
            in_flight: AtomicU64::new(0),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            error_samples: Mutex::new(Vec::new()),
            by_target: Mutex::new(BTreeMap::new()),
        })
    }

    /// Requests actually sent (claimed within the limit).
    fn issued(&self) -> u64 {
        self.next.load(SeqCst).min(self.limit.load(SeqCst))
    }

    fn claim(&self) -> Option<u64> {
        let n = self.next.fetch_add(1, SeqCst);
        if n >= self.limit.load(SeqCst) {
            return None;
        }
        self.in_flight.fetch_add(1, SeqCst);
        Some(n)
    }

    fn fail(&self, n: u64, why: String) {
        self.errors.fetch_add(1, SeqCst);
        let mut samples = self.error_samples.lock().unwrap();
        if samples.len() < 10 {
            samples.push(format!("request {n}: {why}"));
        }
    }

    /// Runs `WORKERS` workers until the limit is reached.
    async fn run(self: &Arc<Load>) {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let load = self.clone();
                tokio::spawn(async move {
                    while let Some(n) = load.claim() {
                        match load.one(n).await {
                            Ok(target) => {
                                *load.by_target.lock().unwrap().entry(target).or_default() += 1;
                            }
                            Err(why) => load.fail(n, why),
                        }
                        load.in_flight.fetch_sub(1, SeqCst);
                        load.done.fetch_add(1, SeqCst);
                    }
                })
            })
            .collect();
        for w in workers {
            w.await.expect("a load worker panicked");
        }
    }

    /// One request; `Ok(target that answered)` or why it is a client error.
    async fn one(&self, n: u64) -> Result<String, String> {
        let stream = n % STREAM_EVERY == STREAM_EVERY - 1;
        let body = json!({
            "model": "frontier",
            "stream": stream,
            "messages": [{"role": "user", "content": format!("load request {n}")}],
        });
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth("app-key")
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let target = resp
            .headers()
            .get("x-switchyard-target")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if status != 200 {
            let text = resp.text().await.unwrap_or_default();
            return Err(format!("status {status}: {text}"));
        }
        if stream {
            let mut out = Vec::new();
            let mut chunks = resp.bytes_stream();
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| {
                    format!(
                        "stream broke after {:?}: {e}",
                        String::from_utf8_lossy(&out)
                    )
                })?;
                out.extend_from_slice(&chunk);
            }
            let text = String::from_utf8_lossy(&out);
            if !text.ends_with("data: [DONE]\n\n") || text.contains("data: {\"error\"") {
                return Err(format!("stream did not end cleanly: {text:?}"));
            }
            if !text.contains("\"content\":\"[") {
                return Err(format!("stream without content: {text:?}"));
            }
        } else {
            let v: Value = resp
                .json()
                .await
                .map_err(|e| format!("body not JSON: {e}"))?;
            let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
            if !content.starts_with('[') {
                return Err(format!("no answer in {v}"));
            }
        }
        if target.is_empty() {
            return Err("no x-switchyard-target header".into());
        }
        Ok(target)
    }

    fn assert_no_client_errors(&self) {
        let errors = self.errors.load(SeqCst);
        assert_eq!(
            errors,
            0,
            "{errors} client errors out of {}; first ones: {:#?}",
            self.done.load(SeqCst),
            self.error_samples.lock().unwrap()
        );
    }

    fn served_by(&self, target: &str) -> u64 {
        self.by_target
            .lock()
            .unwrap()
            .get(target)
            .copied()
            .unwrap_or(0)
    }
}

/// Polls `cond` every few milliseconds until it holds.
async fn until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Runs `load` to its end while `during` runs alongside; returns what
/// `during` returned.
async fn with_load<T>(load: &Arc<Load>, during: impl Future<Output = T>) -> T {
    let (out, ()) = tokio::join!(during, load.run());
    out
}

fn frontier_of_three(cfg: &mut switchyard::config::Config) {
    cfg.routes.get_mut("frontier").unwrap().targets =
        vec!["claude".into(), "gpt".into(), "gemini".into()];
}

async fn admin_get(env: &common::Env, path: &str) -> Value {
    let resp = env
        .http
        .get(env.admin_url(path))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "GET {path}");
    resp.json().await.unwrap()
}

fn events_for<'a>(events: &'a Value, kind: &str, target: &str) -> Vec<&'a Value> {
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind && e["target"] == target)
        .collect()
}

/// (a) 3 backends, 20,000 requests at 64 concurrent; the primary is
/// suspended through the admin API mid-run: no client error, and no request
/// that started after the suspend call returned reaches the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_admin_suspension_of_the_primary_mid_run_loses_nothing() {
    let env = common::start(frontier_of_three).await;
    let load = Load::new(env.http.clone(), env.gw.addr, TOTAL);

    let switch = async {
        until(|| load.done.load(SeqCst) >= SWITCH_AT).await;
        let claude_before = count(&env.sim, CLAUDE);
        let resp = env
            .http
            .post(env.admin_url("/admin/targets/claude/suspend"))
            .bearer_auth(common::ADMIN_TOKEN)
            .json(&json!({"reason": "load test: vendor incident", "for": "2h"}))
            .send()
            .await
            .unwrap();
        // Read right after the call returned: every request that can still
        // reach claude was admitted before, so it is in flight now.
        let in_flight = load.in_flight.load(SeqCst);
        let issued = load.issued();
        let claude_at = count(&env.sim, CLAUDE);
        let gpt_at = count(&env.sim, GPT);
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        (claude_before, in_flight, issued, claude_at, gpt_at)
    };
    let (claude_before, in_flight, issued_at, claude_at, gpt_at) = with_load(&load, switch).await;

    load.assert_no_client_errors();
    assert_eq!(load.done.load(SeqCst), TOTAL);
    assert_eq!(load.issued(), TOTAL);
    let served: u64 = load.by_target.lock().unwrap().values().sum();
    assert_eq!(served, TOTAL);

    let (claude, gpt, gemini) = (
        count(&env.sim, CLAUDE),
        count(&env.sim, GPT),
        count(&env.sim, GEMINI),
    );
    eprintln!(
        "(a) suspend at {issued_at} issued, {in_flight} in flight; claude {claude_before} \
         -> {claude_at} -> {claude}, gpt {gpt_at} -> {gpt}, gemini {gemini}; by target {:?}",
        load.by_target.lock().unwrap()
    );
    // The primary carried the traffic before the suspension...
    assert!(claude_before >= SWITCH_AT - WORKERS, "{claude_before}");
    // ...and took at most the requests already in flight after it.
    assert!(in_flight <= WORKERS);
    assert!(
        claude - claude_at <= in_flight,
        "claude got {} requests after the suspend call returned with {in_flight} in flight",
        claude - claude_at
    );
    // Everything sent after the call went to the secondary, none further.
    assert!(
        gpt - gpt_at >= TOTAL - issued_at,
        "gpt grew by {} for {} requests sent after the suspension",
        gpt - gpt_at,
        TOTAL - issued_at
    );
    assert!(load.served_by("gpt") >= TOTAL - issued_at);
    assert_eq!(gemini, 0, "gpt was healthy: nothing should reach gemini");
    assert_eq!(load.served_by("gemini"), 0);

    let routes = admin_get(&env, "/admin/routes").await;
    assert_eq!(
        routes["targets"]["claude"]["state"], "suspended",
        "{routes}"
    );
    assert_eq!(
        routes["targets"]["claude"]["suspension"]["reason"],
        "load test: vendor incident"
    );
    assert_eq!(routes["targets"]["gpt"]["state"], "healthy", "{routes}");
    let events = admin_get(&env, "/admin/events").await;
    assert_eq!(
        events_for(&events, "suspend", "claude").len(),
        1,
        "{events}"
    );
    assert!(
        events_for(&events, "eject", "claude").is_empty(),
        "{events}"
    );

    // Resume: the primary takes traffic again.
    let resp = env
        .http
        .post(env.admin_url("/admin/targets/claude/resume"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let claude_resumed = count(&env.sim, CLAUDE);
    for i in 0..8 {
        let resp = env
            .openai(common::user("frontier", &format!("after {i}")))
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-switchyard-target"], "claude");
    }
    assert_eq!(count(&env.sim, CLAUDE), claude_resumed + 8);
    env.gw.shutdown().await;
}

/// (b) The same load, with the simulator answering "model suspended" for the
/// primary without notice: no client error (each hit fails over before the
/// first byte), the primary is ejected, traffic moves to the secondary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_unannounced_vendor_suspension_ejects_the_primary_and_loses_nothing() {
    let env = common::start(|cfg| {
        frontier_of_three(cfg);
        // Long enough that no probe is let through during or right after
        // the run: the state read at the end is the ejection itself.
        cfg.health.base_ejection = Duration::from_secs(600);
        cfg.health.max_ejection = Duration::from_secs(1200);
    })
    .await;
    let load = Load::new(env.http.clone(), env.gw.addr, TOTAL);

    let switch = async {
        until(|| load.done.load(SeqCst) >= SWITCH_AT).await;
        let claude_before = count(&env.sim, CLAUDE);
        env.sim.set_knobs(
            CLAUDE.0,
            CLAUDE.1,
            Knobs {
                suspended: true,
                ..Knobs::default()
            },
        );
        let issued = load.issued();
        let claude_at = count(&env.sim, CLAUDE);
        let gpt_at = count(&env.sim, GPT);
        (claude_before, issued, claude_at, gpt_at)
    };
    let (claude_before, issued_at, claude_at, gpt_at) = with_load(&load, switch).await;

    load.assert_no_client_errors();
    assert_eq!(load.done.load(SeqCst), TOTAL);
    assert_eq!(load.issued(), TOTAL);
    let served: u64 = load.by_target.lock().unwrap().values().sum();
    assert_eq!(served, TOTAL);

    let (claude, gpt, gemini) = (
        count(&env.sim, CLAUDE),
        count(&env.sim, GPT),
        count(&env.sim, GEMINI),
    );
    eprintln!(
        "(b) outage at {issued_at} issued; claude {claude_before} -> {claude_at} -> {claude}, \
         gpt {gpt_at} -> {gpt}, gemini {gemini}; by target {:?}",
        load.by_target.lock().unwrap()
    );
    assert!(claude_before >= SWITCH_AT - WORKERS, "{claude_before}");
    // Hits on the refusing primary: those in flight when it began refusing,
    // plus those admitted before the ejection took effect (at most one
    // batch of in-flight requests): never a share of the run.
    assert!(
        claude - claude_at <= 2 * WORKERS,
        "claude was hit {} times after it began refusing",
        claude - claude_at
    );
    // Every request sent after the switch was answered by the secondary.
    assert!(
        gpt - gpt_at >= TOTAL - issued_at,
        "gpt grew by {} for {} requests sent after the switch",
        gpt - gpt_at,
        TOTAL - issued_at
    );
    assert!(load.served_by("gpt") >= TOTAL - issued_at);
    assert_eq!(gemini, 0, "gpt was healthy: nothing should reach gemini");
    // Answers came only from the primary before the switch.
    assert!(load.served_by("claude") <= issued_at);

    let routes = admin_get(&env, "/admin/routes").await;
    assert_eq!(routes["targets"]["claude"]["state"], "ejected", "{routes}");
    assert_eq!(routes["targets"]["gpt"]["state"], "healthy", "{routes}");
    let events = admin_get(&env, "/admin/events").await;
    let ejects = events_for(&events, "eject", "claude");
    assert_eq!(ejects.len(), 1, "one ejection, no probe yet: {events}");
    assert_eq!(ejects[0]["actor"], "outlier-detection");
    assert!(
        ejects[0]["reason"]
            .as_str()
            .unwrap()
            .contains("model is unavailable"),
        "{events}"
    );
    assert!(events_for(&events, "eject", "gpt").is_empty(), "{events}");
    env.gw.shutdown().await;
}

/// The frontier block of the demo table, replaced by each variant.
const FRONTIER: &str = "[routes.frontier]\n\
                        targets = [\"claude\", \"gpt\", \"gemini\", \"local\"]\n\
                        first_token_timeout = \"10s\"\n";
const OPENAI_KEY: &str = "api_key_env = \"SIM_OPENAI_KEY\"\n";

/// Valid variant `k`: frontier in one of three orders, a different first
/// token timeout, and every other time a changed OpenAI provider (a new
/// connection pool under load).
fn valid_table(base: &str, k: usize) -> String {
    let orders = [
        r#"["claude", "gpt", "gemini"]"#,
        r#"["gpt", "gemini", "claude"]"#,
        r#"["gemini", "claude", "gpt"]"#,
    ];
    let mut t = base.replace(
        FRONTIER,
        &format!(
            "[routes.frontier]\ntargets = {}\nfirst_token_timeout = \"{}s\"\n",
            orders[k % 3],
            10 + k % 7
        ),
    );
    if k % 2 == 1 {
        t = t.replace(
            OPENAI_KEY,
            &format!("{OPENAI_KEY}request_timeout = \"{}s\"\n", 60 + k),
        );
    }
    t
}

/// Invalid variant `k`, and a piece of the problem the gateway must report.
fn invalid_table(base: &str, k: usize) -> (String, &'static str) {
    let frontier = match k % 3 {
        0 => "[routes.frontier]\ntargets = [\"claude\", \"gpt\", \"nobody\"]\n",
        1 => "[routes.frontier]\ntargets = [\"claude\", \"gpt\"\nfirst_token_timeout = \"10s\"\n",
        _ => {
            "[routes.frontier]\ntargets = [\"claude\", \"gpt\", \"gemini\"]\n\
              first_token_timeout = \"ten seconds\"\n"
        }
    };
    let hint = ["nobody", "", "first_token_timeout"][k % 3];
    (base.replace(FRONTIER, frontier), hint)
}

/// Replaces the routes file at once: a temp file in the same directory,
/// then a rename, so a reload never reads half a file.
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// (c) 200 reloads during load, every third one invalid: no failed request,
/// every valid reload applied (200) and every invalid one rejected (422).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_200_reloads_a_third_invalid_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    let sim = switchyard::sim::Simulator::new();
    let sim_addr = sim.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = switchyard::demo::DEMO_ROUTES.replace("{sim}", &sim_addr.to_string());
    assert!(base.contains(FRONTIER) && base.contains(OPENAI_KEY));
    write_atomically(&path, &valid_table(&base, 0));
    let config = switchyard::config::load_file(&path).unwrap();
    let opts = switchyard::app::Options {
        path: Some(path.clone()),
        env: switchyard::demo::env(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: common::ADMIN_TOKEN.into(),
    };
    let gw = switchyard::app::start(config, opts).await.unwrap();
    let http = reqwest::Client::new();
    let admin = |p: &str| format!("http://{}{p}", gw.admin_addr);
    let reload = || {
        http.post(admin("/admin/reload"))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
    };
    let last_reload_error = || async {
        let v: Value = http
            .get(admin("/admin/routes"))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["last_reload_error"].clone()
    };

    // Open-ended until the reloads are done; then at least the minimum.
    let load = Load::new(http.clone(), gw.addr, u64::MAX);
    let reloads = async {
        let (mut applied, mut rejected, mut version) = (0usize, 0usize, 1u64);
        let mut done_between = Vec::with_capacity(RELOADS);
        for i in 0..RELOADS {
            let invalid = i % 3 == 2;
            let hint = if invalid {
                let (text, hint) = invalid_table(&base, i / 3);
                write_atomically(&path, &text);
                hint
            } else {
                write_atomically(&path, &valid_table(&base, i + 1));
                ""
            };
            let before = load.done.load(SeqCst);
            let resp = reload().await.unwrap();
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            if invalid {
                assert_eq!(status, 422, "reload {i} of an invalid file: {v}");
                let problems = v["problems"].as_array().unwrap();
                assert!(!problems.is_empty(), "reload {i}: {v}");
                assert!(
                    problems.iter().any(|p| p.as_str().unwrap().contains(hint)),
                    "reload {i}: problems should mention {hint:?}: {v}"
                );
                assert!(last_reload_error().await.is_array(), "reload {i}");
                rejected += 1;
            } else {
                assert_eq!(status, 200, "reload {i} of a valid file: {v}");
                let new = v["version"].as_u64().unwrap();
                assert!(new > version, "reload {i}: version {new} after {version}");
                version = new;
                assert!(last_reload_error().await.is_null(), "reload {i}");
                applied += 1;
            }
            // Let requests run on this table before the next reload.
            until(|| load.done.load(SeqCst) >= before + REQUESTS_PER_RELOAD).await;
            done_between.push(load.done.load(SeqCst) - before);
        }
        // Stop the load, having sent at least the minimum.
        let stop_at = load.next.load(SeqCst).max(RELOAD_MIN_REQUESTS);
        load.limit.store(stop_at, SeqCst);
        (applied, rejected, version, done_between)
    };
    let (applied, rejected, version, done_between) = with_load(&load, reloads).await;

    load.assert_no_client_errors();
    let total = load.issued();
    assert_eq!(load.done.load(SeqCst), total);
    assert!(total >= RELOAD_MIN_REQUESTS, "{total}");
    let served: u64 = load.by_target.lock().unwrap().values().sum();
    assert_eq!(served, total);
    assert_eq!(applied + rejected, RELOADS);
    assert_eq!(rejected, RELOADS / 3);
    assert!(done_between.iter().all(|&n| n >= REQUESTS_PER_RELOAD));
    eprintln!(
        "(c) {total} requests, {applied} reloads applied, {rejected} rejected, by target {:?}",
        load.by_target.lock().unwrap()
    );
    // The reorders took effect: each target led frontier at some point.
    for t in ["claude", "gpt", "gemini"] {
        assert!(load.served_by(t) > 0, "{t} never served");
    }
    assert_eq!(load.served_by("local"), 0);

    // A final valid reload; the table is whole and no error is left.
    write_atomically(&path, &valid_table(&base, 0));
    let resp = reload().await.unwrap();
    assert_eq!(resp.status(), 200);
    let routes: Value = http
        .get(admin("/admin/routes"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(routes["last_reload_error"].is_null(), "{routes}");
    assert!(routes["version"].as_u64().unwrap() > version, "{routes}");
    assert_eq!(
        routes["routes"]["frontier"]["targets"],
        json!(["claude", "gpt", "gemini"])
    );
    for t in ["claude", "gpt", "gemini"] {
        assert_eq!(routes["targets"][t]["state"], "healthy", "{routes}");
    }
    let events: Value = http
        .get(admin("/admin/events"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kinds = |k: &str| {
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == k)
            .count()
    };
    assert_eq!(kinds("reload"), applied + 1);
    assert_eq!(kinds("reload_rejected"), rejected);
    assert_eq!(kinds("eject"), 0, "{events}");
    gw.shutdown().await;
}
