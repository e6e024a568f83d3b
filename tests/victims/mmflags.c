/*
 * Mapping flags that only show in /proc/self/smaps "VmFlags": each region gets one
 * (mlock'ed "lo", MADV_DONTFORK "dc", MADV_WIPEONFORK "wf", MADV_DONTDUMP "dd",
 * MADV_NOHUGEPAGE "nh", mseal'ed "sl") and data in it; after go, each region must still
 * carry its flag and its data, and the sealed one must still refuse munmap (EPERM).
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
	{ "lo" }, { "dc" }, { "wf" }, { "dd" }, { "nh" }, { "sl" },
};
#define NREGIONS (int)(sizeof(regions) / sizeof(regions[0]))

static int sealing;

static void apply(struct region *r)
{
	const char *f = r->flag;

	if (!strcmp(f, "lo"))
		CHECK_SYS(mlock(r->addr, LEN));
	else if (!strcmp(f, "dc"))
		CHECK_SYS(madvise(r->addr, LEN, MADV_DONTFORK));
	else if (!strcmp(f, "wf"))
		CHECK_SYS(madvise(r->addr, LEN, MADV_WIPEONFORK));
	else if (!strcmp(f, "dd"))
		CHECK_SYS(madvise(r->addr, LEN, MADV_DONTDUMP));
	else if (!strcmp(f, "nh"))
		CHECK_SYS(madvise(r->addr, LEN, MADV_NOHUGEPAGE));
	else if (!strcmp(f, "sl"))
		sealing = syscall(462 /* mseal */, r->addr, LEN, 0) == 0;
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

static void check_region(struct region *r, int i)
{
	char flags[1024];

	CHECK(vmflags_of(r->addr, flags, sizeof(flags)), "region %s at %p has no smaps entry", r->flag, r->addr);
	if (strcmp(r->flag, "sl") || sealing)
		CHECK(has_flag(flags, r->flag), "region at %p lost VmFlag %s: %s", r->addr, r->flag, flags);
	for (int p = 0; p < LEN; p += 4096)
		CHECK(r->addr[p] == (char)(i * 16 + p / 4096 + 1), "region %s lost its data at page %d", r->flag, p / 4096);
}

int main(void)
{
	victim_install_go();
	for (int i = 0; i < NREGIONS; i++) {
		/* A gap page between regions keeps the kernel from merging them. */
		char *a = mmap(NULL, LEN + 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		CHECK(a != MAP_FAILED, "mmap");
		CHECK_SYS(munmap(a + LEN, 4096));
		regions[i].addr = a;
		for (int p = 0; p < LEN; p += 4096)
			a[p] = (char)(i * 16 + p / 4096 + 1);
		apply(&regions[i]);
	}
	for (int i = 0; i < NREGIONS; i++)
		check_region(&regions[i], i);
	victim_ready();
	victim_wait_go();
	for (int i = 0; i < NREGIONS; i++)
		check_region(&regions[i], i);
	if (sealing) {
		char *s = regions[NREGIONS - 1].addr;
		CHECK(munmap(s, LEN) == -1 && errno == EPERM, "sealed region can be unmapped after restore");
	}
	victim_pass();
}
