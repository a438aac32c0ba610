//! Fuzz target `token`: see `orion_tls::fuzz::token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_tls::fuzz::token(data));
