/*
 * prctl: process attributes set with prctl and membarrier.
 *
 * Before READY: not dumpable, THP disabled (with PR_THP_DISABLE_EXCEPT_ADVISED where the
 * kernel has it), parent-death signal SIGWINCH (ignored by default: the restorer's exit
 * may deliver it), child subreaper, membarrier private expedited registration (where
 * supported), no_new_privs.
 * After go: every attribute reads back the same.
 */
#include "victim.h"

#include <linux/membarrier.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#define GET_REGISTRATIONS (1 << 9)

struct snap {
	int dumpable, thp, pdeathsig, subreaper, nnp;
	long membarrier;
};

static struct snap before;

static void snap(struct snap *s)
{
	memset(s, 0, sizeof(*s));
	s->dumpable = prctl(PR_GET_DUMPABLE);
	s->thp = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
	CHECK_SYS(prctl(PR_GET_PDEATHSIG, &s->pdeathsig));
	CHECK_SYS(prctl(PR_GET_CHILD_SUBREAPER, &s->subreaper));
	s->nnp = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
	s->membarrier = syscall(SYS_membarrier, GET_REGISTRATIONS, 0, 0);
}

static void setup(void)
{
	long q = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);

	CHECK_SYS(prctl(PR_SET_DUMPABLE, 0));
	if (prctl(PR_SET_THP_DISABLE, 1, 1 << 1, 0, 0) != 0)
		CHECK_SYS(prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0));
	CHECK_SYS(prctl(PR_SET_PDEATHSIG, SIGWINCH));
	CHECK_SYS(prctl(PR_SET_CHILD_SUBREAPER, 1));
	if (q > 0 && (q & MEMBARRIER_CMD_PRIVATE_EXPEDITED))
		CHECK_SYS(syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0));
	CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	snap(&before);
	CHECK(before.dumpable == 0 && (before.thp & 1) && before.pdeathsig == SIGWINCH && before.subreaper
	      && before.nnp == 1, "setup did not take");
}

static void verify(void)
{
	struct snap now;

	snap(&now);
	CHECK(now.dumpable == before.dumpable, "dumpable %d, was %d", now.dumpable, before.dumpable);
	CHECK(now.thp == before.thp, "THP disable %d, was %d", now.thp, before.thp);
	CHECK(now.pdeathsig == before.pdeathsig, "pdeathsig %d, was %d", now.pdeathsig, before.pdeathsig);
	CHECK(now.subreaper == before.subreaper, "child subreaper %d, was %d", now.subreaper, before.subreaper);
	CHECK(now.nnp == before.nnp, "no_new_privs %d, was %d", now.nnp, before.nnp);
	CHECK(now.membarrier == before.membarrier, "membarrier registrations %#lx, were %#lx",
	      now.membarrier, before.membarrier);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	return victim_run(setup, verify);
}
