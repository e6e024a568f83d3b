/*
 * ghost_holes: sparse files deleted while open keep their holes, and --ghost-limit
 * counts the data they hold, not their size.
 *
 * Before READY (in a fresh directory), each file opened O_RDWR, written, then unlinked:
 * fd 10 "edges": five 4 KiB blocks, a hole, data, a hole, data, a hole (a hole at the
 * head, in the middle and at the tail), offset 4097; fd 11 "large": 4 KiB of data, a
 * 1 GiB hole, 4 KiB of data (far above the default 1 MiB --ghost-limit in size, 8 KiB of
 * data); fd 12 "many": 1 MiB of alternating 4 KiB data and 4 KiB holes.
 * After go: each fd is still deleted, with its size, offset and data, its data and holes
 * where they were (the SEEK_DATA/SEEK_HOLE runs before the dump), and "large" occupies
 * no more than a few blocks. On a filesystem that keeps no holes, only the data and
 * sizes are checked.
 */
#include "victim.h"

#include <sys/stat.h>

#define BLK 4096
#define GIB (1LL << 30)
#define MAX_RUNS 512

static char dir[] = "ghost_holes-XXXXXX";

struct runs {
	int n;
	long long off[MAX_RUNS], len[MAX_RUNS];
};

static unsigned char pattern(long long at) { return (unsigned char)(at * 7 + at / BLK + 3); }

/* Writes `len` bytes of the pattern at `at` of fd `fd`. */
static void put(int fd, long long at, int len)
{
	unsigned char buf[BLK];

	for (int done = 0; done < len; done += BLK) {
		for (int i = 0; i < BLK; i++)
			buf[i] = pattern(at + done + i);
		CHECK(pwrite(fd, buf, BLK, at + done) == BLK, "pwrite fd %d at %lld", fd, at + done);
	}
}

/* The SEEK_DATA/SEEK_HOLE runs of fd `fd` of `size` bytes. */
static void runs_of(int fd, long long size, struct runs *r)
{
	long long at = 0, data, hole;

	r->n = 0;
	while (at < size) {
		data = lseek(fd, at, SEEK_DATA);
		if (data < 0 && errno == ENXIO)
			break;
		CHECK_SYS(data);
		hole = lseek(fd, data, SEEK_HOLE);
		CHECK_SYS(hole);
		CHECK(r->n < MAX_RUNS, "fd %d: too many runs", fd);
		r->off[r->n] = data;
		r->len[r->n++] = hole - data;
		at = hole;
	}
}

/* fd `fd` holds the pattern in each block `written` names. */
static void data_matches(int fd, long long size, int (*written)(long long))
{
	unsigned char buf[BLK];

	for (long long at = 0; at < size; at += BLK) {
		if (!written(at))
			continue;
		CHECK(pread(fd, buf, BLK, at) == BLK, "pread fd %d at %lld", fd, at);
		for (int j = 0; j < BLK; j++)
			CHECK(buf[j] == pattern(at + j), "fd %d: byte %lld is %d", fd, at + j, buf[j]);
	}
}

static int edges_written(long long at) { return at == BLK || at == 3 * BLK; }
static int large_written(long long at) { return at == 0 || at == GIB + BLK; }
static int many_written(long long at) { return at % (2 * BLK) == 0; }

struct file {
	int fd;
	long long size, pos;
	int (*written)(long long);
	struct runs before;
};

static void make(struct file *f, const char *name)
{
	victim_place(open(name, O_RDWR | O_CREAT | O_EXCL, 0640), f->fd);
	CHECK_SYS(unlink(name));
}

static void verify(struct file *f, int holes)
{
	struct runs after;
	struct stat sb;
	char path[64], link[512];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", f->fd);
	n = readlink(path, link, sizeof(link) - 1);
	CHECK_SYS(n);
	link[n] = 0;
	CHECK(strstr(link, " (deleted)") != NULL, "fd %d is %s, not deleted", f->fd, link);
	CHECK_SYS(fstat(f->fd, &sb));
	CHECK(sb.st_size == f->size && sb.st_nlink == 0, "fd %d: size %lld nlink %d, want %lld 0",
	      f->fd, (long long)sb.st_size, (int)sb.st_nlink, f->size);
	CHECK(lseek(f->fd, 0, SEEK_CUR) == f->pos, "fd %d: offset %lld, want %lld", f->fd,
	      (long long)lseek(f->fd, 0, SEEK_CUR), f->pos);
	data_matches(f->fd, f->size, f->written);
	if (!holes)
		return;
	runs_of(f->fd, f->size, &after);
	CHECK(after.n == f->before.n, "fd %d: %d data runs, were %d", f->fd, after.n, f->before.n);
	for (int i = 0; i < after.n; i++)
		CHECK(after.off[i] == f->before.off[i] && after.len[i] == f->before.len[i],
		      "fd %d: run %d is %lld+%lld, was %lld+%lld", f->fd, i, after.off[i],
		      after.len[i], f->before.off[i], f->before.len[i]);
}

int main(void)
{
	struct file edges = {10, 5 * BLK, 4097, edges_written};
	struct file large = {11, GIB + 2 * BLK, 0, large_written};
	struct file many = {12, 1 << 20, 12345, many_written};
	struct file *all[] = {&edges, &large, &many};
	struct stat sb;
	int holes;

	setvbuf(stdout, NULL, _IOLBF, 0);
	victim_install_go();
	CHECK(mkdtemp(dir) != NULL, "mkdtemp: %s", strerror(errno));
	CHECK_SYS(chdir(dir));
	make(&edges, "edges");
	put(10, BLK, BLK);
	put(10, 3 * BLK, BLK);
	make(&large, "large");
	put(11, 0, BLK);
	put(11, GIB + BLK, BLK);
	make(&many, "many");
	for (long long at = 0; at < many.size; at += 2 * BLK)
		put(12, at, BLK);
	for (int i = 0; i < 3; i++) {
		/* Some filesystems allocate around a write: make the holes sure. */
		for (long long at = 0; at + BLK <= all[i]->size && all[i]->size < GIB; at += BLK)
			if (!all[i]->written(at))
				fallocate(all[i]->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, at, BLK);
		CHECK_SYS(ftruncate(all[i]->fd, all[i]->size));
		runs_of(all[i]->fd, all[i]->size, &all[i]->before);
		CHECK_SYS(lseek(all[i]->fd, all[i]->pos, SEEK_SET));
	}
	holes = edges.before.n > 0 && edges.before.off[0] == BLK;
	if (!holes)
		printf("no holes on this filesystem: checking data and sizes only\n");
	victim_ready();
	victim_wait_go();
	for (int i = 0; i < 3; i++)
		verify(all[i], holes);
	CHECK_SYS(fstat(11, &sb));
	CHECK(!holes || sb.st_blocks * 512 <= 64 * BLK, "fd 11 occupies %lld bytes, want at most %d",
	      (long long)sb.st_blocks * 512, 64 * BLK);
	CHECK_SYS(chdir(".."));
	CHECK_SYS(rmdir(dir));
	victim_pass();
}
