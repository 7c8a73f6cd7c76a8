/*
 * digest.c: `fotahost.digest`, MD5, SHA-1 and SHA-256 from the crypto
 * library of the TLS library libcurl already brings, never hand-written
 * crypto: OpenSSL's libcrypto (Debian's default), or mbedTLS (OpenWrt,
 * whose libcurl is built on it and brings no libcrypto), chosen at build
 * time (make DIGEST_LIB=libcrypto|mbedtls, see the Makefile). A plugin, so
 * start-up does not pay for the library.
 *
 *   local digest = require "fotahost.digest"
 *   digest.sha256("abc")                 --> "ba7816bf..."
 *   local h = digest.new("md5"); h:update(chunk) ... h:hex()
 *   digest.file("/tmp/fw.hex", "md5")    --> hex | nil, "path: cause", errno
 *   digest.backend                       --> "libcrypto 3.0.22", "mbedtls 2.28.3"
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

#include "fotahost.h"

/*
 * The backend: one context type and four calls over it, the only code that
 * names the library. md_start(c, alg) starts digest alg (an index into
 * names[] below); md_update and md_finish (which writes sizes[alg] bytes)
 * follow; each returns 0 on success. md_free is safe after any md_start,
 * a failed one too, on a zeroed context, and twice. MD_LIB names the
 * library in messages.
 */
#ifdef FH_DIGEST_MBEDTLS

#include <mbedtls/md.h>
#include <mbedtls/version.h>

#define MD_LIB "mbedTLS"
typedef mbedtls_md_context_t md_ctx;

static int md_start(md_ctx *c, int alg)
{
    static const mbedtls_md_type_t types[] = {MBEDTLS_MD_MD5, MBEDTLS_MD_SHA1, MBEDTLS_MD_SHA256};
    const mbedtls_md_info_t *info = mbedtls_md_info_from_type(types[alg]);

    mbedtls_md_init(c);
    /* NULL: this mbedTLS was configured without that digest */
    if (info == NULL || mbedtls_md_setup(c, info, 0) != 0)
        return -1;
    return mbedtls_md_starts(c);
}

static int md_update(md_ctx *c, const void *p, size_t n)
{
    return mbedtls_md_update(c, p, n);
}

static int md_finish(md_ctx *c, unsigned char *out)
{
    return mbedtls_md_finish(c, out);
}

static void md_free(md_ctx *c)
{
    mbedtls_md_free(c);
}

static void push_backend(lua_State *L)
{
#ifdef MBEDTLS_VERSION_C
    char v[9]; /* the size version.h asks for */

    mbedtls_version_get_string(v); /* the library loaded, not the headers */
    lua_pushfstring(L, "mbedtls %s", v);
#else
    lua_pushliteral(L, "mbedtls " MBEDTLS_VERSION_STRING);
#endif
}

#else /* libcrypto */

#include <openssl/crypto.h>
#include <openssl/evp.h>

#define MD_LIB "libcrypto"
typedef EVP_MD_CTX *md_ctx;

static int md_start(md_ctx *c, int alg)
{
    const EVP_MD *md = alg == 0 ? EVP_md5() : alg == 1 ? EVP_sha1() : EVP_sha256();

    *c = EVP_MD_CTX_new();
    return *c != NULL && EVP_DigestInit_ex(*c, md, NULL) == 1 ? 0 : -1;
}

static int md_update(md_ctx *c, const void *p, size_t n)
{
    return EVP_DigestUpdate(*c, p, n) == 1 ? 0 : -1;
}

static int md_finish(md_ctx *c, unsigned char *out)
{
    return EVP_DigestFinal_ex(*c, out, NULL) == 1 ? 0 : -1;
}

static void md_free(md_ctx *c)
{
    EVP_MD_CTX_free(*c);
    *c = NULL;
}

static void push_backend(lua_State *L)
{
#ifdef OPENSSL_VERSION_STRING /* OpenSSL 3: "3.0.22" */
    lua_pushfstring(L, "libcrypto %s", OpenSSL_version(OPENSSL_VERSION_STRING));
#else
    lua_pushliteral(L, "libcrypto");
#endif
}

#endif

/* The module, on the backend above. */

#define DIGEST_MT "fotahost.digest"
#define FILE_CHUNK 65536
#define MD_MAX 32 /* SHA-256's, the longest */

typedef struct {
    md_ctx ctx;        /* freed once finished */
    int alg;
    int done;          /* hex()/digest() called: no more update() */
    unsigned char out[MD_MAX];
} Digest;

static const char *const names[] = {"md5", "sha1", "sha256", NULL};
static const unsigned sizes[] = {16, 20, 32};

static void push_hex(lua_State *L, const unsigned char *d, unsigned n)
{
    static const char hex[] = "0123456789abcdef";
    char buf[2 * MD_MAX];
    unsigned i;

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

/* digest.new(name) -> hasher; name: "md5", "sha1", "sha256" */
static int l_new(lua_State *L)
{
    int i = luaL_checkoption(L, 1, NULL, names);
    Digest *d = (Digest *)lua_newuserdatauv(L, sizeof *d, 0);

    memset(d, 0, sizeof *d); /* md_free-safe should md_start never run */
    luaL_setmetatable(L, DIGEST_MT);
    d->alg = i;
    if (md_start(&d->ctx, i) != 0)
        return luaL_error(L, "digest.new: " MD_LIB " cannot start %s", names[i]);
    return 1;
}

/* h:update(data) -> h (for chaining) */
static int l_update(lua_State *L)
{
    Digest *d = check_digest(L);
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);

    if (d->done)
        return luaL_error(L, "%s: update after the digest was taken", names[d->alg]);
    if (md_update(&d->ctx, s, len) != 0)
        return luaL_error(L, "%s: " MD_LIB " update failed", names[d->alg]);
    lua_settop(L, 1);
    return 1;
}

static void finish(lua_State *L, Digest *d)
{
    if (!d->done) {
        if (md_finish(&d->ctx, d->out) != 0)
            luaL_error(L, "%s: " MD_LIB " final failed", names[d->alg]);
        d->done = 1;
        md_free(&d->ctx);
    }
}

/* h:hex() -> lowercase hex digest (the hasher is finished; repeatable) */
static int l_hex(lua_State *L)
{
    Digest *d = check_digest(L);

    finish(L, d);
    push_hex(L, d->out, sizes[d->alg]);
    return 1;
}

/* h:digest() -> the raw bytes */
static int l_digest(lua_State *L)
{
    Digest *d = check_digest(L);

    finish(L, d);
    lua_pushlstring(L, (const char *)d->out, sizes[d->alg]);
    return 1;
}

static int l_gc(lua_State *L)
{
    md_free(&check_digest(L)->ctx);
    return 0;
}

static int l_tostring(lua_State *L)
{
    Digest *d = check_digest(L);

    lua_pushfstring(L, "%s digest (%s)", names[d->alg], d->done ? "finished" : "open");
    return 1;
}

/* One-shot over a string, with the algorithm as the upvalue. */
static int l_oneshot(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    int i = (int)lua_tointeger(L, lua_upvalueindex(1));
    unsigned char out[MD_MAX];
    md_ctx ctx;
    int rc = md_start(&ctx, i);

    if (rc == 0)
        rc = md_update(&ctx, s, len);
    if (rc == 0)
        rc = md_finish(&ctx, out);
    md_free(&ctx);
    if (rc != 0)
        return luaL_error(L, "digest.%s: " MD_LIB " failed", names[i]);
    push_hex(L, out, sizes[i]);
    return 1;
}

/* digest.file(path[, name]) -> hex | nil, "path: cause", errno (default sha256) */
static int l_file(lua_State *L)
{
    const char *path = luaL_checkstring(L, 1);
    int i = luaL_checkoption(L, 2, "sha256", names);
    static unsigned char buf[FILE_CHUNK];
    unsigned char out[MD_MAX];
    md_ctx ctx;
    FILE *f = fopen(path, "rbe");
    size_t got;
    int rc, err = 0;

    if (f == NULL)
        return fh_result_errno(L, errno, path);
    if (md_start(&ctx, i) != 0) {
        fclose(f);
        md_free(&ctx);
        return luaL_error(L, "digest.file: " MD_LIB " cannot start %s", names[i]);
    }
    rc = 0;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        rc |= md_update(&ctx, buf, got);
    if (ferror(f))
        err = errno ? errno : EIO;
    fclose(f);
    if (rc == 0)
        rc = md_finish(&ctx, out);
    md_free(&ctx);
    if (err != 0)
        return fh_result_errno(L, err, path);
    if (rc != 0)
        return luaL_error(L, "digest.file: " MD_LIB " failed on %s", path);
    push_hex(L, out, sizes[i]);
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
    push_backend(L);
    lua_setfield(L, -2, "backend");
    return 1;
}
