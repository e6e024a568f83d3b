//! The `stasis` binary: parse arguments, run one subcommand, exit with its code.

mod cli;

use std::ffi::OsString;

use clap::{Args, FromArgMatches, Parser};
use cli::{Cli, Command};

fn main() {
    // The CPU's answers a dump needs are asked on another thread while this one parses,
    // checks and freezes (`sys::cpu::warm_up`: each `cpuid` is ~25 µs in a virtual
    // machine). Not for a restore: it checksums its image right away.
    if std::env::args_os().nth(1).is_some_and(|a| a == "dump") {
        stasis::sys::cpu::warm_up();
    }
    let code = match parse() {
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

/// The command line's subcommand. Clap builds the parser of every subcommand before it
/// parses one; for `dump` and `restore`, which scripts run most and time, only the parser
/// of their common options is built (`DumpCore`, `RestoreCore`: half of their options,
/// without CRIU's names, the page server's and the image store's), and the others take
/// their defaults. Anything that parser does not accept (another option, help, an error)
/// goes through the whole parser, so usage and error texts are unchanged.
fn parse() -> Command {
    parse_from(std::env::args_os().collect())
}

fn parse_from(args: Vec<OsString>) -> Command {
    let one = match args.get(1).and_then(|a| a.to_str()) {
        Some("dump") => parse_one::<cli::dump::DumpCore>("dump", &args[1..])
            .filter(|core| core.dir.is_some())
            .map(|core| cli::dump::DumpArgs {
                core,
                more: Default::default(),
            })
            .map(Command::Dump),
        Some("restore") => parse_one::<cli::restore::RestoreCore>("restore", &args[1..])
            .filter(|core| core.dir.is_some())
            .map(|core| cli::restore::RestoreArgs {
                core,
                more: Default::default(),
            })
            .map(Command::Restore),
        _ => None,
    };
    one.unwrap_or_else(|| Cli::parse_from(args).command)
}

/// `args` (the subcommand's name first) parsed by the parser of `A` alone.
fn parse_one<A: Args + FromArgMatches>(name: &'static str, args: &[OsString]) -> Option<A> {
    let command = A::augment_args(clap::Command::new(name));
    let mut matches = command.try_get_matches_from(args).ok()?;
    A::from_arg_matches_mut(&mut matches).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    /// The common path and the whole parser give the same options.
    #[test]
    fn the_common_parser_agrees_with_the_whole_one() {
        for line in [
            "stasis dump -t 42 -D /tmp/img",
            "stasis dump -t 42 -D /tmp/img -R --track-mem -j --stats-json s --timeout 3",
            "stasis dump --tree=7 --images-dir=/x --ghost-limit 2M --file-locks -x -q",
            "stasis restore -D /tmp/img -d",
            "stasis restore -D /tmp/img --pidfile p -j --tcp-close --join-ns net:/n -q",
        ] {
            let common = format!("{:?}", parse_from(words(line)));
            let whole = format!("{:?}", Cli::parse_from(words(line)).command);
            assert_eq!(common, whole, "{line}");
        }
    }
}
