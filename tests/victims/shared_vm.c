/*
 * Processes sharing an address space without being threads: the parent creates, with a
 * raw clone() and a stack of their own each,
 *
 *   P (the victim)
 *   |-- S: clone(CLONE_VM | CLONE_SIGHAND | SIGCHLD): shares memory and signal handlers
 *   |   `-- N: ("nested") clone(CLONE_VM | CLONE_SIGHAND) from S, exit signal 0
 *   `-- V: clone(CLONE_VM | SIGCHLD): shares memory, has handlers of its own
 *
 * With "sibling", the shape stasis refuses instead: P forks A, A creates X with
 * clone(CLONE_VM | CLONE_PARENT | SIGCHLD): X is P's child but shares A's address space.
 * The log names them ("SIBLING X A"); on go P kills and reaps X and lets A exit.
 *
 * With "vfork", P is stuck in vfork() (which no ptrace stop interrupts) while its child
 * waits: the child logs "VFORK <pid>" and exits 0 on SIGUSR1 (sent to it, not to P, which
 * cannot take signals meanwhile); P then reaps it and passes.
 *
 * The children run no libc code (they share P's TLS): raw syscalls only. They serve
 * commands P writes into a slot of the shared memory. Before the dump, V installs its own
 * SIGUSR2 handler while P (and so S) ignores SIGUSR2, and each child keeps a canary on its
 * own stack. After restore P checks, through the commands: the pids and parents; a word
 * written by P is read by the child and its answer read by P, both ways through a
 * malloc'd buffer; the stack canaries; a SIGWINCH handler installed by P now is seen by S
 * (and N) and not by V; a SIGURG handler installed by S now is seen by P and not by V;
 * SIGUSR2 is still ignored for P and S and still V's handler for V; finally every child
 * exits with its own code and is reaped by its parent with that status.
 */
#include "victim.h"

#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define STACK_LEN (64 * 1024)
#define BUF_LEN (256 * 1024)
#define CANARY 0x5ca1ab1e0ddba11L

enum { CMD_IDS = 1, CMD_ECHO, CMD_SIGQUERY, CMD_SIGSET, CMD_SPAWN, CMD_REAP, CMD_EXIT };

/* One child's mailbox: P writes cmd/arg then bumps seq; the child answers, sets done. */
struct slot {
	int cmd;
	int seq;
	int done;
	long arg;
	long result[2];
	long canary_ok;
	char *buf;       /* the malloc'd buffer shared by everyone */
	struct slot *nested; /* S only: the slot of the child it creates with CMD_SPAWN */
	char stack[STACK_LEN] __attribute__((aligned(16)));
};

static struct slot slots[3]; /* S, V, N */
static pid_t pids[3];

/* The kernel's struct sigaction (rt_sigaction). */
struct ksigaction {
	unsigned long handler;
	unsigned long flags;
	unsigned long restorer;
	unsigned long mask;
};

static long rsys(long nr, long a, long b, long c, long d)
{
	long ret;
	register long r10 __asm__("r10") = d;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

/*
 * clone(flags, stack) running fn(arg) in the child on `stack_top`, then exit_group with
 * its result. Returns the child's pid (or -errno) in the caller.
 */
static long raw_clone(unsigned long flags, char *stack_top, int (*fn)(void *), void *arg)
{
	void **sp = (void **)stack_top;
	long ret;
	register long r10 __asm__("r10") = 0;
	register long r8 __asm__("r8") = 0;

	*--sp = arg;
	*--sp = (void *)fn;
	__asm__ volatile("syscall\n\t"
			 "test %%rax, %%rax\n\t"
			 "jnz 1f\n\t"
			 "xor %%ebp, %%ebp\n\t"
			 "pop %%rax\n\t"
			 "pop %%rdi\n\t"
			 "and $-16, %%rsp\n\t"
			 "call *%%rax\n\t"
			 "mov %%eax, %%edi\n\t"
			 "mov $231, %%eax\n\t"
			 "syscall\n\t"
			 "hlt\n\t"
			 "1:\n\t"
			 : "=a"(ret)
			 : "a"((long)SYS_clone), "D"(flags), "S"(sp), "d"(0L), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

static void on_signal(int sig)
{
	(void)sig;
}

static void child_nap(void)
{
	struct timespec ts = { 0, 200 * 1000 };

	rsys(SYS_nanosleep, (long)&ts, 0, 0, 0);
}

__attribute__((noreturn)) static int child_main(void *arg);

/* What the child does for one command. */
static void serve(struct slot *s, volatile long *canary)
{
	struct ksigaction act = { 0 }, old = { 0 };

	switch (s->cmd) {
	case CMD_IDS:
		s->result[0] = rsys(SYS_getpid, 0, 0, 0, 0);
		s->result[1] = rsys(SYS_getppid, 0, 0, 0, 0);
		s->canary_ok = *canary == CANARY;
		break;
	case CMD_ECHO:
		/* Read what P wrote, answer in the slot and in the buffer. */
		s->result[0] = s->arg * 3 + 1;
		for (int i = 0; i < BUF_LEN; i += 4096)
			s->buf[i] = (char)(s->arg + i / 4096);
		break;
	case CMD_SIGQUERY:
		s->result[1] = rsys(SYS_rt_sigaction, s->arg, 0, (long)&old, 8);
		s->result[0] = (long)old.handler;
		break;
	case CMD_SIGSET:
		act.handler = (unsigned long)on_signal;
		s->result[1] = rsys(SYS_rt_sigaction, s->arg, (long)&act, 0, 8);
		s->result[0] = (long)act.handler;
		break;
	case CMD_SPAWN:
		s->result[0] = raw_clone(CLONE_VM | CLONE_SIGHAND, s->nested->stack + STACK_LEN,
					 child_main, s->nested);
		break;
	case CMD_REAP: {
		int st = 0;

		/* N has no exit signal: only __WALL (or __WCLONE) waits for it. */
		s->result[0] = rsys(SYS_wait4, s->arg, (long)&st, __WALL, 0);
		s->result[1] = st;
		break;
	}
	case CMD_EXIT:
		rsys(SYS_exit_group, s->arg, 0, 0, 0);
		break;
	}
}

__attribute__((noreturn)) static int child_main(void *arg)
{
	struct slot *s = arg;
	volatile long canary = CANARY;

	for (;;) {
		while (__atomic_load_n(&s->seq, __ATOMIC_ACQUIRE) == s->done)
			child_nap();
		serve(s, &canary);
		__atomic_store_n(&s->done, s->seq, __ATOMIC_RELEASE);
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Runs one command in the child of slot `i` and waits for its answer. */
static long ask(int i, int cmd, long arg)
{
	struct slot *s = &slots[i];
	double deadline = now() + 10;

	s->cmd = cmd;
	s->arg = arg;
	__atomic_store_n(&s->seq, s->seq + 1, __ATOMIC_RELEASE);
	while (__atomic_load_n(&s->done, __ATOMIC_ACQUIRE) != s->seq) {
		CHECK(now() < deadline, "child %d did not answer command %d", pids[i], cmd);
		usleep(200);
	}
	return s->result[0];
}

static unsigned long handler_of(int sig)
{
	struct sigaction sa;

	CHECK_SYS(sigaction(sig, NULL, &sa));
	return (unsigned long)sa.sa_handler;
}

/* Field 38 of /proc/PID/stat: the signal the parent gets when `pid` exits. */
static int exit_signal_of(pid_t pid)
{
	char path[64], buf[1024], *p;
	int field = 3, fd, n;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY);
	CHECK_SYS(fd);
	n = read(fd, buf, sizeof(buf) - 1);
	CHECK_SYS(n);
	close(fd);
	buf[n] = 0;
	p = strrchr(buf, ')');
	CHECK(p != NULL, "no comm in %s", path);
	p += 2; /* the state, field 3 */
	while (field < 38 && (p = strchr(p, ' ')) != NULL) {
		p++;
		field++;
	}
	CHECK(p != NULL, "%s is short", path);
	return atoi(p);
}

static void check_ids(int i, pid_t parent)
{
	int want = i == 2 ? 0 : SIGCHLD;

	long pid = ask(i, CMD_IDS, 0);

	CHECK(pid == pids[i], "child %d reports pid %ld", pids[i], pid);
	CHECK(slots[i].result[1] == parent, "child %d has parent %ld, expected %d", pids[i],
	      slots[i].result[1], parent);
	CHECK(slots[i].canary_ok, "child %d: the canary on its stack changed", pids[i]);
	CHECK(exit_signal_of(pids[i]) == want, "child %d has exit signal %d, expected %d", pids[i],
	      exit_signal_of(pids[i]), want);
}

static void check_memory(int i, char *buf)
{
	long token = 1000 + i * 7;

	CHECK(ask(i, CMD_ECHO, token) == token * 3 + 1, "child %d answered %ld to %ld", pids[i],
	      slots[i].result[0], token);
	for (int k = 0; k < BUF_LEN; k += 4096)
		CHECK(buf[k] == (char)(token + k / 4096), "child %d's write at %d not seen", pids[i], k);
}

/* The handler child `i` sees for `sig`. */
static unsigned long child_handler(int i, int sig)
{
	unsigned long h = ask(i, CMD_SIGQUERY, sig);

	CHECK(slots[i].result[1] == 0, "rt_sigaction query in child %d: %ld", pids[i],
	      slots[i].result[1]);
	return h;
}

static void check_signals(int nested)
{
	unsigned long p_h = (unsigned long)on_signal;
	int shared[2] = { 0, 2 };

	CHECK(handler_of(SIGUSR2) == (unsigned long)SIG_IGN, "P lost its SIGUSR2 ignore");
	CHECK(child_handler(1, SIGUSR2) == p_h, "V lost its own SIGUSR2 handler");
	CHECK(signal(SIGWINCH, on_signal) != SIG_ERR, "signal(SIGWINCH)");
	CHECK(ask(0, CMD_SIGSET, SIGURG) == p_h && slots[0].result[1] == 0, "S: set SIGURG");
	for (int k = 0; k < 1 + nested; k++) {
		int i = shared[k];

		CHECK(child_handler(i, SIGUSR2) == (unsigned long)SIG_IGN, "child %d: SIGUSR2 not ignored", pids[i]);
		CHECK(child_handler(i, SIGWINCH) == p_h, "child %d does not see P's new SIGWINCH handler",
		      pids[i]);
	}
	CHECK(handler_of(SIGURG) == p_h, "P does not see the SIGURG handler S installed");
	CHECK(child_handler(1, SIGWINCH) == (unsigned long)SIG_DFL, "V sees P's SIGWINCH handler");
	CHECK(child_handler(1, SIGURG) == (unsigned long)SIG_DFL, "V sees S's SIGURG handler");
}

static void check_exit(int nested)
{
	int st;

	if (nested) {
		/* N is S's child: S reaps it. */
		slots[2].cmd = CMD_EXIT;
		slots[2].arg = 5;
		__atomic_store_n(&slots[2].seq, slots[2].seq + 1, __ATOMIC_RELEASE);
		CHECK(ask(0, CMD_REAP, pids[2]) == pids[2], "S: wait4(%d): %ld", pids[2], slots[0].result[0]);
		st = (int)slots[0].result[1];
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 5, "N ended with status %#x", st);
	}
	for (int i = 0; i < 2; i++) {
		slots[i].cmd = CMD_EXIT;
		slots[i].arg = 3 + i;
		__atomic_store_n(&slots[i].seq, slots[i].seq + 1, __ATOMIC_RELEASE);
		CHECK(waitpid(pids[i], &st, 0) == pids[i], "waitpid(%d): %s", pids[i], strerror(errno));
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3 + i, "child %d ended with status %#x", pids[i],
		      st);
	}
}

/* "sibling": X shares the address space of its sibling A, not of its parent P. */
static void sibling(void)
{
	int fds[2], st;
	pid_t a, x;

	CHECK_SYS(pipe(fds));
	fflush(stdout);
	a = fork();
	CHECK_SYS(a);
	if (a == 0) {
		x = raw_clone(CLONE_VM | CLONE_PARENT | SIGCHLD, slots[0].stack + STACK_LEN,
			      child_main, &slots[0]);
		CHECK(write(fds[1], &x, sizeof(x)) == sizeof(x), "write X's pid");
		victim_wait_go();
		exit(x > 0 ? 0 : 1);
	}
	CHECK(read(fds[0], &x, sizeof(x)) == sizeof(x), "read X's pid");
	CHECK(x > 0, "clone(CLONE_VM | CLONE_PARENT) in A: %s", strerror(-x));
	printf("SIBLING %d %d\n", x, a);
	victim_ready();
	victim_wait_go();
	CHECK_SYS(kill(x, SIGKILL));
	CHECK(waitpid(x, &st, 0) == x && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL,
	      "X (%d) was not P's child killed by SIGKILL: status %#x", x, st);
	for (;;) {
		pid_t r;

		kill(a, SIGUSR1);
		r = waitpid(a, &st, WNOHANG);
		if (r == a)
			break;
		CHECK(r == 0 || errno == EINTR, "waitpid(A): %s", strerror(errno));
		usleep(1000);
	}
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "A ended with status %#x", st);
	victim_pass();
}

/* "vfork": P waits in vfork until its child, which shares its memory, exits on go. */
static void in_vfork(void)
{
	char line[32];
	int st, n;
	pid_t c;

	victim_ready();
	c = vfork();
	CHECK_SYS(c);
	if (c == 0) {
		n = snprintf(line, sizeof(line), "VFORK %d\n", (int)rsys(SYS_getpid, 0, 0, 0, 0));
		rsys(SYS_write, 1, (long)line, n, 0);
		while (!victim_go)
			pause();
		_exit(0);
	}
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "the vfork child %d ended with status %#x", c, st);
	victim_pass();
}

int main(int argc, char **argv)
{
	int nested = argc > 1 && strcmp(argv[1], "nested") == 0;
	char *buf = malloc(BUF_LEN);

	if (argc > 1 && strcmp(argv[1], "sibling") == 0) {
		victim_install_go();
		sibling();
	}
	if (argc > 1 && strcmp(argv[1], "vfork") == 0) {
		victim_install_go();
		in_vfork();
	}

	CHECK(buf != NULL, "malloc");
	memset(buf, 0x11, BUF_LEN);
	victim_install_go();
	CHECK(signal(SIGUSR2, SIG_IGN) != SIG_ERR, "signal(SIGUSR2)");
	for (int i = 0; i < 3; i++)
		slots[i].buf = buf;
	slots[0].nested = &slots[2];
	fflush(stdout);
	pids[0] = raw_clone(CLONE_VM | CLONE_SIGHAND | SIGCHLD, slots[0].stack + STACK_LEN,
			    child_main, &slots[0]);
	CHECK(pids[0] > 0, "clone(CLONE_VM | CLONE_SIGHAND): %s", strerror(-pids[0]));
	pids[1] = raw_clone(CLONE_VM | SIGCHLD, slots[1].stack + STACK_LEN, child_main, &slots[1]);
	CHECK(pids[1] > 0, "clone(CLONE_VM): %s", strerror(-pids[1]));
	if (nested) {
		pids[2] = ask(0, CMD_SPAWN, 0);
		CHECK(pids[2] > 0, "clone in S: %s", strerror(-pids[2]));
	}
	CHECK(ask(1, CMD_SIGSET, SIGUSR2) == (long)on_signal && slots[1].result[1] == 0, "V: set SIGUSR2");
	check_ids(0, getpid());
	check_ids(1, getpid());
	victim_ready();
	victim_wait_go();

	check_ids(0, getpid());
	check_ids(1, getpid());
	if (nested)
		check_ids(2, pids[0]);
	for (int i = 0; i < 2 + nested; i++)
		check_memory(i, buf);
	check_signals(nested);
	check_exit(nested);
	victim_pass();
}
