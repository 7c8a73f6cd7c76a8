/*
 * sysfs.c: GPIO through /sys/class/gpio, the only interface of the board's
 * factory kernel (Linux 3.18).
 *
 * Costs per operation: one pwrite per changed output line, one pread per
 * input read (avrdude's linuxgpio uses lseek + read, and writes every line
 * whether it changed or not).
 *
 * Numbering: newer kernels give the first chip a base (512 and up); the
 * line numbers we are given are offsets on that chip. When the tree shows
 * no gpiochip at all, they are used as given.
 *
 * The export race: right after writing to `export`, the gpioN directory may
 * not exist yet, and udev may not yet have made its files writable. We
 * retry every millisecond for up to a second instead of sleeping 100 ms per
 * pin as avrdude does.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gpio.h"

#define SYSFS_ROOT "/sys/class/gpio"
#define RETRY_STEP_NS 1000000L  /* 1 ms */
#define RETRY_LIMIT 1000        /* 1 s in all */

struct sysfs_ctx {
    char root[128];
    unsigned base;
    int fd[FH_GPIO_MAX_LINES];
    int exported[FH_GPIO_MAX_LINES]; /* we exported it, so we unexport it */
};

static void pause_step(void)
{
    struct timespec ts = {0, RETRY_STEP_NS};
    nanosleep(&ts, NULL);
}

/* Writes a short string to a sysfs attribute (one open, write, close). */
static int write_attr(fh_gpio *g, const char *path, const char *text)
{
    ssize_t n;
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC); /* O_TRUNC: no-op on sysfs */

    g->syscalls++;
    if (fd < 0)
        return -1;
    n = write(fd, text, strlen(text));
    g->syscalls += 2;
    if (n < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

static int read_uint(const char *path, unsigned *out)
{
    FILE *f = fopen(path, "re");
    int ok;

    if (f == NULL)
        return -1;
    ok = fscanf(f, "%u", out) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

/*
 * The base of the chip: `chip` may name a gpiochipN directory; otherwise
 * the chip with the lowest base (the SoC's first bank). 0 if none.
 */
static unsigned find_base(const char *root, const char *chip)
{
    char path[512];
    unsigned base = 0, best = (unsigned)-1;
    struct dirent *e;
    DIR *d;

    if (chip != NULL && strncmp(chip, "gpiochip", 8) == 0) {
        snprintf(path, sizeof path, "%s/%s/base", root, chip);
        if (read_uint(path, &base) == 0)
            return base;
    }
    d = opendir(root);
    if (d == NULL)
        return 0;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "gpiochip", 8) != 0)
            continue;
        snprintf(path, sizeof path, "%s/%s/base", root, e->d_name);
        if (read_uint(path, &base) == 0 && base < best)
            best = base;
    }
    closedir(d);
    return best == (unsigned)-1 ? 0 : best;
}

static void release_line(fh_gpio *g, struct sysfs_ctx *c, int i)
{
    char path[256], num[16];

    if (c->fd[i] >= 0) {
        close(c->fd[i]);
        c->fd[i] = -1;
        g->syscalls++;
    }
    snprintf(path, sizeof path, "%s/gpio%u/direction", c->root, c->base + g->offsets[i]);
    (void)write_attr(g, path, "in");
    if (c->exported[i]) {
        snprintf(path, sizeof path, "%s/unexport", c->root);
        snprintf(num, sizeof num, "%u", c->base + g->offsets[i]);
        (void)write_attr(g, path, num);
        c->exported[i] = 0;
    }
}

static int open_line(fh_gpio *g, struct sysfs_ctx *c, int i, int output, int level,
                     char *err, size_t errlen)
{
    char path[256], num[16];
    unsigned n = c->base + g->offsets[i];
    struct stat st;
    int tries;

    snprintf(num, sizeof num, "%u", n);
    snprintf(path, sizeof path, "%s/gpio%u", c->root, n);
    if (stat(path, &st) != 0) {
        char exp[256];
        snprintf(exp, sizeof exp, "%s/export", c->root);
        if (write_attr(g, exp, num) != 0) {
            if (errno == EBUSY && stat(path, &st) != 0) {
                /* Not exported, yet busy: a kernel driver holds the line. */
                snprintf(err, errlen, "GPIO %u is in use by the kernel or another program "
                         "(%s: %s)", n, exp, strerror(EBUSY));
                return -1;
            }
            if (errno != EBUSY) {
                snprintf(err, errlen, "%s: export of GPIO %u failed: %s", exp, n, strerror(errno));
                return -1;
            }
        } else {
            c->exported[i] = 1;
        }
        for (tries = 0; stat(path, &st) != 0; tries++) {
            if (tries >= RETRY_LIMIT) {
                snprintf(err, errlen, "%s: did not appear after export", path);
                return -1;
            }
            pause_step();
        }
    }
    /* "high"/"low" set direction and level in one write, so RESET never
     * glitches; "out" alone would drive the line low. */
    snprintf(path, sizeof path, "%s/gpio%u/direction", c->root, n);
    for (tries = 0; write_attr(g, path, output ? (level ? "high" : "low") : "in") != 0; tries++) {
        if ((errno != EACCES && errno != ENOENT) || tries >= RETRY_LIMIT) {
            snprintf(err, errlen, "%s: %s", path, strerror(errno));
            return -1;
        }
        pause_step(); /* udev has not made it writable yet */
    }
    snprintf(path, sizeof path, "%s/gpio%u/value", c->root, n);
    c->fd[i] = open(path, (output ? O_RDWR : O_RDONLY) | O_CLOEXEC);
    g->syscalls++;
    if (c->fd[i] < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int sysfs_open(fh_gpio *g, const char *chip, uint32_t initial,
                      const struct fh_gpio_opts *opts, char *err, size_t errlen)
{
    struct sysfs_ctx *c = calloc(1, sizeof *c);
    int i;

    if (c == NULL) {
        snprintf(err, errlen, "sysfs: out of memory");
        return -1;
    }
    snprintf(c->root, sizeof c->root, "%s", opts->sysfs_root != NULL ? opts->sysfs_root : SYSFS_ROOT);
    for (i = 0; i < FH_GPIO_MAX_LINES; i++)
        c->fd[i] = -1;
    c->base = opts->sysfs_absolute ? 0 : find_base(c->root, chip);
    g->ctx = c;
    for (i = 0; i < g->nlines; i++) {
        if (open_line(g, c, i, (g->outputs >> i) & 1, (initial >> i) & 1, err, errlen) != 0) {
            while (i >= 0)
                release_line(g, c, i--);
            free(c);
            g->ctx = NULL;
            return -1;
        }
    }
    return 0;
}

static int sysfs_set(fh_gpio *g, uint32_t mask, uint32_t values, char *err, size_t errlen)
{
    struct sysfs_ctx *c = g->ctx;
    int i;

    for (i = 0; i < g->nlines; i++) {
        if (!(mask & (1u << i)))
            continue;
        g->syscalls++;
        if (pwrite(c->fd[i], (values >> i) & 1 ? "1" : "0", 1, 0) != 1) {
            snprintf(err, errlen, "%s/gpio%u/value: %s", c->root, c->base + g->offsets[i],
                     strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int sysfs_get(fh_gpio *g, int line, int *value, char *err, size_t errlen)
{
    struct sysfs_ctx *c = g->ctx;
    char buf[2];

    g->syscalls++;
    if (pread(c->fd[line], buf, sizeof buf, 0) < 1) {
        snprintf(err, errlen, "%s/gpio%u/value: %s", c->root, c->base + g->offsets[line],
                 strerror(errno));
        return -1;
    }
    *value = buf[0] == '1';
    return 0;
}

/* Releases the other lines first and RESET (line 0 by convention) last. */
static void sysfs_close(fh_gpio *g)
{
    struct sysfs_ctx *c = g->ctx;
    int i;

    if (c == NULL)
        return;
    for (i = g->nlines - 1; i >= 0; i--)
        release_line(g, c, i);
    free(c);
    g->ctx = NULL;
}

const struct fh_gpio_backend fh_gpio_sysfs = {
    "sysfs", sysfs_open, sysfs_set, sysfs_get, sysfs_close,
};
