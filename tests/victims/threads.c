/*
 * threads: one process, many threads (argv[1] workers, default 8, at most 64).
 *
 * Before READY: the workers pass work items through a queue guarded by a mutex and a
 * condition variable (at any moment some wait in the condvar's futex, some sleep a
 * little in nanosleep, some run); a "futexer" thread blocks in a raw FUTEX_WAIT and a
 * "sleeper" in an hour-long nanosleep. Every thread has its own name, TLS value, robust
 * futex list and clear_child_tid address, recorded with its gettid().
 * After go: every thread still exists under the same tid and name; each checks itself
 * (tid, TLS, name, robust list, clear_child_tid, rseq still registered); every worker
 * still processes work and the total keeps increasing; the futexer and the sleeper are
 * back in their syscalls, then wake when asked (FUTEX_WAKE, a SIGUSR2) and exit; all
 * threads are joined.
 */
#include "victim.h"
#include "rseq.h"

#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>

#define MAX_WORKERS 64
#define QCAP 256
#define TLS_MAGIC 0x7415c0de00000000ul


struct slot {
	pthread_t th;
	pid_t tid;
	char name[16];
	unsigned long tls_expect;
	void *robust_head;
	size_t robust_len;
	void *tid_addr;
	atomic_ulong done;	/* work items processed (workers) */
	atomic_int check_req;	/* set by main after go */
	atomic_int check_done;	/* 1 passed, -1 failed (why says what) */
	char why[256];
};

/* slots[0] main, [1] futexer, [2] sleeper, [3..] workers. */
enum { MAIN, FUTEXER, SLEEPER, FIRST_WORKER };

static __thread unsigned long tls_value;
static struct slot slots[FIRST_WORKER + MAX_WORKERS];
static int nworkers, rseq_checked;
static pthread_mutex_t qlock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t qcond = PTHREAD_COND_INITIALIZER;
static int queue[QCAP], qhead, qlen;
static atomic_ulong total;
static atomic_int started, stop_workers, stop_sleeper;
static atomic_int futex_word;

static void on_usr2(int sig)
{
	(void)sig;
}


static void record(struct slot *s, int index, const char *name)
{
	s->tid = gettid();
	snprintf(s->name, sizeof(s->name), "%s", name);
	CHECK_SYS(prctl(PR_SET_NAME, s->name));
	s->tls_expect = TLS_MAGIC | (unsigned long)index;
	tls_value = s->tls_expect;
	CHECK_SYS(syscall(SYS_get_robust_list, 0, &s->robust_head, &s->robust_len));
	CHECK_SYS(prctl(PR_GET_TID_ADDRESS, &s->tid_addr));
}

#define SELF(cond, ...) do { if (!(cond)) { snprintf(s->why, sizeof(s->why), __VA_ARGS__); \
	atomic_store(&s->check_done, -1); return; } } while (0)

/* Run by each thread on itself. */
static void self_check(struct slot *s)
{
	char name[16] = "";
	void *head = NULL, *tid_addr = NULL;
	size_t len = 0;

	SELF(gettid() == s->tid, "gettid() is %d, was %d", (int)gettid(), (int)s->tid);
	SELF(tls_value == s->tls_expect, "TLS value is %#lx, was %#lx", tls_value, s->tls_expect);
	prctl(PR_GET_NAME, name);
	SELF(!strcmp(name, s->name), "name is \"%s\", was \"%s\"", name, s->name);
	syscall(SYS_get_robust_list, 0, &head, &len);
	SELF(head == s->robust_head && len == s->robust_len, "robust list is %p/%zu, was %p/%zu",
	     head, len, s->robust_head, s->robust_len);
	prctl(PR_GET_TID_ADDRESS, &tid_addr);
	SELF(tid_addr == s->tid_addr, "clear_child_tid is %p, was %p", tid_addr, s->tid_addr);
	SELF(!rseq_checked || rseq_probe() == 0, "rseq area no longer registered");
	atomic_store(&s->check_done, 1);
}

static void push(int item)
{
	queue[(qhead + qlen) % QCAP] = item;
	qlen++;
	pthread_cond_signal(&qcond);
}

static void *worker(void *arg)
{
	struct slot *s = arg;
	char name[16];
	struct timespec nap = { 0, 200 * 1000 };

	snprintf(name, sizeof(name), "w%02d", (int)(s - slots - FIRST_WORKER));
	record(s, (int)(s - slots), name);
	atomic_fetch_add(&started, 1);
	for (;;) {
		volatile unsigned long x;
		int item;

		pthread_mutex_lock(&qlock);
		while (qlen == 0 && !atomic_load(&stop_workers))
			pthread_cond_wait(&qcond, &qlock);
		if (atomic_load(&stop_workers)) {
			pthread_mutex_unlock(&qlock);
			return NULL;
		}
		item = queue[qhead];
		qhead = (qhead + 1) % QCAP;
		qlen--;
		pthread_mutex_unlock(&qlock);

		x = (unsigned long)item;
		for (int i = 0; i < 1000; i++)
			x = x * 31 + i;
		pthread_mutex_lock(&qlock);
		push(item + 1);
		pthread_mutex_unlock(&qlock);
		atomic_fetch_add(&s->done, 1);
		atomic_fetch_add(&total, 1);
		if (atomic_load(&s->check_req) && !atomic_load(&s->check_done))
			self_check(s);
		nanosleep(&nap, NULL);	/* EINTR after a restore is fine */
	}
}

static void *futexer(void *arg)
{
	struct slot *s = arg;

	record(s, FUTEXER, "futexer");
	atomic_fetch_add(&started, 1);
	while (atomic_load(&futex_word) == 0) {
		long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);

		if (r == -1 && errno != EAGAIN && errno != EINTR) {
			snprintf(s->why, sizeof(s->why), "futex wait: %s", strerror(errno));
			atomic_store(&s->check_done, -1);
			return NULL;
		}
	}
	self_check(s);
	return NULL;
}

static void *sleeper(void *arg)
{
	struct slot *s = arg;
	struct timespec req = { 3600, 0 }, rem;

	record(s, SLEEPER, "sleeper");
	atomic_fetch_add(&started, 1);
	while (!atomic_load(&stop_sleeper)) {
		if (nanosleep(&req, &rem) == -1 && errno == EINTR)
			req = rem;
	}
	self_check(s);
	return NULL;
}

static void start(struct slot *s, void *(*fn)(void *))
{
	int e = pthread_create(&s->th, NULL, fn, s);

	CHECK(e == 0, "pthread_create: %s", strerror(e));
}

/* Join within 10 s; `kick`, if not 0, is sent to the thread every 100 ms meanwhile. */
static void join(struct slot *s, int kick)
{
	struct timespec deadline;
	int e = ETIMEDOUT;

	for (int i = 0; i < 100 && e == ETIMEDOUT; i++) {
		if (kick)
			pthread_kill(s->th, kick);
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_nsec += 100 * 1000 * 1000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
		e = pthread_timedjoin_np(s->th, NULL, &deadline);
	}
	CHECK(e == 0, "join %s (tid %d): %s", s->name, (int)s->tid, strerror(e));
	CHECK(atomic_load(&s->check_done) == 1, "%s (tid %d): %s", s->name, (int)s->tid,
	      atomic_load(&s->check_done) ? s->why : "never checked itself");
}

static void setup(void)
{
	struct sigaction sa;
	sigset_t usr1;

	if (&__rseq_offset == NULL || &__rseq_size == NULL || __rseq_size == 0)
		printf("note: glibc did not register rseq: rseq not checked\n");
	else
		rseq_checked = rseq_probe() == 0;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr2;	/* no SA_RESTART: wakes the sleeper with EINTR */
	CHECK_SYS(sigaction(SIGUSR2, &sa, NULL));
	/* Only the main thread takes the (process-directed) go signal. */
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &usr1, NULL));

	record(&slots[MAIN], MAIN, "thr-main");
	for (int i = 0; i < (nworkers + 1) / 2; i++)
		push(i * 1000);
	start(&slots[FUTEXER], futexer);
	start(&slots[SLEEPER], sleeper);
	for (int i = 0; i < nworkers; i++)
		start(&slots[FIRST_WORKER + i], worker);
	while (atomic_load(&started) < nworkers + 2 || atomic_load(&total) < 200)
		usleep(1000);
	CHECK_SYS(sigprocmask(SIG_UNBLOCK, &usr1, NULL));
}

/* First number of /proc/self/task/TID/syscall: the syscall it is blocked in. */
static long in_syscall(pid_t tid)
{
	char path[64], buf[256] = "";
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)tid);
	f = fopen(path, "r");
	if (!f)
		return -2;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = 0;
	fclose(f);
	return buf[0] >= '0' && buf[0] <= '9' ? strtol(buf, NULL, 10) : -1;
}

/* Waits until thread `s` is blocked in syscall `nr` (or `alt`, if not 0). */
static void wait_in_syscall(struct slot *s, long nr, long alt)
{
	long now = -1;

	for (int i = 0; i < 1000; i++) {
		now = in_syscall(s->tid);
		if (now == nr || (alt && now == alt))
			return;
		usleep(1000);
	}
	victim_fail("%s (tid %d) is in syscall %ld, expected %ld", s->name, (int)s->tid, now, nr);
}

static void check_names(void)
{
	for (int i = 0; i < FIRST_WORKER + nworkers; i++) {
		char path[64], comm[32] = "";
		FILE *f;

		snprintf(path, sizeof(path), "/proc/self/task/%d/comm", (int)slots[i].tid);
		f = fopen(path, "r");
		CHECK(f, "thread %s (tid %d) is gone: %s", slots[i].name, (int)slots[i].tid, strerror(errno));
		CHECK(fgets(comm, sizeof(comm), f), "read %s", path);
		fclose(f);
		comm[strcspn(comm, "\n")] = 0;
		CHECK(!strcmp(comm, slots[i].name), "tid %d is named \"%s\", was \"%s\"",
		      (int)slots[i].tid, comm, slots[i].name);
	}
}

static void check_workers(void)
{
	unsigned long done0[MAX_WORKERS], total0 = atomic_load(&total);
	int all = 0;

	for (int i = 0; i < nworkers; i++) {
		done0[i] = atomic_load(&slots[FIRST_WORKER + i].done);
		atomic_store(&slots[FIRST_WORKER + i].check_req, 1);
	}
	for (int tries = 0; tries < 10000 && !all; tries++) {
		all = 1;
		for (int i = 0; i < nworkers; i++) {
			struct slot *s = &slots[FIRST_WORKER + i];

			CHECK(atomic_load(&s->check_done) >= 0, "%s (tid %d): %s", s->name, (int)s->tid, s->why);
			all &= atomic_load(&s->check_done) == 1 && atomic_load(&s->done) > done0[i];
		}
		usleep(1000);
	}
	for (int i = 0; i < nworkers; i++) {
		struct slot *s = &slots[FIRST_WORKER + i];

		CHECK(atomic_load(&s->done) > done0[i], "%s (tid %d) stopped working at %lu items",
		      s->name, (int)s->tid, done0[i]);
		CHECK(atomic_load(&s->check_done) == 1, "%s (tid %d) never checked itself", s->name, (int)s->tid);
	}
	CHECK(atomic_load(&total) > total0, "total work stuck at %lu", total0);
}

static void verify(void)
{
	struct slot *s = &slots[MAIN];

	self_check(s);
	CHECK(atomic_load(&s->check_done) == 1, "main thread: %s", s->why);
	check_names();
	check_workers();

	wait_in_syscall(&slots[FUTEXER], SYS_futex, 0);
	CHECK(atomic_load(&slots[FUTEXER].check_done) == 0, "futexer woke up early");
	atomic_store(&futex_word, 1);
	syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
	join(&slots[FUTEXER], 0);

	/* restart_syscall: a sleep interrupted by a ptrace stop and resumed in place. */
	wait_in_syscall(&slots[SLEEPER], SYS_clock_nanosleep, SYS_restart_syscall);
	atomic_store(&stop_sleeper, 1);
	join(&slots[SLEEPER], SIGUSR2);

	pthread_mutex_lock(&qlock);
	atomic_store(&stop_workers, 1);
	pthread_cond_broadcast(&qcond);
	pthread_mutex_unlock(&qlock);
	for (int i = 0; i < nworkers; i++)
		join(&slots[FIRST_WORKER + i], 0);
}

int main(int argc, char **argv)
{
	nworkers = argc > 1 ? atoi(argv[1]) : 8;
	CHECK(nworkers >= 1 && nworkers <= MAX_WORKERS, "workers must be 1..%d", MAX_WORKERS);
	return victim_run(setup, verify);
}
