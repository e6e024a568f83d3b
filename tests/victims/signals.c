/*
 * signals: dispositions, the blocked mask, both pending queues and the alternate stack.
 *
 * Before READY: SIGUSR2 has an SA_SIGINFO|SA_RESTART|SA_ONSTACK handler with a custom
 * sa_mask, SIGHUP is ignored, SIGINT is default; SIGTERM and SIGRTMIN+2 are blocked;
 * SIGTERM is pending on the process (shared) queue with a sigqueue() payload, and two
 * SIGRTMIN+2 are pending on the thread (private) queue with payloads 1 and 2.
 * After go: every sigaction matches, the mask is the same, sigpending() shows both,
 * sigwaitinfo() returns them with their payloads in order, and the SIGUSR2 handler runs
 * on the alternate stack with its sa_mask applied.
 */
#include "victim.h"

#include <stdint.h>
#include <sys/syscall.h>

#define TERM_PAYLOAD 0x5157a515
#define RT_SIG (SIGRTMIN + 2)

static struct sigaction before[NSIG];
static char altstack[64 << 10];
static volatile sig_atomic_t usr2_seen, usr2_onstack, usr2_masked, usr2_value;

static void on_usr2(int sig, siginfo_t *si, void *ctx)
{
	char here;
	sigset_t cur;

	(void)ctx;
	usr2_seen = sig;
	usr2_value = si->si_value.sival_int;
	usr2_onstack = &here >= altstack && &here < altstack + sizeof(altstack);
	sigprocmask(SIG_BLOCK, NULL, &cur);
	usr2_masked = sigismember(&cur, SIGWINCH) && sigismember(&cur, SIGQUIT) && sigismember(&cur, SIGUSR2);
}

static void setup(void)
{
	struct sigaction sa;
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	sigset_t block;
	siginfo_t si;

	CHECK_SYS(sigaltstack(&ss, NULL));

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_usr2;
	sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGWINCH);
	sigaddset(&sa.sa_mask, SIGQUIT);
	CHECK_SYS(sigaction(SIGUSR2, &sa, NULL));

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	CHECK_SYS(sigaction(SIGHUP, &sa, NULL));

	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, RT_SIG);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &block, NULL));

	CHECK_SYS(sigqueue(getpid(), SIGTERM, (union sigval){ .sival_int = TERM_PAYLOAD }));
	for (int v = 1; v <= 2; v++) {
		memset(&si, 0, sizeof(si));
		si.si_signo = RT_SIG;
		si.si_code = SI_QUEUE;
		si.si_pid = getpid();
		si.si_uid = getuid();
		si.si_value.sival_int = v;
		CHECK_SYS(syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), RT_SIG, &si));
	}
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			sigaction(s, NULL, &before[s]);
}

static void verify_actions(void)
{
	struct sigaction now;

	for (int s = 1; s < NSIG; s++) {
		if (s == SIGKILL || s == SIGSTOP || sigaction(s, NULL, &now) != 0)
			continue;
		CHECK(now.sa_handler == before[s].sa_handler, "signal %d: handler %p, was %p",
		      s, (void *)now.sa_handler, (void *)before[s].sa_handler);
		CHECK(now.sa_flags == before[s].sa_flags, "signal %d: flags %#x, was %#x",
		      s, now.sa_flags, before[s].sa_flags);
		CHECK(now.sa_restorer == before[s].sa_restorer, "signal %d: restorer changed", s);
		for (int m = 1; m < NSIG; m++)
			CHECK(sigismember(&now.sa_mask, m) == sigismember(&before[s].sa_mask, m),
			      "signal %d: sa_mask bit for %d changed", s, m);
	}
	CHECK(before[SIGUSR2].sa_sigaction == on_usr2, "SIGUSR2 handler was not set up");
	CHECK(before[SIGHUP].sa_handler == SIG_IGN, "SIGHUP was not ignored");
}

static void verify_mask_and_pending(void)
{
	sigset_t cur, pend;
	stack_t ss;

	CHECK_SYS(sigprocmask(SIG_BLOCK, NULL, &cur));
	for (int m = 1; m < NSIG; m++) {
		int want = m == SIGTERM || m == RT_SIG;

		CHECK(sigismember(&cur, m) == want, "signal %d is %sblocked", m, want ? "not " : "");
	}
	CHECK_SYS(sigpending(&pend));
	CHECK(sigismember(&pend, SIGTERM), "SIGTERM is no longer pending");
	CHECK(sigismember(&pend, RT_SIG), "SIGRTMIN+2 is no longer pending");
	CHECK_SYS(sigaltstack(NULL, &ss));
	CHECK(ss.ss_sp == altstack && ss.ss_size == sizeof(altstack) && !(ss.ss_flags & SS_DISABLE),
	      "alternate stack is %p+%zu flags %#x", ss.ss_sp, ss.ss_size, ss.ss_flags);
}

static void take(int sig, int payload, const char *what)
{
	sigset_t set;
	siginfo_t si;
	int r;

	sigemptyset(&set);
	sigaddset(&set, sig);
	do
		r = sigwaitinfo(&set, &si);
	while (r == -1 && errno == EINTR);
	CHECK(r == sig, "sigwaitinfo(%s) = %d: %s", what, r, strerror(errno));
	CHECK(si.si_code == SI_QUEUE, "%s: si_code %d, want SI_QUEUE", what, si.si_code);
	CHECK(si.si_value.sival_int == payload, "%s: payload %#x, want %#x", what, si.si_value.sival_int, payload);
	CHECK(si.si_pid == getpid(), "%s: si_pid %d, want %d", what, si.si_pid, getpid());
	CHECK(si.si_uid == getuid(), "%s: si_uid %d", what, si.si_uid);
}

static void verify_delivery(void)
{
	sigset_t pend;

	take(SIGTERM, TERM_PAYLOAD, "SIGTERM");
	take(RT_SIG, 1, "first SIGRTMIN+2");
	take(RT_SIG, 2, "second SIGRTMIN+2");
	CHECK_SYS(sigpending(&pend));
	CHECK(!sigismember(&pend, SIGTERM) && !sigismember(&pend, RT_SIG), "extra signals still pending");

	CHECK_SYS(sigqueue(getpid(), SIGUSR2, (union sigval){ .sival_int = 77 }));
	CHECK(usr2_seen == SIGUSR2 && usr2_value == 77, "SIGUSR2 handler did not run");
	CHECK(usr2_onstack, "SIGUSR2 handler did not run on the alternate stack");
	CHECK(usr2_masked, "SIGUSR2 handler ran without its sa_mask");
	CHECK_SYS(raise(SIGHUP)); /* ignored: must not kill us */
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	setup();
	victim_ready();
	victim_wait_go();
	verify_actions();
	verify_mask_and_pending();
	verify_delivery();
	victim_pass();
}
