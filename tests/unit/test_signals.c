/*
 * Unit tests of host/signals.c: a signal becomes a Lua error raised by a
 * hook, in the main thread and in an armed coroutine that never yields,
 * and <close> variables run while it unwinds; one no Lua code was left to
 * raise is reported as pending, and ends a blocking wait at once.
 */
#include <errno.h>
#include <signal.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "fotahost.h"
#include "unit.h"

/* raise() from Lua, so the signal arrives while Lua code runs. */
static int l_raise(lua_State *L)
{
    raise((int)luaL_checkinteger(L, 1));
    return 0;
}

static int l_arm(lua_State *L)
{
    fh_signals_arm_thread(lua_tothread(L, 1));
    return 0;
}

static int run(lua_State *L, const char *code)
{
    int status;

    fh_signals_install(L);
    status = luaL_dostring(L, code);
    fh_signals_restore();
    return status;
}

int main(void)
{
    lua_State *L = luaL_newstate();

    luaL_openlibs(L);
    lua_register(L, "raise", l_raise);
    lua_register(L, "arm", l_arm);
    CHECK(fh_signals_raised() == 0);

    /* main thread: the loop after raise() is stopped, the close runs */
    CHECK(run(L, "closed = false\n"
                 "local c <close> = setmetatable({}, {__close = function() closed = true end})\n"
                 "raise(15)\n"
                 "while true do end") != LUA_OK);
    CHECK(strstr(lua_tostring(L, -1), "interrupted (SIGTERM)") != NULL);
    lua_pop(L, 1);
    CHECK(fh_signals_raised() == SIGTERM);
    lua_getglobal(L, "closed");
    CHECK(lua_toboolean(L, -1));
    lua_pop(L, 1);

    /* an armed coroutine that never yields is stopped too; the error is
     * consumed once, so the code after resume sees no second one */
    CHECK(run(L, "local co = coroutine.create(function() raise(2) while true do end end)\n"
                 "arm(co)\n"
                 "ok, err = coroutine.resume(co)\n"
                 "after = true") == LUA_OK);
    lua_getglobal(L, "ok");
    CHECK(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    lua_getglobal(L, "err");
    CHECK(strstr(lua_tostring(L, -1), "interrupted (SIGINT)") != NULL);
    lua_getglobal(L, "after");
    CHECK(lua_toboolean(L, -1));
    lua_pop(L, 3);
    CHECK(fh_signals_raised() == SIGINT);

    /* handlers are restored after the run: SIGINT is ignored again here */
    signal(SIGINT, SIG_IGN);
    CHECK(run(L, "x = 1") == LUA_OK);
    raise(SIGINT); /* would kill the test if our handler were left behind... */
    CHECK(run(L, "y = 1") == LUA_OK); /* ...or raise here */

    /* a signal with no Lua code left to raise it (it came as the chunk
     * returned) is still known: main() stops instead of a reload */
    fh_signals_install(L);
    raise(SIGTERM);
    fh_signals_restore();
    CHECK(fh_signals_raised() == SIGINT);
    CHECK(fh_signals_pending() == SIGTERM);

    /* that one is still caught and not raised, as when it lands after the
     * scheduler's last Lua instruction and before its wait: the wait must
     * end at once (EINTR, so Lua runs and raises it), not sleep 3 s */
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev;
    time_t before = time(NULL);
    errno = 0;
    CHECK(fh_signals_epoll_wait(ep, &ev, 1, 3000) == -1 && errno == EINTR);
    CHECK(time(NULL) - before < 2);
    CHECK(fh_signals_epoll_wait(ep, &ev, 1, 0) == 0); /* a poll that cannot sleep is left alone */
    close(ep);

    lua_close(L);
    return UNIT_END();
}
