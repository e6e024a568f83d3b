/*
 * A process that unmapped its vDSO and vvar (CRIU's vdso02): stasis must find another
 * syscall instruction to run its queries with. After go the vDSO must still be absent
 * and the stack data intact. Nothing here may call into the vDSO (no time functions).
 */
#include "victim.h"
#include <sys/mman.h>
#include <sys/syscall.h>

/* The [vdso]/[vvar]/[vvar_vclock] ranges of /proc/self/maps; returns how many. */
static int specials(unsigned long start[4], unsigned long end[4])
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	int n = 0;

	CHECK(f, "open maps");
	while (fgets(line, sizeof(line), f) && n < 4)
		if (strstr(line, "[vdso]") || strstr(line, "[vvar]") || strstr(line, "[vvar_vclock]"))
			if (sscanf(line, "%lx-%lx", &start[n], &end[n]) == 2)
				n++;
	fclose(f);
	return n;
}

int main(void)
{
	unsigned long start[4], end[4];
	volatile unsigned long canary = 0x5ca1ab1e;
	int n;

	victim_install_go();
	n = specials(start, end);
	CHECK(n > 0, "no vDSO to unmap");
	for (int i = 0; i < n; i++)
		CHECK(syscall(SYS_munmap, start[i], end[i] - start[i]) == 0, "munmap: %s", strerror(errno));
	CHECK(specials(start, end) == 0, "the vDSO is still mapped");
	victim_ready();
	victim_wait_go();
	CHECK(specials(start, end) == 0, "the vDSO is back after restore");
	CHECK(canary == 0x5ca1ab1e, "stack data lost");
	victim_pass();
}
