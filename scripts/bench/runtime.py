#!/usr/bin/env python3
"""Container-runtime benchmark for scripts/bench.sh --runtime (docs/benchmarks.md).

The real runtimes (runc 1.1, podman 4.3) checkpoint and restore busybox containers made on
the fly (a rootfs of /bin/busybox, no registry), once through CRIU 4.2 and once through
stasis's `stasis-criu`, alternating tool by tool in every run. runc is given the tool with
`--criu PATH`; podman finds `criu` on PATH, so each tool has a shim directory holding a
`criu` link to it, first in PATH for the checkpoint and the restore (conmon keeps PATH).

Scenarios (as in criu-compat/tests/runc.rs and podman.rs):
  runc         a counter (mount namespace), `runc checkpoint`, `runc restore -d`
  runc-tmpfs   the counter kept in a tmpfs mounted at /data (it goes on only if the
               tmpfs's content came back)
  runc-netns   its own network namespace: an `nc` client sends the counter to an `nc`
               server in the container over an established TCP connection on the
               loopback, both commands with --tcp-established
  podman       `podman container checkpoint`, `podman container restore`
  podman-export  `checkpoint --export FILE`, `restore --import FILE --name NEW`

The figure is each runtime command's wall time (what a user waits for). Every restore is
verified: the container runs and its counter (and for runc-netns what the server received)
goes on past the checkpointed value, else the run is a failure. A tool failing a scenario
is reported with the reason (the first error line of its log, else its last line) and not
run again in that scenario. It is a child subreaper (container inits and conmon are
re-parented to it) and reaps them.
"""
import argparse
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time

from procs import reap_orphans, set_subreaper

IMAGE = "localhost/stasis-bench-busybox:rt"
COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"
# The counter's state is in the tmpfs only: without its content it starts again from 1.
TMPFS_COUNTER = ("echo 0 > /data/c; while true; do i=$(($(cat /data/c)+1)); echo $i > /data/c;"
                 " echo $i > /tmp/count; sleep 0.1; done")
COUNTER_OVER_TCP = ("sleep 100000 | nc -l -p 9000 > /tmp/recv & sleep 0.5; "
                    "i=0; while true; do i=$((i+1)); echo $i; echo $i > /tmp/count; sleep 0.1; "
                    "done | nc 127.0.0.1 9000")
PODMAN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096"]
SCENARIOS = ["runc", "runc-tmpfs", "runc-netns", "podman", "podman-export"]


class Failed(Exception):
    """A tool failed a run: the message says what and why."""


def log(msg):
    print(f"bench-runtime: {msg}", file=sys.stderr, flush=True)


def run(argv, env=None):
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env=env)


def timed(argv, env=None):
    t0 = time.monotonic()
    out = run(argv, env)
    return time.monotonic() - t0, out


def wait_until(f, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f():
            return True
        time.sleep(0.05)
    return False


def read_int(path):
    try:
        with open(path) as f:
            lines = f.read().split()
        return int(lines[-1]) if lines else 0
    except (OSError, ValueError):
        return 0


LOGS = "/tmp/stasis-bench-runtime-logs"


def reason(log_path, stderr):
    """The first error line of a CRIU-style log, else its last line, else stderr's last.
    The log is kept under LOGS."""
    if log_path and os.path.exists(log_path):
        os.makedirs(LOGS, exist_ok=True)
        shutil.copy(log_path, os.path.join(LOGS, f"{time.time():.0f}-{os.path.basename(log_path)}"))
    try:
        with open(log_path, errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        lines = []
    for ln in lines:
        # CRIU logs "rlimit: Can't setup RLIMIT_NOFILE" as an error and goes on (no
        # CAP_SYS_RESOURCE here): not the reason of a failure.
        if ("Error" in ln or "error" in ln) and "rlimit:" not in ln:
            return ln[:200]
    if lines:
        return lines[-1][:200]
    tail = [ln for ln in stderr.splitlines() if ln.strip()]
    return tail[-1][:200] if tail else "no output"


def busybox_rootfs(rootfs, applets):
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc", "data"]:
        os.makedirs(os.path.join(rootfs, sub), exist_ok=True)
    shutil.copy("/bin/busybox", os.path.join(rootfs, "bin/busybox"))
    for applet in applets:
        os.symlink("busybox", os.path.join(rootfs, "bin", applet))


class Runc:
    """runc scenarios: a bundle per run, `runc run -d`, checkpoint, restore -d."""

    def __init__(self, scenario, scratch):
        self.scenario = scenario
        self.scratch = scratch
        self.net = scenario == "runc-netns"
        self.script = {"runc": COUNTER, "runc-tmpfs": TMPFS_COUNTER,
                       "runc-netns": COUNTER_OVER_TCP}[scenario]
        self.tcp = ["--tcp-established"] if self.net else []

    def bundle(self, d):
        busybox_rootfs(os.path.join(d, "rootfs"), ["sh", "sleep", "nc", "cat"])
        out = run(["runc", "spec", "--bundle", d])
        if out.returncode != 0:
            raise RuntimeError(f"runc spec: {out.stderr}")
        path = os.path.join(d, "config.json")
        with open(path) as f:
            c = json.load(f)
        c["process"]["terminal"] = False
        c["process"]["args"] = ["sh", "-c", self.script]
        c["process"]["rlimits"] = []
        c["linux"]["namespaces"] = [{"type": "mount"}] + ([{"type": "network"}] if self.net else [])
        c["mounts"] = [{"destination": "/proc", "type": "proc", "source": "proc"}]
        if self.scenario == "runc-tmpfs":
            c["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                                "options": ["nosuid", "nodev", "size=16m"]})
        c["root"]["readonly"] = False
        c.pop("hostname", None)
        c["linux"].pop("maskedPaths", None)
        c["linux"].pop("readonlyPaths", None)
        with open(path, "w") as f:
            json.dump(c, f)

    def one(self, tool, criu, tag):
        d = os.path.join(self.scratch, tag)
        os.makedirs(d)
        self.bundle(d)
        cid = f"stasis-rtbench-{os.getpid()}-{tag}"
        count = os.path.join(d, "rootfs/tmp/count")
        recv = os.path.join(d, "rootfs/tmp/recv")
        img = os.path.join(d, "img")
        try:
            started = subprocess.run(["runc", "run", "-d", "--bundle", d, cid],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            if started.returncode != 0 or not wait_until(lambda: read_int(count) > 2):
                raise RuntimeError(f"{cid} did not start counting")
            if self.net and not wait_until(lambda: read_int(recv) > 2):
                raise RuntimeError(f"{cid}: the in-container TCP client does not send")
            ckpt_s, out = timed(["runc", "--criu", criu, "checkpoint"] + self.tcp +
                                ["--image-path", img, "--work-path", img, cid])
            if out.returncode != 0:
                raise Failed(f"checkpoint: {reason(os.path.join(img, 'dump.log'), out.stderr)}")
            dumped, sent = read_int(count), read_int(recv)
            for _ in range(10):  # the checkpointed processes: reaped, their pids free
                reap_orphans()
                time.sleep(0.02)
            if read_int(count) != dumped:
                raise Failed("checkpoint: the container still counts after it")
            rst_s, out = timed(["runc", "--criu", criu, "restore", "-d"] + self.tcp +
                               ["--image-path", img, "--work-path", img, "--bundle", d, cid])
            if out.returncode != 0:
                raise Failed(f"restore: {reason(os.path.join(img, 'restore.log'), out.stderr)}")
            if '"running"' not in run(["runc", "state", cid]).stdout:
                raise Failed("restore: the container is not running after it")
            if not wait_until(lambda: read_int(count) > dumped + 1, 5):
                raise Failed(f"restore: the counter does not go on from {dumped} "
                             f"(now {read_int(count)})")
            if self.net and not wait_until(lambda: read_int(recv) > sent + 1, 5):
                raise Failed(f"restore: the TCP connection does not carry the counter on from "
                             f"{sent} (now {read_int(recv)})")
            return ckpt_s, rst_s
        finally:
            run(["runc", "delete", "--force", cid])
            reap_orphans()
            shutil.rmtree(d, ignore_errors=True)


class Podman:
    """podman scenarios: `podman run -d`, checkpoint, restore (or export/import)."""

    def __init__(self, scenario, scratch, shims):
        self.export = scenario == "podman-export"
        self.scratch = scratch
        self.shims = shims

    def podman(self, tool, args):
        env = dict(os.environ, PATH=f"{self.shims[tool]}:{os.environ['PATH']}")
        return timed(["podman"] + args, env)

    def count(self, tool, name):
        _, out = self.podman(tool, ["exec", name, "cat", "/tmp/count"])
        try:
            return int(out.stdout.strip())
        except ValueError:
            return 0

    @staticmethod
    def why(out):
        # runc names CRIU's log ("log file: PATH" in podman's message).
        path = ""
        if "log file: " in out.stderr:
            path = out.stderr.split("log file: ")[1].split()[0].rstrip('"').rstrip("\\")
        return reason(path, out.stderr)

    def kept_count(self, tool, name):
        """The counter in the checkpointed container's upper layer (kept)."""
        _, out = self.podman(tool, ["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", name])
        count = read_int(os.path.join(out.stdout.strip(), "tmp/count"))
        if count == 0:
            raise RuntimeError(f"{name}: no counter in {out.stdout.strip()!r}")
        return count

    @staticmethod
    def exported_count(export):
        """The counter in the rootfs-diff.tar of an exported checkpoint."""
        diff = subprocess.run(["tar", "-xOf", export, "rootfs-diff.tar"], capture_output=True)
        with tarfile.open(fileobj=io.BytesIO(diff.stdout)) as t:
            for m in t.getmembers():
                if m.name.lstrip("./") == "tmp/count":
                    return int(t.extractfile(m).read().split()[-1])
        raise RuntimeError(f"no tmp/count in the rootfs-diff.tar of {export}")

    def one(self, tool, _criu, tag):
        name = f"stasis-rtbench-{os.getpid()}-{tag}"
        names = [name]
        export = os.path.join(self.scratch, f"{tag}.tar")
        try:
            _, out = self.podman(tool, ["run", "-d", "--name", name, "--network=bridge"] +
                                 PODMAN_LIMITS + [IMAGE, "sh", "-c", COUNTER])
            if out.returncode != 0 or not wait_until(lambda: self.count(tool, name) > 2):
                raise RuntimeError(f"{name} did not start counting: {out.stderr.strip()}")
            ckpt = ["container", "checkpoint"] + (["--export", export] if self.export else [])
            ckpt_s, out = self.podman(tool, ckpt + [name])
            if out.returncode != 0:
                raise Failed(f"checkpoint: {self.why(out)}")
            reap_orphans()
            dumped = self.exported_count(export) if self.export else self.kept_count(tool, name)
            if self.export:
                names.append(name + "-imported")
                rst_s, out = self.podman(tool, ["container", "restore", "--import", export,
                                                "--name", names[1]])
            else:
                rst_s, out = self.podman(tool, ["container", "restore", name])
            if out.returncode != 0:
                raise Failed(f"restore: {self.why(out)}")
            if not wait_until(lambda: self.count(tool, names[-1]) > dumped + 1, 5):
                raise Failed(f"restore: the counter does not go on from {dumped} "
                             f"(now {self.count(tool, names[-1])})")
            return ckpt_s, rst_s
        finally:
            for n in names:
                self.podman(tool, ["rm", "-f", "-t", "0", n])
            reap_orphans()
            if os.path.exists(export):
                os.unlink(export)


def import_image(scratch, shims):
    if run(["podman", "image", "exists", IMAGE]).returncode == 0:
        return
    rootfs = os.path.join(scratch, "image-rootfs")
    busybox_rootfs(rootfs, ["sh", "sleep", "cat", "echo"])
    tar = os.path.join(scratch, "rootfs.tar")
    subprocess.run(["tar", "-C", rootfs, "-cf", tar, "."], check=True)
    out = run(["podman", "import", tar, IMAGE])
    if out.returncode != 0:
        raise RuntimeError(f"podman import: {out.stderr}")


def bench(args, scratch, tools, shims):
    results = {}
    for scenario in args.only.split(","):
        if scenario.startswith("runc"):
            sc = Runc(scenario, scratch)
        else:
            import_image(scratch, shims)
            sc = Podman(scenario, scratch, shims)
        res = {t: {"checkpoint_s": [], "restore_s": [], "failed": None} for t in tools}
        for i in range(args.runs):
            for tool in tools:  # alternate tools run by run
                r = res[tool]
                if r["failed"]:
                    continue
                try:
                    c, s = sc.one(tool, tools[tool], f"{scenario}-{tool}-{i}")
                    r["checkpoint_s"].append(c)
                    r["restore_s"].append(s)
                    log(f"{scenario} {tool} run {i + 1}: checkpoint {c * 1e3:.0f} ms, "
                        f"restore {s * 1e3:.0f} ms (verified)")
                except Failed as e:
                    r["failed"] = str(e)
                    log(f"{scenario} {tool} run {i + 1}: FAILED {e}")
        for r in res.values():
            for k in ("checkpoint_s", "restore_s"):
                r[k.replace("_s", "_median_s")] = statistics.median(r[k]) if r[k] else None
        results[scenario] = res
    return results


def ms(v, failed=None):
    if v is None:
        return "FAILED" if failed else "-"
    return f"{v * 1e3:.0f}" + (" (then FAILED)" if failed else "")


def ratio(a, b):
    return f"{a / b:.2f}" if a is not None and b else "-"


def print_table(results):
    print("| scenario | checkpoint stasis ms | checkpoint CRIU ms | ratio | "
          "restore stasis ms | restore CRIU ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for scenario, res in results.items():
        s, c = res["stasis"], res.get("criu", {"checkpoint_median_s": None,
                                               "restore_median_s": None, "failed": None})
        sc, cc = s["checkpoint_median_s"], c["checkpoint_median_s"]
        sr, cr = s["restore_median_s"], c["restore_median_s"]
        sf, cf = s["failed"], c["failed"]
        print(f"| {scenario} | {ms(sc, sf)} | {ms(cc, cf)} | {ratio(sc, cc)} | "
              f"{ms(sr, sf)} | {ms(cr, cf)} | {ratio(sr, cr)} |")
    for scenario, res in results.items():
        for tool, r in res.items():
            if r["failed"]:
                print(f"{scenario}: {tool} FAILED ({len(r['checkpoint_s'])} runs passed "
                      f"before): {r['failed']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stasis-criu", required=True)
    ap.add_argument("--criu", default="/work/criu/criu/criu")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--json")
    args = ap.parse_args()
    for s in args.only.split(","):
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s!r} (known: {', '.join(SCENARIOS)})")
    if not os.path.exists("/bin/busybox"):
        sys.exit("bench-runtime: needs /bin/busybox (busybox-static)")
    tools = {"stasis": os.path.abspath(args.stasis_criu)}
    if os.path.exists(args.criu):
        tools["criu"] = os.path.abspath(args.criu)
    else:
        log(f"no CRIU at {args.criu}: stasis only")
    set_subreaper()
    scratch = f"/var/tmp/stasis-bench-runtime.{os.getpid()}"
    os.makedirs(scratch)
    shims = {}
    for tool, path in tools.items():
        shims[tool] = os.path.join(scratch, f"shim-{tool}")
        os.makedirs(shims[tool])
        os.symlink(path, os.path.join(shims[tool], "criu"))
    try:
        results = bench(args, scratch, tools, shims)
    finally:
        reap_orphans()
        shutil.rmtree(scratch, ignore_errors=True)
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "kernel": os.uname().release, "runs": args.runs,
                       "load_avg": os.getloadavg(), "tools": tools, "results": results},
                      f, indent=1)


if __name__ == "__main__":
    main()
