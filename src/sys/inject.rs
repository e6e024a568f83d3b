//! Syscalls executed by a seized task on our behalf.
//!
//! The task is pointed at a `syscall` instruction in its own address space with the
//! arguments in its registers, run to syscall entry and exit with `PTRACE_SYSCALL`, and
//! the result is read from `rax`. Each call starts from the same base registers; callers
//! put the real registers back when they are done (see [`super::ptrace::Seized::park`]).

use nix::errno::Errno;

use super::ptrace::{PtraceError, Seized, Stop, PTRACE_EVENT_CLONE, PTRACE_EVENT_FORK};
use crate::abi::GpRegs;

/// Errors of injected syscalls.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error(transparent)]
    Ptrace(#[from] PtraceError),
    #[error("{name} injected into tid {tid}")]
    Failed {
        name: &'static str,
        tid: i32,
        #[source]
        source: Errno,
    },
}

/// A task that runs syscalls for us.
pub struct Remote<'a> {
    task: &'a Seized,
    ip: u64,
    base: GpRegs,
}

impl<'a> Remote<'a> {
    /// `ip` must point at a `syscall` instruction (`0f 05`) in the task; `base` are the
    /// registers every call starts from (normally the task's own).
    pub fn new(task: &'a Seized, ip: u64, base: GpRegs) -> Self {
        Remote { task, ip, base }
    }

    pub fn task(&self) -> &Seized {
        self.task
    }

    /// Moves execution to another `syscall` instruction.
    pub fn set_ip(&mut self, ip: u64) {
        self.ip = ip;
    }

    /// Runs syscall `nr` and returns the raw `rax` (negative errno on failure).
    pub fn raw(&self, nr: i64, args: &[u64]) -> Result<i64, PtraceError> {
        self.task.set_regs(&self.call_regs(nr, args))?;
        self.step("syscall entry")?;
        self.step("syscall exit")?;
        Ok(self.task.regs()?.rax as i64)
    }

    /// Runs syscall `nr`, mapping a negative result to an error named `name`.
    pub fn call(&self, name: &'static str, nr: i64, args: &[u64]) -> Result<u64, InjectError> {
        let r = self.raw(nr, args)?;
        if (-4095..0).contains(&r) {
            return Err(InjectError::Failed {
                name,
                tid: self.task.tid(),
                source: Errno::from_raw(-r as i32),
            });
        }
        Ok(r as u64)
    }

    /// Runs a task-creating syscall (`clone3`) in a task seized with `PTRACE_O_TRACECLONE`
    /// and `PTRACE_O_TRACEFORK`, and returns the new thread or process, attached to us by
    /// the kernel.
    ///
    /// The creator stops three times: syscall entry, `PTRACE_EVENT_CLONE` or
    /// `PTRACE_EVENT_FORK` (the new tid is its event message), syscall exit. A failing
    /// clone has no event stop.
    pub fn clone_task(
        &self,
        name: &'static str,
        nr: i64,
        args: &[u64],
    ) -> Result<Seized, InjectError> {
        self.task.set_regs(&self.call_regs(nr, args))?;
        self.step("syscall entry")?;
        self.task.resume_to_syscall()?;
        let child = match super::ptrace::wait_tid(self.task.tid())? {
            Stop::OtherEvent(PTRACE_EVENT_CLONE | PTRACE_EVENT_FORK) => {
                let tid = self.task.event_msg()? as i32;
                self.step("syscall exit")?;
                Some(super::ptrace::adopt(tid))
            }
            Stop::Syscall => None,
            other => return Err(self.task.unexpected(name, other).into()),
        };
        let r = self.task.regs()?.rax as i64;
        match child {
            Some(thread) if r == i64::from(thread.tid()) => Ok(thread),
            Some(thread) => Err(PtraceError::Unexpected {
                tid: self.task.tid(),
                op: name,
                what: format!("returned {r} after reporting new thread {}", thread.tid()),
            }
            .into()),
            None => Err(InjectError::Failed {
                name,
                tid: self.task.tid(),
                source: Errno::from_raw(-r as i32),
            }),
        }
    }

    fn call_regs(&self, nr: i64, args: &[u64]) -> GpRegs {
        let mut r = self.base;
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        r.rip = self.ip;
        r.rax = nr as u64;
        // No syscall is in progress: keep the kernel's restart logic away from these regs.
        r.orig_rax = u64::MAX;
        (r.rdi, r.rsi, r.rdx, r.r10, r.r8, r.r9) = (a[0], a[1], a[2], a[3], a[4], a[5]);
        r
    }

    fn step(&self, op: &'static str) -> Result<(), PtraceError> {
        self.task.resume_to_syscall()?;
        match super::ptrace::wait_tid(self.task.tid())? {
            Stop::Syscall => Ok(()),
            other => Err(self.task.unexpected(op, other)),
        }
    }
}
