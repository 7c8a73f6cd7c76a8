/*
 * sysinfo.c: an example fotahost plugin, the model to copy for your own.
 *
 *   local sysinfo = require "sysinfo"
 *   print(sysinfo.uptime())            --> 1234.0
 *   local l1, l5, l15 = sysinfo.loadavg()
 *   local free, total = sysinfo.memory()
 *
 * A plugin is one C file with one luaopen_<name> function, built as a .so
 * that links no liblua (the fotahost binary provides the Lua API and the
 * helpers of fotahost.h). Put the .so in a plugin directory (see
 * `fotahost --paths`; /etc/fotahost/plugins on the board) and `require` it.
 */
#include <errno.h>
#include <sys/sysinfo.h>

#include <fotahost.h>

static int get(lua_State *L, struct sysinfo *si)
{
    if (sysinfo(si) != 0)
        return fh_result_errno(L, errno, "sysinfo");
    return 0;
}

/* sysinfo.uptime() -> seconds since boot | fail, msg, errno */
static int l_uptime(lua_State *L)
{
    struct sysinfo si;
    int n = get(L, &si);

    if (n != 0)
        return n;
    lua_pushinteger(L, (lua_Integer)si.uptime);
    return 1;
}

/* sysinfo.loadavg() -> 1, 5 and 15 minute load averages | fail, msg, errno */
static int l_loadavg(lua_State *L)
{
    struct sysinfo si;
    int i, n = get(L, &si);

    if (n != 0)
        return n;
    for (i = 0; i < 3; i++)
        lua_pushnumber(L, (lua_Number)si.loads[i] / (lua_Number)(1 << SI_LOAD_SHIFT));
    return 3;
}

/* sysinfo.memory() -> free bytes, total bytes | fail, msg, errno */
static int l_memory(lua_State *L)
{
    struct sysinfo si;
    int n = get(L, &si);

    if (n != 0)
        return n;
    lua_pushinteger(L, (lua_Integer)si.freeram * si.mem_unit);
    lua_pushinteger(L, (lua_Integer)si.totalram * si.mem_unit);
    return 2;
}

static const luaL_Reg funcs[] = {
    {"uptime", l_uptime},
    {"loadavg", l_loadavg},
    {"memory", l_memory},
    {NULL, NULL},
};

int luaopen_sysinfo(lua_State *L);

int luaopen_sysinfo(lua_State *L)
{
    luaL_newlib(L, funcs);
    return 1;
}
