/*
 * A file mapping may only become writable (shared) if its file was opened for writing:
 * two files mapped shared read-only, one through an O_RDWR fd and one through an
 * O_RDONLY fd, both fds closed. After go, mprotect(PROT_WRITE) must still work on the
 * first (and a write through it reach the file) and still fail with EACCES on the
 * second, and each /proc/self/map_files link must show the same access mode.
 */
#include "victim.h"
#include <sys/mman.h>
#include <sys/stat.h>

#define LEN 8192

static char *map_file(const char *path, int flags)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	char *m;

	CHECK_SYS(fd);
	CHECK_SYS(ftruncate(fd, LEN));
	CHECK_SYS(pwrite(fd, "file", 4, 0));
	close(fd);
	fd = open(path, flags);
	CHECK_SYS(fd);
	m = mmap(NULL, LEN, PROT_READ, MAP_SHARED, fd, 0);
	CHECK(m != MAP_FAILED, "mmap %s: %s", path, strerror(errno));
	close(fd);
	return m;
}

/* The owner bits of the map_files link of the mapping at `m`. */
static int link_mode(char *m)
{
	char path[128];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)m, (unsigned long)m + LEN);
	CHECK_SYS(lstat(path, &st));
	return st.st_mode & (S_IRUSR | S_IWUSR);
}

int main(void)
{
	char *rw, *ro;
	int rw_mode, ro_mode;
	char c;
	int fd;

	victim_install_go();
	rw = map_file("file_prot_rw.bin", O_RDWR);
	ro = map_file("file_prot_ro.bin", O_RDONLY);
	rw_mode = link_mode(rw);
	ro_mode = link_mode(ro);
	CHECK(rw_mode == (S_IRUSR | S_IWUSR) && ro_mode == S_IRUSR, "map_files modes %o %o", rw_mode, ro_mode);
	victim_ready();
	victim_wait_go();
	CHECK(link_mode(rw) == rw_mode, "the O_RDWR mapping's link mode is %o", link_mode(rw));
	CHECK(link_mode(ro) == ro_mode, "the O_RDONLY mapping's link mode is %o", link_mode(ro));
	CHECK(rw[0] == 'f' && ro[0] == 'f', "file contents lost");
	CHECK(mprotect(rw, LEN, PROT_READ | PROT_WRITE) == 0, "mprotect of the O_RDWR file's mapping: %s", strerror(errno));
	rw[1] = 'X';
	CHECK(mprotect(ro, LEN, PROT_READ | PROT_WRITE) == -1 && errno == EACCES,
	      "mprotect of the O_RDONLY file's mapping did not fail with EACCES");
	fd = open("file_prot_rw.bin", O_RDONLY);
	CHECK_SYS(fd);
	CHECK(pread(fd, &c, 1, 1) == 1 && c == 'X', "a write through the mapping did not reach the file");
	victim_pass();
}
