/*
 * unix_senders: the sender address of each message queued on a unix datagram socket.
 *
 * Before READY (in a fresh directory under the start cwd), fd 10 is a datagram socket
 * bound to the abstract name "@snd-srv-PID", with six messages queued, in this order:
 *   "a1" from a socket bound to "@snd-A-PID", closed since;
 *   "p1" from a socket bound to the absolute path DIR/p.sock, closed (its file stays);
 *   "b1" from fd 11, bound to "@snd-B-PID" and connected to fd 10, still open;
 *   "u1" from an unnamed socket, closed;
 *   "q1" from fd 12, bound to the relative path "q.sock", unconnected, still open;
 *   "r1" from a socket bound to the relative path "r.sock", closed (its file stays);
 *   "b2" from fd 11 again.
 * After go: each recvmsg on fd 10 returns its message with its sender's address as
 * bound (none for "u1"), then nothing; p.sock and r.sock are the same files as before
 * (same inodes), and the directory holds nothing else than p.sock, q.sock and r.sock.
 *
 * Mode "connected" (refused at dump): fd 10 bound to "@snd-srv-PID" holds "c1" from a
 * socket bound to "@snd-C-PID" (closed), and was connected after that to fd 11, bound to
 * "@snd-X-PID": only fd 11 can send to it now. After go: "c1" comes with "@snd-C-PID".
 */
#include "victim.h"

#include <dirent.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "unix_names.h"

static char dir[] = "unix_senders-XXXXXX";
static char p_path[256];
static ino_t p_ino, r_ino;

/* The address of name `n`: abstract when it starts with '@'. */
static socklen_t addr_of(struct sockaddr_un *a, const char *n)
{
	if (n[0] == '@')
		return un_abstract(a, n + 1);
	*a = un_addr(n);
	return offsetof(struct sockaddr_un, sun_path) + strlen(n) + 1;
}

static int dgram_named(const char *n)
{
	struct sockaddr_un a;
	socklen_t l = addr_of(&a, n);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);

	CHECK_SYS(s);
	if (n[0])
		CHECK_SYS(bind(s, (struct sockaddr *)&a, l));
	return s;
}

static char srv[64], name_a[64], name_b[64], name_c[64], name_x[64];

static void send_to_srv(int s, const char *msg)
{
	struct sockaddr_un a;
	socklen_t l = addr_of(&a, srv);

	CHECK(sendto(s, msg, strlen(msg), 0, (struct sockaddr *)&a, l) == (ssize_t)strlen(msg),
	      "send %s: %s", msg, strerror(errno));
}

static ino_t ino_of(const char *path)
{
	struct stat st;

	CHECK_SYS(stat(path, &st));
	return st.st_ino;
}

static void names(void)
{
	snprintf(srv, sizeof(srv), "@snd-srv-%d", getpid());
	snprintf(name_a, sizeof(name_a), "@snd-A-%d", getpid());
	snprintf(name_b, sizeof(name_b), "@snd-B-%d", getpid());
	snprintf(name_c, sizeof(name_c), "@snd-C-%d", getpid());
	snprintf(name_x, sizeof(name_x), "@snd-X-%d", getpid());
}

static void setup(void)
{
	struct sockaddr_un a;
	int s, p, r, u;

	names();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	CHECK(getcwd(p_path, sizeof(p_path) - 8) != NULL, "getcwd");
	strcat(p_path, "/p.sock");

	victim_place(dgram_named(srv), 10);
	s = dgram_named(name_a);
	send_to_srv(s, "a1");
	close(s);
	p = dgram_named(p_path);
	send_to_srv(p, "p1");
	victim_place(dgram_named(name_b), 11);
	CHECK_SYS(connect(11, (struct sockaddr *)&a, addr_of(&a, srv)));
	CHECK_SYS(send(11, "b1", 2, 0));
	u = dgram_named("");
	send_to_srv(u, "u1");
	victim_place(dgram_named("q.sock"), 12);
	send_to_srv(12, "q1");
	r = dgram_named("r.sock");
	send_to_srv(r, "r1");
	CHECK_SYS(send(11, "b2", 2, 0));
	close(p);
	close(r);
	close(u);
	p_ino = ino_of("p.sock");
	r_ino = ino_of("r.sock");
}

/* The next message of fd 10 is `msg`, from `from` ("" for an unnamed sender). */
static void expect(const char *msg, const char *from)
{
	struct sockaddr_un got, want;
	socklen_t want_len = from[0] ? addr_of(&want, from) : 0;
	char buf[16];
	struct iovec iov = {.iov_base = buf, .iov_len = sizeof(buf)};
	struct msghdr h = {.msg_name = &got, .msg_namelen = sizeof(got), .msg_iov = &iov,
			   .msg_iovlen = 1};
	ssize_t n;

	memset(&got, 0, sizeof(got));
	n = recvmsg(10, &h, MSG_DONTWAIT);
	CHECK(n == (ssize_t)strlen(msg) && !memcmp(buf, msg, n), "fd 10: %zd bytes instead of %s",
	      n, msg);
	/* A path name's reported length may or may not count its NUL. */
	if (from[0] && from[0] != '@')
		want_len = h.msg_namelen;
	CHECK(h.msg_namelen == want_len &&
		      (!from[0] || !memcmp(got.sun_path, want.sun_path,
					   want_len - offsetof(struct sockaddr_un, sun_path))),
	      "%s: from %.*s%s (length %u), expected %s", msg,
	      (int)(h.msg_namelen > 3 ? h.msg_namelen - 3 : 0),
	      got.sun_path + (got.sun_path[0] == 0), got.sun_path[0] == 0 ? " (abstract)" : "",
	      h.msg_namelen, from[0] ? from : "an unnamed sender");
}

static void only(const char *const *want, int n)
{
	DIR *d = opendir(".");
	struct dirent *e;
	int seen = 0;

	CHECK(d != NULL, "opendir: %s", strerror(errno));
	while ((e = readdir(d)) != NULL) {
		int known = 0;

		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		for (int i = 0; i < n; i++)
			known |= !strcmp(e->d_name, want[i]);
		CHECK(known, "unexpected file %s", e->d_name);
		seen++;
	}
	closedir(d);
	CHECK(seen == n, "%d files instead of %d", seen, n);
}

static void verify(void)
{
	static const char *const files[] = {"p.sock", "q.sock", "r.sock"};
	char q;

	expect("a1", name_a);
	expect("p1", p_path);
	expect("b1", name_b);
	expect("u1", "");
	expect("q1", "q.sock");
	expect("r1", "r.sock");
	expect("b2", name_b);
	CHECK(recv(10, &q, 1, MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 10: more queued");
	CHECK(ino_of("p.sock") == p_ino, "p.sock was replaced");
	CHECK(ino_of("r.sock") == r_ino, "r.sock was replaced");
	only(files, 3);
}

static void setup_connected(void)
{
	struct sockaddr_un a;
	int c;

	names();
	victim_place(dgram_named(srv), 10);
	c = dgram_named(name_c);
	send_to_srv(c, "c1");
	close(c);
	victim_place(dgram_named(name_x), 11);
	CHECK_SYS(connect(10, (struct sockaddr *)&a, addr_of(&a, name_x)));
}

static void verify_connected(void)
{
	expect("c1", name_c);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "connected"))
		return victim_run(setup_connected, verify_connected);
	return victim_run(setup, verify);
}
