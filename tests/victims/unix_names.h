/*
 * Unix sockets by path name, for the victims that bind and connect many of them
 * (include after victim.h).
 */
#ifndef STASIS_UNIX_NAMES_H
#define STASIS_UNIX_NAMES_H

#include <sys/socket.h>
#include <sys/un.h>

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
