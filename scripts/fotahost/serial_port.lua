--- fotahost.serial_port: serial ports for scripts, every wait with a timeout.
--
--     local serial_port = require "fotahost.serial_port"
--     local port <close> = assert(serial_port.open("/dev/ttyS0", { baud = 57600 }))
--     assert(port:write("1\n", 1))                -- the tutorial's blink: LED on
--     local line, err, partial = port:read_line(2) -- "ok", or nil, "timeout", "o"
--
-- Built on the C module `fotahost.serial`, whose calls never wait. Here
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

local poll = require "fotahost.poll"
local sched = require "fotahost.sched"
local serial = require "fotahost.serial"

local M = {}

local now = sched.now
local concat = table.concat

M.LINE_MAX = 4096 -- read_line's default limit, in bytes

local Port = {}
local port_mt = {
  __name = "fotahost.serial_port",
  __index = Port,
}

local function live(self, what)
  if getmetatable(self) ~= port_mt then
    error(what .. ": serial port expected (use port:" .. what:match("[%w_]+$") .. "(...))", 3)
  end
  if self._closed then error("attempt to use a closed serial port", 3) end
  return self._raw
end

local function check_timeout(timeout, what)
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error(("%s: timeout required (seconds >= 0, or math.huge to wait for ever), got %s")
      :format(what, tostring(timeout)), 3)
  end
end

-- Takes the port's fd out of its poller however the wait ends, an
-- interrupt raised in the middle included.
local unwatch_mt = { __close = function(w) w.poller:del(w.fd) end }

local function own_poller(self)
  local p = self._poller
  if not p then
    p = assert(poll.new())
    self._poller = p
  end
  return p
end

-- Waits until the port is ready to read ("r") or write ("w"), or until
-- `deadline`. true when ready (or when it may be: a hang-up counts), false
-- when the time is up.
local function wait(self, mode, deadline)
  local left = deadline - now()
  if left <= 0 then return false end
  local fd = self._raw:fd()
  if sched.current() then
    return sched.wait_fd(fd, mode, left) == true
  end
  local p = own_poller(self)
  assert(p:add(fd, mode == "r", mode == "w"))
  local _ <close> = setmetatable({ poller = p, fd = fd }, unwatch_mt)
  repeat
    local ready, why = p:wait(left)
    if ready then return true end
    if why ~= "timeout" and why ~= "signal" then
      error(("%s: %s"):format(self.path, tostring(why)), 0)
    end
    left = deadline - now()
  until left <= 0
  return false
end

-- Lets time pass: the scheduler's sleep in a task, the poller's otherwise.
local function pause(self, seconds)
  if sched.current() then return sched.sleep(seconds) end
  local p = own_poller(self)
  local deadline = now() + seconds
  repeat p:wait(deadline - now()) until now() >= deadline
end

local function wrap(raw, path)
  return setmetatable({ _raw = raw, _rbuf = "", path = path }, port_mt)
end

--- Opens a serial port. opts: baud (57600), data_bits (8), parity ("none",
-- "even", "odd"), stop_bits (1), rtscts (false), exclusive (true).
-- @return port | nil, "<path>: <cause>", errno
function M.open(path, opts)
  local raw, err, code = serial.open(path, opts)
  if not raw then return nil, err, code end
  return wrap(raw, path)
end

--- Makes a pseudo-terminal pair: the master as a port, and the slave's
-- path for the other end to open (tests; the virtual board's Serial1).
-- @return master_port, slave_path | nil, err, errno
function M.openpty(opts)
  local raw, slave, code = serial.openpty(opts)
  if not raw then return nil, slave, code end
  return wrap(raw, raw:path()), slave
end

--- Reads exactly `n` bytes, waiting at most `timeout` seconds.
-- @return data | nil, "timeout"|"closed"|err, partial
function Port:read(n, timeout)
  local raw = live(self, "port:read")
  if math.type(n) ~= "integer" or n < 0 then
    error("port:read: byte count must be an integer >= 0, got " .. tostring(n), 2)
  end
  check_timeout(timeout, "port:read")
  local deadline = now() + timeout
  local buf = self._rbuf
  if #buf >= n then
    self._rbuf = buf:sub(n + 1)
    return buf:sub(1, n)
  end
  self._rbuf = ""
  local parts, have = { buf }, #buf
  while have < n do
    local data, why = raw:read_available(n - have)
    if data then
      parts[#parts + 1] = data
      have = have + #data
    elseif why ~= "wouldblock" then
      return nil, why, concat(parts)
    elseif not wait(self, "r", deadline) then
      return nil, "timeout", concat(parts)
    end
  end
  return concat(parts)
end

--- Reads one line, waiting at most `timeout` seconds. The line comes back
-- without its "\n" and without a "\r" just before it. A line longer than
-- `max` bytes (default 4096) is an error: the line so far is returned as
-- partial (all of it, if its "\n" had arrived; else what had arrived, and
-- the rest of it comes back as the next line).
-- @return line | nil, "timeout"|"closed"|"line too long"|err, partial
function Port:read_line(timeout, max)
  local raw = live(self, "port:read_line")
  check_timeout(timeout, "port:read_line")
  if max == nil then max = M.LINE_MAX end
  if math.type(max) ~= "integer" or max < 1 then
    error("port:read_line: max must be an integer >= 1, got " .. tostring(max), 2)
  end
  local deadline = now() + timeout
  local buf, from = self._rbuf, 1
  while true do
    local nl = buf:find("\n", from, true)
    if nl then
      self._rbuf = buf:sub(nl + 1)
      local line = buf:sub(1, buf:byte(nl - 1) == 13 and nl - 2 or nl - 1)
      if #line > max then return nil, "line too long", line end
      return line
    end
    -- a "\r" at the end may be the start of "\r\n", so it does not count yet
    if #buf - (buf:byte(-1) == 13 and 1 or 0) > max then
      self._rbuf = ""
      return nil, "line too long", buf
    end
    from = #buf + 1
    local data, why = raw:read_available()
    if data then
      buf = buf .. data
    elseif why ~= "wouldblock" then
      self._rbuf = ""
      return nil, why, buf
    elseif not wait(self, "r", deadline) then
      self._rbuf = ""
      return nil, "timeout", buf
    end
  end
end

--- Writes all of `data`, waiting at most `timeout` seconds for the port to
-- take it (into the driver's buffer: see drain() for the wire).
-- @return true | nil, "timeout"|"closed"|err, bytes_written
function Port:write(data, timeout)
  local raw = live(self, "port:write")
  if type(data) ~= "string" then
    error("port:write: string expected, got " .. type(data), 2)
  end
  check_timeout(timeout, "port:write")
  local deadline = now() + timeout
  local i, len = 1, #data
  while i <= len do
    local n, why = raw:write_available(data, i)
    if n and n > 0 then
      i = i + n
    elseif n == nil and why ~= "wouldblock" then
      return nil, why, i - 1
    elseif not wait(self, "w", deadline) then
      return nil, "timeout", i - 1
    end
  end
  return true
end

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
    pause(self, math.min(left, math.max(0.001, math.min(0.05, queued * per_byte))))
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

--- The fd, for a caller's own poll or sched.wait_fd.
function Port:fd()
  return live(self, "port:fd"):fd()
end

--- Closes the port. Idempotent; `<close>` calls it too.
-- @return true | nil, err, errno
--- Closes the port. Bytes still queued get up to `timeout` seconds to
-- leave (default 1); what is still stuck then is discarded, so the close
-- itself never waits on the UART (the kernel's close would, up to 30 s).
function Port:close(timeout)
  if getmetatable(self) ~= port_mt then error("port:close: serial port expected", 2) end
  if self._closed then return true end
  local ok, drained, why = pcall(self.drain, self, timeout or 1)
  if ok and drained == nil and why == "timeout" then
    pcall(self._raw.flush, self._raw, "out")   -- stuck: do not let close() wait on it
  end
  self._closed = true
  self._rbuf = ""
  if self._poller then
    self._poller:close()
    self._poller = nil
  end
  return self._raw:close()
end

port_mt.__close = function(self) self:close() end
port_mt.__tostring = function(self) return tostring(self._raw) end

return M
