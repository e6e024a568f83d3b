/*
 * The victim contract, shared by every program in tests/victims/.
 *
 *   1. set up the state under test;
 *   2. victim_ready(): print "READY" on stdout (the harness waits for it in the log);
 *   3. victim_wait_go(): sleep until SIGUSR1 (the harness dumps and restores meanwhile);
 *   4. verify everything, then victim_pass() or FAILF(...): "PASS" / "FAIL: <what>".
 *
 * A victim that cannot test its feature on this machine prints "SKIP: <why>" and exits 0.
 * SIGUSR1 is level-triggered: the harness may send it more than once, so the handler only
 * sets a flag and victims retry syscalls that fail with EINTR.
 */
#ifndef STASIS_VICTIM_H
#define STASIS_VICTIM_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>

static volatile sig_atomic_t victim_go;

static inline void victim_on_go(int sig)
{
	(void)sig;
	victim_go = 1;
}

/* Install the SIGUSR1 handler. No SA_RESTART: blocking calls see EINTR on go. */
static inline void victim_install_go(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = victim_on_go;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR1, &sa, NULL) != 0) {
		printf("FAIL: sigaction(SIGUSR1): %s\n", strerror(errno));
		exit(1);
	}
}

static inline void victim_ready(void)
{
	printf("READY\n");
	fflush(stdout);
}

static inline void victim_wait_go(void)
{
	while (!victim_go)
		pause();
}

static inline void victim_pass(void)
{
	printf("PASS\n");
	fflush(stdout);
	exit(0);
}

/* The whole contract for a victim without arguments: set up, READY, wait for go,
 * verify, PASS (verify calls victim_fail on the first difference). */
static inline int victim_run(void (*setup)(void), void (*verify)(void))
{
	victim_install_go();
	setup();
	victim_ready();
	victim_wait_go();
	verify();
	victim_pass();
	return 0;
}

static volatile sig_atomic_t victim_change;

static inline void victim_on_change(int sig)
{
	(void)sig;
	victim_change = 1;
}

/* Victims changed between a pre-dump and the dump (tests/tracking.rs): after READY,
 * sleep until SIGUSR2 ("change"), run `make_changes`, print "CHANGED", then wait for
 * go, verify and PASS. The SIGUSR2 handler is installed by victim_install_change. */
static inline void victim_install_change(void)
{
	signal(SIGUSR2, victim_on_change);
}

static inline void victim_run_changed(void (*make_changes)(void), void (*verify)(void))
{
	victim_ready();
	while (!victim_change)
		pause();
	make_changes();
	printf("CHANGED\n");
	fflush(stdout);
	victim_wait_go();
	verify();
	victim_pass();
}

static inline void victim_skip(const char *why)
{
	printf("SKIP: %s\n", why);
	fflush(stdout);
	exit(0);
}

__attribute__((format(printf, 1, 2), noreturn))
static inline void victim_fail(const char *fmt, ...)
{
	va_list ap;

	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
	exit(1);
}

/* CHECK(cond, "what", ...): fail with the message unless cond holds. */
#define CHECK(cond, ...) do { if (!(cond)) victim_fail(__VA_ARGS__); } while (0)
/* Fail naming the call and errno when a setup syscall returns -1 / NULL-ish. */
#define CHECK_SYS(expr) do { if ((long)(expr) == -1) \
	victim_fail("%s: %s (line %d)", #expr, strerror(errno), __LINE__); } while (0)

/* Move a freshly opened fd (checked) to number `at`, keeping its FD_CLOEXEC. */
static inline void victim_place(int fd, int at)
{
	CHECK_SYS(fd);
	if (fd != at) {
		CHECK_SYS(dup3(fd, at, (fcntl(fd, F_GETFD) & FD_CLOEXEC) ? O_CLOEXEC : 0));
		close(fd);
	}
}

/* The text of the /proc/self link `name` ("fd/3", "cwd") into `buf` of `len` bytes. */
static inline void victim_proc_link(const char *name, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/%s", name);
	n = readlink(path, buf, len - 1);
	CHECK_SYS(n);
	buf[n] = 0;
}

/* Reads fd `fd` (polled, 5 s at most each time) until it gave strlen(want) bytes, which
 * must be `want`; `who` names the reader in the failure. */
static inline void victim_expect_read(int fd, const char *want, const char *who)
{
	char buf[256] = { 0 };
	size_t got = 0;

	while (got < strlen(want) && got < sizeof(buf) - 1) {
		struct pollfd p = { fd, POLLIN, 0 };
		ssize_t n;

		CHECK(poll(&p, 1, 5000) == 1, "%s: fd %d has \"%s\", want \"%s\"", who, fd, buf, want);
		n = read(fd, buf + got, sizeof(buf) - 1 - got);
		CHECK(n > 0, "%s: read fd %d: %s", who, fd, strerror(errno));
		got += n;
	}
	CHECK(!strcmp(buf, want), "%s: fd %d has \"%s\", want \"%s\"", who, fd, buf, want);
}

/* Run shell command `cmd`; fail naming it unless it exits 0. */
static inline void victim_sh(const char *cmd)
{
	CHECK(system(cmd) == 0, "`%s` failed", cmd);
}

/* What shell command `cmd` prints (at most `size` - 1 bytes, NUL-terminated); fail
 * unless it exits 0. */
static inline void victim_capture(const char *cmd, char *buf, size_t size)
{
	FILE *f = popen(cmd, "r");
	size_t n;

	CHECK(f != NULL, "popen %s: %s", cmd, strerror(errno));
	n = fread(buf, 1, size - 1, f);
	buf[n] = 0;
	CHECK(pclose(f) == 0, "`%s` failed", cmd);
}

#endif
