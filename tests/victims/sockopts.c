/*
 * sockopts: a non-default value of every socket option stasis saves, on each socket kind.
 *
 * Before READY, each socket gets its options (an option the kernel refuses here, e.g. one
 * newer than the running kernel, is left alone), then every readable option of every
 * socket is read — value bytes or errno — into a snapshot:
 *   fd 10  TCP/IPv4, bound (SO_BINDTODEVICE lo, IP_FREEBIND off again after binding a
 *          non-local address), socket-level, IP-level and TCP options, a classic BPF
 *          filter, locked
 *   fd 11  TCP/IPv6 listener on [::1], IPV6_V6ONLY, TCP_FASTOPEN, TCP_DEFER_ACCEPT...
 *   fd 12  TCP/IPv6 unbound, v4-mapped capable: IPv4-level options on an IPv6 socket
 *   fd 13  UDP/IPv4 bound and connected: UDP, receive-ancillary and multicast options
 *   fd 14  UDP/IPv6: IPv6-level options
 *   fd 15  UDP-Lite/IPv4: checksum coverage
 *   fd 16  ICMP echo ("ping") IPv4, when the gid may create one (else SKIPped alone)
 *   fd 17  raw IPv4 ICMP: ICMP_FILTER, IP_HDRINCL, IP_NODEFRAG
 *   fd 18  raw IPv6 ICMPv6: ICMPV6_FILTER
 *   fd 19  raw IPv6 UDP: IPV6_CHECKSUM
 *   fd 20  unix stream: buffers set (locked), SO_PASSCRED, SO_PEEK_OFF, a filter
 *   fd 21  unix datagram: SO_BUF_LOCK on default sizes, timestamps
 *   fd 22  TCP/IPv4 with only SO_RCVBUF_LOCK set through SO_BUF_LOCK
 *   fd 23  raw IPv4 (protocol 253) connected to 127.0.0.10 port 0, which getpeername
 *          does not report
 *   fd 24, 25  TCP/IPv4 listeners sharing one port through SO_REUSEPORT, turned off on
 *          fd 24 since
 * Multicast memberships on lo: fd 13 joins 239.1.2.3 and 232.1.1.1 from source
 * 127.0.0.5 only, fd 14 joins ff02::1:3.
 * After go: the same snapshot, byte for byte, option by option, and the same
 * memberships (MCAST_MSFILTER of each group); fd 23 still sends without an address.
 */
#include "victim.h"

#include <arpa/inet.h>
#include <linux/filter.h>
#include <linux/net_tstamp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>

/* linux/icmp.h clashes with the libc headers. */
#define ICMP_FILTER 1
#define ICMP_TIMESTAMP 13
struct icmp_filter {
	unsigned int data;
};
#define ICMPV6_FILTER ICMP6_FILTER
#define IFNAMSIZ 16
#define LOOPBACK_IFINDEX 1

#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72
#endif
#ifndef SO_TXREHASH
#define SO_TXREHASH 74
#endif
#ifndef SO_RCVMARK
#define SO_RCVMARK 75
#endif
#ifndef SO_PASSPIDFD
#define SO_PASSPIDFD 76
#endif
#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78
#endif
#ifndef IP_LOCAL_PORT_RANGE
#define IP_LOCAL_PORT_RANGE 51
#endif
#ifndef IP_RECVERR_RFC4884
#define IP_RECVERR_RFC4884 26
#endif
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif
#ifndef UDP_NO_CHECK6_TX
#define UDP_NO_CHECK6_TX 101
#define UDP_NO_CHECK6_RX 102
#endif
#ifndef TCP_INQ
#define TCP_INQ 36
#endif
#ifndef TCP_TX_DELAY
#define TCP_TX_DELAY 37
#endif
#ifndef SOL_UDPLITE
#define SOL_UDPLITE 136
#endif
#ifndef IPPROTO_UDPLITE
#define IPPROTO_UDPLITE 136
#endif
#define UDPLITE_SEND_CSCOV 10
#define UDPLITE_RECV_CSCOV 11

#define FIRST 10
#define LAST 25

/* Every option read into the snapshot, on every socket. */
static const struct {
	int level, name, len;
} readable[] = {
	{ SOL_SOCKET, SO_REUSEADDR, 4 }, { SOL_SOCKET, SO_REUSEPORT, 4 },
	{ SOL_SOCKET, SO_ACCEPTCONN, 4 },
	{ SOL_SOCKET, SO_BINDTODEVICE, IFNAMSIZ }, { SOL_SOCKET, SO_RCVLOWAT, 4 },
	{ SOL_SOCKET, SO_RCVBUF, 4 }, { SOL_SOCKET, SO_SNDBUF, 4 },
	{ SOL_SOCKET, SO_BUF_LOCK, 4 }, { SOL_SOCKET, SO_DEBUG, 4 },
	{ SOL_SOCKET, SO_DONTROUTE, 4 }, { SOL_SOCKET, SO_BROADCAST, 4 },
	{ SOL_SOCKET, SO_KEEPALIVE, 4 }, { SOL_SOCKET, SO_OOBINLINE, 4 },
	{ SOL_SOCKET, SO_NO_CHECK, 4 }, { SOL_SOCKET, SO_PRIORITY, 4 },
	{ SOL_SOCKET, SO_LINGER, 8 }, { SOL_SOCKET, SO_PASSCRED, 4 },
	{ SOL_SOCKET, SO_PASSSEC, 4 }, { SOL_SOCKET, SO_PASSPIDFD, 4 },
	{ SOL_SOCKET, SO_RCVTIMEO, 16 }, { SOL_SOCKET, SO_SNDTIMEO, 16 },
	{ SOL_SOCKET, SO_TIMESTAMPING, 8 }, { SOL_SOCKET, SO_TIMESTAMPING_NEW, 8 },
	{ SOL_SOCKET, SO_TIMESTAMP, 4 },
	{ SOL_SOCKET, SO_TIMESTAMPNS, 4 }, { SOL_SOCKET, SO_MARK, 4 },
	{ SOL_SOCKET, SO_RXQ_OVFL, 4 }, { SOL_SOCKET, SO_SELECT_ERR_QUEUE, 4 },
	{ SOL_SOCKET, SO_BUSY_POLL, 4 }, { SOL_SOCKET, SO_MAX_PACING_RATE, 8 },
	{ SOL_SOCKET, SO_ZEROCOPY, 4 }, { SOL_SOCKET, SO_TXTIME, 8 },
	{ SOL_SOCKET, SO_TXREHASH, 4 }, { SOL_SOCKET, SO_RCVMARK, 4 },
	{ SOL_SOCKET, SO_PEEK_OFF, 4 }, { SOL_SOCKET, SO_LOCK_FILTER, 4 },
	{ SOL_SOCKET, SO_GET_FILTER, 256 },
	{ SOL_IP, IP_TOS, 4 }, { SOL_IP, IP_TTL, 4 }, { SOL_IP, IP_HDRINCL, 4 },
	{ SOL_IP, IP_OPTIONS, 40 }, { SOL_IP, IP_RECVOPTS, 4 }, { SOL_IP, IP_PKTINFO, 4 },
	{ SOL_IP, IP_MTU_DISCOVER, 4 }, { SOL_IP, IP_RECVERR, 4 },
	{ SOL_IP, IP_RECVERR_RFC4884, 4 }, { SOL_IP, IP_RECVTTL, 4 },
	{ SOL_IP, IP_RECVTOS, 4 }, { SOL_IP, IP_FREEBIND, 4 }, { SOL_IP, IP_TRANSPARENT, 4 },
	{ SOL_IP, IP_RECVORIGDSTADDR, 4 }, { SOL_IP, IP_MINTTL, 4 },
	{ SOL_IP, IP_NODEFRAG, 4 }, { SOL_IP, IP_CHECKSUM, 4 },
	{ SOL_IP, IP_BIND_ADDRESS_NO_PORT, 4 }, { SOL_IP, IP_LOCAL_PORT_RANGE, 4 },
	{ SOL_IP, IP_MULTICAST_IF, 4 }, { SOL_IP, IP_MULTICAST_TTL, 4 },
	{ SOL_IP, IP_MULTICAST_LOOP, 4 }, { SOL_IP, IP_MULTICAST_ALL, 4 },
	{ SOL_IP, IP_UNICAST_IF, 4 },
	{ SOL_IPV6, IPV6_V6ONLY, 4 }, { SOL_IPV6, IPV6_FREEBIND, 4 },
	{ SOL_IPV6, IPV6_TRANSPARENT, 4 }, { SOL_IPV6, IPV6_RECVPKTINFO, 4 },
	{ SOL_IPV6, IPV6_RECVHOPLIMIT, 4 }, { SOL_IPV6, IPV6_RECVTCLASS, 4 },
	{ SOL_IPV6, IPV6_RECVRTHDR, 4 }, { SOL_IPV6, IPV6_RECVERR, 4 },
	{ SOL_IPV6, IPV6_TCLASS, 4 }, { SOL_IPV6, IPV6_UNICAST_HOPS, 4 },
	{ SOL_IPV6, IPV6_MULTICAST_IF, 4 }, { SOL_IPV6, IPV6_MULTICAST_HOPS, 4 },
	{ SOL_IPV6, IPV6_MULTICAST_LOOP, 4 }, { SOL_IPV6, IPV6_MTU_DISCOVER, 4 },
	{ SOL_IPV6, IPV6_DONTFRAG, 4 }, { SOL_IPV6, IPV6_RECVPATHMTU, 4 },
	{ SOL_RAW, ICMP_FILTER, 4 }, { SOL_RAW, IPV6_CHECKSUM, 4 },
	{ SOL_ICMPV6, ICMPV6_FILTER, 32 },
	{ SOL_TCP, TCP_NODELAY, 4 }, { SOL_TCP, TCP_CORK, 4 }, { SOL_TCP, TCP_MAXSEG, 4 },
	{ SOL_TCP, TCP_KEEPIDLE, 4 }, { SOL_TCP, TCP_KEEPINTVL, 4 },
	{ SOL_TCP, TCP_KEEPCNT, 4 }, { SOL_TCP, TCP_SYNCNT, 4 }, { SOL_TCP, TCP_LINGER2, 4 },
	{ SOL_TCP, TCP_DEFER_ACCEPT, 4 }, { SOL_TCP, TCP_WINDOW_CLAMP, 4 },
	{ SOL_TCP, TCP_QUICKACK, 4 }, { SOL_TCP, TCP_CONGESTION, 16 },
	{ SOL_TCP, TCP_USER_TIMEOUT, 4 }, { SOL_TCP, TCP_FASTOPEN, 4 },
	{ SOL_TCP, TCP_FASTOPEN_CONNECT, 4 }, { SOL_TCP, TCP_NOTSENT_LOWAT, 4 },
	{ SOL_TCP, TCP_SAVE_SYN, 4 }, { SOL_TCP, TCP_INQ, 4 }, { SOL_TCP, TCP_TX_DELAY, 4 },
	{ SOL_TCP, TCP_THIN_LINEAR_TIMEOUTS, 4 },
	{ SOL_UDP, UDP_CORK, 4 }, { SOL_UDP, UDP_SEGMENT, 4 }, { SOL_UDP, UDP_GRO, 4 },
	{ SOL_UDP, UDP_NO_CHECK6_TX, 4 }, { SOL_UDP, UDP_NO_CHECK6_RX, 4 },
	{ SOL_UDPLITE, UDPLITE_SEND_CSCOV, 4 }, { SOL_UDPLITE, UDPLITE_RECV_CSCOV, 4 },
};
#define NREAD (sizeof(readable) / sizeof(readable[0]))

struct value {
	int err;
	socklen_t len;
	unsigned char bytes[256];
};
static struct value snap[LAST + 1][NREAD];
static int present[LAST + 1];

static void read_all(struct value out[NREAD], int fd)
{
	for (unsigned i = 0; i < NREAD; i++) {
		struct value *v = &out[i];

		memset(v, 0, sizeof(*v));
		v->len = readable[i].len;
		if (readable[i].name == SO_GET_FILTER && readable[i].level == SOL_SOCKET)
			v->len = 256 / sizeof(struct sock_filter); /* counted in instructions */
		if (getsockopt(fd, readable[i].level, readable[i].name, v->bytes, &v->len))
			v->err = errno;
	}
}

/* Set an option if the kernel takes it here: what is set is what the snapshot saw. */
static void opt(int fd, int level, int name, const void *val, socklen_t len)
{
	(void)setsockopt(fd, level, name, val, len);
}

static void opti(int fd, int level, int name, int v)
{
	opt(fd, level, name, &v, sizeof(v));
}

static void must(int fd, int level, int name, int v)
{
	CHECK_SYS(setsockopt(fd, level, name, &v, sizeof(v)));
}

static void common(int fd)
{
	struct linger l = { 1, 30 };
	struct timeval rcv = { 3, 500000 }, snd = { 4, 0 };

	must(fd, SOL_SOCKET, SO_PRIORITY, 5);
	must(fd, SOL_SOCKET, SO_RCVLOWAT, 100);
	must(fd, SOL_SOCKET, SO_MARK, 42);
	must(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	must(fd, SOL_SOCKET, SO_OOBINLINE, 1);
	must(fd, SOL_SOCKET, SO_DONTROUTE, 1);
	CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)));
	CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcv, sizeof(rcv)));
	CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &snd, sizeof(snd)));
	opti(fd, SOL_SOCKET, SO_BUSY_POLL, 10);
	opti(fd, SOL_SOCKET, SO_RXQ_OVFL, 1);
	opti(fd, SOL_SOCKET, SO_SELECT_ERR_QUEUE, 1);
	opti(fd, SOL_SOCKET, SO_RCVMARK, 1);
}

static void filter(int fd)
{
	struct sock_filter f[4] = {
		{ BPF_LD | BPF_W | BPF_LEN, 0, 0, 0 },
		{ BPF_JMP | BPF_JGE | BPF_K, 0, 1, 1 },
		{ BPF_RET | BPF_K, 0, 0, 0xffff },
		{ BPF_RET | BPF_K, 0, 0, 0 },
	};
	struct sock_fprog p = { 4, f };

	CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &p, sizeof(p)));
}

static void tcp_options(int fd)
{
	must(fd, SOL_TCP, TCP_NODELAY, 1);
	must(fd, SOL_TCP, TCP_CORK, 1);
	must(fd, SOL_TCP, TCP_KEEPIDLE, 77);
	must(fd, SOL_TCP, TCP_KEEPINTVL, 11);
	must(fd, SOL_TCP, TCP_KEEPCNT, 4);
	must(fd, SOL_TCP, TCP_USER_TIMEOUT, 12345);
	must(fd, SOL_TCP, TCP_NOTSENT_LOWAT, 4096);
	must(fd, SOL_TCP, TCP_MAXSEG, 1000);
	must(fd, SOL_TCP, TCP_QUICKACK, 0);
	must(fd, SOL_TCP, TCP_SYNCNT, 3);
	must(fd, SOL_TCP, TCP_LINGER2, 20);
	must(fd, SOL_TCP, TCP_WINDOW_CLAMP, 40000);
	opt(fd, SOL_TCP, TCP_CONGESTION, "reno", 4);
	opti(fd, SOL_TCP, TCP_THIN_LINEAR_TIMEOUTS, 1);
	opti(fd, SOL_TCP, TCP_FASTOPEN_CONNECT, 1);
	opti(fd, SOL_TCP, TCP_INQ, 1);
	opti(fd, SOL_TCP, TCP_TX_DELAY, 100);
	opti(fd, SOL_TCP, TCP_SAVE_SYN, 1);
}

static void setup_tcp4(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = inet_addr("192.0.2.7") };
	int fd = FIRST;

	victim_place(socket(AF_INET, SOCK_STREAM, 0), fd);
	common(fd);
	tcp_options(fd);
	must(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	must(fd, SOL_SOCKET, SO_REUSEPORT, 1);
	CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3));
	must(fd, SOL_SOCKET, SO_RCVBUF, 65536);
	must(fd, SOL_IP, IP_TOS, 0x10);
	must(fd, SOL_SOCKET, SO_PRIORITY, 4); /* after IP_TOS, which sets it too */
	must(fd, SOL_IP, IP_TTL, 33);
	must(fd, SOL_IP, IP_RECVERR, 1);
	must(fd, SOL_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DONT);
	must(fd, SOL_IP, IP_MINTTL, 5);
	must(fd, SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1);
	must(fd, SOL_IP, IP_FREEBIND, 1);
	CHECK_SYS(bind(fd, (struct sockaddr *)&a, sizeof(a)));
	must(fd, SOL_IP, IP_FREEBIND, 0);
	opti(fd, SOL_SOCKET, SO_ZEROCOPY, 1);
	opti(fd, SOL_SOCKET, SO_TXREHASH, 0);
	filter(fd);
	must(fd, SOL_SOCKET, SO_LOCK_FILTER, 1);
}

static void setup_tcp6(void)
{
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	victim_place(socket(AF_INET6, SOCK_STREAM, 0), 11);
	must(11, SOL_IPV6, IPV6_V6ONLY, 1);
	must(11, SOL_IPV6, IPV6_TCLASS, 0x20);
	must(11, SOL_IPV6, IPV6_UNICAST_HOPS, 20);
	must(11, SOL_IPV6, IPV6_RECVERR, 1);
	must(11, SOL_TCP, TCP_DEFER_ACCEPT, 5);
	opti(11, SOL_TCP, TCP_FASTOPEN, 5);
	must(11, SOL_SOCKET, SO_SNDBUF, 50000);
	if (bind(11, (struct sockaddr *)&a6, sizeof(a6)))
		victim_skip("no IPv6 loopback");
	CHECK_SYS(listen(11, 4));

	victim_place(socket(AF_INET6, SOCK_STREAM, 0), 12);
	must(12, SOL_IP, IP_TOS, 0x08);
	must(12, SOL_IP, IP_TTL, 44);
	must(12, SOL_IPV6, IPV6_FREEBIND, 1);
	tcp_options(12);
}

static void udp_common(int fd)
{
	struct sock_txtime t = { CLOCK_MONOTONIC, 0 };
	int ts = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;

	common(fd);
	must(fd, SOL_SOCKET, SO_BROADCAST, 1);
	must(fd, SOL_SOCKET, SO_NO_CHECK, 1);
	must(fd, SOL_SOCKET, SO_PEEK_OFF, 0);
	CHECK_SYS(setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPING, &ts, sizeof(ts)));
	opt(fd, SOL_SOCKET, SO_TXTIME, &t, sizeof(t));
	must(fd, SOL_UDP, UDP_CORK, 1);
	opti(fd, SOL_UDP, UDP_SEGMENT, 1000);
	opti(fd, SOL_UDP, UDP_GRO, 1);
}

static void setup_udp(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	unsigned char ipopts[4] = { IPOPT_NOP, IPOPT_NOP, IPOPT_NOP, IPOPT_END };
	struct in_addr lo = { htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);

	victim_place(socket(AF_INET, SOCK_DGRAM, 0), 13);
	udp_common(13);
	must(13, SOL_IP, IP_PKTINFO, 1);
	must(13, SOL_IP, IP_RECVTTL, 1);
	must(13, SOL_IP, IP_RECVTOS, 1);
	must(13, SOL_IP, IP_RECVOPTS, 1);
	must(13, SOL_IP, IP_RECVORIGDSTADDR, 1);
	must(13, SOL_IP, IP_CHECKSUM, 1);
	must(13, SOL_IP, IP_MULTICAST_TTL, 7);
	must(13, SOL_IP, IP_MULTICAST_LOOP, 0);
	must(13, SOL_IP, IP_MULTICAST_ALL, 0);
	CHECK_SYS(setsockopt(13, SOL_IP, IP_MULTICAST_IF, &lo, sizeof(lo)));
	CHECK_SYS(setsockopt(13, SOL_IP, IP_OPTIONS, ipopts, sizeof(ipopts)));
	opti(13, SOL_IP, IP_RECVERR_RFC4884, 1);
	opti(13, SOL_IP, IP_LOCAL_PORT_RANGE, 40000 | 50000 << 16);
	CHECK_SYS(bind(13, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(getsockname(13, (struct sockaddr *)&a, &l));
	CHECK_SYS(connect(13, (struct sockaddr *)&a, sizeof(a)));

	victim_place(socket(AF_INET6, SOCK_DGRAM, 0), 14);
	udp_common(14);
	{
		int ts = SOF_TIMESTAMPING_RX_SOFTWARE | SOF_TIMESTAMPING_SOFTWARE;

		opt(14, SOL_SOCKET, SO_TIMESTAMPING_NEW, &ts, sizeof(ts));
	}
	must(14, SOL_IPV6, IPV6_V6ONLY, 1);
	must(14, SOL_IPV6, IPV6_RECVPKTINFO, 1);
	must(14, SOL_IPV6, IPV6_RECVHOPLIMIT, 1);
	must(14, SOL_IPV6, IPV6_RECVTCLASS, 1);
	must(14, SOL_IPV6, IPV6_RECVRTHDR, 1);
	must(14, SOL_IPV6, IPV6_MULTICAST_HOPS, 5);
	must(14, SOL_IPV6, IPV6_MULTICAST_LOOP, 0);
	must(14, SOL_IPV6, IPV6_MULTICAST_IF, LOOPBACK_IFINDEX);
	must(14, SOL_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DONT);
	must(14, SOL_IPV6, IPV6_DONTFRAG, 1);
	must(14, SOL_IPV6, IPV6_RECVPATHMTU, 1);
	opti(14, SOL_UDP, UDP_NO_CHECK6_TX, 1);
	opti(14, SOL_UDP, UDP_NO_CHECK6_RX, 1);

	victim_place(socket(AF_INET, SOCK_DGRAM, IPPROTO_UDPLITE), 15);
	must(15, SOL_UDPLITE, UDPLITE_SEND_CSCOV, 20);
	must(15, SOL_UDPLITE, UDPLITE_RECV_CSCOV, 30);
}

static void setup_icmp(void)
{
	struct icmp_filter f = { 1 << ICMP_TIMESTAMP };
	struct icmp6_filter f6;
	int fd = socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);

	if (fd >= 0) {
		victim_place(fd, 16);
		must(16, SOL_IP, IP_TTL, 9);
		must(16, SOL_IP, IP_RECVERR, 1);
	}
	victim_place(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP), 17);
	CHECK_SYS(setsockopt(17, SOL_RAW, ICMP_FILTER, &f, sizeof(f)));
	must(17, SOL_IP, IP_HDRINCL, 1);
	opti(17, SOL_IP, IP_NODEFRAG, 1);
	must(17, SOL_SOCKET, SO_PRIORITY, 3);

	victim_place(socket(AF_INET6, SOCK_RAW, IPPROTO_ICMPV6), 18);
	memset(&f6, 0, sizeof(f6));
	f6.icmp6_filt[0] = 1u << 13;
	CHECK_SYS(setsockopt(18, SOL_ICMPV6, ICMPV6_FILTER, &f6, sizeof(f6)));

	victim_place(socket(AF_INET6, SOCK_RAW, IPPROTO_UDP), 19);
	must(19, SOL_RAW, IPV6_CHECKSUM, 6);
}

static void setup_unix(void)
{
	int sv[2];

	CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
	victim_place(sv[0], 20);
	close(sv[1]);
	common(20);
	must(20, SOL_SOCKET, SO_RCVBUF, 10000);
	must(20, SOL_SOCKET, SO_SNDBUF, 20000);
	must(20, SOL_SOCKET, SO_PASSCRED, 1);
	must(20, SOL_SOCKET, SO_PASSSEC, 1);
	must(20, SOL_SOCKET, SO_PEEK_OFF, 3);
	opti(20, SOL_SOCKET, SO_PASSPIDFD, 1);
	filter(20);

	victim_place(socket(AF_UNIX, SOCK_DGRAM, 0), 21);
	must(21, SOL_SOCKET, SO_BUF_LOCK, 1);
	must(21, SOL_SOCKET, SO_TIMESTAMPNS, 1);

	victim_place(socket(AF_INET, SOCK_STREAM, 0), 22);
	must(22, SOL_SOCKET, SO_BUF_LOCK, 2);
}

static void setup_shared_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);

	for (int fd = 24; fd <= 25; fd++) {
		victim_place(socket(AF_INET, SOCK_STREAM, 0), fd);
		must(fd, SOL_SOCKET, SO_REUSEPORT, 1);
		CHECK_SYS(bind(fd, (struct sockaddr *)&a, sizeof(a)));
		CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &l));
		CHECK_SYS(listen(fd, 2));
	}
	must(24, SOL_SOCKET, SO_REUSEPORT, 0);
}

static void setup_raw_connected(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = inet_addr("127.0.0.10") };

	victim_place(socket(AF_INET, SOCK_RAW, 253), 23);
	CHECK_SYS(connect(23, (struct sockaddr *)&a, sizeof(a)));
	CHECK(send(23, "x", 1, MSG_DONTWAIT) == 1, "send on connected raw socket: %s", strerror(errno));
}

/* The memberships checked: socket, level, group. */
static const struct {
	int fd, level;
	const char *group;
} groups[] = {
	{ 13, SOL_IP, "239.1.2.3" }, { 13, SOL_IP, "232.1.1.1" }, { 14, SOL_IPV6, "ff02::1:3" },
};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))
static struct value group_snap[NGROUPS];

static void put_addr(struct sockaddr_storage *ss, int level, const char *text)
{
	memset(ss, 0, sizeof(*ss));
	if (level == SOL_IP) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		CHECK(inet_pton(AF_INET, text, &in->sin_addr) == 1, "address %s", text);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

		in6->sin6_family = AF_INET6;
		CHECK(inet_pton(AF_INET6, text, &in6->sin6_addr) == 1, "address %s", text);
	}
}

static void membership(struct value *v, int i)
{
	union {
		struct group_filter gf;
		unsigned char bytes[256];
	} u;
	socklen_t len = sizeof(u);

	memset(&u, 0, sizeof(u));
	u.gf.gf_interface = LOOPBACK_IFINDEX;
	u.gf.gf_numsrc = 0;
	put_addr(&u.gf.gf_group, groups[i].level, groups[i].group);
	memset(v, 0, sizeof(*v));
	u.gf.gf_numsrc = 1;
	if (getsockopt(groups[i].fd, groups[i].level, MCAST_MSFILTER, &u, &len))
		v->err = errno;
	v->len = len;
	memcpy(v->bytes, u.bytes, sizeof(v->bytes));
}

static void setup_memberships(void)
{
	struct ip_mreqn m = { .imr_ifindex = LOOPBACK_IFINDEX };
	struct group_source_req gsr = { .gsr_interface = LOOPBACK_IFINDEX };
	struct ipv6_mreq m6 = { .ipv6mr_interface = LOOPBACK_IFINDEX };

	inet_pton(AF_INET, "239.1.2.3", &m.imr_multiaddr);
	CHECK_SYS(setsockopt(13, SOL_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m)));
	put_addr(&gsr.gsr_group, SOL_IP, "232.1.1.1");
	put_addr(&gsr.gsr_source, SOL_IP, "127.0.0.5");
	CHECK_SYS(setsockopt(13, SOL_IP, MCAST_JOIN_SOURCE_GROUP, &gsr, sizeof(gsr)));
	inet_pton(AF_INET6, "ff02::1:3", &m6.ipv6mr_multiaddr);
	CHECK_SYS(setsockopt(14, SOL_IPV6, IPV6_ADD_MEMBERSHIP, &m6, sizeof(m6)));
	for (unsigned i = 0; i < NGROUPS; i++) {
		membership(&group_snap[i], i);
		CHECK(group_snap[i].err == 0, "membership %s: %s", groups[i].group, strerror(group_snap[i].err));
	}
}

static void compare_memberships(void)
{
	for (unsigned i = 0; i < NGROUPS; i++) {
		struct value now;

		membership(&now, i);
		CHECK(now.err == group_snap[i].err && now.len == group_snap[i].len &&
		      !memcmp(now.bytes, group_snap[i].bytes, sizeof(now.bytes)),
		      "membership of fd %d in %s: errno %d, %u bytes after (errno %d, %u bytes before)",
		      groups[i].fd, groups[i].group, now.err, now.len, group_snap[i].err, group_snap[i].len);
	}
}

static void compare(int fd)
{
	struct value now[NREAD];

	read_all(now, fd);
	for (unsigned i = 0; i < NREAD; i++) {
		struct value *a = &snap[fd][i], *b = &now[i];

		if (a->err != b->err || a->len != b->len || memcmp(a->bytes, b->bytes, sizeof(a->bytes)))
			victim_fail("fd %d option (%d, %d): errno %d, %u bytes %02x%02x%02x%02x before; errno %d, %u bytes %02x%02x%02x%02x after",
				    fd, readable[i].level, readable[i].name, a->err, a->len, a->bytes[0],
				    a->bytes[1], a->bytes[2], a->bytes[3], b->err, b->len, b->bytes[0],
				    b->bytes[1], b->bytes[2], b->bytes[3]);
	}
}

int main(void)
{
	victim_install_go();
	setup_tcp4();
	setup_tcp6();
	setup_udp();
	setup_icmp();
	setup_unix();
	setup_raw_connected();
	setup_shared_port();
	setup_memberships();
	for (int fd = FIRST; fd <= LAST; fd++) {
		present[fd] = fcntl(fd, F_GETFD) >= 0;
		if (present[fd])
			read_all(snap[fd], fd);
	}
	victim_ready();
	victim_wait_go();
	for (int fd = FIRST; fd <= LAST; fd++) {
		CHECK(present[fd] == (fcntl(fd, F_GETFD) >= 0), "fd %d appeared or vanished", fd);
		if (present[fd])
			compare(fd);
	}
	compare_memberships();
	CHECK(send(23, "x", 1, MSG_DONTWAIT) == 1, "fd 23 is no longer connected: %s", strerror(errno));
	victim_pass();
}
