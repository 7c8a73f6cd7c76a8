/*
 * preload.c: the native modules compiled into fotahost.
 *
 * They go into package.preload, not into globals: a script gets one with
 * `require`, exactly as it would a .so plugin, so a module can move between
 * built-in and plugin without any script noticing.
 */
#include "fotahost.h"

#include <lua-cjson.h> /* needs lua.h first */

int luaopen_cjson_safe(lua_State *L);

static const luaL_Reg builtins[] = {
    {"fotahost.host", luaopen_fotahost_host},
    {"fotahost.poll", luaopen_fotahost_poll},
    {"fotahost.sys", luaopen_fotahost_sys},
    {"cjson", luaopen_cjson},
    {"cjson.safe", luaopen_cjson_safe},
    {NULL, NULL},
};

void fh_open_builtins(lua_State *L)
{
    const luaL_Reg *m;

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (m = builtins; m->name != NULL; m++) {
        lua_pushcfunction(L, m->func);
        lua_setfield(L, -2, m->name);
    }
    lua_pop(L, 1);
}
