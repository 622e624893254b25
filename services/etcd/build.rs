//! Compiles berth's subset of etcd's v3 API (../../proto/etcd/rpc.proto) with protox (pure
//! Rust, no system protoc) into a tonic client.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest.join("../../proto/etcd");
    let proto = root.join("rpc.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile(["rpc.proto"], [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
