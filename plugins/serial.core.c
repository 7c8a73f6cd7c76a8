/*
 * serial.core.c: `fotahost.serial.core`, termios serial ports: the link to
 * the MCU's UART (Serial1 on the 7688 Duo, /dev/ttyS0 at 57600 baud) and
 * the pseudo-terminals that stand in for it in tests and on the virtual
 * board.
 *
 *   local core = require "fotahost.serial.core"
 *   local port <close> = assert(core.open("/dev/ttyS0", { baud = 57600 }))
 *   port:write_available("1")            -- bytes written, or nil, "wouldblock"
 *   local data, why = port:read_available(64)
 *
 * Only non-blocking primitives live here: the fd is opened O_NONBLOCK and
 * every read or write returns at once, "wouldblock" when it cannot proceed.
 * Waiting, with a timeout and under the scheduler, is the Lua side's job
 * (scripts/fotahost/serial.lua). The two exceptions are documented
 * where they are: drain() and close() wait for bytes already written to
 * leave the UART, as the kernel does.
 *
 * Ports are always raw (no echo, no line editing, no CR/LF translation, no
 * software flow control): the MCU speaks bytes, not a terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <unistd.h>

#include "fotahost.h"

#define SERIAL_MT "fotahost.serial.core.port"

typedef struct {
    int fd;       /* -1 once closed */
    int excl;     /* we set TIOCEXCL and hold the flock: undone on close */
    char name[];  /* the path opened, for messages */
} Port;

/* What open() and set() may change; get() reads the same fields back. */
typedef struct {
    lua_Integer baud;
    speed_t speed;
    int data_bits; /* 5..8 */
    int parity;    /* 0 none, 1 even, 2 odd */
    int stop_bits; /* 1 or 2 */
    int rtscts;
    int exclusive;
} Settings;

/* Which fields of a Settings an options table gave. */
enum { SET_BAUD = 1, SET_DATA = 2, SET_PARITY = 4, SET_STOP = 8, SET_RTSCTS = 16, SET_EXCL = 32 };

static const Settings default_settings = { 57600, B57600, 8, 0, 1, 0, 1 };

static const char *const parity_names[] = { "none", "even", "odd", NULL };
static const char parity_letters[] = "NEO";

/* The rates termios can name; anything else is refused. */
static const struct {
    lua_Integer baud;
    speed_t speed;
} rates[] = {
    {50, B50}, {75, B75}, {110, B110}, {134, B134}, {150, B150}, {200, B200},
    {300, B300}, {600, B600}, {1200, B1200}, {1800, B1800}, {2400, B2400},
    {4800, B4800}, {9600, B9600}, {19200, B19200}, {38400, B38400},
#ifdef B57600
    {57600, B57600},
#endif
#ifdef B115200
    {115200, B115200},
#endif
#ifdef B230400
    {230400, B230400},
#endif
#ifdef B460800
    {460800, B460800},
#endif
#ifdef B500000
    {500000, B500000},
#endif
#ifdef B576000
    {576000, B576000},
#endif
#ifdef B921600
    {921600, B921600},
#endif
#ifdef B1000000
    {1000000, B1000000},
#endif
#ifdef B1152000
    {1152000, B1152000},
#endif
#ifdef B1500000
    {1500000, B1500000},
#endif
#ifdef B2000000
    {2000000, B2000000},
#endif
#ifdef B2500000
    {2500000, B2500000},
#endif
#ifdef B3000000
    {3000000, B3000000},
#endif
#ifdef B3500000
    {3500000, B3500000},
#endif
#ifdef B4000000
    {4000000, B4000000},
#endif
};

#define NRATES (sizeof rates / sizeof rates[0])

static int speed_of(lua_Integer baud, speed_t *speed)
{
    size_t i;

    for (i = 0; i < NRATES; i++)
        if (rates[i].baud == baud) {
            *speed = rates[i].speed;
            return 1;
        }
    return 0;
}

static lua_Integer baud_of(speed_t speed)
{
    size_t i;

    for (i = 0; i < NRATES; i++)
        if (rates[i].speed == speed)
            return rates[i].baud;
    return 0;
}

/* ------------------------------------------------------------ options */

static lua_Integer opt_integer(lua_State *L, int arg, const char *key)
{
    int isnum;
    lua_Integer v = lua_tointegerx(L, -1, &isnum);

    if (!isnum || lua_type(L, -1) != LUA_TNUMBER) {
        const char *got = lua_type(L, -1) == LUA_TNUMBER ? luaL_tolstring(L, -1, NULL)
                                                          : luaL_typename(L, -1);
        luaL_argerror(L, arg, lua_pushfstring(L, "%s must be an integer, not %s", key, got));
    }
    return v;
}

static int opt_boolean(lua_State *L, int arg, const char *key)
{
    if (!lua_isboolean(L, -1))
        luaL_argerror(L, arg, lua_pushfstring(L, "%s must be a boolean, not %s", key,
                                              luaL_typename(L, -1)));
    return lua_toboolean(L, -1);
}

/*
 * Reads the options table at `arg` (absent or nil: none) into `s`, and
 * returns which fields it gave. Misuse raises, naming the option: a
 * misspelt key must not be silently ignored on a device. The baud rate is
 * only checked to be a positive integer here; whether the platform has it
 * is an expected failure the caller reports.
 */
static int read_options(lua_State *L, int arg, Settings *s)
{
    int given = 0;

    if (lua_isnoneornil(L, arg))
        return 0;
    luaL_checktype(L, arg, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, arg) != 0) { /* ... key, value */
        const char *key = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (key == NULL) {
            luaL_argerror(L, arg, "options must be named, as in { baud = 57600 }");
        } else if (strcmp(key, "baud") == 0) {
            s->baud = opt_integer(L, arg, key);
            luaL_argcheck(L, s->baud > 0, arg, "baud must be a positive integer");
            given |= SET_BAUD;
        } else if (strcmp(key, "data_bits") == 0) {
            lua_Integer v = opt_integer(L, arg, key);
            luaL_argcheck(L, v >= 5 && v <= 8, arg, "data_bits must be 5, 6, 7 or 8");
            s->data_bits = (int)v;
            given |= SET_DATA;
        } else if (strcmp(key, "parity") == 0) {
            const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "";
            int i;
            for (i = 0; parity_names[i] != NULL && strcmp(v, parity_names[i]) != 0; i++)
                ;
            luaL_argcheck(L, parity_names[i] != NULL, arg,
                          "parity must be \"none\", \"even\" or \"odd\"");
            s->parity = i;
            given |= SET_PARITY;
        } else if (strcmp(key, "stop_bits") == 0) {
            lua_Integer v = opt_integer(L, arg, key);
            luaL_argcheck(L, v == 1 || v == 2, arg, "stop_bits must be 1 or 2");
            s->stop_bits = (int)v;
            given |= SET_STOP;
        } else if (strcmp(key, "rtscts") == 0) {
            s->rtscts = opt_boolean(L, arg, key);
            given |= SET_RTSCTS;
        } else if (strcmp(key, "exclusive") == 0) {
            s->exclusive = opt_boolean(L, arg, key);
            given |= SET_EXCL;
        } else {
            luaL_argerror(L, arg, lua_pushfstring(L, "unknown option '%s'", key));
        }
        lua_pop(L, 1); /* ... key */
    }
    return given;
}

/* ------------------------------------------------------------ termios */

static void settings_from_termios(const struct termios *t, Settings *s)
{
    switch (t->c_cflag & CSIZE) {
    case CS5: s->data_bits = 5; break;
    case CS6: s->data_bits = 6; break;
    case CS7: s->data_bits = 7; break;
    default: s->data_bits = 8; break;
    }
    s->speed = cfgetospeed(t);
    s->baud = baud_of(s->speed);
    s->parity = !(t->c_cflag & PARENB) ? 0 : (t->c_cflag & PARODD) ? 2 : 1;
    s->stop_bits = (t->c_cflag & CSTOPB) ? 2 : 1;
    s->rtscts = (t->c_cflag & CRTSCTS) != 0;
}

/* Raw mode (cfmakeraw) plus every field of `s`, on top of what the driver had. */
static void termios_from_settings(struct termios *t, const Settings *s)
{
    static const tcflag_t sizes[] = { CS5, CS6, CS7, CS8 };

    cfmakeraw(t);
    /* no modem control lines to wait for, and a receiver that receives */
    t->c_cflag |= CLOCAL | CREAD;
    /* with O_NONBLOCK, VMIN 0 would make "no data" read as end of file */
    t->c_cc[VMIN] = 1;
    t->c_cc[VTIME] = 0;
    cfsetispeed(t, s->speed);
    cfsetospeed(t, s->speed);
    t->c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    t->c_cflag |= sizes[s->data_bits - 5];
    t->c_iflag &= ~(tcflag_t)(INPCK | IXON | IXOFF | IXANY);
    if (s->parity != 0) {
        t->c_cflag |= PARENB | (s->parity == 2 ? PARODD : 0);
        t->c_iflag |= INPCK; /* check it on input too; a bad byte reads as 0 */
    }
    if (s->stop_bits == 2)
        t->c_cflag |= CSTOPB;
    if (s->rtscts)
        t->c_cflag |= CRTSCTS;
}

static void format_settings(char *buf, size_t len, const Settings *s)
{
    snprintf(buf, len, "%lld %d%c%d", (long long)s->baud, s->data_bits,
             parity_letters[s->parity], s->stop_bits);
}

/*
 * Takes or gives up exclusive use, with flock: what a second fotahost (or
 * pyserial, or anything that locks) runs into. Not TIOCEXCL: that is a
 * property of the tty, not of our open file, so a holder that dies leaves
 * it set for as long as anything keeps the tty alive (the virtual board's
 * pty master does), and every later open fails; root ignores it anyway.
 * The kernel drops a dead holder's flock.
 */
static int set_exclusive(Port *p, int on)
{
    if (on && !p->excl) {
        if (flock(p->fd, LOCK_EX | LOCK_NB) != 0)
            return errno == EWOULDBLOCK ? EBUSY : errno;
        p->excl = 1;
    } else if (!on && p->excl) {
        flock(p->fd, LOCK_UN);
        p->excl = 0;
    }
    return 0;
}

/* `fail, "<name>: <strerror(err)><note>", err`: an errno with a hint. */
static int errno_note(lua_State *L, const char *name, int err, const char *note)
{
    luaL_pushfail(L);
    lua_pushfstring(L, "%s: %s%s", name, strerror(err), note);
    lua_pushinteger(L, err);
    return 3;
}

static int busy_result(lua_State *L, const char *name)
{
    return errno_note(L, name, EBUSY, " (in use by another program)");
}

static int unsupported_baud(lua_State *L, const char *name, lua_Integer baud)
{
    return fh_result_msg(L, "%s: unsupported baud rate %I", name, baud);
}

/*
 * Applies `s` and reads it back: a driver may keep its old rate, round to
 * one it has, or force 8N1 (Linux ptys do since 5.19), instead of failing,
 * and that must not pass for success. glibc notices some of these itself
 * and fails with EINVAL: the read-back then names what was refused. On any
 * failure the line is put back as it was. Returns the number of results to
 * return on failure, 0 on success.
 */
static int apply_settings(lua_State *L, Port *p, const Settings *s)
{
    struct termios old, t;
    Settings got;
    int err = 0;

    if (tcgetattr(p->fd, &old) != 0)
        return fh_result_errno(L, errno, p->name);
    t = old;
    termios_from_settings(&t, s);
    if (tcsetattr(p->fd, TCSANOW, &t) != 0)
        err = errno;
    if (err != 0 && err != EINVAL) {
        tcsetattr(p->fd, TCSANOW, &old);
        return fh_result_errno(L, err, p->name);
    }
    if (tcgetattr(p->fd, &t) != 0) {
        err = errno;
        tcsetattr(p->fd, TCSANOW, &old);
        return fh_result_errno(L, err, p->name);
    }
    settings_from_termios(&t, &got);
    if (got.speed != s->speed) {
        tcsetattr(p->fd, TCSANOW, &old);
        return unsupported_baud(L, p->name, s->baud);
    }
    if (got.data_bits != s->data_bits || got.parity != s->parity ||
        got.stop_bits != s->stop_bits || got.rtscts != s->rtscts) {
        char want[48], have[48];
        tcsetattr(p->fd, TCSANOW, &old);
        format_settings(want, sizeof want, s);
        format_settings(have, sizeof have, &got);
        return fh_result_msg(L, "%s: the driver did not accept %s%s (it gave %s%s)", p->name, want,
                             s->rtscts ? " rtscts" : "", have, got.rtscts ? " rtscts" : "");
    }
    if (err != 0) {
        tcsetattr(p->fd, TCSANOW, &old);
        return fh_result_errno(L, err, p->name);
    }
    return 0;
}

/* ------------------------------------------------------------ objects */

/* A closed port named `name`, with room for a name of `room` bytes. */
static Port *new_port(lua_State *L, const char *name, size_t room)
{
    size_t len = strlen(name);
    Port *p;

    if (room < len + 1)
        room = len + 1;
    p = (Port *)lua_newuserdatauv(L, sizeof(Port) + room, 0);
    p->fd = -1;
    p->excl = 0;
    memcpy(p->name, name, len + 1);
    luaL_setmetatable(L, SERIAL_MT);
    return p;
}

static Port *check_port(lua_State *L)
{
    Port *p = (Port *)luaL_checkudata(L, 1, SERIAL_MT);

    if (p->fd < 0)
        luaL_error(L, "attempt to use a closed serial port");
    return p;
}

/* Closes whatever was opened when open() gives up half way. */
static void abandon(Port *p)
{
    if (p->fd >= 0) {
        set_exclusive(p, 0);
        close(p->fd);
        p->fd = -1;
    }
}

/*
 * serial.open(path[, opts]) -> port
 *                           | fail, "<path>: <cause>", errno
 *                           | fail, "<path>: unsupported baud rate N"
 * opts: baud (57600), data_bits (8), parity ("none"), stop_bits (1),
 * rtscts (false), exclusive (true).
 */
static int serial_open(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    Settings s = default_settings;
    struct termios t;
    Port *p;
    int err, nret;

    read_options(L, 2, &s);
    if (!speed_of(s.baud, &s.speed))
        return unsupported_baud(L, path, s.baud);
    /* the object first, so that nothing raised later can leak the fd */
    p = new_port(L, path, 0);
    /* no controlling tty: a serial line must never send us SIGHUP/SIGINT */
    p->fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (p->fd < 0) {
        err = errno;
        return err == EBUSY ? busy_result(L, path) : fh_result_errno(L, err, path);
    }
    if (tcgetattr(p->fd, &t) != 0) {
        err = errno;
        abandon(p);
        if (err == ENOTTY || err == EINVAL) {
            luaL_pushfail(L);
            lua_pushfstring(L, "%s: not a serial port (%s)", path, strerror(ENOTTY));
            lua_pushinteger(L, ENOTTY);
            return 3;
        }
        return fh_result_errno(L, err, path);
    }
    if (s.exclusive && (err = set_exclusive(p, 1)) != 0) {
        abandon(p);
        return err == EBUSY ? busy_result(L, path) : fh_result_errno(L, err, path);
    }
    if ((nret = apply_settings(L, p, &s)) != 0) {
        abandon(p);
        return nret;
    }
    return 1;
}

/*
 * serial.openpty([opts]) -> master_port, slave_path | fail, msg, errno
 * A pseudo-terminal pair: the master as a port, the slave's path for
 * whoever plays the other end (serial.open(slave_path)). Its line is raw
 * and set to opts (exclusive does not apply). Until the slave is first
 * opened the master just has nothing to read; once every opener of the
 * slave has closed it, the master reads what was left, then "closed".
 */
static int serial_openpty(lua_State *L)
{
    Settings s = default_settings;
    char slave[128];
    Port *p;
    int fd, nret;

    if ((read_options(L, 1, &s) & SET_EXCL) && s.exclusive)
        luaL_argerror(L, 1, "a pty master cannot be exclusive; open its slave with exclusive = true");
    s.exclusive = 0;
    if (!speed_of(s.baud, &s.speed))
        return unsupported_baud(L, "/dev/ptmx", s.baud);
    /* room for the name "pty master of <slave>", written once it is known */
    p = new_port(L, "/dev/ptmx", sizeof slave + 16);
    p->fd = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (p->fd < 0)
        return fh_result_errno(L, errno, "/dev/ptmx");
    fd = p->fd;
    if (grantpt(fd) != 0 || unlockpt(fd) != 0 || ptsname_r(fd, slave, sizeof slave) != 0) {
        int err = errno;
        abandon(p);
        return fh_result_errno(L, err, "/dev/ptmx");
    }
    snprintf(p->name, sizeof slave + 16, "pty master of %s", slave);
    if ((nret = apply_settings(L, p, &s)) != 0) {
        abandon(p);
        return nret;
    }
    lua_pushstring(L, slave);
    return 2;
}

/* port:fd() -> integer, for the scheduler's wait_fd and for poll */
static int port_fd(lua_State *L)
{
    lua_pushinteger(L, check_port(L)->fd);
    return 1;
}

/* port:path() -> the path opened ("pty master of /dev/pts/N" for a master) */
static int port_path(lua_State *L)
{
    lua_pushstring(L, check_port(L)->name);
    return 1;
}

/*
 * EIO is what a pty reports once its other side has gone, and what a tty
 * reports once hung up (a USB adapter unplugged): for the reader or
 * writer, the line is closed.
 */
#define TTY_CLOSED EIO

/*
 * port:read_available([max]) -> data (1..max bytes, default max 4096)
 *                             | nil, "wouldblock" | nil, "closed"
 *                             | fail, "<path>: <strerror>", errno
 */
static int port_read_available(lua_State *L)
{
    Port *p = check_port(L);

    return fh_stream_read(L, p->fd, TTY_CLOSED, 0, p->name);
}

/*
 * port:write_available(data[, i]) -> bytes written (0..#data-i+1)
 *                                  | nil, "wouldblock" | nil, "closed"
 *                                  | fail, "<path>: <strerror>", errno
 * Writes data from byte i on (default 1), as much as the driver takes now.
 */
static int port_write_available(lua_State *L)
{
    Port *p = check_port(L);

    return fh_stream_write(L, p->fd, -1, TTY_CLOSED, 0, p->name);
}

/*
 * port:pending() -> bytes waiting to be read, bytes not yet sent
 *                 | fail, msg, errno
 * The second count is the driver's buffer (TIOCOUTQ), not the UART's FIFO:
 * once it is 0, drain() waits at most for the FIFO to empty.
 */
static int port_pending(lua_State *L)
{
    Port *p = check_port(L);
    int in = 0, out = 0;

    if (ioctl(p->fd, TIOCINQ, &in) != 0 || ioctl(p->fd, TIOCOUTQ, &out) != 0)
        return fh_result_errno(L, errno, p->name);
    lua_pushinteger(L, in);
    lua_pushinteger(L, out);
    return 2;
}

/*
 * port:drain() -> true | fail, msg, errno
 * tcdrain(): BLOCKS the process until every byte already written has left
 * the UART. The wait is bounded by what was written (4 KiB at 57600 baud
 * is 0.7 s) unless rtscts is on and the other side holds CTS. The Lua
 * port:drain(timeout) waits on pending() under the scheduler first, so
 * that this only waits for the FIFO. Not retried on EINTR, so that an
 * interrupt stops it.
 */
static int port_drain(lua_State *L)
{
    Port *p = check_port(L);

    if (tcdrain(p->fd) != 0)
        return fh_result_errno(L, errno, p->name);
    lua_pushboolean(L, 1);
    return 1;
}

/* port:flush([which]) -> true | fail, msg, errno; which: "in", "out", "both" (default) */
static int port_flush(lua_State *L)
{
    static const char *const names[] = { "in", "out", "both", NULL };
    static const int queues[] = { TCIFLUSH, TCOFLUSH, TCIOFLUSH };
    Port *p = check_port(L);
    int q = queues[luaL_checkoption(L, 2, "both", names)];

    if (tcflush(p->fd, q) != 0)
        return fh_result_errno(L, errno, p->name);
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * port:set(opts) -> true | fail, msg[, errno]
 * Changes only the settings given; the line stays raw.
 */
static int port_set(lua_State *L)
{
    Port *p = check_port(L);
    Settings s, want;
    struct termios t;
    int given, nret;

    memset(&want, 0, sizeof want);
    luaL_checktype(L, 2, LUA_TTABLE);
    given = read_options(L, 2, &want);
    if ((given & SET_BAUD) && !speed_of(want.baud, &want.speed))
        return unsupported_baud(L, p->name, want.baud);
    if (tcgetattr(p->fd, &t) != 0)
        return fh_result_errno(L, errno, p->name);
    settings_from_termios(&t, &s);
    if (given & SET_BAUD) { s.baud = want.baud; s.speed = want.speed; }
    if (given & SET_DATA) s.data_bits = want.data_bits;
    if (given & SET_PARITY) s.parity = want.parity;
    if (given & SET_STOP) s.stop_bits = want.stop_bits;
    if (given & SET_RTSCTS) s.rtscts = want.rtscts;
    if (given & SET_EXCL) {
        int err = set_exclusive(p, want.exclusive);
        if (err == EBUSY)
            return busy_result(L, p->name);
        if (err != 0)
            return fh_result_errno(L, err, p->name);
    }
    if ((nret = apply_settings(L, p, &s)) != 0)
        return nret;
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * port:get() -> { baud, data_bits, parity, stop_bits, rtscts, exclusive }
 *             | fail, msg, errno
 * Read back from the driver (termios), not remembered: what the line is.
 */
static int port_get(lua_State *L)
{
    Port *p = check_port(L);
    struct termios t;
    Settings s;

    if (tcgetattr(p->fd, &t) != 0)
        return fh_result_errno(L, errno, p->name);
    settings_from_termios(&t, &s);
    lua_createtable(L, 0, 6);
    if (s.baud != 0) { /* a rate set behind our back that termios cannot name */
        lua_pushinteger(L, s.baud);
        lua_setfield(L, -2, "baud");
    }
    lua_pushinteger(L, s.data_bits);
    lua_setfield(L, -2, "data_bits");
    lua_pushstring(L, parity_names[s.parity]);
    lua_setfield(L, -2, "parity");
    lua_pushinteger(L, s.stop_bits);
    lua_setfield(L, -2, "stop_bits");
    lua_pushboolean(L, s.rtscts);
    lua_setfield(L, -2, "rtscts");
    lua_pushboolean(L, p->excl);
    lua_setfield(L, -2, "exclusive");
    return 1;
}

/*
 * port:close() -> true | fail, msg, errno. Idempotent; __close and __gc
 * too (which ignore the result). Like drain(), the kernel's close waits for
 * bytes already written to leave (a UART's closing_wait bounds it).
 */
static int port_close(lua_State *L)
{
    Port *p = (Port *)luaL_checkudata(L, 1, SERIAL_MT);
    int fd = p->fd;

    if (fd < 0) {
        lua_pushboolean(L, 1);
        return 1;
    }
    set_exclusive(p, 0);
    p->fd = -1;
    if (close(fd) != 0 && errno != EINTR)
        return fh_result_errno(L, errno, p->name);
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * __gc: output still queued is thrown away first, so that the kernel's
 * close does not wait for it (up to a UART's closing_wait, 30 s by default)
 * inside the garbage collector, freezing the scheduler. A program that
 * wants its bytes sent drains, or closes with serial_port's close().
 */
static int port_gc(lua_State *L)
{
    Port *p = (Port *)luaL_checkudata(L, 1, SERIAL_MT);

    if (p->fd >= 0) {
        set_exclusive(p, 0);
        tcflush(p->fd, TCOFLUSH);
        close(p->fd);
        p->fd = -1;
    }
    return 0;
}

/* "serial port /dev/ttyS0 (57600 8N1)", or "(closed)" */
static int port_tostring(lua_State *L)
{
    Port *p = (Port *)luaL_checkudata(L, 1, SERIAL_MT);
    struct termios t;
    Settings s;
    char desc[48];

    if (p->fd < 0) {
        lua_pushfstring(L, "serial port %s (closed)", p->name);
    } else if (tcgetattr(p->fd, &t) != 0) {
        lua_pushfstring(L, "serial port %s", p->name);
    } else {
        settings_from_termios(&t, &s);
        format_settings(desc, sizeof desc, &s);
        lua_pushfstring(L, "serial port %s (%s%s)", p->name, desc, s.rtscts ? " rtscts" : "");
    }
    return 1;
}

/* serial.bauds() -> the rates this platform has, ascending */
static int serial_bauds(lua_State *L)
{
    size_t i;

    lua_createtable(L, (int)NRATES, 0);
    for (i = 0; i < NRATES; i++) {
        lua_pushinteger(L, rates[i].baud);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static const luaL_Reg port_methods[] = {
    {"fd", port_fd},
    {"path", port_path},
    {"read_available", port_read_available},
    {"write_available", port_write_available},
    {"pending", port_pending},
    {"drain", port_drain},
    {"flush", port_flush},
    {"set", port_set},
    {"get", port_get},
    {"close", port_close},
    {NULL, NULL},
};

static const luaL_Reg port_meta[] = {
    {"__index", NULL}, /* set by fh_new_class */
    {"__gc", port_gc},
    {"__close", port_close},
    {"__tostring", port_tostring},
    {NULL, NULL},
};

static const luaL_Reg serial_funcs[] = {
    {"open", serial_open},
    {"openpty", serial_openpty},
    {"bauds", serial_bauds},
    {NULL, NULL},
};

int luaopen_fotahost_serial_core(lua_State *L);

int luaopen_fotahost_serial_core(lua_State *L)
{
    fh_new_class(L, SERIAL_MT, port_meta, port_methods);
    luaL_newlib(L, serial_funcs);
    return 1;
}
