#!/usr/bin/env bash
# Dump/restore benchmark for stasis: see docs/benchmarks.md.
# usage: scripts/bench.sh [--runs N] [--quick] [--big] [--json FILE] [--store-opts OPTS] [--restore-opts OPTS]
#                         [--compare 'DUMP_TEMPLATE' 'RESTORE_TEMPLATE'] [--only a,b]
#                         [--storage /dev/shm,/var/tmp]
#        scripts/bench.sh --migration [--runs N] [--only pageserver,migrate] [--json FILE]
#                         (page-server stop-and-copy against CRIU, migrate downtime)
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

if [ -z "${STASIS:-}" ]; then
    cargo build --release --quiet
    STASIS="${CARGO_TARGET_DIR:-$PWD/target}/release/stasis"
fi

bindir=$(mktemp -d /tmp/stasis-bench-bin.XXXXXX)
trap 'rm -rf "$bindir"' EXIT
gcc -O2 -Wall -o "$bindir/workload" scripts/bench/workload.c -lpthread
gcc -O2 -Wall -o "$bindir/limits" scripts/bench/limits.c

if [ "${1:-}" = "--migration" ]; then
    shift
    python3 scripts/bench/migration.py --stasis "$STASIS" --bindir "$bindir" "$@"
    exit
fi
python3 scripts/bench/driver.py --stasis "$STASIS" --bindir "$bindir" "$@"
