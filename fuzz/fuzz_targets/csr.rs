//! Fuzz target `csr`: see `orion_tls::fuzz::csr`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| orion_tls::fuzz::csr(data));
