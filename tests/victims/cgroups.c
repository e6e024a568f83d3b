/*
 * Cgroups: the victim joins the cgroups named on its command line (each a cgroup
 * directory: it writes itself into DIR/cgroup.procs), forks a child that stays there
 * too, and with `threaded DIR` starts a thread that moves itself into the threaded
 * child cgroup DIR/t (DIR/t/cgroup.threads). After go, each task's /proc cgroup file
 * must read as before the dump (with `moved`, the harness checks where they went
 * instead). Only hierarchies listed both times are compared: a hierarchy is the
 * host's, and one made or freed meanwhile by anyone else shows up in or drops out of
 * every process's list; where the victim is in each one is what must stay.
 *
 *   cgroups join DIR...        process and child in DIR...
 *   cgroups moved DIR...       the same, cgroups not compared after go
 *   cgroups threaded DIR       process in DIR (cgroup2), one thread in DIR/t
 */
#include "victim.h"

#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>

static char before[4096], thread_before[4096];
static int threaded_ok = -1, child_pipe[2];

static void read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	CHECK_SYS(fd);
	n = read(fd, buf, len - 1);
	CHECK_SYS(n);
	buf[n] = 0;
	close(fd);
}

static void write_file(const char *dir, const char *file, const char *value)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	CHECK(write(fd, value, strlen(value)) >= 0, "write %s to %s: %s", value, path, strerror(errno));
	close(fd);
}

/* Does every line of list a that names a hierarchy b lists too read the same in b? */
static int kept_where_listed(const char *a, const char *b)
{
	const char *line, *end, *other;

	for (line = a; *line; line = *end ? end + 1 : end) {
		const char *key_end = strchr(line, ':');
		size_t key_len;

		end = strchrnul(line, '\n');
		key_end = key_end && key_end < end ? strchr(key_end + 1, ':') : NULL;
		if (!key_end || key_end > end)
			continue;
		key_len = key_end + 1 - line;
		for (other = b; *other; other = strchrnul(other, '\n'), other += !!*other) {
			if (strncmp(other, line, key_len))
				continue;
			if ((size_t)(strchrnul(other, '\n') - other) != (size_t)(end - line) ||
			    strncmp(other, line, end - line))
				return 0;
			break;
		}
	}
	return 1;
}

static int same_cgroups(const char *a, const char *b)
{
	return kept_where_listed(a, b) && kept_where_listed(b, a);
}

static void *in_thread(void *arg)
{
	char tid[32], path[64], now[4096];

	snprintf(tid, sizeof(tid), "%ld", (long)syscall(SYS_gettid));
	write_file((const char *)arg, "cgroup.threads", tid);
	snprintf(path, sizeof(path), "/proc/self/task/%s/cgroup", tid);
	read_file(path, thread_before, sizeof(thread_before));
	threaded_ok = 0;
	while (!victim_go)
		usleep(10000);
	read_file(path, now, sizeof(now));
	threaded_ok = same_cgroups(now, thread_before) ? 1 : 2;
	return NULL;
}

int main(int argc, char **argv)
{
	char now[4096], sub[512];
	int i, status, check;
	pthread_t th;
	pid_t child;

	victim_install_go();
	if (argc < 3)
		victim_fail("usage: cgroups join|moved|threaded DIR...");
	check = strcmp(argv[1], "moved") != 0;
	for (i = 2; i < argc; i++)
		write_file(argv[i], "cgroup.procs", "0");
	read_file("/proc/self/cgroup", before, sizeof(before));
	CHECK_SYS(pipe(child_pipe));
	child = fork();
	CHECK_SYS(child);
	if (child == 0) {
		char mine[4096];

		close(child_pipe[1]);
		read_file("/proc/self/cgroup", mine, sizeof(mine));
		while (read(child_pipe[0], now, 1) < 0 && errno == EINTR)
			;
		read_file("/proc/self/cgroup", now, sizeof(now));
		_exit(!check || same_cgroups(now, mine) ? 0 : 3);
	}
	close(child_pipe[0]);
	if (!strcmp(argv[1], "threaded")) {
		snprintf(sub, sizeof(sub), "%s/t", argv[2]);
		CHECK(pthread_create(&th, NULL, in_thread, sub) == 0, "pthread_create");
		while (threaded_ok < 0)
			usleep(1000);
	}
	victim_ready();
	victim_wait_go();
	read_file("/proc/self/cgroup", now, sizeof(now));
	if (check && !same_cgroups(now, before))
		victim_fail("cgroups were:\n%s\nnow:\n%s", before, now);
	CHECK(write(child_pipe[1], "g", 1) == 1, "wake the child");
	CHECK(waitpid(child, &status, 0) == child, "waitpid");
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child's cgroups changed (status %d)", status);
	if (!strcmp(argv[1], "threaded")) {
		pthread_join(th, NULL);
		CHECK(threaded_ok == 1, "the thread's cgroup changed: it was\n%s", thread_before);
	}
	victim_pass();
}
