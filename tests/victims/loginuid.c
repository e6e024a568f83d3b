/*
 * loginuid: the audit login uid.
 *
 * Before READY: the victim writes 4242 into /proc/self/loginuid (allowed once while it is
 * unset, or with CAP_AUDIT_CONTROL); it skips where the kernel has no audit or refuses.
 * After go: /proc/self/loginuid reads 4242 again (the restorer's own loginuid is what a
 * restored task would inherit otherwise).
 */
#include "victim.h"

#include <fcntl.h>

#define WANT 4242u

static long read_loginuid(void)
{
	char buf[32] = { 0 };
	int fd = open("/proc/self/loginuid", O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

static void setup(void)
{
	char text[16];
	int fd = open("/proc/self/loginuid", O_WRONLY);
	int n = snprintf(text, sizeof(text), "%u", WANT);

	if (fd < 0)
		victim_skip(errno == ENOENT ? "kernel without audit (no /proc/self/loginuid)"
					    : "cannot open /proc/self/loginuid");
	if (write(fd, text, n) != n) {
		char why[96];

		snprintf(why, sizeof(why), "cannot set loginuid: %s", strerror(errno));
		victim_skip(why);
	}
	close(fd);
	CHECK(read_loginuid() == WANT, "loginuid reads %ld after writing %u", read_loginuid(), WANT);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	setup();
	victim_ready();
	victim_wait_go();
	CHECK(read_loginuid() == WANT, "loginuid is %ld, was %u", read_loginuid(), WANT);
	victim_pass();
}
