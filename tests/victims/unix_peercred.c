/*
 * unix_peercred: SO_PEERCRED of unix sockets (the pid, uid and gid of the task that made
 * the connection).
 *
 * Default mode, before READY: fds 10/11 a stream socketpair, 12/13 a datagram socketpair,
 * 14 a listener bound to "l.sock" (in a fresh directory), 15 a client connected to it and 16 the connection
 * 14 accepted, 17 an unconnected datagram socket. After go: SO_PEERCRED of 10-16 gives
 * this pid, euid and egid; of 17, none (pid 0).
 *
 * Mode "user": the task sets its uid and gid to 4321 first; fds 10/11 a stream and 12/13
 * a datagram socketpair: SO_PEERCRED gives this pid and 4321 (the restore makes them with
 * the process's effective ids, not the restorer's).
 *
 * Mode "dead", refused at dump (the task runs on and checks the same after go): fd 10 is
 * one end of a socketpair made by a child that set its ids to 4321 and exited (zdtm
 * sock_peercred): SO_PEERCRED gives the child's pid and ids.
 */
#include "victim.h"

#include <grp.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "unix_names.h"

static pid_t want_pid;
static uid_t want_uid;
static gid_t want_gid;

static void expect_cred(int fd, pid_t pid, uid_t uid, gid_t gid)
{
	struct ucred c;
	socklen_t len = sizeof(c);

	CHECK_SYS(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len));
	CHECK(c.pid == pid && c.uid == uid && c.gid == gid,
	      "fd %d: SO_PEERCRED pid %d uid %d gid %d, expected %d %d %d", fd, c.pid, (int)c.uid,
	      (int)c.gid, pid, (int)uid, (int)gid);
}

static void pair_at(int type, int a, int b)
{
	int sk[2];

	CHECK_SYS(socketpair(AF_UNIX, type, 0, sk));
	victim_place(sk[0], a);
	victim_place(sk[1], b);
}

static void setup(void)
{
	char dir[] = "unix_peercred-XXXXXX";

	want_pid = getpid(), want_uid = geteuid(), want_gid = getegid();
	pair_at(SOCK_STREAM, 10, 11);
	pair_at(SOCK_DGRAM, 12, 13);
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	victim_place(bound(SOCK_STREAM, "l.sock"), 14);
	CHECK_SYS(listen(14, 4));
	victim_place(connected(SOCK_STREAM, "l.sock"), 15);
	victim_place(accept(14, NULL, NULL), 16);
	victim_place(socket(AF_UNIX, SOCK_DGRAM, 0), 17);
}

static void verify(void)
{
	for (int fd = 10; fd <= 16; fd++)
		expect_cred(fd, want_pid, want_uid, want_gid);
	expect_cred(17, 0, -1, -1);
}

static void setup_user(void)
{
	CHECK_SYS(setgroups(0, NULL));
	CHECK_SYS(setresgid(4321, 4321, 4321));
	CHECK_SYS(setresuid(4321, 4321, 4321));
	want_pid = getpid(), want_uid = 4321, want_gid = 4321;
	pair_at(SOCK_STREAM, 10, 11);
	pair_at(SOCK_DGRAM, 12, 13);
}

static void verify_user(void)
{
	for (int fd = 10; fd <= 13; fd++)
		expect_cred(fd, want_pid, want_uid, want_gid);
}

static void verify_pair(void)
{
	expect_cred(10, want_pid, want_uid, want_gid);
}

static int child_pair(void *unused)
{
	(void)unused;
	if (setresgid(4321, 4321, 4321) || setresuid(4321, 4321, 4321))
		return 1;
	pair_at(SOCK_STREAM, 10, 11);
	return 0;
}

static void setup_dead(void)
{
	static char stack[64 << 10];
	int status;

	want_pid = clone(child_pair, stack + sizeof(stack), CLONE_FILES | SIGCHLD, NULL);
	CHECK_SYS(want_pid);
	CHECK_SYS(waitpid(want_pid, &status, 0));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed: %d", status);
	close(11);
	want_uid = 4321, want_gid = 4321;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	if (!strcmp(mode, "user"))
		return victim_run(setup_user, verify_user);
	if (!strcmp(mode, "dead"))
		return victim_run(setup_dead, verify_pair);
	return victim_run(setup, verify);
}
