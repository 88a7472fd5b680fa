//! The harness of the live abuse tests: a real gateway in `keys` mode
//! against the simulator, the labelled generator's traffic picked per key,
//! and its replay over real HTTP with the detector's clock pinned to each
//! generated request's time.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use switchyard::abuse::live::{Action, Mode};
use switchyard::abuse::synth::{Event, Traffic};
use switchyard::app::{self, Gateway, Options};
use switchyard::config::{AbuseConfig, AuthMode};
use switchyard::sim::Simulator;

use crate::common;

pub const SECRET: &str = "abuse-live-secret";
pub const TOKEN: &str = common::ADMIN_TOKEN;
pub const SEED: u64 = 7_101;
pub const HOURS: f64 = 3.0;
/// Requests replayed per genuine key.
pub const GENUINE_REQUESTS: usize = 25;
pub const GENUINE_FAMILIES: [&str; 3] = ["chat_assistant", "coding_agent", "rag_support_bot"];

pub struct Live {
    pub gw: Gateway,
    _sim: Simulator,
    pub http: reqwest::Client,
    /// Secret of each key, by name.
    pub secrets: HashMap<String, String>,
}

impl Live {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.gw.admin_addr)
    }

    pub async fn admin(&self, path: &str) -> Value {
        self.http
            .get(self.admin_url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(self.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends one generated request with its key, in its dialect, to the
    /// endpoint its body belongs to; the status and the body.
    pub async fn send(&self, e: &Event) -> (u16, Value) {
        let key = &self.secrets[&e.key];
        let mut body = e.body.clone();
        let req = match e.dialect {
            "anthropic" => {
                body["model"] = json!("gpt");
                self.http
                    .post(self.url("/v1/messages"))
                    .header("x-api-key", key)
            }
            "gemini" => self
                .http
                .post(self.url("/v1beta/models/gpt:generateContent"))
                .header("x-goog-api-key", key),
            _ if body.get("input").is_some() => {
                body["model"] = json!("gpt");
                self.http.post(self.url("/v1/responses")).bearer_auth(key)
            }
            _ => {
                body["model"] = json!("gpt");
                self.http
                    .post(self.url("/v1/chat/completions"))
                    .bearer_auth(key)
            }
        };
        let resp = req
            .header("user-agent", &e.user_agent)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// A gateway whose keys file holds `names`, with `abuse` as `[abuse]`.
pub async fn start(dir: &Path, names: &[&str], abuse: AbuseConfig) -> Live {
    let sim = Simulator::new();
    let sim_addr = sim.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut config = switchyard::demo::config(sim_addr).unwrap();
    config.auth.mode = AuthMode::Keys;
    config.auth.keys_file = dir.join("keys.json");
    config.abuse = abuse;
    let (records, secrets): (Vec<_>, HashMap<_, _>) = names
        .iter()
        .map(|name| {
            let (rec, secret) = switchyard::keys::create(
                SECRET.as_bytes(),
                name,
                vec!["*".into()],
                None,
                None,
                None,
            );
            (rec, ((*name).to_string(), secret))
        })
        .unzip();
    switchyard::keys::save_file(&config.auth.keys_file, records).unwrap();
    let demo_env = switchyard::demo::env();
    let env: switchyard::provider::EnvLookup = Arc::new(move |name| {
        if name == "SWITCHYARD_KEY_SECRET" {
            Some(SECRET.into())
        } else {
            demo_env(name)
        }
    });
    let opts = Options {
        path: None,
        env,
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: TOKEN.into(),
    };
    let gw = app::start(config, opts).await.unwrap();
    Live {
        gw,
        _sim: sim,
        http: reqwest::Client::new(),
        secrets,
    }
}

/// The campaign key to replay (a reasoning-extraction key: the offline
/// scan flags it on its own, not as part of a farm) and a few genuine keys
/// of families that talk like people and agents do.
pub struct Cast {
    pub campaign: String,
    pub genuine: Vec<String>,
    /// The requests to replay, in time order.
    pub events: Vec<Event>,
}

pub fn cast(traffic: &Traffic, campaign_requests: usize) -> Cast {
    let campaign = traffic
        .labels
        .iter()
        .find(|l| l.family == "reasoning_extraction")
        .expect("the generator makes reasoning-extraction keys")
        .key
        .clone();
    let mut genuine = Vec::new();
    for family in GENUINE_FAMILIES {
        let label = traffic
            .labels
            .iter()
            .filter(|l| l.family == family)
            .find(|l| traffic.events.iter().filter(|e| e.key == l.key).count() >= GENUINE_REQUESTS)
            .unwrap_or_else(|| panic!("a busy {family} key"));
        genuine.push(label.key.clone());
    }
    let mut taken: HashMap<&str, usize> = HashMap::new();
    let events = traffic
        .events
        .iter()
        .filter(|e| {
            let cap = if e.key == campaign {
                campaign_requests
            } else if genuine.contains(&e.key) {
                GENUINE_REQUESTS
            } else {
                return false;
            };
            let n = taken.entry(e.key.as_str()).or_default();
            *n += 1;
            *n <= cap
        })
        .cloned()
        .collect();
    Cast {
        campaign,
        genuine,
        events,
    }
}

pub fn abuse_config(mode: Mode, action: Action) -> AbuseConfig {
    AbuseConfig {
        mode,
        action,
        ..AbuseConfig::default()
    }
}

/// Replays `events` with the detector's clock pinned to each one's time;
/// every status, by key.
pub async fn replay(live: &Live, events: &[Event]) -> HashMap<String, Vec<u16>> {
    let mut statuses: HashMap<String, Vec<u16>> = HashMap::new();
    for e in events {
        live.gw.live.abuse.pin_clock(Some(e.ts));
        let (status, body) = live.send(e).await;
        assert!(
            status != 500 && status != 502,
            "{} got {status}: {body}",
            e.key
        );
        statuses.entry(e.key.clone()).or_default().push(status);
    }
    statuses
}

/// Polls `GET /admin/abuse` until `key` has a flag; the flag.
pub async fn wait_for_flag(live: &Live, key: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let view = live.admin("/admin/abuse").await;
        if let Some(f) = view["flags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["key"] == key)
        {
            return f.clone();
        }
        assert!(Instant::now() < deadline, "{key} was never flagged: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The genuine keys' statuses: served, never refused for abuse, never
/// flagged.
pub async fn assert_genuine_untouched(
    live: &Live,
    cast: &Cast,
    statuses: &HashMap<String, Vec<u16>>,
) {
    let view = live.admin("/admin/abuse").await;
    for key in &cast.genuine {
        let s = &statuses[key];
        assert!(
            s.iter().all(|c| *c != 403 && *c != 429),
            "genuine key {key} was refused: {s:?}"
        );
        assert!(
            s.contains(&200),
            "genuine key {key} was never served: {s:?}"
        );
        assert!(
            view["flags"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["key"] != key.as_str()),
            "genuine key {key} flagged: {view}"
        );
    }
}

pub fn refused_in_dialect(dialect: &str, status: u16, body: &Value) {
    assert_eq!(status, 403, "{dialect}: {body}");
    let (pointer, message) = match dialect {
        "gemini" => ("/error/status", "/error/message"),
        _ => ("/error/type", "/error/message"),
    };
    let kind = body.pointer(pointer).and_then(Value::as_str).unwrap_or("");
    let expected = match dialect {
        "gemini" => "PERMISSION_DENIED",
        "anthropic" => "permission_error",
        _ => kind,
    };
    assert!(!kind.is_empty() && kind == expected, "{dialect}: {body}");
    assert!(
        body.pointer(message)
            .and_then(Value::as_str)
            .unwrap_or("")
            .contains("suspended"),
        "{dialect}: {body}"
    );
}

/// A request in `dialect` from the campaign key, built from one of its own
/// generated bodies when it has one in that dialect.
pub fn in_dialect(cast: &Cast, dialect: &'static str) -> Event {
    let mut e = cast
        .events
        .iter()
        .find(|e| e.key == cast.campaign)
        .unwrap()
        .clone();
    if e.dialect != dialect {
        e.dialect = dialect;
        e.body = match dialect {
            "anthropic" => {
                json!({"model": "gpt", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]})
            }
            "gemini" => json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
            _ => json!({"model": "gpt", "messages": [{"role": "user", "content": "hi"}]}),
        };
    }
    e
}

/// Waits until `path` holds at least `n` lines; its text.
pub async fn wait_for_lines(path: &Path, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= n {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {} lines, not {n}",
            path.display(),
            text.lines().count()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text values of a body (not the structural ones), 6 characters or more.
pub fn texts(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() >= 6 => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| !["role", "type", "model"].contains(&k.as_str()))
            .for_each(|(_, x)| texts(x, out)),
        _ => {}
    }
}
