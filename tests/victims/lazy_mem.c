/*
 * Post-copy (dump/restore --lazy-pages): a large private anonymous region of random data
 * (256 MiB, or "-m MIB") whose pages reach the restored process only as it touches
 * them, or in the background.
 *
 * Setup: BIG (random, its checksum kept), DROP (4 MiB random), MOVE (4 MiB random),
 * CUT (4 MiB random). On go, before touching any of them (their pages are still on the
 * source): prints ALIVE; moves MOVE elsewhere (mremap: UFFD_EVENT_REMAP), drops the
 * first half of DROP (MADV_DONTNEED: UFFD_EVENT_REMOVE), unmaps the second half of CUT
 * (UFFD_EVENT_UNMAP), forks a child (UFFD_EVENT_FORK) that checks BIG's checksum itself;
 * ("-n": no fork) then checks every region: BIG's checksum, DROP's first half zeros and second half as
 * written, MOVE at its new address, CUT's first half. PASS once the child passed too.
 *
 * "-f N": N more forks while BIG is still arriving. Before fork i the parent reads the
 * i-th of N slices of BIG (those pages arrive, the rest stays missing) and rewrites one
 * word of that slice; child i checks BIG whole against the parent's memory at its fork
 * (an additive checksum that follows the rewritten words), DROP, MOVE and CUT; after
 * the fork the parent rewrites another word, which the child must not see.
 */
#include "victim.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>

#define MIB (1UL << 20)
#define SMALL (4 * MIB)

static uint64_t seed;

static uint64_t next(void)
{
	seed ^= seed << 13;
	seed ^= seed >> 7;
	seed ^= seed << 17;
	return seed;
}

static uint64_t sum(const uint64_t *p, size_t bytes)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < bytes / 8; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* A checksum a rewritten word updates in place: sum of word * (2 * index + 1). */
static uint64_t asum(const uint64_t *p, size_t bytes)
{
	uint64_t h = 0;
	for (size_t i = 0; i < bytes / 8; i++)
		h += p[i] * (2 * i + 1);
	return h;
}

/* Rewrites word i of BIG, keeping its additive checksum *h true. */
static void rewrite(uint64_t *big, size_t i, uint64_t *h)
{
	uint64_t v = next();
	*h += (v - big[i]) * (2 * i + 1);
	big[i] = v;
}

static uint64_t *region(size_t bytes)
{
	uint64_t *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		printf("FAIL: mmap %zu: %s\n", bytes, strerror(errno));
		exit(1);
	}
	for (size_t i = 0; i < bytes / 8; i++)
		p[i] = next();
	return p;
}

int main(int argc, char **argv)
{
	size_t big_bytes = 256 * MIB;
	int forks = 1, more = 0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
			more = atoi(argv[++i]);
			continue;
		}
		if (strcmp(argv[i], "-m") == 0 && i + 1 < argc)
			big_bytes = strtoul(argv[++i], NULL, 0) * MIB;
		else if (strcmp(argv[i], "-n") == 0)
			forks = 0; /* no fork during the post-copy (see docs/lazy-restore.md) */
	}
	int fd = open("/dev/urandom", O_RDONLY);
	if (fd < 0 || read(fd, &seed, sizeof(seed)) != sizeof(seed))
		seed = 0x9e3779b97f4a7c15ULL ^ (uint64_t)getpid();
	if (fd >= 0)
		close(fd);
	seed |= 1;
	victim_install_go();
	uint64_t *big = region(big_bytes), *drop = region(SMALL), *move = region(SMALL);
	uint64_t *cut = region(SMALL);
	uint64_t big_sum = sum(big, big_bytes), drop_sum = sum(drop + SMALL / 16, SMALL / 2);
	uint64_t move_sum = sum(move, SMALL), cut_sum = sum(cut, SMALL / 2);
	uint64_t big_asum = more ? asum(big, big_bytes) : 0;
	victim_ready();
	victim_wait_go();
	printf("ALIVE\n");
	fflush(stdout);

	/* Every change below comes before any page of the region is touched. */
	void *place = mmap(NULL, SMALL, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(place != MAP_FAILED, "mmap place: %s", strerror(errno));
	uint64_t *moved = mremap(move, SMALL, SMALL, MREMAP_MAYMOVE | MREMAP_FIXED, place);
	CHECK(moved != MAP_FAILED, "mremap: %s", strerror(errno));
	CHECK(madvise(drop, SMALL / 2, MADV_DONTNEED) == 0, "madvise: %s", strerror(errno));
	CHECK(munmap((char *)cut + SMALL / 2, SMALL / 2) == 0, "munmap: %s", strerror(errno));
	pid_t child = forks ? fork() : 1;
	CHECK(child >= 0, "fork: %s", strerror(errno));
	if (child == 0) {
		if (sum(big, big_bytes) != big_sum) {
			printf("FAIL: the forked child sees another BIG\n");
			fflush(stdout);
			_exit(1);
		}
		_exit(0);
	}
	pid_t kids[64];
	if (more > 64)
		more = 64;
	size_t slice = big_bytes / 8 / (more ? more : 1);
	for (int i = 0; i < more; i++) {
		/* Slice i arrives (read), one of its words is rewritten, then the fork. */
		volatile uint64_t touch = asum(big + i * slice, slice * 8);
		(void)touch;
		rewrite(big, i * slice + 7, &big_asum);
		uint64_t want = big_asum;
		kids[i] = fork();
		CHECK(kids[i] >= 0, "fork %d: %s", i, strerror(errno));
		if (kids[i] == 0) {
			int bad = asum(big, big_bytes) != want;
			bad |= sum(moved, SMALL) != move_sum;
			bad |= sum(drop + SMALL / 16, SMALL / 2) != drop_sum || drop[0] != 0;
			bad |= sum(cut, SMALL / 2) != cut_sum;
			if (bad)
				printf("FAIL: forked child %d sees other memory than its parent's\n", i);
			fflush(stdout);
			_exit(bad);
		}
		/* After the fork: the child must not see this. */
		rewrite(big, i * slice + slice / 2, &big_asum);
		rewrite(big, big_bytes / 8 - 1 - i, &big_asum);
	}
	for (int i = 0; i < more; i++) {
		int kst;
		while (waitpid(kids[i], &kst, 0) < 0)
			CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
		CHECK(WIFEXITED(kst) && WEXITSTATUS(kst) == 0, "forked child %d failed (%#x)", i, kst);
	}
	if (more)
		CHECK(asum(big, big_bytes) == big_asum, "BIG differs from its own writes");
	else
		CHECK(sum(big, big_bytes) == big_sum, "BIG differs after the restore");
	for (size_t i = 0; i < SMALL / 16; i++)
		CHECK(drop[i] == 0, "DROP word %zu is %#llx after MADV_DONTNEED", i,
		      (unsigned long long)drop[i]);
	CHECK(sum(drop + SMALL / 16, SMALL / 2) == drop_sum, "DROP's kept half differs");
	CHECK(sum(moved, SMALL) == move_sum, "MOVE differs at its new address");
	CHECK(sum(cut, SMALL / 2) == cut_sum, "CUT's kept half differs");
	int st = 0;
	while (forks && waitpid(child, &st, 0) < 0)
		CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the forked child failed (%#x)", st);
	victim_pass();
	return 0;
}
