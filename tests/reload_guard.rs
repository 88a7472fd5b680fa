//! Reloads of a real routes file on a serving gateway: reading the file
//! never reloads it, a file written in parts is read once whole, a table
//! that drops busy routes is refused unless forced, and start-only
//! settings are refused by name.

mod common;

use std::io::Write;
use std::time::{Duration, Instant};

use common::{start_from_file, user, Env, ADMIN_TOKEN};
use serde_json::Value;
use switchyard::reload::QUIET;

async fn reload(env: &Env, query: &str) -> (u16, Value) {
    let resp = env
        .http
        .post(env.admin_url(&format!("/admin/reload{query}")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("admin API answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn events(env: &Env, kind: &str) -> Vec<Value> {
    let v: Value = env
        .http
        .get(env.admin_url("/admin/events"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

fn write_atomically(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Reading the routes file (20 reads, a `switchyard check`) and one reload
/// through the admin API: no reload loop, at most one `reload` event, the
/// version moves by one at most, and nothing more after a quiet period.
#[tokio::test]
async fn reading_the_routes_file_never_starts_a_reload_loop() {
    let dir = tempfile::tempdir().unwrap();
    let (env, path, _) = start_from_file(dir.path()).await;
    let version = env.gw.live.load().version;
    for _ in 0..20 {
        assert!(!std::fs::read(&path).unwrap().is_empty());
    }
    let check = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("check")
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(check.status.success(), "{check:?}");
    let (status, v) = reload(&env, "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["changed"], false, "the file is the one in force: {v}");
    // Long enough for the watcher to have reacted to every read above, and
    // then some: a loop would have reloaded several times by now.
    tokio::time::sleep(QUIET * 2).await;
    let reloads = events(&env, "reload").await.len();
    assert!(reloads <= 1, "{reloads} reload events");
    let after = env.gw.live.load().version;
    assert!(after <= version + 1, "version {version} -> {after}");
    tokio::time::sleep(QUIET + Duration::from_millis(500)).await;
    assert_eq!(
        events(&env, "reload").await.len(),
        reloads,
        "no reloads while quiet"
    );
    assert_eq!(env.gw.live.load().version, after);
    assert!(events(&env, "reload_rejected").await.is_empty());
}

/// A file written in place in two parts half a second apart (the way a
/// careless editor or `cat a b > routes.toml` does) is read only once it is
/// whole: the valid prefix, which lacks two routes, is never applied.
#[tokio::test]
async fn a_file_written_in_two_parts_is_read_once_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (env, path, table) = start_from_file(dir.path()).await;
    let version = env.gw.live.load().version;
    let cut = table.find("[routes.local]").unwrap();
    std::fs::write(&path, &table[..cut]).unwrap();
    let mut routes_seen = Vec::new();
    let sample = |routes: &mut Vec<usize>| routes.push(env.gw.live.load().table.routes.len());
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        sample(&mut routes_seen);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    f.write_all(&table.as_bytes()[cut..]).unwrap();
    drop(f);
    let until = Instant::now() + QUIET * 2;
    while Instant::now() < until {
        sample(&mut routes_seen);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        routes_seen.iter().all(|n| *n == 5),
        "routes over time: {routes_seen:?}"
    );
    // The whole file is byte for byte the one in force: no reload at all.
    assert_eq!(env.gw.live.load().version, version);
    assert!(events(&env, "reload").await.is_empty());
    assert!(events(&env, "reload_rejected").await.is_empty());
}

/// A saved file that drops a route which just carried traffic is refused
/// (log, `last_reload_error`, `reload_rejected`); so is an admin reload,
/// until forced with `allow_removals=true`. Dropping an idle route is fine.
#[tokio::test]
async fn a_table_dropping_busy_routes_is_refused_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (env, path, table) = start_from_file(dir.path()).await;
    for _ in 0..2 {
        assert_eq!(env.openai(user("local", "busy")).await.status(), 200);
    }
    let without_local = table.replace("[routes.local]\ntargets = [\"local\"]\n", "");
    assert_ne!(without_local, table);
    write_atomically(&path, &without_local);

    let deadline = Instant::now() + QUIET + Duration::from_secs(10);
    let problems = loop {
        if let Some(p) = env.gw.live.last_reload_error.load_full() {
            break p;
        }
        assert!(
            Instant::now() < deadline,
            "the file change was never judged"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        problems
            .iter()
            .any(|p| p.contains("route `local`") && p.contains("--allow-removals")),
        "{problems:?}"
    );
    let rejected = events(&env, "reload_rejected").await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["actor"], "file-watch");
    assert_eq!(env.openai(user("local", "still here")).await.status(), 200);

    let (status, v) = reload(&env, "").await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["problems"][0].as_str().unwrap().contains("route `local`"),
        "{v}"
    );
    assert!(env.gw.live.load().table.routes.contains_key("local"));

    let (status, v) = reload(&env, "?allow_removals=true").await;
    assert_eq!((status, &v["changed"]), (200, &Value::Bool(true)), "{v}");
    assert!(!env.gw.live.load().table.routes.contains_key("local"));
    assert_eq!(env.openai(user("local", "gone")).await.status(), 404);
    assert!(env.gw.live.last_reload_error.load().is_none());

    // `gemini` took no request: dropping it needs no force.
    write_atomically(
        &path,
        &without_local.replace("[routes.gemini]\ntargets = [\"gemini\"]\n", ""),
    );
    let (status, v) = reload(&env, "").await;
    assert_eq!(status, 200, "{v}");
    assert!(!env.gw.live.load().table.routes.contains_key("gemini"));
}

/// Settings read only at start are refused by name (with before and after),
/// and nothing of that file is applied; a reloadable one goes through.
#[tokio::test]
async fn start_only_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (env, path, table) = start_from_file(dir.path()).await;
    let version = env.gw.live.load().version;
    let changed = table
        .replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:8181\"")
        .replace(
            "admin_listen = \"127.0.0.1:9901\"",
            "admin_listen = \"127.0.0.1:9901\"\nmax_concurrent_requests = 7",
        )
        .replace(
            "targets = [\"claude\", \"gpt\", \"gemini\", \"local\"]",
            "targets = [\"gpt\", \"claude\"]",
        );
    write_atomically(&path, &changed);
    let (status, v) = reload(&env, "").await;
    assert_eq!(status, 422, "{v}");
    let problems: Vec<&str> = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("[gateway] listen")
            && p.contains("127.0.0.1:8181")
            && p.contains("read only at start")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("[gateway] max_concurrent_requests")),
        "{problems:?}"
    );
    let live = env.gw.live.load();
    assert_eq!(live.version, version);
    assert_eq!(live.table.routes["frontier"].targets[0].name, "claude");

    // A reloadable gateway key alone is applied.
    write_atomically(
        &path,
        &table.replace(
            "admin_listen = \"127.0.0.1:9901\"",
            "admin_listen = \"127.0.0.1:9901\"\nmax_body_bytes = 2048",
        ),
    );
    let (status, v) = reload(&env, "").await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(env.gw.live.load().config.gateway.max_body_bytes, 2048);
}
