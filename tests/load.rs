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
/// Answers are cut to a few words (vendor tag, digest, filler): the tests
/// are about where requests go, and short answers keep debug runs short.
const MAX_TOKENS: u64 = 4;
/// Reloads in test (c), and the least requests it sends in all.
const RELOADS: usize = 200;
const RELOAD_MIN_REQUESTS: u64 = 5_000;
/// Requests that must complete between two reloads in (c), so load really
/// runs through every one of them.
const REQUESTS_PER_RELOAD: u64 = 16;
/// Rounds of overlapping reloads in the roll-back test.
const ROUNDS: usize = 50;

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
        let prompt = format!("load request {n}");
        let body = json!({
            "model": "frontier",
            "stream": stream,
            "max_tokens": MAX_TOKENS,
            "messages": [{"role": "user", "content": prompt}],
        });
        // Proves the answer is this request's, not a neighbour's.
        let digest = format!("digest={}", switchyard::sim::digest(&prompt));
        let resp = self
            .http
            .post(&self.url)
            .bearer_auth("app-key")
            .json(&body)
            .send()
            .await
            .map_err(|e| format!("transport: {e:?}"))?;
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
            if !text.contains(&digest) {
                return Err(format!("stream without {digest}: {text:?}"));
            }
        } else {
            let v: Value = resp
                .json()
                .await
                .map_err(|e| format!("body not JSON: {e}"))?;
            let content = v["choices"][0]["message"]["content"].as_str().unwrap_or("");
            if !content.starts_with('[') || !content.contains(&digest) {
                return Err(format!("no answer with {digest} in {v}"));
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

/// Polls `cond` every few milliseconds until it holds; panics (failing the
/// test instead of hanging CI) if it does not within five minutes, far
/// beyond what the loads here take on a busy two-core machine.
async fn until(mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a condition the test waits for did not hold within 300 s"
        );
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
    // batch of in-flight requests): never a share of the run. (A late
    // success of a request admitted before the outage can end the ejection
    // early, see a_success_that_was_in_flight_does_not_end_an_ejection;
    // the bound leaves room for a few such rounds.)
    assert!(
        claude - claude_at <= 4 * WORKERS,
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
    // One ejection is expected (no probe within the back-off); more than one
    // is the in-flight-success bug named above.
    if ejects.len() > 1 {
        eprintln!(
            "(b) {} ejections of claude, {} recoveries without a probe",
            ejects.len(),
            events_for(&events, "recover", "claude").len()
        );
    }
    assert!(!ejects.is_empty(), "{events}");
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

/// What (c) saw of its reloads.
#[derive(Default)]
struct Reloads {
    applied: usize,
    rejected: usize,
    /// Requests answered between each reload and the next.
    done_between: Vec<u64>,
    /// Valid reloads after which the live table was not the one just loaded.
    stale: Vec<String>,
    /// Reloads after which `last_reload_error` disagreed with the outcome.
    error_mismatch: Vec<String>,
}

const ORDERS: [[&str; 3]; 3] = [
    ["claude", "gpt", "gemini"],
    ["gpt", "gemini", "claude"],
    ["gemini", "claude", "gpt"],
];

/// The live snapshot's version and frontier order, read in process.
fn live_table(gw: &switchyard::app::Gateway) -> (u64, Vec<String>) {
    let snap = gw.live.load();
    let order = snap.table.routes["frontier"]
        .targets
        .iter()
        .map(|t| t.name.clone())
        .collect();
    (snap.version, order)
}

fn frontier_order(k: usize) -> [&'static str; 3] {
    ORDERS[k % 3]
}

/// Valid variant `k`: frontier in one of three orders, a different first
/// token timeout, and every other time a changed OpenAI provider (a new
/// connection pool under load).
fn valid_table(base: &str, k: usize) -> String {
    let mut t = base.replace(
        FRONTIER,
        &format!(
            "[routes.frontier]\ntargets = {}\nfirst_token_timeout = \"{}s\"\n",
            json!(frontier_order(k)),
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
    let hint = [
        "unknown target `nobody`",
        "routes.toml:",
        "expected a duration",
    ][k % 3];
    (base.replace(FRONTIER, frontier), hint)
}

/// Replaces the routes file at once: a temp file in the same directory,
/// then a rename, so a reload never reads half a file.
fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A simulator and a gateway started from a routes file in `dir` (valid
/// variant 0), so that reload re-reads it. Returns the gateway, the file
/// and the demo table pointed at the simulator (the base of the variants).
async fn start_from_file(
    dir: &tempfile::TempDir,
) -> (switchyard::app::Gateway, std::path::PathBuf, String) {
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
    (gw, path, base)
}

/// (c) 200 reloads during load, every third one invalid: no failed request,
/// every valid reload applied (200) and every invalid one rejected (422).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_200_reloads_a_third_invalid_fail_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, path, base) = start_from_file(&dir).await;
    let http = common::client();
    let admin = |p: &str| format!("http://{}{p}", gw.admin_addr);
    let reload = || {
        http.post(admin("/admin/reload"))
            .bearer_auth(common::ADMIN_TOKEN)
            .send()
    };
    let admin_get = |p: &'static str| {
        let req = http.get(admin(p)).bearer_auth(common::ADMIN_TOKEN).send();
        async move {
            let resp = req.await.unwrap();
            assert_eq!(resp.status(), 200, "GET {p}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let routes = || admin_get("/admin/routes");

    // Open-ended until the reloads are done; then at least the minimum.
    let load = Load::new(http.clone(), gw.addr, u64::MAX);
    let reloads = async {
        let mut r = Reloads::default();
        let mut version = 1u64;
        for i in 0..RELOADS {
            let invalid = i % 3 == 2;
            let (hint, order) = if invalid {
                let (text, hint) = invalid_table(&base, i / 3);
                write_atomically(&path, &text);
                (hint, None)
            } else {
                let k = r.applied + 1;
                write_atomically(&path, &valid_table(&base, k));
                ("", Some(frontier_order(k)))
            };
            let before = load.done.load(SeqCst);
            let resp = reload().await.unwrap();
            let status = resp.status();
            let v: Value = resp.json().await.unwrap();
            if let Some(order) = order {
                assert_eq!(status, 200, "reload {i} of a valid file: {v}");
                let new = v["version"].as_u64().unwrap();
                assert!(new > version, "reload {i}: version {new} after {version}");
                version = new;
                r.applied += 1;
                // The live table right after the reload returned.
                let (live_version, live_order) = live_table(&gw);
                if live_version < new || live_order != order {
                    r.stale.push(format!(
                        "reload {i}: returned version {new} with frontier {order:?}; \
                         right after, the live table is version {live_version} with \
                         frontier {live_order:?}"
                    ));
                }
                if let Some(e) = gw.live.last_reload_error.load_full() {
                    r.error_mismatch.push(format!("reload {i} (valid): {e:?}"));
                }
            } else {
                assert_eq!(status, 422, "reload {i} of an invalid file: {v}");
                let problems = v["problems"].as_array().unwrap();
                assert!(!problems.is_empty(), "reload {i}: {v}");
                assert!(
                    problems.iter().any(|p| p.as_str().unwrap().contains(hint)),
                    "reload {i}: problems should mention {hint:?}: {v}"
                );
                r.rejected += 1;
                if gw.live.last_reload_error.load().is_none() {
                    r.error_mismatch
                        .push(format!("reload {i} (invalid): no last_reload_error"));
                }
            }
            // Let requests run on this table before the next reload.
            until(|| load.done.load(SeqCst) >= before + REQUESTS_PER_RELOAD).await;
            r.done_between.push(load.done.load(SeqCst) - before);
        }
        // Stop the load, having sent at least the minimum.
        let stop_at = load.next.load(SeqCst).max(RELOAD_MIN_REQUESTS);
        load.limit.store(stop_at, SeqCst);
        (r, version)
    };
    let (r, version) = with_load(&load, reloads).await;
    let (applied, rejected, done_between) = (r.applied, r.rejected, &r.done_between);

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

    // A final valid file. The gateway also watches the file (debounced
    // 200 ms) and reloads on its own: let those reloads settle, then reload
    // through the API; the table is the file's and no error is left.
    write_atomically(&path, &valid_table(&base, 0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let resp = reload().await.unwrap();
    assert_eq!(resp.status(), 200);
    let live = routes().await;
    assert!(live["last_reload_error"].is_null(), "{live}");
    // (Not `== the version just returned`: a late watcher reload may still
    // land after it; see overlapping_reloads_never_roll_the_live_table_back.)
    assert!(live["version"].as_u64().unwrap() > version, "{live}");
    assert_eq!(live["routes"]["frontier"]["targets"], json!(ORDERS[0]));
    for t in ["claude", "gpt", "gemini"] {
        assert_eq!(live["targets"][t]["state"], "healthy", "{live}");
    }
    let events = admin_get("/admin/events").await;
    let events = events["events"].as_array().unwrap();
    let kinds = |kind: &str, actor: &str| {
        events
            .iter()
            .filter(|e| e["kind"] == kind && e["actor"] == actor)
            .count()
    };
    assert_eq!(kinds("reload", "admin-api"), applied + 1);
    assert_eq!(kinds("reload_rejected", "admin-api"), rejected);
    assert!(events.iter().all(|e| e["kind"] != "eject"), "{events:?}");
    eprintln!(
        "(c) file-watch reloads: {} applied, {} rejected",
        kinds("reload", "file-watch"),
        kinds("reload_rejected", "file-watch")
    );
    eprintln!(
        "(c) {} valid reloads were followed by another table: {:#?}",
        r.stale.len(),
        r.stale
    );
    eprintln!(
        "(c) {} reloads were followed by a last_reload_error of the other outcome: {:#?}",
        r.error_mismatch.len(),
        r.error_mismatch
    );
    gw.shutdown().await;
}

/// Reloads that overlap (the file watcher's and the admin API's, or two
/// admin calls) must not roll the live table back: once reloads that
/// returned versions up to N have all returned, the live table is at least
/// version N.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_reloads_never_roll_the_live_table_back() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, path, base) = start_from_file(&dir).await;
    let http = common::client();
    let url = format!("http://{}/admin/reload", gw.admin_addr);
    let mut rolled_back = Vec::new();
    for round in 1..=ROUNDS {
        write_atomically(&path, &valid_table(&base, round));
        let calls = (0..4).map(|_| {
            let req = http.post(&url).bearer_auth(common::ADMIN_TOKEN).send();
            async move {
                let resp = req.await.unwrap();
                assert_eq!(resp.status(), 200);
                resp.json::<Value>().await.unwrap()["version"]
                    .as_u64()
                    .unwrap()
            }
        });
        let newest = futures::future::join_all(calls)
            .await
            .into_iter()
            .max()
            .unwrap();
        let (live, _) = live_table(&gw);
        if live < newest {
            rolled_back.push(format!(
                "round {round}: reloads returned up to version {newest}, live is {live}"
            ));
        }
    }
    gw.shutdown().await;
    assert!(
        rolled_back.is_empty(),
        "{} of {ROUNDS} rounds ended on an older table: {rolled_back:#?}",
        rolled_back.len()
    );
}

/// An ejection ends only through the probe let through after the back-off:
/// a request that was admitted to the target before it was ejected and
/// succeeds afterwards must not bring it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_success_that_was_in_flight_does_not_end_an_ejection() {
    let env = common::start(|cfg| {
        frontier_of_three(cfg);
        cfg.health.base_ejection = Duration::from_secs(600);
        cfg.health.max_ejection = Duration::from_secs(1200);
    })
    .await;
    // One slow request reaches claude while it is still healthy.
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            latency_ms: 3_000,
            ..Knobs::default()
        },
    );
    let slow = tokio::spawn(
        env.http
            .post(env.url("/v1/chat/completions"))
            .bearer_auth("app-key")
            .json(&common::user("frontier", "slow but fine"))
            .send(),
    );
    until(|| count(&env.sim, CLAUDE) == 1).await;
    // Then claude starts refusing; the next requests eject it.
    env.sim.set_knobs(
        CLAUDE.0,
        CLAUDE.1,
        Knobs {
            suspended: true,
            ..Knobs::default()
        },
    );
    for i in 0..5 {
        let resp = env.openai(common::user("frontier", &format!("f{i}"))).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-switchyard-target"], "gpt");
    }
    let routes = admin_get(&env, "/admin/routes").await;
    assert_eq!(routes["targets"]["claude"]["state"], "ejected", "{routes}");
    assert!(
        !slow.is_finished(),
        "precondition: the slow request must still be in flight"
    );

    // The slow request now succeeds on claude.
    let resp = slow.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-switchyard-target"], "claude");
    let hits = count(&env.sim, CLAUDE);
    let next = env.openai(common::user("frontier", "after")).await;
    assert_eq!(next.status(), 200);

    let routes = admin_get(&env, "/admin/routes").await;
    let events = admin_get(&env, "/admin/events").await;
    let recovered = events_for(&events, "recover", "claude");
    assert!(
        recovered.is_empty(),
        "no probe was let through, yet: {recovered:?}; claude is now {}",
        routes["targets"]["claude"]["state"]
    );
    assert_eq!(
        count(&env.sim, CLAUDE),
        hits,
        "an ejected target took a request"
    );
    assert_eq!(routes["targets"]["claude"]["state"], "ejected", "{routes}");
    env.gw.shutdown().await;
}
