/*
 * http.core.c: `fotahost.http.core`, one HTTP(S) transfer on libcurl's multi
 * interface that never waits. The Lua module `fotahost.http` builds the
 * calls scripts use (requests, downloads with retries and resume) on it.
 *
 *   local t = core.new{ url = "https://...", file = "/tmp/fw.hex.part" }
 *   repeat
 *     local state, wait = t:step()      -- "done" | "wait", seconds or nil
 *     if state == "wait" then sched.wait_fd(t:fd(), "r", wait) end
 *   until state == "done"
 *   local info = t:info()               -- status, headers, body, error...
 *
 * Each transfer owns a multi handle and an epoll set. libcurl tells us,
 * through its socket callback, which sockets it wants watched and how; we
 * keep them in the epoll set, whose own fd is readable whenever one of them
 * is ready. So the scheduler waits on exactly one fd per transfer (plus a
 * timeout from libcurl's timer callback), however many sockets libcurl uses
 * underneath: the threaded resolver's wake-up pair, happy-eyeballs
 * attempts, the connection itself.
 *
 * The body goes to one of three sinks, chosen at new():
 *   - memory (default): kept, up to max_size, and returned by info();
 *   - file: written to `file` as it arrives (created 0644 with O_EXCL after
 *     removing whatever was there, so a planted symbolic link is replaced,
 *     never written through; with `resume_from` = N the regular file left
 *     by the last try is reopened with O_NOFOLLOW, its first N bytes kept,
 *     and `Range: bytes=N-` is asked for), fsync'd by finish_file();
 *   - a Lua function sink(chunk), called under pcall from inside libcurl (it
 *     must not wait); an error it raises aborts the transfer and is kept for
 *     the caller to re-raise after cleanup.
 *
 * For file and function sinks the status is checked before the first body
 * byte is written: only 2xx bodies are taken (206 only when a range was
 * asked for, and only if its Content-Range starts where we asked). A 200 to
 * a range request means the server ignored the Range: a file is truncated
 * and the whole body taken from byte 0 ("restarted"); a function sink
 * cannot rewind, so that is an error.
 *
 * Only http and https are allowed, for the first URL and for every
 * redirect. TLS peer and host verification are on unless `insecure` is
 * given (the Lua layer logs that choice).
 *
 * Errors: misuse (a bad option) raises; new() returns nil, "path: strerror",
 * code when its file cannot be opened: code is the errno. A transfer that
 * fails reports its cause and kind in info() (fotahost.http makes the
 * kind its code).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "fotahost.h"

#define TRANSFER_MT "fotahost.http.core.transfer"
#define MAX_EVENTS 8
#define HEADER_MAX (64 * 1024)     /* one response's header block, at most */
#define DEFAULT_MEMORY_MAX (8L * 1024 * 1024)
#define RECV_BUFFER (64 * 1024)
#define SINK_PIECE (32 * 1024)

enum sink_kind { SINK_MEMORY, SINK_FILE, SINK_FUNCTION };

typedef struct {
    CURL *easy;
    CURLM *multi;
    int epfd;
    int running;             /* added to the multi and not done */
    int done;
    CURLcode result;

    double deadline;         /* libcurl's timer, CLOCK_MONOTONIC seconds; <0: none */

    enum sink_kind sink;
    int fd;                  /* SINK_FILE */
    char *path;              /* SINK_FILE, for messages */
    int sink_ref;            /* SINK_FUNCTION: registry ref */
    lua_State *L;            /* during step(), for the function sink */
    int cb_error_ref;        /* the sink's error, LUA_NOREF if none */

    char *body;              /* SINK_MEMORY */
    size_t body_len, body_cap;

    curl_off_t resume_from;  /* bytes already in the file / taken by the sink */
    curl_off_t received;     /* body bytes taken in this transfer */
    curl_off_t max_size;     /* total (resume_from + received) limit; <0 none */
    int status_checked;      /* the first body byte has been vetted */
    int restarted;           /* a range was asked, the server sent it all */

    char *hdr;               /* header block of the latest response */
    size_t hdr_len, hdr_cap;

    struct curl_slist *headers;
    char *post;              /* request body (CURLOPT_POSTFIELDS does not copy) */

    char why[256];           /* our own reason for aborting, if any */
    const char *why_kind;
    long why_status;
    char errbuf[CURL_ERROR_SIZE];
} Transfer;

/* One share handle per process: DNS answers and TLS sessions are reused
 * across transfers (the process is single-threaded, so no locks). */
static CURLSH *share;

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_why(Transfer *t, const char *kind, long status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_why(Transfer *t, const char *kind, long status, const char *fmt, ...)
{
    if (t->why_kind)
        return; /* the first reason is the real one */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, sizeof t->why, fmt, ap);
    va_end(ap);
    t->why_kind = kind;
    t->why_status = status;
}

/* ------------------------------------------------------------ callbacks */

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
    Transfer *t = userp;
    (void)easy;
    struct epoll_event ev = {0};
    ev.data.fd = s;
    if (what == CURL_POLL_REMOVE) {
        /* The socket may already be closed; either way it is out. */
        epoll_ctl(t->epfd, EPOLL_CTL_DEL, s, NULL);
        curl_multi_assign(t->multi, s, NULL);
        return 0;
    }
    ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
    int op = socketp ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(t->epfd, op, s, &ev) < 0) {
        /* The other op, when our record and the kernel's disagree (an fd
         * number reused after a close). */
        op = op == EPOLL_CTL_ADD ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
        if (epoll_ctl(t->epfd, op, s, &ev) < 0)
            return -1;
    }
    curl_multi_assign(t->multi, s, t); /* any non-NULL mark: "registered" */
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    Transfer *t = userp;
    (void)multi;
    t->deadline = timeout_ms < 0 ? -1 : mono_now() + (double)timeout_ms / 1000.0;
    return 0;
}

static size_t on_header(char *data, size_t size, size_t n, void *userp)
{
    Transfer *t = userp;
    size_t len = size * n;
    /* A new status line starts a new response (a redirect, a 100 Continue):
     * only the last one's headers are kept. */
    if (len >= 5 && memcmp(data, "HTTP/", 5) == 0)
        t->hdr_len = 0;
    if (t->hdr_len + len > HEADER_MAX) {
        set_why(t, "protocol", 0, "response headers larger than %d bytes", HEADER_MAX);
        return 0;
    }
    if (t->hdr_len + len > t->hdr_cap) {
        size_t cap = t->hdr_cap ? t->hdr_cap : 1024;
        while (cap < t->hdr_len + len)
            cap *= 2;
        char *p = realloc(t->hdr, cap);
        if (!p) {
            set_why(t, "memory", 0, "out of memory");
            return 0;
        }
        t->hdr = p;
        t->hdr_cap = cap;
    }
    memcpy(t->hdr + t->hdr_len, data, len);
    t->hdr_len += len;
    return len;
}

/* One line of the kept header block: walks from *p to the next line, and
 * gives the name (up to the colon) and the value (blanks and CR trimmed).
 * A line without a colon (the status line) has no name: *name is NULL.
 * Returns 0 at the end of the block. */
typedef struct {
    const char *name, *value;
    size_t name_len, value_len;
} HeaderLine;

static int next_header(const char **p, const char *end, HeaderLine *h)
{
    if (*p >= end)
        return 0;
    const char *line = *p;
    const char *eol = memchr(line, '\n', (size_t)(end - line));
    if (!eol)
        eol = end;
    *p = eol + 1;
    const char *colon = memchr(line, ':', (size_t)(eol - line));
    if (!colon || colon == line) {
        h->name = NULL;
        return 1;
    }
    const char *v = colon + 1, *ve = eol;
    while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
    while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
    h->name = line;
    h->name_len = (size_t)(colon - line);
    h->value = v;
    h->value_len = (size_t)(ve - v);
    return 1;
}

/* Finds header `name` (lower case) in the kept block: its value, trimmed,
 * copied into out. */
static int find_header(const Transfer *t, const char *name, char *out, size_t outsz)
{
    size_t nlen = strlen(name);
    const char *p = t->hdr, *end = t->hdr + t->hdr_len;
    HeaderLine h;
    while (next_header(&p, end, &h)) {
        if (h.name && h.name_len == nlen && strncasecmp(h.name, name, nlen) == 0) {
            size_t vlen = h.value_len < outsz ? h.value_len : outsz - 1;
            memcpy(out, h.value, vlen);
            out[vlen] = '\0';
            return 1;
        }
    }
    return 0;
}

/* Vets the response before its first body byte is taken by a file or
 * function sink. Returns 0 to abort. */
static int check_status(Transfer *t)
{
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    t->status_checked = 1;
    if (status < 200 || status > 299) {
        set_why(t, "http", status, "HTTP %ld", status);
        return 0;
    }
    if (t->resume_from > 0) {
        if (status == 206) {
            char cr[128];
            long long start = -1;
            if (!find_header(t, "content-range", cr, sizeof cr) ||
                sscanf(cr, "bytes %lld-", &start) != 1 || start != (long long)t->resume_from) {
                set_why(t, "protocol", status, "206 answer does not start at byte %lld (Content-Range: %s)",
                        (long long)t->resume_from, start >= 0 || cr[0] ? cr : "missing");
                return 0;
            }
        } else if (t->sink == SINK_FILE) {
            /* The server ignored the Range: take the whole body again. */
            if (ftruncate(t->fd, 0) < 0 || lseek(t->fd, 0, SEEK_SET) < 0) {
                set_why(t, "file", 0, "%s: %s", t->path, strerror(errno));
                return 0;
            }
            t->resume_from = 0;
            t->restarted = 1;
        } else {
            set_why(t, "range", status,
                    "the server ignored the Range header (HTTP %ld), and a sink cannot restart", status);
            return 0;
        }
    } else if (status == 206) {
        set_why(t, "protocol", status, "HTTP 206 to a request without a range");
        return 0;
    }
    return 1;
}

static size_t on_body(char *data, size_t size, size_t n, void *userp)
{
    Transfer *t = userp;
    size_t len = size * n;
    if (t->sink != SINK_MEMORY && !t->status_checked && !check_status(t))
        return 0;
    if (t->max_size >= 0 && t->resume_from + t->received + (curl_off_t)len > t->max_size) {
        set_why(t, "too_large", 0, "body larger than max_size (%lld bytes)", (long long)t->max_size);
        return 0;
    }
    switch (t->sink) {
    case SINK_MEMORY:
        if (t->body_len + len > t->body_cap) {
            size_t cap = t->body_cap ? t->body_cap : 4096;
            while (cap < t->body_len + len)
                cap *= 2;
            char *p = realloc(t->body, cap);
            if (!p) {
                set_why(t, "memory", 0, "out of memory");
                return 0;
            }
            t->body = p;
            t->body_cap = cap;
        }
        memcpy(t->body + t->body_len, data, len);
        t->body_len += len;
        break;
    case SINK_FILE:
        if (fh_write_all(t->fd, data, len) < 0) {
            set_why(t, "file", 0, "%s: %s", t->path, strerror(errno));
            return 0;
        }
        break;
    case SINK_FUNCTION: {
        /* In pieces of at most SINK_PIECE bytes: strings that size come
         * from the heap and are reused, where larger ones would each be a
         * fresh mmap (and page faults) in glibc's allocator. */
        lua_State *L = t->L;
        for (size_t off = 0; off < len; off += SINK_PIECE) {
            lua_rawgeti(L, LUA_REGISTRYINDEX, t->sink_ref);
            lua_pushlstring(L, data + off, len - off < SINK_PIECE ? len - off : SINK_PIECE);
            if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
                t->cb_error_ref = luaL_ref(L, LUA_REGISTRYINDEX);
                set_why(t, "callback", 0, "the sink raised an error");
                return 0;
            }
        }
        break;
    }
    }
    t->received += (curl_off_t)len;
    return len;
}

/* ------------------------------------------------------------ new() */

static Transfer *check_transfer(lua_State *L)
{
    return luaL_checkudata(L, 1, TRANSFER_MT);
}

static void release(lua_State *L, Transfer *t)
{
    if (t->multi && t->easy && t->running)
        curl_multi_remove_handle(t->multi, t->easy);
    t->running = 0;
    if (t->easy)
        curl_easy_cleanup(t->easy);
    if (t->multi)
        curl_multi_cleanup(t->multi);
    t->easy = NULL;
    t->multi = NULL;
    if (t->epfd >= 0)
        close(t->epfd);
    t->epfd = -1;
    if (t->fd >= 0)
        close(t->fd);
    t->fd = -1;
    curl_slist_free_all(t->headers);
    t->headers = NULL;
    free(t->post);
    t->post = NULL;
    free(t->body);
    t->body = NULL;
    t->body_len = t->body_cap = 0;
    free(t->hdr);
    t->hdr = NULL;
    t->hdr_len = t->hdr_cap = 0;
    free(t->path);
    t->path = NULL;
    if (L) {
        luaL_unref(L, LUA_REGISTRYINDEX, t->sink_ref);
        luaL_unref(L, LUA_REGISTRYINDEX, t->cb_error_ref);
    }
    t->sink_ref = t->cb_error_ref = LUA_NOREF;
}

static const char *opt_string(lua_State *L, const char *key)
{
    const char *s = NULL;
    int ty = lua_getfield(L, 1, key);
    if (ty == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "http.core.new: %s must be a string, got %s", key, luaL_typename(L, -1));
    lua_pop(L, 1); /* the table still holds the string */
    return s;
}

static double opt_number(lua_State *L, const char *key, double dflt, double lo)
{
    double v = dflt;
    int ty = lua_getfield(L, 1, key);
    if (ty == LUA_TNUMBER)
        v = lua_tonumber(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "http.core.new: %s must be a number, got %s", key, luaL_typename(L, -1));
    if (!(v >= lo) || v > 1e15)
        luaL_error(L, "http.core.new: %s out of range", key);
    lua_pop(L, 1);
    return v;
}

static int opt_bool(lua_State *L, const char *key)
{
    int ty = lua_getfield(L, 1, key);
    if (ty != LUA_TNIL && ty != LUA_TBOOLEAN)
        luaL_error(L, "http.core.new: %s must be a boolean, got %s", key, luaL_typename(L, -1));
    int v = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

/* A header line "Name: value" from a table entry. Names and values with
 * CR or LF are refused: they would smuggle headers. */
static void add_header(lua_State *L, Transfer *t, const char *name, const char *value)
{
    if (strpbrk(name, "\r\n:") || !*name || strpbrk(value, "\r\n"))
        luaL_error(L, "http.core.new: header %s has a line break, a colon or is empty", name);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    luaL_addstring(&b, name);
    luaL_addstring(&b, *value ? ": " : ";"); /* "Name;" sends an empty value */
    luaL_addstring(&b, value);
    luaL_pushresult(&b);
    struct curl_slist *l = curl_slist_append(t->headers, lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!l)
        luaL_error(L, "http.core.new: out of memory");
    t->headers = l;
}

static void set_headers(lua_State *L, Transfer *t)
{
    if (lua_getfield(L, 1, "headers") == LUA_TNIL) {
        lua_pop(L, 1);
        return;
    }
    luaL_argexpected(L, lua_istable(L, -1), 1, "headers as a table");
    lua_pushnil(L);
    while (lua_next(L, -2)) {
        if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "http.core.new: headers must map names to strings");
        add_header(L, t, lua_tostring(L, -2), lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* Raises on failure: luaL_error never returns, so the steps below that use
 * it need not return a value. */
#define SETOPT(opt, val) \
    do { \
        CURLcode rc_ = curl_easy_setopt(t->easy, opt, val); \
        if (rc_ != CURLE_OK) \
            luaL_error(L, "http.core.new: %s: %s", #opt, curl_easy_strerror(rc_)); \
    } while (0)

/* The options of http.core.new, read and checked before anything is opened.
 * The strings stay owned by the options table (argument 1). */
typedef struct {
    const char *url, *method, *file, *cainfo, *capath, *user_agent, *body;
    size_t body_len;
    double connect_timeout, timeout, low_speed_time, low_speed_limit, max_redirects, resume_from;
    int insecure;
} Options;

static void read_options(lua_State *L, Options *o)
{
    o->url = opt_string(L, "url");
    if (!o->url)
        luaL_error(L, "http.core.new: url required");
    o->method = opt_string(L, "method");
    if (!o->method)
        o->method = "GET";
    o->file = opt_string(L, "file");
    o->cainfo = opt_string(L, "cainfo");
    o->capath = opt_string(L, "capath");
    o->user_agent = opt_string(L, "user_agent");
    if (o->user_agent && strpbrk(o->user_agent, "\r\n"))
        luaL_error(L, "http.core.new: user_agent has a line break");
    o->body_len = 0;
    o->body = NULL;
    if (lua_getfield(L, 1, "body") == LUA_TSTRING)
        o->body = lua_tolstring(L, -1, &o->body_len);
    else if (!lua_isnil(L, -1))
        luaL_error(L, "http.core.new: body must be a string");
    lua_pop(L, 1);
    o->connect_timeout = opt_number(L, "connect_timeout", 10, 0);
    o->timeout = opt_number(L, "timeout", 0, 0);
    o->low_speed_time = opt_number(L, "low_speed_time", 30, 0);
    o->low_speed_limit = opt_number(L, "low_speed_limit", 1, 0);
    o->max_redirects = opt_number(L, "max_redirects", 5, 0);
    o->resume_from = opt_number(L, "resume_from", 0, 0);
    o->insecure = opt_bool(L, "insecure");
}

/* Where the body goes: memory (bounded), a file, or a sink function. */
static void choose_sink(lua_State *L, Transfer *t, const Options *o)
{
    if (lua_getfield(L, 1, "sink") == LUA_TFUNCTION) {
        t->sink = SINK_FUNCTION;
        t->sink_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    } else {
        if (!lua_isnil(L, -1))
            luaL_error(L, "http.core.new: sink must be a function");
        lua_pop(L, 1);
    }
    if (o->file) {
        if (t->sink == SINK_FUNCTION)
            luaL_error(L, "http.core.new: file and sink are exclusive");
        t->sink = SINK_FILE;
    }
    if (o->resume_from > 0 && t->sink == SINK_MEMORY)
        luaL_error(L, "http.core.new: resume_from needs a file or a sink");
    t->max_size = t->sink == SINK_MEMORY ? DEFAULT_MEMORY_MAX : -1;
    t->max_size = (curl_off_t)opt_number(L, "max_size", (double)t->max_size, -1);
    t->resume_from = (curl_off_t)o->resume_from;
}

/* Opens the file sink: a fresh file, or the one a resume appends to, cut
 * to the bytes it resumes after. Returns 0, or the number of results of
 * an expected failure (nil, "file: why", errno) pushed for http.core.new. */
static int open_file_sink(lua_State *L, Transfer *t, const char *file)
{
    t->path = strdup(file);
    if (!t->path)
        return luaL_error(L, "http.core.new: out of memory");
    if (t->resume_from > 0) {
        struct stat st;
        t->fd = open(file, O_WRONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (t->fd < 0)
            return fh_result_errno(L, errno, file);
        if (fstat(t->fd, &st) < 0) {
            int e = errno;
            release(L, t);
            return fh_result_errno(L, e, file);
        }
        if (!S_ISREG(st.st_mode)) {
            release(L, t);
            return fh_result_msg(L, "%s: not a regular file", file);
        }
    } else {
        /* a stale file or a planted link goes; O_EXCL refuses any that
         * appears before the open */
        if (unlink(file) < 0 && errno != ENOENT)
            return fh_result_errno(L, errno, file);
        t->fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (t->fd < 0)
            return fh_result_errno(L, errno, file);
    }
    /* Keep exactly the bytes we resume after, whatever else is there. */
    if (t->resume_from > 0 &&
        (ftruncate(t->fd, (off_t)t->resume_from) < 0 ||
         lseek(t->fd, (off_t)t->resume_from, SEEK_SET) < 0)) {
        int e = errno;
        release(L, t);
        return fh_result_errno(L, e, file);
    }
    return 0;
}

/*
 * libcurl takes times and counts as `long`: 32 bits on the board, where
 * 1e15 (opt_number's limit) overflows and a timeout in ms does at 24.8
 * days. Longer is clamped to `max`: 24.8 days is as good as for ever for a
 * transfer, and the Lua side bounds a whole download itself.
 */
static long clamp_long(double v, long max)
{
    return v >= (double)max ? max : (long)v;
}

/* libcurl compares the low-speed window in ms as low_speed_time * 1000, in
 * a long: past LONG_MAX / 1000 s that wraps negative on 32 bits, and every
 * transfer is "too slow" at once (seen under make board-test). */
#define LOW_SPEED_TIME_MAX (LONG_MAX / 1000)

/* What every transfer sets: protocols, limits, TLS checks, callbacks. */
static void set_easy_options(lua_State *L, Transfer *t, const Options *o)
{
    SETOPT(CURLOPT_URL, o->url);
    SETOPT(CURLOPT_NOSIGNAL, 1L);
    SETOPT(CURLOPT_ERRORBUFFER, t->errbuf);
    SETOPT(CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SETOPT(CURLOPT_FOLLOWLOCATION, o->max_redirects > 0 ? 1L : 0L);
    SETOPT(CURLOPT_MAXREDIRS, clamp_long(o->max_redirects, LONG_MAX));
    SETOPT(CURLOPT_CONNECTTIMEOUT_MS, clamp_long(o->connect_timeout * 1000, LONG_MAX));
    SETOPT(CURLOPT_TIMEOUT_MS, clamp_long(o->timeout * 1000, LONG_MAX));
    if (o->low_speed_time > 0) {
        SETOPT(CURLOPT_LOW_SPEED_TIME,
               clamp_long(o->low_speed_time < 1 ? 1 : o->low_speed_time, LOW_SPEED_TIME_MAX));
        SETOPT(CURLOPT_LOW_SPEED_LIMIT, clamp_long(o->low_speed_limit, LONG_MAX));
    }
    SETOPT(CURLOPT_SSL_VERIFYPEER, o->insecure ? 0L : 1L);
    SETOPT(CURLOPT_SSL_VERIFYHOST, o->insecure ? 0L : 2L);
    if (o->cainfo)
        SETOPT(CURLOPT_CAINFO, o->cainfo);
    if (o->capath)
        SETOPT(CURLOPT_CAPATH, o->capath);
    SETOPT(CURLOPT_USERAGENT, o->user_agent ? o->user_agent : "fotahost/" FOTAHOST_VERSION);
    SETOPT(CURLOPT_BUFFERSIZE, (long)RECV_BUFFER);
    SETOPT(CURLOPT_ACCEPT_ENCODING, NULL); /* bodies as sent: sizes and digests mean what they say */
    SETOPT(CURLOPT_HEADERFUNCTION, on_header);
    SETOPT(CURLOPT_HEADERDATA, t);
    SETOPT(CURLOPT_WRITEFUNCTION, on_body);
    SETOPT(CURLOPT_WRITEDATA, t);
    if (share)
        SETOPT(CURLOPT_SHARE, share);
    if (t->max_size >= 0)
        SETOPT(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)t->max_size);
    if (t->resume_from > 0) {
        char range[32];
        snprintf(range, sizeof range, "%lld-", (long long)t->resume_from);
        SETOPT(CURLOPT_RANGE, range);
    }
}

/* The method, and the body it sends (a copy: the Lua string may go). */
static void set_method(lua_State *L, Transfer *t, const Options *o)
{
    const char *method = o->method, *body = o->body;
    size_t body_len = o->body_len;
    if (strcmp(method, "GET") == 0) {
        if (body)
            luaL_error(L, "http.core.new: a GET has no body");
    } else if (strcmp(method, "HEAD") == 0) {
        SETOPT(CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
               strcmp(method, "DELETE") == 0 || strcmp(method, "PATCH") == 0) {
        if (body || strcmp(method, "DELETE") != 0) {
            t->post = malloc(body_len ? body_len : 1);
            if (!t->post)
                luaL_error(L, "http.core.new: out of memory");
            if (body_len)
                memcpy(t->post, body, body_len);
            SETOPT(CURLOPT_POSTFIELDS, t->post);
            SETOPT(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
        }
        SETOPT(CURLOPT_CUSTOMREQUEST, method);
    } else {
        luaL_error(L, "http.core.new: method must be GET, HEAD, POST, PUT, PATCH or DELETE, got %s",
                   method);
    }
}

/* The caller's headers, then ours. */
static void set_all_headers(lua_State *L, Transfer *t)
{
    set_headers(L, t);
    /* No "Expect: 100-continue" round trip for bodies: our servers answer
     * at once, and the wait would cost a second on a server that ignores it. */
    t->headers = curl_slist_append(t->headers, "Expect:");
    if (!t->headers)
        luaL_error(L, "http.core.new: out of memory");
    SETOPT(CURLOPT_HTTPHEADER, t->headers);
}

/* Hands the easy handle to the multi handle, which reports its sockets
 * and timers to us (on_socket, on_timer): the transfer starts. */
static void start_transfer(lua_State *L, Transfer *t)
{
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(t->multi, CURLMOPT_SOCKETDATA, t);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(t->multi, CURLMOPT_TIMERDATA, t);
    CURLMcode mc = curl_multi_add_handle(t->multi, t->easy);
    if (mc != CURLM_OK)
        luaL_error(L, "http.core.new: %s", curl_multi_strerror(mc));
    t->running = 1;
}

/* http.core.new(opts): a transfer, started; see the header comment and
 * docs/api/fotahost.http.lua for the options. Misuse raises; a file that
 * cannot be opened returns nil, "file: why", errno. */
static int l_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    Transfer *t = lua_newuserdatauv(L, sizeof *t, 0);
    memset(t, 0, sizeof *t);
    t->epfd = t->fd = -1;
    t->sink_ref = t->cb_error_ref = LUA_NOREF;
    t->deadline = -1;
    luaL_setmetatable(L, TRANSFER_MT);

    Options o;
    read_options(L, &o);
    choose_sink(L, t, &o);
    if (t->sink == SINK_FILE) {
        int n = open_file_sink(L, t, o.file);
        if (n)
            return n;
    }
    t->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (t->epfd < 0)
        return fh_result_errno(L, errno, "epoll_create1");
    t->easy = curl_easy_init();
    t->multi = curl_multi_init();
    if (!t->easy || !t->multi)
        return luaL_error(L, "http.core.new: libcurl could not start a transfer");
    set_easy_options(L, t, &o);
    set_method(L, t, &o);
    set_all_headers(L, t);
    start_transfer(L, t);
    return 1;
}

/* ------------------------------------------------------------ methods */

static void collect_done(Transfer *t)
{
    int left;
    CURLMsg *m;
    while ((m = curl_multi_info_read(t->multi, &left))) {
        if (m->msg == CURLMSG_DONE && m->easy_handle == t->easy) {
            t->done = 1;
            t->result = m->data.result;
        }
    }
}

/* t:step(): does whatever libcurl can do now. Returns "done", or "wait"
 * and the seconds until libcurl's next timeout (nil: only the fd). */
static int l_step(lua_State *L)
{
    Transfer *t = check_transfer(L);
    if (!t->multi)
        return luaL_error(L, "attempt to use a closed transfer");
    if (!t->done) {
        int still;
        struct epoll_event evs[MAX_EVENTS];
        t->L = L;
        int n = epoll_wait(t->epfd, evs, MAX_EVENTS, 0);
        for (int i = 0; i < n; i++) {
            int mask = (evs[i].events & (EPOLLIN | EPOLLHUP) ? CURL_CSELECT_IN : 0) |
                       (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                       (evs[i].events & EPOLLERR ? CURL_CSELECT_ERR : 0);
            curl_multi_socket_action(t->multi, evs[i].data.fd, mask, &still);
        }
        if (t->deadline >= 0 && mono_now() >= t->deadline) {
            t->deadline = -1;
            curl_multi_socket_action(t->multi, CURL_SOCKET_TIMEOUT, 0, &still);
        }
        t->L = NULL;
        collect_done(t);
    }
    if (t->done) {
        lua_pushliteral(L, "done");
        return 1;
    }
    lua_pushliteral(L, "wait");
    if (t->deadline < 0) {
        lua_pushnil(L);
    } else {
        double left = t->deadline - mono_now();
        lua_pushnumber(L, left > 0 ? left : 0);
    }
    return 2;
}

static int l_fd(lua_State *L)
{
    Transfer *t = check_transfer(L);
    if (t->epfd < 0)
        return luaL_error(L, "attempt to use a closed transfer");
    lua_pushinteger(L, t->epfd);
    return 1;
}

/* t:progress(): bytes done (resume offset included), total or nil. */
static int l_progress(lua_State *L)
{
    Transfer *t = check_transfer(L);
    lua_pushinteger(L, (lua_Integer)(t->resume_from + t->received));
    curl_off_t len = -1;
    if (t->easy)
        curl_easy_getinfo(t->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    if (len >= 0 && t->status_checked) /* the length of the body we take */
        lua_pushinteger(L, (lua_Integer)(t->resume_from + len));
    else if (len >= 0 && t->sink == SINK_MEMORY)
        lua_pushinteger(L, (lua_Integer)len);
    else
        lua_pushnil(L);
    return 2;
}

/* The kept header block as a table: lower-case names; repeats joined by
 * ", " (Set-Cookie is the exception no device needs). */
static void push_headers(lua_State *L, const Transfer *t)
{
    lua_newtable(L);
    const char *p = t->hdr, *end = t->hdr + t->hdr_len;
    HeaderLine h;
    int first = 1;
    while (p && next_header(&p, end, &h)) {
        if (!first && h.name) {
            luaL_Buffer b;
            luaL_buffinit(L, &b);
            for (size_t i = 0; i < h.name_len; i++) {
                char c = h.name[i];
                luaL_addchar(&b, (char)(c >= 'A' && c <= 'Z' ? c + 32 : c));
            }
            luaL_pushresult(&b);
            lua_pushvalue(L, -1);
            if (lua_rawget(L, -3) == LUA_TSTRING) {
                lua_pushliteral(L, ", ");
                lua_pushlstring(L, h.value, h.value_len);
                lua_concat(L, 3);
            } else {
                lua_pop(L, 1);
                lua_pushlstring(L, h.value, h.value_len);
            }
            lua_rawset(L, -3);
        }
        first = 0;
    }
}

/* Maps libcurl's outcome to a short kind scripts can act on. */
static const char *kind_of(CURLcode rc)
{
    switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "resolve";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_PARTIAL_FILE: return "truncated";
    case CURLE_FILESIZE_EXCEEDED: return "too_large";
    case CURLE_UNSUPPORTED_PROTOCOL: return "protocol";
    case CURLE_URL_MALFORMAT: return "url";
    case CURLE_TOO_MANY_REDIRECTS: return "redirects";
    case CURLE_GOT_NOTHING:
    case CURLE_RECV_ERROR: return "recv";
    case CURLE_SEND_ERROR: return "send";
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR: return "tls";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return "protocol";
    default: return "other";
    }
}

/* t:info(): what came of it, once step() said "done":
 *   { status = 200, headers = {...}, url = effective URL, bytes = n,
 *     body = "..." (memory sink), restarted = bool,
 *     error = nil | "cause", kind = nil | "timeout"|..., curl_code = n }
 * and, when the sink raised, that error value as a second result. */
static int l_info(lua_State *L)
{
    Transfer *t = check_transfer(L);
    if (!t->done)
        return luaL_error(L, "transfer:info: the transfer is not done");
    lua_createtable(L, 0, 10);
    long status = 0;
    curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
    lua_pushinteger(L, status);
    lua_setfield(L, -2, "status");
    push_headers(L, t);
    lua_setfield(L, -2, "headers");
    char *eff = NULL;
    curl_easy_getinfo(t->easy, CURLINFO_EFFECTIVE_URL, &eff);
    if (eff) {
        lua_pushstring(L, eff);
        lua_setfield(L, -2, "url");
    }
    lua_pushinteger(L, (lua_Integer)(t->resume_from + t->received));
    lua_setfield(L, -2, "bytes");
    lua_pushboolean(L, t->restarted);
    lua_setfield(L, -2, "restarted");
    if (t->sink == SINK_MEMORY) {
        lua_pushlstring(L, t->body ? t->body : "", t->body_len);
        lua_setfield(L, -2, "body");
    }
    if (t->result != CURLE_OK) {
        if (t->why_kind) {
            lua_pushstring(L, t->why);
            lua_setfield(L, -2, "error");
            lua_pushstring(L, t->why_kind);
            lua_setfield(L, -2, "kind");
        } else if (t->result == CURLE_FILESIZE_EXCEEDED) {
            /* libcurl knew from Content-Length, before any byte came */
            lua_pushfstring(L, "body larger than max_size (%I bytes)", (lua_Integer)t->max_size);
            lua_setfield(L, -2, "error");
            lua_pushliteral(L, "too_large");
            lua_setfield(L, -2, "kind");
        } else {
            lua_pushstring(L, t->errbuf[0] ? t->errbuf : curl_easy_strerror(t->result));
            lua_setfield(L, -2, "error");
            lua_pushstring(L, kind_of(t->result));
            lua_setfield(L, -2, "kind");
        }
        lua_pushinteger(L, t->result);
        lua_setfield(L, -2, "curl_code");
    }
    if (t->cb_error_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, t->cb_error_ref);
        return 2;
    }
    return 1;
}

/* t:finish_file(): fsyncs and closes the file sink. true | nil, err, errno */
static int l_finish_file(lua_State *L)
{
    Transfer *t = check_transfer(L);
    if (t->fd < 0)
        return luaL_error(L, "transfer:finish_file: no open file");
    int fd = t->fd;
    t->fd = -1;
    if (fsync(fd) < 0) {
        int e = errno;
        close(fd);
        return fh_result_errno(L, e, t->path);
    }
    if (close(fd) < 0)
        return fh_result_errno(L, errno, t->path);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_close(lua_State *L)
{
    Transfer *t = check_transfer(L);
    release(L, t);
    return 0;
}

static int l_tostring(lua_State *L)
{
    Transfer *t = check_transfer(L);
    lua_pushfstring(L, "curl transfer (%s)", !t->multi ? "closed" : t->done ? "done" : "running");
    return 1;
}

/* http.core.version(): libcurl's version string ("libcurl/7.88.1 OpenSSL/3.0..."). */
static int l_version(lua_State *L)
{
    lua_pushstring(L, curl_version());
    return 1;
}

static const luaL_Reg meta[] = {
    {"__gc", l_close},
    {"__close", l_close},
    {"__tostring", l_tostring},
    {"__index", NULL},
    {NULL, NULL},
};

static const luaL_Reg methods[] = {
    {"step", l_step},
    {"fd", l_fd},
    {"progress", l_progress},
    {"info", l_info},
    {"finish_file", l_finish_file},
    {"close", l_close},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"new", l_new},
    {"version", l_version},
    {NULL, NULL},
};

/* The library's global state goes when the Lua state closes: this
 * sentinel's finaliser runs before the plugin is unloaded (finalisers run
 * in the reverse order of creation, and the loader's table of libraries
 * is older). Transfers still open are finalised first for the same reason. */
static int library_gc(lua_State *L)
{
    (void)L;
    if (share) {
        curl_share_cleanup(share);
        share = NULL;
    }
    curl_global_cleanup();
    return 0;
}

int luaopen_fotahost_http_core(lua_State *L);

int luaopen_fotahost_http_core(lua_State *L)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, "fotahost.http.core.library") == LUA_TNIL) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
            return luaL_error(L, "fotahost.http.core: libcurl would not initialise");
        share = curl_share_init();
        if (share) {
            curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
            curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
        }
        lua_newuserdatauv(L, 1, 0);
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, library_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, "fotahost.http.core.library");
    }
    lua_pop(L, 1);
    fh_new_class(L, TRANSFER_MT, meta, methods);
    luaL_newlib(L, funcs);
    return 1;
}
