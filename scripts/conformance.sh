#!/usr/bin/env bash
# Run CRIU's ZDTM static tests (host flavor) against stasis: a development tool, not part of
# .ci/run (it needs a CRIU v4.2 source tree, which CI cannot fetch). See docs/testing.md.
#   scripts/conformance.sh [--criu CRIU_SRC] [--stasis BIN] [--list FILE] [--exclude RE] [TEST...]
# Builds stasis (release) unless --stasis is given, and CRIU's test programs if they are missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
criu="${CRIU_SRC:-$here/../../criu}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [ "${args[$i]}" = "--criu" ] && criu="${args[$((i + 1))]}"
done
static="$criu/test/zdtm/static"
if [ ! -d "$static" ]; then
    echo "conformance.sh: no $static: fetch checkpoint-restore/criu at tag v4.2 and pass --criu DIR" >&2
    exit 2
fi
if [ ! -x "$static/env00" ]; then
    echo "conformance.sh: building CRIU's zdtm tests in $static" >&2
    make -j"$(nproc)" -C "$criu/test/zdtm/lib" >/dev/null
    make -j"$(nproc)" -C "$static" >/dev/null
fi
exec python3 "$here/conformance/zdtm.py" --criu "$criu" "${args[@]}"
