//! Command-line types (clap) and one file per subcommand. Each turns its arguments into
//! the library's options, calls the library, and returns the exit code.

pub mod check;
pub mod checkpoint;
pub mod compat;
pub mod dump;
pub mod inspect;
pub mod lazy;
pub mod migrate;
pub mod network_unlock;
pub mod pre_dump;
pub mod progress;
pub mod restore;
pub mod stats;
pub mod store;

use clap::{Parser, Subcommand};

/// Exit codes (documented in README.md).
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
/// Usage errors: clap exits with this code itself; so do the CRIU flags stasis refuses.
pub const EXIT_USAGE: i32 = 2;

/// stasis: checkpoint a running Linux process into an image directory and restore it.
#[derive(Parser, Debug)]
#[command(name = "stasis", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Freeze a process, save it to an image directory, then kill it (or leave it running).
    Dump(dump::DumpArgs),
    /// Save a tree's memory while it runs on and track the pages it writes next, so a
    /// later dump with --prev-images-dir stores only those (or, with --stop-tracking,
    /// disarm that tracking).
    PreDump(pre_dump::PreDumpArgs),
    /// Recreate a process from an image directory (or the latest checkpoint of a
    /// checkpoint store), with the same pid.
    Restore(restore::RestoreArgs),
    /// Checkpoint a running tree into a checkpoint store, once or on a schedule
    /// (incremental after the first); the tree runs on.
    Checkpoint(checkpoint::CheckpointArgs),
    /// Remove old checkpoints of a store, keeping the newest N restorable.
    Gc(checkpoint::GcArgs),
    /// Probe every kernel feature stasis relies on.
    Check,
    /// Make a key file for --encrypt-key/--sign (and FILE.pub for --require-signature).
    Keygen(store::KeygenArgs),
    /// Show what an image directory holds, or list a checkpoint store.
    Inspect(inspect::InspectArgs),
    /// List or lift the network locks of dumps (`stasis_<pid>` iptables chains or
    /// nftables tables), e.g. those left by a dump that is never restored.
    NetworkUnlock(network_unlock::NetworkUnlockArgs),
    /// Receive an image sent with `dump|pre-dump --page-server` into a directory (a
    /// chain: each image in its own subdirectory); ends once the dump's image is stored.
    PageServer(migrate::PageServerCmd),
    /// Receive a migration (`stasis migrate --to`): store each round, restore the last
    /// one detached and tell the source.
    Receive(migrate::ReceiveCmd),
    /// Move a running tree to `stasis receive` on another host: pre-copy rounds, then
    /// the final dump; the source is killed once the target runs it.
    Migrate(migrate::MigrateCmd),
}

/// Prints an error and its causes on one line, CRIU-user friendly.
pub fn report(err: &dyn std::error::Error) {
    eprintln!("stasis: {}", stasis::error_line(err));
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Args, FromArgMatches};

    /// `A` parsed from no argument at all.
    fn parsed_from_nothing<A: Args + FromArgMatches>() -> A {
        let command = A::augment_args(clap::Command::new("x"));
        let mut matches = command.get_matches_from(["x"]);
        A::from_arg_matches_mut(&mut matches).expect("no argument parses")
    }

    /// `main.rs` gives the options its common parser leaves out their `Default`: it must
    /// be what clap gives when none of them is on the command line.
    #[test]
    fn defaults_of_the_rarer_options_are_clap_s() {
        let dump: dump::DumpMore = parsed_from_nothing();
        assert_eq!(
            format!("{dump:?}"),
            format!("{:?}", dump::DumpMore::default())
        );
        let restore: restore::RestoreMore = parsed_from_nothing();
        let default = restore::RestoreMore::default();
        assert_eq!(format!("{restore:?}"), format!("{default:?}"));
    }
}
