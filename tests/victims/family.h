/*
 * The children of one process of a victim tree: forking them, and letting them all check
 * themselves once go has come. Include after victim.h.
 */
#ifndef STASIS_FAMILY_H
#define STASIS_FAMILY_H

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define FAMILY_MAX_KIDS 64

struct family {
	pid_t kids[FAMILY_MAX_KIDS];
	int n;
};

/* Forks a child that runs body() and exits 0; returns its pid. */
static inline pid_t family_spawn(struct family *f, void (*body)(void))
{
	pid_t p;

	CHECK(f->n < FAMILY_MAX_KIDS, "more than %d children", FAMILY_MAX_KIDS);
	fflush(stdout);
	p = fork();
	CHECK_SYS(p);
	if (p == 0) {
		body();
		exit(0);
	}
	f->kids[f->n++] = p;
	return p;
}

/*
 * Forward go to every child and reap each; any failure fails this process. Go is
 * repeated until each child has exited (level-triggered, as from the harness): a child
 * between its flag check and pause() would miss a single signal.
 */
static inline void family_go(struct family *f, const char *who)
{
	int left = f->n;
	int done[FAMILY_MAX_KIDS] = { 0 };

	while (left > 0) {
		for (int i = 0; i < f->n; i++) {
			int st;
			pid_t r;

			if (done[i])
				continue;
			kill(f->kids[i], SIGUSR1);
			r = waitpid(f->kids[i], &st, WNOHANG);
			if (r == 0 || (r == -1 && errno == EINTR))
				continue;
			CHECK(r == f->kids[i], "%s: waitpid(%d): %s", who, f->kids[i], strerror(errno));
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "%s: child %d ended with status %#x", who, f->kids[i], st);
			done[i] = 1;
			left--;
		}
		usleep(10000);
	}
}

#endif
