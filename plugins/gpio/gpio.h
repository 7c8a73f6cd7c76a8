/*
 * gpio.h: a few GPIO lines opened together, whatever drives them. Shared
 * by the `fotahost.gpio` module (plugins/gpio.c), its backends and the
 * modules that drive lines (plugins/avr.isp.core.c, the development
 * wing's sim backend in dev/plugins/gpio_sim.c); not part of the host.
 *
 * One interface, several backends: built in (plugins/gpio/): the Linux
 * character device through libgpiod, /sys/class/gpio, the MT7688's
 * registers through /dev/mem; others are plugins that register themselves
 * (fh_gpio_register), such as in-process pins wired to the simulated chip.
 * The ISP programmer bit-bangs through fh_gpio_set/fh_gpio_get, which apply
 * pin inversion, skip lines that would not change, and count what they
 * cost.
 */
#ifndef FOTAHOST_GPIO_H
#define FOTAHOST_GPIO_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#define FH_GPIO_MAX_LINES 8
#define FH_GPIO_ERRLEN 160

struct fh_gpio_backend;

/* What a backend may be told besides the line numbers (all optional). */
struct fh_gpio_opts {
    const char *sysfs_root;   /* sysfs: "/sys/class/gpio" unless set (tests use a fake tree) */
    int sysfs_absolute;       /* sysfs: numbers are global (avrdude.conf's), no chip base added */
    const char *mem_path;     /* mmio: "/dev/mem" unless set (tests map a regular file) */
    const char *consumer;     /* gpiod: label shown by gpioinfo, "fotahost" unless set */
    /* The gpio.open{} table at index `args` of L, where a backend plugin
     * reads options gpio.c knows nothing of (the sim backend's part and
     * factory fuses). L is NULL when the lines are opened from C. A
     * backend reads them before it allocates: a bad value raises. */
    lua_State *L;
    int args;
};

typedef struct fh_gpio {
    const struct fh_gpio_backend *be;
    void *ctx;                 /* the backend's */
    int nlines;
    unsigned offsets[FH_GPIO_MAX_LINES];
    uint32_t outputs;          /* bit i: line i is an output */
    uint32_t invert;           /* bit i: line i is active low (logical = !physical) */
    uint32_t state;            /* physical levels last written to the outputs */
    int open;
    /* Costs, for benchmarks: calls into the backend, and the system calls
     * the backend made (0 for mmio and sim). */
    unsigned long set_calls, get_calls, syscalls;
    char chip[96];             /* what was opened, for messages */
} fh_gpio;

struct fh_gpio_backend {
    const char *name;
    /* Claims the lines; outputs start at the physical levels in `initial`.
     * On failure fills err ("<thing>: <cause>") and returns -1. */
    int (*open)(fh_gpio *g, const char *chip, uint32_t initial,
                const struct fh_gpio_opts *opts, char *err, size_t errlen);
    /* Drives the outputs in `mask` to the physical levels in `values`,
     * in as few operations as the hardware allows. */
    int (*set)(fh_gpio *g, uint32_t mask, uint32_t values, char *err, size_t errlen);
    /* Reads the physical level of line i. */
    int (*get)(fh_gpio *g, int line, int *value, char *err, size_t errlen);
    /* Releases every line (outputs become inputs). Never fails loudly. */
    void (*close)(fh_gpio *g);
};

extern const struct fh_gpio_backend fh_gpio_sysfs, fh_gpio_gpiod, fh_gpio_mmio;

/*
 * Makes `be` what gpio.open{backend = be->name} uses in this Lua state,
 * replacing a backend of the same name. A backend plugin (a module named
 * fotahost.gpio_NAME, which gpio.open requires when NAME is asked for and
 * not registered) calls it from its luaopen_ after requiring
 * fotahost.gpio. The list lives in the state's registry, not in a C
 * static: `be` (static in the plugin) stays valid as long as the state,
 * which unloads its plugins only when it closes.
 */
void fh_gpio_register(lua_State *L, const struct fh_gpio_backend *be);

/* The backend of this state called `name`, or NULL. */
const struct fh_gpio_backend *fh_gpio_backend_find(lua_State *L, const char *name);

/*
 * Opens `n` lines on `chip` through backend `be`. offsets[i] is the line
 * number; bit i of `outputs`, `invert` and `initial` (a logical level) give
 * its direction, polarity and first value. Returns 0, or -1 with err set.
 */
int fh_gpio_open(fh_gpio *g, const struct fh_gpio_backend *be, const char *chip, int n,
                 const unsigned *offsets, uint32_t outputs, uint32_t invert, uint32_t initial,
                 const struct fh_gpio_opts *opts, char *err, size_t errlen);

/* Sets the logical levels of the output lines in `mask`; lines already at
 * that level are left alone. 0, or -1 with err set. */
int fh_gpio_set(fh_gpio *g, uint32_t mask, uint32_t values, char *err, size_t errlen);

/* Reads the logical level of line i. 0, or -1 with err set. */
int fh_gpio_get(fh_gpio *g, int line, int *value, char *err, size_t errlen);

/* Releases the lines. Idempotent. */
void fh_gpio_close(fh_gpio *g);

/* Switches the MT7688's SPI-slave pin group (GPIO14-17, the 7688 Duo's ISP
 * pins) to GPIO, as `mt7688_pinmux set spi_s gpio` does. mem_path NULL:
 * /dev/mem, only on an MT7688/MT7628. *changed: whether it was not GPIO. */
int fh_mt7688_spis_gpio(const char *mem_path, int *changed, char *err, size_t errlen);

/* The Lua userdata behind a `fotahost.gpio` lines object (for the ISP). */
#define FH_GPIO_MT "fotahost.gpio.lines"
fh_gpio *fh_gpio_check(lua_State *L, int idx);

#endif
