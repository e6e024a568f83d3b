/*
 * unsupported: holds at fd 10 a kind of file stasis refuses to dump, named by argv[1]:
 * "io_uring" (io_uring_setup) or "userfaultfd". The dump must fail naming fd 10, the
 * pid and the kind, and leave this process running: after go it checks fd 10 is still
 * the same kind of file and passes.
 */
#include "victim.h"

#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/syscall.h>

static int make(const char *kind)
{
	if (!strcmp(kind, "io_uring")) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		return syscall(SYS_io_uring_setup, 4, &p);
	}
	if (!strcmp(kind, "userfaultfd"))
		return syscall(SYS_userfaultfd, O_CLOEXEC);
	victim_fail("unknown kind %s", kind);
}

int main(int argc, char **argv)
{
	char want[64], got[64];
	ssize_t n;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	CHECK(argc == 2, "usage: unsupported io_uring|userfaultfd");
	fd = make(argv[1]);
	if (fd < 0)
		victim_skip(strerror(errno));
	victim_place(fd, 10);
	snprintf(want, sizeof(want), "anon_inode:[%s]", argv[1]);
	victim_ready();
	victim_wait_go();
	n = readlink("/proc/self/fd/10", got, sizeof(got) - 1);
	CHECK_SYS(n);
	got[n] = 0;
	CHECK(!strcmp(got, want), "fd 10 is %s, want %s", got, want);
	victim_pass();
}
