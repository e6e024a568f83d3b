/*
 * inet_sockets: TCP and UDP sockets, v4 and v6.
 *
 * Before READY:
 *   fd 10  TCP listener on 127.0.0.1 (ephemeral port), SO_REUSEADDR, backlog 5
 *   fd 11  TCP listener on [::1], IPV6_V6ONLY, SO_REUSEADDR, SO_KEEPALIVE, backlog 3
 *   fd 12  UDP bound to 127.0.0.1 (ephemeral port), O_NONBLOCK
 *   fd 13  UDP connected to fd 12, SO_BROADCAST
 * With "established" (dump with --tcp-established) or "close" (dump with --tcp-close):
 *   fd 14  TCP client connected to fd 10, TCP_NODELAY, O_NONBLOCK; it wrote as much as the
 *          connection took (a pattern) without fd 15 reading: bytes sit in fd 15's receive
 *          queue and in fd 14's send queue, some of them never sent
 *   fd 15  the accepted end; it wrote "hello" to fd 14, unread
 * After go: addresses, ports, options and flags as before; the listeners accept new
 * connections; UDP datagrams go from fd 13 to fd 12. "established": fd 15 reads the whole
 * pattern, fd 14 reads "hello", and more data crosses both ways. "close": both ends of
 * the connection are closed sockets, as CRIU leaves them (end of file, POLLHUP, EPIPE).
 */
#include "victim.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

static int mode; /* 0 plain, 1 established, 2 close */
static long sent;
static struct sockaddr_storage name[16], peer[16];

static void place(int fd, int at)
{
	CHECK_SYS(fd);
	if (fd != at) {
		CHECK_SYS(dup2(fd, at));
		close(fd);
	}
}

static void setopt(int fd, int level, int opt, int v)
{
	CHECK_SYS(setsockopt(fd, level, opt, &v, sizeof(v)));
}

static int getopt_int(int fd, int level, int opt)
{
	int v;
	socklen_t l = sizeof(v);

	CHECK_SYS(getsockopt(fd, level, opt, &v, &l));
	return v;
}

static void remember(int fd)
{
	socklen_t l = sizeof(name[fd]);

	CHECK_SYS(getsockname(fd, (struct sockaddr *)&name[fd], &l));
	l = sizeof(peer[fd]);
	if (getpeername(fd, (struct sockaddr *)&peer[fd], &l))
		memset(&peer[fd], 0, sizeof(peer[fd]));
}

static char pattern(long i)
{
	return (char)(i * 7 + i / 4099);
}

static void setup_listeners(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in6 a6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };

	place(socket(AF_INET, SOCK_STREAM, 0), 10);
	setopt(10, SOL_SOCKET, SO_REUSEADDR, 1);
	CHECK_SYS(bind(10, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(listen(10, 5));

	place(socket(AF_INET6, SOCK_STREAM, 0), 11);
	setopt(11, IPPROTO_IPV6, IPV6_V6ONLY, 1);
	setopt(11, SOL_SOCKET, SO_REUSEADDR, 1);
	setopt(11, SOL_SOCKET, SO_KEEPALIVE, 1);
	if (bind(11, (struct sockaddr *)&a6, sizeof(a6)))
		victim_skip("no IPv6 loopback");
	CHECK_SYS(listen(11, 3));

	place(socket(AF_INET, SOCK_DGRAM, 0), 12);
	CHECK_SYS(bind(12, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(fcntl(12, F_SETFL, O_NONBLOCK));
	remember(12);
	place(socket(AF_INET, SOCK_DGRAM, 0), 13);
	setopt(13, SOL_SOCKET, SO_BROADCAST, 1);
	CHECK_SYS(connect(13, (struct sockaddr *)&name[12], sizeof(struct sockaddr_in)));
	for (int fd = 10; fd <= 13; fd++)
		remember(fd);
}

static void setup_connection(void)
{
	static char buf[65536];
	ssize_t n;

	place(socket(AF_INET, SOCK_STREAM, 0), 14);
	CHECK_SYS(connect(14, (struct sockaddr *)&name[10], sizeof(struct sockaddr_in)));
	place(accept(10, NULL, NULL), 15);
	setopt(14, IPPROTO_TCP, TCP_NODELAY, 1);
	CHECK_SYS(fcntl(14, F_SETFL, O_NONBLOCK));
	CHECK(write(15, "hello", 5) == 5, "write hello");
	/* fill fd 15's receive queue and fd 14's send queue */
	for (int idle = 0; idle < 20;) {
		for (int i = 0; i < (int)sizeof(buf); i++)
			buf[i] = pattern(sent + i);
		n = write(14, buf, sizeof(buf));
		if (n > 0) {
			sent += n;
			idle = 0;
			continue;
		}
		CHECK(errno == EAGAIN, "write to fd 14: %s", strerror(errno));
		idle++;
		usleep(5000);
	}
	CHECK(sent > 100000, "only %ld bytes in flight", sent);
	remember(14);
	remember(15);
	printf("%ld bytes in flight\n", sent);
}

/* --- verification ------------------------------------------------------------------ */

static void expect_addr(int fd)
{
	struct sockaddr_storage n, p;
	socklen_t l = sizeof(n);

	CHECK_SYS(getsockname(fd, (struct sockaddr *)&n, &l));
	CHECK(!memcmp(&n, &name[fd], l), "fd %d: bound elsewhere", fd);
	l = sizeof(p);
	if (getpeername(fd, (struct sockaddr *)&p, &l))
		memset(&p, 0, sizeof(p));
	CHECK(!memcmp(&p, &peer[fd], sizeof(p)), "fd %d: another peer", fd);
}

static void expect_accepts(int fd, int family)
{
	struct pollfd pfd = { fd, POLLIN, 0 };
	int c = socket(family, SOCK_STREAM, 0), a;

	CHECK_SYS(c);
	CHECK(getopt_int(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1, "fd %d is not listening", fd);
	CHECK_SYS(connect(c, (struct sockaddr *)&name[fd],
			  family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)));
	CHECK(poll(&pfd, 1, 5000) == 1, "fd %d: no connection to accept", fd);
	a = accept(fd, NULL, NULL);
	CHECK(a >= 0, "fd %d: accept: %s", fd, strerror(errno));
	CHECK(write(c, "x", 1) == 1 && read(a, &c, 1) == 1, "fd %d: accepted connection mute", fd);
	close(a);
}

static void verify_listeners(void)
{
	char buf[16];
	struct pollfd pfd = { 12, POLLIN, 0 };

	for (int fd = 10; fd <= 13; fd++)
		expect_addr(fd);
	CHECK(getopt_int(10, SOL_SOCKET, SO_REUSEADDR) == 1, "fd 10: SO_REUSEADDR lost");
	CHECK(getopt_int(11, SOL_SOCKET, SO_REUSEADDR) == 1, "fd 11: SO_REUSEADDR lost");
	CHECK(getopt_int(11, SOL_SOCKET, SO_KEEPALIVE) == 1, "fd 11: SO_KEEPALIVE lost");
	CHECK(getopt_int(11, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "fd 11: IPV6_V6ONLY lost");
	CHECK(getopt_int(13, SOL_SOCKET, SO_BROADCAST) == 1, "fd 13: SO_BROADCAST lost");
	CHECK(getopt_int(12, SOL_SOCKET, SO_TYPE) == SOCK_DGRAM, "fd 12: not a datagram socket");
	CHECK(fcntl(12, F_GETFL) & O_NONBLOCK, "fd 12: O_NONBLOCK lost");
	expect_accepts(10, AF_INET);
	expect_accepts(11, AF_INET6);
	CHECK(send(13, "udp!", 4, 0) == 4, "fd 13: send: %s", strerror(errno));
	CHECK(poll(&pfd, 1, 5000) == 1 && recv(12, buf, sizeof(buf), 0) == 4 && !memcmp(buf, "udp!", 4),
	      "fd 12: datagram from fd 13 lost");
}

/* Reads len bytes from a blocking-or-not fd, waiting with poll. */
static void read_exact(int fd, char *buf, long len)
{
	long got = 0;

	while (got < len) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t n;

		CHECK(poll(&pfd, 1, 10000) == 1, "fd %d: stalled after %ld of %ld bytes", fd, got, len);
		n = read(fd, buf + got, len - got);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		CHECK(n > 0, "fd %d: read after %ld of %ld bytes: %s", fd, got, len, n ? strerror(errno) : "EOF");
		got += n;
	}
}

static void verify_connection(void)
{
	static char buf[1 << 16];
	long off = 0;

	expect_addr(14);
	expect_addr(15);
	CHECK(getopt_int(14, IPPROTO_TCP, TCP_NODELAY) == 1, "fd 14: TCP_NODELAY lost");
	CHECK(fcntl(14, F_GETFL) & O_NONBLOCK, "fd 14: O_NONBLOCK lost");
	read_exact(14, buf, 5);
	CHECK(!memcmp(buf, "hello", 5), "fd 14: got %.5s, want hello", buf);
	while (off < sent) {
		long n = sent - off < (long)sizeof(buf) ? sent - off : (long)sizeof(buf);

		read_exact(15, buf, n);
		for (long i = 0; i < n; i++)
			CHECK(buf[i] == pattern(off + i), "fd 15: byte %ld differs", off + i);
		off += n;
	}
	CHECK(write(15, "more", 4) == 4, "fd 15: write: %s", strerror(errno));
	read_exact(14, buf, 4);
	CHECK(!memcmp(buf, "more", 4), "fd 14: got %.4s, want more", buf);
	CHECK(write(14, "again", 5) == 5, "fd 14: write: %s", strerror(errno));
	read_exact(15, buf, 5);
	CHECK(!memcmp(buf, "again", 5), "fd 15: got %.5s, want again", buf);
}

/* Standalone the connection is intact; after a --tcp-close restore both ends are what
 * CRIU leaves: closed sockets (CLOSE, end of file, POLLHUP, EPIPE). */
static void verify_closed(void)
{
	char c;
	ssize_t n = recv(15, &c, 1, MSG_DONTWAIT);

	if (n > 0)
		return; /* standalone: nothing was restored, data is there */
	for (int fd = 14; fd <= 15; fd++) {
		struct tcp_info ti;
		socklen_t l = sizeof(ti);
		struct pollfd p = { .fd = fd, .events = POLLHUP };

		CHECK_SYS(getsockopt(fd, SOL_TCP, TCP_INFO, &ti, &l));
		CHECK(ti.tcpi_state == TCP_CLOSE, "fd %d: state %d, want CLOSE", fd, ti.tcpi_state);
		n = recv(fd, &c, 1, MSG_DONTWAIT);
		CHECK(n == 0, "fd %d: recv %zd (%s), want end of file", fd, n, strerror(errno));
		CHECK(poll(&p, 1, 0) == 1 && p.revents == POLLHUP, "fd %d: poll revents %#x", fd, p.revents);
		n = send(fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		CHECK(n == -1 && errno == EPIPE, "fd %d: send %zd (%s), want EPIPE", fd, n, strerror(errno));
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc > 1)
		mode = !strcmp(argv[1], "established") ? 1 : !strcmp(argv[1], "close") ? 2 : 0;
	victim_install_go();
	setup_listeners();
	if (mode)
		setup_connection();
	victim_ready();
	victim_wait_go();
	verify_listeners();
	if (mode == 1)
		verify_connection();
	else if (mode == 2)
		verify_closed();
	victim_pass();
}
