/*
 * fuzz_ihex.c: libFuzzer target for the Intel HEX core (plugins/ihex/).
 * `make fuzz` builds it with clang and runs it on tests/fuzz/corpus_ihex/.
 *
 * Besides "no crash, no sanitizer report", every input checks properties
 * and abort()s when one fails:
 *   - the same text fed in three pieces parses exactly as it does whole
 *     (same image, or the same error at the same line);
 *   - the image keeps its invariants (sorted, merged, size adds up);
 *   - parse(format(img)) == img, for a record length the input picks;
 *   - so does the formatted text with its records shuffled (or reversed);
 *   - merging an image with itself changes nothing;
 *   - get() and fill_range() agree around every segment's edges.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../plugins/ihex/ihex.h"

typedef struct {
    char *p;
    size_t n, cap;
} membuf;

static int mem_sink(void *ctx, const char *text, size_t len)
{
    membuf *m = ctx;

    if (len == 0)
        return 0;
    if (m->n + len > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 1024;
        char *p;
        while (cap < m->n + len)
            cap *= 2;
        p = realloc(m->p, cap);
        if (p == NULL)
            return -1;
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->n, text, len);
    m->n += len;
    return 0;
}

/*
 * Collects the formatted records so they can be replayed in another
 * order: each data record with the upper address bits then in effect.
 */
typedef struct {
    char (*line)[2 * (5 + IHEX_RECORD_LEN_MAX) + 3];
    uint32_t *upper;
    size_t n, cap;
    uint32_t cur;
    char start[32];
} shuffled;

static int collect_sink(void *ctx, const char *text, size_t len)
{
    shuffled *t = ctx;
    unsigned type = (unsigned)(text[7] - '0') * 10 + (unsigned)(text[8] - '0');

    if (type == 4) {
        char hex[5];
        memcpy(hex, text + 9, 4);
        hex[4] = '\0';
        t->cur = (uint32_t)strtoul(hex, NULL, 16);
    } else if (type == 3 || type == 5) {
        memcpy(t->start, text, len < sizeof t->start ? len : sizeof t->start - 1);
    } else if (type == 0) {
        if (t->n == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 64;
            void *l = realloc(t->line, cap * sizeof *t->line);
            void *u = l ? realloc(t->upper, cap * sizeof *t->upper) : NULL;
            if (l == NULL || u == NULL)
                abort();
            t->line = l;
            t->upper = u;
            t->cap = cap;
        }
        memcpy(t->line[t->n], text, len);
        t->line[t->n][len] = '\0';
        t->upper[t->n++] = t->cur;
    }
    return 0;
}

/*
 * parse(format(img) with its records shuffled) == img: records out of
 * address order take another path through the parser (the sorted runs).
 */
static void check_shuffled(const ihex_image *img, unsigned record_len, uint32_t seed)
{
    shuffled t;
    membuf out = {NULL, 0, 0};
    ihex_image back;
    ihex_error e;
    char up[32];
    size_t i;

    memset(&t, 0, sizeof t);
    if (ihex_format(img, record_len, collect_sink, &t) != IHEX_OK)
        abort();
    for (i = t.n; i > 1; i--) { /* Fisher-Yates, or plain reversal when seed is 0 */
        size_t k = seed ? (seed = seed * 1103515245u + 12345u) % i : 0;
        char tmpl[sizeof *t.line];
        uint32_t tu = t.upper[i - 1];
        memcpy(tmpl, t.line[i - 1], sizeof tmpl);
        memcpy(t.line[i - 1], t.line[k], sizeof tmpl);
        memcpy(t.line[k], tmpl, sizeof tmpl);
        t.upper[i - 1] = t.upper[k];
        t.upper[k] = tu;
    }
    for (i = 0; i < t.n; i++) {
        unsigned sum = 2 + 4 + (t.upper[i] >> 8) + (t.upper[i] & 0xFF);
        snprintf(up, sizeof up, ":02000004%04X%02X\n", (unsigned)t.upper[i], (0x100 - (sum & 0xFF)) & 0xFF);
        if (mem_sink(&out, up, strlen(up)) || mem_sink(&out, t.line[i], strlen(t.line[i])))
            abort();
    }
    if (mem_sink(&out, t.start, strlen(t.start)) || mem_sink(&out, ":00000001FF\n", 12))
        abort();
    ihex_init(&back);
    if (ihex_parse_buffer(&back, out.p, out.n, &e) != 0 || !ihex_equal(img, &back))
        abort();
    ihex_free(&back);
    free(out.p);
    free(t.line);
    free(t.upper);
}

static void check_invariants(const ihex_image *img)
{
    uint64_t total = 0;
    size_t i;

    for (i = 0; i < img->nseg; i++) {
        const ihex_segment *s = &img->seg[i];
        uint64_t end = (uint64_t)s->addr + s->len;
        if (s->len == 0 || s->len > s->cap || end > IHEX_SPACE)
            abort();
        if (i + 1 < img->nseg && end >= img->seg[i + 1].addr)
            abort(); /* overlapping or touching: should have been merged */
        total += s->len;
    }
    if (total != img->size)
        abort();
}

static void check_edges(const ihex_image *img)
{
    uint8_t window[64];
    size_t i, k;

    for (i = 0; i < img->nseg; i++) {
        uint32_t a = img->seg[i].addr;
        uint32_t lo = a >= 2 ? a - 2 : 0;
        uint32_t hi = (uint64_t)lo + sizeof window - 1 > 0xFFFFFFFFu
                          ? 0xFFFFFFFFu : lo + (uint32_t)sizeof window - 1;
        ihex_fill_range(img, lo, hi, 0xA5, window);
        for (k = 0; k <= (size_t)(hi - lo); k++) {
            int b = ihex_get(img, lo + (uint32_t)k);
            if (window[k] != (b < 0 ? 0xA5 : b))
                abort();
        }
    }
}

static int parse_in_pieces(ihex_image *img, const char *text, size_t size, size_t cut1,
                           size_t cut2, ihex_error *e)
{
    ihex_parser p;

    ihex_parser_begin(&p, img);
    if (ihex_parser_feed(&p, text, cut1, e) != 0 ||
        ihex_parser_feed(&p, text + cut1, cut2 - cut1, e) != 0 ||
        ihex_parser_feed(&p, text + cut2, size - cut2, e) != 0 ||
        ihex_parser_end(&p, e) != 0) {
        ihex_free(img);
        return -1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    ihex_image whole, pieces, again, merged;
    ihex_error e1, e2;
    membuf out = {NULL, 0, 0};
    char msg[512];
    size_t cut1 = size > 0 ? data[0] % (size + 1) : 0;
    size_t cut2 = cut1 + (size - cut1) / 2;
    unsigned record_len = size > 0 ? 1u + data[size - 1] % IHEX_RECORD_LEN_MAX : 16u;
    int r1, r2;

    ihex_init(&whole);
    ihex_init(&pieces);
    ihex_init(&again);
    ihex_init(&merged);
    r1 = ihex_parse_buffer(&whole, text, size, &e1);
    r2 = parse_in_pieces(&pieces, text, size, cut1, cut2, &e2);
    if (r1 != r2)
        abort();
    if (r1 != 0) {
        if (e1.line != e2.line || strcmp(e1.cause, e2.cause) != 0 || e1.cause[0] == '\0')
            abort();
        if (whole.nseg != 0 || pieces.nseg != 0) /* failure leaves images empty */
            abort();
        if (ihex_error_format("fuzz", &e1, msg, sizeof msg) <= 0)
            abort();
        return 0;
    }
    if (!ihex_equal(&whole, &pieces))
        abort();
    ihex_free(&pieces);
    check_invariants(&whole);
    check_edges(&whole);

    if (ihex_format(&whole, record_len, mem_sink, &out) != IHEX_OK)
        abort();
    if (ihex_parse_buffer(&again, out.p, out.n, &e1) != 0) {
        ihex_error_format("round trip", &e1, msg, sizeof msg);
        fprintf(stderr, "%s\n", msg);
        abort();
    }
    if (!ihex_equal(&whole, &again))
        abort();
    free(out.p);
    ihex_free(&again);

    check_shuffled(&whole, record_len, size > 1 ? (uint32_t)data[1] * 2654435761u : 0);

    if (ihex_merge(&merged, &whole, &whole, &e1) != 0 || !ihex_equal(&whole, &merged))
        abort();
    check_invariants(&merged);
    ihex_free(&merged);
    ihex_free(&whole);
    return 0;
}
