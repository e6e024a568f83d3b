//! CRIU's messages, generated at build time from the vendored `proto/rpc.proto` and
//! `proto/stats.proto` (CRIU v4.2, commit 3c7d4fa013297b431da48eff821db7f2e8b90c27, MIT).
#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/_.rs"));
