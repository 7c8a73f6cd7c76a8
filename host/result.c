/*
 * result.c: the two shapes of an expected failure, shared by every module.
 */
#include <stdarg.h>
#include <string.h>

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
