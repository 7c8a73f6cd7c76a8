/*
 * fuzz_minisign.c: libFuzzer target for minisign's key and signature
 * parser (plugins/minisign/). `make fuzz` builds it with clang and runs it
 * on tests/fuzz/corpus_minisign/ (files the real minisign tool wrote).
 *
 * Each input is parsed both as a public key and as a signature file, from
 * a heap copy of exactly its size (ASan sees any read past the end).
 * Besides "no crash, no sanitizer report", it abort()s when a property
 * fails:
 *   - a failure always says why, in a terminated message that fits;
 *   - a parsed signature's comment lies inside the input and within the
 *     8192-byte limit, and its algorithm is ED or Ed;
 *   - a parsed key re-encoded in base64 parses to the same key, alone and
 *     under an untrusted comment line (the decoder and encoder agree);
 *   - base64 decoding of the raw input never writes past its cap, and
 *     anything it accepts re-encodes to the same text (one text per value).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/minisign/minisign.h"

static void encode(const uint8_t *in, size_t n, char *out)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;

    for (i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < n ? in[i + 2] : 0);
        out[o++] = b64[v >> 18 & 63];
        out[o++] = b64[v >> 12 & 63];
        out[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
        out[o++] = i + 2 < n ? b64[v & 63] : '=';
    }
    out[o] = '\0';
}

static void check_message(const char err[MINISIGN_ERR_LEN])
{
    if (memchr(err, '\0', MINISIGN_ERR_LEN) == NULL || err[0] == '\0')
        abort();
}

static void check_key_round_trip(const minisign_key *k)
{
    uint8_t bin[MINISIGN_KEY_BIN_LEN];
    char text[128], line[160], err[MINISIGN_ERR_LEN];
    minisign_key again;

    memcpy(bin, "Ed", 2);
    memcpy(bin + 2, k->keynum, MINISIGN_KEYNUM_LEN);
    memcpy(bin + 2 + MINISIGN_KEYNUM_LEN, k->pk, MINISIGN_PK_LEN);
    encode(bin, sizeof bin, text);
    if (minisign_parse_key(text, strlen(text), &again, err) != 0 || memcmp(&again, k, sizeof again) != 0)
        abort();
    snprintf(line, sizeof line, "untrusted comment: fuzz\n%s\n", text);
    if (minisign_parse_key(line, strlen(line), &again, err) != 0 || memcmp(&again, k, sizeof again) != 0)
        abort();
}

static void check_base64(const char *in, size_t size)
{
    uint8_t out[64 + 1];
    char back[2 * sizeof out + 8];
    long n;

    out[sizeof out - 1] = 0xA5; /* a guard byte the decoder must not touch */
    n = minisign_base64_decode(in, size, out, sizeof out - 1);
    if (out[sizeof out - 1] != 0xA5)
        abort();
    if (n < 0 || (size_t)n > sizeof out - 1)
        return;
    encode(out, (size_t)n, back);
    if (strlen(back) != size || memcmp(back, in, size) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    char err[MINISIGN_ERR_LEN];
    minisign_key key;
    minisign_sig sig;

    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    if (minisign_parse_key(text, size, &key, err) == 0)
        check_key_round_trip(&key);
    else
        check_message(err);
    if (minisign_parse_sig(text, size, &sig, err) == 0) {
        if (sig.comment < text || sig.comment + sig.comment_len > text + size ||
            sig.comment_len > MINISIGN_COMMENT_MAX || (sig.hashed != 0 && sig.hashed != 1))
            abort();
    } else {
        check_message(err);
    }
    check_base64(text, size);
    free(text);
    return 0;
}
