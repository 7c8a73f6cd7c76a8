/*
 * dark.c: firmware that runs (Timer1 toggles PB5, pin D9, every 500 ms)
 * but never touches D13 (PC7). A test expecting "no D13 transitions" must
 * pass with it and fail with any blink firmware.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>

ISR(TIMER1_COMPA_vect)
{
    PORTB ^= _BV(PB5);
}

int main(void)
{
    DDRB |= _BV(PB5);
    OCR1A = (F_CPU / 256UL / 2UL) - 1; /* 500 ms at /256 */
    TCCR1A = 0;
    TCCR1B = _BV(WGM12) | _BV(CS12);
    TIMSK1 = _BV(OCIE1A);
    set_sleep_mode(SLEEP_MODE_IDLE);
    sei();
    for (;;)
        sleep_mode();
}
