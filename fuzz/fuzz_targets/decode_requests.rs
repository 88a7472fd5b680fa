//! Fuzz target: `switchyard::fuzzing::decode_requests` (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::decode_requests(data));
