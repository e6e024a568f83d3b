/*
 * Process trees: parent/child relations, sessions, process groups, zombies, a stopped
 * child, shared anonymous memory, an open file description inherited across fork, and
 * an fd table and fs context shared with CLONE_FILES | CLONE_FS.
 *
 *   root (session and group leader)
 *   |-- A: root's group; writes a shared page only it touches; reads the shared file
 *   |   |-- A1 and, with "tree N", more leaves until the tree has N processes
 *   |-- B: setsid()
 *   |   |-- B1: leads a group in B's session
 *   |   `-- B2: joins B1's group
 *   |-- C: clone(CLONE_FILES | CLONE_FS): sees fds the root opens, and its umask
 *   |-- S: stopped with SIGSTOP; must still be stopped after restore
 *   |-- Z: exited with status 7, not reaped (a zombie)
 *   |-- Z2: killed by SIGTERM, not reaped
 *   `-- Z3: killed by SIGKILL (whose action cannot be set), not reaped
 *
 * On go, every process checks its ids and parent, forwards go to its children, reaps
 * them and exits 0 only if all passed; the root prints PASS last.
 */
#include "victim.h"
#include "family.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define SHM_PAGES 8

static char *shm;
static long pg;
static int datafd;
static pid_t root_pid;


static void check_ids(const char *who, pid_t ppid, pid_t sid, pid_t pgid)
{
	CHECK(getppid() == ppid, "%s %d: parent %d, expected %d", who, getpid(), getppid(), ppid);
	CHECK(getsid(0) == sid, "%s %d: session %d, expected %d", who, getpid(), getsid(0), sid);
	CHECK(getpgid(0) == pgid, "%s %d: group %d, expected %d", who, getpid(), getpgid(0), pgid);
}

/* ---- leaves under A ---- */
static pid_t a_pid;

static void leaf(void)
{
	victim_wait_go();
	check_ids("leaf", a_pid, root_pid, root_pid);
	exit(0);
}

/* ---- A ---- */
static int extra_leaves;

static void a_body(void)
{
	struct family f = { .n = 0 };
	char buf[5];

	a_pid = getpid();
	for (int i = 0; i < 1 + extra_leaves; i++)
		family_spawn(&f, leaf);
	shm[pg] = 'A'; /* the root waits for this: READY means every leaf exists */
	victim_wait_go();
	check_ids("A", root_pid, root_pid, root_pid);
	CHECK(shm[0] == 'R', "A: shared page 0 holds %#x, not the root's 'R'", shm[0]);
	CHECK(shm[pg] == 'A', "A: shared page 1 holds %#x, not its own 'A'", shm[pg]);
	CHECK(shm[2 * pg] == 'r', "A: the root's write after restore is not visible (%#x)",
	      shm[2 * pg]);
	shm[3 * pg] = 'a';
	CHECK(lseek(datafd, 0, SEEK_CUR) == 10, "A: inherited offset is %ld, not 10",
	      (long)lseek(datafd, 0, SEEK_CUR));
	CHECK(read(datafd, buf, 5) == 5, "A: read the inherited file: %s", strerror(errno));
	CHECK(memcmp(buf, "klmno", 5) == 0, "A: read %.5s at offset 10", buf);
	family_go(&f, "A");
	exit(0);
}

/* ---- B, B1, B2 ---- */
static pid_t b_pid, b1_pid;

static void b1_body(void)
{
	victim_wait_go();
	check_ids("B1", b_pid, b_pid, getpid());
	exit(0);
}

static void b2_body(void)
{
	victim_wait_go();
	check_ids("B2", b_pid, b_pid, b1_pid);
	exit(0);
}

static void b_body(void)
{
	struct family f = { .n = 0 };

	CHECK_SYS(setsid());
	b_pid = getpid();
	b1_pid = family_spawn(&f, b1_body);
	CHECK_SYS(setpgid(b1_pid, b1_pid));
	pid_t b2 = family_spawn(&f, b2_body);
	CHECK_SYS(setpgid(b2, b1_pid));
	victim_wait_go();
	check_ids("B", root_pid, b_pid, b_pid);
	family_go(&f, "B");
	exit(0);
}

/* ---- C: shares the root's fd table and fs context ---- */
static void c_body(void)
{
	int fd;
	mode_t m;

	victim_wait_go();
	check_ids("C", root_pid, root_pid, root_pid);
	memcpy(&fd, shm + 4 * pg, sizeof(fd));
	CHECK(fcntl(fd, F_GETFD) != -1, "C: fd %d the root opened after restore is not shared",
	      fd);
	m = umask(022);
	CHECK(m == 027, "C: umask %#o, not the root's 027 (fs context not shared)", m);
	exit(0);
}

/* ---- S: stopped ---- */
static void s_body(void)
{
	victim_wait_go();
	check_ids("S", root_pid, root_pid, root_pid);
	exit(0);
}

static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "r");
	CHECK(f != NULL, "open %s: %s", path, strerror(errno));
	CHECK(fgets(buf, sizeof(buf), f) != NULL, "read %s", path);
	fclose(f);
	p = strrchr(buf, ')');
	CHECK(p != NULL && p[1] == ' ', "parse %s", path);
	return p[2];
}

static pid_t spawn_shared(struct family *f)
{
	pid_t p;

	fflush(stdout);
	p = syscall(SYS_clone, CLONE_FILES | CLONE_FS | SIGCHLD, 0, 0, 0, 0);
	CHECK_SYS(p);
	if (p == 0) {
		c_body();
		exit(0);
	}
	f->kids[f->n++] = p;
	return p;
}

/* A child that ends at once with `status` (exit code, or killed by a signal). */
static pid_t zombie(int code, int sig)
{
	siginfo_t si;
	pid_t p;

	fflush(stdout);
	p = fork();
	CHECK_SYS(p);
	if (p == 0) {
		if (sig) {
			signal(sig, SIG_DFL);
			raise(sig);
		}
		_exit(code);
	}
	CHECK_SYS(waitid(P_PID, p, &si, WEXITED | WNOWAIT));
	return p;
}

static void check_zombie(pid_t z, int code, int sig)
{
	int st;
	pid_t r = waitpid(z, &st, WNOHANG);

	CHECK(r == z, "zombie %d is not waitable: waitpid returned %d (%s)", z, r, strerror(errno));
	if (sig)
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == sig, "zombie %d: status %#x, expected killed by %d",
		      z, st, sig);
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == code,
		      "zombie %d: status %#x, expected exit %d", z, st, code);
}

int main(int argc, char **argv)
{
	struct family f = { .n = 0 };
	pid_t s, z, z2, z3;
	int nullfd, st;
	int total = argc > 1 ? atoi(argv[1]) : 10;

	victim_install_go();
	root_pid = getpid();
	/* root, A, A1, B, B1, B2, C, S, Z, Z2, Z3: 11 without extra leaves */
	extra_leaves = total > 11 ? total - 11 : 0;
	CHECK(extra_leaves + 1 < FAMILY_MAX_KIDS, "tree of %d is too big", total);
	pg = sysconf(_SC_PAGESIZE);
	shm = mmap(NULL, SHM_PAGES * pg, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	CHECK(shm != MAP_FAILED, "mmap shared: %s", strerror(errno));
	shm[0] = 'R';
	datafd = open("tree.data", O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK_SYS(datafd);
	CHECK(write(datafd, "abcdefghijklmnopqrst", 20) == 20, "write tree.data");
	CHECK(lseek(datafd, 10, SEEK_SET) == 10, "lseek tree.data");
	umask(022);

	family_spawn(&f, a_body);
	family_spawn(&f, b_body);
	spawn_shared(&f);
	s = family_spawn(&f, s_body);
	CHECK_SYS(kill(s, SIGSTOP));
	CHECK_SYS(waitpid(s, &st, WUNTRACED));
	CHECK(WIFSTOPPED(st), "S did not stop");
	z = zombie(7, 0);
	z2 = zombie(0, SIGTERM);
	z3 = zombie(0, SIGKILL);
	/* A writes its shared page before READY. */
	while (*(volatile char *)(shm + pg) != 'A')
		usleep(1000);

	victim_ready();
	victim_wait_go();

	check_zombie(z, 7, 0);
	check_zombie(z2, 0, SIGTERM);
	check_zombie(z3, 0, SIGKILL);
	CHECK(proc_state(s) == 'T', "S is in state %c, not stopped", proc_state(s));
	CHECK(getsid(0) == root_pid && getpgid(0) == root_pid, "root: session %d group %d",
	      getsid(0), getpgid(0));
	shm[2 * pg] = 'r';
	nullfd = open("/dev/null", O_RDONLY);
	CHECK_SYS(nullfd);
	memcpy(shm + 4 * pg, &nullfd, sizeof(nullfd));
	umask(027);
	CHECK_SYS(kill(s, SIGCONT));
	family_go(&f, "root");
	CHECK(shm[3 * pg] == 'a', "root: A's write after restore is not visible (%#x)", shm[3 * pg]);
	CHECK(lseek(datafd, 0, SEEK_CUR) == 15, "root: file offset is %ld after A read 5 bytes",
	      (long)lseek(datafd, 0, SEEK_CUR));
	victim_pass();
}
