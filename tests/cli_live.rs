//! The ops CLI against a live gateway: status, suspend, resume, reload, and
//! its messages for a wrong token, an unknown target, an unreachable gateway.

mod common;

use common::{start, user, ADMIN_TOKEN};

async fn cli(args: &[&str], admin: &str, token: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .args(["--admin", admin])
        .env("SWITCHYARD_ADMIN_TOKEN", token)
        .env("USER", "carol")
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn suspend_status_resume_round_trip() {
    let env = start(|_| {}).await;
    let admin = format!("http://{}", env.gw.admin_addr);

    let (code, out, err) = cli(
        &[
            "suspend",
            "claude",
            "--reason",
            "vendor order",
            "--for",
            "2h",
        ],
        &admin,
        ADMIN_TOKEN,
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("claude suspended"), "{out}");
    let resp = env.openai(user("frontier", "x")).await;
    assert_eq!(resp.headers()["x-switchyard-target"], "gpt");

    let (code, out, _) = cli(&["status"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 0);
    let header = out.lines().find(|l| l.starts_with("TARGET")).unwrap();
    for column in ["STATE", "REQ/MIN", "ERR/MIN", "P50", "P99", "SINCE", "WHY"] {
        assert!(header.contains(column), "{header}");
    }
    let claude = out.lines().find(|l| l.starts_with("claude ")).unwrap();
    assert!(
        claude.contains("suspended")
            && claude.contains("cli:carol")
            && claude.contains("vendor order"),
        "{out}"
    );
    assert!(
        out.contains("frontier") && out.contains("claude (suspended) -> gpt (healthy)"),
        "{out}"
    );

    let (code, out, _) = cli(&["status", "--json"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["targets"]["claude"]["state"], "suspended");

    let (code, out, _) = cli(&["resume", "claude"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 0);
    assert!(out.contains("claude resumed"), "{out}");
    let resp = env.openai(user("frontier", "y")).await;
    assert_eq!(resp.headers()["x-switchyard-target"], "claude");
}

#[tokio::test]
async fn clear_messages_for_the_usual_mistakes() {
    let env = start(|_| {}).await;
    let admin = format!("http://{}", env.gw.admin_addr);
    let (code, _, err) = cli(&["suspend", "claude"], &admin, "wrong-token").await;
    assert_eq!(code, 1);
    assert!(err.contains("refused the token"), "{err}");
    let (code, _, err) = cli(&["suspend", "nobody"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 1);
    assert!(err.contains("unknown target `nobody`"), "{err}");
    let (code, _, err) = cli(&["suspend", "claude", "--for", "soon"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 1);
    assert!(err.contains("not a duration"), "{err}");
    for absurd in ["18446744073709551615s", "0s"] {
        let (code, _, err) =
            cli(&["suspend", "claude", "--for", absurd], &admin, ADMIN_TOKEN).await;
        assert_eq!(code, 1, "{absurd}");
        assert!(
            err.contains("365 days") || err.contains("more than zero"),
            "{absurd}: {err}"
        );
    }
    let (code, _, err) = cli(&["status"], "http://127.0.0.1:9", ADMIN_TOKEN).await;
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach the gateway"), "{err}");
    // The demo table has no routes file: reload answers with the same version.
    let (code, out, _) = cli(&["reload"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 0);
    assert!(out.contains("version 1"), "{out}");
}

#[tokio::test]
async fn reload_refuses_to_drop_a_busy_route_until_told_to() {
    let dir = tempfile::tempdir().unwrap();
    let (env, path, table) = common::start_from_file(dir.path()).await;
    let admin = format!("http://{}", env.gw.admin_addr);
    assert_eq!(env.openai(user("local", "busy")).await.status(), 200);
    let tmp = dir.path().join("routes.toml.tmp");
    std::fs::write(
        &tmp,
        table.replace("[routes.local]\ntargets = [\"local\"]\n", ""),
    )
    .unwrap();
    std::fs::rename(&tmp, &path).unwrap();

    let (code, _, err) = cli(&["reload"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("route `local`") && err.contains("--allow-removals"),
        "{err}"
    );
    assert!(env.gw.live.load().table.routes.contains_key("local"));

    let (code, out, err) = cli(&["reload", "--allow-removals"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("reloaded: the table is now version 2"),
        "{out}"
    );
    assert!(!env.gw.live.load().table.routes.contains_key("local"));

    let (code, out, _) = cli(&["reload"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 0);
    assert!(out.contains("unchanged"), "{out}");
}

/// A `degraded` target says why, in the admin API and under WHY in
/// `switchyard status`.
#[tokio::test]
async fn a_degraded_target_says_why_in_status() {
    let env = start(|_| {}).await;
    let admin = format!("http://{}", env.gw.admin_addr);
    env.sim.set_knobs(
        switchyard::sim::Vendor::Openai,
        "gpt-5",
        switchyard::sim::Knobs {
            error_status: Some(500),
            ..switchyard::sim::Knobs::default()
        },
    );
    assert_eq!(env.openai(user("gpt", "fail")).await.status(), 502);
    let (code, out, err) = cli(&["status", "--json"], &admin, ADMIN_TOKEN).await;
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let gpt = &v["targets"]["gpt"];
    assert_eq!(gpt["state"], "degraded", "{gpt}");
    let reason = gpt["reason"].as_str().unwrap();
    assert!(reason.contains("consecutive failure"), "{reason}");
    assert!(reason.contains("error rate 100%"), "{reason}");
    assert_eq!(v["targets"]["claude"]["reason"], serde_json::Value::Null);

    let (_, out, _) = cli(&["status"], &admin, ADMIN_TOKEN).await;
    let line = out.lines().find(|l| l.starts_with("gpt ")).unwrap();
    assert!(line.contains("degraded") && line.contains(reason), "{out}");
}
