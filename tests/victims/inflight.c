/*
 * Files in flight: fds sent with SCM_RIGHTS over a datagram socketpair (10 receives,
 * 11 sends, SO_PASSCRED on 10) and not received before the dump. In queue order:
 *
 *   "pipes"  the read end of pipe A (its write end kept at fd 12) and the read end of
 *            pipe B (no other copy left), each with bytes buffered;
 *   "file"   a regular file (100 bytes) at offset 37, no other copy left;
 *   "sock"   one end of a seqpacket socketpair (the other kept at fd 13) with two
 *            messages queued on it: "abc", then "inner" carrying an eventfd (count 7);
 *   "anon"   a memfd ("victim-mem", 11 bytes) and an eventfd (count 5);
 *   "shared" fd 14 itself (a file the process still holds: one offset after restore);
 *   "creds"  no files, credentials only.
 *
 * After go: every message comes back in order with its data, its credentials (this
 * process) and its files, each checked for kind and contents; pipe A's write end still
 * reaches the received read end, pipe B reads its bytes then end of file; nothing else
 * is queued.
 */
#include "victim.h"

#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define FILE_LEN 100
#define FILE_POS 37

static void send_fds(int sock, const char *data, const int *fds, int n)
{
	char cbuf[CMSG_SPACE(sizeof(int) * 4)];
	struct iovec iov = { (void *)data, strlen(data) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *c;

	if (n > 0) {
		memset(cbuf, 0, sizeof(cbuf));
		m.msg_control = cbuf;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		c = CMSG_FIRSTHDR(&m);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(c), fds, sizeof(int) * n);
	}
	CHECK(sendmsg(sock, &m, 0) == (ssize_t)strlen(data), "sendmsg %s: %s", data, strerror(errno));
}

/* Receives the next message of `sock`: its data must be `want`, with `n` files (stored
 * in `fds`) and, when `creds`, this process's credentials. */
static void recv_fds(int sock, const char *want, int *fds, int n, int creds)
{
	char buf[64], cbuf[CMSG_SPACE(sizeof(int) * 8) + CMSG_SPACE(sizeof(struct ucred))];
	struct iovec iov = { buf, sizeof(buf) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf,
			    .msg_controllen = sizeof(cbuf) };
	struct cmsghdr *c;
	int got = 0, saw_creds = 0;
	ssize_t len = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	CHECK(len >= 0, "recvmsg for %s: %s", want, strerror(errno));
	CHECK(len == (ssize_t)strlen(want) && !memcmp(buf, want, len),
	      "expected message %s, got %.*s", want, (int)len, buf);
	CHECK(!(m.msg_flags & MSG_CTRUNC), "%s: control data truncated", want);
	for (c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			got = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			CHECK(got == n, "%s: %d files instead of %d", want, got, n);
			memcpy(fds, CMSG_DATA(c), sizeof(int) * got);
		} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
			struct ucred u;

			memcpy(&u, CMSG_DATA(c), sizeof(u));
			CHECK(u.pid == getpid() && u.uid == getuid() && u.gid == getgid(),
			      "%s: credentials %d/%d/%d", want, u.pid, u.uid, u.gid);
			saw_creds = 1;
		}
	}
	CHECK(got == n, "%s: %d files instead of %d", want, got, n);
	CHECK(!creds || saw_creds, "%s: no credentials", want);
}

static void expect_read(int fd, const char *want, const char *what)
{
	char buf[64];
	ssize_t len = read(fd, buf, sizeof(buf));

	CHECK(len == (ssize_t)strlen(want) && !memcmp(buf, want, len),
	      "%s: read %zd bytes (%.*s), expected %s", what, len, (int)(len > 0 ? len : 0), buf, want);
}

static void expect_kind(int fd, mode_t kind, const char *what)
{
	struct stat st;

	CHECK_SYS(fstat(fd, &st));
	CHECK((st.st_mode & S_IFMT) == kind, "%s: wrong file type %o", what, st.st_mode & S_IFMT);
}

static char path[] = "inflight-XXXXXX";

static void setup(void)
{
	int sv[2], a[2], b[2], in[2], fds[2], one = 1;
	char data[FILE_LEN];
	int f, ev, mem;

	CHECK_SYS(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv));
	victim_place(sv[0], 10);
	victim_place(sv[1], 11);
	CHECK_SYS(setsockopt(10, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)));

	CHECK_SYS(pipe(a));
	CHECK_SYS(pipe(b));
	CHECK(write(a[1], "hello-pipe", 10) == 10, "write pipe A");
	CHECK(write(b[1], "orphan", 6) == 6, "write pipe B");
	close(b[1]);
	victim_place(a[1], 12);
	fds[0] = a[0];
	fds[1] = b[0];
	send_fds(11, "pipes", fds, 2);
	close(a[0]);
	close(b[0]);

	f = mkstemp(path);
	CHECK_SYS(f);
	for (int i = 0; i < FILE_LEN; i++)
		data[i] = (char)('a' + i % 26);
	CHECK(write(f, data, FILE_LEN) == FILE_LEN, "write file");
	CHECK_SYS(lseek(f, FILE_POS, SEEK_SET));
	send_fds(11, "file", &f, 1);
	close(f);

	CHECK_SYS(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, in));
	victim_place(in[1], 13);
	ev = eventfd(7, 0);
	CHECK_SYS(ev);
	send_fds(13, "abc", NULL, 0);
	send_fds(13, "inner", &ev, 1);
	close(ev);
	send_fds(11, "sock", &in[0], 1);
	close(in[0]);

	mem = memfd_create("victim-mem", 0);
	CHECK_SYS(mem);
	CHECK(write(mem, "memfd-data!", 11) == 11, "write memfd");
	ev = eventfd(5, 0);
	CHECK_SYS(ev);
	fds[0] = mem;
	fds[1] = ev;
	send_fds(11, "anon", fds, 2);
	close(mem);
	close(ev);

	victim_place(open(path, O_RDONLY), 14);
	CHECK_SYS(lseek(14, 3, SEEK_SET));
	fds[0] = 14;
	send_fds(11, "shared", fds, 1);
	send_fds(11, "creds", NULL, 0);
}

static void verify_pipes(void)
{
	int fds[2];
	char buf[8];

	recv_fds(10, "pipes", fds, 2, 1);
	expect_kind(fds[0], S_IFIFO, "pipe A");
	expect_read(fds[0], "hello-pipe", "pipe A");
	CHECK(write(12, "more", 4) == 4, "write pipe A after restore: %s", strerror(errno));
	expect_read(fds[0], "more", "pipe A, written through fd 12");
	expect_read(fds[1], "orphan", "pipe B");
	CHECK(read(fds[1], buf, sizeof(buf)) == 0, "pipe B: no end of file (a writer survived?)");
	close(fds[0]);
	close(fds[1]);
}

static void verify_file(void)
{
	char buf[8];
	int f;

	recv_fds(10, "file", &f, 1, 1);
	expect_kind(f, S_IFREG, "file");
	CHECK(lseek(f, 0, SEEK_CUR) == FILE_POS, "file: offset %ld", (long)lseek(f, 0, SEEK_CUR));
	CHECK(read(f, buf, 3) == 3 && !memcmp(buf, "lmn", 3), "file: wrong bytes at its offset");
	CHECK(lseek(f, 0, SEEK_END) == FILE_LEN, "file: wrong size");
	close(f);
}

static void verify_sock(void)
{
	int s, ev;
	uint64_t count;

	recv_fds(10, "sock", &s, 1, 1);
	expect_kind(s, S_IFSOCK, "socket");
	recv_fds(s, "abc", NULL, 0, 0);
	recv_fds(s, "inner", &ev, 1, 0);
	CHECK(read(ev, &count, 8) == 8 && count == 7, "inner eventfd: count");
	send_fds(13, "ping", NULL, 0);
	recv_fds(s, "ping", NULL, 0, 0);
	send_fds(s, "pong", NULL, 0);
	recv_fds(13, "pong", NULL, 0, 0);
	close(s);
	close(ev);
}

static void verify_anon(void)
{
	int fds[2];
	char link[64], name[64];
	uint64_t count;
	ssize_t len;

	recv_fds(10, "anon", fds, 2, 1);
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fds[0]);
	len = readlink(link, name, sizeof(name) - 1);
	CHECK(len > 0, "memfd: readlink");
	name[len] = 0;
	CHECK(!strncmp(name, "/memfd:victim-mem", 17), "memfd: name %s", name);
	CHECK(pread(fds[0], link, 11, 0) == 11 && !memcmp(link, "memfd-data!", 11), "memfd: contents");
	CHECK(read(fds[1], &count, 8) == 8 && count == 5, "eventfd: count");
	close(fds[0]);
	close(fds[1]);
}

static void verify_shared(void)
{
	int f;

	recv_fds(10, "shared", &f, 1, 1);
	CHECK(lseek(f, 0, SEEK_CUR) == 3, "shared file: offset");
	CHECK_SYS(lseek(14, 50, SEEK_SET));
	CHECK(lseek(f, 0, SEEK_CUR) == 50, "shared file: not the same open file as fd 14");
	close(f);
}

int main(void)
{
	char buf[8];

	victim_install_go();
	setup();
	victim_ready();
	victim_wait_go();
	verify_pipes();
	verify_file();
	verify_sock();
	verify_anon();
	verify_shared();
	recv_fds(10, "creds", NULL, 0, 1);
	CHECK(recv(10, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN,
	      "fd 10: more messages than sent");
	unlink(path);
	victim_pass();
}
