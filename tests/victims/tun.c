/*
 * tun: a tree in a network namespace of its own (unshared here) with tun and tap devices
 * and /dev/net/tun files.
 *
 * Before READY: fd 10 open on /dev/net/tun, attached to nothing; fd 11 attached to tun
 * stun0 (IFF_NO_PI, index 30, 10.69.0.1 peer 10.69.0.2, MTU 1400, up); fds 12 and 13
 * attached to the multi-queue tun smq0 (IFF_VNET_HDR, vnet header size 12, owner 4242),
 * fd 13's queue detached before smq0's send buffer was set to 65536 (so it kept its own); the persistent tap stap0 (owner 4242,
 * group 4343, address 02:11:22:33:44:56, 10.70.0.1/24, down) that no file holds; fd 14
 * attached to tap stap1 (with packet information). A datagram socket bound to
 * 10.69.0.1:7799 (fd 15).
 * After go: `ip -d -o link` (see LINKS) and `ip -o addr` print the same as before; TUNGETIFF on each
 * fd gives its device and flags (fd 13 detached, fd 12 not), fd 10 is attached to nothing
 * and can still make a device; smq0's vnet header size and send buffers are as set (fd
 * 13's queue's its own), stap1
 * has its address; every link's features (ETHTOOL_GFEATURES, asked for and in effect) are
 * as before: smq0's offloads taken by its reader (TUNSETOFFLOAD: checksum, TSO4, TSO6),
 * stap1's generic receive offload and lo's TCP segmentation turned off (ETHTOOL_SGRO,
 * ETHTOOL_STSO, as `ethtool -K` does); a packet written to fd 11 reaches the socket, a datagram sent to
 * 10.69.0.2 is read from fd 11; fd 13 attaches its queue again.
 * With "host": only fd 11, attached to tun sthPID of the namespace the victim started in.
 * With "up": a network namespace of its own whose persistent tap stapup no file holds is
 * up; after go, a second later, its links and addresses are as before (no carrier, no
 * IPv6 link-local address: nobody attached to it meanwhile).
 */
#include "victim.h"

#include <arpa/inet.h>
#include <linux/ethtool.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define PORT 7799

static char links[16384], addrs[4096], features[1024];
static unsigned char hwaddr[6];
/* The send buffer of fd 13's queue, detached before smq0's was set. */
static int detached_sndbuf;

/* A device's operational state is the kernel's "unknown" until its carrier first changes,
 * then "up" while it has carrier: a restored device loses its carrier once (between the
 * file that made it and the first file of the tree), so "unknown" of a device with
 * carrier reads as "up" (stasis cannot set it back; CRIU's restore does the same). */
#define LINKS "ip -d -o link show | sed -E '/LOWER_UP/s/ state UNKNOWN / state UP /'"
#define ADDRS "ip -o addr show | awk '{print $2, $3, $4, $5, $6}' | sort"

static int open_tun(void)
{
	int fd = open("/dev/net/tun", O_RDWR);

	if (fd < 0)
		victim_skip("no /dev/net/tun");
	return fd;
}

static void attach(int fd, const char *name, int flags)
{
	struct ifreq ifr = { .ifr_flags = flags };

	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	CHECK(ioctl(fd, TUNSETIFF, &ifr) == 0, "TUNSETIFF %s: %s", name, strerror(errno));
}

static void hw(int fd, unsigned char *out)
{
	struct ifreq ifr = { 0 };

	CHECK(ioctl(fd, SIOCGIFHWADDR, &ifr) == 0, "SIOCGIFHWADDR: %s", strerror(errno));
	memcpy(out, ifr.ifr_hwaddr.sa_data, 6);
}

static void ethtool(const char *dev, void *data)
{
	struct ifreq ifr = { .ifr_data = data };
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);

	strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
	CHECK(ioctl(s, SIOCETHTOOL, &ifr) == 0, "SIOCETHTOOL %#x on %s: %s", *(__u32 *)data,
	      dev, strerror(errno));
	close(s);
}

static void set_feature(const char *dev, __u32 cmd, __u32 on)
{
	struct ethtool_value v = { .cmd = cmd, .data = on };

	ethtool(dev, &v);
}

/* Each link's features asked for and in effect, as words of bits. */
static void capture_features(char *out, size_t len)
{
	static const char *devs[] = { "lo", "stun0", "smq0", "stap0", "stap1" };
	size_t at = 0;

	for (size_t i = 0; i < sizeof(devs) / sizeof(*devs); i++) {
		struct {
			struct ethtool_gfeatures g;
			struct ethtool_get_features_block b[4];
		} f = { .g = { .cmd = ETHTOOL_GFEATURES, .size = 4 } };

		ethtool(devs[i], &f);
		at += snprintf(out + at, len - at, "%s active", devs[i]);
		for (int w = 3; w >= 0; w--)
			at += snprintf(out + at, len - at, " %08x", f.b[w].active);
		at += snprintf(out + at, len - at, " requested");
		for (int w = 3; w >= 0; w--)
			at += snprintf(out + at, len - at, " %08x", f.b[w].requested);
		at += snprintf(out + at, len - at, "\n");
	}
}

static void setup(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(PORT) };
	int idx = 30, hdr = 12, sndbuf = 65536, fd;
	struct ifreq q = { .ifr_flags = IFF_DETACH_QUEUE };

	if (unshare(CLONE_NEWNET))
		victim_skip("unshare(CLONE_NEWNET) is not permitted here");
	if (system("command -v ip >/dev/null"))
		victim_skip("needs ip (iproute2)");
	victim_place(open_tun(), 10);
	victim_place(open_tun(), 11);
	CHECK_SYS(ioctl(11, TUNSETIFINDEX, &idx));
	attach(11, "stun0", IFF_TUN | IFF_NO_PI);
	victim_place(open_tun(), 12);
	attach(12, "smq0", IFF_TUN | IFF_MULTI_QUEUE | IFF_VNET_HDR);
	CHECK_SYS(ioctl(12, TUNSETOWNER, 4242));
	CHECK_SYS(ioctl(12, TUNSETVNETHDRSZ, &hdr));
	victim_place(open_tun(), 13);
	attach(13, "smq0", IFF_TUN | IFF_MULTI_QUEUE | IFF_VNET_HDR);
	CHECK_SYS(ioctl(13, TUNSETQUEUE, &q));
	CHECK_SYS(ioctl(12, TUNSETSNDBUF, &sndbuf));
	CHECK_SYS(ioctl(13, TUNGETSNDBUF, &detached_sndbuf));
	fd = open_tun();
	attach(fd, "stap0", IFF_TAP | IFF_NO_PI);
	CHECK_SYS(ioctl(fd, TUNSETOWNER, 4242));
	CHECK_SYS(ioctl(fd, TUNSETGROUP, 4343));
	CHECK_SYS(ioctl(fd, TUNSETPERSIST, 1));
	close(fd);
	victim_place(open_tun(), 14);
	attach(14, "stap1", IFF_TAP);
	hw(14, hwaddr);
	victim_sh("ip link set lo up && ip link set stun0 mtu 1400"
	   " && ip addr add 10.69.0.1 peer 10.69.0.2 dev stun0 && ip link set stun0 up"
	   " && ip link set stap0 address 02:11:22:33:44:56"
	   " && ip addr add 10.70.0.1/24 dev stap0");
	CHECK_SYS(ioctl(12, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6));
	set_feature("stap1", ETHTOOL_SGRO, 0);
	set_feature("lo", ETHTOOL_STSO, 0);
	capture_features(features, sizeof(features));
	inet_pton(AF_INET, "10.69.0.1", &a.sin_addr);
	victim_place(socket(AF_INET, SOCK_DGRAM, 0), 15);
	CHECK_SYS(bind(15, (struct sockaddr *)&a, sizeof(a)));
	/* The link-local address the kernel gives stun0 once it is up (from a random secret,
	 * `addr_gen_mode` random: it has no hardware address) comes back the same. */
	victim_sh("for i in $(seq 50); do ip -6 addr show dev stun0 scope link | grep -q fe80 && exit 0;"
	   " sleep 0.1; done; exit 1");
	victim_capture(LINKS, links, sizeof(links));
	victim_capture(ADDRS, addrs, sizeof(addrs));
}

static void expect_iff(int fd, const char *name, int flags, int detached)
{
	struct ifreq ifr = { 0 };

	CHECK(ioctl(fd, TUNGETIFF, &ifr) == 0, "TUNGETIFF fd %d: %s", fd, strerror(errno));
	CHECK(!strcmp(ifr.ifr_name, name), "fd %d is on %s, not %s", fd, ifr.ifr_name, name);
	CHECK((ifr.ifr_flags & flags) == flags, "fd %d has flags %#x, not %#x", fd,
	      ifr.ifr_flags, flags);
	CHECK(!!(ifr.ifr_flags & IFF_DETACH_QUEUE) == detached, "fd %d detached: %d, want %d",
	      fd, !!(ifr.ifr_flags & IFF_DETACH_QUEUE), detached);
}

static unsigned short checksum(const void *data, size_t len)
{
	const unsigned short *p = data;
	unsigned long sum = 0;

	for (; len > 1; len -= 2)
		sum += *p++;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* A datagram 10.69.0.2:7000 -> 10.69.0.1:PORT written to fd 11 reaches the socket. */
static void packet_in(void)
{
	struct {
		struct iphdr ip;
		struct udphdr udp;
		char data[4];
	} __attribute__((packed)) p = { 0 };
	char buf[8] = { 0 };
	struct pollfd pfd = { .fd = 15, .events = POLLIN };

	p.ip.version = 4;
	p.ip.ihl = 5;
	p.ip.ttl = 64;
	p.ip.protocol = IPPROTO_UDP;
	p.ip.tot_len = htons(sizeof(p));
	inet_pton(AF_INET, "10.69.0.2", &p.ip.saddr);
	inet_pton(AF_INET, "10.69.0.1", &p.ip.daddr);
	p.ip.check = checksum(&p.ip, sizeof(p.ip));
	p.udp.source = htons(7000);
	p.udp.dest = htons(PORT);
	p.udp.len = htons(sizeof(p.udp) + 4);
	memcpy(p.data, "ping", 4);
	CHECK(write(11, &p, sizeof(p)) == sizeof(p), "write to fd 11: %s", strerror(errno));
	CHECK(poll(&pfd, 1, 5000) == 1, "the packet written to stun0 never reached the socket");
	CHECK(recv(15, buf, sizeof(buf), 0) == 4 && !memcmp(buf, "ping", 4),
	      "the socket got \"%s\"", buf);
}

/* A datagram sent to 10.69.0.2 is read from fd 11 (an IPv4 packet, UDP to 7000). */
static void packet_out(void)
{
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons(7000) };
	struct pollfd pfd = { .fd = 11, .events = POLLIN };
	unsigned char buf[2048];
	ssize_t n;

	inet_pton(AF_INET, "10.69.0.2", &to.sin_addr);
	CHECK(sendto(15, "pong", 4, 0, (struct sockaddr *)&to, sizeof(to)) == 4,
	      "sendto 10.69.0.2: %s", strerror(errno));
	for (;;) {
		CHECK(poll(&pfd, 1, 5000) == 1, "nothing sent to 10.69.0.2 came out of fd 11");
		n = read(11, buf, sizeof(buf));
		CHECK(n > 0, "read fd 11: %s", strerror(errno));
		/* IPv6 router solicitations and the like may come first. */
		if (n == 32 && (buf[0] >> 4) == 4 && buf[9] == IPPROTO_UDP &&
		    !memcmp(buf + 28, "pong", 4))
			return;
	}
}

static void verify(void)
{
	static char links_now[16384], addrs_now[4096], features_now[1024];
	struct ifreq q = { .ifr_flags = IFF_ATTACH_QUEUE };
	int hdr = 0, sndbuf = 0, sndbuf13 = 0, tmp;
	unsigned char now[6];

	victim_capture(LINKS, links_now, sizeof(links_now));
	victim_capture(ADDRS, addrs_now, sizeof(addrs_now));
	CHECK(!strcmp(links, links_now), "links now:\n%s\nwere:\n%s", links_now, links);
	CHECK(!strcmp(addrs, addrs_now), "addresses now:\n%s\nwere:\n%s", addrs_now, addrs);
	capture_features(features_now, sizeof(features_now));
	CHECK(!strcmp(features, features_now), "features now:\n%s\nwere:\n%s", features_now,
	      features);
	expect_iff(11, "stun0", IFF_TUN | IFF_NO_PI, 0);
	expect_iff(12, "smq0", IFF_TUN | IFF_MULTI_QUEUE | IFF_VNET_HDR, 0);
	expect_iff(13, "smq0", IFF_TUN | IFF_MULTI_QUEUE | IFF_VNET_HDR, 1);
	expect_iff(14, "stap1", IFF_TAP, 0);
	CHECK(ioctl(10, TUNGETIFF, &q) == -1 && errno == EBADFD, "fd 10 is attached");
	CHECK_SYS(ioctl(12, TUNGETVNETHDRSZ, &hdr));
	CHECK_SYS(ioctl(12, TUNGETSNDBUF, &sndbuf));
	CHECK_SYS(ioctl(13, TUNGETSNDBUF, &sndbuf13));
	CHECK(hdr == 12 && sndbuf == 65536, "smq0: vnet header %d, send buffer %d", hdr, sndbuf);
	CHECK(sndbuf13 == detached_sndbuf && sndbuf13 != sndbuf,
	      "fd 13's detached queue has send buffer %d, not %d", sndbuf13, detached_sndbuf);
	hw(14, now);
	CHECK(!memcmp(now, hwaddr, 6), "stap1 has another address");
	packet_in();
	packet_out();
	CHECK(ioctl(13, TUNSETQUEUE, &q) == 0, "fd 13 attaches its queue again: %s",
	      strerror(errno));
	/* stap0 is persistent: it outlives a file that attaches and lets go. */
	tmp = open_tun();
	attach(tmp, "stap0", IFF_TAP | IFF_NO_PI);
	close(tmp);
	victim_sh("ip link show stap0 >/dev/null");
	attach(10, "stun9", IFF_TUN);
}

/* "host": fd 11 attached to tun sthPID of the harness's namespace, which a dump refuses. */
static void setup_host(void)
{
	char name[IFNAMSIZ];

	snprintf(name, sizeof(name), "sth%d", (int)getpid() % 100000);
	victim_place(open_tun(), 11);
	attach(11, name, IFF_TUN);
}

static void verify_host(void)
{
	char name[IFNAMSIZ];

	snprintf(name, sizeof(name), "sth%d", (int)getpid() % 100000);
	expect_iff(11, name, IFF_TUN, 0);
}

/* "up": the persistent tap stapup, up, no file attached (a dump refuses it). */
static void setup_up(void)
{
	int fd;

	if (unshare(CLONE_NEWNET))
		victim_skip("unshare(CLONE_NEWNET) is not permitted here");
	if (system("command -v ip >/dev/null"))
		victim_skip("needs ip (iproute2)");
	fd = open_tun();
	attach(fd, "stapup", IFF_TAP | IFF_NO_PI);
	CHECK_SYS(ioctl(fd, TUNSETPERSIST, 1));
	close(fd);
	victim_sh("ip link set stapup up");
	usleep(1200 * 1000); /* the link watch's delay: the state is settled */
	victim_capture(LINKS, links, sizeof(links));
	victim_capture(ADDRS, addrs, sizeof(addrs));
}

static void verify_up(void)
{
	char links_now[sizeof(links)], addrs_now[sizeof(addrs)];

	usleep(1200 * 1000);
	victim_capture(LINKS, links_now, sizeof(links_now));
	victim_capture(ADDRS, addrs_now, sizeof(addrs_now));
	CHECK(!strcmp(links, links_now), "links now:\n%s\nwere:\n%s", links_now, links);
	CHECK(!strcmp(addrs, addrs_now), "addresses now:\n%s\nwere:\n%s", addrs_now, addrs);
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "host"))
		return victim_run(setup_host, verify_host);
	if (argc > 1 && !strcmp(argv[1], "up"))
		return victim_run(setup_up, verify_up);
	return victim_run(setup, verify);
}
