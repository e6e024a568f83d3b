//! Files records of formats 9 to 16, decoded and converted to the current [`FilesImage`].
//! Format 17 added [`FilesImage::dgram_senders`] (the sender address of each queued unix
//! datagram) after every older field; an older record has none, and its queues are sent
//! again as before (from the peer or an unnamed socket).

use serde::{Deserialize, Serialize};

use super::files::*;

/// A files record of format 9 to 16: the current one without `dgram_senders`.
#[derive(Deserialize, Serialize)]
pub struct FilesImageV16 {
    fds: Vec<FdEntry>,
    locks: Vec<FileLock>,
    spares: Vec<i32>,
    in_flight: Vec<InFlight>,
    epoll_moved: Vec<EpollMoved>,
    hashes: Vec<ContentHash>,
    owners: Vec<FdOwner>,
    unlinked_sockets: Vec<u64>,
    socket_files: Vec<SocketFile>,
    modes: Vec<(i32, u32)>,
}

impl From<FilesImageV16> for FilesImage {
    fn from(old: FilesImageV16) -> Self {
        FilesImage {
            fds: old.fds,
            locks: old.locks,
            spares: old.spares,
            in_flight: old.in_flight,
            epoll_moved: old.epoll_moved,
            hashes: old.hashes,
            owners: old.owners,
            unlinked_sockets: old.unlinked_sockets,
            socket_files: old.socket_files,
            modes: old.modes,
            dgram_senders: Vec::new(),
        }
    }
}

#[cfg(test)]
impl From<&FilesImage> for FilesImageV16 {
    /// `files` as formats 9 to 16 wrote it (its senders left out).
    fn from(f: &FilesImage) -> Self {
        let f = f.clone();
        FilesImageV16 {
            fds: f.fds,
            locks: f.locks,
            spares: f.spares,
            in_flight: f.in_flight,
            epoll_moved: f.epoll_moved,
            hashes: f.hashes,
            owners: f.owners,
            unlinked_sockets: f.unlinked_sockets,
            socket_files: f.socket_files,
            modes: f.modes,
        }
    }
}
