---@meta fotahost.avrsim
-- API stub for script authors (LuaLS). The module is C, a plugin of the
-- development wing: dev/plugins/avrsim.c, the model dev/plugins/avrsim/chip.c
-- (C API: dev/plugins/avrsim/avrsim.h).
-- Errors: misuse raises; a chip directory that cannot be loaded or saved
-- returns nil, "path: why" with no code.

---A simulated AVR chip as an ISP target, driven at pin level: for tests
---and for the virtual board. It follows the project's ISP digest
---(avr-isp.md): bits are sampled on SCK rising edges while RESET is low,
---MISO changes after falling edges, Programming Enable is refused within
---20 ms of RESET falling, writes keep the chip busy for the part's
---t_wd_* times (real time, CLOCK_MONOTONIC). Breaking a rule is counted in
---`stats().violations`, not refused with an error.
---
---The chip echoes the previous byte of an instruction it recognises (so
---Programming Enable echoes 0x53 in the third byte) and shifts out 0x00 for
---one it does not: a slipped framing shows as a wrong echo until a RESET
---pulse restarts it.
---@class fotahost.avrsim
local avrsim = {}

---@class fotahost.avrsim.Fuses
---@field lfuse integer
---@field hfuse integer
---@field efuse integer
---@field lock integer reads with bits 7:6 set, as the chip returns it

---@class fotahost.avrsim.Options
---@field factory? fotahost.avrsim.Fuses fuses of a new chip (any subset; default: the part's `factory`)
---@field min_half_period_ns? integer shortest legal SCK high or low time (default 250: 2 clocks at 8 MHz; 0: no check)

---@class fotahost.avrsim.Stats
---@field commands integer complete 4-byte instructions received while RESET is low
---@field bits integer SCK rising edges while RESET is low
---@field enables integer accepted Programming Enables
---@field violations integer early enable, access while busy, SCK too fast
---@field page_writes integer
---@field chip_erases integer
---@field eeprom_writes integer byte and page writes
---@field fuse_writes integer fuse and lock writes
---@field polls integer Poll RDY/BSY instructions
---@field resets integer RESET rising edges (the MCU would start)
---@field last_violation string human-readable, "" if none

---@class fotahost.avrsim.Chip
local Chip = {}

---Opens the chip stored in the directory `dir`, which must exist: flash.bin
---and eeprom.bin (raw, erased = 0xFF) and fuses.txt ("part=m32u4",
---"lfuse=0x52", ... one per line). Missing files are created erased, with
---factory fuses. A file of the wrong size, a fuses.txt of another part or an
---unreadable file is an error naming the file.
---@param dir string
---@param part table a part table, e.g. require("fotahost.avr.parts").m32u4 (raises if malformed)
---@param opts? fotahost.avrsim.Options
---@return fotahost.avrsim.Chip|nil chip
---@return string? err "<dir>/flash.bin: 100 bytes, but the m32u4 flash is 32768 bytes"
function avrsim.open(dir, part, opts) end

---Sets the levels at the chip's pins (true or 1 = high). The chip acts on
---edges; repeating a level does nothing. When several pins change at once,
---RESET is taken first and MOSI is already at its new level.
---The chip starts with RESET high (running).
---@param reset boolean|integer
---@param sck boolean|integer
---@param mosi boolean|integer
function Chip:pins(reset, sck, mosi) end

---The level the chip drives on MISO now (1 while RESET is high).
---@return integer level 0 or 1
function Chip:miso() end

---Sends one instruction with legal timing (busy-waiting each SCK
---half-period) and returns the four bytes shifted out. RESET must already
---be low; it is left as it is.
---@param b1 integer
---@param b2 integer
---@param b3 integer
---@param b4 integer
---@return integer r1
---@return integer r2
---@return integer r3 0x53 for an in-sync Programming Enable
---@return integer r4 the data of a read instruction
function Chip:transfer(b1, b2, b3, b4) end

---Injects a fault; faults other than "ok" add up.
--- - "ok": clears every fault.
--- - "silent": no answer: MISO reads 1, nothing is shifted in or executed.
--- - "miso_stuck", level: MISO reads `level` (0/1 or a boolean) always; instructions still run.
--- - "bit_error", n: the MISO bit sampled at the n-th SCK rising edge from now (0-based) is inverted, once.
--- - "slow_write", factor: busy periods last `factor` (1 or more) times longer.
---@param name "ok"|"silent"|"miso_stuck"|"bit_error"|"slow_write"
---@param param? integer|boolean
function Chip:fault(name, param) end

---Counters since open or the last reset_stats().
---@return fotahost.avrsim.Stats
function Chip:stats() end

---Zeroes the counters and clears last_violation.
function Chip:reset_stats() end

---The flash contents, whole or `len` bytes from byte `offset` (0-based).
---@param offset? integer default 0
---@param len? integer default to the end
---@return string
function Chip:flash(offset, len) end

---The EEPROM contents.
---@return string
function Chip:eeprom() end

---The fuses and lock byte as the chip would read them.
---@return fotahost.avrsim.Fuses
function Chip:fuses() end

---True while RESET is low and a Programming Enable was accepted.
---@return boolean
function Chip:programming() end

---Writes flash.bin, eeprom.bin and fuses.txt, each atomically (temporary
---file, fsync, rename).
---@return true|nil ok
---@return string? err "<path>: <strerror>"
function Chip:save() end

---Saves, then frees the chip, even if saving failed. Idempotent; also run
---by `<close>`. Garbage collection frees without saving.
---@return true|nil ok
---@return string? err "<path>: <strerror>"
function Chip:close() end

return avrsim
