/*
 * tcp.core.c: `fotahost.tcp.core`, non-blocking TCP sockets over IPv4 and
 * IPv6: the device's command channel to the cloud, and the listening side
 * that tests and the local cloud use.
 *
 *   local core = require "fotahost.tcp.core"
 *   local sock = assert(core.connect_start("127.0.0.1", 8080))
 *   -- wait until sock:fd() is writable, then
 *   assert(sock:connect_finish())       -- true, or nil, "wouldblock" if too early
 *   sock:write_available("hello\n")     -- bytes written, or nil, "wouldblock"
 *
 * Only non-blocking primitives live here: every call returns at once.
 * Waiting, with a timeout and under the scheduler, is the Lua side's job
 * (scripts/fotahost/tcp.lua). Names are resolved without blocking
 * the process: numeric addresses at once, others by getaddrinfo in a
 * thread of their own, whose end the Lua side waits for on a pipe
 * (resolve_start, see "resolver" below).
 * Sends use MSG_NOSIGNAL: a peer that went away is a return value, never a
 * SIGPIPE.
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fotahost.h"

#define SOCK_MT "fotahost.tcp.core.socket"
#define SERVER_MT "fotahost.tcp.core.server"
#define RESOLVER_MT "fotahost.tcp.core.resolver"
#define TCP_BACKLOG_DEFAULT 32
/* "host:port": a DNS name is at most 253 bytes */
#define NAME_MAX_LEN 300
/* a numeric host, an IPv6 scope included */
#define NUMHOST_LEN 64

typedef struct {
    int fd;         /* -1 once closed */
    int connecting; /* connect_start said EINPROGRESS; connect_finish not yet true */
    char name[NAME_MAX_LEN]; /* "host:port" as given (or the peer's), for messages */
} Sock;

/* ------------------------------------------------------------ helpers */

/* "host:port", or "[v6]:port" so the port cannot be read as part of it. */
static void format_name(char *buf, size_t len, const char *host, int port)
{
    if (strchr(host, ':') != NULL)
        snprintf(buf, len, "[%s]:%d", host, port);
    else
        snprintf(buf, len, "%s:%d", host, port);
}

static int check_port(lua_State *L, int arg)
{
    lua_Integer port = luaL_checkinteger(L, arg);

    luaL_argcheck(L, port >= 0 && port <= 65535, arg, "port must be 0..65535");
    return (int)port;
}

/* Numeric host and port to addresses; never touches DNS or the network. */
static int numeric_addrinfo(const char *host, int port, int passive, struct addrinfo **res)
{
    struct addrinfo hints;
    char serv[8];

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
    snprintf(serv, sizeof serv, "%d", port);
    return getaddrinfo(host, serv, &hints, res);
}

static int numeric_failure(lua_State *L, const char *name, int gai)
{
    if (gai == EAI_NONAME)
        return fh_result_msg(L, "%s: not a numeric address (names are resolved with "
                                "tcp.core.resolve_start or tcp.connect)", name);
    return fh_result_msg(L, "%s: %s", name, gai_strerror(gai));
}

/* Pushes host (numeric) and port of `sa`, or fail, msg, errno. */
static int push_address(lua_State *L, const struct sockaddr *sa, socklen_t len, const char *what)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    int gai = getnameinfo(sa, len, host, sizeof host, serv, sizeof serv,
                          NI_NUMERICHOST | NI_NUMERICSERV);

    if (gai != 0)
        return fh_result_msg(L, "%s: %s", what, gai_strerror(gai));
    lua_pushstring(L, host);
    lua_pushinteger(L, atoi(serv));
    return 2;
}

static Sock *new_sock(lua_State *L, const char *mt, const char *name)
{
    Sock *s = (Sock *)lua_newuserdatauv(L, sizeof(Sock), 0);

    s->fd = -1;
    s->connecting = 0;
    snprintf(s->name, sizeof s->name, "%s", name);
    luaL_setmetatable(L, mt);
    return s;
}

static Sock *check_open(lua_State *L, const char *mt, const char *what)
{
    Sock *s = (Sock *)luaL_checkudata(L, 1, mt);

    if (s->fd < 0)
        luaL_error(L, "attempt to use a closed %s", what);
    return s;
}

static Sock *check_sock(lua_State *L)
{
    return check_open(L, SOCK_MT, "tcp socket");
}

static Sock *check_server(lua_State *L)
{
    return check_open(L, SERVER_MT, "tcp server");
}

/* ------------------------------------------------------------ resolver */

/*
 * A name is looked up by plain getaddrinfo in a detached thread of its own,
 * so the lookup blocks that thread, never the scheduler, on any libc (glibc's
 * getaddrinfo_a does the same but exists nowhere else; c-ares would be one
 * more library on the board for what one thread per lookup does). When it
 * is done the thread writes a byte to a pipe: resolver:fd() turns readable,
 * and the scheduler waits on it like any socket.
 *
 * A lookup cannot be interrupted: a resolver closed (or collected) while
 * its thread still runs is only marked abandoned, and the thread frees the
 * request, its result and its pipe when getaddrinfo returns. `lock` guards
 * `done` and `abandoned`, the hand-over between the two; whoever sees the
 * other side gone frees the request. The thread touches no Lua state.
 */
typedef struct {
    pthread_mutex_t lock;
    int started;              /* a thread owns the lookup until `done` */
    int done;                 /* the thread has written gai, result and the byte */
    int abandoned;            /* the Lua side let go: the thread frees it all */
    int gai;                  /* getaddrinfo's error, 0 if it found addresses */
    int pipe[2];              /* read end for the scheduler, write end for the thread */
    struct addrinfo *result;  /* the addresses, numeric ones at once */
    char host[256];
    char serv[8];
    char name[NAME_MAX_LEN];
} Req;

typedef struct {
    Req *req; /* NULL once closed */
} Resolver;

static void free_req(Req *r)
{
    if (r->result != NULL)
        freeaddrinfo(r->result);
    if (r->pipe[0] >= 0)
        close(r->pipe[0]);
    if (r->pipe[1] >= 0)
        close(r->pipe[1]);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static void *lookup_thread(void *arg)
{
    Req *r = (Req *)arg;
    struct addrinfo hints, *result = NULL;
    int gai, abandoned;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_ADDRCONFIG;
    gai = getaddrinfo(r->host, r->serv, &hints, &result);
    pthread_mutex_lock(&r->lock);
    r->gai = gai;
    r->result = gai == 0 ? result : NULL;
    r->done = 1;
    abandoned = r->abandoned;
    /* under the lock: once `done` is seen, the Lua side may close the pipe */
    if (!abandoned && write(r->pipe[1], "", 1) < 0) {
        /* a full pipe cannot happen (one byte); nothing else to tell */
    }
    pthread_mutex_unlock(&r->lock);
    if (abandoned)
        free_req(r);
    return NULL;
}

/* Starts the thread with every signal blocked: the host's handlers must
 * run on the Lua thread. 0 or an errno. */
static int start_lookup(Req *r)
{
    pthread_attr_t attr;
    pthread_t tid;
    sigset_t all, old;
    int err;

    if (pipe2(r->pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return errno;
    if ((err = pthread_attr_init(&attr)) != 0)
        return err;
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    r->started = 1;
    err = pthread_create(&tid, &attr, lookup_thread, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err != 0)
        r->started = 0;
    return err;
}

/* The Lua side lets go: frees the request now, or leaves it to its thread. */
static void release_req(Req *r)
{
    int running;

    pthread_mutex_lock(&r->lock);
    running = r->started && !r->done;
    r->abandoned = 1;
    pthread_mutex_unlock(&r->lock);
    if (!running)
        free_req(r);
}

static Req *new_req(lua_State *L, const char *host, size_t hlen, int port)
{
    Resolver *res = (Resolver *)lua_newuserdatauv(L, sizeof(Resolver), 0);
    Req *r;

    res->req = NULL;
    luaL_setmetatable(L, RESOLVER_MT);
    r = (Req *)calloc(1, sizeof *r);
    if (r == NULL)
        luaL_error(L, "out of memory");
    pthread_mutex_init(&r->lock, NULL);
    r->pipe[0] = r->pipe[1] = -1;
    res->req = r;
    memcpy(r->host, host, hlen + 1);
    snprintf(r->serv, sizeof r->serv, "%d", port);
    format_name(r->name, sizeof r->name, host, port);
    return r;
}

/*
 * tcp.resolve_start(host, port) -> resolver | fail, "host:port: cause"[, errno]
 * Starts looking `host` up; resolver:result() says when it is done, and
 * resolver:fd() turns readable then. A numeric address is done at once.
 */
static int tcp_resolve_start(lua_State *L)
{
    size_t hlen;
    const char *host = luaL_checklstring(L, 1, &hlen);
    int port = check_port(L, 2);
    Req *r;
    int gai, err;

    luaL_argcheck(L, hlen > 0 && hlen < sizeof r->host, 1, "host name empty or too long");
    r = new_req(L, host, hlen, port);
    gai = numeric_addrinfo(host, port, 0, &r->result);
    if (gai != EAI_NONAME) {
        if (gai != 0)
            r->result = NULL;
        r->gai = gai;
        return 1;
    }
    r->result = NULL;
    if ((err = start_lookup(r)) != 0)
        return fh_result_errno(L, err, r->name);
    return 1;
}

/* Whether the lookup is still running (its thread owns the request). */
static int in_progress(Req *r)
{
    int running;

    if (!r->started)
        return 0;
    pthread_mutex_lock(&r->lock);
    running = !r->done;
    pthread_mutex_unlock(&r->lock);
    return running;
}

static Resolver *check_resolver(lua_State *L)
{
    Resolver *res = (Resolver *)luaL_checkudata(L, 1, RESOLVER_MT);

    if (res->req == NULL)
        luaL_error(L, "attempt to use a closed resolver");
    return res;
}

/*
 * resolver:result() -> { "addr", ... } (numeric, in the order to try)
 *                    | nil, "wouldblock" | fail, "host:port: cause"
 */
static int resolver_result(lua_State *L)
{
    Req *r = check_resolver(L)->req;
    struct addrinfo *ai;
    int i = 0;

    if (in_progress(r)) {
        lua_pushnil(L);
        lua_pushliteral(L, "wouldblock");
        return 2;
    }
    if (r->gai != 0)
        return fh_result_msg(L, "%s: %s", r->name, gai_strerror(r->gai));
    lua_newtable(L);
    for (ai = r->result; ai != NULL; ai = ai->ai_next) {
        char host[NI_MAXHOST];
        if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, NULL, 0,
                        NI_NUMERICHOST) != 0)
            continue;
        lua_pushstring(L, host);
        lua_rawseti(L, -2, ++i);
    }
    return 1;
}

/*
 * resolver:fd() -> integer, readable once result() no longer says
 * "wouldblock" | nil when the result was there at once (a numeric host)
 */
static int resolver_fd(lua_State *L)
{
    Req *r = check_resolver(L)->req;

    if (r->pipe[0] < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, r->pipe[0]);
    return 1;
}

/* Idempotent: __gc, __close and resolver:close() all end here. */
static int resolver_close(lua_State *L)
{
    Resolver *res = (Resolver *)luaL_checkudata(L, 1, RESOLVER_MT);

    if (res->req != NULL) {
        release_req(res->req);
        res->req = NULL;
    }
    return 0;
}

static int resolver_tostring(lua_State *L)
{
    Resolver *res = (Resolver *)luaL_checkudata(L, 1, RESOLVER_MT);

    if (res->req == NULL)
        lua_pushliteral(L, "tcp resolver (closed)");
    else
        lua_pushfstring(L, "tcp resolver %s", res->req->name);
    return 1;
}

/* ------------------------------------------------------------ client */

/*
 * tcp.connect_start(addr, port[, name]) -> sock (connecting)
 *                                       | fail, "name: cause"[, errno]
 * `addr` must be numeric (resolve_start turns names into addresses);
 * `name` ("host:port" by default) is what messages and tostring call it.
 */
static int tcp_connect_start(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int port = check_port(L, 2);
    const char *given = luaL_optstring(L, 3, NULL);
    char name[NAME_MAX_LEN];
    struct addrinfo *ai;
    Sock *s;
    int gai;

    if (given != NULL)
        snprintf(name, sizeof name, "%s", given);
    else
        format_name(name, sizeof name, host, port);
    if ((gai = numeric_addrinfo(host, port, 0, &ai)) != 0)
        return numeric_failure(L, name, gai);
    s = new_sock(L, SOCK_MT, name);
    s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0) {
        int err = errno;
        freeaddrinfo(ai);
        return fh_result_errno(L, err, name);
    }
    if (connect(s->fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        int err = errno;
        if (err != EINPROGRESS && err != EINTR) {
            freeaddrinfo(ai);
            close(s->fd);
            s->fd = -1;
            return fh_result_errno(L, err, name);
        }
        s->connecting = 1;
    }
    freeaddrinfo(ai);
    return 1;
}

/*
 * sock:connect_finish() -> true | nil, "wouldblock" | fail, "name: cause", errno
 * Call once the fd is writable: SO_ERROR says how the connect ended.
 */
static int sock_connect_finish(lua_State *L)
{
    Sock *s = check_sock(L);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(int);
    int err = 0;

    if (!s->connecting) {
        lua_pushboolean(L, 1);
        return 1;
    }
    if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0)
        return fh_result_errno(L, err, s->name);
    len = sizeof ss;
    if (getpeername(s->fd, (struct sockaddr *)&ss, &len) != 0) {
        if (errno == ENOTCONN) {
            lua_pushnil(L);
            lua_pushliteral(L, "wouldblock");
            return 2;
        }
        return fh_result_errno(L, errno, s->name);
    }
    s->connecting = 0;
    lua_pushboolean(L, 1);
    return 1;
}

/* sock:fd() -> integer, for the scheduler's wait_fd and for poll */
static int sock_fd(lua_State *L)
{
    lua_pushinteger(L, check_sock(L)->fd);
    return 1;
}

/* sock:name() -> "host:port", as connect was given it or as accepted */
static int sock_name(lua_State *L)
{
    lua_pushstring(L, check_sock(L)->name);
    return 1;
}

/* A reset, or a write after the peer shut down: the peer is gone, "closed". */
#define PEER_GONE_A EPIPE
#define PEER_GONE_B ECONNRESET

/*
 * sock:read_available([max]) -> data (1..max bytes, default max 4096)
 *                             | nil, "wouldblock" | nil, "closed"
 *                             | fail, "name: strerror", errno
 */
static int sock_read_available(lua_State *L)
{
    Sock *s = check_sock(L);

    /* read() on the non-blocking socket: recv(MSG_DONTWAIT) without flags */
    return fh_stream_read(L, s->fd, PEER_GONE_A, PEER_GONE_B, s->name);
}

/*
 * sock:write_available(data[, i]) -> bytes written (0..#data-i+1)
 *                                  | nil, "wouldblock" | nil, "closed"
 *                                  | fail, "name: strerror", errno
 * Sends data from byte i on (default 1), as much as the kernel takes now.
 */
static int sock_write_available(lua_State *L)
{
    Sock *s = check_sock(L);

    return fh_stream_write(L, s->fd, MSG_NOSIGNAL | MSG_DONTWAIT, PEER_GONE_A, PEER_GONE_B, s->name);
}

/* sock:shutdown([how]) -> true | fail, msg, errno; how: "w" (default), "r", "rw" */
static int sock_shutdown(lua_State *L)
{
    static const char *const names[] = { "w", "r", "rw", NULL };
    static const int hows[] = { SHUT_WR, SHUT_RD, SHUT_RDWR };
    Sock *s = check_sock(L);
    int how = hows[luaL_checkoption(L, 2, "w", names)];

    if (shutdown(s->fd, how) != 0)
        return fh_result_errno(L, errno, s->name);
    lua_pushboolean(L, 1);
    return 1;
}

static const char *const option_names[] = { "keepalive", "nodelay", "user_timeout", NULL };

static void option_level(int which, int *level, int *opt)
{
    static const int levels[] = { SOL_SOCKET, IPPROTO_TCP, IPPROTO_TCP };
    static const int opts[] = { SO_KEEPALIVE, TCP_NODELAY, TCP_USER_TIMEOUT };
    *level = levels[which];
    *opt = opts[which];
}

/*
 * sock:setoption("keepalive"|"nodelay", bool) -> true | fail, msg, errno
 * sock:setoption("user_timeout", seconds) -> true | fail, msg, errno:
 * how long sent data may stay unacknowledged before the connection is
 * declared dead (TCP_USER_TIMEOUT; 0: the system's default, ~15 minutes).
 */
static int sock_setoption(lua_State *L)
{
    Sock *s = check_sock(L);
    int which = luaL_checkoption(L, 2, NULL, option_names);
    int level, opt, on;
    unsigned int ms;

    option_level(which, &level, &opt);
    if (which == 2) {
        lua_Number sec = luaL_checknumber(L, 3);
        luaL_argcheck(L, sec >= 0 && sec <= 86400, 3, "seconds out of range");
        ms = (unsigned int)(sec * 1000);
        if (setsockopt(s->fd, level, opt, &ms, sizeof ms) != 0)
            return fh_result_errno(L, errno, s->name);
    } else {
        luaL_checktype(L, 3, LUA_TBOOLEAN);
        on = lua_toboolean(L, 3);
        if (setsockopt(s->fd, level, opt, &on, sizeof on) != 0)
            return fh_result_errno(L, errno, s->name);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* sock:getoption("keepalive"|"nodelay") -> bool, ("user_timeout") -> seconds
 * | fail, msg, errno */
static int sock_getoption(lua_State *L)
{
    Sock *s = check_sock(L);
    int which = luaL_checkoption(L, 2, NULL, option_names);
    int level, opt;
    unsigned int v = 0;
    socklen_t len = sizeof v;

    option_level(which, &level, &opt);
    if (getsockopt(s->fd, level, opt, &v, &len) != 0)
        return fh_result_errno(L, errno, s->name);
    if (which == 2)
        lua_pushnumber(L, (lua_Number)v / 1000);
    else
        lua_pushboolean(L, v != 0);
    return 1;
}

static int get_address(lua_State *L, Sock *s, int peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = peer ? getpeername(s->fd, (struct sockaddr *)&ss, &len)
                  : getsockname(s->fd, (struct sockaddr *)&ss, &len);

    if (rc != 0)
        return fh_result_errno(L, errno, s->name);
    return push_address(L, (struct sockaddr *)&ss, len, s->name);
}

/* sock:getpeername() -> host, port | fail, msg, errno */
static int sock_getpeername(lua_State *L)
{
    return get_address(L, check_sock(L), 1);
}

/* sock:getsockname() -> host, port | fail, msg, errno */
static int sock_getsockname(lua_State *L)
{
    return get_address(L, check_sock(L), 0);
}

/* Idempotent, never raises: close(), __close and __gc all end here. */
static void close_sock(Sock *s)
{
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

/* sock:close() / server:close() -> true (a socket's close has nothing to report) */
static int sock_close(lua_State *L)
{
    Sock *s = (Sock *)luaL_testudata(L, 1, SOCK_MT);

    if (s == NULL)
        s = (Sock *)luaL_checkudata(L, 1, SERVER_MT);
    close_sock(s);
    lua_pushboolean(L, 1);
    return 1;
}

static int sock_gc(lua_State *L)
{
    Sock *s = (Sock *)luaL_testudata(L, 1, SOCK_MT);

    if (s == NULL)
        s = (Sock *)luaL_testudata(L, 1, SERVER_MT);
    if (s != NULL)
        close_sock(s);
    return 0;
}

/* "tcp socket 127.0.0.1:80", "(connecting)" or "(closed)" after it */
static int sock_tostring(lua_State *L)
{
    Sock *s = (Sock *)luaL_checkudata(L, 1, SOCK_MT);

    lua_pushfstring(L, "tcp socket %s%s", s->name,
                    s->fd < 0 ? " (closed)" : s->connecting ? " (connecting)" : "");
    return 1;
}

/* ------------------------------------------------------------ server */

/*
 * tcp.listen(addr, port[, backlog]) -> server | fail, "addr:port: cause", errno
 * `addr` numeric ("127.0.0.1", "::1", "0.0.0.0", "::"); port 0 picks a
 * free one (server:getsockname() says which). SO_REUSEADDR is set, so a
 * restarted local cloud can bind again at once.
 */
static int tcp_listen(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int port = check_port(L, 2);
    lua_Integer backlog = luaL_optinteger(L, 3, TCP_BACKLOG_DEFAULT);
    char name[NAME_MAX_LEN];
    struct addrinfo *ai;
    Sock *s;
    int gai, on = 1;

    luaL_argcheck(L, backlog >= 0 && backlog <= 65535, 3, "backlog must be 0..65535");
    format_name(name, sizeof name, host, port);
    if ((gai = numeric_addrinfo(host, port, 1, &ai)) != 0)
        return numeric_failure(L, name, gai);
    s = new_sock(L, SERVER_MT, name);
    s->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->fd < 0 ||
        setsockopt(s->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(s->fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
        listen(s->fd, (int)backlog) != 0) {
        int err = errno;
        freeaddrinfo(ai);
        close_sock(s);
        return fh_result_errno(L, err, name);
    }
    freeaddrinfo(ai);
    return 1;
}

/* server:fd() -> integer */
static int server_fd(lua_State *L)
{
    lua_pushinteger(L, check_server(L)->fd);
    return 1;
}

/* server:getsockname() -> host, port | fail, msg, errno */
static int server_getsockname(lua_State *L)
{
    return get_address(L, check_server(L), 0);
}

/*
 * server:accept_available() -> sock (named after its peer)
 *                            | nil, "wouldblock" | fail, msg, errno
 * A connection that died in the queue (ECONNABORTED) is "wouldblock" too:
 * there is nothing to take now.
 */
static int server_accept_available(lua_State *L)
{
    Sock *srv = check_server(L);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[NUMHOST_LEN], serv[NI_MAXSERV], name[NAME_MAX_LEN];
    Sock *s;
    int fd;

    do
        fd = accept4(srv->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK || err == ECONNABORTED) {
            lua_pushnil(L);
            lua_pushliteral(L, "wouldblock");
            return 2;
        }
        return fh_result_errno(L, err, srv->name);
    }
    if (getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) == 0)
        format_name(name, sizeof name, host, atoi(serv));
    else
        snprintf(name, sizeof name, "peer of %.200s", srv->name);
    s = new_sock(L, SOCK_MT, name);
    s->fd = fd;
    return 1;
}

/* "tcp server 127.0.0.1:0 (listening on 127.0.0.1:41234)" or "(closed)" */
static int server_tostring(lua_State *L)
{
    Sock *s = (Sock *)luaL_checkudata(L, 1, SERVER_MT);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char host[NUMHOST_LEN], serv[NI_MAXSERV], bound[NAME_MAX_LEN];

    if (s->fd < 0)
        lua_pushfstring(L, "tcp server %s (closed)", s->name);
    else if (getsockname(s->fd, (struct sockaddr *)&ss, &len) == 0 &&
             getnameinfo((struct sockaddr *)&ss, len, host, sizeof host, serv, sizeof serv,
                         NI_NUMERICHOST | NI_NUMERICSERV) == 0) {
        format_name(bound, sizeof bound, host, atoi(serv));
        lua_pushfstring(L, "tcp server %s", bound);
    } else
        lua_pushfstring(L, "tcp server %s", s->name);
    return 1;
}

/* ------------------------------------------------------------ module */

static const luaL_Reg sock_methods[] = {
    {"fd", sock_fd},
    {"name", sock_name},
    {"connect_finish", sock_connect_finish},
    {"read_available", sock_read_available},
    {"write_available", sock_write_available},
    {"shutdown", sock_shutdown},
    {"setoption", sock_setoption},
    {"getoption", sock_getoption},
    {"getpeername", sock_getpeername},
    {"getsockname", sock_getsockname},
    {"close", sock_close},
    {NULL, NULL},
};

static const luaL_Reg sock_meta[] = {
    {"__index", NULL}, /* set by fh_new_class */
    {"__gc", sock_gc},
    {"__close", sock_gc},
    {"__tostring", sock_tostring},
    {NULL, NULL},
};

static const luaL_Reg server_methods[] = {
    {"fd", server_fd},
    {"accept_available", server_accept_available},
    {"getsockname", server_getsockname},
    {"close", sock_close},
    {NULL, NULL},
};

static const luaL_Reg server_meta[] = {
    {"__index", NULL},
    {"__gc", sock_gc},
    {"__close", sock_gc},
    {"__tostring", server_tostring},
    {NULL, NULL},
};

static const luaL_Reg resolver_methods[] = {
    {"result", resolver_result},
    {"fd", resolver_fd},
    {"close", resolver_close},
    {NULL, NULL},
};

static const luaL_Reg resolver_meta[] = {
    {"__index", NULL},
    {"__gc", resolver_close},
    {"__close", resolver_close},
    {"__tostring", resolver_tostring},
    {NULL, NULL},
};

static const luaL_Reg tcp_funcs[] = {
    {"resolve_start", tcp_resolve_start},
    {"connect_start", tcp_connect_start},
    {"listen", tcp_listen},
    {NULL, NULL},
};

int luaopen_fotahost_tcp_core(lua_State *L);

int luaopen_fotahost_tcp_core(lua_State *L)
{
    fh_new_class(L, SOCK_MT, sock_meta, sock_methods);
    fh_new_class(L, SERVER_MT, server_meta, server_methods);
    fh_new_class(L, RESOLVER_MT, resolver_meta, resolver_methods);
    luaL_newlib(L, tcp_funcs);
    return 1;
}
