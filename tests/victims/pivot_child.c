/* A child that makes a mount namespace, pivot_roots into a tmpfs and detaches the old
 * root (zdtm mntns_pivot_root): its program and libraries stay on a mount only its
 * parent's namespace shows. Argument: a directory D of the tree's namespace. The parent
 * writes D/child (the child's pid) and D/ready once the child is set, then waits for it.
 * The child waits for /go in its root, then writes /result: PASS when its root lists
 * exactly go, mine and ready and mine reads "mine", and stays until killed. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		exit(3);
	close(fd);
}

static int child(const char *d)
{
	char n[4096], old[4200], mine[4200], buf[16] = "";
	snprintf(n, sizeof(n), "%s/n", d);
	snprintf(old, sizeof(old), "%s/old", n);
	snprintf(mine, sizeof(mine), "%s/mine", n);
	if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return 1;
	mkdir(n, 0755);
	if (mount("pivot", n, "tmpfs", 0, "size=1m"))
		return 1;
	mkdir(old, 0755);
	put(mine, "mine");
	if (chdir(n) || syscall(SYS_pivot_root, ".", "old") || umount2("old", MNT_DETACH))
		return 1;
	rmdir("old");
	put("/ready", "ready");
	while (access("/go", F_OK))
		usleep(50000);
	int entries = 0, fd = open("/mine", O_RDONLY);
	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) < 0)
		return 1;
	DIR *dir = opendir("/");
	struct dirent *e;
	while (dir && (e = readdir(dir)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			entries++;
	put("/result", entries == 3 && !strcmp(buf, "mine") ? "PASS" : "FAIL");
	/* Its root is read through /proc/PID/root: it stays until killed. */
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	char path[4200];
	if (argc < 2)
		return 2;
	/* Its stdio opened in the tree's namespace (not the test's): reopened from there. */
	int null = open("/dev/null", O_RDWR);
	for (int fd = 0; fd < 3; fd++)
		dup2(null, fd);
	close(null);
	pid_t pid = fork();
	if (pid == 0)
		exit(child(argv[1]));
	snprintf(path, sizeof(path), "/proc/%d/root/ready", pid);
	while (access(path, F_OK)) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return 1;
		usleep(20000);
	}
	snprintf(path, sizeof(path), "%s/child", argv[1]);
	char text[32];
	snprintf(text, sizeof(text), "%d", pid);
	put(path, text);
	snprintf(path, sizeof(path), "%s/ready", argv[1]);
	put(path, "ready");
	waitpid(pid, NULL, 0);
	return 0;
}
