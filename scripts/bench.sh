#!/usr/bin/env bash
# Dump/restore benchmark for stasis: see docs/benchmarks.md.
# usage: scripts/bench.sh [--runs N] [--quick] [--big] [--json FILE] [--store-opts OPTS] [--restore-opts OPTS]
#                         [--variants 'NAME=OPTS;NAME=OPTS'] (several dump options, interleaved)
#                         | --lazy [MIB [RUNS]] [--link RATE]  (post-copy over loopback,
#                           or a veth shaped to a tc RATE such as 1gbit; 4096 MiB by default; CRIU's too)
#                         [--compare 'DUMP_TEMPLATE' 'RESTORE_TEMPLATE'] [--only a,b]
#                         [--storage /dev/shm,/var/tmp]
#        scripts/bench.sh --incremental [--runs N] [--mib MIB] [--percent P] [--verify] [--rt] [--repeat N] [--profile]
#                         [--criu /path/to/criu] [--storage DIR] [--json FILE]
#                         (frozen time of pre-dumps and of an incremental dump -R, see
#                         scripts/bench/incremental.py)
#        scripts/bench.sh --migration [--runs N] [--only pageserver,migrate] [--json FILE]
#                         (page-server stop-and-copy against CRIU, migrate downtime)
#        scripts/bench.sh --runtime [--runs N] [--only runc,runc-tmpfs,runc-netns,podman,podman-export]
#                         [--criu PATH] [--stasis-criu PATH] [--json FILE]
#                         (runc 1.1 and podman 4.3 checkpoint/restore through CRIU 4.2 and
#                         stasis-criu, alternating; see scripts/bench/runtime.py. Builds the
#                         workspace unless --stasis-criu or STASIS_CRIU=/path is given)
# Needs root, gcc and python3. Builds stasis (release) unless STASIS=/path/to/stasis is set.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench.sh: stasis needs root (ptrace, restoring a fixed pid); run: sudo $0" >&2
    exit 1
fi
for tool in gcc python3; do
    command -v "$tool" >/dev/null || { echo "bench.sh: needs $tool" >&2; exit 1; }
done

if [ "${1:-}" = --runtime ]; then
    shift
    for tool in runc podman; do
        command -v "$tool" >/dev/null || { echo "bench.sh: --runtime needs $tool" >&2; exit 1; }
    done
    case " $* " in
    *" --stasis-criu "* | *" --stasis-criu="*) exec python3 scripts/bench/runtime.py "$@" ;;
    esac
    if [ -z "${STASIS_CRIU:-}" ]; then
        cargo build --release --workspace --quiet
        STASIS_CRIU="${CARGO_TARGET_DIR:-$PWD/target}/release/stasis-criu"
    fi
    exec python3 scripts/bench/runtime.py --stasis-criu "$STASIS_CRIU" "$@"
fi

if [ -z "${STASIS:-}" ]; then
    cargo build --release --quiet
    STASIS="${CARGO_TARGET_DIR:-$PWD/target}/release/stasis"
fi

bindir=$(mktemp -d /tmp/stasis-bench-bin.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
gcc -O2 -Wall -o "$bindir/workload" scripts/bench/workload.c -lpthread
gcc -O2 -Wall -o "$bindir/limits" scripts/bench/limits.c
if command -v javac >/dev/null; then
    javac -d "$bindir" tests/jvm/Heap.java 2>/dev/null || echo "bench.sh: javac failed; no jvm workload" >&2
fi

if [ "${1:-}" = --incremental ]; then
    shift
    python3 scripts/bench/incremental.py --stasis "$STASIS" --bindir "$bindir" "$@"
    exit $?
elif [ "${1:-}" = "--lazy" ]; then
    command -v unshare >/dev/null || { echo "bench.sh: --lazy needs unshare" >&2; exit 1; }
    mib=4096 runs=1
    shift
    if [[ "${1:-}" =~ ^[0-9]+$ ]]; then mib=$1; shift; fi
    if [[ "${1:-}" =~ ^[0-9]+$ ]]; then runs=$1; shift; fi
    python3 scripts/bench/lazy.py --stasis "$STASIS" --workload "$bindir/workload" \
        --mib "$mib" --runs "$runs" "$@"
    exit 0
elif [ "${1:-}" = "--migration" ]; then
    shift
    python3 scripts/bench/migration.py --stasis "$STASIS" --bindir "$bindir" "$@"
    exit
fi
python3 scripts/bench/driver.py --stasis "$STASIS" --bindir "$bindir" "$@"
