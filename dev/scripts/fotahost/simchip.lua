--- fotahost.simchip: what the directory of a simulated chip holds, for the
-- virtual board's entry in fotahost.avr.boards (its `dev` module). Part of
-- the development wing: product code never requires it by name; the board
-- entry does, and only when that board is used.
--
-- The directory (see dev/plugins/avrsim): flash.bin, eeprom.bin, fuses.txt
-- ("part=m32u4" and one line per fuse), erases.log, faults, mtd2 (the
-- revision byte, as the real board's factory partition), ttyS0 (the
-- virtual board's serial port while it runs) and ttyS0.pid.

local exists = require("fotahost.sys").exists

local M = {}

--- True when a chip was made in `dir` (it is made by its first use).
function M.made(dir)
  return exists(dir .. "/flash.bin") or exists(dir .. "/fuses.txt")
end

--- The serial port the virtual board publishes for the chip in `dir`.
function M.serial_port(dir)
  return dir .. "/ttyS0"
end

--- True when a virtual board runs on `dir`: the link of a board that died
-- may point at a pty someone else has now, so its pid is checked.
function M.running(dir)
  local f = io.open(dir .. "/ttyS0.pid", "r")
  local pid = f and math.tointeger(tonumber(f:read("l") or ""))
  if f then f:close() end
  return pid ~= nil and exists("/proc/" .. pid .. "/stat")
end

return M
