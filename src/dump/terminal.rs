//! The controlling terminal of a shell job (`--shell-job`): its foreground process group
//! and its termios, as the job left them. The terminal itself is not saved (it belongs to
//! whoever runs the job); the restore side, `restore/terminal.rs`, puts both on the
//! restorer's terminal. The terminal fds themselves are `files/chardev.rs`.

use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};

use crate::dump::DumpError;
use crate::image::tree::JobTerminal;
use crate::proc::Stat;
use crate::sys::socket::{ioctl_buf, TCGETS, TERMIOS_LEN};

/// The root's controlling terminal, read through one of the root's fds on it; `None`
/// when it has no controlling terminal or holds no fd on it.
pub fn job_terminal(root: &Stat) -> Result<Option<JobTerminal>, DumpError> {
    if root.tty_nr == 0 {
        return Ok(None);
    }
    let Some(path) = fd_on(root.pid, root.tty_nr as u32 as u64) else {
        return Ok(None);
    };
    let err = |what: String| {
        DumpError::unsupported(format!(
            "the controlling terminal of pid {} ({path}): {what}",
            root.pid
        ))
    };
    // Opened anew through the magic link, without becoming anyone's controlling terminal.
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(&path)
        .map_err(|e| err(format!("open: {e}")))?;
    let mut termios = vec![0u8; TERMIOS_LEN];
    ioctl_buf(tty.as_fd(), TCGETS, &mut termios).map_err(|e| err(format!("TCGETS: {e}")))?;
    Ok(Some(JobTerminal {
        foreground: root.tpgid,
        termios,
    }))
}

/// `/proc/PID/fd/N` of the first fd of `pid` on the device `rdev` (stat's `tty_nr` has
/// the same encoding as `st_rdev` for every terminal number).
fn fd_on(pid: i32, rdev: u64) -> Option<String> {
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds.into_iter()
        .map(|fd| format!("/proc/{pid}/fd/{fd}"))
        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.rdev() == rdev && is_chr(&m)))
}

fn is_chr(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    m.file_type().is_char_device()
}
