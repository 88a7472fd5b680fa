//! Fuzz target: `switchyard::fuzzing::load_config` (see src/fuzzing.rs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| switchyard::fuzzing::load_config(data));
