//! A Responses API conversation across two replicas of a fleet, against a
//! real `redis-server`: a turn answered by one replica can be continued,
//! fetched and deleted through another, and a delete holds fleet-wide.

mod common;

use common::redis_server::Redis;
use serde_json::{json, Value};
use switchyard::app::Gateway;
use switchyard::sim::{digest, Simulator};

/// Replica `id` of a fleet on `redis`: the demo table on `sim`.
async fn replica(sim: std::net::SocketAddr, redis: &Redis, id: &str) -> Gateway {
    let mut config = switchyard::demo::config(sim).expect("demo table");
    config.fleet.redis_url = Some(redis.url());
    config.fleet.replica = Some(id.to_string());
    common::gateway(config).await
}

async fn create(http: &reqwest::Client, gw: &Gateway, body: Value) -> (u16, Value) {
    let resp = http
        .post(format!("http://{}/v1/responses", gw.addr))
        .bearer_auth("app-key")
        .json(&body)
        .send()
        .await
        .expect("gateway answers");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

fn output_text(v: &Value) -> String {
    v["output"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|item| item["content"].as_array().cloned().unwrap_or_default())
        .filter_map(|part| part["text"].as_str().map(str::to_string))
        .collect()
}

/// `GET /v1/responses/{id}` on a replica: the status.
async fn fetch(http: &reqwest::Client, gw: &Gateway, id: &str) -> u16 {
    http.get(format!("http://{}/v1/responses/{id}", gw.addr))
        .bearer_auth("app-key")
        .send()
        .await
        .expect("gateway answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_continues_fetches_and_deletes_across_replicas() {
    let redis = Redis::start().await;
    let sim = Simulator::new();
    let sim_addr = sim
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let a = replica(sim_addr, &redis, "a").await;
    let b = replica(sim_addr, &redis, "b").await;
    let http = reqwest::Client::new();

    let (status, first) = create(&http, &a, json!({"model": "gpt", "input": "turn one"})).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().expect("an id").to_string();
    let first_text = output_text(&first);

    // Replica b never saw turn one; the turn store in Redis has it (its
    // write is in the background, so allow it a moment to land).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while fetch(&http, &b, &id).await != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "turn one never reached replica b"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let (status, second) = create(
        &http,
        &b,
        json!({"model": "gpt", "input": "turn two", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 200, "{second}");
    let history = format!("user: turn one\nassistant: {first_text}\nuser: turn two");
    assert!(
        output_text(&second).contains(&format!("history={}", digest(&history))),
        "replica b sent the whole conversation upstream: {second}"
    );

    // Deleted through b: gone on a too, though a answered it and holds it.
    let deleted = http
        .delete(format!("http://{}/v1/responses/{id}", b.addr))
        .bearer_auth("app-key")
        .send()
        .await
        .expect("gateway answers");
    assert_eq!(deleted.status(), 200);
    assert_eq!(fetch(&http, &a, &id).await, 404);
    let (status, err) = create(
        &http,
        &a,
        json!({"model": "gpt", "input": "turn three", "previous_response_id": id}),
    )
    .await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["code"], "previous_response_not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_redis_gone_a_replica_continues_its_own_conversations() {
    let mut redis = Redis::start().await;
    let sim = Simulator::new();
    let sim_addr = sim
        .spawn(([127, 0, 0, 1], 0).into())
        .await
        .expect("simulator");
    let a = replica(sim_addr, &redis, "a").await;
    let http = reqwest::Client::new();
    redis.kill();

    let (status, first) = create(&http, &a, json!({"model": "gpt", "input": "alone"})).await;
    assert_eq!(status, 200, "{first}");
    let id = first["id"].as_str().expect("an id");
    let (status, second) = create(
        &http,
        &a,
        json!({"model": "gpt", "input": "still here?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(
        status, 200,
        "the local store answers while Redis is away: {second}"
    );
    let history = format!(
        "user: alone\nassistant: {}\nuser: still here?",
        output_text(&first)
    );
    assert!(output_text(&second).contains(&format!("history={}", digest(&history))));
}
