/*
 * syscalls: the checkpoint is taken while the victim is blocked inside a syscall,
 * which the restore must resume (restart) correctly.
 *
 * Usage: syscalls MODE, MODE one of
 *   nanosleep  relative nanosleep() of 3 s (continued with the remainder on EINTR): on
 *              return at least 3 s of CLOCK_MONOTONIC have passed since the start
 *   pause      pause(): returns -1/EINTR only because of the go signal
 *   futex      FUTEX_WAIT (3 s timeout) on a word the go handler sets and wakes; a
 *              timeout must not come early, other errors are failures
 *   clock_abs  clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME) until start + 2 s:
 *              must not return before the deadline
 * READY is printed just before the call; the harness dumps ~200 ms later.
 */
#include "victim.h"

#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>

#define SKEW_NS 5000000LL /* 5 ms of clock granularity */

static volatile uint32_t futex_word;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_go_wake(int sig)
{
	(void)sig;
	victim_go = 1;
	futex_word = 1;
	syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void do_nanosleep(void)
{
	struct timespec req = { .tv_sec = 3 }, rem;
	int64_t start = now_ns(), took;
	int r, interrupts = 0;

	victim_ready();
	while ((r = nanosleep(&req, &rem)) == -1 && errno == EINTR) {
		req = rem;
		interrupts++;
	}
	took = now_ns() - start;
	CHECK(r == 0, "nanosleep: %s", strerror(errno));
	CHECK(took >= 3000000000LL - SKEW_NS, "nanosleep(3 s) returned after %lld ms (%d EINTRs)",
	      (long long)(took / 1000000), interrupts);
	victim_wait_go();
}

static void do_pause(void)
{
	int r;

	victim_ready();
	r = pause();
	CHECK(r == -1 && errno == EINTR, "pause() returned %d (%s)", r, strerror(errno));
	CHECK(victim_go, "pause() returned without the go signal");
}

static void do_futex(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_go_wake;
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGUSR1, &sa, NULL));

	victim_ready();
	while (futex_word == 0) {
		struct timespec timeout = { .tv_sec = 3 };
		int64_t start = now_ns();
		long r = syscall(SYS_futex, &futex_word, FUTEX_WAIT_PRIVATE, 0, &timeout, NULL, 0);
		int64_t took = now_ns() - start;

		if (r == 0 || errno == EINTR || errno == EAGAIN)
			continue;
		CHECK(errno == ETIMEDOUT, "FUTEX_WAIT: %s", strerror(errno));
		CHECK(took >= 3000000000LL - SKEW_NS, "FUTEX_WAIT(3 s) timed out after %lld ms",
		      (long long)(took / 1000000));
	}
	CHECK(victim_go && futex_word == 1, "futex word changed without the go signal");
}

static void do_clock_abs(void)
{
	int64_t deadline_ns = now_ns() + 2000000000LL;
	struct timespec deadline = { .tv_sec = deadline_ns / 1000000000LL,
				     .tv_nsec = deadline_ns % 1000000000LL };
	int r, interrupts = 0;

	victim_ready();
	while ((r = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &deadline, NULL)) == EINTR)
		interrupts++;
	CHECK(r == 0, "clock_nanosleep: %s", strerror(r));
	CHECK(now_ns() >= deadline_ns, "clock_nanosleep(TIMER_ABSTIME) returned %lld ms early (%d EINTRs)",
	      (long long)((deadline_ns - now_ns()) / 1000000), interrupts);
	victim_wait_go();
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	if (!strcmp(mode, "nanosleep"))
		do_nanosleep();
	else if (!strcmp(mode, "pause"))
		do_pause();
	else if (!strcmp(mode, "futex"))
		do_futex();
	else if (!strcmp(mode, "clock_abs"))
		do_clock_abs();
	else
		victim_fail("usage: syscalls nanosleep|pause|futex|clock_abs (got \"%s\")", mode);
	victim_pass();
}
