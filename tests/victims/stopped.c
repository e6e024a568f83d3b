/*
 * Job-control stops: children stopped by each stop signal come back stopped by that same
 * signal (the parent's waitid(WSTOPPED) reports it), with the stop signals sent to them
 * while they were stopped still queued (/proc/PID/status ShdPnd, SigPnd of the thread).
 *
 *   root
 *   |-- STOP: stopped by SIGSTOP, then sent SIGSTOP again (process-wide queue)
 *   |-- TSTP, TTIN, TTOU: each in a group of its own (not orphaned: its parent is in
 *   |   another group of the session), stopped by SIGTSTP, SIGTTIN, SIGTTOU
 *   `-- THREADS: two threads, in a group of its own, stopped by SIGTSTP, then sent
 *       SIGSTOP to its second thread alone (tgkill: that thread's queue)
 *
 * On go the root checks each child, continues it with SIGCONT and reaps it: each exits 0
 * once continued.
 */
#include "victim.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define BIT(sig) (1ULL << ((sig) - 1))

struct stopped {
	const char *name;
	int sig;           /* the stop signal */
	pid_t pid;
	pid_t second;      /* THREADS: its second thread */
	unsigned long long shd_pnd, second_pnd; /* expected queues after the stop */
};

static volatile sig_atomic_t continued;

static void on_cont(int sig)
{
	(void)sig;
	continued = 1;
}

static volatile pid_t second_tid;

static void *idle(void *arg)
{
	sigset_t cont;

	(void)arg;
	/* SIGCONT's handler runs in the main thread, whose pause() it must end. */
	sigemptyset(&cont);
	sigaddset(&cont, SIGCONT);
	pthread_sigmask(SIG_BLOCK, &cont, NULL);
	second_tid = syscall(SYS_gettid);
	for (;;)
		pause();
	return NULL;
}

/* The child: reports its second thread's tid (if any) on `out`, then waits for SIGCONT. */
static void child(int threads, int own_group, int out)
{
	pid_t tid = 0;
	pthread_t t;

	signal(SIGCONT, on_cont);
	if (own_group)
		CHECK_SYS(setpgid(0, 0));
	if (threads) {
		CHECK(pthread_create(&t, NULL, idle, NULL) == 0, "pthread_create");
		while ((tid = second_tid) == 0)
			usleep(1000);
	}
	CHECK(write(out, &tid, sizeof(tid)) == sizeof(tid), "write tid");
	while (!continued)
		pause();
	exit(0);
}

static void spawn(struct stopped *s, int threads)
{
	int p[2];
	siginfo_t si;

	CHECK_SYS(pipe(p));
	fflush(stdout);
	s->pid = fork();
	CHECK_SYS(s->pid);
	if (s->pid == 0)
		child(threads, s->sig != SIGSTOP, p[1]);
	CHECK(read(p[0], &s->second, sizeof(s->second)) == sizeof(s->second), "read tid");
	close(p[0]);
	close(p[1]);
	CHECK_SYS(kill(s->pid, s->sig));
	CHECK_SYS(waitid(P_PID, s->pid, &si, WSTOPPED | WNOWAIT));
}

/* The hex value of `key` in /proc/PID[/task/TID]/status. */
static unsigned long long status_mask(pid_t pid, pid_t tid, const char *key)
{
	char path[96], line[256];
	unsigned long long v = ~0ULL;
	FILE *f;

	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	else
		snprintf(path, sizeof(path), "/proc/%d/status", pid);
	f = fopen(path, "r");
	CHECK(f != NULL, "open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = strtoull(line + strlen(key), NULL, 16);
	fclose(f);
	CHECK(v != ~0ULL, "no %s in %s", key, path);
	return v;
}

static void check(struct stopped *s)
{
	siginfo_t si;
	pid_t r;
	int st;

	memset(&si, 0, sizeof(si));
	CHECK_SYS(waitid(P_PID, s->pid, &si, WSTOPPED | WNOHANG | WNOWAIT));
	CHECK(si.si_pid == s->pid && si.si_code == CLD_STOPPED,
	      "%s: waitid(WSTOPPED) reports no stop (pid %d code %d)", s->name, si.si_pid,
	      si.si_code);
	CHECK(si.si_status == s->sig, "%s: stopped by signal %d, expected %d", s->name,
	      si.si_status, s->sig);
	CHECK(status_mask(s->pid, 0, "ShdPnd:") == s->shd_pnd, "%s: ShdPnd %llx, expected %llx",
	      s->name, status_mask(s->pid, 0, "ShdPnd:"), s->shd_pnd);
	CHECK(status_mask(s->pid, 0, "SigPnd:") == 0, "%s: leader's SigPnd %llx", s->name,
	      status_mask(s->pid, 0, "SigPnd:"));
	if (s->second)
		CHECK(status_mask(s->pid, s->second, "SigPnd:") == s->second_pnd,
		      "%s: second thread's SigPnd %llx, expected %llx", s->name,
		      status_mask(s->pid, s->second, "SigPnd:"), s->second_pnd);
	CHECK_SYS(kill(s->pid, SIGCONT));
	while ((r = waitpid(s->pid, &st, 0)) == -1 && errno == EINTR)
		; /* go may come again */
	CHECK(r == s->pid, "%s: waitpid: %s", s->name, strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: ended with status %#x", s->name, st);
}

int main(void)
{
	struct stopped kids[] = {
		{ .name = "STOP", .sig = SIGSTOP, .shd_pnd = BIT(SIGSTOP) },
		{ .name = "TSTP", .sig = SIGTSTP },
		{ .name = "TTIN", .sig = SIGTTIN },
		{ .name = "TTOU", .sig = SIGTTOU },
		{ .name = "THREADS", .sig = SIGTSTP, .second_pnd = BIT(SIGSTOP) },
	};
	int n = sizeof(kids) / sizeof(kids[0]);

	victim_install_go();
	for (int i = 0; i < n; i++)
		spawn(&kids[i], i == n - 1);
	CHECK_SYS(kill(kids[0].pid, SIGSTOP));
	CHECK_SYS(syscall(SYS_tgkill, kids[n - 1].pid, kids[n - 1].second, SIGSTOP));

	victim_ready();
	victim_wait_go();
	for (int i = 0; i < n; i++)
		check(&kids[i]);
	victim_pass();
}
