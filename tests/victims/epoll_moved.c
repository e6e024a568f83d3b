/*
 * epoll_moved: epoll registrations whose fd number no longer holds the registered file.
 * Epoll keys a registration by file and fd number, so each must come back under its
 * original number even though the file now lives elsewhere.
 *
 * Root, epoll at fd 10 (all EPOLLIN, level-triggered, every eventfd counter at 1):
 *   A: eventfd registered as fd 20 (data 0xa1), dup'ed to fd 21, fd 20 closed;
 *   B: eventfd registered as fd 22 (data 0xb2), dup2'ed to fd 23, fd 22 closed;
 *   C: another eventfd then opened at fd 22 (FD_CLOEXEC), registered as fd 22 (0xc3);
 *   D: eventfd at fd 24, kept by the root.
 * Child, its own epoll at fd 11: D registered as fd 24 (data 0xd4), then fd 24 closed
 * (only the root holds D).
 *
 * After go: fdinfo of each epoll lists the original numbers (20, 22, 22; 24); fd 20 is
 * closed, fd 22 is C with FD_CLOEXEC; the events arrive with their data, and reading
 * each eventfd through the fd that holds it now silences exactly its registration.
 *
 * "later": the root also registers an eventfd as fd 25 (never written), which only the
 * child holds once the root closed it: the child is restored after the root, so the
 * dump must be refused naming the root's epoll fd 10 and fd 25.
 * "unreachable": the root registers an eventfd as fd 26, sends it over a socket pair
 * to itself (SCM_RIGHTS, never received) and closes it: no fd holds the file any more
 * (only the message in flight), so the dump must be refused.
 */
#include "victim.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/wait.h>

static int sync_pipe[2], later, unreachable;

static void watch(int ep, int fd, uint64_t data)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = data };

	CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
}

/* What `ep` reports ready: one bit per registration (A 1, B 2, C 4, D 8). */
static int ready(int ep)
{
	struct epoll_event ev[8];
	int n, set = 0;

	while ((n = epoll_wait(ep, ev, 8, 200)) == -1 && errno == EINTR)
		;
	CHECK(n >= 0, "epoll_wait fd %d: %s", ep, strerror(errno));
	for (int i = 0; i < n; i++) {
		switch (ev[i].data.u64) {
		case 0xa1: set |= 1; break;
		case 0xb2: set |= 2; break;
		case 0xc3: set |= 4; break;
		case 0xd4: set |= 8; break;
		default: victim_fail("epoll fd %d: unexpected data %#llx", ep,
				     (unsigned long long)ev[i].data.u64);
		}
	}
	return set;
}

static int by_number(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* The registered fd numbers in fdinfo of `ep`, sorted (fdinfo lists them in the
 * kernel's tree order, by file address), as "20,22,22". */
static void tfds(int ep, char *out, size_t cap)
{
	char path[64], line[256];
	int tfd[8], n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	f = fopen(path, "r");
	CHECK(f, "open %s: %s", path, strerror(errno));
	while (n < 8 && fgets(line, sizeof(line), f))
		n += sscanf(line, "tfd: %d", &tfd[n]) == 1;
	fclose(f);
	qsort(tfd, n, sizeof(int), by_number);
	out[0] = 0;
	for (int i = 0; i < n; i++)
		snprintf(out + strlen(out), cap - strlen(out), "%s%d", i ? "," : "", tfd[i]);
}

static void drain(int fd)
{
	uint64_t v;

	CHECK(read(fd, &v, 8) == 8 && v == 1, "read eventfd fd %d: %s", fd, strerror(errno));
}

static void child(void)
{
	char list[64];

	victim_place(epoll_create1(0), 11);
	watch(11, 24, 0xd4);
	close(24);
	close(sync_pipe[0]);
	CHECK(write(sync_pipe[1], "r", 1) == 1, "sync: %s", strerror(errno));
	close(sync_pipe[1]);
	victim_wait_go();
	tfds(11, list, sizeof(list));
	CHECK(strcmp(list, "24") == 0, "child epoll fd 11 registers %s, not 24", list);
	CHECK(fcntl(24, F_GETFD) == -1 && errno == EBADF, "child: fd 24 is open");
	CHECK(ready(11) == 8, "child: D not reported with data 0xd4");
	exit(0);
}

static void go_child(pid_t kid)
{
	for (;;) {
		int st;
		pid_t r;

		kill(kid, SIGUSR1);
		r = waitpid(kid, &st, WNOHANG);
		if (r == kid) {
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with status %#x", st);
			return;
		}
		CHECK(r == 0 || errno == EINTR, "waitpid: %s", strerror(errno));
		usleep(20000);
	}
}

/* Registers an eventfd as fd `fd`, sends it to a socket of a pair it keeps, closes it. */
static void send_away(int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = { 0 }, byte = 'x';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			      .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
	int sp[2];

	victim_place(eventfd(0, 0), fd);
	watch(10, fd, 0xe6);
	CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	CHECK_SYS(sendmsg(sp[0], &msg, 0));
	close(fd);
}

static void setup(void)
{
	uint64_t one = 1;

	victim_place(epoll_create1(0), 10);
	victim_place(eventfd(0, 0), 20);
	watch(10, 20, 0xa1);
	victim_place(dup(20), 21);
	close(20);
	victim_place(eventfd(0, 0), 22);
	watch(10, 22, 0xb2);
	CHECK_SYS(dup2(22, 23));
	close(22);
	victim_place(eventfd(0, EFD_CLOEXEC), 22);
	watch(10, 22, 0xc3);
	victim_place(eventfd(0, 0), 24);
	if (later) {
		victim_place(eventfd(0, 0), 25);
		watch(10, 25, 0xe5);
	}
	if (unreachable)
		send_away(26);
	for (int fd = 21; fd <= 24; fd++)
		CHECK(write(fd, &one, 8) == 8, "write eventfd fd %d: %s", fd, strerror(errno));
}

int main(int argc, char **argv)
{
	char list[64], want[64], c;
	const char *extra;
	pid_t kid;

	later = argc > 1 && strcmp(argv[1], "later") == 0;
	unreachable = argc > 1 && strcmp(argv[1], "unreachable") == 0;
	victim_install_go();
	setup();
	CHECK_SYS(pipe(sync_pipe));
	kid = fork();
	CHECK_SYS(kid);
	if (kid == 0)
		child();
	close(sync_pipe[1]);
	CHECK(read(sync_pipe[0], &c, 1) == 1, "the child did not start");
	close(sync_pipe[0]);
	if (later)
		close(25);
	victim_ready();
	victim_wait_go();

	tfds(10, list, sizeof(list));
	extra = later ? ",25" : unreachable ? ",26" : "";
	snprintf(want, sizeof(want), "20,22,22%s", extra);
	CHECK(strcmp(list, want) == 0, "epoll fd 10 registers %s, not %s", list, want);
	CHECK(fcntl(20, F_GETFD) == -1 && errno == EBADF, "fd 20 is open");
	CHECK(fcntl(22, F_GETFD) == FD_CLOEXEC, "fd 22 lost FD_CLOEXEC");
	CHECK(ready(10) == 7, "A, B, C not all reported (%#x)", ready(10));
	drain(22);
	CHECK(ready(10) == 3, "after reading C: %#x, not A and B", ready(10));
	drain(23);
	CHECK(ready(10) == 1, "after reading B: %#x, not A", ready(10));
	drain(21);
	CHECK(ready(10) == 0, "after reading A: %#x, not nothing", ready(10));
	go_child(kid);
	victim_pass();
}
