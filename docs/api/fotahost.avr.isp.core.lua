---@meta fotahost.avr.isp.core
-- API stub for script authors (LuaLS). The C core (plugins/avr.isp.core.c).
-- Most scripts use its face, the job layer fotahost.avr.isp
-- (scripts/fotahost/avr/isp.lua), instead.
-- Errors: misuse (a bad part table, pins, a closed programmer) raises; an MCU
-- that does not answer returns nil, "what: why" with no code.

---The AVR serial programmer engine: bit-bangs ISP instructions over four
---GPIO lines with legal timing (each SCK half-period >= half_period_ns).
---@class fotahost.avr.isp.core
local core = {}

---@class fotahost.avr.isp.core.Programmer
local P = {}

---@param lines fotahost.gpio.Lines 4 lines: RESET, SCK, MOSI (outputs), MISO (input)
---@param part table a part of fotahost.avr.parts
---@param opts { half_period_ns: integer, poll?: boolean, retries?: integer, trace?: boolean } half_period_ns is required: the pace depends on the MCU's clock (fotahost.avr.isp.sck_half_period gives the legal one)
---@return fotahost.avr.isp.core.Programmer
function core.new(lines, part, opts) end

---SCK low, a positive pulse on RESET, 20 ms, Programming Enable; retried
---with a new RESET pulse when the 0x53 echo is missing.
---@return true|nil ok
---@return string? err "no answer from the MCU (MISO stays 1) ..." or "does not echo Programming Enable ..."
function P:connect() end

---@return string|nil signature 3 bytes
---@return string? err
function P:signature() end

---Chip Erase, then waits (RDY/BSY polling, or the datasheet delay with poll=false).
---@return true|nil ok
---@return string? err
function P:erase() end

---Loads one page (0xFF words skipped) and writes it; false when the page
---was all 0xFF (nothing to write).
---@param addr integer byte address of the page
---@param data string up to one page
---@return boolean|nil written
---@return string? err
function P:write_page(addr, data) end

---@return string|nil data
---@return string? err
function P:read_flash(addr, len) end

---@return string|nil data
---@return string? err
function P:read_eeprom(addr, len) end

---@return true|nil ok
---@return string? err
function P:write_eeprom(addr, data) end

---@param name "lfuse"|"hfuse"|"efuse"|"lock"
---@return integer|nil value
---@return string? err
function P:read_fuse(name) end

---Writes and reads back, comparing the part's meaningful bits only (lock:
---0x3F, so writing 0x0F and reading 0xCF succeeds).
---@return integer|nil read_back
---@return string? err "lock: wrote 0x.., read back 0x.. (bits compared: 0x..)"
function P:write_fuse(name, value) end

---Sends one raw instruction.
---@return integer r1, integer r2, integer r3, integer r4
function P:cmd(b1, b2, b3, b4) end

---RESET released (the MCU runs); the lines stay open.
function P:release() end

---Counters: commands, bits, polls, enable_tries, sleep_us (fixed sleeps),
---poll_wait_us, gpio_sets, gpio_gets, syscalls.
---@return table
function P:stats() end

---Every instruction sent, 4 bytes each (with opts.trace).
---@return string
function P:trace() end

---Sends a trace's instructions as they are (answers ignored): what a
---backend costs for exactly a real job's traffic.
---@return true|nil ok
---@return string? err
function P:replay(trace) end

return core
