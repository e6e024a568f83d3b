#!/usr/bin/env python3
"""Frozen time of incremental checkpoints (scripts/bench.sh --incremental).

Per run: a `dirty MIB PERCENT` workload fills MIB of random memory and says READY; then
  1. `stasis pre-dump`                                   (first, stores everything)
  2. `stasis pre-dump --prev-images-dir ../pre1`         (idle: nothing written since)
  3. SIGUSR2: the workload writes PERCENT % of its pages
  4. `stasis dump -R --prev-images-dir ../pre2 --stats-json`  (incremental, keeps running)
  5. with --repeat N: N times more, SIGUSR2 then `stasis dump -R` against the previous
     dump (periodic checkpoints, as `stasis checkpoint` takes them)
and the frozen time and stored size of each step are recorded; the medians are printed.
With --profile, the STASIS_PROFILE lines of the last run's last dump -R are printed
(where its frozen window went).
With --verify, the last run's workload is killed, the chain restored from its last image
(step 4's, or the last repeated dump's) and its memory checksum checked (SIGUSR1 -> OK/BAD).
CRIU's pre-dump is tried once with --criu: it needs soft-dirty tracking, which this
kernel may lack; the table says so when it aborts.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from procs import reap_orphans, set_subreaper



def kill(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    for _ in range(500):
        reap_orphans()
        if not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z":
            reap_orphans()
            return
        time.sleep(0.01)


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(root, f)).st_size
    return total


# With --rt, stasis runs under `chrt -f 50`: on a machine loaded by others the frozen
# window is then stasis's own work, not its wait for a CPU (the tree is frozen anyway).
PREFIX = []


def run(argv, env=None):
    r = subprocess.run(PREFIX + argv, capture_output=True, text=True,
                       env=dict(os.environ, **env) if env else None)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {r.stderr.strip()}")
    return r.stdout + r.stderr


def predump_frozen(out):
    m = re.search(r"frozen ([0-9.]+) ms", out)
    if not m:
        raise RuntimeError(f"no frozen time in: {out!r}")
    return float(m.group(1)) / 1e3


class Workload:
    def __init__(self, bindir, mib, percent, okfile):
        self.okfile = okfile
        self.proc = subprocess.Popen(
            [f"{bindir}/workload", "dirty", str(mib), str(percent), okfile],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"workload said {line!r}")
        self.pid = self.proc.pid

    def dirty(self):
        os.kill(self.pid, signal.SIGUSR2)
        line = self.proc.stdout.readline()
        if not line.startswith("DIRTY"):
            raise RuntimeError(f"workload said {line!r}")
        return int(line.split()[1])


def verify(pid, okfile, timeout=60):
    if os.path.exists(okfile):
        os.unlink(okfile)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(okfile):
            return open(okfile).read().split()[0]
        time.sleep(0.05)
    return "TIMEOUT"


def one_run(args, scratch, n, check):
    base = os.path.join(scratch, f"run{n}")
    os.makedirs(base)
    okfile = os.path.join(base, "ok")
    w = Workload(args.bindir, args.mib, args.percent, okfile)
    st = args.stasis
    res = {}
    try:
        out = run([st, "pre-dump", "-t", str(w.pid), "-D", f"{base}/pre1"])
        res["first_predump_frozen_s"] = predump_frozen(out)
        out = run([st, "pre-dump", "-t", str(w.pid), "-D", f"{base}/pre2", "--prev-images-dir", "../pre1"])
        res["idle_predump_frozen_s"] = predump_frozen(out)
        res["idle_predump_mib"] = dir_bytes(f"{base}/pre2") / 2**20
        res["dirty_pages"] = w.dirty()
        stats = f"{base}/stats.json"
        run([st, "dump", "-t", str(w.pid), "-D", f"{base}/d3", "-R",
             "--prev-images-dir", "../pre2", "--stats-json", stats])
        js = json.load(open(stats))
        res["incr_dump_frozen_s"] = js["frozen_s"]
        res["incr_dump_mib"] = dir_bytes(f"{base}/d3") / 2**20
        repeated, prev = [], "d3"
        for k in range(args.repeat):
            w.dirty()
            last = args.profile and k == args.repeat - 1
            out = run([st, "dump", "-t", str(w.pid), "-D", f"{base}/r{k}", "-R",
                       "--prev-images-dir", f"../{prev}", "--stats-json", stats],
                      {"STASIS_PROFILE": "1"} if last else None)
            repeated.append(json.load(open(stats))["frozen_s"])
            res["repeat_dump_mib"] = dir_bytes(f"{base}/r{k}") / 2**20
            if last:
                res["profile"] = "\n".join(l for l in out.splitlines() if l.startswith("profile:"))
            prev = f"r{k}"
        if repeated:
            res["repeat_dump_frozen_s"] = statistics.median(repeated)
        if check:
            # Pages written right after the dump resumed the tree belong to the next
            # image; the restore of this one must give the memory as it was dumped.
            run([st, "pre-dump", "--stop-tracking", "-t", str(w.pid)])
            kill(w.pid)
            run([st, "restore", "-D", f"{base}/{prev}", "-d"])
            res["restored"] = verify(w.pid, okfile)
            kill(w.pid)
    finally:
        subprocess.run([st, "pre-dump", "--stop-tracking", "-t", str(w.pid)], capture_output=True)
        kill(w.pid)
        shutil.rmtree(base, ignore_errors=True)
    return res


def criu_predump(args, scratch):
    base = os.path.join(scratch, "criu")
    os.makedirs(base)
    w = Workload(args.bindir, 64, args.percent, os.path.join(base, "ok"))
    try:
        r = subprocess.run([args.criu, "pre-dump", "-t", str(w.pid), "-D", base, "--shell-job",
                            "-o", "pre.log"], capture_output=True, text=True)
        if r.returncode == 0:
            return "ran"
        log = open(os.path.join(base, "pre.log")).read() if os.path.exists(os.path.join(base, "pre.log")) else r.stderr
        hits = [l for l in log.splitlines() if "rror" in l or "soft" in l.lower()]
        why = hits[-1].strip() if hits else f"exit {r.returncode}"
        return (f"aborts: {why} (CRIU's pre-dump needs soft-dirty tracking, "
                f"{soft_dirty()})")
    finally:
        kill(w.pid)
        shutil.rmtree(base, ignore_errors=True)


def soft_dirty():
    """What this kernel says of soft-dirty (CONFIG_MEM_SOFT_DIRTY): pagemap bit 55 of a
    page just written, after clearing the bits (clear_refs 4), as `stasis check` does."""
    import mmap
    import struct
    m = mmap.mmap(-1, 4096)
    m[0:1] = b"x"
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("4")
        m[0:1] = b"y"
        import ctypes
        base = ctypes.addressof(ctypes.c_char.from_buffer(m))
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(base // 4096 * 8)
            entry = struct.unpack("Q", f.read(8))[0]
        if entry & (1 << 55):
            return "which this kernel has"
    except (OSError, TypeError):
        pass
    return "compiled out of this kernel (CONFIG_MEM_SOFT_DIRTY)"


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stasis", required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=4096)
    ap.add_argument("--percent", type=int, default=1)
    ap.add_argument("--storage", default="/var/tmp")
    ap.add_argument("--verify", action="store_true", help="restore the last run's image and check it")
    ap.add_argument("--criu", help="CRIU binary to try pre-dump with")
    ap.add_argument("--rt", action="store_true",
                    help="run stasis under chrt -f 50 (a loaded machine: see PREFIX)")
    ap.add_argument("--repeat", type=int, default=0,
                    help="dump -R this many times more, each against the previous")
    ap.add_argument("--profile", action="store_true",
                    help="print STASIS_PROFILE of the last run's last repeated dump -R")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.rt:
        PREFIX[:] = ["chrt", "-f", "50"]
    set_subreaper()
    load_before = loadavg()
    scratch = tempfile.mkdtemp(prefix="stasis-incr.", dir=args.storage)
    runs = []
    try:
        for n in range(args.runs):
            r = one_run(args, scratch, n, args.verify and n == args.runs - 1)
            print(f"run {n}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                          for k, v in r.items() if k != "profile"), file=sys.stderr)
            runs.append(r)
        criu = criu_predump(args, scratch) if args.criu else "not tried"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in runs)
           for k in runs[0] if isinstance(runs[0][k], (int, float))}
    load_after = loadavg()
    print(f"incremental checkpoints of a {args.mib} MiB process, {args.percent} % written "
          f"between the pre-dump and the dump; median of {len(runs)} ({args.storage}"
          f"{', stasis under chrt -f 50' if args.rt else ''}); "
          f"load average {load_before} before, {load_after} after")
    print(f"| step | frozen (ms) | stored (MiB) |")
    print(f"|---|---|---|")
    print(f"| first pre-dump | {med['first_predump_frozen_s'] * 1e3:.1f} | - |")
    print(f"| idle second pre-dump | {med['idle_predump_frozen_s'] * 1e3:.1f} | {med['idle_predump_mib']:.2f} |")
    print(f"| dump -R after {args.percent} % written | {med['incr_dump_frozen_s'] * 1e3:.1f} | {med['incr_dump_mib']:.1f} |")
    if args.repeat:
        print(f"| dump -R repeated ({args.repeat}x per run), each after {args.percent} % written | "
              f"{med['repeat_dump_frozen_s'] * 1e3:.1f} | {med['repeat_dump_mib']:.1f} |")
    print(f"| CRIU 4.2 pre-dump | {criu} | |")
    if args.profile and runs[-1].get("profile"):
        print("STASIS_PROFILE of the last repeated dump -R:")
        print(runs[-1]["profile"])
    if args.verify:
        print(f"restore of the last incremental image: {runs[-1].get('restored')}")
    if args.json:
        json.dump({"runs": runs, "median": med, "criu": criu,
                   "loadavg": [load_before, load_after]}, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
