//! Framing of one image file: the 32-byte header (magic, kind, format version, payload
//! length, crc32) and the postcard payload of a record. It owns the byte layout and its
//! checks, not where files live (`dir`, `load`) nor whether values make sense (`validate`).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use serde::{de::DeserializeOwned, Serialize};

use super::error::ImageError;

/// Version of the on-disk format; bumped by any change to a header or a record's fields.
/// Version 2 added the per-thread `comm`, `robust_list` and `robust_list_len`; version 3
/// the process tree (`tree.img`, needed to restore any image); version 4 the seccomp
/// filters and per-thread seccomp state, the audit loginuid and guard regions; version 5
/// the file locks of the files record and the fd kinds after `Inherited` (pipes, FIFOs,
/// O_PATH, ghost files, eventfd, timerfd, signalfd, epoll, inotify, memfd, pidfd);
/// version 6 the socket and pty kinds after `PidFd` (a version 5 image reads the same);
/// version 7 the files record's `spares` and the `Reopen` fd kind (objects split across
/// the processes of a tree) and the files record's `in_flight` (files riding on queued
/// unix messages), the `Remap` fd kind (`--link-remap`), the `Fanotify` fd kind, the shell
/// job's terminal in the tree record, the mm record's copy-on-write ranges (`cow`) and
/// `VmaKind::Unlinked` (older files, tree and mm records are converted on load).
/// Version 7 also has `shares_vm` and `shares_sighand` in the tree record's entries (an
/// older tree is read as sharing neither). Version 8 spreads a large address space's
/// pages over several pages files: each page run of the mm record names its file
/// (`stripe`; older mm records are read as having every run in `pages-<pid>.img`).
/// Version 9 adds the `seqread`, `randread` and `droppable` mapping flags, whether a
/// mapped file was opened for writing (`VmaKind::File::writable`) and AIO rings
/// (`VmaKind::Aio`); an older mm record reads as having files opened for writing exactly
/// where they were mapped shared and writable.
/// It also records the signal that stopped a process (`ProcState::Alive::stop_signal`,
/// a `u8` in the byte where version 8 had `stopped: bool`: its 1 reads as SIGSTOP) and
/// the credentials of threads whose own differ from the leader's (the task record's
/// `thread_creds`; an older task record is read as having none), and
/// `ProcState::GroupHelper` (a group whose leader was gone).
/// It also adds `ghosts.img` (files deleted while in use, each once for the tree, their
/// data without holes) and the `Deleted` fd kind that refers to them; an older image has
/// no `ghosts.img` and keeps its `Ghost` fds.
/// It also adds the files record's `owners` (`F_SETOWN_EX`/`F_SETSIG` of each open
/// file description), `unlinked_sockets` and `socket_files`, the `DeadPidFd` and
/// `Namespace` fd kinds, and the lease kinds of file locks (older
/// files records are read as having none).
/// It also adds `tty.img` (terminals the tree created and the sessions' controlling
/// terminals; an older image has none) and the `ControllingTty` fd kind; its `PtySlave`
/// may name a master held by another process of the tree, or none (hung up).
/// It also saves every readable socket option (`image::sockopts`: the sockets'
/// `SockOpts` is a list of options) and the type of inet sockets (`sock_type`; ping,
/// UDP-Lite and raw sockets); older files records are converted (`files_v8`).
/// It also adds System V IPC: `VmaKind::SysvShm` and the `sysv.img` record with its
/// `sysv-shm.img` pages (an older image has neither and restores no IPC objects).
/// It also adds the `Hugetlb` and `PrivateUnlinked` mapping kinds (huge-page memory;
/// private mappings of memfds, shared memory and deleted files, the last saved in
/// `ghosts.img`) and the files record's `modes` (memfd permission bits; older files
/// records are read as having none).
///
/// Version 10 also adds `namespaces.img` (`image::ns`): the ids of the tree's tasks in
/// pid namespaces below the dumper's, the names of the root's UTS namespace and the clocks
/// of its time namespace (an older image has none and lives in the restorer's pid, UTS
/// and time namespaces).
/// Version 10 makes every header's crc cover its kind, version and length before the
/// payload ([`Header::sum`]; older files are checked against their payload alone).
///
/// Version 10 also adds `netlock.img` (`image::netlock`): the `--network-lock` mode of
/// the dump and the processes whose lock it left for the restore (an older image held
/// nftables locks only, one per process with a locked connection).
///
/// Version 10 also adds the `Packet` and `Netlink` fd kinds (packet and netlink sockets,
/// `image::sock`), after every older kind, and the `PacketRing` mapping kind (a packet
/// socket's rings, mapped again from its fd).
///
/// Version 10 also adds the `InetState` variants `Connection` (a TCP connection in
/// SYN_SENT or a closing state, or one that ended, saved with `TCP_REPAIR`) and `Shut` (a
/// half-closed datagram or unconnected socket), after the others: version 9 reads the same.
/// Version 10 also adds `cgroup.img` (kind 14): each thread's cgroup in every hierarchy,
/// the cgroup directories below them with their permissions and settings, and the roots
/// of the tree's cgroup namespace (an older image has none: its tree stays in the
/// restorer's cgroups).
///
///
/// Version 10 also adds the tree's own mount namespace: `mnt.img` (every mount, how it
/// is made again, propagation) and `mnt-tmpfs-<id>.img` (a tmpfs's files); an image
/// without them is a tree that lived in the dumper's mount namespace.
///
/// Version 11 also adds `netns.img` (kind 16): the tree's own network namespace (its
/// links, addresses, routes, rules, sysctls and firewall); an image without it is a tree
/// that lived in the dumper's network namespace.
///
/// Version 11 also adds POSIX message queues: `mqueue.img` (kind 22, `image::mqueue`:
/// the queues of the tree's IPC namespace with their messages) and the `Mqueue` fd kind
/// after every older kind; `sysv.img`'s sysctls may also name `fs/mqueue/*` and
/// `kernel/{msg,sem,shm}_next_id`. A version 10 image has no queue and reads the same.
///
/// Version 11 also adds the image store (`image::store`): `store.img` (kind 20, the
/// manifest of a compressed, encrypted or signed image: each file's stored length,
/// BLAKE3 digest and plain length) and `store.sig` (kind 21, its ed25519 signature); the
/// files of such an image may be sealed (chunked, compressed, encrypted). An image
/// without `store.img` is plain, as every older one.
///
/// Version 11 also adds `chain.img` (kind 18, `image::chain`): the image's id, its parent
/// (`--prev-images-dir`) by directory and id, and whether it is a pre-dump; page runs in
/// pages file 255 (`mm::PARENT_STRIPE`) are pages unchanged since the parent, taken from
/// it at the same address. An older image has no chain record and no such runs.
///
/// Version 12 also leaves out `tty.img` when the tree has no terminal: an absent record
/// reads as an empty one (as version 11 read it), one file less to write and read.
/// Version 12 also adds `orphan-pty.img` (kind 30, `image::orphan_pty`): the pty whose
/// master was outside the tree (a container runtime's console), made again at restore
/// with a new master handed to the front end; its slave fds are `PtySlave` records.
/// Version 12 also adds `lazy.img` (kind 24, `image::lazy`), written by `dump
/// --lazy-pages`: the page runs of each process that are not in its pages files but
/// served by the source over the network after the restore (post-copy), and the session
/// id the target presents to the source. An image with it is restored only with
/// `restore --lazy-pages`; an older image has none.
///
/// Version 13 also adds `pty-devpts.img` (kind 32, `image::pty_devpts`): the devpts
/// mount (as the tree sees it) of each pty of the tree that lives in another devpts
/// instance than the host's (a container's own `/dev/pts`); the restore makes those
/// pairs through that mount's `ptmx`. An older image has none: every pty is the host's.
///
/// Version 14 also adds the `Cipher::AgeX25519 { key_id, wrapped }` variant (appended) of
/// `store.img` (`dump --encrypt-to`): the image's random secret wrapped as an age file for
/// X25519 recipients, unwrapped at restore with an age identity file.
///
/// Version 14 also adds the mount namespaces made inside the tree: `mntns.img` (kind 35,
/// `image::mnt::NestedImage`: each namespace with the process that made it and its
/// mounts) and `mntns-tmpfs-<id>.img` (kind 36, a tmpfs only such a namespace has). An
/// older image has none: every process of it was in the root's mount namespace.
///
/// Version 14 also adds `userns.img` (kind 27, `image::userns`): the uid and gid maps and
/// the setgroups mode of the tree's own user namespace, a child of the dumper's, and the
/// owner of each of the tree's sockets; the root is cloned into a new one with these
/// maps. An older image has none.
///
/// Version 15 also adds `mntns-join.img` (kind 39, `image::mnt::JoinsImage`): each process
/// in the mount namespace of an ancestor other than its parent's (one that went back to
/// an older namespace with `setns`, or stayed there while its parent left it); it enters
/// that namespace right after its takeover. An older image has none.
///
/// Version 16 also adds `ProcState::SessionForker` in `tree.img`: a helper with a pid of
/// its own that forks the members of a session whose live leader is not their sibling
/// (`image/forks.rs`). An older image has none.
///
/// Version 15 also adds `ProcState::SessionHelper` in `tree.img`: a session whose leader
/// was gone while members lived on as children of a reaper, rebuilt by a helper with the
/// session's id (`image/forks.rs`). An older image has none.
///
/// Version 15 also adds `netlinks.img` (kind 38, `image::netns::NetLinksImage`): what
/// `netns.img` does not say of each link of the tree's network namespace — its kind's
/// attributes (a bridge's, a macvlan's mode), its bridge and its port attributes, a veth
/// pair's other end inside, a macvlan's lower link — and the network namespaces processes
/// of the tree made. An older image has none: its links are loopback, dummy and veth
/// links whose other end is outside, and every process was in the root's namespace.
///
/// Version 16 also adds `ghost-homes.img` (kind 40, `image::ghost::GhostHomesImage`): the
/// ghosts a process of a mount namespace made inside the tree held on a mount the root's
/// namespace does not show at that path — each made through one mount of its filesystem
/// (the root's namespace's, or that namespace's once it is built) under each of its
/// names, each fd opening its own name in the namespace it was opened in. An older image
/// has none: every ghost is made at its path in the root's namespace.
///
/// Version 16 also adds, for mount namespaces: the variant `How::Deleted` of `mnt.img`
/// and `mntns.img` mounts (a bind of a file or directory deleted since, made again for
/// the bind and removed), `binfmt.img` (kind 42, `image::mnt::BinfmtImage`: the
/// binfmt_misc entries that end with the tree, registered again) and `mntns-maps.img`
/// (kind 43, `image::mnt::MapsElsewhereImage`: mappings and exe links on a mount of
/// another namespace of the tree, opened through a process of it). An older image has
/// none of them.
///
/// Version 16 also adds `netpeers.img` (kind 44, `image::netns::NetPeersImage`): each
/// veth pair whose ends are in two network namespaces of the tree (the root's and one a
/// process made, or two made ones), named by the process that made each namespace and
/// the link's name there. An older image has none: such a pair was refused at dump.
///
/// Version 16 also adds `netns-join.img` (kind 45, `image::netns::NetJoinsImage`): each
/// process in a network namespace of the tree other than its parent's that it did not
/// make (`setns`), with the maker of that namespace and whether it enters it after its
/// files (its sockets being of its parent's namespace). An older image has none: such a
/// process was refused at dump.
///
/// Version 17 adds `netns-sockets.img` (kind 46, `image::netns::SocketNetsImage`): each
/// socket of a network namespace of the tree that a process of another of the tree's
/// namespaces holds, by inode, with the maker of its namespace (the restore makes it
/// there). An older image has none: such a socket's first holder had to be in its
/// namespace, or the dump was refused. Also in version 17: a sealed file
/// (`store::sealed`) written with `--compress lz4` has compression code 3, each chunk's
/// body lz4 blocks of 64 KiB with a table of their lengths; code 2 (one lz4 block per
/// chunk, what version 16 wrote) is still read. No record changes for it: the version
/// tells an older stasis that it cannot read such an image.
///
/// Version 17 also adds the tun and tap devices of the tree's network namespaces: links of
/// kind `tun` in `netns.img` (and a namespace made inside the tree), their attributes
/// as the link's `info` in `netlinks.img` (`dump/ns/tun.rs`), and the fd kind
/// `FdKind::Tun` (`image::files::TunFd`): a `/dev/net/tun` file, attached to its device
/// or not. An older image has neither: such a link or fd was refused at dump (an older
/// stasis kept a `/dev/net/tun` file as a character device reopened unattached).
///
/// Version 17 also adds the files record's `dgram_senders` (`image::files::DgramSenders`:
/// the sender address of each message queued on a unix datagram socket), after every
/// older field; a record of versions 9 to 16 reads without (`image::files_v16`), its
/// messages sent again from the peer or an unnamed socket as then.
///
/// Version 18 adds each link's changeable features (`ethtool -k`: asked for and in
/// effect) to `netlinks.img` (`image::netns::LinkFeature`); a record of versions 15 to 17
/// reads without (`image::netns::NetLinksImageV17`), its links keeping a new link's
/// defaults as then.
pub const FORMAT_VERSION: u32 = 18;
/// The oldest format version this build still reads (older images lack the fields above
/// and are not converted).
pub const OLDEST_VERSION: u32 = 5;
/// First bytes of every image file. The high-bit byte catches 7-bit transfers, the name
/// makes `head -c8` readable, the newline catches line-ending conversion (as PNG's).
pub const MAGIC: [u8; 8] = *b"\x89STASIS\n";
/// magic 8 | kind u32 | version u32 | payload length u64 | crc32 u32 | reserved u32 (LE).
pub const HEADER_LEN: usize = 32;
/// Records whose payload is above this are refused, on write and on read.
pub const MAX_RECORD_LEN: u64 = 256 << 20;

/// What an image file holds; stored in the header so a renamed file is caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    Inventory = 1,
    Task = 2,
    Mm = 3,
    Files = 4,
    Pages = 5,
    Tree = 6,
    Ghosts = 7,
    Tty = 8,
    Sysv = 9,
    /// `namespaces.img` (format 10).
    Namespaces = 10,
    NetLock = 15,
    /// The tree's own network namespace (`netns.img`, format 11).
    NetNs = 16,
    Cgroup = 14,
    /// The tree's own mount namespace (`mnt.img`).
    Mounts = 12,
    /// The contents of one tmpfs of it (`mnt-tmpfs-<id>.img`).
    MntTmpfs = 13,
    /// The POSIX message queues of the tree's IPC namespace (`mqueue.img`, format 11).
    Mqueue = 22,
    /// `store.img`: how the image's files are stored (format 11, `image::store`).
    Store = 20,
    /// `store.sig`: the signature of `store.img` (format 11).
    StoreSignature = 21,
    /// Where the image stands in a chain of incremental images (`chain.img`, format 11).
    Chain = 18,
    /// The pty whose master was outside the tree (`orphan-pty.img`, format 12).
    OrphanPty = 30,
    /// The page runs served after the restore (`lazy.img`, format 12, `image::lazy`).
    Lazy = 24,
    /// The devpts instance of each pty not of the host's (`pty-devpts.img`, format 13).
    PtyDevpts = 32,
    /// The mount namespaces made inside the tree (`mntns.img`, format 14).
    NestedMounts = 35,
    /// The contents of a tmpfs of one of them (`mntns-tmpfs-<id>.img`, format 14).
    NestedTmpfs = 36,
    /// The tree's own user namespace (`userns.img`, format 14).
    UserNs = 27,
    /// The kind-specific attributes of the network namespace's links (`netlinks.img`,
    /// format 15).
    NetLinks = 38,
    /// Processes in the mount namespace of an ancestor other than their parent's
    /// (`mntns-join.img`, format 15).
    MntJoins = 39,
    /// The ghosts made through a mount other than their path's (`ghost-homes.img`,
    /// format 16).
    GhostHomes = 40,
    /// The binfmt_misc entries of the tree's namespace (`binfmt.img`, format 16).
    Binfmt = 42,
    /// Mappings on a mount of another namespace of the tree (`mntns-maps.img`, format 16).
    MapsElsewhere = 43,
    /// Veth pairs between two network namespaces of the tree (`netpeers.img`, format 16).
    NetPeers = 44,
    /// Processes in a network namespace of the tree they entered (`netns-join.img`,
    /// format 16).
    NetJoins = 45,
    /// Sockets held by a process of another network namespace of the tree than theirs
    /// (`netns-sockets.img`, format 17).
    SocketNets = 46,
}

/// Human name of a kind number, for messages.
pub fn kind_name(kind: u32) -> &'static str {
    match kind {
        1 => "inventory",
        2 => "task",
        3 => "mm",
        4 => "files",
        5 => "pages",
        6 => "tree",
        7 => "ghosts",
        8 => "tty",
        9 => "sysv",
        10 => "namespaces",
        15 => "netlock",
        16 => "network namespace",
        14 => "cgroup",
        12 => "mounts",
        13 => "tmpfs contents",
        22 => "mqueue",
        20 => "store manifest",
        21 => "store signature",
        18 => "chain",
        30 => "orphan pty",
        24 => "lazy pages",
        32 => "pty devpts",
        35 => "nested mount namespaces",
        36 => "nested tmpfs contents",
        27 => "user namespace",
        38 => "network links",
        39 => "mount namespace joins",
        40 => "ghost homes",
        42 => "binfmt_misc entries",
        43 => "mappings in other mount namespaces",
        44 => "network namespace veth pairs",
        45 => "network namespace joins",
        46 => "network namespace sockets",
        _ => "unknown",
    }
}

/// A parsed header whose magic and version have been checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: u32,
    pub version: u32,
    pub len: u64,
    pub crc: u32,
    pub reserved: u32,
}

impl Header {
    /// A current-version header for `len` payload bytes with checksum `crc`.
    pub fn new(kind: Kind, len: u64, crc: u32) -> Self {
        let (kind, version, reserved) = (kind as u32, FORMAT_VERSION, 0);
        Header {
            kind,
            version,
            len,
            crc,
            reserved,
        }
    }

    /// A current-version header for `len` payload bytes summed by `payload`, its crc
    /// covering the header's kind, version and length too ([`Header::sum`]).
    pub fn sealed(kind: Kind, len: u64, payload: &crc32fast::Hasher) -> Self {
        let mut h = Header::new(kind, len, 0);
        h.crc = h.sum(payload);
        h
    }

    /// The crc32 this header must store for a payload summed by `payload`. Since version
    /// 10 it covers bytes 8..24 (kind, version, length) before the payload, so a flipped
    /// version word naming an older layout is caught; before, the payload alone.
    pub fn sum(&self, payload: &crc32fast::Hasher) -> u32 {
        if self.version < 10 {
            return payload.clone().finalize();
        }
        let mut crc = crate::sys::cpu::crc32();
        crc.update(&self.to_bytes()[8..24]);
        crc.combine(payload);
        crc.finalize()
    }

    /// Checks the stored crc against a payload summed by `payload`.
    pub fn verify(&self, path: &Path, payload: &crc32fast::Hasher) -> Result<(), ImageError> {
        check_crc(path, self.crc, self.sum(payload))
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.kind.to_le_bytes());
        b[12..16].copy_from_slice(&self.version.to_le_bytes());
        b[16..24].copy_from_slice(&self.len.to_le_bytes());
        b[24..28].copy_from_slice(&self.crc.to_le_bytes());
        b[28..32].copy_from_slice(&self.reserved.to_le_bytes());
        b
    }

    /// Parses the start of `bytes`. Ordering requirements: magic, then version (a newer
    /// version may lay the rest out differently), then kind, then the reserved word.
    pub fn parse(bytes: &[u8], kind: Kind, path: &Path) -> Result<Self, ImageError> {
        let b: &[u8; HEADER_LEN] = match bytes.get(..HEADER_LEN) {
            Some(b) => b.try_into().expect("slice has HEADER_LEN bytes"),
            None => return Err(truncated(path, HEADER_LEN as u64, bytes.len() as u64)),
        };
        if b[0..8] != MAGIC {
            return Err(ImageError::BadMagic { path: path.into() });
        }
        let h = Header::fields(b);
        h.check(kind, path)?;
        Ok(h)
    }

    /// The fields of header bytes `b`, unchecked.
    fn fields(b: &[u8; HEADER_LEN]) -> Self {
        Header {
            kind: le32(&b[8..12]),
            version: le32(&b[12..16]),
            len: u64::from_le_bytes(b[16..24].try_into().expect("8 bytes")),
            crc: le32(&b[24..28]),
            reserved: le32(&b[28..32]),
        }
    }

    fn check(&self, kind: Kind, path: &Path) -> Result<(), ImageError> {
        let path = path.to_path_buf();
        if self.version > FORMAT_VERSION {
            let (found, supported) = (self.version, FORMAT_VERSION);
            return Err(ImageError::NewerVersion {
                path,
                found,
                supported,
            });
        }
        if self.version < OLDEST_VERSION {
            let (found, oldest) = (self.version, OLDEST_VERSION);
            return Err(ImageError::OlderVersion {
                path,
                found,
                oldest,
            });
        }
        if self.kind != kind as u32 {
            let (expected, found) = (kind as u32, self.kind);
            return Err(ImageError::WrongKind {
                path,
                expected,
                found,
            });
        }
        if self.reserved != 0 {
            return Err(ImageError::invalid(
                path,
                "reserved header word is not zero",
            ));
        }
        Ok(())
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b.try_into().expect("4 bytes"))
}

pub(crate) fn truncated(path: &Path, expected: u64, found: u64) -> ImageError {
    let path = path.to_path_buf();
    ImageError::Truncated {
        path,
        expected,
        found,
    }
}

/// Encodes `value` as a complete image file: header followed by the postcard payload.
pub fn encode<T: Serialize>(kind: Kind, value: &T) -> Result<Vec<u8>, ImageError> {
    let out = postcard::to_extend(value, vec![0u8; HEADER_LEN])
        .map_err(|source| ImageError::Encode { source })?;
    let len = (out.len() - HEADER_LEN) as u64;
    if len > MAX_RECORD_LEN {
        return Err(ImageError::TooLargeToWrite {
            kind: kind as u32,
            len,
        });
    }
    let mut out = out;
    let header = Header::sealed(kind, len, &hasher_of(&out[HEADER_LEN..]));
    out[..HEADER_LEN].copy_from_slice(&header.to_bytes());
    Ok(out)
}

/// Decodes a complete image file of `kind` read from `path` (named in errors).
pub fn decode<T: DeserializeOwned>(kind: Kind, bytes: &[u8], path: &Path) -> Result<T, ImageError> {
    let header = Header::parse(bytes, kind, path)?;
    let payload = payload(&header, &bytes[HEADER_LEN..], path)?;
    let (value, rest) = postcard::take_from_bytes(payload).map_err(|source| {
        let path = path.to_path_buf();
        ImageError::Decode { path, source }
    })?;
    if !rest.is_empty() {
        let extra = rest.len() as u64;
        return Err(ImageError::TrailingBytes {
            path: path.into(),
            extra,
        });
    }
    Ok(value)
}

/// The payload after the header, once its length is capped and matched and its crc checked.
fn payload<'a>(header: &Header, after: &'a [u8], path: &Path) -> Result<&'a [u8], ImageError> {
    if header.len > MAX_RECORD_LEN {
        return Err(ImageError::TooLarge {
            path: path.into(),
            len: header.len,
        });
    }
    let found = after.len() as u64;
    if found < header.len {
        return Err(truncated(
            path,
            HEADER_LEN as u64 + header.len,
            HEADER_LEN as u64 + found,
        ));
    }
    if found > header.len {
        let extra = found - header.len;
        return Err(ImageError::TrailingBytes {
            path: path.into(),
            extra,
        });
    }
    header.verify(path, &hasher_of(after))?;
    Ok(after)
}

/// The buffer a record file is first read into; larger ones grow it.
const READ_FIRST: usize = 16 << 10;

/// Reads and decodes the record file at `path`, never reading more than the size cap allows.
pub fn read<T: DeserializeOwned>(kind: Kind, path: &Path) -> Result<T, ImageError> {
    decode(kind, &read_capped(path)?, path)
}

/// Reads a record whose layout changed in format version `changed`: a file of an older
/// version is decoded as `Old` and converted.
pub fn read_since<T, Old>(kind: Kind, path: &Path, changed: u32) -> Result<T, ImageError>
where
    T: DeserializeOwned,
    Old: DeserializeOwned + Into<T>,
{
    let bytes = read_capped(path)?;
    if Header::parse(&bytes, kind, path)?.version < changed {
        return decode::<Old>(kind, &bytes, path).map(Into::into);
    }
    decode(kind, &bytes, path)
}

/// Reads the record file at `path` and decodes it with `decode_as(version, bytes)`: for a
/// record whose layout changed more than once, each older version decoded as its own type.
pub fn read_versioned<T>(
    kind: Kind,
    path: &Path,
    decode_as: impl FnOnce(u32, &[u8]) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let bytes = read_capped(path)?;
    let version = Header::parse(&bytes, kind, path)?.version;
    decode_as(version, &bytes)
}

/// The file at `path`, at most the header, the size cap and one byte more.
fn read_capped(path: &Path) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(ImageError::io("open", path))?;
    let cap = HEADER_LEN as u64 + MAX_RECORD_LEN + 1;
    // Most records fit: read in one go (and one more read to see the end).
    let mut bytes = Vec::with_capacity(READ_FIRST);
    file.take(cap)
        .read_to_end(&mut bytes)
        .map_err(ImageError::io("read", path))?;
    Ok(bytes)
}

/// The checksum the header promises against the one computed over the data.
/// The crc32 state after `bytes`.
fn hasher_of(bytes: &[u8]) -> crc32fast::Hasher {
    let mut crc = crate::sys::cpu::crc32();
    crc.update(bytes);
    crc
}

/// Rewrites the version word of the encoded file `bytes` and its crc to match, as a file
/// written by a build of that version would be: tests of older layouts use it.
#[cfg(test)]
pub(crate) fn set_version(bytes: &mut [u8], version: u32) {
    bytes[12..16].copy_from_slice(&version.to_le_bytes());
    let mut h = Header::fields(bytes[..HEADER_LEN].try_into().expect("a whole header"));
    // A pages file's data starts on the next page, after the padding.
    let data = if h.kind == Kind::Pages as u32 {
        4096
    } else {
        HEADER_LEN
    };
    h.crc = h.sum(&hasher_of(&bytes[data..]));
    bytes[..HEADER_LEN].copy_from_slice(&h.to_bytes());
}

pub(crate) fn check_crc(path: &Path, expected: u32, found: u32) -> Result<(), ImageError> {
    if expected == found {
        return Ok(());
    }
    Err(ImageError::Checksum {
        path: path.into(),
        expected,
        found,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::sample::{self, XorShift};

    fn path() -> &'static Path {
        Path::new("task-1.img")
    }

    fn encoded() -> Vec<u8> {
        encode(Kind::Task, &sample::task(1)).unwrap()
    }

    fn decode_task(bytes: &[u8]) -> Result<crate::image::task::TaskImage, ImageError> {
        decode(Kind::Task, bytes, path())
    }

    #[test]
    fn header_layout_is_little_endian_at_fixed_offsets() {
        let b = Header::new(Kind::Mm, 0x0102_0304_0506_0708, 0xAABB_CCDD).to_bytes();
        assert_eq!(&b[0..8], &MAGIC);
        assert_eq!(&b[8..12], &[3, 0, 0, 0]);
        assert_eq!(&b[12..16], &FORMAT_VERSION.to_le_bytes());
        assert_eq!(&b[16..24], &[8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(&b[24..28], &[0xDD, 0xCC, 0xBB, 0xAA]);
        assert_eq!(&b[28..32], &[0; 4]);
    }

    #[test]
    fn golden_bytes_of_a_small_record() {
        let run = crate::image::mm::PageRun {
            addr: 0x1000,
            pages: 3,
            stripe: 1,
        };
        let b = encode(Kind::Mm, &run).unwrap();
        assert_eq!(&b[HEADER_LEN..], &[0x80, 0x20, 0x03, 0x01]);
        assert_eq!(&b[16..24], &4u64.to_le_bytes());
        let mut covered = b[8..24].to_vec();
        covered.extend_from_slice(&[0x80, 0x20, 0x03, 0x01]);
        assert_eq!(&b[24..28], &crc32fast::hash(&covered).to_le_bytes());
    }

    #[test]
    fn rejects_bad_magic() {
        let mut b = encoded();
        b[1] ^= 0x20;
        assert!(matches!(decode_task(&b), Err(ImageError::BadMagic { .. })));
    }

    #[test]
    fn rejects_wrong_kind() {
        let b = encode(Kind::Files, &sample::files()).unwrap();
        let err = decode_task(&b).unwrap_err();
        assert!(matches!(
            err,
            ImageError::WrongKind {
                expected: 2,
                found: 4,
                ..
            }
        ));
        assert_eq!(
            err.to_string(),
            "task-1.img: holds a files record, expected a task record"
        );
    }

    #[test]
    fn rejects_newer_version() {
        let mut b = encoded();
        b[12..16].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let err = decode_task(&b).unwrap_err();
        assert!(matches!(
            err,
            ImageError::NewerVersion {
                found,
                supported: FORMAT_VERSION,
                ..
            } if found == FORMAT_VERSION + 1
        ));
    }

    #[test]
    fn rejects_version_zero() {
        let mut b = encoded();
        b[12..16].copy_from_slice(&0u32.to_le_bytes());
        assert!(matches!(
            decode_task(&b),
            Err(ImageError::OlderVersion { found: 0, .. })
        ));
    }

    /// Version 1 thread records have no comm or robust list, version 2 images no tree,
    /// Older versions (version 4 files records have no locks...): refused, not misread.
    #[test]
    fn rejects_versions_one_to_four() {
        for v in [1u32, 2, 3, 4] {
            let mut b = encoded();
            b[12..16].copy_from_slice(&v.to_le_bytes());
            assert!(matches!(
                decode_task(&b),
                Err(ImageError::OlderVersion { found, .. }) if found == v
            ));
        }
    }

    #[test]
    fn rejects_nonzero_reserved_word() {
        let mut b = encoded();
        b[31] = 1;
        assert!(matches!(decode_task(&b), Err(ImageError::Invalid { .. })));
    }

    #[test]
    fn rejects_truncated_header() {
        let b = encoded();
        let err = decode_task(&b[..HEADER_LEN - 1]).unwrap_err();
        assert!(matches!(
            err,
            ImageError::Truncated {
                expected: 32,
                found: 31,
                ..
            }
        ));
    }

    #[test]
    fn rejects_truncated_payload() {
        let b = encoded();
        let err = decode_task(&b[..b.len() - 1]).unwrap_err();
        let (e, f) = (b.len() as u64, b.len() as u64 - 1);
        assert!(
            matches!(err, ImageError::Truncated { expected, found, .. } if expected == e && found == f)
        );
    }

    #[test]
    fn rejects_trailing_bytes() {
        let mut b = encoded();
        b.push(0);
        assert!(matches!(
            decode_task(&b),
            Err(ImageError::TrailingBytes { extra: 1, .. })
        ));
    }

    #[test]
    fn rejects_checksum_mismatch() {
        let mut b = encoded();
        b[HEADER_LEN + 3] ^= 0x01;
        assert!(matches!(decode_task(&b), Err(ImageError::Checksum { .. })));
    }

    #[test]
    fn rejects_record_over_the_cap_without_reading_it() {
        let mut b = Header::new(Kind::Task, MAX_RECORD_LEN + 1, 0)
            .to_bytes()
            .to_vec();
        b.extend_from_slice(&[0; 16]);
        let err = decode_task(&b).unwrap_err();
        assert!(matches!(err, ImageError::TooLarge { len, .. } if len == MAX_RECORD_LEN + 1));
    }

    #[test]
    fn rejects_payload_that_is_not_the_record() {
        let payload = [0xFFu8; 4];
        let mut b = Header::sealed(Kind::Task, 4, &hasher_of(&payload))
            .to_bytes()
            .to_vec();
        b.extend_from_slice(&payload);
        assert!(matches!(decode_task(&b), Err(ImageError::Decode { .. })));
    }

    #[test]
    fn read_names_a_missing_file() {
        let err =
            read::<crate::image::task::TaskImage>(Kind::Task, Path::new("/nonexistent/x.img"));
        assert_eq!(err.unwrap_err().to_string(), "open /nonexistent/x.img");
    }

    fn roundtrip<T>(kind: Kind, value: &T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        let bytes = encode(kind, value).unwrap();
        assert_eq!(&decode::<T>(kind, &bytes, path()).unwrap(), value);
    }

    #[test]
    fn property_random_records_round_trip() {
        let mut rng = XorShift::new(0x5EED);
        for _ in 0..300 {
            roundtrip(Kind::Inventory, &sample::random_inventory(&mut rng));
            roundtrip(Kind::Task, &sample::random_task(&mut rng));
            roundtrip(Kind::Mm, &sample::random_mm(&mut rng));
            roundtrip(Kind::Files, &sample::random_files(&mut rng));
        }
    }

    #[test]
    fn property_any_corruption_or_truncation_is_an_error() {
        let mut rng = XorShift::new(0xBAD);
        for _ in 0..300 {
            let mut b = encode(Kind::Mm, &sample::random_mm(&mut rng)).unwrap();
            let cut = rng.below(b.len() as u64) as usize;
            assert!(decode::<crate::image::mm::MmImage>(Kind::Mm, &b[..cut], path()).is_err());
            // Anywhere, the version word included: the crc covers the header's kind,
            // version and length, so a flip naming an older version (10 → 8) is caught.
            let at = rng.below(b.len() as u64) as usize;
            b[at] ^= 1 << rng.below(8);
            assert!(decode::<crate::image::mm::MmImage>(Kind::Mm, &b, path()).is_err());
        }
    }
}
