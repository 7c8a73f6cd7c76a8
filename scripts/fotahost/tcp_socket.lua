--- fotahost.tcp_socket: TCP connections for scripts, every wait with a timeout.
--
--     local tcp_socket = require "fotahost.tcp_socket"
--     local sock <close> = assert(tcp_socket.connect("cloud.example", 443, 5))
--     assert(sock:write("PING\r\n", 2))
--     local line, err, partial = sock:read_line(5)  -- "PONG", or nil, "timeout", "PO"
--
-- Built on the C module `fotahost.tcp`, whose calls never wait. Here
-- connect, read, read_line, write and accept wait, each at most `timeout`
-- seconds (required; math.huge waits for ever, but only if you say so):
--
-- * inside a scheduler task they wait with sched.wait_fd (and sched.sleep
--   while a name is being resolved), so the other tasks run meanwhile;
-- * outside any task they wait in a fotahost.poll poller of their own.
--
-- Failures return nil, why, partial: why is "timeout", "closed" (the peer
-- went away), "line too long" or "host:port: cause", and partial is what
-- was read or how much was written before it happened. Partial data is
-- handed over, not kept: the next read starts after it. connect returns
-- nil, "host:port: cause" (a timeout says "connect timed out after N s").
-- Misuse (a missing timeout, a closed socket) raises.

local poll = require "fotahost.poll"
local sched = require "fotahost.sched"
local tcp = require "fotahost.tcp"

local M = {}

local now = sched.now
local concat = table.concat

M.LINE_MAX = 4096 -- read_line's default limit, in bytes

local Sock = {}
local sock_mt = { __name = "fotahost.tcp_socket", __index = Sock }
local Server = {}
local server_mt = { __name = "fotahost.tcp_socket.server", __index = Server }

local function live(self, mt, what)
  if getmetatable(self) ~= mt then
    error(what .. ": " .. (mt == sock_mt and "tcp socket" or "tcp server") .. " expected", 3)
  end
  if self._closed then
    error("attempt to use a closed " .. (mt == sock_mt and "tcp socket" or "tcp server"), 3)
  end
  return self._raw
end

local function check_timeout(timeout, what)
  if type(timeout) ~= "number" or timeout ~= timeout or timeout < 0 then
    error(("%s: timeout required (seconds >= 0, or math.huge to wait for ever), got %s")
      :format(what, tostring(timeout)), 3)
  end
end

local function check_port(port, what)
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    error(("%s: port must be an integer 0..65535, got %s"):format(what, tostring(port)), 3)
  end
end

local function seconds(t)
  return ("%g"):format(t)
end

-- Takes the fd out of the poller however the wait ends, an interrupt
-- raised in the middle included.
local unwatch_mt = { __close = function(w) w.poller:del(w.fd) end }

-- Waits until `fd` is ready to read ("r") or write ("w"), or until
-- `deadline`. true when ready (or when it may be: a hang-up counts), false
-- when the time is up. `holder` keeps the poller used outside tasks.
local function wait(holder, fd, mode, deadline)
  local left = deadline - now()
  if left <= 0 then return false end
  if sched.current() then
    return sched.wait_fd(fd, mode, left) == true
  end
  local p = holder._poller
  if not p then
    p = assert(poll.new())
    holder._poller = p
  end
  assert(p:add(fd, mode == "r", mode == "w"))
  local _ <close> = setmetatable({ poller = p, fd = fd }, unwatch_mt)
  repeat
    local ready, why = p:wait(left)
    if ready then return true end
    if why ~= "timeout" and why ~= "signal" then
      error(("%s: %s"):format(holder.name, tostring(why)), 0)
    end
    left = deadline - now()
  until left <= 0
  return false
end

-- Lets time pass: the scheduler's sleep in a task, a poller's otherwise.
local function pause(seconds_)
  if sched.current() then return sched.sleep(seconds_) end
  local p <close> = assert(poll.new())
  local deadline = now() + seconds_
  repeat p:wait(deadline - now()) until now() >= deadline
end

local function wrap(raw)
  return setmetatable({ _raw = raw, _rbuf = "", name = raw:name() }, sock_mt)
end

local function display(host, port)
  return (host:find(":", 1, true) and "[%s]:%d" or "%s:%d"):format(host, port)
end

-- Resolves `host` without blocking: numeric at once, names polled (with a
-- growing pause, at most 50 ms) until getaddrinfo_a is done.
local function resolve(host, port, name, deadline, timeout)
  local r <close>, err = tcp.resolve_start(host, port)
  if not r then return nil, err end
  local step = 0.002
  while true do
    local addrs, why = r:result()
    if addrs then
      if #addrs == 0 then return nil, name .. ": no address" end
      return addrs
    end
    if why ~= "wouldblock" then return nil, why end
    local left = deadline - now()
    if left <= 0 then
      return nil, ("%s: name lookup timed out after %s s"):format(name, seconds(timeout))
    end
    pause(math.min(step, left))
    step = math.min(step * 2, 0.05)
  end
end

--- Connects to host:port (a name, or an IPv4 or IPv6 address), trying each
-- address the name has in turn, all within `timeout` seconds.
-- @return sock | nil, "host:port: cause"[, errno]
function M.connect(host, port, timeout)
  if type(host) ~= "string" or host == "" then
    error("tcp_socket.connect: host must be a non-empty string, got " .. tostring(host), 2)
  end
  check_port(port, "tcp_socket.connect")
  check_timeout(timeout, "tcp_socket.connect")
  local name = display(host, port)
  local deadline = now() + timeout
  local addrs, err = resolve(host, port, name, deadline, timeout)
  if not addrs then return nil, err end
  local last, code
  for _, addr in ipairs(addrs) do
    local raw
    raw, last, code = tcp.connect_start(addr, port, name)
    if raw then
      local holder = { name = name }
      while true do
        local ok, why, errno = raw:connect_finish()
        if ok then
          if holder._poller then holder._poller:close() end
          return wrap(raw)
        end
        if why ~= "wouldblock" then
          last, code = why, errno
          break
        end
        if not wait(holder, raw:fd(), "w", deadline) then
          last, code = ("%s: connect timed out after %s s"):format(name, seconds(timeout)), nil
          break
        end
      end
      if holder._poller then holder._poller:close() end
      raw:close()
      if now() >= deadline then break end
    end
  end
  return nil, last, code
end

--- Reads exactly `n` bytes, waiting at most `timeout` seconds.
-- @return data | nil, "timeout"|"closed"|err, partial
function Sock:read(n, timeout)
  local raw = live(self, sock_mt, "sock:read")
  if math.type(n) ~= "integer" or n < 0 then
    error("sock:read: byte count must be an integer >= 0, got " .. tostring(n), 2)
  end
  check_timeout(timeout, "sock:read")
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
    elseif not wait(self, raw:fd(), "r", deadline) then
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
function Sock:read_line(timeout, max)
  local raw = live(self, sock_mt, "sock:read_line")
  check_timeout(timeout, "sock:read_line")
  if max == nil then max = M.LINE_MAX end
  if math.type(max) ~= "integer" or max < 1 then
    error("sock:read_line: max must be an integer >= 1, got " .. tostring(max), 2)
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
    elseif not wait(self, raw:fd(), "r", deadline) then
      self._rbuf = ""
      return nil, "timeout", buf
    end
  end
end

--- Writes all of `data`, waiting at most `timeout` seconds for the kernel
-- to take it.
-- @return true | nil, "timeout"|"closed"|err, bytes_written
function Sock:write(data, timeout)
  local raw = live(self, sock_mt, "sock:write")
  if type(data) ~= "string" then
    error("sock:write: string expected, got " .. type(data), 2)
  end
  check_timeout(timeout, "sock:write")
  local deadline = now() + timeout
  local i, len = 1, #data
  while i <= len do
    local n, why = raw:write_available(data, i)
    if n and n > 0 then
      i = i + n
    elseif n == nil and why ~= "wouldblock" then
      return nil, why, i - 1
    elseif not wait(self, raw:fd(), "w", deadline) then
      return nil, "timeout", i - 1
    end
  end
  return true
end

--- Sets "keepalive" or "nodelay". @return true | nil, err, errno
function Sock:setoption(opt, on)
  return live(self, sock_mt, "sock:setoption"):setoption(opt, on)
end

--- Reads "keepalive" or "nodelay" back. @return boolean | nil, err, errno
function Sock:getoption(opt)
  return live(self, sock_mt, "sock:getoption"):getoption(opt)
end

--- Ends the sending side ("w", the default), the receiving one ("r") or both ("rw").
function Sock:shutdown(how)
  return live(self, sock_mt, "sock:shutdown"):shutdown(how)
end

--- The peer's address. @return host, port | nil, err, errno
function Sock:getpeername()
  return live(self, sock_mt, "sock:getpeername"):getpeername()
end

--- The local address. @return host, port | nil, err, errno
function Sock:getsockname()
  return live(self, sock_mt, "sock:getsockname"):getsockname()
end

--- The fd, for a caller's own poll or sched.wait_fd.
function Sock:fd()
  return live(self, sock_mt, "sock:fd"):fd()
end

--- Closes the socket. Idempotent, never raises; `<close>` calls it too.
-- @return true
function Sock:close()
  if getmetatable(self) ~= sock_mt then error("sock:close: tcp socket expected", 2) end
  if self._closed then return true end
  self._closed = true
  self._rbuf = ""
  if self._poller then
    self._poller:close()
    self._poller = nil
  end
  return self._raw:close()
end

sock_mt.__close = function(self) self:close() end
sock_mt.__tostring = function(self) return tostring(self._raw) end

--- Listens on a numeric address ("127.0.0.1", "::1", "0.0.0.0", "::");
-- port 0 picks a free one (server:getsockname() says which).
-- @return server | nil, "host:port: cause", errno
function M.listen(host, port, backlog)
  if type(host) ~= "string" then
    error("tcp_socket.listen: host must be a string, got " .. type(host), 2)
  end
  check_port(port, "tcp_socket.listen")
  local raw, err, code = tcp.listen(host, port, backlog)
  if not raw then return nil, err, code end
  return setmetatable({ _raw = raw, name = display(host, port) }, server_mt)
end

--- Accepts one connection, waiting at most `timeout` seconds.
-- @return sock | nil, "timeout" | nil, err, errno
function Server:accept(timeout)
  local raw = live(self, server_mt, "server:accept")
  check_timeout(timeout, "server:accept")
  local deadline = now() + timeout
  while true do
    local s, why, code = raw:accept_available()
    if s then return wrap(s) end
    if why ~= "wouldblock" then return nil, why, code end
    if not wait(self, raw:fd(), "r", deadline) then return nil, "timeout" end
  end
end

--- The address listened on. @return host, port
function Server:getsockname()
  return live(self, server_mt, "server:getsockname"):getsockname()
end

function Server:fd()
  return live(self, server_mt, "server:fd"):fd()
end

--- Stops listening. Idempotent, never raises. @return true
function Server:close()
  if getmetatable(self) ~= server_mt then error("server:close: tcp server expected", 2) end
  if self._closed then return true end
  self._closed = true
  if self._poller then
    self._poller:close()
    self._poller = nil
  end
  return self._raw:close()
end

server_mt.__close = function(self) self:close() end
server_mt.__tostring = function(self) return tostring(self._raw) end

return M
