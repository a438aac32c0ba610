//! Fuzz target `watch_position`: see `orion_api::fuzz::watch_position`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_api::fuzz::watch_position(data));
