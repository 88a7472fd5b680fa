//! Golden fixtures for the vendor-error taxonomy: real error answers of each
//! vendor for each failure class (`tests/golden/errors/VENDOR/CLASS.json`:
//! status, headers, body, and the expected class, decision, reset and
//! context limit). Each is decoded by the backend dialect exactly as the
//! failover loop does, then put through the failure-class table.

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use switchyard::dialect::{decode_error, taxonomy};
use switchyard::error::UpstreamError;
use switchyard::model::Dialect;

/// The instant the fixtures' RFC 3339 reset headers are read against.
fn fixture_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn check(vendor: &str, dialect: Dialect, path: &Path) -> Result<(), String> {
    let case: Value = serde_json::from_slice(&std::fs::read(path).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let status = case["status"].as_u64().ok_or("no status")? as u16;
    let mut headers = http::HeaderMap::new();
    for (k, v) in case["headers"].as_object().into_iter().flatten() {
        headers.insert(
            http::HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?,
            v.as_str()
                .ok_or("header value")?
                .parse()
                .map_err(|_| "header")?,
        );
    }
    let body = serde_json::to_vec(&case["body"]).map_err(|e| e.to_string())?;
    let vendor_error = decode_error(dialect, status, &body);
    let error = UpstreamError::Status {
        status,
        retry_after: taxonomy::reset_from_headers(&headers, fixture_now()),
        vendor: vendor_error.clone(),
    };
    let (reason, decision) = error.classify();
    let got = (reason.as_str(), decision.as_str());
    let want = (
        case["class"].as_str().unwrap_or("?"),
        case["decision"].as_str().unwrap_or("?"),
    );
    if got != want {
        return Err(format!("{vendor}: class/decision {got:?}, want {want:?}"));
    }
    let reset = error.reset_after().map(|d| d.as_secs_f64());
    if reset != case["reset_secs"].as_f64() {
        return Err(format!(
            "{vendor}: reset {reset:?}, want {}",
            case["reset_secs"]
        ));
    }
    let limit = vendor_error.context_limit.map(u64::from);
    if limit != case["context_limit"].as_u64() {
        return Err(format!("{vendor}: context limit {limit:?}"));
    }
    Ok(())
}

#[test]
fn every_vendor_error_fixture_decodes_to_its_class_and_decision() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/errors");
    let mut failures = Vec::new();
    let mut seen = 0;
    for (vendor, dialect) in [
        ("openai", Dialect::OpenAi),
        ("anthropic", Dialect::Anthropic),
        ("gemini", Dialect::Gemini),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(vendor))
            .expect("fixture folder")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        for path in files {
            seen += 1;
            if let Err(e) = check(vendor, dialect, &path) {
                failures.push(format!("{}: {e}", path.display()));
            }
        }
    }
    assert!(seen >= 30, "only {seen} fixtures found");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_gemini_suspension_is_never_taken_for_bad_credentials() {
    let body = br#"{"error":{"code":403,"message":"Permission denied: Consumer 'api_key:AIza' has been suspended.","status":"PERMISSION_DENIED","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"CONSUMER_SUSPENDED","domain":"googleapis.com"}]}}"#;
    let e = decode_error(Dialect::Gemini, 403, body);
    assert_eq!(e.class, switchyard::dialect::VendorClass::AccountDisabled);
    // Structured fields first: the reason alone decides, whatever the text.
    let reworded = String::from_utf8_lossy(body).replace("has been suspended", "is paused");
    let e = decode_error(Dialect::Gemini, 403, reworded.as_bytes());
    assert_eq!(e.class, switchyard::dialect::VendorClass::AccountDisabled);
}
