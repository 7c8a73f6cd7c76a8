--- fotahost.tcp: TCP connections for scripts, every wait with a timeout.
--
--     local tcp = require "fotahost.tcp"
--     local sock <close> = assert(tcp.connect("cloud.example", 443, 5))
--     assert(sock:write("PING\r\n", 2))
--     local line, err, partial = sock:read_line(5)  -- "PONG", or nil, "timeout", "PO"
--
-- Built on the C core `fotahost.tcp.core`, whose calls never wait. Here
-- connect, read, read_line, write and accept wait, each at most `timeout`
-- seconds (required; math.huge waits for ever, but only if you say so):
--
-- * inside a scheduler task they wait with sched.wait_fd (a name being
--   resolved too), so the other tasks run meanwhile;
-- * outside any task they wait in a fotahost.poll poller of their own.
--
-- Failures return nil, why, partial: why is "timeout", "closed" (the peer
-- went away), "line too long" or "host:port: cause", and partial is what
-- was read or how much was written before it happened. Partial data is
-- handed over, not kept: the next read starts after it. connect returns
-- nil, "host:port: cause" (a timeout says "connect timed out after N s").
-- Misuse (a missing timeout, a closed socket) raises.

local sched = require "fotahost.sched"
local stream = require "fotahost.stream"
local core = require "fotahost.tcp.core"

local M = {}

local now = sched.now

M.LINE_MAX = 4096 -- read_line's default limit, in bytes

-- fd() and close() (idempotent, never raising: @return true) come from
-- the base; `<close>` closes too.
local Sock, sock_mt, live_sock = stream.class("fotahost.tcp.socket", "tcp socket", "sock")
local Server, server_mt, live_server = stream.class("fotahost.tcp.server", "tcp server", "server")

local check_timeout = stream.check_timeout
local wait, drop_poller = stream.wait, stream.drop_poller

local function check_port(port, what)
  if math.type(port) ~= "integer" or port < 0 or port > 65535 then
    error(("%s: port must be an integer 0..65535, got %s"):format(what, tostring(port)), 3)
  end
end

local function seconds(t)
  return ("%g"):format(t)
end

local function wrap(raw)
  return setmetatable({ _raw = raw, _rbuf = "", name = raw:name() }, sock_mt)
end

local function display(host, port)
  return (host:find(":", 1, true) and "[%s]:%d" or "%s:%d"):format(host, port)
end

-- Resolves `host` without blocking: numeric at once, names in a thread
-- of the core's, waited for on the fd it makes readable when it is done.
local function resolve(host, port, name, deadline, timeout)
  local r <close>, err = core.resolve_start(host, port)
  if not r then return nil, err end
  local holder = { name = name }
  local _ <close> = setmetatable(holder, { __close = drop_poller })
  while true do
    local addrs, why = r:result()
    if addrs then
      if #addrs == 0 then return nil, name .. ": no address" end
      return addrs
    end
    if why ~= "wouldblock" then return nil, why end
    if not wait(holder, r:fd(), "r", deadline) then
      return nil, ("%s: name lookup timed out after %s s"):format(name, seconds(timeout))
    end
  end
end

--- Connects to host:port (a name, or an IPv4 or IPv6 address), trying each
-- address the name has in turn, all within `timeout` seconds.
-- @return sock | nil, "host:port: cause"[, errno]
function M.connect(host, port, timeout)
  if type(host) ~= "string" or host == "" then
    error("tcp.connect: host must be a non-empty string, got " .. tostring(host), 2)
  end
  check_port(port, "tcp.connect")
  check_timeout(timeout, "tcp.connect")
  local name = display(host, port)
  local deadline = now() + timeout
  local addrs, err = resolve(host, port, name, deadline, timeout)
  if not addrs then return nil, err end
  local last, code
  for _, addr in ipairs(addrs) do
    local raw
    raw, last, code = core.connect_start(addr, port, name)
    if raw then
      local holder = { name = name }
      while true do
        local ok, why, errno = raw:connect_finish()
        if ok then
          drop_poller(holder)
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
      drop_poller(holder)
      raw:close()
      if now() >= deadline then break end
    end
  end
  return nil, last, code
end

-- read(n, timeout), read_line(timeout[, max]) and write(data, timeout):
-- see fotahost.stream.
for k, fn in pairs(stream.methods("sock", live_sock, M)) do Sock[k] = fn end

--- Sets "keepalive" or "nodelay". @return true | nil, err, errno
function Sock:setoption(opt, on)
  return live_sock(self, "sock:setoption"):setoption(opt, on)
end

--- Reads "keepalive" or "nodelay" back. @return boolean | nil, err, errno
function Sock:getoption(opt)
  return live_sock(self, "sock:getoption"):getoption(opt)
end

--- Ends the sending side ("w", the default), the receiving one ("r") or both ("rw").
function Sock:shutdown(how)
  return live_sock(self, "sock:shutdown"):shutdown(how)
end

--- The peer's address. @return host, port | nil, err, errno
function Sock:getpeername()
  return live_sock(self, "sock:getpeername"):getpeername()
end

--- The local address. @return host, port | nil, err, errno
function Sock:getsockname()
  return live_sock(self, "sock:getsockname"):getsockname()
end

--- Listens on a numeric address ("127.0.0.1", "::1", "0.0.0.0", "::");
-- port 0 picks a free one (server:getsockname() says which).
-- @return server | nil, "host:port: cause", errno
function M.listen(host, port, backlog)
  if type(host) ~= "string" then
    error("tcp.listen: host must be a string, got " .. type(host), 2)
  end
  check_port(port, "tcp.listen")
  local raw, err, code = core.listen(host, port, backlog)
  if not raw then return nil, err, code end
  return setmetatable({ _raw = raw, name = display(host, port) }, server_mt)
end

--- Accepts one connection, waiting at most `timeout` seconds.
-- @return sock | nil, "timeout" | nil, err, errno
function Server:accept(timeout)
  local raw = live_server(self, "server:accept")
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
  return live_server(self, "server:getsockname"):getsockname()
end

return M
