/*
 * mmio.c: the MT7688's GPIO registers, mapped from /dev/mem. No system call
 * per operation: the fastest path on the real board.
 *
 * Registers (palmbus base 0x10000000; bank b at +4*b, 32 lines a bank):
 *   GPIO_CTRL  0x600  direction, 1 = output
 *   GPIO_DATA  0x620  levels (read)
 *   GPIO_DSET  0x630  write 1s to drive lines high
 *   GPIO_DCLR  0x640  write 1s to drive lines low
 *   GPIO1_MODE 0x060  pinmux; bits 3:2 select the SPI-slave group (GPIO
 *                     14-17, the 7688 Duo's ISP pins): 1 = GPIO.
 * One DSET and one DCLR store change every line of a bank at once.
 *
 * Tests map a regular file in place of /dev/mem (opts->mem_path) and read
 * the registers back from it.
 */
#include <errno.h>
#include <stdio.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "gpio.h"

#define PALMBUS_BASE 0x10000000UL
#define MAP_LEN 0x1000UL
#define REG_GPIO1_MODE 0x060
#define REG_CTRL 0x600
#define REG_DATA 0x620
#define REG_DSET 0x630
#define REG_DCLR 0x640
#define BANK_STRIDE 4
#define NBANKS 3
#define SPIS_SHIFT 2
#define SPIS_MASK (3u << SPIS_SHIFT)
#define SPIS_GPIO (1u << SPIS_SHIFT)
#define SPIS_FIRST 14
#define SPIS_LAST 17

/*
 * /dev/mem reaches physical memory: on anything but an MT7688 (or the
 * MT7628, the same die) these addresses are someone else's RAM. Refuse
 * unless /proc/cpuinfo names the SoC, or a test maps a file instead.
 */
static int check_soc(const char *mem_path, char *err, size_t errlen)
{
    char line[256];
    FILE *f;
    int ok = 0;

    if (mem_path != NULL)
        return 0; /* a file standing in for /dev/mem */
    f = fopen("/proc/cpuinfo", "re");
    if (f != NULL) {
        while (!ok && fgets(line, sizeof line, f) != NULL)
            ok = strstr(line, "MT7688") != NULL || strstr(line, "MT7628") != NULL;
        fclose(f);
    }
    if (!ok)
        snprintf(err, errlen, "mmio: /proc/cpuinfo names no MT7688/MT7628; refusing to write "
                 "GPIO registers through /dev/mem on another machine");
    return ok ? 0 : -1;
}

/* Maps the palmbus page (registers at 0x10000000). */
static volatile uint8_t *map_regs(const char *path, char *err, size_t errlen)
{
    void *map;
    int fd = open(path, O_RDWR | O_SYNC | O_CLOEXEC);

    if (fd < 0) {
        snprintf(err, errlen, "%s: %s%s", path, strerror(errno),
                 errno == EACCES || errno == EPERM ? " (the mmio backend needs root)" : "");
        return NULL;
    }
    map = mmap(NULL, MAP_LEN, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)PALMBUS_BASE);
    close(fd);
    if (map == MAP_FAILED) {
        snprintf(err, errlen, "%s: cannot map the GPIO registers at 0x%lx: %s", path,
                 PALMBUS_BASE, strerror(errno));
        return NULL;
    }
    return map;
}

int fh_mt7688_spis_gpio(const char *mem_path, int *changed, char *err, size_t errlen)
{
    volatile uint8_t *regs;
    volatile uint32_t *mode;

    if (check_soc(mem_path, err, errlen) != 0)
        return -1;
    regs = map_regs(mem_path != NULL ? mem_path : "/dev/mem", err, errlen);
    if (regs == NULL)
        return -1;
    mode = (volatile uint32_t *)(regs + REG_GPIO1_MODE);
    *changed = (*mode & SPIS_MASK) != SPIS_GPIO;
    if (*changed)
        *mode = (*mode & ~SPIS_MASK) | SPIS_GPIO;
    munmap((void *)regs, MAP_LEN);
    return 0;
}

struct mmio_ctx {
    volatile uint8_t *regs;
    uint32_t old_mode;   /* GPIO1_MODE before we changed it */
    int mode_changed;
};

static volatile uint32_t *reg(struct mmio_ctx *c, unsigned off)
{
    return (volatile uint32_t *)(c->regs + off);
}

static int mmio_open(fh_gpio *g, const char *chip, uint32_t initial,
                     const struct fh_gpio_opts *opts, char *err, size_t errlen)
{
    const char *path = opts->mem_path != NULL ? opts->mem_path : "/dev/mem";
    struct mmio_ctx *c;
    void *map;
    int i, spis = 0;

    (void)chip;
    for (i = 0; i < g->nlines; i++) {
        if (g->offsets[i] >= NBANKS * 32) {
            snprintf(err, errlen, "mmio: GPIO %u does not exist on the MT7688 (0..%d)",
                     g->offsets[i], NBANKS * 32 - 1);
            return -1;
        }
        if (g->offsets[i] >= SPIS_FIRST && g->offsets[i] <= SPIS_LAST)
            spis = 1;
    }
    if (check_soc(opts->mem_path, err, errlen) != 0)
        return -1;
    map = (void *)map_regs(path, err, errlen);
    if (map == NULL)
        return -1;
    c = calloc(1, sizeof *c);
    if (c == NULL) {
        munmap(map, MAP_LEN);
        snprintf(err, errlen, "mmio: out of memory");
        return -1;
    }
    c->regs = map;
    g->ctx = c;
    /* The SPI-slave pins must be GPIOs before we drive them (what the
     * board's `mt7688_pinmux set spi_s gpio` does). Restored on close. */
    c->old_mode = *reg(c, REG_GPIO1_MODE);
    if (spis && (c->old_mode & SPIS_MASK) != SPIS_GPIO) {
        *reg(c, REG_GPIO1_MODE) = (c->old_mode & ~SPIS_MASK) | SPIS_GPIO;
        c->mode_changed = 1;
    }
    /* Levels first, then directions: an output never shows a wrong level. */
    for (i = 0; i < g->nlines; i++) {
        unsigned bank = g->offsets[i] / 32, bit = g->offsets[i] % 32;
        if (!((g->outputs >> i) & 1))
            continue;
        *reg(c, ((initial >> i) & 1 ? REG_DSET : REG_DCLR) + bank * BANK_STRIDE) = 1u << bit;
    }
    for (i = 0; i < g->nlines; i++) {
        unsigned bank = g->offsets[i] / 32, bit = g->offsets[i] % 32;
        volatile uint32_t *ctrl = reg(c, REG_CTRL + bank * BANK_STRIDE);
        if ((g->outputs >> i) & 1)
            *ctrl |= 1u << bit;
        else
            *ctrl &= ~(1u << bit);
    }
    return 0;
}

static int mmio_set(fh_gpio *g, uint32_t mask, uint32_t values, char *err, size_t errlen)
{
    struct mmio_ctx *c = g->ctx;
    uint32_t set[NBANKS] = {0}, clr[NBANKS] = {0};
    unsigned b;
    int i;

    (void)err;
    (void)errlen;
    for (i = 0; i < g->nlines; i++) {
        if (!(mask & (1u << i)))
            continue;
        if ((values >> i) & 1)
            set[g->offsets[i] / 32] |= 1u << (g->offsets[i] % 32);
        else
            clr[g->offsets[i] / 32] |= 1u << (g->offsets[i] % 32);
    }
    for (b = 0; b < NBANKS; b++) {
        if (clr[b])
            *reg(c, REG_DCLR + b * BANK_STRIDE) = clr[b];
        if (set[b])
            *reg(c, REG_DSET + b * BANK_STRIDE) = set[b];
    }
    return 0;
}

static int mmio_get(fh_gpio *g, int line, int *value, char *err, size_t errlen)
{
    struct mmio_ctx *c = g->ctx;
    unsigned bank = g->offsets[line] / 32, bit = g->offsets[line] % 32;

    (void)err;
    (void)errlen;
    *value = (int)((*reg(c, REG_DATA + bank * BANK_STRIDE) >> bit) & 1);
    return 0;
}

static void mmio_close(fh_gpio *g)
{
    struct mmio_ctx *c = g->ctx;
    int i;

    if (c == NULL)
        return;
    /* Every line back to input, RESET (line 0) last. */
    for (i = g->nlines - 1; i >= 0; i--) {
        unsigned bank = g->offsets[i] / 32, bit = g->offsets[i] % 32;
        *reg(c, REG_CTRL + bank * BANK_STRIDE) &= ~(1u << bit);
    }
    if (c->mode_changed)
        *reg(c, REG_GPIO1_MODE) = c->old_mode;
    munmap((void *)c->regs, MAP_LEN);
    free(c);
    g->ctx = NULL;
}

const struct fh_gpio_backend fh_gpio_mmio = {
    "mmio", mmio_open, mmio_set, mmio_get, mmio_close,
};
