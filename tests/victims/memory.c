/*
 * memory: every kind of mapping a single-threaded program has, with known contents.
 *
 * Usage: memory [-s MIB] [-p] [-S] [-k]
 *   -s MIB  size of the pseudo-random anonymous region (default 64)
 *   -p      also hold a pipe at fds 40 (read end) and 41 (write end); used by the
 *           failure tests, since stasis must refuse to dump it and leave us intact
 *   -S      also map a page of memfd_secret memory (printing "SECRET <address>"), which
 *           stasis must refuse likewise; SKIP where the kernel has no memfd_secret
 *   -k      keep its two files at the end (a test that restores it more than once)
 *
 * After go: all contents, /proc/self/maps (addresses, perms, offsets, file paths),
 * brk, and that malloc still works.
 */
#include "victim.h"

#include <fcntl.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096UL
#define SEED 0x9e3779b97f4a7c15ULL

static size_t rand_size = 64UL << 20;
static uint64_t rand_sum;          /* checksum of the random region, kept across the dump */
static unsigned char *heap;        /* malloc'd from brk */
static size_t heap_size = 4UL << 20;
static void *brk_before;
static unsigned char *rnd, *halfzero, *split, *ro, *shanon, *shfile, *privfile, *apart;
static char shfile_name[64] = "memory-shared-XXXXXX";
static char privfile_name[64] = "memory-private-XXXXXX";
static char maps_before[1 << 16], maps_after[1 << 16];
static char stdout_buf[4096];

static uint64_t next_rand(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

static unsigned char pat(size_t i, unsigned salt)
{
	return (unsigned char)(i * 31 + salt + (i >> 12));
}

/* p[off..off+n) = the pattern with this salt, indexed from p */
static void fill_at(unsigned char *p, size_t off, size_t n, unsigned salt)
{
	for (size_t i = off; i < off + n; i++)
		p[i] = pat(i, salt);
}

static void fill(unsigned char *p, size_t n, unsigned salt)
{
	fill_at(p, 0, n, salt);
}

static void verify_at(const char *what, const unsigned char *p, size_t off, size_t n, unsigned salt)
{
	for (size_t i = off; i < off + n; i++)
		CHECK(p[i] == pat(i, salt), "%s: byte %zu is %#x, want %#x", what, i, p[i], pat(i, salt));
}

static void verify_fill(const char *what, const unsigned char *p, size_t n, unsigned salt)
{
	verify_at(what, p, 0, n, salt);
}

static void *map(size_t len, int prot, int flags, int fd)
{
	void *p = mmap(NULL, len, prot, flags, fd, 0);

	CHECK(p != MAP_FAILED, "mmap(%zu): %s", len, strerror(errno));
	return p;
}

static size_t read_maps(char *buf, size_t cap)
{
	int fd = open("/proc/self/maps", O_RDONLY);
	size_t n = 0;
	ssize_t r;

	CHECK_SYS(fd);
	while ((r = read(fd, buf + n, cap - 1 - n)) > 0)
		n += (size_t)r;
	CHECK(r == 0, "read /proc/self/maps: %s", strerror(errno));
	CHECK(n < cap - 1, "/proc/self/maps larger than %zu bytes", cap);
	buf[n] = 0;
	close(fd);
	return n;
}

/*
 * One maps line reduced to what a restore must reproduce: range, perms, and for real
 * files the offset and path. Inode/device of anonymous shared memory may legitimately
 * differ, and so may the name of deleted backing objects.
 */
static void canon_line(const char *line, char *out, size_t cap)
{
	char range[64], perms[8], off[32], dev[16], path[512] = "";
	unsigned long ino;
	int n = sscanf(line, "%63s %7s %31s %15s %lu %511[^\n]", range, perms, off, dev, &ino, path);

	CHECK(n >= 5, "unparsable maps line: %s", line);
	if (path[0] == '/' && !strstr(path, "(deleted)"))
		snprintf(out, cap, "%s %s %s %s", range, perms, off, path);
	else if (path[0] == '[')
		snprintf(out, cap, "%s %s %s", range, perms, path);
	else
		snprintf(out, cap, "%s %s", range, perms);
}

static void compare_maps(void)
{
	char *a = maps_before, *b = maps_after, ca[700], cb[700];

	read_maps(maps_after, sizeof(maps_after));
	for (;;) {
		char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');

		if (!ea || !eb) {
			CHECK(!ea && !eb, "maps: %s", ea ? "a mapping disappeared" : "an extra mapping appeared");
			return;
		}
		*ea = *eb = 0;
		canon_line(a, ca, sizeof(ca));
		canon_line(b, cb, sizeof(cb));
		CHECK(strcmp(ca, cb) == 0, "maps differ: before \"%s\", after \"%s\"", a, b);
		a = ea + 1;
		b = eb + 1;
	}
}

/* Grow the stack vma now so verification never extends it (maps must compare equal). */
__attribute__((noinline)) static void touch_stack(void)
{
	volatile char buf[256 << 10];

	for (size_t i = 0; i < sizeof(buf); i += PAGE)
		buf[i] = 1;
	buf[sizeof(buf) - 1] = 1;
}

static int make_file(char *name, size_t len, unsigned salt)
{
	int fd = mkstemp(name);
	unsigned char *buf = malloc(len);

	CHECK_SYS(fd);
	CHECK(buf != NULL, "malloc");
	fill(buf, len, salt);
	CHECK(write(fd, buf, len) == (ssize_t)len, "write %s: %s", name, strerror(errno));
	free(buf);
	return fd;
}

static void check_file(const char *name, size_t off, const unsigned char *want, size_t len)
{
	unsigned char *buf = malloc(len);
	int fd = open(name, O_RDONLY);

	CHECK(buf != NULL, "malloc");
	CHECK_SYS(fd);
	CHECK(pread(fd, buf, len, (off_t)off) == (ssize_t)len, "pread %s: %s", name, strerror(errno));
	CHECK(memcmp(buf, want, len) == 0, "%s: file contents at %zu differ from the mapping", name, off);
	close(fd);
	free(buf);
}

/* Whether /proc/self/maps has a mapping starting at p. */
static int maps_has_start(void *p)
{
	static char buf[1 << 16];
	char want[32];

	read_maps(buf, sizeof(buf));
	snprintf(want, sizeof(want), "\n%lx-", (unsigned long)p);
	return strncmp(buf, want + 1, strlen(want + 1)) == 0 || strstr(buf, want) != NULL;
}

/*
 * Two adjacent RW anonymous mappings the kernel keeps apart: the second made RWX, both
 * written (each gets anonymous memory of its own), then the second made RW. Same
 * protection and flags, still two mappings; a restore must not let them merge.
 */
static void make_apart(void)
{
	int rw = PROT_READ | PROT_WRITE, fixed = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;

	apart = map(8 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	CHECK(mmap(apart, 4 * PAGE, rw, fixed, -1, 0) == apart, "mmap apart: %s", strerror(errno));
	fill(apart, 4 * PAGE, 10);
	CHECK(mmap(apart + 4 * PAGE, 4 * PAGE, rw | PROT_EXEC, fixed, -1, 0) == apart + 4 * PAGE,
	      "mmap apart+4: %s", strerror(errno));
	fill(apart + 4 * PAGE, 4 * PAGE, 11);
	CHECK_SYS(mprotect(apart + 4 * PAGE, 4 * PAGE, rw));
	CHECK(maps_has_start(apart + 4 * PAGE), "the kernel merged the apart mappings already");
}

static void setup(void)
{
	uint64_t s = SEED;
	int fd;

	/* heap: keep the allocation on brk rather than its own mmap */
	mallopt(M_MMAP_THRESHOLD, 256 << 20);
	heap = malloc(heap_size);
	CHECK(heap != NULL, "malloc heap");
	fill(heap, heap_size, 1);

	rnd = map(rand_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	for (size_t i = 0; i < rand_size / 8; i++) {
		uint64_t v = next_rand(&s);

		((uint64_t *)rnd)[i] = v;
		rand_sum += v ^ i;
	}

	/* 256 pages: odd ones hold data, even ones were never touched */
	halfzero = map(256 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	for (size_t pg = 1; pg < 256; pg += 2)
		fill_at(halfzero, pg * PAGE, PAGE, (unsigned)pg);

	/* RW | PROT_NONE | RW, all three with contents */
	split = map(48 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	fill(split, 48 * PAGE, 3);
	CHECK_SYS(mprotect(split + 16 * PAGE, 16 * PAGE, PROT_NONE));

	make_apart();

	ro = map(8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1);
	fill(ro, 8 * PAGE, 4);
	CHECK_SYS(mprotect(ro, 8 * PAGE, PROT_READ));

	shanon = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1);
	fill(shanon, 16 * PAGE, 5);

	/* shared file mapping, written through the mapping only */
	fd = make_file(shfile_name, 16 * PAGE, 0);
	shfile = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd);
	fill(shfile, 16 * PAGE, 6);
	close(fd);

	/* private file mapping, pages 2, 3 and 9 copied-on-write */
	fd = make_file(privfile_name, 16 * PAGE, 7);
	privfile = map(16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd);
	close(fd);
	fill_at(privfile, 2 * PAGE, 2 * PAGE, 8);
	fill_at(privfile, 9 * PAGE, PAGE, 9);
}

static void verify_rand(void)
{
	uint64_t s = SEED, sum = 0;

	for (size_t i = 0; i < rand_size / 8; i++) {
		uint64_t v = ((uint64_t *)rnd)[i];

		CHECK(v == next_rand(&s), "random region: word %zu (offset %#zx) differs", i, i * 8);
		sum += v ^ i;
	}
	CHECK(sum == rand_sum, "random region checksum %#llx, want %#llx",
	      (unsigned long long)sum, (unsigned long long)rand_sum);
}

static void verify_contents(void)
{
	verify_fill("heap", heap, heap_size, 1);
	verify_rand();
	for (size_t pg = 0; pg < 256; pg++) {
		if (pg % 2) {
			verify_at("half-zero region (data page)", halfzero, pg * PAGE, PAGE, (unsigned)pg);
			continue;
		}
		for (size_t i = 0; i < PAGE; i++)
			CHECK(halfzero[pg * PAGE + i] == 0, "half-zero region: page %zu byte %zu not zero", pg, i);
	}
	verify_fill("RW before PROT_NONE", split, 16 * PAGE, 3);
	verify_at("RW after PROT_NONE", split, 32 * PAGE, 16 * PAGE, 3);
	verify_fill("read-only region", ro, 8 * PAGE, 4);
	verify_fill("first of two mappings kept apart", apart, 4 * PAGE, 10);
	verify_fill("second of two mappings kept apart", apart + 4 * PAGE, 4 * PAGE, 11);
	verify_fill("MAP_SHARED|MAP_ANONYMOUS region", shanon, 16 * PAGE, 5);
	verify_fill("shared file mapping", shfile, 16 * PAGE, 6);
	check_file(shfile_name, 0, shfile, 16 * PAGE);
	for (size_t pg = 0; pg < 16; pg++) {
		const unsigned char *p = privfile + pg * PAGE;

		if (pg == 2 || pg == 3)
			verify_at("private file mapping (modified page)", privfile, pg * PAGE, PAGE, 8);
		else if (pg == 9)
			verify_at("private file mapping (modified page)", privfile, pg * PAGE, PAGE, 9);
		else
			check_file(privfile_name, pg * PAGE, p, PAGE);
	}
}

/* Checks that change state: run only after the read-only comparisons above. */
static void verify_live(void)
{
	unsigned char buf[PAGE];
	void *small, *big;

	/* the PROT_NONE part kept its contents */
	CHECK_SYS(mprotect(split + 16 * PAGE, 16 * PAGE, PROT_READ));
	verify_at("PROT_NONE region", split, 16 * PAGE, 16 * PAGE, 3);

	/* the shared file mapping still writes through to the file */
	memset(shfile + 5 * PAGE, 0xab, PAGE);
	memset(buf, 0xab, PAGE);
	check_file(shfile_name, 5 * PAGE, buf, PAGE);

	/* the private file mapping does not */
	privfile[12 * PAGE] ^= 0xff;
	CHECK(privfile[12 * PAGE] == (unsigned char)~pat(12 * PAGE, 7), "private file mapping not writable");
	buf[0] = pat(12 * PAGE, 7);
	check_file(privfile_name, 12 * PAGE, buf, 1);

	CHECK(sbrk(0) == brk_before, "brk moved: %p, was %p", sbrk(0), brk_before);
	small = malloc(100);
	big = malloc(8 << 20);
	CHECK(small && big, "malloc after restore failed");
	memset(big, 0x5a, 8 << 20);
	CHECK(sbrk(0) > brk_before, "a large malloc did not grow brk");
	free(big);
	free(small);
}

static void make_pipe(void)
{
	int p[2];

	CHECK_SYS(pipe(p));
	CHECK_SYS(dup2(p[0], 40));
	CHECK_SYS(dup2(p[1], 41));
	close(p[0]);
	close(p[1]);
}

static unsigned char *secret;

static void make_secret(void)
{
	int fd = syscall(447 /* memfd_secret */, 0);
	char why[96];

	if (fd < 0) {
		snprintf(why, sizeof(why), "memfd_secret: %s", strerror(errno));
		victim_skip(why);
	}
	CHECK_SYS(ftruncate(fd, PAGE));
	secret = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (secret == MAP_FAILED) {
		snprintf(why, sizeof(why), "mmap of memfd_secret: %s", strerror(errno));
		victim_skip(why);
	}
	close(fd);
	memset(secret, 0x5e, PAGE);
	printf("SECRET %p\n", (void *)secret);
}

static void check_secret(void)
{
	size_t i;

	for (i = 0; i < PAGE; i++)
		CHECK(secret[i] == 0x5e, "secret byte %zu is %#x", i, secret[i]);
}

static void check_pipe(void)
{
	char c = 0;

	CHECK(write(41, "x", 1) == 1, "pipe write: %s", strerror(errno));
	CHECK(read(40, &c, 1) == 1 && c == 'x', "pipe read");
}

int main(int argc, char **argv)
{
	int opt, with_pipe = 0, with_secret = 0, keep_files = 0;

	while ((opt = getopt(argc, argv, "s:pSk")) != -1) {
		if (opt == 's')
			rand_size = strtoul(optarg, NULL, 0) << 20;
		else if (opt == 'p')
			with_pipe = 1;
		else if (opt == 'S')
			with_secret = 1;
		else if (opt == 'k')
			keep_files = 1;
		else
			victim_fail("usage: memory [-s MIB] [-p] [-S] [-k]");
	}
	setvbuf(stdout, stdout_buf, _IOLBF, sizeof(stdout_buf));
	victim_install_go();
	setup();
	if (with_pipe)
		make_pipe();
	if (with_secret)
		make_secret();
	touch_stack();
	brk_before = sbrk(0);
	read_maps(maps_before, sizeof(maps_before));
	victim_ready();
	victim_wait_go();

	compare_maps();
	verify_contents();
	verify_live();
	if (with_pipe)
		check_pipe();
	if (with_secret)
		check_secret();
	if (!keep_files) {
		unlink(shfile_name);
		unlink(privfile_name);
	}
	victim_pass();
}
