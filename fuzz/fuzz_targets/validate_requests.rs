//! cargo-fuzz target `validate_requests`: see `lbaas_fuzz::validate_requests` (fuzz/src) and fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbaas_fuzz::validate_requests(data));
