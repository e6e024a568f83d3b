//! HPC workloads (docs/hpc.md).
//!
//! - An OpenMPI job on one node (`mpirun --oversubscribe -np 3 ring`, tests/hpc/ring.c: the
//!   ranks pass a counter around a ring) dumped through `mpirun` as one tree — mpirun, its
//!   ranks, their shared-memory segments in `/dev/shm` and the session directory's PMIx
//!   segments, the ptys and pipes of mpirun's I/O forwarding, the eventfds and sockets of
//!   the runtime — and restored: the count goes on and the job ends with the right total,
//!   once over shared memory (`--mca btl self,vader`) and once over TCP (`self,tcp`).
//! - Slurm: a one-node cluster (munged, slurmctld and slurmd started here on a generated
//!   configuration without cgroups or accounting) runs a counting job under
//!   `scripts/slurm/stasis-slurm-run`; `scancel --signal=USR1 --batch` makes it checkpoint
//!   and requeue, and the requeued run counts on from the checkpoint.
//!
//! Each skips with a printed reason when its programs are not installed.

mod common;

use common::{wait_for, which, Proc, Status, TempDir};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------
// OpenMPI

/// Rounds of the ring: long enough to dump it well before the end (each round sleeps
/// 10 ms on rank 0).
const ROUNDS: u64 = 400;
const RANKS: u64 = 3;

/// tests/hpc/ring.c built with mpicc into `dir`.
fn build_ring(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hpc/ring.c");
    let bin = dir.join("ring");
    let out = Command::new("mpicc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("run mpicc");
    assert!(
        out.status.success(),
        "mpicc ring.c: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    bin
}

fn rounds_done(path: &Path) -> u64 {
    fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Removes, when dropped, the vader segments in /dev/shm that appeared since it was made
/// (a job that did not reach MPI_Finalize leaves them).
struct ShmGuard(Vec<String>);

impl ShmGuard {
    fn new() -> ShmGuard {
        ShmGuard(vader_segments())
    }
}

fn vader_segments() -> Vec<String> {
    fs::read_dir("/dev/shm")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with("vader_segment."))
                .collect()
        })
        .unwrap_or_default()
}

impl Drop for ShmGuard {
    fn drop(&mut self) {
        for name in vader_segments() {
            if !self.0.contains(&name) {
                let _ = fs::remove_file(Path::new("/dev/shm").join(name));
            }
        }
    }
}

/// Why the MPI tests cannot run here, if they cannot.
fn mpi_missing() -> Option<String> {
    if let Err(why) = common::privileged() {
        return Some(why);
    }
    ["mpirun", "mpicc"]
        .iter()
        .find(|t| !which(t))
        .map(|t| format!("{t} is not installed (openmpi-bin, libopenmpi-dev)"))
}

/// Runs the ring under mpirun with `btl`, dumps the tree through mpirun once it made some
/// rounds, restores it and checks that it finishes with the right counter, started once.
fn ring_round_trip(test: &str, btl: &str) {
    let _serial = common::serial();
    if let Some(why) = mpi_missing() {
        return common::skip(test, &why);
    }
    let tmp = TempDir::new(test);
    let _shm = ShmGuard::new();
    let ring = build_ring(tmp.path());
    let progress = tmp.join("progress");
    // The session directory (PMIx segments, hwloc topology) under the test's directory.
    let session = tmp.join("session");
    fs::create_dir_all(&session).expect("mkdir session");
    let mut mpirun = common::spawn_logged(
        Command::new("mpirun")
            .args([
                "--allow-run-as-root",
                "--oversubscribe",
                "--mca",
                "btl",
                btl,
                // The TCP BTL leaves out loopback interfaces by default; a container
                // may have no other.
                "--mca",
                "btl_tcp_if_include",
                "lo",
            ])
            .args(["-np", &RANKS.to_string()])
            .arg(&ring)
            .arg(ROUNDS.to_string())
            .arg(&progress)
            .env("TMPDIR", &session)
            .current_dir(tmp.path()),
        &tmp.join("mpirun.log"),
    );
    wait_for("the ring to go round", Duration::from_secs(60), || {
        if let Some(st) = mpirun.try_reap() {
            panic!("mpirun ended with {st:?}:\n{}", mpirun.log_text());
        }
        (rounds_done(&progress) >= 20).then_some(())
    });
    let family = common::TreeGuard(common::descendants(mpirun.pid));
    let img = tmp.join("img");
    // The ranks' connections to mpirun's runtime are loopback TCP: refused without
    // --tcp-established, naming one, the job left running.
    let out = common::dump(mpirun.pid, &img, &[]);
    let line = out.assert_failed("a dump without --tcp-established");
    assert!(line.contains("established TCP connection"), "{line}");
    assert!(mpirun.alive(), "the refused dump ended mpirun");
    let _ = fs::remove_dir_all(&img);
    let t = Instant::now();
    let out = common::dump(mpirun.pid, &img, &["--tcp-established"]);
    let dumped = t.elapsed();
    out.assert_ok("stasis dump");
    assert_eq!(
        mpirun.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    common::reap_image_tree(&img);
    let at_dump = rounds_done(&progress);
    assert!(at_dump < ROUNDS, "the ring ended before the dump");
    let t = Instant::now();
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore failed: {o:?}"));
    let restored_in = t.elapsed();
    assert_eq!(pid, mpirun.pid, "restored under another pid");
    mpirun.forget();
    let mut restored = Proc::adopt(pid, &tmp.join("mpirun.log"));
    eprintln!(
        "{test}: dumped at round {at_dump}; dump {:.3} s, restore {:.3} s",
        dumped.as_secs_f64(),
        restored_in.as_secs_f64()
    );
    let st = restored.wait_exit(Duration::from_secs(90));
    let log = restored.log_text();
    assert_eq!(
        st,
        Status::Exited(0),
        "mpirun after the restore; log:\n{log}"
    );
    let want = format!("counter {} PASS", ROUNDS * RANKS);
    assert!(log.lines().any(|l| l == want), "no {want:?} in:\n{log}");
    assert_eq!(
        log.matches("ring start").count(),
        1,
        "the job started over:\n{log}"
    );
    assert_eq!(rounds_done(&progress), ROUNDS);
    drop(family);
}

/// Ranks talking over shared memory (Open MPI's vader BTL: segments in /dev/shm that every
/// rank maps, single-copy through `process_vm_readv`).
#[test]
fn mpi_ring_shared_memory_continues() {
    ring_round_trip("mpi_ring_shared_memory_continues", "self,vader");
}

/// Ranks talking over TCP on the loopback (`btl_tcp_if_include lo`: connections between
/// ranks, established when dumped).
#[test]
fn mpi_ring_tcp_continues() {
    ring_round_trip("mpi_ring_tcp_continues", "self,tcp");
}

// ---------------------------------------------------------------------------------------
// Slurm

/// The programs a one-node Slurm needs.
const SLURM_TOOLS: &[&str] = &[
    "munged",
    "slurmctld",
    "slurmd",
    "sbatch",
    "scontrol",
    "scancel",
    "sinfo",
];

/// The init of the test's cluster: a child subreaper (slurmd's steps daemonize, and
/// restored trees outlive their parents) that starts munged, slurmctld and slurmd in the
/// foreground (the commands are its argv, one per argument, split on tabs), reaps
/// everything below it, and on SIGTERM kills every process below it, reaps them and
/// exits.
const CLUSTER_INIT: &str = r#"
import ctypes, os, signal, subprocess, sys, time
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
logdir = sys.argv[1]
for cmd in sys.argv[2:]:
    argv = cmd.split("\t")
    log = open(os.path.join(logdir, os.path.basename(argv[0]) + ".out"), "ab")
    subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    time.sleep(0.5)
def reap():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return
def below():
    table = {}
    for d in os.listdir("/proc"):
        try:
            stat = open(f"/proc/{d}/stat").read()
            table.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(d))
        except (ValueError, OSError, IndexError):
            pass
    out, todo = [], [os.getpid()]
    while todo:
        for c in table.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out
while not stop:
    reap()
    time.sleep(0.1)
deadline = time.time() + 20
while time.time() < deadline:
    pids = below()
    if not pids:
        break
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reap()
    time.sleep(0.05)
"#;

/// Counts to argv[2], appending each number to argv[1] (a line each 0.1 s; the file is
/// opened for each line, so no fd of it is held), then exits with argv[3].
const COUNTER: &str = r#"
import sys, time
path, n, code = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
i = 0
while i < n:
    i += 1
    with open(path, "a") as f:
        f.write(f"{i}\n")
    time.sleep(0.1)
print(f"counted to {i}", flush=True)
sys.exit(code)
"#;

/// A free TCP port on the loopback (bound, read and released).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local_addr").port()
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read the hostname")
        .trim()
        .to_string()
}

/// slurm.conf for one node (this host, named as it is — so that mpirun sees the allocated
/// node as its own and starts its ranks itself, not through `srun` — reached through
/// 127.0.0.1), everything under
/// `dir`: munge authentication on the cluster's own munged socket, process tracking by
/// parentage (no cgroups), no task plugin, no accounting.
fn slurm_conf(dir: &Path, ports: (u16, u16)) -> String {
    let d = dir.display();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "ClusterName=stasis\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={}\n\
         SlurmdPort={}\nSlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\n\
         AuthInfo=socket={d}/munge/sock\nCredType=cred/munge\nStateSaveLocation={d}/state\n\
         SlurmdSpoolDir={d}/spool\nSlurmctldPidFile={d}/slurmctld.pid\n\
         SlurmdPidFile={d}/slurmd.pid\nSlurmctldLogFile={d}/slurmctld.log\n\
         SlurmdLogFile={d}/slurmd.log\nProctrackType=proctrack/linuxproc\n\
         TaskPlugin=task/none\nSelectType=select/linear\nSchedulerType=sched/builtin\n\
         JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
         MpiDefault=none\nReturnToService=2\nSlurmctldTimeout=10\nSlurmdTimeout=10\n\
         InactiveLimit=0\nKillWait=5\nMinJobAge=600\nJobRequeue=1\n\
         NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
         PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
        ports.0,
        ports.1,
        host = hostname(),
    )
}

/// A one-node Slurm cluster in a temporary directory, every daemon below one init
/// ([`CLUSTER_INIT`]): dropping it ends them all.
struct Cluster {
    dir: PathBuf,
    init: Option<Proc>,
}

impl Cluster {
    /// Starts the daemons and waits for the node to be idle; why not, with the logs.
    fn start(dir: &Path) -> Result<Cluster, String> {
        for sub in ["munge", "state", "spool"] {
            fs::create_dir_all(dir.join(sub)).expect("mkdir");
        }
        use std::os::unix::fs::PermissionsExt;
        let munge = dir.join("munge");
        fs::set_permissions(&munge, fs::Permissions::from_mode(0o700)).expect("chmod munge");
        let mut key = vec![0u8; 1024];
        use std::io::Read;
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .expect("read /dev/urandom");
        fs::write(munge.join("key"), key).expect("write the munge key");
        fs::set_permissions(munge.join("key"), fs::Permissions::from_mode(0o600))
            .expect("chmod the munge key");
        let conf = dir.join("slurm.conf");
        fs::write(&conf, slurm_conf(dir, (free_port(), free_port()))).expect("slurm.conf");
        let m = munge.display();
        let c = conf.display();
        let commands = [
            format!(
                "munged\t-F\t-f\t-S\t{m}/sock\t--key-file={m}/key\t--log-file={m}/log\t\
                 --pid-file={m}/pid\t--seed-file={m}/seed"
            ),
            format!("slurmctld\t-D\t-i\t-f\t{c}"),
            format!("slurmd\t-D\t-f\t{c}"),
        ];
        let init = common::spawn_logged(
            Command::new("python3")
                .args(["-c", CLUSTER_INIT])
                .arg(dir)
                .args(commands),
            &dir.join("init.log"),
        );
        let cluster = Cluster {
            dir: dir.to_path_buf(),
            init: Some(init),
        };
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let state = cluster.try_command("sinfo", &["-h", "-o", "%T"]);
            if state.as_ref().is_ok_and(|s| s.trim() == "idle") {
                return Ok(cluster);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the node is not idle after 40 s (sinfo: {state:?})\n{}",
                    cluster.logs()
                ));
            }
            common::sleep_ms(200);
        }
    }

    /// Runs a Slurm client command against this cluster: its stdout, or what it said.
    fn try_command(&self, tool: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(tool)
            .args(args)
            .env("SLURM_CONF", self.dir.join("slurm.conf"))
            .output()
            .map_err(|e| format!("run {tool}: {e}"))?;
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match out.status.success() {
            true => Ok(text(&out.stdout)),
            false => Err(format!(
                "{tool} {args:?}: {}{}",
                text(&out.stdout),
                text(&out.stderr)
            )),
        }
    }

    /// Runs a Slurm client command against this cluster: its stdout (a failure panics).
    fn command(&self, tool: &str, args: &[&str]) -> String {
        self.try_command(tool, args)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// `KEY=VALUE` fields of `scontrol show job ID`.
    fn job_field(&self, id: &str, key: &str) -> Option<String> {
        let out = self.command("scontrol", &["show", "job", id]);
        out.split_whitespace()
            .find_map(|f| f.strip_prefix(&format!("{key}=")).map(str::to_string))
    }

    /// What the daemons logged, for a failing test.
    fn logs(&self) -> String {
        ["slurmctld.log", "slurmd.log", "init.log"]
            .iter()
            .map(|f| {
                let text = fs::read_to_string(self.dir.join(f)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("== {f}\n{}\n", tail.join("\n"))
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut init) = self.init.take() {
            init.signal(libc::SIGTERM);
            init.wait_exit(Duration::from_secs(30));
        }
    }
}

fn count_lines(path: &Path) -> Vec<u64> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect()
}

/// How many numbers the counter job counts to, and the code it exits with.
const COUNT_TO: u64 = 120;
const COUNTER_EXIT: i32 = 7;

/// A cluster for `test` in `tmp`, or None (a SKIP line printed) where Slurm cannot run.
fn cluster_for(test: &str, tmp: &TempDir) -> Option<Cluster> {
    if let Err(why) = common::privileged() {
        common::skip(test, &why);
        return None;
    }
    if let Some(tool) = SLURM_TOOLS.iter().find(|t| !which(t)) {
        common::skip(test, &format!("{tool} is not installed (slurm-wlm, munge)"));
        return None;
    }
    match Cluster::start(&tmp.join("cluster")) {
        Ok(c) => Some(c),
        // The container pass runs in namespaces of its own where Slurm may not start;
        // on the host it must.
        Err(why) if std::env::var_os("STASIS_IN_CONTAINER").is_some() => {
            common::skip(
                test,
                &format!("Slurm does not start in this container: {why}"),
            );
            None
        }
        Err(why) => panic!("the test cluster did not start: {why}"),
    }
}

/// A batch job running `command` under scripts/slurm/stasis-slurm-run (store in
/// tmp/store, `env` exported first), submitted to `cluster`.
struct Job<'a> {
    cluster: &'a Cluster,
    id: String,
    out: PathBuf,
}

impl<'a> Job<'a> {
    fn submit(cluster: &'a Cluster, tmp: &TempDir, env: &str, command: &str) -> Job<'a> {
        let wrapper = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm/stasis-slurm-run");
        let script = format!(
            "#!/bin/bash\n#SBATCH --requeue\n#SBATCH --open-mode=append\n\
             #SBATCH --signal=B:USR1@60\nexport STASIS={} {env}\n\
             exec {} --store {} -- {command}\n",
            common::STASIS,
            wrapper.display(),
            tmp.join("store").display(),
        );
        fs::write(tmp.join("job.sh"), script).expect("write job.sh");
        let out = tmp.join("job.out");
        let (out_arg, script_arg) = (out.display().to_string(), tmp.join("job.sh"));
        let id = cluster.command(
            "sbatch",
            &[
                "--parsable",
                "-o",
                &out_arg,
                &script_arg.display().to_string(),
            ],
        );
        Job {
            cluster,
            id: id.trim().to_string(),
            out,
        }
    }

    fn field(&self, key: &str) -> Option<String> {
        self.cluster.job_field(&self.id, key)
    }

    /// `scancel --signal=USR1 --batch`, then, once requeued, start it again at once.
    fn checkpoint_and_requeue(&self) {
        let c = self.cluster;
        c.command("scancel", &["--signal=USR1", "--batch", &self.id]);
        wait_for("the job to be requeued", Duration::from_secs(30), || {
            (self.field("JobState").as_deref() == Some("PENDING")).then_some(())
        });
        // Slurm holds a requeued job back (BeginTime) for two minutes; release it, but
        // not at once: slurmd refuses a launch whose credential is from the second it
        // revoked the job's previous one in ("Job credential revoked").
        wait_for("the node to be idle again", Duration::from_secs(30), || {
            let out = c.command("sinfo", &["-h", "-o", "%T"]);
            (out.trim() == "idle").then_some(())
        });
        common::sleep_ms(2000);
        let id = format!("JobId={}", self.id);
        c.command("scontrol", &["update", &id, "StartTime=now"]);
    }

    /// Waits for the job to end: its final state and exit code, and a description (the
    /// job's output and the daemons' logs) for assertions.
    fn wait_end(&self) -> (String, String, String) {
        let state = wait_for("the job to end", Duration::from_secs(90), || {
            let s = self.field("JobState")?;
            let over = !["PENDING", "RUNNING", "REQUEUED", "COMPLETING"].contains(&s.as_str());
            over.then_some(s)
        });
        let log = fs::read_to_string(&self.out).unwrap_or_default();
        let context = format!("job output:\n{log}\n{}", self.cluster.logs());
        assert_eq!(self.field("Restarts").as_deref(), Some("1"), "{context}");
        assert!(log.contains("restoring checkpoint 1"), "{context}");
        (state, self.field("ExitCode").unwrap_or_default(), context)
    }
}

/// A job counting under scripts/slurm/stasis-slurm-run on a one-node Slurm: SIGUSR1 to its
/// batch shell checkpoints the counter into the store and requeues the job; the requeued
/// run restores the checkpoint, so the count goes on from where it was (every number
/// once, in order), and the job's exit code is the restored counter's.
#[test]
fn slurm_job_requeued_counts_on() {
    const TEST: &str = "slurm_job_requeued_counts_on";
    let _serial = common::serial();
    let started = Instant::now();
    let tmp = TempDir::new("slurm");
    let Some(cluster) = cluster_for(TEST, &tmp) else {
        return;
    };
    let counter = tmp.join("count.py");
    fs::write(&counter, COUNTER).expect("write count.py");
    let count = tmp.join("count.log");
    let command = format!(
        "python3 {} {} {COUNT_TO} {COUNTER_EXIT}",
        counter.display(),
        count.display()
    );
    let job = Job::submit(&cluster, &tmp, "", &command);
    wait_for("the job to count to 20", Duration::from_secs(60), || {
        (count_lines(&count).len() >= 20).then_some(())
    });
    job.checkpoint_and_requeue();
    let at_checkpoint = count_lines(&count).len();
    let (state, code, context) = job.wait_end();
    assert_eq!(
        state, "FAILED",
        "the counter exits with {COUNTER_EXIT}; {context}"
    );
    assert_eq!(code, format!("{COUNTER_EXIT}:0"), "{context}");
    assert!(
        context.contains(&format!("counted to {COUNT_TO}")),
        "{context}"
    );
    let want: Vec<u64> = (1..=COUNT_TO).collect();
    assert_eq!(
        count_lines(&count),
        want,
        "numbers lost or counted twice; {context}"
    );
    drop(cluster);
    eprintln!(
        "{TEST}: checkpointed at {at_checkpoint}, counted on to {COUNT_TO}; {:.1} s in all",
        started.elapsed().as_secs_f64()
    );
}

/// The MPI ring as a Slurm job: `mpirun -np 3` under the wrapper (`--tcp-established`
/// through STASIS_DUMP_ARGS), checkpointed with its ranks on SIGUSR1 and requeued; the
/// requeued run restores it and the job completes with the right counter, started once.
#[test]
fn slurm_mpi_job_requeued_finishes() {
    const TEST: &str = "slurm_mpi_job_requeued_finishes";
    let _serial = common::serial();
    if let Some(why) = mpi_missing() {
        return common::skip(TEST, &why);
    }
    let tmp = TempDir::new("slurm-mpi");
    let _shm = ShmGuard::new();
    let Some(cluster) = cluster_for(TEST, &tmp) else {
        return;
    };
    let ring = build_ring(tmp.path());
    let progress = tmp.join("progress");
    let command = format!(
        "mpirun --allow-run-as-root --oversubscribe -np {RANKS} {} {ROUNDS} {}",
        ring.display(),
        progress.display()
    );
    let job = Job::submit(
        &cluster,
        &tmp,
        "STASIS_DUMP_ARGS=--tcp-established",
        &command,
    );
    wait_for("the ring to go round", Duration::from_secs(60), || {
        (rounds_done(&progress) >= 20).then_some(())
    });
    job.checkpoint_and_requeue();
    let (state, code, context) = job.wait_end();
    assert_eq!(
        (state.as_str(), code.as_str()),
        ("COMPLETED", "0:0"),
        "{context}"
    );
    let want = format!("counter {} PASS", ROUNDS * RANKS);
    assert!(context.contains(&want), "{context}");
    assert_eq!(
        context.matches("ring start").count(),
        1,
        "started over: {context}"
    );
    assert_eq!(rounds_done(&progress), ROUNDS);
}

/// A shell loop appending a number a line to `count` through its stdout (`exec >>`:
/// `O_WRONLY | O_APPEND`, as Slurm opens a job's output with `--open-mode=append`).
const APPENDER: &str = "exec >>count; i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done";

/// A process whose output file grew between dump and restore (the job's wrapper, stasis
/// and the requeued run write to it) comes back and appends after what was added; once
/// the file was cut, the restore is refused, naming it, with no process created.
#[test]
fn append_only_output_may_grow_not_shrink() {
    const TEST: &str = "append_only_output_may_grow_not_shrink";
    let _serial = common::serial();
    if let Err(why) = common::privileged() {
        return common::skip(TEST, &why);
    }
    let tmp = TempDir::new("append");
    let count = tmp.join("count");
    let mut sh = common::spawn_logged(
        Command::new("sh")
            .args(["-c", APPENDER])
            .current_dir(tmp.path()),
        &tmp.join("sh.log"),
    );
    wait_for("the loop to count", Duration::from_secs(30), || {
        (count_lines(&count).len() >= 5).then_some(())
    });
    let img = tmp.join("img");
    common::dump(sh.pid, &img, &[]).assert_ok("stasis dump");
    assert_eq!(
        sh.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    common::reap_image_tree(&img);
    let before = count_lines(&count);
    use std::io::Write;
    fs::OpenOptions::new()
        .append(true)
        .open(&count)
        .and_then(|mut f| f.write_all(b"added by another process\n"))
        .expect("append to count");
    let pid = common::restore_detached(&img).unwrap_or_else(|o| panic!("restore failed: {o:?}"));
    assert_eq!(pid, sh.pid);
    sh.forget();
    let restored = Proc::adopt(pid, &tmp.join("sh.log"));
    wait_for("the loop to count on", Duration::from_secs(30), || {
        (count_lines(&count).len() >= before.len() + 5).then_some(())
    });
    let text = fs::read_to_string(&count).expect("read count");
    let (head, tail) = text
        .split_once("added by another process\n")
        .expect("the added line is still there");
    let numbers = |s: &str| -> Vec<u64> { s.lines().filter_map(|l| l.parse().ok()).collect() };
    assert_eq!(numbers(head), before, "the lines before were kept");
    let next = before.len() as u64 + 1;
    assert_eq!(
        numbers(tail).first(),
        Some(&next),
        "the count went on after the added line:\n{text}"
    );

    // Cut: refused, no process made.
    let img2 = tmp.join("img2");
    common::dump(pid, &img2, &[]).assert_ok("the second dump");
    let mut restored = restored;
    assert_eq!(
        restored.wait_exit(Duration::from_secs(10)),
        Status::Signaled(libc::SIGKILL)
    );
    common::reap_image_tree(&img2);
    File::options()
        .write(true)
        .open(&count)
        .and_then(|f| f.set_len(10))
        .expect("cut count");
    let out = common::restore_detached(&img2).expect_err("a restore onto a cut output file");
    let line = out.assert_failed("restore onto a cut file");
    assert!(
        line.contains("count") && line.contains("was cut") && line.contains(&pid.to_string()),
        "{line}"
    );
    assert!(
        common::proc_state(pid).is_none(),
        "a process was left: {pid}"
    );
}
