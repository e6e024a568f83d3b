#!/usr/bin/env bash
# Checkpoint a running counter, kill it, restore it: the counter continues, same PID.
# Needs root (ptrace, clone3 with set_tid). Builds stasis in release mode first.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "demo.sh: stasis needs root (ptrace and restoring a fixed PID); run: sudo $0" >&2
    exit 1
fi
command -v python3 >/dev/null || { echo "demo.sh: needs python3 for the sample workload" >&2; exit 1; }

echo "== building stasis (cargo build --release)"
cargo build --release --quiet
stasis="${CARGO_TARGET_DIR:-$PWD/target}/release/stasis"

echo "== stasis check"
"$stasis" check

work=$(mktemp -d /tmp/stasis-demo.XXXXXX)
log="$work/counter.log"
img="$work/image"
workload_pid=""
restore_pid=""
cleanup() {
    # Reap what we started: nothing may be left for PID 1, which may not reap orphans.
    [ -n "$workload_pid" ] && kill -9 "$workload_pid" 2>/dev/null || true
    [ -n "$restore_pid" ] && wait "$restore_pid" 2>/dev/null || true
    [ -n "$workload_pid" ] && wait "$workload_pid" 2>/dev/null || true
}
trap cleanup EXIT

# The sample workload: a counter that prints its PID. It becomes a session leader (stasis
# dumps whole sessions unless --shell-job) and closes any fd it inherited beyond 0-2.
counter='
import os, time
os.setsid()
os.closerange(3, 1 << 16)
n = 0
while True:
    n += 1
    print(f"pid {os.getpid()} count {n}", flush=True)
    time.sleep(0.5)
'
echo "== starting the sample workload (python3 counter), log: $log"
python3 -c "$counter" >"$log" 2>&1 </dev/null &
workload_pid=$!
sleep 3
tail -n 3 "$log"

echo "== stasis dump -t $workload_pid -D $img"
"$stasis" dump -t "$workload_pid" -D "$img"
# The dump killed it: reap it (waiting only once it is a zombie or gone).
for _ in $(seq 50); do
    state=$(awk '{print $3}' "/proc/$workload_pid/stat" 2>/dev/null || true)
    [ -z "$state" ] || [ "$state" = Z ] && break
    sleep 0.1
done
if [ -n "$state" ] && [ "$state" != Z ]; then
    echo "demo.sh: pid $workload_pid still runs after the dump" >&2
    exit 1
fi
wait "$workload_pid" 2>/dev/null || true
echo "pid $workload_pid is gone; the image:"
ls -l "$img"
last=$(tail -n 1 "$log")
echo "last line before the dump: $last"
sleep 2
echo "(2 s later the log still ends with: $(tail -n 1 "$log"))"

echo "== stasis restore -D $img (in the background; stasis stays the parent)"
"$stasis" restore -D "$img" &
restore_pid=$!
sleep 3
echo "the log after the restore:"
grep -A 5 -x -F "$last" "$log" || tail -n 6 "$log"
echo "== the same PID is running again:"
ps -o pid,stat,etime,cmd -p "$workload_pid" || true

kill "$workload_pid"
status=0
wait "$restore_pid" || status=$?
restore_pid=""
workload_pid=""
echo "== stopped it; stasis restore exited with $status (128+SIGTERM = 143 expected)"
rm -rf "$work"
