//! The restored process's shell: a child created with the exact pid, seized, and given a
//! helper (a code page with a `syscall` instruction and the batch stub of `sys/batch.rs`,
//! then scratch space) in a hole of the target's address space, from which every later
//! step runs. The helper page is the last thing
//! unmapped before the task resumes. The other threads of the process (see `threads.rs`)
//! run their syscalls from the same helper.

use std::cell::RefCell;

use super::verify::Special;
use super::RestoreError;
use crate::abi::{CloneArgs, GpRegs};
use crate::image::mm::Vma;
use crate::sys::batch::{Area, Batch, STUB};
use crate::sys::clone::clone_with_pid;
use crate::sys::inject::{InjectError, Remote};
use crate::sys::mem::Mem;
use crate::sys::ptrace::{self, Seized, Stop};
use crate::sys::Pod;

/// Size of the helper mapping: one page of code, the rest scratch.
pub const HELPER_LEN: u64 = 256 * 1024;
/// `syscall; int3; int3` — the int3s are never reached: every call stops at syscall exit,
/// and a thread created from here stops before its first instruction (it is attached
/// through `CLONE_PTRACE`). Should stasis die and the task run on from the helper,
/// the int3 raises a SIGTRAP that, blocked, kills the half-built process.
const HELPER_CODE: [u8; 4] = [0x0f, 0x05, 0xcc, 0xcc];
/// Offset of the batch stub (`sys/batch.rs`) in the helper's code page.
const STUB_OFF: u64 = 64;
/// The last page of the helper is the stack `clone3` gives new threads. No thread runs
/// user code on it: each is stopped before its first instruction and leaves with its own
/// saved registers.
const THREAD_STACK_LEN: u64 = 4096;
const RSEQ_FLAG_UNREGISTER: u64 = 1;

/// A child being restored: seized, every signal blocked, running our syscalls.
pub struct Child {
    pub task: Seized,
    pub mem: Mem,
    /// Registers at the takeover, the base for every injected call.
    pub base: GpRegs,
    pub helper: u64,
    /// The other threads, in image order, once created.
    pub threads: Vec<Thread>,
    /// Where its vvar/vvar_vclock/vdso mappings are: inherited (from stasis for the root,
    /// else from the parent, whose own were moved to their saved places before it forked),
    /// then moved by `mm::clear_and_move_vdso`. Followed rather than read back from
    /// `/proc/PID/maps`.
    pub specials: RefCell<Vec<Special>>,
}

impl Child {
    /// The child once its helper page is in place, before it has other threads.
    fn taken_over(
        task: Seized,
        mem: Mem,
        base: GpRegs,
        helper: u64,
        specials: Vec<Special>,
    ) -> Child {
        Child {
            task,
            mem,
            base,
            helper,
            threads: Vec::new(),
            specials: RefCell::new(specials),
        }
    }
}

/// A thread of the child other than the leader, created by `clone3` from the helper.
pub struct Thread {
    pub task: Seized,
    /// Registers at its first stop, the base for every call injected into it.
    pub base: GpRegs,
}

impl Child {
    pub fn pid(&self) -> i32 {
        self.task.tid()
    }

    pub fn remote(&self) -> Remote<'_> {
        Remote::new(&self.task, self.helper, self.base).with_area(self.area())
    }

    /// A remote running syscalls in `thread` from the helper.
    pub fn remote_in<'a>(&self, thread: &'a Thread) -> Remote<'a> {
        Remote::new(&thread.task, self.helper, thread.base).with_area(self.area())
    }

    /// Where a thread created by a batch of `clone3`s starts: right after the stub's
    /// `syscall`.
    pub fn batch_call_return(&self) -> u64 {
        self.helper + STUB_OFF + crate::sys::batch::STUB_CALL_RETURN
    }

    /// Where batches run: the stub in the code page, the scratch space (not the threads'
    /// stack page) for their data and table. A batch overwrites what single calls put
    /// into scratch.
    fn area(&self) -> Area {
        Area {
            stub: Some(self.helper + STUB_OFF),
            region: self.scratch(),
            len: HELPER_LEN - 4096 - THREAD_STACK_LEN,
        }
    }

    /// `(stack, size)` for `clone3`: the helper's last page.
    pub fn thread_stack(&self) -> (u64, u64) {
        (
            self.helper + HELPER_LEN - THREAD_STACK_LEN,
            THREAD_STACK_LEN,
        )
    }

    /// SIGKILL the half-built process and reap every thread, then the leader.
    pub fn kill_and_reap(self) {
        let pid = self.pid();
        let _ = self.task.sigkill();
        for t in self.threads {
            let _ = t.task.reap();
        }
        kill_and_reap(pid);
        self.task.forget();
    }

    /// The fd number the child's next `open` gets: the lowest free one (for batches that
    /// predict it, see `sys/batch.rs`).
    pub fn lowest_free_fd(&self) -> Result<u64, RestoreError> {
        Ok(self.free_fds(1)?[0])
    }

    /// The fd numbers `n` opens in a row get: the `n` lowest free ones.
    pub fn free_fds(&self, n: usize) -> Result<Vec<u64>, RestoreError> {
        let mut table = self.fd_table();
        let mut free = Vec::with_capacity(n);
        let mut from = 0;
        for _ in 0..n {
            let fd = table.lowest_free(from)?;
            free.push(fd);
            from = fd + 1;
        }
        Ok(free)
    }

    /// The child's fd table, asked number by number.
    pub fn fd_table(&self) -> super::fdtable::FdTable {
        super::fdtable::FdTable::of(self.pid())
    }

    /// Scratch space: `HELPER_LEN - 4096` bytes after the code page (the last page is
    /// also the new threads' stack).
    pub fn scratch(&self) -> u64 {
        self.helper + 4096
    }

    /// Writes `bytes` into scratch at `off` and returns their address in the task.
    pub fn put(&self, off: u64, bytes: &[u8]) -> Result<u64, RestoreError> {
        let addr = self.scratch() + off;
        self.mem.write(addr, bytes)?;
        Ok(addr)
    }

    /// Writes a NUL-terminated string into scratch at `off`.
    pub fn put_str(&self, off: u64, s: &str) -> Result<u64, RestoreError> {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        self.put(off, &bytes)
    }

    pub fn put_pod<T: Pod>(&self, off: u64, v: &T) -> Result<u64, RestoreError> {
        self.put(off, v.as_bytes())
    }

    /// A duplicate of the child's fd `fd` in stasis (`pidfd_getfd`: the same open file
    /// description), to fill it with data from stasis's side.
    pub fn steal(&self, fd: u64) -> Result<std::os::fd::OwnedFd, RestoreError> {
        use std::os::fd::AsFd;
        let pid = nix::unistd::Pid::from_raw(self.pid());
        let fail = |e: nix::errno::Errno| RestoreError::Unsupported {
            what: format!("pidfd_getfd of fd {fd} of pid {pid}: {}", e.desc()),
        };
        let pidfd = crate::sys::probe::pidfd_open(pid).map_err(fail)?;
        crate::sys::probe::pidfd_getfd(pidfd.as_fd(), fd as i32).map_err(fail)
    }
}

/// Creates the process with `pid` (in the new namespaces of `ns_flags`, e.g.
/// `CLONE_NEWIPC`; its ids in nested pid namespaces from `ns::pid`), seizes it and
/// installs the helper page.
///
/// Ordering requirements: the inherited rseq registration is dropped before anything of
/// the old address space goes away (the kernel would write into it on every return to
/// user space), and all signals stay blocked from here to the final resume.
pub fn create(pid: i32, target: &[Vma], ns_flags: u64) -> Result<Child, RestoreError> {
    let mut flags = ns_flags;
    if ROOT_SIBLING.load(std::sync::atomic::Ordering::Relaxed) {
        flags |= libc::CLONE_PARENT as u64;
    }
    let got = clone_with_pid(&super::ns::pid::set_tid(pid), flags)?;
    let task = ptrace::seize_silent(got)?;
    let guard = KillOnDrop(got);
    let mem = Mem::open(got, true)?;
    let base = stop_in_pause(&task, &mem)?;
    task.set_sigmask(!0)?;
    let entry = Remote::new(&task, base.rip - 2, base);
    if let Some(rseq) = task.rseq()? {
        let args = [
            rseq.rseq_abi_pointer,
            u64::from(rseq.rseq_abi_size),
            RSEQ_FLAG_UNREGISTER,
            u64::from(rseq.signature),
        ];
        entry.call("rseq(unregister)", libc::SYS_rseq, &args)?;
    }
    let helper = map_helper(&entry, got, target)?;
    write_code(&mem, helper)?;
    let specials = super::verify::own_specials()?;
    std::mem::forget(guard);
    Ok(Child::taken_over(task, mem, base, helper, specials))
}

/// Whether the root is made the restorer's sibling (`CLONE_PARENT`): CRIU's
/// `rst_sibling`, for a caller that must be the restored root's parent.
pub static ROOT_SIBLING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A task for a batch of `clone3`s to create: a process or a thread.
pub struct NewTask {
    /// Its pid or tid (`set_tid`).
    pub id: i32,
    /// Clone flags (`CLONE_PTRACE` is added).
    pub flags: u64,
    pub exit_signal: u64,
    /// `(stack, stack_size)`, or zeros for a copy of the creator's stack.
    pub stack: (u64, u64),
}

impl NewTask {
    /// Adds to `b` the `clone3` that creates this task, with `CLONE_PTRACE` so that the
    /// kernel attaches it to us; the batch stops unless it returns the task's id (as its
    /// creator, task `creator`, sees it: in a pid namespace, its id there).
    pub fn add_clone3(&self, b: &mut Batch, creator: i32, name: &'static str) {
        let thread = self.flags & libc::CLONE_THREAD as u64 != 0;
        let ids = super::ns::pid::set_tid_in_tree(self.id, thread);
        let bytes: Vec<u8> = ids.iter().flat_map(|i| i.to_ne_bytes()).collect();
        // clone3 refuses a set_tid array of no ids.
        let set_tid = if ids.is_empty() { 0 } else { b.put(&bytes) };
        let args = CloneArgs {
            flags: self.flags | libc::CLONE_PTRACE as u64,
            exit_signal: self.exit_signal,
            stack: self.stack.0,
            stack_size: self.stack.1,
            set_tid,
            set_tid_size: ids.len() as u64,
            ..CloneArgs::default()
        };
        let addr = b.put_pod(&args);
        let size = std::mem::size_of::<CloneArgs>() as u64;
        let seen = super::ns::pid::view(creator, self.id) as u64;
        b.expect(name, libc::SYS_clone3, &[addr, size], seen);
    }
}

/// A process to create as a child of a restored parent.
#[derive(Clone, Copy, Debug)]
pub struct Fork {
    pub pid: i32,
    pub exit_signal: i32,
    /// `CLONE_FILES` / `CLONE_FS` / `CLONE_VM` / `CLONE_SIGHAND` as the process shared
    /// them with its parent, and `CLONE_PARENT` for a sibling of its creator.
    pub share: u64,
}

/// Creates processes `forks` as children of `parent`, with one batch of `clone3`s
/// (`set_tid` = each one's pid) run by the parent, with `exit_signal` and, if the process
/// shared them with its parent, `CLONE_FILES` / `CLONE_FS` / `CLONE_VM` /
/// `CLONE_SIGHAND`. The kernel attaches each to us (`CLONE_PTRACE`: the parent, seized
/// with [`ptrace::seize_silent`], does not stop for it); it starts as a copy of the parent, stopped where `clone3` returns in the parent's helper. With
/// `CLONE_VM` it runs in the parent's address space, on the helper's last page as stack,
/// like a new thread. Returns the new tasks, in order, each still to report its first stop
/// ([`adopt_fork`]), also when the batch failed part way (the error then names the first
/// pid not created).
///
/// Ordering requirements: the parent's memory is as saved (its children keep what they
/// still share with it copy-on-write), it still has every signal blocked (the children
/// inherit the mask) and is still privileged (`set_tid` needs CAP_CHECKPOINT_RESTORE).
pub fn fork_many(parent: &Child, forks: &[Fork]) -> (Vec<Seized>, Result<(), RestoreError>) {
    if super::ns::pid::steered(false) && forks.len() > 1 {
        // One batch each: every host pid is steered right before its clone.
        let mut tasks = Vec::new();
        for f in forks {
            let (made, r) = fork_many(parent, std::slice::from_ref(f));
            tasks.extend(made);
            if r.is_err() {
                return (tasks, r);
            }
        }
        return (tasks, Ok(()));
    }
    let steered = forks
        .first()
        .map_or(Ok(()), |f| super::ns::pid::steer(f.pid, false));
    if let Err(e) = steered {
        return (Vec::new(), Err(e));
    }
    let remote = parent.remote();
    let mut b = remote.batch();
    for f in forks {
        let stack = if f.share & libc::CLONE_VM as u64 != 0 {
            parent.thread_stack()
        } else {
            (0, 0)
        };
        // clone3 takes no exit signal with CLONE_PARENT: the creator's own is used.
        let exit_signal = match f.share & libc::CLONE_PARENT as u64 {
            0 => f.exit_signal as u64,
            _ => 0,
        };
        let task = NewTask {
            id: f.pid,
            flags: f.share | super::ns::pid::clone_flags(f.pid),
            exit_signal,
            stack,
        };
        task.add_clone3(&mut b, parent.pid(), "clone3(process)");
    }
    let (made, r) = remote.run_creating(&b);
    let r = r.map(drop).map_err(|e| match e {
        InjectError::Failed {
            source: nix::errno::Errno::EEXIST,
            ..
        } => crate::sys::clone::CloneError::PidTaken {
            pid: forks[made.min(forks.len() - 1)].pid,
        }
        .into(),
        e => RestoreError::from(e),
    });
    let r = r.and_then(|()| {
        let check = |f: &Fork| super::ns::pid::check_steered(f.pid, f.pid);
        forks[..made].iter().try_for_each(check)
    });
    let tasks = forks[..made].iter().map(|f| ptrace::adopt(f.pid)).collect();
    (tasks, r)
}

/// Takes over process `pid`, created by [`fork_many`] from `parent`: waits for its first
/// stop, checks where it is, and gives it a helper: its parent's, unless that lies where
/// one of its own mappings (`target`) must go.
pub fn adopt_fork(
    parent: &Child,
    pid: i32,
    task: Seized,
    target: &[Vma],
) -> Result<Child, RestoreError> {
    let guard = KillOnDrop(task.tid());
    match ptrace::wait_tid(task.tid())? {
        Stop::Event(_) => {}
        other => return Err(task.unexpected("clone3 start", other).into()),
    }
    let base = task.regs()?;
    if task.tid() != pid || base.rip != parent.batch_call_return() {
        return Err(RestoreError::Unsupported {
            what: format!(
                "pid {pid} was created as {} at {:#x}, not in the helper of its parent {}",
                task.tid(),
                base.rip,
                parent.pid()
            ),
        });
    }
    // Opened only if needed: most children never write outside the batches.
    let mem = Mem::lazy(pid, true);
    let inherited = parent.helper;
    let clash = target
        .iter()
        .any(|v| v.start < inherited + HELPER_LEN && v.end > inherited);
    let helper = if clash {
        let entry = Remote::new(&task, inherited, base);
        let at = map_helper(&entry, pid, target)?;
        write_code(&mem, at)?;
        at
    } else {
        inherited
    };
    let specials = parent.specials.borrow().clone();
    std::mem::forget(guard);
    Ok(Child::taken_over(task, mem, base, helper, specials))
}

/// The helper's code: the single `syscall` at its start, the batch stub after it.
fn write_code(mem: &Mem, helper: u64) -> Result<(), RestoreError> {
    mem.write(helper, &HELPER_CODE)?;
    mem.write(helper + STUB_OFF, &STUB)?;
    Ok(())
}

/// Stops the child where it waits in `pause()`, so `rip - 2` is a `syscall` instruction.
fn stop_in_pause(task: &Seized, mem: &Mem) -> Result<GpRegs, RestoreError> {
    for _ in 0..1000 {
        match task.interrupt()? {
            Stop::Event(_) => {}
            other => return Err(task.unexpected("takeover", other).into()),
        }
        let regs = task.regs()?;
        let mut insn = [0u8; 2];
        if regs.orig_rax == libc::SYS_pause as u64
            && mem.read(regs.rip - 2, &mut insn).is_ok()
            && insn == [0x0f, 0x05]
        {
            return Ok(regs);
        }
        task.cont()?;
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    Err(RestoreError::Unsupported {
        what: format!("pid {} never reached its parking syscall", task.tid()),
    })
}

/// Kills and reaps a half-made child if takeover fails.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_and_reap(self.0);
    }
}

/// SIGKILL `pid` and reap it (it is our child or tracee), within the bound of waits.
pub fn kill_and_reap(pid: i32) {
    let p = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
    let _ = ptrace::adopt(pid).reap();
}

fn map_helper(entry: &Remote, pid: i32, target: &[Vma]) -> Result<u64, RestoreError> {
    let own = crate::proc::maps(pid).map_err(|e| RestoreError::Unsupported {
        what: e.to_string(),
    })?;
    let mut taken: Vec<(u64, u64)> = target.iter().map(|v| (v.start, v.end)).collect();
    taken.extend(own.iter().map(|m| (m.start, m.end)));
    let at = find_hole(&mut taken, HELPER_LEN).ok_or_else(|| RestoreError::Unsupported {
        what: format!(
            "no room for the {HELPER_LEN}-byte restore helper in the address space of pid {pid}"
        ),
    })?;
    let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
    let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE) as u64;
    entry.call(
        "mmap(helper)",
        libc::SYS_mmap,
        &[at, HELPER_LEN, prot, flags, u64::MAX, 0],
    )?;
    Ok(at)
}

/// Lowest gap of `len` bytes above 4 GiB (clear of low fixed mappings) among `taken`.
pub fn find_hole(taken: &mut [(u64, u64)], len: u64) -> Option<u64> {
    taken.sort_unstable();
    let mut at: u64 = 1 << 32;
    for &(s, e) in taken.iter() {
        if e <= at {
            continue;
        }
        if s >= at + len {
            return Some(at);
        }
        at = e;
    }
    (at + len <= super::TASK_SIZE).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::find_hole;

    #[test]
    fn hole_between_mappings() {
        let mut t = vec![
            (0x1_0000_0000, 0x1_0001_0000),
            (0x1_0004_0000, 0x1_0005_0000),
        ];
        assert_eq!(find_hole(&mut t, 0x30000), Some(0x1_0001_0000));
        assert_eq!(find_hole(&mut t, 0x40000), Some(0x1_0005_0000));
    }
}
