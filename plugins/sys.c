/*
 * sys.c: `fotahost.sys`, the small OS layer the Lua scripts stand on:
 * clocks, non-blocking fds (pipes for tests and glue), syslog, and the
 * host's signal state for the scheduler.
 *
 * fds are plain integers here; device modules (serial, GPIO, sockets) wrap
 * theirs in objects with __close/__gc and expose :fd() for the scheduler.
 *
 * Errors: misuse raises; a failed system call returns nil, "path: strerror"
 * (or "call: strerror"), code: code is the errno.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "fotahost.h"

#define SYS_READ_DEFAULT 4096

static lua_Number clock_seconds(clockid_t id)
{
    struct timespec ts;

    clock_gettime(id, &ts);
    return (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9;
}

/* sys.now() -> seconds on the monotonic clock (for timeouts and timers) */
static int sys_now(lua_State *L)
{
    lua_pushnumber(L, clock_seconds(CLOCK_MONOTONIC));
    return 1;
}

/* sys.time() -> seconds since the epoch, with a fraction (for logs) */
static int sys_time(lua_State *L)
{
    lua_pushnumber(L, clock_seconds(CLOCK_REALTIME));
    return 1;
}

static int check_fd(lua_State *L, int arg)
{
    lua_Integer fd = luaL_checkinteger(L, arg);

    luaL_argcheck(L, fd >= 0 && fd <= INT_MAX, arg, "not a file descriptor");
    return (int)fd;
}

static int fd_error(lua_State *L, int err, const char *verb, int fd)
{
    char what[48];

    snprintf(what, sizeof what, "%s fd %d", verb, fd);
    return fh_result_errno(L, err, what);
}


/* sys.pipe() -> rfd, wfd (both non-blocking, close-on-exec) | fail, msg, errno */
static int sys_pipe(lua_State *L)
{
    int fds[2];

    if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) != 0)
        return fh_result_errno(L, errno, "pipe");
    lua_pushinteger(L, fds[0]);
    lua_pushinteger(L, fds[1]);
    return 2;
}

/*
 * sys.read(fd[, max]) -> data (1..max bytes)
 *                      | nil, "closed" at end of file
 *                      | nil, "wouldblock" when nothing is ready
 *                      | fail, msg, errno
 */
static int sys_read(lua_State *L)
{
    int fd = check_fd(L, 1);
    lua_Integer max = luaL_optinteger(L, 2, SYS_READ_DEFAULT);
    char what[32];

    luaL_argcheck(L, max > 0 && max <= INT_MAX, 2, "size out of range");
    snprintf(what, sizeof what, "read fd %d", fd);
    return fh_read_available(L, fd, (size_t)max, 0, 0, what);
}

/*
 * sys.write(fd, data) -> bytes written (may be fewer than #data)
 *                      | nil, "wouldblock" | fail, msg, errno
 */
static int sys_write(lua_State *L)
{
    int fd = check_fd(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    ssize_t n;

    do
        n = write(fd, data, len);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        char what[32];
        int err = errno;
        snprintf(what, sizeof what, "write fd %d", fd);
        return fh_io_failure(L, err, 0, 0, what);
    }
    lua_pushinteger(L, n);
    return 1;
}

/* sys.close(fd) -> true | fail, msg, errno */
static int sys_close(lua_State *L)
{
    int fd = check_fd(L, 1);

    if (close(fd) != 0 && errno != EINTR)
        return fd_error(L, errno, "close", fd);
    lua_pushboolean(L, 1);
    return 1;
}

/* sys.isatty(fd) -> boolean */
static int sys_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty(check_fd(L, 1)));
    return 1;
}

/* sys.getpid() -> integer */
static int sys_getpid(lua_State *L)
{
    lua_pushinteger(L, getpid());
    return 1;
}

static const char *const prio_names[] = {
    "debug", "info", "notice", "warning", "error", "critical", NULL,
};
static const int prio_values[] = {
    LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR, LOG_CRIT,
};

/*
 * sys.openlog(ident): names this process in syslog. The ident string is
 * kept in the registry because openlog() keeps the pointer.
 */
static int sys_openlog(lua_State *L)
{
    const char *ident = luaL_checkstring(L, 1);

    lua_pushvalue(L, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, "fotahost.sys.ident");
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
    return 0;
}

/* sys.syslog(priority, message): priority is "debug" .. "critical" */
static int sys_syslog(lua_State *L)
{
    int prio = prio_values[luaL_checkoption(L, 1, NULL, prio_names)];
    const char *msg = luaL_checkstring(L, 2);

    syslog(prio, "%s", msg);
    return 0;
}

/*
 * sys.arm(co): makes a coroutine stop with the interrupt error when
 * SIGINT/SIGTERM arrives, even if it never yields. The scheduler arms
 * every task; other code rarely needs it.
 */
static int sys_arm(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);

    luaL_argexpected(L, co != NULL, 1, "thread");
    fh_signals_arm_thread(co);
    return 0;
}

/* sys.interrupted() -> "SIGINT" | "SIGTERM" | nil: the signal that stopped us */
static int sys_interrupted(lua_State *L)
{
    switch (fh_signals_raised()) {
    case 0: lua_pushnil(L); break;
    case SIGINT: lua_pushliteral(L, "SIGINT"); break;
    case SIGTERM: lua_pushliteral(L, "SIGTERM"); break;
    default: lua_pushliteral(L, "signal"); break;
    }
    return 1;
}

/*
 * SIGHUP asks the app to reload. The handler only writes a byte into a
 * pipe (the self-pipe trick: write() is async-signal-safe), so the
 * scheduler waits for the read end like any fd and the reload runs as an
 * ordinary task, at a moment of the app's choosing. The pipe is made once
 * per process; its ends are close-on-exec, so a re-exec starts clean.
 */
static int hup_pipe[2] = {-1, -1};

static void on_hangup(int sig)
{
    int saved = errno;
    char c = 1;
    ssize_t n;

    (void)sig;
    /* a full pipe (EAGAIN) already says "a reload is asked for" */
    n = write(hup_pipe[1], &c, 1);
    (void)n;
    errno = saved;
}

/*
 * sys.hangups() -> rfd | fail, msg, errno: from now on SIGHUP does not
 * end the process; each one makes `rfd` readable (read it empty with
 * sys.read). Only the app asks for this: every other tool keeps SIGHUP's
 * default action. (The host starts the app run as a service with SIGHUP
 * ignored, so none comes too early; this handler replaces that.) Calling
 * it again returns the same fd.
 */
static int sys_hangups(lua_State *L)
{
    struct sigaction sa;

    if (hup_pipe[0] < 0) {
        if (pipe2(hup_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
            hup_pipe[0] = hup_pipe[1] = -1;
            return fh_result_errno(L, errno, "pipe");
        }
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_hangup;
        sigemptyset(&sa.sa_mask);
        /* a system call a HUP lands in carries on; the scheduler's wait
         * returns anyway (epoll_wait is never restarted) */
        sa.sa_flags = SA_RESTART;
        if (sigaction(SIGHUP, &sa, NULL) != 0) {
            int e = errno;
            close(hup_pipe[0]);
            close(hup_pipe[1]);
            hup_pipe[0] = hup_pipe[1] = -1;
            return fh_result_errno(L, e, "sigaction SIGHUP");
        }
    }
    lua_pushinteger(L, hup_pipe[0]);
    return 1;
}

/* Writes our pid into the lock file `fd` holds (for the next one to name). */
static int write_pid(int fd)
{
    char buf[24];
    int n = snprintf(buf, sizeof buf, "%ld\n", (long)getpid());

    if (ftruncate(fd, 0) != 0)
        return -1;
    return pwrite(fd, buf, (size_t)n, 0) == n ? 0 : -1;
}

/* The pid a lock's holder wrote into `fd`'s file, or 0. */
static long holder_pid(int fd)
{
    char buf[24];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);

    if (n <= 0)
        return 0;
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

/*
 * sys.lock(path) -> fd | nil, err, errno[, pid]: takes an exclusive lock
 * (flock) on `path`, created 0600 and never opened through a link, and
 * writes our pid into it. The lock lasts until the process ends or execs
 * (the fd is close-on-exec): a crash can never leave it behind. Held by
 * another process: nil, "PATH: in use by pid N", EWOULDBLOCK, N.
 */
static int sys_lock(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600);
    long pid;

    if (fd < 0)
        return fh_result_errno(L, errno, path);
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        int e = errno;
        pid = e == EWOULDBLOCK ? holder_pid(fd) : 0;
        close(fd);
        if (e != EWOULDBLOCK)
            return fh_result_errno(L, e, path);
        lua_pushnil(L);
        lua_pushfstring(L, "%s: in use by pid %I", path, (lua_Integer)pid);
        lua_pushinteger(L, e);
        lua_pushinteger(L, pid);
        return 4;
    }
    if (write_pid(fd) != 0) {
        int e = errno;
        close(fd);
        return fh_result_errno(L, e, path);
    }
    lua_pushinteger(L, fd);
    return 1;
}

/* fsyncs `path` (a file, or a directory with O_DIRECTORY in `flags`). */
static int fsync_path(const char *path, int flags)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

/* fsyncs the directory holding `path`, so a rename in it is on disk. */
static int sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[PATH_MAX];
    if (!slash) {
        strcpy(dir, ".");
    } else if (slash == path) {
        strcpy(dir, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof dir) {
            errno = ENAMETOOLONG;
            return -1;
        }
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return fsync_path(dir, O_DIRECTORY);
}

/*
 * sys.replace(tmp, path) -> true | nil, err, errno: puts a finished file in
 * place durably: fsyncs `tmp`, renames it over `path` (atomic: readers see
 * the old file or the new, never a mix), then fsyncs the directory so the
 * rename survives a power cut. Both must be on one filesystem.
 */
static int sys_replace(lua_State *L)
{
    const char *tmp = luaL_checkstring(L, 1);
    const char *path = luaL_checkstring(L, 2);

    if (fsync_path(tmp, 0) < 0)
        return fh_result_errno(L, errno, tmp);
    if (rename(tmp, path) < 0) {
        int e = errno;
        lua_pushfstring(L, "%s -> %s", tmp, path);
        return fh_result_errno(L, e, lua_tostring(L, -1));
    }
    if (sync_parent(path) < 0)
        return fh_result_errno(L, errno, path);
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * sys.write_file(path, data[, mode]) -> true | nil, err, errno: writes
 * `path` atomically and durably: into "path.tmp-PID", fsync'd, then
 * sys.replace()'d. On failure the temporary file is removed and `path` is
 * as it was. `mode` defaults to 0644 (before the umask). A link at `path`
 * is replaced by the file, never followed.
 */
static int sys_write_file(lua_State *L)
{
    size_t len;
    const char *path = luaL_checkstring(L, 1);
    const char *data = luaL_checklstring(L, 2, &len);
    lua_Integer mode = luaL_optinteger(L, 3, 0644);
    const char *tmp = lua_pushfstring(L, "%s.tmp-%d", path, (int)getpid());

    /* A stale temporary (or a link planted in its place) goes first; O_EXCL
     * then refuses whatever appears in between instead of writing through it. */
    if (unlink(tmp) < 0 && errno != ENOENT)
        return fh_result_errno(L, errno, path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return fh_result_errno(L, errno, path);
    if (fh_write_all(fd, data, len) < 0)
        goto fail;
    if (fsync(fd) < 0)
        goto fail;
    if (close(fd) < 0) {
        fd = -1;
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) < 0)
        goto fail;
    if (sync_parent(path) < 0)
        return fh_result_errno(L, errno, path);
    lua_pushboolean(L, 1);
    return 1;
fail: {
        int e = errno;
        if (fd >= 0)
            close(fd);
        unlink(tmp);
        return fh_result_errno(L, e, path);
    }
}

/*
 * sys.mkdir(path[, mode]) -> true | nil, err, errno: creates `path` and any
 * missing parent, each with `mode` (default 0755, before the umask). An
 * existing directory is fine; anything else in the way is an error.
 */
static int sys_mkdir(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    mode_t mode = (mode_t)luaL_optinteger(L, 2, 0755);
    char buf[PATH_MAX];
    struct stat st;
    size_t len = strlen(path);

    luaL_argcheck(L, len > 0, 1, "empty path");
    if (len >= sizeof buf)
        return fh_result_errno(L, ENAMETOOLONG, path);
    memcpy(buf, path, len + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return fh_result_errno(L, errno, buf);
        *p = c;
        if (c == '\0')
            break;
    }
    if (stat(path, &st) != 0)
        return fh_result_errno(L, errno, path);
    if (!S_ISDIR(st.st_mode))
        return fh_result_errno(L, ENOTDIR, path);
    lua_pushboolean(L, 1);
    return 1;
}

static const char *file_type(mode_t m)
{
    if (S_ISREG(m)) return "file";
    if (S_ISDIR(m)) return "directory";
    if (S_ISLNK(m)) return "link";
    if (S_ISCHR(m)) return "char";
    if (S_ISBLK(m)) return "block";
    if (S_ISFIFO(m)) return "fifo";
    if (S_ISSOCK(m)) return "socket";
    return "other";
}

/*
 * sys.lstat(path) -> { type = "file" | "directory" | "link" | "char" |
 * "block" | "fifo" | "socket", mode = permission bits, uid, size }
 * | nil, err, errno. A symbolic link is described, not followed.
 */
static int sys_lstat(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct stat st;

    if (lstat(path, &st) != 0)
        return fh_result_errno(L, errno, path);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, file_type(st.st_mode));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, st.st_mode & 07777);
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, st.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)st.st_size);
    lua_setfield(L, -2, "size");
    return 1;
}

/*
 * sys.exists(path) -> boolean: whether `path` names something, a symbolic
 * link followed (a dangling link does not exist). A question, not an
 * operation: any failure of stat() answers false.
 */
static int sys_exists(lua_State *L)
{
    struct stat st;

    lua_pushboolean(L, stat(luaL_checkstring(L, 1), &st) == 0);
    return 1;
}

/*
 * Filesystem names by statfs magic (linux/magic.h), for the ones a board
 * or a build machine has: what `stat -f -c %T` would say, but stable
 * ("ext2/ext3" there is every ext here).
 */
static const struct {
    unsigned long magic;
    const char *name;
} fs_names[] = {
    {0x01021994UL, "tmpfs"},    {0x858458F6UL, "ramfs"},
    {0xEF53UL, "ext4"},         {0x72B6UL, "jffs2"},
    {0x24051905UL, "ubifs"},    {0x73717368UL, "squashfs"},
    {0x794C7630UL, "overlay"},  {0x9123683EUL, "btrfs"},
    {0x58465342UL, "xfs"},      {0xF2F52010UL, "f2fs"},
    {0x6969UL, "nfs"},          {0x4D44UL, "vfat"},
    {0x65735546UL, "fuse"},     {0x9FA0UL, "proc"},
    {0x62656572UL, "sysfs"},
};

/*
 * sys.statfs(path) -> { type = "tmpfs" | "ext4" | ... | "unknown",
 * magic = the f_type number, free = bytes an unprivileged user may still
 * write, total = bytes, bsize = the allocation unit in bytes }
 * | nil, err, errno. `path` is any file or directory on the filesystem.
 * `free` leaves out the blocks reserved for root: a state directory
 * should not live on them.
 */
static int sys_statfs(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    struct statfs sf;
    const char *name = "unknown";

    if (statfs(path, &sf) != 0)
        return fh_result_errno(L, errno, path);
    /* f_type is signed on some ABIs: compare the low 32 bits */
    unsigned long magic = (unsigned long)sf.f_type & 0xFFFFFFFFUL;
    for (size_t i = 0; i < sizeof fs_names / sizeof fs_names[0]; i++)
        if (fs_names[i].magic == magic) {
            name = fs_names[i].name;
            break;
        }
    lua_Integer unit = sf.f_frsize ? (lua_Integer)sf.f_frsize : (lua_Integer)sf.f_bsize;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, (lua_Integer)magic);
    lua_setfield(L, -2, "magic");
    lua_pushinteger(L, (lua_Integer)sf.f_bavail * unit);
    lua_setfield(L, -2, "free");
    lua_pushinteger(L, (lua_Integer)sf.f_blocks * unit);
    lua_setfield(L, -2, "total");
    lua_pushinteger(L, unit);
    lua_setfield(L, -2, "bsize");
    return 1;
}

/* sys.geteuid() -> integer */
static int sys_geteuid(lua_State *L)
{
    lua_pushinteger(L, geteuid());
    return 1;
}

static const char *type_phrase(mode_t m)
{
    if (S_ISCHR(m)) return "a character device";
    if (S_ISBLK(m)) return "a block device";
    if (S_ISFIFO(m)) return "a FIFO";
    if (S_ISSOCK(m)) return "a socket";
    if (S_ISDIR(m)) return "a directory";
    return "a special file";
}

/*
 * sys.read_file(path, max) -> data | nil, err[, errno]: the whole of a
 * regular file of at most `max` bytes. A device or FIFO is refused without
 * reading from it (a FIFO is opened without waiting for a writer), and so
 * is a larger file, before any of it is read.
 */
static int sys_read_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max = luaL_checkinteger(L, 2);
    struct stat st;
    luaL_Buffer b;

    luaL_argcheck(L, max >= 0, 2, "size out of range");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return fh_result_errno(L, errno, path);
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return fh_result_errno(L, e, path);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fh_result_msg(L, "%s: %s, not a regular file: refused", path,
                             type_phrase(st.st_mode));
    }
    if ((lua_Integer)st.st_size > max) {
        close(fd);
        return fh_result_msg(L, "%s: file too large (%I bytes, limit %I bytes)", path,
                             (lua_Integer)st.st_size, max);
    }
    /* Read at most max + 1 bytes: a file that grows (or lies about its
     * size, as /proc files do) is refused too. */
    lua_Integer total = 0;
    luaL_buffinit(L, &b);
    for (;;) {
        char *p = luaL_prepbuffer(&b);
        size_t want = LUAL_BUFFERSIZE;
        if ((lua_Integer)want > max + 1 - total)
            want = (size_t)(max + 1 - total);
        ssize_t n = want > 0 ? read(fd, p, want) : 0;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            return fh_result_errno(L, e, path);
        }
        if (n == 0)
            break;
        luaL_addsize(&b, (size_t)n);
        total += n;
    }
    close(fd);
    if (total > max)
        return fh_result_msg(L, "%s: file too large (more than %I bytes)", path, max);
    luaL_pushresult(&b);
    return 1;
}

/*
 * sys.write_device(path, data) -> true | nil, err[, errno]: writes `data`
 * into an existing character device or FIFO, as a shell's `>` would, but
 * never creates, truncates or replaces anything: whatever else is at `path`
 * is refused. A FIFO no process reads is an error, not a wait.
 */
static int sys_write_device(lua_State *L)
{
    size_t len;
    const char *path = luaL_checkstring(L, 1);
    const char *data = luaL_checklstring(L, 2, &len);
    struct stat st;

    int fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENXIO)
            return fh_result_msg(L, "%s: a FIFO no process reads", path);
        return fh_result_errno(L, errno, path);
    }
    if (fstat(fd, &st) != 0)
        goto fail;
    if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode)) {
        close(fd);
        return fh_result_msg(L, "%s: not a character device or FIFO", path);
    }
    /* the reader sets the pace from here on, as with `>` */
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0)
        goto fail;
    if (fh_write_all(fd, data, len) < 0)
        goto fail;
    if (close(fd) != 0 && errno != EINTR)
        return fh_result_errno(L, errno, path);
    lua_pushboolean(L, 1);
    return 1;
fail: {
        int e = errno;
        close(fd);
        return fh_result_errno(L, e, path);
    }
}

/*
 * sys.strerror(code) -> this libc's message for errno `code`
 * sys.errno: { ENOENT = 2, ... }, this system's numbers for the errors the
 * product names. Numbers and messages differ between systems (EADDRINUSE
 * is 98 on x86 Linux, 125 on MIPS; musl words its messages its own way):
 * what compares with a `code` or a message takes them from here.
 */
static int sys_strerror(lua_State *L)
{
    lua_Integer code = luaL_checkinteger(L, 1);

    luaL_argcheck(L, code >= 0 && code <= INT_MAX, 1, "not an errno value");
    lua_pushstring(L, strerror((int)code));
    return 1;
}

static void push_errno_table(lua_State *L)
{
#define E(name) {#name, name}
    static const struct { const char *name; int code; } codes[] = {
        E(EPERM), E(ENOENT), E(EINTR), E(EIO), E(EBADF), E(EAGAIN), E(EACCES),
        E(EBUSY), E(EEXIST), E(EXDEV), E(ENODEV), E(ENOTDIR), E(EISDIR),
        E(EINVAL), E(ENOTTY), E(ENOSPC), E(EROFS), E(EPIPE), E(ENOTEMPTY),
        E(EADDRINUSE), E(ECONNREFUSED), E(ECONNRESET), E(ETIMEDOUT),
        E(EHOSTUNREACH), E(ENETUNREACH), E(ELOOP),
    };
#undef E
    size_t i;

    lua_createtable(L, 0, (int)(sizeof codes / sizeof codes[0]));
    for (i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        lua_pushinteger(L, codes[i].code);
        lua_setfield(L, -2, codes[i].name);
    }
}

static const luaL_Reg sys_funcs[] = {
    {"strerror", sys_strerror},
    {"now", sys_now},
    {"time", sys_time},
    {"pipe", sys_pipe},
    {"read", sys_read},
    {"write", sys_write},
    {"close", sys_close},
    {"isatty", sys_isatty},
    {"getpid", sys_getpid},
    {"openlog", sys_openlog},
    {"syslog", sys_syslog},
    {"arm", sys_arm},
    {"interrupted", sys_interrupted},
    {"hangups", sys_hangups},
    {"lock", sys_lock},
    {"replace", sys_replace},
    {"write_file", sys_write_file},
    {"mkdir", sys_mkdir},
    {"lstat", sys_lstat},
    {"exists", sys_exists},
    {"statfs", sys_statfs},
    {"geteuid", sys_geteuid},
    {"read_file", sys_read_file},
    {"write_device", sys_write_device},
    {NULL, NULL},
};

int luaopen_fotahost_sys(lua_State *L);

int luaopen_fotahost_sys(lua_State *L)
{
    luaL_newlib(L, sys_funcs);
    push_errno_table(L);
    lua_setfield(L, -2, "errno");
    return 1;
}
