#!/usr/bin/env python3
"""Bench workload: a Python process holding MIB MiB of dicts and strings (a typical
interpreter heap: many small objects, pointers, repeated text). Same contract as
workload.c: print "READY <pid>", then on SIGUSR1 re-check the heap against the digest
taken at setup and write "OK <verify-ns>" or "BAD" to OKFILE.

usage: pyheap.py MIB OKFILE
"""
import hashlib
import os
import signal
import sys
import time


def build(mib):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "theta", "kappa"]
    heap, size, i = [], 0, 0
    while size < mib << 20:
        d = {f"key-{i}-{j}": f"{words[(i + j) % 8]}-{i * 7919 + j}-" + words[j % 8] * (j % 5)
             for j in range(64)}
        d["n"] = i
        d["list"] = list(range(i % 50))
        heap.append(d)
        size += 64 * 150
        i += 1
    return heap


def digest(heap):
    h = hashlib.blake2b()
    for d in heap:
        h.update(repr(sorted(d.items())).encode())
    return h.hexdigest()


def main():
    mib, okfile = int(sys.argv[1]), sys.argv[2]
    heap = build(mib)
    want = digest(heap)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    print(f"READY {os.getpid()}", flush=True)
    signal.sigwait({signal.SIGUSR1})
    t0 = time.monotonic_ns()
    ok = digest(heap) == want
    t1 = time.monotonic_ns()
    with open(okfile + ".tmp", "w") as f:
        f.write(f"OK {t1 - t0}\n" if ok else "BAD\n")
    os.rename(okfile + ".tmp", okfile)
    signal.pause()


if __name__ == "__main__":
    main()
