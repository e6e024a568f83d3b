#!/usr/bin/env python3
"""Writes the OCI config (config.json) of the privileged runc container that
scripts/container-test.sh runs the test suite in: every capability the host's root has,
no seccomp filter, no masked or read-only paths, the host's devices, its own pid, mount,
IPC, UTS, network and cgroup namespaces, sysfs and cgroup2 writable."""

import argparse
import json

# Capability numbers 0..40 in the kernel's order (linux/capability.h).
CAPS = """CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP
LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER
SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE
SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP
MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF
CHECKPOINT_RESTORE""".split()


def host_caps():
    """The capabilities in this process's bounding set: the container can have no more
    (root here lacks CAP_SYS_RESOURCE)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("CapBnd:"):
                mask = int(line.split()[1], 16)
    return ["CAP_" + c for i, c in enumerate(CAPS) if mask >> i & 1]


def config(a):
    caps = host_caps()
    env = [f"PATH={a.path}", f"HOME={a.home}", "TERM=dumb", "CARGO_TERM_COLOR=never",
           "STASIS_IN_CONTAINER=1"]
    ns = ["pid", "mount", "ipc", "uts", "network", "cgroup"]
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind", "rw"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "rw"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["mode=1777"]},
        {"destination": a.repo, "type": "bind", "source": a.repo, "options": ["rbind", "rw"]},
    ]
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": False,
            "user": {"uid": 0, "gid": 0},
            "args": ["/bin/bash", "-c", a.command],
            "env": env,
            "cwd": a.repo,
            # Inheritable and ambient stay empty, as a host root shell's are: either would
            # pass a capability on across exec that the bounding set no longer has (tests
            # drop one with `setpriv --bounding-set`).
            "capabilities": {
                **{k: caps for k in ("bounding", "effective", "permitted")},
                **{k: [] for k in ("inheritable", "ambient")},
            },
            "rlimits": [
                {"type": "RLIMIT_NOFILE", "soft": a.nofile[0], "hard": a.nofile[1]},
                {"type": "RLIMIT_NPROC", "soft": a.nproc[0], "hard": a.nproc[1]},
            ],
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "stasis-ci",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ns],
            "resources": {"devices": [{"allow": True, "access": "rwm"}]},
            "maskedPaths": [],
            "readonlyPaths": [],
        },
    }


def limit(v):
    return 2**64 - 1 if v == "unlimited" else int(v)


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repo", required=True)
    p.add_argument("--home", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--nofile", nargs=2, type=limit, required=True)
    p.add_argument("--nproc", nargs=2, type=limit, required=True)
    print(json.dumps(config(p.parse_args()), indent=2))


if __name__ == "__main__":
    main()
