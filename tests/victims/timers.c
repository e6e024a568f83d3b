/*
 * timers: interval timers and POSIX timers keep their ids, settings and delivery.
 *
 * Before READY: ITIMER_REAL every 50 ms (SIGALRM counted), ITIMER_VIRTUAL armed for
 * 1000 s with a 7 s interval; POSIX timers (raw syscalls, kernel ids): A on
 * CLOCK_MONOTONIC every 100 ms sending SIGRTMIN+1 with value 0xfeed, B created then
 * deleted (a hole in the ids), C on CLOCK_BOOTTIME with SIGEV_NONE armed for 1000 s,
 * D on CLOCK_REALTIME disarmed; /proc/self/timers recorded.
 * After go: /proc/self/timers is identical, the settings match (remaining times no
 * larger than before), and both periodic timers keep firing with their payload.
 */
#include "victim.h"

#include <stdint.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

static volatile sig_atomic_t alarms, ticks, bad_value;
static int id_a, id_b, id_c, id_d;
static char timers_before[4096];

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

static void on_tick(int sig, siginfo_t *si, void *ctx)
{
	(void)sig;
	(void)ctx;
	if (si->si_code != SI_TIMER || si->si_value.sival_int != 0xfeed || si->si_timerid != id_a)
		bad_value = 1;
	ticks++;
}

static int create(clockid_t clock, int notify, int sig, int value)
{
	struct sigevent sev;
	int id = -1;

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = sig;
	sev.sigev_value.sival_int = value;
	CHECK_SYS(syscall(SYS_timer_create, clock, &sev, &id));
	return id;
}

static void arm(int id, long interval_ms, long value_ms)
{
	struct itimerspec its = {
		.it_interval = { interval_ms / 1000, (interval_ms % 1000) * 1000000 },
		.it_value = { value_ms / 1000, (value_ms % 1000) * 1000000 },
	};
	CHECK_SYS(syscall(SYS_timer_settime, id, 0, &its, NULL));
}

static void slurp(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	size_t n;

	CHECK(f != NULL, "open %s: %s", path, strerror(errno));
	n = fread(buf, 1, cap - 1, f);
	buf[n] = 0;
	fclose(f);
}

static void setup(void)
{
	struct sigaction sa;
	struct itimerval real = { { 0, 50000 }, { 0, 50000 } };
	struct itimerval virt = { { 7, 0 }, { 1000, 0 } };

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	CHECK_SYS(sigaction(SIGALRM, &sa, NULL));
	sa.sa_sigaction = on_tick;
	sa.sa_flags = SA_SIGINFO;
	CHECK_SYS(sigaction(SIGRTMIN + 1, &sa, NULL));

	CHECK_SYS(setitimer(ITIMER_REAL, &real, NULL));
	CHECK_SYS(setitimer(ITIMER_VIRTUAL, &virt, NULL));
	id_a = create(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 1, 0xfeed);
	id_b = create(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGALRM, 1);
	id_c = create(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0);
	id_d = create(CLOCK_REALTIME, SIGEV_SIGNAL, SIGALRM, 2);
	CHECK_SYS(syscall(SYS_timer_delete, id_b));
	arm(id_a, 100, 100);
	arm(id_c, 0, 1000000);
	slurp("/proc/self/timers", timers_before, sizeof(timers_before));
}

static long long ns(struct timespec t)
{
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void verify_settings(void)
{
	char now[4096];
	struct itimerspec its;
	struct itimerval itv;

	slurp("/proc/self/timers", now, sizeof(now));
	CHECK(strcmp(now, timers_before) == 0, "/proc/self/timers was:\n%s\nis:\n%s", timers_before, now);
	CHECK_SYS(syscall(SYS_timer_gettime, id_a, &its));
	CHECK(ns(its.it_interval) == 100000000LL, "timer A interval %lld ns", ns(its.it_interval));
	CHECK(ns(its.it_value) > 0 && ns(its.it_value) <= 100000000LL, "timer A remaining %lld ns", ns(its.it_value));
	CHECK_SYS(syscall(SYS_timer_gettime, id_c, &its));
	CHECK(ns(its.it_interval) == 0, "timer C interval %lld", ns(its.it_interval));
	CHECK(ns(its.it_value) > 990000000000LL && ns(its.it_value) <= 1000000000000LL,
	      "timer C remaining %lld ns", ns(its.it_value));
	CHECK_SYS(syscall(SYS_timer_gettime, id_d, &its));
	CHECK(ns(its.it_value) == 0 && ns(its.it_interval) == 0, "timer D is armed");
	CHECK(syscall(SYS_timer_gettime, id_b, &its) == -1 && errno == EINVAL, "deleted timer B exists");
	CHECK_SYS(getitimer(ITIMER_REAL, &itv));
	CHECK(itv.it_interval.tv_sec == 0 && itv.it_interval.tv_usec == 50000, "ITIMER_REAL interval %ld.%06ld",
	      itv.it_interval.tv_sec, itv.it_interval.tv_usec);
	CHECK_SYS(getitimer(ITIMER_VIRTUAL, &itv));
	CHECK(itv.it_interval.tv_sec == 7 && itv.it_interval.tv_usec == 0, "ITIMER_VIRTUAL interval %ld", itv.it_interval.tv_sec);
	CHECK(itv.it_value.tv_sec >= 990 && itv.it_value.tv_sec <= 1000, "ITIMER_VIRTUAL value %ld s", itv.it_value.tv_sec);
}

static void verify_delivery(void)
{
	int a0 = alarms, t0 = ticks;
	struct timespec end, now;

	clock_gettime(CLOCK_MONOTONIC, &end);
	end.tv_sec += 3;
	while (alarms < a0 + 5 || ticks < t0 + 5) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		CHECK(ns(now) < ns(end), "in 3 s after go: %d SIGALRM, %d timer ticks", alarms - a0, ticks - t0);
		pause();
	}
	CHECK(!bad_value, "a timer tick arrived with the wrong siginfo");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	setup();
	victim_ready();
	victim_wait_go();
	verify_settings();
	verify_delivery();
	victim_pass();
}
