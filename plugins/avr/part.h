/*
 * part.h: an AVR part as the ISP programmer and the simulated chip see it.
 * Support code of plugins/avr.isp.core.c and of the development wing's
 * simulated chip (dev/plugins/), each of which compiles part.c in; not the
 * host's.
 *
 * Parts are data: scripts/fotahost/avr/parts.lua describes each one as a
 * Lua table, and fh_avr_part_get() checks such a table and fills this
 * struct, so adding a part never needs C.
 */
#ifndef FOTAHOST_AVR_PART_H
#define FOTAHOST_AVR_PART_H

#include <stdint.h>

#include <lua.h>

enum { FH_LFUSE, FH_HFUSE, FH_EFUSE, FH_LOCK, FH_NFUSES };

struct fh_avr_part {
    char id[16];                /* "m32u4" */
    char desc[32];              /* "ATmega32U4" */
    uint8_t signature[3];
    uint8_t calibration;        /* what Read Calibration Byte returns */
    uint32_t flash_size;        /* bytes */
    uint32_t flash_page;        /* bytes, a power of two */
    uint32_t eeprom_size;       /* bytes */
    uint32_t eeprom_page;       /* bytes, a power of two */
    uint32_t boot_size_max;     /* largest boot section, bytes (at the top of flash) */
    uint8_t fuse_mask[FH_NFUSES];    /* bits that mean something (lock: 0x3F) */
    uint8_t fuse_factory[FH_NFUSES]; /* a new chip's values */
    int has_efuse;
    /* Datasheet minimum waits, microseconds. */
    uint32_t t_wd_flash_us;
    uint32_t t_wd_erase_us;
    uint32_t t_wd_eeprom_us;
    uint32_t t_wd_fuse_us;
};

/*
 * Reads the part table at stack index `idx` into *p. Raises a Lua error
 * naming the part and the bad field on a missing or out-of-range value.
 */
void fh_avr_part_get(lua_State *L, int idx, struct fh_avr_part *p);

/* True when word addresses need Load Extended Address (flash > 128 KiB). */
#define FH_AVR_NEEDS_EXT_ADDR(p) ((p)->flash_size > 0x20000u)

#endif
