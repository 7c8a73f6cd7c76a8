/*
 * part.c: reads a part description (scripts/fotahost/avr/parts.lua) into
 * struct fh_avr_part, checking every field.
 */
#include <string.h>

#include <lauxlib.h>

#include "fotahost.h"
#include "part.h"

static lua_Integer int_field(lua_State *L, int t, const char *id, const char *key,
                             lua_Integer lo, lua_Integer hi, int required, lua_Integer dflt)
{
    lua_Integer v;
    int isint;

    lua_getfield(L, t, key);
    if (lua_isnil(L, -1) && !required) {
        lua_pop(L, 1);
        return dflt;
    }
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < lo || v > hi)
        luaL_error(L, "part %s: field '%s' must be an integer from %I to %I", id, key, lo, hi);
    lua_pop(L, 1);
    return v;
}

static int is_pow2(uint32_t v)
{
    return v != 0 && (v & (v - 1)) == 0;
}

static void copy_string(lua_State *L, int t, const char *key, char *dst, size_t size, const char *id)
{
    size_t len;
    const char *s;

    lua_getfield(L, t, key);
    s = lua_tolstring(L, -1, &len);
    if (s == NULL || len == 0 || len >= size)
        luaL_error(L, "part %s: field '%s' must be a string of 1 to %d characters",
                   id, key, (int)size - 1);
    memcpy(dst, s, len + 1);
    lua_pop(L, 1);
}

static void fuse_field(lua_State *L, int t, const char *id, const char *table,
                       uint8_t out[FH_NFUSES], int required)
{
    static const char *const names[FH_NFUSES] = {"lfuse", "hfuse", "efuse", "lock"};
    int i;

    lua_getfield(L, t, table);
    if (!lua_istable(L, -1))
        luaL_error(L, "part %s: field '%s' must be a table", id, table);
    for (i = 0; i < FH_NFUSES; i++) {
        lua_pushfstring(L, "%s.%s", table, names[i]);
        out[i] = (uint8_t)int_field(L, -2, id, names[i], 0, 255, required && i != FH_EFUSE, 0xFF);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

void fh_avr_part_get(lua_State *L, int idx, struct fh_avr_part *p)
{
    int t = lua_absindex(L, idx);
    const char *id;
    int i;

    luaL_checktype(L, t, LUA_TTABLE);
    memset(p, 0, sizeof *p);
    lua_getfield(L, t, "id");
    id = lua_tostring(L, -1);
    if (id == NULL)
        luaL_error(L, "part: field 'id' must be a string");
    lua_pop(L, 1);
    copy_string(L, t, "id", p->id, sizeof p->id, id);
    id = p->id;
    copy_string(L, t, "desc", p->desc, sizeof p->desc, id);

    lua_getfield(L, t, "signature");
    if (!lua_istable(L, -1) || luaL_len(L, -1) != 3)
        luaL_error(L, "part %s: field 'signature' must be a list of 3 bytes", id);
    for (i = 0; i < 3; i++) {
        lua_Integer b;
        int isint;
        lua_rawgeti(L, -1, i + 1);
        b = lua_tointegerx(L, -1, &isint);
        if (!isint || b < 0 || b > 255)
            luaL_error(L, "part %s: field 'signature' must be a list of 3 bytes", id);
        p->signature[i] = (uint8_t)b;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    p->calibration = (uint8_t)int_field(L, t, id, "calibration", 0, 255, 0, 0x5A);
    p->flash_size = (uint32_t)int_field(L, t, id, "flash_size", 256, 0x400000, 1, 0);
    p->flash_page = (uint32_t)int_field(L, t, id, "flash_page", 2, 1024, 1, 0);
    p->eeprom_size = (uint32_t)int_field(L, t, id, "eeprom_size", 0, 0x10000, 1, 0);
    p->eeprom_page = (uint32_t)int_field(L, t, id, "eeprom_page", 1, 256, 1, 0);
    p->boot_size_max = (uint32_t)int_field(L, t, id, "boot_size_max", 0, p->flash_size, 0, 0);
    if (!is_pow2(p->flash_page) || !is_pow2(p->eeprom_page) || p->flash_size % p->flash_page != 0)
        luaL_error(L, "part %s: page sizes must be powers of two dividing the memory size", id);
    p->has_efuse = 1;
    lua_getfield(L, t, "has_efuse");
    if (lua_isboolean(L, -1))
        p->has_efuse = lua_toboolean(L, -1);
    lua_pop(L, 1);
    fuse_field(L, t, id, "fuse_mask", p->fuse_mask, 1);
    fuse_field(L, t, id, "factory", p->fuse_factory, 1);
    p->t_wd_flash_us = (uint32_t)int_field(L, t, id, "t_wd_flash_us", 1, 1000000, 1, 0);
    p->t_wd_erase_us = (uint32_t)int_field(L, t, id, "t_wd_erase_us", 1, 1000000, 1, 0);
    p->t_wd_eeprom_us = (uint32_t)int_field(L, t, id, "t_wd_eeprom_us", 1, 1000000, 1, 0);
    p->t_wd_fuse_us = (uint32_t)int_field(L, t, id, "t_wd_fuse_us", 1, 1000000, 1, 0);
}
