---@meta fotahost.vboard
-- API stub for script authors (LuaLS). The face,
-- dev/scripts/fotahost/vboard.lua, over the C core fotahost.vboard.core
-- (dev/plugins/vboard.core.c, a plugin built only where simavr is
-- installed): it loads the core and adds run().
-- Errors: misuse raises; a board that cannot start returns nil,
-- "path: why" with no code.

---The virtual LinkIt Smart 7688 Duo: its ATmega32U4 (simavr, 8 MHz) runs
---DIR/flash.bin, the memory `fotahost flash -c sim -P DIR` writes; it halts
---while DIR/reset is "0" (an ISP session holds RESET) and restarts from the
---new flash when it goes back to "1". A reset starts where the high fuse in
---DIR/fuses.txt says (BOOTRST and BOOTSZ; the board's 0xD8 without the
---file: the 4 KB boot section at 0x7000); an erased boot section slides to
---the end of flash and wraps to 0x0000, as on the chip.
---@class fotahost.vboard
local vboard = {}

---@class fotahost.vboard.Board
local Board = {}

---@param dir string the simulated chip's directory
---@param opts? { pace?: boolean, led_log?: string } pace (default true): simulated time never runs ahead of real time
---@return fotahost.vboard.Board|nil board
---@return string? err "dir/flash.bin: <cause>"
function vboard.open(dir, opts) end

---True when the native plugin is built; else false and why.
---@return boolean ok
---@return string? why
function vboard.available() end

---Runs the board as the current scheduler task (see dev/scripts/fotahost/vboard.lua).
---@param board fotahost.vboard.Board
---@param opts? { until_time?: number, on_step?: fun(board: fotahost.vboard.Board) }
function vboard.run(board, opts) end

---Runs the MCU for at most `max_wall` seconds of real time (and not past
---`until_sim` simulated seconds); returns how long to wait before the next
---step is useful (0 when unpaced or behind).
---@return number wait
function Board:step(max_wall, until_sim) end

---D13 (PC7) transitions since the last call, in simulated seconds.
---@return { t: number, on: boolean }[]
function Board:led_events() end

---Serial1 bytes since the last call: "rx" received by the MCU (t: end of
---the stop bit), "tx" sent by it; lost = true for a byte sent while the
---MCU's receiver was off.
---@return { t: number, byte: integer, dir: "rx"|"tx", lost?: boolean }[]
function Board:serial_events() end

---RESET changes since the last call.
---@return { t: number, halted: boolean }[]
function Board:reset_events() end

---@return boolean on D13 now
function Board:led() end

---Serial1's pseudo-terminal: the stable link DIR/ttyS0 and the pty itself.
---@return string link, string pts
function Board:tty() end

---fds worth waiting on between steps (the pty, for input).
---@return integer[]
function Board:fds() end

---@return number seconds simulated time
function Board:time() end

---{ cycles, sim_seconds, restarts, wraps (times the program counter ran off
---the end of flash to 0x0000), boot_pc (where a reset starts, a byte
---address), halted, stopped, led_events_lost, serial_events_lost,
---tx_dropped, rx_pending, last_error }
---@return table
function Board:stats() end

---Stops the MCU and removes DIR/ttyS0. Idempotent; also <close> and __gc.
function Board:close() end

return vboard
