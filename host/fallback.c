/*
 * fallback.c: bundled scripts stand in for broken overrides (fallback.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fallback.h"
#include "fotahost.h"
#include "paths.h"

#define FALLBACKS_KEY "fotahost.fallbacks"
#define RUN_DIR "/var/run/fotahost"
#define STARTS_FILE "app-starts"
#define SILENT "ended without a word (killed or crashed)"

static int use_env_vars = 1;       /* fotahost -E ignores FOTAHOST_RUN_DIR */

/* ------------------------------------------------------------- helpers */

/* True when `file` lies in directory `dir`. */
static int in_dir(const char *file, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(file, dir, n) == 0 && file[n] == '/';
}

/* Pushes host.scripts[i] (a string, or nil past the end). */
static void push_scripts_dir(lua_State *L, int i)
{
    fh_push_paths(L);
    lua_getfield(L, -1, "scripts");
    lua_rawgeti(L, -1, i);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* Pushes the search path over the scripts directories after the override
 * one (the bundled scripts, and in a checkout the development wing's). */
static void push_bundled_path(lua_State *L)
{
    const char *dirs[2];

    push_scripts_dir(L, 2);
    push_scripts_dir(L, 3);
    dirs[0] = lua_tostring(L, -2);
    dirs[1] = lua_tostring(L, -1);
    fh_push_search_path(L, dirs, 2, FH_LUA_TEMPLATES, NULL);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* Pushes package.searchpath(name, path): a file name, or nil. */
static void search(lua_State *L, const char *name, const char *path)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_LOADLIBNAME);
    lua_getfield(L, -1, "searchpath");
    lua_pushstring(L, name);
    lua_pushstring(L, path);
    lua_call(L, 2, 1);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* The error object on top, raised by `file`, as one string (an error may
 * be any value). */
static const char *error_text(lua_State *L, const char *file)
{
    if (lua_type(L, -1) != LUA_TSTRING) {
        lua_pushfstring(L, "%s: raised a %s value", file, luaL_typename(L, -1));
        lua_replace(L, -2);
    }
    return lua_tostring(L, -1);
}

/* Appends { module, file, bundled, why } to the fallbacks so far. */
static void record(lua_State *L, const char *module, const char *file, const char *bundled,
                   const char *why)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, FALLBACKS_KEY);
    lua_createtable(L, 0, 4);
    lua_pushstring(L, module);
    lua_setfield(L, -2, "module");
    lua_pushstring(L, file);
    lua_setfield(L, -2, "file");
    lua_pushstring(L, bundled);
    lua_setfield(L, -2, "bundled");
    lua_pushstring(L, why);
    lua_setfield(L, -2, "why");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
}

static int log_error(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "fotahost.log");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "error");
    lua_pushliteral(L, "scripts");
    lua_pushvalue(L, 1);
    lua_call(L, 2, 0);
    return 0;
}

/* Logs one error line through fotahost.log; trouble there (a broken log
 * module, say) never breaks a load: the line goes to stderr then. */
static void log_line(lua_State *L, const char *msg)
{
    lua_pushcfunction(L, log_error);
    lua_pushstring(L, msg);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "%s: error: scripts: %s\n", FOTAHOST_PROGNAME, msg);
        lua_pop(L, 1);
    }
}

/* Records and logs a fallback from `file` to `bundled`. */
static void fell_back(lua_State *L, const char *module, const char *file, const char *bundled,
                      const char *why)
{
    record(L, module, file, bundled, why);
    log_line(L, lua_pushfstring(L, "%s; running the bundled %s", why, module));
    lua_pop(L, 1);
}

/* ------------------------------------------------------------- modules */

/* Stops the load unless the error is one nothing should swallow: a stop
 * asked for by a signal, or memory running out. */
static void rethrow_fatal(lua_State *L, int status)
{
    if (status == LUA_ERRMEM || fh_signals_raised() != 0)
        lua_error(L);
}

/* Pushes package.loaded[name]; with `clear`, sets it to nil first. */
static void loaded(lua_State *L, const char *name, int clear)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    if (clear) {
        lua_pushnil(L);
        lua_setfield(L, -2, name);
    }
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
}

/*
 * Runs the override `file` as require would. Returns 1 with the module's
 * value pushed, or 0 with why it is unusable pushed.
 */
static int run_override(lua_State *L, const char *name, const char *file)
{
    int status = luaL_loadfilex(L, file, NULL);

    if (status == LUA_OK) {
        lua_pushstring(L, name);
        lua_pushstring(L, file);
        status = lua_pcall(L, 2, 1, 0);
    }
    if (status != LUA_OK) {
        rethrow_fatal(L, status);
        error_text(L, file);
        return 0;
    }
    if (lua_isnil(L, -1)) { /* it may have set package.loaded itself */
        lua_pop(L, 1);
        loaded(L, name, 0);
    }
    if (!lua_isnil(L, -1) && !lua_isboolean(L, -1))
        return 1;
    lua_pushfstring(L, "%s: the module returned %s, not a module", file, luaL_typename(L, -1));
    lua_replace(L, -2);
    return 0;
}

/* Loads and runs the bundled `twin`; its errors propagate as require's. */
static void run_twin(lua_State *L, const char *name, const char *twin)
{
    if (luaL_loadfilex(L, twin, NULL) != LUA_OK)
        luaL_error(L, "error loading module '%s' from file '%s':\n\t%s", name, twin,
                   lua_tostring(L, -1));
    lua_pushstring(L, name);
    lua_pushstring(L, twin);
    lua_call(L, 2, 1);
}

/* The loader the searcher returns: upvalues are the override and its twin. */
static int fallback_loader(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *file = lua_tostring(L, lua_upvalueindex(1));
    const char *twin = lua_tostring(L, lua_upvalueindex(2));
    const char *why;

    lua_settop(L, 1);
    if (run_override(L, name, file))
        return 1;
    why = lua_tostring(L, -1);
    loaded(L, name, 1); /* whatever the broken chunk left there goes */
    lua_pop(L, 1);
    run_twin(L, name, twin);
    /* In package.loaded before the log line, so that logging, which
     * requires fotahost.log, cannot load this module again. */
    if (!lua_isnil(L, -1)) {
        luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
        lua_pushvalue(L, -2);
        lua_setfield(L, -2, name);
        lua_pop(L, 1);
    }
    fell_back(L, name, file, twin, why);
    return 1;
}

/*
 * The searcher: takes a module only when its first match on package.path
 * is in the override directory and a bundled twin exists; for anything
 * else it finds nothing, and Lua's searchers do what they always do.
 */
static int fallback_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    const char *file, *dir, *twin;

    lua_settop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_LOADLIBNAME);
    if (lua_getfield(L, -1, "path") != LUA_TSTRING)
        return 0; /* Lua's own searcher says what is wrong with it */
    search(L, name, lua_tostring(L, -1));
    push_scripts_dir(L, 1);
    file = lua_tostring(L, -2);
    dir = lua_tostring(L, -1);
    if (file == NULL || dir == NULL || !in_dir(file, dir))
        return 0;
    push_bundled_path(L);
    search(L, name, lua_tostring(L, -1));
    twin = lua_tostring(L, -1);
    if (twin == NULL || strcmp(twin, file) == 0)
        return 0;
    lua_pushstring(L, file);
    lua_pushstring(L, twin);
    lua_pushcclosure(L, fallback_loader, 2);
    lua_pushstring(L, file);
    return 2;
}

void fh_fallback_setup(lua_State *L, int use_env)
{
    lua_Integer i;

    use_env_vars = use_env;
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_LOADLIBNAME);
    lua_getfield(L, -1, "searchers");
    /* [1] is the preload searcher, [2] Lua's Lua-file one: ours goes at 2 */
    for (i = (lua_Integer)lua_rawlen(L, -1); i >= 2; i--) {
        lua_rawgeti(L, -1, i);
        lua_rawseti(L, -2, i + 1);
    }
    lua_pushcfunction(L, fallback_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 3);
}

int fh_push_fallbacks(lua_State *L)
{
    lua_Integer i, n;

    luaL_getsubtable(L, LUA_REGISTRYINDEX, FALLBACKS_KEY);
    n = (lua_Integer)lua_rawlen(L, -1);
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
        lua_createtable(L, 0, 4);
        lua_rawgeti(L, -3, i);
        lua_pushnil(L);
        while (lua_next(L, -2) != 0) { /* a copy: callers cannot edit ours */
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -5);
        }
        lua_pop(L, 1);
        lua_rawseti(L, -2, i);
    }
    lua_remove(L, -2);
    return 1;
}

/* ------------------------------------------------------------- the app */

static char starts_path[PATH_MAX]; /* while the override app runs, its record file */

/* Seconds since boot: comparable between the processes of one boot. */
static long now_seconds(void)
{
    struct timespec ts;

    if (clock_gettime(CLOCK_BOOTTIME, &ts) != 0 && clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        return 0;
    return (long)ts.tv_sec;
}

/* The override app's recent starts, as read from the record file. Its
 * lines: "S <seconds>" a start, "C" a clean end, "E <message>" an error
 * that ended it, "B" the bundled app ran instead (a streak ends there). */
struct streak {
    int failed;     /* failed starts in a row */
    long last;      /* the last start, or -1 */
    int open;       /* the last start has not ended cleanly */
    char why[320];  /* the last start's error, if it recorded one */
};

/* A start at `t` ends the last one: it failed when it did not end cleanly
 * and `t` came within the window (procd's respawn threshold). */
static void next_start(struct streak *s, long t)
{
    if (s->last >= 0 && s->open && t - s->last < FH_APP_WINDOW)
        s->failed++;
    else
        s->failed = 0;
}

static void read_streak(FILE *f, struct streak *s)
{
    char line[320];

    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] == 'S') {
            long t = strtol(line + 1, NULL, 10);
            next_start(s, t);
            s->last = t;
            s->open = 1;
            s->why[0] = '\0';
        } else if (line[0] == 'C') {
            s->open = 0;
        } else if (line[0] == 'E') {
            snprintf(s->why, sizeof s->why, "%s", line + 2);
        } else if (line[0] == 'B') {
            s->failed = 0;
            s->last = -1;
        }
    }
}

/* Writes one line to the record file (mode "a", or "w" to start it
 * afresh); the message part stops at its first line. */
static void record_line(const char *mode, const char *tag, const char *msg)
{
    FILE *f = fopen(starts_path, mode);

    if (f == NULL)
        return;
    fprintf(f, "%s%s%.*s\n", tag, msg != NULL ? " " : "",
            msg != NULL ? (int)strcspn(msg, "\n") : 0, msg != NULL ? msg : "");
    fclose(f);
}

/* Sets starts_path to $FOTAHOST_RUN_DIR/app-starts (made 0700 if need
 * be) and returns 1; or logs why the starts cannot be kept and returns 0. */
static int open_starts(lua_State *L)
{
    const char *dir = use_env_vars ? getenv("FOTAHOST_RUN_DIR") : NULL;
    FILE *f;
    int n;

    if (dir == NULL || *dir == '\0')
        dir = RUN_DIR;
    n = snprintf(starts_path, sizeof starts_path, "%s/" STARTS_FILE, dir);
    if (n < 0 || (size_t)n >= sizeof starts_path || (mkdir(dir, 0700) != 0 && errno != EEXIST)
        || (f = fopen(starts_path, "a")) == NULL) {
        log_line(L, lua_pushfstring(L, "cannot keep the app's starts in %s: %s (no fallback to "
                                       "the bundled app after failed starts)", dir, strerror(errno)));
        lua_pop(L, 1);
        starts_path[0] = '\0';
        return 0;
    }
    fclose(f);
    return 1;
}

/* Reads the streak of failed starts from the record file. */
static void load_streak(struct streak *s)
{
    FILE *f = fopen(starts_path, "r");

    memset(s, 0, sizeof *s);
    s->last = -1;
    read_streak(f, s);
    if (f != NULL)
        fclose(f);
    next_start(s, now_seconds());
}

/* os.exit for the override app: records how it ended, then exits. */
static int app_exit(lua_State *L)
{
    int code = lua_isboolean(L, 1) ? !lua_toboolean(L, 1) : (int)luaL_optinteger(L, 1, 0);

    /* the app's own way out after a SIGTERM or SIGINT: exit status 143 or 130 */
    int clean = code == 0 || fh_signals_raised() != 0;

    if (starts_path[0] != '\0') {
        record_line("a", clean ? "C" : "E",
                    clean ? NULL : lua_pushfstring(L, "exited with status %d", code));
        starts_path[0] = '\0';
    }
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, 0);
    return 0;
}

/* Records this start of the override app and wraps os.exit so that an
 * exit records how it ended. A start after a clean one or after a quiet
 * while begins the file afresh: it never holds more than a streak. */
static void app_started(lua_State *L, const struct streak *s)
{
    char t[32];

    snprintf(t, sizeof t, "%ld", now_seconds());
    record_line(s->failed == 0 ? "w" : "a", "S", t);
    lua_getglobal(L, "os");
    lua_getfield(L, -1, "exit");
    lua_pushcclosure(L, app_exit, 1);
    lua_setfield(L, -2, "exit");
    lua_pop(L, 1);
}

void fh_tool_ended(lua_State *L, int status)
{
    if (starts_path[0] == '\0')
        return;
    if (status == LUA_OK || fh_signals_raised() != 0)
        record_line("a", "C", NULL);
    else
        record_line("a", "E", lua_tostring(L, -1) != NULL ? lua_tostring(L, -1) : "(error object)");
    starts_path[0] = '\0';
}

/* Pushes the bundled tools/NAME.lua when `file` is an override of it and
 * returns 1; else pushes nothing and returns 0. */
static int push_twin_tool(lua_State *L, const char *name, const char *file)
{
    const char *dir, *twin;

    push_scripts_dir(L, 1);
    dir = lua_tostring(L, -1);
    if (dir == NULL || !in_dir(file, dir)) {
        lua_pop(L, 1);
        return 0;
    }
    push_bundled_path(L);
    lua_pushfstring(L, "tools.%s", name);
    search(L, lua_tostring(L, -1), lua_tostring(L, -2));
    twin = lua_tostring(L, -1);
    if (twin == NULL || strcmp(twin, file) == 0) {
        lua_pop(L, 4);
        return 0;
    }
    lua_replace(L, -4);
    lua_pop(L, 2);
    return 1;
}

/* Stack: file, twin, why. Logs and records the fallback, leaves the twin's
 * path in the file's slot (it is arg[0] now) and loads it. */
static int load_twin(lua_State *L, const char *name)
{
    fell_back(L, name, lua_tostring(L, -3), lua_tostring(L, -2), lua_tostring(L, -1));
    lua_pop(L, 1);
    lua_remove(L, -2);
    lua_getglobal(L, "arg");
    if (lua_istable(L, -1)) {
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, 0);
    }
    lua_pop(L, 1);
    return luaL_loadfile(L, lua_tostring(L, -1));
}

/*
 * Only the app gets this: it is what the service runs, the one script
 * whose failure takes the device off the air (procd gives up on it after
 * a few crashes). Other tools are run by hand, by someone who sees the
 * error and can fix it.
 */
int fh_load_tool(lua_State *L, const char *name)
{
    struct streak s = {0, -1, 0, ""};
    int status;

    if (strcmp(name, "app") != 0 || !push_twin_tool(L, name, lua_tostring(L, -1)))
        return luaL_loadfile(L, lua_tostring(L, -1));
    if (open_starts(L)) {
        load_streak(&s);
        if (s.failed >= FH_APP_FAILS) {
            record_line("w", "B", NULL);
            starts_path[0] = '\0';
            lua_pushfstring(L, "%s: %d failed starts in a row, the last %s%s", lua_tostring(L, -2),
                            s.failed, s.why[0] != '\0' ? "with: " : "", s.why[0] != '\0' ? s.why : SILENT);
            return load_twin(L, name);
        }
    }
    status = luaL_loadfile(L, lua_tostring(L, -2));
    if (status == LUA_OK || status == LUA_ERRMEM) {
        lua_remove(L, -2); /* the twin */
        if (status == LUA_OK && starts_path[0] != '\0')
            app_started(L, &s);
        return status;
    }
    starts_path[0] = '\0';
    error_text(L, lua_tostring(L, -3));
    return load_twin(L, name);
}
