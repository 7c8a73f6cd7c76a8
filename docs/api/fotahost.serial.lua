---@meta fotahost.serial
-- API stub for script authors (LuaLS). The Lua face
-- (scripts/fotahost/serial.lua) over the C core fotahost.serial.core
-- (docs/api/fotahost.serial.core.lua).

---Serial ports for scripts: reads and writes that wait, each at most a
---timeout you give. Inside a scheduler task they wait with sched.wait_fd, so
---the other tasks run meanwhile; outside any task they wait in a poller of
---the port's own. The blink of the tutorial, in a task next to a heartbeat:
---```lua
---local serial = require "fotahost.serial"
---local sched = require "fotahost.sched"
---sched.run(function()
---  local port <close> = assert(serial.open("/dev/ttyS0", { baud = 57600 }))
---  sched.every(1, function() print("heartbeat") end)
---  for i = 1, 10 do
---    assert(port:write(i % 2 == 1 and "1" or "0", 1))
---    sched.sleep(0.5)
---  end
---end)
---```
---Failures return `nil, why, partial`: `why` is "timeout", "closed" (the
---other side went away: a pty's other end closed, a USB adapter was
---unplugged), "line too long" (read_line) or "<path>: <cause>"; `partial`
---is what was read (a string) or how much was written (an integer) before.
---Partial data is handed over, not kept: the next read starts after it.
---Misuse raises: a missing timeout, a bad count, a closed port.
---@class fotahost.serial
---@field LINE_MAX integer read_line's default limit: 4096 bytes
local M = {}

---@class fotahost.serial.Port
---@field path string the path opened
local Port = {}

---Opens a serial port: raw, 57600 8N1 and exclusive unless `opts` say
---otherwise (see fotahost.serial.core.Options).
---@param path string
---@param opts? fotahost.serial.core.Options
---@return fotahost.serial.Port|nil port
---@return string? err "<path>: <cause>" (see the core's open)
---@return integer? errno
function M.open(path, opts) end

---A pseudo-terminal pair: the master as a port, and the slave's path for
---the other end (tests; the virtual board's Serial1). See the core's openpty.
---@param opts? fotahost.serial.core.Options
---@return fotahost.serial.Port|nil master
---@return string slave_path_or_err
---@return integer? errno
function M.openpty(opts) end

---Reads exactly `n` bytes, waiting at most `timeout` seconds.
---@param n integer >= 0
---@param timeout number seconds, required; 0 takes what is there; math.huge waits for ever
---@return string|nil data
---@return string? why "timeout", "closed" or "<path>: <cause>"
---@return string? partial the bytes read before
function Port:read(n, timeout) end

---Reads a line, waiting at most `timeout` seconds. The line is returned
---without its "\n", and without a "\r" just before it (other "\r" stay).
---A line longer than `max` bytes fails with "line too long": if its "\n"
---had come, partial is the whole line and the next call reads the line
---after it; if not, partial is the part that had come (more than max
---bytes) and the next call returns the rest of that line.
---@param timeout number seconds, required
---@param max? integer default 4096
---@return string|nil line
---@return string? why "timeout", "closed", "line too long" or "<path>: <cause>"
---@return string? partial
function Port:read_line(timeout, max) end

---Writes all of `data`, waiting at most `timeout` seconds for the driver to
---take it (drain() waits for the wire).
---@param data string
---@param timeout number seconds, required
---@return true|nil ok
---@return string? why "timeout", "closed" or "<path>: <cause>"
---@return integer? written bytes taken before
function Port:write(data, timeout) end

---Waits until every byte written has left the UART, at most `timeout`
---seconds: default twice the time the bytes queued now take at the port's
---rate, plus 1 s. The driver's queue is watched under the scheduler; only
---its last step (the UART's FIFO, a few bytes) waits in tcdrain().
---@param timeout? number
---@return true|nil ok
---@return string? why "timeout" or "<path>: <cause>"
---@return integer? queued_or_errno bytes still queued (timeout), or errno
function Port:drain(timeout) end

---Discards input not yet read (this object's buffer too), output not yet
---sent, or both (the default).
---@param which? "in"|"out"|"both"
---@return true|nil ok
---@return string? err
function Port:flush(which) end

---Bytes received and not yet read (this object's buffer included), and
---bytes the driver has not sent yet.
---@return integer|nil input
---@return integer|string output_or_err
function Port:pending() end

---The settings as the driver has them (termios read back).
---@return fotahost.serial.core.Settings|nil settings
---@return string? err
function Port:settings() end

---Changes the settings given (as open's opts); the others stay. On failure
---the line is as it was.
---@param opts fotahost.serial.core.Options
---@return true|nil ok
---@return string? err "<path>: unsupported baud rate N", ...
function Port:set(opts) end

---@return integer fd
function Port:fd() end

---Closes the port (see the core's close for what the kernel may wait
---for). Idempotent; `<close>` closes too. tostring(port) is the C port's:
---"serial port /dev/ttyS0 (57600 8N1)" or "serial port /dev/ttyS0 (closed)".
---@return true|nil ok
---@return string? err
function Port:close() end

return M
