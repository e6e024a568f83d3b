/*
 * unix_peercred: SO_PEERCRED of unix sockets (the pid, uid and gid of the task that made
 * the connection).
 *
 * Default mode, before READY: fds 10/11 a stream socketpair, 12/13 a datagram socketpair,
 * 14 a listener bound to "l.sock" (in a fresh directory), 15 a client connected to it and 16 the connection
 * 14 accepted, 17 an unconnected datagram socket, 18/19 two datagram sockets (abstract
 * names) connected to each other with connect. After go: SO_PEERCRED of 10-16 gives this
 * pid, euid and egid; of 17-19, none (pid 0, ids -1: a datagram connect sets none).
 *
 * Mode "changed" (root): as root, 10/11 a stream socketpair, 14 a listener, 15 its client
 * and 16 the accepted end; a thread that set its own ids (raw setresgid/setresuid, that
 * thread only) to 1234 makes 12/13, a datagram socketpair, and exits; then the process
 * sets all its ids to 4321. After go: 10, 11, 14-16 give this pid and 0, 12/13 this pid
 * and 1234 (the kernel's record of the caller at the time, not the process's ids now).
 *
 * Mode "moved" (root), refused at dump: a child makes a stream socketpair, the process
 * takes both ends (pidfd_getfd) at 10/11, the child closes its own and sleeps: the
 * sockets name the child's pid, which the restore cannot give them. Mode "mixed" (root),
 * refused at dump: 14 a listener made as root, 15 its client connected with effective
 * ids 4321, 16 the accepted end: 15 gives 0, 16 gives 4321 (one socketpair cannot).
 * Both check the same after go.
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
#include <pthread.h>
#include <signal.h>
#include <sys/syscall.h>
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

/* fds `a` and `b`: datagram sockets bound to abstract names, connected to each other. */
static void dgram_connected(int a, int b)
{
	struct sockaddr_un sa, sb;
	char na[64], nb[64];
	socklen_t la, lb;

	snprintf(na, sizeof(na), "peercred-a-%d", getpid());
	snprintf(nb, sizeof(nb), "peercred-b-%d", getpid());
	la = un_abstract(&sa, na), lb = un_abstract(&sb, nb);
	victim_place(socket(AF_UNIX, SOCK_DGRAM, 0), a);
	victim_place(socket(AF_UNIX, SOCK_DGRAM, 0), b);
	CHECK_SYS(bind(a, (struct sockaddr *)&sa, la));
	CHECK_SYS(bind(b, (struct sockaddr *)&sb, lb));
	CHECK_SYS(connect(a, (struct sockaddr *)&sb, lb));
	CHECK_SYS(connect(b, (struct sockaddr *)&sa, la));
}

static void listener_client_accepted(void)
{
	char dir[] = "unix_peercred-XXXXXX";

	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	victim_place(bound(SOCK_STREAM, "l.sock"), 14);
	CHECK_SYS(listen(14, 4));
	victim_place(connected(SOCK_STREAM, "l.sock"), 15);
	victim_place(accept(14, NULL, NULL), 16);
}

static void setup(void)
{
	want_pid = getpid(), want_uid = geteuid(), want_gid = getegid();
	pair_at(SOCK_STREAM, 10, 11);
	pair_at(SOCK_DGRAM, 12, 13);
	listener_client_accepted();
	victim_place(socket(AF_UNIX, SOCK_DGRAM, 0), 17);
	dgram_connected(18, 19);
}

static void verify(void)
{
	for (int fd = 10; fd <= 16; fd++)
		expect_cred(fd, want_pid, want_uid, want_gid);
	for (int fd = 17; fd <= 19; fd++)
		expect_cred(fd, 0, -1, -1);
}

static void need_root(void)
{
	if (geteuid() != 0) {
		victim_skip("needs root (changes its ids)");
		exit(0);
	}
}

/* A thread that sets its own ids to 1234 (raw calls: glibc would set every thread's)
 * and makes a datagram socketpair at 12/13. */
static void *thread_pair(void *unused)
{
	(void)unused;
	if (syscall(SYS_setresgid, 1234, 1234, 1234) || syscall(SYS_setresuid, 1234, 1234, 1234))
		return "setresuid";
	pair_at(SOCK_DGRAM, 12, 13);
	return NULL;
}

static void setup_changed(void)
{
	pthread_t t;
	void *failed;

	need_root();
	want_pid = getpid();
	pair_at(SOCK_STREAM, 10, 11);
	listener_client_accepted();
	CHECK(pthread_create(&t, NULL, thread_pair, NULL) == 0, "pthread_create");
	CHECK(pthread_join(t, &failed) == 0 && failed == NULL, "thread failed");
	CHECK_SYS(setgroups(0, NULL));
	CHECK_SYS(setresgid(4321, 4321, 4321));
	CHECK_SYS(setresuid(4321, 4321, 4321));
}

static void verify_changed(void)
{
	for (int fd = 10; fd <= 16; fd++)
		if (fd != 12 && fd != 13)
			expect_cred(fd, want_pid, 0, 0);
	expect_cred(12, want_pid, 1234, 1234);
	expect_cred(13, want_pid, 1234, 1234);
	CHECK(geteuid() == 4321 && getegid() == 4321, "ids %d %d", (int)geteuid(), (int)getegid());
}

static pid_t helper;

static void setup_moved(void)
{
	int go[2], done[2], pidfd;
	char c;

	need_root();
	CHECK_SYS(pipe(go));
	CHECK_SYS(pipe(done));
	helper = fork();
	CHECK_SYS(helper);
	if (helper == 0) {
		int sk[2];

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sk) || dup2(sk[0], 10) < 0 ||
		    dup2(sk[1], 11) < 0 || write(done[1], "x", 1) != 1 || read(go[0], &c, 1) != 1)
			_exit(1);
		close(10), close(11), close(sk[0]), close(sk[1]);
		for (;;)
			pause();
	}
	CHECK(read(done[0], &c, 1) == 1, "helper failed");
	pidfd = syscall(SYS_pidfd_open, helper, 0);
	CHECK_SYS(pidfd);
	victim_place(syscall(SYS_pidfd_getfd, pidfd, 10, 0), 10);
	victim_place(syscall(SYS_pidfd_getfd, pidfd, 11, 0), 11);
	CHECK(write(go[1], "x", 1) == 1, "write");
	close(pidfd), close(go[0]), close(go[1]), close(done[0]), close(done[1]);
	want_pid = helper, want_uid = 0, want_gid = 0;
}

static void verify_moved(void)
{
	expect_cred(10, want_pid, 0, 0);
	expect_cred(11, want_pid, 0, 0);
	kill(helper, SIGKILL);
	waitpid(helper, NULL, 0);
}

static void setup_mixed(void)
{
	struct sockaddr_un a;
	char name[64];
	socklen_t l;

	need_root();
	want_pid = getpid();
	snprintf(name, sizeof(name), "peercred-l-%d", getpid());
	l = un_abstract(&a, name);
	victim_place(socket(AF_UNIX, SOCK_STREAM, 0), 14);
	CHECK_SYS(bind(14, (struct sockaddr *)&a, l));
	CHECK_SYS(listen(14, 4));
	CHECK_SYS(setresgid(-1, 4321, -1));
	CHECK_SYS(setresuid(-1, 4321, -1));
	victim_place(socket(AF_UNIX, SOCK_STREAM, 0), 15);
	CHECK_SYS(connect(15, (struct sockaddr *)&a, l));
	CHECK_SYS(setresuid(-1, 0, -1));
	CHECK_SYS(setresgid(-1, 0, -1));
	victim_place(accept(14, NULL, NULL), 16);
}

static void verify_mixed(void)
{
	expect_cred(14, want_pid, 0, 0);
	expect_cred(15, want_pid, 0, 0);
	expect_cred(16, want_pid, 4321, 4321);
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
	if (!strcmp(mode, "changed"))
		return victim_run(setup_changed, verify_changed);
	if (!strcmp(mode, "moved"))
		return victim_run(setup_moved, verify_moved);
	if (!strcmp(mode, "mixed"))
		return victim_run(setup_mixed, verify_mixed);
	if (!strcmp(mode, "dead"))
		return victim_run(setup_dead, verify_pair);
	return victim_run(setup, verify);
}
