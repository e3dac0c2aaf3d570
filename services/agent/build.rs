//! Tells the agent's own tests whether HAProxy is installed here (see `build_support.rs`): the
//! tests that drive the real HAProxy are marked ignored with the reason when it is not.
include!("../../build_support.rs");

fn main() {
    println!("cargo:rerun-if-changed=../../build_support.rs");
    mark_missing_components();
}
