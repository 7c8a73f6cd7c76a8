/*
 * fallback.h: a broken override script never takes the device off the air.
 *
 * Modules: a module found first in the override scripts directory that has
 * a bundled twin is loaded through a searcher of the host's: if the
 * override fails to load (a syntax error, an error while its chunk runs, a
 * chunk that returns nothing usable), one error line is logged and the
 * bundled module is used instead. A module with no twin loads as Lua loads
 * any module.
 *
 * The app (the service's script, tools/app.lua): an override app with a
 * syntax error gives way to the bundled app at once. While any override is
 * in use (any *.lua under the override directory, the app's own
 * included), its starts are counted: after FH_APP_FAILS failed starts in a
 * row (ended without a clean stop, the next start within FH_APP_WINDOW
 * seconds: procd's respawn threshold), one start runs with the override
 * directory last in package.path (the bundled scripts win; a module with
 * no twin still loads from it) and the bundled app if the app is
 * overridden. The starts are kept in $FOTAHOST_RUN_DIR/app-starts
 * (default /var/run/fotahost, in RAM on OpenWrt: a reboot starts afresh),
 * only in a directory of ours no one else may write to. Run as a service
 * (stdin not a terminal), the app ignores SIGHUP until sys.hangups()
 * takes it.
 *
 * Every fallback is recorded; require("fotahost.host").fallbacks() lists
 * them.
 */
#ifndef FOTAHOST_FALLBACK_H
#define FOTAHOST_FALLBACK_H

#include <lua.h>

#define FH_APP_FAILS 3
#define FH_APP_WINDOW 300

/* Inserts the fallback searcher before Lua's own Lua-file searcher.
 * Call after fh_paths_setup; use_env 0 (fotahost -E) ignores
 * $FOTAHOST_RUN_DIR. */
void fh_fallback_setup(lua_State *L, int use_env);

/*
 * Loads the tool `name` whose path is on top of the stack, as
 * luaL_loadfile does, and returns its status. For the app from the
 * override directory it may load the bundled app instead (see above); it
 * then replaces the path on the stack with the bundled one.
 */
int fh_load_tool(lua_State *L, const char *name);

/*
 * Records how the tool loaded by fh_load_tool ended: status is the
 * docall status (the error message on top of the stack when not LUA_OK).
 * A stop by SIGTERM/SIGINT is a clean end. Call fh_tool_ended(L, LUA_OK)
 * too before re-executing the host for a reload.
 */
void fh_tool_ended(lua_State *L, int status);

/* host.fallbacks(): a fresh sequence of the fallbacks so far. */
int fh_push_fallbacks(lua_State *L);

#endif
