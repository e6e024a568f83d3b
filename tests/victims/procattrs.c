/*
 * procattrs: what /proc and the kernel report about the process itself.
 *
 * Before READY: comm set to "victim-comm", ADDR_NO_RANDOMIZE added to the personality
 * (so it differs from the restorer's, which the restored process inherits first);
 * cmdline, environ, the exe link, the whole auxv (and AT_PAGESZ, AT_ENTRY, AT_RANDOM's
 * 16 bytes, AT_SYSINFO_EHDR), personality, pid, sid, pgrp, resource limits
 * (RLIMIT_NOFILE soft lowered to 1000) recorded.
 * After go: all equal; and the rseq area glibc (>= 2.35) registered is still registered
 * with the kernel (probed by re-registering it, which must fail with EBUSY) and reports
 * a valid cpu. Older glibc: the rseq part is skipped with a note.
 */
#include "victim.h"
#include "rseq.h"

#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>



struct snap {
	char comm[16];
	char cmdline[4096], environ[16384], exe[PATH_MAX], auxv[1024];
	ssize_t cmdline_len, environ_len, auxv_len;
	unsigned long pagesz, entry, sysinfo;
	unsigned char random[16];
	int personality;
	pid_t pid, sid, pgrp;
	struct rlimit lim[RLIM_NLIMITS];
};

static struct snap before, after;
static int rseq_checked;

static ssize_t slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	ssize_t n = 0, r;

	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	while ((r = read(fd, buf + n, cap - n)) > 0)
		n += r;
	CHECK(r == 0 && (size_t)n < cap, "read %s", path);
	close(fd);
	return n;
}

static void take(struct snap *s)
{
	ssize_t n;

	CHECK_SYS(prctl(PR_GET_NAME, s->comm));
	s->cmdline_len = slurp("/proc/self/cmdline", s->cmdline, sizeof(s->cmdline));
	s->environ_len = slurp("/proc/self/environ", s->environ, sizeof(s->environ));
	s->auxv_len = slurp("/proc/self/auxv", s->auxv, sizeof(s->auxv));
	n = readlink("/proc/self/exe", s->exe, sizeof(s->exe) - 1);
	CHECK_SYS(n);
	s->exe[n] = 0;
	s->pagesz = getauxval(AT_PAGESZ);
	s->entry = getauxval(AT_ENTRY);
	s->sysinfo = getauxval(AT_SYSINFO_EHDR);
	memcpy(s->random, (void *)getauxval(AT_RANDOM), 16);
	s->personality = personality(0xffffffff);
	s->pid = getpid();
	s->sid = getsid(0);
	s->pgrp = getpgrp();
	for (int r = 0; r < RLIM_NLIMITS; r++)
		CHECK_SYS(getrlimit(r, &s->lim[r]));
}


static void setup(void)
{
	struct rlimit nofile;

	CHECK_SYS(prctl(PR_SET_NAME, "victim-comm"));
	CHECK_SYS(personality(personality(0xffffffff) | ADDR_NO_RANDOMIZE));
	CHECK_SYS(getrlimit(RLIMIT_NOFILE, &nofile));
	nofile.rlim_cur = nofile.rlim_max < 1000 ? nofile.rlim_max : 1000;
	CHECK_SYS(setrlimit(RLIMIT_NOFILE, &nofile));
	take(&before);

	if (&__rseq_offset == NULL || &__rseq_size == NULL)
		printf("note: glibc without __rseq_offset (< 2.35): rseq not checked\n");
	else if (__rseq_size == 0)
		printf("note: glibc did not register rseq (disabled by tunable?): rseq not checked\n");
	else if (rseq_probe() != 0)
		printf("note: cannot probe glibc's rseq registration: rseq not checked\n");
	else
		rseq_checked = 1;
}

#define SAME(field, fmt) CHECK(after.field == before.field, #field " is " fmt ", was " fmt, after.field, before.field)

static void verify(void)
{
	take(&after);
	CHECK(!strcmp(after.comm, "victim-comm"), "comm is \"%s\"", after.comm);
	CHECK(after.cmdline_len == before.cmdline_len && !memcmp(after.cmdline, before.cmdline, before.cmdline_len),
	      "/proc/self/cmdline changed");
	CHECK(after.environ_len == before.environ_len && !memcmp(after.environ, before.environ, before.environ_len),
	      "/proc/self/environ changed");
	CHECK(after.auxv_len == before.auxv_len && !memcmp(after.auxv, before.auxv, before.auxv_len),
	      "/proc/self/auxv changed");
	CHECK(!strcmp(after.exe, before.exe), "/proc/self/exe is %s, was %s", after.exe, before.exe);
	SAME(pagesz, "%lu");
	SAME(entry, "%#lx");
	SAME(sysinfo, "%#lx");
	CHECK(!memcmp(after.random, before.random, 16), "AT_RANDOM bytes changed");
	SAME(personality, "%#x");
	SAME(pid, "%d");
	SAME(sid, "%d");
	SAME(pgrp, "%d");
	for (int r = 0; r < RLIM_NLIMITS; r++)
		CHECK(after.lim[r].rlim_cur == before.lim[r].rlim_cur && after.lim[r].rlim_max == before.lim[r].rlim_max,
		      "resource limit %d is %llu/%llu, was %llu/%llu", r,
		      (unsigned long long)after.lim[r].rlim_cur, (unsigned long long)after.lim[r].rlim_max,
		      (unsigned long long)before.lim[r].rlim_cur, (unsigned long long)before.lim[r].rlim_max);
}

static void verify_rseq(void)
{
	int probe, cpu;
	int32_t rseq_cpu;

	if (!rseq_checked)
		return;
	probe = rseq_probe();
	CHECK(probe == 0, "the rseq area is %s", probe == 1 ? "no longer registered" : "registered differently");
	cpu = sched_getcpu();
	/* struct rseq: u32 cpu_id_start, u32 cpu_id */
	rseq_cpu = ((volatile int32_t *)rseq_area())[1];
	CHECK(cpu >= 0 && rseq_cpu >= 0 && rseq_cpu < CPU_SETSIZE, "rseq cpu_id %d, sched_getcpu %d", rseq_cpu, cpu);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	setup();
	victim_ready();
	victim_wait_go();
	verify();
	verify_rseq();
	victim_pass();
}
