/*
 * netlink_sockets: netlink sockets as CRIU's sk-netlink makes them, and more.
 *
 * Before READY (NETLINK_KOBJECT_UEVENT, group 31, unused here):
 *   fd 10: bound to port id = pid, NETLINK_PKTINFO on;
 *   fd 11: bound to group 31 (port id chosen by the kernel);
 *   fd 12: connected to (pid, group 31), NETLINK_NO_ENOBUFS on;
 *   fd 13: unbound;
 *   fd 14: NETLINK_ROUTE bound by the kernel, joined to groups 1 and 33 (beyond the
 *          first word) with NETLINK_ADD_MEMBERSHIP.
 * After go: port ids and groups (getsockname, NETLINK_LIST_MEMBERSHIPS), the peer of 12
 * (getpeername), each option read back; 13 still unbound; a message sent on 12 reaches
 * 10 and 11 (as sk-netlink checks).
 */
#include "victim.h"

#include <linux/netlink.h>
#include <sys/socket.h>

#define GROUP 31

static unsigned int ports[5];

static int nl(int proto)
{
	int fd = socket(AF_NETLINK, SOCK_RAW, proto);

	CHECK_SYS(fd);
	return fd;
}

static struct sockaddr_nl addr(unsigned pid, unsigned groups)
{
	return (struct sockaddr_nl){.nl_family = AF_NETLINK, .nl_pid = pid, .nl_groups = groups};
}

static struct sockaddr_nl name(int fd, int peer)
{
	struct sockaddr_nl a;
	socklen_t len = sizeof(a);

	if (peer)
		CHECK_SYS(getpeername(fd, (struct sockaddr *)&a, &len));
	else
		CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &len));
	return a;
}

static int get_int(int fd, int opt)
{
	int v = -1;
	socklen_t len = sizeof(v);

	CHECK_SYS(getsockopt(fd, SOL_NETLINK, opt, &v, &len));
	return v;
}

static void setup(void)
{
	struct sockaddr_nl a;
	int on = 1, g;

	victim_place(nl(NETLINK_KOBJECT_UEVENT), 10);
	a = addr(getpid(), 0);
	CHECK_SYS(bind(10, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(setsockopt(10, SOL_NETLINK, NETLINK_PKTINFO, &on, sizeof(on)));
	victim_place(nl(NETLINK_KOBJECT_UEVENT), 11);
	a = addr(0, 1u << (GROUP - 1));
	CHECK_SYS(bind(11, (struct sockaddr *)&a, sizeof(a)));
	victim_place(nl(NETLINK_KOBJECT_UEVENT), 12);
	a = addr(getpid(), 1u << (GROUP - 1));
	CHECK_SYS(connect(12, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(setsockopt(12, SOL_NETLINK, NETLINK_NO_ENOBUFS, &on, sizeof(on)));
	victim_place(nl(NETLINK_KOBJECT_UEVENT), 13);
	victim_place(nl(NETLINK_ROUTE), 14);
	a = addr(0, 0);
	CHECK_SYS(bind(14, (struct sockaddr *)&a, sizeof(a)));
	for (g = 1; g <= 33; g += 32)
		CHECK_SYS(setsockopt(14, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &g, sizeof(g)));
	for (int fd = 10; fd <= 14; fd++)
		ports[fd - 10] = name(fd, 0).nl_pid;
}

static void check_groups(int fd, unsigned w0, unsigned w1)
{
	unsigned int words[4] = {0};
	socklen_t len = sizeof(words);

	CHECK_SYS(getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words, &len));
	CHECK(words[0] == w0 && words[1] == w1, "fd %d: groups %#x %#x, not %#x %#x", fd,
	      words[0], words[1], w0, w1);
}

static void verify(void)
{
	struct {
		struct nlmsghdr hdr;
	} req = {.hdr = {.nlmsg_len = sizeof(req), .nlmsg_type = 0x1234, .nlmsg_seq = 7}};
	char buf[256];
	struct sockaddr_nl peer = name(12, 1);

	for (int fd = 10; fd <= 14; fd++)
		CHECK(name(fd, 0).nl_pid == ports[fd - 10], "fd %d: port id %u, not %u", fd,
		      name(fd, 0).nl_pid, ports[fd - 10]);
	CHECK(ports[3] == 0, "fd 13 was bound");
	check_groups(10, 0, 0);
	check_groups(11, 1u << (GROUP - 1), 0);
	check_groups(14, 1, 1);
	CHECK(peer.nl_pid == (unsigned)getpid() && peer.nl_groups == 1u << (GROUP - 1),
	      "fd 12: peer %u groups %#x", peer.nl_pid, peer.nl_groups);
	CHECK(get_int(10, NETLINK_PKTINFO) == 1, "fd 10: no NETLINK_PKTINFO");
	CHECK(get_int(12, NETLINK_NO_ENOBUFS) == 1, "fd 12: no NETLINK_NO_ENOBUFS");
	CHECK(send(12, &req, sizeof(req), 0) == sizeof(req), "send: %s", strerror(errno));
	CHECK(recv(10, buf, sizeof(buf), MSG_DONTWAIT) == sizeof(req), "fd 10 got nothing: %s",
	      strerror(errno));
	CHECK(recv(11, buf, sizeof(buf), MSG_DONTWAIT) == sizeof(req), "fd 11 got nothing: %s",
	      strerror(errno));
}

int main(void)
{
	return victim_run(setup, verify);
}
