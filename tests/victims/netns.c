/*
 * netns: a tree in a network namespace of its own (unshared here, as `unshare --net`).
 *
 * Before READY: the loopback up with an extra address 10.77.0.1/24, a route to
 * 10.88.0.0/16 via 10.77.0.2, a rule (pref 1000 from 10.77.0.0/24 lookup 100), four
 * sysctls changed (ip_local_port_range, tcp_keepalive_time; ip_local_reserved_ports, over
 * 32 bytes; IPv6's lo mtu, which bringing lo up resets), an iptables rule (INPUT tcp
 * dport 7777 ACCEPT); a listening socket on 10.77.0.1:7777 (fd 10), a child connected
 * to it (its fd 11) and the accepted end (fd 12); fd 13 open on /proc/self/ns/net.
 * After go: all of it is there in the restored namespace, which is not stasis's; the
 * connection carries data both ways, the listener accepts a new connection; fd 13 is
 * open on the restored namespace (the one the victim is in now).
 */
#include "victim.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PORT 7777

static pid_t child;
/* The network namespace the victim started in (the harness's). */
static ino_t host_ns;

static struct sockaddr_in addr(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(PORT) };

	inet_pton(AF_INET, "10.77.0.1", &a.sin_addr);
	return a;
}

static void sh(const char *cmd)
{
	CHECK(system(cmd) == 0, "`%s` failed", cmd);
}

static void write_file(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY);

	CHECK_SYS(fd);
	CHECK_SYS(write(fd, text, strlen(text)));
	close(fd);
}

static void expect_file(const char *path, const char *text)
{
	char buf[128] = { 0 };
	int fd = open(path, O_RDONLY);

	CHECK_SYS(fd);
	CHECK_SYS(read(fd, buf, sizeof(buf) - 1));
	close(fd);
	CHECK(strcmp(buf, text) == 0, "%s is %s, not %s", path, buf, text);
}

static int connect_to_listener(void)
{
	struct sockaddr_in a = addr();
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	CHECK_SYS(fd);
	CHECK_SYS(connect(fd, (struct sockaddr *)&a, sizeof(a)));
	return fd;
}

/* The child: answers "ping" with "pong", then exits on EOF. */
static void client(void)
{
	char buf[8];
	ssize_t n;

	victim_place(connect_to_listener(), 11);
	do
		n = read(11, buf, 4);
	while (n < 0 && errno == EINTR);
	if (n != 4 || memcmp(buf, "ping", 4))
		_exit(2);
	if (write(11, "pong", 4) != 4)
		_exit(3);
	while ((n = read(11, buf, sizeof(buf))) != 0)
		if (n < 0 && errno != EINTR)
			_exit(4);
	_exit(0);
}

static void setup(void)
{
	struct sockaddr_in a = addr();
	int one = 1;

	struct stat st;

	CHECK_SYS(stat("/proc/self/ns/net", &st));
	host_ns = st.st_ino;
	if (unshare(CLONE_NEWNET))
		victim_skip("unshare(CLONE_NEWNET) is not permitted here");
	if (system("command -v ip >/dev/null && command -v iptables >/dev/null"))
		victim_skip("needs ip (iproute2) and iptables");
	sh("ip link set lo up && ip addr add 10.77.0.1/24 dev lo"
	   " && ip route add 10.88.0.0/16 via 10.77.0.2 dev lo"
	   " && ip rule add from 10.77.0.0/24 lookup 100 pref 1000");
	write_file("/proc/sys/net/ipv4/ip_local_port_range", "20000 30000");
	write_file("/proc/sys/net/ipv4/tcp_keepalive_time", "1234");
	/* Longer than a 32-byte probe read, and one that bringing lo up resets. */
	write_file("/proc/sys/net/ipv4/ip_local_reserved_ports", "7000-7010,8000-8010,9000-9010,12345");
	if (access("/proc/sys/net/ipv6/conf/lo/mtu", F_OK) == 0)
		write_file("/proc/sys/net/ipv6/conf/lo/mtu", "1300");
	sh("iptables -w -A INPUT -p tcp --dport 7777 -j ACCEPT");
	victim_place(open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC), 13);
	victim_place(socket(AF_INET, SOCK_STREAM, 0), 10);
	CHECK_SYS(setsockopt(10, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)));
	CHECK_SYS(bind(10, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(listen(10, 4));
	child = fork();
	CHECK_SYS(child);
	if (child == 0)
		client();
	victim_place(accept(10, NULL, NULL), 12);
}

static void verify(void)
{
	struct stat own, held;
	char buf[8];
	int status, c, s;

	CHECK_SYS(stat("/proc/self/ns/net", &own));
	CHECK(own.st_ino != host_ns, "the restored tree is in the harness's network namespace");
	CHECK_SYS(fstat(13, &held));
	CHECK(held.st_ino == own.st_ino && held.st_dev == own.st_dev,
	      "fd 13 is on net:[%lu], not on the namespace the victim is in (net:[%lu])",
	      (unsigned long)held.st_ino, (unsigned long)own.st_ino);
	sh("ip link show lo | grep -q 'LOOPBACK,UP'");
	sh("ip addr show dev lo | grep -q 'inet 10.77.0.1/24'");
	sh("ip route show 10.88.0.0/16 | grep -q 'via 10.77.0.2'");
	sh("ip rule show | grep -q '^1000:.*from 10.77.0.0/24 lookup 100'");
	expect_file("/proc/sys/net/ipv4/ip_local_port_range", "20000\t30000\n");
	expect_file("/proc/sys/net/ipv4/tcp_keepalive_time", "1234\n");
	expect_file("/proc/sys/net/ipv4/ip_local_reserved_ports", "7000-7010,8000-8010,9000-9010,12345\n");
	if (access("/proc/sys/net/ipv6/conf/lo/mtu", F_OK) == 0)
		expect_file("/proc/sys/net/ipv6/conf/lo/mtu", "1300\n");
	sh("iptables -w -S INPUT | grep -q -- '--dport 7777 -j ACCEPT'");
	CHECK(write(12, "ping", 4) == 4, "write to the connection: %s", strerror(errno));
	CHECK(read(12, buf, 4) == 4 && !memcmp(buf, "pong", 4), "no pong from the child");
	c = connect_to_listener();
	s = accept(10, NULL, NULL);
	CHECK_SYS(s);
	CHECK(write(c, "new", 3) == 3 && read(s, buf, 3) == 3 && !memcmp(buf, "new", 3),
	      "the listener's new connection carries no data");
	close(12);
	CHECK_SYS(waitpid(child, &status, 0));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed: %#x", status);
}

int main(void)
{
	return victim_run(setup, verify);
}
