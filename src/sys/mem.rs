//! # Safety
//! `process_vm_readv(2)` and `process_vm_writev(2)` with local iovecs built from live Rust
//! slices.
//!
//! Reading and writing another task's memory: `process_vm_readv` for bulk reads of
//! readable mappings, `process_vm_writev` for bulk writes into writable ones, and
//! `/proc/PID/mem` (which uses FOLL_FORCE) for the rest.
#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use nix::errno::Errno;

/// Errors reading or writing a task's memory.
#[derive(Debug, thiserror::Error)]
pub enum MemError {
    #[error("open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op} {len} bytes at {addr:#x} of pid {pid}")]
    Access {
        op: &'static str,
        pid: i32,
        addr: u64,
        len: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("process_vm_readv from pid {pid}")]
    VmRead {
        pid: i32,
        #[source]
        source: Errno,
    },
    #[error("process_vm_writev into pid {pid}")]
    VmWrite {
        pid: i32,
        #[source]
        source: Errno,
    },
}

/// `/proc/PID/mem` of a stopped task.
pub struct Mem {
    pid: i32,
    write: bool,
    file: OnceLock<File>,
}

impl Mem {
    /// Opens the file now.
    pub fn open(pid: i32, write: bool) -> Result<Self, MemError> {
        let mem = Mem::lazy(pid, write);
        mem.file()?;
        Ok(mem)
    }

    /// The file opened at the first read or write, for a task that may never need it.
    /// The same as [`Mem::open`] for a task that does not `execve` in between: the file
    /// reaches the address space the task has when it is opened.
    pub fn lazy(pid: i32, write: bool) -> Self {
        Mem {
            pid,
            write,
            file: OnceLock::new(),
        }
    }

    fn file(&self) -> Result<&File, MemError> {
        if let Some(file) = self.file.get() {
            return Ok(file);
        }
        let path = PathBuf::from(format!("/proc/{}/mem", self.pid));
        let file = OpenOptions::new()
            .read(true)
            .write(self.write)
            .open(&path)
            .map_err(|source| MemError::Open { path, source })?;
        Ok(self.file.get_or_init(|| file))
    }

    pub fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemError> {
        self.file()?
            .read_exact_at(buf, addr)
            .map_err(|source| self.access("read", addr, buf.len(), source))
    }

    pub fn write(&self, addr: u64, buf: &[u8]) -> Result<(), MemError> {
        self.file()?
            .write_all_at(buf, addr)
            .map_err(|source| self.access("write", addr, buf.len(), source))
    }

    fn access(&self, op: &'static str, addr: u64, len: usize, source: std::io::Error) -> MemError {
        MemError::Access {
            op,
            pid: self.pid,
            addr,
            len,
            source,
        }
    }
}

/// `process_vm_readv(2)` — copy the remote ranges, in order, into `local`; returns the
/// number of bytes copied (short when a range is unmapped or unreadable).
pub fn vm_read(pid: i32, local: &mut [u8], remote: &[(u64, usize)]) -> Result<usize, MemError> {
    let liov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: local.len(),
    };
    let riov = remote_iovecs(remote);
    // SAFETY: `liov` describes `local`, valid for writes of its length for the whole call;
    // remote iovecs are addresses in the other task, which the kernel checks itself.
    let r = unsafe {
        libc::process_vm_readv(pid, &liov, 1, riov.as_ptr(), riov.len() as libc::c_ulong, 0)
    };
    Errno::result(r)
        .map(|n| n as usize)
        .map_err(|source| MemError::VmRead { pid, source })
}

/// iovecs naming `(address, length)` ranges in another task (never dereferenced by us).
fn remote_iovecs(remote: &[(u64, usize)]) -> Vec<libc::iovec> {
    remote
        .iter()
        .map(|&(addr, len)| libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: len,
        })
        .collect()
}

/// `process_vm_writev(2)` — copy `local` into the remote ranges, in order; returns the
/// number of bytes copied (short when a range is unmapped or not writable). Missing pages
/// of the target are faulted in, in the caller's context.
pub fn vm_write(pid: i32, local: &[u8], remote: &[(u64, usize)]) -> Result<usize, MemError> {
    let liov = libc::iovec {
        iov_base: local.as_ptr() as *mut libc::c_void,
        iov_len: local.len(),
    };
    let riov = remote_iovecs(remote);
    // SAFETY: `liov` describes `local`, valid for reads of its length for the whole call
    // (the kernel only reads it); remote iovecs are addresses in the other task, which the
    // kernel checks itself.
    let r = unsafe {
        libc::process_vm_writev(pid, &liov, 1, riov.as_ptr(), riov.len() as libc::c_ulong, 0)
    };
    Errno::result(r)
        .map(|n| n as usize)
        .map_err(|source| MemError::VmWrite { pid, source })
}
