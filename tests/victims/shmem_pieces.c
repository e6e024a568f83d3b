/*
 * Shared anonymous memory mapped in pieces (CRIU's maps01): a 64-page object M that the
 * child maps whole while the parent, the first process of the tree, keeps only pieces of
 * it (pages 1-9 and 11-62) and maps page 20 a second time through
 * /proc/self/map_files. Pages only the child maps (0, 10, 63) hold the child's data,
 * every page holds its own. After go: every page holds its data in each process that
 * maps it, the object is still 64 pages (st_size of the map_files link), each mapping
 * keeps its offset, and a write through the parent's second mapping of page 20 shows in
 * the child's M (the parent writes after go, then tells the child by SIGUSR2).
 */
#include "victim.h"
#include "family.h"
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGES 64
#define PG 4096UL

static char *m;
static volatile sig_atomic_t told;

static void on_told(int sig)
{
	(void)sig;
	told = 1;
}

static char want(int page)
{
	return (char)(page * 3 + 1);
}

/* The offset smaps gives the mapping at `addr`, or -1. */
static long offset_of(char *addr)
{
	FILE *f = fopen("/proc/self/maps", "r");
	unsigned long start, end, off;
	char line[512];
	long out = -1;

	CHECK(f, "open maps");
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx %*s %lx", &start, &end, &off) == 3 && start == (unsigned long)addr)
			out = (long)off;
	fclose(f);
	return out;
}

static long object_size(char *start, char *end)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)start, (unsigned long)end);
	CHECK_SYS(stat(path, &st));
	return st.st_size;
}

static void child(void)
{
	m[0] = want(0);
	m[10 * PG] = want(10);
	m[(PAGES - 1) * PG] = want(PAGES - 1);
	victim_wait_go();
	for (int p = 0; p < PAGES; p++)
		CHECK(m[p * PG] == want(p), "child: page %d holds %d", p, m[p * PG]);
	CHECK(offset_of(m) == 0, "child: M maps from offset %ld", offset_of(m));
	CHECK(object_size(m, m + PAGES * PG) == PAGES * PG, "child: object size changed");
	while (!told)
		pause();
	CHECK(m[20 * PG + 1] == 'x', "child: a write through the parent's page 20 did not show");
	exit(0);
}

int main(void)
{
	struct family f = { .n = 0 };
	struct sigaction sa = { .sa_handler = on_told };
	char path[128], *again;
	int fd, ready[2];

	victim_install_go();
	CHECK_SYS(sigaction(SIGUSR2, &sa, NULL));
	m = mmap(NULL, PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap");
	for (int p = 1; p < PAGES - 1; p++)
		if (p != 10)
			m[p * PG] = want(p);
	CHECK_SYS(pipe(ready));
	family_spawn(&f, child);
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)m, (unsigned long)m + PAGES * PG);
	fd = open(path, O_RDWR);
	CHECK_SYS(fd);
	again = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 20 * PG);
	CHECK(again != MAP_FAILED, "mmap page 20 again");
	close(fd);
	/* Let the child write its pages before the parent drops them. */
	while (((volatile char *)m)[(PAGES - 1) * PG] != want(PAGES - 1))
		usleep(1000);
	CHECK_SYS(munmap(m, PG));
	CHECK_SYS(munmap(m + 10 * PG, PG));
	CHECK_SYS(munmap(m + (PAGES - 1) * PG, PG));
	victim_ready();
	victim_wait_go();
	for (int p = 1; p < PAGES - 1; p++)
		if (p != 10)
			CHECK(m[p * PG] == want(p), "parent: page %d holds %d", p, m[p * PG]);
	CHECK(again[0] == want(20), "parent: the second mapping of page 20 holds %d", again[0]);
	CHECK(offset_of(m + PG) == (long)PG && offset_of(m + 11 * PG) == (long)(11 * PG) &&
	      offset_of(again) == (long)(20 * PG), "parent: offsets changed");
	CHECK(object_size(m + PG, m + 10 * PG) == PAGES * PG, "parent: object size is %ld",
	      object_size(m + PG, m + 10 * PG));
	again[1] = 'x';
	for (int i = 0; i < f.n; i++)
		kill(f.kids[i], SIGUSR2);
	family_go(&f, "parent");
	victim_pass();
}
