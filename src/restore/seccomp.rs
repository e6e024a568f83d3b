//! Seccomp, the restore side of `dump/seccomp.rs`: every thread gets its filter chain back
//! (or strict mode), installed by the thread itself with `seccomp(2)`.
//!
//! Sharing: the filters at the start of every thread's chain (all of them, in a process
//! whose threads were synced with TSYNC or created after the filters) are installed once
//! in the leader with `SECCOMP_FILTER_FLAG_TSYNC`, which makes every thread share them as
//! the kernel did; what follows in each chain is installed by its thread alone. Filters
//! shared by only some threads come back as identical copies: each thread is filtered
//! exactly as before, but a later TSYNC from one of them would find the others' chains
//! foreign and fail.

use super::child::Child;
use super::staged::Staged;
use super::RestoreError;
use crate::image::seccomp::{chain, SeccompFilter, MODE_DISABLED, MODE_FILTER, MODE_STRICT};
use crate::image::task::{TaskImage, ThreadImage};
use crate::sys::inject::Remote;

const SECCOMP_SET_MODE_STRICT: u64 = 0;
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_TSYNC: u64 = 1;
/// `CAP_SYS_ADMIN`, needed for `PTRACE_O_SUSPEND_SECCOMP`.
const CAP_SYS_ADMIN: u64 = 21;
/// Scratch offsets: the `struct sock_fprog`, then the program (clear of the clone3
/// arguments at 2048..).
const FPROG_OFF: u64 = 0;
const INSNS_OFF: u64 = 4096;

/// Refuses, before any process exists, an image with seccomp that this restorer could
/// not restore: suspending the filters of the task being rebuilt needs CAP_SYS_ADMIN, and
/// a restorer that runs under no seccomp itself.
pub fn host_accepts(task: &TaskImage) -> Result<(), RestoreError> {
    if !uses_seccomp(task) {
        return Ok(());
    }
    let own = super::inherited::status()?;
    if own.cap_eff & (1 << CAP_SYS_ADMIN) == 0 || own.seccomp != MODE_DISABLED {
        return Err(RestoreError::Unsupported {
            what: format!(
                "pid {} runs under seccomp; restoring it needs CAP_SYS_ADMIN (PTRACE_O_SUSPEND_SECCOMP) and a restorer not under seccomp itself",
                task.pid
            ),
        });
    }
    Ok(())
}

fn uses_seccomp(task: &TaskImage) -> bool {
    task.threads.iter().any(|t| t.seccomp.mode != MODE_DISABLED)
}

/// Every thread's seccomp mode and filters.
///
/// Ordering requirements: after every thread exists (a thread created later would inherit
/// its creator's filters) and everything the filters could block is done by the child;
/// before the credentials drop (installing a filter without no_new_privs needs
/// CAP_SYS_ADMIN, and TSYNC would spread the leader's no_new_privs). Every thread is
/// switched to `PTRACE_O_SUSPEND_SECCOMP` first, so the syscalls still injected after
/// this stage pass; the filters act once the threads are detached. Made by single calls
/// and ptrace requests, after the pending batch ran.
pub fn restore_seccomp(s: &mut Staged, task: &TaskImage) -> Result<(), RestoreError> {
    if !uses_seccomp(task) {
        return Ok(());
    }
    s.flush()?;
    let child = s.child();
    child.task.suspend_seccomp()?;
    for t in &child.threads {
        t.task.suspend_seccomp()?;
    }
    let chains: Vec<Vec<u32>> = task
        .threads
        .iter()
        .map(|t| chain(&task.seccomp, t.seccomp.filter))
        .collect();
    let shared = shared_len(task, &chains);
    let remote = child.remote();
    for &f in &chains[0][..shared] {
        install(
            child,
            &remote,
            &task.seccomp[f as usize],
            SECCOMP_FILTER_FLAG_TSYNC,
        )?;
    }
    own_filters(child, &remote, task, &task.threads[0], &chains[0][shared..])?;
    for ((thread, t), c) in child
        .threads
        .iter()
        .zip(&task.threads[1..])
        .zip(&chains[1..])
    {
        own_filters(child, &child.remote_in(thread), task, t, &c[shared..])?;
    }
    Ok(())
}

/// How many filters every thread's chain starts with (0 unless every thread is in
/// filter mode: TSYNC would filter the others too).
fn shared_len(task: &TaskImage, chains: &[Vec<u32>]) -> usize {
    if task.threads.iter().any(|t| t.seccomp.mode != MODE_FILTER) {
        return 0;
    }
    let first = &chains[0];
    (0..first.len())
        .take_while(|&i| chains.iter().all(|c| c.get(i) == Some(&first[i])))
        .count()
}

/// The rest of thread `t`'s chain, or its strict mode, installed by the thread itself.
fn own_filters(
    child: &Child,
    remote: &Remote,
    task: &TaskImage,
    t: &ThreadImage,
    rest: &[u32],
) -> Result<(), RestoreError> {
    for &f in rest {
        install(child, remote, &task.seccomp[f as usize], 0)?;
    }
    if t.seccomp.mode == MODE_STRICT {
        remote.call(
            "seccomp(SECCOMP_SET_MODE_STRICT)",
            libc::SYS_seccomp,
            &[SECCOMP_SET_MODE_STRICT, 0, 0],
        )?;
    }
    Ok(())
}

/// `seccomp(SECCOMP_SET_MODE_FILTER, flags | the filter's own, &prog)`. With TSYNC the
/// kernel returns the tid of a thread it could not sync instead of failing.
fn install(
    child: &Child,
    remote: &Remote,
    f: &SeccompFilter,
    flags: u64,
) -> Result<(), RestoreError> {
    let prog = child.put(INSNS_OFF, &words(&f.insns))?;
    // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    let addr = child.put(FPROG_OFF, &words(&[f.insns.len() as u64, prog]))?;
    let args = [SECCOMP_SET_MODE_FILTER, flags | u64::from(f.flags), addr];
    let r = remote.call("seccomp(SECCOMP_SET_MODE_FILTER)", libc::SYS_seccomp, &args)?;
    if r != 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "seccomp TSYNC in pid {} could not sync thread {r} to its filters",
                child.pid()
            ),
        });
    }
    Ok(())
}

fn words(w: &[u64]) -> Vec<u8> {
    w.iter().flat_map(|i| i.to_ne_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::seccomp::ThreadSeccomp;

    fn with_modes(modes: &[(u32, Option<u32>)]) -> TaskImage {
        let mut t = crate::image::sample::task(10);
        t.threads = (0..modes.len())
            .map(|i| crate::image::sample::thread(10 + i as i32))
            .collect();
        for (th, &(mode, filter)) in t.threads.iter_mut().zip(modes) {
            th.seccomp = ThreadSeccomp { mode, filter };
        }
        t
    }

    #[test]
    fn common_start_of_all_chains_is_shared() {
        let t = with_modes(&[(MODE_FILTER, Some(1)), (MODE_FILTER, Some(0))]);
        assert_eq!(shared_len(&t, &[vec![0, 1], vec![0]]), 1);
        assert_eq!(shared_len(&t, &[vec![0, 1], vec![0, 1]]), 2);
        assert_eq!(shared_len(&t, &[vec![0, 1], vec![2]]), 0);
        let some_unfiltered = with_modes(&[(MODE_FILTER, Some(0)), (MODE_DISABLED, None)]);
        assert_eq!(shared_len(&some_unfiltered, &[vec![0], vec![]]), 0);
    }
}
