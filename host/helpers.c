/*
 * helpers.c: what every native module shares: the two shapes of an
 * expected failure, and the registration of an object class.
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

void fh_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods)
{
    luaL_newmetatable(L, name);
    luaL_setfuncs(L, meta, 0);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index"); /* mt.__index = methods */
    lua_pop(L, 1);
}
