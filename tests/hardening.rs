//! Limits and slow clients: header timeout (slowloris), header limits, load
//! shedding, per-route body limits — normal traffic unharmed throughout.

mod common;

use std::time::Duration;

use common::{start, user};
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
