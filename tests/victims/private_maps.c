/*
 * Private mappings of objects without a name, whose untouched pages must still show the
 * object after the restore while the pages the process wrote keep its own copy:
 *
 * - a memfd "pm" (2 pages) mapped shared and privately, fd 10 kept open: the private
 *   mapping wrote its second page;
 * - shared anonymous memory (4 pages, its fd 11 opened through /proc/self/map_files)
 *   mapped privately from page 1 and shared again from page 2 (both running past the
 *   object's end);
 * - a file of 3 pages deleted while mapped: privately (its first page read only, the
 *   rest written on page 2) and, under a second name (a hard link, deleted too),
 *   privately again; fd 12 keeps it open.
 *
 * With "alone", a memfd "alone" is also mapped privately only (no shared mapping, fd
 * closed), which stasis refuses (tests/failure.rs).
 *
 * After go: the contents, the copy-on-write pages, that writes through the shared
 * mapping or the fd show in every untouched private page, that the private pages do not
 * leak back, and that /proc/self/maps names each file as before (" (deleted)"), on the
 * same device.
 */
#include "victim.h"

#include <sys/mman.h>
#include <sys/stat.h>

#define PAGE 4096

static char *mshared, *mpriv, *anon, *apriv, *ashared2, *fa, *fb;
static char file[256], link2[256];

/* The maps line of the mapping at `p`: its device and path, from /proc/self/maps. */
static void map_of(const void *p, char *dev, char *path)
{
	char line[512], want[32];
	FILE *f = fopen("/proc/self/maps", "r");

	CHECK(f, "fopen maps: %s", strerror(errno));
	snprintf(want, sizeof(want), "%lx-", (unsigned long)p);
	dev[0] = path[0] = 0;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, want, strlen(want)))
			continue;
		CHECK(sscanf(line, "%*s %*s %*s %31s %*s %255[^\n]", dev, path) >= 1, "maps line %s", line);
		break;
	}
	fclose(f);
	CHECK(dev[0], "no mapping at %p", p);
}

static char before_dev[7][32], before_path[7][256];

static void record(int i, const void *p) { map_of(p, before_dev[i], before_path[i]); }

static void same_map(int i, const void *p)
{
	char dev[32], path[256];

	map_of(p, dev, path);
	CHECK(!strcmp(dev, before_dev[i]) && !strcmp(path, before_path[i]),
	      "mapping %d: %s %s, was %s %s", i, dev, path, before_dev[i], before_path[i]);
}

static void setup_memfd(void)
{
	victim_place(memfd_create("pm", 0), 10);
	CHECK_SYS(ftruncate(10, 2 * PAGE));
	mshared = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 10, 0);
	mpriv = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, 10, 0);
	CHECK(mshared != MAP_FAILED && mpriv != MAP_FAILED, "mmap memfd: %s", strerror(errno));
	strcpy(mshared, "shared0");
	strcpy(mshared + PAGE, "shared1");
	strcpy(mpriv + PAGE, "private1");
}

static void setup_anon(void)
{
	char path[64];

	anon = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(anon != MAP_FAILED, "mmap anon: %s", strerror(errno));
	for (int i = 0; i < 4; i++)
		anon[i * PAGE] = 'A' + i;
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (long)anon, (long)anon + 4 * PAGE);
	victim_place(open(path, O_RDWR), 11);
	apriv = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, 11, PAGE);
	ashared2 = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, 11, 2 * PAGE);
	CHECK(apriv != MAP_FAILED && ashared2 != MAP_FAILED, "mmap map_files: %s", strerror(errno));
	apriv[PAGE] = 'p'; /* object page 2, copied */
}

static void setup_deleted(void)
{
	int fd;

	snprintf(file, sizeof(file), "%s/pm-deleted", getcwd(link2, sizeof(link2)));
	snprintf(link2, sizeof(link2), "%s.lnk", file);
	fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0640);
	CHECK_SYS(fd);
	for (int i = 0; i < 3; i++)
		CHECK(pwrite(fd, "abc" + i, 1, i * PAGE) == 1, "pwrite");
	CHECK_SYS(ftruncate(fd, 3 * PAGE));
	fa = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	CHECK(fa != MAP_FAILED, "mmap file: %s", strerror(errno));
	CHECK_SYS(mprotect(fa, PAGE, PROT_READ));
	fa[2 * PAGE + 1] = 'w';
	CHECK_SYS(link(file, link2));
	CHECK_SYS(unlink(file));
	victim_place(open(link2, O_RDWR), 12);
	fb = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, 12, PAGE);
	CHECK(fb != MAP_FAILED, "mmap link: %s", strerror(errno));
	CHECK_SYS(unlink(link2));
	close(fd);
}

static void check_memfd(void)
{
	CHECK(!strcmp(mpriv, "shared0") && !strcmp(mpriv + PAGE, "private1"),
	      "memfd private mapping holds %s / %s", mpriv, mpriv + PAGE);
	strcpy(mshared, "again0");
	strcpy(mshared + PAGE, "again1");
	CHECK(!strcmp(mpriv, "again0"), "memfd: untouched private page does not show the object");
	CHECK(!strcmp(mpriv + PAGE, "private1"), "memfd: the private copy changed");
	CHECK(pwrite(10, "fd", 2, 0) == 2 && mpriv[0] == 'f', "memfd: fd 10 is not the mapped object");
	strcpy(mpriv, "mine");
	CHECK(!strncmp(mshared, "fdain0", 6), "memfd: a private write leaked: %s", mshared);
}

static void check_anon(void)
{
	CHECK(apriv[0] == 'B' && apriv[PAGE] == 'p' && ashared2[0] == 'C',
	      "anon: %c %c %c", apriv[0], apriv[PAGE], ashared2[0]);
	ashared2[PAGE] = 'd';
	CHECK(anon[3 * PAGE] == 'd' && apriv[2 * PAGE] == 'd', "anon: the object is not shared");
	anon[PAGE] = 'b';
	CHECK(apriv[0] == 'b', "anon: untouched private page does not show the object");
	CHECK(anon[2 * PAGE] == 'C', "anon: the private copy leaked");
}

static void check_deleted(void)
{
	struct stat st;

	CHECK(fa[0] == 'a' && fa[PAGE] == 'b' && fa[2 * PAGE] == 'c' && fa[2 * PAGE + 1] == 'w',
	      "deleted: %c %c %c %c", fa[0], fa[PAGE], fa[2 * PAGE], fa[2 * PAGE + 1]);
	CHECK(fb[0] == 'b', "deleted: second name maps %c", fb[0]);
	CHECK(pwrite(12, "XYZ", 3, 0) == 3 && pwrite(12, "Y", 1, PAGE) == 1, "pwrite fd 12");
	CHECK(pwrite(12, "Z", 1, 2 * PAGE) == 1, "pwrite fd 12");
	CHECK(fa[0] == 'X' && fa[PAGE] == 'Y' && fb[0] == 'Y', "deleted: fd 12 writes do not show");
	CHECK(fa[2 * PAGE] == 'c', "deleted: the private copy changed");
	CHECK(fstat(12, &st) == 0 && st.st_nlink == 0 && (st.st_mode & 07777) == 0640 && st.st_size == 3 * PAGE,
	      "deleted: fd 12 links %ld mode %o size %ld", (long)st.st_nlink, st.st_mode & 07777, (long)st.st_size);
}

/* A memfd mapped only privately, its fd closed. */
static void setup_alone(void)
{
	int fd = memfd_create("alone", 0);
	char *p;

	CHECK_SYS(fd);
	CHECK(write(fd, "alone", 5) == 5, "write memfd");
	p = mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
	CHECK(p != MAP_FAILED && p[0] == 'a', "mmap alone: %s", strerror(errno));
	close(fd);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	if (argc > 1 && !strcmp(argv[1], "alone"))
		setup_alone();
	setup_memfd();
	setup_anon();
	setup_deleted();
	const void *maps[7] = {mshared, mpriv, anon, apriv, ashared2, fa, fb};
	for (int i = 0; i < 7; i++)
		record(i, maps[i]);
	victim_ready();
	victim_wait_go();
	for (int i = 0; i < 7; i++)
		same_map(i, maps[i]);
	check_memfd();
	check_anon();
	check_deleted();
	victim_pass();
}
