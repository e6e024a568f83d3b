/*
 * Memory in huge pages (hugetlb): anonymous private (4 MiB, two huge pages written in
 * part), anonymous shared (4 MiB, its second huge page never touched; its first also
 * mapped privately through /proc/self/map_files), and a hugetlb memfd "huge" (2 MiB)
 * mapped shared and privately, its fd 10 kept open.
 *
 * Needs free huge pages: with fewer than 16 free, it raises vm.nr_hugepages to 64 if it
 * may (and puts the old value back on PASS), else prints SKIP with the reason.
 *
 * After go: every byte written (a pattern), the page size (smaps KernelPageSize) and the
 * device of each mapping as before, the memfd one object (its fd reads what the shared
 * mapping stores, and the private mapping's untouched page follows it), and the private
 * mapping's own write kept from the object.
 */
#include "victim.h"

#include <sys/mman.h>
#include <sys/stat.h>

#define HUGE (2UL << 20)
#ifndef MFD_HUGETLB
#define MFD_HUGETLB 4
#endif

static unsigned char pat(unsigned long i, int seed) { return (unsigned char)(i * 7 + seed); }

/* Free 2 MiB huge pages, from /proc/meminfo. */
static long free_huge(void)
{
	char line[128];
	long n = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "HugePages_Free: %ld", &n) == 1)
			break;
	fclose(f);
	return n;
}

/* vm.nr_hugepages before this victim raised it (-1: left alone), put back on PASS. */
static long old_nr = -1;

static void set_nr(long n)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w");

	if (f) {
		fprintf(f, "%ld\n", n);
		fclose(f);
	}
}

static void need_huge_pages(void)
{
	FILE *f;

	if (free_huge() >= 16)
		return;
	f = fopen("/proc/sys/vm/nr_hugepages", "r");
	if (!f || fscanf(f, "%ld", &old_nr) != 1)
		old_nr = -1;
	if (f)
		fclose(f);
	f = fopen("/proc/sys/vm/nr_hugepages", "w");
	if (!f || fprintf(f, "64\n") < 0 || fclose(f) != 0)
		victim_skip("fewer than 16 free huge pages and vm.nr_hugepages cannot be raised (not root?)");
	if (free_huge() < 16)
		victim_skip("fewer than 16 free huge pages even with vm.nr_hugepages = 64");
}

/* The KernelPageSize (kB) and device of the mapping at `p`, from /proc/self/smaps. */
static void map_of(const void *p, long *kb, char *dev)
{
	char line[512], want[32];
	int in = 0;
	FILE *f = fopen("/proc/self/smaps", "r");

	CHECK(f, "fopen smaps: %s", strerror(errno));
	snprintf(want, sizeof(want), "%lx-", (unsigned long)p);
	*kb = -1;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, want, strlen(want))) {
			in = 1;
			sscanf(line, "%*s %*s %*s %31s", dev);
		} else if (in && sscanf(line, "KernelPageSize: %ld kB", kb) == 1) {
			break;
		}
	}
	fclose(f);
	CHECK(*kb > 0, "no mapping at %p in smaps", p);
}

static void fill(unsigned char *p, unsigned long len, int seed)
{
	for (unsigned long i = 0; i < len; i++)
		p[i] = pat(i, seed);
}

static void check(const unsigned char *p, unsigned long len, int seed, const char *what)
{
	for (unsigned long i = 0; i < len; i++)
		CHECK(p[i] == pat(i, seed), "%s: byte %lu is %#x, want %#x", what, i, p[i], pat(i, seed));
}

int main(void)
{
	unsigned char *priv, *shared, *mshared, *mpriv, *spriv;
	void *maps[5];
	long kb[5];
	char dev[5][32];
	char path[64];

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	need_huge_pages();
	priv = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	shared = mmap(NULL, 2 * HUGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (priv == MAP_FAILED || shared == MAP_FAILED)
		victim_skip("mmap(MAP_HUGETLB) fails");
	victim_place(memfd_create("huge", MFD_HUGETLB), 10);
	CHECK_SYS(ftruncate(10, HUGE));
	mshared = mmap(NULL, HUGE, PROT_READ | PROT_WRITE, MAP_SHARED, 10, 0);
	mpriv = mmap(NULL, HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, 10, 0);
	CHECK(mshared != MAP_FAILED && mpriv != MAP_FAILED, "mmap hugetlb memfd: %s", strerror(errno));
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (long)shared, (long)shared + 2 * HUGE);
	victim_place(open(path, O_RDWR), 11);
	spriv = mmap(NULL, HUGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, 11, 0);
	CHECK(spriv != MAP_FAILED, "mmap shared hugetlb memory privately: %s", strerror(errno));
	close(11);
	fill(priv, 8192, 1);
	fill(priv + 2 * HUGE - 4096, 4096, 2);
	fill(shared, HUGE, 3);
	fill(mshared, 4096, 4);
	CHECK(mpriv[0] == pat(0, 4), "memfd private mapping does not show the object");
	maps[0] = priv, maps[1] = shared, maps[2] = mshared, maps[3] = mpriv, maps[4] = spriv;
	for (int i = 0; i < 5; i++)
		map_of(maps[i], &kb[i], dev[i]);
	victim_ready();
	victim_wait_go();
	for (int i = 0; i < 5; i++) {
		long now;
		char d[32];

		map_of(maps[i], &now, d);
		CHECK(now == kb[i] && !strcmp(d, dev[i]), "mapping %d: %ld kB pages on %s, was %ld kB on %s",
		      i, now, d, kb[i], dev[i]);
	}
	check(priv, 8192, 1, "private");
	check(priv + 2 * HUGE - 4096, 4096, 2, "private, last page");
	CHECK(priv[HUGE] == 0, "private: an untouched byte is %#x", priv[HUGE]);
	check(shared, HUGE, 3, "shared");
	CHECK(shared[HUGE + 100] == 0, "shared: a byte of the untouched huge page is %#x", shared[HUGE + 100]);
	check(spriv, 4096, 3, "shared, mapped privately");
	shared[0] = 'S';
	CHECK(spriv[0] == 'S', "the private mapping of the shared memory does not follow it");
	check(mshared, 4096, 4, "memfd, shared");
	check(mpriv, 4096, 4, "memfd, private");
	char got[2] = {0};

	memcpy(mshared, "fd", 2);
	CHECK(pread(10, got, 2, 0) == 2 && !memcmp(got, "fd", 2) && mpriv[1] == 'd',
	      "memfd: fd 10 or the private mapping is not the shared object");
	mpriv[0] = 'P';
	CHECK(mshared[0] == 'f', "memfd: a private write leaked");
	if (old_nr >= 0)
		set_nr(old_nr);
	victim_pass();
}
