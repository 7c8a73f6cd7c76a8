/*
 * helpers.c: what every native module shares: the two shapes of an
 * expected failure, non-blocking reads and their failures, and the
 * registration of an object class.
 */
#include <errno.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fotahost.h"

int fh_result_errno(lua_State *L, int err, const char *what)
{
    luaL_pushfail(L);
    if (what != NULL)
        lua_pushfstring(L, "%s: %s", what, strerror(err));
    else
        lua_pushstring(L, strerror(err));
    lua_pushinteger(L, err);
    return 3;
}

int fh_result_msg(lua_State *L, const char *fmt, ...)
{
    va_list ap;

    luaL_pushfail(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    return 2;
}

void fh_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index"); /* mt.__index = methods */
    lua_pop(L, 1);
}

int fh_io_failure(lua_State *L, int err, int closed_a, int closed_b, const char *what)
{
    if (err == EAGAIN || err == EWOULDBLOCK) {
        lua_pushnil(L);
        lua_pushliteral(L, "wouldblock");
        return 2;
    }
    if (err != 0 && (err == closed_a || err == closed_b)) {
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    return fh_result_errno(L, err, what);
}

int fh_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

int fh_read_available(lua_State *L, int fd, size_t max, int closed_a, int closed_b,
                      const char *what)
{
    luaL_Buffer b;
    char *buf = luaL_buffinitsize(L, &b, max);
    ssize_t n;

    do
        n = read(fd, buf, max);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return fh_io_failure(L, errno, closed_a, closed_b, what);
    if (n == 0) { /* end of file; a hung-up tty reads so too */
        lua_pushnil(L);
        lua_pushliteral(L, "closed");
        return 2;
    }
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

int fh_stream_read(lua_State *L, int fd, int closed_a, int closed_b, const char *what)
{
    lua_Integer max = luaL_optinteger(L, 2, 4096);

    luaL_argcheck(L, max > 0, 2, "size must be positive");
    if (max > 65536) /* a tty or socket hands out a few KiB a read: this bounds the buffer */
        max = 65536;
    return fh_read_available(L, fd, (size_t)max, closed_a, closed_b, what);
}

int fh_stream_write(lua_State *L, int fd, int send_flags, int closed_a, int closed_b,
                    const char *what)
{
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    size_t from, left;
    ssize_t n;

    luaL_argcheck(L, i >= 1 && (size_t)(i - 1) <= len, 3, "index out of range");
    from = (size_t)(i - 1);
    left = len - from;
    if (left == 0) {
        lua_pushinteger(L, 0);
        return 1;
    }
    do
        n = send_flags >= 0 ? send(fd, data + from, left, send_flags)
                            : write(fd, data + from, left);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return fh_io_failure(L, errno, closed_a, closed_b, what);
    lua_pushinteger(L, n);
    return 1;
}
