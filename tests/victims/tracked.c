/*
 * tracked: memory changed between a pre-dump and the dump made against it.
 *
 * Usage: tracked [-u]
 *   -u  also hold a userfaultfd (fd 50): a tree tracking its own memory, which stasis's
 *       pre-dump must refuse, naming the pid and the fd
 *
 * READY, then on SIGUSR2 ("change", sent after the pre-dump) it writes every 7th page
 * of a region, first-writes pages it never touched, drops pages (MADV_DONTNEED), maps
 * a new region, unmaps one, moves one (mremap), toggles protections, writes into a
 * private file mapping and forks a child that writes its own copy; prints CHANGED.
 * After go: every byte of every region is what it must be (the child checks its own and
 * exits with its verdict).
 */
#include "victim.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define PAGE 4096UL
#define A_PAGES 2048 /* 8 MiB, touched at setup */
#define B_PAGES 256  /* mapped, never touched before the pre-dump */

static unsigned char *a, *b, *gone, *moved, *prot, *fresh, *fmap;
static unsigned char *moved_from;
static pid_t child;

static unsigned char at(size_t page, unsigned salt)
{
	return (unsigned char)(page * 13 + salt);
}

static unsigned char *map(size_t pages)
{
	void *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		victim_fail("mmap: %s", strerror(errno));
	return p;
}

static void fill(unsigned char *p, size_t pages, unsigned salt)
{
	for (size_t i = 0; i < pages; i++)
		memset(p + i * PAGE, at(i, salt), PAGE);
}

static void check(const char *what, unsigned char *p, size_t page, unsigned char want)
{
	for (size_t j = 0; j < PAGE; j++)
		if (p[page * PAGE + j] != want)
			victim_fail("%s page %zu byte %zu: %#x, want %#x", what, page, j,
			      p[page * PAGE + j], want);
}

/* What region a holds after the changes, in the process that made them (salt 1) or
 * in the child (salt 2 on every 5th page). */
static unsigned char a_want(size_t i, int in_child)
{
	if (in_child && i % 5 == 0)
		return at(i, 2);
	if (i % 64 == 3)
		return 0; /* dropped */
	if (i % 7 == 0)
		return at(i, 1);
	return at(i, 0);
}

static void verify_a(int in_child)
{
	for (size_t i = 0; i < A_PAGES; i++)
		check("a", a, i, a_want(i, in_child));
}

static void child_main(void)
{
	for (size_t i = 0; i < A_PAGES; i += 5)
		memset(a + i * PAGE, at(i, 2), PAGE);
	victim_wait_go();
	verify_a(1);
	_exit(0);
}

static void make_changes(void)
{
	for (size_t i = 0; i < A_PAGES; i += 7)
		memset(a + i * PAGE, at(i, 1), PAGE);
	for (size_t i = 0; i < A_PAGES; i += 64)
		madvise(a + (i + 3) * PAGE, PAGE, MADV_DONTNEED);
	for (size_t i = 0; i < B_PAGES; i += 3)
		memset(b + i * PAGE, at(i, 5), PAGE);
	fresh = map(64);
	fill(fresh, 64, 6);
	munmap(gone, 64 * PAGE);
	unsigned char *hole = mmap(NULL, 64 * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	moved = mremap(moved_from, 64 * PAGE, 64 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, hole);
	if (moved == MAP_FAILED)
		victim_fail("mremap: %s", strerror(errno));
	mprotect(prot, 16 * PAGE, PROT_READ);
	mprotect(prot, 16 * PAGE, PROT_READ | PROT_WRITE);
	memset(prot, 0x77, PAGE);
	memset(fmap + PAGE, 0x55, PAGE);
	child = fork();
	if (child < 0)
		victim_fail("fork: %s", strerror(errno));
	if (child == 0)
		child_main();
}

static void verify(void)
{
	verify_a(0);
	for (size_t i = 0; i < B_PAGES; i++)
		check("b", b, i, i % 3 == 0 ? at(i, 5) : 0);
	for (size_t i = 0; i < 64; i++) {
		check("fresh", fresh, i, at(i, 6));
		check("moved", moved, i, at(i, 4));
	}
	check("prot", prot, 0, 0x77);
	for (size_t i = 1; i < 16; i++)
		check("prot", prot, i, at(i, 7));
	check("file", fmap, 0, 'f');
	check("file", fmap, 1, 0x55);
	kill(child, SIGUSR1);
	int st;
	while (waitpid(child, &st, 0) < 0)
		if (errno != EINTR)
			victim_fail("waitpid: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		victim_fail("child verdict %#x", st);
}

int main(int argc, char **argv)
{
	victim_install_go();
	victim_install_change();
	if (argc > 1 && strcmp(argv[1], "-u") == 0) {
		int u = syscall(SYS_userfaultfd, O_CLOEXEC | 1 /* UFFD_USER_MODE_ONLY */);
		if (u < 0 || dup2(u, 50) < 0)
			victim_skip("no userfaultfd");
		close(u);
	}
	a = map(A_PAGES);
	fill(a, A_PAGES, 0);
	b = map(B_PAGES);
	gone = map(64);
	fill(gone, 64, 3);
	moved_from = map(64);
	fill(moved_from, 64, 4);
	prot = map(16);
	fill(prot, 16, 7);
	int fd = open("tracked-file", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		victim_fail("open: %s", strerror(errno));
	char page[PAGE];
	memset(page, 'f', PAGE);
	for (int i = 0; i < 2; i++)
		if (write(fd, page, PAGE) != (ssize_t)PAGE)
			victim_fail("write: %s", strerror(errno));
	fmap = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (fmap == MAP_FAILED)
		victim_fail("mmap file: %s", strerror(errno));
	close(fd);
	victim_run_changed(make_changes, verify);
	return 0;
}
