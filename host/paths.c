/*
 * paths.c: search paths for scripts, tools and plugins (see paths.h).
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fotahost.h"
#include "paths.h"

#ifndef FOTAHOST_DATADIR
#define FOTAHOST_DATADIR "/usr/local/share/fotahost"
#endif
#ifndef FOTAHOST_LIBDIR
#define FOTAHOST_LIBDIR "/usr/local/lib/fotahost"
#endif
#ifndef FOTAHOST_SYSCONFDIR
#define FOTAHOST_SYSCONFDIR "/etc/fotahost"
#endif
#ifndef FOTAHOST_BINDIR
#define FOTAHOST_BINDIR "/usr/local/bin"
#endif

#define SO_TEMPLATES "?.so"

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void fh_push_exe_path(lua_State *L)
{
    char buf[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);

    if (n <= 0) {
        lua_pushnil(L);
        return;
    }
    buf[n] = '\0';
    lua_pushstring(L, buf);
}

void fh_push_dirname(lua_State *L, const char *path)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL)
        lua_pushliteral(L, ".");
    else if (slash == path)
        lua_pushliteral(L, "/");
    else
        lua_pushlstring(L, path, (size_t)(slash - path));
}

int fh_is_checkout(const char *dir)
{
    char buf[PATH_MAX];
    int n;

    n = snprintf(buf, sizeof buf, "%s/host/main.c", dir);
    if (n < 0 || (size_t)n >= sizeof buf || !is_file(buf))
        return 0;
    n = snprintf(buf, sizeof buf, "%s/scripts", dir);
    return n > 0 && (size_t)n < sizeof buf && is_dir(buf);
}

/* Calls fn on each non-empty ';'-separated entry of `list`. */
static void each_entry(const char *list, void (*fn)(luaL_Buffer *, const char *, size_t),
                       luaL_Buffer *b)
{
    const char *p = list;

    while (*p != '\0') {
        const char *end = strchr(p, ';');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);

        if (len > 0)
            fn(b, p, len);
        p += len;
        if (*p == ';')
            p++;
    }
}

/* Appends one entry, with a ';' before it unless it is the first. */
static void add_entry(luaL_Buffer *b, const char *s, size_t len)
{
    if (luaL_bufflen(b) > 0)
        luaL_addchar(b, ';');
    luaL_addlstring(b, s, len);
}

static void add_if_absolute(luaL_Buffer *b, const char *s, size_t len)
{
    if (s[0] == '/')
        add_entry(b, s, len);
}

void fh_push_absolute_only(lua_State *L, const char *path)
{
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    each_entry(path, add_if_absolute, &b);
    luaL_pushresult(&b);
}

void fh_push_expanded(lua_State *L, const char *user, const char *dflt)
{
    luaL_Buffer b;
    const char *p = user, *dd;

    luaL_buffinit(L, &b);
    while ((dd = strstr(p, ";;")) != NULL) {
        luaL_addlstring(&b, p, (size_t)(dd - p));
        luaL_addchar(&b, ';');
        luaL_addstring(&b, dflt);
        luaL_addchar(&b, ';');
        p = dd + 2;
    }
    luaL_addstring(&b, p);
    luaL_pushresult(&b);
}

void fh_push_search_path(lua_State *L, const char *const dirs[], int ndirs,
                         const char *templates, const char *tail)
{
    luaL_Buffer b;
    int i;

    luaL_buffinit(L, &b);
    for (i = 0; i < ndirs; i++) {
        const char *t = templates;

        if (dirs[i] == NULL)
            continue;
        while (*t != '\0') {
            const char *end = strchr(t, ';');
            size_t len = end != NULL ? (size_t)(end - t) : strlen(t);

            if (luaL_bufflen(&b) > 0)
                luaL_addchar(&b, ';');
            luaL_addstring(&b, dirs[i]);
            luaL_addchar(&b, '/');
            luaL_addlstring(&b, t, len);
            t += len;
            if (*t == ';')
                t++;
        }
    }
    if (tail != NULL && *tail != '\0') {
        if (luaL_bufflen(&b) > 0)
            luaL_addchar(&b, ';');
        luaL_addstring(&b, tail);
    }
    luaL_pushresult(&b);
}

static const char *env(const char *name, int use_env)
{
    const char *v = use_env ? getenv(name) : NULL;
    return v != NULL && *v != '\0' ? v : NULL;
}

/* Sets package[field] from the computed default and an optional override. */
static void set_package_path(lua_State *L, int pkg, int desc, const char *field,
                             const char *const dirs[], int ndirs, const char *templates,
                             const char *override)
{
    const char *sys, *dflt;

    lua_getfield(L, pkg, field);
    fh_push_absolute_only(L, luaL_optstring(L, -1, ""));
    sys = lua_tostring(L, -1);
    fh_push_search_path(L, dirs, ndirs, templates, sys);
    dflt = lua_tostring(L, -1);
    if (override != NULL)
        fh_push_expanded(L, override, dflt);
    else
        lua_pushvalue(L, -1);
    lua_pushvalue(L, -1);
    lua_setfield(L, pkg, field);
    lua_setfield(L, desc, field);
    lua_pop(L, 3);
}

/* Stores dirs[] as a sequence (skipping NULLs) in desc[field]. */
static void set_dir_list(lua_State *L, int desc, const char *field,
                         const char *const dirs[], int n)
{
    int i, k = 0;

    lua_createtable(L, n, 0);
    for (i = 0; i < n; i++) {
        if (dirs[i] == NULL)
            continue;
        lua_pushstring(L, dirs[i]);
        lua_rawseti(L, -2, ++k);
    }
    lua_setfield(L, desc, field);
}

/*
 * A checkout is recognised from the binary's own location: the build
 * directory (build/fotahost) or the top (when BUILD=.). Sets desc.exe_dir
 * and, in a checkout, desc.checkout.
 */
static void find_checkout(lua_State *L, int desc, const char *exe)
{
    const char *exe_dir;

    fh_push_dirname(L, exe);
    lua_pushvalue(L, -1);
    lua_setfield(L, desc, "exe_dir");
    exe_dir = lua_tostring(L, -1);
    if (fh_is_checkout(exe_dir))
        lua_pushvalue(L, -1);
    else
        fh_push_dirname(L, exe_dir);
    if (fh_is_checkout(lua_tostring(L, -1)))
        lua_setfield(L, desc, "checkout");
    else
        lua_pop(L, 1);
    lua_pop(L, 1);
}

/*
 * The directory a staged install runs from, or "" for an installed one:
 * a tree laid out with `make install DESTDIR=X` (the board build's root/,
 * a package being built) holds X/usr/bin/fotahost beside
 * X/usr/share/fotahost/scripts, and its binary finds its own scripts and
 * plugins there, never another install's.
 */
static void push_stage(lua_State *L, const char *exe_dir)
{
    size_t n = exe_dir != NULL ? strlen(exe_dir) : 0, b = strlen(FOTAHOST_BINDIR);
    char buf[PATH_MAX];
    int len;

    if (n > b && strcmp(exe_dir + n - b, FOTAHOST_BINDIR) == 0) {
        len = snprintf(buf, sizeof buf, "%.*s%s/scripts", (int)(n - b), exe_dir, FOTAHOST_DATADIR);
        if (len > 0 && (size_t)len < sizeof buf && is_dir(buf)) {
            lua_pushlstring(L, exe_dir, n - b);
            return;
        }
    }
    lua_pushliteral(L, "");
}

/* desc.bundled_scripts, desc.bundled_plugins and, in a checkout,
 * desc.dev_scripts: beside the binary there, else where `make install`
 * puts them. */
static void set_bundled_dirs(lua_State *L, int desc)
{
    const char *checkout, *exe_dir;

    lua_getfield(L, desc, "checkout");
    checkout = lua_tostring(L, -1);
    lua_getfield(L, desc, "exe_dir");
    exe_dir = lua_tostring(L, -1);
    if (checkout != NULL) {
        lua_pushfstring(L, "%s/scripts", checkout);
        lua_setfield(L, desc, "bundled_scripts");
        lua_pushfstring(L, "%s/plugins", exe_dir);
        lua_setfield(L, desc, "bundled_plugins");
        /* Installed, `make install-dev` puts the dev wing among the bundled
         * scripts; a checkout keeps it apart, in dev/scripts. */
        lua_pushfstring(L, "%s/dev/scripts", checkout);
        lua_setfield(L, desc, "dev_scripts");
    } else {
        push_stage(L, exe_dir);
        lua_pushfstring(L, "%s%s/scripts", lua_tostring(L, -1), FOTAHOST_DATADIR);
        lua_setfield(L, desc, "bundled_scripts");
        lua_pushfstring(L, "%s%s/plugins", lua_tostring(L, -1), FOTAHOST_LIBDIR);
        lua_setfield(L, desc, "bundled_plugins");
        lua_pop(L, 1);
    }
    lua_pop(L, 2);
}

void fh_paths_setup(lua_State *L, const char *exe, int use_env)
{
    /* scripts: override, bundled, and in a checkout the development wing's */
    const char *scripts[3] = {NULL, NULL, NULL}, *plugins[2];
    int top = lua_gettop(L), desc, pkg;

    lua_newtable(L); /* desc: its strings stay alive until the end */
    desc = lua_gettop(L);
    if (exe != NULL)
        find_checkout(L, desc, exe);
    set_bundled_dirs(L, desc);

    scripts[0] = env("FOTAHOST_SCRIPTS_DIR", use_env);
    if (scripts[0] == NULL)
        scripts[0] = FOTAHOST_SYSCONFDIR "/scripts";
    plugins[0] = env("FOTAHOST_PLUGINS_DIR", use_env);
    if (plugins[0] == NULL)
        plugins[0] = FOTAHOST_SYSCONFDIR "/plugins";
    lua_getfield(L, desc, "bundled_scripts");
    scripts[1] = lua_tostring(L, -1);
    lua_getfield(L, desc, "bundled_plugins");
    plugins[1] = lua_tostring(L, -1);
    lua_getfield(L, desc, "dev_scripts");
    scripts[2] = lua_tostring(L, -1); /* NULL when installed */

    set_dir_list(L, desc, "scripts", scripts, 3);
    set_dir_list(L, desc, "plugins", plugins, 2);

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_LOADLIBNAME);
    pkg = lua_gettop(L);
    set_package_path(L, pkg, desc, "path", scripts, 3, FH_LUA_TEMPLATES,
                     env("FOTAHOST_PATH", use_env));
    set_package_path(L, pkg, desc, "cpath", plugins, 2, SO_TEMPLATES,
                     env("FOTAHOST_CPATH", use_env));

    lua_pushvalue(L, desc);
    lua_setfield(L, LUA_REGISTRYINDEX, FH_PATHS_KEY);
    lua_settop(L, top);
}

void fh_push_paths(lua_State *L)
{
    lua_getfield(L, LUA_REGISTRYINDEX, FH_PATHS_KEY);
}
