/*
 * devpts_pty: a pseudo-terminal of a devpts instance of the tree's own, as in a
 * container. The victim unshares its mount namespace (private), mounts a new devpts over
 * /dev/pts (newinstance, ptmxmode=0666) and makes /dev/ptmx its ptmx (a bind, unless
 * /dev/ptmx is already the symlink pts/ptmx, as in a runc container), then:
 *
 *   root: master (fd 10, from /dev/ptmx) and its slave (fd 11, O_RDWR|O_NOCTTY); as root
 *   |     the pts node is chowned 1234:5678 mode 0640
 *   `-- A: setsid, the slave as fds 0-2: its controlling terminal
 *
 * After go: the slave is in the tree's devpts (its st_dev is /dev/pts's, not the host's
 * instance); ttyname of the root's fd 11 and of A's fd 0 is /dev/pts/N, N the master's
 * TIOCGPTN, and stat of that path is the fd's pty (st_dev, st_ino, st_rdev); the node
 * keeps its owner and mode; A leads the terminal's session, its /dev/tty is the slave; A
 * reads "hello\n" written to the master and answers "world\n", which the root reads
 * from the master after the echo.
 *
 * With "twice", the root first opens a pty of the host's devpts (master at fd 12, pts H)
 * and gets pts H of its own devpts too (opening masters there until H comes): stasis
 * keys ptys by number and must refuse the dump naming fds 10 and 12 (tests/failure.rs);
 * after go the host pair still pairs.
 *
 * With "console" (CRIU's pty-console), the root also binds the slave's node over a file
 * "console" of its working directory (as a container's /dev/console); after go that
 * path is the pty again (same device, on the tree's devpts) and a write to it reaches
 * the master.
 */
#include "victim.h"
#include "family.h"

#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

/* The log, kept by A whose stdout is the terminal. */
#define LOG_FD 19

static dev_t host_pts;
static struct stat node;
static int index_at_setup;
/* A tells the root its terminal is set up. */
static int ready_pipe[2];

/* fd `fd` is pts `n` of the tree's devpts, named by ttyname and found at that path. */
static void expect_named(int fd, const char *who)
{
	struct stat st, at;
	char want[32], *name = ttyname(fd);
	int n;

	CHECK_SYS(ioctl(10, TIOCGPTN, &n));
	CHECK(n == index_at_setup, "%s: the master is pts %d, was pts %d", who, n, index_at_setup);
	snprintf(want, sizeof(want), "/dev/pts/%d", n);
	CHECK(name != NULL, "%s: ttyname(%d): %s", who, fd, strerror(errno));
	CHECK(!strcmp(name, want), "%s: ttyname(%d) is %s, want %s", who, fd, name, want);
	CHECK_SYS(fstat(fd, &st));
	CHECK(stat(name, &at) == 0, "%s: stat %s: %s", who, name, strerror(errno));
	CHECK(st.st_dev == at.st_dev && st.st_ino == at.st_ino && st.st_rdev == at.st_rdev,
	      "%s: fd %d (dev %#lx ino %lu rdev %#lx) is not %s (dev %#lx ino %lu rdev %#lx)", who,
	      fd, (long)st.st_dev, (long)st.st_ino, (long)st.st_rdev, name, (long)at.st_dev,
	      (long)at.st_ino, (long)at.st_rdev);
	CHECK(st.st_dev != host_pts, "%s: fd %d is a pty of the host's devpts", who, fd);
	CHECK(st.st_uid == node.st_uid && st.st_gid == node.st_gid && st.st_mode == node.st_mode,
	      "%s: pts node %d:%d %o, was %d:%d %o", who, st.st_uid, st.st_gid, st.st_mode,
	      node.st_uid, node.st_gid, node.st_mode);
}

/* The device of fd `fd` as TIOCGDEV encodes it. */
static unsigned int pts_dev(int fd)
{
	struct stat st;

	CHECK_SYS(fstat(fd, &st));
	return (minor(st.st_rdev) & 0xff) | (major(st.st_rdev) << 8) |
	       ((minor(st.st_rdev) & ~0xffu) << 12);
}

static void a_body(void)
{
	char buf[16] = { 0 };
	unsigned int dev = 0;
	ssize_t n;
	FILE *log;
	int tty;

	CHECK_SYS(dup2(1, LOG_FD));
	close(ready_pipe[0]);
	CHECK_SYS(setsid());
	CHECK_SYS(dup2(11, 0));
	CHECK_SYS(ioctl(0, TIOCSCTTY, 0));
	CHECK_SYS(dup2(0, 1));
	CHECK_SYS(dup2(0, 2));
	log = fdopen(LOG_FD, "w");
	CHECK(log != NULL, "fdopen(log): %s", strerror(errno));
	setvbuf(log, NULL, _IOLBF, 0);
	stdout = log;
	CHECK(write(ready_pipe[1], "A", 1) == 1, "A: write the ready pipe");
	close(ready_pipe[1]);
	victim_wait_go();
	expect_named(0, "A");
	CHECK(tcgetsid(0) == getpid(), "A: the terminal's session is %d", tcgetsid(0));
	tty = open("/dev/tty", O_RDWR);
	CHECK(tty >= 0, "A: open /dev/tty: %s", strerror(errno));
	CHECK(ioctl(tty, TIOCGDEV, &dev) == 0 && dev == pts_dev(0),
	      "A: /dev/tty is device %#x, not its stdin (%s)", dev, strerror(errno));
	close(tty);
	do
		n = read(0, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	CHECK(n == 6 && !strcmp(buf, "hello\n"), "A: read %zd bytes \"%s\" (%s)", n, buf,
	      strerror(errno));
	CHECK(write(1, "world\n", 6) == 6, "A: write to the terminal: %s", strerror(errno));
	exit(0);
}

/* Its own mount namespace with a new devpts at /dev/pts reached by /dev/ptmx. */
static void own_devpts(void)
{
	struct stat st;

	CHECK_SYS(stat("/dev/pts", &st));
	host_pts = st.st_dev;
	if (unshare(CLONE_NEWNS) != 0)
		victim_skip("unshare(CLONE_NEWNS) is not permitted");
	CHECK_SYS(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL));
	if (mount("devpts", "/dev/pts", "devpts", 0, "newinstance,ptmxmode=0666,mode=0620") != 0)
		victim_skip("mounting a devpts instance is not permitted");
	CHECK_SYS(lstat("/dev/ptmx", &st));
	if (!S_ISLNK(st.st_mode))
		CHECK_SYS(mount("/dev/pts/ptmx", "/dev/ptmx", NULL, MS_BIND, NULL));
	CHECK_SYS(stat("/dev/pts", &st));
	CHECK(st.st_dev != host_pts, "/dev/pts is still the host's devpts");
}

/* A master of the tree's devpts at fd 10 with pts number `want` (or the first one when
 * `want` is -1): lower ones are opened and closed again. */
static void master_numbered(int want)
{
	int extra[256], n = 0;

	for (;;) {
		victim_place(open("/dev/ptmx", O_RDWR | O_NOCTTY), 10);
		CHECK_SYS(ioctl(10, TIOCGPTN, &index_at_setup));
		if (want < 0 || index_at_setup == want)
			break;
		CHECK(index_at_setup < want && n < 256, "pts %d of the own devpts never came", want);
		extra[n++] = dup(10);
		close(10);
	}
	while (n > 0)
		close(extra[--n]);
	CHECK_SYS(unlockpt(10));
}

/* The slave's node `name` bound over the file "console" of the working directory. */
static void bind_console(const char *name)
{
	int fd = open("console", O_CREAT | O_RDONLY, 0644);

	CHECK_SYS(fd);
	close(fd);
	CHECK_SYS(mount(name, "console", NULL, MS_BIND, NULL));
}

/* "console" is the pty of fd 11 again, and carries data to the master. */
static void expect_console(void)
{
	struct stat st, at;
	int fd;

	CHECK_SYS(fstat(11, &st));
	CHECK(stat("console", &at) == 0, "root: stat console: %s", strerror(errno));
	CHECK(st.st_dev == at.st_dev && st.st_ino == at.st_ino && st.st_rdev == at.st_rdev,
	      "root: console (dev %#lx ino %lu rdev %#lx) is not the pty (dev %#lx ino %lu rdev "
	      "%#lx)", (long)at.st_dev, (long)at.st_ino, (long)at.st_rdev, (long)st.st_dev,
	      (long)st.st_ino, (long)st.st_rdev);
	fd = open("console", O_RDWR | O_NOCTTY);
	CHECK(fd >= 0, "root: open console: %s", strerror(errno));
	CHECK(write(fd, "c", 1) == 1, "root: write to console: %s", strerror(errno));
	close(fd);
	victim_expect_read(10, "c", "root");
}

int main(int argc, char **argv)
{
	struct family f = { .n = 0 };
	int twice = argc > 1 && !strcmp(argv[1], "twice"), host_index = -1;
	int console = argc > 1 && !strcmp(argv[1], "console");
	char name[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	if (twice) {
		victim_place(posix_openpt(O_RDWR | O_NOCTTY), 12);
		CHECK_SYS(unlockpt(12));
		CHECK_SYS(ioctl(12, TIOCGPTN, &host_index));
		if (host_index >= 256)
			victim_skip("the host's next free pts number is above 255");
	}
	own_devpts();
	master_numbered(host_index);
	snprintf(name, sizeof(name), "/dev/pts/%d", index_at_setup);
	if (geteuid() == 0) {
		CHECK_SYS(chown(name, 1234, 5678));
		CHECK_SYS(chmod(name, 0640));
	}
	CHECK_SYS(stat(name, &node));
	victim_place(open(name, O_RDWR | O_NOCTTY), 11);
	if (console)
		bind_console(name);
	CHECK_SYS(pipe(ready_pipe));
	family_spawn(&f, a_body);
	CHECK(read(ready_pipe[0], name, 1) == 1, "root: A never set its terminal up");
	close(ready_pipe[0]);
	close(ready_pipe[1]);
	victim_ready();
	victim_wait_go();
	expect_named(11, "root");
	if (console)
		expect_console();
	if (twice) {
		int n;

		CHECK_SYS(ioctl(12, TIOCGPTN, &n));
		CHECK(n == host_index, "root: the host's master is pts %d, was %d", n, host_index);
	}
	CHECK(write(10, "hello\n", 6) == 6, "root: write to master");
	family_go(&f, "root");
	victim_expect_read(10, "hello\r\nworld\r\n", "root");
	victim_pass();
}
