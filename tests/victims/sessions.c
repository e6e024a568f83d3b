/*
 * Sessions a restore must rebuild by forking members from elsewhere, inside a pid
 * namespace of the tree's own: the root unshares one and forks its init I (pid 1, which
 * leads session 1). I makes, each member left to it as a reaper:
 *   - dead leader: D setsid, forked M1, exited and was reaped: M1 is I's child in session
 *     and group D, and no process has pid D;
 *   - deferred setsid: P forked C, then setsid: C is P's child in session 1;
 *   - zombie leader: Z setsid, forked M2, exited (a zombie of I): M2 is I's child in
 *     session Z;
 *   - live leader: L setsid, forked X which forked Y and exited (reaped by L): Y is I's
 *     child in session L, L is alive;
 *   - remote leader: A (in session 1) forked R, which called setsid, forked X2 which
 *     forked W and exited (reaped by R), then became a child subreaper (CRIU's
 *     child_subreaper_and_reparent): W is I's child in session R, whose leader is A's
 *     child, not W's sibling; after the restore A has no other child than R (the helper
 *     that forks W is gone unseen) and R is still a child subreaper.
 * Y checks a page it still shares copy-on-write with I, which L wrote after forking X:
 * the restore forks Y from L, so the dump must not count on I's copy for it.
 * Each process records its ppid, sid and pgid (as seen inside) in shared memory at setup
 * and compares them after go; I checks that Z is still a zombie and D is no process.
 */
#include "victim.h"

#include <sched.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include <sys/prctl.h>

enum { M1, C, M2, Y, L, P, A, R, W, SLOTS };
static const char *names[SLOTS] = { "M1", "C", "M2", "Y", "L", "P", "A", "R", "W" };

struct slot {
	pid_t pid, ppid, sid, pgid;
	int checked;
	char why[120];
};

struct shared {
	struct slot s[SLOTS];
	pid_t d, z;
	char why[160];
};

static struct shared *sh;
/* Its own page: 1 in I and Y (the same frame), 2 in L. */
static volatile int val[1024] __attribute__((aligned(4096)));

static void note(struct slot *s)
{
	s->pid = getpid();
	s->ppid = getppid();
	s->sid = getsid(0);
	s->pgid = getpgrp();
}

/* A member: records its ids once `ready` holds, then waits for go and compares. */
static void member(int i, pid_t expect_ppid, pid_t expect_sid)
{
	struct slot *s = &sh->s[i];

	while (getppid() != expect_ppid)
		usleep(1000);
	note(s);
	if (s->sid != expect_sid)
		snprintf(s->why, sizeof(s->why), "%s: session %d before dump, not %d", names[i],
			 s->sid, expect_sid);
	victim_wait_go();
	if (i == Y && val[0] != 1)
		snprintf(s->why, sizeof(s->why), "Y: its page from I has %d, not 1", val[0]);
	if (i == A) {
		siginfo_t si = { 0 };

		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid != 0)
			snprintf(s->why, sizeof(s->why), "A: a child %d exited (%s)", si.si_pid,
				 strerror(errno));
	}
	if (i == R) {
		int on = 0;

		if (prctl(PR_GET_CHILD_SUBREAPER, &on) || on != 1)
			snprintf(s->why, sizeof(s->why), "R: no longer a child subreaper");
	}
	if (getppid() != s->ppid || getsid(0) != s->sid || getpgrp() != s->pgid)
		snprintf(s->why, sizeof(s->why), "%s: ppid/sid/pgid %d/%d/%d, not %d/%d/%d",
			 names[i], getppid(), getsid(0), getpgrp(), s->ppid, s->sid, s->pgid);
	__atomic_store_n(&s->checked, 1, __ATOMIC_SEQ_CST);
	for (;;)
		pause();
}

static pid_t spawn(void)
{
	pid_t p;

	fflush(stdout);
	p = fork();
	if (p < 0)
		_exit(2);
	return p;
}

static void dead_leader(void)
{
	pid_t d = spawn();
	int st;

	if (d == 0) {
		pid_t me = getpid();

		setsid();
		if (spawn() == 0)
			member(M1, 1, me);
		_exit(0);
	}
	sh->d = d;
	waitpid(d, &st, 0);
}

static void deferred_setsid(void)
{
	if (spawn() == 0) {
		pid_t me = getpid(), c = spawn();

		if (c == 0)
			member(C, me, 1);
		while (!sh->s[C].pid)
			usleep(1000);
		setsid();
		member(P, 1, getpid());
	}
}

static void zombie_leader(void)
{
	pid_t z = spawn();

	if (z == 0) {
		pid_t me = getpid();

		setsid();
		if (spawn() == 0)
			member(M2, 1, me);
		_exit(7);
	}
	sh->z = z;
}

/* Leads a session of its own, whose member `i` it leaves to the init (forked by a child
 * that exits at once); returns its pid. */
static pid_t lead_and_orphan(int i)
{
	pid_t x, me = getpid();
	int st;

	setsid();
	x = spawn();
	if (x == 0) {
		if (spawn() == 0)
			member(i, 1, me);
		_exit(0);
	}
	waitpid(x, &st, 0);
	return me;
}

static void live_leader(void)
{
	if (spawn() == 0) {
		pid_t me = lead_and_orphan(Y);

		val[0] = 2;
		member(L, 1, me);
	}
}

static void remote_leader(void)
{
	if (spawn() == 0) {
		pid_t a = getpid();

		if (spawn() == 0) {
			pid_t me = lead_and_orphan(W);

			if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
				_exit(2);
			member(R, a, me);
		}
		member(A, 1, 1);
	}
}

static int all_set(void)
{
	for (int i = 0; i < SLOTS; i++)
		if (!sh->s[i].pid)
			return 0;
	return 1;
}

static int verify_inside(void)
{
	siginfo_t si = { 0 };

	kill(-1, SIGUSR1);
	for (int i = 0; i < SLOTS; i++) {
		for (int t = 0; t < 5000 && !__atomic_load_n(&sh->s[i].checked, __ATOMIC_SEQ_CST); t++)
			usleep(1000);
		if (!sh->s[i].checked)
			snprintf(sh->s[i].why, sizeof(sh->s[i].why), "%s did not check", names[i]);
		if (sh->s[i].why[0]) {
			snprintf(sh->why, sizeof(sh->why), "%s", sh->s[i].why);
			return 1;
		}
	}
	if (waitid(P_PID, sh->z, &si, WEXITED | WNOWAIT | WNOHANG) || si.si_pid != sh->z ||
	    si.si_status != 7) {
		snprintf(sh->why, sizeof(sh->why), "Z %d is not a zombie of I with status 7", sh->z);
		return 1;
	}
	if (kill(sh->d, 0) == 0 || errno != ESRCH) {
		snprintf(sh->why, sizeof(sh->why), "pid %d (the dead leader) exists", sh->d);
		return 1;
	}
	return 0;
}

static void init(int ready)
{
	char ok = 1;

	setsid();
	val[0] = 1;
	dead_leader();
	deferred_setsid();
	zombie_leader();
	live_leader();
	remote_leader();
	while (!all_set())
		usleep(1000);
	for (int i = 0; i < SLOTS; i++)
		if (sh->s[i].why[0]) {
			snprintf(sh->why, sizeof(sh->why), "%s", sh->s[i].why);
			ok = 0;
		}
	if (write(ready, &ok, 1) != 1)
		_exit(2);
	victim_wait_go();
	_exit(verify_inside());
}

int main(void)
{
	int p[2], st;
	pid_t i;
	char ok;

	victim_install_go();
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(sh != MAP_FAILED, "mmap: %s", strerror(errno));
	if (unshare(CLONE_NEWPID)) {
		printf("SKIP: unshare(CLONE_NEWPID): %s\n", strerror(errno));
		return 0;
	}
	CHECK_SYS(pipe(p));
	i = spawn();
	if (i == 0)
		init(p[1]);
	CHECK(read(p[0], &ok, 1) == 1, "init %d did not set up", i);
	CHECK(ok, "setup: %s", sh->why);
	victim_ready();
	victim_wait_go();
	kill(i, SIGUSR1);
	CHECK(waitpid(i, &st, 0) == i, "waitpid(init): %s", strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "inside: %s (status %#x)", sh->why, st);
	victim_pass();
}
