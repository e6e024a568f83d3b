/*
 * unsupported: holds at fd 10 a kind of file stasis refuses to dump, named by argv[1]:
 * "io_uring" (io_uring_setup), "userfaultfd", "ebpf_filter" (a UDP socket with an eBPF
 * socket filter, SO_ATTACH_BPF), "corked_udp" (a UDP socket holding corked, unsent
 * data), "packet_queued" (a packet socket with a frame queued, needs CAP_NET_RAW). The dump
 * must fail naming fd 10, the pid and the kind, and leave this process
 * running: after go it checks fd 10 is still the same kind of file and passes.
 */
#include "victim.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/if_packet.h>
#include <linux/io_uring.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

/* A UDP socket with an eBPF filter that accepts everything. */
static int ebpf_filter(void)
{
	struct bpf_insn insns[2] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .imm = 0xffff },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	union bpf_attr attr;
	int prog, sk = socket(AF_INET, SOCK_DGRAM, 0);

	memset(&attr, 0, sizeof(attr));
	attr.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	attr.insns = (unsigned long)insns;
	attr.insn_cnt = 2;
	attr.license = (unsigned long)"GPL";
	prog = syscall(SYS_bpf, BPF_PROG_LOAD, &attr, sizeof(attr));
	if (prog < 0 || setsockopt(sk, SOL_SOCKET, SO_ATTACH_BPF, &prog, sizeof(prog)))
		return -1;
	close(prog);
	return sk;
}

/* A UDP socket connected to itself, corked, holding one datagram's start. */
static int corked_udp(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t l = sizeof(a);
	int on = 1, sk = socket(AF_INET, SOCK_DGRAM, 0);

	CHECK_SYS(bind(sk, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(getsockname(sk, (struct sockaddr *)&a, &l));
	CHECK_SYS(connect(sk, (struct sockaddr *)&a, sizeof(a)));
	CHECK_SYS(setsockopt(sk, SOL_UDP, UDP_CORK, &on, sizeof(on)));
	CHECK(send(sk, "corked", 6, 0) == 6, "send: %s", strerror(errno));
	return sk;
}

/* A packet socket of a local experimental ethertype bound to lo with a frame it sent
 * itself queued. */
static int packet_queued(void)
{
	struct sockaddr_ll a = {.sll_family = AF_PACKET, .sll_protocol = htons(0x88b5),
				.sll_ifindex = if_nametoindex("lo")};
	unsigned char frame[64] = {[12] = 0x88, [13] = 0xb5};
	int sk = socket(AF_PACKET, SOCK_RAW, htons(0x88b5)), tx;

	if (sk < 0)
		return -1;
	CHECK_SYS(bind(sk, (struct sockaddr *)&a, sizeof(a)));
	tx = socket(AF_PACKET, SOCK_RAW, 0);
	CHECK_SYS(bind(tx, (struct sockaddr *)&a, sizeof(a)));
	CHECK(send(tx, frame, sizeof(frame), 0) == sizeof(frame), "send: %s", strerror(errno));
	close(tx);
	for (int i = 0; i < 100; i++) {
		int n = 0;

		if (ioctl(sk, FIONREAD, &n) == 0 && n > 0)
			return sk;
		usleep(1000);
	}
	victim_fail("the frame sent on lo never arrived");
}

static int make(const char *kind)
{
	if (!strcmp(kind, "packet_queued"))
		return packet_queued();
	if (!strcmp(kind, "ebpf_filter"))
		return ebpf_filter();
	if (!strcmp(kind, "corked_udp"))
		return corked_udp();
	if (!strcmp(kind, "io_uring")) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		return syscall(SYS_io_uring_setup, 4, &p);
	}
	if (!strcmp(kind, "userfaultfd"))
		return syscall(SYS_userfaultfd, O_CLOEXEC);
	victim_fail("unknown kind %s", kind);
}

int main(int argc, char **argv)
{
	char want[4096], got[4096];
	ssize_t n;
	int fd;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	CHECK(argc == 2, "usage: unsupported io_uring|userfaultfd|ebpf_filter|corked_udp|packet_queued");
	fd = make(argv[1]);
	if (fd < 0)
		victim_skip(strerror(errno));
	victim_place(fd, 10);
	n = readlink("/proc/self/fd/10", want, sizeof(want) - 1);
	CHECK_SYS(n);
	want[n] = 0;
	if (strstr(argv[1], "udp") || strstr(argv[1], "filter") || strstr(argv[1], "queued"))
		strcpy(want, "socket:[");
	victim_ready();
	victim_wait_go();
	n = readlink("/proc/self/fd/10", got, sizeof(got) - 1);
	CHECK_SYS(n);
	got[n] = 0;
	CHECK(!strncmp(got, want, strlen(want)), "fd 10 is %s, want %s", got, want);
	victim_pass();
}
