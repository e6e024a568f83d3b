//! Compiles CRIU's `rpc.proto` and `stats.proto` (vendored in `proto/`) with protox, so no
//! system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/rpc.proto", "proto/stats.proto"];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let set = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(set)?;
    Ok(())
}
