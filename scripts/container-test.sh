#!/usr/bin/env bash
# Runs the test suite (scripts/test.sh, arguments passed on) inside a privileged runc
# container, the way CI systems run it: stasis and the tests in the container's own pid,
# mount, IPC, UTS, network and cgroup namespaces, on an overlay root.
#
# The root filesystem is built from the host's packages: an overlay whose lower layer is
# the host's root directory (read-only to the container: what apt installed on the host,
# the compilers, the Rust toolchain under $HOME) and whose upper layer is a tmpfs that is
# thrown away afterwards. The repository is bind-mounted at its own path, so the build of
# the host run is reused. Needs root and runc (installed from Debian when missing).
# Exits with the status of the test run inside.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "container-test.sh: SKIP: needs root (runc, mounts)" >&2
    exit 0
fi
if ! command -v runc >/dev/null 2>&1; then
    echo "container-test.sh: installing runc" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y runc >&2 ||
        { apt-get update >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y runc >&2; } ||
        true
fi
if ! command -v runc >/dev/null 2>&1; then
    echo "container-test.sh: SKIP: runc is not installed and could not be installed" >&2
    exit 0
fi

work=$(mktemp -d /tmp/stasis-container.XXXXXX)
name="stasis-test-$$"
cleanup() {
    runc delete -f "$name" >/dev/null 2>&1 || true
    umount "$work/bundle/rootfs" 2>/dev/null || true
    umount "$work/layers" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The overlay root: host / below, a tmpfs above (the container's writes, /tmp included).
mkdir -p "$work/layers" "$work/bundle/rootfs"
mount -t tmpfs -o mode=0755 stasis-layers "$work/layers"
mkdir -p "$work/layers/upper" "$work/layers/work"
if ! mount -t overlay overlay \
    -o "lowerdir=/,upperdir=$work/layers/upper,workdir=$work/layers/work" \
    "$work/bundle/rootfs"; then
    echo "container-test.sh: SKIP: cannot mount an overlay over / here (no overlayfs?)" >&2
    exit 0
fi

# The container's limits are the host's: root here cannot raise them (no CAP_SYS_RESOURCE).
nofile_soft=$(ulimit -Sn) nofile_hard=$(ulimit -Hn)
nproc_soft=$(ulimit -Su) nproc_hard=$(ulimit -Hu)
args=$(printf ' %q' "$@")
python3 scripts/container/config.py \
    --repo "$repo" --home "$HOME" --path "$PATH" \
    --nofile "$nofile_soft" "$nofile_hard" --nproc "$nproc_soft" "$nproc_hard" \
    --command "cd $(printf '%q' "$repo") && scripts/test.sh$args" \
    >"$work/bundle/config.json"

echo "container-test.sh: running scripts/test.sh$args in runc container $name" >&2
status=0
runc run --bundle "$work/bundle" "$name" </dev/null || status=$?
echo "container-test.sh: the suite inside the container exited with $status" >&2
exit "$status"
