/*
 * vboard.core.c: `fotahost.vboard.core`, a virtual LinkIt Smart 7688 Duo
 * whose ATmega32U4 really runs the flashed firmware (simavr's m32u4 core,
 * 8 MHz). Scripts use it through its face, `fotahost.vboard`.
 *
 *   local board = assert(vboard.open(dir, { pace = true, led_log = path }))
 *   local wait = board:step(0.01)   -- run at most 10 ms of wall time
 *   for _, e in ipairs(board:led_events()) do print(e.t, e.on) end
 *
 * `dir` is the simulated chip that `fotahost flash -c sim -P dir` programs
 * (dev/plugins/gpio_sim.c): the MCU runs from dir/flash.bin, and follows RESET
 * through dir/reset ("0" while an ISP session holds it low: the MCU is
 * halted; "1": it restarts from the flash just written).
 *
 * Where a reset starts, as on the chip: the high fuse in dir/fuses.txt
 * (read at each start; without the file, the board's factory 0xD8). With
 * BOOTRST programmed (bit 0 = 0) the MCU starts at the boot section, whose
 * size BOOTSZ (bits 2:1) gives: 11 = 512 bytes at 0x7E00, 10 = 1 KB at
 * 0x7C00, 01 = 2 KB at 0x7800, 00 = 4 KB at 0x7000 (Caterina's); with
 * BOOTRST unprogrammed, at 0x0000. An erased boot section does not stop the
 * MCU: simavr runs 0xFFFF as SBRS r31,7 (one cycle each, skipping another
 * 0xFFFF at most), so it slides to the end of flash, where the program
 * counter wraps to 0x0000 as the chip's does (simavr would stop there:
 * see run_chunk()). So a chip erase that wiped the bootloader leaves a
 * sketch that still runs, 2048 cycles (256 us) late with a 4 KB section.
 * Not modelled: IVSEL (MCUCR), which moves the interrupt vectors into the
 * boot section; simavr keeps them at 0x0000, so a bootloader that uses
 * interrupts (Caterina does) would misbehave here. Ours uses none.
 *
 * What the board shows of the MCU:
 *   - D13 = PC7: every transition, with its simulated time, from the cycle
 *     counter, so a timestamp is exact to the instruction whatever the
 *     host's load;
 *   - Serial1 = USART1: a pseudo-terminal, published as dir/ttyS0. Bytes
 *     written to it reach the MCU one byte time apart in simulated time;
 *     bytes the MCU sends come out of it. As on the real /dev/ttyS0, what
 *     the MCU sends while nobody has the tty open is lost, and so is what
 *     is written to it while the MCU is held in reset.
 *   - dir/ttyS0.pid ("PID\n", decimal): the process running the board, so
 *     a user of dir/ttyS0 can tell a live link from one left by a board
 *     killed with -9 (its /dev/pts/N may belong to someone else since).
 *
 * opts: pace (boolean, default true), led_log (a file name); any other
 * key, or a value of the wrong type, is an error.
 *
 * Nothing blocks: step() runs the core for a bounded wall time and says how
 * long the caller may wait; fds() lists what to wait on. With pacing (the
 * default) simulated time never runs ahead of real time.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "fotahost.h"

/* simavr's headers are not written for our warning set. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wsign-compare"
#include <sim_avr.h>
#include <sim_core.h>
#include <sim_cycle_timers.h>
#include <sim_io.h>
#include <sim_irq.h>
#include <avr_ioport.h>
#include <avr_uart.h>
#pragma GCC diagnostic pop

#define VBOARD_MT "fotahost.vboard.core.board"
#define VB_PART "atmega32u4"
#define VB_HZ 8000000.0
#define VB_FLASH_SIZE 32768
#define VB_LED_PORT 'C'
#define VB_LED_PIN 7
#define VB_UART '1'
/* dir/reset is looked at this often (wall seconds). */
#define VB_RESET_CHECK 0.004
/* Sim cycles run between looks at the wall clock and dir/reset. */
#define VB_CHUNK_CYCLES 16000
/* Instructions between looks at the wall clock inside a chunk. */
#define VB_CLOCK_EVERY 2048
/* Paced and behind by more than this (the process was stopped, say):
 * forget the lag instead of racing to catch up. */
#define VB_MAX_LAG 1.0
#define VB_LED_RING 4096
#define VB_SERIAL_RING 8192
#define VB_RX_QUEUE 4096
/* 10 bits at 57600 baud, until the firmware sets the baud rate. */
#define VB_DEFAULT_BYTE_CYCLES 1389

struct led_event {
    uint64_t cycle;
    int on;
};

struct serial_event {
    uint64_t cycle;
    uint8_t byte;
    uint8_t tx;   /* sent by the MCU (1) or to it (0) */
    uint8_t lost; /* to the MCU while its receiver was off */
};

struct reset_event {
    uint64_t cycle;
    int halted;
};

typedef struct {
    avr_t *avr;     /* NULL once closed */
    char *dir;
    char *tty_link; /* dir/ttyS0 */
    char *pid_file; /* dir/ttyS0.pid: this process's pid, while the link is ours */
    char tty_name[64];
    int master;
    int listening; /* someone has the tty open (the master is not hung up) */
    FILE *led_log;
    char *led_log_path;
    int pace;

    /* Board time in cycles is base + (avr->cycle - epoch): a restart or a
     * halt does not move it backwards. */
    uint64_t base;
    avr_cycle_count_t epoch;
    uint64_t target; /* where the running chunk stops */
    double wall_anchor;
    uint64_t sim_anchor;
    double last_wall;

    uint32_t boot_pc; /* where a reset starts (a byte address): see boot_address() */

    /* RESET, from dir/reset */
    int halted;
    int stopped; /* the core crashed or slept with interrupts off */
    unsigned long restarts;
    unsigned long wraps; /* times the program counter ran off the end of flash */
    double next_reset_check;
    struct stat reset_st;
    int reset_seen;
    char last_error[256];

    /* D13 */
    avr_ioport_t *portc;
    int led;
    struct led_event *leds;
    size_t led_head, led_count;
    unsigned long led_lost;

    /* Serial1 */
    avr_uart_t *uart;
    avr_irq_t *uart_irq;
    uint8_t rxq[VB_RX_QUEUE];
    size_t rx_head, rx_count;
    int rx_in_feed, xoff; /* rx_in_feed: rx_feed() is running */
    uint64_t rx_free, tx_free; /* when each line is idle again */
    struct serial_event *ser;
    size_t ser_head, ser_count;
    unsigned long ser_lost, tx_dropped;

    struct reset_event resets[64];
    size_t reset_count;
} Board;

static double wall_now(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t board_cycles(const Board *b)
{
    return b->base + (uint64_t)(b->avr->cycle - b->epoch);
}

static double cycles_to_s(uint64_t c)
{
    return (double)c / VB_HZ;
}

/* ---------------------------------------------------------------- logging */

/* simavr's messages go nowhere by default: the last error is kept for
 * stats() instead of cluttering the user's terminal. */
static void quiet_logger(avr_t *avr, const int level, const char *fmt, va_list ap)
{
    Board *b;

    if (avr == NULL || level > LOG_ERROR)
        return;
    b = (Board *)avr->custom.data;
    if (b != NULL)
        vsnprintf(b->last_error, sizeof b->last_error, fmt, ap);
}

/* The core's sleeps are ours to pace, not usleep()'s. */
static void no_sleep(avr_t *avr, avr_cycle_count_t how_long)
{
    (void)avr;
    (void)how_long;
}

/* ---------------------------------------------------------------- D13 */

static void led_record(Board *b, uint64_t cycle, int on)
{
    size_t i;

    b->led = on;
    if (b->led_count == VB_LED_RING) { /* drop the oldest */
        b->led_head = (b->led_head + 1) % VB_LED_RING;
        b->led_count--;
        b->led_lost++;
    }
    i = (b->led_head + b->led_count) % VB_LED_RING;
    b->leds[i].cycle = cycle;
    b->leds[i].on = on;
    b->led_count++;
    if (b->led_log != NULL)
        fprintf(b->led_log, "t=%.6f D13 %s\n", cycles_to_s(cycle), on ? "on" : "off");
}

/* D13 lights when PC7 drives high; an input pin floats and the LED is off. */
static void led_update(Board *b, uint8_t ddr, uint8_t port)
{
    int on = (ddr >> VB_LED_PIN) & (port >> VB_LED_PIN) & 1;

    if (!b->halted && on != b->led)
        led_record(b, board_cycles(b), on);
}

/* PC7's pin irq: simavr has stored PORTC and DDRC when it raises it. */
static void led_changed(avr_irq_t *irq, uint32_t value, void *param)
{
    Board *b = (Board *)param;

    (void)irq;
    (void)value;
    led_update(b, b->avr->data[b->portc->r_ddr], b->avr->data[b->portc->r_port]);
}

/* PORTC's direction irq: simavr 1.6 raises it before it stores DDRC, so
 * the new DDRC is the irq's value, not the register. */
static void led_direction(avr_irq_t *irq, uint32_t value, void *param)
{
    Board *b = (Board *)param;

    (void)irq;
    led_update(b, (uint8_t)value, b->avr->data[b->portc->r_port]);
}

/* ---------------------------------------------------------------- Serial1 */

static void serial_record(Board *b, uint64_t cycle, uint8_t byte, int tx, int lost)
{
    size_t i;

    if (b->ser_count == VB_SERIAL_RING) {
        b->ser_head = (b->ser_head + 1) % VB_SERIAL_RING;
        b->ser_count--;
        b->ser_lost++;
    }
    i = (b->ser_head + b->ser_count) % VB_SERIAL_RING;
    b->ser[i].cycle = cycle;
    b->ser[i].byte = byte;
    b->ser[i].tx = (uint8_t)tx;
    b->ser[i].lost = (uint8_t)lost;
    b->ser_count++;
}

static uint64_t byte_cycles(const Board *b)
{
    return b->uart->cycles_per_byte > 0 ? (uint64_t)b->uart->cycles_per_byte : VB_DEFAULT_BYTE_CYCLES;
}

/* Discards what the MCU sent that the last reader of the tty left unread:
 * the next one must not get it. */
static void flush_tty(Board *b)
{
    int fd = open(b->tty_name, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

    if (fd >= 0) {
        tcflush(fd, TCIFLUSH);
        close(fd);
    }
}

/*
 * Whether someone has the tty open. The board does not hold the slave
 * side, so with nobody on it the master is hung up (POLLHUP; read() fails
 * with EIO). Like a real /dev/ttyS0, a tty nobody has open discards what
 * arrives: the MCU's bytes are dropped meanwhile, and what the last reader
 * left unread is flushed when it goes.
 */
static int tty_listening(Board *b)
{
    struct pollfd p;
    int on;

    if (b->master < 0)
        return 0;
    p.fd = b->master;
    p.events = POLLIN;
    p.revents = 0;
    if (poll(&p, 1, 0) < 0)
        return b->listening;
    on = !(p.revents & (POLLHUP | POLLERR | POLLNVAL));
    if (b->listening && !on)
        flush_tty(b);
    b->listening = on;
    return on;
}

/* A byte from the MCU: out to the pty at once, timed at the end of its
 * stop bit. Nobody listening, or a full pty (nobody reading), loses it, as
 * a serial line would; stats().tx_dropped counts them. */
static void uart_tx(avr_irq_t *irq, uint32_t value, void *param)
{
    Board *b = (Board *)param;
    uint64_t now = board_cycles(b);
    uint8_t c = (uint8_t)value;

    (void)irq;
    b->tx_free = (b->tx_free > now ? b->tx_free : now) + byte_cycles(b);
    serial_record(b, b->tx_free, c, 1, 0);
    if (!tty_listening(b) || write(b->master, &c, 1) != 1)
        b->tx_dropped++;
}

/*
 * Feeds the next queued byte to USART1: the start bit now, so simavr raises
 * RXC one byte time later, at the end of the stop bit (the time recorded).
 * Runs as a cycle timer, one byte time apart, while bytes remain and the
 * UART has room.
 */
static avr_cycle_count_t rx_feed(avr_t *avr, avr_cycle_count_t when, void *param)
{
    Board *b = (Board *)param;
    uint64_t now, bc;
    uint8_t c;
    int lost;

    (void)avr;
    if (b->rx_count == 0 || b->xoff || b->halted)
        return 0;
    b->rx_in_feed = 1;
    now = board_cycles(b);
    bc = byte_cycles(b);
    c = b->rxq[b->rx_head];
    b->rx_head = (b->rx_head + 1) % VB_RX_QUEUE;
    b->rx_count--;
    lost = !avr_regbit_get(b->avr, b->uart->rxen);
    serial_record(b, now + bc, c, 0, lost);
    b->rx_free = now + bc;
    avr_raise_irq(b->uart_irq + UART_IRQ_INPUT, c);
    b->rx_in_feed = 0;
    if (b->rx_count == 0 || b->xoff)
        return 0;
    return when + (avr_cycle_count_t)bc;
}

/* Schedules rx_feed() unless it is due or running already. The timer is
 * asked, not a flag: any reset of the core (the watchdog's too) cancels
 * every cycle timer. */
static void rx_kick(Board *b)
{
    uint64_t now;

    if (b->rx_count == 0 || b->xoff || b->halted || b->avr == NULL || b->rx_in_feed
        || avr_cycle_timer_status(b->avr, rx_feed, b) != 0)
        return;
    now = board_cycles(b);
    avr_cycle_timer_register(b->avr, b->rx_free > now ? (avr_cycle_count_t)(b->rx_free - now) : 1,
                             rx_feed, b);
}

static void uart_xon(avr_irq_t *irq, uint32_t value, void *param)
{
    Board *b = (Board *)param;

    (void)irq;
    if (value) {
        b->xoff = 0;
        rx_kick(b);
    }
}

static void uart_xoff(avr_irq_t *irq, uint32_t value, void *param)
{
    Board *b = (Board *)param;

    (void)irq;
    b->xoff = value != 0;
}

/* Loses what is queued for the MCU, as it is held in reset. */
static void rx_drop(Board *b)
{
    uint64_t now = board_cycles(b);

    for (; b->rx_count > 0; b->rx_count--) {
        serial_record(b, now, b->rxq[b->rx_head], 0, 1);
        b->rx_head = (b->rx_head + 1) % VB_RX_QUEUE;
    }
    b->rx_head = 0;
}

/* Takes what was written to the tty into the queue, as far as it has room:
 * the rest waits in the pty, so nothing is dropped. An MCU held in reset
 * hears nothing: what arrives meanwhile is lost (serial events with
 * lost = true). */
static void rx_pump(Board *b)
{
    if (b->halted) {
        uint8_t buf[512];
        ssize_t n, i;
        int rounds;
        for (rounds = 0; rounds < 64 && (n = read(b->master, buf, sizeof buf)) > 0; rounds++)
            for (i = 0; i < n; i++)
                serial_record(b, board_cycles(b), buf[i], 0, 1);
        return;
    }
    while (b->rx_count < VB_RX_QUEUE) {
        uint8_t buf[512];
        size_t room = VB_RX_QUEUE - b->rx_count, i;
        ssize_t n = read(b->master, buf, room < sizeof buf ? room : sizeof buf);
        if (n <= 0)
            break;
        for (i = 0; i < (size_t)n; i++)
            b->rxq[(b->rx_head + b->rx_count + i) % VB_RX_QUEUE] = buf[i];
        b->rx_count += (size_t)n;
    }
    rx_kick(b);
}

/* ---------------------------------------------------------------- flash, RESET */

/* Reads dir/flash.bin into `buf` (VB_FLASH_SIZE bytes, 0xFF past its end). */
static int read_flash(Board *b, uint8_t *buf, char *err, size_t errlen)
{
    char path[PATH_MAX];
    FILE *f;
    size_t n;
    int extra;

    snprintf(path, sizeof path, "%s/flash.bin", b->dir);
    f = fopen(path, "rbe");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    memset(buf, 0xFF, VB_FLASH_SIZE);
    n = fread(buf, 1, VB_FLASH_SIZE, f);
    extra = fgetc(f);
    if (ferror(f)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        fclose(f);
        return -1;
    }
    fclose(f);
    if (extra != EOF) {
        snprintf(err, errlen, "%s: larger than the ATmega32U4's %d bytes of flash", path, VB_FLASH_SIZE);
        return -1;
    }
    (void)n;
    return 0;
}

/* The 7688 Duo's high fuse as it ships: BOOTRST programmed, BOOTSZ = 00. */
#define VB_FACTORY_HFUSE 0xD8

/* The high fuse in dir/fuses.txt ("hfuse=0xD8"), or the board's factory
 * value when the file or the line is missing (a chip never programmed). */
static unsigned read_hfuse(const Board *b)
{
    char path[PATH_MAX], line[128];
    unsigned v = VB_FACTORY_HFUSE, x;
    FILE *f;

    snprintf(path, sizeof path, "%s/fuses.txt", b->dir);
    f = fopen(path, "re");
    if (f == NULL)
        return v;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "hfuse=%x", &x) == 1 && x <= 0xFF)
            v = x;
    fclose(f);
    return v;
}

/* Where the ATmega32U4 starts after a reset, from its high fuse: the boot
 * section's start when BOOTRST (bit 0) is programmed (0), its size given
 * by BOOTSZ (bits 2:1: 11 = 256 words ... 00 = 2048 words); else 0x0000. */
static uint32_t boot_address(unsigned hfuse)
{
    unsigned bootsz = (hfuse >> 1) & 3;

    if (hfuse & 1)
        return 0;
    return VB_FLASH_SIZE - (512u << (3 - bootsz));
}

static void reset_record(Board *b, int halted)
{
    if (b->reset_count == sizeof b->resets / sizeof b->resets[0]) {
        memmove(b->resets, b->resets + 1, sizeof b->resets - sizeof b->resets[0]);
        b->reset_count--;
    }
    b->resets[b->reset_count].cycle = board_cycles(b);
    b->resets[b->reset_count].halted = halted;
    b->reset_count++;
}

/* Things simavr's reset forgets, set again on each (re)start. */
static void core_setup(Board *b)
{
    uint32_t flags = 0;

    b->avr->sleep = no_sleep;
    b->avr->log = LOG_ERROR;
    b->avr->codeend = b->avr->flashend;
    if (avr_ioctl(b->avr, AVR_IOCTL_UART_GET_FLAGS(VB_UART), &flags) == 0) {
        flags &= ~(uint32_t)(AVR_UART_FLAG_STDIO | AVR_UART_FLAG_POLL_SLEEP);
        avr_ioctl(b->avr, AVR_IOCTL_UART_SET_FLAGS(VB_UART), &flags);
    }
}

static void halt(Board *b)
{
    if (b->halted)
        return;
    reset_record(b, 1);
    if (b->led)
        led_record(b, board_cycles(b), 0); /* PC7 floats: D13 goes dark */
    b->halted = 1;
    avr_cycle_timer_cancel(b->avr, rx_feed, b);
    rx_drop(b);
}

/* RESET released: the MCU starts again from the flash just written. */
static void restart(Board *b)
{
    static uint8_t image[VB_FLASH_SIZE];
    uint64_t now = board_cycles(b);

    if (read_flash(b, image, b->last_error, sizeof b->last_error) != 0)
        return; /* stay halted; the next look may find the file */
    b->halted = 1; /* the reset's own pin changes are not D13 transitions */
    b->boot_pc = boot_address(read_hfuse(b)); /* a session may have written the fuses */
    b->avr->reset_pc = b->boot_pc;
    avr_reset(b->avr);
    memcpy(b->avr->flash, image, VB_FLASH_SIZE);
    core_setup(b);
    b->base = now;
    b->epoch = b->avr->cycle;
    b->halted = 0;
    b->stopped = 0;
    b->led = 0;
    b->xoff = 0;
    rx_drop(b); /* nothing is queued while halted: this is only in case */
    b->rx_free = b->tx_free = now;
    b->restarts++;
    reset_record(b, 0);
    rx_kick(b);
}

/*
 * Looks at dir/reset. Each change replaces the file, so a new inode or
 * mtime with "1" in it means a whole ISP session happened between two
 * looks: halt and restart all the same. A missing file means running.
 * The programmer's few-microsecond RESET pulses (a Programming Enable
 * retry) never show here: "1" is published only once RESET has stayed
 * released (dev/plugins/gpio_sim.c), after flash.bin is saved, so a "1" seen
 * while halted restarts the MCU at once. The state read and the inode and
 * mtime compared come from the same open file.
 */
static void check_reset(Board *b)
{
    char path[PATH_MAX], c = '1';
    struct stat st;
    int fd, changed;

    snprintf(path, sizeof path, "%s/reset", b->dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        if (fd >= 0)
            close(fd);
        if (b->halted)
            restart(b);
        b->reset_seen = 0;
        return;
    }
    changed = !b->reset_seen || st.st_ino != b->reset_st.st_ino || st.st_dev != b->reset_st.st_dev
              || st.st_mtim.tv_sec != b->reset_st.st_mtim.tv_sec
              || st.st_mtim.tv_nsec != b->reset_st.st_mtim.tv_nsec || st.st_size != b->reset_st.st_size;
    if (!changed && !b->halted) {
        close(fd);
        return;
    }
    if (read(fd, &c, 1) != 1)
        c = '1';
    close(fd);
    if (c == '0') {
        halt(b);
    } else if (b->halted) {
        restart(b);
    } else if (changed && b->reset_seen) {
        halt(b); /* a whole session between two looks */
        restart(b);
    }
    if (!b->halted || c == '0') { /* a failed restart looks again */
        b->reset_st = st;
        b->reset_seen = 1;
    }
}

/* ---------------------------------------------------------------- running */

/* Stops a core that sleeps until its next timer at the chunk's end. */
static avr_cycle_count_t chunk_end(avr_t *avr, avr_cycle_count_t when, void *param)
{
    (void)avr;
    (void)when;
    (void)param;
    return 0;
}

/*
 * Whether the core stopped because its program counter ran past the last
 * word of flash. On the chip the counter has 14 bits and wraps to 0x0000;
 * simavr instead "crashes" with the counter set to 0, before running
 * anything there. Its other crashes (a bad RAM access) leave the counter
 * after the instruction that crashed, which is 0 only if that instruction
 * jumped to 0x0000: then too the MCU goes on from 0x0000, as the chip
 * (which has no such crash) would.
 */
static int ran_off_flash(const Board *b)
{
    return b->avr->pc == 0;
}

/* Runs the core to b->target or the wall deadline. */
static void run_chunk(Board *b, double deadline)
{
    avr_t *avr = b->avr;
    uint64_t now = board_cycles(b);
    unsigned n = 0;

    if (b->target <= now)
        return;
    avr_cycle_timer_register(avr, (avr_cycle_count_t)(b->target - now), chunk_end, b);
    while (board_cycles(b) < b->target && !b->halted) {
        int state = avr_run(avr);
        if (state == cpu_Crashed && ran_off_flash(b)) {
            avr->state = cpu_Running; /* the program counter wrapped to 0x0000 */
            b->wraps++;
            if (strcmp(b->last_error, "avr_sadly_crashed\n") == 0)
                b->last_error[0] = '\0'; /* simavr's word for it: no error here */
            continue;
        }
        if (state == cpu_Done || state == cpu_Crashed) {
            b->stopped = 1;
            break;
        }
        if (++n % VB_CLOCK_EVERY == 0 && wall_now() >= deadline)
            break;
    }
    avr_cycle_timer_cancel(avr, chunk_end, b);
}

/* ---------------------------------------------------------------- Lua API */

static Board *check_board(lua_State *L)
{
    Board *b = (Board *)luaL_checkudata(L, 1, VBOARD_MT);

    if (b->avr == NULL)
        luaL_error(L, "attempt to use a closed board");
    return b;
}

/*
 * board:step(max_wall_seconds[, until_sim_seconds])
 *   -> seconds to wait before stepping again
 * Runs the MCU for at most max_wall_seconds of wall time, and not past
 * until_sim_seconds of simulated time when given; 0 means "step again at
 * once" (unpaced, behind real time, or stopped by either limit).
 */
static int board_step(lua_State *L)
{
    Board *b = check_board(L);
    lua_Number max_wall = luaL_checknumber(L, 2);
    lua_Number until = luaL_optnumber(L, 3, HUGE_VAL);
    double start = wall_now(), deadline, now, wait;
    uint64_t limit = UINT64_MAX;

    luaL_argcheck(L, !isnan(max_wall) && max_wall >= 0, 2, "seconds must be >= 0");
    luaL_argcheck(L, !isnan(until), 3, "time is NaN");
    if (until < 0)
        limit = 0;
    else if (until * VB_HZ < 1.8e19)
        limit = (uint64_t)ceil(until * VB_HZ);
    deadline = start + (max_wall > 3600 ? 3600 : max_wall);
    (void)tty_listening(b); /* notices a reader gone, and flushes after it */
    rx_pump(b);
    for (;;) {
        now = wall_now();
        if (now >= b->next_reset_check) {
            check_reset(b);
            b->next_reset_check = now + VB_RESET_CHECK;
        }
        if (b->halted || b->stopped) {
            /* The board's clock runs on while the MCU does not. */
            b->base += (uint64_t)((now - b->last_wall) * VB_HZ);
            b->last_wall = now;
            if (b->pace) {
                b->wall_anchor = now;
                b->sim_anchor = board_cycles(b);
            }
            wait = b->next_reset_check - now;
            break;
        }
        b->last_wall = now;
        if (b->pace) {
            uint64_t due = b->sim_anchor + (uint64_t)((now - b->wall_anchor) * VB_HZ);
            uint64_t at = board_cycles(b);
            if (due <= at) { /* caught up: nothing to do before the next look */
                wait = b->next_reset_check - now;
                if (wait < 0.001)
                    wait = 0.001;
                break;
            }
            if (cycles_to_s(due - at) > VB_MAX_LAG) {
                b->wall_anchor = now;
                b->sim_anchor = at;
                continue;
            }
            b->target = due - at > VB_CHUNK_CYCLES ? at + VB_CHUNK_CYCLES : due;
        } else {
            b->target = board_cycles(b) + VB_CHUNK_CYCLES;
        }
        if (b->target > limit)
            b->target = limit;
        if (now >= deadline || board_cycles(b) >= limit) {
            wait = 0;
            break;
        }
        run_chunk(b, deadline);
    }
    if (b->led_log != NULL)
        fflush(b->led_log);
    lua_pushnumber(L, wait > 0 ? wait : 0);
    return 1;
}

/* board:led_events() -> { {t=, on=}, ... }, oldest first; clears them */
static int board_led_events(lua_State *L)
{
    Board *b = check_board(L);
    size_t i;

    lua_createtable(L, (int)b->led_count, 0);
    for (i = 0; i < b->led_count; i++) {
        const struct led_event *e = &b->leds[(b->led_head + i) % VB_LED_RING];
        lua_createtable(L, 0, 2);
        lua_pushnumber(L, cycles_to_s(e->cycle));
        lua_setfield(L, -2, "t");
        lua_pushboolean(L, e->on);
        lua_setfield(L, -2, "on");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    b->led_head = b->led_count = 0;
    return 1;
}

/* board:serial_events() -> { {t=, byte=, dir="rx"|"tx"[, lost=true]}, ... }
 * "rx" is a byte the MCU received, "tx" one it sent; t is the end of its
 * stop bit. Clears them. */
static int board_serial_events(lua_State *L)
{
    Board *b = check_board(L);
    size_t i;

    lua_createtable(L, (int)b->ser_count, 0);
    for (i = 0; i < b->ser_count; i++) {
        const struct serial_event *e = &b->ser[(b->ser_head + i) % VB_SERIAL_RING];
        lua_createtable(L, 0, 4);
        lua_pushnumber(L, cycles_to_s(e->cycle));
        lua_setfield(L, -2, "t");
        lua_pushinteger(L, e->byte);
        lua_setfield(L, -2, "byte");
        lua_pushstring(L, e->tx ? "tx" : "rx");
        lua_setfield(L, -2, "dir");
        if (e->lost) {
            lua_pushboolean(L, 1);
            lua_setfield(L, -2, "lost");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    b->ser_head = b->ser_count = 0;
    return 1;
}

/* board:reset_events() -> { {t=, halted=true|false}, ... }; clears them */
static int board_reset_events(lua_State *L)
{
    Board *b = check_board(L);
    size_t i;

    lua_createtable(L, (int)b->reset_count, 0);
    for (i = 0; i < b->reset_count; i++) {
        lua_createtable(L, 0, 2);
        lua_pushnumber(L, cycles_to_s(b->resets[i].cycle));
        lua_setfield(L, -2, "t");
        lua_pushboolean(L, b->resets[i].halted);
        lua_setfield(L, -2, "halted");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    b->reset_count = 0;
    return 1;
}

/* board:led() -> true | false */
static int board_led(lua_State *L)
{
    lua_pushboolean(L, check_board(L)->led);
    return 1;
}

/* board:tty() -> "dir/ttyS0", "/dev/pts/N" */
static int board_tty(lua_State *L)
{
    Board *b = check_board(L);

    lua_pushstring(L, b->tty_link);
    lua_pushstring(L, b->tty_name);
    return 2;
}

/* board:fds() -> { fd, ... }: what step() may be waiting for. Empty while
 * nobody has the tty open (a hung-up master would always poll ready) or
 * the queue for the MCU is full (reading more must wait). */
static int board_fds(lua_State *L)
{
    Board *b = check_board(L);

    lua_createtable(L, 1, 0);
    if (b->rx_count < VB_RX_QUEUE && tty_listening(b)) {
        lua_pushinteger(L, b->master);
        lua_rawseti(L, -2, 1);
    }
    return 1;
}

/* board:time() -> simulated seconds since open */
static int board_time(lua_State *L)
{
    lua_pushnumber(L, cycles_to_s(board_cycles(check_board(L))));
    return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* board:stats() -> { cycles=, sim_seconds=, restarts=, halted=, ... } */
static int board_stats(lua_State *L)
{
    Board *b = check_board(L);
    uint64_t c = board_cycles(b);

    lua_createtable(L, 0, 12);
    set_int(L, "cycles", (lua_Integer)c);
    lua_pushnumber(L, cycles_to_s(c));
    lua_setfield(L, -2, "sim_seconds");
    set_int(L, "restarts", (lua_Integer)b->restarts);
    set_int(L, "wraps", (lua_Integer)b->wraps);
    set_int(L, "boot_pc", (lua_Integer)b->boot_pc);
    lua_pushboolean(L, b->halted);
    lua_setfield(L, -2, "halted");
    lua_pushboolean(L, b->stopped);
    lua_setfield(L, -2, "stopped");
    set_int(L, "led_events_lost", (lua_Integer)b->led_lost);
    set_int(L, "serial_events_lost", (lua_Integer)b->ser_lost);
    set_int(L, "tx_dropped", (lua_Integer)b->tx_dropped);
    set_int(L, "rx_pending", (lua_Integer)b->rx_count);
    if (b->last_error[0] != '\0') {
        lua_pushstring(L, b->last_error);
        lua_setfield(L, -2, "last_error");
    }
    return 1;
}

/*
 * avr_terminate() frees the io modules' irq blocks but not the others (the
 * interrupt vectors'), nor any irq's name and hooks, nor the pool's array,
 * and it leaves the pool pointing at what it freed. So: before it, free
 * every name and hook (a hook starts with its `next` pointer) and note
 * the blocks no io module owns; after it, free those and the pool.
 * A block avr_alloc_irq() made is a run of IRQ_FLAG_ALLOC irqs, adjacent
 * in memory and listed in order in the pool.
 */
struct irq_hook_head {
    struct irq_hook_head *next;
};

static int owned_by_io(avr_t *avr, const avr_irq_t *irq)
{
    avr_io_t *io;

    for (io = avr->io_port; io != NULL; io = io->next)
        if (io->irq == irq)
            return 1;
    return 0;
}

static void terminate_core(avr_t *avr)
{
    avr_irq_pool_t *pool = &avr->irq_pool;
    avr_irq_t *prev = NULL;
    avr_irq_t **blocks = calloc((size_t)pool->count + 1, sizeof *blocks);
    int i, n = 0;

    for (i = 0; i < pool->count; i++) {
        avr_irq_t *irq = pool->irq[i];
        struct irq_hook_head *h;
        if (irq == NULL) {
            prev = NULL;
            continue;
        }
        if ((irq->flags & IRQ_FLAG_ALLOC) && (prev == NULL || irq != prev + 1)
            && blocks != NULL && !owned_by_io(avr, irq))
            blocks[n++] = irq;
        prev = irq;
        free((char *)irq->name);
        irq->name = NULL;
        for (h = (struct irq_hook_head *)irq->hook; h != NULL;) {
            struct irq_hook_head *next = h->next;
            free(h);
            h = next;
        }
        irq->hook = NULL;
    }
    avr_terminate(avr);
    for (i = 0; i < n; i++)
        free(blocks[i]);
    free(blocks);
    free(pool->irq);
    pool->irq = NULL;
    pool->count = 0;
}

/* The pid in a dir/ttyS0.pid file ("1234\n"), or -1. */
static long read_pid(const char *path)
{
    char buf[32], *end;
    FILE *f = fopen(path, "re");
    size_t n;
    long pid;

    if (f == NULL)
        return -1;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    errno = 0;
    pid = strtol(buf, &end, 10);
    if (end == buf || errno != 0 || pid <= 0 || (*end != '\n' && *end != '\0'))
        return -1;
    return pid;
}

/* Idempotent: close(), __gc and __close all end here. */
static int board_close(lua_State *L)
{
    Board *b = (Board *)luaL_checkudata(L, 1, VBOARD_MT);
    int ours = 1; /* the link is ours, or was never made */

    if (b->avr != NULL) {
        terminate_core(b->avr);
        free(b->avr);
        b->avr = NULL;
    }
    if (b->tty_link != NULL) {
        char target[sizeof b->tty_name];
        ssize_t n = readlink(b->tty_link, target, sizeof target - 1);
        ours = n < 0 && errno == ENOENT;
        if (n > 0) {
            target[n] = '\0';
            ours = strcmp(target, b->tty_name) == 0;
            if (ours)
                unlink(b->tty_link);
        }
        free(b->tty_link);
        b->tty_link = NULL;
    }
    if (b->pid_file != NULL) { /* after the link: a pid file alone names no tty */
        if (ours && read_pid(b->pid_file) == (long)getpid())
            unlink(b->pid_file);
        free(b->pid_file);
        b->pid_file = NULL;
    }
    if (b->master >= 0)
        close(b->master);
    b->master = -1;
    if (b->led_log != NULL)
        fclose(b->led_log);
    b->led_log = NULL;
    free(b->led_log_path);
    b->led_log_path = NULL;
    free(b->leds);
    free(b->ser);
    free(b->dir);
    b->leds = NULL;
    b->ser = NULL;
    b->dir = NULL;
    return 0;
}

static int board_tostring(lua_State *L)
{
    Board *b = (Board *)luaL_checkudata(L, 1, VBOARD_MT);

    if (b->avr == NULL)
        lua_pushliteral(L, "vboard (closed)");
    else
        lua_pushfstring(L, "vboard (%s)", b->dir);
    return 1;
}

/* Replaces `path` with a file holding "PID\n", this process's pid. */
static int write_pid_file(const Board *b, const char *path, char *err, size_t errlen)
{
    char tmp[PATH_MAX];
    FILE *f;

    snprintf(tmp, sizeof tmp, "%s/.ttyS0.pid.%ld", b->dir, (long)getpid());
    f = fopen(tmp, "we");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
        return -1;
    }
    if (fprintf(f, "%ld\n", (long)getpid()) < 0 || fclose(f) != 0 || rename(tmp, path) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    return 0;
}

/*
 * Opens the pty for Serial1 (raw, 57600) and links dir/ttyS0 to it, with
 * dir/ttyS0.pid ("PID\n", the board's process) beside it: the link is
 * the board's while that process lives. A link left by a board that died
 * without closing (kill -9), whose pid file names a process that is gone,
 * may point to a /dev/pts/N some unrelated program got since: it is
 * removed, and replaced. The pid file is written before the link and
 * removed after it, so a live link always has its pid file.
 *
 * The board does not keep the slave open: a tty nobody has open discards
 * what the MCU sends, as /dev/ttyS0 does (see tty_listening()). The raw
 * mode set here stays with the pty while the master is open.
 */
static int open_tty(Board *b, char *err, size_t errlen)
{
    struct termios tio;
    char tmp[PATH_MAX];
    int slave;
    size_t n;
    long pid;

    if (openpty(&b->master, &slave, b->tty_name, NULL, NULL) != 0) {
        snprintf(err, errlen, "openpty: %s", strerror(errno));
        return -1;
    }
    fcntl(b->master, F_SETFD, FD_CLOEXEC);
    fcntl(b->master, F_SETFL, fcntl(b->master, F_GETFL) | O_NONBLOCK);
    if (tcgetattr(slave, &tio) == 0) {
        cfmakeraw(&tio);
        cfsetispeed(&tio, B57600);
        cfsetospeed(&tio, B57600);
        tcsetattr(slave, TCSANOW, &tio);
    }
    close(slave);
    b->listening = 0;
    n = strlen(b->dir) + sizeof "/ttyS0.pid";
    b->tty_link = malloc(n);
    b->pid_file = malloc(n);
    if (b->tty_link == NULL || b->pid_file == NULL) {
        snprintf(err, errlen, "vboard: out of memory");
        return -1;
    }
    snprintf(b->tty_link, n, "%s/ttyS0", b->dir);
    snprintf(b->pid_file, n, "%s/ttyS0.pid", b->dir);
    pid = read_pid(b->pid_file);
    if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH) {
        unlink(b->tty_link); /* stale: its board died without closing */
        unlink(b->pid_file);
    }
    if (write_pid_file(b, b->pid_file, err, errlen) != 0) {
        free(b->pid_file);
        b->pid_file = NULL;
        free(b->tty_link);
        b->tty_link = NULL;
        return -1;
    }
    snprintf(tmp, sizeof tmp, "%s/.ttyS0.%ld", b->dir, (long)getpid());
    unlink(tmp);
    if (symlink(b->tty_name, tmp) != 0 || rename(tmp, b->tty_link) != 0) {
        snprintf(err, errlen, "%s: %s", b->tty_link, strerror(errno));
        unlink(tmp);
        free(b->tty_link);
        b->tty_link = NULL;
        return -1; /* board_close() removes the pid file */
    }
    return 0;
}

static avr_io_t *find_io(avr_t *avr, const char *kind, char name)
{
    avr_io_t *io;

    for (io = avr->io_port; io != NULL; io = io->next) {
        if (strcmp(io->kind, kind) != 0)
            continue;
        if (strcmp(kind, "uart") == 0 && ((avr_uart_t *)io)->name == name)
            return io;
        if (strcmp(kind, "port") == 0 && ((avr_ioport_t *)io)->name == name)
            return io;
    }
    return NULL;
}

static int open_core(Board *b, char *err, size_t errlen)
{
    static uint8_t image[VB_FLASH_SIZE];
    avr_irq_t *irq;

    if (read_flash(b, image, err, errlen) != 0)
        return -1;
    b->avr = avr_make_mcu_by_name(VB_PART);
    if (b->avr == NULL) {
        snprintf(err, errlen, "simavr has no %s core", VB_PART);
        return -1;
    }
    b->avr->custom.data = b;
    if (avr_init(b->avr) != 0) {
        snprintf(err, errlen, "simavr: cannot initialise the %s core", VB_PART);
        free(b->avr);
        b->avr = NULL;
        return -1;
    }
    b->avr->frequency = (uint32_t)VB_HZ;
    memcpy(b->avr->flash, image, VB_FLASH_SIZE);
    b->boot_pc = boot_address(read_hfuse(b));
    b->avr->reset_pc = b->boot_pc; /* every later reset (the watchdog's too) */
    b->avr->pc = b->boot_pc;       /* this first one: avr_init() started at 0 */
    core_setup(b);
    b->portc = (avr_ioport_t *)find_io(b->avr, "port", VB_LED_PORT);
    b->uart = (avr_uart_t *)find_io(b->avr, "uart", VB_UART);
    if (b->portc == NULL || b->uart == NULL) {
        snprintf(err, errlen, "simavr's %s core lacks PORT%c or USART%c", VB_PART, VB_LED_PORT, VB_UART);
        return -1;
    }
    irq = avr_io_getirq(b->avr, AVR_IOCTL_IOPORT_GETIRQ(VB_LED_PORT), VB_LED_PIN);
    avr_irq_register_notify(irq, led_changed, b);
    irq = avr_io_getirq(b->avr, AVR_IOCTL_IOPORT_GETIRQ(VB_LED_PORT), IOPORT_IRQ_DIRECTION_ALL);
    avr_irq_register_notify(irq, led_direction, b);
    b->uart_irq = avr_io_getirq(b->avr, AVR_IOCTL_UART_GETIRQ(VB_UART), 0);
    avr_irq_register_notify(b->uart_irq + UART_IRQ_OUTPUT, uart_tx, b);
    avr_irq_register_notify(b->uart_irq + UART_IRQ_OUT_XON, uart_xon, b);
    avr_irq_register_notify(b->uart_irq + UART_IRQ_OUT_XOFF, uart_xoff, b);
    b->epoch = b->avr->cycle;
    return 0;
}

/* Closes the board on the top of the stack (a failed open). */
static void close_new(lua_State *L)
{
    lua_pushcfunction(L, board_close);
    lua_pushvalue(L, -2);
    lua_call(L, 1, 0);
}

/* The options of vboard.open(), into `b` (raises an error on a bad one). */
static void open_options(lua_State *L, int opts, Board *b)
{
    lua_pushnil(L);
    while (lua_next(L, opts) != 0) {
        const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
        if (k != NULL && strcmp(k, "pace") == 0) {
            if (!lua_isboolean(L, -1))
                luaL_error(L, "vboard.open: 'pace' must be a boolean");
            b->pace = lua_toboolean(L, -1);
        } else if (k != NULL && strcmp(k, "led_log") == 0) {
            if (lua_type(L, -1) != LUA_TSTRING)
                luaL_error(L, "vboard.open: 'led_log' must be a string (a file name)");
            free(b->led_log_path);
            b->led_log_path = strdup(lua_tostring(L, -1));
            if (b->led_log_path == NULL)
                luaL_error(L, "vboard: out of memory");
        } else if (k != NULL) {
            luaL_error(L, "vboard.open: unknown option '%s'", k);
        } else {
            luaL_error(L, "vboard.open: unknown option (a %s key)", luaL_typename(L, -2));
        }
        lua_pop(L, 1);
    }
}

/* vboard.open(dir[, {pace=true, led_log=path}]) -> board | fail, msg */
static int vboard_open(lua_State *L)
{
    const char *dir = luaL_checkstring(L, 1);
    char err[PATH_MAX + 128];
    Board *b;

    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    b = (Board *)lua_newuserdatauv(L, sizeof(Board), 0);
    memset(b, 0, sizeof *b);
    b->master = -1;
    b->pace = 1;
    luaL_setmetatable(L, VBOARD_MT); /* from here, __gc frees what b holds */
    if (!lua_isnil(L, 2))
        open_options(L, 2, b);
    b->dir = strdup(dir);
    b->leds = calloc(VB_LED_RING, sizeof *b->leds);
    b->ser = calloc(VB_SERIAL_RING, sizeof *b->ser);
    if (b->dir == NULL || b->leds == NULL || b->ser == NULL) {
        close_new(L);
        return fh_result_msg(L, "vboard: out of memory");
    }
    if (b->led_log_path != NULL) { /* first: nothing is published yet */
        b->led_log = fopen(b->led_log_path, "ae");
        if (b->led_log == NULL) {
            int e = errno;
            lua_pushstring(L, b->led_log_path);
            lua_rotate(L, -2, 1); /* the board on top, for close_new() */
            close_new(L);
            lua_pop(L, 1);
            return fh_result_errno(L, e, lua_tostring(L, -1));
        }
    }
    if (open_core(b, err, sizeof err) != 0 || open_tty(b, err, sizeof err) != 0) {
        close_new(L);
        return fh_result_msg(L, "%s", err);
    }
    b->last_wall = b->wall_anchor = wall_now();
    check_reset(b); /* RESET may be held already */
    b->next_reset_check = b->last_wall + VB_RESET_CHECK;
    return 1;
}

static const luaL_Reg board_methods[] = {
    {"step", board_step},
    {"led_events", board_led_events},
    {"serial_events", board_serial_events},
    {"reset_events", board_reset_events},
    {"led", board_led},
    {"tty", board_tty},
    {"fds", board_fds},
    {"time", board_time},
    {"stats", board_stats},
    {"close", board_close},
    {NULL, NULL},
};

static const luaL_Reg board_meta[] = {
    {"__index", NULL}, /* set by fh_new_class */
    {"__gc", board_close},
    {"__close", board_close},
    {"__tostring", board_tostring},
    {NULL, NULL},
};

static const luaL_Reg vboard_funcs[] = {
    {"open", vboard_open},
    {NULL, NULL},
};

int luaopen_fotahost_vboard_core(lua_State *L);

int luaopen_fotahost_vboard_core(lua_State *L)
{
    avr_global_logger_set(quiet_logger);
    fh_new_class(L, VBOARD_MT, board_meta, board_methods);
    luaL_newlib(L, vboard_funcs);
    lua_pushnumber(L, VB_HZ);
    lua_setfield(L, -2, "hz");
    return 1;
}
