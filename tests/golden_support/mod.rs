//! Shared by the golden-fixture tests: listing inputs, the canonical view of
//! a request, and comparing against (or, with `UPDATE_GOLDEN=1`, rewriting)
//! the reviewed files.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use switchyard::model::ChatRequest;

/// The `*.input.json` fixtures of one dialect, sorted.
pub fn inputs(dialect: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(dialect);
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("read golden dir")
        .map(|e| e.expect("read golden dir entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    found.sort();
    assert!(found.len() >= 4, "fixtures missing in {}", dir.display());
    found
}

/// The canonical request as JSON, plus the passthrough that serde skips.
pub fn canonical(req: &ChatRequest) -> Value {
    let mut v = serde_json::to_value(req).expect("serialize request");
    if let Some(p) = &req.passthrough {
        v["passthrough"] = json!({"dialect": p.dialect, "fields": p.fields});
    }
    v
}

/// Compares `actual` with `NAME.KIND.json` beside `input`; records a
/// mismatch in `failures`.
pub fn compare(input: &Path, kind: &str, actual: Value, failures: &mut Vec<String>) {
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

pub fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "golden mismatches (rerun with UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
}
