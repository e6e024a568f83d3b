/*
 * sched: scheduling attributes and limits, one variant per policy.
 *
 * Before READY: nice 7, I/O priority best-effort level 3, oom_score_adj 345, CPU
 * affinity restricted to the first allowed CPU (when there are several), then
 *   "batch": timer slack 123456 ns and SCHED_BATCH with SCHED_FLAG_RESET_ON_FORK;
 *   "fifo":  timer slack 123456 ns, then SCHED_FIFO priority 10 (the slack reads 0).
 * After go: all read back the same from the kernel.
 */
#include "victim.h"

#include <sched.h>
#include <stdint.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

struct attr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t priority;
	uint64_t runtime, deadline, period;
	uint32_t util_min, util_max;
};

struct snap {
	int nice, ioprio, oom;
	long slack;
	cpu_set_t cpus;
	struct attr attr;
};

static struct snap before;

static int read_oom(void)
{
	FILE *f = fopen("/proc/self/oom_score_adj", "r");
	int v = -99999;

	CHECK(f && fscanf(f, "%d", &v) == 1, "read oom_score_adj");
	fclose(f);
	return v;
}

static void snap(struct snap *s)
{
	memset(s, 0, sizeof(*s));
	errno = 0;
	s->nice = getpriority(PRIO_PROCESS, 0);
	CHECK(errno == 0, "getpriority: %s", strerror(errno));
	s->ioprio = syscall(SYS_ioprio_get, 1, 0);
	s->oom = read_oom();
	s->slack = prctl(PR_GET_TIMERSLACK);
	CHECK_SYS(sched_getaffinity(0, sizeof(s->cpus), &s->cpus));
	CHECK_SYS(syscall(SYS_sched_getattr, 0, &s->attr, sizeof(s->attr), 0));
}

static void setup(int fifo)
{
	FILE *f;
	cpu_set_t one;
	struct attr a = { .size = sizeof(a) };

	CHECK_SYS(setpriority(PRIO_PROCESS, 0, 7));
	CHECK_SYS(syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 3));
	f = fopen("/proc/self/oom_score_adj", "w");
	CHECK(f && fprintf(f, "345") > 0 && fclose(f) == 0, "write oom_score_adj");
	CHECK_SYS(sched_getaffinity(0, sizeof(one), &one));
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &one)) {
			CPU_ZERO(&one);
			CPU_SET(c, &one);
			break;
		}
	CHECK_SYS(sched_setaffinity(0, sizeof(one), &one));
	CHECK_SYS(prctl(PR_SET_TIMERSLACK, 123456));
	if (fifo) {
		a.policy = SCHED_FIFO;
		a.priority = 10;
	} else {
		a.policy = SCHED_BATCH;
		a.flags = 1; /* SCHED_FLAG_RESET_ON_FORK */
		a.nice = 7;
	}
	if (syscall(SYS_sched_setattr, 0, &a, 0) != 0) {
		if (errno == EPERM)
			victim_skip("sched_setattr needs CAP_SYS_NICE");
		victim_fail("sched_setattr: %s", strerror(errno));
	}
	snap(&before);
	CHECK(before.nice == 7 && before.oom == 345, "setup did not take");
	CHECK(before.slack == (fifo ? 0 : 123456), "timer slack %ld after setup", before.slack);
}

static void verify(void)
{
	struct snap now;

	snap(&now);
	CHECK(now.nice == before.nice, "nice %d, was %d", now.nice, before.nice);
	CHECK(now.ioprio == before.ioprio, "ioprio %#x, was %#x", now.ioprio, before.ioprio);
	CHECK(now.oom == before.oom, "oom_score_adj %d, was %d", now.oom, before.oom);
	CHECK(now.slack == before.slack, "timer slack %ld, was %ld", now.slack, before.slack);
	CHECK(CPU_EQUAL(&now.cpus, &before.cpus), "CPU affinity changed (%d CPUs, was %d)",
	      CPU_COUNT(&now.cpus), CPU_COUNT(&before.cpus));
	CHECK(now.attr.policy == before.attr.policy, "policy %u, was %u", now.attr.policy, before.attr.policy);
	CHECK(now.attr.flags == before.attr.flags, "sched flags %#llx, was %#llx",
	      (unsigned long long)now.attr.flags, (unsigned long long)before.attr.flags);
	CHECK(now.attr.priority == before.attr.priority, "rt priority %u, was %u", now.attr.priority,
	      before.attr.priority);
	CHECK(now.attr.nice == before.attr.nice, "sched_attr nice %d, was %d", now.attr.nice, before.attr.nice);
	CHECK(now.attr.util_min == before.attr.util_min && now.attr.util_max == before.attr.util_max,
	      "uclamp %u..%u, was %u..%u", now.attr.util_min, now.attr.util_max, before.attr.util_min,
	      before.attr.util_max);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	CHECK(argc == 2 && (!strcmp(argv[1], "batch") || !strcmp(argv[1], "fifo")), "usage: sched batch|fifo");
	victim_install_go();
	setup(!strcmp(argv[1], "fifo"));
	victim_ready();
	victim_wait_go();
	verify();
	victim_pass();
}
