/*
 * Thousands of mappings (CRIU's maps05): 5000 one-page anonymous mappings with a gap
 * page between each, each holding its index, so that the restore's batch of mmaps runs
 * out of room while the mapped files (the executable, libc) are open. After go every
 * mapping must still be there, alone, with its index.
 */
#include "victim.h"
#include <sys/mman.h>

#define N 5000

int main(void)
{
	char *base;

	victim_install_go();
	base = mmap(NULL, 2UL * N * 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(base != MAP_FAILED, "mmap");
	CHECK_SYS(munmap(base, 2UL * N * 4096));
	for (int i = 0; i < N; i++) {
		int *p = mmap(base + 2UL * i * 4096, 4096, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		CHECK(p != MAP_FAILED, "mmap %d: %s", i, strerror(errno));
		*p = i;
	}
	victim_ready();
	victim_wait_go();
	for (int i = 0; i < N; i++) {
		int *p = (int *)(base + 2UL * i * 4096);
		CHECK(*p == i, "mapping %d holds %d", i, *p);
		/* The gap after it is still a hole: mapping it without replacing works. */
		void *gap = mmap((char *)p + 4096, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
		CHECK(gap == (char *)p + 4096, "the gap after mapping %d is taken", i);
		CHECK_SYS(munmap(gap, 4096));
	}
	victim_pass();
}
