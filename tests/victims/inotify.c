/*
 * inotify: watches by path and mask, with their watch descriptors.
 *
 * Before READY (in a fresh directory): fd 10 an inotify instance (O_NONBLOCK) watching the
 * directory for IN_CREATE (wd 1), file "a" for IN_MODIFY (wd 2, then removed) and file
 * "b" for IN_MODIFY|IN_CLOSE_WRITE (wd 3); the events of the setup are read away.
 * fd 11 (and its dup at 13) an inotify instance watching, for IN_MODIFY (wd 1), file
 * "gone", deleted while open at fd 12.
 * After go: F_GETFL; no event is pending; creating "c" reports wd 1 IN_CREATE "c";
 * writing "b" reports wd 3 IN_MODIFY; writing "a" reports nothing; writing fd 12 reports
 * wd 1 IN_MODIFY on fd 11.
 */
#include "victim.h"

#include <fcntl.h>
#include <sys/inotify.h>

static char dir[] = "inotify-XXXXXX";

static void touch(const char *name)
{
	int fd = open(name, O_WRONLY | O_CREAT, 0600);
	CHECK_SYS(fd);
	CHECK(write(fd, "x", 1) == 1, "write %s", name);
	close(fd);
}

static void expect(int fd, int wd, unsigned mask, const char *name)
{
	char buf[4096] __attribute__((aligned(8)));
	struct inotify_event *ev = (struct inotify_event *)buf;
	ssize_t n = read(fd, buf, sizeof(buf));

	CHECK(n > 0, "inotify: no event for wd %d: %s", wd, n < 0 ? strerror(errno) : "EOF");
	CHECK(ev->wd == wd && (ev->mask & mask), "inotify: event wd %d mask %#x, want wd %d mask %#x",
	      ev->wd, ev->mask, wd, mask);
	CHECK(!name || !strcmp(ev->name, name), "inotify: event for %s, want %s", ev->name, name);
}

int main(void)
{
	char buf[4096];
	int fl;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	touch("a");
	touch("b");
	victim_place(inotify_init1(IN_NONBLOCK), 10);
	CHECK(inotify_add_watch(10, ".", IN_CREATE) == 1, "wd 1");
	CHECK(inotify_add_watch(10, "a", IN_MODIFY) == 2, "wd 2");
	CHECK_SYS(inotify_rm_watch(10, 2));
	CHECK(inotify_add_watch(10, "b", IN_MODIFY | IN_CLOSE_WRITE) == 3, "wd 3");
	victim_place(inotify_init1(IN_NONBLOCK), 11);
	victim_place(open("gone", O_RDWR | O_CREAT, 0600), 12);
	CHECK(inotify_add_watch(11, "gone", IN_MODIFY) == 1, "fd 11 wd 1");
	CHECK_SYS(unlink("gone"));
	CHECK_SYS(dup2(11, 13));
	while (read(10, buf, sizeof(buf)) > 0)
		;
	fl = fcntl(10, F_GETFL);
	victim_ready();
	victim_wait_go();
	CHECK(fcntl(10, F_GETFL) == fl, "fd 10: F_GETFL %#x, was %#x", fcntl(10, F_GETFL), fl);
	CHECK(read(10, buf, sizeof(buf)) == -1 && errno == EAGAIN, "inotify: stray event after restore");
	touch("c");
	expect(10, 1, IN_CREATE, "c");
	touch("a");
	touch("b");
	expect(10, 3, IN_MODIFY, NULL);
	CHECK(read(13, buf, sizeof(buf)) == -1 && errno == EAGAIN, "fd 13: stray event");
	CHECK(write(12, "x", 1) == 1, "write fd 12");
	expect(13, 1, IN_MODIFY, NULL);
	unlink("a");
	unlink("b");
	unlink("c");
	CHECK_SYS(chdir(".."));
	rmdir(dir);
	victim_pass();
}
