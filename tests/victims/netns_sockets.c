/*
 * netns_sockets: unix sockets of network namespaces made inside the tree, and a process
 * that entered another's namespace (zdtm's netns_sub without its cross-namespace first
 * holder).
 *
 * Before READY: this process unshares a network namespace R of its own and binds a
 * datagram socket to the abstract name "stasis-nsR" (fd 10). Its child A unshares a
 * namespace of its own, binds "stasis-nsA" (fd 12), forks G and closes fd 12; G enters R
 * (setns on /proc/ROOT/ns/net) and keeps A's socket. A waits on a pipe (fd 11 its write
 * end here), G on one from A.
 * After go: here "stasis-nsR" is reachable and "stasis-nsA" not; in A (its namespace, the
 * socket held by G) "stasis-nsA" is reachable and "stasis-nsR" not; then in G (in R) the
 * same as here, and its fd 12 is still bound to "stasis-nsA".
 */
#include "victim.h"
#include "unix_names.h"

#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static pid_t child;

static void bind_named(const char *n, int fd)
{
	struct sockaddr_un a;
	socklen_t l = un_abstract(&a, n);

	victim_place(socket(AF_UNIX, SOCK_DGRAM, 0), fd);
	CHECK_SYS(bind(fd, (struct sockaddr *)&a, l));
}

/* 0 when `yes` is reachable and `no` is not. */
static int sees(const char *yes, const char *no)
{
	return un_reachable(yes) && !un_reachable(no) ? 0 : 1;
}

static int wait_go(int rd)
{
	char b;

	return read(rd, &b, 1) == 1 ? 0 : 1;
}

static int grandchild(pid_t root, int rd)
{
	char path[64], want[] = "\0stasis-nsA";
	struct sockaddr_un a;
	socklen_t l = sizeof(a);
	int ns;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", root);
	ns = open(path, O_RDONLY);
	if (ns < 0 || setns(ns, CLONE_NEWNET))
		return 2;
	close(ns);
	if (write(20, "r", 1) != 1 || wait_go(rd))
		return 3;
	if (getsockname(12, (struct sockaddr *)&a, &l) || memcmp(a.sun_path, want, sizeof(want) - 1))
		return 4;
	return sees("stasis-nsR", "stasis-nsA") ? 5 : 0;
}

/* A checks first (G holds the socket it looks for), then lets G go. */
static int in_a(pid_t root, int rd)
{
	int status, to_g[2];
	pid_t g;

	if (unshare(CLONE_NEWNET) || pipe(to_g))
		return 2;
	bind_named("stasis-nsA", 12);
	g = fork();
	if (g < 0)
		return 2;
	if (g == 0) {
		close(to_g[1]);
		_exit(grandchild(root, to_g[0]));
	}
	close(12);
	close(to_g[0]);
	if (wait_go(rd))
		return 3;
	if (sees("stasis-nsA", "stasis-nsR"))
		return 6;
	if (write(to_g[1], "g", 1) != 1)
		return 8;
	if (waitpid(g, &status, 0) != g || !WIFEXITED(status))
		return 7;
	return WEXITSTATUS(status) ? 10 + WEXITSTATUS(status) : 0;
}

static void setup(void)
{
	int go[2], ready[2];
	pid_t root = getpid();
	char b;

	if (unshare(CLONE_NEWNET))
		victim_skip("unshare(CLONE_NEWNET) is not permitted here");
	bind_named("stasis-nsR", 10);
	CHECK_SYS(pipe(go));
	CHECK_SYS(pipe(ready));
	victim_place(ready[1], 20);
	child = fork();
	CHECK_SYS(child);
	if (child == 0) {
		close(go[1]);
		close(10);
		_exit(in_a(root, go[0]));
	}
	close(go[0]);
	close(20);
	victim_place(go[1], 11);
	CHECK(read(ready[0], &b, 1) == 1, "the grandchild could not enter the namespace");
	close(ready[0]);
}

static void verify(void)
{
	int status;

	CHECK(sees("stasis-nsR", "stasis-nsA") == 0, "the root's namespace has the wrong names");
	CHECK(write(11, "g", 1) == 1, "tell the child: %s", strerror(errno));
	CHECK_SYS(waitpid(child, &status, 0));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a child failed: %#x", status);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	return victim_run(setup, verify);
}
