/*
 * fown: owners and signals of open file descriptions (F_SETOWN_EX, F_SETSIG, O_ASYNC).
 *
 * Before READY:
 *   fds 10/11: a pipe, read end O_ASYNC, owned by the process (F_OWNER_PID), F_SETSIG
 *              SIGRTMIN+2; as root the owner is set with euid 4321 (F_GETOWNER_UIDS);
 *   fds 12/13: a socketpair, 12 owned by a thread (F_OWNER_TID) that waits, O_ASYNC,
 *              default signal; 13 only F_SETSIG SIGUSR2, no owner;
 *   fd 14:     /dev/null, owned by the process group (F_OWNER_PGRP) when the victim
 *              leads its group.
 * After go: F_GETOWN_EX, F_GETSIG and F_GETOWNER_UIDS of every fd as before; writing
 * into the pipe delivers SIGRTMIN+2 with si_fd 10 to the process; writing into 13
 * delivers SIGIO to the thread.
 */
#include "victim.h"

#include <pthread.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#define F_GETOWNER_UIDS 17
#define NFD 5

static const int fds[NFD] = {10, 11, 12, 13, 14};
static struct { struct f_owner_ex own; int sig; unsigned uids[2]; } before[NFD];
static volatile sig_atomic_t rt_fd = -1, io_tid;
static volatile pid_t thread_tid;

static void on_rt(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	rt_fd = si->si_fd;
}

static void on_io(int sig)
{
	(void)sig;
	io_tid = syscall(SYS_gettid);
}

static void *waiter(void *arg)
{
	sigset_t go;

	(void)arg;
	sigemptyset(&go);
	sigaddset(&go, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &go, NULL);
	thread_tid = syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

static void read_state(int i, struct f_owner_ex *own, int *sig, unsigned uids[2])
{
	CHECK_SYS(fcntl(fds[i], F_GETOWN_EX, own));
	CHECK_SYS(*sig = fcntl(fds[i], F_GETSIG));
	CHECK_SYS(fcntl(fds[i], F_GETOWNER_UIDS, uids));
}

static void owner(int fd, int type, pid_t pid)
{
	struct f_owner_ex own = {.type = type, .pid = pid};

	CHECK_SYS(fcntl(fd, F_SETOWN_EX, &own));
}

static void setup(void)
{
	struct sigaction sa = {.sa_sigaction = on_rt, .sa_flags = SA_SIGINFO | SA_RESTART};
	pthread_t t;
	int p[2], sk[2];

	CHECK_SYS(sigaction(SIGRTMIN + 2, &sa, NULL));
	CHECK(signal(SIGIO, on_io) != SIG_ERR, "signal(SIGIO)");
	CHECK(pthread_create(&t, NULL, waiter, NULL) == 0, "pthread_create");
	while (!thread_tid)
		usleep(1000);

	CHECK_SYS(pipe(p));
	victim_place(p[0], 10);
	victim_place(p[1], 11);
	if (geteuid() == 0)
		CHECK_SYS(setresuid(-1, 4321, -1));
	owner(10, F_OWNER_PID, getpid());
	if (getuid() == 0)
		CHECK_SYS(setresuid(-1, 0, -1));
	CHECK_SYS(fcntl(10, F_SETSIG, SIGRTMIN + 2));
	CHECK_SYS(fcntl(10, F_SETFL, fcntl(10, F_GETFL) | O_ASYNC));

	CHECK_SYS(socketpair(AF_UNIX, SOCK_STREAM, 0, sk));
	victim_place(sk[0], 12);
	victim_place(sk[1], 13);
	owner(12, F_OWNER_TID, thread_tid);
	CHECK_SYS(fcntl(12, F_SETFL, fcntl(12, F_GETFL) | O_ASYNC));
	CHECK_SYS(fcntl(13, F_SETSIG, SIGUSR2));

	victim_place(open("/dev/null", O_RDONLY), 14);
	if (getpgrp() == getpid())
		owner(14, F_OWNER_PGRP, getpgrp());

	for (int i = 0; i < NFD; i++)
		read_state(i, &before[i].own, &before[i].sig, before[i].uids);
}

static void verify(void)
{
	for (int i = 0; i < NFD; i++) {
		struct f_owner_ex own;
		unsigned uids[2];
		int sig;

		read_state(i, &own, &sig, uids);
		CHECK(own.type == before[i].own.type && own.pid == before[i].own.pid,
		      "fd %d: owner %d/%d, was %d/%d", fds[i], own.type, own.pid,
		      before[i].own.type, before[i].own.pid);
		CHECK(sig == before[i].sig, "fd %d: F_GETSIG %d, was %d", fds[i], sig, before[i].sig);
		CHECK(uids[0] == before[i].uids[0] && uids[1] == before[i].uids[1],
		      "fd %d: owner uids %u/%u, were %u/%u", fds[i], uids[0], uids[1],
		      before[i].uids[0], before[i].uids[1]);
	}
	CHECK(fcntl(10, F_GETFL) & O_ASYNC, "fd 10 lost O_ASYNC");

	CHECK_SYS(write(11, "x", 1));
	for (int i = 0; i < 1000 && rt_fd == -1; i++)
		usleep(1000);
	CHECK(rt_fd == 10, "SIGRTMIN+2 with si_fd %d, expected 10", (int)rt_fd);

	CHECK_SYS(write(13, "y", 1));
	for (int i = 0; i < 1000 && !io_tid; i++)
		usleep(1000);
	CHECK(io_tid == thread_tid, "SIGIO went to tid %d, expected the thread %d",
	      (int)io_tid, (int)thread_tid);
}

int main(void)
{
	return victim_run(setup, verify);
}
