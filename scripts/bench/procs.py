"""Process housekeeping shared by the benchmark drivers: each driver is a child subreaper
(PID 1 here never reaps orphans, and a zombie keeps its pid taken, which a restore needs
free) and reaps what was re-parented to it."""
import ctypes
import os

PR_SET_CHILD_SUBREAPER = 36


def set_subreaper():
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans():
    """Reap any re-parented child that already exited, without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
