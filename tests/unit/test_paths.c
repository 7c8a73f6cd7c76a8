/* Unit tests of host/paths.c and host/tools.c. */
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fotahost.h"
#include "paths.h"
#include "unit.h"

static char tmp[] = "/tmp/fotahost-unit-XXXXXX";

static void touch(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f != NULL)
        fclose(f);
}

static const char *field(lua_State *L, const char *name)
{
    const char *s;
    fh_push_paths(L);
    lua_getfield(L, -1, name);
    s = lua_tostring(L, -1); /* kept alive by the registry table */
    lua_pop(L, 2);
    return s;
}

static void test_string_helpers(lua_State *L)
{
    static const char *const dirs[] = {"/a", NULL, "/b"};

    fh_push_dirname(L, "/x/y/fotahost");
    CHECK_STR(lua_tostring(L, -1), "/x/y");
    fh_push_dirname(L, "fotahost");
    CHECK_STR(lua_tostring(L, -1), ".");
    fh_push_dirname(L, "/fotahost");
    CHECK_STR(lua_tostring(L, -1), "/");

    fh_push_absolute_only(L, "./?.lua;/usr/share/lua/5.4/?.lua;;../x/?.lua;/y/?.so");
    CHECK_STR(lua_tostring(L, -1), "/usr/share/lua/5.4/?.lua;/y/?.so");
    fh_push_absolute_only(L, "./?.lua");
    CHECK_STR(lua_tostring(L, -1), "");

    fh_push_expanded(L, "/mine/?.lua;;", "/d/?.lua");
    CHECK_STR(lua_tostring(L, -1), "/mine/?.lua;/d/?.lua;");
    fh_push_expanded(L, "/only/?.lua", "/d/?.lua");
    CHECK_STR(lua_tostring(L, -1), "/only/?.lua");

    fh_push_search_path(L, dirs, 3, "?.lua;?/init.lua", "/sys/?.lua");
    CHECK_STR(lua_tostring(L, -1), "/a/?.lua;/a/?/init.lua;/b/?.lua;/b/?/init.lua;/sys/?.lua");
    fh_push_search_path(L, dirs, 3, "?.so", "");
    CHECK_STR(lua_tostring(L, -1), "/a/?.so;/b/?.so");
    lua_settop(L, 0);
}

static void test_checkout_and_tools(lua_State *L)
{
    char path[512], exe[512];

    /* a fake checkout: host/main.c, scripts/tools/{b,a}.lua, build/ */
    snprintf(path, sizeof path, "%s/host", tmp); mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/host/main.c", tmp); touch(path);
    CHECK(!fh_is_checkout(tmp)); /* no scripts/ yet */
    snprintf(path, sizeof path, "%s/scripts", tmp); mkdir(path, 0700);
    CHECK(fh_is_checkout(tmp));
    snprintf(path, sizeof path, "%s/scripts/tools", tmp); mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/scripts/tools/b.lua", tmp); touch(path);
    snprintf(path, sizeof path, "%s/scripts/tools/a.lua", tmp); touch(path);
    snprintf(path, sizeof path, "%s/scripts/tools/.hidden.lua", tmp); touch(path);
    snprintf(path, sizeof path, "%s/scripts/tools/notes.txt", tmp); touch(path);
    snprintf(path, sizeof path, "%s/build", tmp); mkdir(path, 0700);
    snprintf(exe, sizeof exe, "%s/build/fotahost", tmp);
    /* the development wing: dev/scripts/tools/d.lua */
    snprintf(path, sizeof path, "%s/dev", tmp); mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/dev/scripts", tmp); mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/dev/scripts/tools", tmp); mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/dev/scripts/tools/d.lua", tmp); touch(path);

    /* an override directory with its own copy of tool b and a new tool c */
    snprintf(path, sizeof path, "%s/etc", tmp); mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/etc/tools", tmp); mkdir(path, 0700);
    snprintf(path, sizeof path, "%s/etc/tools/b.lua", tmp); touch(path);
    snprintf(path, sizeof path, "%s/etc/tools/c.lua", tmp); touch(path);
    snprintf(path, sizeof path, "%s/etc", tmp);
    setenv("FOTAHOST_SCRIPTS_DIR", path, 1);
    setenv("FOTAHOST_PLUGINS_DIR", "/opt/plugins", 1);
    unsetenv("FOTAHOST_PATH");
    unsetenv("FOTAHOST_CPATH");

    fh_paths_setup(L, exe, 1);
    snprintf(path, sizeof path, "%s", tmp);
    CHECK_STR(field(L, "checkout"), path);
    snprintf(path, sizeof path, "%s/scripts", tmp);
    CHECK_STR(field(L, "bundled_scripts"), path);
    snprintf(path, sizeof path, "%s/build/plugins", tmp);
    CHECK_STR(field(L, "bundled_plugins"), path);
    snprintf(path, sizeof path, "/opt/plugins/?.so;%s/build/plugins/?.so;", tmp);
    CHECK(strncmp(field(L, "cpath"), path, strlen(path)) == 0);
    CHECK(strstr(field(L, "path"), "./?") == NULL); /* no relative entries */
    /* scripts: the override, the product's, then the development wing's */
    snprintf(path, sizeof path, "%s/etc/?.lua;%s/etc/?/init.lua;%s/scripts/?.lua;%s/scripts/?/init.lua;"
             "%s/dev/scripts/?.lua;%s/dev/scripts/?/init.lua;", tmp, tmp, tmp, tmp, tmp, tmp);
    CHECK(strncmp(field(L, "path"), path, strlen(path)) == 0);
    snprintf(path, sizeof path, "%s/dev/scripts", tmp);
    CHECK_STR(field(L, "dev_scripts"), path);

    /* the override wins; the list merges, sorts and skips non-tools */
    CHECK(fh_find_tool(L, "b"));
    snprintf(path, sizeof path, "%s/etc/tools/b.lua", tmp);
    CHECK_STR(lua_tostring(L, -1), path);
    lua_pop(L, 1);
    CHECK(fh_find_tool(L, "a"));
    snprintf(path, sizeof path, "%s/scripts/tools/a.lua", tmp);
    CHECK_STR(lua_tostring(L, -1), path);
    lua_pop(L, 1);
    CHECK(fh_find_tool(L, "d")); /* a development tool, in a checkout */
    snprintf(path, sizeof path, "%s/dev/scripts/tools/d.lua", tmp);
    CHECK_STR(lua_tostring(L, -1), path);
    lua_pop(L, 1);
    CHECK(!fh_find_tool(L, "zzz"));
    CHECK(lua_gettop(L) == 0);
    fh_push_tool_list(L);
    CHECK(luaL_len(L, -1) == 4);
    lua_rawgeti(L, -1, 1); CHECK_STR(lua_tostring(L, -1), "a"); lua_pop(L, 1);
    lua_rawgeti(L, -1, 3); CHECK_STR(lua_tostring(L, -1), "c"); lua_pop(L, 1);
    lua_rawgeti(L, -1, 4); CHECK_STR(lua_tostring(L, -1), "d"); lua_pop(L, 1);
    lua_pop(L, 1);

    /* FOTAHOST_PATH replaces the path; ";;" brings the default back */
    setenv("FOTAHOST_PATH", "/x/?.lua;;", 1);
    fh_paths_setup(L, exe, 1);
    CHECK(strncmp(field(L, "path"), "/x/?.lua;", 9) == 0);
    CHECK(strstr(field(L, "path"), "/etc/?.lua") != NULL);

    /* -E: the environment is ignored */
    fh_paths_setup(L, exe, 0);
    CHECK(strncmp(field(L, "path"), FOTAHOST_SYSCONFDIR "/scripts/?.lua;",
                  strlen(FOTAHOST_SYSCONFDIR "/scripts/?.lua;")) == 0);

    /* not a checkout: the installed directories */
    fh_paths_setup(L, "/nowhere/bin/fotahost", 0);
    CHECK(field(L, "checkout") == NULL);
    CHECK_STR(field(L, "bundled_scripts"), FOTAHOST_DATADIR "/scripts");
    CHECK_STR(field(L, "bundled_plugins"), FOTAHOST_LIBDIR "/plugins");
    CHECK(field(L, "dev_scripts") == NULL);
    fh_paths_setup(L, NULL, 0);
    CHECK(field(L, "checkout") == NULL);
    unsetenv("FOTAHOST_PATH");
}

/* A tree installed with DESTDIR runs from where it lies, and only a tree
 * that holds its scripts counts as one. */
static void test_staged_install(lua_State *L)
{
    char cmd[600], exe[400], want[400];
    int status;

    snprintf(cmd, sizeof cmd, "mkdir -p '%s/stage" FOTAHOST_BINDIR "' '%s/stage" FOTAHOST_DATADIR
             "/scripts' '%s/bare" FOTAHOST_BINDIR "'", tmp, tmp, tmp);
    status = system(cmd);
    CHECK(status == 0);
    snprintf(exe, sizeof exe, "%s/stage" FOTAHOST_BINDIR "/fotahost", tmp);
    fh_paths_setup(L, exe, 0);
    CHECK(field(L, "checkout") == NULL);
    snprintf(want, sizeof want, "%s/stage" FOTAHOST_DATADIR "/scripts", tmp);
    CHECK_STR(field(L, "bundled_scripts"), want);
    snprintf(want, sizeof want, "%s/stage" FOTAHOST_LIBDIR "/plugins", tmp);
    CHECK_STR(field(L, "bundled_plugins"), want);

    snprintf(exe, sizeof exe, "%s/bare" FOTAHOST_BINDIR "/fotahost", tmp);
    fh_paths_setup(L, exe, 0);
    CHECK_STR(field(L, "bundled_scripts"), FOTAHOST_DATADIR "/scripts");
    fh_paths_setup(L, FOTAHOST_BINDIR "/fotahost", 0);
    CHECK_STR(field(L, "bundled_plugins"), FOTAHOST_LIBDIR "/plugins");
}

int main(void)
{
    lua_State *L = luaL_newstate();
    char cmd[600];
    int status;

    luaL_openlibs(L);
    if (mkdtemp(tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_string_helpers(L);
    test_checkout_and_tools(L);
    test_staged_install(L);
    lua_close(L);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    status = system(cmd);
    (void)status;
    return UNIT_END();
}
