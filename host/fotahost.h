/*
 * fotahost.h: what the host shares with its native modules.
 *
 * Native modules (built in or loaded as .so plugins) include this header and
 * nothing else of the host's. Plugins link no liblua: the host exports the
 * Lua API and the functions below (-Wl,-E).
 */
#ifndef FOTAHOST_H
#define FOTAHOST_H

#include <lua.h>
#include <lauxlib.h>

#ifndef FOTAHOST_VERSION
#define FOTAHOST_VERSION "unknown"
#endif

#define FOTAHOST_PROGNAME "fotahost"

/*
 * Expected failures return `fail, "what: strerror(errno)", errno`, the shape
 * of luaL_fileresult. `what` names the thing (a path, an fd, a pin). Save
 * errno before any call that may change it, then call this.
 */
int fh_result_errno(lua_State *L, int err, const char *what);

/* `fail, msg` with no code, for failures that are not an errno. */
int fh_result_msg(lua_State *L, const char *fmt, ...);

/*
 * A failed read or write on a non-blocking fd, as every stream module
 * reports it: `nil, "wouldblock"` for EAGAIN, `nil, "closed"` when err is
 * closed_a or closed_b (the line or the peer is gone: EIO on a tty,
 * EPIPE/ECONNRESET on a socket; 0 for none), else `fail, "what: strerror",
 * errno`.
 */
int fh_io_failure(lua_State *L, int err, int closed_a, int closed_b, const char *what);

/*
 * Reads what is there now, up to `max` bytes, from a non-blocking fd:
 * pushes the data, or `nil, "closed"` at end of file, or fh_io_failure's
 * results. Returns the number of values pushed.
 */
int fh_read_available(lua_State *L, int fd, size_t max, int closed_a, int closed_b,
                      const char *what);

/*
 * The bodies of a stream object's read_available([max]) and
 * write_available(data[, i]) methods (serial ports, TCP sockets), on a
 * non-blocking fd; the arguments are read from the stack (self at 1).
 * fh_stream_read reads what is there now, up to max bytes (default 4096,
 * at most 65536 a call), as fh_read_available does. fh_stream_write writes
 * data from byte i (default 1) on, as much as the fd takes now, and pushes
 * the bytes written (0 when nothing was left) or fh_io_failure's results; a
 * socket passes the send() flags it wants (MSG_NOSIGNAL, so a gone peer is
 * EPIPE and not a signal), anything else -1 to get write(). Both return the
 * number of values pushed.
 */
int fh_stream_read(lua_State *L, int fd, int closed_a, int closed_b, const char *what);
int fh_stream_write(lua_State *L, int fd, int send_flags, int closed_a, int closed_b,
                    const char *what);

/*
 * Writes all of `data` to a blocking fd (a file), retrying after EINTR and
 * short writes. Returns 0, or -1 with errno set.
 */
int fh_write_all(int fd, const void *data, size_t len);

/*
 * Registers an object class the liolib.c way: a metatable called `name`
 * holding `meta` (__gc, __close, __tostring...), with a separate table of
 * `methods` as its __index. `meta` may list "__index" with a NULL function
 * as a placeholder; it is replaced. Leaves the stack as it found it.
 */
void fh_new_class(lua_State *L, const char *name, const luaL_Reg *meta, const luaL_Reg *methods);

/*
 * Signals. SIGINT and SIGTERM set a flag; a Lua hook (never the handler
 * itself) raises "interrupted (SIGxxx)" at the next instruction of the main
 * thread or of any thread armed with fh_signals_arm_thread().
 */
void fh_signals_install(lua_State *L);
void fh_signals_restore(void);
void fh_signals_arm_thread(lua_State *co);
/* The signal that raised an interrupt error, or 0. */
int fh_signals_raised(void);
/* That signal, or one that came but found no Lua code left to raise it
 * in (it landed as the chunk returned), or 0. */
int fh_signals_pending(void);
/* epoll_wait(2) for a wait that may block: a SIGINT or SIGTERM caught and
 * not yet raised, or one that comes just before the wait would start,
 * ends it at once with EINTR (never lost until the timeout). */
struct epoll_event;
int fh_signals_epoll_wait(int epfd, struct epoll_event *ev, int max, int ms);

/* Registers the built-in native modules in package.preload (host/preload.c). */
void fh_open_builtins(lua_State *L);

/* The host's own module (host/tools.c). The modules in plugins/ are listed
 * in the generated build/builtins.h; each declares its own luaopen_ just
 * above its definition. */
int luaopen_fotahost_host(lua_State *L);

#endif
