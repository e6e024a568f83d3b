/*
 * anonfds: eventfd, timerfd, signalfd, epoll, pidfd and O_PATH fds.
 *
 * Before READY:
 *   fd 10 eventfd counter 42, O_NONBLOCK;   fd 11 eventfd EFD_SEMAPHORE counter 3 (cloexec);
 *   fd 12 timerfd CLOCK_MONOTONIC, 100 s left, interval 7 s;
 *   fd 13 timerfd CLOCK_BOOTTIME one-shot that already expired (1 tick unread), O_NONBLOCK;
 *   fd 14 timerfd CLOCK_MONOTONIC every 20 ms (keeps ticking);
 *   fd 15 signalfd for SIGUSR2 and SIGWINCH (blocked), with a SIGUSR2 pending, O_NONBLOCK;
 *   fd 16 epoll: fd 10 EPOLLIN data 0x1234, fd 12 EPOLLIN|EPOLLET data 77,
 *         fd 17 EPOLLIN data 5 (an epoll that comes after it);
 *   fd 17 epoll watching fd 14 (EPOLLIN, data 99); fd 18 dup of fd 16;
 *   fd 19 pidfd of this process; fd 20 O_PATH of "/etc" ; fd 21 O_PATH of /dev/null.
 * After go: F_GETFL/F_GETFD of each, counters, timer settings and ticks, the pending
 * signal through the signalfd, epoll readiness with the saved data, pidfd's pid.
 */
#include "victim.h"

#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <time.h>

#define NFD 12
static const int fds[NFD] = {10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21};
static int fl_before[NFD], fdfl_before[NFD];

static void arm(int fd, long value_ms, long interval_ms)
{
	struct itimerspec its = {
		.it_value = {value_ms / 1000, (value_ms % 1000) * 1000000},
		.it_interval = {interval_ms / 1000, (interval_ms % 1000) * 1000000},
	};
	CHECK_SYS(timerfd_settime(fd, 0, &its, NULL));
}

static void watch(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = {.events = events, .data.u64 = data};
	CHECK_SYS(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev));
}

static void setup(void)
{
	sigset_t set;

	victim_place(eventfd(42, EFD_NONBLOCK), 10);
	victim_place(eventfd(3, EFD_SEMAPHORE | EFD_CLOEXEC), 11);
	victim_place(timerfd_create(CLOCK_MONOTONIC, 0), 12);
	arm(12, 100000, 7000);
	victim_place(timerfd_create(CLOCK_BOOTTIME, TFD_NONBLOCK), 13);
	arm(13, 1, 0);
	usleep(20000);
	victim_place(timerfd_create(CLOCK_MONOTONIC, 0), 14);
	arm(14, 20, 20);

	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigaddset(&set, SIGWINCH);
	CHECK_SYS(sigprocmask(SIG_BLOCK, &set, NULL));
	victim_place(signalfd(-1, &set, SFD_NONBLOCK), 15);
	CHECK_SYS(kill(getpid(), SIGUSR2));

	victim_place(epoll_create1(0), 16);
	victim_place(epoll_create1(EPOLL_CLOEXEC), 17);
	watch(17, 14, EPOLLIN, 99);
	watch(16, 10, EPOLLIN, 0x1234);
	watch(16, 12, EPOLLIN | EPOLLET, 77);
	watch(16, 17, EPOLLIN, 5);
	CHECK_SYS(dup2(16, 18));
	victim_place(syscall(SYS_pidfd_open, getpid(), 0), 19);
	victim_place(open("/etc", O_PATH), 20);
	victim_place(open("/dev/null", O_PATH | O_CLOEXEC), 21);
}

static uint64_t counter(int fd)
{
	uint64_t v = 0;
	ssize_t n;

	while ((n = read(fd, &v, 8)) == -1 && errno == EINTR)
		; /* the harness repeats the go signal */
	CHECK(n == 8, "fd %d: read: %s", fd, strerror(errno));
	return v;
}

static long ms(struct timespec t) { return t.tv_sec * 1000 + t.tv_nsec / 1000000; }

static void check_timers(void)
{
	struct itimerspec its;
	struct timespec t0, t1;
	uint64_t ticks;

	CHECK_SYS(timerfd_gettime(12, &its));
	CHECK(ms(its.it_interval) == 7000, "fd 12: interval %ld ms, want 7000", ms(its.it_interval));
	CHECK(ms(its.it_value) > 90000 && ms(its.it_value) <= 100000, "fd 12: %ld ms left, want 90-100 s", ms(its.it_value));
	CHECK(counter(13) == 1, "fd 13: expired one-shot lost its tick");
	CHECK(read(13, &ticks, 8) == -1 && errno == EAGAIN, "fd 13: more than one tick or blocking");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ticks = counter(14); /* blocks until the next 20 ms tick at most */
	ticks = counter(14);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	CHECK(ticks >= 1 && ms(t1) - ms(t0) < 1000, "fd 14: periodic timer stopped");
}

static void check_epoll(void)
{
	struct epoll_event ev[4];
	int n, seen = 0;

	/* fd 10 (counter 41 left) is readable; fd 12 is not; fd 17 is (fd 14 ticks). */
	usleep(30000); /* EINTR only shortens it: fd 14 ticks every 20 ms */
	while ((n = epoll_wait(18, ev, 4, 1000)) == -1 && errno == EINTR)
		;
	CHECK(n >= 1, "epoll fd 18: nothing ready: %s", n < 0 ? strerror(errno) : "timeout");
	for (int i = 0; i < n; i++) {
		CHECK(ev[i].data.u64 == 0x1234 || ev[i].data.u64 == 5, "epoll: unexpected data %#llx",
		      (unsigned long long)ev[i].data.u64);
		seen |= ev[i].data.u64 == 0x1234 ? 1 : 2;
	}
	CHECK(seen == 3, "epoll: fd 10 or fd 17 not reported (seen %d)", seen);
	while ((n = epoll_wait(17, ev, 4, 1000)) == -1 && errno == EINTR)
		;
	CHECK(n == 1 && ev[0].data.u64 == 99, "epoll fd 17: fd 14 not reported with data 99");
}

int main(void)
{
	struct signalfd_siginfo si;
	char buf[PATH_MAX], path[64];
	ssize_t n;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	setup();
	for (int i = 0; i < NFD; i++) {
		fl_before[i] = fcntl(fds[i], F_GETFL);
		fdfl_before[i] = fcntl(fds[i], F_GETFD);
	}
	victim_ready();
	victim_wait_go();
	for (int i = 0; i < NFD; i++) {
		int fl = fcntl(fds[i], F_GETFL), fdfl = fcntl(fds[i], F_GETFD);
		CHECK(fl == fl_before[i], "fd %d: F_GETFL %#x, was %#x", fds[i], fl, fl_before[i]);
		CHECK(fdfl == fdfl_before[i], "fd %d: F_GETFD %#x, was %#x", fds[i], fdfl, fdfl_before[i]);
	}
	check_epoll();
	CHECK(counter(10) == 42, "fd 10: eventfd counter is not 42");
	CHECK(counter(11) == 1 && counter(11) == 1 && counter(11) == 1, "fd 11: semaphore did not count down 3 times");
	CHECK_SYS(fcntl(11, F_SETFL, O_NONBLOCK));
	CHECK(read(11, buf, 8) == -1 && errno == EAGAIN, "fd 11: more than 3 left");
	check_timers();
	CHECK(read(15, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR2, "fd 15: pending SIGUSR2 not read through the signalfd");
	CHECK(read(15, &si, sizeof(si)) == -1 && errno == EAGAIN, "fd 15: a second signal");
	snprintf(path, sizeof(path), "/proc/self/fdinfo/19");
	{
		FILE *f = fopen(path, "r");
		int pid = 0;
		CHECK(f != NULL, "open fdinfo of the pidfd");
		while (fgets(buf, sizeof(buf), f))
			if (sscanf(buf, "Pid: %d", &pid) == 1)
				break;
		fclose(f);
		CHECK(pid == getpid(), "fd 19: pidfd of pid %d, want %d", pid, getpid());
	}
	n = readlink("/proc/self/fd/20", buf, sizeof(buf) - 1);
	CHECK(n == 4 && !memcmp(buf, "/etc", 4), "fd 20: O_PATH fd lost its path");
	n = readlink("/proc/self/fd/21", buf, sizeof(buf) - 1);
	CHECK(n == 9 && !memcmp(buf, "/dev/null", 9), "fd 21: O_PATH fd lost its path");
	victim_pass();
}
