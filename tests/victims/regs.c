/*
 * regs: register state survives a checkpoint taken in the middle of a tight asm loop.
 *
 * zmm0-31 (so xmm/ymm/zmm, upper halves included), k2-k7, 13 general registers and rsp
 * hold known values; the loop re-checks all of them every iteration until the go flag
 * (set by the SIGUSR1 handler: the kernel saves and restores the full register state
 * around it) is seen. The x87 control word, MXCSR, three x87 stack values, the FS base
 * and a TLS variable are checked once at the end. Needs AVX-512F: prints SKIP without.
 */
#include "victim.h"

#include <asm/prctl.h>
#include <stdint.h>
#include <sys/syscall.h>

#define FCW_SET 0x0f7f   /* round toward zero, 64-bit precision, exceptions masked */
#define MXCSR_SET 0xffc0 /* FZ, DAZ, round toward zero, exceptions masked */
#define FCW_DEFAULT 0x037f
#define MXCSR_DEFAULT 0x1f80

static const char ready_msg[] = "READY\n";
static uint64_t zmm_pat[32][8] __attribute__((aligned(64)));
static uint64_t iterations;
static uint64_t saved_rsp;
static int fail_code;          /* 0 ok, 1-32 zmm, 33-38 k2-k7, 40-52 GPR, 60 rsp */
static uint16_t fcw_seen;
static uint32_t mxcsr_seen;
static long double x87_seen[3];
static const uint16_t fcw_set = FCW_SET, fcw_default = FCW_DEFAULT;
static const uint32_t mxcsr_set = MXCSR_SET, mxcsr_default = MXCSR_DEFAULT;
static __thread uint64_t tls_value = 0x7e57ab1e5eed5eedULL;

#define IRP32 "0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31"
#define GPRS  "rbx,rcx,rdx,rsi,rdi,r8,r9,r10,r11,r12,r13,r14,r15"
/* The value general register number N (in GPRS order) must hold. */
#define GPR_VALUE(n) "(0x0123456789abcdef ^ (0x1111111111111111 * (" n ") + 0x100))"

__attribute__((target("avx512f"), noinline))
static void spin(void)
{
	asm volatile(
		/* vector and mask registers */
		".irp n," IRP32 "\n\t"
		"vmovdqa64 \\n*64+%[pat], %%zmm\\n\n\t"
		".endr\n\t"
		".irp n,2,3,4,5,6,7\n\t"
		"movl $(0x1111 * \\n), %%eax\n\t"
		"kmovw %%eax, %%k\\n\n\t"
		".endr\n\t"
		/* three x87 values (st0=log2(10), st1=1, st2=pi; loaded before the rounding
		 * mode changes, as fld* constants are rounded by it), then x87 and SSE control */
		"fldpi\n\t"
		"fld1\n\t"
		"fldl2t\n\t"
		"fldcw %[fcw_set]\n\t"
		"ldmxcsr %[mxcsr_set]\n\t"
		/* READY goes out only once the vector state is loaded */
		"movl $1, %%eax\n\t"
		"movl $1, %%edi\n\t"
		"leaq %[msg], %%rsi\n\t"
		"movl $6, %%edx\n\t"
		"syscall\n\t"
		/* general registers */
		".set gi, 0\n\t"
		".irp r," GPRS "\n\t"
		"movabsq $" GPR_VALUE("gi") ", %%\\r\n\t"
		".set gi, gi+1\n\t"
		".endr\n\t"
		"movq %%rsp, %[rsp]\n\t"

		"1:\n\t"
		"incq %[iter]\n\t"
		".irp n," IRP32 "\n\t"
		"vpcmpeqq \\n*64+%[pat], %%zmm\\n, %%k1\n\t"
		"kmovw %%k1, %%eax\n\t"
		"cmpl $0xff, %%eax\n\t"
		"movl $(\\n+1), %%eax\n\t"
		"jne 8f\n\t"
		".endr\n\t"
		".irp n,2,3,4,5,6,7\n\t"
		"kmovw %%k\\n, %%eax\n\t"
		"cmpl $(0x1111 * \\n), %%eax\n\t"
		"movl $(33+\\n-2), %%eax\n\t"
		"jne 8f\n\t"
		".endr\n\t"
		".set gi, 0\n\t"
		".irp r," GPRS "\n\t"
		"movabsq $" GPR_VALUE("gi") ", %%rax\n\t"
		"cmpq %%rax, %%\\r\n\t"
		"movl $(40+gi), %%eax\n\t"
		"jne 8f\n\t"
		".set gi, gi+1\n\t"
		".endr\n\t"
		"cmpq %[rsp], %%rsp\n\t"
		"movl $60, %%eax\n\t"
		"jne 8f\n\t"
		"cmpl $0, %[go]\n\t"
		"je 1b\n\t"
		"xorl %%eax, %%eax\n\t"

		"8:\n\t"
		"movl %%eax, %[fail]\n\t"
		"fnstcw %[fcw_seen]\n\t"
		"stmxcsr %[mxcsr_seen]\n\t"
		"fstpt %[x0]\n\t"
		"fstpt %[x1]\n\t"
		"fstpt %[x2]\n\t"
		"fldcw %[fcw_default]\n\t"
		"ldmxcsr %[mxcsr_default]\n\t"
		"vzeroupper\n\t"
		: [fail] "=m"(fail_code), [iter] "+m"(iterations), [rsp] "=m"(saved_rsp),
		  [fcw_seen] "=m"(fcw_seen), [mxcsr_seen] "=m"(mxcsr_seen),
		  [x0] "=m"(x87_seen[0]), [x1] "=m"(x87_seen[1]), [x2] "=m"(x87_seen[2])
		: [pat] "m"(zmm_pat), [go] "m"(victim_go), [msg] "m"(ready_msg),
		  [fcw_set] "m"(fcw_set), [fcw_default] "m"(fcw_default),
		  [mxcsr_set] "m"(mxcsr_set), [mxcsr_default] "m"(mxcsr_default)
		: "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
		  "r12", "r13", "r14", "r15", "cc", "memory",
		  "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
		  "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
		  "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21", "xmm22", "xmm23",
		  "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30", "xmm31",
		  "k1", "k2", "k3", "k4", "k5", "k6", "k7",
		  "st", "st(1)", "st(2)", "st(3)", "st(4)", "st(5)", "st(6)", "st(7)");
}

static const char *fail_name(int code)
{
	static char buf[32];
	static const char *gprs[] = { "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9",
				      "r10", "r11", "r12", "r13", "r14", "r15" };

	if (code >= 1 && code <= 32)
		snprintf(buf, sizeof(buf), "zmm%d", code - 1);
	else if (code >= 33 && code <= 38)
		snprintf(buf, sizeof(buf), "k%d", code - 33 + 2);
	else if (code >= 40 && code <= 52)
		return gprs[code - 40];
	else if (code == 60)
		return "rsp";
	else
		snprintf(buf, sizeof(buf), "code %d", code);
	return buf;
}

static long double x87_ref(int i)
{
	long double v = 0;

	/* the same constants, loaded the same way (fld* results are exact, not rounded) */
	if (i == 0)
		asm("fldl2t" : "=t"(v));
	else if (i == 1)
		asm("fld1" : "=t"(v));
	else
		asm("fldpi" : "=t"(v));
	return v;
}

int main(void)
{
	uint64_t fs_before = 0, fs_after = 0, gs = 1;
	uint64_t *tls_addr = &tls_value;

	setvbuf(stdout, NULL, _IOLBF, 0);
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx512f"))
		victim_skip("this CPU (or kernel) has no AVX-512F");
	for (int r = 0; r < 32; r++)
		for (int l = 0; l < 8; l++)
			zmm_pat[r][l] = 0xa5a5000000000000ULL ^ ((uint64_t)r << 32) ^ ((uint64_t)l << 8) ^ (uint64_t)(r * 8 + l);
	CHECK_SYS(syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_before));
	victim_install_go();
	fflush(stdout);

	spin(); /* prints READY, loops until go */

	CHECK(fail_code == 0, "%s changed during the loop (after %llu iterations)",
	      fail_name(fail_code), (unsigned long long)iterations);
	CHECK(iterations > 1, "the check loop ran %llu times", (unsigned long long)iterations);
	CHECK(fcw_seen == FCW_SET, "x87 control word %#x, want %#x", fcw_seen, FCW_SET);
	CHECK(mxcsr_seen == MXCSR_SET, "MXCSR %#x, want %#x", mxcsr_seen, MXCSR_SET);
	for (int i = 0; i < 3; i++)
		CHECK(memcmp(&x87_seen[i], &(long double){ x87_ref(i) }, 10) == 0, "x87 st(%d) changed", i);
	CHECK_SYS(syscall(SYS_arch_prctl, ARCH_GET_FS, &fs_after));
	CHECK(fs_after == fs_before, "FS base %#llx, was %#llx",
	      (unsigned long long)fs_after, (unsigned long long)fs_before);
	CHECK(&tls_value == tls_addr, "TLS variable moved");
	CHECK(tls_value == 0x7e57ab1e5eed5eedULL, "TLS variable is %#llx", (unsigned long long)tls_value);
	CHECK_SYS(syscall(SYS_arch_prctl, ARCH_GET_GS, &gs));
	CHECK(gs == 0, "GS base is %#llx, was 0", (unsigned long long)gs);
	victim_pass();
}
