/* Benchmark workloads for scripts/bench.sh.
 *
 *   workload mem   MIB ZERO_EVERY [holes] OKFILE
 *                                          MIB of anonymous memory, random data; every
 *                                          ZERO_EVERY-th page written with zeros (0 = none),
 *                                          or with "holes" never written (only read: the
 *                                          checksum maps the shared zero page there)
 *   workload rewrite MIB RATE OKFILE       MIB of random data, then RATE MiB/s of its pages
 *                                          rewritten (one word each, 100 times a second)
 *                                          for ever; no verification (migration downtime)
 *   workload tree  N OKFILE                the same verifier plus N-1 sleeping children
 *   workload threads N OKFILE              N threads (main included)
 *   workload fds   N OKFILE                N extra fds: files and pipes
 *   workload tcp   N OKFILE                N/2 TCP connections over loopback, both ends
 *                                          held, 100 bytes queued each way (dump with
 *                                          --tcp-established)
 *   workload unix  N OKFILE                N/2 unix stream socket pairs, 100 bytes queued
 *   workload dirty MIB PERCENT OKFILE      the mem workload (no zero pages); on each SIGUSR2
 *                                          it writes one word of every (100/PERCENT)-th page
 *                                          (PERCENT % of its pages), takes the checksum
 *                                          again and prints "DIRTY <pages>" on stdout
 *   workload files N DIRS PIPES DATADIR OKFILE
 *                                          N distinct regular files spread over DIRS
 *                                          directories under DATADIR, each open (read-write,
 *                                          at its own offset), plus PIPES pipes holding data
 *
 * Contract: set up state, print "READY" on stdout, then wait. On SIGUSR1 re-verify the
 * memory against the checksum taken at setup and write "OK <verify-ns>" or "BAD" to OKFILE
 * (written to OKFILE.tmp and renamed, so a reader never sees half a line).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096UL

static volatile sig_atomic_t verify_requested;
static uint64_t *mem;
static size_t mem_words;
static uint64_t expected;
static const char *okfile;

static volatile sig_atomic_t dirty_requested;

static void on_usr1(int sig) { (void)sig; verify_requested = 1; }
static void on_usr2(int sig) { (void)sig; dirty_requested = 1; }

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Position-dependent so that swapped pages are caught, cheap enough to run at memory speed. */
static uint64_t checksum(void)
{
    uint64_t a = 0, b = 0;
    for (size_t i = 0; i < mem_words; i += 2) {
        a += mem[i] ^ i;
        b ^= mem[i + 1] + a;
    }
    return a * 0x9e3779b97f4a7c15ULL ^ b;
}

static void fill(size_t mib, unsigned zero_every, int holes)
{
    size_t len = mib << 20;
    mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) { perror("mmap"); exit(2); }
    mem_words = len / 8;
    uint64_t x = 0x243f6a8885a308d3ULL ^ (uint64_t)getpid();
    size_t words_per_page = PAGE / 8;
    for (size_t p = 0; p < len / PAGE; p++) {
        uint64_t *w = mem + p * words_per_page;
        if (zero_every && p % zero_every == 0) {
            if (!holes)
                memset(w, 0, PAGE);
            continue;
        }
        for (size_t i = 0; i < words_per_page; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            w[i] = x;
        }
    }
    expected = checksum();
}

/* The files workload's fds and the offset each was left at: checked again after restore. */
static int *file_fds;
static long nfile_fds;

static void open_files(long n, long dirs, long pipes, const char *datadir)
{
    char path[4096], buf[256];
    memset(buf, 'x', sizeof buf);
    file_fds = calloc((size_t)n, sizeof *file_fds);
    if (!file_fds) { perror("calloc"); exit(2); }
    for (long d = 0; d < dirs; d++) {
        snprintf(path, sizeof path, "%s/d%04ld", datadir, d);
        if (mkdir(path, 0755) < 0 && errno != EEXIST) { perror(path); exit(2); }
    }
    for (long i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/d%04ld/f%06ld", datadir, i % dirs, i);
        int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
        if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf) { perror(path); exit(2); }
        lseek(fd, i % (long)sizeof buf, SEEK_SET);
        file_fds[nfile_fds++] = fd;
    }
    for (long i = 0; i < pipes; i++) {
        int p[2];
        if (pipe(p) < 0 || write(p[1], buf, 64) != 64) { perror("pipe"); exit(2); }
    }
}

/* Sockets whose queued bytes are checked after the restore. */
static int *sock_fds;
static long nsock_fds;

static void keep_socket(int fd)
{
    if (send(fd, "0123456789", 10, 0) != 10) { perror("send"); exit(2); }
    sock_fds[nsock_fds++] = fd;
}

static void open_tcp(long n)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 4096) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) < 0) { perror("listen"); exit(2); }
    sock_fds = calloc((size_t)n + 2, sizeof(int));
    for (long i = 0; i + 1 < n; i += 2) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); exit(2); }
        int s = accept(l, NULL, NULL);
        if (s < 0) { perror("accept"); exit(2); }
        keep_socket(c);
        keep_socket(s);
    }
    close(l);
}

static void open_unix(long n)
{
    sock_fds = calloc((size_t)n + 2, sizeof(int));
    for (long i = 0; i + 1 < n; i += 2) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) { perror("socketpair"); exit(2); }
        keep_socket(sv[0]);
        keep_socket(sv[1]);
    }
}

/* Every socket still has its peer's 10 bytes queued (peeked, left there). */
static int sockets_intact(void)
{
    char buf[16];
    for (long i = 0; i < nsock_fds; i++)
        if (recv(sock_fds[i], buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT) != 10 ||
            memcmp(buf, "0123456789", 10))
            return 0;
    return 1;
}

static int files_intact(void)
{
    for (long i = 0; i < nfile_fds; i++)
        if (lseek(file_fds[i], 0, SEEK_CUR) != i % 256)
            return 0;
    return 1;
}

static void write_result(void)
{
    uint64_t t0 = now_ns();
    int ok = checksum() == expected && files_intact() && sockets_intact();
    uint64_t t1 = now_ns();
    char tmp[4096], line[64];
    snprintf(tmp, sizeof tmp, "%s.tmp", okfile);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return;
    int n = ok ? snprintf(line, sizeof line, "OK %llu\n", (unsigned long long)(t1 - t0))
               : snprintf(line, sizeof line, "BAD\n");
    if (write(fd, line, n) != n) { close(fd); return; }
    close(fd);
    rename(tmp, okfile);
}

/* The dirty workload: writes PERCENT % of the pages, spread evenly, a new value each round. */
static long dirty_percent;
static void dirty(void)
{
    static uint64_t round;
    size_t words_per_page = PAGE / 8, pages = mem_words / words_per_page, n = 0;
    size_t step = 100 / (size_t)(dirty_percent > 0 ? dirty_percent : 1);
    round++;
    for (size_t p = round % step; p < pages; p += step, n++)
        mem[p * words_per_page + round % words_per_page] ^= round * 0x9e3779b97f4a7c15ULL;
    expected = checksum();
    printf("DIRTY %zu\n", n);
    fflush(stdout);
}

static void *sleeper(void *arg) { (void)arg; for (;;) pause(); return NULL; }

/* Rewrites RATE MiB/s of the MIB MiB at `mem`, a slice every 10 ms, going round. */
static void rewrite(size_t mib, long rate)
{
    size_t pages = mib << 8, per_tick = (size_t)rate * 256 / 100, next = 0;
    uint64_t stamp = 0;
    for (;;) {
        for (size_t i = 0; i < per_tick; i++, next = (next + 7919) % pages)
            mem[next * (PAGE / sizeof(uint64_t))] = ++stamp;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv)
{
    if (argc < 4) { fprintf(stderr, "usage: see the top of workload.c\n"); return 2; }
    /* Inherited fds beyond 0-2 (the environment may leak some) would be dumped too. */
    syscall(SYS_close_range, 3, ~0U, 0);
    const char *kind = argv[1];
    long n = atol(argv[2]);
    okfile = argv[argc - 1];

    struct sigaction sa = { .sa_handler = on_usr1 };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    struct sigaction sa2 = { .sa_handler = on_usr2 };
    sigemptyset(&sa2.sa_mask);
    sigaction(SIGUSR2, &sa2, NULL);
    sigprocmask(SIG_BLOCK, &block, &old);

    if (!strcmp(kind, "mem")) {
        fill((size_t)n, argc > 4 ? (unsigned)atoi(argv[3]) : 0,
             argc > 5 && !strcmp(argv[4], "holes"));
    } else if (!strcmp(kind, "rewrite") && argc >= 5) {
        fill((size_t)n, 0, 0);
        printf("READY %d\n", getpid());
        fflush(stdout);
        rewrite((size_t)n, atol(argv[3]));
    } else if (!strcmp(kind, "tree")) {
        fill(1, 0, 0);
        for (long i = 1; i < n; i++)
            if (fork() == 0) { for (;;) pause(); }
    } else if (!strcmp(kind, "threads")) {
        fill(1, 0, 0);
        for (long i = 1; i < n; i++) {
            pthread_t t;
            pthread_create(&t, NULL, sleeper, NULL);
        }
    } else if (!strcmp(kind, "dirty") && argc >= 5) {
        dirty_percent = atol(argv[3]);
        fill((size_t)n, 0, 0);
    } else if (!strcmp(kind, "fds")) {
        fill(1, 0, 0);
        for (long i = 0; i < n; i += 3) {
            int p[2];
            if (open("/dev/null", O_RDONLY) < 0 || pipe(p) < 0) { perror("fds"); return 2; }
        }
    } else if (!strcmp(kind, "tcp")) {
        fill(1, 0, 0);
        open_tcp(n);
    } else if (!strcmp(kind, "unix")) {
        fill(1, 0, 0);
        open_unix(n);
    } else if (!strcmp(kind, "files") && argc >= 7) {
        fill(1, 0, 0);
        open_files(n, atol(argv[3]), atol(argv[4]), argv[5]);
    } else {
        fprintf(stderr, "unknown workload %s\n", kind);
        return 2;
    }
    printf("READY %d\n", getpid());
    fflush(stdout);
    for (;;) {
        sigsuspend(&old);
        if (dirty_requested) {
            dirty_requested = 0;
            dirty();
        }
        if (verify_requested) {
            verify_requested = 0;
            write_result();
        }
    }
}
