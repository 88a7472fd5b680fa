//! The `switchyard` binary's offline commands.

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchyard"))
}

#[test]
fn check_accepts_the_shipped_table() {
    let out = bin().args(["check", "routes.toml"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("routes.toml: ok"));
}

#[test]
fn check_prints_every_error_with_its_position_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let text = std::fs::read_to_string("routes.toml")
        .unwrap()
        .replace(
            "targets = [\"qwen-local\", \"gpt\"]",
            "targets = [\"qwen-local\", \"ghost\"]",
        )
        .replace(
            "first_token_timeout = \"20s\"",
            "first_token_timeout = \"20 parsecs\"",
        );
    std::fs::write(&path, &text).unwrap();
    let out = bin().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml:") && err.contains("first_token_timeout")
            || err.contains("duration"),
        "{err}"
    );

    // With the duration fixed, the dangling target is reported by position and key.
    std::fs::write(&path, text.replace("\"20 parsecs\"", "\"20s\"")).unwrap();
    let out = bin().arg("check").arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = text.lines().position(|l| l.contains("\"ghost\"")).unwrap() + 1;
    assert!(err.contains(&format!("bad.toml:{line}:")), "{err}");
    assert!(
        err.contains("routes.cheap.targets[1]: unknown target `ghost`"),
        "{err}"
    );
}

#[test]
fn check_diff_names_changed_routes_and_targets() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.toml");
    let text = std::fs::read_to_string("routes.toml")
        .unwrap()
        .replace("[routes.cheap]", "[routes.budget]");
    let text = text.replace("model = \"gpt-5\"", "model = \"gpt-5-mini\"");
    std::fs::write(&other, text).unwrap();
    let out = bin()
        .args(["check", "routes.toml", "--diff"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("- route cheap"), "{stdout}");
    assert!(stdout.contains("+ route budget"), "{stdout}");
    assert!(stdout.contains("~ target gpt"), "{stdout}");
    assert!(!stdout.contains("frontier"), "{stdout}");
}

#[test]
fn serve_refuses_to_start_without_an_admin_token() {
    let out = bin()
        .args(["serve", "--config", "routes.toml"])
        .env_remove("SWITCHYARD_ADMIN_TOKEN")
        .env("SWITCHYARD_KEY_SECRET", "s")
        .env("ANTHROPIC_API_KEY", "x")
        .env("OPENAI_API_KEY", "x")
        .env("GEMINI_API_KEY", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SWITCHYARD_ADMIN_TOKEN"));
}

#[test]
fn check_warns_when_no_target_of_a_route_states_its_window() {
    let out = bin().args(["check", "routes.toml"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !err.contains("context_window"),
        "the shipped table states its windows: {err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blind.toml");
    let text = std::fs::read_to_string("routes.toml").unwrap();
    let blind: String = text
        .lines()
        .filter(|l| !l.starts_with("context_window"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&path, blind).unwrap();
    let out = bin().arg("check").arg(&path).output().unwrap();
    assert!(out.status.success(), "a warning, not an error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: route `frontier`: no target states its context_window"),
        "{err}"
    );
}
