/*
 * Copy-on-write memory of a process tree: the root fills a private anonymous region (64
 * MiB, or "-m MIB") and forks; the children share it with the root until they write.
 *
 *   root: fills BIG and a 4-page GROW region (4 more pages left free after it), forks
 *   |     everyone below, then rewrites pages 300..309 (its children keep the old ones)
 *   |-- R1, R2, R3: only read
 *   |-- N: forks G first, then only reads
 *   |   `-- G: only reads (a grandchild sharing with N, which shares with the root)
 *   `-- W: rewrites pages 0..15, drops pages 100..199 (MADV_DONTNEED: zeros), grows GROW
 *          in place to 8 pages (mremap) and fills the new ones, makes the first MiB
 *          read-only (its mapping splits in two)
 *
 * On go every process checks every word of BIG and GROW, forwards go to its children and
 * reaps them; the root prints PASS last. tests/victims.rs also checks that the tree's
 * total PSS does not grow across dump and restore.
 */
#include "victim.h"
#include "family.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define WORDS (PAGE / 8)

enum role { ROOT, READER, WRITER };

static uint64_t *big;
static size_t big_pages;
static uint64_t *grow;
static volatile int *ready; /* a MAP_SHARED counter: processes set up */


static uint64_t pattern(size_t page) { return 0x1000000000000000ULL | page; }

static void fill_page(uint64_t *p, uint64_t v)
{
	for (size_t i = 0; i < WORDS; i++)
		p[i] = v;
}

/* What page `p` of BIG holds for a process of `role`. */
static uint64_t expected(enum role role, size_t p)
{
	if (role == ROOT && p >= 300 && p < 310)
		return 0x5252525252525252ULL;
	if (role == WRITER && p < 16)
		return 0x5757575757575757ULL;
	if (role == WRITER && p >= 100 && p < 200)
		return 0;
	return pattern(p);
}

static void check_page(const char *who, const uint64_t *p, uint64_t v, const char *what,
		       size_t page)
{
	for (size_t i = 0; i < WORDS; i++)
		CHECK(p[i] == v, "%s %d: %s page %zu word %zu holds %#llx, expected %#llx", who,
		      getpid(), what, page, i, (unsigned long long)p[i], (unsigned long long)v);
}

static void verify(const char *who, enum role role)
{
	size_t grow_pages = role == WRITER ? 8 : 4;

	for (size_t p = 0; p < big_pages; p++)
		check_page(who, big + p * WORDS, expected(role, p), "BIG", p);
	for (size_t p = 0; p < grow_pages; p++)
		check_page(who, grow + p * WORDS, p < 4 ? pattern(1000 + p) : 0x4747474747474747ULL,
			   "GROW", p);
}

/* Forward go to every child until each has exited, as the harness does for the root. */
static void set_up(void) { __atomic_add_fetch(ready, 1, __ATOMIC_SEQ_CST); }

static void reader(void)
{
	set_up();
	victim_wait_go();
	verify("reader", READER);
}

static void nester(void)
{
	struct family f = { .n = 0 };

	family_spawn(&f, reader);
	set_up();
	victim_wait_go();
	verify("nester", READER);
	family_go(&f, "nester");
}

static void writer(void)
{
	for (size_t p = 0; p < 16; p++)
		fill_page(big + p * WORDS, 0x5757575757575757ULL);
	CHECK_SYS(madvise(big + 100 * WORDS, 100 * PAGE, MADV_DONTNEED));
	CHECK(mremap(grow, 4 * PAGE, 8 * PAGE, 0) == grow, "mremap in place: %s", strerror(errno));
	for (size_t p = 4; p < 8; p++)
		fill_page(grow + p * WORDS, 0x4747474747474747ULL);
	CHECK_SYS(mprotect(big, 1 << 20, PROT_READ));
	set_up();
	victim_wait_go();
	verify("writer", WRITER);
}

int main(int argc, char **argv)
{
	struct family f = { .n = 0 };
	size_t mib = argc > 2 && !strcmp(argv[1], "-m") ? strtoul(argv[2], NULL, 0) : 64;
	int rw = PROT_READ | PROT_WRITE, priv = MAP_PRIVATE | MAP_ANONYMOUS;

	victim_install_go();
	big_pages = (mib << 20) / PAGE;
	CHECK(big_pages >= 400, "-m %zu: at least 2 MiB", mib);
	big = mmap(NULL, big_pages * PAGE, rw, priv, -1, 0);
	grow = mmap(NULL, 8 * PAGE, rw, priv, -1, 0);
	ready = mmap(NULL, PAGE, rw, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(big != MAP_FAILED && grow != MAP_FAILED && ready != MAP_FAILED, "mmap: %s",
	      strerror(errno));
	CHECK_SYS(munmap(grow + 4 * WORDS, 4 * PAGE));
	for (size_t p = 0; p < big_pages; p++)
		fill_page(big + p * WORDS, pattern(p));
	for (size_t p = 0; p < 4; p++)
		fill_page(grow + p * WORDS, pattern(1000 + p));

	for (int i = 0; i < 3; i++)
		family_spawn(&f, reader);
	family_spawn(&f, nester);
	family_spawn(&f, writer);
	for (size_t p = 300; p < 310; p++)
		fill_page(big + p * WORDS, 0x5252525252525252ULL);
	while (__atomic_load_n(ready, __ATOMIC_SEQ_CST) < 6)
		usleep(1000);
	victim_ready();
	victim_wait_go();
	verify("root", ROOT);
	family_go(&f, "root");
	victim_pass();
}
