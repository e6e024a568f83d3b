//! The `stasis` binary: parse arguments, run one subcommand, exit with its code.

mod cli;

use clap::Parser;
use cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Command::Dump(a) => cli::dump::run(a),
        Command::PreDump(a) => cli::pre_dump::run(a),
        Command::Restore(a) => cli::restore::run(a),
        Command::Checkpoint(a) => cli::checkpoint::run(a),
        Command::Gc(a) => cli::checkpoint::gc(a),
        Command::Check => cli::check::run(),
        Command::Keygen(a) => cli::store::keygen(a),
        Command::Inspect(a) => cli::inspect::run(a),
        Command::NetworkUnlock(a) => cli::network_unlock::run(a),
        Command::PageServer(a) => cli::migrate::page_server(a),
        Command::Receive(a) => cli::migrate::receive(a),
        Command::Migrate(a) => cli::migrate::run_migrate(a),
    };
    stasis::profile::report();
    std::process::exit(code);
}
