/*
 * Kernel objects split across the processes of a tree: each process holds its own open
 * file description of an object another process also holds.
 *
 *   root --- pipe A (root writes, C1 reads; bytes buffered) ------------------- C1
 *        <-- pipe B (C2 writes, root reads, O_NONBLOCK; bytes buffered) ------ C2
 *        <-> stream socketpair (root <-> C1; data queued both ways) ---------- C1
 *        --- memfd, opened again by C2 through /proc (own offset) ------------ C2
 *        --- deleted file, opened by C1 by path before the unlink (O_APPEND) - C1
 *   C1 --> pipe C (C1 writes, C2 reads, O_NONBLOCK; bytes buffered) ---------- C2
 *   root <-- pipe D (C1 holds both ends, its read end the root's description;
 *        the root closed its write end after the fork; bytes buffered) ------- C1
 *   root: a listening unix socket; C1 connected to it, not accepted yet
 *
 * No process holds both sockets; only C1 both ends of pipe D (whose read end, inherited
 * from the root, comes back as the root's, while the write end it alone holds must come
 * back built by the root: the dump had kept it pointing at an end it no longer created). On go each writer sends a tail
 * and closes its end; each reader reads to EOF (which also proves that no spare end
 * survived the restore) and checks the bytes: the buffered ones once, then the tail,
 * nothing lost or duplicated. C2 writes into the memfd and C1 appends to the deleted
 * file through their own descriptions; the root sees both, at its own offsets.
 *
 * "split third": C2 also holds a third open file description of pipe B (opened again
 * through /proc), which stasis cannot rebuild: the dump must be refused.
 */
#include "victim.h"

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#define A_BYTES 1000
#define B_BYTES 1500
#define C_BYTES 700
#define D_BYTES 900
#define TO_CHILD 300
#define TO_ROOT 400

static int pa[2], pb[2], pc[2], pd[2], sp[2], memfd, ghost, sync_pipe[2], listener;
static pid_t c1, c2;
/* "split third": C2 also opens pipe B's read end again (a third open file description
 * of the pipe), which stasis refuses. */
static int third;

static char pattern(char tag, int i)
{
	return (char)(tag + i % 23);
}

static void put_pattern(int fd, char tag, int n)
{
	char buf[2048];

	for (int i = 0; i < n; i++)
		buf[i] = pattern(tag, i);
	CHECK(write(fd, buf, n) == n, "write %d bytes of %c: %s", n, tag, strerror(errno));
}

static void put(int fd, const char *s)
{
	CHECK(write(fd, s, strlen(s)) == (ssize_t)strlen(s), "write %s: %s", s, strerror(errno));
}

/* Everything until EOF (waiting with poll on a non-blocking fd). */
static int read_all(int fd, char *buf, int cap)
{
	int got = 0;

	for (;;) {
		ssize_t n = read(fd, buf + got, cap - got);

		if (n == 0)
			return got;
		if (n < 0 && errno == EAGAIN) {
			struct pollfd p = { .fd = fd, .events = POLLIN };

			poll(&p, 1, 1000);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		CHECK(n > 0, "read fd %d: %s", fd, strerror(errno));
		got += n;
		CHECK(got < cap, "fd %d: more than %d bytes", fd, cap);
	}
}

/* `n` pattern bytes of `tag` followed by `tail`, and nothing else. */
static void expect_stream(const char *who, int fd, char tag, int n, const char *tail)
{
	char buf[8192];
	int got = read_all(fd, buf, sizeof(buf));
	int want = n + (int)strlen(tail);

	CHECK(got == want, "%s: read %d bytes, expected %d", who, got, want);
	for (int i = 0; i < n; i++)
		CHECK(buf[i] == pattern(tag, i), "%s: byte %d differs", who, i);
	CHECK(memcmp(buf + n, tail, strlen(tail)) == 0, "%s: tail differs: %.*s", who,
	      (int)strlen(tail), buf + n);
}

static void expect_flags(const char *who, int fd, int fl, int cloexec)
{
	int got = fcntl(fd, F_GETFL);

	CHECK(got != -1, "%s: F_GETFL: %s", who, strerror(errno));
	CHECK((got & (O_NONBLOCK | O_APPEND | O_ACCMODE)) == fl,
	      "%s: status flags %#o, expected %#o", who, got & (O_NONBLOCK | O_APPEND | O_ACCMODE), fl);
	CHECK(!!(fcntl(fd, F_GETFD) & FD_CLOEXEC) == cloexec, "%s: FD_CLOEXEC is not %d", who,
	      cloexec);
}

static void child_ready(void)
{
	CHECK(write(sync_pipe[1], "r", 1) == 1, "sync: %s", strerror(errno));
	close(sync_pipe[1]);
}

static struct sockaddr_un listener_addr(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	strcpy(sa.sun_path, "listener.sock");
	return sa;
}

/* A client connected to the root's listener (not accepted until go). */
static int connect_listener(void)
{
	struct sockaddr_un sa = listener_addr();
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	CHECK_SYS(fd);
	CHECK_SYS(connect(fd, (struct sockaddr *)&sa, sizeof(sa)));
	return fd;
}

static void child1(void)
{
	int pending;

	close(pa[1]);
	close(pb[0]);
	close(pb[1]);
	close(pc[0]);
	close(sp[0]);
	close(memfd);
	close(listener);
	pending = connect_listener();
	CHECK_SYS(fcntl(pa[0], F_SETFD, FD_CLOEXEC));
	close(ghost);
	ghost = open("ghost", O_RDWR | O_APPEND);
	CHECK_SYS(ghost);
	put_pattern(pc[1], 'c', C_BYTES);
	put_pattern(sp[1], 'r', TO_ROOT);
	put_pattern(pd[1], 'd', D_BYTES);
	child_ready();
	victim_wait_go();

	expect_flags("C1 pipe D read", pd[0], O_RDONLY, 0);
	expect_flags("C1 pipe D write", pd[1], O_WRONLY, 0);
	put(pd[1], "D-END");
	close(pd[1]);
	close(pd[0]);

	expect_flags("C1 pipe A", pa[0], O_RDONLY, 1);
	expect_flags("C1 socket", sp[1], O_RDWR, 0);
	expect_flags("C1 deleted file", ghost, O_RDWR | O_APPEND, 0);
	put(pc[1], "C-END");
	close(pc[1]);
	put(sp[1], "C1-AFTER");
	CHECK_SYS(shutdown(sp[1], SHUT_WR));
	expect_stream("C1 pipe A", pa[0], 'a', A_BYTES, "A-END");
	expect_stream("C1 socket", sp[1], 'k', TO_CHILD, "ROOT-AFTER");
	put(ghost, "+c1");
	put(pending, "PENDING-OK");
	exit(0);
}

static void child2(void)
{
	char path[64];
	int mine;

	close(pa[0]);
	close(pa[1]);
	close(pb[0]);
	close(pc[1]);
	close(pd[0]);
	close(pd[1]);
	close(sp[0]);
	close(sp[1]);
	close(ghost);
	close(listener);
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", getppid(), memfd);
	close(memfd);
	mine = open(path, O_RDWR);
	CHECK_SYS(mine);
	if (third) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", getppid(), pb[0]);
		victim_place(open(path, O_RDONLY | O_NONBLOCK), 30);
	}
	CHECK_SYS(lseek(mine, 2, SEEK_SET));
	CHECK_SYS(fcntl(pc[0], F_SETFL, O_NONBLOCK));
	put_pattern(pb[1], 'b', B_BYTES);
	child_ready();
	victim_wait_go();

	expect_flags("C2 pipe B", pb[1], O_WRONLY, 0);
	expect_flags("C2 pipe C", pc[0], O_RDONLY | O_NONBLOCK, 0);
	expect_flags("C2 memfd", mine, O_RDWR, 0);
	put(pb[1], "B-END");
	close(pb[1]);
	expect_stream("C2 pipe C", pc[0], 'c', C_BYTES, "C-END");
	CHECK(lseek(mine, 0, SEEK_CUR) == 2, "C2: memfd offset is not 2");
	put(mine, "XY");
	exit(0);
}

static pid_t spawn(void (*body)(void))
{
	pid_t p;

	fflush(stdout);
	p = fork();
	CHECK_SYS(p);
	if (p == 0) {
		close(sync_pipe[0]);
		body();
	}
	return p;
}

/* Go to both children until each exits; both must exit 0. */
static void go_children(void)
{
	pid_t kids[2] = { c1, c2 };
	int left = 2;

	while (left > 0) {
		for (int i = 0; i < 2; i++) {
			int st;
			pid_t r;

			if (kids[i] == 0)
				continue;
			kill(kids[i], SIGUSR1);
			r = waitpid(kids[i], &st, WNOHANG);
			if (r == 0 || (r == -1 && errno == EINTR))
				continue;
			CHECK(r == kids[i], "waitpid(%d): %s", kids[i], strerror(errno));
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child %d ended with status %#x",
			      kids[i], st);
			kids[i] = 0;
			left--;
		}
		usleep(20000);
	}
}

static void setup(void)
{
	int fd;

	CHECK_SYS(pipe(pa));
	CHECK_SYS(pipe(pb));
	CHECK_SYS(pipe(pc));
	CHECK_SYS(pipe(pd));
	CHECK_SYS(pipe(sync_pipe));
	CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sp));
	memfd = memfd_create("split", 0);
	CHECK_SYS(memfd);
	put(memfd, "hello");
	fd = open("ghost", O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK_SYS(fd);
	ghost = fd;
	put(ghost, "ghostdata");
	listener = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK_SYS(listener);
	unlink("listener.sock");
	{
		struct sockaddr_un sa = listener_addr();

		CHECK_SYS(bind(listener, (struct sockaddr *)&sa, sizeof(sa)));
	}
	CHECK_SYS(listen(listener, 4));
}

int main(int argc, char **argv)
{
	char buf[16];
	struct stat st;
	int conn;

	third = argc > 1 && strcmp(argv[1], "third") == 0;
	victim_install_go();
	setup();
	c1 = spawn(child1);
	c2 = spawn(child2);
	close(sync_pipe[1]);
	for (int got = 0; got < 2;) {
		ssize_t n = read(sync_pipe[0], buf, 2 - got);

		CHECK(n > 0, "a child did not start");
		got += n;
	}
	close(sync_pipe[0]);
	close(pa[0]);
	close(pb[1]);
	close(pc[0]);
	close(pc[1]);
	close(pd[1]);
	close(sp[1]);
	CHECK_SYS(unlink("ghost"));
	CHECK_SYS(fcntl(pb[0], F_SETFL, O_NONBLOCK));
	put_pattern(pa[1], 'a', A_BYTES);
	put_pattern(sp[0], 'k', TO_CHILD);
	victim_ready();
	victim_wait_go();

	expect_flags("root pipe A", pa[1], O_WRONLY, 0);
	expect_flags("root pipe B", pb[0], O_RDONLY | O_NONBLOCK, 0);
	put(pa[1], "A-END");
	close(pa[1]);
	put(sp[0], "ROOT-AFTER");
	CHECK_SYS(shutdown(sp[0], SHUT_WR));
	conn = accept(listener, NULL, NULL);
	CHECK_SYS(conn);
	go_children();
	expect_stream("root accepted", conn, 'x', 0, "PENDING-OK");
	expect_stream("root pipe B", pb[0], 'b', B_BYTES, "B-END");
	expect_stream("root pipe D", pd[0], 'd', D_BYTES, "D-END");
	expect_stream("root socket", sp[0], 'r', TO_ROOT, "C1-AFTER");
	CHECK(pread(memfd, buf, 5, 0) == 5 && memcmp(buf, "heXYo", 5) == 0,
	      "memfd holds %.5s, not heXYo", buf);
	CHECK(lseek(memfd, 0, SEEK_CUR) == 5, "root: memfd offset is not 5");
	CHECK(pread(ghost, buf, 12, 0) == 12 && memcmp(buf, "ghostdata+c1", 12) == 0,
	      "deleted file holds %.12s, not ghostdata+c1", buf);
	CHECK(fstat(ghost, &st) == 0 && st.st_nlink == 0, "the deleted file has links");
	victim_pass();
}
