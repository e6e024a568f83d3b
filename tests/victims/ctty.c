/*
 * ctty: the layout of terminal multiplexers and launchers — a process of the tree opens
 * a pseudo-terminal, its child leads a session on the slave, which is that session's
 * controlling terminal and everyone's stdio.
 *
 *   root: session leader without a terminal; holds the master (fd 10) and a slave (fd 12)
 *   `-- A: setsid, opens the slave (it becomes the controlling terminal) as fds 0-2,
 *       |  opens /dev/tty (fd 11), makes C's group the foreground
 *       |-- C: its own process group, the foreground; reads stdin, answers on stdout
 *       `-- B: gave the terminal up (TIOCNOTTY)
 *
 * Before READY: the root fchowns the pts node to 1234:5678 mode 0640 (as root), writes
 * "ping\n" to the master (nobody reads it yet, its echo waits in the master) and puts
 * the slave in exclusive mode (TIOCEXCL).
 * After go: the root's fds still pair (fd 12 is the slave of fd 10); A's fd 0 and /dev/tty
 * are that slave, the session's terminal, foreground group C; the node keeps its owner
 * and mode; C has the terminal, reads "ping\n" and answers "pong\n"; B still has no
 * terminal (/dev/tty fails with ENXIO); the slave is still exclusive; the root reads
 * the echo and the answer
 * ("ping\r\npong\r\n") from the master.
 */
#include "victim.h"
#include "family.h"

#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

/* The log, kept by the children whose stdout is the terminal. */
#define LOG_FD 19

static char name[64];
static pid_t a_pid, c_pid;
/* B tells A it gave the terminal up. */
static int ready_pipe[2];
static struct stat node;

/* Failures of a child whose stdout is the terminal go to the log. */
static void to_log(void)
{
	FILE *log = fdopen(LOG_FD, "w");

	CHECK(log != NULL, "fdopen(log): %s", strerror(errno));
	setvbuf(log, NULL, _IOLBF, 0);
	stdout = log;
}

static void expect_sid(int fd, pid_t sid, const char *who)
{
	pid_t got = -1;

	CHECK(ioctl(fd, TIOCGSID, &got) == 0 && got == sid, "%s: TIOCGSID %d (%s), want %d", who,
	      got, strerror(errno), sid);
}

static void c_body(void)
{
	char buf[16] = { 0 };
	int t;
	ssize_t n;

	victim_wait_go();
	CHECK(getpgrp() == getpid(), "C: group %d, not its own", getpgrp());
	t = open("/dev/tty", O_RDWR);
	CHECK(t >= 0, "C: open /dev/tty: %s", strerror(errno));
	expect_sid(t, a_pid, "C");
	close(t);
	do
		n = read(0, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	CHECK(n == 5 && !strcmp(buf, "ping\n"), "C: read %zd bytes \"%s\" from the terminal (%s)", n,
	      buf, strerror(errno));
	CHECK(write(1, "pong\n", 5) == 5, "C: write to the terminal: %s", strerror(errno));
	exit(0);
}

static void b_body(void)
{
	CHECK_SYS(ioctl(0, TIOCNOTTY));
	CHECK(write(ready_pipe[1], "B", 1) == 1, "B: write the ready pipe");
	close(ready_pipe[0]);
	close(ready_pipe[1]);
	victim_wait_go();
	CHECK(open("/dev/tty", O_RDWR) == -1 && errno == ENXIO,
	      "B: /dev/tty opens (or fails with %s): it has a terminal again", strerror(errno));
	exit(0);
}

static void a_body(void)
{
	struct family f = { .n = 0 };
	struct stat st;
	pid_t fg;
	char b;

	a_pid = getpid();
	CHECK_SYS(dup2(1, LOG_FD));
	CHECK_SYS(pipe(ready_pipe));
	CHECK_SYS(setsid());
	victim_place(open(name, O_RDWR), 0); /* the session's controlling terminal now */
	CHECK_SYS(dup2(0, 1));
	CHECK_SYS(dup2(0, 2));
	to_log();
	victim_place(open("/dev/tty", O_RDWR), 11);
	c_pid = family_spawn(&f, c_body);
	CHECK_SYS(setpgid(c_pid, c_pid));
	family_spawn(&f, b_body);
	signal(SIGTTOU, SIG_IGN);
	CHECK_SYS(tcsetpgrp(11, c_pid));
	signal(SIGTTOU, SIG_DFL);
	CHECK(read(ready_pipe[0], &b, 1) == 1, "A: B never gave the terminal up");
	close(ready_pipe[0]);
	close(ready_pipe[1]);
	kill(getppid(), SIGUSR2);
	victim_wait_go();
	expect_sid(11, getpid(), "A: /dev/tty");
	expect_sid(0, getpid(), "A: stdin");
	fg = tcgetpgrp(0);
	CHECK(fg == c_pid, "A: foreground group %d, want C's %d", fg, c_pid);
	CHECK_SYS(fstat(0, &st));
	CHECK(st.st_uid == node.st_uid && st.st_gid == node.st_gid && st.st_mode == node.st_mode,
	      "A: pts node %d:%d %o, was %d:%d %o", st.st_uid, st.st_gid, st.st_mode, node.st_uid,
	      node.st_gid, node.st_mode);
	family_go(&f, "A");
	exit(0);
}

static volatile sig_atomic_t a_ready;

static void on_ready(int sig)
{
	(void)sig;
	a_ready = 1;
}

int main(void)
{
	struct family f = { .n = 0 };
	struct stat s12;
	int n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	signal(SIGUSR2, on_ready);
	victim_place(posix_openpt(O_RDWR | O_NOCTTY), 10);
	CHECK_SYS(grantpt(10));
	CHECK_SYS(unlockpt(10));
	snprintf(name, sizeof(name), "%s", ptsname(10));
	if (geteuid() == 0) {
		CHECK_SYS(chown(name, 1234, 5678));
		CHECK_SYS(chmod(name, 0640));
	}
	CHECK_SYS(stat(name, &node));
	victim_place(open(name, O_RDWR | O_NOCTTY), 12);
	a_pid = family_spawn(&f, a_body);
	while (!a_ready)
		usleep(1000);
	CHECK(write(10, "ping\n", 5) == 5, "root: write to master");
	CHECK_SYS(ioctl(12, TIOCEXCL));
	victim_ready();
	victim_wait_go();
	CHECK_SYS(ioctl(10, TIOCGPTN, &n));
	CHECK_SYS(fstat(12, &s12));
	CHECK(major(s12.st_rdev) - 136 == (unsigned)n / 256 && minor(s12.st_rdev) == (unsigned)n % 256,
	      "root: fd 12 is not the slave of fd 10 (pts %d)", n);
	expect_sid(10, a_pid, "root: master");
	CHECK(ioctl(12, TIOCGEXCL, &n) == 0 && n == 1, "root: the slave is no longer exclusive");
	family_go(&f, "root");
	victim_expect_read(10, "ping\r\npong\r\n", "root");
	victim_pass();
}
