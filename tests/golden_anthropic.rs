//! Golden fixtures for the Anthropic dialect.
//!
//! Each `tests/golden/anthropic/NAME.input.json` is a request as an Anthropic
//! app sends it. The test decodes it into the canonical model and encodes
//! that again for an Anthropic backend; the results must equal the reviewed
//! `NAME.canonical.json` (with the passthrough fields shown under
//! `passthrough`) and `NAME.encoded.json`. After a deliberate change, rewrite
//! them with `UPDATE_GOLDEN=1 cargo test --test golden_anthropic` and review
//! the diff.

mod golden_support;

use golden_support::{assert_no_failures, canonical, compare, inputs};
use switchyard::dialect::anthropic;

/// The model name the encoded requests are written for.
const UPSTREAM_MODEL: &str = "claude-upstream";

#[test]
fn anthropic_requests_match_their_golden_files() {
    let mut failures = Vec::new();
    for input in &inputs("anthropic") {
        let body = std::fs::read(input).expect("read fixture");
        let req =
            anthropic::decode_request(&body).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        compare(input, "canonical", canonical(&req), &mut failures);
        compare(
            input,
            "encoded",
            anthropic::encode_request(&req, UPSTREAM_MODEL),
            &mut failures,
        );
    }
    assert_no_failures(&failures);
}
