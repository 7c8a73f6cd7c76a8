/*
 * blink.c: D13 (PC7) toggles every BLINK_MS milliseconds.
 *
 * Timer1 in CTC mode fires exactly every BLINK_MS: the period depends on
 * the crystal alone, not on how long the code takes, so a test can hold it
 * to a tight tolerance. Between interrupts the MCU sleeps (idle mode keeps
 * the timer running).
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>

#ifndef BLINK_MS
#error "define BLINK_MS, the half-period in milliseconds"
#endif

/* The smallest prescaler whose count fits in 16 bits. */
#if (F_CPU / 1000UL * BLINK_MS / 64UL) <= 65536UL
#define PRESCALE 64UL
#define CS_BITS (_BV(CS11) | _BV(CS10))
#elif (F_CPU / 1000UL * BLINK_MS / 256UL) <= 65536UL
#define PRESCALE 256UL
#define CS_BITS _BV(CS12)
#else
#define PRESCALE 1024UL
#define CS_BITS (_BV(CS12) | _BV(CS10))
#endif
#define TICKS (F_CPU / 1000UL * BLINK_MS / PRESCALE)

#if TICKS * PRESCALE != F_CPU / 1000UL * BLINK_MS
#error "BLINK_MS is not a whole number of timer ticks at this F_CPU"
#endif

ISR(TIMER1_COMPA_vect)
{
    PORTC ^= _BV(PC7);
}

int main(void)
{
    DDRC |= _BV(PC7);
    PORTC &= ~_BV(PC7);
    OCR1A = TICKS - 1;
    TCCR1A = 0;
    TCCR1B = _BV(WGM12) | CS_BITS; /* CTC on OCR1A */
    TIMSK1 = _BV(OCIE1A);
    set_sleep_mode(SLEEP_MODE_IDLE);
    sei();
    for (;;)
        sleep_mode();
}
