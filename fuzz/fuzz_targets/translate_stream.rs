//! Fuzz target: `switchyard::fuzzing::translate_stream` (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::translate_stream(data));
