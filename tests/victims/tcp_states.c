/*
 * tcp_states: TCP connections in every state a process can hold them in, and half-closed
 * UDP sockets; both ends of each connection live in this process (dump with
 * --tcp-established). Modes:
 *
 * "closing": a listener (fd 10) and three connections to it
 *   fds 11/12  11 shut down its send side: FIN_WAIT2 / CLOSE_WAIT; 12 wrote "w2-data",
 *              unread
 *   fds 13/14  13 filled the connection (nonblocking writes until EAGAIN, 14 not reading:
 *              full receive queue on 14, full send queue with data never sent on 13), then
 *              shut down its send side: its FIN waits behind the data, FIN_WAIT1; 14 wrote
 *              "fw1", unread
 *   fds 15/16  ended both ways (both shut down their send side): CLOSE / CLOSE (the
 *              kernel keeps 15's end as a TIME_WAIT entry); 16 wrote "bye", unread by 15
 *   After go: the same states; 11 reads "w2-data", 12 reads end of file, then 12 sends
 *   "late" and shuts down, 11 reads "late" and end of file; 14 reads the whole pattern
 *   then end of file, 13 reads "fw1"; 15 reads "bye" then end of file, 15 and 16 cannot
 *   send (EPIPE).
 * "reset": fds 11/12, 12 wrote "unread" then closed with SO_LINGER 0: 11 was reset
 *   (CLOSE, the data still queued). After go: 11 is in CLOSE, reads "unread", then no
 *   more data (the reset's error or end of file), and cannot send.
 * "ended": the same as "reset", dumped without --tcp-established: a connection that
 *   ended is saved without it (nothing of it is left on the wire), as CRIU does.
 * "full": fds 11/12 each wrote until EAGAIN without the other reading: both queues full
 *   in both directions, with data never sent. After go: each reads the other's whole
 *   pattern, then a last message crosses each way.
 * "udp": fds 11/12 UDP on 127.0.0.1 connected to each other; 11 shut down its send side,
 *   12 its receive side. After go: 11 cannot send (EPIPE), 12 still sends to 11.
 * "gone" (after a restore only: tests/sockets.rs): in a network namespace of its own
 *   (unshared here, lo up), fd 11 holds an established connection with "asd" unread
 *   whose peer vanished without a packet (closed in repair mode): 11 does not know yet,
 *   and learns it from the reset the peer's port answers its next segment with. The
 *   restore's window probe is such a segment (the socket leaves repair mode). After go:
 *   11 was reset (CLOSE), reads "asd", then ECONNRESET or end of file, and cannot send.
 *   Run standalone it stays established (nothing is sent), so its verification fails.
 * "lastack" (zdtm's socket-tcp-closed-last-ack): in a network namespace of its own,
 *   fds 11/12: 11 (client) shut down its send side, then a firewall rule of the
 *   namespace (iptables, INPUT) drops what goes to the listener's port, and 12 (server)
 *   shut down its own: 12 is LAST_ACK (11's acknowledgement dropped), 11 closed. After
 *   go: 12 is still LAST_ACK; the rule is deleted; 12 reads end of file (or the reset
 *   11's gone end answers its next FIN with), 11 reads end of file and cannot send.
 */
#include "victim.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <time.h>

static long filled[32];

static int tcp_state(int fd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	CHECK_SYS(getsockopt(fd, SOL_TCP, TCP_INFO, &ti, &l));
	return ti.tcpi_state;
}

/* Waits (up to 2 s) for fd to reach `state`. */
static void settle(int fd, int state)
{
	for (int i = 0; i < 2000 && tcp_state(fd) != state; i++)
		usleep(1000);
	CHECK(tcp_state(fd) == state, "fd %d: state %d, want %d", fd, tcp_state(fd), state);
}

static char pattern(int fd, long i)
{
	return (char)(fd * 31 + i * 7 + i / 4099);
}

static void nonblock(int fd, int on)
{
	int fl = fcntl(fd, F_GETFL);

	CHECK_SYS(fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK));
}

/* Writes fd's pattern until the connection takes no more. */
static void fill(int fd)
{
	char buf[4096];

	nonblock(fd, 1);
	for (;;) {
		for (int i = 0; i < (int)sizeof(buf); i++)
			buf[i] = pattern(fd, filled[fd] + i);
		ssize_t n = write(fd, buf, sizeof(buf));
		if (n < 0 && errno == EAGAIN) {
			usleep(20000); /* let the last segments land, then try once more */
			n = write(fd, buf, sizeof(buf));
			if (n < 0 && errno == EAGAIN)
				break;
		}
		CHECK_SYS(n);
		filled[fd] += n;
	}
	nonblock(fd, 0);
}

/* Reads `from`'s whole pattern from fd. */
static void drain(int fd, int from)
{
	char buf[65536];
	long got = 0;

	while (got < filled[from]) {
		long want = filled[from] - got;
		ssize_t n = read(fd, buf, want < (long)sizeof(buf) ? want : (long)sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0, "fd %d: read after %ld of %ld bytes: %zd %s", fd, got, filled[from], n, strerror(errno));
		for (ssize_t i = 0; i < n; i++)
			CHECK(buf[i] == pattern(from, got + i), "fd %d: byte %ld differs", fd, got + i);
		got += n;
	}
}

static void expect_read(int fd, const char *want)
{
	char buf[64];
	size_t len = strlen(want), got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0, "fd %d: read %zd (%s), want \"%s\"", fd, n, strerror(errno), want);
		got += n;
	}
	CHECK(!memcmp(buf, want, len), "fd %d: got \"%.*s\", want \"%s\"", fd, (int)len, buf, want);
}

static void expect_eof(int fd)
{
	char c;
	ssize_t n;

	while ((n = read(fd, &c, 1)) < 0 && errno == EINTR)
		;
	CHECK(n == 0, "fd %d: read %zd (%s), want end of file", fd, n, strerror(errno));
}

static void expect_epipe(int fd)
{
	ssize_t n = send(fd, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);

	CHECK(n == -1 && errno == EPIPE, "fd %d: send %zd (%s), want EPIPE", fd, n, strerror(errno));
}

static void put(int fd, const char *s)
{
	CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s), "fd %d: write: %s", fd, strerror(errno));
}

static void pair(int client, int server)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);

	CHECK_SYS(getsockname(10, (struct sockaddr *)&a, &l));
	victim_place(socket(AF_INET, SOCK_STREAM, 0), client);
	CHECK_SYS(connect(client, (struct sockaddr *)&a, sizeof(a)));
	victim_place(accept(10, NULL, NULL), server);
}

static void listener(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };

	victim_place(socket(AF_INET, SOCK_STREAM, 0), 10);
	CHECK_SYS(bind(10, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(listen(10, 8));
}

static void setup_closing(void)
{
	listener();
	pair(11, 12);
	put(12, "w2-data");
	CHECK_SYS(shutdown(11, SHUT_WR));
	settle(11, TCP_FIN_WAIT2);
	settle(12, TCP_CLOSE_WAIT);

	pair(13, 14);
	put(14, "fw1");
	fill(13);
	CHECK_SYS(shutdown(13, SHUT_WR));
	settle(13, TCP_FIN_WAIT1);

	pair(15, 16);
	put(16, "bye");
	CHECK_SYS(shutdown(15, SHUT_WR));
	settle(16, TCP_CLOSE_WAIT);
	CHECK_SYS(shutdown(16, SHUT_WR));
	settle(16, TCP_CLOSE);
	settle(15, TCP_CLOSE);
}

static void verify_closing(void)
{
	CHECK(tcp_state(11) == TCP_FIN_WAIT2, "fd 11: state %d, want FIN_WAIT2", tcp_state(11));
	CHECK(tcp_state(12) == TCP_CLOSE_WAIT, "fd 12: state %d, want CLOSE_WAIT", tcp_state(12));
	CHECK(tcp_state(13) == TCP_FIN_WAIT1, "fd 13: state %d, want FIN_WAIT1", tcp_state(13));
	CHECK(tcp_state(15) == TCP_CLOSE && tcp_state(16) == TCP_CLOSE, "fds 15/16: states %d/%d, want CLOSE",
	      tcp_state(15), tcp_state(16));
	expect_read(11, "w2-data");
	expect_eof(12);
	put(12, "late");
	CHECK_SYS(shutdown(12, SHUT_WR));
	expect_read(11, "late");
	expect_eof(11);
	drain(14, 13);
	expect_eof(14);
	expect_read(13, "fw1");
	settle(13, TCP_FIN_WAIT2);
	expect_read(15, "bye");
	expect_eof(15);
	expect_eof(16);
	expect_epipe(15);
	expect_epipe(16);
}

static void setup_reset(void)
{
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	listener();
	pair(11, 12);
	put(12, "unread");
	usleep(20000);
	CHECK_SYS(setsockopt(12, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)));
	close(12);
	settle(11, TCP_CLOSE);
}

static void verify_reset(void)
{
	char c;
	ssize_t n;

	CHECK(tcp_state(11) == TCP_CLOSE, "fd 11: state %d, want CLOSE", tcp_state(11));
	expect_read(11, "unread");
	n = read(11, &c, 1);
	CHECK(n == 0 || (n == -1 && errno == ECONNRESET), "fd 11: read %zd (%s) after the data", n, strerror(errno));
	n = send(11, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	CHECK(n == -1 && (errno == EPIPE || errno == ECONNRESET), "fd 11: send %zd (%s)", n, strerror(errno));
	CHECK(read(11, &c, 1) == 0, "fd 11: read after the reset: %s", strerror(errno));
}

static void verify_gone(void)
{
	char c;
	ssize_t n;

	settle(11, TCP_CLOSE);
	expect_read(11, "asd");
	n = read(11, &c, 1);
	CHECK(n == 0 || (n == -1 && errno == ECONNRESET), "fd 11: read %zd (%s) after the data", n, strerror(errno));
	n = send(11, "x", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	CHECK(n == -1 && (errno == EPIPE || errno == ECONNRESET), "fd 11: send %zd (%s)", n, strerror(errno));
}

/* Moves this process into a network namespace of its own, its loopback up. */
static void own_netns(void)
{
	if (unshare(CLONE_NEWNET))
		victim_skip("unshare(CLONE_NEWNET) is not permitted here");
	if (system("ip link set lo up"))
		victim_skip("needs ip (iproute2) to bring lo up");
}

static void setup_gone(void)
{
	int on = 1;

	own_netns();
	listener();
	pair(11, 12);
	put(12, "asd");
	usleep(20000);
	CHECK_SYS(setsockopt(12, SOL_TCP, TCP_REPAIR, &on, sizeof(on)));
	close(12);
	CHECK(tcp_state(11) == TCP_ESTABLISHED, "fd 11: state %d, want ESTABLISHED", tcp_state(11));
}

static char drop_rule[128];

static void setup_lastack(void)
{
	struct sockaddr_in a;
	socklen_t l = sizeof(a);
	char cmd[192];

	own_netns();
	listener();
	pair(11, 12);
	CHECK_SYS(getsockname(10, (struct sockaddr *)&a, &l));
	CHECK_SYS(shutdown(11, SHUT_WR));
	settle(12, TCP_CLOSE_WAIT);
	snprintf(drop_rule, sizeof(drop_rule), "INPUT -p tcp --dport %d -j DROP", ntohs(a.sin_port));
	snprintf(cmd, sizeof(cmd), "iptables -w -A %s", drop_rule);
	if (system(cmd))
		victim_skip("needs iptables to drop the acknowledgement");
	CHECK_SYS(shutdown(12, SHUT_WR));
	settle(12, TCP_LAST_ACK);
	CHECK(tcp_state(12) == TCP_LAST_ACK, "fd 12: state %d, want LAST_ACK", tcp_state(12));
}

static void verify_lastack(void)
{
	char cmd[192], c;

	CHECK(tcp_state(12) == TCP_LAST_ACK, "fd 12: state %d, want LAST_ACK", tcp_state(12));
	snprintf(cmd, sizeof(cmd), "iptables -w -D %s", drop_rule);
	CHECK(system(cmd) == 0, "delete the rule %s", drop_rule);
	/* 11's end is gone: 12's next FIN may meet a reset before this read. */
	ssize_t n = read(12, &c, 1);
	CHECK(n == 0 || (n == -1 && errno == ECONNRESET), "fd 12: read %zd (%s), want end of file", n, strerror(errno));
	CHECK(read(11, &c, 1) == 0, "fd 11: no end of file");
	expect_epipe(11);
}

static void setup_full(void)
{
	listener();
	pair(11, 12);
	fill(11);
	fill(12);
	fill(11);
	CHECK(filled[11] > 65536 && filled[12] > 65536, "filled only %ld/%ld bytes", filled[11], filled[12]);
}

static void verify_full(void)
{
	drain(12, 11);
	drain(11, 12);
	put(11, "end11");
	put(12, "end12");
	expect_read(12, "end11");
	expect_read(11, "end12");
}

static void setup_udp(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in n11, n12;
	socklen_t l = sizeof(n11);

	victim_place(socket(AF_INET, SOCK_DGRAM, 0), 11);
	victim_place(socket(AF_INET, SOCK_DGRAM, 0), 12);
	CHECK_SYS(bind(11, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(bind(12, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(getsockname(11, (struct sockaddr *)&n11, &l));
	l = sizeof(n12);
	CHECK_SYS(getsockname(12, (struct sockaddr *)&n12, &l));
	CHECK_SYS(connect(11, (struct sockaddr *)&n12, sizeof(n12)));
	CHECK_SYS(connect(12, (struct sockaddr *)&n11, sizeof(n11)));
	CHECK_SYS(shutdown(11, SHUT_WR));
	CHECK_SYS(shutdown(12, SHUT_RD));
}

static void verify_udp(void)
{
	struct pollfd p = { .fd = 12, .events = POLLRDHUP };

	expect_epipe(11);
	CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLRDHUP), "fd 12: no POLLRDHUP (revents %#x)", p.revents);
	put(12, "dgram");
	expect_read(11, "dgram");
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*setup)(void), (*verify)(void);
	} modes[] = {
		{ "closing", setup_closing, verify_closing },
		{ "reset", setup_reset, verify_reset },
		{ "ended", setup_reset, verify_reset },
		{ "full", setup_full, verify_full },
		{ "udp", setup_udp, verify_udp },
		{ "gone", setup_gone, verify_gone },
		{ "lastack", setup_lastack, verify_lastack },
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	for (size_t i = 0; argc > 1 && i < sizeof(modes) / sizeof(modes[0]); i++)
		if (!strcmp(argv[1], modes[i].name))
			return victim_run(modes[i].setup, modes[i].verify);
	victim_fail("usage: tcp_states closing|reset|full|udp|gone|lastack");
}
