/* Unit tests of the simulated AVR (dev/plugins/avrsim/chip.c), driven at pin level. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "avr/part.h"
#include "avrsim/avrsim.h"
#include "unit.h"

static char tmp[] = "/tmp/fotahost-unit-XXXXXX";
static struct fh_avr_part m32u4, m328p, m2560;

static void load_parts(lua_State *L)
{
    if (luaL_dofile(L, "scripts/fotahost/avr/parts.lua") != LUA_OK) {
        fprintf(stderr, "parts.lua: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    lua_getfield(L, -1, "m32u4");
    fh_avr_part_get(L, -1, &m32u4);
    lua_getfield(L, -2, "m328p");
    fh_avr_part_get(L, -1, &m328p);
    lua_getfield(L, -3, "m2560");
    fh_avr_part_get(L, -1, &m2560);
    lua_settop(L, 0);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) != 0)
        ;
}

static const char *subdir(const char *name)
{
    static char path[256];

    snprintf(path, sizeof path, "%s/%s", tmp, name);
    mkdir(path, 0700);
    return path;
}

static avrsim *open_chip(const char *name, const struct fh_avr_part *p)
{
    char err[300];
    avrsim *s = avrsim_open(subdir(name), p, NULL, 250, err, sizeof err);

    if (s == NULL) {
        fprintf(stderr, "avrsim_open: %s\n", err);
        exit(1);
    }
    return s;
}

static uint8_t xfer(avrsim *s, uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint8_t out[4])
{
    uint8_t in[4] = {a, b, c, d}, tmpout[4];

    if (out == NULL)
        out = tmpout;
    avrsim_transfer(s, in, out);
    return out[3];
}

static uint8_t cmd(avrsim *s, uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
    return xfer(s, a, b, c, d, NULL);
}

/* RESET pulse, the datasheet's 20 ms, Programming Enable; the echo. */
static uint8_t enter(avrsim *s)
{
    uint8_t out[4];

    avrsim_set_pins(s, 1, 0, 0);
    avrsim_set_pins(s, 0, 0, 0);
    sleep_ms(21);
    xfer(s, 0xAC, 0x53, 0x00, 0x00, out);
    return out[2];
}

/* Polls RDY/BSY until ready; the number of busy answers, -1 after 2 s. */
static int wait_ready(avrsim *s)
{
    int n;

    for (n = 0; n < 20000; n++) {
        if ((cmd(s, 0xF0, 0x00, 0x00, 0x00) & 1) == 0)
            return n;
        usleep(100);
    }
    return -1;
}

static void load_word(avrsim *s, unsigned off, uint8_t lo, uint8_t hi)
{
    cmd(s, 0x40, (uint8_t)(off >> 8), (uint8_t)off, lo);
    cmd(s, 0x48, (uint8_t)(off >> 8), (uint8_t)off, hi);
}

/* Loads one page of bytes and writes it at byte address `addr` (< 128 KiB). */
static void write_page(avrsim *s, uint32_t addr, const uint8_t *data, uint32_t page)
{
    uint32_t i, word = addr / 2;

    for (i = 0; i < page; i += 2)
        load_word(s, i / 2, data[i], data[i + 1]);
    cmd(s, 0x4C, (uint8_t)(word >> 8), (uint8_t)word, 0x00);
    wait_ready(s);
}

static uint8_t read_byte(avrsim *s, uint32_t addr)
{
    uint32_t word = addr / 2;

    return cmd(s, (addr & 1) ? 0x28 : 0x20, (uint8_t)(word >> 8), (uint8_t)word, 0x00);
}

static unsigned long violations(const avrsim *s, char *last)
{
    struct avrsim_stats st;

    avrsim_stats(s, &st);
    if (last != NULL)
        strcpy(last, st.last_violation);
    return st.violations;
}

static char *slurp(const char *dir, const char *name, long *size)
{
    char path[300];
    static char buf[300000];
    FILE *f;

    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    *size = -1;
    if (f == NULL)
        return NULL;
    *size = (long)fread(buf, 1, sizeof buf - 1, f);
    buf[*size] = '\0';
    fclose(f);
    return buf;
}

static void test_enable(void)
{
    avrsim *s = open_chip("enable", &m32u4);
    uint8_t out[4];
    char last[96];
    struct avrsim_stats st;
    int i;

    /* RESET high: the MCU runs, MISO reads 1, SCK is ignored */
    CHECK(avrsim_miso(s) == 1);
    xfer(s, 0xAC, 0x53, 0x00, 0x00, out);
    CHECK(out[0] == 0xFF && out[2] == 0xFF);
    avrsim_stats(s, &st);
    CHECK(st.bits == 0 && st.commands == 0);

    /* too soon after RESET falls: echoed, but refused. A loaded machine
     * may pause this process for 20 ms between the two calls: then the
     * attempt proves nothing, and is made again. */
    for (i = 0; i < 20; i++) {
        struct timespec t0, t1;
        avrsim_set_pins(s, 1, 0, 0);
        avrsim_reset_stats(s);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        avrsim_set_pins(s, 0, 0, 0);
        xfer(s, 0xAC, 0x53, 0x00, 0x00, out);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if ((t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec) < 15000000LL)
            break;
    }
    CHECK(out[2] == 0x53);
    CHECK(!avrsim_programming(s));
    CHECK(violations(s, last) == 1);
    CHECK(strncmp(last, "programming enable only ", 24) == 0 && strstr(last, " ms after reset"));
    /* not enabled: only 0xAC is an instruction; anything else is not even echoed */
    xfer(s, 0x30, 0x00, 0x01, 0x00, out);
    CHECK(out[1] == 0x00 && out[2] == 0x00 && out[3] == 0x00);

    sleep_ms(21);
    xfer(s, 0xAC, 0x53, 0x00, 0x00, out);
    CHECK(out[1] == 0xAC && out[2] == 0x53 && out[3] == 0x00);
    CHECK(avrsim_programming(s));
    avrsim_stats(s, &st);
    CHECK(st.enables == 1 && st.commands == 3 && st.bits == 96 && st.violations == 1);

    CHECK(cmd(s, 0x30, 0x00, 0x00, 0x00) == 0x1E);
    CHECK(cmd(s, 0x30, 0x00, 0x01, 0x00) == 0x95);
    CHECK(cmd(s, 0x30, 0x00, 0x02, 0x00) == 0x87);
    CHECK(cmd(s, 0x38, 0x00, 0x00, 0x00) == 0x5A);

    /* RESET released: the MCU starts, programming mode ends */
    avrsim_set_pins(s, 1, 0, 0);
    CHECK(!avrsim_programming(s));
    CHECK(avrsim_miso(s) == 1);
    avrsim_stats(s, &st);
    CHECK(st.resets == 1);
    avrsim_reset_stats(s);
    avrsim_stats(s, &st);
    CHECK(st.commands == 0 && st.violations == 0 && st.last_violation[0] == '\0');
    avrsim_free(s);
}

static void test_flash(void)
{
    avrsim *s = open_chip("flash", &m32u4);
    uint8_t page[128], other[128], out[4];
    const uint8_t *fl;
    char last[96];
    int i, ok;

    CHECK(enter(s) == 0x53);
    for (i = 0; i < 128; i++) {
        page[i] = (uint8_t)(i * 7 + 1);
        other[i] = (uint8_t)~page[i] | 0x11;
    }
    write_page(s, 0x0280, page, 128); /* page 5 */
    fl = avrsim_flash(s);
    CHECK(memcmp(fl + 0x280, page, 128) == 0);
    CHECK(fl[0x27F] == 0xFF && fl[0x300] == 0xFF);
    for (ok = 1, i = 0; i < 128; i++)
        ok &= read_byte(s, 0x280 + (uint32_t)i) == page[i];
    CHECK(ok);
    /* the page buffer is erased after a write: writing it again changes nothing */
    cmd(s, 0x4C, 0x01, 0x40, 0x00);
    wait_ready(s);
    CHECK(memcmp(fl + 0x280, page, 128) == 0);

    /* without an erase, bits can only be cleared */
    write_page(s, 0x0280, other, 128);
    for (ok = 1, i = 0; i < 128; i++)
        ok &= fl[0x280 + i] == (page[i] & other[i]);
    CHECK(ok);
    CHECK(memcmp(fl + 0x280, other, 128) != 0);

    /* after a chip erase the same write is exact */
    cmd(s, 0xAC, 0x80, 0x00, 0x00);
    CHECK(wait_ready(s) >= 0);
    CHECK(fl[0x280] == 0xFF);
    write_page(s, 0x0280, other, 128);
    CHECK(memcmp(fl + 0x280, other, 128) == 0);

    /* high before low: the word takes the stale latched low byte */
    cmd(s, 0xAC, 0x80, 0x00, 0x00);
    wait_ready(s);
    cmd(s, 0x40, 0x00, 0x00, 0x11);
    cmd(s, 0x48, 0x00, 0x00, 0x22);  /* word 0 = 22 11, right */
    cmd(s, 0x48, 0x00, 0x01, 0x44);  /* word 1 before its low byte: 44 11 */
    cmd(s, 0x40, 0x00, 0x01, 0x33);  /* latched, too late */
    cmd(s, 0x4C, 0x00, 0x00, 0x00);
    CHECK(wait_ready(s) >= 0);
    CHECK(fl[0] == 0x11 && fl[1] == 0x22 && fl[2] == 0x11 && fl[3] == 0x44);

    /* an access while busy is ignored and counted */
    CHECK(violations(s, NULL) == 0);
    for (i = 0; i < 64; i++)
        load_word(s, (unsigned)i, 0x00, 0x00);
    avrsim_set_fault(s, AVRSIM_SLOW_WRITE, 50); /* 225 ms: busy for sure, even on a loaded machine */
    cmd(s, 0x4C, 0x00, 0x40, 0x00);
    CHECK((cmd(s, 0xF0, 0x00, 0x00, 0x00) & 1) == 1);
    xfer(s, 0x20, 0x00, 0x40, 0x00, out);
    CHECK(out[3] == 0x40); /* only the echo of byte 3 */
    cmd(s, 0x40, 0x00, 0x00, 0x77);
    CHECK(violations(s, last) == 2);
    CHECK_STR(last, "Load Program Memory Page low while busy");
    CHECK(wait_ready(s) > 0);
    avrsim_set_fault(s, AVRSIM_OK, 0);
    CHECK(fl[0x80] == 0x00);
    {
        struct avrsim_stats st;
        avrsim_stats(s, &st);
        CHECK(st.page_writes == 6 && st.chip_erases == 2 && st.polls > 4);
    }
    avrsim_free(s);
}

static void test_eeprom_fuses_lock(void)
{
    avrsim *s = open_chip("eeprom", &m32u4);
    const uint8_t *ee = avrsim_eeprom(s);
    uint8_t f[FH_NFUSES];
    struct avrsim_stats st;

    CHECK(enter(s) == 0x53);
    /* byte write, with auto-erase */
    cmd(s, 0xC0, 0x03, 0x10, 0xA5);
    CHECK(wait_ready(s) >= 0);
    cmd(s, 0xC0, 0x03, 0x10, 0x5A);
    wait_ready(s);
    CHECK(ee[0x310] == 0x5A);
    CHECK(cmd(s, 0xA0, 0x03, 0x10, 0x00) == 0x5A);
    /* page write: only the loaded bytes */
    cmd(s, 0xC1, 0x00, 0x00, 0x01);
    cmd(s, 0xC1, 0x00, 0x02, 0x03);
    cmd(s, 0xC2, 0x00, 0x08, 0x00);
    CHECK(wait_ready(s) >= 0);
    CHECK(ee[8] == 0x01 && ee[9] == 0xFF && ee[10] == 0x03 && ee[11] == 0xFF);

    /* factory fuses, then written ones */
    CHECK(cmd(s, 0x50, 0x00, 0x00, 0x00) == 0x52);
    CHECK(cmd(s, 0x58, 0x08, 0x00, 0x00) == 0x99);
    CHECK(cmd(s, 0x50, 0x08, 0x00, 0x00) == 0xFB);
    CHECK(cmd(s, 0x58, 0x00, 0x00, 0x00) == 0xFF);
    /* chip erase with EESAVE unprogrammed (hfuse 0x99): EEPROM erased */
    cmd(s, 0xAC, 0x80, 0x00, 0x00);
    wait_ready(s);
    CHECK(ee[0x310] == 0xFF && ee[8] == 0xFF);

    cmd(s, 0xAC, 0xA0, 0x00, 0xFF);
    CHECK(wait_ready(s) >= 0);
    cmd(s, 0xAC, 0xA8, 0x00, 0xD0); /* EESAVE programmed */
    wait_ready(s);
    cmd(s, 0xAC, 0xA4, 0x00, 0xCE);
    wait_ready(s);
    CHECK(cmd(s, 0x50, 0x00, 0x00, 0x00) == 0xFF);
    CHECK(cmd(s, 0x58, 0x08, 0x00, 0x00) == 0xD0);
    CHECK(cmd(s, 0x50, 0x08, 0x00, 0x00) == 0xCE);
    cmd(s, 0xC0, 0x00, 0x20, 0x42);
    wait_ready(s);
    cmd(s, 0xAC, 0x80, 0x00, 0x00);
    wait_ready(s);
    CHECK(ee[0x20] == 0x42); /* EESAVE kept it */
    avrsim_fuses(s, f);
    CHECK(f[FH_LFUSE] == 0xFF && f[FH_HFUSE] == 0xD0 && f[FH_EFUSE] == 0xCE && f[FH_LOCK] == 0xFF);

    /* lock: 0x0F reads 0xCF; bits can only be programmed */
    cmd(s, 0xAC, 0xE0, 0x00, 0x0F);
    CHECK(wait_ready(s) >= 0);
    CHECK(cmd(s, 0x58, 0x00, 0x00, 0x00) == 0xCF);
    cmd(s, 0xAC, 0xE0, 0x00, 0xFF);
    wait_ready(s);
    CHECK(cmd(s, 0x58, 0x00, 0x00, 0x00) == 0xCF);
    cmd(s, 0xAC, 0xE0, 0x00, 0x3E); /* LB = 10: no more programming */
    wait_ready(s);
    CHECK(cmd(s, 0x58, 0x00, 0x00, 0x00) == 0xCE);
    load_word(s, 0, 0x00, 0x00);
    cmd(s, 0x4C, 0x00, 0x00, 0x00);
    wait_ready(s);
    CHECK(avrsim_flash(s)[0] == 0xFF);
    cmd(s, 0xC0, 0x00, 0x20, 0x00);
    wait_ready(s);
    CHECK(ee[0x20] == 0x42);
    cmd(s, 0xAC, 0xA0, 0x00, 0x00); /* fuses are locked too */
    wait_ready(s);
    CHECK(cmd(s, 0x50, 0x00, 0x00, 0x00) == 0xFF);
    /* chip erase clears the lock */
    cmd(s, 0xAC, 0x80, 0x00, 0x00);
    wait_ready(s);
    CHECK(cmd(s, 0x58, 0x00, 0x00, 0x00) == 0xFF);
    avrsim_stats(s, &st);
    CHECK(st.eeprom_writes == 4 && st.fuse_writes == 6 && st.chip_erases == 3);
    CHECK(st.violations == 0);
    avrsim_free(s);
}

static void test_timing_and_framing(void)
{
    avrsim *s = open_chip("framing", &m32u4);
    uint8_t out[4];
    char last[96];
    int i;

    CHECK(enter(s) == 0x53);
    CHECK(violations(s, NULL) == 0);
    /* SCK driven with no delay at all: caught natively (~160 ns
     * half-periods). Under qemu-user (make board-test sets
     * FOTAHOST_TEST_EMULATED) the same loop runs at 240-250 ns, at the very
     * limit, and is reported instead: tests/board/native-only has the spec
     * twin of this check. */
    for (i = 0; i < 64; i++)
        avrsim_set_pins(s, 0, i & 1 ? 0 : 1, 0);
    if (getenv("FOTAHOST_TEST_EMULATED") != NULL) {
        fprintf(stderr, "%s:%d: unpaced SCK under an emulator: the 250 ns limit is not checked\n",
                __FILE__, __LINE__);
    } else {
        CHECK(violations(s, last) > 0);
        CHECK(strncmp(last, "SCK half-period ", 16) == 0 && strstr(last, " ns < 250 ns") != NULL);
    }

    /* back in sync (64 edges = 4 bytes); one extra SCK pulse shifts the framing */
    CHECK(cmd(s, 0x30, 0x00, 0x00, 0x00) == 0x1E);
    avrsim_set_pins(s, 1, 0, 0);
    avrsim_set_pins(s, 0, 0, 0);
    sleep_ms(21);
    avrsim_set_pins(s, 0, 1, 0);
    sleep_ms(1);
    avrsim_set_pins(s, 0, 0, 0);
    xfer(s, 0xAC, 0x53, 0x00, 0x00, out);
    CHECK(out[2] != 0x53);
    CHECK(!avrsim_programming(s));
    xfer(s, 0xAC, 0x53, 0x00, 0x00, out);
    CHECK(out[2] != 0x53);
    /* a RESET pulse restarts it */
    CHECK(enter(s) == 0x53);
    CHECK(avrsim_programming(s));
    CHECK(cmd(s, 0x30, 0x00, 0x01, 0x00) == 0x95);
    avrsim_free(s);
}

static void test_faults(void)
{
    avrsim *s = open_chip("faults", &m32u4);
    uint8_t out[4];
    struct avrsim_stats st;
    int n;

    avrsim_set_fault(s, AVRSIM_SILENT, 0);
    CHECK(enter(s) == 0xFF);
    CHECK(!avrsim_programming(s));
    avrsim_stats(s, &st);
    CHECK(st.commands == 0 && st.enables == 0 && st.bits == 32);

    avrsim_set_fault(s, AVRSIM_OK, 0);
    CHECK(enter(s) == 0x53);

    /* MISO stuck low: nothing readable, but instructions still run */
    avrsim_set_fault(s, AVRSIM_MISO_STUCK, 0);
    xfer(s, 0x30, 0x00, 0x00, 0x00, out);
    CHECK(out[0] == 0 && out[1] == 0 && out[2] == 0 && out[3] == 0);
    cmd(s, 0xAC, 0xA0, 0x00, 0xE2);
    avrsim_set_fault(s, AVRSIM_MISO_STUCK, 1);
    CHECK(cmd(s, 0xF0, 0x00, 0x00, 0x00) == 0xFF);
    avrsim_set_fault(s, AVRSIM_OK, 0);
    wait_ready(s);
    CHECK(cmd(s, 0x50, 0x00, 0x00, 0x00) == 0xE2);

    /* bit 16 of the next 32 is the MSB of the 0x53 echo: flipped, once */
    avrsim_set_fault(s, AVRSIM_BIT_ERROR, 16);
    xfer(s, 0xAC, 0x53, 0x00, 0x00, out);
    CHECK(out[1] == 0xAC && out[2] == 0xD3);
    xfer(s, 0xAC, 0x53, 0x00, 0x00, out);
    CHECK(out[2] == 0x53);
    avrsim_set_fault(s, AVRSIM_BIT_ERROR, 31);
    CHECK(cmd(s, 0x30, 0x00, 0x00, 0x00) == 0x1F);

    /* slow writes: a fuse write busy forty times as long (180 ms: a loaded
     * machine may oversleep the 10 ms below by far more than 4.5 ms) */
    avrsim_set_fault(s, AVRSIM_SLOW_WRITE, 40);
    cmd(s, 0xAC, 0xA0, 0x00, 0xFF);
    sleep_ms(10); /* more than t_wd_fuse (4.5 ms) */
    CHECK((cmd(s, 0xF0, 0x00, 0x00, 0x00) & 1) == 1);
    n = wait_ready(s);
    CHECK(n > 0);
    avrsim_set_fault(s, AVRSIM_OK, 0);
    CHECK(cmd(s, 0x50, 0x00, 0x00, 0x00) == 0xFF);
    avrsim_free(s);
}

static void test_persistence(void)
{
    char err[300], path[400], last[96];
    const char *dir = subdir("persist");
    uint8_t page[128], factory[FH_NFUSES] = {0xFF, 0xD8, 0xCE, 0x3F};
    avrsim *s = avrsim_open(dir, &m32u4, factory, 250, err, sizeof err);
    long size;
    const char *text;
    FILE *f;
    int i;

    CHECK(s != NULL);
    if (s == NULL)
        return;
    text = slurp(dir, "flash.bin", &size);
    CHECK(size == 32768 && (uint8_t)text[0] == 0xFF && (uint8_t)text[32767] == 0xFF);
    slurp(dir, "eeprom.bin", &size);
    CHECK(size == 1024);
    CHECK_STR(slurp(dir, "fuses.txt", &size),
              "part=m32u4\nlfuse=0xFF\nhfuse=0xD8\nefuse=0xCE\nlock=0xFF\n");
    CHECK(enter(s) == 0x53);
    for (i = 0; i < 128; i++)
        page[i] = (uint8_t)(0xC3 ^ i);
    write_page(s, 0x7000, page, 128);
    cmd(s, 0xAC, 0xE0, 0x00, 0x0F);
    wait_ready(s);
    cmd(s, 0xC0, 0x00, 0x05, 0x66);
    wait_ready(s);
    CHECK(avrsim_save(s, err, sizeof err) == 0);
    avrsim_free(s);

    text = slurp(dir, "flash.bin", &size);
    CHECK(size == 32768 && memcmp(text + 0x7000, page, 128) == 0);
    CHECK_STR(slurp(dir, "fuses.txt", &size),
              "part=m32u4\nlfuse=0xFF\nhfuse=0xD8\nefuse=0xCE\nlock=0xCF\n");
    snprintf(path, sizeof path, "%s/flash.bin.tmp", dir);
    CHECK(access(path, F_OK) != 0);

    s = avrsim_open(dir, &m32u4, NULL, 250, err, sizeof err);
    CHECK(s != NULL);
    if (s != NULL) {
        uint8_t fz[FH_NFUSES];
        CHECK(memcmp(avrsim_flash(s) + 0x7000, page, 128) == 0);
        CHECK(avrsim_eeprom(s)[5] == 0x66);
        avrsim_fuses(s, fz);
        CHECK(fz[FH_LOCK] == 0xCF && fz[FH_HFUSE] == 0xD8);
        CHECK(violations(s, last) == 0);
        avrsim_free(s);
    }

    /* another part's fuses.txt, and a flash.bin of the wrong size */
    s = avrsim_open(dir, &m328p, NULL, 250, err, sizeof err);
    CHECK(s == NULL);
    snprintf(path, sizeof path, "%s/fuses.txt: for part m32u4, not m328p", dir);
    CHECK_STR(err, path);
    snprintf(path, sizeof path, "%s/flash.bin", dir);
    f = fopen(path, "wb");
    fwrite(page, 1, 100, f);
    fclose(f);
    s = avrsim_open(dir, &m32u4, NULL, 250, err, sizeof err);
    CHECK(s == NULL);
    snprintf(path, sizeof path, "%s/flash.bin: 100 bytes, but the m32u4 flash is 32768 bytes", dir);
    CHECK_STR(err, path);
    s = avrsim_open("/nonexistent-fotahost-dir", &m32u4, NULL, 250, err, sizeof err);
    CHECK(s == NULL);
    snprintf(path, sizeof path, "/nonexistent-fotahost-dir: %s", strerror(ENOENT));
    CHECK_STR(err, path);
}

static void test_other_parts(void)
{
    avrsim *s = open_chip("m328p", &m328p);
    uint8_t page[256];
    const uint8_t *fl;
    int i, ok;

    CHECK(enter(s) == 0x53);
    CHECK(cmd(s, 0x30, 0x00, 0x01, 0x00) == 0x95 && cmd(s, 0x30, 0x00, 0x02, 0x00) == 0x0F);
    for (i = 0; i < 128; i++)
        page[i] = (uint8_t)(i + 3);
    write_page(s, 0x7F80, page, 128);
    for (ok = 1, i = 0; i < 128; i++)
        ok &= read_byte(s, 0x7F80 + (uint32_t)i) == page[i];
    CHECK(ok);
    avrsim_free(s);

    /* m2560: byte 0x30000 is word 0x18000, beyond 16 address bits */
    s = open_chip("m2560", &m2560);
    fl = avrsim_flash(s);
    CHECK(enter(s) == 0x53);
    CHECK(cmd(s, 0x30, 0x00, 0x01, 0x00) == 0x98 && cmd(s, 0x30, 0x00, 0x02, 0x00) == 0x01);
    for (i = 0; i < 256; i++)
        page[i] = (uint8_t)(0xA0 ^ i);
    cmd(s, 0x4D, 0x00, 0x01, 0x00);
    for (i = 0; i < 256; i += 2)
        load_word(s, (unsigned)i / 2, page[i], page[i + 1]);
    cmd(s, 0x4C, 0x80, 0x00, 0x00);
    CHECK(wait_ready(s) >= 0);
    CHECK(memcmp(fl + 0x30000, page, 256) == 0);
    CHECK(fl[0x10000] == 0xFF);
    for (ok = 1, i = 0; i < 256; i++) {
        uint32_t w = 0x8000 + (uint32_t)i / 2;
        ok &= cmd(s, (i & 1) ? 0x28 : 0x20, (uint8_t)(w >> 8), (uint8_t)w, 0x00) == page[i];
    }
    CHECK(ok);
    cmd(s, 0x4D, 0x00, 0x00, 0x00);
    CHECK(cmd(s, 0x20, 0x80, 0x00, 0x00) == 0xFF); /* word 0x8000: byte 0x10000 */
    avrsim_free(s);
}

int main(void)
{
    lua_State *L = luaL_newstate();
    char rm[100];
    int status;

    luaL_openlibs(L);
    load_parts(L);
    lua_close(L);
    if (mkdtemp(tmp) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    test_enable();
    test_flash();
    test_eeprom_fuses_lock();
    test_timing_and_framing();
    test_faults();
    test_persistence();
    test_other_parts();
    snprintf(rm, sizeof rm, "rm -rf '%s'", tmp);
    status = system(rm);
    (void)status;
    return UNIT_END();
}
