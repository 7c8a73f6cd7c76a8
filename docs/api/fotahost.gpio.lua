---@meta fotahost.gpio
-- API stub for script authors (LuaLS). The module is C: plugins/gpio.c and
-- the backends in plugins/gpio/; "sim" is the development wing's plugin
-- fotahost.gpio_sim (dev/plugins/gpio_sim.c).
-- Errors: misuse (a bad backend name, pin list or value, a closed set of
-- lines) raises; a line the system refuses returns nil, "what: why" with no
-- code: the message (backend, chip, line, cause) is all there is.

---GPIO lines on one of four backends: "gpiod" (/dev/gpiochipN, libgpiod),
---"sysfs" (/sys/class/gpio, the board's factory kernel), "mmio" (the
---MT7688's registers through /dev/mem, no system calls), "sim" (lines wired
---to the simulated chip in a directory, as on the 7688 Duo; a plugin of the
---development wing, loaded the first time it is asked for: without it,
---open returns nil, "the sim backend is part of the development wing:
---make install-dev").
---@class fotahost.gpio
local gpio = {}

---@class fotahost.gpio.Lines
local Lines = {}

---@class fotahost.gpio.OpenOpts
---@field backend "gpiod"|"sysfs"|"mmio"|"sim"
---@field chip string gpiochip name/path (gpiod), gpiochipN for the base (sysfs), anything (mmio), the simulated chip's directory (sim)
---@field lines integer[] line numbers (at most 8)
---@field outputs? boolean[] which lines are outputs (default: none)
---@field invert? boolean[] lines driven through an inverter (logical = not physical)
---@field initial? (integer|boolean)[] logical levels of the outputs when opened
---@field sysfs_root? string sysfs: the tree, "/sys/class/gpio" by default (tests use a fake one)
---@field mem_path? string mmio: "/dev/mem" by default (tests map a regular file)
---@field consumer? string gpiod: the label gpioinfo shows, "fotahost" by default
---@field part? table|string sim: the part (table or id) of the chip to create when the directory has none; an existing chip keeps the part its fuses.txt names
---@field factory? table sim: { lfuse=, hfuse=, efuse=, lock= } of a new chip

---Claims the lines. Outputs start at their initial level; sysfs sets
---direction and level in one write, mmio switches the SPI-slave pinmux to
---GPIO first (restored on close).
---@param opts fotahost.gpio.OpenOpts
---@return fotahost.gpio.Lines|nil lines
---@return string? err "<chip> line N: <cause>", "<path>: <cause>"
function gpio.open(opts) end

---The backends registered so far, in order: the built-in ones (gpiod, sysfs,
---mmio, in order of preference), then plugins' as they were loaded.
---@return string[]
function gpio.backends() end

---Sets line i (1-based) to a logical level. A line already at that level is not touched.
---@param i integer
---@param level integer|boolean
---@return true|nil ok
---@return string? err
function Lines:set(i, level) end

---Reads line i's logical level.
---@return integer|nil level 0 or 1
---@return string? err
function Lines:get(i) end

---Counters: set_calls and get_calls into the backend, syscalls it made.
---@return { set_calls: integer, get_calls: integer, syscalls: integer }
function Lines:stats() end

---Releases every line: outputs become inputs (RESET last, so the board's
---pull-up lets the MCU run). Idempotent; also on <close> and __gc.
function Lines:close() end

return gpio
