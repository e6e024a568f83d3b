//! `--shell-job`: a task whose stdio is the invoking terminal is dumped and restored on the
//! current terminal. The terminal is a real pseudo-terminal made by `script(1)`; the whole
//! job-control dance runs in a bash script inside it, and its transcript is checked.

mod common;

use std::process::Command;

use common::{victim_bin, TempDir, STASIS};

/// Inside the pty: start the `pause` victim on the terminal, dump it with -j, restore it
/// with -j (stasis stays the parent), check its stdio is this terminal, let it verify.
const SCRIPT: &str = r#"
set -u
# Close whatever the test runner leaked beyond stdio, so the victim holds only the terminal.
for f in /proc/$$/fd/*; do n=${f##*/}; [ "$n" -gt 2 ] && eval "exec $n>&-"; done 2>/dev/null
tty_now=$(tty)
"$VICTIM" pause &
vp=$!
caught() { [ "$(grep SigCgt /proc/$1/status 2>/dev/null | cut -f2)" != 0000000000000000 ]; }
for i in $(seq 100); do caught $vp && break; sleep 0.05; done
sleep 0.2
"$STASIS" dump -j -t $vp -D "$IMG" || { echo "DUMP FAILED"; exit 1; }
wait $vp 2>/dev/null
# Ready once stasis writes the pid file (the tree runs); the process at $vp catches
# signals before that too (stasis's own copy, while it is being rebuilt).
"$STASIS" restore -j --pidfile "$IMG.pid" -D "$IMG" &
rp=$!
for i in $(seq 600); do [ -s "$IMG.pid" ] && break; sleep 0.05; done
echo "restored fd1: $(readlink /proc/$vp/fd/1) terminal: $tty_now"
kill -USR1 $vp
wait $rp
echo "restore exit $?"
"#;

#[test]
fn shell_job_restores_on_the_current_terminal() {
    require_privileged!("shell_job_restores_on_the_current_terminal");
    if Command::new("script").arg("--version").output().is_err() {
        common::skip(
            "shell_job_restores_on_the_current_terminal",
            "script(1) from util-linux/bsdutils is not installed",
        );
        return;
    }
    let _guard = common::serial();
    let dir = TempDir::new("shell-job");
    let script = dir.join("job.sh");
    std::fs::write(&script, SCRIPT).expect("write job script");
    let out = Command::new("script")
        .args(["-qec", &format!("bash {}", script.display()), "/dev/null"])
        .env("VICTIM", victim_bin("syscalls"))
        .env("STASIS", STASIS)
        .env("IMG", dir.join("img"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script(1)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("READY"), "victim never ran:\n{text}");
    let line = text
        .lines()
        .find(|l| l.starts_with("restored fd1:"))
        .unwrap_or_else(|| panic!("no restore:\n{text}"));
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        fields[2], fields[4],
        "restored stdout is not the current terminal:\n{text}"
    );
    assert!(
        text.contains("PASS"),
        "victim did not pass on the terminal:\n{text}"
    );
    assert!(
        text.contains("restore exit 0"),
        "stasis restore did not exit 0:\n{text}"
    );
}
