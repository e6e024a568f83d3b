/*
 * inflight_epoll: an epoll instance in flight (sent with SCM_RIGHTS, not yet received,
 * its own fd closed), as in CRIU's scm05.
 *
 * Before READY: a datagram socketpair (fds 10, 11); an epoll watching fd 11 for EPOLLIN
 * with data 0x1234 and an eventfd (fd 12, count 0) for EPOLLOUT with data 0x5678, sent
 * twice over fd 10 then closed; "ping" queued to fd 11 after them.
 * After go: two messages carry an epoll each; both are one instance (kcmp), and it
 * reports fd 11 readable with 0x1234 and fd 12 writable with 0x5678, exactly two events;
 * after reading "ping", only the eventfd's event is left.
 */
#include "victim.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>

static void send_fd(int via, int fd)
{
	char c = 0, buf[CMSG_SPACE(sizeof(int))] = {0};
	struct iovec iov = {.iov_base = &c, .iov_len = 1};
	struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf,
			   .msg_controllen = sizeof(buf)};
	struct cmsghdr *ch = CMSG_FIRSTHDR(&h);

	ch->cmsg_level = SOL_SOCKET;
	ch->cmsg_type = SCM_RIGHTS;
	ch->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(ch), &fd, sizeof(int));
	CHECK_SYS(sendmsg(via, &h, 0));
}

static int recv_fd(int via)
{
	char c, buf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &c, .iov_len = 1};
	struct msghdr h = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = buf,
			   .msg_controllen = sizeof(buf)};
	struct cmsghdr *ch;
	int fd;

	CHECK(recvmsg(via, &h, MSG_DONTWAIT) == 1, "recvmsg: %s", strerror(errno));
	ch = CMSG_FIRSTHDR(&h);
	CHECK(ch && ch->cmsg_type == SCM_RIGHTS, "a message without SCM_RIGHTS");
	memcpy(&fd, CMSG_DATA(ch), sizeof(int));
	return fd;
}

static void watch(int ep, int fd, unsigned events, unsigned long data)
{
	struct epoll_event e = {.events = events, .data.u64 = data};

	CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e));
}

static void setup(void)
{
	int sk[2], ep;

	CHECK_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sk));
	victim_place(sk[0], 10);
	victim_place(sk[1], 11);
	victim_place(eventfd(0, 0), 12);
	ep = epoll_create1(0);
	CHECK_SYS(ep);
	watch(ep, 11, EPOLLIN, 0x1234);
	watch(ep, 12, EPOLLOUT, 0x5678);
	send_fd(10, ep);
	send_fd(10, ep);
	close(ep);
	CHECK_SYS(write(10, "ping", 4));
}

/* The events of `ep` now: data of each, in `out`; returns how many. */
static int events(int ep, unsigned long *out)
{
	struct epoll_event e[4];
	int n = epoll_wait(ep, e, 4, 0);

	CHECK_SYS(n);
	for (int i = 0; i < n; i++)
		out[i] = e[i].data.u64;
	return n;
}

static void verify(void)
{
	int a = recv_fd(11), b = recv_fd(11), n;
	unsigned long got[4];
	char buf[8];

	CHECK(syscall(SYS_kcmp, getpid(), getpid(), 0 /* KCMP_FILE */, a, b) == 0,
	      "the two epolls in flight are different files");
	n = events(a, got);
	CHECK(n == 2, "%d events before the read, not 2", n);
	CHECK((got[0] == 0x1234 && got[1] == 0x5678) || (got[0] == 0x5678 && got[1] == 0x1234),
	      "events %#lx %#lx", got[0], got[1]);
	CHECK(recv(11, buf, sizeof(buf), MSG_DONTWAIT) == 4 && memcmp(buf, "ping", 4) == 0,
	      "\"ping\" is not queued after the epolls");
	n = events(a, got);
	CHECK(n == 1 && got[0] == 0x5678, "%d events after the read (first %#lx)", n, got[0]);
}

int main(void)
{
	return victim_run(setup, verify);
}
