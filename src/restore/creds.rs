//! Credentials, the restore side of `dump/creds.rs`: securebits, groups, gids, uids, the
//! five capability sets, then what a credential change resets (dumpable, parent-death
//! signal, see `restore/prctl.rs`) and finally no_new_privs.
//!
//! Linux keeps all of these but dumpable per thread (`struct cred`, `task->atomic_flags`),
//! so every thread of the process runs the whole sequence itself.

use super::staged::Staged;
use super::RestoreError;
use crate::abi::{CapData, CapHeader, CAP_VERSION_3};
use crate::image::task::{Caps, Creds, TaskImage, ThreadImage};
use crate::sys::batch::{Batch, Out};
use crate::sys::inherit;
use crate::sys::inject::Remote;

const SECBIT_KEEP_CAPS: u64 = 1 << 4;
const PR_CAP_AMBIENT_RAISE: u64 = 2;

/// All credentials of every thread; the process drops its privileges here.
///
/// Ordering requirements: the other threads first, the leader last: the leader runs the
/// later stages (signals, seals, the helper's unmapping), and a credential change in any
/// thread resets the process-wide dumpable flag, which the leader sets for good last.
/// Each thread's calls go to its pending batch, after those of the earlier stages, which
/// still run privileged (the other threads' batches run before the leader's). A change
/// of ids runs them first (see [`thread_creds`]).
pub fn restore_creds(s: &mut Staged, task: &TaskImage) -> Result<(), RestoreError> {
    let child = s.child();
    let in_userns = crate::restore::ns::user::active();
    let kept = match super::inherited::status() {
        // The child has the restorer's own capabilities, inherited through clone3 (not
        // once it joined a user namespace of the tree's: all of them there).
        Ok(me) if !in_userns => me.cap_prm,
        _ => {
            s.flush()?;
            let remote = child.remote();
            let mut b = remote.batch();
            let kept = capget(&mut b);
            remote.run(&b)?.get(kept).permitted()
        }
    };
    let all = task.threads.iter().map(|t| (t.tid, task.creds_of(t.tid)));
    for (tid, creds) in all {
        check_caps(task.pid, tid, &creds.caps, kept)?;
    }
    let change = |t: &ThreadImage| !inherited(task.creds_of(t.tid));
    if task.threads.iter().any(change) {
        s.flush()?; // set_ids runs a batch of its own in each thread
    }
    for (thread, (i, t)) in child
        .threads
        .iter()
        .zip(task.threads.iter().enumerate().skip(1))
    {
        thread_creds(&child.remote_in(thread), s.batch_of(i), task, t, change(t))?;
    }
    let leader = &task.threads[0];
    thread_creds(&child.remote(), s.batch(), task, leader, change(leader))
}

/// Whether `c` is what every thread of the child already has: the restorer's own ids,
/// groups, capabilities and securebits, inherited through `clone3` (no earlier stage
/// changes them). Then only the attributes after the credentials are set.
fn inherited(c: &Creds) -> bool {
    // A process that joined the tree's user namespace got new capabilities there.
    if crate::restore::ns::user::active() {
        return false;
    }
    let Ok(me) = super::inherited::status() else {
        return false;
    };
    let own_caps = Caps {
        inheritable: me.cap_inh,
        permitted: me.cap_prm,
        effective: me.cap_eff,
        bounding: me.cap_bnd,
        ambient: me.cap_amb,
    };
    inherit::own_securebits() == Ok(c.securebits)
        && (me.uid, me.gid, &me.groups[..], own_caps) == (c.uid, c.gid, &c.groups[..], c.caps)
}

/// The credentials of the thread behind `remote`, which is `t` (its own if it had
/// credentials other than the leader's): steps 1-2 run now, the others are added to `b`,
/// that thread's pending batch.
///
/// Ordering requirements:
/// 1. `SECBIT_KEEP_CAPS` before the uid change, so the permitted set survives it;
/// 2. groups, gids, uids;
/// 3. `capset` with every kept capability effective, to hold `CAP_SETPCAP` for:
/// 4. bounding-set drops, then ambient raises (before securebits, which may forbid them),
///    then the saved securebits (needs `CAP_SETPCAP`);
/// 5. the saved `capset`: after it the thread may be unprivileged;
/// 6. dumpable and the parent-death signal (reset by steps 2-5), no_new_privs last.
///
/// With `change` false (the thread has these credentials already) steps 1-5 are skipped.
/// Two batches at most: steps 1-2 with a `capget` of what was kept, then the rest.
fn thread_creds(
    remote: &Remote,
    b: &mut Batch,
    task: &TaskImage,
    t: &ThreadImage,
    change: bool,
) -> Result<(), RestoreError> {
    let creds = task.creds_of(t.tid);
    if change {
        let ids = inside(creds, task.pid, t.tid)?;
        let kept = set_ids(remote, &ids)?;
        set_caps(b, creds, kept)?;
    }
    super::prctl::restore_after_creds(b, &task.attrs, t.pdeathsig);
    if creds.no_new_privs {
        let args = [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0];
        b.call("prctl(PR_SET_NO_NEW_PRIVS)", libc::SYS_prctl, &args);
    }
    Ok(())
}

/// The ids a thread is given, as its user namespace names them; `groups` is `None`
/// when the thread keeps those it has (the restorer's).
struct Ids {
    groups: Option<Vec<u32>>,
    gid: [u32; 4],
    uid: [u32; 4],
}

/// The saved ids of thread `tid` of `pid` translated into the tree's user namespace
/// (the same without one, see `restore/ns/user.rs`); an id it lacks is kept if the
/// thread has it already (`u32::MAX`), else refused.
fn inside(c: &Creds, pid: i32, tid: i32) -> Result<Ids, RestoreError> {
    use crate::restore::ns::user;
    let me = super::inherited::status()?;
    let refuse = |what: &str, id: u32| RestoreError::Unsupported {
        what: format!(
            "thread {tid} of pid {pid} had {what} {id}, which the tree's user namespace does \
             not map and the restorer does not have"
        ),
    };
    let map = |ids: [u32; 4], own: [u32; 4], f: fn(u32, u32) -> Option<u32>, what| {
        let mut out = [0; 4];
        for i in 0..4 {
            out[i] = f(ids[i], own[i]).ok_or_else(|| refuse(what, ids[i]))?;
        }
        Ok::<_, RestoreError>(out)
    };
    let groups = if user::active() && c.groups == me.groups {
        None
    } else if !user::setgroups_allowed() {
        return Err(RestoreError::Unsupported {
            what: format!(
                "thread {tid} of pid {pid} had groups {:?}, not the restorer's, and its user \
                 namespace denies setgroups",
                c.groups
            ),
        });
    } else {
        let inside = c
            .groups
            .iter()
            .map(|&g| user::gid(g, u32::MAX).ok_or_else(|| refuse("group", g)));
        Some(inside.collect::<Result<_, _>>()?)
    };
    Ok(Ids {
        groups,
        gid: map(c.gid, me.gid, user::gid, "gid")?,
        uid: map(c.uid, me.uid, user::uid, "uid")?,
    })
}

/// Steps 1-2 of [`thread_creds`]; returns the permitted capabilities kept.
fn set_ids(remote: &Remote, c: &Ids) -> Result<u64, RestoreError> {
    let mut b = remote.batch();
    set_securebits(&mut b, SECBIT_KEEP_CAPS);
    if let Some(groups) = &c.groups {
        let bytes: Vec<u8> = groups.iter().flat_map(|g| g.to_ne_bytes()).collect();
        let addr = b.put(&bytes);
        b.call(
            "setgroups",
            libc::SYS_setgroups,
            &[groups.len() as u64, addr],
        );
    }
    b.call(
        "setresgid",
        libc::SYS_setresgid,
        &[c.gid[0].into(), c.gid[1].into(), c.gid[2].into()],
    );
    b.call("setfsgid", libc::SYS_setfsgid, &[c.gid[3].into()]);
    b.call(
        "setresuid",
        libc::SYS_setresuid,
        &[c.uid[0].into(), c.uid[1].into(), c.uid[2].into()],
    );
    b.call("setfsuid", libc::SYS_setfsuid, &[c.uid[3].into()]);
    let kept = capget(&mut b);
    let done = remote.run(&b)?;
    Ok(done.get(kept).permitted())
}

/// Steps 3-5 of [`thread_creds`], added to `b`.
fn set_caps(b: &mut Batch, c: &Creds, kept: u64) -> Result<(), RestoreError> {
    capset(b, CapData::new(kept, kept, c.caps.inheritable));
    drop_bounding(b, c.caps.bounding)?;
    raise_ambient(b, c.caps.ambient);
    set_securebits(b, u64::from(c.securebits));
    let caps = &c.caps;
    capset(
        b,
        CapData::new(caps.effective, caps.permitted, caps.inheritable),
    );
    Ok(())
}

/// Refuses capabilities the child cannot get: permitted ones the restorer lacks, and
/// bounding-set members it lacks (a bounding set only shrinks).
fn check_caps(pid: i32, tid: i32, caps: &Caps, kept: u64) -> Result<(), RestoreError> {
    let last = cap_last_cap()?;
    let valid = if last >= 63 {
        !0
    } else {
        (1u64 << (last + 1)) - 1
    };
    let missing_prm = caps.permitted & valid & !kept;
    let missing_bnd = caps.bounding & valid & !kept;
    if missing_prm | missing_bnd != 0 {
        return Err(RestoreError::Unsupported {
            what: format!(
                "thread {tid} of pid {pid} had capabilities {:#x} that the restorer does not have; restore from a process holding them",
                missing_prm | missing_bnd
            ),
        });
    }
    Ok(())
}

/// `/proc/sys/kernel/cap_last_cap`, read once per run: it is fixed for the kernel's
/// lifetime.
fn cap_last_cap() -> Result<u32, RestoreError> {
    static LAST: std::sync::OnceLock<Result<u32, String>> = std::sync::OnceLock::new();
    let path = "/proc/sys/kernel/cap_last_cap";
    let read = || {
        let text = std::fs::read_to_string(path).map_err(|e| format!("read {path}: {e}"))?;
        text.trim().parse().map_err(|e| format!("{path}: {e}"))
    };
    let last = LAST.get_or_init(read).as_ref();
    last.copied()
        .map_err(|what| RestoreError::Unsupported { what: what.clone() })
}

fn set_securebits(b: &mut Batch, bits: u64) {
    let args = [libc::PR_SET_SECUREBITS as u64, bits];
    b.call("prctl(PR_SET_SECUREBITS)", libc::SYS_prctl, &args);
}

fn header(b: &mut Batch) -> u64 {
    b.put_pod(&CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    })
}

/// `capget` of the thread running `b`.
fn capget(b: &mut Batch) -> Out<CapData> {
    let hdr = header(b);
    let data = b.out::<CapData>();
    b.call("capget", libc::SYS_capget, &[hdr, data.addr()]);
    data
}

fn capset(b: &mut Batch, caps: CapData) {
    let hdr = header(b);
    let data = b.put_pod(&caps);
    b.call("capset", libc::SYS_capset, &[hdr, data]);
}

/// Drops from the bounding set every capability this kernel knows that `keep` lacks.
fn drop_bounding(b: &mut Batch, keep: u64) -> Result<(), RestoreError> {
    for cap in (0..=cap_last_cap()?.min(63)).filter(|c| keep & (1 << c) == 0) {
        let args = [libc::PR_CAPBSET_DROP as u64, u64::from(cap)];
        b.call("prctl(PR_CAPBSET_DROP)", libc::SYS_prctl, &args);
    }
    Ok(())
}

fn raise_ambient(b: &mut Batch, ambient: u64) {
    for cap in (0..64u64).filter(|c| ambient & (1 << c) != 0) {
        let args = [libc::PR_CAP_AMBIENT as u64, PR_CAP_AMBIENT_RAISE, cap, 0, 0];
        b.call("prctl(PR_CAP_AMBIENT_RAISE)", libc::SYS_prctl, &args);
    }
}
