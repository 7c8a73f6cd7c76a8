/*
 * Unit tests of the gpiod backend (plugins/gpio/gpiod.c) against a
 * stand-in for libgpiod 1.6: this machine has no GPIO chip, so the library
 * functions the backend calls are defined here (they take precedence over
 * libgpiod.so at link time) and record what happens to each line.
 *
 * Checked: one library call per set and per get (each is one ioctl in
 * libgpiod: GPIOHANDLE_SET/GET_LINE_VALUES), outputs requested together
 * with their initial levels, and on close every output turned back into an
 * input, RESET (line 0) last.
 */
#include <errno.h>
#include <gpiod.h>
#include <string.h>

#include "gpio/gpio.h"
#include "unit.h"

struct gpiod_chip {
    int open;
};

struct gpiod_line {
    unsigned offset;
    int requested;   /* 0 free, 1 input, 2 output */
    int value;
};

static struct gpiod_chip the_chip;
static struct gpiod_line fake_lines[32];
static int calls_set, calls_get, calls_req_in, calls_req_out;
static int fail_open;
static char release_order[64];
static size_t nrelease;

struct gpiod_chip *gpiod_chip_open_lookup(const char *descr)
{
    unsigned i;

    if (fail_open || strcmp(descr, "gpiochip0") != 0) {
        errno = ENOENT;
        return NULL;
    }
    the_chip.open = 1;
    for (i = 0; i < 32; i++)
        fake_lines[i].offset = i; /* requests persist, as in the kernel */
    return &the_chip;
}

void gpiod_chip_close(struct gpiod_chip *chip)
{
    chip->open = 0;
}

struct gpiod_line *gpiod_chip_get_line(struct gpiod_chip *chip, unsigned int offset)
{
    (void)chip;
    if (offset >= 32) {
        errno = EINVAL;
        return NULL;
    }
    return &fake_lines[offset];
}

int gpiod_line_request_input(struct gpiod_line *line, const char *consumer)
{
    (void)consumer;
    calls_req_in++;
    if (line->requested) {
        errno = EBUSY;
        return -1;
    }
    line->requested = 1;
    return 0;
}

int gpiod_line_request_bulk_output(struct gpiod_line_bulk *bulk, const char *consumer,
                                   const int *default_vals)
{
    unsigned i;

    (void)consumer;
    calls_req_out++;
    for (i = 0; i < bulk->num_lines; i++)
        if (bulk->lines[i]->requested) {
            errno = EBUSY;
            return -1;
        }
    for (i = 0; i < bulk->num_lines; i++) {
        bulk->lines[i]->requested = 2;
        bulk->lines[i]->value = default_vals[i];
    }
    return 0;
}

int gpiod_line_set_value_bulk(struct gpiod_line_bulk *bulk, const int *values)
{
    unsigned i;

    calls_set++;
    for (i = 0; i < bulk->num_lines; i++)
        bulk->lines[i]->value = values[i];
    return 0;
}

int gpiod_line_get_value(struct gpiod_line *line)
{
    calls_get++;
    return line->value;
}

void gpiod_line_release(struct gpiod_line *line)
{
    if (nrelease < sizeof release_order - 1)
        release_order[nrelease++] = (char)('a' + line->offset % 26);
    line->requested = 0;
}

void gpiod_line_release_bulk(struct gpiod_line_bulk *bulk)
{
    unsigned i;

    for (i = 0; i < bulk->num_lines; i++)
        bulk->lines[i]->requested = 0;
}

int main(void)
{
    static const unsigned offs[4] = {3, 15, 16, 17};
    char err[FH_GPIO_ERRLEN];
    char want[FH_GPIO_ERRLEN];
    fh_gpio g;
    int v;

    /* RESET, SCK, MOSI out (RESET low at once, MOSI high), MISO in */
    CHECK(fh_gpio_open(&g, &fh_gpio_gpiod, "gpiochip0", 4, offs, 0x7, 0, 0x4, NULL, err, sizeof err) == 0);
    CHECK(calls_req_out == 1);                   /* all outputs in one request */
    CHECK(fake_lines[3].requested == 2 && fake_lines[3].value == 0);
    CHECK(fake_lines[16].value == 1);
    CHECK(fake_lines[17].requested == 1);

    /* SCK low + MOSI change: one call; an unchanged set: none */
    calls_set = 0;
    CHECK(fh_gpio_set(&g, 0x6, 0x2, err, sizeof err) == 0);
    CHECK(calls_set == 1);
    CHECK(fake_lines[15].value == 1 && fake_lines[16].value == 0 && fake_lines[3].value == 0);
    CHECK(fh_gpio_set(&g, 0x6, 0x2, err, sizeof err) == 0);
    CHECK(calls_set == 1);
    fake_lines[17].value = 1;
    CHECK(fh_gpio_get(&g, 3, &v, err, sizeof err) == 0 && v == 1);
    CHECK(calls_get == 1);
    CHECK(g.syscalls == 1 + 1 + 1 + 1 + 1);      /* open, input request, output request, set, get */

    /* writing an input is refused with the line named */
    CHECK(fh_gpio_set(&g, 0x8, 0x8, err, sizeof err) == -1);
    CHECK_STR(err, "gpiochip0 line 17: not an output");

    /* close: the outputs come back as inputs, RESET (offset 3, 'd') last */
    nrelease = 0;
    fh_gpio_close(&g);
    release_order[nrelease] = '\0';
    CHECK(calls_req_in == 1 + 3);                /* MISO, then each output as input */
    CHECK(the_chip.open == 0);
    CHECK(release_order[nrelease - 1] == 'd');
    CHECK(fake_lines[3].requested == 0 && fake_lines[15].requested == 0);

    /* a missing chip is named with the cause */
    CHECK(fh_gpio_open(&g, &fh_gpio_gpiod, "gpiochip9", 4, offs, 0x7, 0, 0, NULL, err, sizeof err) == -1);
    snprintf(want, sizeof want, "gpiochip9: %s", strerror(ENOENT));
    CHECK_STR(err, want);

    /* a busy line: the open fails, naming the line, and nothing is left held */
    fail_open = 0;
    {
        fh_gpio g2;
        CHECK(fh_gpio_open(&g, &fh_gpio_gpiod, "gpiochip0", 4, offs, 0x7, 0, 0, NULL, err, sizeof err) == 0);
        the_chip.open = 1;
        CHECK(fh_gpio_open(&g2, &fh_gpio_gpiod, "gpiochip0", 4, offs, 0x7, 0, 0, NULL, err, sizeof err) == -1);
        snprintf(want, sizeof want, "gpiochip0 line 17: %s", strerror(EBUSY));
        CHECK_STR(err, want);
        CHECK(fake_lines[3].requested == 2);     /* the first holder keeps its lines */
        fh_gpio_close(&g);
        CHECK(fake_lines[3].requested == 0 && fake_lines[17].requested == 0);
    }
    return UNIT_END();
}
