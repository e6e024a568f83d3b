/*
 * pty_hangup: slaves of a pseudo-terminal whose master was closed (hung up, their
 * /dev/pts node gone), and a console and a virtual console opened through device nodes
 * the process made (as root; skipped otherwise).
 *
 * Before READY: fd 10 a slave O_RDWR, fd 11 the slave again O_RDONLY | O_NONBLOCK, then
 * the master closed. As root: fd 12 a node of /dev/console (5:1) made in the working
 * directory, and if this machine has virtual consoles, fd 13 one of /dev/tty5 (4:5),
 * opened without O_NOCTTY, so that it becomes the session's controlling terminal.
 * After go: fds 10 and 11 are pts slaves still hung up (read gives end of file, write
 * fails with EIO) with their flags; fds 12 and 13 reach the same devices, and tty5 is
 * still the controlling terminal.
 *
 * With "ns" (CRIU's vt in its ns flavor), the process first takes a mount namespace of
 * its own and works in a directory "b" bound from "a" there: the nodes' paths exist only
 * in its namespace (the restorer's "b" is empty), so the virtual console must be opened
 * through the tree's root; skipped without virtual consoles or without root.
 */
#include "victim.h"

#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static int has_vt;

static void expect_rdev(int fd, unsigned maj, unsigned min)
{
	struct stat st;

	CHECK_SYS(fstat(fd, &st));
	CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == maj && minor(st.st_rdev) == min,
	      "fd %d is %u:%u, want %u:%u", fd, major(st.st_rdev), minor(st.st_rdev), maj, min);
}

static void expect_hung_up(int fd, int flags)
{
	char c;
	struct stat st;

	CHECK_SYS(fstat(fd, &st));
	CHECK(major(st.st_rdev) >= 136 && major(st.st_rdev) <= 143, "fd %d is not a pts", fd);
	CHECK((fcntl(fd, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == flags, "fd %d: F_GETFL %#x", fd,
	      fcntl(fd, F_GETFL));
	CHECK(read(fd, &c, 1) == 0, "fd %d: read does not give end of file (%s)", fd,
	      strerror(errno));
	if ((flags & O_ACCMODE) == O_RDWR)
		CHECK(write(fd, "x", 1) == -1 && errno == EIO, "fd %d: write did not fail with EIO",
		      fd);
}

/* The controlling terminal's device number (stat field 7), 0 for none. */
static unsigned ctty(void)
{
	unsigned nr = 0;
	FILE *f = fopen("/proc/self/stat", "r");

	CHECK(f != NULL, "open /proc/self/stat");
	CHECK(fscanf(f, "%*d (%*[^)]) %*c %*d %*d %*d %u", &nr) == 1, "parse /proc/self/stat");
	fclose(f);
	return nr;
}

static void devices(void)
{
	int fd;

	if (geteuid() != 0)
		return;
	unlink("console");
	CHECK_SYS(mknod("console", S_IFCHR | 0600, makedev(5, 1)));
	victim_place(open("console", O_RDONLY), 12);
	unlink("vt");
	CHECK_SYS(mknod("vt", S_IFCHR | 0600, makedev(4, 5)));
	fd = open("vt", O_RDONLY);
	if (fd < 0)
		return; /* no virtual consoles here */
	victim_place(fd, 13);
	has_vt = ctty() == ((4 << 8) | 5);
}

/* A mount namespace of its own, working in "b", a bind of "a" only it sees. */
static void own_namespace(void)
{
	if (geteuid() != 0)
		victim_skip("making device nodes needs root");
	if (unshare(CLONE_NEWNS) != 0)
		victim_skip("unshare(CLONE_NEWNS) is not permitted");
	CHECK_SYS(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
	CHECK(mkdir("a", 0755) == 0 || errno == EEXIST, "mkdir a: %s", strerror(errno));
	CHECK(mkdir("b", 0755) == 0 || errno == EEXIST, "mkdir b: %s", strerror(errno));
	CHECK_SYS(mount("a", "b", NULL, MS_BIND, NULL));
	CHECK_SYS(chdir("b"));
}

int main(int argc, char **argv)
{
	int ns = argc > 1 && !strcmp(argv[1], "ns");
	int master;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	if (ns)
		own_namespace();
	master = posix_openpt(O_RDWR | O_NOCTTY);
	CHECK_SYS(master);
	CHECK_SYS(grantpt(master));
	CHECK_SYS(unlockpt(master));
	victim_place(open(ptsname(master), O_RDWR | O_NOCTTY), 10);
	victim_place(open(ptsname(master), O_RDONLY | O_NOCTTY | O_NONBLOCK), 11);
	close(master);
	devices();
	if (ns && !has_vt)
		victim_skip("no virtual console (tty5) here, or it is not the session's terminal");
	victim_ready();
	victim_wait_go();
	expect_hung_up(10, O_RDWR);
	expect_hung_up(11, O_RDONLY | O_NONBLOCK);
	if (geteuid() == 0)
		expect_rdev(12, 5, 1);
	if (has_vt) {
		expect_rdev(13, 4, 5);
		CHECK(ctty() == ((4 << 8) | 5), "tty5 is no longer the controlling terminal (%#x)",
		      ctty());
	}
	victim_pass();
}
