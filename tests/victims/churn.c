/*
 * churn: a process forking short-lived children without pause, as a shell loop does,
 * while pre-dumps are made: each child writes into its copy of the parent's memory, then
 * lives 0 to 3 ms and exits or (every other one) calls exec, so children exit or exec
 * while a pre-dump that froze them reads their pages once the tree runs again.
 *
 * The parent writes at round k the value k into the first word of page k % PAGES of an
 * 8 MiB region (every page holds its index in its last word from the setup). On SIGUSR2
 * ("stop") it reaps its last child and prints STOPPED. After go: every page holds its
 * index and the last value written there, and no child failed.
 */
#include "victim.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>

#define PAGE 4096UL
#define PAGES 2048UL
#define WORDS (PAGE / 8)

static volatile uint64_t *mem;
static uint64_t rounds;
static volatile sig_atomic_t stop;

static void on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void child(uint64_t k)
{
	for (uint64_t p = 0; p < PAGES; p += 64)
		mem[p * WORDS + 1] = k;
	struct timespec nap = { 0, (long)(k * 7919 % 3000) * 1000 };
	nanosleep(&nap, NULL);
	if (k % 2) {
		execl("/bin/true", "true", (char *)NULL);
		_exit(127);
	}
	_exit(0);
}

static void setup(void)
{
	mem = mmap(NULL, PAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		   -1, 0);
	if (mem == MAP_FAILED)
		victim_fail("mmap: %s", strerror(errno));
	for (uint64_t p = 0; p < PAGES; p++)
		mem[p * WORDS + WORDS - 1] = p;
}

static void churn(void)
{
	while (!stop) {
		uint64_t k = ++rounds;
		mem[(k % PAGES) * WORDS] = k;
		pid_t pid = fork();
		if (pid < 0)
			victim_fail("fork: %s", strerror(errno));
		if (pid == 0)
			child(k);
		int status;
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR)
				victim_fail("waitpid: %s", strerror(errno));
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			victim_fail("child of round %llu: status %#x", (unsigned long long)k, status);
	}
	printf("STOPPED\n");
	fflush(stdout);
}

static void verify(void)
{
	for (uint64_t p = 0; p < PAGES; p++) {
		uint64_t last = rounds - (rounds % PAGES + PAGES - p) % PAGES;
		uint64_t want = last > 0 && last <= rounds ? last : 0;
		CHECK(mem[p * WORDS + WORDS - 1] == p, "page %llu lost its index",
		      (unsigned long long)p);
		CHECK(mem[p * WORDS] == want, "page %llu holds %llu, not %llu",
		      (unsigned long long)p, (unsigned long long)mem[p * WORDS],
		      (unsigned long long)want);
	}
}

int main(void)
{
	victim_install_go();
	signal(SIGUSR2, on_stop);
	setup();
	victim_ready();
	churn();
	victim_wait_go();
	verify();
	victim_pass();
	return 0;
}
