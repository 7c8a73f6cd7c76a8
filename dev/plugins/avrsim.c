/*
 * avrsim.c: `fotahost.avrsim`, a simulated AVR chip for tests and for the
 * virtual board (the model itself is plugins/avrsim/chip.c).
 *
 *   local parts = require "fotahost.avr.parts"
 *   local chip = assert(avrsim.open(dir, parts.m32u4))
 *   chip:pins(0, 0, 0)                        -- RESET low: programming mode
 *   ...                                       -- 20 ms later
 *   local _, _, echo = chip:transfer(0xAC, 0x53, 0x00, 0x00)   -- 0x53
 *   chip:close()                              -- saves flash.bin, eeprom.bin, fuses.txt
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "avr/part.h"
#include "avrsim/avrsim.h"
#include "fotahost.h"

typedef struct {
    avrsim *s; /* NULL once closed */
} Chip;

static const char *const fuse_names[FH_NFUSES] = {"lfuse", "hfuse", "efuse", "lock"};

avrsim *avrsim_lua_check(lua_State *L, int idx)
{
    Chip *c = (Chip *)luaL_checkudata(L, idx, AVRSIM_MT);

    if (c->s == NULL)
        luaL_error(L, "attempt to use a closed simulated chip");
    return c->s;
}

static avrsim *check_chip(lua_State *L)
{
    return avrsim_lua_check(L, 1);
}

static int check_level(lua_State *L, int arg)
{
    lua_Integer v;

    if (lua_isboolean(L, arg))
        return lua_toboolean(L, arg);
    v = luaL_checkinteger(L, arg);
    luaL_argcheck(L, v == 0 || v == 1, arg, "level must be 0, 1 or a boolean");
    return (int)v;
}

static uint8_t check_byte(lua_State *L, int arg)
{
    lua_Integer v = luaL_checkinteger(L, arg);

    luaL_argcheck(L, v >= 0 && v <= 255, arg, "byte out of range");
    return (uint8_t)v;
}

/* An optional integer field of the table at `t`; raises naming opts.<what>. */
static lua_Integer opt_field(lua_State *L, int t, const char *key, const char *what,
                             lua_Integer lo, lua_Integer hi, lua_Integer dflt)
{
    lua_Integer v;
    int isint;

    lua_getfield(L, t, key);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        return dflt;
    }
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < lo || v > hi)
        luaL_error(L, "bad option '%s' to 'open' (an integer from %I to %I expected)", what, lo, hi);
    lua_pop(L, 1);
    return v;
}

/* avrsim.open(dir, part[, opts]) -> chip | fail, "path: cause" */
static int sim_open(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    struct fh_avr_part part;
    uint8_t factory[FH_NFUSES];
    lua_Integer half = 250;
    char err[PATH_MAX + 128];
    Chip *c;
    int i;

    fh_avr_part_get(L, 2, &part);
    memcpy(factory, part.fuse_factory, FH_NFUSES);
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        half = opt_field(L, 3, "min_half_period_ns", "min_half_period_ns", 0, 1000000000, half);
        lua_getfield(L, 3, "factory"); /* ... opts.factory */
        if (!lua_isnil(L, -1)) {
            char what[24];
            if (!lua_istable(L, -1))
                luaL_error(L, "bad option 'factory' to 'open' (table expected)");
            for (i = 0; i < FH_NFUSES; i++) {
                snprintf(what, sizeof what, "factory.%s", fuse_names[i]);
                factory[i] = (uint8_t)opt_field(L, -1, fuse_names[i], what, 0, 255, factory[i]);
            }
        }
        lua_pop(L, 1);
    }
    c = (Chip *)lua_newuserdatauv(L, sizeof *c, 0);
    c->s = NULL;
    luaL_setmetatable(L, AVRSIM_MT);
    c->s = avrsim_open(dir, &part, factory, (long)half, err, sizeof err);
    if (c->s == NULL)
        return fh_result_msg(L, "%s", err);
    return 1;
}

/* chip:pins(reset, sck, mosi): levels at the chip, booleans or 0/1 */
static int chip_pins(lua_State *L)
{
    avrsim *s = check_chip(L);

    avrsim_set_pins(s, check_level(L, 2), check_level(L, 3), check_level(L, 4));
    return 0;
}

/* chip:miso() -> 0 | 1 */
static int chip_miso(lua_State *L)
{
    lua_pushinteger(L, avrsim_miso(check_chip(L)));
    return 1;
}

/* chip:transfer(b1, b2, b3, b4) -> r1, r2, r3, r4 */
static int chip_transfer(lua_State *L)
{
    avrsim *s = check_chip(L);
    uint8_t in[4], out[4];
    int i;

    for (i = 0; i < 4; i++)
        in[i] = check_byte(L, i + 2);
    avrsim_transfer(s, in, out);
    for (i = 0; i < 4; i++)
        lua_pushinteger(L, out[i]);
    return 4;
}

/* chip:fault(name[, param]) */
static int chip_fault(lua_State *L)
{
    static const char *const names[] = {"ok", "silent", "miso_stuck", "bit_error", "slow_write", NULL};
    static const enum avrsim_fault faults[] = {
        AVRSIM_OK, AVRSIM_SILENT, AVRSIM_MISO_STUCK, AVRSIM_BIT_ERROR, AVRSIM_SLOW_WRITE,
    };
    avrsim *s = check_chip(L);
    int which = luaL_checkoption(L, 2, NULL, names);
    lua_Integer param = 0;

    switch (faults[which]) {
    case AVRSIM_MISO_STUCK:
        param = check_level(L, 3);
        break;
    case AVRSIM_BIT_ERROR:
        param = luaL_checkinteger(L, 3);
        luaL_argcheck(L, param >= 0 && param <= LONG_MAX, 3, "bit index must be 0 or more");
        break;
    case AVRSIM_SLOW_WRITE:
        param = luaL_checkinteger(L, 3);
        luaL_argcheck(L, param >= 1 && param <= 1000000, 3, "factor must be from 1 to 1000000");
        break;
    default:
        break;
    }
    avrsim_set_fault(s, faults[which], (long)param);
    return 0;
}

static void set_count(lua_State *L, const char *key, unsigned long v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, key);
}

/* chip:stats() -> { commands=, bits=, ..., last_violation= } */
static int chip_stats(lua_State *L)
{
    struct avrsim_stats st;

    avrsim_stats(check_chip(L), &st);
    lua_createtable(L, 0, 11);
    set_count(L, "commands", st.commands);
    set_count(L, "bits", st.bits);
    set_count(L, "enables", st.enables);
    set_count(L, "violations", st.violations);
    set_count(L, "page_writes", st.page_writes);
    set_count(L, "chip_erases", st.chip_erases);
    set_count(L, "eeprom_writes", st.eeprom_writes);
    set_count(L, "fuse_writes", st.fuse_writes);
    set_count(L, "polls", st.polls);
    set_count(L, "resets", st.resets);
    lua_pushstring(L, st.last_violation);
    lua_setfield(L, -2, "last_violation");
    return 1;
}

static int chip_reset_stats(lua_State *L)
{
    avrsim_reset_stats(check_chip(L));
    return 0;
}

/* chip:flash([offset[, len]]) -> string */
static int chip_flash(lua_State *L)
{
    avrsim *s = check_chip(L);
    lua_Integer size = avrsim_part(s)->flash_size;
    lua_Integer off = luaL_optinteger(L, 2, 0);
    lua_Integer len;

    luaL_argcheck(L, off >= 0 && off <= size, 2, "offset outside the flash");
    len = luaL_optinteger(L, 3, size - off);
    luaL_argcheck(L, len >= 0 && len <= size - off, 3, "length beyond the end of the flash");
    lua_pushlstring(L, (const char *)avrsim_flash(s) + off, (size_t)len);
    return 1;
}

/* chip:eeprom() -> string */
static int chip_eeprom(lua_State *L)
{
    avrsim *s = check_chip(L);

    lua_pushlstring(L, (const char *)avrsim_eeprom(s), avrsim_part(s)->eeprom_size);
    return 1;
}

/* chip:fuses() -> { lfuse=, hfuse=, efuse=, lock= } */
static int chip_fuses(lua_State *L)
{
    uint8_t f[FH_NFUSES];
    int i;

    avrsim_fuses(check_chip(L), f);
    lua_createtable(L, 0, FH_NFUSES);
    for (i = 0; i < FH_NFUSES; i++) {
        lua_pushinteger(L, f[i]);
        lua_setfield(L, -2, fuse_names[i]);
    }
    return 1;
}

/* chip:programming() -> boolean */
static int chip_programming(lua_State *L)
{
    lua_pushboolean(L, avrsim_programming(check_chip(L)));
    return 1;
}

/* chip:save() -> true | fail, "path: cause" */
static int chip_save(lua_State *L)
{
    char err[PATH_MAX + 128];

    if (avrsim_save(check_chip(L), err, sizeof err) != 0)
        return fh_result_msg(L, "%s", err);
    lua_pushboolean(L, 1);
    return 1;
}

/* chip:close() -> true | fail, "path: cause". Saves, then frees, even when
 * the save failed; closing again does nothing. Also __close. */
static int chip_close(lua_State *L)
{
    Chip *c = (Chip *)luaL_checkudata(L, 1, AVRSIM_MT);
    char err[PATH_MAX + 128];
    int rc;

    if (c->s == NULL) {
        lua_pushboolean(L, 1);
        return 1;
    }
    rc = avrsim_save(c->s, err, sizeof err);
    avrsim_free(c->s);
    c->s = NULL;
    if (rc != 0)
        return fh_result_msg(L, "%s", err);
    lua_pushboolean(L, 1);
    return 1;
}

/* __gc: frees without saving, and never raises. */
static int chip_gc(lua_State *L)
{
    Chip *c = (Chip *)luaL_checkudata(L, 1, AVRSIM_MT);

    avrsim_free(c->s);
    c->s = NULL;
    return 0;
}

static int chip_tostring(lua_State *L)
{
    Chip *c = (Chip *)luaL_checkudata(L, 1, AVRSIM_MT);

    if (c->s == NULL)
        lua_pushliteral(L, "simulated chip (closed)");
    else
        lua_pushfstring(L, "simulated %s (%s)", avrsim_part(c->s)->id, avrsim_dir(c->s));
    return 1;
}

static const luaL_Reg chip_methods[] = {
    {"pins", chip_pins},
    {"miso", chip_miso},
    {"transfer", chip_transfer},
    {"fault", chip_fault},
    {"stats", chip_stats},
    {"reset_stats", chip_reset_stats},
    {"flash", chip_flash},
    {"eeprom", chip_eeprom},
    {"fuses", chip_fuses},
    {"programming", chip_programming},
    {"save", chip_save},
    {"close", chip_close},
    {NULL, NULL},
};

static const luaL_Reg chip_meta[] = {
    {"__index", NULL}, /* set below */
    {"__gc", chip_gc},
    {"__close", chip_close},
    {"__tostring", chip_tostring},
    {NULL, NULL},
};

static const luaL_Reg avrsim_funcs[] = {
    {"open", sim_open},
    {NULL, NULL},
};

int luaopen_fotahost_avrsim(lua_State *L);

int luaopen_fotahost_avrsim(lua_State *L)
{
    fh_new_class(L, AVRSIM_MT, chip_meta, chip_methods);
    luaL_newlib(L, avrsim_funcs);
    return 1;
}
