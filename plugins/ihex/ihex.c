/*
 * ihex.c: the Intel HEX parser, the sparse image and the writer behind
 * `fotahost.ihex` (see ihex.h). Plain C11 and POSIX: no Lua.
 *
 * Record: ':' count(1) address(2) type(1) data(count) checksum(1), in hex;
 * the checksum makes the sum of all bytes 0 modulo 256.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ihex.h"

/* Reading: big enough to be cheap, small enough for the board's stack. */
#define IHEX_CHUNK 4096

enum { ST_LINE_START, ST_RECORD, ST_TRAILING };

static void set_error(ihex_error *e, uint64_t line, int err, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_error(ihex_error *e, uint64_t line, int err, const char *fmt, ...)
{
    va_list ap;

    if (e == NULL)
        return;
    e->line = line;
    e->err = err;
    va_start(ap, fmt);
    vsnprintf(e->cause, sizeof e->cause, fmt, ap);
    va_end(ap);
}

static void set_errno(ihex_error *e, uint64_t line, int err)
{
    set_error(e, line, err, "%s", strerror(err));
}

/* ---- the image ---------------------------------------------------- */

static uint64_t seg_end(const ihex_segment *s)
{
    return (uint64_t)s->addr + s->len;
}

void ihex_init(ihex_image *img)
{
    memset(img, 0, sizeof *img);
}

void ihex_free(ihex_image *img)
{
    size_t i;

    for (i = 0; i < img->nseg; i++)
        free(img->seg[i].data);
    free(img->seg);
    ihex_init(img);
}

/*
 * A capacity of at least `need` bytes for one segment, doubling so that
 * appending record after record costs amortised O(1). A segment never
 * exceeds the 4 GiB address space, so neither does its capacity.
 */
static int grow_to(uint64_t need, size_t have, size_t *cap)
{
    uint64_t c = have > 0 ? have : 64;

    if (need > SIZE_MAX)
        return IHEX_ENOMEM;
    while (c < need)
        c *= 2; /* c <= 2^33: no overflow in 64 bits */
    if (c > IHEX_SPACE)
        c = IHEX_SPACE;
    if (c > SIZE_MAX)
        c = need;
    *cap = (size_t)c;
    return IHEX_OK;
}

static int reserve_data(ihex_segment *s, uint64_t need)
{
    size_t cap;
    uint8_t *p;

    if (need <= s->cap)
        return IHEX_OK;
    if (grow_to(need, s->cap, &cap) != IHEX_OK)
        return IHEX_ENOMEM;
    p = realloc(s->data, cap);
    if (p == NULL)
        return IHEX_ENOMEM;
    s->data = p;
    s->cap = cap;
    return IHEX_OK;
}

static int reserve_segments(ihex_image *img, size_t need)
{
    size_t cap;
    ihex_segment *p;

    if (need <= img->cap)
        return IHEX_OK;
    cap = img->cap > 0 ? img->cap : 4;
    while (cap < need) {
        if (cap > SIZE_MAX / 2 / sizeof *p)
            return IHEX_ENOMEM;
        cap *= 2;
    }
    p = realloc(img->seg, cap * sizeof *p);
    if (p == NULL)
        return IHEX_ENOMEM;
    img->seg = p;
    img->cap = cap;
    return IHEX_OK;
}

/* Index of the first segment that ends at or after addr (touches or holds it). */
static size_t first_reaching(const ihex_image *img, uint64_t addr)
{
    size_t lo = 0, hi = img->nseg;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (seg_end(&img->seg[mid]) < addr)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Index of the segment holding addr, or nseg. */
static size_t find_holding(const ihex_image *img, uint32_t addr)
{
    size_t i = first_reaching(img, (uint64_t)addr + 1);

    if (i < img->nseg && img->seg[i].addr <= addr)
        return i;
    return img->nseg;
}

static int insert_segment(ihex_image *img, size_t at, uint32_t addr,
                          const uint8_t *data, size_t len)
{
    ihex_segment s;

    if (reserve_segments(img, img->nseg + 1) != IHEX_OK)
        return IHEX_ENOMEM;
    s.addr = addr;
    s.len = s.cap = len;
    s.data = malloc(len);
    if (s.data == NULL)
        return IHEX_ENOMEM;
    memcpy(s.data, data, len);
    memmove(&img->seg[at + 1], &img->seg[at], (img->nseg - at) * sizeof s);
    img->seg[at] = s;
    img->nseg++;
    img->size += len;
    return IHEX_OK;
}

/* Whether s holds bytes of [addr, addr + len) that differ; the first in *c. */
static int seg_conflict(const ihex_segment *s, uint32_t addr, const uint8_t *data,
                        size_t len, ihex_conflict *c)
{
    uint64_t end = (uint64_t)addr + len;
    uint64_t from = addr > s->addr ? addr : s->addr;
    uint64_t to = end < seg_end(s) ? end : seg_end(s);
    const uint8_t *mine, *theirs;
    size_t m;

    if (from >= to)
        return 0;
    mine = data + (from - addr);
    theirs = s->data + (from - s->addr);
    if (memcmp(mine, theirs, (size_t)(to - from)) == 0)
        return 0;
    for (m = 0; mine[m] == theirs[m]; m++)
        ;
    if (c != NULL) {
        c->addr = (uint32_t)(from + m);
        c->had = theirs[m];
        c->got = mine[m];
    }
    return 1;
}

/* Like ihex_put's check, without putting: the lowest differing byte in *c. */
static int find_conflict(const ihex_image *img, uint32_t addr, const uint8_t *data,
                         size_t len, ihex_conflict *c)
{
    uint64_t end = (uint64_t)addr + len;
    size_t k;

    for (k = first_reaching(img, (uint64_t)addr + 1);
         k < img->nseg && img->seg[k].addr < end; k++)
        if (seg_conflict(&img->seg[k], addr, data, len, c))
            return 1;
    return 0;
}

int ihex_put(ihex_image *img, uint32_t addr, const uint8_t *data, size_t len,
             ihex_conflict *c)
{
    uint64_t end, lo, newend;
    size_t i, j, k, n = img->nseg;
    ihex_segment *first;
    uint64_t old_bytes = 0;
    uint8_t *buf;

    if (len == 0)
        return IHEX_OK;
    if ((uint64_t)len > IHEX_SPACE - addr)
        return IHEX_ERANGE;
    end = (uint64_t)addr + len;

    /* Records mostly come in address order: try the last segment first. */
    if (n == 0 || seg_end(&img->seg[n - 1]) < addr)
        i = n;
    else if (img->seg[n - 1].addr <= addr)
        i = n - 1;
    else
        i = first_reaching(img, addr);
    /* [i, j): every segment that overlaps or touches [addr, end) */
    for (j = i; j < n && img->seg[j].addr <= end; j++)
        ;
    if (i == j)
        return insert_segment(img, i, addr, data, len);

    for (k = i; k < j; k++)
        if (seg_conflict(&img->seg[k], addr, data, len, c))
            return IHEX_ECONFLICT;

    first = &img->seg[i];
    lo = addr < first->addr ? addr : first->addr;
    newend = end > seg_end(&img->seg[j - 1]) ? end : seg_end(&img->seg[j - 1]);
    if (j == i + 1 && first->addr <= addr && end <= seg_end(first))
        return IHEX_OK; /* already there, byte for byte */

    for (k = i; k < j; k++)
        old_bytes += img->seg[k].len;
    if (first->addr == lo) {
        /* grows at the end (the append case): keep first's buffer */
        if (reserve_data(first, newend - lo) != IHEX_OK)
            return IHEX_ENOMEM;
        buf = first->data;
    } else {
        size_t cap;
        if (grow_to(newend - lo, 0, &cap) != IHEX_OK || (buf = malloc(cap)) == NULL)
            return IHEX_ENOMEM;
        memcpy(buf + (first->addr - lo), first->data, first->len);
        free(first->data);
        first->data = buf;
        first->cap = cap;
    }
    /* Where they overlap the bytes are equal, so the order of copies is free. */
    memcpy(buf + (addr - lo), data, len);
    for (k = i + 1; k < j; k++) {
        ihex_segment *s = &img->seg[k];
        memcpy(buf + (s->addr - lo), s->data, s->len);
        free(s->data);
    }
    first->addr = (uint32_t)lo;
    first->len = (size_t)(newend - lo);
    img->size = img->size - old_bytes + first->len;
    memmove(&img->seg[i + 1], &img->seg[j], (n - j) * sizeof *first);
    img->nseg = n - (j - i - 1);
    return IHEX_OK;
}

int ihex_get(const ihex_image *img, uint32_t addr)
{
    size_t i = find_holding(img, addr);

    if (i == img->nseg)
        return -1;
    return img->seg[i].data[addr - img->seg[i].addr];
}

int ihex_range(const ihex_image *img, uint32_t *lo, uint32_t *hi)
{
    if (img->nseg == 0)
        return 0;
    *lo = img->seg[0].addr;
    *hi = (uint32_t)(seg_end(&img->seg[img->nseg - 1]) - 1);
    return 1;
}

void ihex_fill_range(const ihex_image *img, uint32_t lo, uint32_t hi,
                     uint8_t fill, uint8_t *out)
{
    uint64_t end = (uint64_t)hi + 1;
    size_t i;

    memset(out, fill, (size_t)(end - lo));
    for (i = first_reaching(img, (uint64_t)lo + 1); i < img->nseg; i++) {
        const ihex_segment *s = &img->seg[i];
        uint64_t from = lo > s->addr ? lo : s->addr;
        uint64_t to = end < seg_end(s) ? end : seg_end(s);
        if (s->addr >= end)
            break;
        if (from < to)
            memcpy(out + (from - lo), s->data + (from - s->addr), (size_t)(to - from));
    }
}

/* Where a CPU would begin: CS * 16 + IP for type 03 (at most 0x10FFEF). */
static uint32_t start_address(int type, uint32_t raw)
{
    if (type == IHEX_START_SEGMENT)
        return (raw >> 16) * 16u + (raw & 0xFFFFu);
    return raw;
}

int ihex_start(const ihex_image *img, uint32_t *addr)
{
    if (img->start_type == IHEX_START_NONE)
        return 0;
    *addr = start_address(img->start_type, img->start_raw);
    return 1;
}

int ihex_equal(const ihex_image *a, const ihex_image *b)
{
    size_t i;

    if (a->nseg != b->nseg || a->size != b->size || a->start_type != b->start_type)
        return 0;
    if (a->start_type != IHEX_START_NONE && a->start_raw != b->start_raw)
        return 0;
    for (i = 0; i < a->nseg; i++) {
        const ihex_segment *x = &a->seg[i], *y = &b->seg[i];
        if (x->addr != y->addr || x->len != y->len || memcmp(x->data, y->data, x->len) != 0)
            return 0;
    }
    return 1;
}

int ihex_copy(ihex_image *out, const ihex_image *src)
{
    size_t i;

    ihex_free(out);
    if (reserve_segments(out, src->nseg) != IHEX_OK)
        return IHEX_ENOMEM;
    for (i = 0; i < src->nseg; i++) {
        const ihex_segment *s = &src->seg[i];
        ihex_segment *d = &out->seg[i];
        d->data = malloc(s->len);
        if (d->data == NULL) {
            ihex_free(out);
            return IHEX_ENOMEM;
        }
        memcpy(d->data, s->data, s->len);
        d->addr = s->addr;
        d->len = d->cap = s->len;
        out->nseg = i + 1;
    }
    out->size = src->size;
    out->start_type = src->start_type;
    out->start_raw = src->start_raw;
    return IHEX_OK;
}

/*
 * Appends segment *s to the run out, whose segments all start at or below
 * s->addr; bytes overlapping the last segment must be equal (checked
 * before). With `take`, s->data moves to out (or is freed): s is spent
 * either way. Else it is copied.
 */
static int run_append(ihex_image *out, ihex_segment *s, int take)
{
    ihex_segment *last = out->nseg > 0 ? &out->seg[out->nseg - 1] : NULL;
    int rc = IHEX_OK;

    if (last != NULL && s->addr <= seg_end(last)) { /* overlaps or touches: one segment */
        uint64_t from = seg_end(last), to = seg_end(s);
        if (to > from) {
            rc = reserve_data(last, to - last->addr);
            if (rc == IHEX_OK) {
                memcpy(last->data + last->len, s->data + (from - s->addr), (size_t)(to - from));
                last->len = (size_t)(to - last->addr);
                out->size += to - from;
            }
        }
        if (take)
            free(s->data);
    } else {
        ihex_segment copy = *s;
        rc = reserve_segments(out, out->nseg + 1);
        if (rc == IHEX_OK && !take) {
            copy.data = malloc(s->len);
            if (copy.data == NULL)
                rc = IHEX_ENOMEM;
            else
                memcpy(copy.data, s->data, s->len);
            copy.cap = s->len;
        }
        if (rc == IHEX_OK) {
            out->seg[out->nseg++] = copy;
            out->size += copy.len;
        } else if (take) {
            free(s->data);
        }
    }
    if (take)
        s->data = NULL;
    return rc;
}

/*
 * Merges the runs *a and *b (whose overlaps hold equal bytes) into *out,
 * initialised and empty, in one linear pass. a and b are consumed: left
 * empty, their bytes moved to out. On failure all three are left empty.
 */
static int merge_runs(ihex_image *out, ihex_image *a, ihex_image *b)
{
    size_t i = 0, j = 0;
    int rc = IHEX_OK;

    while (rc == IHEX_OK && (i < a->nseg || j < b->nseg)) {
        if (j == b->nseg || (i < a->nseg && a->seg[i].addr <= b->seg[j].addr))
            rc = run_append(out, &a->seg[i++], 1);
        else
            rc = run_append(out, &b->seg[j++], 1);
    }
    for (; i < a->nseg; i++)
        free(a->seg[i].data);
    for (; j < b->nseg; j++)
        free(b->seg[j].data);
    free(a->seg);
    free(b->seg);
    a->seg = b->seg = NULL;
    a->nseg = b->nseg = a->cap = b->cap = 0;
    a->size = b->size = 0;
    if (rc != IHEX_OK)
        ihex_free(out);
    return rc;
}

int ihex_merge(ihex_image *out, const ihex_image *a, const ihex_image *b,
               ihex_error *e)
{
    uint32_t sa, sb;
    size_t i = 0, j = 0;

    ihex_free(out);
    /* Where a segment of each overlaps, in address order: the first such
     * place whose bytes differ is the lowest. */
    while (i < a->nseg && j < b->nseg) {
        const ihex_segment *x = &a->seg[i], *y = &b->seg[j];
        ihex_conflict c;
        if (seg_conflict(x, y->addr, y->data, y->len, &c)) {
            set_error(e, 0, 0, "overlap at 0x%04" PRIX32 ": 0x%02X in the first image, "
                      "0x%02X in the second", c.addr, c.had, c.got);
            return -1;
        }
        if (seg_end(x) < seg_end(y))
            i++;
        else
            j++;
    }
    if (ihex_start(a, &sa) && ihex_start(b, &sb) && sa != sb) {
        set_error(e, 0, 0, "start address 0x%04" PRIX32 " in the first image, 0x%04" PRIX32
                  " in the second", sa, sb);
        return -1;
    }
    /* The union, in one pass. */
    for (i = j = 0; i < a->nseg || j < b->nseg;) {
        ihex_segment s;
        if (j == b->nseg || (i < a->nseg && a->seg[i].addr <= b->seg[j].addr))
            s = a->seg[i++];
        else
            s = b->seg[j++];
        if (run_append(out, &s, 0) != IHEX_OK) {
            ihex_free(out);
            set_errno(e, 0, ENOMEM);
            return -1;
        }
    }
    if (a->start_type != IHEX_START_NONE) {
        out->start_type = a->start_type;
        out->start_raw = a->start_raw;
    } else {
        out->start_type = b->start_type;
        out->start_raw = b->start_raw;
    }
    return 0;
}

/* ---- writing ------------------------------------------------------ */

static int emit(ihex_sink sink, void *ctx, unsigned type, unsigned offset,
                const uint8_t *data, unsigned len)
{
    static const char hex[] = "0123456789ABCDEF";
    char line[1 + 2 * (5 + IHEX_RECORD_LEN_MAX) + 1];
    uint8_t head[4];
    unsigned sum, i;
    char *p = line;

    head[0] = (uint8_t)len;
    head[1] = (uint8_t)(offset >> 8);
    head[2] = (uint8_t)offset;
    head[3] = (uint8_t)type;
    *p++ = ':';
    sum = 0;
    for (i = 0; i < 4; i++) {
        sum += head[i];
        *p++ = hex[head[i] >> 4];
        *p++ = hex[head[i] & 15];
    }
    for (i = 0; i < len; i++) {
        sum += data[i];
        *p++ = hex[data[i] >> 4];
        *p++ = hex[data[i] & 15];
    }
    sum = (0x100 - (sum & 0xFF)) & 0xFF;
    *p++ = hex[sum >> 4];
    *p++ = hex[sum & 15];
    *p++ = '\n';
    return sink(ctx, line, (size_t)(p - line)) == 0 ? IHEX_OK : IHEX_ESINK;
}

int ihex_format(const ihex_image *img, unsigned record_len, ihex_sink sink, void *ctx)
{
    uint32_t upper = 0; /* the upper 16 bits in effect: 0 until a type 04 */
    uint8_t b[4];
    size_t i;

    if (record_len < 1 || record_len > IHEX_RECORD_LEN_MAX)
        return IHEX_ERANGE;
    for (i = 0; i < img->nseg; i++) {
        const ihex_segment *s = &img->seg[i];
        size_t off = 0;
        while (off < s->len) {
            uint32_t a = s->addr + (uint32_t)off;
            size_t n = s->len - off;
            uint32_t room = 0x10000u - (a & 0xFFFFu); /* a record stays in its 64 KiB */
            if (n > record_len)
                n = record_len;
            if (n > room)
                n = room;
            if (a >> 16 != upper) {
                upper = a >> 16;
                b[0] = (uint8_t)(upper >> 8);
                b[1] = (uint8_t)upper;
                if (emit(sink, ctx, 4, 0, b, 2) != IHEX_OK)
                    return IHEX_ESINK;
            }
            if (emit(sink, ctx, 0, a & 0xFFFFu, s->data + off, (unsigned)n) != IHEX_OK)
                return IHEX_ESINK;
            off += n;
        }
    }
    if (img->start_type != IHEX_START_NONE) {
        b[0] = (uint8_t)(img->start_raw >> 24);
        b[1] = (uint8_t)(img->start_raw >> 16);
        b[2] = (uint8_t)(img->start_raw >> 8);
        b[3] = (uint8_t)img->start_raw;
        if (emit(sink, ctx, (unsigned)img->start_type, 0, b, 4) != IHEX_OK)
            return IHEX_ESINK;
    }
    return emit(sink, ctx, 1, 0, NULL, 0);
}

typedef struct {
    int fd;
    int err;
    size_t n;
    char buf[8192];
} file_sink;

static int write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int file_sink_put(void *ctx, const char *text, size_t len)
{
    file_sink *f = ctx;

    if (f->n + len > sizeof f->buf) {
        f->err = write_all(f->fd, f->buf, f->n);
        f->n = 0;
        if (f->err != 0)
            return -1;
    }
    memcpy(f->buf + f->n, text, len); /* a line is far shorter than buf */
    f->n += len;
    return 0;
}

/* The mode a plain open(O_CREAT) would give: the old file's, else 0666 & ~umask. */
static mode_t new_file_mode(const char *path)
{
    struct stat st;
    mode_t mask;

    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return st.st_mode & 07777;
    mask = umask(0); /* the only way to read it; fotahost is single-threaded */
    umask(mask);
    return 0666 & ~mask;
}

/* Makes the rename itself durable; the new file is in place whatever this says. */
static void sync_parent(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int fd;

    if (slash == NULL)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (dir == NULL)
        return;
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

int ihex_write_file(const ihex_image *img, const char *path, unsigned record_len,
                    ihex_error *e)
{
    static const char suffix[] = ".XXXXXX";
    size_t plen = strlen(path);
    file_sink *f = NULL;
    char *tmp = NULL;
    int fd = -1, err = 0, rc;

    if (record_len < 1 || record_len > IHEX_RECORD_LEN_MAX) {
        set_error(e, 0, 0, "record length %u out of range (1..255)", record_len);
        return -1;
    }
    if (plen > SIZE_MAX - sizeof suffix || (tmp = malloc(plen + sizeof suffix)) == NULL ||
        (f = malloc(sizeof *f)) == NULL) {
        err = ENOMEM;
        goto fail;
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, suffix, sizeof suffix);
    fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        err = errno;
        free(tmp);
        tmp = NULL; /* nothing to remove */
        goto fail;
    }
    if (fchmod(fd, new_file_mode(path)) != 0) {
        err = errno;
        goto fail;
    }
    f->fd = fd;
    f->err = 0;
    f->n = 0;
    rc = ihex_format(img, record_len, file_sink_put, f);
    if (rc == IHEX_OK)
        f->err = write_all(fd, f->buf, f->n);
    if (f->err != 0) {
        err = f->err;
        goto fail;
    }
    if (fsync(fd) != 0) {
        err = errno;
        goto fail;
    }
    rc = close(fd);
    fd = -1;
    if (rc != 0 && errno != EINTR) {
        err = errno;
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        err = errno;
        goto fail;
    }
    sync_parent(path);
    free(tmp);
    free(f);
    return 0;
fail:
    if (fd >= 0)
        close(fd);
    if (tmp != NULL) {
        unlink(tmp);
        free(tmp);
    }
    free(f);
    set_errno(e, 0, err);
    return -1;
}

/* ---- parsing ------------------------------------------------------ */

/* A printable rendering of one input byte for a message: 'G' or '\x01'. */
static const char *show_char(unsigned char ch, char buf[8])
{
    if (ch > 0x20 && ch < 0x7F && ch != '\'')
        snprintf(buf, 8, "'%c'", ch);
    else
        snprintf(buf, 8, "'\\x%02X'", ch);
    return buf;
}

static int hex_value(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    return -1;
}

static int is_blank(unsigned char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

void ihex_parser_begin(ihex_parser *p, ihex_image *img)
{
    memset(p, 0, sizeof *p);
    p->img = img;
    p->line = 1;
    p->col = 1;
    p->state = ST_LINE_START;
}

/* Frees the runs: the parse has failed, or its runs are merged. */
static void drop_runs(ihex_parser *p)
{
    int i;

    for (i = 0; i < IHEX_RUNS; i++)
        ihex_free(&p->run[i]);
    p->runs_end = 0;
}

static int fail(ihex_parser *p, ihex_error *e, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(ihex_parser *p, ihex_error *e, const char *fmt, ...)
{
    va_list ap;

    p->failed = 1;
    drop_runs(p);
    if (e != NULL) {
        e->line = p->line;
        e->err = 0;
        va_start(ap, fmt);
        vsnprintf(e->cause, sizeof e->cause, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int fail_nomem(ihex_parser *p, ihex_error *e)
{
    p->failed = 1;
    drop_runs(p);
    set_errno(e, p->line, ENOMEM);
    return -1;
}

/* Adds a record's bytes as a run of one, then merges equal-sized runs up. */
static int add_to_runs(ihex_parser *p, uint32_t addr, const uint8_t *data, size_t len)
{
    ihex_image carry;
    int i;

    ihex_init(&carry);
    if (insert_segment(&carry, 0, addr, data, len) != IHEX_OK) {
        ihex_free(&carry);
        return IHEX_ENOMEM;
    }
    for (i = 0; i < IHEX_RUNS; i++) {
        ihex_image merged;
        if (p->run[i].nseg == 0) {
            p->run[i] = carry;
            if ((uint64_t)addr + len > p->runs_end)
                p->runs_end = (uint64_t)addr + len;
            return IHEX_OK;
        }
        ihex_init(&merged);
        if (merge_runs(&merged, &p->run[i], &carry) != IHEX_OK)
            return IHEX_ENOMEM;
        carry = merged;
    }
    ihex_free(&carry);
    return IHEX_ENOMEM; /* 2^48 records: more than any memory holds */
}

/* Merges every run into the image, keeping its start address. */
static int merge_all_runs(ihex_parser *p)
{
    ihex_image all, merged;
    int i, start_type = p->img->start_type;
    uint32_t start_raw = p->img->start_raw;

    ihex_init(&all);
    for (i = 0; i < IHEX_RUNS; i++) {
        if (p->run[i].nseg == 0)
            continue;
        ihex_init(&merged);
        if (merge_runs(&merged, &all, &p->run[i]) != IHEX_OK) {
            drop_runs(p);
            return IHEX_ENOMEM;
        }
        all = merged;
    }
    p->runs_end = 0;
    if (all.nseg == 0)
        return IHEX_OK;
    ihex_init(&merged);
    if (merge_runs(&merged, p->img, &all) != IHEX_OK)
        return IHEX_ENOMEM;
    *p->img = merged;
    p->img->start_type = start_type;
    p->img->start_raw = start_raw;
    return IHEX_OK;
}

/*
 * A data record's bytes. They are checked against every byte given before,
 * so a conflict is reported at the record that makes it. Records in
 * address order go straight into the image (amortised O(1)); others wait
 * in the runs.
 */
static int put_data(ihex_parser *p, uint32_t addr, const uint8_t *data, size_t len,
                    ihex_error *e)
{
    ihex_image *img = p->img;
    ihex_conflict c, first;
    int in_order, found = 0, i;

    if (len == 0)
        return 0;
    if ((uint64_t)len > IHEX_SPACE - addr)
        return fail(p, e, "address overflow: %zu bytes at 0x%08" PRIX32
                    " go past 0xFFFFFFFF", len, addr);
    in_order = img->nseg == 0 || addr >= seg_end(&img->seg[img->nseg - 1]);
    if (!in_order && find_conflict(img, addr, data, len, &first))
        found = 1;
    if (addr < p->runs_end) {
        for (i = 0; i < IHEX_RUNS; i++)
            if (find_conflict(&p->run[i], addr, data, len, &c) && (!found || c.addr < first.addr)) {
                first = c;
                found = 1;
            }
    }
    if (found)
        return fail(p, e, "address 0x%04" PRIX32 " given twice with different data "
                    "(0x%02X earlier, 0x%02X here)", first.addr, first.had, first.got);
    if (in_order ? ihex_put(img, addr, data, len, NULL) : add_to_runs(p, addr, data, len))
        return fail_nomem(p, e);
    return 0;
}

static const char *const type_names[] = {
    "data", "end-of-file", "extended segment address", "start segment address",
    "extended linear address", "start linear address",
};
static const unsigned type_lengths[] = {0, 0, 2, 4, 2, 4};

/* A whole record has been read: check it, then apply it. */
static int end_record(ihex_parser *p, ihex_error *e)
{
    const uint8_t *r = p->rec;
    uint64_t nbytes = p->digits / 2;
    unsigned count, type, offset, sum, i;
    uint32_t value;

    if (p->digits < 10)
        return fail(p, e, "line too short: %" PRIu64 " hex digits, a record has at least 10",
                    p->digits);
    if (p->digits % 2 != 0)
        return fail(p, e, "odd number of hex digits (%" PRIu64 ")", p->digits);
    count = r[0];
    if (nbytes != 5u + count)
        return fail(p, e, "record length 0x%02X (%u data bytes) does not match the line "
                    "(%" PRIu64 " data bytes)", count, count, nbytes - 5);
    sum = 0;
    for (i = 0; i < 4 + count; i++)
        sum += r[i];
    if (((sum + r[4 + count]) & 0xFF) != 0)
        return fail(p, e, "bad checksum: expected 0x%02X, got 0x%02X",
                    (0x100 - (sum & 0xFF)) & 0xFF, r[4 + count]);
    type = r[3];
    if (type > 5)
        return fail(p, e, "unknown record type 0x%02X", type);
    if (type != 0 && count != type_lengths[type])
        return fail(p, e, "%s record (type %02X) must have %u data bytes, not %u",
                    type_names[type], type, type_lengths[type], count);
    p->last_record = p->line;
    offset = (unsigned)r[1] << 8 | r[2];
    value = count >= 2 ? (uint32_t)r[4] << 8 | r[5] : 0;
    if (count == 4)
        value = value << 16 | (uint32_t)r[6] << 8 | r[7];

    switch (type) {
    case 0:
        if (p->segment_mode && offset + count > 0x10000u) {
            /* Intel: offsets wrap within the 64 KiB segment */
            unsigned first = 0x10000u - offset;
            if (put_data(p, p->base + offset, r + 4, first, e) != 0)
                return -1;
            return put_data(p, p->base, r + 4 + first, count - first, e);
        }
        return put_data(p, p->base + offset, r + 4, count, e);
    case 1:
        p->seen_eof = 1;
        return 0;
    case 2:
        p->segment_mode = 1;
        p->base = value << 4;
        return 0;
    case 4:
        p->segment_mode = 0;
        p->base = value << 16;
        return 0;
    default: { /* 3 or 5: the same start address again is harmless */
        uint32_t had, now = start_address((int)type, value);
        if (ihex_start(p->img, &had)) {
            if (had != now)
                return fail(p, e, "a second start address (0x%04" PRIX32 " earlier, 0x%04"
                            PRIX32 " here)", had, now);
            return 0;
        }
        p->img->start_type = (int)type;
        p->img->start_raw = value;
        return 0;
    }
    }
}

static int end_line(ihex_parser *p, ihex_error *e)
{
    int rc = 0;

    if (p->state != ST_LINE_START)
        rc = end_record(p, e);
    p->state = ST_LINE_START;
    return rc;
}

int ihex_parser_feed(ihex_parser *p, const char *text, size_t len, ihex_error *e)
{
    const unsigned char *s = (const unsigned char *)text;
    char shown[8];
    size_t i;

    if (p->failed)
        return -1;
    for (i = 0; i < len; i++, p->col++) {
        unsigned char ch = s[i];
        int v;

        if (ch == '\n') {
            if (end_line(p, e) != 0)
                return -1;
            p->line++;
            p->col = 0; /* the loop makes it 1 */
            continue;
        }
        switch (p->state) {
        case ST_LINE_START:
            if (is_blank(ch))
                break;
            if (p->seen_eof)
                return fail(p, e, "data after the end-of-file record");
            if (ch != ':')
                return fail(p, e, "missing ':' at line start (found %s)", show_char(ch, shown));
            p->state = ST_RECORD;
            p->digits = 0;
            break;
        case ST_RECORD:
            v = hex_value(ch);
            if (v >= 0) {
                if (p->digits < 2 * sizeof p->rec) {
                    uint8_t *b = &p->rec[p->digits / 2];
                    *b = p->digits % 2 ? (uint8_t)(*b | v) : (uint8_t)(v << 4);
                }
                p->digits++; /* counts on past rec: the length check needs it */
            } else if (is_blank(ch)) {
                p->state = ST_TRAILING;
                p->ws_col = p->col;
            } else {
                return fail(p, e, "non-hex character %s at column %" PRIu64,
                            show_char(ch, shown), p->col);
            }
            break;
        default: /* ST_TRAILING */
            if (is_blank(ch))
                break;
            if (hex_value(ch) >= 0)
                return fail(p, e, "space inside the record at column %" PRIu64, p->ws_col);
            return fail(p, e, "unexpected character %s at column %" PRIu64 " after the record",
                        show_char(ch, shown), p->col);
        }
    }
    return 0;
}

int ihex_parser_end(ihex_parser *p, ihex_error *e)
{
    if (p->failed)
        return -1;
    if (end_line(p, e) != 0)
        return -1;
    if (!p->seen_eof) {
        p->failed = 1;
        drop_runs(p);
        if (p->last_record == 0)
            set_error(e, 0, 0, "no records (missing end-of-file record)");
        else
            set_error(e, p->last_record, 0, "missing end-of-file record");
        return -1;
    }
    if (merge_all_runs(p) != IHEX_OK) {
        p->failed = 1;
        set_errno(e, 0, ENOMEM);
        return -1;
    }
    return 0;
}

int ihex_parse_buffer(ihex_image *img, const char *text, size_t len, ihex_error *e)
{
    ihex_parser p;

    ihex_parser_begin(&p, img);
    if (ihex_parser_feed(&p, text, len, e) != 0 || ihex_parser_end(&p, e) != 0) {
        ihex_free(img);
        return -1;
    }
    return 0;
}

int ihex_parse_file(ihex_image *img, const char *path, uint64_t max_size, ihex_error *e)
{
    char buf[IHEX_CHUNK];
    ihex_parser p;
    struct stat st;
    uint64_t total = 0;
    int fd, err;

    /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused below) */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        set_errno(e, 0, errno);
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        err = errno;
        close(fd);
        set_errno(e, 0, err);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        if (S_ISDIR(st.st_mode))
            set_errno(e, 0, EISDIR);
        else
            set_error(e, 0, 0, "not a regular file");
        return -1;
    }
    if ((uint64_t)st.st_size > max_size) {
        close(fd);
        set_error(e, 0, 0, "file too large (%" PRIu64 " bytes, limit %" PRIu64 " bytes)",
                  (uint64_t)st.st_size, max_size);
        return -1;
    }
    ihex_parser_begin(&p, img);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            close(fd);
            drop_runs(&p);
            ihex_free(img);
            set_errno(e, 0, err);
            return -1;
        }
        if (n == 0)
            break;
        total += (uint64_t)n;
        if (total > max_size) { /* it grew after fstat */
            close(fd);
            drop_runs(&p);
            ihex_free(img);
            set_error(e, 0, 0, "file too large (grew past the limit of %" PRIu64
                      " bytes while being read)", max_size);
            return -1;
        }
        if (ihex_parser_feed(&p, buf, (size_t)n, e) != 0) {
            close(fd);
            ihex_free(img);
            return -1;
        }
    }
    close(fd);
    if (ihex_parser_end(&p, e) != 0) {
        ihex_free(img);
        return -1;
    }
    return 0;
}

int ihex_error_format(const char *name, const ihex_error *e, char *buf, size_t size)
{
    if (e->line > 0)
        return snprintf(buf, size, "%s:%" PRIu64 ": %s", name, e->line, e->cause);
    return snprintf(buf, size, "%s: %s", name, e->cause);
}
