/*
 * serial-led.c: D13 (PC7) obeys Serial1 (USART1, 57600 8N1), the line the
 * MT7688 sees as /dev/ttyS0: '1' turns the LED on, '0' off, any other byte
 * is ignored. At start-up it sends "ready\r\n", so the other side knows
 * the MCU listens.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>

#define BAUD 57600UL
/* Double speed: 8 MHz / (8 * 17) is 58824 baud, 2.1% off, as Arduino's
 * core picks it; single speed would be 3.5% off. */
#define UBRR_VALUE ((F_CPU / (8UL * BAUD)) - 1)

static void send(const char *s)
{
    for (; *s != '\0'; s++) {
        while (!(UCSR1A & _BV(UDRE1)))
            ;
        UDR1 = (unsigned char)*s;
    }
}

ISR(USART1_RX_vect)
{
    unsigned char c = UDR1;

    if (c == '1')
        PORTC |= _BV(PC7);
    else if (c == '0')
        PORTC &= ~_BV(PC7);
}

int main(void)
{
    DDRC |= _BV(PC7);
    PORTC &= ~_BV(PC7);
    /* U2X1 before UBRR1L, as Arduino does: the baud rate is taken when
     * UBRR1L is written (simavr computes the byte time then too). */
    UCSR1A = _BV(U2X1);
    UBRR1H = (unsigned char)(UBRR_VALUE >> 8);
    UBRR1L = (unsigned char)UBRR_VALUE;
    UCSR1C = _BV(UCSZ11) | _BV(UCSZ10); /* 8 data bits, no parity, 1 stop */
    UCSR1B = _BV(RXEN1) | _BV(TXEN1) | _BV(RXCIE1);
    sei();
    send("ready\r\n");
    set_sleep_mode(SLEEP_MODE_IDLE);
    for (;;)
        sleep_mode();
}
