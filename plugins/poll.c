/*
 * poll.c: `fotahost.poll`, the one wait primitive under the scheduler.
 *
 * A poller watches file descriptors for reading and writing and returns
 * them one at a time from wait(), in the shape of Prosody's util.poll:
 *
 *   local p = poll.new()
 *   p:add(fd, true, false)          -- watch for reading
 *   local fd, r, w = p:wait(1.5)    -- or nil, "timeout" / nil, "signal"
 *
 * wait() always takes a timeout: nothing here can block the process for
 * ever by accident. Linux epoll underneath (the board's 3.18 kernel has it).
 *
 * Errors: misuse raises; a failed system call returns nil, "call: strerror",
 * code: code is the errno.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "fotahost.h"

#define POLL_MT "fotahost.poll"
#define POLL_MAX_EVENTS 64

typedef struct {
    int epfd;   /* -1 once closed */
    int nready; /* events returned by the last epoll_wait */
    int next;   /* the next of them to hand out */
    struct epoll_event ev[POLL_MAX_EVENTS];
} Poller;

static Poller *check_poller(lua_State *L)
{
    Poller *p = (Poller *)luaL_checkudata(L, 1, POLL_MT);

    if (p->epfd < 0)
        luaL_error(L, "attempt to use a closed poller");
    return p;
}

static int check_fd(lua_State *L, int arg)
{
    lua_Integer fd = luaL_checkinteger(L, arg);

    luaL_argcheck(L, fd >= 0 && fd <= INT_MAX, arg, "not a file descriptor");
    return (int)fd;
}

static uint32_t wanted_events(lua_State *L, int arg)
{
    uint32_t events = 0;

    if (lua_toboolean(L, arg))
        events |= EPOLLIN | EPOLLRDHUP;
    if (lua_toboolean(L, arg + 1))
        events |= EPOLLOUT;
    return events;
}

static int poller_ctl(lua_State *L, int op, const char *verb)
{
    Poller *p = check_poller(L);
    int fd = check_fd(L, 2);
    struct epoll_event ev;

    memset(&ev, 0, sizeof ev);
    ev.events = op == EPOLL_CTL_DEL ? 0 : wanted_events(L, 3);
    ev.data.fd = fd;
    if (epoll_ctl(p->epfd, op, fd, &ev) != 0) {
        int err = errno;
        char what[48];
        snprintf(what, sizeof what, "%s fd %d", verb, fd);
        return fh_result_errno(L, err, what);
    }
    if (op == EPOLL_CTL_DEL) {
        int i; /* forget events of this fd not handed out yet */
        for (i = p->next; i < p->nready; i++)
            if (p->ev[i].data.fd == fd)
                p->ev[i].events = 0;
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* p:add(fd, read, write) -> true | fail, msg, errno */
static int poller_add(lua_State *L)
{
    return poller_ctl(L, EPOLL_CTL_ADD, "watch");
}

/* p:set(fd, read, write) -> true | fail, msg, errno */
static int poller_set(lua_State *L)
{
    return poller_ctl(L, EPOLL_CTL_MOD, "change");
}

/* p:del(fd) -> true | fail, msg, errno */
static int poller_del(lua_State *L)
{
    return poller_ctl(L, EPOLL_CTL_DEL, "unwatch");
}

/* Converts seconds to epoll milliseconds, rounding up so we never wake early. */
static int timeout_ms(lua_State *L, int arg)
{
    lua_Number t = luaL_checknumber(L, arg);

    luaL_argcheck(L, !isnan(t), arg, "timeout is NaN");
    if (t < 0 || t >= (lua_Number)INT_MAX / 1000)
        return t < 0 ? 0 : -1; /* math.huge waits for ever, on purpose */
    return (int)ceil(t * 1000);
}

/*
 * p:wait(timeout) -> fd, readable, writable
 *                  | nil, "timeout" | nil, "signal" | fail, msg, errno
 * An error or hang-up on the fd reports it readable (and writable when
 * watched for writing), so whoever waits on it sees the failure at once.
 */
static int poller_wait(lua_State *L)
{
    Poller *p = check_poller(L);
    int ms = timeout_ms(L, 2);

    while (p->next >= p->nready) {
        /* a signal that lands just before the wait ends it too */
        int n = fh_signals_epoll_wait(p->epfd, p->ev, POLL_MAX_EVENTS, ms);
        if (n < 0) {
            int err = errno;
            if (err == EINTR) {
                lua_pushnil(L);
                lua_pushliteral(L, "signal");
                return 2;
            }
            return fh_result_errno(L, err, "poll");
        }
        p->nready = n;
        p->next = 0;
        if (n == 0) {
            lua_pushnil(L);
            lua_pushliteral(L, "timeout");
            return 2;
        }
    }
    for (; p->next < p->nready; p->next++) {
        struct epoll_event *e = &p->ev[p->next];
        if (e->events == 0)
            continue; /* removed after it was reported */
        lua_pushinteger(L, e->data.fd);
        lua_pushboolean(L, (e->events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0);
        lua_pushboolean(L, (e->events & (EPOLLOUT | EPOLLERR)) != 0);
        p->next++;
        return 3;
    }
    lua_pushnil(L); /* every buffered event was for a removed fd */
    lua_pushliteral(L, "timeout");
    return 2;
}

/* Idempotent: __gc, __close and p:close() all end here. */
static int poller_close(lua_State *L)
{
    Poller *p = (Poller *)luaL_checkudata(L, 1, POLL_MT);

    if (p->epfd >= 0) {
        close(p->epfd);
        p->epfd = -1;
    }
    return 0;
}

static int poller_tostring(lua_State *L)
{
    Poller *p = (Poller *)luaL_checkudata(L, 1, POLL_MT);

    if (p->epfd < 0)
        lua_pushliteral(L, "poller (closed)");
    else
        lua_pushfstring(L, "poller (%p)", (void *)p);
    return 1;
}

/* poll.new() -> poller | fail, msg, errno */
static int poll_new(lua_State *L)
{
    Poller *p = (Poller *)lua_newuserdatauv(L, sizeof(Poller), 0);

    p->epfd = -1;
    p->nready = p->next = 0;
    luaL_setmetatable(L, POLL_MT);
    p->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (p->epfd < 0)
        return fh_result_errno(L, errno, "epoll_create1");
    return 1;
}

static const luaL_Reg poller_methods[] = {
    {"add", poller_add},
    {"set", poller_set},
    {"del", poller_del},
    {"wait", poller_wait},
    {"close", poller_close},
    {NULL, NULL},
};

static const luaL_Reg poller_meta[] = {
    {"__index", NULL}, /* set below */
    {"__gc", poller_close},
    {"__close", poller_close},
    {"__tostring", poller_tostring},
    {NULL, NULL},
};

static const luaL_Reg poll_funcs[] = {
    {"new", poll_new},
    {NULL, NULL},
};

int luaopen_fotahost_poll(lua_State *L);

int luaopen_fotahost_poll(lua_State *L)
{
    fh_new_class(L, POLL_MT, poller_meta, poller_methods);
    luaL_newlib(L, poll_funcs);
    return 1;
}
