#!/usr/bin/env python3
"""Page-server and migration benchmarks for scripts/bench.sh --migration (docs/migration.md).

1. Stop-and-copy through a page server, 1 GiB of random memory, over 127.0.0.1 into
   tmpfs: `stasis page-server` + `stasis dump --page-server` against `criu page-server` +
   `criu dump --page-server`, alternating, RUNS times each. The figure is the dump's wall
   time (the tree is frozen for all of it), the image complete on the server side.
2. `stasis migrate` of a 2 GiB process rewriting 32 MiB/s of its pages to `stasis
   receive` in a pid namespace of its own (same machine, loopback): rounds, bytes and the
   downtime (freeze on the source to the receiver's word that the tree runs).

It is a child subreaper and reaps what it started.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

from procs import reap_orphans, set_subreaper

GIB = 1 << 30


def log(msg):
    print(f"bench-migration: {msg}", file=sys.stderr, flush=True)


def start_workload(bindir, argv, out):
    with open(out, "w") as f:
        p = subprocess.Popen([os.path.join(bindir, "workload")] + argv + ["/dev/null"],
                             stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with open(out) as f:
            if "READY" in f.read():
                return p
        time.sleep(0.05)
    raise RuntimeError("workload never got ready")


def stop(p):
    try:
        os.kill(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        p.wait(timeout=10)
    except (subprocess.TimeoutExpired, ChildProcessError):
        pass
    reap_orphans()


def loadavg():
    """The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True)
        if out.stdout.strip():
            return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


def stasis_pageserver(args, pid, scratch, port):
    remote, local = os.path.join(scratch, "s-remote"), os.path.join(scratch, "s-local")
    shutil.rmtree(remote, ignore_errors=True)
    shutil.rmtree(local, ignore_errors=True)
    server = subprocess.Popen([args.stasis, "page-server", "--port", str(port), "-D", remote, "-q"])
    wait_port(port)
    t0 = time.monotonic()
    dump = subprocess.run([args.stasis, "dump", "-t", str(pid), "-D", local, "--page-server",
                           "--address", "127.0.0.1", "--port", str(port), "-q"],
                          capture_output=True, text=True)
    took = time.monotonic() - t0
    server.wait(timeout=60)
    if dump.returncode != 0 or server.returncode != 0:
        raise RuntimeError(f"stasis page-server dump failed: {dump.stderr}")
    return took


def criu_pageserver(args, pid, scratch, port):
    remote, local = os.path.join(scratch, "c-remote"), os.path.join(scratch, "c-local")
    fresh(remote)
    fresh(local)
    server = subprocess.Popen([args.criu, "page-server", "-D", remote, "--port", str(port),
                               "-o", os.path.join(scratch, "criu-ps.log")])
    wait_port(port)
    t0 = time.monotonic()
    dump = subprocess.run([args.criu, "dump", "--page-server", "--address", "127.0.0.1",
                           "--port", str(port), "-t", str(pid), "-D", local,
                           "-o", "dump.log"], capture_output=True, text=True)
    took = time.monotonic() - t0
    server.wait(timeout=60)
    if dump.returncode != 0:
        with open(os.path.join(local, "dump.log")) as f:
            tail = f.read()[-2000:]
        raise RuntimeError(f"criu page-server dump failed: {tail}")
    return took


def bench_pageserver(args, scratch):
    times = {"stasis": [], "criu": []}
    for i in range(args.runs):
        for tool, fn in (("stasis", stasis_pageserver), ("criu", criu_pageserver)):
            if tool == "criu" and not os.path.exists(args.criu):
                continue
            p = start_workload(args.bindir, ["mem", "1024", "0"], os.path.join(scratch, "wl.out"))
            try:
                t = fn(args, p.pid, scratch, 27000 + i * 2 + (tool == "criu"))
                times[tool].append(t)
                log(f"page-server 1g-random {tool} run {i + 1}: {t * 1e3:.0f} ms "
                    f"(load average {loadavg()})")
            finally:
                stop(p)
    out = {k: statistics.median(v) for k, v in times.items() if v}
    out["runs"] = times
    return out


def bench_migrate(args, scratch):
    results = []
    for i in range(args.runs):
        images = os.path.join(scratch, "m-images")
        shutil.rmtree(images, ignore_errors=True)
        port = 27100 + i
        stats = os.path.join(scratch, "m-stats.json")
        p = start_workload(args.bindir, ["rewrite", str(args.migrate_mib), "32"],
                           os.path.join(scratch, "wl.out"))
        recv = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c",
                                 f"{args.stasis} receive --listen 127.0.0.1:{port} -D {images} -q;"
                                 " echo rc=$?; exec sleep 30"],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        try:
            wait_port(port)
            mig = subprocess.run([args.stasis, "migrate", "-t", str(p.pid), "--to",
                                  f"127.0.0.1:{port}", "--max-downtime", "50ms",
                                  "--stats-json", stats], capture_output=True, text=True)
            if mig.returncode != 0:
                raise RuntimeError(f"migrate failed: {mig.stderr}")
            with open(stats) as f:
                s = json.load(f)
            results.append(s)
            log(f"migrate {args.migrate_mib} MiB @32 MiB/s run {i + 1}: downtime "
                f"{s['downtime_ms']:.1f} ms, {len(s['rounds'])} rounds, "
                f"final {s['rounds'][-1]['bytes']} bytes frozen {s['rounds'][-1]['frozen_ms']:.1f} ms")
        finally:
            os.killpg(recv.pid, signal.SIGKILL)
            recv.wait()
            stop(p)
            shutil.rmtree(images, ignore_errors=True)
    return {"downtime_ms": statistics.median(r["downtime_ms"] for r in results), "runs": results}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def criu_precopy_note(args):
    """CRIU's pre-copy needs `criu pre-dump`, which needs soft-dirty tracking."""
    sys.path.insert(0, os.path.dirname(__file__))
    from incremental import soft_dirty
    if not os.path.exists(args.criu):
        return "CRIU not found"
    return (f"CRIU 4.2 cannot pre-copy here: its pre-dump needs soft-dirty tracking, "
            f"{soft_dirty()} (it aborts with BUG at criu/mem.c:46); its only migration is "
            f"the stop-and-copy through its page server above")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stasis", required=True)
    ap.add_argument("--bindir", required=True)
    ap.add_argument("--criu", default="/work/criu/criu/criu")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scratch", default="/dev/shm/stasis-bench-migration")
    ap.add_argument("--migrate-mib", type=int, default=2048)
    ap.add_argument("--only", default="pageserver,migrate")
    ap.add_argument("--json")
    args = ap.parse_args()
    set_subreaper()
    load_before = loadavg()
    fresh(args.scratch)
    out = {}
    try:
        if "pageserver" in args.only:
            out["pageserver_1g_random_s"] = bench_pageserver(args, args.scratch)
        if "migrate" in args.only:
            out["migrate"] = bench_migrate(args, args.scratch)
    finally:
        shutil.rmtree(args.scratch, ignore_errors=True)
    ps = out.get("pageserver_1g_random_s", {})
    if ps:
        line = f"page-server stop-and-copy, 1 GiB random: stasis {ps.get('stasis', 0) * 1e3:.0f} ms"
        if "criu" in ps:
            line += f", CRIU {ps['criu'] * 1e3:.0f} ms ({ps['criu'] / ps['stasis']:.2f}x)"
        print(f"{line} (medians of {args.runs}, alternating; load average {loadavg()})")
    if "migrate" in out:
        runs = out["migrate"]["runs"]
        final = statistics.median(r["rounds"][-1]["bytes"] for r in runs)
        print(f"migrate {args.migrate_mib} MiB writing 32 MiB/s: downtime "
              f"{out['migrate']['downtime_ms']:.1f} ms (median of {len(runs)}), final round "
              f"{final / 2**20:.1f} MiB sent, rounds {[len(r['rounds']) for r in runs]}")
        print(criu_precopy_note(args))
    out["loadavg"] = [load_before, loadavg()]
    print(f"load average {load_before} before, {out['loadavg'][1]} after")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
