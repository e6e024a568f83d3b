//! `stasis-criu`, installed as `criu`: CRIU's `swrk` RPC and command line in front of the
//! stasis library (one implementation, two front ends). See docs/criu-compat.md.

mod channel;
mod cli;
mod job;
mod lazy;
mod log;
mod notify;
mod opts;
mod page_server;
mod proto;
mod stats;
mod swrk;

use clap::Parser;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let code = match args.get(1).map(String::as_str) {
        Some("swrk") => match args.get(2).and_then(|n| n.parse().ok()) {
            Some(fd) => swrk::serve(fd),
            None => {
                eprintln!("Error (stasis): usage: criu swrk FD");
                1
            }
        },
        _ => cli::run(cli::Cli::parse()),
    };
    std::process::exit(code);
}
