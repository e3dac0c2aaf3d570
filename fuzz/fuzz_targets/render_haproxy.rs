//! cargo-fuzz target `render_haproxy`: see `lbaas_fuzz::render_haproxy` (fuzz/src) and fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbaas_fuzz::render_haproxy(data));
