/*
 * ghost_kinds KIND: files other than plain regular ones deleted while in use. In a fresh
 * directory, before READY, by KIND:
 *
 * - attrs: fd 10 "attrs", 1000 bytes, mode 06604, atime 654321.5 s and mtime
 *   123456.000000789 s (futimens), unlinked. After go: mode, both times (checked before
 *   any read), contents, offset 10.
 * - tmpfile: fd 10 an O_TMPFILE O_RDWR file of the directory, 3000 bytes, offset 1234.
 *   After go: contents, offset, F_GETFL, no link.
 * - fifo: FIFO "fifo" (mode 0640) opened O_RDWR (fd 10), O_RDONLY|O_NONBLOCK (fd 11) and
 *   O_WRONLY (fd 12), 300 bytes written, unlinked. After go: one FIFO with no link behind
 *   the three fds, shown as ".../fifo (deleted)", F_GETFL of each, the 300 bytes read from
 *   fd 11, then a byte written to fd 12 read back from fd 10.
 * - dev: a character device node "null" (1:3, mode 0620) opened O_RDWR at fd 10, unlinked.
 *   After go: a character device 1:3, mode 0620, no link, writes accepted, reads empty.
 * - dir: fd 10 opened on "a/b" (mode 0751), both directories then removed; the process
 *   enters "c", opens it at fd 11 and removes it. After go: fd 10 a directory with no
 *   link, mode 0751, shown as ".../a/b (deleted)"; the cwd ".../c (deleted)", the same
 *   directory as fd 11; nothing named "a" or "c" in the directory.
 * - symlink: fd 10 O_PATH|O_NOFOLLOW on the symlink "ln" (to "target-x"), fd 11 the same on
 *   "gone-ln" (to "target-y"), which is then unlinked. After go: both are symlinks
 *   (fstat), readlinkat(fd, "") gives their targets, fd 11 has no link and is shown as
 *   ".../gone-ln (deleted)", "gone-ln" did not come back.
 */
#include "victim.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>

static char dir[] = "ghost_kinds-XXXXXX";
static char top[4096];

static unsigned char pattern(int i) { return (unsigned char)(i * 13 + 5); }

static void fill(int fd, int size)
{
	for (int i = 0; i < size; i++) {
		unsigned char c = pattern(i);
		CHECK(write(fd, &c, 1) == 1, "write fd %d", fd);
	}
}

static void contents(int fd, int size)
{
	unsigned char c;

	for (int i = 0; i < size; i++) {
		CHECK(pread(fd, &c, 1, i) == 1, "pread fd %d at %d", fd, i);
		CHECK(c == pattern(i), "fd %d: byte %d is %d", fd, i, c);
	}
}

/* The /proc/self link `name` ("fd/3", "cwd") ends with `tail`. */
static void link_ends(const char *name, const char *tail)
{
	char link[4096];
	size_t n;

	victim_proc_link(name, link, sizeof(link));
	n = strlen(link);
	CHECK(n >= strlen(tail) && !strcmp(link + n - strlen(tail), tail),
	      "%s is %s, want ...%s", name, link, tail);
}

static void fd_link_ends(int fd, const char *tail)
{
	char name[32];

	snprintf(name, sizeof(name), "fd/%d", fd);
	link_ends(name, tail);
}

static void absent(const char *name)
{
	char path[8192];

	snprintf(path, sizeof(path), "%s/%s", top, name);
	CHECK(access(path, F_OK) == -1, "%s came back", path);
}

static void attrs(int after)
{
	struct timespec t[2] = {{654321, 500000000}, {123456, 789}};
	struct stat sb;

	if (!after) {
		victim_place(open("attrs", O_RDWR | O_CREAT | O_EXCL, 0600), 10);
		fill(10, 1000);
		CHECK_SYS(lseek(10, 10, SEEK_SET));
		CHECK_SYS(fchmod(10, 06604));
		CHECK_SYS(futimens(10, t));
		CHECK_SYS(unlink("attrs"));
		return;
	}
	CHECK_SYS(fstat(10, &sb));
	CHECK((sb.st_mode & 07777) == 06604, "mode %o", sb.st_mode & 07777);
	CHECK(sb.st_mtim.tv_sec == 123456 && sb.st_mtim.tv_nsec == 789, "mtime %lld.%09ld",
	      (long long)sb.st_mtim.tv_sec, sb.st_mtim.tv_nsec);
	CHECK(sb.st_atim.tv_sec == 654321 && sb.st_atim.tv_nsec == 500000000, "atime %lld.%09ld",
	      (long long)sb.st_atim.tv_sec, sb.st_atim.tv_nsec);
	CHECK(lseek(10, 0, SEEK_CUR) == 10, "offset %lld", (long long)lseek(10, 0, SEEK_CUR));
	contents(10, 1000);
	absent("attrs");
}

static void tmpfile_kind(int after)
{
	static int flags;
	struct stat sb;

	if (!after) {
		int fd = open(".", O_TMPFILE | O_RDWR, 0640);

		if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR))
			victim_skip("no O_TMPFILE on this filesystem");
		victim_place(fd, 10);
		fill(10, 3000);
		CHECK_SYS(lseek(10, 1234, SEEK_SET));
		flags = fcntl(10, F_GETFL);
		return;
	}
	CHECK(fcntl(10, F_GETFL) == flags, "F_GETFL %#x, was %#x", fcntl(10, F_GETFL), flags);
	CHECK(lseek(10, 0, SEEK_CUR) == 1234, "offset %lld", (long long)lseek(10, 0, SEEK_CUR));
	CHECK_SYS(fstat(10, &sb));
	CHECK(sb.st_nlink == 0 && sb.st_size == 3000, "nlink %d size %lld", (int)sb.st_nlink,
	      (long long)sb.st_size);
	contents(10, 3000);
}

static void fifo(int after)
{
	static int flags[3];
	struct stat sb[3];
	unsigned char c;

	if (!after) {
		CHECK_SYS(mkfifo("fifo", 0640));
		victim_place(open("fifo", O_RDWR), 10);
		victim_place(open("fifo", O_RDONLY | O_NONBLOCK), 11);
		victim_place(open("fifo", O_WRONLY), 12);
		fill(12, 300);
		for (int i = 0; i < 3; i++)
			flags[i] = fcntl(10 + i, F_GETFL);
		CHECK_SYS(unlink("fifo"));
		return;
	}
	for (int i = 0; i < 3; i++) {
		CHECK_SYS(fstat(10 + i, &sb[i]));
		CHECK(fcntl(10 + i, F_GETFL) == flags[i], "fd %d: F_GETFL %#x, was %#x", 10 + i,
		      fcntl(10 + i, F_GETFL), flags[i]);
		CHECK(S_ISFIFO(sb[i].st_mode) && (sb[i].st_mode & 07777) == 0640 && sb[i].st_nlink == 0,
		      "fd %d: mode %o nlink %d", 10 + i, sb[i].st_mode, (int)sb[i].st_nlink);
		CHECK(sb[i].st_ino == sb[0].st_ino, "fd %d is another FIFO than fd 10", 10 + i);
		fd_link_ends(10 + i, "/fifo (deleted)");
	}
	for (int i = 0; i < 300; i++) {
		CHECK(read(11, &c, 1) == 1, "read byte %d: %s", i, strerror(errno));
		CHECK(c == pattern(i), "byte %d is %d", i, c);
	}
	CHECK(read(11, &c, 1) == -1 && errno == EAGAIN, "more than 300 bytes buffered");
	c = 42;
	CHECK(write(12, &c, 1) == 1, "write fd 12");
	CHECK(read(10, &c, 1) == 1 && c == 42, "fd 10 did not read what fd 12 wrote");
	absent("fifo");
}

static void dev(int after)
{
	struct stat sb;
	char buf[4];

	if (!after) {
		if (mknod("null", S_IFCHR | 0620, makedev(1, 3)) < 0 && errno == EPERM)
			victim_skip("mknod needs CAP_MKNOD");
		CHECK_SYS(chmod("null", 0620));
		victim_place(open("null", O_RDWR), 10);
		CHECK_SYS(unlink("null"));
		return;
	}
	CHECK_SYS(fstat(10, &sb));
	CHECK(S_ISCHR(sb.st_mode) && sb.st_rdev == makedev(1, 3) && (sb.st_mode & 07777) == 0620,
	      "mode %o rdev %#llx", sb.st_mode, (unsigned long long)sb.st_rdev);
	CHECK(sb.st_nlink == 0, "nlink %d", (int)sb.st_nlink);
	CHECK(write(10, "abc", 3) == 3, "write: %s", strerror(errno));
	CHECK(read(10, buf, sizeof(buf)) == 0, "read from a null device returned data");
	fd_link_ends(10, "/null (deleted)");
	absent("null");
}

static void dirs(int after)
{
	struct stat a, b;

	if (!after) {
		CHECK_SYS(mkdir("a", 0700));
		CHECK_SYS(mkdir("a/b", 0700));
		CHECK_SYS(chmod("a/b", 0751));
		victim_place(open("a/b", O_RDONLY | O_DIRECTORY), 10);
		CHECK_SYS(rmdir("a/b"));
		CHECK_SYS(rmdir("a"));
		CHECK_SYS(mkdir("c", 0700));
		CHECK_SYS(chdir("c"));
		victim_place(open(".", O_RDONLY | O_DIRECTORY), 11);
		CHECK_SYS(rmdir("../c"));
		return;
	}
	CHECK_SYS(fstat(10, &a));
	CHECK(S_ISDIR(a.st_mode) && a.st_nlink == 0 && (a.st_mode & 07777) == 0751,
	      "fd 10: mode %o nlink %d", a.st_mode, (int)a.st_nlink);
	fd_link_ends(10, "/a/b (deleted)");
	link_ends("cwd", "/c (deleted)");
	CHECK_SYS(stat("/proc/self/cwd", &a));
	CHECK_SYS(fstat(11, &b));
	CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev, "the cwd is not the directory of fd 11");
	CHECK(b.st_nlink == 0, "the cwd has %d links", (int)b.st_nlink);
	absent("a");
	absent("c");
	CHECK_SYS(chdir(top));
}

static void symlinks(int after)
{
	const char *names[] = {"ln", "gone-ln"}, *targets[] = {"target-x", "target-y"};
	char buf[64];
	struct stat sb;
	ssize_t n;

	if (!after) {
		for (int i = 0; i < 2; i++) {
			CHECK_SYS(symlink(targets[i], names[i]));
			victim_place(open(names[i], O_PATH | O_NOFOLLOW), 10 + i);
		}
		CHECK_SYS(unlink("gone-ln"));
		return;
	}
	for (int i = 0; i < 2; i++) {
		CHECK_SYS(fstat(10 + i, &sb));
		CHECK(S_ISLNK(sb.st_mode), "fd %d: mode %o, not a symlink", 10 + i, sb.st_mode);
		CHECK(sb.st_nlink == (nlink_t)(i == 0), "fd %d: nlink %d", 10 + i, (int)sb.st_nlink);
		n = readlinkat(10 + i, "", buf, sizeof(buf) - 1);
		CHECK_SYS(n);
		buf[n] = 0;
		CHECK(!strcmp(buf, targets[i]), "fd %d points to %s, want %s", 10 + i, buf, targets[i]);
	}
	fd_link_ends(10, "/ln");
	fd_link_ends(11, "/gone-ln (deleted)");
	absent("gone-ln");
	CHECK_SYS(unlink("ln"));
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		void (*run)(int after);
	} kinds[] = {{"attrs", attrs}, {"tmpfile", tmpfile_kind}, {"fifo", fifo},
		     {"dev", dev}, {"dir", dirs}, {"symlink", symlinks}};
	void (*run)(int) = NULL;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	for (unsigned i = 0; argc > 1 && i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (!strcmp(argv[1], kinds[i].name))
			run = kinds[i].run;
	CHECK(run != NULL, "usage: ghost_kinds attrs|tmpfile|fifo|dev|dir|symlink");
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK(realpath(dir, top) != NULL, "realpath: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	umask(0);
	run(0);
	victim_ready();
	victim_wait_go();
	run(1);
	CHECK_SYS(chdir(top));
	CHECK_SYS(chdir(".."));
	CHECK_SYS(rmdir(top));
	victim_pass();
}
