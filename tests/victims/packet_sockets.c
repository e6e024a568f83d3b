/*
 * packet_sockets: packet sockets (needs CAP_NET_RAW: skips without it).
 *
 * Before READY (loopback, ifindex looked up by name; protocol 0x88b5, a local
 * experimental ethertype nothing else sends):
 *   fd 10: SOCK_RAW, protocol 0, TPACKET_V2, PACKET_AUXDATA, a promiscuous membership on
 *          lo, an rx ring of 2 blocks of 4 KiB in 1 KiB frames;
 *   fd 11: SOCK_DGRAM, protocol 0x88b5, bound to lo, PACKET_RESERVE 8, PACKET_ORIGDEV,
 *          a fanout group (hash, id from the pid), a unicast membership, a tx ring;
 *   fd 12: SOCK_RAW, protocol 0x88b5, bound to lo (the sender);
 *   fd 13: SOCK_PACKET bound to "lo";
 *   the rx ring of fd 10 mapped shared, and the tx ring of 11 mapped private.
 * After go: both mappings are where they were, of the same sockets (/proc/self/maps
 * shows their inodes), the frames readable and handed to the kernel; names (family, protocol, interface), each option read back, the fanout
 * value, both memberships dropped without error (they existed), a mapping of each ring's
 * size accepted; a frame sent on 12 arrives on 11; 13 reports "lo".
 */
#include "victim.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/mman.h>
#include <stdio.h>
#include <sys/socket.h>

#define PROTO 0x88b5
#define SOCK_PACKET_TYPE 10

static int lo, fanout;
static void *rx_map, *tx_map;

static void set(int fd, int name, const void *v, socklen_t len)
{
	if (setsockopt(fd, SOL_PACKET, name, v, len) != 0)
		victim_fail("setsockopt(%d, %d): %s", fd, name, strerror(errno));
}

static void set_int(int fd, int name, int v)
{
	set(fd, name, &v, sizeof(v));
}

static int get_int(int fd, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	CHECK_SYS(getsockopt(fd, SOL_PACKET, name, &v, &len));
	return v;
}

static struct packet_mreq mreq(int type)
{
	struct packet_mreq m = {.mr_ifindex = lo, .mr_type = type};

	if (type == PACKET_MR_UNICAST)
		m.mr_alen = 6;
	return m;
}

static struct tpacket_req ring(void)
{
	return (struct tpacket_req){.tp_block_size = 4096, .tp_block_nr = 2, .tp_frame_size = 1024,
				    .tp_frame_nr = 8};
}

static void bind_lo(int fd, int proto)
{
	struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(proto),
				.sll_ifindex = lo};

	CHECK_SYS(bind(fd, (struct sockaddr *)&a, sizeof(a)));
}

static void setup(void)
{
	struct packet_mreq m;
	struct tpacket_req r = ring();
	struct sockaddr spkt = {.sa_family = AF_PACKET};
	int fd = socket(AF_PACKET, SOCK_RAW, 0);

	if (fd < 0 && (errno == EPERM || errno == EACCES))
		victim_skip("no CAP_NET_RAW");
	lo = if_nametoindex("lo");
	CHECK(lo > 0, "no lo");
	fanout = (getpid() & 0x7fff) | (PACKET_FANOUT_HASH << 16);
	victim_place(fd, 10);
	set_int(10, PACKET_VERSION, TPACKET_V2);
	set_int(10, PACKET_AUXDATA, 1);
	m = mreq(PACKET_MR_PROMISC);
	set(10, PACKET_ADD_MEMBERSHIP, &m, sizeof(m));
	set(10, PACKET_RX_RING, &r, sizeof(r));

	victim_place(socket(AF_PACKET, SOCK_DGRAM, htons(PROTO)), 11);
	bind_lo(11, PROTO);
	set_int(11, PACKET_RESERVE, 8);
	set_int(11, PACKET_ORIGDEV, 1);
	set_int(11, PACKET_FANOUT, fanout);
	m = mreq(PACKET_MR_UNICAST);
	set(11, PACKET_ADD_MEMBERSHIP, &m, sizeof(m));
	set(11, PACKET_TX_RING, &r, sizeof(r));

	victim_place(socket(AF_PACKET, SOCK_RAW, htons(PROTO)), 12);
	bind_lo(12, PROTO);
	rx_map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, 10, 0);
	tx_map = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, 11, 0);
	CHECK(rx_map != MAP_FAILED && tx_map != MAP_FAILED, "mmap of a ring: %s", strerror(errno));

	victim_place(socket(AF_PACKET, SOCK_PACKET_TYPE, htons(PROTO)), 13);
	strcpy(spkt.sa_data, "lo");
	CHECK_SYS(bind(13, &spkt, sizeof(spkt)));
}

static void check_name(int fd, int proto, int ifindex)
{
	struct sockaddr_ll a;
	socklen_t len = sizeof(a);

	CHECK_SYS(getsockname(fd, (struct sockaddr *)&a, &len));
	CHECK(a.sll_family == AF_PACKET && a.sll_protocol == htons(proto) &&
		      a.sll_ifindex == ifindex,
	      "fd %d: family %d protocol %#x ifindex %d", fd, a.sll_family, ntohs(a.sll_protocol),
	      a.sll_ifindex);
}

static void check_ring_mapping(int fd)
{
	void *at = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);

	CHECK(at != MAP_FAILED, "fd %d: no ring of 8 KiB to map: %s", fd, strerror(errno));
	munmap(at, 8192);
}

/* The mapping at `at` is one of fd `fd`'s socket, and its first frame the kernel's. */
static void check_mapped(void *at, int fd)
{
	char line[512], want[64], link[64];
	FILE *maps = fopen("/proc/self/maps", "r");
	int found = 0;

	victim_proc_link(fd == 10 ? "fd/10" : "fd/11", link, sizeof(link));
	snprintf(want, sizeof(want), "%lx-", (unsigned long)at);
	CHECK(maps != NULL, "open maps: %s", strerror(errno));
	while (fgets(line, sizeof(line), maps))
		if (strncmp(line, want, strlen(want)) == 0 && strstr(line, link))
			found = 1;
	fclose(maps);
	CHECK(found, "no mapping of %s at %p", link, at);
	CHECK(*(volatile unsigned int *)at == TP_STATUS_KERNEL, "frame 0 at %p is not the kernel's",
	      at);
}

static void verify(void)
{
	struct packet_mreq m;
	unsigned char frame[64] = {0}, got[64];
	struct sockaddr spkt;
	socklen_t len = sizeof(spkt);
	ssize_t n;

	check_mapped(rx_map, 10);
	check_mapped(tx_map, 11);
	check_name(10, 0, 0);
	CHECK(get_int(10, PACKET_VERSION) == TPACKET_V2, "fd 10: version %d", get_int(10, PACKET_VERSION));
	CHECK(get_int(10, PACKET_AUXDATA) == 1, "fd 10: no auxdata");
	m = mreq(PACKET_MR_PROMISC);
	CHECK(setsockopt(10, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &m, sizeof(m)) == 0,
	      "fd 10: no promiscuous membership: %s", strerror(errno));
	check_ring_mapping(10);

	check_name(11, PROTO, lo);
	CHECK(get_int(11, PACKET_RESERVE) == 8, "fd 11: reserve %d", get_int(11, PACKET_RESERVE));
	CHECK(get_int(11, PACKET_ORIGDEV) == 1, "fd 11: no origdev");
	CHECK(get_int(11, PACKET_FANOUT) == fanout, "fd 11: fanout %#x, not %#x",
	      get_int(11, PACKET_FANOUT), fanout);
	m = mreq(PACKET_MR_UNICAST);
	CHECK(setsockopt(11, SOL_PACKET, PACKET_DROP_MEMBERSHIP, &m, sizeof(m)) == 0,
	      "fd 11: no unicast membership: %s", strerror(errno));
	check_ring_mapping(11);

	check_name(12, PROTO, lo);
	frame[12] = PROTO >> 8;
	frame[13] = PROTO & 0xff;
	memcpy(frame + 14, "hello", 5);
	CHECK(send(12, frame, sizeof(frame), 0) == sizeof(frame), "send: %s", strerror(errno));
	n = recv(11, got, sizeof(got), 0);
	CHECK(n == sizeof(frame) - 14 && memcmp(got, "hello", 5) == 0,
	      "fd 11 read %zd bytes, not the frame sent on 12", n);

	CHECK_SYS(getsockname(13, &spkt, &len));
	CHECK(strcmp(spkt.sa_data, "lo") == 0, "fd 13 is bound to \"%s\"", spkt.sa_data);
}

int main(void)
{
	return victim_run(setup, verify);
}
