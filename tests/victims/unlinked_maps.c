/*
 * Shared mappings of objects without a name: a memfd (mapped from offset 4096, its fd
 * closed) and a deleted file in /dev/shm (as python's multiprocessing semaphores), both
 * mapped MAP_SHARED by a parent and its child, no fd left open. With "open", the memfd
 * stays open at fd 10 too (which stasis refuses for now: tests/failure.rs).
 *
 * On go every process checks the contents; then the parent writes into both and the
 * child must see it, and the child writes and the parent must see it: one object each,
 * shared, after the restore too.
 */
#include "victim.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define PAGE 4096

static char *mfd, *del;

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
	for (int i = 0; i < 2 * PAGE; i++)
		mfd[i] = 'a' + (i + PAGE) % 26;

	snprintf(path, sizeof(path), "/dev/shm/stasis-victim-%d", getpid());
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	CHECK_SYS(fd);
	CHECK_SYS(ftruncate(fd, PAGE));
	del = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(del != MAP_FAILED, "mmap deleted file: %s", strerror(errno));
	close(fd);
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
	victim_pass();
}
