/*
 * leases: file leases (F_SETLEASE), dumped with --file-locks.
 *
 * Before READY (in a fresh directory under the start cwd), each on a file of its own,
 * with F_SETSIG SIGRTMIN+1 (a handler counts the break signals):
 *   fd 10: a read lease (O_RDONLY);
 *   fd 11: a write lease (O_WRONLY);
 *   fd 12: a write lease being broken to a read lease (someone opened the file O_RDONLY);
 *   fd 13: a read lease being broken to nothing (someone opened the file O_WRONLY).
 * After go: F_GETLEASE gives 10 F_RDLCK, 11 F_WRLCK, 12 F_RDLCK and 13 F_UNLCK (the type
 * a lease is broken to); no break signal came again; the breaks are still under way (a
 * conflicting open fails with EWOULDBLOCK); the owner of 12 is the process.
 */
#include "victim.h"

static char dir[] = "leases-XXXXXX";
static volatile sig_atomic_t breaks;

static void on_break(int sig)
{
	(void)sig;
	breaks++;
}

static void leased(const char *name, int mode, int lease, int at)
{
	victim_place(open(name, mode | O_CREAT, 0600), at);
	CHECK_SYS(fcntl(at, F_SETSIG, SIGRTMIN + 1));
	CHECK_SYS(fcntl(at, F_SETLEASE, lease));
}

static void broken(const char *name, int mode)
{
	int fd = open(name, mode | O_NONBLOCK);

	CHECK(fd == -1 && errno == EWOULDBLOCK, "open %s did not start a break: %d %s", name,
	      fd, strerror(errno));
}

static void setup(void)
{
	struct sigaction sa = {.sa_handler = on_break, .sa_flags = SA_RESTART};

	CHECK_SYS(sigaction(SIGRTMIN + 1, &sa, NULL));
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	leased("read", O_RDONLY, F_RDLCK, 10);
	leased("write", O_WRONLY, F_WRLCK, 11);
	leased("downgrade", O_WRONLY, F_WRLCK, 12);
	leased("unlock", O_RDONLY, F_RDLCK, 13);
	broken("downgrade", O_RDONLY);
	broken("unlock", O_WRONLY);
	for (int i = 0; i < 1000 && breaks < 2; i++)
		usleep(1000);
	CHECK(breaks == 2, "%d break signals, expected 2", (int)breaks);
}

static void check_lease(int fd, int want)
{
	int got = fcntl(fd, F_GETLEASE);

	CHECK(got == want, "fd %d: F_GETLEASE %d, expected %d", fd, got, want);
}

static void verify(void)
{
	check_lease(10, F_RDLCK);
	check_lease(11, F_WRLCK);
	check_lease(12, F_RDLCK);
	check_lease(13, F_UNLCK);
	usleep(100000);
	CHECK(breaks == 2, "%d break signals after restore, expected 2", (int)breaks);
	broken("unlock", O_WRONLY);
	CHECK(fcntl(12, F_GETOWN) == getpid(), "fd 12 owned by %d", fcntl(12, F_GETOWN));
	CHECK(fcntl(12, F_GETSIG) == SIGRTMIN + 1, "fd 12 signal %d", fcntl(12, F_GETSIG));
}

int main(void)
{
	return victim_run(setup, verify);
}
