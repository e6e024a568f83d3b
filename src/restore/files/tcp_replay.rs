//! The end of a TCP connection replayed on a socket rebuilt in repair mode: a closing
//! connection (FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK, CLOSING, or CLOSE for one that
//! ended) is rebuilt established, then taken to its state as it got there — our FIN by
//! `shutdown(SHUT_WR)` (in repair mode: queued without a packet, and marked sent when
//! the peer had acknowledged it), the peer's FIN and ACK by segments stasis writes to
//! the socket from a raw socket, as if the peer had sent them. The kernel has no other
//! way to put a FIN in a receive queue or to take an acknowledgement (CRIU's soccr does
//! the same).
//!
//! Ordering requirements (the kernel's): the queues are refilled first (`sendmsg` works
//! in ESTABLISHED and CLOSE_WAIT only); a FIN we sent before the peer's goes first, one
//! sent after it goes after; the peer's ACK of our FIN last. The answers of the socket
//! (its ACKs) and our FIN are dropped by the network lock, which the dump put on every
//! closing connection; the replayed segments carry [`crate::netlock::PASS_MARK`] to pass
//! it. Each step is checked: the socket must reach the state the segment leads to.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::socket::{sendto, MsgFlags, SockaddrIn, SockaddrIn6};

use crate::image::sock::{tcp_state, InetSocket, SockAddr, TcpRepair};
use crate::restore::RestoreError;
use crate::sys::socket::{getsockopt_bytes, setsockopt_int, socket};

const TH_FIN: u8 = 0x01;
const TH_ACK: u8 = 0x10;
const TCPI_OPT_WSCALE: u8 = 4;

/// A segment from the peer to the socket: sequence and acknowledgement numbers, flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

/// The steps after the queues of a connection saved in `state`: `our_fin(acked)` runs
/// `shutdown(SHUT_WR)` in the child; segments go from the peer to `sock` (stasis's copy
/// of the child's socket).
pub fn replay(
    sock: BorrowedFd<'_>,
    s: &InetSocket,
    r: &TcpRepair,
    state: u8,
    our_fin: &mut dyn FnMut(bool) -> Result<(), RestoreError>,
) -> Result<(), RestoreError> {
    let (Some(local), Some(remote)) = (&s.local, &s.remote) else {
        return Err(unsupported(
            "a TCP connection without both addresses".into(),
        ));
    };
    let acked = tcp_state::fin_acked(state);
    // Before the peer acknowledges our FIN, it has acknowledged what precedes the
    // unacknowledged data (the FIN is the last byte of the saved sequence).
    let fin = u32::from(tcp_state::fin_sent(state));
    let snd_una = r
        .send_seq
        .wrapping_sub(r.send_queue.len() as u32)
        .wrapping_sub(fin);
    let window = peer_window(r);
    if tcp_state::fin_sent_first(state) {
        our_fin(acked)?;
    }
    if tcp_state::fin_received(state) {
        let fin = Segment {
            seq: r.recv_seq.wrapping_sub(1),
            ack: snd_una,
            flags: TH_FIN | TH_ACK,
            window,
        };
        let expect = match state {
            tcp_state::CLOSING => tcp_state::CLOSING,
            _ => tcp_state::CLOSE_WAIT,
        };
        deliver(sock, remote, local, fin, expect)?;
    }
    if tcp_state::fin_sent(state) && !tcp_state::fin_sent_first(state) {
        our_fin(acked)?;
    }
    if acked {
        let ack = Segment {
            seq: r.recv_seq,
            ack: r.send_seq,
            flags: TH_ACK,
            window,
        };
        deliver(sock, remote, local, ack, state)?;
    }
    Ok(())
}

/// The window the peer advertises, in its segments' units (`snd_wnd` unscaled).
fn peer_window(r: &TcpRepair) -> u16 {
    let scale = if r.options & TCPI_OPT_WSCALE != 0 {
        u32::from(r.snd_wscale)
    } else {
        0
    };
    (r.window[1] >> scale).min(u32::from(u16::MAX)) as u16
}

/// Sends `seg` from `from` to `to` and waits until the socket is in state `expect`.
fn deliver(
    sock: BorrowedFd<'_>,
    from: &SockAddr,
    to: &SockAddr,
    seg: Segment,
    expect: u8,
) -> Result<(), RestoreError> {
    let state = || state_of(sock).map_err(|e| unsupported(format!("TCP_INFO: {e}")));
    let before = state()?;
    send(from, to, seg).map_err(|e| {
        unsupported(format!(
            "write the peer's segment ({}) to the socket from a raw socket: {e}",
            flags_text(seg.flags)
        ))
    })?;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let now = state()?;
        if now == expect {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(unsupported(not_taken(seg.flags, (before, now, expect))));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Why a replayed segment did not take the socket from `before` to `expect` (it is in
/// `now`): unchanged, the segment most likely never reached it — a rule of the
/// namespace's firewall (restored before the sockets) dropping packets to its port.
fn not_taken(flags: u8, (before, now, expect): (u8, u8, u8)) -> String {
    let flags = flags_text(flags);
    let (now_name, expect) = (tcp_state::name(now), tcp_state::name(expect));
    if before == now {
        format!(
            "the peer's segment ({flags}) replayed to the socket to take it to {expect} did not \
             reach it (still {now_name}): most likely a firewall rule of its network namespace drops \
             packets to it, and stasis cannot rebuild a closing connection whose replayed \
             segments are dropped"
        )
    } else {
        format!(
            "the peer's segment ({flags}) replayed to the socket left it in {now_name}, not {expect}"
        )
    }
}

/// The segment's flags as tcpdump names them ("FIN|ACK").
fn flags_text(flags: u8) -> String {
    let names: Vec<&str> = [(TH_FIN, "FIN"), (TH_ACK, "ACK")]
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    names.join("|")
}

fn unsupported(what: String) -> RestoreError {
    RestoreError::Unsupported { what }
}

/// `tcpi_state`.
pub fn state_of(sock: BorrowedFd<'_>) -> nix::Result<u8> {
    let mut info = [0u8; 8];
    getsockopt_bytes(sock, libc::SOL_TCP, libc::TCP_INFO, &mut info)?;
    Ok(info[0])
}

/// Writes the segment as an IPv4 or IPv6 packet (v4 for v4-mapped addresses) from a raw
/// socket marked [`crate::netlock::PASS_MARK`].
fn send(from: &SockAddr, to: &SockAddr, seg: Segment) -> nix::Result<()> {
    let raw = |family| -> nix::Result<OwnedFd> {
        let s = socket(
            family,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::IPPROTO_RAW,
        )?;
        let mark = crate::netlock::PASS_MARK as i32;
        setsockopt_int(s.as_fd(), libc::SOL_SOCKET, libc::SO_MARK, mark)?;
        Ok(s)
    };
    use std::os::fd::AsRawFd;
    match (v4(from), v4(to)) {
        (Some(src), Some(dst)) => {
            let s = raw(libc::AF_INET)?;
            let packet = ipv4_packet(src, dst, from.port, to.port, seg);
            let addr = SockaddrIn::from(std::net::SocketAddrV4::new(dst.into(), 0));
            sendto(s.as_raw_fd(), &packet, &addr, MsgFlags::empty()).map(drop)
        }
        _ => {
            let (src, dst) = (v6(from), v6(to));
            let s = raw(libc::AF_INET6)?;
            let packet = ipv6_packet(src, dst, from.port, to.port, seg);
            let sa = std::net::SocketAddrV6::new(dst.into(), 0, 0, to.scope_id);
            sendto(
                s.as_raw_fd(),
                &packet,
                &SockaddrIn6::from(sa),
                MsgFlags::empty(),
            )
            .map(drop)
        }
    }
}

/// The IPv4 address of `a` (4 bytes, or v4-mapped in 16).
fn v4(a: &SockAddr) -> Option<[u8; 4]> {
    match a.ip.len() {
        4 => a.ip.clone().try_into().ok(),
        16 if a.ip[..10] == [0; 10] && a.ip[10..12] == [0xff, 0xff] => a.ip[12..].try_into().ok(),
        _ => None,
    }
}

fn v6(a: &SockAddr) -> [u8; 16] {
    a.ip.clone().try_into().unwrap_or([0; 16])
}

/// A 20-byte TCP header without options, its checksum over `pseudo` (the pseudo-header).
fn tcp_header(sport: u16, dport: u16, seg: Segment, pseudo: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seg.seq.to_be_bytes());
    h.extend_from_slice(&seg.ack.to_be_bytes());
    h.push(5 << 4);
    h.push(seg.flags);
    h.extend_from_slice(&seg.window.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    let sum = checksum(&[pseudo, &h].concat());
    h[16..18].copy_from_slice(&sum.to_be_bytes());
    h
}

/// An IPv4 packet holding the segment.
pub fn ipv4_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, seg: Segment) -> Vec<u8> {
    let pseudo = [&src[..], &dst[..], &[0, libc::IPPROTO_TCP as u8, 0, 20]].concat();
    let tcp = tcp_header(sport, dport, seg, &pseudo);
    let mut ip = vec![
        0x45,
        0,
        0,
        40,
        0,
        0,
        0x40,
        0,
        64,
        libc::IPPROTO_TCP as u8,
        0,
        0,
    ];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// An IPv6 packet holding the segment.
pub fn ipv6_packet(src: [u8; 16], dst: [u8; 16], sport: u16, dport: u16, seg: Segment) -> Vec<u8> {
    let pseudo = [
        &src[..],
        &dst[..],
        &[0, 0, 0, 20, 0, 0, 0, libc::IPPROTO_TCP as u8],
    ]
    .concat();
    let tcp = tcp_header(sport, dport, seg, &pseudo);
    let mut ip = vec![0x60, 0, 0, 0, 0, 20, libc::IPPROTO_TCP as u8, 64];
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    ip.extend_from_slice(&tcp);
    ip
}

/// The internet checksum (RFC 1071) of `b`.
fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify_to_zero() {
        let seg = Segment {
            seq: 0x0102_0304,
            ack: 0xa0b0_c0d0,
            flags: TH_FIN | TH_ACK,
            window: 512,
        };
        let p = ipv4_packet([127, 0, 0, 1], [127, 0, 0, 2], 8880, 40000, seg);
        assert_eq!(p.len(), 40);
        assert_eq!(checksum(&p[..20]), 0);
        let pseudo = [&p[12..20], &[0, 6, 0, 20]].concat();
        assert_eq!(checksum(&[&pseudo[..], &p[20..]].concat()), 0);
        let mut one = [0u8; 16];
        one[15] = 1;
        let p6 = ipv6_packet(one, one, 1, 2, seg);
        assert_eq!(p6.len(), 60);
        let pseudo6 = [&p6[8..40], &[0, 0, 0, 20, 0, 0, 0, 6]].concat();
        assert_eq!(checksum(&[&pseudo6[..], &p6[40..]].concat()), 0);
    }

    #[test]
    fn a_segment_that_changed_nothing_names_the_firewall() {
        use tcp_state::{CLOSE_WAIT, ESTABLISHED};
        let dropped = not_taken(TH_FIN | TH_ACK, (ESTABLISHED, ESTABLISHED, CLOSE_WAIT));
        assert!(dropped.contains("(FIN|ACK)") && dropped.contains("still ESTABLISHED"));
        assert!(dropped.contains("firewall") && dropped.contains("CLOSE_WAIT"));
        let moved = not_taken(TH_ACK, (ESTABLISHED, CLOSE_WAIT, tcp_state::CLOSE));
        assert!(moved.contains("left it in CLOSE_WAIT, not CLOSE") && !moved.contains("firewall"));
    }

    #[test]
    fn mapped_addresses_go_as_v4() {
        let mut ip = vec![0u8; 10];
        ip.extend_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
        let a = SockAddr {
            ip,
            port: 1,
            scope_id: 0,
        };
        assert_eq!(v4(&a), Some([127, 0, 0, 1]));
    }
}
