#!/usr/bin/env bash
# Run the whole test suite. Installs what the tests need (gcc, python3, bash, coreutils,
# and iptables and nftables if it can) only when missing. Tests run one at a time: they share ptrace, PIDs and the
# subreaper, and restore into fixed PIDs. Extra arguments go to the test binaries
# (e.g. a name filter). The suite runs twice: on the host, then inside a privileged runc
# container (scripts/container-test.sh; STASIS_TEST_CONTAINER=0 skips that pass). Exits
# non-zero if either pass failed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for tool in gcc python3 bash sleep script; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "test.sh: missing ${missing[*]}; installing gcc python3 bash coreutils bsdutils" >&2
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: cannot install (needs root and apt-get); install ${missing[*]} yourself" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y gcc python3 bash coreutils bsdutils
fi
# Optional: iptables and nft (the network lock of TCP connections to outside peers), ip (network
# namespaces: a TCP peer outside the tree, a tree's own namespace rebuilt), OpenJDK 17 (tests/jvm.rs), runc, busybox-static and podman (criu-compat's runc and podman tests), redis-server (real-program tests and the migration of tests/migrate.rs), openssl (its TLS certificates), nginx, PostgreSQL 15 and tmux (real-program
# tests), Open MPI and Slurm with munge (tests/hpc.rs). Tests that need them print SKIP when
# they cannot be installed.
optional=()
command -v nft >/dev/null 2>&1 || optional+=(nftables)
command -v iptables >/dev/null 2>&1 && command -v ip6tables >/dev/null 2>&1 || optional+=(iptables)
command -v ip >/dev/null 2>&1 || optional+=(iproute2)
command -v redis-server >/dev/null 2>&1 || optional+=(redis-server)
command -v openssl >/dev/null 2>&1 || optional+=(openssl)
command -v tmux >/dev/null 2>&1 || optional+=(tmux)
command -v java >/dev/null 2>&1 && command -v javac >/dev/null 2>&1 || optional+=(openjdk-17-jdk-headless)
[ -x /usr/sbin/runc ] || optional+=(runc)
[ -x /bin/busybox ] || optional+=(busybox-static)
command -v podman >/dev/null 2>&1 || optional+=(podman)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || optional+=(nginx-light)
[ -x /usr/lib/postgresql/15/bin/postgres ] && command -v psql >/dev/null 2>&1 || optional+=(postgresql-15)
command -v mpirun >/dev/null 2>&1 && command -v mpicc >/dev/null 2>&1 ||
    optional+=(openmpi-bin libopenmpi-dev)
for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null 2>&1 || { optional+=(slurm-wlm munge); break; }
done
if [ "${#optional[@]}" -gt 0 ] && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing ${optional[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${optional[@]}" >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y "${optional[@]}" >&2; } ||
        echo "test.sh: could not install ${optional[*]}; tests needing them will be skipped" >&2
fi
command -v cargo >/dev/null 2>&1 || { echo "test.sh: cargo not found (install Rust: https://rustup.rs)" >&2; exit 1; }
if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: not root: dump/restore tests will print SKIP lines" >&2
fi

status=0
cargo test --release --no-fail-fast --workspace -- --test-threads=1 "$@" || status=$?
# The second pass: the same suite inside a privileged runc container (its own pid, mount,
# network, IPC, UTS and cgroup namespaces, overlay root), as CI systems run it. Skipped
# inside that container, and when STASIS_TEST_CONTAINER=0.
if [ -n "${STASIS_IN_CONTAINER:-}" ]; then
    exit "$status"
fi
if [ "${STASIS_TEST_CONTAINER:-1}" = 0 ]; then
    echo "test.sh: SKIP the container pass (STASIS_TEST_CONTAINER=0)" >&2
    exit "$status"
fi
echo "test.sh: host pass exited with $status; now the same suite inside a runc container" >&2
inner=0
scripts/container-test.sh "$@" || inner=$?
if [ "$status" -ne 0 ]; then
    exit "$status"
fi
exit "$inner"
