/*
 * Probing glibc's rseq registration from inside a victim: registering the same area again
 * fails with EBUSY while it is registered.
 */
#ifndef STASIS_VICTIM_RSEQ_H
#define STASIS_VICTIM_RSEQ_H

#include <errno.h>
#include <stddef.h>
#include <sys/syscall.h>
#include <unistd.h>

#define RSEQ_SIG_X86 0x53053053

/* Exported by glibc >= 2.35; weak so older glibc links and we can tell. */
extern const ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));

static inline void *rseq_area(void)
{
	return (char *)__builtin_thread_pointer() + __rseq_offset;
}

/* 0: registered (EBUSY), 1: was not registered (and now is), -1: cannot tell. */
static inline int rseq_probe(void)
{
	unsigned int lens[] = { __rseq_size, 32 };

	for (unsigned i = 0; i < 2; i++) {
		long r = syscall(SYS_rseq, rseq_area(), lens[i], 0, RSEQ_SIG_X86);

		if (r == -1 && errno == EBUSY)
			return 0;
		if (r == 0)
			return 1;
	}
	return -1;
}

#endif
