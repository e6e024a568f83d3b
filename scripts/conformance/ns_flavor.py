"""zdtm's ns flavor for the conformance runner: the test is the init of new pid, mount,
network, IPC and UTS namespaces, made by zdtm's own test library (lib/ns.c) when
ZDTM_NEWNS is set; it pivots into ZDTM_ROOT, a tree that holds the tests and the
libraries they need, with ZDTM_DEV (a tmpfs with a few device nodes) as its /dev.

This module builds that root (once per run: directories and libraries; per test: the
test's own libraries and its `deps` programs) and, inside the test's outer mount
namespace, the mounts the test library expects (the root as a mount point, the /dev
tmpfs). Written from the facts of zdtm.py's ns flavor, not from its code.
"""

import os
import re
import shutil
import stat
import subprocess

# The directories the pivoted root has (world-writable: tests of any uid make files there).
ROOT_DIRS = ["/bin", "/sbin", "/etc", "/lib", "/lib64", "/dev", "/tmp", "/usr", "/proc", "/run"]
# Device nodes of /dev: name -> (major, minor), or None to take the host's numbers.
DEV_NODES = {"tty": (5, 0), "null": (1, 3), "net/tun": None, "rtc": None, "autofs": (10, 235)}
# ldd lines that name no file to copy (the vDSO, static binaries).
NOT_A_LIB = re.compile(r"^(linux-gate\.so|linux-vdso(64)?\.so|not a dynamic|statically linked)")


def build_root(root):
    """The root's directories; /usr/bin and friends point at the root's own."""
    for d in ROOT_DIRS:
        os.makedirs(root + d, exist_ok=True)
        os.chmod(root + d, 0o777)
    for d in ["/bin", "/sbin", "/lib", "/lib64"]:
        link = root + "/usr" + d
        if not os.path.lexists(link):
            os.symlink(".." + d, link)


def copy_into(root, path):
    """`path` of the host at the same place below `root` (once)."""
    target = root + path
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(path, target)


def libraries(binary):
    """The shared libraries `binary` loads, as ldd names them."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    libs = []
    for line in out.splitlines():
        if not line.startswith("\t"):
            continue
        line = line.strip()
        if NOT_A_LIB.match(line):
            continue
        words = line.split()
        lib = words[2] if len(words) > 2 and words[1] == "=>" else words[0]
        if lib.startswith("/"):
            libs.append(lib)
    return libs


def prepare_test(root, binary, desc):
    """Copies what the test needs into the root: its libraries, and its `deps` (each
    `a|b` alternative: the first that exists) with theirs. Returns an error or None."""
    for lib in libraries(binary):
        copy_into(root, lib)
    for alternatives in desc.get("deps", []):
        found = [d for d in alternatives.split("|") if os.path.exists(d)]
        if not found:
            return "deps: none of %s exists" % alternatives
        copy_into(root, found[0])
        for lib in libraries(found[0]):
            copy_into(root, lib)
    return None


def mount_root(root, devpath):
    """In the test's outer mount namespace: the root as a mount point of its own (the test
    library changes its propagation) and the tmpfs that becomes its /dev."""
    subprocess.check_call(["mount", "--make-private", "--bind", root, root])
    os.makedirs(devpath, exist_ok=True)
    subprocess.check_call(["mount", "-t", "tmpfs", "zdtm-test-dev", devpath])
    os.chmod(devpath, 0o777)
    for d in ["pts", "net"]:
        os.mkdir(os.path.join(devpath, d), 0o755)
    for name, numbers in DEV_NODES.items():
        kind = stat.S_IFCHR
        if numbers is None:
            try:
                st = os.stat(os.path.join("/dev", name))
            except OSError:
                continue
            rdev = st.st_rdev
            kind = stat.S_IFBLK if stat.S_ISBLK(st.st_mode) else stat.S_IFCHR
        else:
            rdev = os.makedev(*numbers)
        node = os.path.join(devpath, name)
        os.mknod(node, kind | 0o666, rdev)
        os.chmod(node, 0o666)


def env(root, devpath, desc):
    """What the test library reads to become a namespace init."""
    out = {
        "ZDTM_NEWNS": "1",
        "ZDTM_ROOT": root,
        "ZDTM_DEV": devpath,
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    }
    if desc.get("bind"):
        out["ZDTM_BIND"] = desc["bind"]
    return out
