//! Many syscalls per ptrace round trip: a table of calls written into the task's memory
//! and run by a small stub of machine code ([`STUB`]) that the task executes natively.
//!
//! One injected syscall costs two ptrace stops (entry and exit), each a trip through the
//! scheduler of the tracer and the task; a batch costs one stop for any number of calls.
//! [`Batch`] builds the table and the data the calls point at (paths, structs, output
//! buffers) in one contiguous region of the task, `Remote::run` (`sys/inject.rs`) writes
//! it, runs the stub with `PTRACE_CONT` and reads everything back; [`Done`] hands out the
//! results. Calls in one batch cannot depend on each other's results (arguments are fixed
//! when the table is written), but a call may state the exact result it must return
//! ([`Batch::expect`]): when the caller can predict it (the lowest free fd), a wrong
//! prediction stops the batch like a failure.
//!
//! The stub stops at the first call that fails (a result in -4095..-1) unless the call
//! tolerates failure ([`Batch::try_call`]), or whose result differs from the expected one.
//! It then stops itself with `tgkill(getpid(), gettid(), SIGTRAP)`: a plain signal, not a
//! fault, so the kernel changes nothing of the task's SIGTRAP disposition (a trap raised
//! by `int3` with SIGTRAP blocked or ignored would reset the handler to SIG_DFL); a traced
//! task reports it to us in a signal-delivery stop whatever its disposition, and we resume
//! it without the signal. SIGTRAP is unblocked for the batch only: no signal handler can
//! run on borrowed registers. A call that creates a task (`clone3` with `CLONE_PTRACE`,
//! see `Remote::run_creating`) does not stop its creator; the new task starts right after
//! the stub's `syscall` ([`STUB_CALL_RETURN`]), attached to us and stopped before its
//! first instruction.

use std::marker::PhantomData;

use super::Pod;

/// Bytes of one table entry: `nr`, six arguments, and a word that holds the expectation
/// on input and the result (`rax`) on output.
pub const ENTRY_LEN: u64 = 64;
/// Expectation word: the call must not fail.
pub const MUST_SUCCEED: u64 = u64::MAX;
/// Expectation word: any result is fine, the batch goes on.
pub const TOLERATE: u64 = u64::MAX - 1;

/// The batch stub, position independent (x86_64, Intel syntax). In: `r12` = the table,
/// `r13` = its number of entries. Out: each entry's last word holds the call's `rax`;
/// `r13` = entries left unexecuted. Uses `rax`, `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`,
/// `r12`, `r13`, `r15` (the kernel clobbers `rcx` and `r11`); no stack.
///
/// ```text
/// off  bytes                 instruction
/// 00   4d 85 ed              top:  test r13, r13           ; entries left?
/// 03   74 50                       jz   done (+0x50 -> 55)
/// 05   49 8b 04 24                 mov  rax, [r12]         ; nr
/// 09   49 8b 7c 24 08              mov  rdi, [r12+8]       ; arg 0
/// 0e   49 8b 74 24 10              mov  rsi, [r12+16]      ; arg 1
/// 13   49 8b 54 24 18              mov  rdx, [r12+24]      ; arg 2
/// 18   4d 8b 54 24 20              mov  r10, [r12+32]      ; arg 3
/// 1d   4d 8b 44 24 28              mov  r8,  [r12+40]      ; arg 4
/// 22   4d 8b 4c 24 30              mov  r9,  [r12+48]      ; arg 5
/// 27   4d 8b 7c 24 38              mov  r15, [r12+56]      ; expectation
/// 2c   0f 05                       syscall
/// 2e   49 89 44 24 38              mov  [r12+56], rax      ; result
/// 33   49 83 c4 40                 add  r12, 64            ; next entry
/// 37   49 ff cd                    dec  r13
/// 3a   49 83 ff fe                 cmp  r15, -2            ; TOLERATE
/// 3e   74 c0                       je   top (-0x40 -> 00)
/// 40   49 83 ff ff                 cmp  r15, -1            ; MUST_SUCCEED
/// 44   74 07                       je   ok (+7 -> 4d)
/// 46   4c 39 f8                    cmp  rax, r15           ; exact result expected
/// 49   74 b5                       je   top (-0x4b -> 00)
/// 4b   eb 08                       jmp  done (+8 -> 55)
/// 4d   48 3d 01 f0 ff ff     ok:   cmp  rax, -4095         ; unsigned: not an errno
/// 53   72 ab                       jb   top (-0x55 -> 00)
/// 55   b8 27 00 00 00        done: mov  eax, 39            ; getpid
/// 5a   0f 05                       syscall
/// 5c   48 89 c7                    mov  rdi, rax
/// 5f   b8 ba 00 00 00              mov  eax, 186           ; gettid
/// 64   0f 05                       syscall
/// 66   48 89 c6                    mov  rsi, rax
/// 69   ba 05 00 00 00              mov  edx, 5             ; SIGTRAP
/// 6e   b8 ea 00 00 00              mov  eax, 234           ; tgkill
/// 73   0f 05                       syscall                 ; stops here, rip = 75
/// 75   cc                          int3                    ; only if the tracer is gone
/// ```
///
/// Should stasis die mid-batch, the task takes the SIGTRAP (its default action kills
/// it), or returns from a handler into the `int3`, a fault that kills it too.
pub const STUB: [u8; 0x76] = [
    0x4d, 0x85, 0xed, // test r13, r13
    0x74, 0x50, // jz done
    0x49, 0x8b, 0x04, 0x24, // mov rax, [r12]
    0x49, 0x8b, 0x7c, 0x24, 0x08, // mov rdi, [r12+8]
    0x49, 0x8b, 0x74, 0x24, 0x10, // mov rsi, [r12+16]
    0x49, 0x8b, 0x54, 0x24, 0x18, // mov rdx, [r12+24]
    0x4d, 0x8b, 0x54, 0x24, 0x20, // mov r10, [r12+32]
    0x4d, 0x8b, 0x44, 0x24, 0x28, // mov r8, [r12+40]
    0x4d, 0x8b, 0x4c, 0x24, 0x30, // mov r9, [r12+48]
    0x4d, 0x8b, 0x7c, 0x24, 0x38, // mov r15, [r12+56]
    0x0f, 0x05, // syscall
    0x49, 0x89, 0x44, 0x24, 0x38, // mov [r12+56], rax
    0x49, 0x83, 0xc4, 0x40, // add r12, 64
    0x49, 0xff, 0xcd, // dec r13
    0x49, 0x83, 0xff, 0xfe, // cmp r15, -2
    0x74, 0xc0, // je top
    0x49, 0x83, 0xff, 0xff, // cmp r15, -1
    0x74, 0x07, // je ok
    0x4c, 0x39, 0xf8, // cmp rax, r15
    0x74, 0xb5, // je top
    0xeb, 0x08, // jmp done
    0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, // ok: cmp rax, -4095
    0x72, 0xab, // jb top
    0xb8, 0x27, 0x00, 0x00, 0x00, // done: mov eax, 39 (getpid)
    0x0f, 0x05, // syscall
    0x48, 0x89, 0xc7, // mov rdi, rax
    0xb8, 0xba, 0x00, 0x00, 0x00, // mov eax, 186 (gettid)
    0x0f, 0x05, // syscall
    0x48, 0x89, 0xc6, // mov rsi, rax
    0xba, 0x05, 0x00, 0x00, 0x00, // mov edx, 5 (SIGTRAP)
    0xb8, 0xea, 0x00, 0x00, 0x00, // mov eax, 234 (tgkill)
    0x0f, 0x05, // syscall
    0xcc, // int3
];

/// Where the task stops, relative to the stub: right after the `tgkill`.
pub const STUB_STOP: u64 = 0x75;
/// Where a task created by a `clone3` of the table starts, relative to the stub: right
/// after the loop's `syscall`.
pub const STUB_CALL_RETURN: u64 = 0x2e;

/// Where a task runs batches: the stub's address (`None`: the calls run one by one as
/// single injected syscalls, same results) and the region for data and table.
#[derive(Clone, Copy, Debug)]
pub struct Area {
    pub stub: Option<u64>,
    pub region: u64,
    pub len: u64,
}

/// One call of the table.
#[derive(Clone, Debug)]
pub struct Call {
    pub name: &'static str,
    pub nr: i64,
    pub args: [u64; 6],
    /// [`MUST_SUCCEED`], [`TOLERATE`] or the exact result expected.
    pub expect: u64,
    /// What the call is for, named in its error ("fd 5 of pid 42 (/dev/null)").
    pub about: Option<String>,
}

/// The handle of a call, to read its result from [`Done`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ret(usize);

/// An output buffer of a `T` in the region, to read back from [`Done`].
#[derive(Debug)]
pub struct Out<T> {
    off: usize,
    addr: u64,
    kind: PhantomData<T>,
}

impl<T> Clone for Out<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Out<T> {}

impl<T> Out<T> {
    /// The buffer's address in the task, to pass as an argument.
    pub fn addr(&self) -> u64 {
        self.addr
    }
}

/// A table of calls and the data they point at, laid out for one region of the task:
/// the data from the region's start, the table after it.
#[derive(Debug)]
pub struct Batch {
    area: Area,
    data: Vec<u8>,
    calls: Vec<Call>,
}

impl Batch {
    pub fn new(area: Area) -> Self {
        Batch {
            area,
            data: Vec::new(),
            calls: Vec::new(),
        }
    }

    pub fn area(&self) -> Area {
        self.area
    }

    pub fn calls(&self) -> &[Call] {
        &self.calls
    }

    pub fn data(&self) -> &[u8] {
        &self.data
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Bytes still free in the region (each call takes [`ENTRY_LEN`]).
    pub fn room(&self) -> u64 {
        self.area
            .len
            .saturating_sub(self.table_off() + self.table_len())
    }

    /// The table's offset in the region (after the data, 64-byte aligned).
    pub fn table_off(&self) -> u64 {
        (self.data.len() as u64).next_multiple_of(ENTRY_LEN)
    }

    pub fn table_len(&self) -> u64 {
        self.calls.len() as u64 * ENTRY_LEN
    }

    /// A call that must succeed: a failure stops the batch and names `name`.
    pub fn call(&mut self, name: &'static str, nr: i64, args: &[u64]) -> Ret {
        self.push(name, nr, args, MUST_SUCCEED)
    }

    /// A call whose failure is the caller's business: the batch goes on, the raw result
    /// (negative errno) is in [`Done::raw`].
    pub fn try_call(&mut self, name: &'static str, nr: i64, args: &[u64]) -> Ret {
        self.push(name, nr, args, TOLERATE)
    }

    /// A call that must return exactly `result` (not an errno); anything else stops the
    /// batch.
    pub fn expect(&mut self, name: &'static str, nr: i64, args: &[u64], result: u64) -> Ret {
        debug_assert!(result < TOLERATE);
        self.push(name, nr, args, result)
    }

    fn push(&mut self, name: &'static str, nr: i64, args: &[u64], expect: u64) -> Ret {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        self.calls.push(Call {
            name,
            nr,
            args: a,
            expect,
            about: None,
        });
        Ret(self.calls.len() - 1)
    }

    /// Names what the last call added is for, in its error.
    pub fn about(&mut self, what: impl Into<String>) {
        if let Some(c) = self.calls.last_mut() {
            c.about = Some(what.into());
        }
    }

    /// Copies `bytes` into the region (8-byte aligned); returns their address in the task.
    pub fn put(&mut self, bytes: &[u8]) -> u64 {
        let off = self.data.len().next_multiple_of(8);
        self.data.resize(off, 0);
        self.data.extend_from_slice(bytes);
        self.area.region + off as u64
    }

    /// Copies a NUL-terminated `s` into the region.
    pub fn put_str(&mut self, s: &str) -> u64 {
        let mut bytes = s.as_bytes().to_vec();
        bytes.push(0);
        self.put(&bytes)
    }

    pub fn put_pod<T: Pod>(&mut self, v: &T) -> u64 {
        self.put(v.as_bytes())
    }

    /// Room for a `T` the calls write, zeroed.
    pub fn out<T: Pod>(&mut self) -> Out<T> {
        let addr = self.put(T::default().as_bytes());
        Out {
            off: (addr - self.area.region) as usize,
            addr,
            kind: PhantomData,
        }
    }

    /// The table as the stub reads it, `table_off` bytes into the region.
    pub fn table_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.table_len() as usize);
        for c in &self.calls {
            out.extend_from_slice(&(c.nr as u64).to_ne_bytes());
            for a in c.args {
                out.extend_from_slice(&a.to_ne_bytes());
            }
            out.extend_from_slice(&c.expect.to_ne_bytes());
        }
        out
    }

    /// Data and table as one image of the region's used part.
    pub fn region_bytes(&self) -> Vec<u8> {
        let mut out = self.data.clone();
        out.resize(self.table_off() as usize, 0);
        out.extend_from_slice(&self.table_bytes());
        out
    }

    /// The first executed call that did not meet its expectation, given the results of
    /// the first `rets.len()` calls.
    pub fn first_miss(&self, rets: &[i64]) -> Option<usize> {
        rets.iter()
            .zip(&self.calls)
            .position(|(&r, c)| !meets(r, c.expect))
    }
}

/// Whether result `r` meets expectation `expect`.
pub fn meets(r: i64, expect: u64) -> bool {
    match expect {
        TOLERATE => true,
        MUST_SUCCEED => !(-4095..0).contains(&r),
        exact => r as u64 == exact,
    }
}

/// The results of a batch that ran to its end.
#[derive(Debug)]
pub struct Done {
    rets: Vec<i64>,
    data: Vec<u8>,
}

impl Done {
    pub fn new(rets: Vec<i64>, data: Vec<u8>) -> Self {
        Done { rets, data }
    }

    /// The result of a call that must have succeeded.
    pub fn ret(&self, r: Ret) -> u64 {
        self.rets[r.0] as u64
    }

    /// The raw result (negative errno on failure).
    pub fn raw(&self, r: Ret) -> i64 {
        self.rets[r.0]
    }

    /// What the calls wrote into `out`.
    pub fn get<T: Pod>(&self, out: Out<T>) -> T {
        let mut v = T::default();
        let len = v.as_bytes().len();
        v.as_bytes_mut()
            .copy_from_slice(&self.data[out.off..out.off + len]);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_puts_table_after_data() {
        let mut b = Batch::new(Area {
            stub: None,
            region: 0x1000,
            len: 4096,
        });
        let s = b.put_str("abc");
        let o = b.out::<u64>();
        let r = b.call("getpid", 39, &[]);
        b.try_call("close", 3, &[99]);
        assert_eq!((s, o.addr()), (0x1000, 0x1008));
        assert_eq!(b.table_off(), 64);
        let bytes = b.region_bytes();
        assert_eq!(bytes.len(), 64 + 128);
        assert_eq!(&bytes[64..72], &39u64.to_ne_bytes());
        assert_eq!(&bytes[120..128], &MUST_SUCCEED.to_ne_bytes());
        assert_eq!(&bytes[128 + 8..128 + 16], &99u64.to_ne_bytes());
        assert_eq!(b.room(), 4096 - 192);
        let done = Done::new(vec![7, -9], vec![0; 16]);
        assert_eq!(done.ret(r), 7);
    }

    #[test]
    fn expectations() {
        assert!(meets(3, MUST_SUCCEED));
        assert!(!meets(-9, MUST_SUCCEED));
        assert!(meets(-9, TOLERATE));
        assert!(meets(5, 5));
        assert!(!meets(4, 5));
        assert!(!meets(-9, 5));
    }

    #[test]
    fn stub_ends_with_the_stop() {
        assert_eq!(STUB[STUB_STOP as usize - 2..], [0x0f, 0x05, 0xcc]);
        let ret = STUB_CALL_RETURN as usize;
        assert_eq!(STUB[ret - 2..ret], [0x0f, 0x05]);
    }
}
