#!/usr/bin/env python3
"""Run CRIU's ZDTM static tests against stasis (no CRIU binary involved).

Each test runs as zdtm.py's host flavor does — the test daemonizes, is dumped, restored
and asked for its verdict with SIGTERM — but inside fresh pid, mount, network, IPC and UTS
namespaces of its own (one `unshare` per test), so that tests cannot see each other's
leftovers and every orphan is reaped by the test's own pid 1 (this driver).

With `--flavor ns` (zdtm.py's ns flavor) the test itself is the init of new pid, mount,
network, IPC and UTS namespaces below those, pivoted into a root of its own (see
ns_flavor.py): stasis dumps that init and restores it with `--root`, rebuilding the
namespaces.

    zdtm.py --criu CRIU_SRC [--flavor host|ns] [--stasis BIN] [--list FILE] [--exclude RE]
            [TEST ...]

Prints one `PASS name`, `FAIL name: stage: reason` or `SKIP name: reason` line per test
and a closing `N passed, N failed, N skipped` line; exits 1 if any test failed. Logs of
every test (stasis's stderr, the test's .out) are kept under --logs (/tmp/conformance).
"""

import argparse
import ctypes
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import ns_flavor

ARCH = "x86_64"
PR_SET_CHILD_SUBREAPER = 36
# zdtm.py's numbers: tests that are not `suid` run with these credentials.
TEST_CREDS = {"ZDTM_UID": "18943", "ZDTM_GID": "58467", "ZDTM_GROUPS": "27495 48244"}


# ---------------------------------------------------------------------------------------
# Test list and descriptions


def read_desc(path):
    """A `.desc` file: a Python literal dict (empty or missing means defaults)."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except FileNotFoundError:
        return {}
    if not text:
        return {}
    # zdtm.py evaluates them; a few are expressions over `os`.
    return eval(text, {"__builtins__": {}, "os": os}, {})


def flags(desc):
    return desc.get("flags", "").split()


def is_program(path):
    """An ELF binary or a script: tests leave other executable files behind (fanotify00's
    empty `fanotify-del-after-cr`), which zdtm.py would list too."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head == b"\x7fELF" or head[:2] == b"#!"


def all_tests(static):
    """Every executable test binary in zdtm/static, as zdtm.py's `all_tests` finds them."""
    top = read_desc(os.path.join(os.path.dirname(os.path.dirname(static)), "zdtm.desc"))
    excluded = {os.path.basename(x) for x in top.get("exclude", [])}
    names = []
    for name in sorted(os.listdir(static)):
        path = os.path.join(static, name)
        if "." in name or name in excluded or os.path.islink(path):
            continue
        if os.path.isfile(path) and os.access(path, os.X_OK) and is_program(path):
            names.append(name)
    return names


def have_feature(feature):
    """zdtm's `feature` keys (answered by `criu check` there), probed here directly."""
    probes = {
        "apparmor_stacking": lambda: os.path.exists("/sys/kernel/security/apparmor/.ns_stacked"),
        "autofs": lambda: os.path.exists("/dev/autofs"),
        "has_ipt_legacy": lambda: shutil.which("iptables-legacy") is not None,
        "nftables": lambda: shutil.which("nft") is not None,
        "network_lock_nftables": lambda: shutil.which("nft") is not None,
        "loginuid": lambda: os.path.exists("/proc/self/loginuid"),
        "tun": lambda: os.path.exists("/dev/net/tun"),
        "tun_ns": lambda: os.path.exists("/dev/net/tun"),
        "timens": lambda: os.path.exists("/proc/self/ns/time"),
        "cgroupns": lambda: os.path.exists("/proc/self/ns/cgroup"),
    }
    probe = probes.get(feature)
    # Every other feature zdtm asks about is a kernel interface this tool requires anyway
    # (mnt_id, fdinfo_lock, seccomp_suspend, get_rseq_conf, memfd_hugetlb, ...).
    return probe() if probe else True


def skip_reason(static, name, desc, run_all, flavor="host", any_flavor=False):
    if desc.get("arch", ARCH) != ARCH:
        return "arch %s" % desc["arch"]
    if run_all and "noauto" in flags(desc):
        return "manual run only (noauto)"
    code = "h" if flavor == "host" else flavor
    if not any_flavor and code not in desc.get("flavor", "h ns uns").split():
        return "no %s flavor" % flavor
    for feature in desc.get("feature", "").split():
        if not have_feature(feature):
            return "no %s feature" % feature
    checkskip = os.path.join(static, name + ".checkskip")
    if os.access(checkskip, os.X_OK):
        if subprocess.call([checkskip], cwd=static, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL) != 0:
            return "checkskip failed"
    return None


# ---------------------------------------------------------------------------------------
# Inside the test's namespaces: this process is pid 1 and reaps every orphan.


class Fail(Exception):
    def __init__(self, stage, reason):
        super().__init__("%s: %s" % (stage, reason))
        self.stage = stage


def reap_orphans(keep):
    """Reap zombie children that are not ours to wait for (`keep`: pids a Popen waits on)."""
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in keep:
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == "Z" and int(fields[1]) == me:
            try:
                os.waitpid(int(entry), os.WNOHANG)
            except ChildProcessError:
                pass


def criu_root_relative(opt):
    """A restore's `mnt[KEY]:PATH` with a relative PATH (mnt_root_ext's `.zdtm_root_ext.tmp`)
    names PATH below `/` for CRIU: it binds the source after entering a mount namespace
    (setns), which moves its cwd to that namespace's root. stasis resolves a relative path
    against its cwd, as any command-line path, so the path is given as CRIU takes it."""
    m = re.match(r"^(mnt\[[^\]]+\]:)([^/].*)$", opt)
    return m.group(1) + "/" + m.group(2) if m else opt


def run(argv, log, timeout, env=None, cwd=None, keep=()):
    """Run a command, reaping orphans meanwhile (but not `keep`, pids another Popen waits
    on); its stderr (and stdout) go to `log`."""
    with open(log, "ab") as out:
        out.write(("$ %s\n" % " ".join(argv)).encode())
        out.flush()
        proc = subprocess.Popen(argv, stdout=out, stderr=out, env=env, cwd=cwd,
                                stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            reap_orphans({proc.pid, *keep})
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                return None
            time.sleep(0.01)
        return proc.returncode


def last_line(path):
    try:
        with open(path, "rb") as f:
            lines = [l for l in f.read().decode(errors="replace").splitlines() if l.strip()]
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def alive(pid):
    """True while `pid` exists and is not a zombie (a zombie is reaped on the way)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        reap_orphans(set())
        return False
    return True


def wait_gone(pid, timeout):
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            return False
        reap_orphans(set())
        time.sleep(0.01)
    return True


def parents():
    """pid -> ppid of every process in this pid namespace."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    out[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    return out


def tree_of(root):
    """`root` and its descendants, as /proc shows them now."""
    table = parents()
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in table.items() if pp in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


def wait_empty(pids, timeout):
    """Waits until none of `pids` exists any more; returns those left."""
    deadline = time.monotonic() + timeout
    while True:
        left = sorted(p for p in pids if os.path.exists("/proc/%d" % p))
        if not left or time.monotonic() > deadline:
            return left
        reap_orphans(set())
        time.sleep(0.01)


def reads_criu_images(hook):
    with open(hook, "rb") as f:
        text = f.read()
    return b"pycriu" in text or b"ZDTM_IMG_DIR" in text


def read_pid(pidfile):
    with open(pidfile) as f:
        return int(f.readline().strip())


class Inner:
    """One test in its own namespaces: start, dump, restore, verdict."""

    def __init__(self, args):
        self.static = args.static
        self.name = args.one
        self.stasis = args.stasis
        self.logs = args.logdir
        self.desc = read_desc(os.path.join(self.static, self.name + ".desc"))
        self.timeout = int(self.desc.get("timeout") or 30)
        self.log = os.path.join(self.logs, "stasis.log")
        self.images = os.path.join(self.logs, "images")
        # The cgroup tests' hooks run from the log directory, `--clean` also before the
        # start (a named v1 hierarchy outlives the test's namespace, and with it the
        # cgroups an earlier run left); their `--pre-restore` removes the test's cgroups
        # so that the restore must recreate them. stasis runs where CRIU's images
        # directory would be (dump/zdtm/static/NAME/PID/1 below the hooks' directory),
        # as relative options such as cgroup_yard's `--cgroup-yard` count on it.
        self.cgroup = self.name.startswith("cgroup")
        self.cwd = None
        # ns flavor: the test's root, and the tmpfs that becomes its /dev.
        self.root = args.root if args.flavor == "ns" else None
        self.devpath = os.path.join(self.logs, "dev")

    def env(self):
        env = dict(os.environ)
        env["TMPDIR"] = os.environ.get("TMPDIR", "/tmp")
        env["ZDTM_THREAD_BOMB"] = "5"
        if "suid" not in flags(self.desc):
            env.update(TEST_CREDS)
        if self.root:
            env.update(ns_flavor.env(self.root, self.devpath, self.desc))
        return env

    def mount_v1_net_prio(self):
        """cgroup_ifpriomap needs the v1 net_prio hierarchy to exist (it takes its
        name from /proc/self/cgroup; without it the test frees a string literal at the
        end): mounted here, in the test's own mount namespace, as systemd mounts it on
        a usual host. The hierarchy lives as long as this namespace."""
        with open("/proc/cgroups") as f:
            if not any(l.split()[:1] == ["net_prio"] for l in f):
                return
        where = os.path.join(self.logs, "net_prio")
        os.makedirs(where, exist_ok=True)
        subprocess.call(["mount", "-t", "cgroup", "-o", "net_prio", "zdtm_net_prio", where],
                        stderr=subprocess.DEVNULL)

    def start(self):
        if self.root:
            ns_flavor.mount_root(self.root, self.devpath)
        if self.cgroup:
            self.mount_v1_net_prio()
            self.clean()
        subprocess.call(["make", "--no-print-directory", "-s", "-C", self.static,
                         self.name + ".cleanout"], stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
        # Some tests name files in /tmp themselves (sockets_dgram's sockets): a run that
        # died leaves them, owned by root, and the test's uid cannot unlink them in the
        # sticky /tmp (its bind then fails with EADDRINUSE).
        for stale in glob.glob("/tmp/%s.test*" % self.name):
            subprocess.call(["rm", "-rf", "--", stale])
        if "suid" not in flags(self.desc):
            mode = os.stat(self.static).st_mode
            os.chmod(self.static, mode | 0o222)
        # zdtm.py runs the --post-start hook while the test starts (some tests wait for
        # what it sets up before they write their pidfile).
        hook = self.start_hook("--post-start")
        rc = run(["make", "--no-print-directory", "-C", self.static, self.name + ".pid"],
                 os.path.join(self.logs, "start.log"), self.timeout, env=self.env(),
                 keep={hook.pid} if hook else ())
        if hook and hook.wait(timeout=self.timeout) != 0:
            raise Fail("start", "hook --post-start exited %d" % hook.returncode)
        pidfile = os.path.join(self.static, self.name + ".pid")
        if rc != 0 or not os.path.exists(pidfile):
            raise Fail("start", "the test did not start (%s)" % last_line(self.out()))
        self.pid = read_pid(pidfile)
        if not alive(self.pid):
            raise Fail("start", "pid %d is gone" % self.pid)
        if self.cgroup:
            self.cwd = os.path.join(self.logs, "dump", "zdtm", "static", self.name,
                                    str(self.pid), "1")
            os.makedirs(self.cwd, exist_ok=True)

    def start_hook(self, stage):
        """Starts the test's `.hook` script for `stage`, as zdtm.py does: from the directory
        where `zdtm/static` is the tests' directory (hooks use paths relative to it). Hooks
        that read CRIU's image files (pycriu, ZDTM_IMG_DIR), which stasis does not write,
        are not run."""
        hook = os.path.join(self.static, self.name + ".hook")
        if not os.access(hook, os.X_OK) or reads_criu_images(hook):
            return None
        top = os.path.dirname(self.static)
        cwd = top if os.path.isdir(os.path.join(top, "zdtm", "static")) else os.path.dirname(top)
        if self.cgroup:
            cwd = self.logs  # the directory above stasis's (see __init__)
        log = open(os.path.join(self.logs, "hook.log"), "ab")
        log.write(("$ %s %s\n" % (hook, stage)).encode())
        log.flush()
        return subprocess.Popen([hook, stage], cwd=cwd, stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL)

    def hook(self, stage):
        """Runs the test's hook for `stage` (zdtm.py's try_run_hook); a failure fails it."""
        proc = self.start_hook(stage)
        if proc and proc.wait(timeout=self.timeout) != 0:
            raise Fail(stage.lstrip("-"), "hook %s exited %d" % (stage, proc.returncode))

    def clean(self):
        """The `--clean` hook, whose failure fails nothing."""
        try:
            self.hook("--clean")
        except (Fail, subprocess.TimeoutExpired):
            pass

    def out(self):
        return os.path.join(self.static, self.name + ".out")

    def stasis_opts(self, which):
        opts = self.desc.get("opts", "").split() + self.desc.get(which, "").split()
        return [criu_root_relative(o) if which == "ropts" else o for o in opts]

    def dump(self):
        os.makedirs(self.images, exist_ok=True)
        tree = tree_of(self.pid)
        self.hook("--pre-dump")
        argv = [self.stasis, "dump", "-t", str(self.pid), "-D", self.images, "-q"]
        rc = run(argv + self.stasis_opts("dopts"), self.log, 120, cwd=self.cwd)
        if rc != 0:
            return "stasis dump exited %s: %s" % (rc, last_line(self.log))
        if not wait_gone(self.pid, self.timeout):
            raise Fail("dump", "pid %d still runs after the dump" % self.pid)
        # The whole tree must be gone (every pid free again) before the restore: the
        # dump killed it, and this pid 1 reaps what was orphaned.
        left = wait_empty(tree, self.timeout)
        if left:
            raise Fail("dump", "pids %s still exist after the dump" % left)
        return None

    def restore(self):
        self.hook("--pre-restore")
        argv = [self.stasis, "restore", "-D", self.images, "-d", "-q"]
        if self.root:
            argv += ["--root", self.root]
        rc = run(argv + self.stasis_opts("ropts"), self.log, 120, cwd=self.cwd)
        if rc != 0:
            raise Fail("restore", "stasis restore exited %s: %s" % (rc, last_line(self.log)))
        if not alive(self.pid):
            raise Fail("restore", "pid %d is not running after the restore" % self.pid)
        self.hook("--post-restore")

    def verdict(self):
        os.kill(self.pid, signal.SIGTERM)
        if not wait_gone(self.pid, self.timeout):
            os.kill(self.pid, signal.SIGKILL)
            raise Fail("result", "pid %d did not exit on SIGTERM" % self.pid)
        line = last_line(self.out())
        if "PASS" not in line.split():
            raise Fail("result", line or "no verdict in %s" % self.out())

    def main(self):
        os.makedirs(self.logs, exist_ok=True)
        subprocess.call(["ip", "link", "set", "lo", "up"], stderr=subprocess.DEVNULL)
        try:
            self.start()
            refused = self.dump()
            if refused is None:
                self.restore()
            elif "crfail" not in flags(self.desc):
                raise Fail("dump", refused)
            self.verdict()
            reason = refused or ""
            if refused is None and "crfail" in flags(self.desc):
                # CRIU cannot dump it; stasis did, and the test found its state intact.
                reason = "beyond CRIU: CRIU refuses this test (crfail); restored and verified"
            verdict = {"result": "PASS", "reason": reason}
        except Fail as e:
            verdict = {"result": "FAIL", "reason": str(e)}
        finally:
            self.clean()
            try:
                shutil.copy(self.out(), self.logs)
            except OSError:
                pass
        print(json.dumps(verdict), flush=True)
        # Leave no test process behind: pid 1 exiting kills the whole namespace.
        return 0


# ---------------------------------------------------------------------------------------
# Outside: one unshare per test.


def run_one(args, name, logroot):
    logdir = os.path.join(logroot, name)
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir)
    argv = ["unshare", "--pid", "--fork", "--mount-proc", "--net", "--ipc", "--uts",
            sys.executable, os.path.abspath(__file__), "--one", name,
            "--static", args.static, "--stasis", args.stasis, "--logdir", logdir,
            "--flavor", args.flavor, "--root", args.root or ""]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return "FAIL", "timeout: no verdict within %d s" % args.timeout
    with open(os.path.join(logdir, "driver.log"), "wb") as f:
        f.write(done.stdout + done.stderr)
    for line in reversed(done.stdout.decode(errors="replace").splitlines()):
        if line.startswith("{"):
            verdict = json.loads(line)
            return verdict["result"], verdict["reason"]
    tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
    return "FAIL", "driver: %s" % (tail[0] if tail else "exit %d" % done.returncode)


def leftovers(directory, names):
    """What earlier runs left beside the tests (pid, out and test files, device nodes,
    FIFOs and sockets the tests made): not copied, and never opened."""
    skip = set()
    for name in names:
        path = os.path.join(directory, name)
        # (`.sync`: files hooks and tests hand each other, e.g. socket_lock.sync)
        left = re.search(r"\.(pid|out|test|state)|\.sync$", name) is not None
        if left or not (os.path.isdir(path) or os.path.isfile(path) or os.path.islink(path)):
            skip.add(name)
    return skip


def private_tree(static, flavor):
    """A copy of zdtm's test programs for this run: tests write their pid, out and test
    files beside their binaries, so two runs sharing one tree would trip over each other.
    For the ns flavor the copy goes to zdtm/ below a new directory, the tests' root, as
    zdtm.py's root is CRIU's test/ directory."""
    zdtm = os.path.dirname(static)
    top = tempfile.mkdtemp(prefix="stasis-zdtm.")
    os.chmod(top, 0o755)  # tests run under their own uid and must reach their directory
    root = top
    if flavor == "ns":
        root = os.path.join(top, "zdtm")
        os.mkdir(root, 0o755)
    for name in ("Makefile", "Makefile.inc", "lib", "static"):
        src = os.path.join(zdtm, name)
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(root, name), symlinks=True, ignore=leftovers)
        elif os.path.exists(src):
            shutil.copy2(src, root)
    if flavor != "ns":
        # Hooks name their files zdtm/static/..., relative to where zdtm.py runs them.
        os.symlink(".", os.path.join(root, "zdtm"))
    return top, os.path.join(root, "static")


def build_stasis(repo):
    subprocess.check_call(["cargo", "build", "--release", "-q"], cwd=repo)
    return os.path.join(repo, "target", "release", "stasis")


def parse():
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--criu", default=os.environ.get("CRIU_SRC", os.path.join(repo, "..", "criu")),
                   help="a CRIU v4.2 source tree with test/zdtm built")
    p.add_argument("--stasis", help="the stasis binary (default: build this checkout's)")
    p.add_argument("--list", help="a file naming tests, one per line (# comments)")
    p.add_argument("--exclude", help="skip tests whose name matches this regex")
    p.add_argument("--logs", default="/tmp/conformance", help="where each test's logs go")
    p.add_argument("--timeout", type=int, default=180, help="seconds per test, all stages")
    p.add_argument("--report", help="write name<TAB>result<TAB>reason lines here")
    p.add_argument("--flavor", choices=["host", "ns"], default="host",
                   help="host: the test runs as zdtm's host flavor (in namespaces of the"
                   " runner's); ns: the test is the init of namespaces of its own, which the"
                   " restore must rebuild")
    p.add_argument("--any-flavor", action="store_true",
                   help="also run tests zdtm runs only as a namespace's init (ns flavor) the host"
                   " way, in their own namespaces (System V IPC tests, for one)")
    p.add_argument("--in-place", action="store_true",
                   help="run the tests in the CRIU tree itself instead of a private copy")
    p.add_argument("tests", nargs="*", help="test names (default: every test)")
    # Internal: run one test as pid 1 of its namespaces.
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--static", help=argparse.SUPPRESS)
    p.add_argument("--logdir", help=argparse.SUPPRESS)
    p.add_argument("--root", help=argparse.SUPPRESS)
    args = p.parse_args()
    args.repo = repo
    return args


def chosen_tests(args):
    names = [t.split("/")[-1] for t in args.tests]
    if args.list:
        with open(args.list) as f:
            names += [l.split("#")[0].strip() for l in f if l.split("#")[0].strip()]
    run_all = not names
    if run_all:
        names = all_tests(args.static)
    if args.exclude:
        names = [n for n in names if not re.search(args.exclude, n)]
    return names, run_all


def main():
    args = parse()
    if args.one:
        return Inner(args).main()
    if os.geteuid() != 0:
        sys.exit("conformance: must run as root (ptrace, clone3 with set_tid, namespaces)")
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    args.static = os.path.join(os.path.abspath(args.criu), "test", "zdtm", "static")
    if not os.path.isdir(args.static):
        sys.exit("conformance: no %s (fetch CRIU v4.2 and build test/zdtm)" % args.static)
    args.stasis = os.path.abspath(args.stasis or build_stasis(args.repo))
    names, run_all = chosen_tests(args)
    copy = None
    if not args.in_place:
        copy, args.static = private_tree(args.static, args.flavor)
    args.root = None
    if args.flavor == "ns":
        # The tests' root: the directory above zdtm/ (CRIU's test/ when in place).
        args.root = os.path.dirname(os.path.dirname(args.static))
        ns_flavor.build_root(args.root)
    try:
        return run_all_tests(args, names, run_all)
    finally:
        if copy:
            shutil.rmtree(copy, ignore_errors=True)


def run_all_tests(args, names, run_all):
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    report = open(args.report, "w") if args.report else None
    for name in names:
        if not os.access(os.path.join(args.static, name), os.X_OK):
            result, reason = "FAIL", "not built: no %s in %s" % (name, args.static)
        else:
            desc = read_desc(os.path.join(args.static, name + ".desc"))
            reason = skip_reason(args.static, name, desc, run_all, args.flavor,
                                 args.any_flavor)
            result = "SKIP" if reason else None
            if result is None and args.root:
                reason = ns_flavor.prepare_test(args.root, os.path.join(args.static, name), desc)
                result = "FAIL" if reason else None
            if result is None:
                result, reason = run_one(args, name, args.logs)
        counts[result] += 1
        print("%s %s%s" % (result, name, ": " + reason if reason else ""), flush=True)
        if report:
            report.write("%s\t%s\t%s\n" % (name, result, reason or ""))
            report.flush()
    print("%d passed, %d failed, %d skipped" % (counts["PASS"], counts["FAIL"], counts["SKIP"]))
    return 1 if counts["FAIL"] else 0


if __name__ == "__main__":
    sys.exit(main())
