/*
 * digest.c: `fotahost.digest`, MD5, SHA-1 and SHA-256 from OpenSSL's
 * libcrypto (the TLS library libcurl already brings), never hand-written
 * crypto. A plugin, so start-up does not pay for libcrypto.
 *
 *   local digest = require "fotahost.digest"
 *   digest.sha256("abc")                 --> "ba7816bf..."
 *   local h = digest.new("md5"); h:update(chunk) ... h:hex()
 *   digest.file("/tmp/fw.hex", "md5")    --> hex | nil, "path: cause", errno
 *
 * Streaming: update() as data arrives (a download's sink), so nothing needs
 * the whole input in memory; file() reads in 64 KiB chunks.
 *
 * Errors: misuse raises; a file that cannot be read returns nil,
 * "path: strerror", code: code is the errno.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "fotahost.h"

#define DIGEST_MT "fotahost.digest"
#define FILE_CHUNK 65536

typedef struct {
    EVP_MD_CTX *ctx;   /* NULL once finished and freed */
    const EVP_MD *md;
    const char *name;
    int done;          /* hex()/digest() called: no more update() */
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen;
} Digest;

static const char *const names[] = {"md5", "sha1", "sha256", NULL};

static const EVP_MD *md_of(int i)
{
    switch (i) {
    case 0: return EVP_md5();
    case 1: return EVP_sha1();
    default: return EVP_sha256();
    }
}

static void push_hex(lua_State *L, const unsigned char *d, unsigned int n)
{
    static const char hex[] = "0123456789abcdef";
    char buf[2 * EVP_MAX_MD_SIZE];
    unsigned int i;

    for (i = 0; i < n; i++) {
        buf[2 * i] = hex[d[i] >> 4];
        buf[2 * i + 1] = hex[d[i] & 15];
    }
    lua_pushlstring(L, buf, 2 * (size_t)n);
}

static Digest *check_digest(lua_State *L)
{
    return (Digest *)luaL_checkudata(L, 1, DIGEST_MT);
}

static void digest_free(Digest *d)
{
    if (d->ctx != NULL) {
        EVP_MD_CTX_free(d->ctx);
        d->ctx = NULL;
    }
}

/* digest.new(name) -> hasher; name: "md5", "sha1", "sha256" */
static int l_new(lua_State *L)
{
    int i = luaL_checkoption(L, 1, NULL, names);
    Digest *d = (Digest *)lua_newuserdatauv(L, sizeof *d, 0);

    memset(d, 0, sizeof *d);
    luaL_setmetatable(L, DIGEST_MT);
    d->md = md_of(i);
    d->name = names[i];
    d->ctx = EVP_MD_CTX_new();
    if (d->ctx == NULL || EVP_DigestInit_ex(d->ctx, d->md, NULL) != 1)
        return luaL_error(L, "digest.new: libcrypto cannot start %s", names[i]);
    return 1;
}

/* h:update(data) -> h (for chaining) */
static int l_update(lua_State *L)
{
    Digest *d = check_digest(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);

    if (d->done)
        return luaL_error(L, "%s: update after the digest was taken", d->name);
    if (EVP_DigestUpdate(d->ctx, s, len) != 1)
        return luaL_error(L, "%s: libcrypto update failed", d->name);
    lua_settop(L, 1);
    return 1;
}

static void finish(lua_State *L, Digest *d)
{
    if (!d->done) {
        if (EVP_DigestFinal_ex(d->ctx, d->out, &d->outlen) != 1)
            luaL_error(L, "%s: libcrypto final failed", d->name);
        d->done = 1;
        digest_free(d);
    }
}

/* h:hex() -> lowercase hex digest (the hasher is finished; repeatable) */
static int l_hex(lua_State *L)
{
    Digest *d = check_digest(L);

    finish(L, d);
    push_hex(L, d->out, d->outlen);
    return 1;
}

/* h:digest() -> the raw bytes */
static int l_digest(lua_State *L)
{
    Digest *d = check_digest(L);

    finish(L, d);
    lua_pushlstring(L, (const char *)d->out, d->outlen);
    return 1;
}

static int l_gc(lua_State *L)
{
    digest_free(check_digest(L));
    return 0;
}

static int l_tostring(lua_State *L)
{
    Digest *d = check_digest(L);

    lua_pushfstring(L, "%s digest (%s)", d->name, d->done ? "finished" : "open");
    return 1;
}

/* One-shot over a string, with the algorithm as the upvalue. */
static int l_oneshot(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n;
    const EVP_MD *md = md_of((int)lua_tointeger(L, lua_upvalueindex(1)));

    if (EVP_Digest(s, len, out, &n, md, NULL) != 1)
        return luaL_error(L, "digest: libcrypto failed");
    push_hex(L, out, n);
    return 1;
}

/* digest.file(path[, name]) -> hex | nil, "path: cause", errno (default sha256) */
static int l_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int i = luaL_checkoption(L, 2, "sha256", names);
    static unsigned char buf[FILE_CHUNK];
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n;
    EVP_MD_CTX *ctx;
    FILE *f = fopen(path, "rbe");
    size_t got;
    int ok = 1, err = 0;

    if (f == NULL)
        return fh_result_errno(L, errno, path);
    ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, md_of(i), NULL) != 1) {
        fclose(f);
        EVP_MD_CTX_free(ctx);
        return luaL_error(L, "digest.file: libcrypto cannot start %s", names[i]);
    }
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        ok &= EVP_DigestUpdate(ctx, buf, got) == 1;
    if (ferror(f))
        err = errno ? errno : EIO;
    fclose(f);
    ok &= EVP_DigestFinal_ex(ctx, out, &n) == 1;
    EVP_MD_CTX_free(ctx);
    if (err != 0)
        return fh_result_errno(L, err, path);
    if (!ok)
        return luaL_error(L, "digest.file: libcrypto failed on %s", path);
    push_hex(L, out, n);
    return 1;
}

static const luaL_Reg methods[] = {
    {"update", l_update},
    {"hex", l_hex},
    {"digest", l_digest},
    {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__index", NULL},
    {"__gc", l_gc},
    {"__close", l_gc},
    {"__tostring", l_tostring},
    {NULL, NULL},
};

int luaopen_fotahost_digest(lua_State *L);

int luaopen_fotahost_digest(lua_State *L)
{
    int i;

    fh_new_class(L, DIGEST_MT, meta, methods);
    lua_newtable(L);
    lua_pushcfunction(L, l_new);
    lua_setfield(L, -2, "new");
    lua_pushcfunction(L, l_file);
    lua_setfield(L, -2, "file");
    for (i = 0; names[i] != NULL; i++) {
        lua_pushinteger(L, i);
        lua_pushcclosure(L, l_oneshot, 1);
        lua_setfield(L, -2, names[i]);
    }
    return 1;
}
