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
 * Mode "moved" (root): a child makes a stream socketpair, the process takes both ends
 * (pidfd_getfd) at 10/11, the child closes its own and sleeps: the sockets name the
 * child's pid (the restore makes the pair in the child). Mode "mixed" (root): 14 a
 * listener made as root, 15 its client connected with effective ids 4321, 16 the
 * accepted end: 15 gives 0, 16 gives 4321 (one socketpair cannot). Both check the same
 * after go.
 *
 * Mode "forked" (root): 14 a listener bound to "l.sock" (in a fresh directory, kept),
 * 17 one bound to an abstract name; a child closes both, sets all its ids to 4321 and
 * connects to each (its 15 and 18, "hi" sent on 15 before READY); the process accepts at 16 and 19
 * and closes 17. After go: 16 and 19 give the child's pid and 4321, the child's 15 and
 * 18 this pid and 0, 14 this pid and 0; 16 and 19 are named as their listeners; "hi"
 * is read on 16, and data flows both ways on both connections (the child checks its
 * side and exits 0); 14 still accepts a new connection.
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
#include <stddef.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "family.h"
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

static struct family kids;
static pid_t parent;

static void expect_name(int fd, const char *want, socklen_t want_len)
{
	struct sockaddr_un a;
	socklen_t l = sizeof(a);

	CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &l));
	CHECK(l == want_len && !memcmp(a.sun_path, want, want_len - offsetof(struct sockaddr_un, sun_path)),
	      "fd %d: getsockname gives another name (%d bytes, want %d)", fd, (int)l, (int)want_len);
}

/* The child of "forked": connects as 4321 to both listeners, then checks its ends. */
static void forked_child(void)
{
	struct sockaddr_un a;
	char name[64];
	socklen_t l;

	close(14), close(17);
	CHECK_SYS(setgroups(0, NULL));
	CHECK_SYS(setresgid(4321, 4321, 4321));
	CHECK_SYS(setresuid(4321, 4321, 4321));
	victim_place(connected(SOCK_STREAM, "l.sock"), 15);
	snprintf(name, sizeof(name), "peercred-f-%d", parent);
	l = un_abstract(&a, name);
	victim_place(socket(AF_UNIX, SOCK_STREAM, 0), 18);
	CHECK_SYS(connect(18, (struct sockaddr *)&a, l));
	CHECK(write(15, "hi", 2) == 2, "child: write: %s", strerror(errno));
	victim_wait_go();
	expect_cred(15, parent, 0, 0);
	expect_cred(18, parent, 0, 0);
	victim_expect_read(15, "ping", "child");
	victim_expect_read(18, "ping", "child");
	CHECK(write(15, "pong", 4) == 4 && write(18, "pong", 4) == 4, "child: write: %s",
	      strerror(errno));
}

static void setup_forked(void)
{
	char dir[] = "unix_peercred-XXXXXX", name[64];
	struct sockaddr_un a;
	socklen_t l;

	need_root();
	parent = getpid();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chmod(dir, 0755));
	CHECK_SYS(chdir(dir));
	victim_place(bound(SOCK_STREAM, "l.sock"), 14);
	CHECK_SYS(chmod("l.sock", 0777));
	CHECK_SYS(listen(14, 4));
	snprintf(name, sizeof(name), "peercred-f-%d", parent);
	l = un_abstract(&a, name);
	victim_place(socket(AF_UNIX, SOCK_STREAM, 0), 17);
	CHECK_SYS(bind(17, (struct sockaddr *)&a, l));
	CHECK_SYS(listen(17, 4));
	want_pid = family_spawn(&kids, forked_child);
	victim_place(accept(14, NULL, NULL), 16);
	victim_place(accept(17, NULL, NULL), 19);
	close(17);
	/* "hi" is queued (not read) when the dump comes. */
	CHECK(recv(16, name, 2, MSG_PEEK | MSG_WAITALL) == 2, "peek: %s", strerror(errno));
}

static void verify_forked(void)
{
	struct sockaddr_un path = un_addr("l.sock"), a;
	char name[64];
	socklen_t l;
	int c;

	expect_cred(16, want_pid, 4321, 4321);
	expect_cred(19, want_pid, 4321, 4321);
	expect_cred(14, parent, 0, 0);
	expect_name(16, "l.sock", offsetof(struct sockaddr_un, sun_path) + strlen("l.sock") + 1);
	snprintf(name, sizeof(name), "peercred-f-%d", parent);
	l = un_abstract(&a, name);
	expect_name(19, a.sun_path, l);
	victim_expect_read(16, "hi", "parent");
	CHECK(write(16, "ping", 4) == 4 && write(19, "ping", 4) == 4, "write: %s", strerror(errno));
	family_go(&kids, "parent");
	victim_expect_read(16, "pong", "parent");
	victim_expect_read(19, "pong", "parent");
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK_SYS(c);
	CHECK_SYS(connect(c, (struct sockaddr *)&path, sizeof(path)));
	c = accept(14, NULL, NULL);
	CHECK_SYS(c);
	expect_cred(c, parent, 0, 0);
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
	if (!strcmp(mode, "forked"))
		return victim_run(setup_forked, verify_forked);
	if (!strcmp(mode, "dead"))
		return victim_run(setup_dead, verify_pair);
	return victim_run(setup, verify);
}
