/*
 * netlinks: a tree in a network namespace of its own (unshared here) with links of
 * several kinds, each with attributes of its own.
 *
 * Before READY: a bridge nlbr0 (forward_delay 700, hello_time 300, ageing_time 12345,
 * address 02:11:22:33:44:55, 10.66.0.1/24); a veth pair nlva (index 20, port of nlbr0
 * with cost 7, priority 9, learning off) and nlvb (index 21, MTU 1400), both inside; a
 * macvlan nlmv0 on nlvb in mode private (10.67.0.1/24, when the kernel has macvlan); all
 * up. A datagram socket bound to 10.66.0.1:7788 (fd 10). A child that made a network
 * namespace of its own (unshare) with a veth pair nlca/nlcb inside (nlca 10.68.0.1/24,
 * MTU 1300), both up, waiting on a pipe (fd 11 its write end in the parent).
 * After go: `ip -d -o link` (timers left out) and `ip -o addr` (address and device) print
 * the same as before, in the parent's namespace and in the child's, which is still not
 * the parent's; the socket receives a datagram sent to its address.
 */
#include "victim.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PORT 7788

/* What `ip` printed of the links and addresses before the dump. */
static char links[16384], addrs[4096];

/* The kernel-derived parts of `ip -d -o link` (timers, STP state) left out. */
#define LINKS "ip -d -o link show | sed -E 's/ (hello_timer|tcn_timer|topology_change_timer" \
	      "|gc_timer|hold_timer|message_age_timer|forward_delay_timer) +[0-9.]+//g'"
#define ADDRS "ip -o addr show | awk '{print $2, $3, $4}' | sort"

static pid_t child;

/* The child: in a namespace of its own, made and captured, says so on `ready`; after a
 * byte on `go`, checks it kept its links. */
static void in_own_namespace(int ready, int go)
{
	static char links_before[8192], addrs_before[2048];
	char byte;

	if (unshare(CLONE_NEWNET))
		_exit(10);
	if (system("ip link add nlca type veth peer name nlcb && ip link set nlca mtu 1300"
		   " && ip addr add 10.68.0.1/24 dev nlca && ip link set nlcb up"
		   " && ip link set nlca up"))
		_exit(11);
	victim_capture(LINKS, links_before, sizeof(links_before));
	victim_capture(ADDRS, addrs_before, sizeof(addrs_before));
	if (write(ready, "r", 1) != 1 || read(go, &byte, 1) != 1)
		_exit(12);
	victim_capture(LINKS, links, sizeof(links));
	victim_capture(ADDRS, addrs, sizeof(addrs));
	if (strcmp(links, links_before) || strcmp(addrs, addrs_before)) {
		fprintf(stderr, "child links now:\n%s%s\nwere:\n%s%s\n", links, addrs,
			links_before, addrs_before);
		_exit(13);
	}
	_exit(0);
}

/* Forks the child and waits until it made its namespace; fd 11 tells it to check. */
static void fork_child(void)
{
	int go[2], ready[2];
	char byte;

	CHECK_SYS(pipe(go));
	CHECK_SYS(pipe(ready));
	child = fork();
	CHECK_SYS(child);
	if (child == 0) {
		close(go[1]);
		close(ready[0]);
		in_own_namespace(ready[1], go[0]);
	}
	close(go[0]);
	close(ready[1]);
	CHECK(read(ready[0], &byte, 1) == 1, "the child could not make its namespace");
	close(ready[0]);
	victim_place(go[1], 11);
}

/* Whether the child is in another network namespace than ours. */
static int child_elsewhere(void)
{
	struct stat mine, theirs;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/ns/net", child);
	CHECK_SYS(stat("/proc/self/ns/net", &mine));
	CHECK_SYS(stat(path, &theirs));
	return mine.st_ino != theirs.st_ino;
}

static struct sockaddr_in addr(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(PORT) };

	inet_pton(AF_INET, "10.66.0.1", &a.sin_addr);
	return a;
}

static void setup(void)
{
	struct sockaddr_in a = addr();

	if (unshare(CLONE_NEWNET))
		victim_skip("unshare(CLONE_NEWNET) is not permitted here");
	if (system("command -v ip >/dev/null"))
		victim_skip("needs ip (iproute2)");
	if (system("ip link add nlbr0 type bridge forward_delay 700 hello_time 300"
		   " ageing_time 12345 2>/dev/null"))
		victim_skip("the kernel makes no bridge");
	victim_sh("ip link add nlva index 20 type veth peer name nlvb index 21"
	   " && ip link set nlva master nlbr0"
	   " && ip link set dev nlva type bridge_slave cost 7 priority 9 learning off"
	   " && ip link set nlvb mtu 1400"
	   " && ip link set nlbr0 address 02:11:22:33:44:55"
	   " && ip addr add 10.66.0.1/24 dev nlbr0"
	   " && ip link set lo up && ip link set nlva up && ip link set nlvb up"
	   " && ip link set nlbr0 up");
	if (system("ip link add nlmv0 link nlvb type macvlan mode private 2>/dev/null") == 0)
		victim_sh("ip addr add 10.67.0.1/24 dev nlmv0 && ip link set nlmv0 up");
	/* The bridge's carrier comes with its ports', a moment after they are up. */
	victim_sh("for i in $(seq 100); do ip link show nlbr0 | grep -q 'state UP' && exit 0;"
	   " sleep 0.05; done; exit 1");
	fork_child();
	victim_place(socket(AF_INET, SOCK_DGRAM, 0), 10);
	CHECK_SYS(bind(10, (struct sockaddr *)&a, sizeof(a)));
	victim_capture(LINKS, links, sizeof(links));
	victim_capture(ADDRS, addrs, sizeof(addrs));
}

static void verify(void)
{
	static char now[sizeof(links)];
	struct sockaddr_in a = addr();
	char buf[8] = { 0 };
	int s, status;

	victim_capture(LINKS, now, sizeof(now));
	CHECK(strcmp(now, links) == 0, "links differ:\n%s\nwere:\n%s", now, links);
	victim_capture(ADDRS, now, sizeof(now));
	CHECK(strcmp(now, addrs) == 0, "addresses differ:\n%s\nwere:\n%s", now, addrs);
	s = socket(AF_INET, SOCK_DGRAM, 0);
	CHECK_SYS(s);
	CHECK_SYS(sendto(s, "hi", 2, 0, (struct sockaddr *)&a, sizeof(a)));
	CHECK(read(10, buf, sizeof(buf)) == 2 && !memcmp(buf, "hi", 2),
	      "the socket bound to 10.66.0.1 receives nothing");
	close(s);
	CHECK(child_elsewhere(), "the child is in its parent's network namespace");
	CHECK(write(11, "g", 1) == 1, "tell the child: %s", strerror(errno));
	CHECK_SYS(waitpid(child, &status, 0));
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child failed: %#x", status);
}

int main(void)
{
	return victim_run(setup, verify);
}
