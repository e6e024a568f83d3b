/*
 * creds: an unprivileged process with a reduced capability set (needs root to set up).
 *
 * Before READY, as root: CAP_SYS_MODULE, CAP_SYS_RAWIO and CAP_MKNOD dropped from the
 * bounding set; securebits KEEP_CAPS | NO_SETUID_FIXUP | NOROOT | NOROOT_LOCKED; groups
 * {65534, 100}; gids and uids 65534; then effective {NET_BIND_SERVICE}, permitted
 * {NET_BIND_SERVICE, KILL, NET_RAW}, inheritable {NET_BIND_SERVICE, NET_RAW}, ambient
 * {NET_BIND_SERVICE}. The Uid/Gid/Groups/Cap* lines of /proc/self/status and the
 * securebits are recorded.
 * After go: all identical, read from the kernel inside the restored task.
 *
 * With "threads": also no_new_privs, then two threads (created after the setup, so they
 * inherit it all) record their own /proc/thread-self/status lines and securebits; after go
 * each checks its own again, since Linux keeps credentials per thread.
 *
 * With "per_thread": the process stays root; its two threads change their own
 * credentials with raw syscalls (libc would apply them to every thread): the first
 * setgroups {100}, gids 100 and uids 1000 (no capability left), the second an effective
 * uid of 2000 (no effective capability); each records and checks its own as above, and
 * the leader checks that it is still root with its capabilities.
 */
#include "victim.h"

#include <grp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static char before[4096];
static int bits_before;

#define NTHREADS 2

struct worker {
	pthread_t th;
	void (*change)(void); /* per_thread: this thread's own credential change */
	char before[4096];
	int bits;
	atomic_int state; /* 0 starting, 1 recorded, 2 asked to check, 3 passed, 4 failed */
	char why[8448];
};

static struct worker workers[NTHREADS];

static void status_lines_of(const char *path, char *out, size_t cap);

static void status_lines(char *out, size_t cap)
{
	status_lines_of("/proc/self/status", out, cap);
}

static void status_lines_of(const char *path, char *out, size_t cap)
{
	static const char *keys[] = { "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
				      "CapAmb:", "NoNewPrivs:" };
	char line[512];
	FILE *f = fopen(path, "r");

	CHECK(f != NULL, "open %s: %s", path, strerror(errno));
	out[0] = 0;
	while (fgets(line, sizeof(line), f))
		for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
			if (!strncmp(line, keys[i], strlen(keys[i])) && strlen(out) + strlen(line) < cap)
				strcat(out, line);
	fclose(f);
}

static void set_caps(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	unsigned eff = 1u << CAP_NET_BIND_SERVICE;
	unsigned prm = eff | 1u << CAP_KILL | 1u << CAP_NET_RAW;
	unsigned inh = eff | 1u << CAP_NET_RAW;

	memset(d, 0, sizeof(d));
	d[0].effective = eff;
	d[0].permitted = prm;
	d[0].inheritable = inh;
	CHECK_SYS(syscall(SYS_capset, &h, d));
	CHECK_SYS(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0));
}

static void setup(void)
{
	gid_t groups[] = { 65534, 100 };
	int bits = SECBIT_KEEP_CAPS | SECBIT_NO_SETUID_FIXUP | SECBIT_NOROOT | SECBIT_NOROOT_LOCKED;

	if (geteuid() != 0)
		victim_skip("needs root to change its credentials");
	CHECK_SYS(prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE, 0, 0, 0));
	CHECK_SYS(prctl(PR_CAPBSET_DROP, CAP_SYS_RAWIO, 0, 0, 0));
	CHECK_SYS(prctl(PR_CAPBSET_DROP, CAP_MKNOD, 0, 0, 0));
	CHECK_SYS(prctl(PR_SET_SECUREBITS, bits));
	CHECK_SYS(setgroups(2, groups));
	CHECK_SYS(setresgid(65534, 65534, 65534));
	CHECK_SYS(setresuid(65534, 65534, 65534));
	set_caps();
	bits_before = prctl(PR_GET_SECUREBITS);
	CHECK(bits_before == bits, "securebits %#x after setup", bits_before);
	status_lines(before, sizeof(before));
}

static void verify(void)
{
	char now[4096];
	int bits = prctl(PR_GET_SECUREBITS);

	status_lines(now, sizeof(now));
	CHECK(strcmp(now, before) == 0, "credentials were:\n%sare:\n%s", before, now);
	CHECK(bits == bits_before, "securebits %#x, were %#x", bits, bits_before);
	CHECK(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, CAP_NET_BIND_SERVICE, 0, 0) == 1,
	      "CAP_NET_BIND_SERVICE is not ambient");
	CHECK(getuid() == 65534 && geteuid() == 65534, "uid %d euid %d", getuid(), geteuid());
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	char now[4096];
	int bits;

	if (w->change)
		w->change();
	status_lines_of("/proc/thread-self/status", w->before, sizeof(w->before));
	w->bits = prctl(PR_GET_SECUREBITS);
	atomic_store(&w->state, 1);
	while (atomic_load(&w->state) != 2)
		usleep(1000);
	status_lines_of("/proc/thread-self/status", now, sizeof(now));
	bits = prctl(PR_GET_SECUREBITS);
	if (strcmp(now, w->before) != 0 || bits != w->bits) {
		snprintf(w->why, sizeof(w->why), "securebits %#x, were %#x; credentials were:\n%sare:\n%s", bits,
			 w->bits, w->before, now);
		atomic_store(&w->state, 4);
	} else {
		atomic_store(&w->state, 3);
	}
	return NULL;
}

/* Raw syscalls: they change the calling thread only. */
static void become_user(void)
{
	gid_t groups[] = { 100 };

	CHECK_SYS(syscall(SYS_setgroups, 1, groups));
	CHECK_SYS(syscall(SYS_setresgid, 100, 100, 100));
	CHECK_SYS(syscall(SYS_setresuid, 1000, 1000, 1000));
}

static void set_euid(void)
{
	CHECK_SYS(syscall(SYS_setresuid, -1, 2000, -1));
}

static void start_workers(int per_thread)
{
	if (per_thread) {
		if (geteuid() != 0)
			victim_skip("needs root to change its credentials");
		workers[0].change = become_user;
		workers[1].change = set_euid;
	} else {
		CHECK_SYS(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0));
	}
	status_lines(before, sizeof(before));
	for (int i = 0; i < NTHREADS; i++) {
		int e = pthread_create(&workers[i].th, NULL, worker_main, &workers[i]);

		CHECK(e == 0, "pthread_create: %s", strerror(e));
	}
	for (int i = 0; i < NTHREADS; i++)
		while (atomic_load(&workers[i].state) != 1)
			usleep(1000);
}

static void verify_workers(void)
{
	for (int i = 0; i < NTHREADS; i++)
		atomic_store(&workers[i].state, 2);
	for (int i = 0; i < NTHREADS; i++) {
		pthread_join(workers[i].th, NULL);
		CHECK(atomic_load(&workers[i].state) == 3, "thread %d: %s", i, workers[i].why);
	}
}

int main(int argc, char **argv)
{
	int per_thread = argc > 1 && !strcmp(argv[1], "per_thread");
	int threads = per_thread || (argc > 1 && !strcmp(argv[1], "threads"));

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	if (!per_thread)
		setup();
	if (threads)
		start_workers(per_thread);
	victim_ready();
	victim_wait_go();
	if (per_thread) {
		char now[4096];

		status_lines(now, sizeof(now));
		CHECK(strcmp(now, before) == 0, "leader's credentials were:\n%sare:\n%s", before, now);
	} else {
		verify();
	}
	if (threads)
		verify_workers();
	victim_pass();
}
