/*
 * tcp_echo PORT [ADDR]: a TCP client of a peer outside the process (the test, on
 * loopback, or across a network namespace at ADDR; IPv6 when ADDR holds a colon).
 *
 * Before READY: fd 10 connected to ADDR:PORT (127.0.0.1 by default). Until go it echoes every byte the
 * peer sends (the peer checks the echoes: nothing lost, doubled or reordered across a
 * dump with --tcp-established and a restore). After go: fd 10 is still the same
 * connection (addresses unchanged), and it sends segments as large as before
 * (TCP_MAXSEG: the same, or as large as the owner's TCP_MAXSEG allows a restore, 32767
 * less the timestamp option, where the link's are larger — loopback; not the default
 * 524 of a connection whose segment size was worked out before its clamp was given).
 */
#include "victim.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

/* ADDR:PORT as a socket address: IPv6 when ADDR holds a colon ("::1", "::ffff:127.0.0.1"). */
static socklen_t peer_addr(struct sockaddr_storage *ss, const char *port, const char *addr)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strchr(addr, ':')) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(atoi(port));
		CHECK(inet_pton(AF_INET6, addr, &a6->sin6_addr) == 1, "bad address %s", addr);
		return sizeof(*a6);
	}
	a4->sin_family = AF_INET;
	a4->sin_port = htons(atoi(port));
	CHECK(inet_pton(AF_INET, addr, &a4->sin_addr) == 1, "bad address %s", addr);
	return sizeof(*a4);
}

int main(int argc, char **argv)
{
	struct sockaddr_storage a, name, peer, n2, p2;
	socklen_t alen, l = sizeof(name);
	char buf[4096];
	int fd, mss, mss_now, want;

	setvbuf(stdout, NULL, _IOLBF, 0);
	memset(&name, 0, sizeof(name));
	memset(&peer, 0, sizeof(peer));
	memset(&n2, 0, sizeof(n2));
	memset(&p2, 0, sizeof(p2));
	CHECK(argc > 1, "usage: tcp_echo PORT [ADDR]");
	alen = peer_addr(&a, argv[1], argc > 2 ? argv[2] : "127.0.0.1");
	victim_install_go();
	fd = socket(a.ss_family, SOCK_STREAM, 0);
	CHECK_SYS(fd);
	CHECK_SYS(dup2(fd, 10));
	close(fd);
	CHECK_SYS(connect(10, (struct sockaddr *)&a, alen));
	CHECK_SYS(getsockname(10, (struct sockaddr *)&name, &l));
	l = sizeof(peer);
	CHECK_SYS(getpeername(10, (struct sockaddr *)&peer, &l));
	l = sizeof(mss);
	CHECK_SYS(getsockopt(10, IPPROTO_TCP, TCP_MAXSEG, &mss, &l));
	victim_ready();
	while (!victim_go) {
		struct pollfd p = { 10, POLLIN, 0 };
		ssize_t n;

		if (poll(&p, 1, 100) <= 0)
			continue;
		n = read(10, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0, "read from the peer: %s", n ? strerror(errno) : "EOF");
		for (ssize_t off = 0; off < n;) {
			ssize_t w = write(10, buf + off, n - off);

			if (w < 0 && errno == EINTR)
				continue;
			CHECK(w > 0, "write to the peer: %s", strerror(errno));
			off += w;
		}
	}
	l = sizeof(n2);
	CHECK_SYS(getsockname(10, (struct sockaddr *)&n2, &l));
	l = sizeof(p2);
	CHECK_SYS(getpeername(10, (struct sockaddr *)&p2, &l));
	CHECK(!memcmp(&n2, &name, sizeof(name)) && !memcmp(&p2, &peer, sizeof(peer)), "fd 10: addresses changed");
	l = sizeof(mss_now);
	CHECK_SYS(getsockopt(10, IPPROTO_TCP, TCP_MAXSEG, &mss_now, &l));
	want = mss < 32767 - 12 ? mss : 32767 - 12;
	CHECK(mss_now >= want, "fd 10 sends segments of %d bytes, %d before", mss_now, mss);
	victim_pass();
}
