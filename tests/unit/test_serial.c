/*
 * Unit tests of plugins/serial.core.c below what a pty can show.
 *
 * Linux ptys force 8 bits without parity, so the mapping of data bits,
 * parity, stop bits and flow control to termios, and the refusals of a
 * driver, are checked against a fake driver: this file defines tcgetattr
 * and tcsetattr, which serial.o then calls, and they keep the line of one
 * regular file in memory (any other fd goes to the C library's). The real
 * pty part checks what the kernel holds: raw mode, O_NONBLOCK, close-on-exec,
 * TIOCEXCL set while open and cleared by close.
 */
#include <dlfcn.h>
#include <errno.h>
#include <sys/file.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fotahost.h"
#include "unit.h"

int luaopen_fotahost_serial_core(lua_State *L);

/* ------------------------------------------------------------ fake driver */

static enum { KEEP_ALL, FORCE_8N1, KEEP_RATE, FAIL_EIO } fake_mode;
static struct termios fake;   /* the line as the fake driver holds it */
static dev_t fake_dev;
static ino_t fake_ino;

static int is_fake(int fd)
{
    struct stat st;

    return fake_ino != 0 && fstat(fd, &st) == 0 && st.st_dev == fake_dev && st.st_ino == fake_ino;
}

int tcgetattr(int fd, struct termios *t)
{
    static int (*real)(int, struct termios *);

    if (is_fake(fd)) {
        *t = fake;
        return 0;
    }
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "tcgetattr");
    return real(fd, t);
}

int tcsetattr(int fd, int when, const struct termios *t)
{
    static int (*real)(int, int, const struct termios *);

    if (is_fake(fd)) {
        speed_t was = cfgetospeed(&fake);
        if (fake_mode == FAIL_EIO) {
            errno = EIO;
            return -1;
        }
        fake = *t;
        if (fake_mode == FORCE_8N1) { /* what a pty does, without glibc's check */
            fake.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD);
            fake.c_cflag |= CS8;
        } else if (fake_mode == KEEP_RATE) {
            cfsetispeed(&fake, was);
            cfsetospeed(&fake, was);
        }
        return 0;
    }
    if (real == NULL)
        *(void **)&real = dlsym(RTLD_NEXT, "tcsetattr");
    return real(fd, when, t);
}

/* ------------------------------------------------------------ helpers */

/* Runs `code`; the string it returns, or the error message. */
static const char *run(lua_State *L, const char *code)
{
    lua_settop(L, 0);
    if (luaL_loadstring(L, code) != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK)
        return lua_tostring(L, -1);
    return lua_isstring(L, -1) ? lua_tostring(L, -1) : luaL_tolstring(L, -1, NULL);
}

static int lowest_free_fd(void)
{
    int fd = dup(0);

    close(fd);
    return fd;
}

static void set_path(lua_State *L, const char *name, const char *path)
{
    lua_pushstring(L, path);
    lua_setglobal(L, name);
}

/* ------------------------------------------------------------ tests */

static void test_fake_driver(lua_State *L)
{
    char path[] = "/tmp/fotahost-serial-XXXXXX";
    char want[256];
    struct stat st;
    int fd = mkstemp(path), free_fd;

    CHECK(fd >= 0 && fstat(fd, &st) == 0);
    fake_dev = st.st_dev;
    fake_ino = st.st_ino;
    /* the driver starts as a terminal would: cooked, echoing, 9600 */
    memset(&fake, 0, sizeof fake);
    fake.c_iflag = ICRNL | IXON | ISTRIP;
    fake.c_oflag = OPOST | ONLCR;
    fake.c_cflag = CS8 | CREAD | HUPCL;
    fake.c_lflag = ICANON | ECHO | ECHOE | ISIG | IEXTEN;
    fake.c_cc[VMIN] = 0;
    fake.c_cc[VTIME] = 5;
    cfsetispeed(&fake, B9600);
    cfsetospeed(&fake, B9600);
    set_path(L, "fake", path);
    run(L, "get = function(p) local s = p:get() return ('%s %s %s %s %s %s'):format("
           "s.baud, s.data_bits, s.parity, s.stop_bits, s.rtscts, s.exclusive) end");

    fake_mode = KEEP_ALL;
    CHECK_STR(run(L, "p = assert(serial.open(fake, { baud = 19200, data_bits = 7, parity = 'even',"
                     " stop_bits = 2, rtscts = true, exclusive = false })) return get(p)"),
              "19200 7 even 2 true false");
    CHECK((fake.c_cflag & CSIZE) == CS7);
    CHECK((fake.c_cflag & (PARENB | PARODD)) == PARENB);
    CHECK(fake.c_iflag & INPCK);
    CHECK(fake.c_cflag & CSTOPB);
    CHECK(fake.c_cflag & CRTSCTS);
    CHECK((fake.c_cflag & (CLOCAL | CREAD)) == (CLOCAL | CREAD));
    CHECK(cfgetospeed(&fake) == B19200 && cfgetispeed(&fake) == B19200);
    /* raw: no line editing, echo, signals, output processing, translation */
    CHECK((fake.c_lflag & (ICANON | ECHO | ISIG | IEXTEN)) == 0);
    CHECK((fake.c_oflag & OPOST) == 0);
    CHECK((fake.c_iflag & (ICRNL | INLCR | IGNCR | IXON | IXOFF | ISTRIP)) == 0);
    CHECK(fake.c_cc[VMIN] == 1 && fake.c_cc[VTIME] == 0);
    snprintf(want, sizeof want, "serial port %s (19200 7E2 rtscts)", path);
    CHECK_STR(run(L, "return tostring(p)"), want);

    /* set() changes what it is given and keeps the rest */
    CHECK_STR(run(L, "assert(p:set({ parity = 'odd' })) return get(p)"), "19200 7 odd 2 true false");
    CHECK((fake.c_cflag & (PARENB | PARODD)) == (PARENB | PARODD));
    CHECK_STR(run(L, "assert(p:set({ data_bits = 5, parity = 'none', stop_bits = 1, rtscts = false }))"
                     " return get(p)"), "19200 5 none 1 false false");
    CHECK((fake.c_cflag & CSIZE) == CS5);
    CHECK((fake.c_cflag & (PARENB | CSTOPB | CRTSCTS)) == 0);
    CHECK((fake.c_iflag & INPCK) == 0);
    CHECK_STR(run(L, "assert(p:set({ data_bits = 6, baud = 38400 })) return get(p)"),
              "38400 6 none 1 false false");
    CHECK_STR(run(L, "assert(p:set({ data_bits = 8 })) return get(p)"), "38400 8 none 1 false false");
    CHECK_STR(run(L, "assert(p:set({ data_bits = 6 })) return get(p)"), "38400 6 none 1 false false");

    /* a driver that silently keeps 8N1: refused, and the line put back */
    fake_mode = FORCE_8N1;
    CHECK_STR(run(L, "assert(p:set({ data_bits = 8, stop_bits = 2 })) return get(p)"),
              "38400 8 none 2 false false");
    snprintf(want, sizeof want, "%s: the driver did not accept 38400 7O1 (it gave 38400 8N1)", path);
    CHECK_STR(run(L, "return select(2, p:set({ data_bits = 7, parity = 'odd', stop_bits = 1 }))"), want);
    CHECK(fake.c_cflag & CSTOPB);
    CHECK_STR(run(L, "return get(p)"), "38400 8 none 2 false false");

    /* a driver that silently keeps its rate */
    fake_mode = KEEP_RATE;
    snprintf(want, sizeof want, "%s: unsupported baud rate 230400", path);
    CHECK_STR(run(L, "return select(2, p:set({ baud = 230400 }))"), want);
    CHECK(cfgetospeed(&fake) == B38400);

    /* a driver that fails */
    fake_mode = FAIL_EIO;
    snprintf(want, sizeof want, "%s: %s %d", path, strerror(EIO), EIO);
    CHECK_STR(run(L, "local _, e, n = p:set({ baud = 9600 }) return e .. ' ' .. n"), want);
    CHECK_STR(run(L, "return tostring(p:close())"), "true");

    /* open() gives up without leaving an fd behind */
    free_fd = lowest_free_fd();
    fake_mode = KEEP_RATE;
    snprintf(want, sizeof want, "%s: unsupported baud rate 115200", path);
    CHECK_STR(run(L, "return select(2, serial.open(fake, { baud = 115200, exclusive = false }))"), want);
    fake_mode = FORCE_8N1;
    CHECK(strstr(run(L, "return select(2, serial.open(fake, { parity = 'even', exclusive = false }))"),
                 "did not accept 57600 8E1") != NULL);
    CHECK(lowest_free_fd() == free_fd);

    fake_ino = 0;
    close(fd);
    unlink(path);
}

static void test_real_pty(lua_State *L)
{
    char slave[64], want[128];
    struct termios t;
    int fd, probe, got, excl = -1, free_fd = lowest_free_fd();

    snprintf(slave, sizeof slave, "%s", run(L, "m, slave = assert(serial.openpty({ baud = 115200 })) return slave"));
    CHECK(strncmp(slave, "/dev/pts/", 9) == 0);
    /* the line is raw before anyone opens the slave */
    probe = open(slave, O_RDWR | O_NOCTTY | O_NONBLOCK);
    CHECK(probe >= 0);
    CHECK(tcgetattr(probe, &t) == 0);
    CHECK((t.c_lflag & (ICANON | ECHO | ISIG | IEXTEN)) == 0);
    CHECK((t.c_oflag & OPOST) == 0);
    CHECK((t.c_iflag & (ICRNL | IXON)) == 0);
    CHECK(cfgetospeed(&t) == B115200);
    close(probe);

    fd = atoi(run(L, "p = assert(serial.open(slave)) return p:fd()"));
    CHECK(fd > 2);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    CHECK(fcntl(atoi(run(L, "return m:fd()")), F_GETFL) & O_NONBLOCK);
    CHECK(tcgetattr(fd, &t) == 0);
    CHECK((t.c_lflag & (ICANON | ECHO | ISIG | IEXTEN)) == 0);
    CHECK(t.c_cc[VMIN] == 1 && t.c_cc[VTIME] == 0);
    CHECK((t.c_cflag & (CLOCAL | CREAD)) == (CLOCAL | CREAD));
    CHECK(cfgetospeed(&t) == B57600);
    /* Exclusive use is a flock, not TIOCEXCL (which would outlive a holder
     * that dies while the pty master keeps the tty alive). */
    probe = open(slave, O_RDWR | O_NOCTTY | O_NONBLOCK);
    CHECK(probe >= 0);
#ifdef TIOCGEXCL
    /* Every kernel since 3.8 answers TIOCGEXCL; qemu-user (make board-test)
     * does not translate it and says ENOSYS: there only the flock is seen. */
    got = ioctl(probe, TIOCGEXCL, &excl);
    if (got != 0 && errno == ENOSYS)
        fprintf(stderr, "%s:%d: TIOCGEXCL not implemented here (an emulator): not checked\n",
                __FILE__, __LINE__);
    else
        CHECK(got == 0 && excl == 0);
#else
    (void)excl;
    (void)got;
#endif
    CHECK(flock(probe, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK);
    run(L, "p:close()");
    CHECK(flock(probe, LOCK_EX | LOCK_NB) == 0);
    close(probe);
    snprintf(want, sizeof want, "serial port pty master of %s (closed)", slave);
    CHECK_STR(run(L, "m:close() return tostring(m)"), want);
    CHECK(lowest_free_fd() == free_fd);
}

int main(void)
{
    lua_State *L = luaL_newstate();

    luaL_openlibs(L);
    luaL_requiref(L, "serial", luaopen_fotahost_serial_core, 1);
    lua_pop(L, 1);
    test_fake_driver(L);
    test_real_pty(L);
    lua_close(L);
    return UNIT_END();
}
