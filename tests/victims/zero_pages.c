/*
 * zero_pages: 8 MiB of anonymous memory whose pages alternate between written (a pattern
 * of their own) and only read (the shared zero page), then 64 pipes holding data and 16
 * pipes of which each holds a different amount (up to 64 KiB).
 *
 * Before READY: every even page of the mapping read, every odd page written with its
 * index; pipes 0..63 (fds from 100) hold 100 bytes each, pipe 64+k holds 4 KiB * k.
 * After go: every odd page still holds its index, every even page reads as zeros; every
 * pipe holds exactly its bytes, in order.
 */
#include "victim.h"

#include <sys/mman.h>

#define LEN (8 << 20)
#define PAGE 4096
#define PIPES 80

static unsigned char *mem;
static int rd[PIPES];
static size_t held[PIPES];

static unsigned char byte_of(int pipe, size_t i)
{
	return (unsigned char)(pipe * 7 + i);
}

static void setup(void)
{
	static unsigned char buf[65536];
	volatile unsigned char sink = 0;

	mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(mem != MAP_FAILED, "mmap: %s", strerror(errno));
	for (size_t p = 0; p < LEN / PAGE; p++) {
		if (p % 2 == 0)
			sink += mem[p * PAGE];
		else
			memset(mem + p * PAGE, (int)(p % 251) + 1, PAGE);
	}
	(void)sink;
	for (int k = 0; k < PIPES; k++) {
		int p[2];

		CHECK_SYS(pipe(p));
		held[k] = k < 64 ? 100 : (size_t)4096 * (size_t)(k - 63);
		if (held[k] > sizeof buf)
			held[k] = sizeof buf;
		for (size_t i = 0; i < held[k]; i++)
			buf[i] = byte_of(k, i);
		CHECK(write(p[1], buf, held[k]) == (ssize_t)held[k], "write pipe %d: %s", k,
		      strerror(errno));
		rd[k] = p[0];
	}
}

static void verify(void)
{
	static unsigned char buf[65536 + 1];

	for (size_t p = 0; p < LEN / PAGE; p++) {
		unsigned char want = p % 2 == 0 ? 0 : (unsigned char)((p % 251) + 1);

		for (size_t i = 0; i < PAGE; i++)
			CHECK(mem[p * PAGE + i] == want, "page %zu byte %zu: %d, expected %d", p, i,
			      mem[p * PAGE + i], want);
	}
	for (int k = 0; k < PIPES; k++) {
		CHECK_SYS(fcntl(rd[k], F_SETFL, O_NONBLOCK));
		ssize_t got = read(rd[k], buf, sizeof buf);

		CHECK(got == (ssize_t)held[k], "pipe %d: %zd bytes, expected %zu", k, got, held[k]);
		for (size_t i = 0; i < held[k]; i++)
			CHECK(buf[i] == byte_of(k, i), "pipe %d byte %zu differs", k, i);
	}
}

int main(void)
{
	return victim_run(setup, verify);
}
