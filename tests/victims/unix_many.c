/*
 * unix_many: enough unix sockets (more than 64) that the dump reads their options in two
 * threads, each socket with options of its own, plus a connection still in a listener's
 * queue among them.
 *
 * Before READY: 120 pairs, stream, datagram and seqpacket in turn; socket i gets
 * SO_PRIORITY i % 7, SO_PASSCRED on odd i, SO_KEEPALIVE on every third, SO_SNDBUF and
 * SO_RCVBUF sizes of its own, SO_RCVTIMEO i ms and SO_RCVLOWAT 1 + i % 4 on stream ones;
 * every fifth pair holds a message each way. Then a listener with one connection from
 * the process not accepted yet. Every option is read into a snapshot (bytes or errno).
 * After go: the same snapshot, socket by socket and option by option; the messages, each
 * on its own socket; the pending connection is accepted and carries a byte both ways.
 */
#include "victim.h"

#include <stddef.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#define PAIRS 120
#define SOCKS (2 * PAIRS)
#define FIRST_FD 10

static const int opts[] = {
	SO_PRIORITY, SO_PASSCRED, SO_KEEPALIVE, SO_SNDBUF, SO_RCVBUF, SO_RCVTIMEO, SO_RCVLOWAT,
	SO_SNDTIMEO, SO_LINGER, SO_TIMESTAMP,
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

struct value {
	int err;
	socklen_t len;
	unsigned char bytes[32];
};

static struct value snapshot[SOCKS][NOPTS];
static int listener_fd, client_fd;

static void read_all(struct value out[SOCKS][NOPTS])
{
	for (int s = 0; s < SOCKS; s++) {
		for (unsigned o = 0; o < NOPTS; o++) {
			struct value *v = &out[s][o];
			memset(v, 0, sizeof(*v));
			v->len = sizeof(v->bytes);
			if (getsockopt(FIRST_FD + s, SOL_SOCKET, opts[o], v->bytes, &v->len) != 0)
				v->err = errno;
		}
	}
}

static void set_int(int fd, int opt, int value)
{
	if (setsockopt(fd, SOL_SOCKET, opt, &value, sizeof(value)) != 0)
		victim_fail("setsockopt(fd %d, %d, %d): %s", fd, opt, value, strerror(errno));
}

static void give_options(int fd, int i, int type)
{
	set_int(fd, SO_PRIORITY, i % 7);
	if (i % 2)
		set_int(fd, SO_PASSCRED, 1);
	if (i % 3 == 0)
		set_int(fd, SO_KEEPALIVE, 1);
	set_int(fd, SO_SNDBUF, 8192 + 1024 * (i % 9));
	set_int(fd, SO_RCVBUF, 16384 + 2048 * (i % 5));
	struct timeval tv = { .tv_sec = 0, .tv_usec = 1000 * i };
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0)
		victim_fail("SO_RCVTIMEO on fd %d: %s", fd, strerror(errno));
	if (type == SOCK_STREAM)
		set_int(fd, SO_RCVLOWAT, 1 + i % 4);
}

static void message(int from, int i)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "message %d", i);
	if (send(from, buf, (size_t)n, 0) != n)
		victim_fail("send on fd %d: %s", from, strerror(errno));
}

static void setup(void)
{
	static const int types[] = { SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET };
	for (int p = 0; p < PAIRS; p++) {
		int type = types[p % 3], sv[2];
		if (socketpair(AF_UNIX, type, 0, sv) != 0)
			victim_fail("socketpair %d: %s", p, strerror(errno));
		for (int k = 0; k < 2; k++) {
			int fd = FIRST_FD + 2 * p + k;
			victim_place(sv[k], fd);
			give_options(fd, 2 * p + k, type);
		}
		if (p % 5 == 0) {
			message(FIRST_FD + 2 * p, 2 * p);
			message(FIRST_FD + 2 * p + 1, 2 * p + 1);
		}
	}
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "unix_many-%d", getpid());
	socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 +
				    strlen(addr.sun_path + 1));
	listener_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	client_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (listener_fd < 0 || client_fd < 0 || bind(listener_fd, (void *)&addr, len) != 0 ||
	    listen(listener_fd, 4) != 0 || connect(client_fd, (void *)&addr, len) != 0)
		victim_fail("listener and pending connection: %s", strerror(errno));
	read_all(snapshot);
}

static void check_message(int at, int i)
{
	char want[32], got[32];
	int n = snprintf(want, sizeof(want), "message %d", i);
	ssize_t r = recv(at, got, sizeof(got), MSG_DONTWAIT);
	if (r != n || memcmp(got, want, (size_t)n) != 0)
		victim_fail("fd %d: received %zd bytes, not \"%s\"", at, r, want);
}

static void verify(void)
{
	static struct value now[SOCKS][NOPTS];
	read_all(now);
	for (int s = 0; s < SOCKS; s++) {
		for (unsigned o = 0; o < NOPTS; o++) {
			struct value *a = &snapshot[s][o], *b = &now[s][o];
			if (a->err != b->err || a->len != b->len || memcmp(a->bytes, b->bytes, a->len))
				victim_fail("fd %d option %d: was err %d len %u, now err %d len %u",
				      FIRST_FD + s, opts[o], a->err, a->len, b->err, b->len);
		}
	}
	for (int p = 0; p < PAIRS; p += 5) {
		/* Each socket's message was sent by the other end. */
		check_message(FIRST_FD + 2 * p + 1, 2 * p);
		check_message(FIRST_FD + 2 * p, 2 * p + 1);
	}
	int conn = accept(listener_fd, NULL, NULL);
	char c = 'x';
	if (conn < 0 || send(client_fd, &c, 1, 0) != 1 || recv(conn, &c, 1, 0) != 1 ||
	    send(conn, &c, 1, 0) != 1 || recv(client_fd, &c, 1, 0) != 1 || c != 'x')
		victim_fail("pending connection after restore: %s", strerror(errno));
}

int main(void)
{
	return victim_run(setup, verify);
}
