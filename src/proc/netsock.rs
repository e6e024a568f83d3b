//! `/proc/PID/net/{udp,udp6,udplite,udplite6,icmp,icmp6,raw,raw6}`: the datagram and raw
//! sockets of the process's network namespace, one line each — addresses in hex as the
//! kernel keeps them, the socket state, the inode. Used for the peer of a connected
//! socket that `getpeername` does not report (a raw or ping socket connected to port 0).

/// One socket's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetSock {
    /// `sk_state`: 1 (`TCP_ESTABLISHED`) once connected, 7 (`TCP_CLOSE`) otherwise.
    pub state: u8,
    /// Remote address (4 or 16 bytes, network order) and port.
    pub remote: (Vec<u8>, u16),
}

/// The table file of sockets of `family` (`AF_INET`/`AF_INET6`), `ty` and `protocol`.
pub fn table_name(family: i32, ty: i32, protocol: i32) -> Option<&'static str> {
    let v6 = family == libc::AF_INET6;
    let name = match (ty, protocol) {
        (libc::SOCK_RAW, _) => ["raw", "raw6"],
        (_, libc::IPPROTO_UDP) => ["udp", "udp6"],
        (_, libc::IPPROTO_UDPLITE) => ["udplite", "udplite6"],
        (_, libc::IPPROTO_ICMP | libc::IPPROTO_ICMPV6) => ["icmp", "icmp6"],
        _ => return None,
    };
    Some(name[usize::from(v6)])
}

/// The line of socket inode `ino` in the text of such a table.
pub fn find(text: &str, ino: u64) -> Option<NetSock> {
    text.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(9)?.parse::<u64>().ok()? != ino {
            return None;
        }
        let (addr, port) = f.get(2)?.split_once(':')?;
        Some(NetSock {
            state: u8::from_str_radix(f.get(3)?, 16).ok()?,
            remote: (address(addr)?, u16::from_str_radix(port, 16).ok()?),
        })
    })
}

/// `%08X` groups of the address's 32-bit words, each printed as a native integer.
fn address(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 8 && hex.len() != 32 {
        return None;
    }
    let mut out = Vec::with_capacity(hex.len() / 2);
    for i in (0..hex.len()).step_by(8) {
        let word = u32::from_str_radix(hex.get(i..i + 8)?, 16).ok()?;
        out.extend_from_slice(&word.to_ne_bytes());
    }
    Some(out)
}

/// A multicast group joined on an interface: its index and the group address (4 or 16
/// bytes, network order).
pub type Group = (u32, Vec<u8>);

/// The groups of `/proc/net/igmp`: an interface line (`1\tlo : ...`) then one line per
/// group, indented by tabs, the address a `%08X` native word.
pub fn igmp_groups(text: &str) -> Vec<Group> {
    let mut out = Vec::new();
    let mut ifindex = None;
    for line in text.lines().skip(1) {
        let first = line.split_whitespace().next().unwrap_or_default();
        if !line.starts_with('\t') {
            ifindex = first.parse().ok();
        } else if let (Some(i), Some(a)) = (ifindex, address(first)) {
            out.push((i, a));
        }
    }
    out
}

/// The groups of `/proc/net/igmp6`: index, device, address as 32 hex digits, ...
pub fn igmp6_groups(text: &str) -> Vec<Group> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = f.get(2)?;
            let bytes = (0..16)
                .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
                .collect::<Option<Vec<u8>>>()?;
            Some((f.first()?.parse().ok()?, bytes))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const RAW: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  49: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 313868 2 00000000389a9a3a 0
   1: 0100007F:0001 0A00007F:0000 01 00000000:00000000 00:00000000 00000000     0        0 313870 2 00000000389a9a3b 0
";
    const RAW6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
   58: 00000000000000000000000001000000:003A 00000000000000000000000001000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 0
";

    #[test]
    fn finds_a_connected_raw_socket_by_inode() {
        let s = find(RAW, 313870).unwrap();
        assert_eq!(s.state, 1);
        assert_eq!(s.remote, (vec![127, 0, 0, 10], 0));
        assert_eq!(find(RAW, 313868).unwrap().state, 7);
        assert_eq!(find(RAW, 1), None);
    }

    #[test]
    fn reads_v6_addresses_word_by_word() {
        let s = find(RAW6, 4242).unwrap();
        let mut lo = vec![0u8; 16];
        lo[15] = 1;
        assert_eq!(s.remote, (lo, 0));
    }

    #[test]
    fn lists_the_groups_of_each_interface() {
        let igmp = "Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter
1\tlo        :     1      V3
\t\t\t\t010000E0     1 0:00000000\t\t0
4\teth0      :     2      V3
\t\t\t\t050000EF     1 0:00000000\t\t0
\t\t\t\t010000E0     1 0:00000000\t\t0
";
        let g = igmp_groups(igmp);
        assert_eq!(g[0], (1, vec![224, 0, 0, 1]));
        assert_eq!(g[1], (4, vec![239, 0, 0, 5]));
        assert_eq!(g.len(), 3);
        let igmp6 = "1    lo              ff020000000000000000000000000001     1 0000000C 0\n";
        let g = igmp6_groups(igmp6);
        let mut all_nodes = vec![0u8; 16];
        all_nodes[0] = 0xff;
        all_nodes[1] = 2;
        all_nodes[15] = 1;
        assert_eq!(g, vec![(1, all_nodes)]);
    }

    #[test]
    fn names_the_table_of_each_kind() {
        assert_eq!(table_name(libc::AF_INET6, libc::SOCK_RAW, 17), Some("raw6"));
        assert_eq!(table_name(libc::AF_INET, libc::SOCK_DGRAM, 1), Some("icmp"));
        assert_eq!(table_name(libc::AF_INET, libc::SOCK_STREAM, 6), None);
    }
}
