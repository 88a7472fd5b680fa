//! Limits and slow clients: header timeout (slowloris), header limits, load
//! shedding, per-route body limits, slow bodies, idle HTTP/2 connections,
//! the per-address connection cap — normal traffic unharmed throughout.

mod common;
mod keyed;

use std::time::Duration;

use common::{start, user};
use keyed::Spec;
use serde_json::Value;
use switchyard::sim::{Knobs, Vendor};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn slow_header_senders_are_cut_off_while_normal_traffic_flows() {
    let env = start(|c| c.gateway.header_read_timeout = Duration::from_millis(500)).await;
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(env.gw.addr).await.unwrap();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        slow.push(s);
    }
    // Trickle one header byte now and then, never finishing the head.
    let trickle = tokio::spawn(async move {
        let mut closed = 0;
        for round in 0..30 {
            for s in slow.iter_mut() {
                let _ = s.write_all(if round % 2 == 0 { b"X" } else { b"-" }).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for mut s in slow {
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
                // hyper may answer 408 before closing.
                Ok(Ok(n)) if String::from_utf8_lossy(&buf[..n]).contains("408") => closed += 1,
                _ => {}
            }
        }
        closed
    });
    let mut errors = 0;
    for i in 0..40 {
        let resp = env.openai(user("gpt", &format!("normal {i}"))).await;
        if resp.status() != 200 {
            errors += 1;
        }
    }
    assert_eq!(errors, 0, "normal traffic is unharmed");
    assert_eq!(
        trickle.await.unwrap(),
        40,
        "every slow connection was closed"
    );
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let env = start(|c| c.gateway.header_read_timeout = Duration::from_millis(300)).await;
    // One that never sends a byte, one that goes quiet after a request.
    let mut silent = TcpStream::connect(env.gw.addr).await.unwrap();
    let mut after = TcpStream::connect(env.gw.addr).await.unwrap();
    let body = serde_json::to_vec(&user("gpt", "then idle")).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    after.write_all(head.as_bytes()).await.unwrap();
    after.write_all(&body).await.unwrap();
    for s in [&mut silent, &mut after] {
        let mut buf = vec![0u8; 8192];
        let closed = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => return true,
                    Ok(_) => continue,
                }
            }
        })
        .await;
        assert_eq!(closed, Ok(true), "an idle connection must be closed");
    }
}

#[tokio::test]
async fn too_many_or_malformed_headers_are_refused_and_the_server_stays_up() {
    let env = start(|_| {}).await;
    let mut head = String::from("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n");
    for i in 0..200 {
        head.push_str(&format!("x-h{i}: v\r\n"));
    }
    head.push_str("\r\n");
    let mut s = TcpStream::connect(env.gw.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 431"), "{answer}");

    let mut s = TcpStream::connect(env.gw.addr).await.unwrap();
    s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Bad: a\rb\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || answer.starts_with("HTTP/1.1 400"), "{answer}");

    assert_eq!(env.openai(user("gpt", "still up")).await.status(), 200);
}

#[tokio::test]
async fn beyond_the_concurrency_cap_requests_are_shed_not_queued() {
    let env = start(|c| c.gateway.max_concurrent_requests = 2).await;
    env.sim.set_knobs(
        Vendor::Openai,
        "gpt-5",
        Knobs {
            latency_ms: 600,
            ..Knobs::default()
        },
    );
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let http = env.http.clone();
            let url = env.url("/v1/chat/completions");
            tokio::spawn(async move {
                let resp = http
                    .post(url)
                    .bearer_auth("k")
                    .json(&user("gpt", &format!("{i}")))
                    .send()
                    .await
                    .unwrap();
                let retry = resp.headers().get("retry-after").is_some();
                (
                    resp.status().as_u16(),
                    retry,
                    resp.json::<Value>().await.unwrap(),
                )
            })
        })
        .collect();
    let mut ok = 0;
    let mut shed = 0;
    for t in tasks {
        let (status, retry, body) = t.await.unwrap();
        match status {
            200 => ok += 1,
            503 => {
                assert!(retry, "{body}");
                assert!(
                    body["error"]["message"]
                        .as_str()
                        .unwrap()
                        .contains("concurrent"),
                    "{body}"
                );
                shed += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ok + shed, 6);
    assert!(ok >= 2 && shed >= 1, "ok {ok}, shed {shed}");
    env.sim.clear_knobs();
    assert_eq!(
        env.openai(user("gpt", "after")).await.status(),
        200,
        "permits come back"
    );
}

#[tokio::test]
async fn a_route_can_have_a_smaller_body_limit() {
    let env = start(|c| c.routes.get_mut("gpt").unwrap().max_body_bytes = Some(300)).await;
    let big = "x".repeat(400);
    assert_eq!(env.openai(user("gpt", &big)).await.status(), 413);
    assert_eq!(env.openai(user("claude", &big)).await.status(), 200);
}

/// Reads one raw HTTP/1 connection to its end: the status code of the
/// answer (0 when none came) and whether the server closed it in time.
async fn status_then_close(mut s: TcpStream, within: Duration) -> (u16, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(within, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let text = String::from_utf8_lossy(&got);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|t| t.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, closed)
}

#[tokio::test]
async fn slow_bodies_of_one_key_neither_starve_other_keys_nor_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let (env, keys) = keyed::start(
        dir.path(),
        &[
            Spec {
                name: "attacker",
                routes: &["*"],
                rpm: Some(5),
                tpm: None,
            },
            Spec {
                name: "tenant",
                routes: &["*"],
                rpm: None,
                tpm: None,
            },
        ],
        |c| {
            c.gateway.max_concurrent_requests = 8;
            c.gateway.max_concurrent_per_key = Some(2);
            c.gateway.body_read_timeout = Duration::from_millis(1500);
        },
    )
    .await;
    // Headers with a valid key and a 100,000-byte body announced, then
    // 17 bytes and silence.
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"model\":\"gpt\",\"",
        keys[0]
    );
    let mut readers = Vec::new();
    let (tx, mut answered) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..20 {
        let mut s = TcpStream::connect(env.gw.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let tx = tx.clone();
        readers.push(tokio::spawn(async move {
            let (status, closed) = status_then_close(s, Duration::from_secs(15)).await;
            let _ = tx.send(status);
            (status, closed)
        }));
    }
    // Over its rate (5 a minute) or its share of slots (2), the attacker
    // is refused at once, without the gateway waiting for the body.
    let mut refused = 0;
    while refused < 18 {
        let status = tokio::time::timeout(Duration::from_secs(10), answered.recv())
            .await
            .expect("18 slow connections are refused before the body deadline")
            .unwrap();
        assert_eq!(status, 429);
        refused += 1;
    }
    // The two that hold a slot do not starve another key.
    let resp = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(&keys[1])
        .json(&user("gpt", "my turn"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    // After the body deadline the two get 408 and every connection is closed.
    let mut statuses = Vec::new();
    for r in readers {
        let (status, closed) = r.await.unwrap();
        assert!(closed, "a slow connection stayed open (answered {status})");
        statuses.push(status);
    }
    statuses.sort_unstable();
    assert_eq!(statuses[..2], [408, 408], "{statuses:?}");
    assert!(statuses[2..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn a_slow_body_gets_408_in_the_callers_dialect() {
    let env = start(|c| c.gateway.body_read_timeout = Duration::from_millis(500)).await;
    let mut s = TcpStream::connect(env.gw.addr).await.unwrap();
    s.write_all(
        b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: k\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"model\":",
    )
    .await
    .unwrap();
    let mut got = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    assert!(closed.is_ok(), "closed after the deadline");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("connection: close"),
        "{text}"
    );
    // The body may come chunked: the JSON is between the outer braces.
    let json = &text[text.find('{').unwrap()..=text.rfind('}').unwrap()];
    let body: Value = serde_json::from_str(json).unwrap();
    assert_eq!(body["type"], "error", "Anthropic's error shape: {body}");
    assert_eq!(env.openai(user("gpt", "still up")).await.status(), 200);
}

/// Sends one OpenAI chat request over an HTTP/2 connection and reads it whole.
async fn h2_chat(client: &mut h2::client::SendRequest<bytes::Bytes>, text: &str) -> u16 {
    let req = http::Request::post("http://gateway/v1/chat/completions")
        .header("authorization", "Bearer k")
        .header("content-type", "application/json")
        .body(())
        .unwrap();
    let ready = client.clone().ready().await.unwrap();
    *client = ready;
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(serde_json::to_vec(&user("gpt", text)).unwrap().into(), true)
        .unwrap();
    let resp = resp.await.unwrap();
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    status
}

#[tokio::test]
async fn idle_http2_connections_are_closed_but_long_requests_are_not() {
    let env = start(|c| c.gateway.header_read_timeout = Duration::from_millis(800)).await;
    // A request that takes longer than the idle timeout is not cut.
    env.sim.set_knobs(
        Vendor::Openai,
        "gpt-5",
        Knobs {
            latency_ms: 1500,
            ..Knobs::default()
        },
    );
    let tcp = TcpStream::connect(env.gw.addr).await.unwrap();
    let (mut client, conn) = h2::client::handshake(tcp).await.unwrap();
    let open = tokio::spawn(conn);
    assert_eq!(h2_chat(&mut client, "slow but busy").await, 200);
    env.sim.clear_knobs();
    assert_eq!(h2_chat(&mut client, "then idle").await, 200);
    // Then idle (the h2 client answers the server's pings): closed.
    let closed = tokio::time::timeout(Duration::from_secs(10), open).await;
    assert!(
        closed.is_ok(),
        "an idle HTTP/2 connection must be closed after the idle timeout"
    );
    drop(client);
}

#[tokio::test]
async fn connections_beyond_the_per_address_cap_are_closed_at_accept() {
    let env = start(|c| {
        c.gateway.max_connections_per_ip = 3;
        c.gateway.header_read_timeout = Duration::from_secs(20);
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(env.gw.addr).await.unwrap());
    }
    // The fourth gets no answer, only a closed connection.
    let mut fourth = TcpStream::connect(env.gw.addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), fourth.read(&mut buf))
        .await
        .expect("the fourth connection is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    // One goes away: a new connection is served again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = reqwest::Client::new();
        let ok = fresh
            .post(env.url("/v1/chat/completions"))
            .bearer_auth("k")
            .json(&user("gpt", "room again"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200);
        if ok {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "a connection slot never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
