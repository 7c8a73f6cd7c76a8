/*
 * avr.isp.core.c: `fotahost.avr.isp.core`, the AVR serial (ISP)
 * programmer, bit-banged over four GPIO lines of a `fotahost.gpio` set:
 * RESET, SCK, MOSI, MISO, in that order (any of them may be inverted in the
 * set).
 *
 * Instructions and timing follow the ATmega datasheets (see
 * ../shared/docs/avr-isp.md): data is clocked in on the rising edge of SCK
 * and out on the falling edge; each SCK half-period is at least the part's
 * minimum (250 ns at 8 MHz), enforced here by pacing on CLOCK_MONOTONIC so
 * the fastest backend (mmio) stays legal. Writes wait on RDY/BSY polling,
 * never on fixed delays, unless polling is turned off.
 *
 * Per SCK cycle the programmer makes two or three GPIO operations: SCK low
 * together with the next MOSI bit (one call; MOSI is written only when it
 * changes), SCK high, and a MISO read only in the bytes of the answer that
 * the instruction carries (answer_bytes()): a page load costs no read.
 *
 * This module is the engine; its face, `fotahost.avr.isp`
 * (scripts/fotahost/avr/isp.lua), sequences whole
 * jobs (erase, write, verify, fuses) page by page, so the scheduler gets
 * control back between pages.
 *
 * Errors: misuse raises; an MCU that does not answer returns nil,
 * "what: why" with no code.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <string.h>
#include <time.h>

#include "avr/part.h"
#include "fotahost.h"
#include "gpio/gpio.h"

#define ISP_MT "fotahost.avr.isp.core.programmer"
#define L_RESET 0
#define L_SCK 1
#define L_MOSI 2
#define L_MISO 3
#define ENABLE_WAIT_US 20000   /* datasheet: >= 20 ms after RESET before Programming Enable */
#define RESET_PULSE_NS 2000    /* >= 2 CPU clocks; generous for slow parts */
#define POLL_LIMIT_FACTOR 10   /* give up after 10x the datasheet write time */
#define POLL_INTERVAL_NS 20000L /* between two RDY/BSY polls that said busy */
#define HALF_NS_MAX 1000000000 /* 1 s: slower than any MCU needs, and fits a 32-bit long */

typedef struct {
    fh_gpio *g;                 /* owned by the lines userdata (uservalue 1) */
    struct fh_avr_part part;
    long half_ns;
    struct timespec last_edge;
    int connected;
    int poll;                   /* RDY/BSY polling; else datasheet delays */
    int retries;
    int ext;                    /* last Load Extended Address byte, -1 = none */
    unsigned long commands, bits, polls, enable_tries;
    uint8_t *trace;             /* every instruction sent, when tracing */
    size_t trace_len, trace_cap;
    int tracing;
    unsigned long long sleep_us; /* fixed sleeps */
    unsigned long long poll_wait_us; /* pauses between busy polls */
    char err[FH_GPIO_ERRLEN + 256];
} Isp;

/* --------------------------------------------------------------- timing */

static long long ns_since(const struct timespec *t)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)(now.tv_sec - t->tv_sec) * 1000000000LL + (now.tv_nsec - t->tv_nsec);
}

/*
 * Busy-waits until half_ns have passed since the end of the operation that
 * made the last SCK edge. Timing from the end, not the start, of each
 * operation keeps every half-period legal whatever happens in between (a
 * preempted edge only lengthens the next half-period, never shortens it).
 */
static void pace(Isp *p)
{
    if (p->half_ns > 0)
        while (ns_since(&p->last_edge) < p->half_ns)
            ;
}

static void mark_edge(Isp *p)
{
    if (p->half_ns > 0)
        clock_gettime(CLOCK_MONOTONIC, &p->last_edge);
}

/* A fixed sleep, counted: only where the datasheet demands one. */
static void sleep_us(Isp *p, unsigned long us)
{
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};

    p->sleep_us += us;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ------------------------------------------------------------ bit level */

static int gset(Isp *p, uint32_t mask, uint32_t values)
{
    return fh_gpio_set(p->g, mask, values, p->err, sizeof p->err);
}

/* Bit i of an answer mask: byte i + 1 of the answer is read from MISO. */
#define ANSWER_BYTE(n) (1u << ((n) - 1))
#define ANSWER_ALL 0xFu

/*
 * The bytes of an instruction's answer that carry something, per the
 * datasheet (../shared/docs/avr-isp.md): byte 4 of every read and of the
 * RDY/BSY poll; bytes 2 to 4 of Programming Enable (the 0x53 echo is byte
 * 3, and connect() names a silent or stuck MISO from all three). Loads,
 * writes and erases answer nothing worth a read: skipping MISO there saves
 * a system call per bit on sysfs and gpiod.
 */
static unsigned answer_bytes(const uint8_t out[4])
{
    switch (out[0]) {
    case 0x20: case 0x28:       /* Read Program Memory, low / high byte */
    case 0x30: case 0x38:       /* Read Signature Byte, Calibration Byte */
    case 0x50: case 0x58:       /* Read (extended) fuse, lock / high fuse */
    case 0xA0:                  /* Read EEPROM Memory */
    case 0xF0:                  /* Poll RDY/BSY */
        return ANSWER_BYTE(4);
    case 0xAC:
        return out[1] == 0x53 ? ANSWER_BYTE(2) | ANSWER_BYTE(3) | ANSWER_BYTE(4) : 0;
    default:
        return 0;
    }
}

/*
 * Shifts one 4-byte instruction out on MOSI and the bytes of the answer
 * that `want` names (ANSWER_BYTE) in from MISO, MSB first; the others read
 * as 0. At most three GPIO operations per bit: the SCK falling edge that
 * ends an instruction is left to the next one, where it goes out together
 * with that instruction's first MOSI bit. So SCK may be high on entry and
 * is high on return (connect and release set it low). MOSI changes only
 * with SCK falling, a whole half-period before the rising edge that
 * samples it, whether or not it was written for this bit.
 */
static int transfer(Isp *p, const uint8_t out[4], uint8_t in[4], unsigned want)
{
    uint32_t word = (uint32_t)out[0] << 24 | (uint32_t)out[1] << 16 | (uint32_t)out[2] << 8 | out[3];
    uint32_t r = 0;
    int bit, v;

    pace(p);
    if (gset(p, 1u << L_SCK | 1u << L_MOSI, (word >> 31) << L_MOSI) != 0)
        return -1;
    mark_edge(p);
    for (bit = 31; bit >= 0; bit--) {
        pace(p);
        if (gset(p, 1u << L_SCK, 1u << L_SCK) != 0)
            return -1;
        mark_edge(p);
        v = 0;
        if (((want >> ((31 - bit) / 8)) & 1) &&
            fh_gpio_get(p->g, L_MISO, &v, p->err, sizeof p->err) != 0)
            return -1;
        r = r << 1 | (uint32_t)v;
        if (bit > 0) {
            /* SCK falls; the next bit goes out on MOSI in the same operation. */
            pace(p);
            if (gset(p, 1u << L_SCK | 1u << L_MOSI, ((word >> (bit - 1)) & 1) << L_MOSI) != 0)
                return -1;
            mark_edge(p);
        }
    }
    p->bits += 32;
    p->commands++;
    if (p->tracing) {
        if (p->trace_len + 4 > p->trace_cap) {
            size_t cap = p->trace_cap ? p->trace_cap * 2 : 4096;
            uint8_t *t = realloc(p->trace, cap);
            if (t == NULL) {
                snprintf(p->err, sizeof p->err, "isp: out of memory for the trace");
                return -1;
            }
            p->trace = t;
            p->trace_cap = cap;
        }
        memcpy(p->trace + p->trace_len, out, 4);
        p->trace_len += 4;
    }
    in[0] = (uint8_t)(r >> 24);
    in[1] = (uint8_t)(r >> 16);
    in[2] = (uint8_t)(r >> 8);
    in[3] = (uint8_t)r;
    return 0;
}

static int cmd(Isp *p, uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t *res)
{
    uint8_t out[4] = {a, b, c, d}, in[4];

    if (transfer(p, out, in, answer_bytes(out)) != 0)
        return -1;
    if (res != NULL)
        *res = in[3];
    return 0;
}

/* Waits for the end of a write: RDY/BSY polling, or the datasheet delay. */
static int wait_ready(Isp *p, uint32_t t_wd_us, const char *what)
{
    struct timespec start;
    long long limit = (long long)t_wd_us * POLL_LIMIT_FACTOR * 1000 + 50000000LL;
    uint8_t r;

    if (!p->poll) {
        sleep_us(p, t_wd_us);
        return 0;
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        /* The deadline is checked before the poll, so the last poll is
         * always made after it: a process descheduled past the deadline
         * asks once more instead of blaming the MCU. */
        int late = ns_since(&start) > limit;

        p->polls++;
        if (cmd(p, 0xF0, 0x00, 0x00, 0x00, &r) != 0)
            return -1;
        if (!(r & 1))
            return 0;
        if (late) {
            snprintf(p->err, sizeof p->err, "%s: the MCU still reports busy after %lld ms",
                     what, ns_since(&start) / 1000000);
            return -1;
        }
        /* Still busy: ask again a little later rather than flooding the
         * lines (a poll is 32 SCK cycles, ~75 system calls on sysfs). */
        {
            struct timespec ts = {0, POLL_INTERVAL_NS};
            nanosleep(&ts, NULL);
            p->poll_wait_us += POLL_INTERVAL_NS / 1000;
        }
    }
}

/* Sends Load Extended Address when the word address crosses 64K words. */
static int ext_addr(Isp *p, uint32_t word)
{
    int ext = (int)((word >> 16) & 0xFF);

    if (!FH_AVR_NEEDS_EXT_ADDR(&p->part) || ext == p->ext)
        return 0;
    if (cmd(p, 0x4D, 0x00, (uint8_t)ext, 0x00, NULL) != 0)
        return -1;
    p->ext = ext;
    return 0;
}

/* ------------------------------------------------------------------ Lua */

static Isp *check_isp(lua_State *L)
{
    Isp *p = (Isp *)luaL_checkudata(L, 1, ISP_MT);

    if (p->g == NULL || !p->g->open)
        luaL_error(L, "attempt to use a programmer whose GPIO lines are closed");
    return p;
}

static Isp *check_connected(lua_State *L)
{
    Isp *p = check_isp(L);

    if (!p->connected)
        luaL_error(L, "the programmer is not connected (call connect() first)");
    return p;
}

static int fail(lua_State *L, Isp *p)
{
    return fh_result_msg(L, "%s", p->err);
}

/*
 * isp.new(lines, part[, opts]) -> programmer
 * lines: a fotahost.gpio set of 4 lines: RESET, SCK, MOSI (outputs) and
 * MISO (input). opts.half_period_ns (0..1e9, required), opts.poll
 * (default true), opts.retries (Programming Enable attempts, 1..100,
 * default 4).
 */
static int l_new(lua_State *L)
{
    fh_gpio *g = fh_gpio_check(L, 1);
    lua_Integer half_ns, retries;
    Isp *p;

    if (g->nlines != 4 || (g->outputs & 0xF) != 0x7)
        return luaL_argerror(L, 1, "4 lines expected: RESET, SCK, MOSI as outputs, MISO as input");
    luaL_checktype(L, 2, LUA_TTABLE);
    /* The pace is the caller's: it depends on the MCU's clock, which only
     * the session knows (fotahost.avr.isp clamps it to the part's limit).
     * No default here, so no caller gets a pace chosen for another clock. */
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lua_getfield(L, 3, "half_period_ns") != LUA_TNUMBER)
        return luaL_argerror(L, 3, "half_period_ns expected (the SCK half-period for this MCU's clock)");
    lua_pop(L, 1);
    p = (Isp *)lua_newuserdatauv(L, sizeof *p, 1);
    memset(p, 0, sizeof *p);
    luaL_setmetatable(L, ISP_MT);
    fh_avr_part_get(L, 2, &p->part);
    p->g = g;
    p->poll = 1;
    p->retries = 4;
    p->ext = -1;
    lua_getfield(L, 3, "half_period_ns");
    half_ns = luaL_checkinteger(L, -1);
    lua_getfield(L, 3, "poll");
    if (!lua_isnil(L, -1))
        p->poll = lua_toboolean(L, -1);
    lua_getfield(L, 3, "retries");
    retries = luaL_optinteger(L, -1, 4);
    lua_getfield(L, 3, "trace");
    p->tracing = lua_toboolean(L, -1);
    lua_pop(L, 4);
    /* checked as lua_Integer: a long is 32 bits on the board */
    luaL_argcheck(L, half_ns >= 0 && half_ns <= HALF_NS_MAX && retries >= 1 && retries <= 100, 3,
                  "half_period_ns 0..1000000000 and retries 1..100");
    p->half_ns = (long)half_ns;
    p->retries = (int)retries;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1); /* keep the lines alive as long as we are */
    /* The pauses between RDY/BSY polls are short; the kernel's default
     * 50 us timer slack would double them. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    mark_edge(p);
    return 1;
}

/*
 * prog:connect() -> true | nil, err
 * Datasheet sequence: SCK low, a positive pulse on RESET, 20 ms, then
 * Programming Enable, which must echo 0x53 in its third byte. Out of sync:
 * pulse RESET and try again, at most `retries` times.
 */
static int l_connect(lua_State *L)
{
    Isp *p = check_isp(L);
    uint8_t in[4], seen_or = 0, seen_and = 0xFF;
    static const uint8_t enable[4] = {0xAC, 0x53, 0x00, 0x00};
    int i;

    p->connected = 0;
    p->ext = -1;
    for (i = 0; i < p->retries; i++) {
        struct timespec t;
        p->enable_tries++;
        /* The datasheet's RESET pulse comes with SCK low; a failed attempt
         * leaves SCK high (transfer() does), so it is lowered every time. */
        pace(p);
        if (gset(p, 1u << L_SCK | 1u << L_MOSI, 0) != 0)
            return fail(L, p);
        mark_edge(p);
        if (gset(p, 1u << L_RESET, 1u << L_RESET) != 0)
            return fail(L, p);
        clock_gettime(CLOCK_MONOTONIC, &t);
        while (ns_since(&t) < RESET_PULSE_NS)
            ;
        if (gset(p, 1u << L_RESET, 0) != 0)
            return fail(L, p);
        sleep_us(p, ENABLE_WAIT_US);
        if (transfer(p, enable, in, answer_bytes(enable)) != 0)
            return fail(L, p);
        seen_or |= in[1] | in[2] | in[3];
        seen_and &= in[1] & in[2] & in[3];
        if (in[2] == 0x53) {
            p->connected = 1;
            lua_pushboolean(L, 1);
            return 1;
        }
    }
    if (seen_or == 0x00 || seen_and == 0xFF)
        return fh_result_msg(L, "%s: no answer from the MCU (MISO stays %d) after %d attempts: "
                             "check the wiring, the power, the MOSI/MISO lines, and the MCU's "
                             "clock (a slower clock needs a slower SCK: -B)",
                             p->g->chip, seen_or ? 1 : 0, p->retries);
    snprintf(p->err, sizeof p->err, "%s: the MCU does not echo Programming Enable (got 0x%02X, "
             "expected 0x53) after %d attempts: out of sync, wrong pins, or SCK too fast for the "
             "MCU's clock", p->g->chip, in[2], p->retries);
    return fail(L, p);
}

/* prog:cmd(b1, b2, b3, b4) -> r1, r2, r3, r4 | nil, err: one raw instruction,
 * all four answer bytes read (the caller knows what it asked). A byte
 * outside 0..255 is refused: cut to 8 bits it would be another instruction. */
static int l_cmd(lua_State *L)
{
    Isp *p = check_isp(L);
    uint8_t out[4], in[4];
    int i;

    for (i = 0; i < 4; i++) {
        lua_Integer b = luaL_checkinteger(L, 2 + i);
        if (b < 0 || b > 255)
            return luaL_argerror(L, 2 + i, lua_pushfstring(L, "not a byte (0..255): %I", b));
        out[i] = (uint8_t)b;
    }
    if (transfer(p, out, in, ANSWER_ALL) != 0)
        return fail(L, p);
    for (i = 0; i < 4; i++)
        lua_pushinteger(L, in[i]);
    return 4;
}

/* prog:signature() -> 3-byte string | nil, err */
static int l_signature(lua_State *L)
{
    Isp *p = check_connected(L);
    uint8_t sig[3];
    int i;

    for (i = 0; i < 3; i++)
        if (cmd(p, 0x30, 0x00, (uint8_t)i, 0x00, &sig[i]) != 0)
            return fail(L, p);
    lua_pushlstring(L, (const char *)sig, 3);
    return 1;
}

/* prog:erase() -> true | nil, err: Chip Erase, then wait until done */
static int l_erase(lua_State *L)
{
    Isp *p = check_connected(L);

    if (cmd(p, 0xAC, 0x80, 0x00, 0x00, NULL) != 0 ||
        wait_ready(p, p->part.t_wd_erase_us, "chip erase") != 0)
        return fail(L, p);
    p->ext = -1;
    lua_pushboolean(L, 1);
    return 1;
}

/*
 * prog:write_page(addr, data) -> true (written) | false (nothing to write)
 *                              | nil, err
 * addr: byte address of a flash page; data: up to one page, 0xFF beyond.
 * A page write can only clear bits, so 0xFF words are never loaded and an
 * all-0xFF page is not written at all.
 */
static int l_write_page(lua_State *L)
{
    Isp *p = check_connected(L);
    lua_Integer addr = luaL_checkinteger(L, 2);
    size_t len, i;
    const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 3, &len);
    uint32_t page = p->part.flash_page, word;
    int loaded = 0;

    luaL_argcheck(L, addr >= 0 && (uint64_t)addr < p->part.flash_size && addr % page == 0, 2,
                  "not the start of a flash page");
    luaL_argcheck(L, len <= page, 3, "more than one page of data");
    for (i = 0; i < len; i += 2) {
        uint8_t lo = data[i], hi = i + 1 < len ? data[i + 1] : 0xFF;
        uint8_t off = (uint8_t)((i / 2) & 0xFF);
        if (lo == 0xFF && hi == 0xFF)
            continue;
        if (cmd(p, 0x40, 0x00, off, lo, NULL) != 0 || cmd(p, 0x48, 0x00, off, hi, NULL) != 0)
            return fail(L, p);
        loaded = 1;
    }
    if (!loaded) {
        lua_pushboolean(L, 0);
        return 1;
    }
    word = (uint32_t)addr / 2;
    if (ext_addr(p, word) != 0 ||
        cmd(p, 0x4C, (uint8_t)(word >> 8), (uint8_t)word, 0x00, NULL) != 0)
        return fail(L, p);
    if (wait_ready(p, p->part.t_wd_flash_us, "flash page write") != 0) {
        snprintf(p->err + strlen(p->err), sizeof p->err - strlen(p->err), " (page at 0x%05lX)",
                 (unsigned long)addr);
        return fail(L, p);
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Reads len bytes of flash or EEPROM from addr, one instruction a byte. */
static int read_memory(lua_State *L, int eeprom)
{
    Isp *p = check_connected(L);
    lua_Integer addr = luaL_checkinteger(L, 2), len = luaL_checkinteger(L, 3), i;
    uint32_t size = eeprom ? p->part.eeprom_size : p->part.flash_size;
    luaL_Buffer b;

    /* len compared with what is left: addr + len could overflow */
    luaL_argcheck(L, addr >= 0 && len >= 0 && addr <= (lua_Integer)size && len <= (lua_Integer)size - addr, 3,
                  eeprom ? "range outside the EEPROM" : "range outside the flash");
    luaL_buffinit(L, &b);
    for (i = addr; i < addr + len; i++) {
        uint32_t word = (uint32_t)i / 2;
        uint8_t v;
        int rc = eeprom ? cmd(p, 0xA0, (uint8_t)(i >> 8), (uint8_t)i, 0x00, &v)
                        : ext_addr(p, word) != 0 ? -1
                        : cmd(p, (i & 1) ? 0x28 : 0x20, (uint8_t)(word >> 8), (uint8_t)word, 0x00, &v);
        if (rc != 0)
            return fail(L, p);
        luaL_addchar(&b, (char)v);
    }
    luaL_pushresult(&b);
    return 1;
}

/* prog:read_flash(addr, len) -> string | nil, err */
static int l_read_flash(lua_State *L)
{
    return read_memory(L, 0);
}

/* prog:read_eeprom(addr, len) -> string | nil, err */
static int l_read_eeprom(lua_State *L)
{
    return read_memory(L, 1);
}

/*
 * prog:write_eeprom(addr, data) -> true | nil, err
 * Page by page (Load EEPROM Page, Write EEPROM Page), each page waited for.
 */
static int l_write_eeprom(lua_State *L)
{
    Isp *p = check_connected(L);
    lua_Integer addr = luaL_checkinteger(L, 2);
    size_t len, i = 0;
    const uint8_t *data = (const uint8_t *)luaL_checklstring(L, 3, &len);
    uint32_t pg = p->part.eeprom_page;

    luaL_argcheck(L, addr >= 0 && (uint64_t)addr + len <= p->part.eeprom_size, 3,
                  "range outside the EEPROM");
    while (i < len) {
        uint32_t a = (uint32_t)addr + (uint32_t)i, start = a & ~(pg - 1);
        for (; i < len && (((uint32_t)addr + (uint32_t)i) & ~(pg - 1)) == start; i++) {
            uint32_t ai = (uint32_t)addr + (uint32_t)i;
            if (cmd(p, 0xC1, 0x00, (uint8_t)(ai & (pg - 1)), data[i], NULL) != 0)
                return fail(L, p);
        }
        if (cmd(p, 0xC2, (uint8_t)(start >> 8), (uint8_t)start, 0x00, NULL) != 0 ||
            wait_ready(p, p->part.t_wd_eeprom_us, "EEPROM page write") != 0)
            return fail(L, p);
    }
    lua_pushboolean(L, 1);
    return 1;
}

static const char *const fuse_names[] = {"lfuse", "hfuse", "efuse", "lock", NULL};
static const uint8_t fuse_read[FH_NFUSES][2] = {{0x50, 0x00}, {0x58, 0x08}, {0x50, 0x08}, {0x58, 0x00}};
static const uint8_t fuse_write[FH_NFUSES] = {0xA0, 0xA8, 0xA4, 0xE0};

static int fuse_arg(lua_State *L, Isp *p, int arg)
{
    int f = luaL_checkoption(L, arg, NULL, fuse_names);

    if (f == FH_EFUSE && !p->part.has_efuse)
        luaL_argerror(L, arg, lua_pushfstring(L, "%s has no extended fuse", p->part.desc));
    return f;
}

/* prog:read_fuse(name) -> byte | nil, err; name: lfuse, hfuse, efuse, lock */
static int l_read_fuse(lua_State *L)
{
    Isp *p = check_connected(L);
    int f = fuse_arg(L, p, 2);
    uint8_t v;

    if (cmd(p, fuse_read[f][0], fuse_read[f][1], 0x00, 0x00, &v) != 0)
        return fail(L, p);
    lua_pushinteger(L, v);
    return 1;
}

/*
 * prog:write_fuse(name, value) -> value read back | nil, err
 * Only the bits of the part's mask are compared: the lock byte's bits 7:6
 * do not exist and read 1, so writing 0x0F and reading 0xCF is success.
 * The lock byte goes on the wire with bits 7:6 set, as the datasheet says.
 */
static int l_write_fuse(lua_State *L)
{
    Isp *p = check_connected(L);
    int f = fuse_arg(L, p, 2);
    lua_Integer value = luaL_checkinteger(L, 3);
    uint8_t mask = p->part.fuse_mask[f], wire, back;

    luaL_argcheck(L, value >= 0 && value <= 255, 3, "not a byte");
    wire = f == FH_LOCK ? (uint8_t)(value | 0xC0) : (uint8_t)value;
    if (cmd(p, 0xAC, fuse_write[f], 0x00, wire, NULL) != 0 ||
        wait_ready(p, p->part.t_wd_fuse_us, fuse_names[f]) != 0 ||
        cmd(p, fuse_read[f][0], fuse_read[f][1], 0x00, 0x00, &back) != 0)
        return fail(L, p);
    if ((back & mask) != (value & mask)) {
        snprintf(p->err, sizeof p->err, "%s: wrote 0x%02X, read back 0x%02X (bits compared: 0x%02X)",
                 fuse_names[f], (unsigned)value, back, mask);
        return fail(L, p);
    }
    lua_pushinteger(L, back);
    return 1;
}

/* prog:trace() -> string of every instruction sent (4 bytes each), when
 * created with opts.trace. For benchmarks: replay it on another backend. */
static int l_trace(lua_State *L)
{
    Isp *p = (Isp *)luaL_checkudata(L, 1, ISP_MT);

    lua_pushlstring(L, (const char *)p->trace, p->trace_len);
    return 1;
}

/*
 * prog:replay(trace) -> true | nil, err: sends the instructions of a trace
 * as they are, with the same bit-level code and the same MISO reads as a
 * session (answers ignored).
 * It measures what a backend costs for exactly the traffic of a real job.
 */
static int l_replay(lua_State *L)
{
    Isp *p = check_isp(L);
    size_t len, i;
    const uint8_t *t = (const uint8_t *)luaL_checklstring(L, 2, &len);
    uint8_t in[4];

    luaL_argcheck(L, len % 4 == 0, 2, "a trace is a multiple of 4 bytes");
    for (i = 0; i < len; i += 4)
        if (transfer(p, t + i, in, answer_bytes(t + i)) != 0)
            return fail(L, p);
    lua_pushboolean(L, 1);
    return 1;
}

static int l_gc(lua_State *L)
{
    Isp *p = (Isp *)luaL_checkudata(L, 1, ISP_MT);

    free(p->trace);
    p->trace = NULL;
    p->trace_len = p->trace_cap = 0;
    return 0;
}

/* prog:release(): RESET deasserted, the MCU runs; lines stay open. */
static int l_release(lua_State *L)
{
    Isp *p = check_isp(L);

    p->connected = 0;
    if (gset(p, 1u << L_RESET | 1u << L_SCK | 1u << L_MOSI, 1u << L_RESET) != 0)
        return fail(L, p);
    lua_pushboolean(L, 1);
    return 1;
}

/* prog:stats() -> table of counters (for benchmarks and progress) */
static int l_stats(lua_State *L)
{
    Isp *p = (Isp *)luaL_checkudata(L, 1, ISP_MT);

    lua_createtable(L, 0, 9);
    lua_pushinteger(L, (lua_Integer)p->commands);
    lua_setfield(L, -2, "commands");
    lua_pushinteger(L, (lua_Integer)p->bits);
    lua_setfield(L, -2, "bits");
    lua_pushinteger(L, (lua_Integer)p->polls);
    lua_setfield(L, -2, "polls");
    lua_pushinteger(L, (lua_Integer)p->enable_tries);
    lua_setfield(L, -2, "enable_tries");
    lua_pushinteger(L, (lua_Integer)p->sleep_us);
    lua_setfield(L, -2, "sleep_us");
    lua_pushinteger(L, (lua_Integer)p->poll_wait_us);
    lua_setfield(L, -2, "poll_wait_us");
    if (p->g != NULL) {
        lua_pushinteger(L, (lua_Integer)p->g->set_calls);
        lua_setfield(L, -2, "gpio_sets");
        lua_pushinteger(L, (lua_Integer)p->g->get_calls);
        lua_setfield(L, -2, "gpio_gets");
        lua_pushinteger(L, (lua_Integer)p->g->syscalls);
        lua_setfield(L, -2, "syscalls");
    }
    return 1;
}

static int l_tostring(lua_State *L)
{
    Isp *p = (Isp *)luaL_checkudata(L, 1, ISP_MT);

    lua_pushfstring(L, "isp programmer for %s (%s)", p->part.desc,
                    p->connected ? "connected" : "not connected");
    return 1;
}

static const luaL_Reg methods[] = {
    {"connect", l_connect},
    {"cmd", l_cmd},
    {"signature", l_signature},
    {"erase", l_erase},
    {"write_page", l_write_page},
    {"read_flash", l_read_flash},
    {"read_eeprom", l_read_eeprom},
    {"write_eeprom", l_write_eeprom},
    {"read_fuse", l_read_fuse},
    {"write_fuse", l_write_fuse},
    {"release", l_release},
    {"stats", l_stats},
    {"trace", l_trace},
    {"replay", l_replay},
    {NULL, NULL},
};

static const luaL_Reg meta[] = {
    {"__index", NULL},
    {"__gc", l_gc},
    {"__tostring", l_tostring},
    {NULL, NULL},
};

static const luaL_Reg funcs[] = {
    {"new", l_new},
    {NULL, NULL},
};

int luaopen_fotahost_avr_isp_core(lua_State *L);

int luaopen_fotahost_avr_isp_core(lua_State *L)
{
    fh_new_class(L, ISP_MT, meta, methods);
    luaL_newlib(L, funcs);
    return 1;
}
