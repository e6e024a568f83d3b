//! The syscall batch stub (`sys/batch.rs`) run in a real seized child: results and output
//! buffers come back, a failing call stops the batch and is named, a wrong expected
//! result stops it too, the task's SIGTRAP disposition and signal mask are untouched, and
//! the fallback without a stub (one injected call at a time) gives the same results.

mod common;

use std::process::{Child, Command, Stdio};

use stasis::abi::KernelSigaction;
use stasis::sys::batch::{Area, Batch, STUB};
use stasis::sys::inject::{InjectError, Remote};
use stasis::sys::mem::Mem;
use stasis::sys::ptrace::{self, Seized, Stop};

const REGION_LEN: u64 = 3 * 4096;

/// A `sleep` child, seized and stopped, every signal blocked, with an RWX page holding
/// the stub at `page` and the region after it.
struct Subject {
    child: Child,
    task: Seized,
    base: stasis::abi::GpRegs,
    syscall_ip: u64,
    page: u64,
}

impl Subject {
    fn start() -> Subject {
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id() as i32;
        std::thread::sleep(std::time::Duration::from_millis(50));
        let task = ptrace::seize(pid).expect("seize");
        assert!(matches!(
            task.interrupt().expect("interrupt"),
            Stop::Event(_)
        ));
        task.set_sigmask(!0).expect("block signals");
        let base = task.regs().expect("regs");
        let syscall_ip = vdso_syscall(pid);
        let mut s = Subject {
            child,
            task,
            base,
            syscall_ip,
            page: 0,
        };
        let prot = (libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC) as u64;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let len = 4096 + REGION_LEN;
        s.page = s
            .remote(None)
            .call("mmap", libc::SYS_mmap, &[0, len, prot, flags, u64::MAX, 0])
            .expect("mmap in the child");
        Mem::open(pid, true)
            .expect("open mem")
            .write(s.page, &STUB)
            .expect("write stub");
        s
    }

    fn pid(&self) -> i32 {
        self.task.tid()
    }

    fn remote(&self, stub: Option<u64>) -> Remote<'_> {
        Remote::new(&self.task, self.syscall_ip, self.base).with_area(Area {
            stub,
            region: self.page + 4096,
            len: REGION_LEN,
        })
    }

    fn comm(&self) -> String {
        std::fs::read_to_string(format!("/proc/{}/comm", self.pid()))
            .expect("comm")
            .trim()
            .to_string()
    }
}

impl Drop for Subject {
    fn drop(&mut self) {
        let _ = self.task.sigkill();
        let _ = self.child.wait();
    }
}

/// A `syscall` instruction in the child's vDSO.
fn vdso_syscall(pid: i32) -> u64 {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let line = maps
        .lines()
        .find(|l| l.ends_with("[vdso]"))
        .expect("a vdso");
    let range = line.split_whitespace().next().expect("range");
    let (s, e) = range.split_once('-').expect("start-end");
    let (s, e) = (
        u64::from_str_radix(s, 16).expect("hex"),
        u64::from_str_radix(e, 16).expect("hex"),
    );
    let mut text = vec![0u8; (e - s) as usize];
    Mem::open(pid, false)
        .expect("mem")
        .read(s, &mut text)
        .expect("read vdso");
    s + text
        .windows(2)
        .position(|w| w == [0x0f, 0x05])
        .expect("syscall insn") as u64
}

/// getpid, a sigaction read into a buffer, a tolerated failure, gettid.
fn queries(remote: &Remote) -> (u64, KernelSigaction, i64, u64) {
    let mut b = remote.batch();
    let act = b.out::<KernelSigaction>();
    let pid = b.call("getpid", libc::SYS_getpid, &[]);
    let sig = libc::SIGTERM as u64;
    b.call(
        "rt_sigaction",
        libc::SYS_rt_sigaction,
        &[sig, 0, act.addr(), 8],
    );
    let bad = b.try_call("close", libc::SYS_close, &[12345]);
    let tid = b.call("gettid", libc::SYS_gettid, &[]);
    let done = remote.run(&b).expect("batch runs");
    (done.ret(pid), done.get(act), done.raw(bad), done.ret(tid))
}

fn set_name(b: &mut Batch, name: &str) {
    let addr = b.put_str(name);
    b.call(
        "prctl(PR_SET_NAME)",
        libc::SYS_prctl,
        &[libc::PR_SET_NAME as u64, addr],
    );
}

#[test]
fn batch_runs_in_a_seized_child() {
    require_privileged!("batch_runs_in_a_seized_child");
    let _serial = common::serial();
    let s = Subject::start();
    let pid = s.pid() as u64;
    for stub in [Some(s.page), None] {
        let remote = s.remote(stub);
        let (got_pid, act, bad, tid) = queries(&remote);
        assert_eq!((got_pid, tid), (pid, pid), "stub {stub:?}");
        assert_eq!(act.handler, 0, "SIGTERM of sleep is SIG_DFL");
        assert_eq!(bad, -libc::EBADF as i64);

        // A failing call stops the batch: the name set after it is not applied.
        let mut b = remote.batch();
        set_name(&mut b, "before");
        b.call("close", libc::SYS_close, &[12345]);
        set_name(&mut b, "after");
        match remote.run(&b) {
            Err(InjectError::Failed { name, tid, source }) => {
                assert_eq!((name, tid as u64), ("close", pid));
                assert_eq!(source, nix::errno::Errno::EBADF);
            }
            other => panic!("stub {stub:?}: expected close to fail, got {other:?}"),
        }
        assert_eq!(s.comm(), "before");

        // A result other than the expected one stops it too.
        let mut b = remote.batch();
        b.expect("getpid", libc::SYS_getpid, &[], pid + 1);
        set_name(&mut b, "after");
        let err = remote.run(&b).expect_err("getpid is not pid + 1");
        assert!(matches!(err, InjectError::Mismatch { got, .. } if got as u64 == pid));
        assert!(err.to_string().contains(&pid.to_string()), "{err}");
        assert_eq!(s.comm(), "before");
    }
}

#[test]
fn batch_keeps_sigtrap_disposition_and_mask() {
    require_privileged!("batch_keeps_sigtrap_disposition_and_mask");
    let _serial = common::serial();
    let s = Subject::start();
    let remote = s.remote(Some(s.page));
    let mask = s.task.sigmask().expect("mask");
    let ignore = KernelSigaction {
        handler: 1, // SIG_IGN
        ..Default::default()
    };
    let mut b = remote.batch();
    let addr = b.put(stasis::sys::Pod::as_bytes(&ignore));
    let trap = libc::SIGTRAP as u64;
    b.call("rt_sigaction", libc::SYS_rt_sigaction, &[trap, addr, 0, 8]);
    remote.run(&b).expect("ignore SIGTRAP");
    let mut b = remote.batch();
    let act = b.out::<KernelSigaction>();
    b.call(
        "rt_sigaction",
        libc::SYS_rt_sigaction,
        &[trap, 0, act.addr(), 8],
    );
    let done = remote.run(&b).expect("read SIGTRAP's action");
    assert_eq!(done.get(act).handler, 1, "SIGTRAP still ignored");
    assert_eq!(s.task.sigmask().expect("mask"), mask, "mask put back");
}

/// The count `STASIS_PROFILE` printed for `name` on a line `profile: NAME  COUNT  [TIME]`.
fn profiled(stderr: &str, name: &str) -> usize {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("profile: "))
        .find_map(|l| {
            let (label, rest) = l.split_at(l.find("  ")?);
            let count = rest.split_whitespace().next()?;
            (label == name).then(|| count.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no profile line for {name:?}:\n{stderr}"))
}

/// A restored tree runs few batches of syscalls (`restore/staged.rs`): for a process with
/// one thread and common fds, one for its address space and memory and one for every
/// stage from Protections on, plus one of `clone3`s per parent; a few processes of the
/// `tree` victim need more (a stopped child, a shared fd table, zombies). The restored
/// tree still passes its own checks.
#[test]
fn restored_tree_runs_about_two_batches_per_process() {
    let _serial = common::serial();
    require_privileged!("restored_tree_runs_about_two_batches_per_process");
    let tmp = common::TempDir::new("batches");
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("tree", &["40"], &work);
    assert_eq!(victim.wait_ready(), common::Start::Ready);
    let img = tmp.join("img");
    common::dump(victim.pid, &img, &[]).assert_ok("stasis dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    common::reap_image_tree(&img);
    let image = stasis::image::Image::load_metadata(&img).expect("load the image");
    let live = image.tree.alive().count();
    let args = [
        "restore".as_ref(),
        "-d".as_ref(),
        "-D".as_ref(),
        img.as_os_str(),
    ];
    let out = common::start(common::stasis_cmd(&args).env("STASIS_PROFILE", "1"))
        .finish(common::STASIS_TIMEOUT);
    out.assert_ok("stasis restore -d");
    let mut restored = common::Proc::adopt(victim.pid, &work.join("tree.log"));
    restored.go_and_expect_pass();
    let batches = profiled(&out.stderr, "batch");
    assert!(
        batches <= 2 * live + 10,
        "{batches} batches for {live} live processes:\n{}",
        out.stderr
    );
}
