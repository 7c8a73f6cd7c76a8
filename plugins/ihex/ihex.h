/*
 * ihex.h: Intel HEX text and the sparse memory images it describes.
 *
 * The pure C core under `fotahost.ihex` (plugins/ihex.c): no Lua here, so
 * the C unit test (tests/unit/test_ihex.c) and the fuzzer
 * (tests/fuzz/fuzz_ihex.c) drive exactly the code the module runs.
 *
 * An image is a sorted array of segments that neither overlap nor touch:
 * putting bytes next to a segment grows it, so a file of consecutive
 * records becomes one segment, appended to in amortised O(1).
 *
 * Functions that can fail for a reason a user must read fill an
 * ihex_error; ihex_error_format() (or the Lua binding) turns it into
 * "<name>:<line>: <cause>", or "<name>: <cause>" when no line is to blame.
 */
#ifndef FOTAHOST_IHEX_H
#define FOTAHOST_IHEX_H

#include <stddef.h>
#include <stdint.h>

/* Addresses are 32-bit: every byte lies in [0, IHEX_SPACE). */
#define IHEX_SPACE ((uint64_t)1 << 32)

#define IHEX_RECORD_LEN_DEFAULT 16u
#define IHEX_RECORD_LEN_MAX 255u

/* Return values of the functions that do not fill an ihex_error. */
enum {
    IHEX_OK = 0,
    IHEX_ENOMEM = -1,    /* malloc failed; the image is unchanged */
    IHEX_ECONFLICT = -2, /* an overlap with different bytes; unchanged */
    IHEX_ERANGE = -3,    /* past 0xFFFFFFFF, or an argument out of range */
    IHEX_ESINK = -4      /* the output sink refused the text */
};

typedef struct {
    uint32_t addr;   /* first byte */
    size_t len;      /* bytes, >= 1; addr + len <= IHEX_SPACE */
    size_t cap;      /* bytes allocated at data */
    uint8_t *data;
} ihex_segment;

/* How the start address was given: it is written back the same way. */
enum { IHEX_START_NONE = 0, IHEX_START_SEGMENT = 3, IHEX_START_LINEAR = 5 };

typedef struct {
    ihex_segment *seg; /* sorted by addr; gaps of at least one byte between */
    size_t nseg, cap;
    uint64_t size;     /* data bytes in all segments */
    int start_type;    /* IHEX_START_* */
    uint32_t start_raw; /* record payload: CS:IP (type 03) or EIP (type 05) */
} ihex_image;

/* Where put() found an overlap with different bytes (the first such). */
typedef struct {
    uint32_t addr;
    uint8_t had; /* the byte already in the image */
    uint8_t got; /* the byte offered */
} ihex_conflict;

typedef struct {
    uint64_t line; /* 1-based line of the input at fault, 0 for none */
    int err;       /* errno for a system failure (open, read, ENOMEM), else 0 */
    char cause[200];
} ihex_error;

/* An empty image. Nothing to free until bytes are put in. */
void ihex_init(ihex_image *img);
/* Frees everything and leaves an empty image: safe to call twice. */
void ihex_free(ihex_image *img);

/*
 * Puts len bytes at addr. Bytes already present must be equal: otherwise
 * IHEX_ECONFLICT, with the first differing address in *c (may be NULL).
 * IHEX_ERANGE when the bytes would run past 0xFFFFFFFF.
 */
int ihex_put(ihex_image *img, uint32_t addr, const uint8_t *data, size_t len,
             ihex_conflict *c);

/* The byte at addr (0..255), or -1 where the image has none. */
int ihex_get(const ihex_image *img, uint32_t addr);

/* Lowest and highest byte address present; 0 (and nothing set) when empty. */
int ihex_range(const ihex_image *img, uint32_t *lo, uint32_t *hi);

/*
 * Copies the bytes of [lo, hi] (inclusive, lo <= hi) into out, which holds
 * hi - lo + 1 bytes, with `fill` where the image has no data.
 */
void ihex_fill_range(const ihex_image *img, uint32_t lo, uint32_t hi,
                     uint8_t fill, uint8_t *out);

/* The start address a CPU would begin at (CS * 16 + IP for type 03). */
int ihex_start(const ihex_image *img, uint32_t *addr);

/* Same bytes at the same addresses and the same start record. */
int ihex_equal(const ihex_image *a, const ihex_image *b);

/* A deep copy into an initialised empty *out. IHEX_OK or IHEX_ENOMEM. */
int ihex_copy(ihex_image *out, const ihex_image *src);

/*
 * Merges a and b into *out (initialised, empty). Overlaps must hold equal
 * bytes: else -1 and e->cause "overlap at 0x7000: 0x0C in the first image,
 * 0x94 in the second" (the lowest such address). Start addresses, when both
 * have one, must agree. On failure *out is left empty.
 */
int ihex_merge(ihex_image *out, const ihex_image *a, const ihex_image *b,
               ihex_error *e);

/*
 * Receives the formatted text one record line at a time. A non-zero return
 * stops formatting (ihex_format then returns IHEX_ESINK).
 */
typedef int (*ihex_sink)(void *ctx, const char *text, size_t len);

/*
 * Writes img as Intel HEX: data records of at most record_len (1..255)
 * bytes that never cross a 64 KiB boundary, a type 04 record wherever the
 * upper 16 address bits change, the start record (03 or 05, as it came),
 * then the end-of-file record. Lines end with "\n".
 * IHEX_OK, IHEX_ERANGE (bad record_len) or IHEX_ESINK.
 */
int ihex_format(const ihex_image *img, unsigned record_len, ihex_sink sink,
                void *ctx);

/*
 * Writes img to path atomically: a temporary file beside it, fsync, then
 * rename over path. On failure nothing is left behind and path is untouched.
 */
int ihex_write_file(const ihex_image *img, const char *path,
                    unsigned record_len, ihex_error *e);

/*
 * Records out of address order (a file written backwards, a bootloader
 * before its application) wait in sorted runs, merged like a binary
 * counter: run i holds what 2^i records gave. Inserting one into the middle
 * of the image's array would cost O(segments), and a file of such records
 * O(n^2). Run 47 would need 2^47 records: more than any memory holds.
 */
#define IHEX_RUNS 48

/*
 * A streaming parser: feed it text in pieces of any size (a record may
 * span pieces), then always call ihex_parser_end, which finishes the image
 * and frees what the parser holds. Only the current record is buffered,
 * so memory does not grow with the length of a line.
 */
typedef struct {
    ihex_image *img;
    uint64_t line, col;      /* position of the next character, 1-based */
    uint64_t last_record;    /* line of the last record, for a missing EOF */
    uint64_t digits;         /* hex digits of the current record */
    uint64_t ws_col;         /* column of the whitespace ending the record */
    int state;
    int seen_eof;
    int failed;
    int segment_mode;        /* addresses from type 02 wrap within 64 KiB */
    uint32_t base;           /* from the last type 02 or 04 record */
    uint64_t runs_end;       /* one past the highest byte waiting in runs */
    ihex_image run[IHEX_RUNS];
    uint8_t rec[5 + 255];    /* count, address (2), type, data, checksum */
} ihex_parser;

/* Starts parsing into img (initialised; may already hold bytes). The image
 * is complete once ihex_parser_end has returned 0. */
void ihex_parser_begin(ihex_parser *p, ihex_image *img);
/* 0, or -1 with *e filled; after a failure the parser refuses more. */
int ihex_parser_feed(ihex_parser *p, const char *text, size_t len, ihex_error *e);
/* 0 when the input ended well (an end-of-file record was seen), else -1. */
int ihex_parser_end(ihex_parser *p, ihex_error *e);

/*
 * One call for a whole text. On failure -1, *e filled, and img freed
 * (left empty).
 */
int ihex_parse_buffer(ihex_image *img, const char *text, size_t len, ihex_error *e);

/*
 * Parses the regular file at path, read in fixed-size chunks. A file larger
 * than max_size bytes is refused from fstat(), before any byte is read:
 * "file too large (N bytes, limit M bytes)". On failure img is left empty.
 */
int ihex_parse_file(ihex_image *img, const char *path, uint64_t max_size,
                    ihex_error *e);

/*
 * "<name>:<line>: <cause>" (or "<name>: <cause>") into buf, truncated to
 * fit. Returns the length it would have had, as snprintf does.
 */
int ihex_error_format(const char *name, const ihex_error *e, char *buf, size_t size);

#endif
