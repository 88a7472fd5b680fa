//! Load benchmark: the same requests straight to the simulator and through
//! the gateway, so the difference is what the gateway adds.
//!
//! Run with:
//!     cargo run --release --example loadbench
//!     cargo run --release --example loadbench -- --concurrency 64 --seconds 10
//!     cargo run --example loadbench -- --quick        (a smoke run, as CI does)
//!     cargo run --release --example loadbench -- --otlp   (tracing off vs on)
//!     cargo run --release --example loadbench -- --abuse-off (without the live abuse detector)
//!
//! With `--otlp`, a second gateway exports traces and metrics over
//! OTLP/HTTP to a sink on loopback, and the two gateways are loaded in
//! turns: the throughput cost of tracing is the ratio of the two, and each
//! gateway's CPU time per request is read from /proc. A last short round
//! has the sink decode the exports and count the spans.
//!
//! The simulator and the gateway each run in a child process (this program
//! re-executed with `--role`), so the gateway's RSS is its own.
//!
//! Expected output (figures vary by machine):
//!     non-stream, 64 concurrent, 10 s each
//!       direct   rps 9000  p50 6.1ms  p99 12.0ms
//!       gateway  rps 5200  p50 11.0ms p99 20.0ms
//!       added    p50 ...   p99 ...    throughput ratio 0.58
//!     stream time to first token ...
//!     stream time to first token with a commit window ...
//!     gateway RSS idle: 9.8 MiB
//!   and with --otlp:
//!     tracing off vs on, non-stream, 64 concurrent, 3 rounds of 10 s each
//!       off      rps 5200 ...
//!       on       rps 5000 ...
//!       tracing throughput cost 4.0%; gateway CPU per request: off 90 µs, on 99 µs ...
//!       check: 9000 traced requests, 18000 of their 18000 spans decoded at the sink

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Args {
    concurrency: usize,
    seconds: f64,
    role: Option<String>,
    sim: Option<SocketAddr>,
    /// Compare tracing off and on (`--otlp`); for the gateway role, the
    /// collector to export to.
    otlp: Option<String>,
    /// Alternating off / on rounds with `--otlp`.
    rounds: usize,
    /// `--abuse-off`: the gateway runs without the live abuse detector (the
    /// demo table has it in `observe`), to measure what it costs.
    abuse_off: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        concurrency: 64,
        seconds: 10.0,
        role: None,
        sim: None,
        otlp: None,
        rounds: 3,
        abuse_off: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--concurrency" => {
                args.concurrency = it.next().and_then(|v| v.parse().ok()).unwrap_or(64)
            }
            "--seconds" => args.seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(10.0),
            "--quick" => {
                args.concurrency = 4;
                args.seconds = 0.5;
            }
            "--role" => args.role = it.next(),
            "--sim" => args.sim = it.next().and_then(|v| v.parse().ok()),
            "--otlp" => args.otlp = Some(String::new()),
            "--abuse-off" => args.abuse_off = true,
            "--rounds" => args.rounds = it.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--otlp-endpoint" => args.otlp = it.next(),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    args
}

fn main() {
    let args = parse_args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.role.as_deref() {
        Some("sim") => rt.block_on(run_sim()),
        Some("gateway") => rt.block_on(run_gateway(
            args.sim.expect("--sim ADDR"),
            args.otlp,
            args.abuse_off,
        )),
        Some("sink") => rt.block_on(run_sink()),
        _ => rt.block_on(bench(args)),
    }
}

/// Child role: the simulator alone; prints its address.
async fn run_sim() {
    let sim = switchyard::sim::Simulator::new();
    let addr = sim
        .spawn(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .expect("sim");
    println!("{addr}");
    std::future::pending::<()>().await;
}

/// Child role: an OTLP/HTTP collector. It counts export bytes; after
/// `POST /decode` it also decodes each trace export and counts its spans
/// (`GET /counts`: "spans bytes"). Decoding is off while the gateways are
/// timed: a real collector does not share the gateway's cores.
async fn run_sink() {
    use axum::routing::{get, post};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use std::sync::atomic::AtomicU64;
    #[derive(Default)]
    struct Sink {
        decode: AtomicBool,
        spans: AtomicU64,
        bytes: AtomicU64,
    }
    let sink = Arc::new(Sink::default());
    let ok = || [(http::header::CONTENT_TYPE, "application/x-protobuf")];
    let (s1, s2, s3) = (sink.clone(), sink.clone(), sink.clone());
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(move |body: bytes::Bytes| async move {
                s1.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                if s1.decode.load(Ordering::Relaxed) {
                    let req = ExportTraceServiceRequest::decode(body).expect("OTLP trace export");
                    let n: usize = req
                        .resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .map(|s| s.spans.len())
                        .sum();
                    s1.spans.fetch_add(n as u64, Ordering::Relaxed);
                }
                ok()
            }),
        )
        .route("/v1/metrics", post(move || async move { ok() }))
        .route(
            "/decode",
            post(move || async move { s2.decode.store(true, Ordering::Relaxed) }),
        )
        .route(
            "/counts",
            get(move || async move {
                format!(
                    "{} {}",
                    s3.spans.load(Ordering::Relaxed),
                    s3.bytes.load(Ordering::Relaxed)
                )
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::max(64 << 20));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    println!("{}", listener.local_addr().expect("addr"));
    axum::serve(listener, app).await.expect("sink");
}

/// Child role: the gateway on the demo table pointed at `sim`, exporting
/// to `otlp` if given.
/// Content events the `gpt-commit` route holds back before the first byte.
const COMMIT_TOKENS: u32 = 6;

async fn run_gateway(sim: SocketAddr, otlp: Option<String>, abuse_off: bool) {
    let mut config = switchyard::demo::config(sim).expect("demo table");
    if abuse_off {
        config.abuse.mode = switchyard::config::AbuseMode::Off;
    }
    // The `gpt` route with a commit window, to measure what it adds.
    let mut committed = config.routes.get("gpt").expect("demo route gpt").clone();
    committed.commit_tokens = COMMIT_TOKENS;
    config.routes.insert("gpt-commit".into(), committed);
    config.telemetry.otlp_endpoint = otlp;
    let _otel = switchyard::telemetry::otel::start(&config.telemetry)
        .await
        .expect("telemetry");
    let opts = switchyard::app::Options {
        path: None,
        env: switchyard::demo::env(),
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        admin_token: "loadbench-admin-token".into(),
    };
    let gw = switchyard::app::start(config, opts).await.expect("gateway");
    println!("{}", gw.addr);
    std::future::pending::<()>().await;
}

async fn spawn_child(args: &[String]) -> (Child, SocketAddr) {
    let exe = std::env::current_exe().expect("current exe");
    let mut child = Command::new(exe)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let stdout = tokio::process::ChildStdout::from_std(stdout).expect("async stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .await
        .expect("child address");
    (child, line.trim().parse().expect("address"))
}

struct Run {
    hist: Histogram<u64>,
    ok: u64,
    errors: u64,
    elapsed: Duration,
}

/// Runs `concurrency` workers for `seconds`, each sending `body` to `url`
/// and recording latency (whole response, or first content chunk for
/// streams) in microseconds.
async fn load(url: String, body: String, stream: bool, concurrency: usize, seconds: f64) -> Run {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .build()
        .expect("client");
    let stop = Arc::new(AtomicBool::new(false));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3).expect("histogram")));
    let counts = Arc::new(Mutex::new((0u64, 0u64)));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        let (stop, hist, counts) = (stop.clone(), hist.clone(), counts.clone());
        workers.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new(3).expect("histogram");
            let (mut ok, mut err) = (0u64, 0u64);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let resp = client
                    .post(&url)
                    .header("authorization", "Bearer bench")
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let Ok(resp) = resp else {
                    err += 1;
                    continue;
                };
                if !resp.status().is_success() {
                    err += 1;
                    let _ = resp.bytes().await;
                    continue;
                }
                if stream {
                    let mut chunks = resp.bytes_stream();
                    let mut first = None;
                    while let Some(Ok(chunk)) = chunks.next().await {
                        if first.is_none() && has_text(&chunk) {
                            first = Some(t0.elapsed());
                        }
                    }
                    match first {
                        Some(d) => {
                            let _ = local.record(d.as_micros() as u64);
                            ok += 1;
                        }
                        None => err += 1,
                    }
                } else if resp.bytes().await.is_ok() {
                    let _ = local.record(t0.elapsed().as_micros() as u64);
                    ok += 1;
                } else {
                    err += 1;
                }
            }
            hist.lock().expect("hist").add(&local).expect("merge");
            let mut c = counts.lock().expect("counts");
            c.0 += ok;
            c.1 += err;
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.await;
    }
    let elapsed = started.elapsed();
    let hist = hist.lock().expect("hist").clone();
    let (ok, errors) = *counts.lock().expect("counts");
    Run {
        hist,
        ok,
        errors,
        elapsed,
    }
}

/// Whether an SSE chunk carries non-empty text content (`"content":"x`),
/// the moment a user sees the first token; the role-only first chunk
/// (`"content":""`) does not count.
fn has_text(chunk: &[u8]) -> bool {
    const NEEDLE: &[u8] = b"\"content\":\"";
    chunk
        .windows(NEEDLE.len() + 1)
        .any(|w| &w[..NEEDLE.len()] == NEEDLE && w[NEEDLE.len()] != b'"')
}

fn us(v: u64) -> String {
    if v >= 1000 {
        format!("{:.2}ms", v as f64 / 1000.0)
    } else {
        format!("{v}µs")
    }
}

fn report(label: &str, r: &Run) -> (f64, u64, u64) {
    let rps = r.ok as f64 / r.elapsed.as_secs_f64();
    let (p50, p99) = (
        r.hist.value_at_quantile(0.5),
        r.hist.value_at_quantile(0.99),
    );
    println!(
        "  {label:<8} rps {rps:>8.0}  p50 {:>9}  p99 {:>9}  ok {} errors {}",
        us(p50),
        us(p99),
        r.ok,
        r.errors
    );
    (rps, p50, p99)
}

/// CPU time (user + system) the process has used so far, all threads.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may hold spaces: utime, stime are
    // the 14th and 15th fields of the line, in clock ticks (100 Hz).
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

async fn bench(args: Args) {
    if args.otlp.is_some() {
        return tracing_cost(args).await;
    }
    let (mut sim, sim_addr) = spawn_child(&["--role".into(), "sim".into()]).await;
    let mut gateway = vec![
        "--role".into(),
        "gateway".into(),
        "--sim".into(),
        sim_addr.to_string(),
    ];
    if args.abuse_off {
        gateway.push("--abuse-off".into());
    }
    let (mut gw, gw_addr) = spawn_child(&gateway).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_kib(gw.id());

    let direct_url = format!("http://{sim_addr}/openai/v1/chat/completions");
    let gw_url = format!("http://{gw_addr}/v1/chat/completions");
    let body = |model: &str, stream: bool| {
        format!(
            r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"benchmark me"}}]}}"#
        )
    };
    let (c, s) = (args.concurrency, args.seconds);

    println!("non-stream, {c} concurrent, {s} s each (OpenAI dialect in, OpenAI backend)");
    let _ = load(
        direct_url.clone(),
        body("gpt-5", false),
        false,
        c,
        s.min(1.0),
    )
    .await; // warm-up
    let direct = load(direct_url.clone(), body("gpt-5", false), false, c, s).await;
    let _ = load(gw_url.clone(), body("gpt", false), false, c, s.min(1.0)).await;
    let through = load(gw_url.clone(), body("gpt", false), false, c, s).await;
    let (d_rps, d50, d99) = report("direct", &direct);
    let (g_rps, g50, g99) = report("gateway", &through);
    println!(
        "  added    p50 {}  p99 {}  throughput ratio {:.2}",
        us(g50.saturating_sub(d50)),
        us(g99.saturating_sub(d99)),
        if d_rps > 0.0 { g_rps / d_rps } else { 0.0 }
    );

    println!("stream time to first token, {c} concurrent, {s} s each");
    let direct = load(direct_url, body("gpt-5", true), true, c, s).await;
    let through = load(gw_url.clone(), body("gpt", true), true, c, s).await;
    let (_, d50, d99) = report("direct", &direct);
    let (_, g50, g99) = report("gateway", &through);
    println!(
        "  added    ttft p50 {}  p99 {}",
        us(g50.saturating_sub(d50)),
        us(g99.saturating_sub(d99))
    );

    println!(
        "stream time to first token with a commit window ({COMMIT_TOKENS} content events held), {c} concurrent, {s} s"
    );
    let committed = load(gw_url, body("gpt-commit", true), true, c, s).await;
    let (_, c50, c99) = report("commit", &committed);
    println!(
        "  added by the window: ttft p50 {}  p99 {}",
        us(c50.saturating_sub(g50)),
        us(c99.saturating_sub(g99))
    );

    match (idle_rss, rss_kib(gw.id())) {
        (Some(idle), Some(after)) => println!(
            "gateway RSS: idle {:.1} MiB, after load {:.1} MiB",
            idle as f64 / 1024.0,
            after as f64 / 1024.0
        ),
        _ => println!("gateway RSS: unavailable (no /proc)"),
    }
    let _ = gw.kill();
    let _ = sim.kill();
    let _ = gw.wait();
    let _ = sim.wait();
    if direct.ok == 0 || through.ok == 0 || committed.ok == 0 {
        eprintln!("benchmark failed: no successful requests");
        std::process::exit(1);
    }
}

/// Tracing off vs on: two gateways on one simulator, one exporting to the
/// sink, loaded in alternating rounds so drift hits both alike.
async fn tracing_cost(args: Args) {
    let (mut sim, sim_addr) = spawn_child(&["--role".into(), "sim".into()]).await;
    let (mut sink, sink_addr) = spawn_child(&["--role".into(), "sink".into()]).await;
    let gateway = |otlp: Option<String>| {
        let mut a = vec![
            "--role".into(),
            "gateway".into(),
            "--sim".into(),
            sim_addr.to_string(),
        ];
        if let Some(o) = otlp {
            a.extend(["--otlp-endpoint".into(), o]);
        }
        a
    };
    let (mut off, off_addr) = spawn_child(&gateway(None)).await;
    let (mut on, on_addr) = spawn_child(&gateway(Some(format!("http://{sink_addr}")))).await;
    let body =
        r#"{"model":"gpt","stream":false,"messages":[{"role":"user","content":"benchmark me"}]}"#;
    let url = |a: SocketAddr| format!("http://{a}/v1/chat/completions");
    let (c, s) = (args.concurrency, args.seconds);
    let rounds = if s < 1.0 { 1 } else { args.rounds };
    println!("tracing off vs on, non-stream, {c} concurrent, {rounds} rounds of {s} s each");
    for a in [off_addr, on_addr] {
        let _ = load(url(a), body.into(), false, c, s.min(1.0)).await; // warm-up
    }
    let (mut off_runs, mut on_runs) = (Vec::new(), Vec::new());
    // Each gateway idles while the other is loaded, so its CPU time from
    // here until its last spans are out is its work for its requests
    // (export thread included).
    let cpu = |child: &Child| cpu_time(child.id()).unwrap_or_default();
    let (off_cpu0, on_cpu0) = (cpu(&off), cpu(&on));
    for round in 1..=rounds {
        let off_run = load(url(off_addr), body.into(), false, c, s).await;
        let on_run = load(url(on_addr), body.into(), false, c, s).await;
        let rps = |r: &Run| r.ok as f64 / r.elapsed.as_secs_f64();
        println!(
            "  round {round}: off {:.0} rps, on {:.0} rps ({:+.1}%)",
            rps(&off_run),
            rps(&on_run),
            (rps(&on_run) / rps(&off_run).max(1.0) - 1.0) * 100.0
        );
        off_runs.push(off_run);
        on_runs.push(on_run);
    }
    let merge = |runs: &[Run]| {
        let mut hist = Histogram::<u64>::new(3).expect("histogram");
        let (mut ok, mut errors, mut elapsed) = (0, 0, Duration::ZERO);
        for r in runs {
            hist.add(&r.hist).expect("merge");
            ok += r.ok;
            errors += r.errors;
            elapsed += r.elapsed;
        }
        Run {
            hist,
            ok,
            errors,
            elapsed,
        }
    };
    let off_run = merge(&off_runs);
    let (off_rps, ..) = report("off", &off_run);
    let on_run = merge(&on_runs);
    let (on_rps, ..) = report("on", &on_run);
    // The batch processor exports at 512 spans or every 5 s: let the last
    // batch go out before reading the CPU counters.
    let client = reqwest::Client::new();
    let counts = |client: reqwest::Client| async move {
        let text = match client
            .get(format!("http://{sink_addr}/counts"))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let mut it = text
            .split_whitespace()
            .map(|v| v.parse::<u64>().unwrap_or(0));
        (it.next().unwrap_or(0), it.next().unwrap_or(0))
    };
    tokio::time::sleep(Duration::from_secs(6)).await;
    let per = |cpu: Duration, n: u64| cpu.as_secs_f64() * 1e6 / n.max(1) as f64;
    let off_us = per(cpu(&off).saturating_sub(off_cpu0), off_run.ok);
    let on_us = per(cpu(&on).saturating_sub(on_cpu0), on_run.ok);
    let (_, bytes) = counts(client.clone()).await;
    println!(
        "  tracing throughput cost {:.1}%; gateway CPU per request: off {off_us:.1} µs, on {on_us:.1} µs (+{:.1}%, export thread included); {:.0} OTLP bytes per request",
        if off_rps > 0.0 { (1.0 - on_rps / off_rps) * 100.0 } else { 0.0 },
        if off_us > 0.0 { (on_us / off_us - 1.0) * 100.0 } else { 0.0 },
        bytes as f64 / on_run.ok.max(1) as f64
    );
    // Proof that every span got out: decode a last, short round.
    let _ = client
        .post(format!("http://{sink_addr}/decode"))
        .send()
        .await;
    let check = load(url(on_addr), body.into(), false, c, s.min(1.0)).await;
    let expected = 2 * check.ok;
    let mut received = 0;
    for _ in 0..50 {
        received = counts(client.clone()).await.0;
        if received >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "  check: {} traced requests, {received} of their {expected} spans decoded at the sink",
        check.ok
    );
    for child in [&mut on, &mut off, &mut sink, &mut sim] {
        let _ = child.kill();
        let _ = child.wait();
    }
    // With head sampling (`OTEL_TRACES_SAMPLER`) only a share arrives.
    let sampled = std::env::var_os("OTEL_TRACES_SAMPLER").is_some();
    if on_run.ok == 0 || received == 0 || (!sampled && received < expected) {
        eprintln!("benchmark failed: no successful traced requests, or no spans exported");
        std::process::exit(1);
    }
}
