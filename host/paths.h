/*
 * paths.h: where fotahost finds scripts, tools and plugins.
 *
 * Search order, first match wins:
 *   scripts: $FOTAHOST_SCRIPTS_DIR (default /etc/fotahost/scripts, the
 *            directory users edit), then the checkout's scripts/ and
 *            dev/scripts/ (the development wing) when the binary runs from
 *            a source checkout, else the installed
 *            $(PREFIX)/share/fotahost/scripts (which holds the development
 *            wing too after `make install-dev`); then Lua's system module
 *            directories, without relative entries such as ./?.lua.
 *            Tools (tools/NAME.lua) are searched in the same directories.
 *   plugins: $FOTAHOST_PLUGINS_DIR (default /etc/fotahost/plugins), then
 *            the build's plugins/ in a checkout, else $(PREFIX)/lib/fotahost/plugins;
 *            then Lua's system C module directories, without relative entries.
 * $FOTAHOST_PATH and $FOTAHOST_CPATH replace package.path and package.cpath
 * whole; ";;" in them stands for the default above. `fotahost -E` ignores
 * every FOTAHOST_* variable.
 */
#ifndef FOTAHOST_PATHS_H
#define FOTAHOST_PATHS_H

#include <lua.h>

/* The module file names tried in each scripts directory. */
#define FH_LUA_TEMPLATES "?.lua;?/init.lua"

/* Registry key of the table describing the paths in effect. */
#define FH_PATHS_KEY "fotahost.paths"

/*
 * Computes the directories, sets package.path and package.cpath, and leaves
 * the description table in the registry under FH_PATHS_KEY. `exe` is the
 * resolved path of the running binary, or NULL when unknown. Raises on
 * memory errors only.
 */
void fh_paths_setup(lua_State *L, const char *exe, int use_env);

/* Pushes the resolved path of the running binary, or nil. */
void fh_push_exe_path(lua_State *L);

/* Pushes the directory part of `path` ("." when it has none). */
void fh_push_dirname(lua_State *L, const char *path);

/* True when `dir` is the top of a fotahost source checkout. */
int fh_is_checkout(const char *dir);

/*
 * Pushes `path` (a ';'-separated template list) without its relative
 * entries: only entries starting with '/' are kept.
 */
void fh_push_absolute_only(lua_State *L, const char *path);

/* Pushes `user` with each ";;" replaced by ";" `dflt` ";", as LUA_PATH does. */
void fh_push_expanded(lua_State *L, const char *user, const char *dflt);

/*
 * Pushes "d/t1;d/t2;..." for each non-NULL dir d (in order) and each
 * template t of the ';'-separated `templates`, followed by `tail` if not
 * empty.
 */
void fh_push_search_path(lua_State *L, const char *const dirs[], int ndirs,
                         const char *templates, const char *tail);

/* Pushes the registry's paths table (the `fotahost.host` module uses it). */
void fh_push_paths(lua_State *L);

/*
 * Tools are scripts named tools/NAME.lua in the scripts directories.
 * fh_find_tool pushes the path of the first match and returns 1, or pushes
 * nothing and returns 0. fh_push_tool_list pushes a sorted sequence of the
 * names found in all directories.
 */
int fh_find_tool(lua_State *L, const char *name);
void fh_push_tool_list(lua_State *L);

/*
 * host.reexec() records the wish; main() acts on it once the Lua state is
 * closed (every fd and session released) by exec'ing the same binary with
 * the same argv: the same PID, as a supervisor (procd) expects.
 */
int fh_reexec_requested(void);

#endif
