//! Golden fixtures for the Anthropic dialect.
//!
//! Each `tests/golden/anthropic/NAME.input.json` is a request as an Anthropic
//! app sends it. The test decodes it into the canonical model and encodes
//! that again for an Anthropic backend; the results must equal the reviewed
//! `NAME.canonical.json` (with the passthrough fields shown under
//! `passthrough`) and `NAME.encoded.json`. After a deliberate change, rewrite
//! them with `UPDATE_GOLDEN=1 cargo test --test golden_anthropic` and review
//! the diff.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchyard::dialect::anthropic;
use switchyard::model::ChatRequest;

/// The model name the encoded requests are written for.
const UPSTREAM_MODEL: &str = "claude-upstream";

#[test]
fn anthropic_requests_match_their_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/anthropic");
    let inputs = inputs(&dir);
    assert!(inputs.len() >= 4, "fixtures missing in {}", dir.display());
    let mut failures = Vec::new();
    for input in &inputs {
        let body = std::fs::read(input).expect("read fixture");
        let req =
            anthropic::decode_request(&body).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        compare(input, "canonical", canonical(&req), &mut failures);
        let encoded = anthropic::encode_request(&req, UPSTREAM_MODEL);
        compare(input, "encoded", encoded, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (rerun with UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
}

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read golden dir")
        .map(|e| e.expect("read golden dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    found.sort();
    found
}

/// The canonical request as JSON, plus the passthrough that serde skips.
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
