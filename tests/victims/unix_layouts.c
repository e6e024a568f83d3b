/*
 * unix_layouts: unix sockets in the layouts of CRIU's sk-unix01 and sockets_dgram.
 *
 * Before READY (in a fresh directory under the start cwd, subdirectory "d"):
 *   fds 10/11: a datagram socket bound to "d/same" and one connected to it; the file
 *              unlinked; then fds 12/13: the same again (a second socket bound to the
 *              same name, its own sender), unlinked too;
 *   fd 14:     a third datagram socket bound to "d/same", whose file stays;
 *   fds 15-19: a stream listener bound to "d/st" (15), two clients (16, 18) and the
 *              connections it accepted (17, 19); the file unlinked; then "d" removed;
 *   fd 20:     a datagram socket bound to "self.sock" and connected to itself.
 * After go: 11 still sends to 10 and 13 to 12 (each to its own receiver); 10, 12 and 14
 * report "d/same" and 15 "d/st" (getsockname); 17 and 16, 19 and 18 talk; "d" does not
 * exist; 20 reads what it writes to itself and reports "self.sock".
 */
#include "victim.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "unix_names.h"

static char dir[] = "unix_layouts-XXXXXX";

static void setup(void)
{
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	CHECK_SYS(mkdir("d", 0755));

	victim_place(bound(SOCK_DGRAM, "d/same"), 10);
	victim_place(connected(SOCK_DGRAM, "d/same"), 11);
	CHECK_SYS(unlink("d/same"));
	victim_place(bound(SOCK_DGRAM, "d/same"), 12);
	victim_place(connected(SOCK_DGRAM, "d/same"), 13);
	CHECK_SYS(unlink("d/same"));
	victim_place(bound(SOCK_DGRAM, "d/same"), 14);
	CHECK_SYS(unlink("d/same"));

	victim_place(bound(SOCK_STREAM, "d/st"), 15);
	CHECK_SYS(listen(15, 4));
	victim_place(connected(SOCK_STREAM, "d/st"), 16);
	victim_place(accept(15, NULL, NULL), 17);
	victim_place(connected(SOCK_STREAM, "d/st"), 18);
	victim_place(accept(15, NULL, NULL), 19);
	CHECK_SYS(unlink("d/st"));
	CHECK_SYS(rmdir("d"));

	victim_place(bound(SOCK_DGRAM, "self.sock"), 20);
	{
		struct sockaddr_un a = un_addr("self.sock");

		CHECK_SYS(connect(20, (struct sockaddr *)&a, sizeof(a)));
	}
}

/* `from` sends `what`; `to` must read exactly it, and nothing else be queued there. */
static void talk(int from, int to, const char *what)
{
	char buf[32] = {0};
	ssize_t n;

	CHECK(write(from, what, strlen(what)) == (ssize_t)strlen(what), "write %d: %s", from,
	      strerror(errno));
	n = recv(to, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == (ssize_t)strlen(what) && memcmp(buf, what, n) == 0,
	      "fd %d sent \"%s\", fd %d read %zd bytes \"%s\" (%s)", from, what, to, n, buf,
	      n < 0 ? strerror(errno) : "");
}

static void check_name(int fd, const char *want)
{
	struct sockaddr_un a;
	socklen_t len = sizeof(a);

	CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &len));
	CHECK(strcmp(a.sun_path, want) == 0, "fd %d is bound to \"%s\", not \"%s\"", fd,
	      a.sun_path, want);
}

static void verify(void)
{
	struct stat st;

	talk(11, 10, "to-10");
	talk(13, 12, "to-12");
	for (int fd = 10; fd <= 14; fd += 2)
		check_name(fd, "d/same");
	check_name(15, "d/st");
	talk(17, 16, "a");
	talk(16, 17, "b");
	talk(19, 18, "c");
	talk(18, 19, "d");
	CHECK(stat("d", &st) == -1 && errno == ENOENT, "directory d is back");
	talk(20, 20, "self");
	check_name(20, "self.sock");
}

int main(void)
{
	return victim_run(setup, verify);
}
