/*
 * minisign.c: minisign's key and signature files, parsed (see minisign.h).
 * Nothing here trusts a length it has not checked: every line is a span
 * of the caller's text, and base64 is measured before one byte is written.
 */
#include "minisign.h"

#include <stdio.h>
#include <string.h>

#define UNTRUSTED_PREFIX "untrusted comment: "
#define TRUSTED_PREFIX "trusted comment: "

typedef struct {
    const char *p;
    size_t n;
} span;

static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* The unused low bits of the last character before the padding must be
 * zero, or two texts would decode to the same bytes. */
static int canonical_tail(const char *in, size_t len, unsigned pad)
{
    if (pad == 1)
        return (b64_value((unsigned char)in[len - 2]) & 3) == 0;
    if (pad == 2)
        return (b64_value((unsigned char)in[len - 3]) & 15) == 0;
    return 1;
}

long minisign_base64_decode(const char *in, size_t len, uint8_t *out, size_t cap)
{
    unsigned pad = 0;
    size_t i, n, o = 0;

    if (len % 4 != 0)
        return -1;
    if (len == 0)
        return 0;
    if (in[len - 1] == '=')
        pad = in[len - 2] == '=' ? 2 : 1;
    for (i = 0; i < len - pad; i++)
        if (b64_value((unsigned char)in[i]) < 0)
            return -1;
    if (!canonical_tail(in, len, pad))
        return -1;
    n = len / 4 * 3 - pad;
    if (n > cap)
        return (long)n; /* measured, not written: the caller names the length */
    for (i = 0; i < len; i += 4) {
        uint32_t v = 0;
        unsigned k;
        for (k = 0; k < 4; k++) {
            int c = in[i + k] == '=' ? 0 : b64_value((unsigned char)in[i + k]);
            v = v << 6 | (uint32_t)c;
        }
        for (k = 0; k < 3 && o < n; k++)
            out[o++] = (uint8_t)(v >> (16 - 8 * k));
    }
    return (long)n;
}

/*
 * Splits text at LF (a CR before it is dropped) into at most max lines;
 * empty lines at the end do not count. Returns the number of lines, or -1
 * when a non-empty line follows the max-th.
 */
static int split_lines(const char *text, size_t len, span *lines, int max)
{
    size_t i = 0;
    int n = 0;

    while (i < len) {
        const char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl != NULL ? (size_t)(nl - text) : len;
        span s = {text + i, end - i};

        if (s.n > 0 && s.p[s.n - 1] == '\r')
            s.n--;
        if (n < max)
            lines[n++] = s;
        else if (s.n > 0)
            return -1;
        i = end + 1;
    }
    while (n > 0 && lines[n - 1].n == 0)
        n--;
    return n;
}

static int starts_with(span s, const char *prefix)
{
    size_t k = strlen(prefix);

    return s.n >= k && memcmp(s.p, prefix, k) == 0;
}

/* Two bytes of a hostile input, printable: "Ed", "\x00\xff". */
static void show_alg(const uint8_t *b, char out[9])
{
    size_t o = 0;
    int i;

    for (i = 0; i < 2; i++) {
        if (b[i] >= 0x20 && b[i] < 0x7F && b[i] != '"' && b[i] != '\\')
            out[o++] = (char)b[i];
        else
            o += (size_t)snprintf(out + o, 9 - o, "\\x%02x", b[i]);
    }
    out[o] = '\0';
}

/* Decodes line number lineno into exactly want bytes, or says why not. */
static int decode_line(span s, int lineno, uint8_t *out, size_t want, const char *what,
                       char err[MINISIGN_ERR_LEN])
{
    long n = minisign_base64_decode(s.p, s.n, out, want);

    if (n < 0) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed %s: line %d is not base64", what, lineno);
        return -1;
    }
    if ((size_t)n != want) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed %s: line %d decodes to %ld bytes, %zu expected",
                 what, lineno, n, want);
        return -1;
    }
    return 0;
}

/* The checks every file gets before its lines are looked at. */
static int check_text(const char *text, size_t len, size_t max, const char *what,
                      char err[MINISIGN_ERR_LEN])
{
    if (len > max) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed %s: %zu bytes, at most %zu", what, len, max);
        return -1;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed %s: it holds a NUL byte", what);
        return -1;
    }
    return 0;
}

static int check_untrusted(span s, const char *what, char err[MINISIGN_ERR_LEN])
{
    if (!starts_with(s, UNTRUSTED_PREFIX)) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed %s: line 1 does not start with \"" UNTRUSTED_PREFIX "\"",
                 what);
        return -1;
    }
    if (s.n > MINISIGN_UNTRUSTED_MAX) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed %s: line 1 is over %u bytes", what, MINISIGN_UNTRUSTED_MAX);
        return -1;
    }
    return 0;
}

int minisign_parse_key(const char *text, size_t len, minisign_key *key, char err[MINISIGN_ERR_LEN])
{
    static const char what[] = "public key";
    uint8_t bin[MINISIGN_KEY_BIN_LEN];
    span lines[2];
    char alg[9];
    int n, b64_line;

    if (check_text(text, len, MINISIGN_KEY_FILE_MAX, what, err) != 0)
        return -1;
    n = split_lines(text, len, lines, 2);
    if (n < 0) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed public key: text after line 2");
        return -1;
    }
    if (n == 0) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed public key: empty");
        return -1;
    }
    if (n == 2 && check_untrusted(lines[0], what, err) != 0)
        return -1;
    if (n == 1 && starts_with(lines[0], "untrusted comment:")) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed public key: no base64 line after the comment");
        return -1;
    }
    b64_line = n;
    if (decode_line(lines[n - 1], b64_line, bin, sizeof bin, what, err) != 0)
        return -1;
    if (memcmp(bin, "Ed", 2) != 0) {
        show_alg(bin, alg);
        snprintf(err, MINISIGN_ERR_LEN, "malformed public key: algorithm \"%s\", \"Ed\" expected", alg);
        return -1;
    }
    memcpy(key->keynum, bin + 2, MINISIGN_KEYNUM_LEN);
    memcpy(key->pk, bin + 2 + MINISIGN_KEYNUM_LEN, MINISIGN_PK_LEN);
    return 0;
}

/* Line 3: the trusted comment, its prefix removed, within its limit. */
static int parse_trusted(span s, minisign_sig *sig, char err[MINISIGN_ERR_LEN])
{
    size_t k = strlen(TRUSTED_PREFIX);

    if (!starts_with(s, TRUSTED_PREFIX)) {
        snprintf(err, MINISIGN_ERR_LEN,
                 "malformed signature: line 3 does not start with \"" TRUSTED_PREFIX "\"");
        return -1;
    }
    if (s.n - k > MINISIGN_COMMENT_MAX) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed signature: the trusted comment is %zu bytes, at most %u",
                 s.n - k, MINISIGN_COMMENT_MAX);
        return -1;
    }
    sig->comment = s.p + k;
    sig->comment_len = s.n - k;
    return 0;
}

int minisign_parse_sig(const char *text, size_t len, minisign_sig *sig, char err[MINISIGN_ERR_LEN])
{
    static const char what[] = "signature";
    uint8_t bin[MINISIGN_SIG_BIN_LEN];
    span lines[4];
    char alg[9];
    int n;

    if (check_text(text, len, MINISIGN_SIG_FILE_MAX, what, err) != 0)
        return -1;
    n = split_lines(text, len, lines, 4);
    if (n < 0) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed signature: text after line 4");
        return -1;
    }
    if (n < 4) {
        snprintf(err, MINISIGN_ERR_LEN, "malformed signature: %d line%s, 4 expected", n, n == 1 ? "" : "s");
        return -1;
    }
    if (check_untrusted(lines[0], what, err) != 0 ||
        decode_line(lines[1], 2, bin, sizeof bin, what, err) != 0 ||
        parse_trusted(lines[2], sig, err) != 0 ||
        decode_line(lines[3], 4, sig->global_sig, MINISIGN_SIG_LEN, what, err) != 0)
        return -1;
    if (memcmp(bin, "ED", 2) != 0 && memcmp(bin, "Ed", 2) != 0) {
        show_alg(bin, alg);
        snprintf(err, MINISIGN_ERR_LEN, "unsupported signature algorithm \"%s\" (ED or Ed expected)", alg);
        return -1;
    }
    sig->hashed = bin[1] == 'D';
    memcpy(sig->keynum, bin + 2, MINISIGN_KEYNUM_LEN);
    memcpy(sig->sig, bin + 2 + MINISIGN_KEYNUM_LEN, MINISIGN_SIG_LEN);
    return 0;
}

void minisign_key_id(const uint8_t keynum[MINISIGN_KEYNUM_LEN], char id[17])
{
    static const char hex[] = "0123456789ABCDEF";
    int i;

    /* little-endian: the last byte is the most significant, printed first */
    for (i = 0; i < MINISIGN_KEYNUM_LEN; i++) {
        uint8_t b = keynum[MINISIGN_KEYNUM_LEN - 1 - i];
        id[2 * i] = hex[b >> 4];
        id[2 * i + 1] = hex[b & 15];
    }
    id[16] = '\0';
    /* minisign prints it with %" PRIX64 ": no leading zeros */
    for (i = 0; i < 15 && id[i] == '0'; i++)
        ;
    memmove(id, id + i, 17 - (size_t)i);
}
