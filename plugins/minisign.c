/*
 * minisign.c: `fotahost.minisign`, minisign signatures checked natively:
 * Ed25519 and BLAKE2b-512 from libsodium, never hand-written crypto. A
 * plugin, so start-up does not map libsodium.
 *
 *   local ms = require "fotahost.minisign"
 *   local key = assert(ms.public_key(io.open("fotahost.pub"):read("a")))
 *   key.id                               --> "4E2F9C1A0B3D5E77"
 *   local ok, err = ms.verify({ key }, sig_text, "blink.hex")
 *   ok --> { key_id = "4E2F...", comment = "fotahost version=2.0 ...", alg = "ED" }
 *   err --> "signed by key 0123456789ABCDEF, which is not a trusted key"
 *   ms.verify_data({ key }, sig_text, bytes)  -- the same, over bytes in memory
 *   ms.signature_info(sig_text)          -- parsed, NOT verified: for display
 *
 * The files' text is parsed by the C core in plugins/minisign/ (also
 * fuzzed); this file holds the order of the checks, which is the security
 * of it (signing.md): parse every line, check the algorithm, find the
 * key by its number, verify the signature over the file (its BLAKE2b-512
 * for "ED", streamed; the whole file for legacy "Ed"), then the global
 * signature over the trusted comment. Only then is the comment returned.
 *
 * Errors: misuse raises; a refused signature, key or file returns nil and
 * a message naming what failed; a file that cannot be read returns nil,
 * "path: strerror", errno.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <sodium.h>

#include "fotahost.h"
#include "minisign/minisign.h"

#define FILE_CHUNK 65536

/* A key as verify() uses it: its number and public key, from a key
 * object (public_key()'s table) or a key's text. */
static void push_key(lua_State *L, const minisign_key *k)
{
    char id[17];

    minisign_key_id(k->keynum, id);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, id);
    lua_setfield(L, -2, "id");
    lua_pushlstring(L, (const char *)k->keynum, sizeof k->keynum);
    lua_setfield(L, -2, "keynum");
    lua_pushlstring(L, (const char *)k->pk, sizeof k->pk);
    lua_setfield(L, -2, "pk");
}

/* minisign.public_key(text) -> key | nil, message */
static int l_public_key(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    char err[MINISIGN_ERR_LEN];
    minisign_key k;

    if (minisign_parse_key(text, len, &k, err) != 0)
        return fh_result_msg(L, "%s", err);
    push_key(L, &k);
    return 1;
}

/* A key object's binary field, of exactly n bytes, or a raised error. */
static void key_field(lua_State *L, int i, const char *name, uint8_t *out, size_t n)
{
    size_t len;
    const char *s;

    lua_getfield(L, -1, name);
    s = lua_tolstring(L, -1, &len);
    if (s == NULL || len != n)
        luaL_error(L, "minisign.verify: trusted key #%d has no %d-byte '%s' (use minisign.public_key)",
                   i, (int)n, name);
    memcpy(out, s, n);
    lua_pop(L, 1);
}

/*
 * Trusted key #i of the list at index 1, into *k. 0, or -1 with nil and a
 * message pushed (a key text that does not parse). A value of another
 * type raises.
 */
static int get_key(lua_State *L, int i, minisign_key *k)
{
    char err[MINISIGN_ERR_LEN];
    int t = lua_rawgeti(L, 1, i);

    if (t == LUA_TSTRING) {
        size_t len;
        const char *text = lua_tolstring(L, -1, &len);
        if (minisign_parse_key(text, len, k, err) != 0) {
            lua_pop(L, 1);
            fh_result_msg(L, "trusted key #%d: %s", i, err);
            return -1;
        }
    } else if (t == LUA_TTABLE) {
        key_field(L, i, "keynum", k->keynum, sizeof k->keynum);
        key_field(L, i, "pk", k->pk, sizeof k->pk);
    } else {
        luaL_error(L, "minisign.verify: trusted key #%d is a %s (a key or a key's text expected)",
                   i, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
    return 0;
}

/* The key whose number the signature names: 1 found, 0 not, -1 a bad key
 * text (nil and the message pushed). */
static int find_key(lua_State *L, const minisign_sig *sig, minisign_key *k)
{
    lua_Integer i, n = (lua_Integer)lua_rawlen(L, 1);

    for (i = 1; i <= n; i++) {
        if (get_key(L, (int)i, k) != 0)
            return -1;
        if (memcmp(k->keynum, sig->keynum, MINISIGN_KEYNUM_LEN) == 0)
            return 1;
    }
    return 0;
}

/* BLAKE2b-512 of the file at path into out, read in chunks: 0, or an errno. */
static int hash_file(const char *path, uint8_t out[crypto_generichash_BYTES_MAX])
{
    static unsigned char buf[FILE_CHUNK];
    crypto_generichash_state st;
    FILE *f = fopen(path, "rbe");
    size_t got;
    int err = 0;

    if (f == NULL)
        return errno;
    crypto_generichash_init(&st, NULL, 0, crypto_generichash_BYTES_MAX);
    while ((got = fread(buf, 1, sizeof buf, f)) > 0)
        crypto_generichash_update(&st, buf, got);
    if (ferror(f))
        err = errno ? errno : EIO;
    fclose(f);
    crypto_generichash_final(&st, out, crypto_generichash_BYTES_MAX);
    return err;
}

/*
 * The whole file at path, for a legacy "Ed" signature, in a userdata
 * buffer left on the stack (the collector frees it, whatever happens) of
 * at most MINISIGN_LEGACY_FILE_MAX bytes. Returns 0 with *buf and *len, or
 * the number of results pushed (nil, message[, errno]).
 */
static int read_whole(lua_State *L, const char *path, const unsigned char **buf, size_t *len)
{
    struct stat st;
    unsigned char *b;
    size_t want, got;
    FILE *f;
    int err;

    if (stat(path, &st) != 0)
        return fh_result_errno(L, errno, path);
    if ((uint64_t)st.st_size > MINISIGN_LEGACY_FILE_MAX)
        return fh_result_msg(L, "%s: %I bytes, over the %d MiB a legacy (Ed) signature can cover "
                             "(sign it with minisign's default, ED)", path, (lua_Integer)st.st_size,
                             (int)(MINISIGN_LEGACY_FILE_MAX >> 20));
    want = (size_t)st.st_size;
    b = (unsigned char *)lua_newuserdatauv(L, want + 1, 0); /* before the open: may raise */
    f = fopen(path, "rbe");
    if (f == NULL)
        return fh_result_errno(L, errno, path);
    got = fread(b, 1, want + 1, f); /* one more: a file that grew is seen */
    err = ferror(f) ? (errno ? errno : EIO) : 0;
    fclose(f);
    if (err != 0)
        return fh_result_errno(L, err, path);
    if (got != want)
        return fh_result_msg(L, "%s: the file changed while it was read", path);
    *buf = b;
    *len = got;
    return 0;
}

static int refuse(lua_State *L, const char *fmt, const uint8_t keynum[MINISIGN_KEYNUM_LEN])
{
    char id[17];

    minisign_key_id(keynum, id);
    return fh_result_msg(L, fmt, id);
}

/* What a signature covers: the file at path, or bytes given (data != NULL). */
typedef struct {
    const char *path;
    const unsigned char *data;
    size_t len;
} signed_input;

/* The message sig->sig is over: the BLAKE2b-512 of the input for "ED"
 * (into hash), the input itself for "Ed". 0, or the results pushed. */
static int signed_message(lua_State *L, const minisign_sig *sig, const signed_input *in,
                          uint8_t hash[crypto_generichash_BYTES_MAX], const unsigned char **msg,
                          size_t *msg_len)
{
    int r;

    if (sig->hashed) {
        if (in->data != NULL) {
            crypto_generichash(hash, crypto_generichash_BYTES_MAX, in->data, in->len, NULL, 0);
        } else if ((r = hash_file(in->path, hash)) != 0) {
            return fh_result_errno(L, r, in->path);
        }
        *msg = hash;
        *msg_len = crypto_generichash_BYTES_MAX;
        return 0;
    }
    if (in->data != NULL) {
        *msg = in->data;
        *msg_len = in->len;
    } else if ((r = read_whole(L, in->path, msg, msg_len)) != 0) {
        return r;
    }
    if (*msg_len == crypto_generichash_BYTES_MAX)
        /* sig_alg is signed by nothing: an ED signature relabelled Ed
         * verifies over the 64 bytes of the file's BLAKE2b-512, so a
         * 64-byte file under a legacy signature could be that swap. */
        return fh_result_msg(L, "a legacy (Ed) signature over a 64-byte file is refused: it could be a "
                                "hashed (ED) signature relabelled; sign it again with minisign's default");
    return 0;
}

/* Checks sig (over the input) against key k: 0, or nil and a message pushed. */
static int check_signature(lua_State *L, const minisign_sig *sig, const minisign_key *k,
                           const signed_input *in)
{
    uint8_t hash[crypto_generichash_BYTES_MAX];
    const unsigned char *msg = NULL;
    size_t msg_len = 0;
    int r;

    if ((r = signed_message(L, sig, in, hash, &msg, &msg_len)) != 0)
        return r;
    if (crypto_sign_verify_detached(sig->sig, msg, msg_len, k->pk) != 0)
        return refuse(L, "the signature does not match the file (signed by key %s)", k->keynum);
    return 0;
}

/* The global signature: over sig followed by the trusted comment's bytes. */
static int check_comment(lua_State *L, const minisign_sig *sig, const minisign_key *k)
{
    unsigned char signed_part[MINISIGN_SIG_LEN + MINISIGN_COMMENT_MAX];

    memcpy(signed_part, sig->sig, MINISIGN_SIG_LEN);
    memcpy(signed_part + MINISIGN_SIG_LEN, sig->comment, sig->comment_len);
    if (crypto_sign_verify_detached(sig->global_sig, signed_part, MINISIGN_SIG_LEN + sig->comment_len,
                                    k->pk) != 0)
        return fh_result_msg(L, "the trusted comment does not match its signature");
    return 0;
}

/* { key_id, comment, alg } of a signature (its key number is the key's once verified). */
static int push_sig(lua_State *L, const minisign_sig *sig)
{
    char id[17];

    minisign_key_id(sig->keynum, id);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, id);
    lua_setfield(L, -2, "key_id");
    lua_pushlstring(L, sig->comment, sig->comment_len);
    lua_setfield(L, -2, "comment");
    lua_pushstring(L, sig->hashed ? "ED" : "Ed");
    lua_setfield(L, -2, "alg");
    return 1;
}

/* The checks of verify() and verify_data(), over the input: the results pushed. */
static int verify_input(lua_State *L, const signed_input *in)
{
    size_t len;
    const char *text;
    char err[MINISIGN_ERR_LEN];
    minisign_sig sig;
    minisign_key k;
    int found, r;

    luaL_checktype(L, 1, LUA_TTABLE);
    if (lua_getfield(L, 1, "pk") != LUA_TNIL)
        return luaL_error(L, "minisign.verify: a list of keys expected, got one key (wrap it in { })");
    lua_pop(L, 1);
    text = luaL_checklstring(L, 2, &len);
    if (lua_rawlen(L, 1) == 0)
        return fh_result_msg(L, "no trusted key to verify the signature with");
    if (minisign_parse_sig(text, len, &sig, err) != 0)
        return fh_result_msg(L, "%s", err);
    found = find_key(L, &sig, &k);
    if (found < 0)
        return 2;
    if (found == 0)
        return refuse(L, "signed by key %s, which is not a trusted key", sig.keynum);
    if ((r = check_signature(L, &sig, &k, in)) != 0 || (r = check_comment(L, &sig, &k)) != 0)
        return r;
    return push_sig(L, &sig);
}

/* minisign.verify(keys, sig_text, path) -> { key_id, comment, alg } | nil, message[, errno] */
static int l_verify(lua_State *L)
{
    signed_input in = {luaL_checkstring(L, 3), NULL, 0};

    return verify_input(L, &in);
}

/* minisign.verify_data(keys, sig_text, data) -> as verify(), over the bytes of data */
static int l_verify_data(lua_State *L)
{
    signed_input in = {NULL, NULL, 0};

    in.data = (const unsigned char *)luaL_checklstring(L, 3, &in.len);
    return verify_input(L, &in);
}

/* minisign.signature_info(sig_text) -> { key_id, comment, alg } | nil, message:
 * the signature file parsed, NOTHING verified (for display: a cloud listing
 * which key signed a firmware). */
static int l_signature_info(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    char err[MINISIGN_ERR_LEN];
    minisign_sig sig;

    if (minisign_parse_sig(text, len, &sig, err) != 0)
        return fh_result_msg(L, "%s", err);
    return push_sig(L, &sig);
}

static void push_limits(lua_State *L)
{
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, MINISIGN_COMMENT_MAX);
    lua_setfield(L, -2, "comment");
    lua_pushinteger(L, MINISIGN_UNTRUSTED_MAX);
    lua_setfield(L, -2, "untrusted_comment");
    lua_pushinteger(L, MINISIGN_SIG_FILE_MAX);
    lua_setfield(L, -2, "signature_file");
    lua_pushinteger(L, MINISIGN_KEY_FILE_MAX);
    lua_setfield(L, -2, "key_file");
    lua_pushinteger(L, (lua_Integer)MINISIGN_LEGACY_FILE_MAX);
    lua_setfield(L, -2, "legacy_file");
}

int luaopen_fotahost_minisign(lua_State *L);

int luaopen_fotahost_minisign(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"public_key", l_public_key},
        {"verify", l_verify},
        {"verify_data", l_verify_data},
        {"signature_info", l_signature_info},
        {NULL, NULL},
    };

    if (sodium_init() < 0)
        return luaL_error(L, "fotahost.minisign: libsodium failed to start");
    luaL_newlib(L, funcs);
    push_limits(L);
    lua_setfield(L, -2, "limits");
    lua_pushfstring(L, "libsodium %s", sodium_version_string());
    lua_setfield(L, -2, "backend");
    return 1;
}
