/*
 * A process group whose leader is gone: L led a group of its own, made two children of
 * the root in it (clone(CLONE_PARENT)), then exited and was reaped. Its group lives on
 * with a live member M and a zombie member Z (exited with 5), and no process has pid L.
 *
 * After go: M and Z are still in group L, Z is still a zombie of the root with its
 * status, no process has pid L (the helper the restore made to lead the group is gone,
 * and was never the root's child), and M checks its own group and parent.
 */
#include "victim.h"

#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static pid_t root_pid;

static pid_t clone_parent(void)
{
	fflush(stdout);
	return syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
}

static void member(pid_t leader)
{
	victim_wait_go();
	CHECK(getpgrp() == leader, "M: group %d, not %d", getpgrp(), leader);
	CHECK(getppid() == root_pid, "M: parent %d, not the root %d", getppid(), root_pid);
	exit(0);
}

/* The leader: its group, its two children of the root (pids through `out`), its exit. */
static void leader(int out)
{
	pid_t kids[2];

	CHECK_SYS(setpgid(0, 0));
	kids[0] = clone_parent();
	CHECK_SYS(kids[0]);
	if (kids[0] == 0)
		member(getpgrp());
	kids[1] = clone_parent();
	CHECK_SYS(kids[1]);
	if (kids[1] == 0)
		_exit(5);
	CHECK(write(out, kids, sizeof(kids)) == sizeof(kids), "write pids");
	_exit(0);
}

int main(void)
{
	pid_t l, kids[2];
	siginfo_t si;
	int p[2], st;

	victim_install_go();
	root_pid = getpid();
	CHECK_SYS(pipe(p));
	fflush(stdout);
	l = fork();
	CHECK_SYS(l);
	if (l == 0)
		leader(p[1]);
	CHECK(read(p[0], kids, sizeof(kids)) == sizeof(kids), "read pids");
	CHECK(waitpid(l, &st, 0) == l && WIFEXITED(st), "leader %d: status %#x", l, st);
	CHECK_SYS(waitid(P_PID, kids[1], &si, WEXITED | WNOWAIT));

	victim_ready();
	victim_wait_go();
	CHECK(getpgid(kids[0]) == l, "M %d is in group %d, not %d", kids[0], getpgid(kids[0]), l);
	CHECK(getpgid(kids[1]) == l, "Z %d is in group %d, not %d", kids[1], getpgid(kids[1]), l);
	CHECK(kill(l, 0) == -1 && errno == ESRCH, "pid %d (the old leader) exists", l);
	CHECK(waitpid(l, &st, WNOHANG) == -1 && errno == ECHILD, "pid %d is a child of the root", l);
	CHECK(waitpid(kids[1], &st, WNOHANG) == kids[1], "Z %d is not waitable", kids[1]);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5, "Z: status %#x, expected exit 5", st);
	do {
		kill(kids[0], SIGUSR1);
	} while (waitpid(kids[0], &st, WNOHANG) == 0 && usleep(10000) == 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "M failed: status %#x", st);
	victim_pass();
}
