/*
 * tcp_echo PORT [ADDR]: a TCP client of a peer outside the process (the test, on
 * loopback, or across a network namespace at ADDR).
 *
 * Before READY: fd 10 connected to ADDR:PORT (127.0.0.1 by default). Until go it echoes every byte the
 * peer sends (the peer checks the echoes: nothing lost, doubled or reordered across a
 * dump with --tcp-established and a restore). After go: fd 10 is still the same
 * connection (addresses unchanged).
 */
#include "victim.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct sockaddr_in name, peer, n2, p2;
	socklen_t l = sizeof(name);
	char buf[4096];
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	CHECK(argc > 1, "usage: tcp_echo PORT [ADDR]");
	a.sin_port = htons(atoi(argv[1]));
	CHECK(argc < 3 || inet_pton(AF_INET, argv[2], &a.sin_addr) == 1, "bad address %s", argv[2]);
	victim_install_go();
	fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK_SYS(fd);
	CHECK_SYS(dup2(fd, 10));
	close(fd);
	CHECK_SYS(connect(10, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(getsockname(10, (struct sockaddr *)&name, &l));
	CHECK_SYS(getpeername(10, (struct sockaddr *)&peer, &l));
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
	CHECK_SYS(getpeername(10, (struct sockaddr *)&p2, &l));
	CHECK(!memcmp(&n2, &name, sizeof(name)) && !memcmp(&p2, &peer, sizeof(peer)), "fd 10: addresses changed");
	victim_pass();
}
