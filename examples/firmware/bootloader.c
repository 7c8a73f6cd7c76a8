/*
 * bootloader.c: a stand-in for the 7688 Duo's Caterina, placed where
 * Caterina lives (the 4 KB boot section at 0x7000, linked there by the
 * Makefile), so the virtual board's boot path can be tested: with BOOTRST
 * programmed a reset starts here.
 *
 * It does what Caterina does when no upload comes: waits a moment after
 * reset, then jumps to the application at 0x0000. Caterina waits about
 * 750 ms for the USB host; this waits BOOT_WAIT_MS (500 ms), short so that
 * tests stay fast. It has no USB and never writes flash; it leaves D13
 * (PC7) alone, so the only trace it leaves is the delay before the
 * sketch's first blink.
 */
#include <avr/io.h>
#include <util/delay.h>

#ifndef BOOT_WAIT_MS
#define BOOT_WAIT_MS 500
#endif

int main(void)
{
    _delay_ms(BOOT_WAIT_MS); /* counted in cycles: exact at F_CPU */
    /* As after a reset: the application sets up everything it uses. */
    __asm__ volatile("jmp 0");
    for (;;) {
    }
}
