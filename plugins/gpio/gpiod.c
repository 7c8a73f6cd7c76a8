/*
 * gpiod.c: GPIO through the Linux character device (/dev/gpiochipN), with
 * libgpiod.
 *
 * All outputs are requested as one bulk, so a set is one ioctl whatever
 * the number of lines it changes (the ISP's "SCK low + next MOSI bit" is one
 * call); a read is one ioctl.
 *
 * libgpiod: Debian 12 ships the 1.6 API, used here. libgpiod 2.x replaced
 * it (request configs, gpiod_line_request_set_values); the calls are
 * gathered in the four lib_* functions below so that a 2.x port touches
 * nothing else. FH_GPIOD_V2 selects it; it is written against the 2.x
 * documentation and not built in CI, which has only 1.6.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gpiod.h>

#include "gpio.h"

#define CONSUMER "fotahost"

#ifndef FH_GPIOD_V2
/* ----------------------------------------------------------- libgpiod 1.x */

struct gpiod_ctx {
    struct gpiod_chip *chip;
    struct gpiod_line_bulk out;            /* every output, in line order */
    int out_index[FH_GPIO_MAX_LINES];      /* line i -> index in `out`, or -1 */
    struct gpiod_line *in[FH_GPIO_MAX_LINES];
    int out_requested;
};

static int lib_open(fh_gpio *g, struct gpiod_ctx *c, const char *chip, uint32_t initial,
                    const char *consumer, char *err, size_t errlen)
{
    int vals[FH_GPIO_MAX_LINES], i, n = 0;

    c->chip = gpiod_chip_open_lookup(chip);
    g->syscalls++;
    if (c->chip == NULL) {
        snprintf(err, errlen, "%s: %s", chip, strerror(errno));
        return -1;
    }
    gpiod_line_bulk_init(&c->out);
    for (i = 0; i < g->nlines; i++) {
        struct gpiod_line *line = gpiod_chip_get_line(c->chip, g->offsets[i]);
        if (line == NULL) {
            snprintf(err, errlen, "%s line %u: %s", chip, g->offsets[i], strerror(errno));
            return -1;
        }
        c->out_index[i] = -1;
        if ((g->outputs >> i) & 1) {
            c->out_index[i] = n;
            vals[n++] = (int)((initial >> i) & 1);
            gpiod_line_bulk_add(&c->out, line);
        } else {
            g->syscalls++;
            if (gpiod_line_request_input(line, consumer) != 0) {
                snprintf(err, errlen, "%s line %u: %s", chip, g->offsets[i], strerror(errno));
                return -1;
            }
            c->in[i] = line;
        }
    }
    if (n > 0) {
        g->syscalls++;
        if (gpiod_line_request_bulk_output(&c->out, consumer, vals) != 0) {
            snprintf(err, errlen, "%s: cannot claim the output lines: %s", chip, strerror(errno));
            return -1;
        }
        c->out_requested = 1;
    }
    return 0;
}

static int lib_set(fh_gpio *g, struct gpiod_ctx *c, uint32_t levels)
{
    int vals[FH_GPIO_MAX_LINES], i;

    for (i = 0; i < g->nlines; i++)
        if (c->out_index[i] >= 0)
            vals[c->out_index[i]] = (int)((levels >> i) & 1);
    g->syscalls++;
    return gpiod_line_set_value_bulk(&c->out, vals);
}

static int lib_get(fh_gpio *g, struct gpiod_ctx *c, int line)
{
    g->syscalls++;
    return gpiod_line_get_value(c->in[line]);
}

/*
 * Releasing a line leaves it as it was, so the outputs are turned into
 * inputs first (request as input, release): RESET goes back to the board's
 * pull-up. RESET, line 0, is done last.
 */
static void lib_close(fh_gpio *g, struct gpiod_ctx *c, const char *consumer)
{
    int i;

    if (c->chip == NULL)
        return;
    for (i = 0; i < g->nlines; i++)
        if (c->in[i] != NULL)
            gpiod_line_release(c->in[i]);
    if (!c->out_requested) {
        gpiod_chip_close(c->chip); /* failed open: leave the lines alone */
        c->chip = NULL;
        return;
    }
    gpiod_line_release_bulk(&c->out);
    for (i = g->nlines - 1; i >= 0; i--) {
        struct gpiod_line *line;
        if (c->out_index[i] < 0)
            continue;
        line = gpiod_chip_get_line(c->chip, g->offsets[i]);
        if (line != NULL && gpiod_line_request_input(line, consumer) == 0)
            gpiod_line_release(line);
    }
    gpiod_chip_close(c->chip);
    c->chip = NULL;
}

#else
/* ----------------------------------------------------------- libgpiod 2.x */

struct gpiod_ctx {
    struct gpiod_chip *chip;
    struct gpiod_line_request *req;
};

static int lib_open(fh_gpio *g, struct gpiod_ctx *c, const char *chip, uint32_t initial,
                    const char *consumer, char *err, size_t errlen)
{
    struct gpiod_line_settings *s = NULL;
    struct gpiod_line_config *lc = NULL;
    struct gpiod_request_config *rc = NULL;
    char path[64];
    int i, rv = -1;

    snprintf(path, sizeof path, chip[0] == '/' ? "%s" : "/dev/%s", chip);
    c->chip = gpiod_chip_open(path);
    g->syscalls++;
    if (c->chip == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    lc = gpiod_line_config_new();
    rc = gpiod_request_config_new();
    s = gpiod_line_settings_new();
    if (lc == NULL || rc == NULL || s == NULL)
        goto out;
    gpiod_request_config_set_consumer(rc, consumer);
    for (i = 0; i < g->nlines; i++) {
        unsigned off = g->offsets[i];
        gpiod_line_settings_reset(s);
        if ((g->outputs >> i) & 1) {
            gpiod_line_settings_set_direction(s, GPIOD_LINE_DIRECTION_OUTPUT);
            gpiod_line_settings_set_output_value(s, (initial >> i) & 1 ? GPIOD_LINE_VALUE_ACTIVE
                                                                         : GPIOD_LINE_VALUE_INACTIVE);
        } else {
            gpiod_line_settings_set_direction(s, GPIOD_LINE_DIRECTION_INPUT);
        }
        if (gpiod_line_config_add_line_settings(lc, &off, 1, s) != 0)
            goto out;
    }
    g->syscalls++;
    c->req = gpiod_chip_request_lines(c->chip, rc, lc);
    rv = c->req != NULL ? 0 : -1;
out:
    if (rv != 0)
        snprintf(err, errlen, "%s: cannot claim the lines: %s", path, strerror(errno));
    gpiod_line_settings_free(s);
    gpiod_line_config_free(lc);
    gpiod_request_config_free(rc);
    return rv;
}

static int lib_set(fh_gpio *g, struct gpiod_ctx *c, uint32_t levels)
{
    enum gpiod_line_value vals[FH_GPIO_MAX_LINES];
    unsigned offs[FH_GPIO_MAX_LINES];
    size_t n = 0;
    int i;

    for (i = 0; i < g->nlines; i++) {
        if (!((g->outputs >> i) & 1))
            continue;
        offs[n] = g->offsets[i];
        vals[n++] = (levels >> i) & 1 ? GPIOD_LINE_VALUE_ACTIVE : GPIOD_LINE_VALUE_INACTIVE;
    }
    g->syscalls++;
    return gpiod_line_request_set_values_subset(c->req, n, offs, vals);
}

static int lib_get(fh_gpio *g, struct gpiod_ctx *c, int line)
{
    g->syscalls++;
    return (int)gpiod_line_request_get_value(c->req, g->offsets[line]);
}

static void lib_close(fh_gpio *g, struct gpiod_ctx *c, const char *consumer)
{
    struct gpiod_line_settings *s = gpiod_line_settings_new();
    struct gpiod_line_config *lc = gpiod_line_config_new();
    int i;

    (void)consumer;
    if (c->req != NULL && s != NULL && lc != NULL) {
        gpiod_line_settings_set_direction(s, GPIOD_LINE_DIRECTION_INPUT);
        for (i = g->nlines - 1; i >= 0; i--)
            gpiod_line_config_add_line_settings(lc, &g->offsets[i], 1, s);
        gpiod_line_request_reconfigure_lines(c->req, lc);
    }
    gpiod_line_settings_free(s);
    gpiod_line_config_free(lc);
    if (c->req != NULL)
        gpiod_line_request_release(c->req);
    if (c->chip != NULL)
        gpiod_chip_close(c->chip);
    c->req = NULL;
    c->chip = NULL;
}
#endif

/* ---------------------------------------------------------------- backend */

static int gpiod_open(fh_gpio *g, const char *chip, uint32_t initial,
                      const struct fh_gpio_opts *opts, char *err, size_t errlen)
{
    struct gpiod_ctx *c = calloc(1, sizeof *c);
    const char *consumer = opts->consumer != NULL ? opts->consumer : CONSUMER;

    if (c == NULL) {
        snprintf(err, errlen, "gpiod: out of memory");
        return -1;
    }
    g->ctx = c;
    if (lib_open(g, c, chip, initial, consumer, err, errlen) != 0) {
        lib_close(g, c, consumer);
        free(c);
        g->ctx = NULL;
        return -1;
    }
    return 0;
}

static int gpiod_set(fh_gpio *g, uint32_t mask, uint32_t values, char *err, size_t errlen)
{
    uint32_t levels = (g->state & ~mask) | (values & mask);

    if (lib_set(g, g->ctx, levels) != 0) {
        snprintf(err, errlen, "%s: setting lines failed: %s", g->chip, strerror(errno));
        return -1;
    }
    return 0;
}

static int gpiod_get(fh_gpio *g, int line, int *value, char *err, size_t errlen)
{
    int v;

    if ((g->outputs >> line) & 1) {
        *value = (int)((g->state >> line) & 1); /* an output reads what it drives */
        return 0;
    }
    v = lib_get(g, g->ctx, line);

    if (v < 0) {
        snprintf(err, errlen, "%s line %u: %s", g->chip, g->offsets[line], strerror(errno));
        return -1;
    }
    *value = v;
    return 0;
}

static void gpiod_close(fh_gpio *g)
{
    if (g->ctx == NULL)
        return;
    lib_close(g, g->ctx, CONSUMER);
    free(g->ctx);
    g->ctx = NULL;
}

const struct fh_gpio_backend fh_gpio_gpiod = {
    "gpiod", gpiod_open, gpiod_set, gpiod_get, gpiod_close,
};
