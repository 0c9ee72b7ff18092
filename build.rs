//! Compiles `proto/helix/remote/v1/*.proto` into Rust with tonic's prost codegen.
//!
//! protoc comes from the `protoc-bin-vendored` crate (with its well-known-type includes), so a
//! fresh machine needs no system protoc.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let wkt_include = protoc_bin_vendored::include_path()?;

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);

    let protos = ["proto/helix/remote/v1/remote.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("helix_remote_v1_descriptor.bin"))
        .compile_with_config(
            config,
            &protos.map(PathBuf::from),
            &[PathBuf::from("proto"), wkt_include],
        )?;
    Ok(())
}
