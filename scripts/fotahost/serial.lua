--- fotahost.serial: serial ports for scripts, every wait with a timeout.
--
--     local serial = require "fotahost.serial"
--     local port <close> = assert(serial.open("/dev/ttyS0", { baud = 57600 }))
--     assert(port:write("1\n", 1))                -- the tutorial's blink: LED on
--     local line, err, partial = port:read_line(2) -- "ok", or nil, "timeout", "o"
--
-- Built on the C core `fotahost.serial.core`, whose calls never wait. Here
-- read, read_line and write wait for the port, each at most `timeout`
-- seconds (required; math.huge waits for ever, but only if you say so):
--
-- * inside a scheduler task they wait with sched.wait_fd, so the other
--   tasks (a heartbeat, a timer toggling the LED) run meanwhile;
-- * outside any task they sleep in a fotahost.poll poller of the port's own.
--
-- Failures return nil, why, partial: why is "timeout", "closed" (the other
-- end went away: a pty's other side closed, a USB adapter unplugged) or
-- "<path>: <cause>", and partial is what was read or how much was written
-- before it happened. Partial data is handed over, not kept: the next read
-- starts after it. Misuse (a missing timeout, a closed port) raises.

local sched = require "fotahost.sched"
local core = require "fotahost.serial.core"
local stream = require "fotahost.stream"

local M = {}

local now = sched.now

M.LINE_MAX = 4096 -- read_line's default limit, in bytes

-- close(timeout): bytes still queued get up to `timeout` seconds to leave
-- (default 1); what is still stuck then is discarded, so the close itself
-- never waits on the UART (the kernel's close would, up to 30 s).
local function drain_or_discard(self, timeout)
  local ok, drained, why = pcall(self.drain, self, timeout or 1)
  if ok and drained == nil and why == "timeout" then
    pcall(self._raw.flush, self._raw, "out")   -- stuck: do not let close() wait on it
  end
end

-- fd() and close([timeout]) come from the base; `<close>` closes too.
local Port, port_mt, live = stream.class("fotahost.serial.port", "serial port", "port",
  { hint = true, before_close = drain_or_discard })

local check_timeout = stream.check_timeout

local function wrap(raw, path)
  return setmetatable({ _raw = raw, _rbuf = "", path = path }, port_mt)
end

--- Opens a serial port. opts: baud (57600), data_bits (8), parity ("none",
-- "even", "odd"), stop_bits (1), rtscts (false), exclusive (true).
-- @return port | nil, "<path>: <cause>", errno
function M.open(path, opts)
  local raw, err, code = core.open(path, opts)
  if not raw then return nil, err, code end
  return wrap(raw, path)
end

--- Makes a pseudo-terminal pair: the master as a port, and the slave's
-- path for the other end to open (tests; the virtual board's Serial1).
-- @return master_port, slave_path | nil, err, errno
function M.openpty(opts)
  local raw, slave, code = core.openpty(opts)
  if not raw then return nil, slave, code end
  return wrap(raw, raw:path()), slave
end

-- read(n, timeout), read_line(timeout[, max]) and write(data, timeout):
-- see fotahost.stream. write() waits for the port to take the bytes (into
-- the driver's buffer: see drain() for the wire).
for k, fn in pairs(stream.methods("port", live, M)) do Port[k] = fn end

--- Waits until every byte written has left the UART, at most `timeout`
-- seconds (default: twice the time the bytes queued now take at the
-- port's rate, plus one second). The driver's queue is watched under the
-- scheduler; only its last step, the UART's FIFO (a few bytes), waits in
-- tcdrain().
-- @return true | nil, "timeout", bytes_still_queued | nil, err, errno
function Port:drain(timeout)
  local raw = live(self, "port:drain")
  local _, queued, code = raw:pending()
  if not _ then return nil, queued, code end
  local s = raw:get() or {}
  local bits = 1 + (s.data_bits or 8) + (s.parity ~= "none" and 1 or 0) + (s.stop_bits or 1)
  local per_byte = bits / (s.baud or 9600)
  if timeout == nil then
    timeout = 1 + 2 * queued * per_byte
  else
    check_timeout(timeout, "port:drain")
  end
  local deadline = now() + timeout
  while queued > 0 do
    local left = deadline - now()
    if left <= 0 then return nil, "timeout", queued end
    stream.pause(self, math.min(left, math.max(0.001, math.min(0.05, queued * per_byte))))
    _, queued, code = raw:pending()
    if not _ then return nil, queued, code end
  end
  return raw:drain()
end

--- Discards what was received and not read yet ("in", with what this
-- object had buffered), what was written and not sent ("out"), or both
-- (the default).
-- @return true | nil, err, errno
function Port:flush(which)
  local raw = live(self, "port:flush")
  if which == nil or which == "in" or which == "both" then self._rbuf = "" end
  return raw:flush(which)
end

--- Bytes received and not read yet (this object's buffer included), and
-- bytes written and not yet sent by the driver.
-- @return integer, integer | nil, err, errno
function Port:pending()
  local raw = live(self, "port:pending")
  local input, output, code = raw:pending()
  if not input then return nil, output, code end
  return input + #self._rbuf, output
end

--- The settings as the driver has them: { baud, data_bits, parity,
-- stop_bits, rtscts, exclusive }.
function Port:settings()
  return live(self, "port:settings"):get()
end

--- Changes some settings (the same fields as open's opts); the rest stay.
-- @return true | nil, err[, errno] (the port is then as it was)
function Port:set(opts)
  return live(self, "port:set"):set(opts)
end

return M
