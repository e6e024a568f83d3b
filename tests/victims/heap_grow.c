/*
 * heap_grow: memory that appears next to a tracked mapping, laid out as the untracked
 * program has it.
 *
 * READY, then on SIGUSR2 ("change", sent after the pre-dump) it grows its heap by brk
 * (4 pages), maps 2 pages right below a mapping, and moves a written pair of pages
 * (mremap) to right after another mapping; prints CHANGED. Without tracking the kernel
 * merges the first two with their neighbour (their page offsets continue) and keeps the
 * moved pair apart (its offset is where it was made). After go: /proc/self/maps shows
 * exactly that: the heap one mapping up to the break, the mapping grown below one, the
 * moved pair its own; an mremap growing a range across each boundary fails with EFAULT
 * where two mappings meet and ENOMEM within one; every byte is as written, and the grown
 * pieces, still untouched, read zero and take writes.
 */
#include "victim.h"

#include <sys/mman.h>

#define PAGE 4096UL

static unsigned char *heap_start, *old_brk, *new_brk;
static unsigned char *m, *g, *f;
/* The mapping of /proc/self/maps holding `addr`: its start and end. */
static void mapping_of(const void *addr, unsigned long *start, unsigned long *end)
{
	FILE *maps = fopen("/proc/self/maps", "r");
	char line[512];
	CHECK(maps, "open maps: %s", strerror(errno));
	*start = *end = 0;
	while (fgets(line, sizeof line, maps)) {
		unsigned long s, e;
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s <= (unsigned long)addr &&
		    (unsigned long)addr < e) {
			*start = s;
			*end = e;
		}
	}
	fclose(maps);
}

static void expect_mapping(const char *what, const void *at, const void *start, const void *end)
{
	unsigned long s, e;
	mapping_of(at, &s, &e);
	CHECK(s == (unsigned long)start && e == (unsigned long)end,
	      "%s: the mapping at %p is %lx-%lx, want %p-%p", what, at, s, e, start, end);
}

/* An mremap growing [at - PAGE, at + PAGE) in place: EFAULT if two mappings meet at
 * `at`, ENOMEM (no room to grow within one mapping without moving) otherwise. */
static void expect_mremap(const char *what, unsigned char *at, int want)
{
	void *r = mremap(at - PAGE, 2 * PAGE, 3 * PAGE, 0);
	CHECK(r == MAP_FAILED && errno == want, "%s: mremap across %p: %s, want %s", what,
	      (void *)at, r == MAP_FAILED ? strerror(errno) : "grown", strerror(want));
}

static unsigned char *map_at(unsigned char *at, size_t pages)
{
	void *p = mmap(at, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(p == at, "mmap at %p: %s", (void *)at, strerror(errno));
	return p;
}

static void fill(unsigned char *p, size_t pages, unsigned char salt)
{
	for (size_t i = 0; i < pages; i++)
		memset(p + i * PAGE, (int)(salt + i), PAGE);
}

static void check_bytes(const char *what, const unsigned char *p, size_t pages, int salt)
{
	for (size_t i = 0; i < pages * PAGE; i++) {
		unsigned char want = salt < 0 ? 0 : (unsigned char)(salt + i / PAGE);
		CHECK(p[i] == want, "%s byte %zu: %#x, want %#x", what, i, p[i], want);
	}
}

static void setup(void)
{
	/* The stdio buffer first: nothing mallocs after this. */
	printf("heap_grow\n");
	fflush(stdout);
	unsigned char *top = sbrk(0);
	unsigned long s, e;
	CHECK(sbrk(8 * PAGE) != (void *)-1, "sbrk: %s", strerror(errno));
	old_brk = sbrk(0);
	/* The break on a page boundary, so that the growth is whole pages. */
	unsigned long pad = PAGE - (unsigned long)old_brk % PAGE;
	if (pad != PAGE)
		CHECK(sbrk((intptr_t)pad) != (void *)-1, "sbrk: %s", strerror(errno));
	old_brk = sbrk(0);
	memset(top, 'h', (size_t)(old_brk - top));
	mapping_of(old_brk - 1, &s, &e);
	CHECK(e == (unsigned long)old_brk, "the heap ends at %lx, the break is %p", e,
	      (void *)old_brk);
	heap_start = (unsigned char *)s;
	/* Room the victim places its mappings in, free around each. */
	unsigned char *room = mmap(NULL, 256 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS,
				   -1, 0);
	CHECK(room != MAP_FAILED, "mmap: %s", strerror(errno));
	munmap(room, 256 * PAGE);
	m = map_at(room + 100 * PAGE, 8);
	fill(m, 8, 10);
	g = map_at(room + 200 * PAGE, 4);
	fill(g, 4, 20);
	f = map_at(room + 20 * PAGE, 2);
	fill(f, 2, 30);
}

static void make_changes(void)
{
	CHECK(sbrk(4 * PAGE) == old_brk, "sbrk: %s", strerror(errno));
	new_brk = old_brk + 4 * PAGE;
	map_at(m - 2 * PAGE, 2);
	void *moved = mremap(f, 2 * PAGE, 2 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, g + 4 * PAGE);
	CHECK(moved == g + 4 * PAGE, "mremap: %s", strerror(errno));
	f = moved;
}

static void verify(void)
{
	expect_mapping("heap grown by brk", old_brk, heap_start, new_brk);
	expect_mapping("mapping grown below", m, m - 2 * PAGE, m + 8 * PAGE);
	expect_mapping("mapping before the moved pair", g, g, g + 4 * PAGE);
	expect_mapping("moved pair", f, f, f + 2 * PAGE);
	expect_mremap("heap grown by brk", old_brk, ENOMEM);
	expect_mremap("mapping grown below", m, ENOMEM);
	expect_mremap("moved pair", f, EFAULT);
	check_bytes("m", m, 8, 10);
	check_bytes("g", g, 4, 20);
	check_bytes("moved pair", f, 2, 30);
	check_bytes("brk growth", old_brk, 4, -1);
	check_bytes("grown below", m - 2 * PAGE, 2, -1);
	memset(old_brk, 1, 4 * PAGE);
	memset(m - 2 * PAGE, 1, 2 * PAGE);
	expect_mapping("heap grown by brk, written", old_brk, heap_start, new_brk);
}

int main(void)
{
	victim_install_go();
	victim_install_change();
	setup();
	victim_run_changed(make_changes, verify);
	return 0;
}
