/*
 * Shared mappings of objects without a name: a memfd (mapped from offset 4096, its fd
 * closed) and a deleted file in /dev/shm (as python's multiprocessing semaphores), both
 * mapped MAP_SHARED by a parent and its child, no fd left open. With "open", the memfd
 * stays open at fd 10 too: it is mapped only in part, which stasis refuses
 * (tests/failure.rs). With "fds", objects mapped whole are also held open: a second
 * memfd (created without MFD_ALLOW_SEALING, so sealed with F_SEAL_SEAL) at fd 11, offset
 * 123, and the deleted file at fd 12, offset 7; after the restore each fd must still
 * reach the mapped object (a write through one is seen through the other), with its
 * offset and seals.
 *
 * On go every process checks the contents; then the parent writes into both and the
 * child must see it, and the child writes and the parent must see it: one object each,
 * shared, after the restore too.
 */
#include "victim.h"

#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define PAGE 4096

static char *mfd, *del, *whole;
static int with_fds;

/* Writes through fd `fd` at `off` must show in `map`, and stores into `map` must read
 * back through the fd: the fd and the mapping are one object. */
static void check_same_object(const char *who, int fd, char *map, int off)
{
	char c = 0;

	CHECK(pwrite(fd, "F", 1, off) == 1, "%s: pwrite fd %d: %s", who, fd, strerror(errno));
	CHECK(map[off] == 'F', "%s: a write through fd %d is not in its mapping", who, fd);
	map[off + 1] = 'M';
	CHECK(pread(fd, &c, 1, off + 1) == 1 && c == 'M',
	      "%s: fd %d does not read the mapping's store (%#x)", who, fd, c);
}

static void check_fds(const char *who)
{
	struct stat st;

	if (!with_fds)
		return;
	CHECK(lseek(11, 0, SEEK_CUR) == 123, "%s: fd 11 at offset %ld", who,
	      (long)lseek(11, 0, SEEK_CUR));
	CHECK(lseek(12, 0, SEEK_CUR) == 7, "%s: fd 12 at offset %ld", who,
	      (long)lseek(12, 0, SEEK_CUR));
	CHECK(fcntl(11, F_GET_SEALS) == F_SEAL_SEAL, "%s: fd 11 seals %#x", who,
	      fcntl(11, F_GET_SEALS));
	CHECK(fstat(12, &st) == 0 && st.st_nlink == 0 && st.st_size == PAGE,
	      "%s: fd 12 is not the deleted one-page file", who);
	CHECK(memcmp(whole + 3000, "whole", 5) == 0, "%s: whole memfd holds %.5s", who,
	      whole + 3000);
}

static void check_initial(const char *who)
{
	for (int i = 0; i < 2 * PAGE; i++)
		CHECK(mfd[i] == (char)('a' + (i + PAGE) % 26) || i == 100 || i == 200,
		      "%s: memfd byte %d is %#x", who, i, mfd[i]);
	CHECK(memcmp(del + 1000, "semaphore", 9) == 0, "%s: deleted file holds %.9s", who,
	      del + 1000);
}

/* Waits up to 10 s for `*p == v`. */
static int await(volatile char *p, char v)
{
	for (int i = 0; i < 10000 && *p != v; i++)
		usleep(1000);
	return *p == v;
}

static void child(void)
{
	victim_wait_go();
	check_initial("child");
	check_fds("child");
	CHECK(await(mfd + 100, 'x') && await(del + 100, 'x'),
	      "child: the parent's writes are not visible (%#x, %#x)", mfd[100], del[100]);
	mfd[200] = 'y';
	del[200] = 'y';
	exit(0);
}

int main(int argc, char **argv)
{
	char path[64];
	int fd, st;
	pid_t kid;

	victim_install_go();
	fd = memfd_create("stasis-victim", MFD_CLOEXEC);
	CHECK_SYS(fd);
	CHECK_SYS(ftruncate(fd, 3 * PAGE));
	mfd = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PAGE);
	CHECK(mfd != MAP_FAILED, "mmap memfd: %s", strerror(errno));
	if (argc > 1 && !strcmp(argv[1], "open"))
		victim_place(fd, 10);
	else
		close(fd);
	with_fds = argc > 1 && !strcmp(argv[1], "fds");
	if (with_fds) {
		fd = memfd_create("stasis-whole", 0);
		CHECK_SYS(fd);
		CHECK_SYS(ftruncate(fd, 2 * PAGE));
		whole = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		CHECK(whole != MAP_FAILED, "mmap whole memfd: %s", strerror(errno));
		memcpy(whole + 3000, "whole", 5);
		victim_place(fd, 11);
		CHECK(lseek(11, 123, SEEK_SET) == 123, "lseek fd 11");
	}
	for (int i = 0; i < 2 * PAGE; i++)
		mfd[i] = 'a' + (i + PAGE) % 26;

	snprintf(path, sizeof(path), "/dev/shm/stasis-victim-%d", getpid());
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	CHECK_SYS(fd);
	CHECK_SYS(ftruncate(fd, PAGE));
	del = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(del != MAP_FAILED, "mmap deleted file: %s", strerror(errno));
	if (with_fds) {
		victim_place(fd, 12);
		CHECK(lseek(12, 7, SEEK_SET) == 7, "lseek fd 12");
	} else {
		close(fd);
	}
	CHECK_SYS(unlink(path));
	memcpy(del + 1000, "semaphore", 9);

	fflush(stdout);
	kid = fork();
	CHECK_SYS(kid);
	if (kid == 0)
		child();
	victim_ready();
	victim_wait_go();
	check_initial("parent");
	check_fds("parent");
	mfd[100] = 'x';
	del[100] = 'x';
	for (;;) {
		pid_t r;

		kill(kid, SIGUSR1);
		r = waitpid(kid, &st, WNOHANG);
		if (r == kid)
			break;
		CHECK(r == 0 || errno == EINTR, "waitpid: %s", strerror(errno));
		usleep(10000);
	}
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
	CHECK(mfd[200] == 'y' && del[200] == 'y', "parent: the child's writes are not visible (%#x, %#x)",
	      mfd[200], del[200]);
	if (with_fds) {
		check_same_object("parent", 11, whole, 500);
		check_same_object("parent", 12, del, 500);
	}
	victim_pass();
}
