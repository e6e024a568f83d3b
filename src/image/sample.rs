//! Test fixtures: small valid records for one process, and a tiny xorshift generator of
//! arbitrary (not necessarily valid) records for the codec's property tests.

use crate::abi::{AltStack, GpRegs, KernelSigaction, RseqConfig, SigInfo};

use super::files::{
    CharDevFd, ContentHash, DeletedFd, DgramSenders, EpollFd, EpollMoved, EpollTarget, EventFd,
    FdEntry, FdKind, FdOwner, FifoBytes, FileLock, FilesImage, InFlight, LockKind, MappedFd,
    MemfdFd, PathFd, PipeEnd, PipeFd, RemapFd, SocketFile, TtyFd, TunFd,
};
use super::inventory::{CpuInfo, Inventory};
use super::mm::{
    CowRange, FileId, Guard, MmFields, MmImage, PageRun, ShmemObject, ShmemOwner, ShmemRef, Vma,
    VmaFlags, VmaKind, MAX_STRIPES,
};
use super::seccomp::{SeccompFilter, ThreadSeccomp, FILTER_FLAG_LOG, MODE_FILTER};
use super::sock::{
    NetlinkSocket, PacketMembership, PacketRing, PacketSocket, SockOpts, UnixMessage, UnixPeer,
    UnixSocket,
};
use super::task::{
    Audit, Caps, Creds, ITimer, PosixTimer, ProcessAttrs, TaskImage, ThreadImage, ThreadSched,
    Timers,
};
use super::tree::{ProcEntry, ProcState, TreeImage};

pub fn inventory(pids: &[i32]) -> Inventory {
    Inventory {
        stasis_version: "0.1.0".into(),
        created_unix: 1_700_000_000,
        kernel_release: "6.8.0".into(),
        hostname: "box".into(),
        root_pid: pids[0],
        pids: pids.to_vec(),
        cpu: CpuInfo {
            xcr0: 7,
            xsave_size: 832,
            model_name: "cpu".into(),
        },
        shell_job: false,
    }
}

/// A tree of live processes, each the child of the one before.
pub fn tree(pids: &[i32]) -> TreeImage {
    let processes = pids
        .iter()
        .enumerate()
        .map(|(i, &pid)| ProcEntry {
            pid,
            comm: format!("proc-{pid}"),
            ppid: if i == 0 { 1 } else { pids[i - 1] },
            pgid: pids[0],
            sid: pids[0],
            exit_signal: libc::SIGCHLD,
            state: ProcState::Alive { stop_signal: 0 },
            shares_files: false,
            shares_fs: false,
            shares_vm: false,
            shares_sighand: false,
        })
        .collect();
    TreeImage {
        processes,
        terminal: None,
    }
}

pub fn thread(tid: i32) -> ThreadImage {
    ThreadImage {
        tid,
        regs: GpRegs {
            rip: 0x401000,
            rsp: 0x7ffd_0000_0ff0,
            ..GpRegs::default()
        },
        xsave: vec![0; 832],
        sigmask: 0,
        pending: vec![SigInfo([0; 128])],
        rseq: Some(RseqConfig::default()),
        clear_child_tid: 0,
        altstack: AltStack::default(),
        comm: format!("thread-{tid}"),
        robust_list: 0x7f00_0000_0a20,
        robust_list_len: 24,
        sched: ThreadSched {
            nice: 0,
            affinity: vec![0xf],
            timerslack_ns: 50_000,
            ..ThreadSched::default()
        },
        pdeathsig: 0,
        seccomp: ThreadSeccomp::default(),
    }
}

/// Two stacked seccomp filters: an allow-all, then one returning ENOSYS (logged).
pub fn seccomp_filters() -> Vec<SeccompFilter> {
    vec![
        SeccompFilter {
            prev: None,
            flags: 0,
            insns: vec![0x7fff_0000_0000_0006],
        },
        SeccompFilter {
            prev: Some(0),
            flags: FILTER_FLAG_LOG,
            insns: vec![0x20, 0x0005_0026_0000_0006],
        },
    ]
}

pub fn task(pid: i32) -> TaskImage {
    TaskImage {
        pid,
        pgid: pid,
        sid: pid,
        ppid: 1,
        comm: "victim".into(),
        personality: 0,
        umask: 0o022,
        rlimits: vec![(u64::MAX, u64::MAX); 16],
        cwd: "/".into(),
        root: "/".into(),
        creds: Creds {
            uid: [1000; 4],
            gid: [1000; 4],
            groups: vec![1000],
            caps: Caps {
                bounding: 0x1ff_ffff_ffff,
                ..Caps::default()
            },
            securebits: 0,
            no_new_privs: false,
        },
        oom_score_adj: 0,
        attrs: ProcessAttrs {
            dumpable: 1,
            ..ProcessAttrs::default()
        },
        timers: Timers {
            itimers: [ITimer::default(); 3],
            posix: vec![PosixTimer {
                id: 0,
                clock: 1,
                signal: 34,
                target: pid,
                interval_ns: 100_000_000,
                remaining_ns: 50_000_000,
                ..PosixTimer::default()
            }],
        },
        sigactions: vec![KernelSigaction::default(); 64],
        shared_pending: vec![],
        threads: vec![thread(pid), filtered(thread(pid + 1))],
        seccomp: seccomp_filters(),
        audit: Some(Audit {
            loginuid: 1000,
            sessionid: 3,
        }),
        thread_creds: Vec::new(),
    }
}

/// `t` under both filters of [`seccomp_filters`].
fn filtered(t: ThreadImage) -> ThreadImage {
    ThreadImage {
        seccomp: ThreadSeccomp {
            mode: MODE_FILTER,
            filter: Some(1),
        },
        ..t
    }
}

pub fn file_id(path: &str) -> FileId {
    FileId {
        path: path.into(),
        dev: 2049,
        ino: 42,
        size: 8192,
        mtime_ns: 1,
    }
}

pub fn vma(start: u64, end: u64, kind: VmaKind) -> Vma {
    Vma {
        start,
        end,
        prot: 3,
        shared: false,
        kind,
        flags: VmaFlags::default(),
    }
}

/// Three mappings; three saved pages in two runs.
pub fn mm() -> MmImage {
    let exe = file_id("/bin/victim");
    let text = VmaKind::File {
        file: exe.clone(),
        offset: 0,
        writable: false,
    };
    MmImage {
        vmas: vec![
            vma(0x40_0000, 0x40_2000, text),
            vma(0x60_0000, 0x60_4000, VmaKind::Anon),
            vma(0x7ffd_0000_0000, 0x7ffd_0000_1000, VmaKind::Anon),
        ],
        page_runs: vec![
            PageRun {
                addr: 0x60_0000,
                pages: 2,
                stripe: 0,
            },
            PageRun {
                addr: 0x7ffd_0000_0000,
                pages: 1,
                stripe: 0,
            },
        ],
        fields: MmFields {
            start_code: 0x40_0000,
            end_code: 0x40_2000,
            ..MmFields::default()
        },
        auxv: vec![6, 4096, 0, 0],
        exe: Some(exe),
        vdso_symbols: vec![("__vdso_clock_gettime".into(), 0xc10)],
        shmem: Vec::new(),
        guards: vec![Guard {
            start: 0x60_3000,
            end: 0x60_4000,
        }],
        cow: Vec::new(),
        shmem_objects: Vec::new(),
    }
}

pub fn files() -> FilesImage {
    let null = FdKind::CharDev(CharDevFd {
        path: "/dev/null".into(),
        rdev: 0x103,
        pos: 0,
    });
    let log = FdKind::Path(PathFd {
        file: file_id("/tmp/log"),
        pos: 17,
    });
    FilesImage {
        fds: vec![
            FdEntry {
                fd: 0,
                cloexec: false,
                flags: 0,
                kind: null,
            },
            FdEntry {
                fd: 1,
                cloexec: false,
                flags: 1,
                kind: FdKind::Tty(TtyFd { rdev: 0x8800 }),
            },
            FdEntry {
                fd: 3,
                cloexec: true,
                flags: 0o2001,
                kind: log,
            },
            entry(4, FdKind::Pipe(pipe(Some(5)))),
            entry(5, FdKind::PipePeer { of: 4 }),
            entry(6, FdKind::Dup { of: 5 }),
            entry(
                7,
                FdKind::EventFd(EventFd {
                    count: 3,
                    semaphore: true,
                }),
            ),
            entry(
                8,
                FdKind::Epoll(EpollFd {
                    targets: vec![EpollTarget {
                        fd: 7,
                        events: 1,
                        data: 99,
                    }],
                }),
            ),
        ],
        locks: vec![FileLock {
            fd: 3,
            kind: LockKind::Posix,
            write: true,
            start: 0,
            len: 10,
        }],
        spares: Vec::new(),
        in_flight: Vec::new(),
        // The file registered as fd 7 is now fd 3 of pid 42 (fd 7 holds another file).
        epoll_moved: vec![EpollMoved {
            epoll: 8,
            tfd: 7,
            toff: 0,
            pid: 42,
            fd: 3,
        }],
        hashes: vec![ContentHash {
            fd: 3,
            crc32: 0xcbf4_3926,
        }],
        owners: vec![FdOwner {
            fd: 4,
            kind: 1,
            pid: 42,
            uid: 1000,
            euid: 0,
            signal: 34,
        }],
        unlinked_sockets: Vec::new(),
        socket_files: Vec::new(),
        modes: Vec::new(),
        dgram_senders: vec![DgramSenders {
            socket: 846_402,
            names: vec![b"\0snd-A".to_vec(), Vec::new(), b"/tmp/p.sock".to_vec()],
        }],
    }
}

/// An unnamed stream socket `ino` connected to socket `peer`, with `data` queued.
pub fn unix_stream(ino: u64, peer: u64, data: &[u8]) -> UnixSocket {
    UnixSocket {
        ino,
        sock_type: libc::SOCK_STREAM,
        name: Vec::new(),
        bind_dir: None,
        listen_backlog: None,
        peer: UnixPeer::Socket { ino: peer },
        shutdown: 0,
        queue: vec![UnixMessage {
            data: data.to_vec(),
            creds: None,
        }],
        opts: SockOpts::default(),
    }
}

/// Two processes of a tree sharing split objects: `a` creates a pipe whose write end
/// (spare fd 9) `b` holds, a socket pair whose second socket (spare fd 10) `b` holds, and
/// a memfd that `b` opened again.
pub fn split_files(a: i32) -> (FilesImage, FilesImage) {
    let unix = |ino: u64, peer: u64| FdKind::Unix(Box::new(unix_stream(ino, peer, b"queued")));
    let memfd = FdKind::Memfd(MemfdFd {
        name: "shared".into(),
        size: 4,
        pos: 1,
        seals: 0,
        contents: b"data".to_vec(),
    });
    let first = FilesImage {
        fds: vec![
            entry(3, FdKind::Pipe(pipe(Some(9)))),
            entry(4, unix(100, 101)),
            entry(5, memfd),
            entry(9, FdKind::PipePeer { of: 3 }),
            entry(10, unix(101, 100)),
        ],
        locks: Vec::new(),
        spares: vec![9, 10],
        in_flight: Vec::new(),
        epoll_moved: Vec::new(),
        hashes: Vec::new(),
        owners: Vec::new(),
        unlinked_sockets: Vec::new(),
        socket_files: Vec::new(),
        modes: Vec::new(),
        dgram_senders: Vec::new(),
    };
    let second = FilesImage {
        fds: vec![
            entry(0, FdKind::Inherited { pid: a, fd: 9 }),
            entry(1, FdKind::Dup { of: 0 }),
            entry(3, FdKind::Inherited { pid: a, fd: 10 }),
            entry(
                4,
                FdKind::Reopen {
                    pid: a,
                    fd: 5,
                    pos: 2,
                },
            ),
        ],
        locks: Vec::new(),
        spares: Vec::new(),
        in_flight: Vec::new(),
        epoll_moved: Vec::new(),
        hashes: Vec::new(),
        owners: Vec::new(),
        unlinked_sockets: Vec::new(),
        socket_files: Vec::new(),
        modes: Vec::new(),
        dgram_senders: Vec::new(),
    };
    (first, second)
}

/// A process with files in flight to its socket at fd 3 (peer at fd 4, two messages
/// queued): a file and the read end of the pipe whose write end is fd 5 on the first
/// message, a dup of fd 5 on the second.
pub fn in_flight_files() -> FilesImage {
    let unix = |ino: u64, peer: u64, queued: usize| {
        let msg = UnixMessage {
            data: b"m".to_vec(),
            creds: Some((1, 0, 0)),
        };
        FdKind::Unix(Box::new(UnixSocket {
            ino,
            sock_type: libc::SOCK_DGRAM,
            name: Vec::new(),
            bind_dir: None,
            listen_backlog: None,
            peer: UnixPeer::Socket { ino: peer },
            shutdown: 0,
            queue: vec![msg; queued],
            opts: SockOpts::default(),
        }))
    };
    let mut write_end = pipe(Some(7));
    write_end.end = PipeEnd::Write;
    FilesImage {
        fds: vec![
            entry(3, unix(100, 101, 2)),
            entry(4, unix(101, 100, 0)),
            entry(5, FdKind::Pipe(write_end)),
            entry(
                6,
                FdKind::Path(PathFd {
                    file: file_id("/etc/hostname"),
                    pos: 2,
                }),
            ),
            entry(7, FdKind::PipePeer { of: 5 }),
            entry(8, FdKind::Dup { of: 5 }),
        ],
        locks: Vec::new(),
        spares: Vec::new(),
        in_flight: vec![
            InFlight {
                socket: 100,
                message: 0,
                fds: vec![6, 7],
            },
            InFlight {
                socket: 100,
                message: 1,
                fds: vec![8],
            },
        ],
        epoll_moved: Vec::new(),
        hashes: Vec::new(),
        owners: Vec::new(),
        unlinked_sockets: Vec::new(),
        socket_files: Vec::new(),
        modes: Vec::new(),
        dgram_senders: Vec::new(),
    }
}

fn entry(fd: i32, kind: FdKind) -> FdEntry {
    FdEntry {
        fd,
        cloexec: false,
        flags: 0,
        kind,
    }
}

fn pipe(peer: Option<i32>) -> PipeFd {
    PipeFd {
        ino: 77,
        end: PipeEnd::Read,
        peer,
        size: 65536,
        data: b"in flight".to_vec(),
    }
}

/// Marsaglia's xorshift64: deterministic, dependency-free, good enough for test data.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }

    pub fn i32(&mut self) -> i32 {
        self.next() as i32
    }

    pub fn string(&mut self) -> String {
        let len = self.below(12);
        (0..len)
            .map(|_| char::from_u32(self.below(0x3000) as u32).unwrap_or('?'))
            .collect()
    }

    pub fn vec<T>(&mut self, max: u64, mut f: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let len = self.below(max + 1);
        (0..len).map(|_| f(self)).collect()
    }
}

pub fn random_inventory(r: &mut XorShift) -> Inventory {
    Inventory {
        stasis_version: r.string(),
        created_unix: r.next(),
        kernel_release: r.string(),
        hostname: r.string(),
        root_pid: r.i32(),
        pids: r.vec(5, XorShift::i32),
        cpu: CpuInfo {
            xcr0: r.next(),
            xsave_size: r.next() as u32,
            model_name: r.string(),
        },
        shell_job: r.bool(),
    }
}

fn random_thread(r: &mut XorShift) -> ThreadImage {
    let mut t = thread(r.i32());
    t.regs = GpRegs {
        rax: r.next(),
        rip: r.next(),
        eflags: r.next(),
        ..GpRegs::default()
    };
    t.xsave = r.vec(600, |r| r.next() as u8);
    t.sigmask = r.next();
    t.pending = r.vec(2, |r| SigInfo([r.next() as u8; 128]));
    t.robust_list = r.next();
    t.rseq = r.bool().then(RseqConfig::default);
    t.sched.affinity = r.vec(3, XorShift::next);
    t.sched.policy = r.next() as u32;
    t.pdeathsig = r.i32();
    t.seccomp = ThreadSeccomp {
        mode: r.next() as u32,
        filter: r.bool().then(|| r.next() as u32),
    };
    t.altstack = AltStack {
        sp: r.next(),
        flags: r.i32(),
        _pad: 0,
        size: r.next(),
    };
    t
}

pub fn random_task(r: &mut XorShift) -> TaskImage {
    let mut t = task(r.i32());
    t.comm = r.string();
    t.creds.groups = r.vec(4, |r| r.next() as u32);
    let sigaction = |r: &mut XorShift| KernelSigaction {
        handler: r.next(),
        flags: r.next(),
        restorer: 0,
        mask: r.next(),
    };
    t.sigactions = r.vec(64, sigaction);
    t.creds.caps.ambient = r.next();
    t.oom_score_adj = r.i32();
    t.timers.itimers[1].value_us = r.next();
    t.timers.posix = r.vec(3, |r| PosixTimer {
        id: r.i32(),
        clock: r.i32(),
        remaining_ns: r.next(),
        ..PosixTimer::default()
    });
    t.threads = r.vec(3, random_thread);
    t.seccomp = r.vec(3, |r| SeccompFilter {
        prev: r.bool().then(|| r.next() as u32),
        flags: r.next() as u32,
        insns: r.vec(4, XorShift::next),
    });
    t.audit = r.bool().then(|| Audit {
        loginuid: r.next() as u32,
        sessionid: r.next() as u32,
    });
    t
}

fn random_file_id(r: &mut XorShift) -> FileId {
    FileId {
        path: r.string(),
        dev: r.next(),
        ino: r.next(),
        size: r.next(),
        mtime_ns: r.next() as i64,
    }
}

fn random_vma(r: &mut XorShift) -> Vma {
    let kind = match r.below(6) {
        0 => VmaKind::Anon,
        4 => VmaKind::PacketRing {
            socket: r.next(),
            offset: r.next(),
        },
        1 => VmaKind::File {
            file: random_file_id(r),
            offset: r.next(),
            writable: r.bool(),
        },
        2 => VmaKind::Vdso,
        3 => VmaKind::Vvar,
        _ => VmaKind::VvarVclock,
    };
    let flags = VmaFlags {
        growsdown: r.bool(),
        sealed: r.bool(),
        ..VmaFlags::default()
    };
    Vma {
        start: r.next(),
        end: r.next(),
        prot: r.next() as u32,
        shared: r.bool(),
        kind,
        flags,
    }
}

pub fn random_mm(r: &mut XorShift) -> MmImage {
    MmImage {
        vmas: r.vec(6, random_vma),
        page_runs: r.vec(6, |r| PageRun {
            addr: r.next(),
            pages: r.below(1 << 20),
            stripe: r.below(u64::from(MAX_STRIPES)) as u8,
        }),
        fields: MmFields {
            start_code: r.next(),
            brk: r.next(),
            env_end: r.next(),
            ..MmFields::default()
        },
        auxv: r.vec(8, XorShift::next),
        exe: r.bool().then(|| random_file_id(r)),
        vdso_symbols: r.vec(3, |r| (r.string(), r.next())),
        shmem: r.vec(3, |r| ShmemRef {
            start: r.next(),
            owner: r.bool().then(|| ShmemOwner {
                pid: r.i32(),
                start: r.next(),
                end: r.next(),
                offset: r.next(),
            }),
        }),
        guards: r.vec(3, |r| Guard {
            start: r.next(),
            end: r.next(),
        }),
        cow: r.vec(2, |r| CowRange {
            start: r.next(),
            end: r.next(),
            zap: r.vec(2, |r| (r.next(), r.next())),
        }),
        shmem_objects: r.vec(2, |r| ShmemObject {
            start: r.next(),
            size: r.next(),
            offset: r.next(),
        }),
    }
}

fn random_fd(r: &mut XorShift) -> FdEntry {
    let kind = match r.below(12) {
        9 => FdKind::Packet(Box::new(random_packet(r))),
        10 => FdKind::Netlink(Box::new(NetlinkSocket {
            ino: r.next(),
            sock_type: r.i32(),
            protocol: r.i32(),
            portid: r.next() as u32,
            groups: r.vec(3, |r| r.next() as u32),
            dst: r.bool().then(|| (r.next() as u32, r.next() as u32)),
            ints: r.vec(2, |r| (r.i32(), r.i32())),
            opts: SockOpts::default(),
        })),
        0 => FdKind::Path(PathFd {
            file: random_file_id(r),
            pos: r.next(),
        }),
        6 => FdKind::Remap(RemapFd {
            link: random_file_id(r),
            path: r.string(),
            pos: r.next(),
            copied: r.bool(),
        }),
        1 => FdKind::CharDev(CharDevFd {
            path: r.string(),
            rdev: r.next(),
            pos: r.next(),
        }),
        3 => FdKind::Pipe(PipeFd {
            data: r.vec(20, |r| r.next() as u8),
            ..pipe(None)
        }),
        4 => FdKind::EventFd(EventFd {
            count: r.next(),
            semaphore: r.bool(),
        }),
        5 => FdKind::Reopen {
            pid: r.i32(),
            fd: r.i32(),
            pos: r.next(),
        },
        7 => FdKind::Mapped(MappedFd {
            pid: r.i32(),
            start: r.next(),
            end: r.next(),
            pos: r.next(),
            seals: r.next() as u32,
        }),
        8 => FdKind::Deleted(DeletedFd {
            ghost: r.next() as u32,
            pos: r.next(),
            fifo: r.bool().then(|| FifoBytes {
                size: r.next() as u32,
                data: r.vec(20, |r| r.next() as u8),
            }),
        }),
        11 => FdKind::Tun(TunFd {
            path: r.string(),
            device: r.string(),
            flags: r.next() as u16,
            detached: r.bool(),
            persist: r.bool(),
            settings: r.vec(3, |r| (r.string(), r.i32())),
            attached_sndbuf: r.bool().then(|| r.i32()),
        }),
        _ => FdKind::Tty(TtyFd { rdev: r.next() }),
    };
    FdEntry {
        fd: r.i32(),
        cloexec: r.bool(),
        flags: r.i32(),
        kind,
    }
}

fn random_packet(r: &mut XorShift) -> PacketSocket {
    let ring = |r: &mut XorShift| PacketRing {
        block_size: r.next() as u32,
        block_nr: r.next() as u32,
        frame_size: r.next() as u32,
        frame_nr: r.next() as u32,
        retire_tmo: r.next() as u32,
        sizeof_priv: r.next() as u32,
        features: r.next() as u32,
    };
    PacketSocket {
        ino: r.next(),
        sock_type: r.i32(),
        protocol: r.next() as u16,
        ifindex: r.next() as u32,
        device: r.vec(8, |r| r.next() as u8),
        ints: r.vec(3, |r| (r.i32(), r.i32())),
        memberships: r.vec(2, |r| PacketMembership {
            ifindex: r.next() as u32,
            mr_type: r.next() as u16,
            address: r.vec(6, |r| r.next() as u8),
            count: r.next() as u32,
        }),
        rx_ring: r.bool().then(|| ring(r)),
        tx_ring: r.bool().then(|| ring(r)),
        fanout: r.bool().then(|| r.next() as u32),
        opts: SockOpts::default(),
    }
}

pub fn random_files(r: &mut XorShift) -> FilesImage {
    FilesImage {
        fds: r.vec(6, random_fd),
        locks: r.vec(2, |r| FileLock {
            fd: r.i32(),
            kind: LockKind::Ofd,
            write: r.bool(),
            start: r.next(),
            len: r.next(),
        }),
        spares: r.vec(2, |r| r.i32()),
        in_flight: r.vec(2, |r| InFlight {
            socket: r.next(),
            message: r.next() as u32,
            fds: r.vec(3, |r| r.i32()),
        }),
        epoll_moved: r.vec(2, |r| EpollMoved {
            epoll: r.i32(),
            tfd: r.i32(),
            toff: r.next() as u32,
            pid: r.i32(),
            fd: r.i32(),
        }),
        hashes: r.vec(2, |r| ContentHash {
            fd: r.i32(),
            crc32: r.next() as u32,
        }),
        owners: r.vec(2, |r| FdOwner {
            fd: r.i32(),
            kind: r.i32(),
            pid: r.i32(),
            uid: r.next() as u32,
            euid: r.next() as u32,
            signal: r.i32(),
        }),
        unlinked_sockets: r.vec(2, |r| r.next()),
        socket_files: r.vec(2, |r| SocketFile {
            ino: r.next(),
            mode: r.next() as u32,
            uid: r.next() as u32,
            gid: r.next() as u32,
        }),
        modes: r.vec(2, |r| (r.i32(), r.next() as u32)),
        dgram_senders: r.vec(2, |r| DgramSenders {
            socket: r.next(),
            names: r.vec(3, |r| r.vec(4, |r| r.next() as u8)),
        }),
    }
}
