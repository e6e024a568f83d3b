/*
 * pipes: pipes and FIFOs with bytes in flight.
 *
 * Before READY (in a fresh directory under the start cwd):
 *   fds 10/11: a pipe, read end O_NONBLOCK, 1 MiB capacity, 300000 bytes buffered;
 *              fd 12 a dup of the write end (one open file description);
 *   fd 20:     the read end of a pipe whose write end is closed, "tail" buffered (EOF after);
 *   fd 21:     the write end of a pipe whose read end is closed, "orphan" buffered;
 *   fds 22/23: an O_DIRECT (packet) pipe, empty, both ends O_CLOEXEC;
 *   fd 30:     a FIFO opened O_RDWR with "fifo-bytes" buffered;
 *   fd 31/32:  the same FIFO O_RDONLY|O_NONBLOCK and O_WRONLY (other descriptions);
 *   fds 24/25: a pipe, "re" buffered; fd 26 another read description of it and fd 27
 *              another write description (opens of /proc/self/fd/N), O_NONBLOCK.
 * After go: per fd F_GETFL, F_GETFD, F_GETPIPE_SZ, FIONREAD, the inode; the bytes, in
 * order; that 10/11, 24-27 and 30/31/32 are still connected, that 11/12 share a
 * description and 24/26 and 25/27 do not.
 */
#include "victim.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/kcmp.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define BIG 300000
#define NFD 12

static const int fds[NFD] = {10, 11, 12, 20, 21, 22, 23, 24, 25, 26, 27, 30};
static struct { int fl, fdfl, size, queued; ino_t ino; } before[NFD];
static char dir[] = "pipes-XXXXXX";

static unsigned char pattern(int i) { return (unsigned char)(i * 13 + 7); }

static void pipe_at(int r, int w, int flags)
{
	int p[2];

	CHECK_SYS(pipe2(p, flags));
	victim_place(p[0], r);
	victim_place(p[1], w);
}

static void write_all(int fd, const void *buf, size_t len)
{
	CHECK(write(fd, buf, len) == (ssize_t)len, "write %zu bytes to fd %d: %s", len, fd, strerror(errno));
}

static void setup(void)
{
	static unsigned char big[BIG];
	int p[2];

	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	pipe_at(10, 11, 0);
	CHECK(fcntl(10, F_SETPIPE_SZ, 1 << 20) >= 1 << 20, "F_SETPIPE_SZ: %s", strerror(errno));
	CHECK_SYS(fcntl(10, F_SETFL, O_NONBLOCK));
	for (int i = 0; i < BIG; i++)
		big[i] = pattern(i);
	write_all(11, big, BIG);
	CHECK_SYS(dup2(11, 12));

	CHECK_SYS(pipe(p));
	victim_place(p[0], 20);
	write_all(p[1], "tail", 4);
	close(p[1]);

	CHECK_SYS(pipe(p));
	victim_place(p[1], 21);
	write_all(21, "orphan", 6);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);

	pipe_at(22, 23, O_DIRECT);
	CHECK_SYS(fcntl(22, F_SETFD, FD_CLOEXEC));
	CHECK_SYS(fcntl(23, F_SETFD, FD_CLOEXEC));

	CHECK_SYS(mkfifo("fifo", 0600));
	victim_place(open("fifo", O_RDWR), 30);
	write_all(30, "fifo-bytes", 10);
	victim_place(open("fifo", O_RDONLY | O_NONBLOCK), 31);
	victim_place(open("fifo", O_WRONLY), 32);

	pipe_at(24, 25, 0);
	write_all(25, "re", 2);
	victim_place(open("/proc/self/fd/24", O_RDONLY | O_NONBLOCK), 26);
	victim_place(open("/proc/self/fd/25", O_WRONLY | O_NONBLOCK), 27);
}

static void snapshot(int i, int fd)
{
	struct stat sb;

	CHECK_SYS(fstat(fd, &sb));
	before[i].ino = sb.st_ino;
	before[i].fl = fcntl(fd, F_GETFL);
	before[i].fdfl = fcntl(fd, F_GETFD);
	before[i].size = fcntl(fd, F_GETPIPE_SZ);
	CHECK_SYS(ioctl(fd, FIONREAD, &before[i].queued));
}

static void compare(void)
{
	for (int i = 0; i < NFD; i++) {
		int fd = fds[i], fl = fcntl(fd, F_GETFL), fdfl = fcntl(fd, F_GETFD);
		int size = fcntl(fd, F_GETPIPE_SZ), queued = -1;
		struct stat sb;

		CHECK(fl == before[i].fl, "fd %d: F_GETFL %#x, was %#x", fd, fl, before[i].fl);
		CHECK(fdfl == before[i].fdfl, "fd %d: F_GETFD %#x, was %#x", fd, fdfl, before[i].fdfl);
		CHECK(size == before[i].size, "fd %d: pipe size %d, was %d", fd, size, before[i].size);
		CHECK_SYS(ioctl(fd, FIONREAD, &queued));
		CHECK(queued == before[i].queued, "fd %d: %d bytes queued, was %d", fd, queued, before[i].queued);
		CHECK_SYS(fstat(fd, &sb));
		CHECK(S_ISFIFO(sb.st_mode), "fd %d is not a pipe", fd);
	}
}

static int same_file(int a, int b)
{
	pid_t me = getpid();

	return syscall(SYS_kcmp, me, me, KCMP_FILE, a, b) == 0;
}

static void same_pipe(int a, int b)
{
	struct stat sa, sb;

	CHECK_SYS(fstat(a, &sa));
	CHECK_SYS(fstat(b, &sb));
	CHECK(sa.st_ino == sb.st_ino, "fds %d and %d are not one pipe", a, b);
}

static void read_exact(int fd, void *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		CHECK(n > 0, "fd %d: read after %zu of %zu bytes: %s", fd, got, len, n ? strerror(errno) : "EOF");
		got += n;
	}
}

static void use(void)
{
	static unsigned char big[BIG];
	char buf[32];
	int r;

	same_pipe(10, 11);
	same_pipe(22, 23);
	CHECK(same_file(11, 12) && !same_file(10, 11), "fds 11/12 lost their shared description");
	read_exact(10, big, BIG);
	for (int i = 0; i < BIG; i++)
		CHECK(big[i] == pattern(i), "fd 10: byte %d is %d, want %d", i, big[i], pattern(i));
	CHECK(read(10, buf, 1) == -1 && errno == EAGAIN, "fd 10: not empty or not non-blocking");
	write_all(12, "via-dup", 7);
	read_exact(10, buf, 7);
	CHECK(!memcmp(buf, "via-dup", 7), "fd 12 does not write into fd 10's pipe");

	read_exact(20, buf, 4);
	CHECK(!memcmp(buf, "tail", 4), "fd 20: wrong bytes");
	CHECK(read(20, buf, 1) == 0, "fd 20: no EOF after the bytes (a writer came back?)");

	CHECK(write(21, "x", 1) == -1 && errno == EPIPE, "fd 21: writing to a reader-less pipe did not fail with EPIPE");

	write_all(23, "ab", 2);
	write_all(23, "cd", 2);
	r = read(22, buf, sizeof(buf));
	CHECK(r == 2, "fds 22/23: O_DIRECT packets merged (read %d)", r);

	for (int fd = 25; fd <= 27; fd++)
		same_pipe(24, fd);
	CHECK(!same_file(24, 26) && !same_file(25, 27), "fds 26/27 are not descriptions of their own");
	read_exact(26, buf, 2);
	CHECK(!memcmp(buf, "re", 2), "fd 26: wrong bytes");
	write_all(27, "w27", 3);
	read_exact(24, buf, 3);
	CHECK(!memcmp(buf, "w27", 3), "fd 27 does not write into fd 24's pipe");

	same_pipe(30, 31);
	same_pipe(30, 32);
	read_exact(31, buf, 10);
	CHECK(!memcmp(buf, "fifo-bytes", 10), "FIFO: wrong bytes");
	write_all(32, "more", 4);
	read_exact(30, buf, 4);
	CHECK(!memcmp(buf, "more", 4), "FIFO: fd 32 does not reach fd 30");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	setup();
	for (int i = 0; i < NFD; i++)
		snapshot(i, fds[i]);
	victim_ready();
	victim_wait_go();
	compare();
	use();
	unlink("fifo");
	CHECK_SYS(chdir(".."));
	rmdir(dir);
	victim_pass();
}
