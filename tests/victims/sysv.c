/*
 * System V IPC objects and attachments. By default the victim first moves into an IPC
 * namespace of its own (unshare(CLONE_NEWIPC)), so that the dump kills the namespace
 * with the tree and every object in it is gone: the restore must make them all again
 * (in a new namespace) with their ids, keys, modes, owners, creators and contents.
 * Each object is created after a throw-away one of its kind, so ids are not the first.
 *
 *   segment A: key KEY_A, 3 pages + 100 bytes (unaligned), mode 0640, filled; attached
 *              read-write, its middle page mprotected read-only; the child (forked
 *              after) shares the attachment;
 *   segment B: private key, 2 pages, attached read-only (SHM_RDONLY), then removed
 *              (IPC_RMID while attached: SHM_DEST);
 *   segment C: key KEY_C, 1 page, not attached, created with euid 1234 / egid 4321,
 *              owner set to 1000:100, mode 0604, locked (SHM_LOCK);
 *   semaphores: key KEY_S, values {1, 5, 300}, mode 0600;
 *   queue:     key KEY_Q, mode 0620, qbytes 1000, messages (1,"hello") (7,"world!!") (2,"").
 *
 * With "hugetlb", also segment H: SHM_HUGETLB, one huge page, attached, bytes written at
 * both ends (skipped with the reason where no huge page can be had).
 *
 * With "rmid_forced", kernel.shm_rmid_forced is set in its namespace: segment C, which
 * no process attaches, would die with its creator; stasis refuses the dump (tests/sysv_ipc.rs).
 *
 * With "shared", the victim makes the same objects but stays in the namespace it was
 * started in (the dumper's, made by tests/sysv_ipc.rs).
 *
 * With "host", the victim stays in the restorer's namespace (the host's): only the
 * attached segments are saved; B (removed at the dump: it dies with the tree) must be
 * recreated with its id, A reused with its contents; semaphores and queues are not made.
 *
 * The parent also keeps /proc/self/maps open at fd 20 (as CRIU's shm tests do): after the
 * restore it must read this process's maps, with the segments in them.
 *
 * On go (the parent passes it on to the child): every object found again by key with its saved id; modes, owners, creators,
 * sizes, attach counts; contents; A's split protections and B's read-only attachment;
 * the child writes into A and the parent sees it.
 */
#include "victim.h"

#include <sched.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define PAGE 4096
#define KEY_A 0x53590a01
#define KEY_C 0x53590a03
#define KEY_S 0x53590a04
#define KEY_Q 0x53590a05
#define A_SIZE (3 * PAGE + 100)

static int host, hugetlb, rmid_forced, ida, idb, idc, ids, idq, idh = -1;
static char *a, *b, *h;
#define H_SIZE (2 << 20)

struct msg {
	long mtype;
	char text[64];
};

static char pattern(int i, int seed)
{
	return (char)('a' + (i * 7 + seed) % 26);
}

/* A throw-away object of each kind, so the real ids carry a sequence number. */
static void burn_ids(void)
{
	CHECK_SYS(shmctl(shmget(IPC_PRIVATE, PAGE, 0600), IPC_RMID, NULL));
	CHECK_SYS(semctl(semget(IPC_PRIVATE, 1, 0600), 0, IPC_RMID));
	CHECK_SYS(msgctl(msgget(IPC_PRIVATE, 0600), IPC_RMID, NULL));
}

static void make_segments(void)
{
	int key = host ? (KEY_A ^ getpid()) : KEY_A;

	ida = shmget(key, A_SIZE, IPC_CREAT | IPC_EXCL | 0640);
	CHECK_SYS(ida);
	a = shmat(ida, NULL, 0);
	CHECK(a != (void *)-1, "shmat A: %s", strerror(errno));
	for (int i = 0; i < A_SIZE; i++)
		a[i] = pattern(i, 1);
	CHECK_SYS(mprotect(a + PAGE, PAGE, PROT_READ));

	idb = shmget(IPC_PRIVATE, 2 * PAGE, IPC_CREAT | 0600);
	CHECK_SYS(idb);
	char *w = shmat(idb, NULL, 0);
	CHECK(w != (void *)-1, "shmat B: %s", strerror(errno));
	for (int i = 0; i < 2 * PAGE; i += 97)
		w[i] = pattern(i, 2);
	b = shmat(idb, NULL, SHM_RDONLY);
	CHECK(b != (void *)-1, "shmat B read-only: %s", strerror(errno));
	CHECK_SYS(shmdt(w));
	CHECK_SYS(shmctl(idb, IPC_RMID, NULL));
}

static void make_unattached(void)
{
	struct shmid_ds ds;
	struct sembuf ops[3] = {{0, 1, 0}, {1, 5, 0}, {2, 300, 0}};
	struct msg m;

	CHECK_SYS(syscall(SYS_setresgid, -1, 4321, -1));
	CHECK_SYS(syscall(SYS_setresuid, -1, 1234, -1));
	idc = shmget(KEY_C, PAGE, IPC_CREAT | IPC_EXCL | 0604);
	CHECK_SYS(syscall(SYS_setresuid, -1, 0, -1));
	CHECK_SYS(syscall(SYS_setresgid, -1, 0, -1));
	CHECK_SYS(idc);
	char *c = shmat(idc, NULL, 0);
	CHECK(c != (void *)-1, "shmat C: %s", strerror(errno));
	memcpy(c + 2000, "segment C", 9);
	CHECK_SYS(shmdt(c));
	CHECK_SYS(shmctl(idc, IPC_STAT, &ds));
	ds.shm_perm.uid = 1000;
	ds.shm_perm.gid = 100;
	CHECK_SYS(shmctl(idc, IPC_SET, &ds));
	CHECK_SYS(shmctl(idc, SHM_LOCK, NULL));

	ids = semget(KEY_S, 3, IPC_CREAT | IPC_EXCL | 0600);
	CHECK_SYS(ids);
	CHECK_SYS(semop(ids, ops, 3));

	idq = msgget(KEY_Q, IPC_CREAT | IPC_EXCL | 0620);
	CHECK_SYS(idq);
	struct msqid_ds q;
	CHECK_SYS(msgctl(idq, IPC_STAT, &q));
	q.msg_qbytes = 1000;
	CHECK_SYS(msgctl(idq, IPC_SET, &q));
	const char *texts[] = {"hello", "world!!", ""};
	long types[] = {1, 7, 2};
	for (int i = 0; i < 3; i++) {
		m.mtype = types[i];
		strcpy(m.text, texts[i]);
		CHECK_SYS(msgsnd(idq, &m, strlen(texts[i]), IPC_NOWAIT));
	}
}

static void check_segment(const char *who, int id, int key, int size, int mode, int nattch)
{
	struct shmid_ds ds;

	CHECK(shmctl(id, IPC_STAT, &ds) == 0, "%s: segment %d is gone: %s", who, id,
	      strerror(errno));
	CHECK(ds.shm_perm.__key == key, "%s: segment %d key %#x", who, id, ds.shm_perm.__key);
	CHECK(ds.shm_segsz == (size_t)size, "%s: segment %d size %zu", who, id, ds.shm_segsz);
	CHECK((ds.shm_perm.mode & 03777) == mode, "%s: segment %d mode %o, not %o", who, id,
	      ds.shm_perm.mode, mode);
	CHECK(nattch < 0 || ds.shm_nattch == (shmatt_t)nattch, "%s: segment %d attached %lu times",
	      who, id, (unsigned long)ds.shm_nattch);
	if (key != IPC_PRIVATE)
		CHECK(shmget(key, 0, 0) == id, "%s: key %#x finds %d, not %d", who, key,
		      shmget(key, 0, 0), id);
}

static void check_contents(const char *who)
{
	for (int i = 0; i < A_SIZE; i++)
		if (i != 9000)
			CHECK(a[i] == pattern(i, 1), "%s: A byte %d is %#x", who, i, a[i]);
	for (int i = 0; i < 2 * PAGE; i++)
		CHECK(b[i] == (i % 97 ? 0 : pattern(i, 2)), "%s: B byte %d is %#x", who, i, b[i]);
	/* B is attached read-only: it cannot be made writable. */
	CHECK(mprotect(b, PAGE, PROT_READ | PROT_WRITE) == -1 && errno == EACCES,
	      "%s: the read-only attachment of B became writable", who);
}

/* The perms column of the maps line starting at `p`. */
static void check_prot(const char *who, void *p, const char *perms)
{
	char line[512], want[32];
	FILE *f = fopen("/proc/self/maps", "r");

	CHECK(f, "%s: open maps", who);
	snprintf(want, sizeof(want), "%lx-", (unsigned long)p);
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, want, strlen(want)) == 0) {
			fclose(f);
			CHECK(strncmp(strchr(line, ' ') + 1, perms, 4) == 0, "%s: %s", who, line);
			return;
		}
	fclose(f);
	victim_fail("%s: no mapping at %p", who, p);
}

static void check_unattached(void)
{
	struct shmid_ds ds;
	struct semid_ds sd;
	struct msqid_ds q;
	unsigned short vals[3];
	struct msg m;
	const char *texts[] = {"hello", "world!!", ""};
	long types[] = {1, 7, 2};

	check_segment("C", idc, KEY_C, PAGE, SHM_LOCKED | 0604, 0);
	CHECK_SYS(shmctl(idc, IPC_STAT, &ds));
	CHECK(ds.shm_perm.uid == 1000 && ds.shm_perm.gid == 100, "C owner %u:%u",
	      ds.shm_perm.uid, ds.shm_perm.gid);
	CHECK(ds.shm_perm.cuid == 1234 && ds.shm_perm.cgid == 4321, "C creator %u:%u",
	      ds.shm_perm.cuid, ds.shm_perm.cgid);
	char *c = shmat(idc, NULL, SHM_RDONLY);
	CHECK(c != (void *)-1 && memcmp(c + 2000, "segment C", 9) == 0, "C contents");
	CHECK(c[0] == 0 && c[PAGE - 1] == 0, "C is not zero where it was not written");

	CHECK(semget(KEY_S, 0, 0) == ids, "semaphore key finds %d, not %d", semget(KEY_S, 0, 0), ids);
	CHECK_SYS(semctl(ids, 0, IPC_STAT, &sd));
	CHECK((sd.sem_perm.mode & 0777) == 0600 && sd.sem_nsems == 3, "semaphores mode %o n %lu",
	      sd.sem_perm.mode, (unsigned long)sd.sem_nsems);
	CHECK_SYS(semctl(ids, 0, GETALL, vals));
	CHECK(vals[0] == 1 && vals[1] == 5 && vals[2] == 300, "semaphore values %u %u %u",
	      vals[0], vals[1], vals[2]);

	CHECK(msgget(KEY_Q, 0) == idq, "queue key finds %d, not %d", msgget(KEY_Q, 0), idq);
	CHECK_SYS(msgctl(idq, IPC_STAT, &q));
	CHECK((q.msg_perm.mode & 0777) == 0620 && q.msg_qbytes == 1000 && q.msg_qnum == 3,
	      "queue mode %o qbytes %lu qnum %lu", q.msg_perm.mode, (unsigned long)q.msg_qbytes,
	      (unsigned long)q.msg_qnum);
	for (int i = 0; i < 3; i++) {
		memset(&m, 0, sizeof(m));
		ssize_t n = msgrcv(idq, &m, sizeof(m.text), 0, IPC_NOWAIT);
		CHECK(n == (ssize_t)strlen(texts[i]) && m.mtype == types[i] &&
		      memcmp(m.text, texts[i], n) == 0,
		      "message %d: type %ld, %zd bytes %.*s", i, m.mtype, n, (int)n, m.text);
	}
}

static void make_hugetlb(void)
{
	idh = shmget(IPC_PRIVATE, H_SIZE, IPC_CREAT | SHM_HUGETLB | 0600);
	if (idh < 0)
		victim_skip("no huge page for a SHM_HUGETLB segment (vm.nr_hugepages)");
	h = shmat(idh, NULL, 0);
	CHECK(h != (void *)-1, "shmat H: %s", strerror(errno));
	memcpy(h, "huge start", 10);
	memcpy(h + H_SIZE - 8, "huge end", 8);
}

static void check_hugetlb(const char *who)
{
	struct shmid_ds ds;

	if (idh < 0)
		return;
	CHECK(memcmp(h, "huge start", 10) == 0 && memcmp(h + H_SIZE - 8, "huge end", 8) == 0 &&
	      h[4096] == 0, "%s: H contents", who);
	CHECK_SYS(shmctl(idh, IPC_STAT, &ds));
	CHECK(ds.shm_segsz == H_SIZE, "%s: H size %zu", who, ds.shm_segsz);
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512], want[32];
	int found = 0;
	snprintf(want, sizeof(want), "%lx-", (unsigned long)h);
	while (f && fgets(line, sizeof(line), f)) {
		if (strncmp(line, want, strlen(want)) == 0)
			found = 1;
		else if (found && strncmp(line, "KernelPageSize:", 15) == 0) {
			CHECK(strstr(line, " 2048 kB"), "%s: H is not on huge pages: %s", who, line);
			break;
		}
	}
	if (f)
		fclose(f);
	CHECK(found, "%s: H is not mapped", who);
}

static void check_all(const char *who)
{
	int key = host ? (KEY_A ^ getppid()) : KEY_A;

	if (strcmp(who, "parent") == 0)
		key = host ? (KEY_A ^ getpid()) : KEY_A;
	check_segment(who, ida, key, A_SIZE, 0640, -1);
	check_segment(who, idb, IPC_PRIVATE, 2 * PAGE, 01600, -1);
	check_contents(who);
	check_prot(who, a, "rw-s");
	check_prot(who, a + PAGE, "r--s");
	check_prot(who, a + 2 * PAGE, "rw-s");
	check_prot(who, b, "r--s");
	check_hugetlb(who);
}

int main(int argc, char **argv)
{
	host = argc > 1 && strcmp(argv[1], "host") == 0;
	hugetlb = argc > 1 && strcmp(argv[1], "hugetlb") == 0;
	int shared = argc > 1 && strcmp(argv[1], "shared") == 0;
	rmid_forced = argc > 1 && strcmp(argv[1], "rmid_forced") == 0;
	victim_install_go();
	if (!host && !shared && unshare(CLONE_NEWIPC) != 0)
		victim_skip("unshare(CLONE_NEWIPC) needs CAP_SYS_ADMIN");
	burn_ids();
	make_segments();
	if (hugetlb)
		make_hugetlb();
	if (!host)
		make_unattached();
	if (rmid_forced) {
		int fd = open("/proc/sys/kernel/shm_rmid_forced", O_WRONLY);
		CHECK(fd >= 0 && write(fd, "1", 1) == 1, "set shm_rmid_forced: %s", strerror(errno));
		close(fd);
	}
	pid_t pid = fork();
	CHECK_SYS(pid);
	if (pid > 0)
		victim_place(open("/proc/self/maps", O_RDONLY), 20);
	if (pid == 0) {
		victim_wait_go();
		check_all("child");
		a[9000] = 'C';
		exit(0);
	}
	victim_ready();
	victim_wait_go();
	/* nattch counts mappings: A is three in each process (split by mprotect). */
	check_segment("parent", ida, host ? (KEY_A ^ getpid()) : KEY_A, A_SIZE, 0640, 6);
	check_segment("parent", idb, IPC_PRIVATE, 2 * PAGE, 01600, 2);
	CHECK_SYS(kill(pid, SIGUSR1));
	int st;
	while (waitpid(pid, &st, 0) == -1)
		CHECK(errno == EINTR, "waitpid: %s", strerror(errno));
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child failed (status %#x)", st);
	CHECK(a[9000] == 'C', "the child's write into A is not in the parent's A");
	a[9000] = pattern(9000, 1);
	check_all("parent");
	if (!host)
		check_unattached();
	static char maps[1 << 16];
	ssize_t n = pread(20, maps, sizeof(maps) - 1, 0);
	CHECK(n > 0, "read /proc/self/maps at fd 20: %s", strerror(errno));
	maps[n] = 0;
	char at[32];
	snprintf(at, sizeof(at), "%lx-", (unsigned long)a);
	CHECK(strstr(maps, at) && strstr(maps, "/SYSV"), "fd 20 does not read our maps:\n%s", maps);
	CHECK_SYS(shmdt(a));
	/* Under shm_rmid_forced the last detach destroyed A already. */
	CHECK(shmctl(ida, IPC_RMID, NULL) == 0 || (rmid_forced && errno == EINVAL),
	      "remove A: %s", strerror(errno));
	victim_pass();
}
