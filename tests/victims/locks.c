/*
 * locks: flock, POSIX record and OFD locks, dumped with --file-locks.
 *
 * Before READY (in a fresh directory): fd 10 "f1" with flock(LOCK_EX); fd 11 "f2" with a
 * POSIX read lock on bytes 10..19; fd 12 "f3" with an OFD write lock from byte 0 to EOF.
 * After go, a forked child with its own opens of the files finds each lock held by us:
 * flock(LOCK_SH|LOCK_NB) fails, F_GETLK reports our pid's read lock on 10..19 (and bytes
 * 0..9 free), F_OFD_GETLK reports the write lock.
 */
#include "victim.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/wait.h>

static char dir[] = "locks-XXXXXX";

static void lock(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	CHECK_SYS(fcntl(fd, cmd, &fl));
}

static int probe(const char *name, int cmd, short type, off_t start, off_t len, struct flock *out)
{
	int fd = open(name, O_RDWR);
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};

	if (fd < 0 || fcntl(fd, cmd, &fl) < 0)
		return -1;
	close(fd);
	*out = fl;
	return 0;
}

/* In a child: exit 0 when every lock is seen held by `owner`, else a code per failure. */
static int check_from_child(pid_t owner)
{
	struct flock fl;
	int fd = open("f1", O_RDWR);

	if (fd < 0 || flock(fd, LOCK_SH | LOCK_NB) == 0 || errno != EWOULDBLOCK)
		return 10;
	if (probe("f2", F_GETLK, F_WRLCK, 0, 0, &fl) || fl.l_type != F_RDLCK || fl.l_pid != owner
	    || fl.l_start != 10 || fl.l_len != 10)
		return 11;
	if (probe("f2", F_GETLK, F_WRLCK, 0, 10, &fl) || fl.l_type != F_UNLCK)
		return 12;
	if (probe("f3", F_OFD_GETLK, F_RDLCK, 5, 1, &fl) || fl.l_type != F_WRLCK || fl.l_start != 0 || fl.l_len != 0)
		return 13;
	return 0;
}

static void check(void)
{
	pid_t me = getpid(), child = fork();
	int st;

	CHECK_SYS(child);
	if (child == 0)
		_exit(check_from_child(me));
	CHECK_SYS(waitpid(child, &st, 0));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "lock %d not held as before (10 flock, 11/12 POSIX, 13 OFD)", WEXITSTATUS(st));
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	victim_place(open("f1", O_RDWR | O_CREAT, 0600), 10);
	victim_place(open("f2", O_RDWR | O_CREAT, 0600), 11);
	victim_place(open("f3", O_RDWR | O_CREAT, 0600), 12);
	CHECK_SYS(flock(10, LOCK_EX));
	lock(11, F_SETLK, F_RDLCK, 10, 10);
	lock(12, F_OFD_SETLK, F_WRLCK, 0, 0);
	check();
	victim_ready();
	victim_wait_go();
	check();
	unlink("f1");
	unlink("f2");
	unlink("f3");
	CHECK_SYS(chdir(".."));
	rmdir(dir);
	victim_pass();
}
