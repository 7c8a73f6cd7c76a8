/*
 * avrsim.h: a simulated AVR (ATmega32U4 first; any part of
 * scripts/fotahost/avr/parts.lua) as an ISP target, driven at pin level.
 *
 * The model follows docs/avr-isp.md (the project's ISP digest): bits are
 * sampled on SCK rising edges while RESET is low, MISO changes after
 * falling edges, and the chip echoes the previous byte as silicon does, so
 * a framing slip shows up as a wrong 0x53 echo. Busy periods and the 20 ms
 * wait after reset run on CLOCK_MONOTONIC; breaking a rule is counted as a
 * violation rather than refused, so tests can assert on what a programmer
 * did wrong.
 *
 * Memories persist in a directory: flash.bin, eeprom.bin (raw, erased =
 * 0xFF) and fuses.txt ("part=m32u4", "lfuse=0x52", ... one per line).
 *
 * Not thread-safe: one thread drives one chip.
 */
#ifndef FOTAHOST_AVRSIM_H
#define FOTAHOST_AVRSIM_H

#include <stddef.h>
#include <stdint.h>

#include "avr/part.h"

typedef struct avrsim avrsim;

/*
 * Opens the chip stored in `dir` (the directory must exist). Missing files
 * are created erased, with fuses = `factory` (FH_NFUSES bytes; NULL: the
 * part's factory values). A file of the wrong size, a fuses.txt for another
 * part or an unreadable file fails with "<path>: <cause>" in err.
 * min_half_period_ns: the shortest legal SCK high or low time (250 for an
 * 8 MHz part: 2 CPU clocks); 0 turns the check off.
 */
avrsim *avrsim_open(const char *dir, const struct fh_avr_part *part, const uint8_t *factory,
                    long min_half_period_ns, char *err, size_t errlen);

/* Writes the three files, each atomically (temp + fsync + rename). 0 or -1. */
int avrsim_save(avrsim *s, char *err, size_t errlen);

/* Frees, does not save. NULL is allowed. */
void avrsim_free(avrsim *s);

/*
 * The levels at the chip's pins (1 = high). Unchanged values may repeat;
 * the model acts on edges. When several pins change in one call, RESET is
 * taken first, and MOSI is already at its new level at an SCK rising edge.
 */
void avrsim_set_pins(avrsim *s, int reset, int sck, int mosi);

/* The level the chip drives on MISO now (1 while RESET is high). */
int avrsim_miso(avrsim *s);

enum avrsim_fault {
    AVRSIM_OK,          /* clears every fault */
    AVRSIM_SILENT,      /* no answer: MISO reads 1, nothing is shifted or executed */
    AVRSIM_MISO_STUCK,  /* MISO reads param (0 or 1); instructions still execute */
    AVRSIM_BIT_ERROR,   /* the param-th MISO bit sampled after this call (0-based) is inverted, once */
    AVRSIM_SLOW_WRITE   /* busy periods last param times longer */
};

/* Faults other than AVRSIM_OK add up: a chip can be slow and flip a bit. */
void avrsim_set_fault(avrsim *s, enum avrsim_fault f, long param);

struct avrsim_stats {
    unsigned long commands;      /* complete 4-byte instructions received while RESET is low */
    unsigned long bits;          /* SCK rising edges while RESET is low */
    unsigned long enables;       /* accepted Programming Enables */
    unsigned long violations;    /* early enable, access while busy, SCK too fast */
    unsigned long page_writes, chip_erases, eeprom_writes, fuse_writes, polls;
    unsigned long resets;        /* RESET released (rising edges): the MCU would start */
    char last_violation[96];     /* human-readable, "" if none */
};

void avrsim_stats(const avrsim *s, struct avrsim_stats *st);
void avrsim_reset_stats(avrsim *s);

const uint8_t *avrsim_flash(const avrsim *s);   /* part->flash_size bytes */
const uint8_t *avrsim_eeprom(const avrsim *s);  /* part->eeprom_size bytes */
/* As the chip would read them (lock bits 7:6 read 1). */
void avrsim_fuses(const avrsim *s, uint8_t out[FH_NFUSES]);
/* True while RESET is low and a Programming Enable was accepted. */
int avrsim_programming(const avrsim *s);
const struct fh_avr_part *avrsim_part(const avrsim *s);
/* The directory the chip was opened from (an addition to the brief's API). */
const char *avrsim_dir(const avrsim *s);

/*
 * Sends one 4-byte instruction by driving the pins with legal timing (each
 * SCK half-period at least min_half_period_ns, busy-waiting on
 * CLOCK_MONOTONIC), MOSI set before the rising edge, MISO sampled while SCK
 * is high; fills out[4]. RESET must already be low (it is left as it is).
 * For tests.
 */
void avrsim_transfer(avrsim *s, const uint8_t in[4], uint8_t out[4]);

/*
 * For other native modules (a GPIO backend wired to a simulated chip):
 * the Lua binding's metatable name, and the chip of the userdata at `idx`.
 * avrsim_lua_check raises a Lua error if the value is not a chip or the
 * chip was closed. Keep a reference to the userdata (a uservalue) and check
 * again before each use, since a script may close the chip at any time.
 */
#define AVRSIM_MT "fotahost.avrsim"
avrsim *avrsim_lua_check(lua_State *L, int idx);

#endif
