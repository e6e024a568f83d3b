/*
 * Unix sockets by path name, for the victims that bind and connect many of them, and by
 * abstract name, for those that look at which network namespace sees a name
 * (include after victim.h).
 */
#ifndef STASIS_UNIX_NAMES_H
#define STASIS_UNIX_NAMES_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

/* `*a` set to the abstract name `n`; returns the address's length. */
static inline socklen_t un_abstract(struct sockaddr_un *a, const char *n)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	strcpy(a->sun_path + 1, n);
	return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(n);
}

/* Whether a datagram socket of this network namespace can connect to the abstract
 * name `n`. */
static inline int un_reachable(const char *n)
{
	struct sockaddr_un a;
	socklen_t l = un_abstract(&a, n);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0), ok;

	CHECK_SYS(s);
	ok = connect(s, (struct sockaddr *)&a, l) == 0;
	close(s);
	return ok;
}

/* `struct sockaddr_un` of path `name`. */
static inline struct sockaddr_un un_addr(const char *name)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", name);
	return a;
}

/* A new unix socket of `type`, bound (`connect_it` 0) or connected (1) to `name`. */
static inline int un_socket(int type, const char *name, int connect_it)
{
	struct sockaddr_un a = un_addr(name);
	int fd = socket(AF_UNIX, type, 0);

	CHECK_SYS(fd);
	if (connect_it)
		CHECK_SYS(connect(fd, (struct sockaddr *)&a, sizeof(a)));
	else
		CHECK_SYS(bind(fd, (struct sockaddr *)&a, sizeof(a)));
	return fd;
}

static inline int bound(int type, const char *name)
{
	return un_socket(type, name, 0);
}

static inline int connected(int type, const char *name)
{
	return un_socket(type, name, 1);
}

#endif
