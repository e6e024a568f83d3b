/*
 * netns_cross: sockets held by a process of another network namespace than theirs, each
 * way (zdtm's netns_sub, whose second child holds a socket of the root's namespace).
 *
 * Before READY: this process unshares a network namespace R (loopback up) and makes, in
 * R: a datagram socket bound to the abstract name "stasis-crossR" (fd 10), a TCP listener
 * on 127.0.0.1:4242 (11), a UDP socket bound to 127.0.0.1:4243 (12) and a route netlink
 * socket (15). Its child C makes in R (before it unshares) a stream socketpair (13, 14)
 * with "queued" sent from 13 and unread (C makes it: one made here and held by C only
 * would name this pid in SO_PEERCRED, which a restore cannot give it), then unshares a namespace of its own (loopback up) and makes there a datagram
 * socket bound to "stasis-crossC", a TCP listener on 127.0.0.1:4242, a UDP socket bound
 * to 127.0.0.1:4243 and a packet socket bound to C's loopback, and sends them to this
 * process (SCM_RIGHTS; here fds 20-23), closing its own. This process closes fds 10-15:
 * C is the only holder of R's sockets, this process the only one of C's.
 * After go, each checks from inside that each socket it holds is of the other's
 * namespace (SIOCGSKNS against /proc/PID/ns/net), and that it is reachable there only:
 * here (R) a TCP connection to 127.0.0.1:4242 and a datagram to :4243 arrive at C's fds
 * 11 and 12, "stasis-crossR" is reachable and "stasis-crossC" not; then C, in its
 * namespace, reads "queued" from 14 and sends back through the pair, connects and sends
 * the same way (arriving at fds 21 and 22 here), and sees "stasis-crossC" only; data
 * crosses both TCP connections.
 * With "conn": C also holds a TCP connection of its own namespace, both ends (fds 24
 * and 25, to 127.0.0.1:4244), which a dump refuses (run by tests/sockets.rs); after go
 * a byte crosses it.
 */
#include "victim.h"
#include "unix_names.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#define TCP_PORT 4242
#define UDP_PORT 4243
#define CONN_PORT 4244

static pid_t child;
static int with_conn;

static struct sockaddr_in local(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static int loopback_up(void)
{
	struct ifreq r;
	int s = socket(AF_INET, SOCK_DGRAM, 0), bad;

	if (s < 0)
		return -1;
	memset(&r, 0, sizeof(r));
	strcpy(r.ifr_name, "lo");
	bad = ioctl(s, SIOCGIFFLAGS, &r);
	r.ifr_flags |= IFF_UP;
	bad = bad || ioctl(s, SIOCSIFFLAGS, &r);
	close(s);
	return bad ? -1 : 0;
}

/* Sockets of the current namespace at `base` (unix, TCP listener, UDP). */
static void make_named(const char *n, int base)
{
	struct sockaddr_un u;
	struct sockaddr_in t = local(TCP_PORT), d = local(UDP_PORT);
	socklen_t l = un_abstract(&u, n);

	victim_place(socket(AF_UNIX, SOCK_DGRAM, 0), base);
	CHECK_SYS(bind(base, (struct sockaddr *)&u, l));
	victim_place(socket(AF_INET, SOCK_STREAM, 0), base + 1);
	CHECK_SYS(bind(base + 1, (struct sockaddr *)&t, sizeof(t)));
	CHECK_SYS(listen(base + 1, 4));
	victim_place(socket(AF_INET, SOCK_DGRAM, 0), base + 2);
	CHECK_SYS(bind(base + 2, (struct sockaddr *)&d, sizeof(d)));
}

/* The inode of the network namespace of socket `fd`, or of process `pid`. */
static ino_t sock_ns(int fd)
{
	struct stat st;
	int ns = ioctl(fd, SIOCGSKNS);

	if (ns < 0 || fstat(ns, &st))
		return 0;
	close(ns);
	return st.st_ino;
}

static ino_t pid_ns(pid_t pid)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", pid);
	return stat(path, &st) ? 0 : st.st_ino;
}

/* 0 when fds first..last are all sockets of the namespace of `of`, not of this one. */
static int of_ns(int first, int last, pid_t of)
{
	ino_t want = pid_ns(of), mine = pid_ns(getpid());

	for (int fd = first; fd <= last; fd++)
		if (!want || want == mine || sock_ns(fd) != want)
			return fd;
	return 0;
}

/* Connects to the TCP port and sends a datagram to the UDP one in this namespace;
 * returns the connected socket. */
static int knock(const char *what)
{
	struct sockaddr_in t = local(TCP_PORT), d = local(UDP_PORT);
	int c = socket(AF_INET, SOCK_STREAM, 0), u = socket(AF_INET, SOCK_DGRAM, 0);

	if (c < 0 || u < 0 || connect(c, (struct sockaddr *)&t, sizeof(t)))
		return -1;
	if (sendto(u, what, strlen(what), 0, (struct sockaddr *)&d, sizeof(d)) < 0)
		return -1;
	close(u);
	return c;
}

/* Accepts on listener `l`, receives `what` on UDP socket `u`, and sends `hello` over
 * the accepted connection (0 on success). */
static int answer(int l, int u, const char *what, const char *hello)
{
	char b[32] = { 0 };
	int a;

	if (recv(u, b, sizeof(b) - 1, 0) != (ssize_t)strlen(what) || strcmp(b, what))
		return 1;
	a = accept(l, NULL, NULL);
	if (a < 0 || write(a, hello, strlen(hello)) != (ssize_t)strlen(hello))
		return 2;
	close(a);
	return 0;
}

static int read_is(int fd, const char *want)
{
	char b[32] = { 0 };
	ssize_t n = read(fd, b, strlen(want));

	return n == (ssize_t)strlen(want) && !memcmp(b, want, n);
}

/* C, after go: its sockets are R's; its namespace is reached by this process's. */
static int verify_c(pid_t root)
{
	int bad = of_ns(10, 15, root), c;

	if (bad)
		return 10 + bad;
	if (answer(11, 12, "to-R", "hello-R"))
		return 3;
	if (!read_is(14, "queued") || write(14, "back", 4) != 4 || !read_is(13, "back"))
		return 4;
	if (un_reachable("stasis-crossC") != 1 || un_reachable("stasis-crossR") != 0)
		return 5;
	if (with_conn && (write(24, "x", 1) != 1 || !read_is(25, "x")))
		return 7;
	c = knock("to-C");
	if (c < 0 || write(32, "c", 1) != 1 || !read_is(c, "hello-C"))
		return 6;
	return 0;
}

/* A TCP connection of this namespace, both ends here (fds 24 and 25). */
static void connection(void)
{
	struct sockaddr_in a = local(CONN_PORT);
	int l = socket(AF_INET, SOCK_STREAM, 0);

	CHECK_SYS(l);
	CHECK_SYS(bind(l, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(listen(l, 1));
	victim_place(socket(AF_INET, SOCK_STREAM, 0), 24);
	CHECK_SYS(connect(24, (struct sockaddr *)&a, sizeof(a)));
	victim_place(accept(l, NULL, NULL), 25);
	close(l);
}

static int in_c(pid_t root, int pass)
{
	char b, data = 'x', control[CMSG_SPACE(4 * sizeof(int))];
	struct iovec io = { .iov_base = &data, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = control,
			    .msg_controllen = sizeof(control) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
	struct sockaddr_ll ll = { .sll_family = AF_PACKET, .sll_ifindex = 1 };
	int fds[4] = { 20, 21, 22, 23 }, pair[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair))
		return 2;
	victim_place(pair[0], 13);
	victim_place(pair[1], 14);
	if (write(13, "queued", 6) != 6)
		return 2;
	if (unshare(CLONE_NEWNET) || loopback_up())
		return 2;
	make_named("stasis-crossC", 20);
	if (with_conn)
		connection();
	victim_place(socket(AF_PACKET, SOCK_DGRAM, 0), 23);
	if (bind(23, (struct sockaddr *)&ll, sizeof(ll)))
		return 2;
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(fds));
	memcpy(CMSG_DATA(cm), fds, sizeof(fds));
	if (sendmsg(pass, &m, 0) != 1)
		return 2;
	for (int fd = 20; fd <= 23; fd++)
		close(fd);
	close(pass);
	if (read(31, &b, 1) != 1)
		return 3;
	return verify_c(root);
}

static void receive_c(int pass)
{
	char data, control[CMSG_SPACE(4 * sizeof(int))];
	struct iovec io = { .iov_base = &data, .iov_len = 1 };
	struct msghdr m = { .msg_iov = &io, .msg_iovlen = 1, .msg_control = control,
			    .msg_controllen = sizeof(control) };
	struct cmsghdr *cm;
	int fds[4];

	CHECK(recvmsg(pass, &m, 0) == 1, "receive C's sockets: %s", strerror(errno));
	cm = CMSG_FIRSTHDR(&m);
	CHECK(cm && cm->cmsg_type == SCM_RIGHTS, "no sockets from C");
	memcpy(fds, CMSG_DATA(cm), sizeof(fds));
	for (int i = 0; i < 4; i++)
		victim_place(fds[i], 20 + i);
	close(pass);
}

static void setup(void)
{
	int go[2], back[2], pass[2];
	pid_t root = getpid();

	if (unshare(CLONE_NEWNET))
		victim_skip("unshare(CLONE_NEWNET) is not permitted here");
	CHECK(loopback_up() == 0, "loopback up: %s", strerror(errno));
	make_named("stasis-crossR", 10);
	victim_place(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE), 15);
	CHECK_SYS(pipe(go));
	CHECK_SYS(pipe(back));
	CHECK_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, pass));
	victim_place(go[0], 31);
	victim_place(back[1], 32);
	child = fork();
	CHECK_SYS(child);
	if (child == 0) {
		close(go[1]);
		close(back[0]);
		close(pass[0]);
		_exit(in_c(root, pass[1]));
	}
	close(31);
	close(32);
	close(pass[1]);
	for (int fd = 10; fd <= 15; fd++)
		close(fd);
	receive_c(pass[0]);
	victim_place(go[1], 30);
	victim_place(back[0], 33);
}

static void verify(void)
{
	int status, bad = of_ns(20, 23, child), c;
	char b;

	CHECK(bad == 0, "fd %d is not a socket of C's network namespace", bad);
	c = knock("to-R");
	CHECK(c >= 0, "connect and send to R's ports: %s", strerror(errno));
	CHECK(un_reachable("stasis-crossR") == 1 && un_reachable("stasis-crossC") == 0,
	      "R's namespace has the wrong names");
	CHECK(write(30, "g", 1) == 1, "tell C: %s", strerror(errno));
	CHECK(read(33, &b, 1) == 1, "C did not get as far as its connection");
	CHECK(answer(21, 22, "to-C", "hello-C") == 0, "C's ports do not answer here");
	CHECK(read_is(c, "hello-R"), "nothing over the connection to R's listener");
	CHECK_SYS(waitpid(child, &status, 0));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "C failed: %#x", status);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	with_conn = argc > 1 && !strcmp(argv[1], "conn");
	return victim_run(setup, verify);
}
