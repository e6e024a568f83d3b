/*
 * guards: guard regions (MADV_GUARD_INSTALL, Linux 6.13+).
 *
 * Before READY: three 8-page regions filled with a pattern, with guard pages installed —
 * private anonymous (pages 2-3), shared anonymous (page 6) and a private mapping of a
 * file in the working directory whose page 0 is changed (guard on page 5).
 * After go: every guard page faults on read and on write (SIGSEGV, caught with
 * sigsetjmp/siglongjmp) and /proc/self/pagemap marks it a guard (bit 58); every other
 * page still holds its data.
 */
#include "victim.h"

#include <fcntl.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/mman.h>

#define MADV_GUARD_INSTALL_ 102
#define PM_GUARD_REGION (1ull << 58)
#define PAGES 8

static long page;
static sigjmp_buf jump;

struct region {
	const char *name;
	char *base;
	unsigned guards;        /* bit i: page i is a guard */
};

static struct region regions[3];

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(jump, 1);
}

/* Expected byte at page i of region r. */
static char expected(int r, int i)
{
	if (r == 2)
		return i == 0 ? 'X' : (char)('f' + i);
	return (char)('a' + 8 * r + i);
}

static char *map_file(void)
{
	char *buf = malloc(PAGES * page), *p;
	int fd = open("guards.data", O_RDWR | O_CREAT | O_TRUNC, 0600);
	int i;

	CHECK_SYS(fd);
	for (i = 0; i < PAGES; i++)
		memset(buf + i * page, expected(2, i), page);
	CHECK(write(fd, buf, PAGES * page) == PAGES * page, "write guards.data");
	free(buf);
	p = mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(p != MAP_FAILED, "mmap guards.data: %s", strerror(errno));
	close(fd);
	memset(p, 'X', page);
	return p;
}

static void guard(struct region *r, int first, int n)
{
	if (madvise(r->base + first * page, n * page, MADV_GUARD_INSTALL_) != 0) {
		if (errno == EINVAL)
			victim_skip("MADV_GUARD_INSTALL is not supported here (Linux 6.13+)");
		victim_fail("madvise(MADV_GUARD_INSTALL) on %s: %s", r->name, strerror(errno));
	}
	r->guards |= ((1u << n) - 1) << first;
}

static void setup(void)
{
	int r, i;

	regions[0] = (struct region){ "private anon",
		mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) };
	regions[1] = (struct region){ "shared anon",
		mmap(NULL, PAGES * page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0) };
	for (r = 0; r < 2; r++) {
		CHECK(regions[r].base != MAP_FAILED, "mmap %s", regions[r].name);
		for (i = 0; i < PAGES; i++)
			memset(regions[r].base + i * page, expected(r, i), page);
	}
	regions[2] = (struct region){ "private file", map_file() };
	guard(&regions[0], 2, 2);
	guard(&regions[1], 6, 1);
	guard(&regions[2], 5, 1);
}

/* Whether touching `p` faults (reading, or writing when `write`). */
static int faults(volatile char *p, int write)
{
	if (sigsetjmp(jump, 1))
		return 1;
	if (write)
		*p = 1;
	else
		(void)*p;
	return 0;
}

static int pagemap_guard(int pm, char *p)
{
	uint64_t e = 0;

	CHECK(pread(pm, &e, 8, ((uintptr_t)p / page) * 8) == 8, "read pagemap");
	return (e & PM_GUARD_REGION) != 0;
}

static void verify(void)
{
	struct sigaction sa = { .sa_handler = on_segv };
	int pm = open("/proc/self/pagemap", O_RDONLY);
	int r, i, j;

	CHECK_SYS(pm);
	sigemptyset(&sa.sa_mask);
	CHECK_SYS(sigaction(SIGSEGV, &sa, NULL));
	for (r = 0; r < 3; r++) {
		struct region *g = &regions[r];

		for (i = 0; i < PAGES; i++) {
			char *p = g->base + i * page;

			if (g->guards & (1u << i)) {
				CHECK(faults(p, 0) && faults(p + page - 1, 1),
				      "%s page %d is no longer a guard", g->name, i);
				CHECK(pagemap_guard(pm, p), "pagemap: %s page %d is not a guard", g->name, i);
				continue;
			}
			CHECK(!pagemap_guard(pm, p), "pagemap: %s page %d is a guard", g->name, i);
			for (j = 0; j < page; j++)
				CHECK(p[j] == expected(r, i), "%s page %d byte %d is %d, want %d", g->name,
				      i, j, p[j], expected(r, i));
		}
	}
	close(pm);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	page = sysconf(_SC_PAGESIZE);
	victim_install_go();
	setup();
	verify();
	victim_ready();
	victim_wait_go();
	verify();
	victim_pass();
}
