/*
 * POSIX message queues and the IPC sysctls of an IPC namespace of the victim's own
 * (unshare(CLONE_NEWIPC)): the dump kills the namespace with the tree, so the restore
 * must make a new one with the sysctls and the queues, their messages in order.
 *
 *   sysctls: fs.mqueue.msg_max 20, fs.mqueue.msgsize_default 512, kernel.msgmnb 20000,
 *            kernel.shm_next_id 77 (set, never used);
 *   queue A: /stasis_a, mode 0640, mq_maxmsg 15 (above the default limit of 10),
 *            mq_msgsize 100, messages (5,"five-a") (1,"one") (5,"five-b") (9,"nine")
 *            (0,""); open O_RDWR at fd 10 and O_RDONLY|O_NONBLOCK at fd 11;
 *   queue B: /stasis_b, mode 0604, owner 1000:100, mq_maxmsg 3, mq_msgsize 8, empty,
 *            open O_WRONLY|O_NONBLOCK at fd 12 (by the child, forked after);
 *   queue C: /stasis_c, not open by anyone, one message (3, 100 bytes).
 *
 * With "host", the victim stays in the restorer's (the host's) namespace: its queue
 * /stasis_h_PID (two messages) survives the dump and is not saved; the fds on it (O_RDWR
 * at fd 10, O_WRONLY|O_NONBLOCK at fd 12) are reopened by name, and the queue is removed at
 * the end.
 *
 * With "foreign", the victim first opens a queue of the host's namespace (/stasis_f_PID,
 * at fd 14) and keeps it across its unshare: stasis refuses the dump, naming the fd
 * (tests/sysv_ipc.rs); the queue is removed at the end.
 *
 * With "notify", A has an mq_notify registration (SIGUSR2): stasis refuses the dump,
 * naming the queue (tests/sysv_ipc.rs), and the queue keeps its messages.
 *
 * On go: the sysctls, each queue's attributes, mode and owner, the fds' access modes and
 * O_NONBLOCK, and the messages received in priority order with their priorities.
 */
#include "victim.h"

#include <mqueue.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>

static void check_queue(const char *name, int fd, int accmode, int nonblock, mode_t mode,
			uid_t uid, gid_t gid, long maxmsg, long msgsize, long curmsgs);
static mqd_t make(const char *name, int flags, mode_t mode, long maxmsg, long msgsize);

static int notify, host, foreign;
static char foreign_name[64];
static char host_name[64];

static void host_setup(void)
{
	snprintf(host_name, sizeof(host_name), "/stasis_h_%d", getpid());
	mqd_t q = make(host_name, O_RDWR, 0600, 4, 32);
	CHECK_SYS(mq_send(q, "low", 3, 1));
	CHECK_SYS(mq_send(q, "high", 4, 7));
	victim_place(q, 10);
	victim_place(mq_open(host_name, O_WRONLY | O_NONBLOCK), 12);
}

static void host_verify(void)
{
	char buf[32];
	unsigned prio;
	struct stat st;
	CHECK_SYS(fstat(10, &st));
	check_queue(host_name, 10, O_RDWR, 0, st.st_mode & 07777, st.st_uid, st.st_gid, 4, 32, 2);
	check_queue(host_name, 12, O_WRONLY, 1, st.st_mode & 07777, st.st_uid, st.st_gid, 4, 32, 2);
	CHECK(mq_receive(10, buf, sizeof(buf), &prio) == 4 && prio == 7, "first message");
	CHECK(mq_receive(10, buf, sizeof(buf), &prio) == 3 && prio == 1, "second message");
	CHECK_SYS(mq_unlink(host_name));
}

static void set_sysctl(const char *path, const char *value)
{
	int fd = open(path, O_WRONLY);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	CHECK(write(fd, value, strlen(value)) == (ssize_t)strlen(value), "write %s: %s", path, strerror(errno));
	close(fd);
}

static void check_sysctl(const char *path, const char *want)
{
	char buf[64] = "";
	int fd = open(path, O_RDONLY);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	CHECK(read(fd, buf, sizeof(buf) - 1) > 0, "read %s: %s", path, strerror(errno));
	close(fd);
	buf[strcspn(buf, "\n")] = 0;
	CHECK(strcmp(buf, want) == 0, "%s is %s, not %s", path, buf, want);
}

static mqd_t make(const char *name, int flags, mode_t mode, long maxmsg, long msgsize)
{
	struct mq_attr a = { .mq_maxmsg = maxmsg, .mq_msgsize = msgsize };
	mqd_t q = mq_open(name, flags | O_CREAT | O_EXCL, mode, &a);
	CHECK(q != (mqd_t)-1, "mq_open %s: %s", name, strerror(errno));
	return q;
}

static void setup(void)
{
	if (foreign) {
		snprintf(foreign_name, sizeof(foreign_name), "/stasis_f_%d", getpid());
		victim_place(make(foreign_name, O_RDWR, 0600, 2, 8), 14);
		victim_place(open("/proc/self/ns/ipc", O_RDONLY), 15);
	}
	if (unshare(CLONE_NEWIPC) != 0)
		victim_skip("unshare(CLONE_NEWIPC) needs CAP_SYS_ADMIN");
	set_sysctl("/proc/sys/fs/mqueue/msg_max", "20");
	set_sysctl("/proc/sys/fs/mqueue/msgsize_default", "512");
	set_sysctl("/proc/sys/kernel/msgmnb", "20000");
	set_sysctl("/proc/sys/kernel/shm_next_id", "77");
	umask(022);
	mqd_t a = make("/stasis_a", O_RDWR, 0640, 15, 100);
	const char *text[] = { "five-a", "one", "five-b", "nine", "" };
	unsigned prio[] = { 5, 1, 5, 9, 0 };
	for (int i = 0; i < 5; i++)
		CHECK_SYS(mq_send(a, text[i], strlen(text[i]), prio[i]));
	victim_place(a, 10);
	victim_place(mq_open("/stasis_a", O_RDONLY | O_NONBLOCK), 11);
	mqd_t b = make("/stasis_b", O_RDWR, 0604, 3, 8);
	CHECK_SYS(fchmod(b, 0604));
	CHECK_SYS(fchown(b, 1000, 100));
	CHECK_SYS(mq_close(b));
	mqd_t c = make("/stasis_c", O_WRONLY, 0600, 2, 200);
	char big[100];
	memset(big, 'c', sizeof(big));
	CHECK_SYS(mq_send(c, big, sizeof(big), 3));
	CHECK_SYS(mq_close(c));
	if (notify) {
		struct sigevent ev = { .sigev_notify = SIGEV_SIGNAL, .sigev_signo = SIGUSR2 };
		/* Registered once placed: a close by the owner drops the registration. */
		victim_place(make("/stasis_empty", O_RDONLY, 0600, 2, 8), 13);
		CHECK_SYS(mq_notify(13, &ev));
	}
}

static void check_queue(const char *name, int fd, int accmode, int nonblock, mode_t mode,
			uid_t uid, gid_t gid, long maxmsg, long msgsize, long curmsgs)
{
	struct mq_attr a;
	struct stat st;
	CHECK(mq_getattr(fd, &a) == 0, "mq_getattr %s (fd %d): %s", name, fd, strerror(errno));
	CHECK(a.mq_maxmsg == maxmsg && a.mq_msgsize == msgsize && a.mq_curmsgs == curmsgs,
	      "%s: maxmsg %ld msgsize %ld curmsgs %ld, want %ld %ld %ld", name, a.mq_maxmsg,
	      a.mq_msgsize, a.mq_curmsgs, maxmsg, msgsize, curmsgs);
	CHECK(!!(a.mq_flags & O_NONBLOCK) == nonblock, "%s fd %d: O_NONBLOCK %ld", name, fd,
	      a.mq_flags & O_NONBLOCK);
	int fl = fcntl(fd, F_GETFL);
	CHECK((fl & O_ACCMODE) == accmode, "%s fd %d: access mode %d, want %d", name, fd,
	      fl & O_ACCMODE, accmode);
	CHECK_SYS(fstat(fd, &st));
	CHECK((st.st_mode & 07777) == mode && st.st_uid == uid && st.st_gid == gid,
	      "%s: mode %o owner %d:%d, want %o %d:%d", name, st.st_mode & 07777, st.st_uid,
	      st.st_gid, mode, uid, gid);
}

static void verify(void)
{
	if (foreign) {
		/* The dump was refused: back to the host's namespace to remove the queue. */
		CHECK_SYS(setns(15, CLONE_NEWIPC));
		CHECK_SYS(mq_unlink(foreign_name));
		return;
	}
	check_sysctl("/proc/sys/fs/mqueue/msg_max", "20");
	check_sysctl("/proc/sys/fs/mqueue/msgsize_default", "512");
	check_sysctl("/proc/sys/kernel/msgmnb", "20000");
	check_sysctl("/proc/sys/kernel/shm_next_id", "77");
	pid_t pid = fork();
	CHECK_SYS(pid);
	if (pid == 0) {
		int b = mq_open("/stasis_b", O_WRONLY | O_NONBLOCK);
		CHECK(b >= 0, "child: mq_open /stasis_b: %s", strerror(errno));
		check_queue("/stasis_b", b, O_WRONLY, 1, 0604, 1000, 100, 3, 8, 0);
		exit(0);
	}
	int st;
	CHECK_SYS(waitpid(pid, &st, 0));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed");
	check_queue("/stasis_a", 10, O_RDWR, 0, 0640, 0, 0, 15, 100, 5);
	check_queue("/stasis_a", 11, O_RDONLY, 1, 0640, 0, 0, 15, 100, 5);
	const char *want[] = { "nine", "five-a", "five-b", "one", "" };
	unsigned wprio[] = { 9, 5, 5, 1, 0 };
	for (int i = 0; i < 5; i++) {
		char buf[100];
		unsigned prio;
		ssize_t n = mq_receive(11, buf, sizeof(buf), &prio);
		CHECK(n >= 0, "message %d of /stasis_a: %s", i, strerror(errno));
		CHECK(n == (ssize_t)strlen(want[i]) && memcmp(buf, want[i], n) == 0 && prio == wprio[i],
		      "message %d of /stasis_a: %.*s prio %u, want %s prio %u", i, (int)n, buf,
		      prio, want[i], wprio[i]);
	}
	CHECK(mq_receive(11, (char[100]){ 0 }, 100, NULL) == -1 && errno == EAGAIN,
	      "/stasis_a has more messages");
	mqd_t c = mq_open("/stasis_c", O_RDONLY | O_NONBLOCK);
	CHECK(c != (mqd_t)-1, "mq_open /stasis_c: %s", strerror(errno));
	check_queue("/stasis_c", c, O_RDONLY, 1, 0600, 0, 0, 2, 200, 1);
	char big[200];
	unsigned prio;
	CHECK(mq_receive(c, big, sizeof(big), &prio) == 100 && prio == 3 && big[99] == 'c',
	      "the message of /stasis_c");
}

int main(int argc, char **argv)
{
	notify = argc > 1 && strcmp(argv[1], "notify") == 0;
	host = argc > 1 && strcmp(argv[1], "host") == 0;
	foreign = argc > 1 && strcmp(argv[1], "foreign") == 0;
	if (host)
		return victim_run(host_setup, host_verify);
	return victim_run(setup, verify);
}
