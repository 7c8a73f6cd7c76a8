/* Unit tests of the Intel HEX core, plugins/ihex/ihex.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../plugins/ihex/ihex.h"
#include "unit.h"

static char tmp[] = "/tmp/fotahost-unit-ihex-XXXXXX";

/* Appends one record (with its checksum, computed here) and "\n" to text. */
static void add(char *text, size_t size, unsigned type, unsigned addr,
                const uint8_t *data, unsigned n)
{
    size_t at = strlen(text);
    unsigned sum = n + (addr >> 8 & 0xFF) + (addr & 0xFF) + type, i;

    at += (size_t)snprintf(text + at, size - at, ":%02X%04X%02X", n, addr & 0xFFFF, type);
    for (i = 0; i < n; i++) {
        at += (size_t)snprintf(text + at, size - at, "%02X", data[i]);
        sum += data[i];
    }
    snprintf(text + at, size - at, "%02X\n", (0x100 - (sum & 0xFF)) & 0xFF);
}

static const char eof_line[] = ":00000001FF\n";

/* Parses len bytes of text as "t"; returns the full error message, or "ok". */
static const char *parse_msg_n(const char *text, size_t len)
{
    static char msg[400];
    ihex_image img;
    ihex_error e;

    ihex_init(&img);
    if (ihex_parse_buffer(&img, text, len, &e) == 0) {
        ihex_free(&img);
        return "ok";
    }
    CHECK(img.nseg == 0 && img.seg == NULL); /* a failure leaves nothing behind */
    ihex_error_format("t", &e, msg, sizeof msg);
    return msg;
}

static const char *parse_msg(const char *text)
{
    return parse_msg_n(text, strlen(text));
}

static int text_sink(void *ctx, const char *text, size_t len)
{
    char *out = ctx;
    size_t at = strlen(out);

    if (at + len >= 8192)
        return -1;
    memcpy(out + at, text, len);
    out[at + len] = '\0';
    return 0;
}

static void test_record_types(void)
{
    static const uint8_t d16[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    static const char crlf[] = ":0400100001020304e2  \r\n\r\n \t\n:00000001FF\r\n\n";
    char text[2048] = "";
    ihex_image img;
    ihex_error e;
    uint32_t lo, hi, start;

    /* 00 and 01, CRLF, trailing blanks, blank lines, lower-case digits */
    ihex_init(&img);
    CHECK(ihex_parse_buffer(&img, crlf, sizeof crlf - 1, &e) == 0);
    CHECK(img.nseg == 1 && img.size == 4 && ihex_get(&img, 0x10) == 1 && ihex_get(&img, 0x13) == 4);
    CHECK(ihex_get(&img, 0x14) == -1 && ihex_get(&img, 0x0F) == -1);
    CHECK(!ihex_start(&img, &start));
    ihex_free(&img);

    /* 02: segment base 0x10000; a record at offset 0xFFF8 wraps within it */
    add(text, sizeof text, 2, 0, (const uint8_t *)"\x10\x00", 2);
    add(text, sizeof text, 0, 0xFFF8, d16, 16);
    strcat(text, eof_line);
    CHECK(ihex_parse_buffer(&img, text, strlen(text), &e) == 0);
    CHECK(img.nseg == 2 && img.size == 16);
    CHECK(ihex_get(&img, 0x1FFF8) == 0 && ihex_get(&img, 0x1FFFF) == 7);
    CHECK(ihex_get(&img, 0x10000) == 8 && ihex_get(&img, 0x10007) == 15);
    CHECK(ihex_get(&img, 0x20000) == -1);
    ihex_free(&img);

    /* 04: upper 16 bits; a record may run on across the 64 KiB line */
    text[0] = '\0';
    add(text, sizeof text, 4, 0, (const uint8_t *)"\x00\x01", 2);
    add(text, sizeof text, 0, 0xFFF8, d16, 16);
    add(text, sizeof text, 4, 0, (const uint8_t *)"\x80\x00", 2);
    add(text, sizeof text, 0, 0x0000, d16, 1);
    strcat(text, eof_line);
    CHECK(ihex_parse_buffer(&img, text, strlen(text), &e) == 0);
    CHECK(img.nseg == 2 && img.size == 17);
    CHECK(ihex_range(&img, &lo, &hi) && lo == 0x1FFF8 && hi == 0x80000000u);
    CHECK(ihex_get(&img, 0x20007) == 15);
    ihex_free(&img);

    /* 03: CS:IP, start = CS * 16 + IP; written back as type 03 */
    text[0] = '\0';
    add(text, sizeof text, 0, 0x7000, d16, 2);
    add(text, sizeof text, 3, 0, (const uint8_t *)"\x01\x00\x00\x10", 4);
    strcat(text, eof_line);
    CHECK(ihex_parse_buffer(&img, text, strlen(text), &e) == 0);
    CHECK(ihex_start(&img, &start) && start == 0x1010);
    CHECK(img.start_type == IHEX_START_SEGMENT && img.start_raw == 0x01000010u);
    ihex_free(&img);

    /* 05: a 32-bit linear start address; the same one twice is fine */
    text[0] = '\0';
    add(text, sizeof text, 5, 0, (const uint8_t *)"\x00\x01\x23\x45", 4);
    add(text, sizeof text, 5, 0, (const uint8_t *)"\x00\x01\x23\x45", 4);
    strcat(text, eof_line);
    CHECK(ihex_parse_buffer(&img, text, strlen(text), &e) == 0);
    CHECK(ihex_start(&img, &start) && start == 0x12345 && img.nseg == 0);
    ihex_free(&img);

    /* duplicate addresses with equal data; a record of 0 data bytes */
    text[0] = '\0';
    add(text, sizeof text, 0, 0x100, d16, 4);
    add(text, sizeof text, 0, 0x102, d16 + 2, 2);
    add(text, sizeof text, 0, 0x100, d16, 0);
    strcat(text, eof_line);
    CHECK(ihex_parse_buffer(&img, text, strlen(text), &e) == 0);
    CHECK(img.nseg == 1 && img.size == 4);
    ihex_free(&img);

    /* leading blanks before ':' are tolerated; the last line needs no "\n" */
    CHECK_STR(parse_msg("  :00000001FF"), "ok");
}

static void test_errors(void)
{
    char text[1024];

    CHECK_STR(parse_msg("S00F000068656C6C6F\n"), "t:1: missing ':' at line start (found 'S')");
    CHECK_STR(parse_msg("\n:00000001FF\n\x01"), "t:3: data after the end-of-file record");
    CHECK_STR(parse_msg_n(":00000001FF\n\0", 13), "t:2: data after the end-of-file record");
    CHECK_STR(parse_msg("\x7f:00000001FF\n"), "t:1: missing ':' at line start (found '\\x7F')");
    CHECK_STR(parse_msg(":0400100001G20304E2\n"), "t:1: non-hex character 'G' at column 12");
    CHECK_STR(parse_msg(":04001000010203\x01\n"), "t:1: non-hex character '\\x01' at column 16");
    CHECK_STR(parse_msg(":\n"), "t:1: line too short: 0 hex digits, a record has at least 10");
    CHECK_STR(parse_msg(":00000001F\n"), "t:1: line too short: 9 hex digits, a record has at least 10");
    CHECK_STR(parse_msg(":0400100001020304E\n"),
              "t:1: odd number of hex digits (17)");
    CHECK_STR(parse_msg(":1000000001020304E2\n"),
              "t:1: record length 0x10 (16 data bytes) does not match the line (4 data bytes)");
    CHECK_STR(parse_msg(":0000000102030405FF\n"),
              "t:1: record length 0x00 (0 data bytes) does not match the line (4 data bytes)");
    CHECK_STR(parse_msg(":0400100001020304E3\n:00000001FF\n"),
              "t:1: bad checksum: expected 0xE2, got 0xE3");
    CHECK_STR(parse_msg(":00000001FE\n"), "t:1: bad checksum: expected 0xFF, got 0xFE");
    CHECK_STR(parse_msg(":00000006FA\n"), "t:1: unknown record type 0x06");
    CHECK_STR(parse_msg(":0100000100FE\n"),
              "t:1: end-of-file record (type 01) must have 0 data bytes, not 1");
    CHECK_STR(parse_msg(":0100000200FD\n"),
              "t:1: extended segment address record (type 02) must have 2 data bytes, not 1");
    CHECK_STR(parse_msg(":020000030000FB\n"),
              "t:1: start segment address record (type 03) must have 4 data bytes, not 2");
    CHECK_STR(parse_msg(":03000004000000F9\n"),
              "t:1: extended linear address record (type 04) must have 2 data bytes, not 3");
    CHECK_STR(parse_msg(":00000005FB\n"),
              "t:1: start linear address record (type 05) must have 4 data bytes, not 0");
    CHECK_STR(parse_msg(":0400100001020304E2\n\n"), "t:1: missing end-of-file record");
    CHECK_STR(parse_msg(""), "t: no records (missing end-of-file record)");
    CHECK_STR(parse_msg("\r\n  \n"), "t: no records (missing end-of-file record)");
    CHECK_STR(parse_msg(":0400 100001020304E2\n"), "t:1: space inside the record at column 6");
    CHECK_STR(parse_msg(":0400100001020304E2 ; boot\n"),
              "t:1: unexpected character ';' at column 21 after the record");

    text[0] = '\0';
    add(text, sizeof text, 4, 0, (const uint8_t *)"\xFF\xFF", 2);
    add(text, sizeof text, 0, 0xFFFC, (const uint8_t *)"\1\2\3\4\5\6\7\x08", 8);
    strcat(text, eof_line);
    CHECK_STR(parse_msg(text), "t:2: address overflow: 8 bytes at 0xFFFFFFFC go past 0xFFFFFFFF");
    text[0] = '\0';
    add(text, sizeof text, 4, 0, (const uint8_t *)"\xFF\xFF", 2);
    add(text, sizeof text, 0, 0xFFFC, (const uint8_t *)"\1\2\3\4", 4); /* to the very last byte */
    strcat(text, eof_line);
    CHECK_STR(parse_msg(text), "ok");

    text[0] = '\0';
    add(text, sizeof text, 0, 0x7000, (const uint8_t *)"\x0C\x94\x00", 3);
    add(text, sizeof text, 0, 0x7001, (const uint8_t *)"\x94\x01", 2);
    strcat(text, eof_line);
    CHECK_STR(parse_msg(text),
              "t:2: address 0x7002 given twice with different data (0x00 earlier, 0x01 here)");

    text[0] = '\0';
    add(text, sizeof text, 3, 0, (const uint8_t *)"\x00\x00\x70\x00", 4);
    add(text, sizeof text, 5, 0, (const uint8_t *)"\x00\x00\x80\x00", 4);
    strcat(text, eof_line);
    CHECK_STR(parse_msg(text), "t:2: a second start address (0x7000 earlier, 0x8000 here)");
}

static void test_put(void)
{
    static uint8_t buf[256];
    ihex_image img;
    ihex_conflict c;
    uint32_t a;
    size_t i;

    for (i = 0; i < sizeof buf; i++)
        buf[i] = (uint8_t)i;
    ihex_init(&img);

    /* 100000 consecutive 16-byte records: one segment, grown by doubling */
    for (a = 0; a < 1600000; a += 16)
        if (ihex_put(&img, 0x10000 + a, buf + (a & 0xF0), 16, NULL) != IHEX_OK)
            break;
    CHECK(a == 1600000 && img.nseg == 1 && img.size == 1600000);
    CHECK(img.seg[0].cap >= img.seg[0].len && img.seg[0].cap <= 2 * img.seg[0].len);
    CHECK(ihex_get(&img, 0x10000 + 1599999) == 0xFF);
    ihex_free(&img);
    ihex_free(&img); /* idempotent */

    CHECK(ihex_put(&img, 100, buf, 10, NULL) == IHEX_OK);   /* [100, 110) */
    CHECK(ihex_put(&img, 120, buf, 10, NULL) == IHEX_OK);   /* [120, 130) */
    CHECK(ihex_put(&img, 20, buf, 10, NULL) == IHEX_OK);    /* before both */
    CHECK(ihex_put(&img, 200, buf, 0, NULL) == IHEX_OK);    /* nothing */
    CHECK(img.nseg == 3 && img.seg[0].addr == 20 && img.seg[1].addr == 100 && img.seg[2].addr == 120);
    /* adjacent on the left: front extension of [100, 110) */
    CHECK(ihex_put(&img, 95, buf, 5, NULL) == IHEX_OK);
    CHECK(img.nseg == 3 && img.seg[1].addr == 95 && img.seg[1].len == 15);
    /* different bytes where they overlap: refused, image unchanged */
    CHECK(ihex_put(&img, 105, buf, 10, &c) == IHEX_ECONFLICT);
    CHECK(c.addr == 105 && c.had == 5 && c.got == 0);
    CHECK(img.nseg == 3 && img.size == 35);
    /* bridging [95,110) and [120,130) with bytes equal to both */
    {
        uint8_t bridge[30];
        for (i = 0; i < 10; i++) {
            bridge[i] = buf[i];      /* [100, 110) as it is */
            bridge[10 + i] = 0xEE;   /* the gap [110, 120) */
            bridge[20 + i] = buf[i]; /* [120, 130) as it is */
        }
        CHECK(ihex_put(&img, 100, bridge, 30, NULL) == IHEX_OK);
    }
    CHECK(img.nseg == 2 && img.seg[1].addr == 95 && img.seg[1].len == 35 && img.size == 45);
    CHECK(ihex_get(&img, 115) == 0xEE && ihex_get(&img, 125) == 5);
    /* contained and equal: nothing changes */
    CHECK(ihex_put(&img, 21, buf + 1, 5, NULL) == IHEX_OK && img.nseg == 2 && img.size == 45);
    /* over one segment and beyond both ends */
    CHECK(ihex_put(&img, 18, (const uint8_t *)"\xAA\xAA\0\1\2\3\4\5\6\7\x08\x09\xBB", 13, NULL) == IHEX_OK);
    CHECK(img.nseg == 2 && img.seg[0].addr == 18 && img.seg[0].len == 13 && img.size == 48);
    /* the last byte of the address space, and past it */
    CHECK(ihex_put(&img, 0xFFFFFFFFu, buf, 1, NULL) == IHEX_OK);
    CHECK(ihex_put(&img, 0xFFFFFFFFu, buf, 2, NULL) == IHEX_ERANGE);
    CHECK(ihex_get(&img, 0xFFFFFFFFu) == 0);
    ihex_free(&img);
}

static void test_merge_fill(void)
{
    ihex_image a, b, m;
    ihex_error e;
    uint8_t out[40];
    uint32_t lo, hi, start;

    ihex_init(&a);
    ihex_init(&b);
    ihex_init(&m);
    CHECK(!ihex_range(&a, &lo, &hi));
    ihex_put(&a, 0x7000, (const uint8_t *)"\x0C\x94\x00\x38", 4, NULL);
    a.start_type = IHEX_START_SEGMENT;
    a.start_raw = 0x7000;
    ihex_put(&b, 0x0000, (const uint8_t *)"\x0C\x94\x5C\x00", 4, NULL);

    /* disjoint */
    CHECK(ihex_merge(&m, &a, &b, &e) == 0);
    CHECK(m.nseg == 2 && m.size == 8 && ihex_range(&m, &lo, &hi) && lo == 0 && hi == 0x7003);
    CHECK(ihex_start(&m, &start) && start == 0x7000);
    ihex_free(&m);
    /* equal overlap */
    ihex_put(&b, 0x7002, (const uint8_t *)"\x00\x38\xFF", 3, NULL);
    CHECK(ihex_merge(&m, &a, &b, &e) == 0);
    CHECK(m.nseg == 2 && m.size == 9 && ihex_get(&m, 0x7004) == 0xFF);
    ihex_free(&m);
    /* different overlap: the first differing address, both bytes */
    ihex_put(&b, 0x6FFE, (const uint8_t *)"\x01\x02\x0C\x95", 4, NULL);
    CHECK(ihex_merge(&m, &a, &b, &e) == -1);
    CHECK_STR(e.cause, "overlap at 0x7001: 0x94 in the first image, 0x95 in the second");
    CHECK(m.nseg == 0);
    /* start addresses that disagree */
    ihex_free(&b);
    b.start_type = IHEX_START_LINEAR;
    b.start_raw = 0x8000;
    CHECK(ihex_merge(&m, &a, &b, &e) == -1);
    CHECK_STR(e.cause, "start address 0x7000 in the first image, 0x8000 in the second");
    b.start_raw = 0x7000; /* the same address given another way is fine */
    CHECK(ihex_merge(&m, &a, &b, &e) == 0 && ihex_equal(&m, &a));
    ihex_free(&m);
    CHECK(ihex_merge(&m, &b, &a, &e) == 0 && m.start_type == IHEX_START_LINEAR);
    ihex_free(&m);

    /* a deep copy */
    CHECK(ihex_copy(&m, &a) == IHEX_OK && ihex_equal(&m, &a) && m.seg[0].data != a.seg[0].data);
    ihex_free(&m);

    /* fill: the bytes of [lo, hi] with 0xFF (or any byte) where none */
    ihex_fill_range(&a, 0x6FFE, 0x7005, 0xFF, out);
    CHECK(memcmp(out, "\xFF\xFF\x0C\x94\x00\x38\xFF\xFF", 8) == 0);
    ihex_fill_range(&a, 0x7001, 0x7001, 0xFF, out);
    CHECK(out[0] == 0x94);
    ihex_fill_range(&a, 0, 3, 0x00, out);
    CHECK(memcmp(out, "\0\0\0\0", 4) == 0);
    ihex_put(&a, 0xFFFFFFFEu, (const uint8_t *)"\x11\x22", 2, NULL);
    ihex_fill_range(&a, 0xFFFFFFFCu, 0xFFFFFFFFu, 0xFF, out);
    CHECK(memcmp(out, "\xFF\xFF\x11\x22", 4) == 0);
    ihex_free(&a);
    ihex_free(&b);
}

static void test_format(void)
{
    static char out[8192];
    uint8_t data[40];
    ihex_image img, back;
    ihex_error e;
    size_t i;

    for (i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(0xA0 + i);
    ihex_init(&img);
    ihex_init(&back);
    out[0] = '\0';
    CHECK(ihex_format(&img, 16, text_sink, out) == IHEX_OK);
    CHECK_STR(out, ":00000001FF\n");

    ihex_put(&img, 0x0010, data, 3, NULL);
    ihex_put(&img, 0xFFFE, data, 4, NULL);          /* crosses 64 KiB: split, then 04 */
    ihex_put(&img, 0x20000, data, 20, NULL);
    img.start_type = IHEX_START_LINEAR;
    img.start_raw = 0x20000;
    out[0] = '\0';
    CHECK(ihex_format(&img, 16, text_sink, out) == IHEX_OK);
    CHECK_STR(out,
              ":03001000A0A1A20A\n"
              ":02FFFE00A0A1C0\n"
              ":020000040001F9\n"
              ":02000000A2A3B9\n"
              ":020000040002F8\n"
              ":10000000A0A1A2A3A4A5A6A7A8A9AAABACADAEAF78\n"
              ":04001000B0B1B2B326\n"
              ":0400000500020000F5\n"
              ":00000001FF\n");
    CHECK(ihex_parse_buffer(&back, out, strlen(out), &e) == 0 && ihex_equal(&img, &back));
    ihex_free(&back);
    for (i = 1; i <= IHEX_RECORD_LEN_MAX; i += 37) {
        out[0] = '\0';
        CHECK(ihex_format(&img, (unsigned)i, text_sink, out) == IHEX_OK);
        CHECK(ihex_parse_buffer(&back, out, strlen(out), &e) == 0 && ihex_equal(&img, &back));
        ihex_free(&back);
    }
    CHECK(ihex_format(&img, 0, text_sink, out) == IHEX_ERANGE);
    CHECK(ihex_format(&img, 256, text_sink, out) == IHEX_ERANGE);
    img.start_type = IHEX_START_SEGMENT;
    img.start_raw = 0x00007000;
    out[0] = '\0';
    ihex_format(&img, 255, text_sink, out);
    {
        static const char tail[] = ":040000030000700089\n:00000001FF\n";
        CHECK(strlen(out) > strlen(tail) && strcmp(out + strlen(out) - strlen(tail), tail) == 0);
    }
    ihex_free(&img);
}

/* Record after record into a growing text, without strlen's O(n). */
typedef struct {
    char *p;
    size_t n, cap;
} text_buf;

static void tb_add(text_buf *t, unsigned type, unsigned addr, const uint8_t *data, unsigned n)
{
    if (t->cap - t->n < 600) {
        t->cap = t->cap ? t->cap * 2 : 1 << 16;
        t->p = realloc(t->p, t->cap);
        if (t->p == NULL)
            abort();
    }
    t->p[t->n] = '\0';
    add(t->p + t->n, t->cap - t->n, type, addr, data, n);
    t->n += strlen(t->p + t->n);
}

/* Addresses out of order: same image, each conflict at its record, and
 * no O(n^2) (the files below would take minutes with it). */
static void test_out_of_order(void)
{
    static const int strides[] = {16, 48};
    text_buf fwd = {NULL, 0, 0}, back = {NULL, 0, 0};
    ihex_image a, b;
    ihex_error e;
    char text[1024];
    uint8_t data[16];
    size_t k, i, n = 60000;

    ihex_init(&a);
    ihex_init(&b);
    for (k = 0; k < 2; k++) {
        fwd.n = back.n = 0;
        for (i = 0; i < n; i++) {
            uint32_t fa = (uint32_t)(i * (size_t)strides[k]);
            uint32_t ba = (uint32_t)((n - 1 - i) * (size_t)strides[k]);
            uint8_t up[2];
            memset(data, (int)(fa / 16 & 0xFF), sizeof data);
            up[0] = (uint8_t)(fa >> 24);
            up[1] = (uint8_t)(fa >> 16);
            tb_add(&fwd, 4, 0, up, 2);
            tb_add(&fwd, 0, fa & 0xFFFF, data, 16);
            memset(data, (int)(ba / 16 & 0xFF), sizeof data);
            up[0] = (uint8_t)(ba >> 24);
            up[1] = (uint8_t)(ba >> 16);
            tb_add(&back, 4, 0, up, 2);
            tb_add(&back, 0, ba & 0xFFFF, data, 16);
        }
        tb_add(&fwd, 1, 0, NULL, 0);
        tb_add(&back, 1, 0, NULL, 0);
        CHECK(ihex_parse_buffer(&a, fwd.p, fwd.n, &e) == 0);
        CHECK(ihex_parse_buffer(&b, back.p, back.n, &e) == 0);
        CHECK(a.nseg == (k == 0 ? 1 : n) && a.size == 16 * n);
        CHECK(ihex_equal(&a, &b));
        ihex_free(&a);
        ihex_free(&b);
    }
    free(fwd.p);
    free(back.p);

    /* an application after its bootloader: two segments */
    text[0] = '\0';
    add(text, sizeof text, 0, 0x7000, (const uint8_t *)"\x0C\x94", 2);
    add(text, sizeof text, 0, 0x0000, (const uint8_t *)"\x0C\x94\x5C", 3);
    add(text, sizeof text, 0, 0x0003, (const uint8_t *)"\x00", 1);
    strcat(text, eof_line);
    CHECK(ihex_parse_buffer(&a, text, strlen(text), &e) == 0);
    CHECK(a.nseg == 2 && a.seg[0].addr == 0 && a.seg[0].len == 4 && a.seg[1].addr == 0x7000);
    ihex_free(&a);

    /* a record waiting out of order, then one in order over it */
    text[0] = '\0';
    add(text, sizeof text, 0, 0x0100, (const uint8_t *)"AB", 2);
    add(text, sizeof text, 0, 0x00FF, (const uint8_t *)"zABqr", 5);
    add(text, sizeof text, 0, 0x0102, (const uint8_t *)"qrs", 3);
    strcat(text, eof_line);
    CHECK(ihex_parse_buffer(&a, text, strlen(text), &e) == 0);
    CHECK(a.nseg == 1 && a.seg[0].addr == 0xFF && a.seg[0].len == 6 &&
          memcmp(a.seg[0].data, "zABqrs", 6) == 0);
    ihex_free(&a);
    text[0] = '\0';
    add(text, sizeof text, 0, 0x0100, (const uint8_t *)"AB", 2);
    add(text, sizeof text, 0, 0x00FF, (const uint8_t *)"zABqr", 5);
    add(text, sizeof text, 0, 0x0102, (const uint8_t *)"qX", 2);
    strcat(text, eof_line);
    CHECK_STR(parse_msg(text),
              "t:3: address 0x0103 given twice with different data (0x72 earlier, 0x58 here)");
    /* out of order over the image, and over a waiting record */
    text[0] = '\0';
    add(text, sizeof text, 0, 0x0100, (const uint8_t *)"AB", 2);
    add(text, sizeof text, 0, 0x00FE, (const uint8_t *)"xyAC", 4);
    strcat(text, eof_line);
    CHECK_STR(parse_msg(text),
              "t:2: address 0x0101 given twice with different data (0x42 earlier, 0x43 here)");
    text[0] = '\0';
    add(text, sizeof text, 0, 0x0100, (const uint8_t *)"AB", 2);
    add(text, sizeof text, 0, 0x0010, (const uint8_t *)"xy", 2);
    add(text, sizeof text, 0, 0x0020, (const uint8_t *)"pq", 2);
    add(text, sizeof text, 0, 0x0011, (const uint8_t *)"yz", 2);
    add(text, sizeof text, 0, 0x000F, (const uint8_t *)"wxq", 3);
    strcat(text, eof_line);
    CHECK_STR(parse_msg(text),
              "t:5: address 0x0011 given twice with different data (0x79 earlier, 0x71 here)");
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;

    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void test_files(void)
{
    static char big[200000];
    char path[256], path2[256], msg[512];
    uint8_t data[16];
    ihex_image img, back;
    ihex_parser p;
    ihex_error e;
    struct stat st;
    size_t i, len;
    FILE *f;
    int fd;

    /* a file of many chunks: records straddle the 4 KiB reads */
    big[0] = '\0';
    for (i = 0; i < 4000; i++) {
        memset(data, (int)(i & 0xFF), sizeof data);
        if (i == 2000)
            add(big, sizeof big, 4, 0, (const uint8_t *)"\x00\x01", 2);
        add(big, sizeof big, 0, (unsigned)(i * 16) & 0xFFFF, data, 16);
    }
    strcat(big, eof_line);
    len = strlen(big);
    snprintf(path, sizeof path, "%s/big.hex", tmp);
    f = fopen(path, "w");
    CHECK(f != NULL && fwrite(big, 1, len, f) == len);
    if (f != NULL)
        fclose(f);
    ihex_init(&img);
    ihex_init(&back);
    CHECK(ihex_parse_file(&img, path, 16u << 20, &e) == 0);
    CHECK(img.nseg == 2 && img.size == 64000);
    CHECK(ihex_get(&img, 1999 * 16) == 1999 % 256 && ihex_get(&img, 0x10000 + 2000 * 16) == 2000 % 256);
    /* byte by byte through the streaming parser: the same image */
    ihex_parser_begin(&p, &back);
    for (i = 0; i < len; i++)
        if (ihex_parser_feed(&p, big + i, 1, &e) != 0)
            break;
    CHECK(i == len && ihex_parser_end(&p, &e) == 0 && ihex_equal(&img, &back));
    ihex_free(&back);

    /* an error deep in a file names its line */
    big[len - 20] = 'x';
    f = fopen(path, "w");
    if (f != NULL) {
        fwrite(big, 1, len, f);
        fclose(f);
    }
    CHECK(ihex_parse_file(&back, path, 16u << 20, &e) == -1 && e.line == 4001);
    CHECK_STR(e.cause, "non-hex character 'x' at column 37");

    /* write: atomic, readable back, mode of a new file from the umask */
    snprintf(path2, sizeof path2, "%s/out.hex", tmp);
    CHECK(ihex_write_file(&img, path2, 16, &e) == 0);
    CHECK(ihex_parse_file(&back, path2, 16u << 20, &e) == 0 && ihex_equal(&img, &back));
    ihex_free(&back);
    CHECK(stat(path2, &st) == 0 && (st.st_mode & 0777) == (0666 & ~(mode_t)022) );
    chmod(path2, 0640);
    CHECK(ihex_write_file(&img, path2, 32, &e) == 0);
    CHECK(stat(path2, &st) == 0 && (st.st_mode & 0777) == 0640);
    CHECK(count_entries(tmp) == 2);
    /* into a missing directory: an error naming nothing left behind */
    snprintf(path2, sizeof path2, "%s/no/such/dir/out.hex", tmp);
    CHECK(ihex_write_file(&img, path2, 16, &e) == -1 && e.err == ENOENT);
    ihex_error_format(path2, &e, msg, sizeof msg);
    CHECK(strstr(msg, "/no/such/dir/out.hex: ") != NULL && strstr(msg, strerror(ENOENT)) != NULL);
    CHECK(count_entries(tmp) == 2);
    CHECK(ihex_write_file(&img, tmp, 0, &e) == -1);
    CHECK_STR(e.cause, "record length 0 out of range (1..255)");
    ihex_free(&img);

    /* 300 MB, sparse: refused from its size, before a byte is read */
    snprintf(path, sizeof path, "%s/huge.hex", tmp);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 300000000) == 0);
    if (fd >= 0)
        close(fd);
    CHECK(ihex_parse_file(&img, path, 16u << 20, &e) == -1);
    ihex_error_format(path, &e, msg, sizeof msg);
    CHECK(strstr(msg, "/huge.hex: file too large (300000000 bytes, limit 16777216 bytes)") != NULL);
    CHECK(e.line == 0 && e.err == 0);
    /* with a higher limit it is read, and fails at its first byte */
    CHECK(ihex_parse_file(&img, path, 400000000, &e) == -1 && e.line == 1);
    CHECK_STR(e.cause, "missing ':' at line start (found '\\x00')");

    /* the system's errors, with errno */
    snprintf(path, sizeof path, "%s/missing.hex", tmp);
    CHECK(ihex_parse_file(&img, path, 100, &e) == -1 && e.err == ENOENT && e.line == 0);
    CHECK_STR(e.cause, strerror(ENOENT));
    CHECK(ihex_parse_file(&img, tmp, 100, &e) == -1 && e.err == EISDIR);
    CHECK(ihex_parse_file(&img, "/dev/null", 100, &e) == -1);
    CHECK_STR(e.cause, "not a regular file");
    CHECK(img.nseg == 0);
}

int main(void)
{
    char cmd[600];
    int status;

    if (mkdtemp(tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    umask(022);
    test_record_types();
    test_errors();
    test_put();
    test_merge_fill();
    test_format();
    test_out_of_order();
    test_files();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    status = system(cmd);
    (void)status;
    return UNIT_END();
}
