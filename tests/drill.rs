//! Chaos drills, self-contained (built-in simulator + in-process gateway on
//! loopback): a drill whose SLO cannot hold reports a failure; drills against
//! a running gateway clean up; every shipped drill is valid. The 30-second CI
//! suspension drill runs once, through the CLI, in
//! `tests/python/test_drill_cli.py`, not beside the parallel Rust suites.

mod common;

use std::path::{Path, PathBuf};

use switchyard::drill::{self, RunOptions};
use switchyard::sim::Knobs;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn options(file: PathBuf, out: &Path) -> RunOptions {
    RunOptions {
        file,
        out: Some(out.to_path_buf()),
        progress: false,
        ..RunOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_whose_slo_cannot_hold_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("all-down.toml");
    let mut text = String::from(
        "name = \"all-down\"\n[load]\nroute = \"frontier\"\nrate = 10\nduration = \"3s\"\ntimeout = \"5s\"\n",
    );
    for t in ["claude", "gpt", "gemini", "local"] {
        text.push_str(&format!("[[timeline]]\nat = \"0s\"\ndo = \"fault\"\ntarget = \"{t}\"\nknobs = {{ error_status = 503 }}\n"));
    }
    text.push_str("[[slo]]\nkind = \"error_rate\"\nmax = 0.0\n[[slo]]\nkind = \"p99_latency\"\nmax = \"10s\"\n");
    std::fs::write(&file, text).expect("write drill");
    let out = dir.path().join("report");
    let report = drill::run(options(file, &out))
        .await
        .expect("the drill runs");
    assert!(!report.passed(), "{}", report.summary());
    let failed: Vec<&str> = report.failed_slos().map(|s| s.kind).collect();
    assert_eq!(failed, ["error_rate"], "{}", report.summary());
    assert!(report.totals.errors > 0);
    let html = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    assert!(html.contains("FAILED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_against_a_running_gateway_cleans_up_after_itself() {
    let env = common::start(|_| {}).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("remote.toml");
    std::fs::write(
        &file,
        r#"
[load]
route = "frontier"
rate = 10
duration = "4s"
[[timeline]]
at = "500ms"
do = "fault"
target = "claude"
knobs = { suspended = true }
[[timeline]]
at = "1s"
do = "suspend"
target = "claude"
[[slo]]
kind = "served_share"
target = "gpt"
min = 0.9
from = "1500ms"
"#,
    )
    .expect("write drill");
    let opts = RunOptions {
        gateway: Some(env.url("")),
        admin: Some(env.admin_url("")),
        sim: Some(format!("http://{}", env.sim_addr)),
        admin_token: Some(common::ADMIN_TOKEN.into()),
        ..options(file, &dir.path().join("report"))
    };
    let report = drill::run(opts).await.expect("the drill runs");
    assert!(report.passed(), "{}", report.summary());
    assert_eq!(report.mode, "gateway");
    // What the drill changed is put back: claude resumed, knobs normal.
    assert!(
        report.notes.iter().any(|n| n.contains("resumed claude")),
        "{:?}",
        report.notes
    );
    let knobs = env.sim.knobs();
    assert_eq!(
        knobs.get("anthropic/claude-sonnet-4-5"),
        Some(&Knobs::default())
    );
    // Claude may still sit out its ejection, but it is no longer suspended.
    let table: serde_json::Value = env
        .http
        .get(env.admin_url("/admin/routes"))
        .bearer_auth(common::ADMIN_TOKEN)
        .send()
        .await
        .expect("admin")
        .json()
        .await
        .expect("JSON");
    assert_ne!(table["targets"]["claude"]["state"], "suspended", "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_can_be_injected_in_the_gateway_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("gateway-fault.toml");
    std::fs::write(
        &file,
        r#"
[load]
route = "frontier"
rate = 10
duration = "4s"
stream = 0.5
[[timeline]]
at = "500ms"
do = "fault"
via = "gateway"
target = "claude"
fault = { kind = "unavailable" }
[[timeline]]
at = "3s"
do = "clear"
target = "claude"
[[slo]]
kind = "served_share"
target = "gpt"
min = 0.9
from = "1s"
until = "3s"
[[slo]]
kind = "error_rate"
max = 0.0
"#,
    )
    .expect("write drill");
    let report = drill::run(options(file, &dir.path().join("report")))
        .await
        .expect("the drill runs");
    assert!(report.passed(), "{}", report.summary());
    assert!(
        report.events.iter().any(|e| e.kind == "chaos_set"),
        "the injection is audited: {:?}",
        report.events
    );
}

#[tokio::test]
async fn a_drill_that_does_not_fit_the_gateway_is_refused_before_it_starts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("typo.toml");
    std::fs::write(
        &file,
        "[load]\nroute = \"frontier\"\nrate = 1\nduration = \"1s\"\n[[timeline]]\nat = \"0s\"\ndo = \"suspend\"\ntarget = \"clade\"\n[[slo]]\nkind = \"error_rate\"\nmax = 0.1\n",
    )
    .expect("write drill");
    let err = drill::run(options(file, &dir.path().join("r")))
        .await
        .expect_err("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("timeline[0].target: no target `clade`"),
        "{msg}"
    );
    assert!(
        !dir.path().join("r").exists(),
        "no report for a drill that never ran"
    );
}

#[test]
fn every_shipped_drill_is_valid_and_short_enough() {
    let mut n = 0;
    for entry in std::fs::read_dir(repo("drills")).expect("drills/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let d = drill::load_file(&path).unwrap_or_else(|e| panic!("{e}"));
        let limit = if d.name.starts_with("ci-") { 30 } else { 180 };
        assert!(
            d.load.duration.as_secs() <= limit,
            "{} runs {:?}",
            path.display(),
            d.load.duration
        );
        n += 1;
    }
    assert!(n >= 7, "the CI drill and six scenarios ship");
}

#[test]
fn file_errors_name_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        r#"
[load]
route = "frontier"
rate = "fast"
duration = "30 sex"
stream = 1.5
[load.dialects]
klingon = 1

[[timeline]]
at = "40s"
do = "fault"
target = "claude"
knobs = { suspendd = true }

[[timeline]]
at = "1s"
do = "explode"

[[timeline]]
at = "2s"
do = "fault"
via = "gateway"
target = "claude"
fault = { kind = "unavailabel" }

[[slo]]
kind = "served_share"
target = "gpt"
min = 2
"#,
    )
    .expect("write");
    let msg = drill::load_file(&file).expect_err("invalid").to_string();
    for key in [
        "load.rate:",
        "load.duration:",
        "load.stream:",
        "load.dialects.klingon:",
        "timeline[0].knobs:",
        "timeline[1].do:",
        "timeline[2].fault:",
        "slo[0].min:",
    ] {
        assert!(msg.contains(key), "names {key}:\n{msg}");
    }
    assert!(msg.contains("suspendd"), "{msg}");
}
