//! Golden fixtures for the OpenAI dialect, in every direction.
//!
//! Each `tests/golden/openai/NAME.input.json` is a request as an OpenAI app
//! sends it. It is decoded into the canonical model and encoded for each
//! backend dialect; the results must equal the reviewed
//! `NAME.canonical.json` and `NAME.to_{openai,anthropic,gemini}.json`. After
//! a deliberate change, rewrite them with
//! `UPDATE_GOLDEN=1 cargo test --test golden_openai` and review the diff.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchyard::dialect::{anthropic, gemini, openai};
use switchyard::model::ChatRequest;

#[test]
fn openai_requests_match_their_golden_files_for_every_backend() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/openai");
    let mut inputs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read golden dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 4, "fixtures missing in {}", dir.display());
    let mut failures = Vec::new();
    for input in &inputs {
        let body = std::fs::read(input).expect("read fixture");
        let req =
            openai::decode_request(&body).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        compare(input, "canonical", canonical(&req), &mut failures);
        compare(
            input,
            "to_openai",
            openai::encode_request(&req, "gpt-upstream", openai::Flavor::OPENAI),
            &mut failures,
        );
        compare(
            input,
            "to_anthropic",
            anthropic::encode_request(&req, "claude-upstream"),
            &mut failures,
        );
        compare(
            input,
            "to_gemini",
            gemini::encode_request(&req, "gemini-upstream"),
            &mut failures,
        );
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
}

fn canonical(req: &ChatRequest) -> Value {
    let mut v = serde_json::to_value(req).expect("serialize request");
    if let Some(p) = &req.passthrough {
        v["passthrough"] = json!({"dialect": p.dialect, "fields": p.fields});
    }
    v
}

fn compare(input: &Path, kind: &str, actual: Value, failures: &mut Vec<String>) {
    let name = input
        .to_string_lossy()
        .replace(".input.json", &format!(".{kind}.json"));
    let pretty = serde_json::to_string_pretty(&actual).expect("serialize") + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(&name, pretty).expect("write golden file");
        return;
    }
    let expected: Option<Value> = std::fs::read(&name)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if expected.as_ref() != Some(&actual) {
        failures.push(format!("--- {name} differs; actual:\n{pretty}"));
    }
}
