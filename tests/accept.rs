//! Out of file descriptors, the accept loop backs off instead of spinning,
//! logs the burst once, counts it, and serves again once descriptors come
//! back. The descriptor limit is per process, so the gateway runs as a
//! child process under `ulimit -n`.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// CPU time (user + system) of `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3).
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn ticks_per_second() -> f64 {
    let out = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!("{name}="))? + name.len() + 1;
    line[at..].split_whitespace().next()
}

#[tokio::test]
async fn out_of_descriptors_the_gateway_backs_off_counts_and_recovers() {
    let sim = switchyard::sim::Simulator::new();
    let sim_addr = sim.spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let table = switchyard::demo::DEMO_ROUTES
        .replace("{sim}", &sim_addr.to_string())
        .replace("127.0.0.1:8080", "127.0.0.1:0")
        .replace("127.0.0.1:9901", "127.0.0.1:0")
        // Accepted connections stay open through the measurement.
        .replace("[gateway]\n", "[gateway]\nheader_read_timeout = \"60s\"\n");
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, table).unwrap();
    let mut child = tokio::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" serve --config \"$1\"")
        .arg(env!("CARGO_BIN_EXE_switchyard"))
        .arg(&path)
        .env("SWITCHYARD_ADMIN_TOKEN", "t")
        .env("SIM_ANTHROPIC_KEY", "sim-key")
        .env("SIM_OPENAI_KEY", "sim-key")
        .env("SIM_GEMINI_KEY", "sim-key")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let started = Instant::now();
    let (addr, admin) = loop {
        let found = log.lock().unwrap().iter().find_map(|l| {
            l.contains("gateway listening")
                .then(|| {
                    Some((
                        field(l, "addr")?.to_string(),
                        field(l, "admin_addr")?.to_string(),
                    ))
                })
                .flatten()
        });
        if let Some(a) = found {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the gateway did not start: {:?}",
            log.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Far more connections than 64 descriptors: each sends a byte so the
    // gateway keeps it; the rest wait in the backlog while accept fails.
    let mut held = Vec::new();
    for _ in 0..150 {
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"G").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (t0, c0) = (Instant::now(), cpu_ticks(pid));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let busy = (cpu_ticks(pid) - c0) as f64 / ticks_per_second() / t0.elapsed().as_secs_f64();
    assert!(
        busy < 0.3,
        "the gateway used {:.0}% of a core while out of descriptors",
        busy * 100.0
    );

    // Descriptors come back: it serves again, and says what happened.
    drop(held);
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = http
            .post(format!("http://{addr}/v1/chat/completions"))
            .bearer_auth("k")
            .json(&serde_json::json!({"model": "gpt", "messages": [{"role": "user", "content": "back?"}]}))
            .timeout(Duration::from_secs(2))
            .send()
            .await;
        if resp.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the gateway did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let metrics = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted: f64 = metrics
        .lines()
        .find(|l| l.starts_with("switchyard_accept_errors_total{") && l.contains("out_of_fds"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no accept error counted:\n{metrics}"));
    assert!(counted >= 1.0);
    let warned = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        (1..=4).contains(&warned),
        "logged once per burst, not per error ({warned} lines for {counted} errors)"
    );
    child.start_kill().unwrap();
    let _ = child.wait().await;
}
