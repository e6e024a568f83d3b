/*
 * seccomp: seccomp filters and strict mode, per thread.
 *
 *   seccomp stacked  three threads under no_new_privs. Filter A (getppid -> EPERM-like
 *                    errno 77) is synced to all with TSYNC; the main thread stacks filter
 *                    B (getpgrp -> errno 78, SECCOMP_FILTER_FLAG_LOG), thread 2 stacks
 *                    filter C (getsid -> errno 79). After go every thread checks its
 *                    Seccomp/Seccomp_filters status lines and that each rule still
 *                    returns its errno where it applies, and only there.
 *   seccomp tsync    three threads share filters A and B (TSYNC). After go the main thread
 *                    installs filter D (getuid -> errno 80) with TSYNC, which the kernel
 *                    refuses unless every thread still shares its chain; then every thread
 *                    sees D.
 *   seccomp kill     one filter kills the process on getpid. After go the victim checks its
 *                    status, prints "CALLING getpid" and calls it: it must die by SIGSYS
 *                    (the harness expects that instead of PASS).
 *   seccomp strict   a second thread enters strict mode (read/write/exit/sigreturn only)
 *                    and spins. After go the main thread checks both threads' Seccomp
 *                    lines and lets the strict thread go on: its write() must work and its
 *                    getpid() must kill it (the thread alone), which the main thread sees.
 */
#include "victim.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define NTHREADS 3

/* A filter: `nr` -> `action`, anything else allowed (x86_64 only). */
static int install(int nr, unsigned action, unsigned flags)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };

	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* `key` (Seccomp or Seccomp_filters) of /proc/self/task/TID/status. */
static int status_of(int tid, const char *key)
{
	char path[64], line[256];
	size_t len = strlen(key);
	int value = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	f = fopen(path, "r");
	CHECK(f != NULL, "open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, len) == 0 && line[len] == ':')
			value = atoi(line + len + 1);
	fclose(f);
	return value;
}

/* The errno a syscall failed with, or 0 if it succeeded. */
static int err_of(long nr, long arg)
{
	errno = 0;
	return syscall(nr, arg) == -1 ? errno : 0;
}

struct expect {
	int filters;                    /* Seccomp_filters */
	int ppid_err, pgrp_err, sid_err, uid_err;
};

/* --- threads shared by stacked and tsync ----------------------------------------- */

static volatile int phase;              /* 0 setup, 1 filters installed, 2 verify */
static volatile int own_filter_done;
static struct expect want[NTHREADS];
static char failure[NTHREADS][200];
static volatile int verified[NTHREADS];

static void verify_thread(int i)
{
	int tid = syscall(SYS_gettid);
	struct expect *w = &want[i];
	int mode = status_of(tid, "Seccomp"), n = status_of(tid, "Seccomp_filters");
	int e_ppid = err_of(SYS_getppid, 0), e_pgrp = err_of(SYS_getpgrp, 0);
	int e_sid = err_of(SYS_getsid, 0), e_uid = err_of(SYS_getuid, 0);

	if (mode != 2 || n != w->filters || e_ppid != w->ppid_err || e_pgrp != w->pgrp_err
	    || e_sid != w->sid_err || e_uid != w->uid_err)
		snprintf(failure[i], sizeof(failure[i]),
			 "thread %d: Seccomp %d filters %d (want 2/%d), errnos getppid %d getpgrp %d getsid %d getuid %d (want %d %d %d %d)",
			 i, mode, n, w->filters, e_ppid, e_pgrp, e_sid, e_uid, w->ppid_err,
			 w->pgrp_err, w->sid_err, w->uid_err);
	verified[i] = 1;
}

static void *worker(void *arg)
{
	int i = (int)(long)arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	while (phase < 1)
		usleep(1000);
	if (i == 2 && want[2].sid_err) {
		if (install(SYS_getsid, SECCOMP_RET_ERRNO | 79, 0) != 0)
			snprintf(failure[2], sizeof(failure[2]), "filter C: %s", strerror(errno));
		own_filter_done = 1;
	}
	while (phase < 2)
		usleep(1000);
	verify_thread(i);
	return NULL;
}

static void run_threads(int stacked)
{
	pthread_t t[NTHREADS];
	int i;

	CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	for (i = 1; i < NTHREADS; i++) {
		want[i] = (struct expect){ .filters = stacked ? 1 : 2, .ppid_err = 77,
					   .pgrp_err = stacked ? 0 : 78 };
		CHECK(pthread_create(&t[i], NULL, worker, (void *)(long)i) == 0, "pthread_create");
	}
	want[0] = (struct expect){ .filters = 2, .ppid_err = 77, .pgrp_err = 78 };
	if (stacked)
		want[2] = (struct expect){ .filters = 2, .ppid_err = 77, .sid_err = 79 };
	CHECK_SYS(install(SYS_getppid, SECCOMP_RET_ERRNO | 77, SECCOMP_FILTER_FLAG_TSYNC));
	CHECK_SYS(install(SYS_getpgrp, SECCOMP_RET_ERRNO | 78,
			  stacked ? SECCOMP_FILTER_FLAG_LOG : SECCOMP_FILTER_FLAG_TSYNC));
	phase = 1;
	while (stacked && !own_filter_done)
		usleep(1000);
	CHECK(failure[2][0] == 0, "%s", failure[2]);
	victim_ready();
	victim_wait_go();
	if (!stacked) {
		long r = install(SYS_getuid, SECCOMP_RET_ERRNO | 80, SECCOMP_FILTER_FLAG_TSYNC);

		CHECK(r == 0, "TSYNC after restore returned %ld (%s): the threads no longer share their filters",
		      r, r == -1 ? strerror(errno) : "thread that could not sync");
		for (i = 0; i < NTHREADS; i++) {
			want[i].filters = 3;
			want[i].uid_err = 80;
		}
	}
	phase = 2;
	verify_thread(0);
	for (i = 1; i < NTHREADS; i++)
		CHECK(pthread_join(t[i], NULL) == 0, "pthread_join");
	for (i = 0; i < NTHREADS; i++)
		CHECK(verified[i] && failure[i][0] == 0, "%s", failure[i]);
}

/* --- kill -------------------------------------------------------------------------- */

static void run_kill(void)
{
	struct rlimit no_core = { 0, 0 };
	int tid;

	CHECK_SYS(setrlimit(RLIMIT_CORE, &no_core));
	CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	CHECK_SYS(install(SYS_getpid, SECCOMP_RET_KILL_PROCESS, 0));
	tid = syscall(SYS_gettid);
	victim_ready();
	victim_wait_go();
	CHECK(status_of(tid, "Seccomp") == 2 && status_of(tid, "Seccomp_filters") == 1,
	      "Seccomp %d filters %d, want 2/1", status_of(tid, "Seccomp"),
	      status_of(tid, "Seccomp_filters"));
	printf("CALLING getpid\n");
	fflush(stdout);
	syscall(SYS_getpid);
	victim_fail("getpid returned under a filter that kills on getpid");
}

/* --- strict ------------------------------------------------------------------------ */

static volatile int strict_tid, strict_ready, strict_go, strict_wrote, strict_calling,
	strict_survived;

static void *strict_thread(void *arg)
{
	static const char msg[] = "strict thread alive\n";
	sigset_t all;

	(void)arg;
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	strict_tid = syscall(SYS_gettid);
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT) != 0) {
		strict_ready = -errno;
		return NULL;
	}
	strict_ready = 1;
	while (!strict_go)
		__builtin_ia32_pause();
	strict_wrote = syscall(SYS_write, 1, msg, sizeof(msg) - 1);
	strict_calling = 1;
	syscall(SYS_getpid);
	strict_survived = 1;
	syscall(SYS_exit, 0);
	return NULL;
}

static void run_strict(void)
{
	pthread_t t;
	int me = syscall(SYS_gettid);

	CHECK(pthread_create(&t, NULL, strict_thread, NULL) == 0, "pthread_create");
	while (!strict_ready)
		usleep(1000);
	CHECK(strict_ready == 1, "PR_SET_SECCOMP(strict): %s", strerror(-strict_ready));
	victim_ready();
	victim_wait_go();
	CHECK(status_of(strict_tid, "Seccomp") == 1, "strict thread has Seccomp %d",
	      status_of(strict_tid, "Seccomp"));
	CHECK(status_of(me, "Seccomp") == 0, "main thread has Seccomp %d", status_of(me, "Seccomp"));
	strict_go = 1;
	CHECK(pthread_join(t, NULL) == 0, "pthread_join");
	CHECK(strict_wrote == 20, "write in strict mode returned %d", strict_wrote);
	CHECK(strict_calling && !strict_survived, "getpid in strict mode %s",
	      strict_calling ? "did not kill the thread" : "was never called");
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "stacked";

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	if (strcmp(mode, "stacked") == 0 || strcmp(mode, "tsync") == 0)
		run_threads(strcmp(mode, "stacked") == 0);
	else if (strcmp(mode, "kill") == 0)
		run_kill();
	else if (strcmp(mode, "strict") == 0)
		run_strict();
	else
		victim_fail("unknown mode %s", mode);
	victim_pass();
}
