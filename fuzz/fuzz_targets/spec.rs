//! Fuzz target `spec`: see `orion_api::fuzz::spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_api::fuzz::spec(data));
