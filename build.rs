//! Generates the gRPC code of every contract in proto/ with a pure-Rust protobuf compiler (protox),
//! so a fresh machine builds without a system `protoc`; and tells the end-to-end tests which real
//! components this machine lacks, so those tests are marked ignored with the reason (CI runs them
//! anyway with `--include-ignored`, where a missing component fails them).
use std::{env, path::PathBuf};

const PROTOS: &[&str] = &[
    "proto/lbaas/api/v1/api.proto",
    "proto/lbaas/scheduler/v1/scheduler.proto",
    "proto/lbaas/agent/v1/agent.proto",
    "proto/lbaas/dataplane/v1/dataplane.proto",
];

include!("build_support.rs");

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=build_support.rs");
    mark_missing_components();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let file_descriptors = protox::compile(PROTOS, ["proto"])?;
    let descriptor_path = out_dir.join("lbaas_descriptor.bin");
    std::fs::write(
        &descriptor_path,
        prost::Message::encode_to_vec(&file_descriptors),
    )?;
    tonic_prost_build::configure().compile_fds(file_descriptors)?;
    Ok(())
}
