/*
 * ddr-toggle.c: test firmware for spec/vboard_spec.lua. D13 (PC7) is
 * switched by its direction alone: PORTC7 is set first, then DDRC7 goes
 * output, input, output at 10, 20 and 30 ms, so D13 is on, off, on.
 */
#include <avr/io.h>
#include <util/delay.h>

int main(void)
{
    PORTC |= _BV(PC7);
    _delay_ms(10);
    DDRC |= _BV(PC7);
    _delay_ms(10);
    DDRC &= (unsigned char)~_BV(PC7);
    _delay_ms(10);
    DDRC |= _BV(PC7);
    for (;;)
        ;
}
