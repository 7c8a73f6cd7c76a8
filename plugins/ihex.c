/*
 * ihex.c: `fotahost.ihex`, Intel HEX files as sparse memory images.
 *
 *   local ihex = require "fotahost.ihex"
 *   local img, err = ihex.load("Caterina.hex")     -- nil, "Caterina.hex:12: bad checksum: ..."
 *   local app = assert(ihex.load("blink.hex"))
 *   local both = assert(img:merge(app))             -- nil, "overlap at 0x7000: ..."
 *   local flash = both:bytes(0, 0x7FFF)             -- 0xFF where there is no data
 *
 * The parsing, the image and the writer are plain C in plugins/ihex/ (so
 * the unit test and the fuzzer run the same code); this file is the Lua
 * face of it. An image's bytes live in C memory freed by __gc.
 *
 * Errors: misuse raises; a malformed input returns nil, "name:line: cause"
 * with no code; a system error returns nil, "path: strerror", code: code is
 * the errno.
 */
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "fotahost.h"
#include "ihex/ihex.h"

#define IHEX_MT "fotahost.ihex.image"
#define IHEX_MAX_SIZE_DEFAULT ((lua_Integer)16 * 1024 * 1024)
#define IHEX_BYTES_MAX ((lua_Integer)256 * 1024 * 1024)

static ihex_image *check_image(lua_State *L, int arg)
{
    return (ihex_image *)luaL_checkudata(L, arg, IHEX_MT);
}

/* An empty image on the stack: made before any C allocation, so a Lua
 * memory error can never strand C memory. */
static ihex_image *push_image(lua_State *L)
{
    ihex_image *img = (ihex_image *)lua_newuserdatauv(L, sizeof *img, 0);

    ihex_init(img);
    luaL_setmetatable(L, IHEX_MT);
    return img;
}

static uint32_t check_addr(lua_State *L, int arg)
{
    lua_Integer a = luaL_checkinteger(L, arg);

    luaL_argcheck(L, a >= 0 && (uint64_t)a < IHEX_SPACE, arg,
                  "address out of range (0..0xFFFFFFFF)");
    return (uint32_t)a;
}

static unsigned opt_record_len(lua_State *L, int arg)
{
    lua_Integer n = luaL_optinteger(L, arg, IHEX_RECORD_LEN_DEFAULT);

    luaL_argcheck(L, n >= 1 && n <= IHEX_RECORD_LEN_MAX, arg, "record length must be 1..255");
    return (unsigned)n;
}

/* fail, "name:line: cause" | fail, "name: cause"[, errno] */
static int push_error(lua_State *L, const char *name, const ihex_error *e)
{
    if (e->line > 0)
        return fh_result_msg(L, "%s:%I: %s", name, (lua_Integer)e->line, e->cause);
    if (e->err != 0)
        return fh_result_errno(L, e->err, name);
    return fh_result_msg(L, "%s: %s", name, e->cause);
}

/* ihex.load(path[, opts]) -> image | fail, "path:line: cause"[, errno] */
static int ihex_load(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    lua_Integer max_size = IHEX_MAX_SIZE_DEFAULT;
    ihex_image *img;
    ihex_error e;

    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        if (lua_getfield(L, 2, "max_size") != LUA_TNIL) { /* ... opts.max_size */
            int ok;
            max_size = lua_tointegerx(L, -1, &ok);
            luaL_argcheck(L, ok && max_size >= 0, 2, "max_size must be a non-negative integer");
        }
        lua_pop(L, 1);
    }
    img = push_image(L);
    if (ihex_parse_file(img, path, (uint64_t)max_size, &e) != 0)
        return push_error(L, path, &e);
    return 1;
}

/* ihex.parse(text[, name]) -> image | fail, "name:line: cause" */
static int ihex_parse(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    const char *name = luaL_optstring(L, 2, "(string)");
    ihex_image *img = push_image(L);
    ihex_error e;

    if (ihex_parse_buffer(img, text, len, &e) != 0)
        return push_error(L, name, &e);
    return 1;
}

/* ihex.from_binary(data[, addr]) -> image: the bytes of data from addr on */
static int ihex_from_binary(lua_State *L)
{
    size_t len;
    const char *data = luaL_checklstring(L, 1, &len);
    uint32_t addr = lua_isnoneornil(L, 2) ? 0 : check_addr(L, 2);
    ihex_image *img;

    luaL_argcheck(L, (uint64_t)len <= IHEX_SPACE - addr, 1, "data runs past 0xFFFFFFFF");
    img = push_image(L);
    if (ihex_put(img, addr, (const uint8_t *)data, len, NULL) != IHEX_OK)
        return luaL_error(L, "not enough memory");
    return 1;
}

/* image:segments() -> { { addr = n, data = s }, ... } in address order */
static int image_segments(lua_State *L)
{
    ihex_image *img = check_image(L, 1);
    size_t i;

    lua_createtable(L, img->nseg > INT_MAX ? 0 : (int)img->nseg, 0);
    for (i = 0; i < img->nseg; i++) {
        lua_createtable(L, 0, 2); /* list, seg */
        lua_pushinteger(L, img->seg[i].addr);
        lua_setfield(L, -2, "addr");
        lua_pushlstring(L, (const char *)img->seg[i].data, img->seg[i].len);
        lua_setfield(L, -2, "data");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* image:range() -> lowest, highest (inclusive) | nil when empty */
static int image_range(lua_State *L)
{
    uint32_t lo, hi;

    if (!ihex_range(check_image(L, 1), &lo, &hi)) {
        lua_pushnil(L);
        return 1;
    }
    lua_pushinteger(L, lo);
    lua_pushinteger(L, hi);
    return 2;
}

/* image:size() -> number of data bytes */
static int image_size(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)check_image(L, 1)->size);
    return 1;
}

/* image:get(addr) -> byte | nil */
static int image_get(lua_State *L)
{
    int b = ihex_get(check_image(L, 1), check_addr(L, 2));

    if (b < 0)
        lua_pushnil(L);
    else
        lua_pushinteger(L, b);
    return 1;
}

/* image:bytes(lo, hi[, fill]) -> the bytes of [lo, hi], fill (0xFF) in gaps */
static int image_bytes(lua_State *L)
{
    ihex_image *img = check_image(L, 1);
    uint32_t lo = check_addr(L, 2);
    uint32_t hi = check_addr(L, 3);
    lua_Integer fill = luaL_optinteger(L, 4, 0xFF);
    luaL_Buffer b;
    size_t n;

    luaL_argcheck(L, fill >= 0 && fill <= 0xFF, 4, "fill must be a byte (0..255)");
    luaL_argcheck(L, lo <= hi, 3, "hi is below lo");
    luaL_argcheck(L, (lua_Integer)hi - lo < IHEX_BYTES_MAX, 3, "range over 256 MiB");
    n = (size_t)(hi - lo) + 1;
    ihex_fill_range(img, lo, hi, (uint8_t)fill, (uint8_t *)luaL_buffinitsize(L, &b, n));
    luaL_pushresultsize(&b, n);
    return 1;
}

/* image:merge(other) -> new image | fail, "overlap at 0x...: ..." */
static int image_merge(lua_State *L)
{
    ihex_image *a = check_image(L, 1);
    ihex_image *b = check_image(L, 2);
    ihex_image *out = push_image(L);
    ihex_error e;

    if (ihex_merge(out, a, b, &e) != 0) {
        if (e.err != 0)
            return fh_result_errno(L, e.err, "merge");
        return fh_result_msg(L, "%s", e.cause);
    }
    return 1;
}

/*
 * The formatter hands over one line at a time. luaL_addlstring may raise a
 * memory error through ihex_format: harmless, as ihex_format holds no
 * allocation of its own.
 */
static int buffer_sink(void *ctx, const char *text, size_t len)
{
    luaL_addlstring((luaL_Buffer *)ctx, text, len);
    return 0;
}

/* image:to_hex([record_len]) -> Intel HEX text */
static int image_to_hex(lua_State *L)
{
    ihex_image *img = check_image(L, 1);
    unsigned record_len = opt_record_len(L, 2);
    luaL_Buffer b;

    luaL_buffinit(L, &b);
    ihex_format(img, record_len, buffer_sink, &b);
    luaL_pushresult(&b);
    return 1;
}

/* image:write(path[, record_len]) -> true | fail, "path: cause", errno */
static int image_write(lua_State *L)
{
    ihex_image *img = check_image(L, 1);
    const char *path = luaL_checkstring(L, 2);
    unsigned record_len = opt_record_len(L, 3);
    ihex_error e;

    if (ihex_write_file(img, path, record_len, &e) != 0)
        return push_error(L, path, &e);
    lua_pushboolean(L, 1);
    return 1;
}

/* image:start() -> start address | nil */
static int image_start(lua_State *L)
{
    uint32_t addr;

    if (ihex_start(check_image(L, 1), &addr))
        lua_pushinteger(L, addr);
    else
        lua_pushnil(L);
    return 1;
}

/* Frees the bytes; idempotent, as ihex_free leaves an empty image. */
static int image_gc(lua_State *L)
{
    ihex_free(check_image(L, 1));
    return 0;
}

static int image_tostring(lua_State *L)
{
    ihex_image *img = check_image(L, 1);
    uint32_t lo, hi;
    char buf[128];

    if (!ihex_range(img, &lo, &hi)) {
        lua_pushliteral(L, "ihex image: empty");
        return 1;
    }
    snprintf(buf, sizeof buf, "ihex image: %" PRIu64 " bytes in %zu segment%s, 0x%04" PRIX32
             "..0x%04" PRIX32, img->size, img->nseg, img->nseg == 1 ? "" : "s", lo, hi);
    lua_pushstring(L, buf);
    return 1;
}

static const luaL_Reg image_methods[] = {
    {"segments", image_segments},
    {"range", image_range},
    {"size", image_size},
    {"get", image_get},
    {"bytes", image_bytes},
    {"merge", image_merge},
    {"to_hex", image_to_hex},
    {"write", image_write},
    {"start", image_start},
    {NULL, NULL},
};

static const luaL_Reg image_meta[] = {
    {"__index", NULL}, /* set below */
    {"__gc", image_gc},
    {"__tostring", image_tostring},
    {NULL, NULL},
};

static const luaL_Reg ihex_funcs[] = {
    {"load", ihex_load},
    {"parse", ihex_parse},
    {"from_binary", ihex_from_binary},
    {NULL, NULL},
};

int luaopen_fotahost_ihex(lua_State *L);

int luaopen_fotahost_ihex(lua_State *L)
{
    fh_new_class(L, IHEX_MT, image_meta, image_methods);
    luaL_newlib(L, ihex_funcs);
    return 1;
}
