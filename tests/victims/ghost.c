/*
 * ghost: regular files deleted while open, and status flags of regular files.
 *
 * Before READY (in a fresh directory): fd 10 "gone" (5000 bytes of a pattern, mode 0640,
 * offset 77) opened O_RDWR then unlinked; fd 11 a dup of it; fd 12 "log" O_WRONLY|O_APPEND;
 * fd 13 "direct" O_RDONLY|O_DIRECT|O_NONBLOCK.
 * After go: fd 10 is still deleted, with its mode, size, contents and offset, shared with
 * fd 11; nothing named "gone" came back into the directory; F_GETFL of fds 12 and 13.
 */
#include "victim.h"

#include <fcntl.h>
#include <sys/stat.h>

#define SIZE 5000
static char dir[] = "ghost-XXXXXX";

static unsigned char pattern(int i) { return (unsigned char)(i * 5 + 2); }

int main(void)
{
	unsigned char buf[SIZE];
	char link[512], path[64];
	struct stat sb;
	int fl12, fl13, fd;
	ssize_t n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	umask(0);
	victim_place(open("gone", O_RDWR | O_CREAT, 0640), 10);
	for (int i = 0; i < SIZE; i++)
		buf[i] = pattern(i);
	CHECK(write(10, buf, SIZE) == SIZE, "write");
	CHECK_SYS(lseek(10, 77, SEEK_SET));
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
	fl12 = fcntl(12, F_GETFL);
	fl13 = fcntl(13, F_GETFL);
	victim_ready();
	victim_wait_go();
	snprintf(path, sizeof(path), "/proc/self/fd/10");
	n = readlink(path, link, sizeof(link) - 1);
	CHECK_SYS(n);
	link[n] = 0;
	CHECK(strstr(link, " (deleted)") != NULL, "fd 10 is not deleted: %s", link);
	CHECK(access("gone", F_OK) == -1, "a file named gone is back");
	CHECK_SYS(fstat(10, &sb));
	CHECK(sb.st_nlink == 0 && sb.st_size == SIZE && (sb.st_mode & 07777) == 0640,
	      "fd 10: nlink %d size %lld mode %o", (int)sb.st_nlink, (long long)sb.st_size, sb.st_mode & 07777);
	CHECK(lseek(11, 0, SEEK_CUR) == 77, "fd 11: offset %lld, want 77", (long long)lseek(11, 0, SEEK_CUR));
	memset(buf, 0, SIZE);
	CHECK(pread(10, buf, SIZE, 0) == SIZE, "pread");
	for (int i = 0; i < SIZE; i++)
		CHECK(buf[i] == pattern(i), "fd 10: byte %d is %d", i, buf[i]);
	CHECK(fcntl(12, F_GETFL) == fl12, "fd 12: F_GETFL %#x, was %#x", fcntl(12, F_GETFL), fl12);
	CHECK(fcntl(13, F_GETFL) == fl13, "fd 13: F_GETFL %#x, was %#x", fcntl(13, F_GETFL), fl13);
	unlink("log");
	unlink("direct");
	CHECK_SYS(chdir(".."));
	rmdir(dir);
	victim_pass();
}
