//! Fuzz target `agent_frames`: see `orion_api::fuzz::agent_frames`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_api::fuzz::agent_frames(data));
