//! Syscalls executed by a seized task on our behalf.
//!
//! The task is pointed at a `syscall` instruction in its own address space with the
//! arguments in its registers, run to syscall entry and exit with `PTRACE_SYSCALL`, and
//! the result is read from `rax`. Each call starts from the same base registers; callers
//! put the real registers back when they are done (see [`super::ptrace::Seized::park`]).
//!
//! A task given a batch [`Area`] also runs many calls per round trip ([`Remote::run`],
//! see `sys/batch.rs`).

use nix::errno::Errno;

use super::batch::{Area, Batch, Done, STUB_STOP};
use super::mem::MemError;
use super::ptrace::{PtraceError, Seized, Stop, PTRACE_EVENT_CLONE, PTRACE_EVENT_FORK};
use crate::abi::GpRegs;

const SIGTRAP_BIT: u64 = 1 << (libc::SIGTRAP - 1);

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
    #[error("{name} injected into tid {tid} returned {got}, not the expected {expected}")]
    Mismatch {
        name: &'static str,
        tid: i32,
        got: i64,
        expected: u64,
    },
    #[error("batch of {calls} calls and {bytes} bytes of data for tid {tid} does not fit its {len}-byte region")]
    TooBig {
        tid: i32,
        calls: usize,
        bytes: usize,
        len: u64,
    },
    #[error("{what}")]
    For {
        what: String,
        #[source]
        source: Box<InjectError>,
    },
    #[error("batch of syscalls in tid {tid}")]
    Mem {
        tid: i32,
        #[source]
        source: MemError,
    },
}

/// Why a batch stopped: the call that failed (or returned other than expected), by its
/// index in the table, or `None` when the batch itself failed (ptrace, memory, size).
#[derive(Debug)]
pub struct Stopped {
    pub call: Option<usize>,
    pub error: InjectError,
}

impl<E: Into<InjectError>> From<E> for Stopped {
    fn from(e: E) -> Self {
        Stopped {
            call: None,
            error: e.into(),
        }
    }
}

/// A task that runs syscalls for us.
pub struct Remote<'a> {
    task: &'a Seized,
    ip: u64,
    base: GpRegs,
    area: Option<Area>,
}

impl<'a> Remote<'a> {
    /// `ip` must point at a `syscall` instruction (`0f 05`) in the task; `base` are the
    /// registers every call starts from (normally the task's own).
    pub fn new(task: &'a Seized, ip: u64, base: GpRegs) -> Self {
        Remote {
            task,
            ip,
            base,
            area: None,
        }
    }

    /// Lets the task run batches in `area`.
    pub fn with_area(mut self, area: Area) -> Self {
        self.area = Some(area);
        self
    }

    /// An empty batch for this task's area.
    pub fn batch(&self) -> Batch {
        Batch::new(
            self.area
                .expect("batches are built only for remotes given an area"),
        )
    }

    pub fn task(&self) -> &'a Seized {
        self.task
    }

    /// The registers every call starts from.
    pub fn base(&self) -> GpRegs {
        self.base
    }

    /// Writes `bytes` at `addr` of the task (`process_vm_writev`: a writable mapping).
    pub fn write_mem(&self, addr: u64, bytes: &[u8]) -> Result<(), InjectError> {
        self.write(addr, bytes)
    }

    /// Moves execution to another `syscall` instruction.
    pub fn set_ip(&mut self, ip: u64) {
        self.ip = ip;
    }

    /// Runs syscall `nr` and returns the raw `rax` (negative errno on failure).
    pub fn raw(&self, nr: i64, args: &[u64]) -> Result<i64, PtraceError> {
        let _span = crate::profile::span("injected syscall");
        self.task.set_regs(&self.call_regs(nr, args))?;
        self.step("syscall entry")?;
        self.step("syscall exit")?;
        Ok(self.task.regs()?.rax as i64)
    }

    /// Runs syscall `nr`, mapping a negative result to an error named `name`.
    pub fn call(&self, name: &'static str, nr: i64, args: &[u64]) -> Result<u64, InjectError> {
        crate::profile::count(name, 1);
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

    /// Runs every call of `batch`, in order, and returns their results. The first call
    /// that fails (or does not return what it was expected to) ends the batch and is the
    /// error, naming the call and the tid. With a stub in the area this is one ptrace
    /// round trip; without, each call is injected on its own.
    ///
    /// Ordering requirements: as for single calls, every signal is blocked in the task
    /// (SIGTRAP is let through for the batch only, then the mask is put back).
    pub fn run(&self, batch: &Batch) -> Result<Done, InjectError> {
        self.run_with(batch, batch.area().stub).map_err(|s| s.error)
    }

    /// [`Remote::run`], telling which call stopped the batch: for batches whose calls
    /// serve several callers, each owning a range of the table (`restore/staged.rs`).
    pub fn run_traced(&self, batch: &Batch) -> Result<Done, Stopped> {
        self.run_with(batch, batch.area().stub)
    }

    /// Runs `batch` as [`Remote::run`] does, but each call injected on its own: for a
    /// task where a batch cannot stop cleanly (a SIGTRAP waits to be delivered).
    pub fn run_singly(&self, batch: &Batch) -> Result<Done, InjectError> {
        self.run_with(batch, None).map_err(|s| s.error)
    }

    /// Runs a batch whose calls create tasks: `clone3`s with `CLONE_PTRACE`, run by a task
    /// seized without `PTRACE_O_TRACECLONE`/`PTRACE_O_TRACEFORK` (see
    /// [`super::ptrace::seize_silent`]), so that each new task is attached to us and
    /// stopped before its first instruction while its creator runs on. Returns how many
    /// calls, from the first, ran (every one if the batch failed as a whole: some of
    /// their tasks may then not exist), with the batch's result.
    pub fn run_creating(&self, batch: &Batch) -> (usize, Result<Done, InjectError>) {
        match self.run_with(batch, batch.area().stub) {
            Ok(done) => (batch.calls().len(), Ok(done)),
            Err(s) => (s.call.unwrap_or(batch.calls().len()), Err(s.error)),
        }
    }

    fn run_with(&self, batch: &Batch, stub: Option<u64>) -> Result<Done, Stopped> {
        let area = batch.area();
        let tid = self.task.tid();
        if batch.table_off() + batch.table_len() > area.len {
            return Err(Stopped::from(InjectError::TooBig {
                tid,
                calls: batch.calls().len(),
                bytes: batch.data().len(),
                len: area.len,
            }));
        }
        if batch.is_empty() {
            return Ok(Done::new(Vec::new(), batch.data().to_vec()));
        }
        let _span = crate::profile::span("batch");
        crate::profile::count("batched calls", batch.calls().len() as u64);
        self.write(area.region, &batch.region_bytes())?;
        let rets = match stub {
            Some(stub) => self.run_stub(stub, batch)?,
            None => self.run_each(batch)?,
        };
        if let Some(i) = batch.first_miss(&rets) {
            let call = &batch.calls()[i];
            let e = self.miss(call.name, rets[i], call.expect);
            let error = match &call.about {
                Some(what) => InjectError::For {
                    what: what.clone(),
                    source: Box::new(e),
                },
                None => e,
            };
            return Err(Stopped {
                call: Some(i),
                error,
            });
        }
        let mut data = vec![0u8; batch.data().len()];
        self.read(area.region, &mut data)?;
        Ok(Done::new(rets, data))
    }

    /// The stub runs the table; returns the results of the calls it executed.
    fn run_stub(&self, stub: u64, batch: &Batch) -> Result<Vec<i64>, InjectError> {
        let mask = self.task.sigmask()?;
        self.task.set_sigmask(mask & !SIGTRAP_BIT)?;
        let executed = self.stub_round_trip(stub, batch);
        let restored = self.task.set_sigmask(mask);
        let executed = executed?;
        restored?;
        let table = batch.area().region + batch.table_off();
        let mut bytes = vec![0u8; executed * super::batch::ENTRY_LEN as usize];
        self.read(table, &mut bytes)?;
        Ok(bytes
            .chunks_exact(super::batch::ENTRY_LEN as usize)
            .map(|e| i64::from_ne_bytes(e[56..64].try_into().expect("8 bytes")))
            .collect())
    }

    /// `PTRACE_CONT` into the stub and wait for its SIGTRAP; returns how many calls ran.
    fn stub_round_trip(&self, stub: u64, batch: &Batch) -> Result<usize, InjectError> {
        let n = batch.calls().len();
        let mut regs = self.base;
        regs.rip = stub;
        regs.orig_rax = u64::MAX;
        regs.r12 = batch.area().region + batch.table_off();
        regs.r13 = n as u64;
        self.task.set_regs(&regs)?;
        self.task.cont()?;
        match super::ptrace::wait_tid(self.task.tid())? {
            Stop::Signal(libc::SIGTRAP) => {}
            other => return Err(self.task.unexpected("batch of syscalls", other).into()),
        }
        let after = self.task.regs()?;
        if after.rip != stub + STUB_STOP || after.r13 > n as u64 {
            return Err(PtraceError::Unexpected {
                tid: self.task.tid(),
                op: "batch of syscalls",
                what: format!(
                    "stopped by SIGTRAP at {:#x}, not at the end of the stub at {stub:#x}",
                    after.rip
                ),
            }
            .into());
        }
        Ok(n - after.r13 as usize)
    }

    /// Without a stub: each call injected on its own, up to the first miss.
    fn run_each(&self, batch: &Batch) -> Result<Vec<i64>, InjectError> {
        let mut rets = Vec::with_capacity(batch.calls().len());
        for c in batch.calls() {
            let r = self.raw(c.nr, &c.args)?;
            rets.push(r);
            if !super::batch::meets(r, c.expect) {
                break;
            }
        }
        Ok(rets)
    }

    fn miss(&self, name: &'static str, got: i64, expect: u64) -> InjectError {
        let tid = self.task.tid();
        if expect == super::batch::MUST_SUCCEED || (-4095..0).contains(&got) {
            InjectError::Failed {
                name,
                tid,
                source: Errno::from_raw(-got as i32),
            }
        } else {
            InjectError::Mismatch {
                name,
                tid,
                got,
                expected: expect,
            }
        }
    }

    fn write(&self, addr: u64, bytes: &[u8]) -> Result<(), InjectError> {
        let tid = self.task.tid();
        let n = super::mem::vm_write(tid, bytes, &[(addr, bytes.len())])
            .map_err(|source| InjectError::Mem { tid, source })?;
        self.whole(
            n,
            bytes.len(),
            MemError::VmWrite {
                pid: tid,
                source: Errno::EFAULT,
            },
        )
    }

    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), InjectError> {
        let tid = self.task.tid();
        let len = buf.len();
        let n = super::mem::vm_read(tid, buf, &[(addr, len)])
            .map_err(|source| InjectError::Mem { tid, source })?;
        self.whole(
            n,
            len,
            MemError::VmRead {
                pid: tid,
                source: Errno::EFAULT,
            },
        )
    }

    /// A short transfer is the error `short`.
    fn whole(&self, n: usize, len: usize, short: MemError) -> Result<(), InjectError> {
        if n == len {
            return Ok(());
        }
        Err(InjectError::Mem {
            tid: self.task.tid(),
            source: short,
        })
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
