/*
 * proc_files: /proc files of processes of the tree, namespace files, and a cwd in the
 * /proc directory of a process that exited.
 *
 * Before READY: a child that waits; fd 10 its /proc/PID/stat, fd 11 the victim's own
 * /proc/self/fdinfo/10; fds 12 and 13 /proc/self/ns/net and /proc/self/ns/uts; the cwd
 * is /proc/PID of a second child, killed and reaped.
 * After go: fd 10 reads the child's stat (its pid first), fd 11 the fdinfo of fd 10;
 * 12 and 13 are the namespaces the victim is in; getcwd fails with ENOENT and the cwd
 * link ends with " (deleted)".
 */
#include "victim.h"

#include <sys/stat.h>
#include <sys/wait.h>

static pid_t child;

static pid_t waiting_child(void)
{
	pid_t pid = fork();

	CHECK_SYS(pid);
	if (pid == 0) {
		for (;;)
			pause();
	}
	return pid;
}

static void setup(void)
{
	char path[64];
	pid_t gone;

	child = waiting_child();
	snprintf(path, sizeof(path), "/proc/%d/stat", child);
	victim_place(open(path, O_RDONLY), 10);
	victim_place(open("/proc/self/fdinfo/10", O_RDONLY), 11);
	victim_place(open("/proc/self/ns/net", O_RDONLY), 12);
	victim_place(open("/proc/self/ns/uts", O_RDONLY), 13);
	gone = waiting_child();
	snprintf(path, sizeof(path), "/proc/%d", gone);
	CHECK_SYS(chdir(path));
	CHECK_SYS(kill(gone, SIGKILL));
	CHECK(waitpid(gone, NULL, 0) == gone, "waitpid: %s", strerror(errno));
}

static void same_ns(int fd, const char *kind)
{
	char path[64];
	struct stat a, b;

	snprintf(path, sizeof(path), "/proc/self/ns/%s", kind);
	CHECK_SYS(fstat(fd, &a));
	CHECK_SYS(stat(path, &b));
	CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev, "fd %d is not the %s namespace", fd, kind);
}

static void verify(void)
{
	char buf[4096], want[32], cwd[256];
	ssize_t n;

	n = pread(10, buf, sizeof(buf) - 1, 0);
	CHECK(n > 0, "read fd 10: %s", strerror(errno));
	buf[n] = 0;
	snprintf(want, sizeof(want), "%d (", child);
	CHECK(strncmp(buf, want, strlen(want)) == 0, "fd 10 reads %.40s, not the child's stat", buf);
	n = pread(11, buf, sizeof(buf) - 1, 0);
	CHECK(n > 0, "read fd 11: %s", strerror(errno));
	buf[n] = 0;
	CHECK(strncmp(buf, "pos:", 4) == 0, "fd 11 reads %.40s, not an fdinfo", buf);
	same_ns(12, "net");
	same_ns(13, "uts");
	CHECK(getcwd(cwd, sizeof(cwd)) == NULL && errno == ENOENT, "getcwd did not fail with ENOENT");
	n = readlink("/proc/self/cwd", cwd, sizeof(cwd) - 1);
	CHECK(n > 0, "readlink cwd: %s", strerror(errno));
	cwd[n] = 0;
	CHECK(strncmp(cwd, "/proc/", 6) == 0 && strstr(cwd, " (deleted)"), "cwd is %s", cwd);
	CHECK_SYS(kill(child, SIGKILL));
	CHECK(waitpid(child, NULL, 0) == child, "waitpid: %s", strerror(errno));
}

int main(void)
{
	return victim_run(setup, verify);
}
