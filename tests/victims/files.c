/*
 * files: the fd table, file positions and flags, cwd and umask.
 *
 * Before READY (in a fresh directory under the start cwd, which becomes the cwd):
 * umask 027; fd 100 data.bin O_RDWR at offset 1234; fd 101 a dup of it (one open file
 * description: a shared offset); fd 57 append.log O_WRONLY|O_APPEND; fd 58 the cwd as
 * O_DIRECTORY; fd 60 /dev/null O_WRONLY|O_NONBLOCK; fd 61 /dev/urandom; fd 200 data.bin
 * O_RDONLY|O_CLOEXEC at offset 4000. The fds in between are gaps.
 * After go: the set of open fds, and per fd st_dev/st_ino, F_GETFL, F_GETFD, offset and
 * the /proc/self/fd link (offsets of fds 0-2 aside: READY moves them); getcwd; umask;
 * and that each fd still works as itself. Fds other than 0-2 inherited from the
 * parent are part of the comparison too, so run it with only those open.
 */
#include "victim.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>

#define MAXFD 256
#define DATA_LEN 8192

struct fdstate {
	int open;
	dev_t dev;
	ino_t ino;
	int fl, fd_flags;
	off_t pos;
	char link[PATH_MAX];
};

static struct fdstate before[MAXFD], after[MAXFD];
static char cwd_before[PATH_MAX];

static void place(int fd, int at)
{
	CHECK_SYS(fd);
	if (fd != at) {
		CHECK_SYS(dup2(fd, at));
		close(fd);
	}
}

static void snapshot(struct fdstate *st)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	char path[64];

	CHECK(d != NULL, "opendir /proc/self/fd: %s", strerror(errno));
	memset(st, 0, sizeof(*st) * MAXFD);
	while ((e = readdir(d))) {
		int fd = atoi(e->d_name);
		struct stat sb;
		ssize_t n;

		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		CHECK(fd < MAXFD, "unexpected fd %d", fd);
		CHECK_SYS(fstat(fd, &sb));
		st[fd].open = 1;
		st[fd].dev = sb.st_dev;
		st[fd].ino = sb.st_ino;
		st[fd].fl = fcntl(fd, F_GETFL);
		st[fd].fd_flags = fcntl(fd, F_GETFD);
		st[fd].pos = lseek(fd, 0, SEEK_CUR);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		n = readlink(path, st[fd].link, sizeof(st[fd].link) - 1);
		CHECK_SYS(n);
		st[fd].link[n] = 0;
	}
	closedir(d);
}

static void setup(void)
{
	char dir[] = "files-XXXXXX", buf[DATA_LEN];

	umask(027);
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	CHECK(getcwd(cwd_before, sizeof(cwd_before)) != NULL, "getcwd: %s", strerror(errno));

	for (int i = 0; i < DATA_LEN; i++)
		buf[i] = (char)(i * 7 + 3);
	place(open("data.bin", O_RDWR | O_CREAT | O_TRUNC, 0640), 100);
	CHECK(write(100, buf, DATA_LEN) == DATA_LEN, "write data.bin");
	CHECK(lseek(100, 1234, SEEK_SET) == 1234, "lseek");
	CHECK_SYS(dup2(100, 101));

	place(open("append.log", O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0640), 57);
	CHECK(write(57, "hello\n", 6) == 6, "write append.log");
	place(open(".", O_RDONLY | O_DIRECTORY), 58);
	place(open("/dev/null", O_WRONLY | O_NONBLOCK), 60);
	place(open("/dev/urandom", O_RDONLY), 61);
	place(open("data.bin", O_RDONLY | O_CLOEXEC), 200);
	CHECK_SYS(fcntl(200, F_SETFD, FD_CLOEXEC)); /* dup2 dropped it */
	CHECK(lseek(200, 4000, SEEK_SET) == 4000, "lseek");
}

static void compare(void)
{
	char cwd[PATH_MAX];
	mode_t mask;

	snapshot(after);
	for (int fd = 0; fd < MAXFD; fd++) {
		struct fdstate *b = &before[fd], *a = &after[fd];

		CHECK(a->open == b->open, "fd %d is %s", fd, b->open ? "missing" : "unexpectedly open");
		if (!b->open)
			continue;
		CHECK(!strcmp(a->link, b->link), "fd %d points to %s, was %s", fd, a->link, b->link);
		CHECK(a->dev == b->dev && a->ino == b->ino, "fd %d (%s): another inode", fd, b->link);
		CHECK(a->fl == b->fl, "fd %d (%s): F_GETFL %#x, was %#x", fd, b->link, a->fl, b->fl);
		CHECK(a->fd_flags == b->fd_flags, "fd %d (%s): F_GETFD %#x, was %#x", fd, b->link, a->fd_flags, b->fd_flags);
		/* stdout and stderr are the log, written to since (READY) */
		CHECK(fd <= 2 || a->pos == b->pos, "fd %d (%s): offset %lld, was %lld", fd, b->link,
		      (long long)a->pos, (long long)b->pos);
	}
	CHECK(getcwd(cwd, sizeof(cwd)) != NULL, "getcwd: %s", strerror(errno));
	CHECK(!strcmp(cwd, cwd_before), "cwd is %s, was %s", cwd, cwd_before);
	mask = umask(0);
	umask(mask);
	CHECK(mask == 027, "umask %03o, want 027", mask);
}

static void use(void)
{
	char c, buf[16];
	struct stat sb;

	CHECK(read(100, &c, 1) == 1 && c == (char)(1234 * 7 + 3), "fd 100: wrong byte at 1234");
	CHECK(lseek(101, 0, SEEK_CUR) == 1235, "fds 100 and 101 no longer share an offset");
	CHECK(read(200, &c, 1) == 1 && c == (char)(4000 * 7 + 3), "fd 200: wrong byte at 4000");
	CHECK(write(57, "again\n", 6) == 6, "fd 57: write: %s", strerror(errno));
	CHECK_SYS(fstat(57, &sb));
	CHECK(sb.st_size == 12 && lseek(57, 0, SEEK_CUR) == 12, "fd 57: O_APPEND write went elsewhere");
	CHECK(pread(100, buf, 6, 0) == 6, "pread");
	CHECK_SYS(fstatat(58, "append.log", &sb, 0));
	CHECK(write(60, "x", 1) == 1, "fd 60: write to /dev/null: %s", strerror(errno));
	CHECK(read(61, buf, sizeof(buf)) == sizeof(buf), "fd 61: read /dev/urandom: %s", strerror(errno));
}

static void cleanup(void)
{
	unlinkat(58, "data.bin", 0);
	unlinkat(58, "append.log", 0);
	CHECK_SYS(chdir(".."));
	rmdir(cwd_before);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	setup();
	snapshot(before);
	victim_ready();
	victim_wait_go();
	compare();
	use();
	cleanup();
	victim_pass();
}
