//! Fleet mode against a real `redis-server`: three in-process replicas,
//! each with its own routes file, all pointing at one simulator.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::redis_server::Redis;
use common::{user, ADMIN_TOKEN};
use serde_json::{json, Value};
use switchyard::app::{self, Gateway, Options};
use switchyard::sim::{Knobs, Simulator, Vendor};

const CLAUDE: &str = "claude-sonnet-4-5";
const KEY_SECRET: &str = "fleet-test-hmac-secret";

struct Fleet {
    redis: Redis,
    sim: Simulator,
    gws: Vec<Option<Gateway>>,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The demo table on `sim`, in fleet mode as replica `id`; `extra` goes
/// right after the `[fleet]` keys (more of them, then other tables).
fn routes(sim: std::net::SocketAddr, redis: &Redis, id: &str, extra: &str) -> String {
    let table = switchyard::demo::DEMO_ROUTES.replace("{sim}", &sim.to_string());
    format!(
        "{table}\n[fleet]\nredis_url = \"{}\"\nreplica = \"{id}\"\nheartbeat_ttl = \"2s\"\nack_timeout = \"2s\"\n{extra}",
        redis.url()
    )
}

/// Health settings for the shared-ejection tests: eject after 3 failures
/// in a row, for 3 s (6 s after a failed probe), and a route of two.
const EJECTION: &str = "max_ejected_share = 0.5\n\n[health]\nconsecutive_failures = 3\nbase_ejection = \"3s\"\nmax_ejection = \"30s\"\n\n[routes.pair]\ntargets = [\"claude\", \"gpt\"]\n";

impl Fleet {
    /// Redis, the simulator and `n` replicas `r0..`; replica `odd` (if
    /// any) gets a routes file with one more route.
    async fn start(n: usize, odd: Option<usize>) -> Fleet {
        Fleet::start_with(n, odd, "").await
    }

    /// Like `start`, with `all` added to every replica's routes file.
    async fn start_with(n: usize, odd: Option<usize>, all: &str) -> Fleet {
        Fleet::start_inner(n, odd, all, false).await
    }

    /// Like `start_with`, with app keys on (`keys_file` empty, the HMAC
    /// secret in `SWITCHYARD_KEY_SECRET`).
    async fn start_keys(n: usize, all: &str) -> Fleet {
        Fleet::start_inner(n, None, all, true).await
    }

    async fn start_inner(n: usize, odd: Option<usize>, all: &str, keys: bool) -> Fleet {
        let redis = Redis::start().await;
        let sim = Simulator::new();
        let sim_addr = sim
            .spawn(([127, 0, 0, 1], 0).into())
            .await
            .expect("simulator");
        let dir = tempfile::tempdir().unwrap();
        let mut gws = Vec::new();
        for i in 0..n {
            let extra = if odd == Some(i) {
                format!("{all}\n[routes.extra]\ntargets = [\"gpt\"]\n")
            } else {
                all.to_string()
            };
            let path = dir.path().join(format!("routes-{i}.toml"));
            let mut text = routes(sim_addr, &redis, &format!("r{i}"), &extra);
            if keys {
                let file = dir.path().join("keys.json");
                text = text.replace(
                    "mode = \"any_key\"",
                    &format!(
                        "mode = \"keys\"\nkeys_file = {:?}",
                        file.display().to_string()
                    ),
                );
            }
            std::fs::write(&path, text).unwrap();
            let config = switchyard::config::load_file(&path).expect("valid table");
            let opts = Options {
                path: Some(path),
                env: std::sync::Arc::new(|name: &str| match name {
                    "SWITCHYARD_KEY_SECRET" => Some(KEY_SECRET.to_string()),
                    n if n.starts_with("SIM_") => Some("sim-key".to_string()),
                    _ => None,
                }),
                listen: ([127, 0, 0, 1], 0).into(),
                admin_listen: ([127, 0, 0, 1], 0).into(),
                admin_token: ADMIN_TOKEN.into(),
            };
            gws.push(Some(
                app::start(config, opts).await.expect("replica starts"),
            ));
        }
        let fleet = Fleet {
            redis,
            sim,
            gws,
            http: reqwest::Client::new(),
            _dir: dir,
        };
        fleet.wait_for_replicas(0, n).await;
        fleet
    }

    fn gw(&self, i: usize) -> &Gateway {
        self.gws[i].as_ref().expect("replica running")
    }

    async fn admin(&self, i: usize, method: reqwest::Method, path: &str) -> Value {
        let resp = self
            .http
            .request(method, format!("http://{}{path}", self.gw(i).admin_addr))
            .bearer_auth(ADMIN_TOKEN)
            .header("x-switchyard-actor", "test")
            .send()
            .await
            .expect("admin answers");
        resp.json().await.expect("json")
    }

    async fn suspend(&self, i: usize, target: &str) -> Value {
        let path = format!("/admin/targets/{target}/suspend");
        self.admin(i, reqwest::Method::POST, &path).await
    }

    async fn resume(&self, i: usize, target: &str) -> Value {
        let path = format!("/admin/targets/{target}/resume");
        self.admin(i, reqwest::Method::POST, &path).await
    }

    async fn view(&self, i: usize) -> Value {
        self.admin(i, reqwest::Method::GET, "/admin/fleet").await
    }

    async fn state(&self, i: usize, target: &str) -> String {
        let v = self.admin(i, reqwest::Method::GET, "/admin/routes").await;
        v["targets"][target]["state"].as_str().unwrap().to_string()
    }

    /// Waits until replica `i` sees `n` live replicas, each linked.
    async fn wait_for_replicas(&self, i: usize, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let v = self.view(i).await;
            if v["replicas"].as_array().map(Vec::len) == Some(n) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "fleet view never showed {n} replicas: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until replica `i` lost its link and got it back, by its
    /// audit trail.
    async fn wait_for_link_up(&self, i: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.admin(i, reqwest::Method::GET, "/admin/events").await;
            let kinds: Vec<String> = events["events"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["replica"] == format!("r{i}"))
                .filter_map(|e| e["kind"].as_str())
                .filter(|k| k.starts_with("fleet_link"))
                .map(str::to_string)
                .collect();
            let down = kinds.iter().any(|k| k == "fleet_link_down");
            if down && kinds.last().map(String::as_str) == Some("fleet_link_up") {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica {i}: link never came back: {kinds:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until every running replica reports `target` in `state`.
    async fn converge(&self, target: &str, state: &str, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut all = true;
            for i in 0..self.gws.len() {
                if self.gws[i].is_some() && self.state(i, target).await != state {
                    all = false;
                }
            }
            if all {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{target} never became {state} on every replica"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn chat(&self, i: usize, text: &str) -> u16 {
        self.chat_on(i, "frontier", text).await
    }

    /// A chat on `frontier` through replica `i` with app key `key`.
    async fn chat_as(&self, i: usize, key: &str) -> u16 {
        self.http
            .post(format!("http://{}/v1/chat/completions", self.gw(i).addr))
            .bearer_auth(key)
            .json(&user("frontier", "keyed"))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }

    /// Runs `switchyard keys ARGS --fleet` on replica 0's routes file;
    /// its stdout.
    async fn keys_cli(&self, args: &[&str]) -> String {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .arg("keys")
            .args(args)
            .arg("--fleet")
            .arg("--config")
            .arg(self._dir.path().join("routes-0.toml"))
            .env("SWITCHYARD_KEY_SECRET", KEY_SECRET)
            .env_remove("SWITCHYARD_REDIS_URL")
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "keys {args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    async fn chat_on(&self, i: usize, route: &str, text: &str) -> u16 {
        self.http
            .post(format!("http://{}/v1/chat/completions", self.gw(i).addr))
            .bearer_auth("app-key")
            .json(&user(route, text))
            .send()
            .await
            .map_or(0, |r| r.status().as_u16())
    }
}

fn assert_all_acked(v: &Value, n: u64) {
    let f = &v["fleet"];
    assert_eq!(f["replicas"], n, "{v}");
    assert_eq!(f["applied"], n, "{v}");
    assert_eq!(f["missing"], json!([]), "{v}");
    assert!(f.get("error").is_none(), "{v}");
}

/// Load spread over the replicas: `workers` loops, each request to the
/// next replica in turn, until stopped. Returns (ok, errors).
struct Load {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    ok: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
}

fn load(fleet: &Fleet, workers: usize) -> Load {
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let addrs: Vec<_> = fleet.gws.iter().flatten().map(|g| g.addr).collect();
    let tasks = (0..workers)
        .map(|w| {
            let (addrs, stopped) = (addrs.clone(), stopped.clone());
            let (ok, errors) = (ok.clone(), errors.clone());
            let http = reqwest::Client::new();
            tokio::spawn(async move {
                let mut n = w;
                while !*stopped.borrow() {
                    let addr = addrs[n % addrs.len()];
                    n += 1;
                    let status = http
                        .post(format!("http://{addr}/v1/chat/completions"))
                        .bearer_auth("app-key")
                        .json(&user("frontier", "load"))
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    if status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    Load {
        stop,
        tasks,
        ok,
        errors,
    }
}

impl Load {
    async fn finish(self) -> (u64, u64) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
        )
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_on_one_replica_is_acked_by_all_and_stops_their_traffic() {
    let fleet = Fleet::start(3, Some(2)).await;
    for i in 0..3 {
        assert_eq!(fleet.chat(i, "before").await, 200);
    }
    assert_eq!(fleet.sim.count(Vendor::Anthropic, CLAUDE), 3);

    let v = fleet.suspend(0, "claude").await;
    assert_all_acked(&v, 3);
    let at_ack = fleet.sim.count(Vendor::Anthropic, CLAUDE);
    for n in 0..12 {
        assert_eq!(fleet.chat(n % 3, "after").await, 200);
    }
    assert_eq!(
        fleet.sim.count(Vendor::Anthropic, CLAUDE),
        at_ack,
        "no replica sent the suspended target a request after the ack"
    );
    for i in 0..3 {
        assert_eq!(fleet.state(i, "claude").await, "suspended");
    }
    // The other replicas audit the change with the replica it came from.
    let events = fleet.admin(1, reqwest::Method::GET, "/admin/events").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "suspend" && e["actor"] == "test@r0"),
        "{events}"
    );

    // The view: every replica, its epoch, and the odd routes file flagged.
    let view = fleet.view(1).await;
    let replicas = view["replicas"].as_array().unwrap();
    assert_eq!(replicas.len(), 3, "{view}");
    for r in replicas {
        assert!(r["epoch"].as_u64().unwrap() >= v["fleet"]["epoch"].as_u64().unwrap());
        assert_eq!(r["routes_differ"], r["id"] == "r2", "{view}");
        assert_eq!(r["version"], env!("CARGO_PKG_VERSION"));
    }

    let v = fleet.resume(2, "claude").await;
    assert_all_acked(&v, 3);
    for i in 0..3 {
        assert_eq!(fleet.state(i, "claude").await, "healthy");
        assert_eq!(fleet.chat(i, "back").await, 200);
    }
    assert_eq!(fleet.sim.count(Vendor::Anthropic, CLAUDE), at_ack + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flips_on_random_replicas_under_load_are_all_acked_without_client_errors() {
    let fleet = Fleet::start(3, None).await;
    let load = load(&fleet, 12);
    let mut acks = Vec::new();
    for flip in 0..20 {
        let i = rand::random_range(0..3);
        let v = if flip % 2 == 0 {
            fleet.suspend(i, "claude").await
        } else {
            fleet.resume(i, "claude").await
        };
        assert_all_acked(&v, 3);
        acks.push(v["fleet"]["ms"].as_u64().unwrap());
    }
    let (ok, errors) = load.finish().await;
    assert_eq!(errors, 0, "client errors under flips ({ok} ok)");
    assert!(ok > 0);
    fleet
        .converge("claude", "healthy", Duration::from_secs(5))
        .await;
    acks.sort_unstable();
    println!(
        "ack latency over {} flips: p50 {} ms, p99 {} ms, max {} ms ({ok} requests, 0 errors)",
        acks.len(),
        percentile(&acks, 0.5),
        percentile(&acks, 0.99),
        acks[acks.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_leaves_the_view_and_acks_do_not_wait_for_it() {
    let mut fleet = Fleet::start(3, None).await;
    fleet.gws[2].take().unwrap().shutdown().await;
    // Gone within the heartbeat TTL (2 s), plus a beat.
    fleet.wait_for_replicas(0, 2).await;
    let v = fleet.suspend(0, "claude").await;
    assert_all_acked(&v, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_replica_that_does_not_ack_is_named_and_the_cli_exits_1() {
    let fleet = Fleet::start(2, None).await;
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let admin = format!("http://{}", fleet.gw(0).admin_addr);
    let out = tokio::process::Command::new(bin)
        .args(["suspend", "claude", "--admin", &admin])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("applied on 2/2 replicas in "), "{stdout}");

    // A replica that heartbeats but never applies anything (hung).
    let mut con = fleet.redis.client().await;
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg("switchyard:replica:ghost")
        .arg("id")
        .arg("ghost")
        .arg("epoch")
        .arg(0)
        .ignore()
        .cmd("PEXPIRE")
        .arg("switchyard:replica:ghost")
        .arg(60_000)
        .ignore()
        .cmd("ZADD")
        .arg("switchyard:replicas")
        .arg(1)
        .arg("ghost")
        .ignore()
        .query_async(&mut con)
        .await
        .unwrap();
    let out = tokio::process::Command::new(bin)
        .args(["resume", "claude", "--admin", &admin])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("applied on 2/3 replicas in "), "{stdout}");
    assert!(stderr.contains("no ack in time from: ghost"), "{stderr}");

    // --no-wait returns once written.
    let out = tokio::process::Command::new(bin)
        .args(["suspend", "claude", "--no-wait", "--admin", &admin])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("not waiting for acks"), "{stdout}");
    fleet
        .converge("claude", "suspended", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_gets_the_suspensions_back_from_the_replicas() {
    let mut fleet = Fleet::start(3, None).await;
    assert_all_acked(&fleet.suspend(1, "claude").await, 3);
    fleet.redis.restart_empty().await;
    let mut con = fleet.redis.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let held: Option<String> = redis::cmd("HGET")
            .arg("switchyard:suspensions")
            .arg("claude")
            .query_async(&mut con)
            .await
            .unwrap();
        if held.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the suspension was never re-seeded"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fleet.wait_for_replicas(0, 3).await;
    for i in 0..3 {
        assert_eq!(fleet.state(i, "claude").await, "suspended");
        fleet.wait_for_link_up(i).await;
    }
    // And the fleet works on the new Redis.
    assert_all_acked(&fleet.resume(2, "claude").await, 3);
    fleet
        .converge("claude", "healthy", Duration::from_secs(5))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_fails_no_request_and_the_fleet_converges_after() {
    let fleet = Fleet::start(3, None).await;
    let load = load(&fleet, 12);
    fleet.redis.freeze();
    let v = fleet.suspend(0, "claude").await;
    assert!(
        v["fleet"]["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("redis unreachable")),
        "{v}"
    );
    assert_eq!(v["state"], "suspended", "applied locally: {v}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    fleet.redis.thaw();
    fleet
        .converge("claude", "suspended", Duration::from_secs(10))
        .await;
    let (ok, errors) = load.finish().await;
    assert_eq!(errors, 0, "client errors with Redis frozen ({ok} ok)");
    assert!(ok > 0);
    fleet.wait_for_replicas(0, 3).await;
    assert_all_acked(&fleet.resume(1, "claude").await, 3);
}

/// The audit events of replica `i` of `kind` on `target`.
async fn events_of(fleet: &Fleet, i: usize, kind: &str, target: &str) -> Vec<Value> {
    let events = fleet.admin(i, reqwest::Method::GET, "/admin/events").await;
    events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind && e["target"] == target)
        .cloned()
        .collect()
}

/// Spread requests over the replicas (one at a time, 20 ms apart) until
/// the simulator counted `want` requests to Claude; every request is
/// served (by a later target when Claude fails).
async fn spread_until(fleet: &Fleet, want: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    let mut n = 0;
    while fleet.sim.count(Vendor::Anthropic, CLAUDE) < want {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Claude never reached {want} requests ({} so far)",
            fleet.sim.count(Vendor::Anthropic, CLAUDE)
        );
        assert_eq!(fleet.chat(n % 3, "spread").await, 200);
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejection_is_shared_and_one_probe_serves_the_whole_fleet() {
    let fleet = Fleet::start_with(3, None, EJECTION).await;
    fleet.sim.set_knobs(
        Vendor::Anthropic,
        CLAUDE,
        Knobs {
            error_status: Some(529),
            ..Knobs::default()
        },
    );
    // Replica r0 alone, until its outlier detection ejects Claude.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while fleet.state(0, "claude").await != "ejected" {
        assert!(tokio::time::Instant::now() < deadline, "r0 never ejected");
        assert_eq!(fleet.chat(0, "warm").await, 200);
    }
    let at_eject = fleet.sim.count(Vendor::Anthropic, CLAUDE);
    assert_eq!(at_eject, 3, "ejected after 3 failures in a row");

    // Spread over all three: r1 and r2 skip it too, at most one request
    // each before the shared ejection reached them.
    for n in 0..30 {
        assert_eq!(fleet.chat(n % 3, "spread").await, 200);
    }
    let spread = fleet.sim.count(Vendor::Anthropic, CLAUDE) - at_eject;
    assert!(spread <= 2, "{spread} requests reached the ejected target");
    for i in 1..3 {
        // Counted by each replica's own health: at most one attempt each.
        let routes = fleet.admin(i, reqwest::Method::GET, "/admin/routes").await;
        let sent = routes["targets"]["claude"]["requests"].as_u64().unwrap();
        assert!(sent <= 1, "r{i} sent the ejected target {sent} requests");
        assert_eq!(fleet.state(i, "claude").await, "ejected");
        let ejects = events_of(&fleet, i, "eject", "claude").await;
        assert!(
            ejects.iter().any(|e| e["actor"] == "outlier-detection@r0"),
            "r{i}: {ejects:?}"
        );
    }

    // It runs out (3 s): exactly one probe fleet-wide; it fails, and the
    // longer ejection is shared too.
    let before_probe = fleet.sim.count(Vendor::Anthropic, CLAUDE);
    spread_until(&fleet, before_probe + 1, Duration::from_secs(10)).await;
    fleet
        .converge("claude", "ejected", Duration::from_secs(5))
        .await;
    for n in 0..30 {
        assert_eq!(fleet.chat(n % 3, "after probe").await, 200);
    }
    assert_eq!(
        fleet.sim.count(Vendor::Anthropic, CLAUDE),
        before_probe + 1,
        "one probe for the whole fleet"
    );

    // Claude comes back: the next probe (after 6 s) succeeds, and every
    // replica takes it back.
    fleet.sim.clear_knobs();
    spread_until(&fleet, before_probe + 2, Duration::from_secs(15)).await;
    fleet
        .converge("claude", "healthy", Duration::from_secs(5))
        .await;
    let back = fleet.sim.count(Vendor::Anthropic, CLAUDE);
    for i in 0..3 {
        assert_eq!(fleet.chat(i, "back").await, 200);
    }
    assert_eq!(fleet.sim.count(Vendor::Anthropic, CLAUDE), back + 3);
    for i in 0..3 {
        assert!(!events_of(&fleet, i, "recover", "claude").await.is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_ejections_stop_at_the_routes_cap() {
    let fleet = Fleet::start_with(2, None, EJECTION).await;
    let down = Knobs {
        error_status: Some(503),
        ..Knobs::default()
    };
    fleet.sim.set_knobs(Vendor::Anthropic, CLAUDE, down.clone());
    fleet.sim.set_knobs(Vendor::Openai, "gpt-5", down);
    // Route `pair` is claude → gpt; both fail. Claude goes out first;
    // gpt would make two of two, over the cap of one (0.5 × 2).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events_of(&fleet, 0, "eject_capped", "gpt").await.is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gpt's ejection was never capped"
        );
        fleet.chat_on(0, "pair", "both down").await;
    }
    fleet
        .converge("claude", "ejected", Duration::from_secs(5))
        .await;
    for i in 0..2 {
        assert_ne!(fleet.state(i, "gpt").await, "ejected", "r{i}");
    }
    let mut con = fleet.redis.client().await;
    let ejected: std::collections::HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("switchyard:ejected")
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(
        ejected.keys().collect::<Vec<_>>(),
        vec!["claude"],
        "{ejected:?}"
    );
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Polls until replica `i` answers `want` to `key`, within `within`.
async fn until_status(fleet: &Fleet, i: usize, key: &str, want: u16, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let got = fleet.chat_as(i, key).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "r{i} still answers {got}, not {want}, after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_in_the_fleet_is_refused_by_every_replica_within_a_second() {
    let fleet = Fleet::start_keys(3, "").await;
    let key = fleet.keys_cli(&["create", "app"]).await.trim().to_string();
    assert!(key.starts_with("sy-"), "{key}");
    for i in 0..3 {
        until_status(&fleet, i, &key, 200, Duration::from_secs(2)).await;
    }
    fleet.keys_cli(&["revoke", "app"]).await;
    let revoked = tokio::time::Instant::now();
    for i in 0..3 {
        let left = Duration::from_secs(1).saturating_sub(revoked.elapsed());
        until_status(&fleet, i, &key, 401, left).await;
    }
    println!(
        "revocation refused on 3/3 replicas {} ms after the command returned",
        revoked.elapsed().as_millis()
    );
    let list = fleet.keys_cli(&["list"]).await;
    assert!(
        list.lines()
            .any(|l| l.starts_with("app ") && l.contains("revoked")),
        "{list}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_request_limit_holds_across_the_fleet() {
    // 600 rpm counted over 3 s windows: 30 requests per window, fleet-wide.
    let fleet = Fleet::start_keys(3, "rate_window = \"3s\"\n").await;
    let key = fleet
        .keys_cli(&["create", "busy", "--rpm", "600"])
        .await
        .trim()
        .to_string();
    for i in 0..3 {
        until_status(&fleet, i, &key, 200, Duration::from_secs(2)).await;
    }
    // One whole window, from just after it starts to just before it ends.
    let window = 3000;
    let start = (unix_ms() / window + 1) * window + 100;
    let end = start + window - 300;
    tokio::time::sleep(Duration::from_millis(start - unix_ms())).await;
    let (ok, limited) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let addrs: Vec<_> = fleet.gws.iter().flatten().map(|g| g.addr).collect();
    let workers: Vec<_> = (0..9)
        .map(|w| {
            let (ok, limited, addrs, key) =
                (ok.clone(), limited.clone(), addrs.clone(), key.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut n = w;
                while unix_ms() < end {
                    let status = http
                        .post(format!("http://{}/v1/chat/completions", addrs[n % 3]))
                        .bearer_auth(&key)
                        .json(&user("frontier", "hammer"))
                        .send()
                        .await
                        .map_or(0, |r| r.status().as_u16());
                    n += 1;
                    match status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        other => panic!("unexpected status {other}"),
                    };
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
    let (ok, limited) = (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed));
    println!("limit 30 per window through 3 replicas: {ok} admitted, {limited} refused");
    assert!(ok as f64 <= 30.0 * 1.05, "{ok} admitted, limit 30");
    assert!(ok >= 15, "only {ok} admitted: slices were not leased");
    assert!(limited > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleets_audit_trail_is_in_order_and_status_flags_an_odd_routes_file() {
    let fleet = Fleet::start(3, Some(2)).await;
    assert_all_acked(&fleet.suspend(0, "claude").await, 3);
    assert_all_acked(&fleet.resume(1, "claude").await, 3);
    // Replica r2 shows both, each naming the replica that took it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let events = loop {
        let v = fleet.admin(2, reqwest::Method::GET, "/admin/events").await;
        assert_eq!(v["source"], "fleet", "{v}");
        let events = v["events"].as_array().unwrap().clone();
        let at = |kind: &str, replica: &str| {
            events
                .iter()
                .position(|e| e["kind"] == kind && e["replica"] == replica && e["actor"] == "test")
        };
        if let (Some(s), Some(r)) = (at("suspend", "r0"), at("resume", "r1")) {
            assert!(s < r, "suspend before resume: {events:?}");
            break events;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "r2 never showed the fleet's events: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        events.iter().all(|e| e["replica"].is_string()),
        "{events:?}"
    );
    let times: Vec<u64> = events
        .iter()
        .map(|e| e["time_ms"].as_u64().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");
    for r in ["r0", "r1", "r2"] {
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "suspend" && e["replica"] == r),
            "every replica audits the suspension: {r}"
        );
    }

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["status", "--fleet", "--admin"])
        .arg(format!("http://{}", fleet.gw(0).admin_addr))
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for i in 0..3 {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("r{i} ")))
            .unwrap_or_else(|| panic!("no line for r{i}: {stdout}"));
        assert!(line.contains(&fleet.gw(i).addr.to_string()), "{line}");
        assert!(line.contains(env!("CARGO_PKG_VERSION")), "{line}");
        assert_eq!(line.contains("DIFFERS"), i == 2, "{line}");
    }
    assert!(
        stdout.contains("warning: replica r2 runs a routes file"),
        "{stdout}"
    );
}

/// A port `p` such that `p..p+n` are all free on loopback now.
fn free_run(n: u16) -> u16 {
    for _ in 0..100 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = first.local_addr().unwrap().port();
        if p > 65_000 {
            continue;
        }
        let rest: Vec<_> = (1..n)
            .map(|i| std::net::TcpListener::bind(("127.0.0.1", p + i)))
            .collect();
        if rest.iter().all(Result::is_ok) {
            return p;
        }
    }
    panic!("no run of {n} free ports");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_demo_runs_three_replicas_that_share_a_suspension() {
    use tokio::io::AsyncBufReadExt;
    let bin = env!("CARGO_BIN_EXE_switchyard");
    let (data, admin) = (free_run(3), free_run(3));
    let mut demo = tokio::process::Command::new(bin)
        .args(["demo", "--replicas", "3"])
        .arg("--listen")
        .arg(format!("127.0.0.1:{data}"))
        .arg("--admin-listen")
        .arg(format!("127.0.0.1:{admin}"))
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut urls = Vec::new();
    let printed = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.trim_start().starts_with("replica demo-") {
                urls.push(line);
            } else if line.starts_with("Ctrl-C") {
                return;
            }
        }
    })
    .await;
    assert!(printed.is_ok(), "the demo never printed its URLs: {urls:?}");
    assert_eq!(urls.len(), 3, "{urls:?}");
    for (i, line) in urls.iter().enumerate() {
        assert!(
            line.contains(&format!("http://127.0.0.1:{}", data + i as u16)),
            "{line}"
        );
    }
    let admin_url = format!("http://127.0.0.1:{admin}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v: Value = http
            .get(format!("{admin_url}/admin/fleet"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["replicas"].as_array().map(Vec::len) == Some(3) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = tokio::process::Command::new(bin)
        .args(["suspend", "claude", "--admin", &admin_url])
        .env("SWITCHYARD_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("applied on 3/3 replicas in "), "{stdout}");
    println!("{}", stdout.trim());

    let pid = demo.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(40), demo.wait())
        .await
        .expect("the demo stops on Ctrl-C")
        .unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn the_fleet_demo_says_what_is_missing_without_redis_server() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["demo", "--replicas", "3"])
        .env("PATH", "/nonexistent")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("needs redis-server on PATH"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_requests_are_not_refused_while_redis_is_frozen() {
    // 6000 rpm over 3 s windows: 300 per window, 100 per replica alone.
    let fleet = Fleet::start_keys(3, "rate_window = \"3s\"\n").await;
    let key = fleet
        .keys_cli(&["create", "steady", "--rpm", "6000"])
        .await
        .trim()
        .to_string();
    for i in 0..3 {
        until_status(&fleet, i, &key, 200, Duration::from_secs(2)).await;
    }
    fleet.redis.freeze();
    // About 10 requests a second for two and a half windows: far under
    // each replica's local share, so every one is served.
    let mut statuses = Vec::new();
    for n in 0..80 {
        statuses.push(fleet.chat_as(n % 3, &key).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fleet.redis.thaw();
    let refused = statuses.iter().filter(|s| **s != 200).count();
    assert_eq!(refused, 0, "{statuses:?}");
}

/// Chaos on in every replica's routes file.
const CHAOS: &str = "\n[chaos]\nenabled = true\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_fault_set_on_one_replica_is_in_force_on_all_and_cleared_from_another() {
    let fleet = Fleet::start_with(3, None, CHAOS).await;
    for i in 0..3 {
        assert_eq!(fleet.chat(i, "before").await, 200);
    }
    assert_eq!(fleet.sim.count(Vendor::Anthropic, CLAUDE), 3);

    let v: Value = fleet
        .http
        .post(format!(
            "http://{}/admin/targets/claude/chaos",
            fleet.gw(0).admin_addr
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-switchyard-actor", "test")
        .json(&json!({"fault": {"kind": "status", "status": 503}, "for": "60s"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_all_acked(&v, 3);
    let until = v["until"].as_u64().expect("until");

    // In force on the other replicas, with the same expiry: their requests
    // to claude fail at the gateway (no upstream call) and fail over.
    for i in 1..3 {
        let f = fleet.gw(i).live.load().faults.get("claude");
        assert_eq!(f.map(|f| f.until), Some(until), "replica {i}");
    }
    for n in 0..6 {
        assert_eq!(fleet.chat(1 + n % 2, "during").await, 200);
    }
    assert_eq!(
        fleet.sim.count(Vendor::Anthropic, CLAUDE),
        3,
        "no replica reached claude while the fault was in force"
    );
    let events = fleet.admin(2, reqwest::Method::GET, "/admin/events").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "chaos_set" && e["actor"] == "test@r0"),
        "{events}"
    );

    // Cleared fleet-wide by a DELETE on another replica.
    let path = "/admin/targets/claude/chaos";
    let v = fleet.admin(1, reqwest::Method::DELETE, path).await;
    assert_eq!(v["cleared"], true, "{v}");
    assert_all_acked(&v, 3);
    for i in 0..3 {
        assert!(fleet.gw(i).live.load().faults.get("claude").is_none());
        assert_eq!(fleet.chat(i, "after").await, 200);
    }
    assert_eq!(fleet.sim.count(Vendor::Anthropic, CLAUDE), 6);
}

/// A quarantine of `app-key`'s anonymous name, as the detector makes it.
fn app_key_quarantine() -> switchyard::abuse::live::Quarantine {
    let key = switchyard::abuse::live::anonymous_name("app-key");
    switchyard::abuse::live::Quarantine {
        key: key.clone(),
        action: switchyard::abuse::live::Action::Suspend,
        rpm: None,
        since: unix_ms() / 1000,
        flagged_key: key,
        kind: "campaign".into(),
        score: 0.9,
        cluster: None,
        reasons: vec!["test".into()],
    }
}

/// Waits until every replica lists exactly `keys` as quarantined.
async fn until_quarantined(fleet: &Fleet, keys: &[String]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for i in 0..fleet.gws.len() {
        while quarantined(fleet, i).await != keys {
            assert!(
                tokio::time::Instant::now() < deadline,
                "replica {i} never had the quarantines {keys:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_gets_the_faults_and_quarantines_back_from_the_replicas() {
    let mut fleet = Fleet::start_with(3, None, CHAOS).await;
    let v: Value = fleet
        .http
        .post(format!(
            "http://{}/admin/targets/claude/chaos",
            fleet.gw(0).admin_addr
        ))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"fault": {"kind": "reset"}, "for": "60s"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_all_acked(&v, 3);
    let q = app_key_quarantine();
    let live = &fleet.gw(1).live;
    assert_eq!(live.abuse.quarantine(std::slice::from_ref(&q)), None);
    live.publish_quarantines(std::slice::from_ref(&q));
    until_quarantined(&fleet, std::slice::from_ref(&q.key)).await;

    fleet.redis.restart_empty().await;
    let mut con = fleet.redis.client().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fault: Option<String> = redis::cmd("HGET")
            .arg("switchyard:faults")
            .arg("claude")
            .query_async(&mut con)
            .await
            .unwrap();
        let quarantine: Option<String> = redis::cmd("HGET")
            .arg("switchyard:quarantines")
            .arg(&q.key)
            .query_async(&mut con)
            .await
            .unwrap();
        if fault.is_some() && quarantine.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never re-seeded: fault {fault:?}, quarantine {quarantine:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fleet.wait_for_replicas(0, 3).await;
    for i in 0..3 {
        fleet.wait_for_link_up(i).await;
        assert!(fleet.gw(i).live.load().faults.get("claude").is_some());
    }
    until_quarantined(&fleet, std::slice::from_ref(&q.key)).await;

    // And both are lifted fleet-wide through the new Redis.
    let path = "/admin/targets/claude/chaos";
    assert_all_acked(&fleet.admin(2, reqwest::Method::DELETE, path).await, 3);
    let path = format!("/admin/keys/{}/unquarantine", q.key);
    assert_all_acked(&fleet.admin(0, reqwest::Method::POST, &path).await, 3);
    for i in 0..3 {
        assert!(fleet.gw(i).live.load().faults.get("claude").is_none());
    }
    until_quarantined(&fleet, &[]).await;
}

/// The quarantines replica `i` lists.
async fn quarantined(fleet: &Fleet, i: usize) -> Vec<String> {
    let v = fleet.admin(i, reqwest::Method::GET, "/admin/abuse").await;
    v["quarantines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["key"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detector_quarantine_reaches_every_replica_and_one_unquarantine_lifts_it_on_all() {
    let fleet = Fleet::start(3, None).await;
    for i in 0..3 {
        assert_eq!(fleet.chat(i, "before").await, 200);
    }
    // The detector's path on replica 0: the quarantine is put in force
    // there, then handed to the fleet's publisher task.
    let q = app_key_quarantine();
    let key = q.key.clone();
    let live = &fleet.gw(0).live;
    assert_eq!(live.abuse.quarantine(std::slice::from_ref(&q)), None);
    live.publish_quarantines(&[q]);
    until_quarantined(&fleet, std::slice::from_ref(&key)).await;
    for i in 0..3 {
        assert_ne!(fleet.chat(i, "quarantined").await, 200, "replica {i}");
    }

    let path = format!("/admin/keys/{key}/unquarantine");
    let v = fleet.admin(2, reqwest::Method::POST, &path).await;
    assert_eq!(v["unquarantined"], true, "{v}");
    assert_all_acked(&v, 3);
    for i in 0..3 {
        assert_eq!(
            quarantined(&fleet, i).await,
            Vec::<String>::new(),
            "replica {i}"
        );
        assert_eq!(fleet.chat(i, "lifted").await, 200, "replica {i}");
    }
    let events = fleet.admin(0, reqwest::Method::GET, "/admin/events").await;
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "abuse_unquarantine" && e["actor"] == "test@r2"),
        "{events}"
    );
}
