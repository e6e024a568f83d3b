/*
 * unsupported: holds at fd 10 a kind of file stasis refuses to dump, named by argv[1]:
 * "io_uring" (io_uring_setup), "userfaultfd", or "deleted_device" (a node of /dev/null's
 * device made in the work directory, opened, then unlinked: stasis reopens devices by
 * path). The dump must fail naming fd 10, the
 * pid and the kind, and leave this process running: after go it checks fd 10 is still
 * the same kind of file and passes.
 */
#include "victim.h"

#include <fcntl.h>
#include <linux/io_uring.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

static int make(const char *kind)
{
	if (!strcmp(kind, "io_uring")) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		return syscall(SYS_io_uring_setup, 4, &p);
	}
	if (!strcmp(kind, "userfaultfd"))
		return syscall(SYS_userfaultfd, O_CLOEXEC);
	if (!strcmp(kind, "deleted_device")) {
		int fd;

		if (mknod("null-node", S_IFCHR | 0600, makedev(1, 3)) != 0)
			return -1;
		fd = open("null-node", O_RDWR);
		CHECK_SYS(fd);
		CHECK_SYS(unlink("null-node"));
		return fd;
	}
	victim_fail("unknown kind %s", kind);
}

int main(int argc, char **argv)
{
	char want[4096], got[4096];
	ssize_t n;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	CHECK(argc == 2, "usage: unsupported io_uring|userfaultfd|deleted_device");
	fd = make(argv[1]);
	if (fd < 0)
		victim_skip(strerror(errno));
	victim_place(fd, 10);
	n = readlink("/proc/self/fd/10", want, sizeof(want) - 1);
	CHECK_SYS(n);
	want[n] = 0;
	victim_ready();
	victim_wait_go();
	n = readlink("/proc/self/fd/10", got, sizeof(got) - 1);
	CHECK_SYS(n);
	got[n] = 0;
	CHECK(!strcmp(got, want), "fd 10 is %s, want %s", got, want);
	victim_pass();
}
