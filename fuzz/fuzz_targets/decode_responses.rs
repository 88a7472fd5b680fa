//! Fuzz target: `switchyard::fuzzing::decode_responses` (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::decode_responses(data));
