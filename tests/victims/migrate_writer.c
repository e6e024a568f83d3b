/*
 * migrate_writer: MIB of random pages, RATE MiB/s of them rewritten whole for ever (the
 * pre-copy scenario of tests/migrate.rs: a process that keeps dirtying memory while it
 * is migrated).
 *
 * usage: migrate_writer MIB RATE DIR
 *
 * Page i holds 512 words, each a function of (i, gen[i], word): gen[i] counts the
 * rewrites of page i. Every 10 ms the main thread rewrites RATE*256/100 pages (a stride
 * through all of them, so the written pages are spread), bumping gen[i] before it writes
 * the page. The generations live in memory of their own (migrated too): a restore that
 * lost a write, or kept one of a page but not its generation, fails the check.
 *
 * DIR/count holds the number of pages rewritten so far (renamed into place every 100
 * ticks). On SIGUSR1 the main thread checks every page against its generation between
 * two ticks and writes "OK <rewrites>" or "BAD page <i> gen <g> word <w>" to DIR/ok
 * (written to DIR/ok.tmp and renamed). It prints READY to stdout once filled.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL
#define WORDS (PAGE / 8)

static volatile sig_atomic_t check_asked;

static void on_usr1(int sig)
{
	(void)sig;
	check_asked = 1;
}

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void write_page(uint64_t *p, uint64_t i, uint32_t gen)
{
	uint64_t seed = mix((i << 32) | gen);
	for (unsigned w = 0; w < WORDS; w++)
		p[w] = seed ^ mix(seed + w);
}

static void put(const char *dir, const char *name, const char *text)
{
	char tmp[4096], path[4096];
	snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(tmp, "w");
	if (!f)
		return;
	fputs(text, f);
	fclose(f);
	rename(tmp, path);
}

static void check(const char *dir, uint64_t *mem, const uint32_t *gen, size_t pages,
		  uint64_t rewrites)
{
	char out[256];
	snprintf(out, sizeof out, "OK %llu\n", (unsigned long long)rewrites);
	for (size_t i = 0; i < pages; i++) {
		uint64_t *p = mem + i * WORDS, seed = mix(((uint64_t)i << 32) | gen[i]);
		for (unsigned w = 0; w < WORDS; w++) {
			if (p[w] != (seed ^ mix(seed + w))) {
				snprintf(out, sizeof out, "BAD page %zu gen %u word %u\n", i, gen[i], w);
				goto done;
			}
		}
	}
done:
	put(dir, "ok", out);
}

int main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: migrate_writer MIB RATE DIR\n");
		return 2;
	}
	size_t pages = (size_t)atol(argv[1]) << 8;
	long per_tick = atol(argv[2]) * 256 / 100;
	const char *dir = argv[3];
	struct sigaction sa = { .sa_handler = on_usr1 };
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);

	uint64_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint32_t *gen = mmap(NULL, pages * sizeof(uint32_t), PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || gen == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	for (size_t i = 0; i < pages; i++)
		write_page(mem + i * WORDS, i, 0);
	printf("READY\n");
	fflush(stdout);

	uint64_t rewrites = 0, ticks = 0;
	size_t next = 0;
	for (;;) {
		for (long k = 0; k < per_tick; k++) {
			gen[next]++;
			write_page(mem + next * WORDS, next, gen[next]);
			next = (next + 7919) % pages;
			rewrites++;
		}
		if (check_asked) {
			check_asked = 0;
			check(dir, mem, gen, pages, rewrites);
		}
		if (++ticks % 100 == 0) {
			char n[64];
			snprintf(n, sizeof n, "%llu\n", (unsigned long long)rewrites);
			put(dir, "count", n);
		}
		struct timespec ts = { 0, 10 * 1000 * 1000 };
		nanosleep(&ts, NULL);
	}
}
