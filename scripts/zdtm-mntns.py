#!/usr/bin/env python3
"""Run CRIU ZDTM mount tests in a "mount namespace only" flavor: each test starts under
`unshare --mount --propagation private` (host pid and network namespaces, which the
conformance runner's host flavor cannot give: it skips every ns-flavor test), is dumped
with stasis, restored detached, sent SIGTERM, and its .out read. A development tool like
scripts/conformance.sh (needs a CRIU v4.2 tree with the static tests built).

    scripts/zdtm-mntns.py STASIS_BIN CRIU_SRC IMG_DIR TEST...
"""
import ctypes
import os
import shutil
import subprocess
import sys
import time

ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER


def reap():
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                return
        except ChildProcessError:
            return


def gone(pid, secs=10):
    end = time.time() + secs
    while time.time() < end:
        reap()
        if not os.path.exists(f"/proc/{pid}"):
            return True
        time.sleep(0.02)
    return False


def run(stasis, t, imgs):
    for f in (t + ".pid", t + ".out", t + ".out.inprogress"):
        if os.path.exists(f):
            os.unlink(f)
    if os.path.isdir(t + ".test"):
        subprocess.run(["umount", "-R", t + ".test"], stderr=subprocess.DEVNULL)
        shutil.rmtree(t + ".test", ignore_errors=True)
    img = os.path.join(imgs, t + ".img")
    shutil.rmtree(img, ignore_errors=True)
    args = [f"./{t}", f"--pidfile={t}.pid", f"--outfile={t}.out", f"--dirname={t}.test"]
    subprocess.run(["unshare", "--mount", "--propagation", "private"] + args,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 5
    while not os.path.exists(t + ".pid") and time.time() < end:
        time.sleep(0.02)
    try:
        pid = int(open(t + ".pid").read())
    except (OSError, ValueError):
        return "START-FAIL", "the test did not start (extra arguments or setup of zdtm.py)"
    time.sleep(0.3)
    d = subprocess.run([stasis, "dump", "-t", str(pid), "-D", img], capture_output=True, text=True)
    if d.returncode:
        os.kill(pid, 9)
        gone(pid)
        return "DUMP-FAIL", d.stderr.strip()
    gone(pid)
    r = subprocess.run([stasis, "restore", "-D", img, "-d"], capture_output=True, text=True)
    if r.returncode:
        return "RESTORE-FAIL", r.stderr.strip()
    os.kill(pid, 15)
    gone(pid)
    out = open(t + ".out").read()
    return ("PASS", "") if "PASS" in out else ("FAIL", out.strip()[-300:])


def main():
    stasis, criu, imgs = (os.path.abspath(a) for a in sys.argv[1:4])
    os.makedirs(imgs, exist_ok=True)
    os.chdir(os.path.join(criu, "test/zdtm/static"))
    counts = {}
    for t in sys.argv[4:]:
        verdict, why = run(stasis, t, imgs)
        counts[verdict] = counts.get(verdict, 0) + 1
        print(verdict, t, why, flush=True)
    print(", ".join(f"{n} {v}" for v, n in sorted(counts.items())))


main()
