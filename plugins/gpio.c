/*
 * gpio.c: `fotahost.gpio`, GPIO lines for scripts and for the ISP
 * programmer, on any backend of gpio/gpio.h.
 *
 *   local gpio = require "fotahost.gpio"
 *   local lines <close> = assert(gpio.open{
 *     backend = "gpiod", chip = "gpiochip0",
 *     lines = { 3, 15, 16, 17 },               -- RESET, SCK, MOSI, MISO
 *     outputs = { true, true, true, false },
 *     initial = { 0, 0, 0 },                   -- logical levels of the outputs
 *   })
 *   lines:set(2, 1); print(lines:get(4))
 *
 * Lines are released (outputs back to inputs, so the board's pull-up takes
 * the MCU out of reset) by close(), <close>, __gc, and on any error while
 * opening.
 *
 * Backends register themselves (fh_gpio_register in gpio/gpio.h): the
 * three built in here when the module opens, others from plugins. A
 * backend asked for and not registered is looked for as the plugin
 * fotahost.gpio_NAME; the simulator's (sim) is one, part of the
 * development wing, so a board without it says so instead of "unknown".
 *
 * Errors: misuse raises; a line the system refuses returns nil, "what: why"
 * with no code (the backends build the message).
 */
#include <string.h>

#include "fotahost.h"
#include "gpio/gpio.h"

/* Registry key of this state's backends: a sequence of light userdata
 * (struct fh_gpio_backend *), in the order they registered. */
#define BACKENDS_KEY "fotahost.gpio.backends"

static void push_backends(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, BACKENDS_KEY);
}

/* The index of `name` in the backends table on top, or 0. */
static lua_Integer backend_index(lua_State *L, const char *name)
{
    lua_Integer i, n = luaL_len(L, -1);

    for (i = 1; i <= n; i++) {
        const struct fh_gpio_backend *be;
        lua_rawgeti(L, -1, i);
        be = (const struct fh_gpio_backend *)lua_touserdata(L, -1);
        lua_pop(L, 1);
        if (strcmp(be->name, name) == 0)
            return i;
    }
    return 0;
}

void fh_gpio_register(lua_State *L, const struct fh_gpio_backend *be)
{
    lua_Integer i;

    push_backends(L);
    i = backend_index(L, be->name);
    lua_pushlightuserdata(L, (void *)(uintptr_t)be); /* never written through */
    lua_rawseti(L, -2, i != 0 ? i : luaL_len(L, -2) + 1);
    lua_pop(L, 1);
}

const struct fh_gpio_backend *fh_gpio_backend_find(lua_State *L, const char *name)
{
    const struct fh_gpio_backend *be = NULL;
    lua_Integer i;

    push_backends(L);
    i = backend_index(L, name);
    if (i != 0) {
        lua_rawgeti(L, -1, i);
        be = (const struct fh_gpio_backend *)lua_touserdata(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return be;
}

int fh_gpio_open(fh_gpio *g, const struct fh_gpio_backend *be, const char *chip, int n,
                 const unsigned *offsets, uint32_t outputs, uint32_t invert, uint32_t initial,
                 const struct fh_gpio_opts *opts, char *err, size_t errlen)
{
    static const struct fh_gpio_opts none;
    uint32_t all = n >= 32 ? 0xFFFFFFFFu : ((1u << n) - 1);
    int i, j;

    memset(g, 0, sizeof *g);
    if (n < 1 || n > FH_GPIO_MAX_LINES) {
        snprintf(err, errlen, "%s: between 1 and %d lines, not %d", chip, FH_GPIO_MAX_LINES, n);
        return -1;
    }
    for (i = 0; i < n; i++)
        for (j = 0; j < i; j++)
            if (offsets[i] == offsets[j]) {
                snprintf(err, errlen, "%s: line %u is given twice", chip, offsets[i]);
                return -1;
            }
    g->be = be;
    g->nlines = n;
    memcpy(g->offsets, offsets, (size_t)n * sizeof *offsets);
    g->outputs = outputs & all;
    g->invert = invert & all;
    g->state = (initial ^ g->invert) & g->outputs;
    snprintf(g->chip, sizeof g->chip, "%s", chip);
    if (be->open(g, chip, g->state, opts != NULL ? opts : &none, err, errlen) != 0)
        return -1;
    g->open = 1;
    return 0;
}

int fh_gpio_set(fh_gpio *g, uint32_t mask, uint32_t values, char *err, size_t errlen)
{
    uint32_t phys, changed;

    if (mask & ~g->outputs) {
        int i;
        for (i = 0; !(mask & ~g->outputs & (1u << i)); i++)
            ;
        snprintf(err, errlen, "%s line %u: not an output", g->chip, g->offsets[i]);
        return -1;
    }
    phys = (values ^ g->invert) & mask;
    changed = (phys ^ g->state) & mask;
    if (changed == 0)
        return 0;
    g->set_calls++;
    if (g->be->set(g, changed, phys, err, errlen) != 0)
        return -1;
    g->state = (g->state & ~changed) | (phys & changed);
    return 0;
}

int fh_gpio_get(fh_gpio *g, int line, int *value, char *err, size_t errlen)
{
    int v;

    g->get_calls++;
    if (g->be->get(g, line, &v, err, errlen) != 0)
        return -1;
    *value = (v != 0) ^ (int)((g->invert >> line) & 1);
    return 0;
}

void fh_gpio_close(fh_gpio *g)
{
    if (g->open) {
        g->open = 0;
        g->be->close(g);
    }
}

/* ------------------------------------------------------------------ Lua */

fh_gpio *fh_gpio_check(lua_State *L, int idx)
{
    fh_gpio *g = (fh_gpio *)luaL_checkudata(L, idx, FH_GPIO_MT);

    if (!g->open)
        luaL_error(L, "attempt to use closed GPIO lines");
    return g;
}

/* Reads t[key] as a list of n booleans (or 0/1) into a bit mask. */
static uint32_t bool_list(lua_State *L, int t, const char *key, int n, uint32_t dflt)
{
    uint32_t mask = 0;
    int i;

    if (lua_getfield(L, t, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return dflt;
    }
    if (!lua_istable(L, -1))
        luaL_error(L, "gpio.open: '%s' must be a list", key);
    for (i = 0; i < n; i++) {
        int v;
        lua_rawgeti(L, -1, i + 1);
        v = lua_isnumber(L, -1) ? lua_tointeger(L, -1) != 0 : lua_toboolean(L, -1);
        if (v)
            mask |= 1u << i;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return mask;
}

static const char *opt_string(lua_State *L, int t, const char *key)
{
    const char *s = NULL;
    int type = lua_getfield(L, t, key);

    if (type == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (type != LUA_TNIL)
        luaL_error(L, "gpio.open: '%s' must be a string, not a %s", key, luaL_typename(L, -1));
    lua_pop(L, 1); /* the table keeps the string alive (it is a string, not a number) */
    return s;
}

/* True when `name` may end a module name: never a path, never a pattern. */
static int plain_name(const char *name)
{
    const char *p;

    for (p = name; *p != '\0'; p++)
        if (!(*p >= 'a' && *p <= 'z') && !(*p >= '0' && *p <= '9') && *p != '_')
            return 0;
    return *name != '\0';
}

/*
 * The backend called `name`: registered, or registered now by the plugin
 * fotahost.gpio_NAME. NULL when no such plugin is installed; a plugin that
 * is there but fails to load raises its own error.
 */
static const struct fh_gpio_backend *load_backend(lua_State *L, const char *name)
{
    const struct fh_gpio_backend *be = fh_gpio_backend_find(L, name);
    const char *msg;

    if (be != NULL || !plain_name(name))
        return be;
    lua_getglobal(L, "require");
    lua_pushfstring(L, "fotahost.gpio_%s", name);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        msg = lua_tostring(L, -1);
        lua_pushfstring(L, "module 'fotahost.gpio_%s' not found:", name);
        if (msg == NULL || strncmp(msg, lua_tostring(L, -1), strlen(lua_tostring(L, -1))) != 0) {
            lua_pop(L, 1);
            lua_error(L);
        }
        lua_pop(L, 2);
        return NULL;
    }
    be = fh_gpio_backend_find(L, name);
    if (be == NULL)
        luaL_error(L, "gpio.open: fotahost.gpio_%s registered no backend '%s'", name, name);
    return be;
}

/*
 * gpio.open{ backend=, chip=, lines={...}, outputs={...}[, invert={...}]
 *            [, initial={...}][, sysfs_root=][, mem_path=][, absolute=]
 *            [, consumer=][, options of a plugin backend] }
 *   -> lines | nil, "<chip> line N: <cause>"
 */
static int l_open(lua_State *L)
{
    const struct fh_gpio_backend *be;
    struct fh_gpio_opts opts;
    unsigned offsets[FH_GPIO_MAX_LINES];
    char err[FH_GPIO_ERRLEN];
    const char *bname, *chip;
    fh_gpio *g;
    lua_Integer count;
    int n, i;

    luaL_checktype(L, 1, LUA_TTABLE);
    bname = opt_string(L, 1, "backend");
    if (bname == NULL)
        return luaL_error(L, "gpio.open: 'backend' is required (gpiod, sysfs, mmio or sim)");
    be = load_backend(L, bname);
    if (be == NULL && strcmp(bname, "sim") == 0)
        return fh_result_msg(L, "the sim backend is part of the development wing: make install-dev");
    if (be == NULL)
        return luaL_error(L, "gpio.open: unknown backend '%s' (gpiod, sysfs, mmio or sim)", bname);
    chip = opt_string(L, 1, "chip");
    if (chip == NULL)
        return luaL_error(L, "gpio.open: 'chip' is required");
    if (lua_getfield(L, 1, "lines") != LUA_TTABLE)
        return luaL_error(L, "gpio.open: 'lines' must be a list of line numbers");
    count = luaL_len(L, -1); /* checked whole: a __len may say anything */
    if (count < 1 || count > FH_GPIO_MAX_LINES)
        return luaL_error(L, "gpio.open: between 1 and %d lines", FH_GPIO_MAX_LINES);
    n = (int)count;
    for (i = 0; i < n; i++) {
        lua_Integer v;
        int isint;
        lua_rawgeti(L, -1, i + 1);
        v = lua_tointegerx(L, -1, &isint);
        if (!isint || v < 0 || v > 65535)
            return luaL_error(L, "gpio.open: lines[%d] is not a line number", i + 1);
        offsets[i] = (unsigned)v;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    memset(&opts, 0, sizeof opts);
    opts.sysfs_root = opt_string(L, 1, "sysfs_root");
    opts.mem_path = opt_string(L, 1, "mem_path");
    opts.consumer = opt_string(L, 1, "consumer");
    lua_getfield(L, 1, "absolute");
    opts.sysfs_absolute = lua_toboolean(L, -1);
    lua_pop(L, 1);
    opts.L = L;
    opts.args = 1;

    g = (fh_gpio *)lua_newuserdatauv(L, sizeof *g, 0);
    memset(g, 0, sizeof *g);
    luaL_setmetatable(L, FH_GPIO_MT);
    if (fh_gpio_open(g, be, chip, n, offsets, bool_list(L, 1, "outputs", n, 0),
                     bool_list(L, 1, "invert", n, 0), bool_list(L, 1, "initial", n, 0),
                     &opts, err, sizeof err) != 0)
        return fh_result_msg(L, "%s", err);
    return 1;
}

static int check_line(lua_State *L, fh_gpio *g, int arg)
{
    lua_Integer i = luaL_checkinteger(L, arg);

    luaL_argcheck(L, i >= 1 && i <= g->nlines, arg, "no such line in this set");
    return (int)i - 1;
}

/* lines:set(i, level) -> true | nil, err */
static int l_set(lua_State *L)
{
    fh_gpio *g = fh_gpio_check(L, 1);
    int line = check_line(L, g, 2);
    int v = lua_isnumber(L, 3) ? lua_tointeger(L, 3) != 0 : lua_toboolean(L, 3);
    char err[FH_GPIO_ERRLEN];

    if (fh_gpio_set(g, 1u << line, (uint32_t)v << line, err, sizeof err) != 0)
        return fh_result_msg(L, "%s", err);
    lua_pushboolean(L, 1);
    return 1;
}

/* lines:get(i) -> 0|1 | nil, err */
static int l_get(lua_State *L)
{
    fh_gpio *g = fh_gpio_check(L, 1);
    int line = check_line(L, g, 2);
    char err[FH_GPIO_ERRLEN];
    int v;

    if (fh_gpio_get(g, line, &v, err, sizeof err) != 0)
        return fh_result_msg(L, "%s", err);
    lua_pushinteger(L, v);
    return 1;
}

/* lines:stats() -> { set_calls=, get_calls=, syscalls= } */
static int l_stats(lua_State *L)
{
    fh_gpio *g = (fh_gpio *)luaL_checkudata(L, 1, FH_GPIO_MT);

    lua_createtable(L, 0, 3);
    lua_pushinteger(L, (lua_Integer)g->set_calls);
    lua_setfield(L, -2, "set_calls");
    lua_pushinteger(L, (lua_Integer)g->get_calls);
    lua_setfield(L, -2, "get_calls");
    lua_pushinteger(L, (lua_Integer)g->syscalls);
    lua_setfield(L, -2, "syscalls");
    return 1;
}

static int l_close(lua_State *L)
{
    fh_gpio *g = (fh_gpio *)luaL_checkudata(L, 1, FH_GPIO_MT);

    fh_gpio_close(g);
    return 0;
}

static int l_tostring(lua_State *L)
{
    fh_gpio *g = (fh_gpio *)luaL_checkudata(L, 1, FH_GPIO_MT);
    luaL_Buffer b;
    int i;

    luaL_buffinit(L, &b);
    lua_pushfstring(L, "gpio lines %s:%s [", g->be != NULL ? g->be->name : "?", g->chip);
    luaL_addvalue(&b);
    for (i = 0; i < g->nlines; i++) {
        lua_pushfstring(L, i == 0 ? "%d" : ",%d", (int)g->offsets[i]);
        luaL_addvalue(&b);
    }
    luaL_addstring(&b, g->open ? "]" : "] (closed)");
    luaL_pushresult(&b);
    return 1;
}

/* gpio.backends() -> the names registered so far, in that order */
static int l_backends(lua_State *L)
{
    lua_Integer i, n;

    push_backends(L);
    n = luaL_len(L, -1);
    lua_createtable(L, (int)n, 0);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        lua_pushstring(L, ((const struct fh_gpio_backend *)lua_touserdata(L, -1))->name);
        lua_rawseti(L, -3, i);
        lua_pop(L, 1);
    }
    return 1;
}

/*
 * gpio.mt7688_pinmux([mem_path]) -> "changed" | "already" | nil, err
 * The SPI-slave pins to GPIO (what the sysfs and gpiod backends need on
 * the 7688 Duo; the mmio backend does it itself).
 */
static int l_mt7688_pinmux(lua_State *L)
{
    const char *mem = luaL_optstring(L, 1, NULL);
    char err[FH_GPIO_ERRLEN];
    int changed;

    if (fh_mt7688_spis_gpio(mem, &changed, err, sizeof err) != 0)
        return fh_result_msg(L, "%s", err);
    lua_pushstring(L, changed ? "changed" : "already");
    return 1;
}

static const luaL_Reg methods[] = {
    {"set", l_set},
    {"get", l_get},
    {"stats", l_stats},
    {"close", l_close},
    {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__index", NULL},
    {"__gc", l_close},
    {"__close", l_close},
    {"__tostring", l_tostring},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"open", l_open},
    {"backends", l_backends},
    {"mt7688_pinmux", l_mt7688_pinmux},
    {NULL, NULL},
};

int luaopen_fotahost_gpio(lua_State *L);

int luaopen_fotahost_gpio(lua_State *L)
{
    fh_gpio_register(L, &fh_gpio_gpiod);
    fh_gpio_register(L, &fh_gpio_sysfs);
    fh_gpio_register(L, &fh_gpio_mmio);
    fh_new_class(L, FH_GPIO_MT, meta, methods);
    luaL_newlib(L, funcs);
    return 1;
}
