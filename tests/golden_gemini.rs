//! Golden fixtures for the Gemini dialect.
//!
//! Each `tests/golden/gemini/NAME.input.json` is a request as a Gemini app
//! sends it. The test decodes it into the canonical model and encodes that
//! again for a Gemini backend; the results must equal the reviewed
//! `NAME.canonical.json` (with the passthrough fields shown under
//! `passthrough`) and `NAME.encoded.json`. After a deliberate change, rewrite
//! them with `UPDATE_GOLDEN=1 cargo test --test golden_gemini` and review
//! the diff.

mod golden_support;

use golden_support::{assert_no_failures, canonical, compare, inputs};
use switchyard::dialect::gemini;

/// The route the fixtures are posted to (`models/{ROUTE}:generateContent`).
const ROUTE: &str = "frontier";

/// Gemini names the model in the URL, so it appears in no encoded body.
const UPSTREAM_MODEL: &str = "gemini-upstream";

#[test]
fn gemini_requests_match_their_golden_files() {
    let mut failures = Vec::new();
    for input in &inputs("gemini") {
        let body = std::fs::read(input).expect("read fixture");
        let req = gemini::decode_request(&body, ROUTE, false)
            .unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        compare(input, "canonical", canonical(&req), &mut failures);
        compare(
            input,
            "encoded",
            gemini::encode_request(&req, UPSTREAM_MODEL),
            &mut failures,
        );
    }
    assert_no_failures(&failures);
}
