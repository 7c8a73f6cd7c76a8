/*
 * gpio_sim.c: `fotahost.gpio_sim`, the GPIO backend "sim": in-process
 * lines wired to the simulated chip (dev/plugins/avrsim), the way the
 * LinkIt Smart 7688 Duo wires its MT7688 to the ATmega32U4:
 *
 *   GPIO3  -> RESET (the board pulls it up: a released line means "run")
 *   GPIO15 -> SCK
 *   GPIO16 -> PDI (the chip's MOSI)      boards before revision 3: PDO
 *   GPIO17 <- PDO (the chip's MISO)      boards before revision 3: PDI
 *
 * `chip` is the directory holding the simulated chip (flash.bin, ...). The
 * board revision is byte 1043 of DIR/mtd2, as on the real board's factory
 * partition (/dev/mtd2); without that file the board is revision 3.
 * Other line numbers are plain latches.
 *
 * Fault knobs for tests of whole programs (fotahost flash, the FOTA
 * policy): DIR/faults, one per line: "silent", "miso_stuck 0|1",
 * "bit_error N", "slow_write K" (see avrsim.h), and "clock HZ": the MCU's
 * clock (default 8 MHz; a new chip's CKDIV8 fuse makes it 1 MHz), which
 * sets the shortest legal SCK half-period. Read when the lines open.
 *
 * The virtual board (another process, running the MCU from flash.bin)
 * follows RESET through DIR/reset: "0" while an ISP session holds RESET
 * low (the MCU must halt), "1" once it is released and flash.bin saved
 * (the MCU restarts from the new flash). Each change replaces the file
 * atomically.
 *
 * The chip's memories are saved whenever RESET is released (the MCU starts
 * running the new flash, and another process, the virtual board, may read
 * it) and on close.
 *
 * A plugin of the development wing: requiring it registers the backend
 * with fotahost.gpio, which does so itself the first time "sim" is asked
 * for. Options of gpio.open{} read here: part (a part table or id, for a
 * chip that does not exist yet: an existing chip keeps the part its
 * fuses.txt names) and factory (a new chip's fuses {lfuse=, ...}).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avr/part.h"
#include "avrsim/avrsim.h"
#include "fotahost.h"
#include "gpio/gpio.h"

#define SIM_GPIO_RESET 3
#define SIM_GPIO_SCK 15
#define SIM_GPIO_A 16 /* PDI on revision >= 3 */
#define SIM_GPIO_B 17 /* PDO on revision >= 3 */
#define REVISION_OFFSET 1043
/* The MCU's clock unless DIR/faults says otherwise: the board's 8 MHz. */
#define SIM_CLOCK_HZ 8000000L
/* RESET high this long (or at close) counts as released: see settle_release(). */
#define RELEASE_SETTLE_NS 1000000LL

enum role { ROLE_NONE, ROLE_RESET, ROLE_SCK, ROLE_PDI, ROLE_PDO };

/* What gpio.open{} tells the chip to create, when it must. */
struct sim_opts {
    struct fh_avr_part part;
    int has_part;
    uint8_t factory[FH_NFUSES];
    int has_factory;
};

struct sim_ctx {
    avrsim *chip;
    enum role role[FH_GPIO_MAX_LINES];
    int reset_level; /* what the chip saw last */
    int published;   /* the level DIR/reset shows: 1 running, 0 halted */
    int release_pending;
    long long release_since;
    int line_of[ROLE_PDO + 1]; /* the line wired to each pin, or -1 */
    unsigned long violations_logged;
};

/*
 * Appends the chip's new timing and protocol violations (SCK too fast,
 * access while busy, enable too early) to DIR/violations.log: a programmer
 * that breaks the datasheet's rules leaves a trace tests can check.
 */
static void log_violations(struct sim_ctx *c)
{
    struct avrsim_stats st;
    char path[512];
    FILE *f;

    avrsim_stats(c->chip, &st);
    if (st.violations <= c->violations_logged)
        return;
    snprintf(path, sizeof path, "%s/violations.log", avrsim_dir(c->chip));
    f = fopen(path, "ae");
    if (f != NULL) {
        fprintf(f, "%lu violation(s); the last: %s\n", st.violations - c->violations_logged,
                st.last_violation);
        fclose(f);
    }
    c->violations_logged = st.violations;
}

/* The board revision from DIR/mtd2, or 3 when unknown. */
static int board_revision(const char *dir)
{
    char path[512];
    FILE *f;
    int c = EOF;

    snprintf(path, sizeof path, "%s/mtd2", dir);
    f = fopen(path, "rbe");
    if (f == NULL)
        return 3;
    if (fseek(f, REVISION_OFFSET, SEEK_SET) == 0)
        c = fgetc(f);
    fclose(f);
    return c == EOF ? 3 : c;
}

/* Level the chip sees on the pin of `role`: driven by an output line, or
 * the board's default (RESET pulled up, the others low). */
static int pin_level(fh_gpio *g, struct sim_ctx *c, enum role r)
{
    int i = c->line_of[r];

    if (i >= 0 && ((g->outputs >> i) & 1))
        return (int)((g->state >> i) & 1);
    return r == ROLE_RESET;
}

/*
 * Reads DIR/faults, if any: applies the faults to `chip`, or, with chip
 * NULL, only finds the clock (the chip is opened with the SCK limit it
 * implies). Unknown lines are an error: a typo must not silently run a test
 * without its fault.
 */
static int load_faults(avrsim *chip, const char *dir, long *clock_hz, char *err, size_t errlen)
{
    static const struct { const char *name; enum avrsim_fault f; } names[] = {
        {"silent", AVRSIM_SILENT}, {"miso_stuck", AVRSIM_MISO_STUCK},
        {"bit_error", AVRSIM_BIT_ERROR}, {"slow_write", AVRSIM_SLOW_WRITE},
    };
    char path[512], line[128], word[32];
    int lineno = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/faults", dir);
    f = fopen(path, "re");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL) {
        long param = 0;
        size_t k;
        int n = sscanf(line, "%31s %ld", word, &param);
        lineno++;
        if (n < 1 || word[0] == '#')
            continue;
        if (strcmp(word, "clock") == 0) {
            if (n < 2 || param < 1000 || param > 20000000) {
                snprintf(err, errlen, "%s:%d: clock takes the MCU's frequency in Hz (1000 to 20000000)",
                         path, lineno);
                fclose(f);
                return -1;
            }
            *clock_hz = param;
            continue;
        }
        for (k = 0; k < sizeof names / sizeof names[0]; k++)
            if (strcmp(word, names[k].name) == 0)
                break;
        if (k == sizeof names / sizeof names[0]) {
            snprintf(err, errlen, "%s:%d: unknown fault '%s' (silent, miso_stuck, bit_error, slow_write, clock)",
                     path, lineno, word);
            fclose(f);
            return -1;
        }
        if (chip != NULL)
            avrsim_set_fault(chip, names[k].f, param);
    }
    fclose(f);
    return 0;
}

/* The shortest legal SCK high or low time at clock_hz: more than 2 CPU
 * clocks below 12 MHz, 3 from 12 MHz on (so SCK at most a quarter of the
 * MCU's clock: 250 ns at 8 MHz). */
static long min_half_ns(long clock_hz)
{
    long long cycles = clock_hz >= 12000000L ? 3 : 2;

    return (long)((cycles * 1000000000LL + clock_hz - 1) / clock_hz);
}

/* Publishes the RESET level in DIR/reset for the virtual board. */
static int publish_reset(struct sim_ctx *c, int level, char *err, size_t errlen)
{
    char path[512], tmp[520];
    FILE *f;

    snprintf(path, sizeof path, "%s/reset", avrsim_dir(c->chip));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    f = fopen(tmp, "we");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    if (fprintf(f, "%d\n", level) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -1;
    }
    return 0;
}

static long long now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/*
 * Saves the chip and tells the virtual board the MCU runs (DIR/reset = 1).
 * Done once RESET has stayed released for RELEASE_SETTLE_NS (or when the
 * lines close): the few-microsecond RESET pulse of a Programming Enable
 * retry is not a release, and saving on it would stretch it to
 * milliseconds, long enough for the board to start the MCU.
 */
static int settle_release(struct sim_ctx *c, char *err, size_t errlen)
{
    c->release_pending = 0;
    log_violations(c);
    if (avrsim_save(c->chip, err, errlen) != 0 || publish_reset(c, 1, err, errlen) != 0)
        return -1;
    c->published = 1;
    return 0;
}

static int drive(fh_gpio *g, struct sim_ctx *c, char *err, size_t errlen)
{
    int reset = pin_level(g, c, ROLE_RESET);

    if (!reset && c->reset_level) {
        c->release_pending = 0;
        if (c->published) {
            /* the board halts the MCU before the ISP traffic */
            if (publish_reset(c, 0, err, errlen) != 0)
                return -1;
            c->published = 0;
        }
    }
    avrsim_set_pins(c->chip, reset, pin_level(g, c, ROLE_SCK), pin_level(g, c, ROLE_PDI));
    if (reset && !c->reset_level)
        c->release_since = now_ns(), c->release_pending = 1;
    c->reset_level = reset;
    if (c->release_pending && now_ns() - c->release_since >= RELEASE_SETTLE_NS)
        return settle_release(c, err, errlen);
    return 0;
}

/*
 * Fills so->part from require("fotahost.avr.parts").get(id). An unknown id
 * raises when `must`, else leaves `so` as it was.
 */
static void lookup_part(lua_State *L, const char *id, struct sim_opts *so, int must)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "fotahost.avr.parts");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "get");
    lua_pushstring(L, id);
    lua_call(L, 1, 2);
    if (lua_istable(L, -2)) {
        fh_avr_part_get(L, -2, &so->part);
        so->has_part = 1;
    } else if (must) {
        luaL_error(L, "gpio.open: sim: %s", luaL_optstring(L, -1, "no such part"));
    }
    lua_pop(L, 3);
}

/*
 * When DIR/fuses.txt names another part than gpio.open{} gave, that part:
 * a simulated chip is what it is,
 * as a real one, and the programmer's signature check says it is not the
 * part asked for. An unknown id changes nothing (avrsim_open then says the
 * file is another part's). So callers give the part they want and need
 * not know the chip's files.
 */
static void chip_own_part(lua_State *L, const char *dir, struct sim_opts *so)
{
    char path[512], line[64], id[sizeof so->part.id];
    int found = 0;
    FILE *f;

    snprintf(path, sizeof path, "%s/fuses.txt", dir);
    f = fopen(path, "re");
    if (f == NULL)
        return;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = sscanf(line, "part=%15[A-Za-z0-9_]", id) == 1;
    fclose(f);
    if (found && !(so->has_part && strcmp(id, so->part.id) == 0))
        lookup_part(L, id, so, 0);
}

/* Reads part= (a part table, or a part's id: then the product's part
 * table need not cross into C for the simulator) and factory= of the
 * gpio.open{} table (a bad part raises), then the part of the chip
 * already in `dir`. */
static void read_opts(const struct fh_gpio_opts *opts, const char *dir, struct sim_opts *so)
{
    static const char *const names[FH_NFUSES] = {"lfuse", "hfuse", "efuse", "lock"};
    lua_State *L = opts->L;
    int i;

    memset(so, 0, sizeof *so);
    if (L == NULL)
        return;
    switch (lua_getfield(L, opts->args, "part")) {
    case LUA_TTABLE:
        fh_avr_part_get(L, -1, &so->part);
        so->has_part = 1;
        break;
    case LUA_TSTRING:
        lookup_part(L, lua_tostring(L, -1), so, 1);
        break;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, opts->args, "factory") == LUA_TTABLE) {
        for (i = 0; i < FH_NFUSES; i++) {
            lua_getfield(L, -1, names[i]);
            so->factory[i] = (uint8_t)luaL_optinteger(L, -1, 0xFF);
            lua_pop(L, 1);
        }
        so->has_factory = 1;
    }
    lua_pop(L, 1);
    chip_own_part(L, dir, so);
}

static int sim_open(fh_gpio *g, const char *chip, uint32_t initial,
                    const struct fh_gpio_opts *opts, char *err, size_t errlen)
{
    struct sim_opts so;
    struct sim_ctx *c;
    long clock_hz = SIM_CLOCK_HZ;
    int i, rev;

    (void)initial; /* already in g->state */
    read_opts(opts, chip, &so);
    if (!so.has_part) {
        snprintf(err, errlen, "%s: the sim backend needs the part of the simulated chip", chip);
        return -1;
    }
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        snprintf(err, errlen, "sim: out of memory");
        return -1;
    }
    if (load_faults(NULL, chip, &clock_hz, err, errlen) != 0) {
        free(c);
        return -1;
    }
    c->chip = avrsim_open(chip, &so.part, so.has_factory ? so.factory : NULL, min_half_ns(clock_hz),
                          err, errlen);
    if (c->chip == NULL) {
        free(c);
        return -1;
    }
    if (load_faults(c->chip, chip, &clock_hz, err, errlen) != 0) {
        avrsim_free(c->chip);
        free(c);
        return -1;
    }
    rev = board_revision(chip);
    for (i = 0; i < g->nlines; i++) {
        switch (g->offsets[i]) {
        case SIM_GPIO_RESET: c->role[i] = ROLE_RESET; break;
        case SIM_GPIO_SCK: c->role[i] = ROLE_SCK; break;
        case SIM_GPIO_A: c->role[i] = rev >= 3 ? ROLE_PDI : ROLE_PDO; break;
        case SIM_GPIO_B: c->role[i] = rev >= 3 ? ROLE_PDO : ROLE_PDI; break;
        default: c->role[i] = ROLE_NONE; break;
        }
    }
    for (i = 0; i <= ROLE_PDO; i++)
        c->line_of[i] = -1;
    for (i = g->nlines - 1; i >= 0; i--)
        if (c->role[i] != ROLE_NONE)
            c->line_of[c->role[i]] = i;
    c->reset_level = 1;
    c->published = 1; /* a missing DIR/reset means running */
    g->ctx = c;
    if (drive(g, c, err, errlen) != 0) {
        avrsim_free(c->chip);
        free(c);
        g->ctx = NULL;
        return -1;
    }
    return 0;
}

static int sim_set(fh_gpio *g, uint32_t mask, uint32_t values, char *err, size_t errlen)
{
    uint32_t saved = g->state;
    int rv;

    /* fh_gpio_set updates g->state after we return; the chip needs the new
     * levels now. */
    g->state = (g->state & ~mask) | (values & mask);
    rv = drive(g, g->ctx, err, errlen);
    g->state = saved;
    return rv;
}

static int sim_get(fh_gpio *g, int line, int *value, char *err, size_t errlen)
{
    struct sim_ctx *c = g->ctx;

    (void)err;
    (void)errlen;
    if ((g->outputs >> line) & 1)
        *value = (int)((g->state >> line) & 1); /* an output reads what it drives */
    else if (c->role[line] == ROLE_PDO)
        *value = avrsim_miso(c->chip);
    else
        *value = c->role[line] == ROLE_RESET ? 1 : 0; /* pulled up, or floating low */
    return 0;
}

static void sim_close(fh_gpio *g)
{
    struct sim_ctx *c = g->ctx;
    char err[FH_GPIO_ERRLEN];

    if (c == NULL)
        return;
    g->outputs = 0; /* every line released: RESET goes up, the MCU runs */
    (void)drive(g, c, err, sizeof err);
    if (c->release_pending || !c->published) {
        (void)settle_release(c, err, sizeof err); /* saves, then DIR/reset = 1 */
    } else {
        log_violations(c);
        (void)avrsim_save(c->chip, err, sizeof err);
    }
    avrsim_free(c->chip);
    free(c);
    g->ctx = NULL;
}

static const struct fh_gpio_backend sim_backend = {
    "sim", sim_open, sim_set, sim_get, sim_close,
};

int luaopen_fotahost_gpio_sim(lua_State *L);

/* require "fotahost.gpio_sim" -> { backend = "sim" }, registered with
 * fotahost.gpio (loaded first, so the built-in backends come first). */
int luaopen_fotahost_gpio_sim(lua_State *L)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "fotahost.gpio");
    lua_call(L, 1, 0);
    fh_gpio_register(L, &sim_backend);
    lua_createtable(L, 0, 1);
    lua_pushstring(L, sim_backend.name);
    lua_setfield(L, -2, "backend");
    return 1;
}
