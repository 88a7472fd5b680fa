//! Golden fixtures for the OpenAI dialect, in every direction.
//!
//! Each `tests/golden/openai/NAME.input.json` is a request as an OpenAI app
//! sends it. It is decoded into the canonical model and encoded for each
//! backend dialect; the results must equal the reviewed
//! `NAME.canonical.json` and `NAME.to_{openai,anthropic,gemini}.json`. After
//! a deliberate change, rewrite them with
//! `UPDATE_GOLDEN=1 cargo test --test golden_openai` and review the diff.

mod golden_support;

use golden_support::{assert_no_failures, canonical, compare, inputs};
use switchyard::dialect::{anthropic, gemini, openai};

#[test]
fn openai_requests_match_their_golden_files_for_every_backend() {
    let mut failures = Vec::new();
    for input in &inputs("openai") {
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
    assert_no_failures(&failures);
}
