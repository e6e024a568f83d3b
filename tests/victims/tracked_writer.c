/*
 * tracked_writer: a thread writes pages without pause while incremental dumps are made
 * (dump -R against tracking), so pages are written during and right after each dump.
 *
 * The writer walks 4096 pages (16 MiB) in order, writing at step k (from 1) the value k
 * into the first and last word of page k % 4096, then publishing k as `last`. Before
 * each write it checks the page holds what it wrote there one round before (k - 4096,
 * or 0 in the first round): a restored image missing a write, or holding one made after
 * its freeze, is caught at the writer's next visit of that page. On SIGUSR2 ("stop") it
 * finishes its step and exits; main joins it and prints STOPPED. After go: every page
 * holds exactly the last value written there (from `last`), and no check failed.
 */
#include "victim.h"

#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <time.h>

#define PAGE 4096UL
#define PAGES 4096UL
#define WORDS (PAGE / 8)

static volatile uint64_t *mem;
static volatile uint64_t last;
static volatile sig_atomic_t stop;
/* The first bad check: step and what the page held (0 while none). */
static volatile uint64_t bad_step, bad_held;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static uint64_t expected(uint64_t k, uint64_t upto)
{
	/* The last step <= upto that wrote page k % PAGES. */
	uint64_t p = k % PAGES, q = upto % PAGES;
	if (upto < p || (upto == 0))
		return 0;
	return upto - (q >= p ? q - p : q + PAGES - p);
}

static void *writer(void *arg)
{
	(void)arg;
	struct timespec nap = { 0, 100000 };
	for (uint64_t k = last + 1; !stop; k++) {
		volatile uint64_t *w = mem + (k % PAGES) * WORDS;
		uint64_t want = k > PAGES ? k - PAGES : 0;
		if ((w[0] != want || w[WORDS - 1] != want) && !bad_step) {
			bad_held = w[0];
			bad_step = k;
		}
		w[0] = k;
		w[WORDS - 1] = k;
		__atomic_store_n(&last, k, __ATOMIC_RELEASE);
		if (k % 64 == 0)
			nanosleep(&nap, NULL);
	}
	return NULL;
}

int main(void)
{
	victim_install_go();
	signal(SIGUSR2, on_stop);
	mem = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED)
		victim_fail("mmap: %s", strerror(errno));
	pthread_t t;
	if (pthread_create(&t, NULL, writer, NULL))
		victim_fail("pthread_create");
	victim_ready();
	while (!stop)
		pause();
	pthread_join(t, NULL);
	printf("STOPPED\n");
	fflush(stdout);
	victim_wait_go();
	if (bad_step)
		victim_fail("step %llu found %llu in its page, not what was written there a round before",
			    (unsigned long long)bad_step, (unsigned long long)bad_held);
	uint64_t upto = last;
	if (upto < 2 * PAGES)
		victim_fail("only %llu steps written", (unsigned long long)upto);
	for (uint64_t p = 0; p < PAGES; p++) {
		uint64_t want = expected(p, upto);
		volatile uint64_t *w = mem + p * WORDS;
		if (w[0] != want || w[WORDS - 1] != want)
			victim_fail("page %llu holds %llu/%llu, not %llu (last step %llu)",
				    (unsigned long long)p, (unsigned long long)w[0],
				    (unsigned long long)w[WORDS - 1], (unsigned long long)want,
				    (unsigned long long)upto);
	}
	victim_pass();
	return 0;
}
