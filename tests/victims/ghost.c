/*
 * ghost [remap]: regular files deleted while open, and status flags of regular files.
 *
 * Before READY (in a fresh directory): fd 10 "gone" (5000 bytes of a pattern, mode 0640,
 * offset 77) opened O_RDWR then unlinked; fd 11 a dup of it; fd 12 "log" O_WRONLY|O_APPEND;
 * fd 13 "direct" O_RDONLY|O_DIRECT|O_NONBLOCK.
 * With "remap" (dumped with --link-remap --file-locks): "gone" is 3 MiB, above the default
 * --ghost-limit; fd 14 "kept" (10000 bytes, offset 4321) has a second link "kept-other"
 * and its own name unlinked; fd 15 holds a flock (a dump without --file-locks fails after
 * the links for fds 10 and 14 were made); fd 16 "sub/inner" (3000 bytes, offset 123)
 * has a second link "inner-other", its own name unlinked and its directory "sub" removed
 * (zdtm's unlink_regular00: the link is made in the nearest directory left).
 * After go: fd 10 is still deleted, with its mode, size, contents and offset, shared with
 * fd 11; nothing named "gone" came back into the directory; F_GETFL of fds 12 and 13.
 * With "remap": fd 14 is the file of "kept-other" again (same inode, one link, contents,
 * offset), shown as "kept (deleted)"; fd 16 is the file of "inner-other" (same inode,
 * one link, contents, offset), deleted; no "sub" came back; no ".stasis-link-" file is
 * left in the directory.
 */
#include "victim.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#define KEPT_SIZE 10000
static char dir[] = "ghost-XXXXXX";

static unsigned char pattern(int i) { return (unsigned char)(i * 5 + 2); }
static unsigned char pattern2(int i) { return (unsigned char)(i * 11 + 7); }

/* A file of `size` bytes of `pat` at `name`, opened O_RDWR at fd `at`, offset `pos`. */
static void make(const char *name, int at, int size, int pos, unsigned char (*pat)(int))
{
	unsigned char *buf = malloc(size);

	CHECK(buf != NULL, "malloc");
	victim_place(open(name, O_RDWR | O_CREAT, 0640), at);
	for (int i = 0; i < size; i++)
		buf[i] = pat(i);
	CHECK(write(at, buf, size) == size, "write %s", name);
	CHECK_SYS(lseek(at, pos, SEEK_SET));
	free(buf);
}

/* fd `fd` holds `size` bytes of `pat`, is at offset `pos` and its link ends with `tail`. */
static void verify(int fd, int size, int pos, unsigned char (*pat)(int), const char *tail)
{
	unsigned char *buf = calloc(1, size);
	char path[64], link[512];
	ssize_t n;

	CHECK(buf != NULL, "calloc");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK_SYS(n);
	link[n] = 0;
	CHECK(n >= (ssize_t)strlen(tail) && !strcmp(link + n - strlen(tail), tail),
	      "fd %d is %s, want ...%s", fd, link, tail);
	CHECK(lseek(fd, 0, SEEK_CUR) == pos, "fd %d: offset %lld, want %d", fd,
	      (long long)lseek(fd, 0, SEEK_CUR), pos);
	CHECK(pread(fd, buf, size, 0) == size, "pread fd %d", fd);
	for (int i = 0; i < size; i++)
		CHECK(buf[i] == pat(i), "fd %d: byte %d is %d", fd, i, buf[i]);
	free(buf);
}

static void no_links_left(void)
{
	DIR *d = opendir(".");
	struct dirent *e;

	CHECK(d != NULL, "opendir");
	while ((e = readdir(d)))
		CHECK(strncmp(e->d_name, ".stasis-link-", 13), "%s is left in the directory", e->d_name);
	closedir(d);
}

/* fd `fd` is the file of `other`, its one link. */
static void only_link(int fd, const char *other)
{
	struct stat sb, o;

	CHECK_SYS(fstat(fd, &sb));
	CHECK_SYS(stat(other, &o));
	CHECK(sb.st_ino == o.st_ino && sb.st_nlink == 1, "fd %d: inode %llu with %d links, %s is %llu", fd,
	      (unsigned long long)sb.st_ino, (int)sb.st_nlink, other, (unsigned long long)o.st_ino);
}

int main(int argc, char **argv)
{
	int remap = argc > 1 && !strcmp(argv[1], "remap");
	int size = remap ? 3 << 20 : 5000;
	struct stat sb;
	int fl12, fl13, fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	umask(0);
	make("gone", 10, size, 77, pattern);
	CHECK_SYS(unlink("gone"));
	CHECK_SYS(dup2(10, 11));
	victim_place(open("log", O_WRONLY | O_APPEND | O_CREAT, 0600), 12);
	fd = open("direct", O_RDWR | O_CREAT, 0600);
	CHECK_SYS(fd);
	close(fd);
	fd = open("direct", O_RDONLY | O_DIRECT | O_NONBLOCK);
	if (fd < 0 && errno == EINVAL)
		victim_skip("O_DIRECT is not supported here");
	victim_place(fd, 13);
	if (remap) {
		make("kept", 14, KEPT_SIZE, 4321, pattern2);
		CHECK_SYS(link("kept", "kept-other"));
		CHECK_SYS(unlink("kept"));
		CHECK_SYS(mkdir("sub", 0700));
		make("sub/inner", 16, 3000, 123, pattern2);
		CHECK_SYS(link("sub/inner", "inner-other"));
		CHECK_SYS(unlink("sub/inner"));
		CHECK_SYS(rmdir("sub"));
		victim_place(open("lockfile", O_RDWR | O_CREAT, 0600), 15);
		CHECK_SYS(flock(15, LOCK_SH));
	}
	fl12 = fcntl(12, F_GETFL);
	fl13 = fcntl(13, F_GETFL);
	victim_ready();
	victim_wait_go();
	verify(10, size, 77, pattern, "/gone (deleted)");
	CHECK(access("gone", F_OK) == -1, "a file named gone is back");
	CHECK_SYS(fstat(10, &sb));
	CHECK(sb.st_nlink == 0 && sb.st_size == size && (sb.st_mode & 07777) == 0640,
	      "fd 10: nlink %d size %lld mode %o", (int)sb.st_nlink, (long long)sb.st_size, sb.st_mode & 07777);
	CHECK(lseek(11, 0, SEEK_CUR) == 77, "fd 11: offset %lld, want 77", (long long)lseek(11, 0, SEEK_CUR));
	CHECK(fcntl(12, F_GETFL) == fl12, "fd 12: F_GETFL %#x, was %#x", fcntl(12, F_GETFL), fl12);
	CHECK(fcntl(13, F_GETFL) == fl13, "fd 13: F_GETFL %#x, was %#x", fcntl(13, F_GETFL), fl13);
	if (remap) {
		verify(14, KEPT_SIZE, 4321, pattern2, "/kept (deleted)");
		only_link(14, "kept-other");
		CHECK(access("kept", F_OK) == -1, "a file named kept is back");
		verify(16, 3000, 123, pattern2, " (deleted)");
		only_link(16, "inner-other");
		CHECK(access("sub", F_OK) == -1, "a directory named sub is back");
		no_links_left();
		unlink("kept-other");
		unlink("inner-other");
		unlink("lockfile");
	}
	unlink("log");
	unlink("direct");
	CHECK_SYS(chdir(".."));
	rmdir(dir);
	victim_pass();
}
