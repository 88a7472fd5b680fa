//! The load driver: sends the drill's mix of app requests through the
//! gateway (open loop at a rate, or closed loop with workers) and records
//! every request's outcome, latency and serving target.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::time::Instant;

use super::format::{Dialect, Load, Shape};
use super::wire::{self, Kind, StreamCheck};

/// How a request ended, as the app saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Error,
    /// A stream that ended cleanly without a finish: looks whole, is not.
    Truncated,
}

/// One request of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// When it was sent, in ms since the load started.
    pub start_ms: u64,
    pub latency_ms: f64,
    /// Streams: time to the first content.
    pub ttft_ms: Option<f64>,
    pub dialect: Dialect,
    pub stream: bool,
    pub tools: bool,
    pub outcome: Outcome,
    /// `ok`, `status_503`, `timeout`, `connect`, `stream_cut`,
    /// `stream_error_event`, `truncated`, `no_tool_call`...
    pub label: String,
    pub status: Option<u16>,
    /// `x-switchyard-target` of the answer.
    pub target: Option<String>,
}

/// Records shared between the driver, the progress line and the report.
pub type Sink = Arc<Mutex<Vec<Record>>>;

pub fn lock(sink: &Sink) -> std::sync::MutexGuard<'_, Vec<Record>> {
    sink.lock().unwrap_or_else(|e| e.into_inner())
}

/// The seeded request mix.
struct Mix {
    rng: StdRng,
    dialects: Vec<(Dialect, f64)>,
    stream: f64,
    tools: f64,
}

impl Mix {
    fn new(load: &Load, salt: u64) -> Self {
        Mix {
            rng: StdRng::seed_from_u64(load.seed.wrapping_mul(1_000_003).wrapping_add(salt)),
            dialects: load.dialects.clone(),
            stream: load.stream,
            tools: load.tools,
        }
    }

    fn next(&mut self) -> Kind {
        let total: f64 = self.dialects.iter().map(|(_, w)| w).sum();
        let mut pick = self.rng.random::<f64>() * total;
        let mut dialect = Dialect::Openai;
        for (d, w) in &self.dialects {
            dialect = *d;
            if pick < *w {
                break;
            }
            pick -= w;
        }
        Kind {
            dialect,
            stream: self.rng.random::<f64>() < self.stream,
            tools: self.rng.random::<f64>() < self.tools,
        }
    }
}

/// Everything one request needs.
#[derive(Clone)]
pub struct Driver {
    pub client: reqwest::Client,
    pub base: String,
    pub route: String,
    pub key: String,
    pub timeout: Duration,
    pub t0: Instant,
    pub sink: Sink,
}

/// The client for app traffic: a pool big enough for the load.
pub fn client(no_proxy: bool) -> Result<reqwest::Client, reqwest::Error> {
    let mut b = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(5));
    if no_proxy {
        b = b.no_proxy();
    }
    b.build()
}

/// Runs the load for its duration, then waits for requests in flight.
pub async fn run(load: &Load, d: Driver) {
    match load.shape {
        Shape::Rate(rate) => open_loop(load, rate, d).await,
        Shape::Concurrency(n) => closed_loop(load, n, d).await,
    }
}

async fn open_loop(load: &Load, rate: f64, d: Driver) {
    let mut mix = Mix::new(load, 0);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let total = (load.duration.as_secs_f64() * rate).floor() as u64;
    for n in 0..total {
        tokio::time::sleep_until(d.t0 + Duration::from_secs_f64(n as f64 / rate)).await;
        let kind = mix.next();
        if in_flight.load(Ordering::Relaxed) >= load.max_in_flight {
            let mut r = record(d.t0.elapsed(), kind, Outcome::Error, "in_flight_cap");
            r.latency_ms = 0.0;
            lock(&d.sink).push(r);
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (d, in_flight) = (d.clone(), in_flight.clone());
        tokio::spawn(async move {
            let r = one(&d, kind, n).await;
            lock(&d.sink).push(r);
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
    }
    // Requests still in flight end within their timeout.
    let deadline = Instant::now() + d.timeout + Duration::from_secs(2);
    while in_flight.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn closed_loop(load: &Load, workers: u32, d: Driver) {
    let end = d.t0 + load.duration;
    let mut handles = Vec::new();
    for w in 0..workers {
        let d = d.clone();
        let mut mix = Mix::new(load, u64::from(w) + 1);
        handles.push(tokio::spawn(async move {
            let mut n = u64::from(w) << 32;
            while Instant::now() < end {
                let r = one(&d, mix.next(), n).await;
                lock(&d.sink).push(r);
                n += 1;
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}

fn record(start: Duration, kind: Kind, outcome: Outcome, label: &str) -> Record {
    Record {
        start_ms: start.as_millis() as u64,
        latency_ms: 0.0,
        ttft_ms: None,
        dialect: kind.dialect,
        stream: kind.stream,
        tools: kind.tools,
        outcome,
        label: label.to_string(),
        status: None,
        target: None,
    }
}

/// Sends one request and judges its answer.
async fn one(d: &Driver, kind: Kind, n: u64) -> Record {
    let started = Instant::now();
    let mut r = record(
        started.saturating_duration_since(d.t0),
        kind,
        Outcome::Error,
        "timeout",
    );
    let (path, headers, body) = wire::request(kind, &d.route, &d.key, n);
    let mut req = d
        .client
        .post(format!("{}{path}", d.base.trim_end_matches('/')))
        .json(&body);
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let judged = tokio::time::timeout(d.timeout, async {
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => return (Outcome::Error, "connect".to_string(), None),
            Err(_) => return (Outcome::Error, "transport".to_string(), None),
        };
        let status = resp.status().as_u16();
        r.status = Some(status);
        r.target = resp
            .headers()
            .get("x-switchyard-target")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if !resp.status().is_success() {
            let _ = resp.bytes().await;
            return (Outcome::Error, format!("status_{status}"), None);
        }
        if !kind.stream {
            return match resp.bytes().await {
                Ok(b) => match wire::check_complete(kind, &b) {
                    Ok(()) => (Outcome::Ok, "ok".to_string(), None),
                    Err(label) => (Outcome::Error, label.to_string(), None),
                },
                Err(_) => (Outcome::Error, "body_cut".to_string(), None),
            };
        }
        let mut check = StreamCheck::new(kind.dialect);
        let mut ttft = None;
        let mut chunks = resp.bytes_stream();
        let mut broke = false;
        while let Some(chunk) = chunks.next().await {
            match chunk {
                Ok(c) => {
                    if check.feed(&c) {
                        ttft = Some(started.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                Err(_) => {
                    broke = true;
                    break;
                }
            }
        }
        let verdict = if check.error {
            (Outcome::Error, "stream_error_event")
        } else if broke {
            (Outcome::Error, "stream_cut")
        } else if !check.finished {
            (Outcome::Truncated, "truncated")
        } else if kind.tools && !check.content {
            (Outcome::Error, "no_content")
        } else {
            (Outcome::Ok, "ok")
        };
        (verdict.0, verdict.1.to_string(), ttft)
    })
    .await;
    r.latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok((outcome, label, ttft)) = judged {
        r.outcome = outcome;
        r.label = label;
        r.ttft_ms = ttft;
    }
    r
}
