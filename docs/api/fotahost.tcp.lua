---@meta fotahost.tcp
-- API stub for script authors (LuaLS). The Lua face
-- (scripts/fotahost/tcp.lua) over the C core fotahost.tcp.core
-- (docs/api/fotahost.tcp.core.lua).

---TCP for scripts: connect, read, read_line, write and accept wait, each at
---most a timeout you give (required; math.huge waits for ever). Inside a
---scheduler task they wait with sched.wait_fd (and sched.sleep while a name
---resolves), so the other tasks run meanwhile; outside any task they wait in
---a poller of their own.
---```lua
---local tcp = require "fotahost.tcp"
---local sock <close> = assert(tcp.connect("cloud.example", 9000, 5))
---assert(sock:write("HELLO device-1\n", 2))
---local line, why, partial = sock:read_line(10)
---```
---Failures return `nil, why, partial`: why is "timeout", "closed" (the peer
---went away), "line too long" (read_line) or "host:port: cause"; partial is
---what was read (a string) or how much was written (an integer). Partial
---data is handed over, not kept: the next read starts after it.
---@class fotahost.tcp
---@field LINE_MAX integer read_line's default limit: 4096 bytes
local M = {}

---@class fotahost.tcp.Socket
---@field name string "host:port"
local Sock = {}

---@class fotahost.tcp.Server
---@field name string "host:port" as given to listen
local Srv = {}

---Resolves `host` (a name, or an IPv4 or IPv6 address) and connects, trying
---each address in turn, all within `timeout` seconds.
---@param host string
---@param port integer
---@param timeout number seconds
---@return fotahost.tcp.Socket|nil sock
---@return string? err "host:port: Connection refused", "host:port: connect timed out after 2 s", "host:port: Name or service not known", ...
---@return integer? errno
function M.connect(host, port, timeout) end

---Listens on a numeric address; port 0 picks one (server:getsockname()).
---@param host string
---@param port integer
---@param backlog? integer
---@return fotahost.tcp.Server|nil server
---@return string? err "host:port: cause"
---@return integer? errno
function M.listen(host, port, backlog) end

---Reads exactly `n` bytes, waiting at most `timeout` seconds.
---@param n integer >= 0
---@param timeout number seconds; 0 takes what is there
---@return string|nil data
---@return string? why "timeout", "closed" or "host:port: cause"
---@return string? partial
function Sock:read(n, timeout) end

---Reads a line (without "\n", and without a "\r" before it). A line
---longer than `max` (default 4096) gives "line too long" with what came.
---@param timeout number seconds
---@param max? integer
---@return string|nil line
---@return string? why "timeout", "closed", "line too long" or "host:port: cause"
---@return string? partial
function Sock:read_line(timeout, max) end

---Writes all of `data`, waiting at most `timeout` seconds.
---@param data string
---@param timeout number seconds
---@return true|nil ok
---@return string? why "timeout", "closed" or "host:port: cause"
---@return integer? written bytes taken before
function Sock:write(data, timeout) end

---@param option "keepalive"|"nodelay"
---@param on boolean
---@return true|nil ok
---@return string? err
function Sock:setoption(option, on) end

---@param option "keepalive"|"nodelay"
---@return boolean|nil on
function Sock:getoption(option) end

---@param how? "w"|"r"|"rw"
function Sock:shutdown(how) end

---@return string|nil host
---@return integer|string port_or_err
function Sock:getpeername() end

---@return string|nil host
---@return integer|string port_or_err
function Sock:getsockname() end

---@return integer fd
function Sock:fd() end

---Idempotent, never raises; `<close>` calls it.
---@return true
function Sock:close() end

---Accepts one connection, waiting at most `timeout` seconds.
---@param timeout number seconds
---@return fotahost.tcp.Socket|nil sock
---@return string? why "timeout" or "host:port: cause"
function Srv:accept(timeout) end

---@return string|nil host
---@return integer|string port_or_err
function Srv:getsockname() end

---@return integer fd
function Srv:fd() end

---Idempotent, never raises; `<close>` calls it.
---@return true
function Srv:close() end

return M
