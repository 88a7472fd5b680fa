//! Egress cannot be steered and hostile upstream answers are survived: a
//! decoy listener counts every connection the gateway makes outside the
//! configured hosts (there must be none), and a hostile upstream answers
//! with redirects, cookies, non-JSON, HTML, truncated bodies and broken
//! streams — each becomes a failover or a clean error in the app's dialect.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::response::Response;
use axum::routing::post;
use common::start;
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Counts connections and closes them.
async fn decoy() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok((_s, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    (addr, count)
}

fn chunk(text: &str, finish: Option<&str>) -> String {
    let v = json!({"id": "x", "object": "chat.completion.chunk", "model": "hostile",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]});
    format!("data: {v}\n\n")
}

/// An OpenAI-compatible upstream that misbehaves as the prompt asks.
async fn hostile(decoy: SocketAddr) -> SocketAddr {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |body: axum::body::Bytes| async move {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let prompt = v["messages"][0]["content"].as_str().unwrap_or("").to_string();
            let ok = json!({"id": "h", "object": "chat.completion", "model": "hostile",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hostile says hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 3}});
            let b = Response::builder();
            match prompt.as_str() {
                "redirect" => b
                    .status(307)
                    .header("location", format!("http://{decoy}/v1/chat/completions"))
                    .body(Body::empty()),
                "cookie" => b
                    .header("content-type", "application/json")
                    .header("set-cookie", "session=vendor-secret")
                    .header("x-internal-host", "10.0.0.7")
                    .body(Body::from(ok.to_string())),
                "nonjson" => b.header("content-type", "text/plain").body(Body::from("hello, not json")),
                "html" => b.status(502).header("content-type", "text/html").body(Body::from("<html>bad gateway at 10.0.0.7</html>")),
                "truncated" => b.header("content-type", "application/json").body(Body::from(ok.to_string()[..40].to_string())),
                "badsse" => {
                    let frames: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                        Ok(chunk("one ", None).into()),
                        Ok(bytes::Bytes::from_static(b"data: {\"choices\": [broken\n\n")),
                        Ok(bytes::Bytes::from_static(b"data: \xff\xfe not utf8\n\n")),
                    ];
                    b.header("content-type", "text/event-stream").body(Body::from_stream(futures::stream::iter(frames)))
                }
                _ => b.header("content-type", "application/json").body(Body::from(ok.to_string())),
            }
            .unwrap()
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn clients_cannot_steer_egress_and_hostile_answers_are_survived() {
    let (decoy_addr, decoy_hits) = decoy().await;
    let hostile_addr = hostile(decoy_addr).await;
    let env = start(move |c| {
        let mut p = c.providers["local"].clone();
        p.base_url = format!("http://{hostile_addr}/v1");
        c.providers.insert("hostile".into(), p);
        let mut t = c.targets["local"].clone();
        t.provider = "hostile".into();
        c.targets.insert("hostile".into(), t);
        let mut r = c.routes["local"].clone();
        r.targets = vec!["hostile".into(), "gpt".into()];
        c.routes.insert("mixed".into(), r);
    })
    .await;
    let decoy = format!("http://{decoy_addr}");
    let ask =
        |prompt: &str, stream: bool| {
            env.http
            .post(env.url("/v1/chat/completions"))
            .bearer_auth("k")
            .header("x-forwarded-host", decoy_addr.to_string())
            .header("x-api-base", &decoy)
            .header("proxy-authorization", "Basic c2VjcmV0")
            .json(&json!({"model": "mixed", "stream": stream, "api_base": decoy, "base_url": decoy,
                "messages": [{"role": "user", "content": prompt}]}))
            .send()
        };

    // A redirect is not followed: it is a failed attempt, and gpt serves.
    for prompt in ["redirect", "nonjson", "html", "truncated"] {
        let resp = ask(prompt, false).await.unwrap();
        assert_eq!(resp.status(), 200, "{prompt}");
        assert_eq!(
            resp.headers()["x-switchyard-target"],
            "gpt",
            "{prompt}: a vendor failure fails over"
        );
        let body = resp.text().await.unwrap();
        assert!(!body.contains("10.0.0.7"), "{prompt}: {body}");
    }
    // Cookies and internal headers of a vendor never reach the app.
    let resp = ask("cookie", false).await.unwrap();
    assert_eq!(resp.headers()["x-switchyard-target"], "hostile");
    assert!(!resp.headers().contains_key("set-cookie"));
    assert!(!resp.headers().contains_key("x-internal-host"));
    assert!(resp.text().await.unwrap().contains("hostile says hi"));
    // Broken SSE lines and invalid UTF-8 mid-stream: dropped, or a clean
    // error event — never a clean end, and the process stays up.
    let text = ask("badsse", true)
        .await
        .unwrap()
        .text()
        .await
        .unwrap_or_default();
    assert!(!text.contains("[DONE]"), "{text}");
    let resp = ask("fine", false).await.unwrap();
    assert_eq!(resp.status(), 200);

    assert_eq!(
        decoy_hits.load(Ordering::SeqCst),
        0,
        "no connection outside the configured hosts"
    );
    // The app's credentials and hop-by-hop headers never went upstream.
    let seen = env
        .sim
        .last_headers(switchyard::sim::Vendor::Openai)
        .unwrap();
    for h in ["proxy-authorization", "x-forwarded-host", "x-api-base"] {
        assert!(!seen.contains_key(h), "{h} was forwarded");
    }
    assert_eq!(seen["authorization"], "Bearer sim-key");
}
