/*
 * Mapping flags that only show in /proc/self/smaps "VmFlags": each region gets one
 * (mlock'ed "lo", MADV_DONTFORK "dc", MADV_WIPEONFORK "wf", MADV_DONTDUMP "dd",
 * MADV_NOHUGEPAGE "nh", MADV_HUGEPAGE "hg", MADV_SEQUENTIAL "sr", MADV_RANDOM "rr",
 * MADV_MERGEABLE "mg", mseal'ed "sl", MAP_DROPPABLE "dp") and data in it; after go, each
 * region must still carry its flag and no other of these, and its data (a droppable
 * region's pages may be dropped: zeros there are fine), and the sealed one must still
 * refuse munmap (EPERM). A flag this kernel does not offer is left out.
 */
#include "victim.h"
#include <sys/mman.h>
#include <sys/syscall.h>

#define PAGES 4
#define LEN (PAGES * 4096)

struct region {
	const char *flag;
	char *addr;
};

static struct region regions[] = {
	{ "lo" }, { "dc" }, { "wf" }, { "dd" }, { "nh" }, { "hg" },
	{ "sr" }, { "rr" }, { "mg" }, { "dp" }, { "sl" },
};
/* The flags that madvise/mmap give: a region carries its own only. */
static const char *exclusive[] = { "dc", "wf", "dd", "nh", "hg", "sr", "rr", "mg", "dp" };
#define NEXCLUSIVE (int)(sizeof(exclusive) / sizeof(exclusive[0]))

#ifndef MAP_DROPPABLE
#define MAP_DROPPABLE 0x08
#endif
#define NREGIONS (int)(sizeof(regions) / sizeof(regions[0]))

static int sealing;
/* Regions whose flag this kernel refused (EINVAL): not checked. */
static int unsupported[NREGIONS];

/* madvise, or note that this kernel lacks the advice. */
static void advise(int i, int advice)
{
	if (madvise(regions[i].addr, LEN, advice) == 0)
		return;
	CHECK(errno == EINVAL, "madvise %s: %s", regions[i].flag, strerror(errno));
	unsupported[i] = 1;
}

static void apply(int i)
{
	const char *f = regions[i].flag;
	char *a = regions[i].addr;

	if (!strcmp(f, "lo"))
		CHECK_SYS(mlock(a, LEN));
	else if (!strcmp(f, "dc"))
		advise(i, MADV_DONTFORK);
	else if (!strcmp(f, "wf"))
		advise(i, MADV_WIPEONFORK);
	else if (!strcmp(f, "dd"))
		advise(i, MADV_DONTDUMP);
	else if (!strcmp(f, "nh"))
		advise(i, MADV_NOHUGEPAGE);
	else if (!strcmp(f, "hg"))
		advise(i, MADV_HUGEPAGE);
	else if (!strcmp(f, "sr"))
		advise(i, MADV_SEQUENTIAL);
	else if (!strcmp(f, "rr"))
		advise(i, MADV_RANDOM);
	else if (!strcmp(f, "mg"))
		advise(i, MADV_MERGEABLE);
	else if (!strcmp(f, "sl"))
		sealing = syscall(462 /* mseal */, a, LEN, 0) == 0;
}

/* The VmFlags line of the smaps entry that starts at `addr`, or NULL. Entry headers are
 * the lines that start with a lowercase hex address range. */
static char *vmflags_of(char *addr, char *out, size_t n)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[1024];
	unsigned long start, end;
	int in = 0;

	CHECK(f, "open smaps");
	while (fgets(line, sizeof(line), f)) {
		if ((line[0] >= '0' && line[0] <= '9') || (line[0] >= 'a' && line[0] <= 'f')) {
			if (sscanf(line, "%lx-%lx", &start, &end) == 2)
				in = start == (unsigned long)addr;
		} else if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, n, "%.*s", (int)n - 1, line + 8);
			fclose(f);
			return out;
		}
	}
	fclose(f);
	return NULL;
}

static int has_flag(const char *flags, const char *code)
{
	char pat[8];

	snprintf(pat, sizeof(pat), " %s", code);
	return strstr(flags, pat) != NULL;
}

/* Region i still carries its flag and none of the other exclusive ones, and its data. */
static void check_region(int i)
{
	struct region *r = &regions[i];
	char flags[1024];
	int droppable = !strcmp(r->flag, "dp");

	if (unsupported[i])
		return;
	CHECK(vmflags_of(r->addr, flags, sizeof(flags)), "region %s at %p has no smaps entry", r->flag, r->addr);
	if (strcmp(r->flag, "sl") || sealing)
		CHECK(has_flag(flags, r->flag), "region at %p lost VmFlag %s: %s", r->addr, r->flag, flags);
	for (int k = 0; k < NEXCLUSIVE; k++) {
		const char *e = exclusive[k];
		/* MAP_DROPPABLE implies MADV_WIPEONFORK and MADV_DONTDUMP. */
		int implied = droppable && (!strcmp(e, "wf") || !strcmp(e, "dd"));
		if (strcmp(e, r->flag) && !implied)
			CHECK(!has_flag(flags, e), "region %s at %p gained VmFlag %s: %s", r->flag, r->addr, e, flags);
	}
	for (int p = 0; p < LEN; p += 4096) {
		char want = (char)(i * 16 + p / 4096 + 1);
		CHECK(r->addr[p] == want || (droppable && r->addr[p] == 0),
		      "region %s lost its data at page %d", r->flag, p / 4096);
	}
}

/* A region of LEN bytes followed by a gap page, which keeps the kernel from merging it
 * with the next; droppable if asked and this kernel has MAP_DROPPABLE. */
static char *region(int i)
{
	int type = strcmp(regions[i].flag, "dp") ? MAP_PRIVATE : MAP_DROPPABLE;
	char *a = mmap(NULL, LEN + 4096, PROT_READ | PROT_WRITE, type | MAP_ANONYMOUS, -1, 0);

	if (a == MAP_FAILED && type == MAP_DROPPABLE && errno == EINVAL) {
		unsupported[i] = 1;
		a = mmap(NULL, LEN + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	}
	CHECK(a != MAP_FAILED, "mmap");
	CHECK_SYS(munmap(a + LEN, 4096));
	return a;
}

int main(void)
{
	victim_install_go();
	for (int i = 0; i < NREGIONS; i++) {
		char *a = region(i);

		regions[i].addr = a;
		for (int p = 0; p < LEN; p += 4096)
			a[p] = (char)(i * 16 + p / 4096 + 1);
		apply(i);
	}
	for (int i = 0; i < NREGIONS; i++)
		check_region(i);
	victim_ready();
	victim_wait_go();
	for (int i = 0; i < NREGIONS; i++)
		check_region(i);
	if (sealing) {
		char *s = regions[NREGIONS - 1].addr;
		CHECK(munmap(s, LEN) == -1 && errno == EPERM, "sealed region can be unmapped after restore");
	}
	victim_pass();
}
