/*
 * minisign.h: the text of minisign's public key and signature files, parsed
 * and length-checked (the format: ../shared/docs/signing.md).
 *
 * The pure C core under `fotahost.minisign` (plugins/minisign.c, which does
 * the cryptography with libsodium): no Lua and no crypto library here, so the
 * fuzzer (tests/fuzz/fuzz_minisign.c) drives exactly the parser the module
 * runs. Every input is taken as hostile: sizes are checked before anything
 * is read, nothing is allocated, and a failure fills a message a user can
 * read ("malformed signature: line 2 is not base64").
 */
#ifndef FOTAHOST_MINISIGN_H
#define FOTAHOST_MINISIGN_H

#include <stddef.h>
#include <stdint.h>

#define MINISIGN_KEYNUM_LEN 8
#define MINISIGN_PK_LEN 32      /* an Ed25519 public key */
#define MINISIGN_SIG_LEN 64     /* an Ed25519 signature */
#define MINISIGN_KEY_BIN_LEN 42 /* "Ed", keynum, pk */
#define MINISIGN_SIG_BIN_LEN 74 /* "ED" or "Ed", keynum, sig */

/*
 * The limits, so no input makes the parser (or its caller) read or keep
 * much. A file minisign writes is far below each.
 *   - a trusted comment: 8192 bytes, minisign's own limit;
 *   - an untrusted comment line: 1024 bytes (minisign writes ~50);
 *   - a whole signature file: 12 KiB (the longest valid one, with the
 *     longest comments, is about 9.5 KiB);
 *   - a whole public key file: 2 KiB;
 *   - a file signed with the legacy "Ed" form is verified over its whole
 *     content, which must then be held in memory: 16 MiB at most (a flash
 *     image is 32 KiB; "ED" files are hashed as they are read, any size).
 */
#define MINISIGN_COMMENT_MAX 8192u
#define MINISIGN_UNTRUSTED_MAX 1024u
#define MINISIGN_SIG_FILE_MAX 12288u
#define MINISIGN_KEY_FILE_MAX 2048u
#define MINISIGN_LEGACY_FILE_MAX ((uint64_t)16 * 1024 * 1024)

#define MINISIGN_ERR_LEN 200

typedef struct {
    uint8_t keynum[MINISIGN_KEYNUM_LEN];
    uint8_t pk[MINISIGN_PK_LEN];
} minisign_key;

typedef struct {
    int hashed; /* 1: "ED", sig covers BLAKE2b-512 of the file; 0: "Ed", the file itself */
    uint8_t keynum[MINISIGN_KEYNUM_LEN];
    uint8_t sig[MINISIGN_SIG_LEN];
    uint8_t global_sig[MINISIGN_SIG_LEN]; /* over sig || comment */
    const char *comment;                  /* the trusted comment: points into the parsed text */
    size_t comment_len;
} minisign_sig;

/*
 * Strict base64 (RFC 4648's alphabet, '=' padding required): the length a
 * multiple of 4, padding only at the end, no other character, and unused
 * bits zero (one text per value). Returns the decoded length, or -1 for a
 * malformed text or one that would decode to more than cap bytes.
 */
long minisign_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap);

/*
 * A public key: minisign's .pub file (an "untrusted comment: " line, then
 * the base64 line), or the base64 line alone (as `minisign -P` takes it);
 * a final newline (LF or CRLF) is optional. 0 on success; -1 with a
 * message in err ("malformed public key: ...").
 */
int minisign_parse_key(const char *text, size_t len, minisign_key *key, char err[MINISIGN_ERR_LEN]);

/*
 * A signature file's four lines. sig->comment points into text, which
 * must outlive sig. Only parsing: the caller checks the key number and
 * both signatures. 0 on success; -1 with a message in err ("malformed
 * signature: ...", "unsupported signature algorithm ...").
 */
int minisign_parse_sig(const char *text, size_t len, minisign_sig *sig, char err[MINISIGN_ERR_LEN]);

/*
 * A key number as minisign shows it: the 8 bytes read as a little-endian
 * 64-bit number, in uppercase hex without leading zeros ("4E2F9C1A0B3D5E77"),
 * as minisign prints it (%" PRIX64 ").
 */
void minisign_key_id(const uint8_t keynum[MINISIGN_KEYNUM_LEN], char id[17]);

#endif
