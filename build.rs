//! Generates the `upid.v1` wire types from `proto/` with a pure-Rust protobuf
//! compiler (protox), so a fresh machine builds with cargo alone: no `protoc`.

use std::path::PathBuf;

use prost::Message;

const PROTO_ROOT: &str = "proto";
const PROTO_FILES: &[&str] = &[
    "upid/v1/samples.proto",
    "upid/v1/inventory.proto",
    "upid/v1/analysis.proto",
    "upid/v1/updates.proto",
    "upid/v1/agent.proto",
    "upid/v1/query.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for file in PROTO_FILES {
        println!("cargo:rerun-if-changed={PROTO_ROOT}/{file}");
    }
    let fds = protox::compile(PROTO_FILES, [PROTO_ROOT])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC server reflection in the collector.
    std::fs::write(out_dir.join("upid_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
