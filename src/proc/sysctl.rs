//! Reading a `/proc/sys` file whole. The kernel's handlers of number vectors
//! (`proc_dointvec` and kin) answer only a read at offset 0 and report end of file for any
//! later one, so a value must come in one `read`: `std::fs::read_to_string` starts with a
//! 32-byte probe read and would cut `kernel/sem` ("32000\t1024000000\t500\t32000") short.

use std::io::Read;
use std::path::Path;

/// The first read's buffer; a value that fills it is read again with a larger one.
const FIRST: usize = 4096;
/// The largest value taken (a sysctl file answers at most a page or a few).
const MOST: usize = 1 << 20;

/// The whole text of the sysctl file at `path`, from one `read` at offset 0.
pub fn read(path: &Path) -> std::io::Result<String> {
    let mut size = FIRST;
    loop {
        let mut buf = vec![0u8; size];
        let n = std::fs::File::open(path)?.read(&mut buf)?;
        if n < size || size >= MOST {
            buf.truncate(n);
            return String::from_utf8(buf)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e));
        }
        size *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kernel/sem` set to four numbers longer than 32 bytes in all (in an IPC namespace of
    /// a thread of its own): a probe read, then one at offset 32, would lose the last.
    #[test]
    fn a_number_vector_longer_than_a_probe_read_comes_whole() {
        let got = std::thread::spawn(|| {
            if nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWIPC).is_err() {
                eprintln!("SKIP a_number_vector...: unshare(CLONE_NEWIPC) needs CAP_SYS_ADMIN");
                return None;
            }
            let sem = Path::new("/proc/sys/kernel/sem");
            std::fs::write(sem, "32000 2147483647 2147483647 32000").expect("write kernel/sem");
            let probe = std::fs::read_to_string(sem).expect("read_to_string");
            Some((read(sem).expect("read kernel/sem"), probe))
        })
        .join()
        .expect("thread");
        let Some((whole, probe)) = got else { return };
        assert_eq!(whole, "32000\t2147483647\t2147483647\t32000\n");
        assert_ne!(
            probe, whole,
            "std's read_to_string reads it whole: the module doc is wrong"
        );
    }
}
