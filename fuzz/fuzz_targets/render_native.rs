//! cargo-fuzz target `render_native`: see `lbaas_fuzz::render_native` (fuzz/src) and fuzz/README.md.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lbaas_fuzz::render_native(data));
