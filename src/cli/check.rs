//! `stasis check`.

use super::{EXIT_FAILED, EXIT_OK};

pub fn run() -> i32 {
    let probes = stasis::check::run_all();
    let _ = stasis::check::print(&probes, &mut std::io::stdout());
    if stasis::check::all_required_ok(&probes) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}
