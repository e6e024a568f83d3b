/*
 * pty: a pseudo-terminal pair created by the process.
 *
 * Before READY: fd 10 a master (posix_openpt, O_NONBLOCK), fd 11 its slave (O_RDWR,
 * O_NOCTTY), fd 12 the slave again O_RDONLY (its own open file); termios changed
 * (canonical mode kept, ECHO off, VINTR ^E, VERASE #, ONLCR off, speed 9600), window
 * 37x101; input "first line\npartial" written to the master and not read from the
 * slave; output "to the terminal" written to the slave and not read from the master.
 * After go: the kinds, flags and pairing of the fds (what goes into one comes out of the
 * other), the slave fds name the master's pts (the number may differ if taken: it is
 * read from the master again), termios and window size, the buffered input and output.
 */
#include "victim.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <termios.h>

static struct termios saved;

static void place(int fd, int at)
{
	CHECK_SYS(fd);
	if (fd != at) {
		CHECK_SYS(dup2(fd, at));
		close(fd);
	}
}

static void setup(void)
{
	struct termios t;
	struct winsize ws = { .ws_row = 37, .ws_col = 101 };

	place(posix_openpt(O_RDWR | O_NOCTTY), 10);
	CHECK_SYS(grantpt(10));
	CHECK_SYS(unlockpt(10));
	place(open(ptsname(10), O_RDWR | O_NOCTTY), 11);
	place(open(ptsname(10), O_RDONLY | O_NOCTTY), 12);
	CHECK_SYS(fcntl(10, F_SETFL, O_NONBLOCK));
	CHECK_SYS(tcgetattr(11, &t));
	t.c_lflag &= ~(ECHO | ECHOE | ECHOK);
	t.c_oflag &= ~ONLCR;
	t.c_cc[VINTR] = 5;
	t.c_cc[VERASE] = '#';
	cfsetispeed(&t, B9600);
	cfsetospeed(&t, B9600);
	CHECK_SYS(tcsetattr(11, TCSANOW, &t));
	CHECK_SYS(tcgetattr(11, &saved));
	CHECK_SYS(ioctl(10, TIOCSWINSZ, &ws));
	CHECK(write(10, "first line\npartial", 18) == 18, "write to master");
	CHECK(write(11, "to the terminal", 15) == 15, "write to slave");
	usleep(100000); /* let the line discipline take both */
}

static void expect_read(int fd, const char *want)
{
	char buf[64];
	struct pollfd p = { fd, POLLIN, 0 };
	ssize_t n;

	CHECK(poll(&p, 1, 2000) == 1, "fd %d: nothing to read (want %s)", fd, want);
	n = read(fd, buf, sizeof(buf));
	CHECK(n == (ssize_t)strlen(want) && !memcmp(buf, want, n), "fd %d: read %zd bytes \"%.*s\", want \"%s\"",
	      fd, n, (int)(n > 0 ? n : 0), buf, want);
}

static void verify(void)
{
	struct termios t;
	struct winsize ws;
	struct stat m, s11, s12;
	int n;
	char name[64];

	CHECK_SYS(fstat(10, &m));
	CHECK(S_ISCHR(m.st_mode), "fd 10 is not a character device");
	CHECK_SYS(ioctl(10, TIOCGPTN, &n));
	snprintf(name, sizeof(name), "/dev/pts/%d", n);
	CHECK_SYS(fstat(11, &s11));
	CHECK_SYS(fstat(12, &s12));
	CHECK(major(s11.st_rdev) >= 136 && major(s11.st_rdev) <= 143, "fd 11 is not a pts");
	CHECK((int)((major(s11.st_rdev) - 136) * 256 + minor(s11.st_rdev)) == n && s12.st_rdev == s11.st_rdev,
	      "fds 11/12 are not the slave of fd 10 (%s)", name);
	CHECK((fcntl(10, F_GETFL) & (O_ACCMODE | O_NONBLOCK)) == (O_RDWR | O_NONBLOCK), "fd 10: F_GETFL %#x", fcntl(10, F_GETFL));
	CHECK((fcntl(11, F_GETFL) & O_ACCMODE) == O_RDWR, "fd 11: F_GETFL %#x", fcntl(11, F_GETFL));
	CHECK((fcntl(12, F_GETFL) & O_ACCMODE) == O_RDONLY, "fd 12: F_GETFL %#x", fcntl(12, F_GETFL));
	CHECK_SYS(tcgetattr(11, &t));
	CHECK(t.c_lflag == saved.c_lflag && t.c_oflag == saved.c_oflag && t.c_iflag == saved.c_iflag &&
	      t.c_cflag == saved.c_cflag, "termios flags changed");
	CHECK(!memcmp(t.c_cc, saved.c_cc, sizeof(t.c_cc)), "control characters changed");
	CHECK(cfgetospeed(&t) == B9600, "speed changed");
	CHECK_SYS(ioctl(11, TIOCGWINSZ, &ws));
	CHECK(ws.ws_row == 37 && ws.ws_col == 101, "window %dx%d", ws.ws_row, ws.ws_col);
	/* canonical mode: the complete line first; the partial one once ended */
	expect_read(11, "first line\n");
	CHECK(write(10, " done\n", 6) == 6, "write to master");
	expect_read(12, "partial done\n");
	expect_read(10, "to the terminal");
	CHECK(write(11, "back", 4) == 4, "write to slave");
	expect_read(10, "back");
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	return victim_run(setup, verify);
}
