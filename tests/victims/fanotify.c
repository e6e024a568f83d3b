/*
 * fanotify groups and their marks. In a fresh directory D (under the current one):
 *
 *   fd 10: FAN_CLASS_NOTIF | FAN_NONBLOCK, event fds O_RDONLY | O_CLOEXEC; an inode mark
 *          on D (FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD), an inode mark on D/g
 *          (FAN_MODIFY) and an ignored mask on D/f (FAN_CLOSE_WRITE, surviving
 *          modification); an event is left pending at the dump (dropped by a restore);
 *   fd 11: FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, a mount mark (FAN_OPEN) on D's mount
 *          and a filesystem mark (FAN_CLOSE_NOWRITE) on D's filesystem.
 *
 * After go: the fdinfo `fanotify` lines of both fds are the same set as before (init
 * flags, event flags, every mark with its flags, masks and file handle), the fds keep
 * their flags; then, pending events read away, writing D/g gives FAN_MODIFY for D/g on
 * fd 10, closing a new D/h written gives FAN_CLOSE_WRITE for it, closing D/f written
 * gives nothing (ignored), and opening and closing D/g read-only gives FAN_OPEN and
 * FAN_CLOSE_NOWRITE for D/g on fd 11.
 *
 * With "perm": fd 12 is also a FAN_CLASS_CONTENT group with FAN_OPEN_PERM on D/p, and a
 * process outside the tree (a grandchild left to the harness) waits in open(D/p) for its
 * answer, queued at READY: the dump must be refused (tests/failure.rs). After go the
 * request is read and allowed.
 */
#include "victim.h"

#include <limits.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define MAX_LINES 16

static char dir[] = "fanotify-XXXXXX", abs_dir[PATH_MAX / 2];

/* The sorted `fanotify` lines of fd's fdinfo, joined. */
static void fdinfo_lines(int fd, char *out, size_t len)
{
	char path[64], line[512], *lines[MAX_LINES];
	int n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	f = fopen(path, "r");
	CHECK(f, "open %s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "fanotify", 8) && n < MAX_LINES)
			lines[n++] = strdup(line);
	fclose(f);
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (strcmp(lines[i], lines[j]) > 0) {
				char *t = lines[i];

				lines[i] = lines[j];
				lines[j] = t;
			}
	out[0] = 0;
	for (int i = 0; i < n; i++) {
		strncat(out, lines[i], len - strlen(out) - 1);
		free(lines[i]);
	}
}

static void touch(const char *name, const char *data)
{
	char path[PATH_MAX];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
	CHECK_SYS(fd);
	CHECK(write(fd, data, strlen(data)) == (ssize_t)strlen(data), "write %s", path);
	close(fd);
}

static void mark(int fd, unsigned flags, uint64_t mask, const char *name)
{
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s%s%s", abs_dir, *name ? "/" : "", name);
	CHECK(!fanotify_mark(fd, FAN_MARK_ADD | flags, mask, AT_FDCWD, path),
	      "fanotify_mark %s: %s", path, strerror(errno));
}

/* Reads every queued event of fd; returns the OR of the masks of those about D/name
 * (closing each event's fd). */
static uint64_t events_for(int fd, const char *name)
{
	char buf[8192], link[64], path[PATH_MAX], want[PATH_MAX];
	uint64_t mask = 0;
	ssize_t len;

	snprintf(want, sizeof(want), "%s/%s", abs_dir, name);
	while ((len = read(fd, buf, sizeof(buf))) > 0) {
		struct fanotify_event_metadata *m = (void *)buf;

		for (; FAN_EVENT_OK(m, len); m = FAN_EVENT_NEXT(m, len)) {
			ssize_t n;

			if (m->fd < 0)
				continue;
			snprintf(link, sizeof(link), "/proc/self/fd/%d", m->fd);
			n = readlink(link, path, sizeof(path) - 1);
			path[n > 0 ? n : 0] = 0;
			if (!strcmp(path, want))
				mask |= m->mask;
			close(m->fd);
		}
	}
	CHECK(errno == EAGAIN, "read fanotify fd %d: %s", fd, strerror(errno));
	return mask;
}

/* fd 12: a permission group; a grandchild (outside the tree) blocks opening D/p. */
static void setup_perm(void)
{
	char path[PATH_MAX];
	int queued = 0;
	pid_t child;

	touch("p", "p");
	victim_place(fanotify_init(FAN_CLASS_CONTENT | FAN_NONBLOCK, O_RDONLY), 12);
	mark(12, 0, FAN_OPEN_PERM, "p");
	snprintf(path, sizeof(path), "%s/p", abs_dir);
	child = fork();
	CHECK_SYS(child);
	if (child == 0) {
		if (fork() == 0) {
			setsid();
			close(open(path, O_RDONLY));
			_exit(0);
		}
		_exit(0);
	}
	CHECK_SYS(waitpid(child, NULL, 0));
	for (int i = 0; i < 500 && queued == 0; i++) {
		CHECK_SYS(ioctl(12, FIONREAD, &queued));
		usleep(10000);
	}
	CHECK(queued > 0, "no permission request queued");
}

static void answer_perm(void)
{
	struct fanotify_event_metadata m;
	struct fanotify_response r;

	CHECK(read(12, &m, sizeof(m)) == sizeof(m), "read the permission request: %s", strerror(errno));
	CHECK(m.mask & FAN_OPEN_PERM, "not a FAN_OPEN_PERM request: %#llx", (unsigned long long)m.mask);
	r.fd = m.fd;
	r.response = FAN_ALLOW;
	CHECK(write(12, &r, sizeof(r)) == sizeof(r), "answer the request: %s", strerror(errno));
	close(m.fd);
}

int main(int argc, char **argv)
{
	char before10[4096], before11[4096], after[4096];
	int g10, g11, perm = argc > 1 && !strcmp(argv[1], "perm");

	victim_install_go();
	CHECK(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	{
		char real[PATH_MAX];

		CHECK(realpath(dir, real) && strlen(real) < sizeof(abs_dir), "realpath: %s", strerror(errno));
		strcpy(abs_dir, real);
	}
	touch("f", "f");
	touch("g", "g");
	g10 = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK, O_RDONLY | O_CLOEXEC);
	if (g10 < 0 && (errno == EPERM || errno == ENOSYS))
		victim_skip("fanotify_init needs CAP_SYS_ADMIN here");
	victim_place(g10, 10);
	mark(10, 0, FAN_CLOSE_WRITE | FAN_EVENT_ON_CHILD, "");
	mark(10, 0, FAN_MODIFY, "g");
	mark(10, FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_CLOSE_WRITE, "f");
	g11 = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDONLY);
	victim_place(g11, 11);
	mark(11, FAN_MARK_MOUNT, FAN_OPEN, "");
	mark(11, FAN_MARK_FILESYSTEM, FAN_CLOSE_NOWRITE, "");
	touch("g", "pending");
	fdinfo_lines(10, before10, sizeof(before10));
	fdinfo_lines(11, before11, sizeof(before11));
	if (perm)
		setup_perm();

	victim_ready();
	victim_wait_go();
	if (perm) {
		answer_perm();
		victim_pass();
	}

	fdinfo_lines(10, after, sizeof(after));
	CHECK(!strcmp(before10, after), "fd 10 fdinfo changed:\n%s---\n%s", before10, after);
	fdinfo_lines(11, after, sizeof(after));
	CHECK(!strcmp(before11, after), "fd 11 fdinfo changed:\n%s---\n%s", before11, after);
	CHECK(fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 lost O_NONBLOCK");
	CHECK(!(fcntl(10, F_GETFD) & FD_CLOEXEC), "fd 10 gained FD_CLOEXEC");
	CHECK(fcntl(11, F_GETFD) & FD_CLOEXEC, "fd 11 lost FD_CLOEXEC");
	events_for(10, "g");
	events_for(11, "g");

	touch("g", "more");
	touch("h", "new");
	touch("f", "ignored");
	CHECK(events_for(10, "g") & FAN_MODIFY, "no FAN_MODIFY for g");
	touch("h", "again");
	CHECK(events_for(10, "h") & FAN_CLOSE_WRITE, "no FAN_CLOSE_WRITE for h");
	touch("f", "ignored");
	CHECK(!(events_for(10, "f") & FAN_CLOSE_WRITE), "FAN_CLOSE_WRITE for f, whose close is ignored");
	{
		char path[PATH_MAX];
		uint64_t got;

		events_for(11, "g");
		snprintf(path, sizeof(path), "%s/g", dir);
		close(open(path, O_RDONLY));
		got = events_for(11, "g");
		CHECK((got & (FAN_OPEN | FAN_CLOSE_NOWRITE)) == (FAN_OPEN | FAN_CLOSE_NOWRITE),
		      "fd 11: events %#llx for g, expected FAN_OPEN and FAN_CLOSE_NOWRITE",
		      (unsigned long long)got);
	}
	for (const char *n = "fgh"; *n; n++) {
		char path[PATH_MAX];

		snprintf(path, sizeof(path), "%s/%c", dir, *n);
		unlink(path);
	}
	rmdir(dir);
	victim_pass();
}
