/*
 * chrooted: a child whose root is a directory below the victim's cwd (chroot), its cwd
 * left outside that root (zdtm's chroot).
 *
 * Before READY: ./croot holds "inside" with "inside-data"; the child (a fork) chroots
 * into croot, its cwd stays the victim's; fd 10 of the child is open on /inside (O_RDWR).
 * After go: the child's root is croot (stat "/" gives croot's inode, a new open of
 * /inside reads "inside-data"), its cwd is the victim's (stat "." gives the inode the
 * victim's cwd had), and its fd 10 reads "inside-data".
 */
#include "victim.h"

#include <sys/stat.h>
#include <sys/wait.h>

#define DATA "inside-data"

static int go_pipe[2], res_pipe[2];
static pid_t child;
static struct stat root_st, cwd_st;

static int same(const char *path, const struct stat *want)
{
	struct stat st;

	return stat(path, &st) == 0 && st.st_dev == want->st_dev && st.st_ino == want->st_ino;
}

static int holds_data(int fd)
{
	char buf[32] = { 0 };

	return pread(fd, buf, sizeof(buf) - 1, 0) == (ssize_t)strlen(DATA) && !strcmp(buf, DATA);
}

/* The child's checks: NULL, or what differs. */
static const char *check(void)
{
	int fd;

	if (!same("/", &root_st))
		return "the root is not croot";
	if (!same(".", &cwd_st))
		return "the cwd is not the victim's";
	if (!holds_data(10))
		return "fd 10 does not read " DATA;
	fd = open("/inside", O_RDONLY);
	if (fd < 0 || !holds_data(fd))
		return "/inside cannot be opened in the root";
	close(fd);
	return NULL;
}

static void child_main(void)
{
	const char *msg;
	char c;

	if (chroot("croot"))
		_exit(1);
	victim_place(open("/inside", O_RDWR), 10);
	if (write(res_pipe[1], "r", 1) != 1 || read(go_pipe[0], &c, 1) != 1)
		_exit(1);
	msg = check();
	if (!msg)
		msg = "ok";
	if (write(res_pipe[1], msg, strlen(msg)) < 0)
		_exit(1);
	_exit(0);
}

static void setup(void)
{
	int fd;
	char c;

	if (geteuid() != 0)
		victim_skip("chroot needs root");
	if (mkdir("croot", 0755) && errno != EEXIST)
		victim_fail("mkdir croot: %s", strerror(errno));
	fd = open("croot/inside", O_RDWR | O_CREAT | O_TRUNC, 0644);
	CHECK_SYS(fd);
	CHECK(write(fd, DATA, strlen(DATA)) == (ssize_t)strlen(DATA), "write croot/inside");
	close(fd);
	CHECK_SYS(stat("croot", &root_st));
	CHECK_SYS(stat(".", &cwd_st));
	CHECK_SYS(pipe(go_pipe));
	CHECK_SYS(pipe(res_pipe));
	child = fork();
	CHECK_SYS(child);
	if (child == 0)
		child_main();
	CHECK(read(res_pipe[0], &c, 1) == 1 && c == 'r', "the child could not chroot");
}

static void verify(void)
{
	char msg[128] = { 0 };

	CHECK(write(go_pipe[1], "g", 1) == 1, "write to the child: %s", strerror(errno));
	CHECK(read(res_pipe[0], msg, sizeof(msg) - 1) > 0, "no answer from the child");
	CHECK(!strcmp(msg, "ok"), "child: %s", msg);
	CHECK(waitpid(child, NULL, 0) == child, "waitpid: %s", strerror(errno));
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	return victim_run(setup, verify);
}
