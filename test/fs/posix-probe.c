// POSIX behaviour a root file system needs, checked through a mount point by the real kernel
// client: renameat2 flags, O_TMPFILE, SEEK_DATA/SEEK_HOLE, fallocate, hard links, symlinks,
// FIFOs, device nodes, xattrs, flock and POSIX locks, fsync/fsyncdir, statfs, truncate, chmod,
// chown, utimens. Prints "ok <name>" per check and exits non-zero on the first failure.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

static int dirfd_;

#define CHECK(name, cond)                                                       \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "FAIL %s: %s (errno %d %s)\n", name, #cond, errno, strerror(errno)); \
      exit(1);                                                                  \
    }                                                                           \
    printf("ok %s\n", name);                                                    \
  } while (0)

static void put(const char *name, const char *data) {
  int fd = openat(dirfd_, name, O_CREAT | O_TRUNC | O_WRONLY, 0644);
  if (fd < 0 || write(fd, data, strlen(data)) != (ssize_t)strlen(data) || close(fd) != 0) {
    fprintf(stderr, "FAIL put %s: %s\n", name, strerror(errno));
    exit(1);
  }
}

static int contains(const char *name, const char *data) {
  char buf[256] = {0};
  int fd = openat(dirfd_, name, O_RDONLY);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  return n >= 0 && strcmp(buf, data) == 0;
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  dirfd_ = open(argv[1], O_RDONLY | O_DIRECTORY);
  CHECK("open dir", dirfd_ >= 0);

  put("a", "A");
  put("b", "B");
  CHECK("renameat2 NOREPLACE refuses", renameat2(dirfd_, "a", dirfd_, "b", RENAME_NOREPLACE) == -1 && errno == EEXIST);
  CHECK("renameat2 EXCHANGE", renameat2(dirfd_, "a", dirfd_, "b", RENAME_EXCHANGE) == 0 && contains("a", "B") && contains("b", "A"));
  CHECK("renameat2 NOREPLACE to a new name", renameat2(dirfd_, "a", dirfd_, "c", RENAME_NOREPLACE) == 0 && contains("c", "B"));
  CHECK("rename replaces", renameat(dirfd_, "c", dirfd_, "b") == 0 && contains("b", "B") && faccessat(dirfd_, "c", F_OK, 0) == -1);

  int t = openat(dirfd_, ".", O_TMPFILE | O_RDWR, 0600);
  if (t < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
    printf("skip O_TMPFILE (not supported by the host)\n");
  } else {
    CHECK("O_TMPFILE", t >= 0 && write(t, "tmp", 3) == 3);
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", t);
    CHECK("O_TMPFILE linkat", linkat(AT_FDCWD, path, dirfd_, "from-tmpfile", AT_SYMLINK_FOLLOW) == 0 && contains("from-tmpfile", "tmp"));
    close(t);
  }

  int s = openat(dirfd_, "sparse", O_CREAT | O_TRUNC | O_RDWR, 0644);
  CHECK("sparse create", s >= 0 && ftruncate(s, 16 << 20) == 0 && pwrite(s, "x", 1, 8 << 20) == 1 && fsync(s) == 0);
  off_t data = lseek(s, 0, SEEK_DATA);
  off_t hole = lseek(s, data, SEEK_HOLE);
  CHECK("SEEK_DATA finds the data", data >= 0 && data <= (8 << 20) && data > 0);
  CHECK("SEEK_HOLE after it", hole > (8 << 20) && hole <= (16 << 20));
  CHECK("SEEK_DATA past the end gives ENXIO", lseek(s, 16 << 20, SEEK_DATA) == -1 && errno == ENXIO);
  CHECK("fallocate", fallocate(s, 0, 0, 1 << 20) == 0);
  CHECK("fallocate punch hole", fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 8 << 20, 4096) == 0);
  char c = 1;
  CHECK("punched range reads zero", pread(s, &c, 1, 8 << 20) == 1 && c == 0);
  CHECK("ftruncate shrinks", ftruncate(s, 100) == 0);
  struct stat st;
  CHECK("fstat size", fstat(s, &st) == 0 && st.st_size == 100);
  close(s);

  CHECK("link", linkat(dirfd_, "b", dirfd_, "b-link", 0) == 0);
  struct stat s1, s2;
  CHECK("hard links share inode and count", fstatat(dirfd_, "b", &s1, 0) == 0 && fstatat(dirfd_, "b-link", &s2, 0) == 0 && s1.st_ino == s2.st_ino && s1.st_nlink == 2);
  CHECK("symlink", symlinkat("b", dirfd_, "sym") == 0 && contains("sym", "B"));
  char target[16] = {0};
  CHECK("readlink", readlinkat(dirfd_, "sym", target, sizeof target) == 1 && target[0] == 'b');
  CHECK("mkfifo", mkfifoat(dirfd_, "fifo", 0644) == 0 && fstatat(dirfd_, "fifo", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISFIFO(st.st_mode));
  if (mknodat(dirfd_, "null", S_IFCHR | 0666, makedev(1, 3)) == 0) {
    CHECK("device node", fstatat(dirfd_, "null", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3);
  } else {
    printf("skip device node (%s)\n", strerror(errno));
  }

  char path[4096];
  snprintf(path, sizeof path, "%s/b", argv[1]);
  CHECK("setxattr", setxattr(path, "user.k", "v1", 2, 0) == 0);
  char val[8] = {0};
  CHECK("getxattr", getxattr(path, "user.k", val, sizeof val) == 2 && memcmp(val, "v1", 2) == 0);
  CHECK("XATTR_CREATE refuses", setxattr(path, "user.k", "v2", 2, XATTR_CREATE) == -1 && errno == EEXIST);
  char list[64];
  ssize_t ln = listxattr(path, list, sizeof list);
  CHECK("listxattr", ln > 0 && memmem(list, ln, "user.k", 7) != NULL);
  CHECK("removexattr", removexattr(path, "user.k") == 0 && getxattr(path, "user.k", val, sizeof val) == -1 && errno == ENODATA);

  CHECK("chmod", fchmodat(dirfd_, "b", 0600, 0) == 0 && fstatat(dirfd_, "b", &st, 0) == 0 && (st.st_mode & 0777) == 0600);
  CHECK("chown", fchownat(dirfd_, "b", 1000, 1000, 0) == 0 && fstatat(dirfd_, "b", &st, 0) == 0 && st.st_uid == 1000 && st.st_gid == 1000);
  struct timespec times[2] = {{1000000000, 5}, {1100000000, 7}};
  CHECK("utimensat", utimensat(dirfd_, "b", times, 0) == 0 && fstatat(dirfd_, "b", &st, 0) == 0 && st.st_mtim.tv_sec == 1100000000 && st.st_mtim.tv_nsec == 7);
  CHECK("setuid file owned by a user", fchownat(dirfd_, "b", 1000, 1000, 0) == 0 && fchmodat(dirfd_, "b", 04755, 0) == 0);
  pid_t writer = fork();
  if (writer == 0) {
    // An unprivileged writer (no CAP_FSETID): the kernel asks the server to clear set-user-ID.
    if (setgid(1000) != 0 || setuid(1000) != 0) _exit(3);
    int fd = openat(dirfd_, "b", O_WRONLY | O_APPEND);
    _exit(fd >= 0 && write(fd, "!", 1) == 1 && close(fd) == 0 ? 0 : 4);
  }
  int wstatus = 0;
  waitpid(writer, &wstatus, 0);
  CHECK("unprivileged write succeeded", WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0);
  CHECK("setuid bit cleared by that write", fstatat(dirfd_, "b", &st, 0) == 0 && (st.st_mode & 04000) == 0 && (st.st_mode & 0777) == 0755);

  int l = openat(dirfd_, "lockme", O_CREAT | O_RDWR, 0644);
  CHECK("flock exclusive", flock(l, LOCK_EX | LOCK_NB) == 0);
  int l2 = openat(dirfd_, "lockme", O_RDWR);
  CHECK("flock conflicts", flock(l2, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK);
  flock(l, LOCK_UN);
  struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
  CHECK("POSIX lock", fcntl(l, F_SETLK, &fl) == 0);
  pid_t child = fork();
  if (child == 0) {
    struct flock probe = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
    int c2 = openat(dirfd_, "lockme", O_RDWR);
    _exit(fcntl(c2, F_GETLK, &probe) == 0 && probe.l_type == F_WRLCK && probe.l_pid == getppid() ? 0 : 1);
  }
  int status = 0;
  waitpid(child, &status, 0);
  CHECK("POSIX lock seen by another process", WIFEXITED(status) && WEXITSTATUS(status) == 0);
  close(l);
  close(l2);

  CHECK("fsync dir", fsync(dirfd_) == 0);
  struct statfs sf;
  CHECK("statfs", fstatfs(dirfd_, &sf) == 0 && sf.f_blocks > 0 && sf.f_bsize > 0);
  CHECK("mkdir/rmdir", mkdirat(dirfd_, "d", 0755) == 0 && unlinkat(dirfd_, "d", AT_REMOVEDIR) == 0);
  CHECK("rmdir non-empty refuses", mkdirat(dirfd_, "e", 0755) == 0 && openat(dirfd_, "e/x", O_CREAT | O_WRONLY, 0644) >= 0 && unlinkat(dirfd_, "e", AT_REMOVEDIR) == -1 && errno == ENOTEMPTY);
  CHECK("unlink", unlinkat(dirfd_, "b-link", 0) == 0 && fstatat(dirfd_, "b", &st, 0) == 0 && st.st_nlink == 1);
  CHECK("open O_EXCL on existing", openat(dirfd_, "b", O_CREAT | O_EXCL | O_WRONLY, 0644) == -1 && errno == EEXIST);
  CHECK("ENOENT", openat(dirfd_, "nothing", O_RDONLY) == -1 && errno == ENOENT);
  char longname[300];
  memset(longname, 'x', sizeof longname - 1);
  longname[sizeof longname - 1] = 0;
  CHECK("name too long", openat(dirfd_, longname, O_CREAT | O_WRONLY, 0644) == -1 && errno == ENAMETOOLONG);
  printf("all ok\n");
  return 0;
}
