#!/usr/bin/env python3
"""Benchmark driver for scripts/bench.sh: workloads, dump/restore timings, machine limits.

It makes itself a child subreaper (PID 1 here does not reap orphans, and a zombie keeps the
pid a restore needs), so restored processes re-parent to it, and it reaps by pid whatever it
started. Workloads run in their own session with stdout to a regular file; see workload.c
for their contract (READY, SIGUSR1 -> OK/BAD file).
"""
import argparse
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time

from procs import reap_orphans, set_subreaper

PAGE = 4096
GIB = 1 << 30
MIB = 1 << 20

# name, argv after the workload binary (OKFILE appended), memory figure label, needs --big
WORKLOADS = [
    ("tiny", ["mem", "1", "0"], False),
    ("1g-random", ["mem", "1024", "0"], False),
    ("1g-halfzero", ["mem", "1024", "2"], False),
    ("1g-halfholes", ["mem", "1024", "2", "holes"], False),
    ("4g-random", ["mem", "4096", "0"], True),
    ("tree-50", ["tree", "50"], False),
    # The same tree as the init of its own pid, mount, network, UTS and IPC namespaces (a
    # container's shape, made with unshare(1)); the dumped pid is the namespace's init.
    ("tree-50-ns", ["ns", "tree", "50"], False),
    ("threads-64", ["threads", "64"], False),
    ("fds-1000", ["fds", "1000"], False),
    # Distinct regular files (on the storage under test, beside the image) plus pipes holding
    # data: each file is its own path to look up, check and open at restore.
    ("files-500", ["files", "500", "1", "250", "{data}"], False),
    ("files-2000-dirs", ["files", "2000", "200", "0", "{data}"], False),
    # 1000 sockets: 500 TCP connections over loopback (both ends in the process, bytes queued
    # each way; dumped and restored with --tcp-established), 500 unix socket pairs.
    ("tcp-1000", ["tcp", "1000"], False),
    ("unix-1000", ["unix", "1000"], False),
    # A Python interpreter holding ~300 MiB of dicts and strings: what a typical image
    # holds, for --store-opts (compression) figures.
    ("py-heap-300m", ["py", "300"], False),
    # A JVM (OpenJDK 17) holding ~200 MiB of objects (tests/jvm/Heap.java in its bench
    # mode, compiled by bench.sh when javac is there): ~20 threads, a perf data file.
    ("jvm-heap-200m", ["jvm", "200"], False),
]
# Options a workload needs on both tools' dump and restore command lines.
EXTRA_OPTS = {"tcp": " --tcp-established"}
# Options only CRIU needs (when the compared command runs `criu`), dump and restore: the
# namespace's mounts all come from the host's, so they are external, and the root is "/".
CRIU_OPTS = {"ns": (" --external 'mnt[]'", " --ext-mount-map auto --root /")}
# The namespaces of the "ns" workloads; the init opens its own stdio inside, so no fd of the
# tree is on a mount of the host's namespace.
NS_WRAP = ["unshare", "--pid", "--fork", "--mount-proc", "--net", "--uts", "--ipc", "sh", "-c"]
QUICK = {"1g-random", "1g-halfzero"}
# Words in stasis's refusals of what it does not support yet (threads, trees, pipes...).
REFUSAL_MARKERS = ("not supported", "single-threaded processes only", "cannot checkpoint",
                   "unsupported")


def parse_variants(text):
    """'NAME=OPTS;NAME=OPTS' -> [(NAME, ' OPTS'), ...]."""
    out = []
    for item in text.split(";"):
        name, _, opts = item.partition("=")
        out.append((name.strip(), " " + opts.strip() if opts.strip() else ""))
    return out


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def kill_and_reap(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            got, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            # Not our child (yet): it may still be re-parenting; wait until it is gone.
            if not os.path.exists(f"/proc/{pid}"):
                return
            got = 0
        if got == pid:
            return
        time.sleep(0.005)
    raise RuntimeError(f"pid {pid} did not go away after SIGKILL")


def ns_init(unshare_pid):
    """The host pid of the namespace init that `unshare --fork` started as its only child."""
    with open(f"/proc/{unshare_pid}/task/{unshare_pid}/children") as f:
        kids = f.read().split()
    if len(kids) != 1:
        raise RuntimeError(f"unshare {unshare_pid} has children {kids}, expected one init")
    return int(kids[0])


def session_members(sid):
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[3]) == sid:  # field 6 of stat: session
            pids.append(int(entry))
    return pids


def live_after_reaping(pids):
    """Reaps the zombies among `pids` (killed members of a dumped tree, re-parented to us)
    and returns the pids still alive."""
    deadline = time.monotonic() + 5
    live = list(pids)
    while live and time.monotonic() < deadline:
        for p in list(live):
            try:
                with open(f"/proc/{p}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                live.remove(p)
                continue
            if state in "ZX":
                try:
                    os.waitpid(p, os.WNOHANG)
                except ChildProcessError:
                    pass
        time.sleep(0.01)
        live = [p for p in live if os.path.exists(f"/proc/{p}")
                and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX"]
    return live


def kill_session(sid):
    """SIGKILL every process of the workload's session and reap them (they are ours:
    children, or orphans re-parented to this subreaper)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        members = session_members(sid)
        if not members:
            return
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        reap_orphans()
        time.sleep(0.005)
    raise RuntimeError(f"session {sid} did not go away after SIGKILL")


def run_measured(argv, stderr_path):
    """Run argv; return (wall seconds, exit status, peak RSS KiB of it and its reaped children)."""
    with open(stderr_path, "wb") as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                close_fds=True)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    return wall, proc.returncode, ru.ru_maxrss


def wait_for_file(path, what, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as f:
                text = f.read()
            if text.endswith("\n"):
                return text
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} ({path})")


def dir_bytes(path):
    """Allocated bytes of every file under path (sparse holes do not count)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class Bench:
    def __init__(self, args, bindir, scratch):
        self.args = args
        self.bindir = bindir
        self.scratch = scratch
        self.stasis = args.stasis

    def start_workload(self, wl_argv, tag, data):
        wl_argv = [a.replace("{data}", data) for a in wl_argv]
        okfile = os.path.join(self.scratch, f"{tag}.ok")
        out = os.path.join(self.scratch, f"{tag}.out")
        for p in (okfile, out):
            if os.path.exists(p):
                os.unlink(p)
        with open(out, "wb") as f:
            if wl_argv[0] == "py":
                here = os.path.dirname(os.path.abspath(__file__))
                cmd = [sys.executable, os.path.join(here, "pyheap.py")] + wl_argv[1:]
            elif wl_argv[0] == "jvm":
                cmd = ["java", "-Xms300m", "-Xmx512m", "-Dheap.bench=true", "-cp", self.bindir,
                       "Heap"] + wl_argv[1:]
            elif wl_argv[0] == "ns":
                inner = [os.path.join(self.bindir, "workload")] + wl_argv[1:] + [okfile]
                cmd = NS_WRAP + [f"exec setsid {shlex.join(inner)} </dev/null "
                                 f">{shlex.quote(out)} 2>&1"]
            else:
                cmd = [os.path.join(self.bindir, "workload")] + wl_argv
            if wl_argv[0] != "ns":
                cmd = cmd + [okfile]
            # unshare(1) itself complains when its init is killed: not into the init's file.
            own = subprocess.DEVNULL if wl_argv[0] == "ns" else f
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=own, stderr=own,
                                    close_fds=True, start_new_session=True)
        try:
            text = wait_for_file(out, "workload READY", 600)
            if not text.startswith("READY"):
                raise RuntimeError(f"workload failed: {text.strip()}")
            pid = ns_init(proc.pid) if wl_argv[0] == "ns" else proc.pid
        except RuntimeError:
            kill_and_reap(proc.pid)
            raise
        return pid, okfile

    def templates(self, tool):
        variants = dict(self.args.variants or [])
        if tool == "stasis" or tool in variants:
            dump_opts = variants.get(tool, self.args.store_opts)
            restore_opts = self.args.restore_opts
            return (f"{shlex.quote(self.stasis)} dump -t {{pid}} -D {{dir}} --stats-json {{stats}}"
                    f"{dump_opts}",
                    f"{shlex.quote(self.stasis)} restore -D {{dir}} -d --stats-json {{rstats}}"
                    f"{restore_opts}")
        return self.args.compare

    def probe(self, argv):
        """The second of two runs of one limits probe (GiB/s): the first one leaves freed,
        host-backed memory behind, as the second leaves it for the operation that follows."""
        for _ in range(2):
            out = subprocess.run([os.path.join(self.bindir, "limits")] + argv, check=True,
                                 capture_output=True, text=True).stdout
        return float(out.split()[1])

    def one_run(self, tool, wl_argv, storage, tag):
        """Start the workload, dump it, restore it, verify it; return the figures."""
        data = os.path.join(storage, f"stasis-bench-data-{tag}")
        shutil.rmtree(data, ignore_errors=True)
        os.makedirs(data)
        pid, okfile = self.start_workload(wl_argv, tag, data)
        paired = self.args.paired and wl_argv[0] == "mem" and int(wl_argv[1]) >= 64
        mib = wl_argv[1]
        img = os.path.join(storage, f"stasis-bench-{tag}")
        stats = os.path.join(self.scratch, f"{tag}.stats.json")
        rstats = os.path.join(self.scratch, f"{tag}.rstats.json")
        shutil.rmtree(img, ignore_errors=True)
        for p in (stats, rstats, os.path.join(self.scratch, f"{tag}.pid")):
            if os.path.exists(p):
                os.unlink(p)
        dump_t, restore_t = self.templates(tool)
        extra = EXTRA_OPTS.get(wl_argv[0], "")
        dump_t, restore_t = dump_t + extra, restore_t + extra
        if tool != "stasis" and re.search(r"(^|[\s/])criu\s", dump_t) and wl_argv[0] in CRIU_OPTS:
            criu_dump, criu_restore = CRIU_OPTS[wl_argv[0]]
            dump_t, restore_t = dump_t + criu_dump, restore_t + criu_restore
        pidfile = os.path.join(self.scratch, f"{tag}.pid")
        if wl_argv[0] == "ns":
            # A namespace init comes back with its pids inside; its host pid may differ.
            restore_t += " --pidfile {pidfile}"
        fill = dict(pid=pid, dir=shlex.quote(img), stats=shlex.quote(stats),
                    rstats=shlex.quote(rstats), pidfile=shlex.quote(pidfile))
        res = {"tool": tool}
        try:
            if paired:
                sync = [] if storage.startswith("/dev/shm") else ["fsync"]
                res["dump_limit_gibps"] = self.probe(["write", storage, mib] + sync)
            err = os.path.join(self.scratch, f"{tag}.dump.err")
            wall, rc, rss = run_measured(["sh", "-c", dump_t.format(**fill)], err)
            msg = open(err, errors="replace").read().strip()
            if rc != 0:
                refused = any(m in msg for m in REFUSAL_MARKERS)
                res.update(status="skipped" if refused else "dump-failed", error=msg)
                return res
            res.update(dump_s=wall, dump_rss_kib=rss, image_bytes=dir_bytes(img))
            if os.path.exists(stats):
                s = json.load(open(stats))
                res.update(frozen_s=s["frozen_s"], pages_stored=s["pages_stored"],
                           zero_pages_skipped=s["zero_pages_skipped"],
                           dump_memory_s=s["memory_s"], dump_total_s=s["total_s"])
            kill_and_reap(pid)  # the dump killed it; reap the zombie so the pid is free
            left = live_after_reaping(session_members(pid))
            if left:
                res.update(status="dump-incomplete",
                           error=f"dump exited 0 but left {len(left)} other processes of the "
                                 f"workload running (e.g. pid {left[0]}): a tree was dumped "
                                 f"as its root only")
                return res
            if os.path.exists(okfile):
                os.unlink(okfile)
            if paired:
                res["restore_limit_gibps"] = self.probe(["touch", mib])
            err = os.path.join(self.scratch, f"{tag}.restore.err")
            t0 = time.monotonic()
            wall, rc, rss = run_measured(["sh", "-c", restore_t.format(**fill)], err)
            if rc != 0:
                res.update(status="restore-failed",
                           error=open(err, errors="replace").read().strip())
                return res
            if wl_argv[0] == "ns":
                pid = int(open(pidfile).read().split()[0])
            os.kill(pid, signal.SIGUSR1)
            verdict = wait_for_file(okfile, "verification after restore", 600)
            res.update(restore_s=wall, restore_verified_s=time.monotonic() - t0,
                       restore_rss_kib=rss)
            if os.path.exists(rstats):
                s = json.load(open(rstats))
                res.update(restore_load_s=s["load_s"], restore_memory_s=s["memory_s"])
            if verdict.startswith("OK"):
                res.update(status="ok", verify_s=int(verdict.split()[1]) / 1e9)
            else:
                res.update(status="verify-bad", error=verdict.strip())
            return res
        finally:
            kill_session(pid)
            reap_orphans()
            shutil.rmtree(img, ignore_errors=True)
            shutil.rmtree(data, ignore_errors=True)

    def limits(self, storages):
        out = subprocess.run([os.path.join(self.bindir, "limits")] + storages,
                             check=True, capture_output=True, text=True).stdout
        return {k: float(v) for k, v in (line.split() for line in out.splitlines())}


def median(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def summarize(runs):
    ok = [r for r in runs if r["status"] == "ok"]
    if not ok:
        return {"status": runs[0]["status"], "error": runs[0].get("error", ""), "runs": len(runs)}
    keys = ["dump_s", "frozen_s", "dump_memory_s", "dump_total_s", "restore_s",
            "restore_load_s", "restore_memory_s", "restore_verified_s", "verify_s",
            "image_bytes", "dump_rss_kib", "restore_rss_kib", "pages_stored",
            "zero_pages_skipped"]
    s = {k: median(ok, k) for k in keys}
    s.update(status="ok" if len(ok) == len(runs) else f"{len(ok)}/{len(runs)} ok", runs=len(runs))
    bad = [r for r in runs if r["status"] != "ok"]
    if bad:
        s["error"] = bad[0].get("error", bad[0]["status"])
    return s


def add_fractions(s, runs, mem_bytes, dump_limit, restore_limit):
    """Rates in GiB/s of the bytes a tool had to move (stasis: the pages it stored; another
    tool: the workload's memory) and their fraction of the applicable limit: the limit
    probed right before the operation in the same run when there is one (--paired, the
    median of the per-run fractions), else the limit measured at the start."""
    if s.get("status") not in ("ok",) and not str(s.get("status", "")).endswith("ok"):
        return
    if not s.get("dump_s"):
        return
    if s.get("pages_stored") is not None:
        mem_bytes = s["pages_stored"] * PAGE
    elif mem_bytes is None:
        return
    if mem_bytes < 64 * MIB:
        return  # fixed costs dominate; a rate would mean nothing
    s["dump_gibps"] = mem_bytes / GIB / s["dump_s"]
    s["restore_gibps"] = mem_bytes / GIB / s["restore_s"]
    ok = [r for r in runs if r["status"] == "ok"]
    for op, limit in (("dump", dump_limit), ("restore", restore_limit)):
        paired = [mem_bytes / GIB / r[f"{op}_s"] / r[f"{op}_limit_gibps"]
                  for r in ok if r.get(f"{op}_limit_gibps")]
        if paired:
            s[f"{op}_frac"] = statistics.median(paired)
            s[f"{op}_limit_gibps"] = median(ok, f"{op}_limit_gibps")
        else:
            s[f"{op}_frac"] = s[f"{op}_gibps"] / limit


def fmt(v, spec, dash="-"):
    return dash if v is None else format(v, spec)


def print_table(results, limits, tools):
    print(f"machine limits (GiB/s, best of 3): memcpy {limits['memcpy']:.2f}, tmpfs write "
          f"{limits['tmpfs_write']:.2f}, disk write {limits['disk_write']:.2f}, first touch "
          f"{limits['first_touch']:.2f} (THP {limits['first_touch_thp']:.2f})")
    hdr = ("| workload | storage | tool | dump s | frozen s | dump GiB/s (% limit) | restore s "
           "| restore+verify s | restore GiB/s (% limit) | image MiB | RSS dump/restore MiB | status |")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    for r in results:
        for tool in tools:
            s = r["tools"].get(tool)
            if s is None:
                continue
            if s["status"] != "ok" and "dump_s" not in s:
                print(f"| {r['workload']} | {r['storage']} | {tool} | | | | | | | | | "
                      f"{s['status']}: {first_line(s.get('error', ''))} |")
                continue
            dump_rate, rest_rate = rate_cell(s, "dump"), rate_cell(s, "restore")
            rss = f"{fmt(kib_mib(s['dump_rss_kib']), '.0f')}/{fmt(kib_mib(s['restore_rss_kib']), '.0f')}"
            print(f"| {r['workload']} | {r['storage']} | {tool} | {fmt(s['dump_s'], '.3f')} | "
                  f"{fmt(s['frozen_s'], '.3f')} | {dump_rate} | {fmt(s['restore_s'], '.3f')} | "
                  f"{fmt(s['restore_verified_s'], '.3f')} | {rest_rate} | "
                  f"{fmt(s['image_bytes'] and s['image_bytes'] / MIB, '.0f')} | {rss} | {s['status']} |")
        base = tools[-1] if len(tools) == 2 else tools[0]
        for other in [t for t in tools if t != base]:
            if not all(r["tools"].get(t, {}).get("dump_s") for t in (other, base)):
                continue
            a, b = r["tools"][other], r["tools"][base]
            print(f"| {r['workload']} | {r['storage']} | ratio {other}/{base} | "
                  f"{a['dump_s'] / b['dump_s']:.2f} | | | {a['restore_s'] / b['restore_s']:.2f} | "
                  f"{a['restore_verified_s'] / b['restore_verified_s']:.2f} | | "
                  f"{a['image_bytes'] / max(b['image_bytes'], 1):.2f} | | |")


def rate_cell(s, op):
    """'0.85 (92%)', or with a limit probed in the same runs '0.85 (92% of 0.92)'."""
    if not s.get(f"{op}_gibps"):
        return "-"
    cell = f"{s[f'{op}_gibps']:.2f} ({s[f'{op}_frac'] * 100:.0f}%"
    if s.get(f"{op}_limit_gibps"):
        cell += f" of {s[f'{op}_limit_gibps']:.2f}"
    return cell + ")"


def kib_mib(v):
    return None if v is None else v / 1024


def first_line(text):
    return text.splitlines()[0][:120] if text else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stasis", required=True)
    ap.add_argument("--bindir", required=True, help="where workload and limits were built")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--compare", nargs=2, metavar=("DUMP_TEMPLATE", "RESTORE_TEMPLATE"))
    ap.add_argument("--storage", default="/dev/shm,/var/tmp")
    ap.add_argument("--only", help="comma-separated workload names")
    ap.add_argument("--store-opts", default="", type=lambda v: " " + v if v else "",
                    help="extra options of stasis's dumps, e.g. '--compress lz4' (compare "
                         "with the plain dump through --compare)")
    ap.add_argument("--restore-opts", default="", type=lambda v: " " + v if v else "",
                    help="extra options of stasis's restores, e.g. '--decrypt-key FILE'")
    ap.add_argument("--variants", type=parse_variants,
                    help="'NAME=OPTS;NAME=OPTS': several stasis dump options (e.g. "
                         "'plain=;lz4=--compress lz4;zstd=--compress zstd') run interleaved "
                         "run by run, the ratios taken against the first")
    ap.add_argument("--no-paired", dest="paired", action="store_false",
                    help="do not probe the limits right before each dump and restore of the "
                         "memory workloads (fractions then use the limits from the start)")
    args = ap.parse_args()
    if args.quick:
        args.runs = 1
    set_subreaper()
    storages = args.storage.split(",")
    scratch = os.path.join("/var/tmp", f"stasis-bench-scratch.{os.getpid()}")
    os.makedirs(scratch)
    bench = Bench(args, args.bindir, scratch)
    tools = ["stasis"] + (["other"] if args.compare else [])
    if args.variants:
        # With --compare too, the other tool runs interleaved with the variants.
        tools = [name for name, _ in args.variants] + (["other"] if args.compare else [])
    try:
        log("measuring machine limits")
        # Fresh-memory rates are noisy here: the limit is the best of three measurements.
        samples = [bench.limits([storages[0], storages[-1]]) for _ in range(3)]
        limits = {k: max(s[k] for s in samples) for k in samples[0]}
        log("limits (GiB/s, best of 3): " + ", ".join(f"{k} {v:.2f}" for k, v in limits.items()))
        results = []
        for name, wl_argv, big in WORKLOADS:
            if args.only and name not in args.only.split(","):
                continue
            if args.quick and name not in QUICK or big and not args.big and not args.only:
                continue
            mem_bytes = int(wl_argv[1]) * MIB if wl_argv[0] == "mem" else None
            for storage in storages:
                runs = {t: [] for t in tools}
                for i in range(args.runs):
                    for tool in tools:  # alternate tools run by run
                        tag = f"{name}-{tool}-{i}"
                        r = bench.one_run(tool, wl_argv, storage, tag)
                        r["loadavg"] = os.getloadavg()[0]
                        log(f"{name} {storage} {tool} run {i + 1}: {r['status']} "
                            f"load {r['loadavg']:.1f} "
                            f"dump {fmt(r.get('dump_s'), '.3f')} s (limit "
                            f"{fmt(r.get('dump_limit_gibps'), '.2f')} GiB/s), restore "
                            f"{fmt(r.get('restore_s'), '.3f')} s (limit "
                            f"{fmt(r.get('restore_limit_gibps'), '.2f')} GiB/s), restore+verify "
                            f"{fmt(r.get('restore_verified_s'), '.3f')} s")
                        runs[tool].append(r)
                    if all(runs[t][-1]["status"] == "skipped" for t in tools):
                        break  # refused: one attempt says it all
                on_tmpfs = storage.startswith("/dev/shm")
                dump_limit = limits["tmpfs_write" if on_tmpfs else "disk_write"]
                entry = {"workload": name, "storage": storage, "memory_bytes": mem_bytes,
                         "tools": {}, "raw": runs}
                for tool in tools:
                    s = summarize(runs[tool])
                    add_fractions(s, runs[tool], mem_bytes, dump_limit, limits["first_touch"])
                    entry["tools"][tool] = s
                results.append(entry)
        loads = [r["loadavg"] for e in results for t in e["raw"].values() for r in t if "loadavg" in r]
        if loads:
            print(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f}, "
                  f"median {sorted(loads)[len(loads) // 2]:.1f}")
        print_table(results, limits, tools)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                           "kernel": os.uname().release, "runs": args.runs,
                           "limits_gibps": limits, "limits_samples_gibps": samples,
                           "compare": args.compare, "results": results}, f, indent=1)
    finally:
        reap_orphans()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
