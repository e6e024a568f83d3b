#!/usr/bin/env python3
"""Post-copy benchmark (scripts/bench.sh --lazy): a process holding MIB of random anonymous
memory (workload mem) is dumped with --lazy-pages and restored with --lazy-pages on this
machine over 127.0.0.1, the target in a new pid namespace (the frozen source keeps its
pids). Measures the time from the dump's start (the freeze follows at once) to the restored
process running, and the time until all its memory is on the target, against the loopback
bandwidth measured in the same run. Then tries CRIU 4.2's lazy pages the same way and says
why it fails if it does.

With --link RATE (a tc rate, e.g. 1gbit) the target runs in a network namespace of its own,
joined to this one by a veth pair whose both ends are shaped to RATE (tc tbf; no delay is
added: this kernel has no netem): a migration link that is slower than this machine's memory copies,
as real ones are, so the figure says whether post-copy keeps the link busy. The plain stream
it is compared with is measured over the same veth, from this namespace into the target's.
Over loopback (the default) both are CPU-bound on this machine, and post-copy, which copies
each byte twice on each side (process_vm_readv + send, recv + UFFDIO_COPY) against once for
a plain stream, cannot go above about half of it.
"""
import argparse
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

MIB = 1 << 20


def log(msg):
    print(f"bench-lazy: {msg}", file=sys.stderr, flush=True)


def loopback_bandwidth(total=2 << 30, chunk=4 << 20):
    """MB/s of one TCP stream over 127.0.0.1 (sendall / recv_into), as post-copy uses."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    return stream_bandwidth(srv, srv.getsockname(), total, chunk)


SINK = """
import socket, sys
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2])))
srv.listen(1)
print("listening", flush=True)
c, _ = srv.accept()
buf = memoryview(bytearray(4 << 20))
while c.recv_into(buf):
    pass
"""


def link_bandwidth(link, total):
    """MB/s of one TCP stream over the shaped veth, into a sink in the target's namespace."""
    sink = subprocess.Popen(["ip", "netns", "exec", link.ns, "python3", "-c", SINK,
                             link.target_addr, str(link.sink_port)], stdout=subprocess.PIPE,
                            text=True)
    sink.stdout.readline()
    s = socket.create_connection((link.target_addr, link.sink_port))
    data = memoryview(os.urandom(4 << 20))
    start = time.monotonic()
    sent = 0
    while sent < total:
        s.sendall(data)
        sent += len(data)
    s.shutdown(socket.SHUT_WR)
    sink.wait(timeout=600)
    elapsed = time.monotonic() - start
    s.close()
    return total / elapsed / 1e6


class Link:
    """Two ends of a veth pair, this namespace's (source) and a new namespace's (target),
    each shaped to `rate` (tbf)."""

    def __init__(self, rate):
        self.ns = f"stasis-bench-lazy-{os.getpid()}"
        self.source_addr, self.target_addr = "10.231.0.1", "10.231.0.2"
        self.sink_port = 27399
        self.rate = rate
        a, b = "sblA", "sblB"
        sh = ["ip netns add {ns}",
              "ip link add {a} type veth peer name {b}",
              "ip link set {b} netns {ns}",
              "ip addr add {src}/30 dev {a}", "ip link set {a} up",
              "ip -n {ns} addr add {dst}/30 dev {b}", "ip -n {ns} link set {b} up",
              "ip -n {ns} link set lo up"]
        for dev, pre in ((a, ""), (b, "ip netns exec {ns} ")):
            sh.append(pre + "tc qdisc add dev " + dev + " root tbf rate {rate} burst 256kb "
                      "latency 100ms")
        self.a = a
        for cmd in sh:
            subprocess.run(cmd.format(ns=self.ns, a=a, b=b, src=self.source_addr,
                                      dst=self.target_addr, rate=rate).split(),
                           check=True)

    def close(self):
        subprocess.run(["ip", "link", "del", self.a], stderr=subprocess.DEVNULL)
        subprocess.run(["ip", "netns", "del", self.ns], stderr=subprocess.DEVNULL)


def stream_bandwidth(srv, addr, total, chunk):
    """MB/s of one TCP stream to listener `srv` at `addr`, received in a thread."""
    got = [0]

    def sink():
        c, _ = srv.accept()
        buf = bytearray(chunk)
        view = memoryview(buf)
        while got[0] < total:
            n = c.recv_into(view)
            if n == 0:
                break
            got[0] += n
        c.close()

    t = threading.Thread(target=sink)
    t.start()
    s = socket.create_connection(addr)
    data = memoryview(os.urandom(chunk))
    start = time.monotonic()
    sent = 0
    while sent < total:
        s.sendall(data)
        sent += chunk
    t.join()
    elapsed = time.monotonic() - start
    s.close()
    srv.close()
    return total / elapsed / 1e6


def children_of(pid):
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = open(f"/proc/{name}/stat").read()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2:].split()[1]) == pid:
            out.append(int(name))
    return out


def running_under(root, comm):
    """Host pid of an untraced `comm` below `root`, or None."""
    todo = [root]
    while todo:
        p = todo.pop()
        for c in children_of(p):
            todo.append(c)
            try:
                if (open(f"/proc/{c}/comm").read().strip() == comm
                        and "TracerPid:\t0\n" in open(f"/proc/{c}/status").read()):
                    return c
            except OSError:
                pass
    return None


def start_workload(workload, mib, scratch):
    okfile = os.path.join(scratch, "lazy.ok")
    out = os.path.join(scratch, "lazy.out")
    for p in (okfile, out):
        if os.path.exists(p):
            os.unlink(p)
    with open(out, "w") as f:
        proc = subprocess.Popen([workload, "mem", str(mib), "0", okfile], stdout=f,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    deadline = time.monotonic() + 900
    while "READY" not in open(out).read():
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"bench-lazy: workload did not start: {open(out).read()}")
        time.sleep(0.05)
    return proc, okfile


def stasis_run(args, mib, port, scratch, link=None):
    proc, okfile = start_workload(args.workload, mib, scratch)
    img = os.path.join(scratch, "lazy-img")
    subprocess.run(["rm", "-rf", img])
    addr = link.source_addr if link else "127.0.0.1"
    netns = ["ip", "netns", "exec", link.ns] if link else []
    t0 = time.monotonic()
    dump = subprocess.Popen([args.stasis, "dump", "-t", str(proc.pid), "-D", img, "--lazy-pages",
                             "--address", addr, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not os.path.exists(os.path.join(img, "inventory.img")):
        if dump.poll() is not None:
            sys.exit(f"bench-lazy: dump failed: {dump.communicate()[1]}")
        time.sleep(0.0005)
    t_img = time.monotonic()
    rst = subprocess.Popen(netns + ["unshare", "--pid", "--fork", "--mount-proc", args.stasis,
                                    "restore", "-D", img, "--lazy-pages", "--address", addr,
                                    "--port", str(port)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    while True:
        pid = running_under(rst.pid, "workload")
        if pid:
            break
        if rst.poll() is not None:
            sys.exit(f"bench-lazy: restore failed: {rst.communicate()[1]}")
        time.sleep(0.0005)
    t_run = time.monotonic()
    dout, derr = dump.communicate(timeout=900)
    t_src_gone = time.monotonic()
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 600
    while not os.path.exists(okfile) and time.monotonic() < deadline:
        time.sleep(0.01)
    verdict = open(okfile).read().split()[0] if os.path.exists(okfile) else "none"
    os.kill(pid, signal.SIGKILL)
    _, rerr = rst.communicate(timeout=60)
    proc.wait()
    done = re.search(r"post-copy complete: (\d+) MiB in ([0-9.]+) s", rerr)
    running = re.search(r"running after ([0-9.]+) s", rerr)
    subprocess.run(["rm", "-rf", img])
    return {
        "image_written_ms": (t_img - t0) * 1e3,
        "restore_to_running_ms": (t_run - t_img) * 1e3,
        "freeze_to_running_ms": (t_run - t0) * 1e3,
        "restore_says_running_ms": float(running.group(1)) * 1e3 if running else None,
        "all_memory_s": float(done.group(2)) if done else None,
        "moved_mib": int(done.group(1)) if done else None,
        "source_gone_after_running_s": t_src_gone - t_run,
        "verify": verdict,
        "dump_stderr": derr.strip().splitlines()[-1:] if derr else [],
    }


def criu_run(args, mib, port, scratch):
    """CRIU 4.2: dump --lazy-pages, lazy-pages --page-server, restore --lazy-pages."""
    if not os.path.exists(args.criu):
        return f"not run: no {args.criu}"
    proc, okfile = start_workload(args.workload, mib, scratch)
    img = os.path.join(scratch, "criu-lazy-img")
    subprocess.run(["rm", "-rf", img])
    os.makedirs(img)
    t0 = time.monotonic()
    dump = subprocess.Popen([args.criu, "dump", "-t", str(proc.pid), "-D", img, "--lazy-pages",
                             "--address", "127.0.0.1", "--port", str(port), "-o", "dump.log",
                             "-v4"])
    while not os.path.exists(os.path.join(img, "inventory.img")):
        if dump.poll() is not None:
            proc.kill()
            proc.wait()
            return "criu dump --lazy-pages failed: " + tail_errors(os.path.join(img, "dump.log"))
        time.sleep(0.0005)
    time.sleep(0.2)
    lp = subprocess.Popen([args.criu, "lazy-pages", "--page-server", "--address", "127.0.0.1",
                           "--port", str(port), "-D", img, "-o", "lp.log", "-v4"])
    time.sleep(0.5)
    rst = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", args.criu, "restore",
                            "-D", img, "--lazy-pages", "-o", "rst.log", "-v4"])
    t_run = None
    while rst.poll() is None and time.monotonic() - t0 < 120:
        if t_run is None and running_under(rst.pid, "workload"):
            t_run = time.monotonic()
        time.sleep(0.001)
    for p in (dump, lp, rst):
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    try:
        proc.kill()
    except ProcessLookupError:
        pass
    proc.wait()
    if rst.returncode == 0 and t_run is not None:
        return f"restored, running {(t_run - t0) * 1e3:.0f} ms after the dump started"
    why = [tail_errors(os.path.join(img, n)) for n in ("dump.log", "lp.log", "rst.log")]
    return "CRIU lazy-pages failed here: " + " | ".join(w for w in why if w)


def tail_errors(path):
    try:
        lines = [l.strip() for l in open(path) if "Error" in l]
    except OSError:
        return ""
    return "; ".join(lines[:2])


def loadavg():
    """The 1-, 5- and 15-minute load averages, as /proc/loadavg gives them."""
    return " ".join(open("/proc/loadavg").read().split()[:3])


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--stasis", required=True)
    ap.add_argument("--workload", required=True)
    ap.add_argument("--criu", default="/work/criu/criu/criu")
    ap.add_argument("--mib", type=int, default=4096)
    ap.add_argument("--port", type=int, default=27400)
    ap.add_argument("--scratch", default="/dev/shm")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--link", help="shape a veth to this tc rate (e.g. 1gbit); default loopback")
    args = ap.parse_args()
    link = Link(args.link) if args.link else None
    try:
        runs(args, link)
    finally:
        if link:
            link.close()


def runs(args, link):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: restored trees reparent to us
    where = f"the {link.rate} veth" if link else "loopback"
    for i in range(args.runs):
        bw = link_bandwidth(link, 1 << 30) if link else loopback_bandwidth()
        log(f"{where}, TCP, one stream: {bw:.0f} MB/s (load average {loadavg()})")
        r = stasis_run(args, args.mib, args.port + 2 * i, args.scratch, link)
        rate = args.mib * MIB / r["all_memory_s"] / 1e6 if r["all_memory_s"] else 0
        print(f"stasis lazy {args.mib} MiB run {i + 1}: image written {r['image_written_ms']:.0f} "
              f"ms after the dump started; restored process running "
              f"{r['freeze_to_running_ms']:.0f} ms after the dump started "
              f"({r['restore_to_running_ms']:.0f} ms after the restore started; restore's own "
              f"figure {r['restore_says_running_ms']} ms); all memory there "
              f"{r['all_memory_s']} s after the start ({r['moved_mib']} MiB moved, {rate:.0f} "
              f"MB/s = {100 * rate / bw:.0f}% of {where}'s {bw:.0f} MB/s); source gone "
              f"{r['source_gone_after_running_s']:.2f} s after running; verify {r['verify']}; "
              f"load average {loadavg()}", flush=True)
        if link:
            print("criu 4.2 lazy: not run over --link (see the loopback run)", flush=True)
            continue
        print("criu 4.2 lazy: " + criu_run(args, args.mib, args.port + 2 * i + 1, args.scratch),
              flush=True)


if __name__ == "__main__":
    main()
