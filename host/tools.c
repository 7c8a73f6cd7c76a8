/*
 * tools.c: bundled tools (scripts/tools/NAME.lua) and the `fotahost.host`
 * module, which tells scripts what the host is and where it looks.
 */
#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "fallback.h"
#include "fotahost.h"
#include "paths.h"

#define TOOL_SUFFIX ".lua"

int fh_find_tool(lua_State *L, const char *name)
{
    lua_Integer i, n;
    struct stat st;

    fh_push_paths(L);
    lua_getfield(L, -1, "scripts");
    n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_pushfstring(L, "%s/tools/%s" TOOL_SUFFIX, lua_tostring(L, -1), name);
        if (stat(lua_tostring(L, -1), &st) == 0 && S_ISREG(st.st_mode)) {
            lua_replace(L, -4); /* the result takes the paths table's slot */
            lua_pop(L, 2);
            return 1;
        }
        lua_pop(L, 2);
    }
    lua_pop(L, 2);
    return 0;
}

/* Adds the tool names found in `dir` as keys of the table on top. */
static void collect_tools(lua_State *L, const char *dir)
{
    DIR *d;
    struct dirent *e;
    size_t slen = sizeof TOOL_SUFFIX - 1;

    lua_pushfstring(L, "%s/tools", dir);
    d = opendir(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (d == NULL)
        return;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);

        if (len > slen && e->d_name[0] != '.' &&
            strcmp(e->d_name + len - slen, TOOL_SUFFIX) == 0) {
            lua_pushlstring(L, e->d_name, len - slen);
            lua_pushboolean(L, 1);
            lua_rawset(L, -3);
        }
    }
    closedir(d);
}

void fh_push_tool_list(lua_State *L)
{
    lua_Integer i, n, k = 0;

    lua_newtable(L); /* set of names */
    fh_push_paths(L);
    lua_getfield(L, -1, "scripts");
    n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        lua_pushvalue(L, -4);
        collect_tools(L, lua_tostring(L, -2));
        lua_pop(L, 2);
    }
    lua_pop(L, 2);
    lua_newtable(L); /* ... set, list */
    lua_pushnil(L);
    while (lua_next(L, -3) != 0) {
        lua_pop(L, 1);
        lua_pushvalue(L, -1);
        lua_rawseti(L, -3, ++k);
    }
    lua_remove(L, -2);
    /* sort with table.sort: the list is small and this keeps C short */
    lua_getglobal(L, "table");
    if (lua_istable(L, -1)) {
        lua_getfield(L, -1, "sort");
        lua_pushvalue(L, -3);
        lua_call(L, 1, 0);
    }
    lua_pop(L, 1);
}

static int host_tools(lua_State *L)
{
    fh_push_tool_list(L);
    return 1;
}

/* host.fallbacks(): the overrides the bundled scripts stood in for. */
static int host_fallbacks(lua_State *L)
{
    return fh_push_fallbacks(L);
}

static int host_find_tool(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);

    if (!fh_find_tool(L, name))
        return fh_result_msg(L, "no tool named '%s'", name);
    return 1;
}

/* Set by host.reexec(); read by main() after lua_close. Not Lua state. */
static int reexec_requested;

int fh_reexec_requested(void)
{
    return reexec_requested;
}

/*
 * host.reexec(): once the script ends and the Lua state is closed, the
 * host execs itself again with the same arguments (the app's reload).
 * Returns nothing; the script should end soon after.
 */
static int host_reexec(lua_State *L)
{
    (void)L;
    reexec_requested = 1;
    return 0;
}

/* Copies the fields of the paths table into the module table on top. */
static void copy_paths(lua_State *L)
{
    fh_push_paths(L);
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_settable(L, -5);
    }
    lua_pop(L, 1);
}

int luaopen_fotahost_host(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"tools", host_tools},
        {"find_tool", host_find_tool},
        {"reexec", host_reexec},
        {"fallbacks", host_fallbacks},
        {NULL, NULL},
    };

    luaL_newlib(L, funcs);
    lua_pushliteral(L, FOTAHOST_VERSION);
    lua_setfield(L, -2, "version");
    lua_pushliteral(L, LUA_RELEASE);
    lua_setfield(L, -2, "lua_version");
    copy_paths(L);
    return 1;
}
