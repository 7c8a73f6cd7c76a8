/*
 * fallback.c: bundled scripts stand in for broken overrides (fallback.h).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fallback.h"
#include "fotahost.h"
#include "paths.h"

#define FALLBACKS_KEY "fotahost.fallbacks"
#define RUN_DIR "/var/run/fotahost"
#define STARTS_FILE "app-starts"
#define SILENT "ended without a word (killed or crashed)"
#define WHY_MAX 200 /* bytes of an error kept in the record file */
#define SCAN_DEPTH 8 /* directory levels searched for overrides */

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

/* Reads the rest of an overlong line (an older or a torn file): it is
 * never taken for a record of its own. */
static void skip_rest(FILE *f)
{
    int c;

    while ((c = getc(f)) != EOF && c != '\n')
        ;
}

static void read_streak(FILE *f, struct streak *s)
{
    char line[320];

    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        size_t n = strcspn(line, "\n");

        if (line[n] == '\0' && n == sizeof line - 1)
            skip_rest(f);
        line[n] = '\0';
        if (line[0] == 'S') {
            long t = strtol(line + 1, NULL, 10);
            next_start(s, t);
            s->last = t;
            s->open = 1;
            s->why[0] = '\0';
        } else if (line[0] == 'C') {
            s->open = 0;
        } else if (line[0] == 'E') {
            snprintf(s->why, sizeof s->why, "%s", line[1] != '\0' ? line + 2 : "");
        } else if (line[0] == 'B') {
            s->failed = 0;
            s->last = -1;
        }
    }
}

/* Opens the record file with `flags`: never through a symbolic link, and
 * only a regular file (a FIFO planted there would block the start). */
static FILE *open_record(int flags, const char *mode)
{
    int fd = open(starts_path, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, 0600);
    struct stat st;
    FILE *f;
    int e;

    if (fd < 0)
        return NULL;
    if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
        errno = EINVAL; /* said as "not a regular file" */
    else if ((f = fdopen(fd, mode)) != NULL)
        return f;
    e = errno;
    close(fd);
    errno = e;
    return NULL;
}

/* The length of `msg` kept in a record: its first line, at most WHY_MAX
 * bytes (an error may carry a cloud's string of any length), not cut
 * inside a UTF-8 sequence. */
static int kept_length(const char *msg)
{
    size_t n = strcspn(msg, "\r\n");

    if (n > WHY_MAX) {
        n = WHY_MAX;
        while (n > 0 && ((unsigned char)msg[n] & 0xC0) == 0x80)
            n--;
    }
    return (int)n;
}

/* Writes one line to the record file (appended, or with `fresh` the file
 * starts afresh); the message part is cut by kept_length. */
static void record_line(int fresh, const char *tag, const char *msg)
{
    FILE *f = open_record(O_WRONLY | O_CREAT | (fresh ? O_TRUNC : O_APPEND), "w");

    if (f == NULL)
        return;
    fprintf(f, "%s%s%.*s\n", tag, msg != NULL ? " " : "", msg != NULL ? kept_length(msg) : 0,
            msg != NULL ? msg : "");
    fclose(f);
}

/* NULL when `dir` may hold the record file: a real directory (not a
 * link), ours, that nobody else can write to (whoever can plants a file
 * that decides which scripts the service runs); else why not. */
static const char *unfit_dir(const char *dir)
{
    struct stat st;

    if ((mkdir(dir, 0700) != 0 && errno != EEXIST) || lstat(dir, &st) != 0)
        return strerror(errno);
    if (!S_ISDIR(st.st_mode))
        return "not a directory (a symbolic link?)";
    if (st.st_uid != geteuid())
        return "owned by another user";
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0)
        return "others may write to it (chmod go-w)";
    return NULL;
}

/* Sets starts_path to $FOTAHOST_RUN_DIR/app-starts (made 0700 if need
 * be) and returns 1; or logs why the starts cannot be kept and returns 0. */
static int open_starts(lua_State *L)
{
    const char *dir = use_env_vars ? getenv("FOTAHOST_RUN_DIR") : NULL;
    const char *why = NULL;
    FILE *f = NULL;
    int n;

    if (dir == NULL || *dir == '\0')
        dir = RUN_DIR;
    n = snprintf(starts_path, sizeof starts_path, "%s/" STARTS_FILE, dir);
    if (n < 0 || (size_t)n >= sizeof starts_path)
        why = "path too long";
    else if ((why = unfit_dir(dir)) == NULL
             && (f = open_record(O_WRONLY | O_CREAT | O_APPEND, "a")) == NULL)
        why = errno == ELOOP ? STARTS_FILE " is a symbolic link"
            : errno == EINVAL ? STARTS_FILE " is not a regular file" : strerror(errno);
    if (f == NULL) {
        log_line(L, lua_pushfstring(L, "cannot keep the app's starts in %s: %s (no fallback to "
                                       "the bundled scripts after failed starts)", dir, why));
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
    FILE *f = open_record(O_RDONLY, "r");

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
        record_line(0, clean ? "C" : "E",
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
    record_line(s->failed == 0, "S", t);
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
        record_line(0, "C", NULL);
    else
        record_line(0, "E", lua_tostring(L, -1) != NULL ? lua_tostring(L, -1) : "(error object)");
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

/* True when `dir` (or a directory under it, down to `depth` levels)
 * holds a *.lua file. Hidden entries (.bundled, the copies `fotahost
 * scripts edit` keeps for diff) are not overrides. */
static int has_lua(const char *dir, int depth)
{
    char path[PATH_MAX];
    struct dirent *e;
    struct stat st;
    int found = 0;
    DIR *d = depth > 0 ? opendir(dir) : NULL;

    while (d != NULL && !found && (e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);

        if (e->d_name[0] == '.' || n < 0 || (size_t)n >= sizeof path || stat(path, &st) != 0)
            continue;
        if (S_ISREG(st.st_mode))
            found = len > 4 && strcmp(e->d_name + len - 4, ".lua") == 0;
        else if (S_ISDIR(st.st_mode))
            found = has_lua(path, depth - 1);
    }
    if (d != NULL)
        closedir(d);
    return found;
}

/* Appends to `b` the entries of package.path (on top) that are in `dir`
 * (mine 1) or not (mine 0). */
static void add_entries(luaL_Buffer *b, const char *path, const char *dir, int mine)
{
    while (*path != '\0') {
        const char *end = strchr(path, ';');
        size_t len = end != NULL ? (size_t)(end - path) : strlen(path);
        size_t n = strlen(dir);

        if ((len > n && strncmp(path, dir, n) == 0 && path[n] == '/') == mine) {
            if (luaL_bufflen(b) > 0)
                luaL_addchar(b, ';');
            luaL_addlstring(b, path, len);
        }
        path += len + (end != NULL);
    }
}

/* Moves the override directory's entries to the end of package.path: the
 * bundled scripts win over every override, and a module of the user's
 * own with no bundled twin (one a config's hooks require, say) still
 * loads, from where it always did. */
static void set_overrides_aside(lua_State *L, const char *dir)
{
    luaL_Buffer b;
    const char *path;

    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, LUA_LOADLIBNAME);
    lua_getfield(L, -1, "path");
    path = lua_tostring(L, -1);
    if (path != NULL) {
        luaL_buffinit(L, &b);
        add_entries(&b, path, dir, 0);
        add_entries(&b, path, dir, 1);
        luaL_pushresult(&b);
        lua_setfield(L, -3, "path");
    }
    lua_pop(L, 3);
}

/*
 * The app run as a service (stdin not a terminal) ignores SIGHUP until it
 * takes it with sys.hangups(): a reload asked for while it starts, or an
 * app override older than reloads that never takes it, would otherwise be
 * killed by it, in the middle of a flash maybe. On a terminal, SIGHUP
 * keeps its meaning: the terminal is gone, the app ends.
 */
static void ignore_hangups(void)
{
    if (!isatty(STDIN_FILENO))
        signal(SIGHUP, SIG_IGN);
}

/*
 * Stack: file, twin (the bundled app, or nil when the app is not
 * overridden). The 4th start after FH_APP_FAILS failed ones: the record
 * file starts afresh (the next start tries the overrides again), the
 * override directory is set aside, and the bundled app runs when the app
 * is overridden, else the app in use with the bundled scripts.
 */
static int load_bundled(lua_State *L, const char *name, const struct streak *s)
{
    const char *dir;

    record_line(1, "B", NULL);
    starts_path[0] = '\0';
    push_scripts_dir(L, 1);
    dir = lua_tostring(L, -1);
    if (dir != NULL)
        set_overrides_aside(L, dir);
    lua_pushfstring(L, "%s: %d failed starts in a row, the last %s%s",
                    lua_isnil(L, -2) ? dir : lua_tostring(L, -3), s->failed,
                    s->why[0] != '\0' ? "with: " : "", s->why[0] != '\0' ? s->why : SILENT);
    if (!lua_isnil(L, -3)) {
        lua_remove(L, -2); /* the directory */
        return load_twin(L, name);
    }
    push_scripts_dir(L, 2);
    fell_back(L, "scripts", dir, lua_tostring(L, -1), lua_tostring(L, -2));
    lua_pop(L, 4);
    return luaL_loadfile(L, lua_tostring(L, -1));
}

/*
 * Only the app gets this: it is what the service runs, the one script
 * whose failure takes the device off the air (procd gives up on it after
 * a few crashes). Other tools are run by hand, by someone who sees the
 * error and can fix it. Its starts are counted whenever an override is in
 * use: a module override can crash every start too (an error that only
 * shows when it is called, which `fotahost check` cannot see).
 */
int fh_load_tool(lua_State *L, const char *name)
{
    struct streak s = {0, -1, 0, ""};
    int status, replaced;

    if (strcmp(name, "app") != 0)
        return luaL_loadfile(L, lua_tostring(L, -1));
    ignore_hangups();
    replaced = push_twin_tool(L, name, lua_tostring(L, -1));
    if (!replaced)
        lua_pushnil(L);
    push_scripts_dir(L, 1);
    if ((replaced || (lua_isstring(L, -1) && has_lua(lua_tostring(L, -1), SCAN_DEPTH)))
        && open_starts(L)) {
        lua_pop(L, 1);
        load_streak(&s);
        if (s.failed >= FH_APP_FAILS)
            return load_bundled(L, name, &s);
    } else {
        lua_pop(L, 1);
    }
    status = luaL_loadfile(L, lua_tostring(L, -2));
    if (status == LUA_OK || status == LUA_ERRMEM || !replaced) {
        lua_remove(L, -2); /* the twin */
        if (status == LUA_OK && starts_path[0] != '\0')
            app_started(L, &s);
        else
            starts_path[0] = '\0';
        return status;
    }
    starts_path[0] = '\0';
    error_text(L, lua_tostring(L, -3));
    return load_twin(L, name);
}
