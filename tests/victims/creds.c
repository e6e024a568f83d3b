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
 */
#include "victim.h"

#include <grp.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

static char before[4096];
static int bits_before;

static void status_lines(char *out, size_t cap)
{
	static const char *keys[] = { "Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
				      "CapAmb:", "NoNewPrivs:" };
	char line[512];
	FILE *f = fopen("/proc/self/status", "r");

	CHECK(f != NULL, "open /proc/self/status: %s", strerror(errno));
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

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	setup();
	victim_ready();
	victim_wait_go();
	verify();
	victim_pass();
}
