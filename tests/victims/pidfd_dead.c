/*
 * pidfd_dead: pidfds of processes that exited and were reaped.
 *
 * Before READY: fds 10 and 11 two pidfds (two opens) of child A, fd 12 (PIDFD_NONBLOCK)
 * a pidfd of child B; A and B exited and were reaped; fd 13 a pidfd of the victim itself.
 * After go: fdinfo of 10-12 shows "Pid:\t-1"; 10 and 11 have one inode, 12 another, 13
 * a third; 12 keeps O_NONBLOCK; each dead pidfd polls readable at once and
 * pidfd_send_signal on it fails with ESRCH; 13 still names the victim.
 */
#include "victim.h"

#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif

static int pidfd_open(pid_t pid, unsigned flags)
{
	return syscall(SYS_pidfd_open, pid, flags);
}

static pid_t waiting_child(void)
{
	pid_t pid = fork();

	CHECK_SYS(pid);
	if (pid == 0) {
		pause();
		_exit(0);
	}
	return pid;
}

static void end(pid_t pid)
{
	CHECK_SYS(kill(pid, SIGKILL));
	CHECK(waitpid(pid, NULL, 0) == pid, "waitpid %d: %s", pid, strerror(errno));
}

static ino_t ino(int fd)
{
	struct stat st;

	CHECK_SYS(fstat(fd, &st));
	return st.st_ino;
}

static long fdinfo_pid(int fd)
{
	char path[64], line[256];
	long pid = -2;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	CHECK(f != NULL, "open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pid: %ld", &pid) == 1)
			break;
	fclose(f);
	return pid;
}

static void setup(void)
{
	pid_t a = waiting_child(), b = waiting_child();

	victim_place(pidfd_open(a, 0), 10);
	victim_place(pidfd_open(a, 0), 11);
	victim_place(pidfd_open(b, PIDFD_NONBLOCK), 12);
	victim_place(pidfd_open(getpid(), 0), 13);
	end(a);
	end(b);
}

static void verify(void)
{
	for (int fd = 10; fd <= 12; fd++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};

		CHECK(fdinfo_pid(fd) == -1, "fd %d: fdinfo Pid %ld, expected -1", fd, fdinfo_pid(fd));
		CHECK(poll(&p, 1, 0) == 1 && (p.revents & POLLIN), "fd %d does not poll readable", fd);
		CHECK(syscall(SYS_pidfd_send_signal, fd, 0, NULL, 0) == -1 && errno == ESRCH,
		      "fd %d: pidfd_send_signal did not fail with ESRCH: %s", fd, strerror(errno));
	}
	CHECK(ino(10) == ino(11), "pidfds of one process have inodes %lu and %lu",
	      (unsigned long)ino(10), (unsigned long)ino(11));
	CHECK(ino(10) != ino(12), "pidfds of two processes share inode %lu", (unsigned long)ino(10));
	CHECK(ino(13) != ino(10) && ino(13) != ino(12), "the live pidfd shares a dead one's inode");
	CHECK(fcntl(12, F_GETFL) & O_NONBLOCK, "fd 12 lost PIDFD_NONBLOCK");
	CHECK(fdinfo_pid(13) == getpid(), "fd 13 names pid %ld", fdinfo_pid(13));
}

int main(void)
{
	return victim_run(setup, verify);
}
