/*
 * unix_unlinked: unix sockets bound to a path that no longer leads to them.
 *
 * Before READY (in a fresh directory under the start cwd):
 *   fds 10/11: an accepted stream connection and its client; the listener was closed and
 *              its file "gone.sock" unlinked (the accepted end still reports the name);
 *   fds 12/13: a datagram socket bound to "fifo.sock" and one connected to it; the file
 *              was unlinked and a FIFO made at that name, open at fd 14 (O_RDWR);
 *   fds 15/16: a listener bound to "live.sock" and a connection it accepted (fd 16), the
 *              client at fd 17: the file stays (mode 0640) and leads to the listener;
 *   fd 18:     an unnamed datagram socket of a pair whose other end sent "q1" and "q2"
 *              and closed.
 * After go: getsockname of 10, 12, 15 and 16 gives their names; no "gone.sock" file;
 * "live.sock" has mode 0640 and the victim's uid;
 * "fifo.sock" is still the FIFO, with its byte; 13 still sends to 12, 11 to 10 and 17
 * to 16; a new client can connect to "live.sock"; 18 reads "q1" then "q2", then nothing,
 * and sending on it fails with ECONNREFUSED (its peer is gone).
 */
#include "victim.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "unix_names.h"

static char dir[] = "unix_unlinked-XXXXXX";

static void setup(void)
{
	int l, pair[2];

	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));

	l = bound(SOCK_STREAM, "gone.sock");
	CHECK_SYS(listen(l, 1));
	victim_place(connected(SOCK_STREAM, "gone.sock"), 11);
	victim_place(accept(l, NULL, NULL), 10);
	close(l);
	CHECK_SYS(unlink("gone.sock"));

	victim_place(bound(SOCK_DGRAM, "fifo.sock"), 12);
	victim_place(connected(SOCK_DGRAM, "fifo.sock"), 13);
	CHECK_SYS(unlink("fifo.sock"));
	CHECK_SYS(mkfifo("fifo.sock", 0600));
	victim_place(open("fifo.sock", O_RDWR), 14);
	CHECK_SYS(write(14, "f", 1));

	victim_place(bound(SOCK_STREAM, "live.sock"), 15);
	CHECK_SYS(chmod("live.sock", 0640));
	CHECK_SYS(listen(15, 4));
	victim_place(connected(SOCK_STREAM, "live.sock"), 17);
	victim_place(accept(15, NULL, NULL), 16);

	CHECK_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, pair));
	victim_place(pair[0], 18);
	CHECK_SYS(send(pair[1], "q1", 2, 0));
	CHECK_SYS(send(pair[1], "q2", 2, 0));
	close(pair[1]);
}

static void check_name(int fd, const char *want)
{
	struct sockaddr_un a;
	socklen_t len = sizeof(a);

	CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &len));
	CHECK(len > sizeof(sa_family_t) && strcmp(a.sun_path, want) == 0,
	      "fd %d: getsockname %.*s, expected %s", fd,
	      (int)(len - sizeof(sa_family_t)), a.sun_path, want);
}

static void check_pair(int from, int to)
{
	char c = 0;

	CHECK_SYS(write(from, "p", 1));
	CHECK(read(to, &c, 1) == 1 && c == 'p', "fd %d did not get fd %d's byte", to, from);
}

static void verify(void)
{
	struct stat st;
	char c = 0;

	check_name(10, "gone.sock");
	check_name(12, "fifo.sock");
	check_name(15, "live.sock");
	check_name(16, "live.sock");
	CHECK(stat("gone.sock", &st) == -1 && errno == ENOENT, "gone.sock exists again");
	CHECK_SYS(stat("live.sock", &st));
	CHECK((st.st_mode & 07777) == 0640 && st.st_uid == getuid(), "live.sock: mode %o uid %d",
	      st.st_mode & 07777, st.st_uid);
	CHECK_SYS(stat("fifo.sock", &st));
	CHECK(S_ISFIFO(st.st_mode), "fifo.sock is no longer a FIFO (mode %o)", st.st_mode);
	CHECK(read(14, &c, 1) == 1 && c == 'f', "the FIFO lost its byte");
	check_pair(11, 10);
	check_pair(13, 12);
	check_pair(17, 16);
	close(connected(SOCK_STREAM, "live.sock"));

	char q[8];
	CHECK(recv(18, q, sizeof(q), MSG_DONTWAIT) == 2 && !memcmp(q, "q1", 2), "fd 18: no q1");
	CHECK(recv(18, q, sizeof(q), MSG_DONTWAIT) == 2 && !memcmp(q, "q2", 2), "fd 18: no q2");
	CHECK(recv(18, q, sizeof(q), MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 18: more queued");
	CHECK(send(18, "s", 1, MSG_DONTWAIT) == -1 && errno == ECONNREFUSED,
	      "fd 18: send did not fail with ECONNREFUSED: %s", strerror(errno));
}

int main(void)
{
	return victim_run(setup, verify);
}
