/*
 * signals.c: SIGINT and SIGTERM become a Lua error, raised through a hook.
 *
 * The handler only records the signal and asks Lua (lua_sethook, which the
 * Lua manual allows from a signal handler) to call a hook at the next
 * instruction of the main thread. The hook raises the error, so the stack
 * unwinds normally: pcall boundaries, <close> variables and __gc all run.
 *
 * Coroutines do not inherit a hook set after their creation, and a task
 * that loops without yielding would never return to the main thread, so the
 * scheduler arms every task with a cheap count hook that checks the same
 * flag (fh_signals_arm_thread).
 *
 * The first raise consumes the signal: cleanup code that runs while the
 * error unwinds is not interrupted again. A second signal of the same kind
 * gets the default action (the process dies), as with lua.c.
 *
 * A hook only fires when Lua runs. A signal that lands after the last Lua
 * instruction before a blocking wait, and before the system call itself,
 * would find no Lua code to raise it in until the wait ends (a scheduler
 * sleeping 60 s went on sleeping). fh_signals_epoll_wait closes that gap.
 */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/epoll.h>

#include "fotahost.h"

/* How often an armed task checks for a pending signal, in VM instructions. */
#define FH_TASK_HOOK_COUNT 1000

/*
 * The one static Lua state in the host: a signal handler has no other way
 * to reach the interpreter (lua.c does the same). Nothing but the handler
 * reads it.
 */
static lua_State *sig_state;
static volatile sig_atomic_t sig_pending;
static volatile sig_atomic_t sig_raised;
static struct sigaction old_int, old_term;

static const char *signame(int sig)
{
    switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    default: return "signal";
    }
}

/* Consumes a pending signal and raises its error; returns if none. */
static void raise_pending(lua_State *L)
{
    int sig = sig_pending;

    if (sig == 0)
        return;
    sig_pending = 0;
    sig_raised = sig;
    /* No position prefix: where the hook fired says nothing useful. */
    lua_pushfstring(L, "interrupted (%s)", signame(sig));
    lua_error(L);
}

static void main_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    raise_pending(L);
}

static void task_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    raise_pending(L);
}

static void on_signal(int sig)
{
    struct sigaction dfl;

    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, NULL); /* a second one ends the process */
    sig_pending = sig;
    lua_sethook(sig_state, main_hook,
                LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1);
}

void fh_signals_install(lua_State *L)
{
    struct sigaction sa;

    sig_state = L;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    /* No SA_RESTART: a blocking wait returns EINTR so the hook can run. */
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
}

void fh_signals_restore(void)
{
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
}

void fh_signals_arm_thread(lua_State *co)
{
    lua_sethook(co, task_hook, LUA_MASKCOUNT, FH_TASK_HOOK_COUNT);
}

int fh_signals_raised(void)
{
    return sig_raised;
}

int fh_signals_pending(void)
{
    return sig_pending != 0 ? sig_pending : sig_raised;
}

/*
 * SIGINT and SIGTERM are blocked while the flag is read, and unblocked by
 * epoll_pwait only for the wait itself: one caught before is seen in the
 * flag, one sent after is delivered inside the wait and ends it (EINTR).
 */
int fh_signals_epoll_wait(int epfd, struct epoll_event *ev, int max, int ms)
{
    sigset_t stops, old;
    int n, err;

    if (ms == 0)
        return epoll_wait(epfd, ev, max, 0); /* never sleeps: no window */
    sigemptyset(&stops);
    sigaddset(&stops, SIGINT);
    sigaddset(&stops, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stops, &old);
    if (sig_pending != 0) {
        n = -1;
        err = EINTR;
    } else {
        n = epoll_pwait(epfd, ev, max, ms, &old);
        err = errno;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return n;
}
