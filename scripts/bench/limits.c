/* Machine limits for scripts/bench.sh, each printed as "name GiB/s":
 *   memcpy       copy between two resident 256 MiB buffers (best of 5)
 *   tmpfs_write  write 1 GiB into a fresh file with 8 MiB writes (the dump's floor on tmpfs)
 *   disk_write   the same into DISKDIR, fsync included (a dump to a disk fsyncs its image)
 *   first_touch  mmap 1 GiB anonymous and write one byte per 4 KiB page (the restore's floor)
 *   first_touch_thp  the same with MADV_HUGEPAGE (what avoiding 4 KiB faults could reach)
 *
 * usage: limits TMPFSDIR DISKDIR       all of the above
 *        limits write DIR MIB [fsync]   only the file write rate, MIB into DIR ("write"),
 *                                       with the fsync in the time if asked
 *        limits touch MIB               only the 4 KiB first-touch rate ("touch")
 *
 * The single probes let the driver measure a limit right before the operation it bounds:
 * in a VM that hands free memory back to its host (free page reporting), fresh pages cost
 * several times more when the host must fault them in again, so a limit measured seconds
 * earlier may not hold for the operation.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define GIB (1UL << 30)
#define CHUNK (8UL << 20)
/* What file_write copies from, cycled: distinct data for 64 MiB of the file. */
#define SOURCE (64UL << 20)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* len bytes of pseudo-random data, resident: incompressible, like the workloads' memory
 * (a storage stack that compresses or deduplicates would flatter a repeated pattern). */
static void *resident(size_t len)
{
    uint64_t *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(1); }
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < len / 8; i++) {
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = x;
    }
    return p;
}

/* GiB/s of writing len bytes of buf (CHUNK at a time) into a new file in dir, and of
 * fsyncing it if sync. */
static double file_write(const char *dir, const char *buf, size_t len, int sync)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/stasis-bench-limits.%d", dir, getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror(path); exit(1); }
    double t0 = now();
    for (size_t done = 0; done < len; done += CHUNK)
        if (write(fd, buf + done % SOURCE, CHUNK) != (ssize_t)CHUNK) { perror("write"); exit(1); }
    if (sync && fsync(fd) != 0) { perror("fsync"); exit(1); }
    double t = now() - t0;
    close(fd);
    unlink(path);
    return (double)len / GIB / t;
}

/* GiB/s of first touching len bytes of fresh anonymous memory. */
static double touch(size_t len, int advice)
{
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { perror("mmap"); exit(1); }
    madvise(m, len, advice);
    double t0 = now();
    for (size_t i = 0; i < len; i += 4096) m[i] = 1;
    double t = now() - t0;
    munmap(m, len);
    return (double)len / GIB / t;
}

static size_t mib_arg(const char *s)
{
    size_t mib = strtoul(s, NULL, 10);
    mib = (mib + 7) / 8 * 8; /* whole chunks */
    return (mib ? mib : 8) << 20;
}

int main(int argc, char **argv)
{
    if ((argc == 4 || argc == 5) && !strcmp(argv[1], "write")) {
        char *buf = resident(SOURCE);
        int sync = argc == 5 && !strcmp(argv[4], "fsync");
        printf("write %.3f\n", file_write(argv[2], buf, mib_arg(argv[3]), sync));
        return 0;
    }
    if (argc == 3 && !strcmp(argv[1], "touch")) {
        printf("touch %.3f\n", touch(mib_arg(argv[2]), MADV_NOHUGEPAGE));
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "usage: limits TMPFSDIR DISKDIR | limits write DIR MIB [fsync] | "
                        "limits touch MIB\n");
        return 2;
    }
    size_t len = 256UL << 20;
    char *a = resident(len), *b = resident(len);
    double best = 1e9;
    for (int i = 0; i < 5; i++) {
        double t0 = now();
        memcpy(b, a, len);
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("memcpy %.3f\n", (double)len / GIB / best);
    printf("tmpfs_write %.3f\n", file_write(argv[1], a, GIB, 0));
    printf("disk_write %.3f\n", file_write(argv[2], a, GIB, 1));
    munmap(a, len);
    munmap(b, len);

    printf("first_touch %.3f\n", touch(GIB, MADV_NOHUGEPAGE));
    printf("first_touch_thp %.3f\n", touch(GIB, MADV_HUGEPAGE));
    return 0;
}
