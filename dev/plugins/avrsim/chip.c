/*
 * chip.c: the simulated AVR behind avrsim.h. Pure C, no Lua.
 *
 * The serial interface is one shift register fed on SCK rising edges; what
 * MISO shows for byte k of an instruction is the byte received as byte k-1
 * (or, for byte 4 of a read, the data), loaded at the falling edge that
 * ends byte k-1. That is how silicon echoes 0x53 during Programming
 * Enable. Only an instruction whose first byte the chip recognises is
 * echoed (see known_opcode), which is why a stray SCK pulse makes the echo
 * wrong until a RESET pulse restarts the framing.
 *
 * The pin path (avrsim_set_pins) allocates nothing and makes no system
 * call but clock_gettime, which the vDSO answers.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "avrsim.h"

#define NS_PER_MS 1000000LL
#define ENABLE_WAIT_NS (20 * NS_PER_MS) /* after RESET falls (avr-isp.md 1.2) */
#define LOCK_UNUSED 0xC0                /* lock bits 7:6 read 1 */
#define HFUSE_EESAVE 0x08
#define FUSES_TXT_MAX 4096

enum op {
    OP_UNKNOWN,
    OP_ENABLE, OP_ERASE, OP_POLL, OP_EXT_ADDR,
    OP_LOAD_LO, OP_LOAD_HI, OP_WRITE_PAGE, OP_READ_LO, OP_READ_HI,
    OP_READ_EE, OP_WRITE_EE, OP_LOAD_EE, OP_WRITE_EE_PAGE,
    OP_READ_LOCK, OP_WRITE_LOCK, OP_READ_SIG, OP_READ_CAL,
    OP_WRITE_LFUSE, OP_WRITE_HFUSE, OP_WRITE_EFUSE,
    OP_READ_LFUSE, OP_READ_HFUSE, OP_READ_EFUSE,
};

/* For "<instruction> while busy"; the names of avr-isp.md's table. */
static const char *const op_names[] = {
    "unknown instruction",
    "Programming Enable", "Chip Erase", "Poll RDY/BSY", "Load Extended Address",
    "Load Program Memory Page low", "Load Program Memory Page high",
    "Write Program Memory Page", "Read Program Memory low", "Read Program Memory high",
    "Read EEPROM", "Write EEPROM", "Load EEPROM Page", "Write EEPROM Page",
    "Read Lock bits", "Write Lock bits", "Read Signature byte", "Read Calibration byte",
    "Write Fuse", "Write Fuse High", "Write Extended Fuse",
    "Read Fuse", "Read Fuse High", "Read Extended Fuse",
};

static const char *const fuse_keys[FH_NFUSES] = {"lfuse", "hfuse", "efuse", "lock"};

struct avrsim {
    struct fh_avr_part part;    /* a copy: the caller's may go away */
    char *dir;
    uint8_t *flash, *eeprom;
    uint8_t *pagebuf;           /* flash page buffer, erased = 0xFF */
    uint8_t *eebuf, *eeloaded;  /* EEPROM page buffer and which bytes were loaded */
    uint8_t fuses[FH_NFUSES];   /* lock kept with bits 7:6 set, as it reads */
    long min_half_ns;

    /* the pins as last seen */
    int reset, sck, mosi;
    int64_t reset_fall_ns;
    int64_t last_sck_ns;
    int sck_time_valid;         /* last_sck_ns is an edge seen while listening */

    /* serial framing */
    unsigned nbits;             /* bits of the current byte received, 0..7 */
    unsigned nbytes;            /* bytes of the current instruction received, 0..3 */
    uint8_t in_shift;
    uint8_t cmd[4];
    int known;                  /* byte 1 of this instruction is an opcode the chip knows */
    uint8_t out_next;           /* the next byte to shift out, loaded at a falling edge */
    uint8_t out_reg;            /* the byte being shifted out */
    int miso_level;

    /* programming state */
    int enabled;
    enum op op;                 /* decoded when byte 3 completes */
    int busy_seen;              /* busy when byte 3 completed */
    int64_t busy_until_ns;
    uint8_t latch;              /* Load Program Memory Page low byte */
    uint32_t ext;               /* Load Extended Address: word address bits 23:16 */

    /* faults */
    int silent;
    int stuck;                  /* -1, or the level MISO is stuck at */
    long bit_error_left;        /* -1: none; else rising edges until the flip */
    int miso_flip;              /* invert MISO until the next falling edge */
    long slow;                  /* busy period multiplier */

    struct avrsim_stats st;
};

static int64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    if (err == NULL || errlen == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static void violation(avrsim *s, const char *fmt, ...)
{
    va_list ap;

    s->st.violations++;
    va_start(ap, fmt);
    vsnprintf(s->st.last_violation, sizeof s->st.last_violation, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- instructions */

static enum op decode(const avrsim *s)
{
    const struct fh_avr_part *p = &s->part;
    uint8_t b1 = s->cmd[0], b2 = s->cmd[1];
    int ee = p->eeprom_size > 0;

    switch (b1) {
    case 0xAC:
        if (b2 == 0x53)
            return OP_ENABLE;
        if ((b2 & 0xE0) == 0x80)
            return OP_ERASE;
        if ((b2 & 0xE0) == 0xE0)
            return OP_WRITE_LOCK;
        if (b2 == 0xA0)
            return OP_WRITE_LFUSE;
        if (b2 == 0xA8)
            return OP_WRITE_HFUSE;
        if (b2 == 0xA4 && p->has_efuse)
            return OP_WRITE_EFUSE;
        return OP_UNKNOWN;
    case 0xF0: return OP_POLL;
    case 0x4D: return FH_AVR_NEEDS_EXT_ADDR(p) ? OP_EXT_ADDR : OP_UNKNOWN;
    case 0x40: return OP_LOAD_LO;
    case 0x48: return OP_LOAD_HI;
    case 0x4C: return OP_WRITE_PAGE;
    case 0x20: return OP_READ_LO;
    case 0x28: return OP_READ_HI;
    case 0xA0: return ee ? OP_READ_EE : OP_UNKNOWN;
    case 0xC0: return ee ? OP_WRITE_EE : OP_UNKNOWN;
    case 0xC1: return ee ? OP_LOAD_EE : OP_UNKNOWN;
    case 0xC2: return ee ? OP_WRITE_EE_PAGE : OP_UNKNOWN;
    case 0x58: return (b2 & 0x08) ? OP_READ_HFUSE : OP_READ_LOCK;
    case 0x50:
        if (b2 & 0x08)
            return p->has_efuse ? OP_READ_EFUSE : OP_UNKNOWN;
        return OP_READ_LFUSE;
    case 0x30: return OP_READ_SIG;
    case 0x38: return OP_READ_CAL;
    default: return OP_UNKNOWN;
    }
}

static int is_read(enum op op)
{
    switch (op) {
    case OP_POLL: case OP_READ_LO: case OP_READ_HI: case OP_READ_EE:
    case OP_READ_LOCK: case OP_READ_SIG: case OP_READ_CAL:
    case OP_READ_LFUSE: case OP_READ_HFUSE: case OP_READ_EFUSE:
        return 1;
    default:
        return 0;
    }
}

/* Lock bits LB (1:0) other than 11: memories and fuses can no longer be
 * programmed (datasheet lock modes 2 and 3). */
static int writes_locked(const avrsim *s)
{
    return (s->fuses[FH_LOCK] & 0x03) != 0x03;
}

/* LB = 00 (mode 3) also disables verification. What silicon returns then
 * is of no use; the model returns 0xFF. */
static int reads_locked(const avrsim *s)
{
    return (s->fuses[FH_LOCK] & 0x03) == 0x00;
}

static uint32_t flash_addr(const avrsim *s, int high)
{
    uint32_t word = (s->ext << 16) | ((uint32_t)s->cmd[1] << 8) | s->cmd[2];

    return (word * 2 + (uint32_t)high) % s->part.flash_size;
}

static uint32_t eeprom_addr(const avrsim *s)
{
    return (((uint32_t)s->cmd[1] << 8) | s->cmd[2]) % s->part.eeprom_size;
}

static uint8_t read_value(const avrsim *s, enum op op)
{
    switch (op) {
    case OP_POLL:
        return s->busy_seen ? 0x01 : 0x00;
    case OP_READ_LO:
    case OP_READ_HI:
        return reads_locked(s) ? 0xFF : s->flash[flash_addr(s, op == OP_READ_HI)];
    case OP_READ_EE:
        return reads_locked(s) ? 0xFF : s->eeprom[eeprom_addr(s)];
    case OP_READ_LOCK: return s->fuses[FH_LOCK];
    case OP_READ_LFUSE: return s->fuses[FH_LFUSE];
    case OP_READ_HFUSE: return s->fuses[FH_HFUSE];
    case OP_READ_EFUSE: return s->fuses[FH_EFUSE];
    case OP_READ_SIG: return (s->cmd[2] & 3) < 3 ? s->part.signature[s->cmd[2] & 3] : 0xFF;
    case OP_READ_CAL: return s->part.calibration;
    default: return s->cmd[2];
    }
}

static void start_busy(avrsim *s, int64_t now, uint32_t us)
{
    s->busy_until_ns = now + (int64_t)us * 1000 * s->slow;
}

static void enable(avrsim *s, int64_t now)
{
    int64_t since = now - s->reset_fall_ns;

    if (since < ENABLE_WAIT_NS) {
        violation(s, "programming enable only %ld ms after reset", (long)(since / NS_PER_MS));
        return;
    }
    if (s->busy_seen) {
        violation(s, "%s while busy", op_names[OP_ENABLE]);
        return;
    }
    s->enabled = 1;
    s->st.enables++;
}

static void chip_erase(avrsim *s, int64_t now)
{
    const struct fh_avr_part *p = &s->part;

    memset(s->flash, 0xFF, p->flash_size);
    if (s->fuses[FH_HFUSE] & HFUSE_EESAVE) /* EESAVE unprogrammed (1): EEPROM goes too */
        memset(s->eeprom, 0xFF, p->eeprom_size);
    s->fuses[FH_LOCK] = 0xFF;
    s->st.chip_erases++;
    start_busy(s, now, p->t_wd_erase_us);
    /* Every erase leaves a line in DIR/erases.log, so a test can tell that
     * the MCU was (or was never) erased, whatever came after. */
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s/erases.log", s->dir) < (int)sizeof path) {
        int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
            struct timespec ts;
            char line[64];
            clock_gettime(CLOCK_REALTIME, &ts);
            int n = snprintf(line, sizeof line, "%lld.%03ld chip erase\n", (long long)ts.tv_sec,
                             ts.tv_nsec / 1000000);
            if (write(fd, line, (size_t)n) < 0) {
                /* a test aid only: nothing to do */
            }
            close(fd);
        }
    }
}

static void write_page(avrsim *s, int64_t now)
{
    uint32_t page = s->part.flash_page;
    uint32_t base = flash_addr(s, 0) & ~(page - 1);
    uint32_t i;

    if (writes_locked(s))
        return;
    /* Programming can only clear bits: without an erase the result is the AND. */
    for (i = 0; i < page; i++)
        s->flash[base + i] &= s->pagebuf[i];
    memset(s->pagebuf, 0xFF, page);
    s->st.page_writes++;
    start_busy(s, now, s->part.t_wd_flash_us);
}

static void write_eeprom_page(avrsim *s, int64_t now)
{
    uint32_t page = s->part.eeprom_page;
    uint32_t base = eeprom_addr(s) & ~(page - 1);
    uint32_t i;

    if (writes_locked(s))
        return;
    for (i = 0; i < page && base + i < s->part.eeprom_size; i++)
        if (s->eeloaded[i])
            s->eeprom[base + i] = s->eebuf[i];
    memset(s->eebuf, 0xFF, page);
    memset(s->eeloaded, 0, page);
    s->st.eeprom_writes++;
    start_busy(s, now, s->part.t_wd_eeprom_us);
}

static void write_fuse(avrsim *s, int64_t now, int which)
{
    if (which == FH_LOCK) {
        /* lock bits can only be programmed (1 -> 0), never erased here */
        s->fuses[FH_LOCK] = (uint8_t)((s->fuses[FH_LOCK] & s->cmd[3]) | LOCK_UNUSED);
    } else {
        if (writes_locked(s))
            return;
        s->fuses[which] = s->cmd[3];
    }
    s->st.fuse_writes++;
    start_busy(s, now, s->part.t_wd_fuse_us);
}

/* A whole instruction is in: do it. */
static void execute(avrsim *s, int64_t now)
{
    enum op op = s->op;
    uint32_t i;

    s->st.commands++;
    if (op == OP_ENABLE) {
        enable(s, now);
        return;
    }
    if (!s->enabled)
        return; /* before Programming Enable, nothing else does anything */
    if (op == OP_POLL) {
        s->st.polls++;
        return;
    }
    if (s->busy_seen) {
        if (op == OP_UNKNOWN)
            violation(s, "instruction 0x%02X while busy", s->cmd[0]);
        else
            violation(s, "%s while busy", op_names[op]);
        return;
    }
    switch (op) {
    case OP_ERASE:
        chip_erase(s, now);
        break;
    case OP_EXT_ADDR:
        s->ext = s->cmd[2];
        break;
    case OP_LOAD_LO:
        s->latch = s->cmd[3];
        break;
    case OP_LOAD_HI:
        /* The word takes whatever low byte is latched: high before low
         * writes a stale one, as on silicon. */
        i = ((((uint32_t)s->cmd[1] << 8) | s->cmd[2]) & (s->part.flash_page / 2 - 1)) * 2;
        s->pagebuf[i] = s->latch;
        s->pagebuf[i + 1] = s->cmd[3];
        break;
    case OP_WRITE_PAGE:
        write_page(s, now);
        break;
    case OP_WRITE_EE:
        if (writes_locked(s))
            break;
        s->eeprom[eeprom_addr(s)] = s->cmd[3]; /* auto-erase: a plain store */
        s->st.eeprom_writes++;
        start_busy(s, now, s->part.t_wd_eeprom_us);
        break;
    case OP_LOAD_EE:
        i = (((uint32_t)s->cmd[1] << 8) | s->cmd[2]) & (s->part.eeprom_page - 1);
        s->eebuf[i] = s->cmd[3];
        s->eeloaded[i] = 1;
        break;
    case OP_WRITE_EE_PAGE:
        write_eeprom_page(s, now);
        break;
    case OP_WRITE_LOCK: write_fuse(s, now, FH_LOCK); break;
    case OP_WRITE_LFUSE: write_fuse(s, now, FH_LFUSE); break;
    case OP_WRITE_HFUSE: write_fuse(s, now, FH_HFUSE); break;
    case OP_WRITE_EFUSE: write_fuse(s, now, FH_EFUSE); break;
    default:
        break; /* reads answered during byte 4; unknown instructions do nothing */
    }
}

/*
 * Whether the chip knows `b` as the first byte of an instruction (before
 * Programming Enable, only 0xAC). The echo is how a programmer checks the
 * framing, and a plain echo of every byte would be a delay line that shows
 * 0x53 however the framing has slipped; so, as the datasheet's "if the 0x53
 * did not echo back" implies, an instruction the chip does not recognise
 * gets no echo (0x00) for its remaining bytes.
 */
static int known_opcode(const avrsim *s, uint8_t b)
{
    if (!s->enabled)
        return b == 0xAC;
    switch (b) {
    case 0xAC: case 0xF0: case 0x40: case 0x48: case 0x4C: case 0x20: case 0x28:
    case 0x58: case 0x50: case 0x30: case 0x38:
        return 1;
    case 0x4D:
        return FH_AVR_NEEDS_EXT_ADDR(&s->part);
    case 0xA0: case 0xC0: case 0xC1: case 0xC2:
        return s->part.eeprom_size > 0;
    default:
        return 0;
    }
}

/* Byte number s->nbytes (0-based) has just been shifted in. */
static void byte_done(avrsim *s, int64_t now)
{
    s->cmd[s->nbytes] = s->in_shift;
    switch (s->nbytes) {
    case 0:
        s->known = known_opcode(s, s->cmd[0]);
        s->out_next = s->known ? s->cmd[0] : 0x00;
        break;
    case 1:
        s->out_next = s->known ? s->cmd[1] : 0x00;
        break;
    case 2:
        s->op = decode(s);
        s->busy_seen = now < s->busy_until_ns;
        s->out_next = s->known ? s->cmd[2] : 0x00;
        if (s->enabled && is_read(s->op) && (s->op == OP_POLL || !s->busy_seen))
            s->out_next = read_value(s, s->op);
        break;
    default:
        execute(s, now);
        s->out_next = 0x00;
        break;
    }
    s->nbytes = (s->nbytes + 1) & 3;
}

/* ---------------------------------------------------------------- pins */

static void restart_framing(avrsim *s)
{
    s->nbits = s->nbytes = 0;
    s->in_shift = 0;
    s->out_next = s->out_reg = 0x00;
    s->miso_level = 0;
    s->miso_flip = 0;
}

/* RESET low: the MCU stops and the serial interface starts over. */
static void reset_fell(avrsim *s)
{
    s->reset_fall_ns = now_ns();
    s->enabled = 0;
    restart_framing(s);
    s->latch = 0xFF;
    s->ext = 0;
    memset(s->pagebuf, 0xFF, s->part.flash_page);
    memset(s->eebuf, 0xFF, s->part.eeprom_page);
    memset(s->eeloaded, 0, s->part.eeprom_page);
}

static void sck_edge(avrsim *s, int rising, int mosi)
{
    int64_t now;

    if (rising)
        s->st.bits++;
    if (s->silent) {
        s->sck_time_valid = 0;
        return;
    }
    now = now_ns();
    if (s->sck_time_valid && s->min_half_ns > 0 && now - s->last_sck_ns < s->min_half_ns)
        violation(s, "SCK half-period %ld ns < %ld ns", (long)(now - s->last_sck_ns),
                  s->min_half_ns);
    s->last_sck_ns = now;
    s->sck_time_valid = 1;

    if (rising) {
        if (s->bit_error_left >= 0) {
            if (s->bit_error_left == 0)
                s->miso_flip = 1;
            s->bit_error_left--;
        }
        s->in_shift = (uint8_t)((s->in_shift << 1) | (mosi != 0));
        if (++s->nbits == 8) {
            s->nbits = 0;
            byte_done(s, now);
        }
    } else {
        s->miso_flip = 0;
        if (s->nbits == 0) {
            s->out_reg = s->out_next;
            s->miso_level = s->out_reg >> 7;
        } else {
            s->miso_level = (s->out_reg >> (7 - s->nbits)) & 1;
        }
    }
}

void avrsim_set_pins(avrsim *s, int reset, int sck, int mosi)
{
    reset = reset != 0;
    sck = sck != 0;
    mosi = mosi != 0;
    if (reset != s->reset) {
        s->reset = reset;
        if (reset) {
            s->st.resets++;
            s->enabled = 0;
        } else {
            reset_fell(s);
        }
    }
    s->mosi = mosi;
    if (sck != s->sck) {
        s->sck = sck;
        if (!reset)
            sck_edge(s, sck, mosi);
        else
            s->sck_time_valid = 0; /* the chip is running and does not listen */
    }
}

int avrsim_miso(avrsim *s)
{
    if (s->stuck >= 0)
        return s->stuck;
    if (s->reset || s->silent)
        return 1;
    return s->miso_level ^ s->miso_flip;
}

void avrsim_set_fault(avrsim *s, enum avrsim_fault f, long param)
{
    switch (f) {
    case AVRSIM_OK:
        s->silent = 0;
        s->stuck = -1;
        s->bit_error_left = -1;
        s->miso_flip = 0;
        s->slow = 1;
        break;
    case AVRSIM_SILENT:
        s->silent = 1;
        break;
    case AVRSIM_MISO_STUCK:
        s->stuck = param != 0;
        break;
    case AVRSIM_BIT_ERROR:
        s->bit_error_left = param < 0 ? 0 : param;
        break;
    case AVRSIM_SLOW_WRITE:
        s->slow = param < 1 ? 1 : param;
        break;
    }
}

static void wait_since(int64_t t, long ns)
{
    while (now_ns() - t < ns)
        ;
}

void avrsim_transfer(avrsim *s, const uint8_t in[4], uint8_t out[4])
{
    int reset = s->reset;
    long half = s->min_half_ns;
    int64_t edge = now_ns();
    int i, b;

    if (s->sck) {
        wait_since(edge, half); /* we do not know when SCK rose: a full half-period */
        avrsim_set_pins(s, reset, 0, s->mosi);
        edge = now_ns();
    }
    for (i = 0; i < 4; i++) {
        uint8_t v = 0;
        for (b = 7; b >= 0; b--) {
            int m = (in[i] >> b) & 1;
            avrsim_set_pins(s, reset, 0, m);
            wait_since(edge, half);
            avrsim_set_pins(s, reset, 1, m);
            edge = now_ns();
            v = (uint8_t)((v << 1) | avrsim_miso(s));
            wait_since(edge, half);
            avrsim_set_pins(s, reset, 0, m);
            edge = now_ns();
        }
        out[i] = v;
    }
}

/* ---------------------------------------------------------------- state */

void avrsim_stats(const avrsim *s, struct avrsim_stats *st)
{
    *st = s->st;
}

void avrsim_reset_stats(avrsim *s)
{
    memset(&s->st, 0, sizeof s->st);
}

const uint8_t *avrsim_flash(const avrsim *s)
{
    return s->flash;
}

const uint8_t *avrsim_eeprom(const avrsim *s)
{
    return s->eeprom;
}

void avrsim_fuses(const avrsim *s, uint8_t out[FH_NFUSES])
{
    memcpy(out, s->fuses, FH_NFUSES);
}

int avrsim_programming(const avrsim *s)
{
    return !s->reset && s->enabled;
}

const struct fh_avr_part *avrsim_part(const avrsim *s)
{
    return &s->part;
}

const char *avrsim_dir(const avrsim *s)
{
    return s->dir;
}

/* ---------------------------------------------------------------- files */

static int make_path(char *buf, size_t len, const char *dir, const char *name,
                     char *err, size_t errlen)
{
    if ((size_t)snprintf(buf, len, "%s/%s", dir, name) >= len) {
        set_err(err, errlen, "%s/%s: %s", dir, name, strerror(ENAMETOOLONG));
        return -1;
    }
    return 0;
}

/* Reads exactly `size` bytes. 1 if the file does not exist, 0 when read,
 * -1 on error. `what` names the memory in the size message. */
static int load_raw(const char *path, uint8_t *buf, size_t size, const avrsim *s,
                    const char *what, char *err, size_t errlen)
{
    struct stat st;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) != 0) {
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -1;
    }
    if ((uintmax_t)st.st_size != size) {
        set_err(err, errlen, "%s: %jd bytes, but the %s %s is %zu bytes", path,
                (intmax_t)st.st_size, s->part.id, what, size);
        close(fd);
        return -1;
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            set_err(err, errlen, "%s: %s", path, n < 0 ? strerror(errno) : "file shrank while read");
            close(fd);
            return -1;
        }
        got += (size_t)n;
    }
    close(fd);
    return 0;
}

/* Writes `path` whole or not at all: a temp file beside it, fsync, rename. */
static int save_raw(const char *path, const void *data, size_t size, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    const uint8_t *p = data;
    size_t done = 0;
    int fd, e;

    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        set_err(err, errlen, "%s: %s", path, strerror(ENAMETOOLONG));
        return -1;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) {
        set_err(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    while (done < size) {
        ssize_t n = write(fd, p + done, size - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        done += (size_t)n;
    }
    if (fsync(fd) != 0)
        goto fail;
    if (close(fd) != 0) {
        fd = -1;
        goto fail;
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        set_err(err, errlen, "%s: %s", path, strerror(e));
        return -1;
    }
    return 0;
fail:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    set_err(err, errlen, "%s: %s", tmp, strerror(e));
    return -1;
}

static int format_fuses(const avrsim *s, char *buf, size_t len)
{
    return snprintf(buf, len, "part=%s\nlfuse=0x%02X\nhfuse=0x%02X\nefuse=0x%02X\nlock=0x%02X\n",
                    s->part.id, s->fuses[FH_LFUSE], s->fuses[FH_HFUSE], s->fuses[FH_EFUSE],
                    s->fuses[FH_LOCK]);
}

static int save_fuses(const avrsim *s, const char *path, char *err, size_t errlen)
{
    char text[160];
    int n = format_fuses(s, text, sizeof text);

    return save_raw(path, text, (size_t)n, err, errlen);
}

static char *trim(char *a)
{
    char *z;

    while (*a == ' ' || *a == '\t')
        a++;
    z = a + strlen(a);
    while (z > a && (z[-1] == ' ' || z[-1] == '\t' || z[-1] == '\r'))
        *--z = '\0';
    return a;
}

/* Parses fuses.txt into s->fuses. 1 if missing, 0 when read, -1 on error. */
static int load_fuses(avrsim *s, const char *path, char *err, size_t errlen)
{
    char text[FUSES_TXT_MAX + 1];
    size_t got = 0;
    int seen[FH_NFUSES] = {0}, seen_part = 0, line = 0, i;
    char *cur, *nl;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        set_err(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        ssize_t n = read(fd, text + got, sizeof text - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            set_err(err, errlen, "%s: %s", path, strerror(errno));
            close(fd);
            return -1;
        }
        if (n == 0)
            break;
        got += (size_t)n;
        if (got == sizeof text) {
            set_err(err, errlen, "%s: larger than %d bytes, not a fuses file", path, FUSES_TXT_MAX);
            close(fd);
            return -1;
        }
    }
    close(fd);
    text[got] = '\0';
    if (memchr(text, '\0', got) != NULL) {
        set_err(err, errlen, "%s: binary data, not a fuses file", path);
        return -1;
    }

    for (cur = text; *cur != '\0'; cur = nl) {
        char *key, *val, *eq, *end;
        long v;

        line++;
        nl = strchr(cur, '\n');
        if (nl != NULL)
            *nl++ = '\0';
        else
            nl = cur + strlen(cur);
        key = trim(cur);
        if (*key == '\0' || *key == '#')
            continue;
        eq = strchr(key, '=');
        if (eq == NULL) {
            set_err(err, errlen, "%s: line %d: expected key=value", path, line);
            return -1;
        }
        *eq = '\0';
        key = trim(key);
        val = trim(eq + 1);
        if (strcmp(key, "part") == 0) {
            if (strcmp(val, s->part.id) != 0) {
                set_err(err, errlen, "%s: for part %s, not %s", path, val, s->part.id);
                return -1;
            }
            seen_part = 1;
            continue;
        }
        for (i = 0; i < FH_NFUSES && strcmp(key, fuse_keys[i]) != 0; i++)
            ;
        if (i == FH_NFUSES) {
            set_err(err, errlen, "%s: line %d: unknown key '%s'", path, line, key);
            return -1;
        }
        errno = 0;
        v = strtol(val, &end, 0);
        if (*val == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 255) {
            set_err(err, errlen, "%s: line %d: %s must be a byte (0x00 to 0xFF), not '%s'",
                    path, line, key, val);
            return -1;
        }
        s->fuses[i] = (uint8_t)v;
        seen[i] = 1;
    }
    if (!seen_part) {
        set_err(err, errlen, "%s: no part= line", path);
        return -1;
    }
    for (i = 0; i < FH_NFUSES; i++)
        if (!seen[i]) {
            set_err(err, errlen, "%s: no %s= line", path, fuse_keys[i]);
            return -1;
        }
    s->fuses[FH_LOCK] |= LOCK_UNUSED;
    return 0;
}

static int part_ok(const struct fh_avr_part *p)
{
    return p->flash_size > 0 && p->flash_page >= 2 && (p->flash_page & (p->flash_page - 1)) == 0
        && p->flash_size % p->flash_page == 0
        && p->eeprom_page >= 1 && (p->eeprom_page & (p->eeprom_page - 1)) == 0;
}

/* Loads DIR/name into buf, or, when the file is absent, erases buf (0xFF)
 * and writes it: a new chip is a blank one. 0, or -1 with err set. */
static int load_or_erase(avrsim *s, const char *dir, const char *name, uint8_t *buf,
                         size_t size, const char *what, char *err, size_t errlen)
{
    char path[PATH_MAX];
    int r;

    if (make_path(path, sizeof path, dir, name, err, errlen) != 0)
        return -1;
    r = load_raw(path, buf, size, s, what, err, errlen);
    if (r <= 0)
        return r;
    memset(buf, 0xFF, size);
    return save_raw(path, buf, size, err, errlen);
}

avrsim *avrsim_open(const char *dir, const struct fh_avr_part *part, const uint8_t *factory,
                    long min_half_period_ns, char *err, size_t errlen)
{
    char path[PATH_MAX];
    struct stat st;
    avrsim *s;
    int r;

    if (!part_ok(part)) {
        set_err(err, errlen, "part %s: bad memory geometry", part->id);
        return NULL;
    }
    if (stat(dir, &st) != 0) {
        set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "%s: %s", dir, strerror(ENOTDIR));
        return NULL;
    }
    s = calloc(1, sizeof *s);
    if (s == NULL)
        goto nomem;
    s->part = *part;
    s->dir = strdup(dir);
    s->flash = malloc(part->flash_size);
    s->eeprom = malloc(part->eeprom_size ? part->eeprom_size : 1);
    s->pagebuf = malloc(part->flash_page);
    s->eebuf = malloc(part->eeprom_page);
    s->eeloaded = malloc(part->eeprom_page);
    if (!s->dir || !s->flash || !s->eeprom || !s->pagebuf || !s->eebuf || !s->eeloaded)
        goto nomem;
    s->min_half_ns = min_half_period_ns > 0 ? min_half_period_ns : 0;
    s->reset = 1; /* the board's pull-up: the MCU runs until a programmer pulls RESET */
    s->stuck = -1;
    s->bit_error_left = -1;
    s->slow = 1;
    s->latch = 0xFF;
    memset(s->pagebuf, 0xFF, part->flash_page);
    memset(s->eebuf, 0xFF, part->eeprom_page);
    memset(s->eeloaded, 0, part->eeprom_page);

    if (load_or_erase(s, dir, "flash.bin", s->flash, part->flash_size, "flash", err, errlen) != 0 ||
        load_or_erase(s, dir, "eeprom.bin", s->eeprom, part->eeprom_size, "EEPROM", err, errlen) != 0)
        goto fail;
    if (make_path(path, sizeof path, dir, "fuses.txt", err, errlen) != 0)
        goto fail;
    r = load_fuses(s, path, err, errlen);
    if (r < 0)
        goto fail;
    if (r > 0) {
        memcpy(s->fuses, factory != NULL ? factory : part->fuse_factory, FH_NFUSES);
        s->fuses[FH_LOCK] |= LOCK_UNUSED;
        if (save_fuses(s, path, err, errlen) != 0)
            goto fail;
    }
    return s;
nomem:
    set_err(err, errlen, "%s: %s", dir, strerror(ENOMEM));
fail:
    avrsim_free(s);
    return NULL;
}

static int sync_dir(const char *dir, char *err, size_t errlen)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e;

    if (fd < 0) {
        set_err(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    /* some file systems cannot sync a directory; the renames stand anyway */
    if (fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
        e = errno;
        close(fd);
        set_err(err, errlen, "%s: %s", dir, strerror(e));
        return -1;
    }
    close(fd);
    return 0;
}

int avrsim_save(avrsim *s, char *err, size_t errlen)
{
    char path[PATH_MAX];

    if (make_path(path, sizeof path, s->dir, "flash.bin", err, errlen) != 0
        || save_raw(path, s->flash, s->part.flash_size, err, errlen) != 0)
        return -1;
    if (make_path(path, sizeof path, s->dir, "eeprom.bin", err, errlen) != 0
        || save_raw(path, s->eeprom, s->part.eeprom_size, err, errlen) != 0)
        return -1;
    if (make_path(path, sizeof path, s->dir, "fuses.txt", err, errlen) != 0
        || save_fuses(s, path, err, errlen) != 0)
        return -1;
    return sync_dir(s->dir, err, errlen);
}

void avrsim_free(avrsim *s)
{
    if (s == NULL)
        return;
    free(s->dir);
    free(s->flash);
    free(s->eeprom);
    free(s->pagebuf);
    free(s->eebuf);
    free(s->eeloaded);
    free(s);
}
