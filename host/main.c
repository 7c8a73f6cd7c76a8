/*
 * main.c: the fotahost command. It behaves like the `lua` command (same
 * options, same `arg` table, same error reporting) with three additions:
 * built-in native modules in package.preload, search paths suited to
 * editing scripts on the device (paths.h), and bundled tools run by name
 * (`fotahost flash ...`).
 *
 * Shape: main() runs pmain() under lua_pcall, so even a memory error while
 * setting up is reported; every chunk runs through docall() with a
 * traceback message handler and with SIGINT/SIGTERM turned into a Lua error.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fallback.h"
#include "fotahost.h"
#include "paths.h"

#define PROMPT1 "> "
#define PROMPT2 ">> "
#define MAXLINE 512

static const char *progname = FOTAHOST_PROGNAME;

/* Bits of the options seen on the command line. */
enum {
    HAS_ERROR = 1,  /* bad option */
    HAS_I = 2,      /* -i */
    HAS_V = 4,      /* -v */
    HAS_E = 8,      /* -e */
    HAS_BIG_E = 16, /* -E */
    HAS_HELP = 32,  /* -h, --help */
    HAS_PATHS = 64  /* --paths */
};

static void print_usage(FILE *out)
{
    fprintf(out,
            "usage: %s [options] [script | tool | - [args...]]\n"
            "Runs a Lua 5.4 script, or a bundled tool by name, with fotahost's native modules.\n"
            "Options:\n"
            "  -e stat      execute string 'stat'\n"
            "  -i           enter interactive mode after running the script\n"
            "  -l mod       require library 'mod' into global 'mod'\n"
            "  -l g=mod     require library 'mod' into global 'g'\n"
            "  -v, --version  show version information\n"
            "  --paths      show version information and the search paths in effect\n"
            "  -E           ignore FOTAHOST_* environment variables\n"
            "  -W           turn warnings on\n"
            "  -h, --help   show this help\n"
            "  --           stop handling options\n"
            "  -            run stdin and stop handling options\n"
            "A bare NAME that is not a path runs the tool scripts/tools/NAME.lua from\n"
            "the scripts path (see --paths).\n",
            progname);
}

static void l_message(const char *pname, const char *msg)
{
    if (pname != NULL)
        fprintf(stderr, "%s: ", pname);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
}

/* Prints the error on top of the stack if status is not OK. */
static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        l_message(progname, msg != NULL ? msg : "(error object is not a string)");
        lua_pop(L, 1);
    }
    return status;
}

/* Message handler: turns the error into a string and adds a traceback. */
static int msghandler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);

    if (msg == NULL) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
            return 1; /* the object describes itself */
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Calls the function below its `narg` arguments, with signals armed. */
static int docall(lua_State *L, int narg, int nres)
{
    int status;
    int base = lua_gettop(L) - narg;

    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    fh_signals_install(L);
    status = lua_pcall(L, narg, nres, base);
    fh_signals_restore();
    lua_remove(L, base);
    return status;
}

static void print_version(void)
{
    printf("%s %s (%s)\n", FOTAHOST_PROGNAME, FOTAHOST_VERSION, LUA_RELEASE);
    fflush(stdout);
}

static void print_field_list(lua_State *L, int t, const char *field, const char *label)
{
    lua_Integer i, n;

    lua_getfield(L, t, field);
    n = luaL_len(L, -1);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        printf("  %-8s %s\n", i == 1 ? label : "", lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

static void print_search_list(lua_State *L, int t, const char *field, const char *label)
{
    const char *s, *end;
    int first = 1;

    lua_getfield(L, t, field);
    s = lua_tostring(L, -1);
    while (s != NULL && *s != '\0') {
        end = strchr(s, ';');
        printf("  %-8s %.*s\n", first ? label : "",
               (int)(end != NULL ? end - s : (long)strlen(s)), s);
        first = 0;
        s = end != NULL ? end + 1 : "";
    }
    lua_pop(L, 1);
}

static void print_paths(lua_State *L)
{
    int t;

    fh_push_paths(L);
    t = lua_gettop(L);
    lua_getfield(L, t, "checkout");
    printf("source checkout: %s\n", lua_isnil(L, -1) ? "(none)" : lua_tostring(L, -1));
    lua_pop(L, 1);
    printf("scripts and tools, first match wins:\n");
    print_field_list(L, t, "scripts", "scripts");
    printf("plugins, first match wins:\n");
    print_field_list(L, t, "plugins", "plugins");
    printf("package.path and package.cpath:\n");
    print_search_list(L, t, "path", "path");
    print_search_list(L, t, "cpath", "cpath");
    lua_pop(L, 1);
    fflush(stdout);
}

/*
 * Builds `arg`: the script at 0, its arguments at 1..n, the interpreter and
 * its options at negative indices. With no script, everything is negative.
 */
static void createargtable(lua_State *L, char **argv, int argc, int script)
{
    int i, narg;

    if (script == argc)
        script = 0; /* no script: the interpreter goes at 0 */
    narg = argc - (script + 1);
    lua_createtable(L, narg, script + 1);
    for (i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status)
{
    if (status == LUA_OK)
        status = docall(L, 0, 0);
    return report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name)
{
    return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* -l [g=]mod: require `mod` into global `g` (or `mod`). */
static int dolibrary(lua_State *L, char *globname)
{
    int status;
    char *modname = strchr(globname, '=');

    if (modname == NULL)
        modname = globname;
    else
        *modname++ = '\0';
    lua_getglobal(L, "require");
    lua_pushstring(L, modname);
    status = docall(L, 1, 1);
    if (status == LUA_OK)
        lua_setglobal(L, globname);
    return report(L, status);
}

/* Pushes the script's arguments (the positive part of `arg`). */
static int pushargs(lua_State *L)
{
    int i, n;

    if (lua_getglobal(L, "arg") != LUA_TTABLE)
        luaL_error(L, "'arg' is not a table");
    n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    for (i = 1; i <= n; i++)
        lua_rawgeti(L, -i, i);
    lua_remove(L, -i);
    return n;
}

/* A bare word (no '/', no '.') may name a bundled tool. */
static int is_tool_name(const char *s)
{
    if (*s == '\0' || *s == '-')
        return 0;
    for (; *s != '\0'; s++)
        if (*s == '/' || *s == '.')
            return 0;
    return 1;
}

static void report_unknown_tool(lua_State *L, const char *name)
{
    lua_Integer i, n;
    luaL_Buffer b;

    fh_push_tool_list(L);
    n = luaL_len(L, -1);
    luaL_buffinit(L, &b);
    lua_pushfstring(L, "no tool named '%s' and no file of that name\navailable tools:", name);
    luaL_addvalue(&b);
    if (n == 0)
        luaL_addstring(&b, " (none found; see 'fotahost --paths')");
    for (i = 1; i <= n; i++) {
        luaL_addchar(&b, ' ');
        lua_rawgeti(L, -2, i);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    l_message(progname, lua_tostring(L, -1));
    lua_pop(L, 2);
}

static int handle_script(lua_State *L, char **argv)
{
    const char *fname = argv[0], *tool = NULL;
    int status;

    if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0) {
        fname = NULL; /* stdin */
    } else if (is_tool_name(fname)) {
        /* A bundled tool wins over a file of the same name in the current
         * directory (as a command in PATH does); `./name` runs the file. */
        if (!fh_find_tool(L, fname)) {
            if (access(fname, F_OK) == 0)
                goto load;
            report_unknown_tool(L, fname);
            return LUA_ERRFILE;
        }
        tool = fname;
        fname = lua_tostring(L, -1); /* stays on the stack below the chunk */
        lua_pushvalue(L, -1);
        lua_getglobal(L, "arg");
        lua_insert(L, -2);
        lua_rawseti(L, -2, 0); /* arg[0] is the tool's file */
        lua_pop(L, 1);
    }
load:
    status = tool != NULL ? fh_load_tool(L, tool) : luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        int n = pushargs(L);
        status = docall(L, n, LUA_MULTRET);
        fh_tool_ended(L, status);
    }
    return report(L, status);
}

/*
 * Reads the options. Returns the HAS_* bits; *first is the index of the
 * script (argc when there is none, or the offending option on error).
 */
static int collectargs(char **argv, int *first)
{
    int args = 0;
    int i;

    for (i = 1; argv[i] != NULL; i++) {
        *first = i;
        if (argv[i][0] != '-')
            return args; /* the script */
        switch (argv[i][1]) {
        case '-':
            if (argv[i][2] == '\0') { /* -- */
                *first = i + 1;
                return args;
            }
            if (strcmp(argv[i], "--version") == 0)
                args |= HAS_V;
            else if (strcmp(argv[i], "--help") == 0)
                args |= HAS_HELP;
            else if (strcmp(argv[i], "--paths") == 0)
                args |= HAS_PATHS | HAS_V;
            else
                return args | HAS_ERROR;
            break;
        case '\0': /* - is stdin */
            return args;
        case 'E':
        case 'W':
        case 'h':
        case 'v':
            if (argv[i][2] != '\0')
                return args | HAS_ERROR;
            args |= argv[i][1] == 'E' ? HAS_BIG_E : argv[i][1] == 'h' ? HAS_HELP
                  : argv[i][1] == 'v' ? HAS_V : 0;
            break;
        case 'i':
            if (argv[i][2] != '\0')
                return args | HAS_ERROR;
            args |= HAS_I | HAS_V;
            break;
        case 'e':
            args |= HAS_E;
            /* FALLTHROUGH */
        case 'l':
            if (argv[i][2] == '\0') { /* the value is the next argument */
                i++;
                if (argv[i] == NULL || argv[i][0] == '-')
                    return args | HAS_ERROR;
            }
            break;
        default:
            return args | HAS_ERROR;
        }
    }
    *first = i;
    return args;
}

/* Runs -e and -l in command-line order, and turns warnings on for -W. */
static int runargs(lua_State *L, char **argv, int n)
{
    int i;

    for (i = 1; i < n; i++) {
        int option = argv[i][1];
        const char *extra;

        switch (option) {
        case 'e':
        case 'l':
            extra = argv[i][2] != '\0' ? argv[i] + 2 : argv[++i];
            if ((option == 'e' ? dostring(L, extra, "=(command line)")
                               : dolibrary(L, (char *)extra)) != LUA_OK)
                return 0;
            break;
        case 'W':
            lua_warning(L, "@on", 0);
            break;
        }
    }
    return 1;
}

/* ---------------------------------------------------------------- REPL */

static int readline_into(lua_State *L, const char *prompt)
{
    char buf[MAXLINE];
    luaL_Buffer b;
    const char *line;
    size_t len;

    fputs(prompt, stdout);
    fflush(stdout);
    luaL_buffinit(L, &b);
    do {
        if (fgets(buf, sizeof buf, stdin) == NULL) {
            if (luaL_bufflen(&b) == 0)
                return 0; /* end of input */
            break;
        }
        len = strlen(buf);
        luaL_addlstring(&b, buf, len);
    } while (len > 0 && buf[len - 1] != '\n');
    luaL_pushresult(&b);
    line = lua_tolstring(L, -1, &len);
    if (len > 0 && line[len - 1] == '\n') {
        lua_pushlstring(L, line, len - 1);
        lua_remove(L, -2);
    }
    return 1;
}

/* True when the syntax error on the stack says the chunk is unfinished. */
static int incomplete(lua_State *L, int status)
{
    static const char eof[] = "<eof>";
    size_t lmsg, leof = sizeof eof - 1;
    const char *msg;

    if (status != LUA_ERRSYNTAX)
        return 0;
    msg = lua_tolstring(L, -1, &lmsg);
    if (lmsg >= leof && strcmp(msg + lmsg - leof, eof) == 0) {
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

/* Tries the line as an expression first, so `1+1` prints 2. */
static int addreturn(lua_State *L)
{
    const char *line = lua_tostring(L, -1);
    const char *retline = lua_pushfstring(L, "return %s;", line);
    int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");

    if (status == LUA_OK)
        lua_remove(L, -2); /* the "return" line */
    else
        lua_pop(L, 2); /* the "return" line and the error */
    return status;
}

static int multiline(lua_State *L)
{
    for (;;) {
        size_t len;
        const char *line = lua_tolstring(L, 1, &len);
        int status = luaL_loadbuffer(L, line, len, "=stdin");

        if (!incomplete(L, status) || !readline_into(L, PROMPT2))
            return status;
        lua_pushliteral(L, "\n");
        lua_insert(L, -2);
        lua_concat(L, 3);
    }
}

/* Reads a complete chunk; returns -1 at end of input, else a load status. */
static int loadline(lua_State *L)
{
    int status;

    lua_settop(L, 0);
    if (!readline_into(L, PROMPT1))
        return -1;
    if ((status = addreturn(L)) != LUA_OK)
        status = multiline(L);
    lua_remove(L, 1); /* the line */
    return status;
}

static void print_results(lua_State *L)
{
    int n = lua_gettop(L);

    if (n > 0) {
        luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
        lua_getglobal(L, "print");
        lua_insert(L, 1);
        if (lua_pcall(L, n, 0, 0) != LUA_OK)
            l_message(progname, lua_pushfstring(L, "error calling 'print' (%s)",
                                                lua_tostring(L, -1)));
    }
}

static void doREPL(lua_State *L)
{
    const char *oldprogname = progname;
    int status;

    progname = NULL; /* errors at the prompt are not prefixed */
    while ((status = loadline(L)) != -1) {
        if (status == LUA_OK)
            status = docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK)
            print_results(L);
        else
            report(L, status);
    }
    lua_settop(L, 0);
    fputs("\n", stdout);
    fflush(stdout);
    progname = oldprogname;
}

/* ---------------------------------------------------------------- main */

static int pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int script = argc;
    int args = collectargs(argv, &script);

    luaL_checkversion(L);
    if (argv[0] != NULL && argv[0][0] != '\0')
        progname = FOTAHOST_PROGNAME;
    if (args & HAS_ERROR) {
        const char *bad = argv[script];
        if (bad[1] == 'e' || bad[1] == 'l')
            fprintf(stderr, "%s: '%s' needs argument\n", progname, bad);
        else
            fprintf(stderr, "%s: unrecognized option '%s'\n", progname, bad);
        print_usage(stderr);
        return 0;
    }
    luaL_openlibs(L);
    fh_open_builtins(L);
    fh_push_exe_path(L);
    fh_paths_setup(L, lua_tostring(L, -1), !(args & HAS_BIG_E));
    fh_fallback_setup(L, !(args & HAS_BIG_E));
    lua_pop(L, 1);
    createargtable(L, argv, argc, script);
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCGEN, 0, 0);

    if (args & HAS_HELP) {
        print_usage(stdout);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (args & HAS_V)
        print_version();
    if (args & HAS_PATHS)
        print_paths(L);
    if (!runargs(L, argv, script))
        return 0;
    if (script < argc && handle_script(L, argv + script) != LUA_OK)
        return 0;
    if (args & HAS_I) {
        doREPL(L);
    } else if (script == argc && !(args & (HAS_E | HAS_V))) {
        if (isatty(STDIN_FILENO)) {
            print_version();
            doREPL(L);
        } else if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) {
            return 0;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * The app's reload (host.reexec): the same binary, the same argv, the same
 * PID. `exe` is the binary's path read at start: a package upgrade that
 * replaced the file meanwhile brings the new one, matching the scripts it
 * installed beside it. A SIGHUP that comes before the new app is ready is
 * ignored (an ignored signal stays ignored across exec) instead of killing
 * it: the new app reads every file afresh anyway. Returns only on failure.
 */
static void reexec(const char *exe, char **argv)
{
    signal(SIGHUP, SIG_IGN);
    fflush(NULL);
    if (exe[0] != '\0') {
        execv(exe, argv);
        /* the file gone (a package removed meanwhile, say): the binary
         * that runs now is still there to run again */
        fprintf(stderr, "%s: reload: exec %s: %s; trying /proc/self/exe\n", FOTAHOST_PROGNAME, exe,
                strerror(errno));
    }
    execv("/proc/self/exe", argv);
    fprintf(stderr, "%s: reload: exec /proc/self/exe: %s\n", FOTAHOST_PROGNAME, strerror(errno));
}

int main(int argc, char **argv)
{
    int status, result, sig;
    char exe[PATH_MAX] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    lua_State *L = luaL_newstate();

    if (L == NULL) {
        l_message(argv[0], "cannot create state: not enough memory");
        return EXIT_FAILURE;
    }
    lua_gc(L, LUA_GCSTOP); /* no collections while building the state */
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    status = lua_pcall(L, 2, 1, 0);
    result = lua_toboolean(L, -1);
    report(L, status);
    lua_close(L);
    if (status == LUA_OK && result && fh_reexec_requested()) {
        /* A stop that came as the chunk returned is a stop, not a reload:
         * the new app would never hear of it (procd would wait, then
         * SIGKILL). */
        sig = fh_signals_pending();
        if (sig != 0)
            return 128 + sig;
        exe[n > 0 ? n : 0] = '\0';
        reexec(exe, argv);
        return EXIT_FAILURE;
    }
    if (status == LUA_OK && result)
        return EXIT_SUCCESS;
    /* Stopped by a signal: say so to the parent the way shells expect. */
    sig = fh_signals_raised();
    return sig != 0 ? 128 + sig : EXIT_FAILURE;
}
