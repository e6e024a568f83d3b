/*
 * memfd: name, size, contents, offset and seals.
 *
 * Before READY: fd 10 memfd "stasis-test" (MFD_ALLOW_SEALING) of 20000 bytes (a pattern,
 * with a hole), offset 100, sealed F_SEAL_SHRINK|F_SEAL_GROW; fd 11 a dup of it;
 * fd 12 memfd "plain" without sealing (so F_SEAL_SEAL), empty, O_CLOEXEC, O_APPEND|O_NONBLOCK,
 * mode 0642.
 * After go: the link name, size, every byte, the shared offset, the seals, the status flags and mode.
 */
#include "victim.h"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#define SIZE 20000

static unsigned char pattern(int i) { return i >= 8192 && i < 12288 ? 0 : (unsigned char)(i * 31 + 1); }

static void link_is(int fd, const char *want)
{
	char path[64], buf[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, buf, sizeof(buf) - 1);
	CHECK_SYS(n);
	buf[n] = 0;
	CHECK(!strcmp(buf, want), "fd %d: link %s, want %s", fd, buf, want);
}

int main(void)
{
	static unsigned char buf[SIZE];
	struct stat sb;
	pid_t me = getpid();

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	victim_place(memfd_create("stasis-test", MFD_ALLOW_SEALING), 10);
	for (int i = 0; i < SIZE; i++)
		buf[i] = pattern(i);
	CHECK(pwrite(10, buf, 8192, 0) == 8192 && pwrite(10, buf + 12288, SIZE - 12288, 12288) == SIZE - 12288, "pwrite");
	CHECK_SYS(lseek(10, 100, SEEK_SET));
	CHECK_SYS(fcntl(10, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW));
	CHECK_SYS(dup2(10, 11));
	victim_place(memfd_create("plain", MFD_CLOEXEC), 12);
	CHECK_SYS(fcntl(12, F_SETFL, O_APPEND | O_NONBLOCK));
	CHECK_SYS(fchmod(12, 0642));
	int fl = fcntl(12, F_GETFL);
	victim_ready();
	victim_wait_go();
	link_is(10, "/memfd:stasis-test (deleted)");
	link_is(12, "/memfd:plain (deleted)");
	CHECK_SYS(fstat(10, &sb));
	CHECK(sb.st_size == SIZE, "fd 10: size %lld", (long long)sb.st_size);
	memset(buf, 0xee, SIZE);
	CHECK(pread(10, buf, SIZE, 0) == SIZE, "pread");
	for (int i = 0; i < SIZE; i++)
		CHECK(buf[i] == pattern(i), "fd 10: byte %d is %d, want %d", i, buf[i], pattern(i));
	CHECK(lseek(11, 0, SEEK_CUR) == 100, "fd 11: offset %lld, want 100", (long long)lseek(11, 0, SEEK_CUR));
	CHECK(syscall(SYS_kcmp, me, me, KCMP_FILE, 10, 11) == 0, "fds 10/11 are two descriptions");
	CHECK(fcntl(10, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW), "fd 10: seals %#x", fcntl(10, F_GET_SEALS));
	CHECK(ftruncate(10, 10) == -1 && errno == EPERM, "fd 10: shrink seal not enforced");
	CHECK(fcntl(12, F_GET_SEALS) == F_SEAL_SEAL, "fd 12: seals %#x, want F_SEAL_SEAL", fcntl(12, F_GET_SEALS));
	CHECK(fcntl(12, F_GETFD) == FD_CLOEXEC && fcntl(10, F_GETFD) == 0, "FD_CLOEXEC of fds 10/12");
	CHECK_SYS(fstat(12, &sb));
	CHECK((sb.st_mode & 07777) == 0642, "fd 12: mode %o, want 642", sb.st_mode & 07777);
	CHECK(fcntl(12, F_GETFL) == fl, "fd 12: F_GETFL %#x, want %#x", fcntl(12, F_GETFL), fl);
	victim_pass();
}
