---@meta fotahost.tcp
-- API stub for script authors (LuaLS). Two modules:
-- * fotahost.tcp (C: plugins/tcp.c): non-blocking primitives, every call
--   returns at once;
-- * fotahost.tcp_socket (Lua: scripts/fotahost/tcp_socket.lua): the calls
--   scripts use, which wait with timeouts under the scheduler.

---Non-blocking TCP over IPv4 and IPv6. Sockets are SOCK_NONBLOCK and
---SOCK_CLOEXEC; sends use MSG_NOSIGNAL, so a peer that went away is a
---return value ("closed"), never a SIGPIPE. Names are resolved without
---blocking the process: resolve_start() hands the lookup to glibc's
---getaddrinfo_a (a helper thread) and result() is polled; numeric addresses
---are done at once. Expected failures return `nil, "host:port: cause"[,
---errno]` (an IPv6 address is written `[::1]:80`); misuse raises.
---@class fotahost.tcp
local tcp = {}

---@class fotahost.tcp.Socket
local Socket = {}

---@class fotahost.tcp.Server
local Server = {}

---@class fotahost.tcp.Resolver
local Resolver = {}

---Starts looking up `host` (a name or a numeric address).
---@param host string
---@param port integer 0..65535
---@return fotahost.tcp.Resolver|nil resolver
---@return string? err "host:port: cause"
function tcp.resolve_start(host, port) end

---The lookup's addresses (numeric strings, in the order to try them), or
---"wouldblock" while it runs. Poll it with a short pause in between.
---@return string[]|nil addresses
---@return string? why "wouldblock" or "host:port: <resolver's cause>"
function Resolver:result() end

---Stops the lookup (or lets it finish unseen). Idempotent; __gc, __close.
function Resolver:close() end

---Starts connecting to a numeric address; the socket is writable when the
---connect has ended, and connect_finish() then says how.
---```lua
---local sock = assert(tcp.connect_start("192.0.2.7", 8080))
---sched.wait_fd(sock:fd(), "w", 5)
---assert(sock:connect_finish())
---```
---@param addr string numeric IPv4 or IPv6 address (a name fails: "not a numeric address")
---@param port integer 0..65535
---@param name? string what messages and tostring call it ("addr:port" by default)
---@return fotahost.tcp.Socket|nil sock
---@return string? err "name: cause"
---@return integer? errno
function tcp.connect_start(addr, port, name) end

---Listens on a numeric address ("127.0.0.1", "::1", "0.0.0.0", "::"), with
---SO_REUSEADDR. Port 0 picks a free port: getsockname() says which.
---@param addr string
---@param port integer 0..65535
---@param backlog? integer 32 by default
---@return fotahost.tcp.Server|nil server
---@return string? err "addr:port: cause", e.g. "127.0.0.1:80: Permission denied"
---@return integer? errno
function tcp.listen(addr, port, backlog) end

---@return true|nil ok true once connected (and ever after)
---@return string? why "wouldblock" (still connecting), or "name: cause" (e.g. "Connection refused")
---@return integer? errno
function Socket:connect_finish() end

---@return integer fd for sched.wait_fd or a poller
function Socket:fd() end

---@return string name "host:port" as connect was given it, or the peer's when accepted
function Socket:name() end

---Reads what is there, at most `max` bytes (default 4096, at most 65536).
---@param max? integer
---@return string|nil data
---@return string? why "wouldblock", "closed" (end of stream, or reset by the peer) or "name: cause"
---@return integer? errno
function Socket:read_available(max) end

---Sends data from byte `i` on (default 1), as much as the kernel takes now.
---@param data string
---@param i? integer
---@return integer|nil written 0..#data-i+1
---@return string? why "wouldblock", "closed" (the peer went away) or "name: cause"
---@return integer? errno
function Socket:write_available(data, i) end

---@param how? "w"|"r"|"rw" "w" by default: the peer reads end of stream
---@return true|nil ok
---@return string? err
---@return integer? errno
function Socket:shutdown(how) end

---"user_timeout" takes seconds: how long sent data may stay unacknowledged
---before the connection is declared dead (TCP_USER_TIMEOUT; 0: the system's
---default, about 15 minutes).
---@param option "keepalive"|"nodelay"|"user_timeout"
---@param on boolean|number
---@return true|nil ok
---@return string? err
---@return integer? errno
function Socket:setoption(option, on) end

---@param option "keepalive"|"nodelay"|"user_timeout"
---@return boolean|number|nil on
---@return string? err
---@return integer? errno
function Socket:getoption(option) end

---@return string|nil host numeric
---@return integer|string port_or_err
---@return integer? errno
function Socket:getpeername() end

---@return string|nil host numeric
---@return integer|string port_or_err
---@return integer? errno
function Socket:getsockname() end

---Closes the socket. Idempotent, never raises; __gc and __close too.
---@return true
function Socket:close() end

---Takes one pending connection, if there is one.
---@return fotahost.tcp.Socket|nil sock named after its peer
---@return string? why "wouldblock" or "addr:port: cause"
---@return integer? errno
function Server:accept_available() end

---@return integer fd readable when a connection waits
function Server:fd() end

---@return string|nil host
---@return integer|string port_or_err
function Server:getsockname() end

---Stops listening. Idempotent, never raises; __gc and __close too.
---@return true
function Server:close() end

-------------------------------------------------------------------------------

-- fotahost.tcp_socket (the Lua module) from here on.

---TCP for scripts: connect, read, read_line, write and accept wait, each at
---most a timeout you give (required; math.huge waits for ever). Inside a
---scheduler task they wait with sched.wait_fd (and sched.sleep while a name
---resolves), so the other tasks run meanwhile; outside any task they wait in
---a poller of their own.
---```lua
---local tcp_socket = require "fotahost.tcp_socket"
---local sock <close> = assert(tcp_socket.connect("cloud.example", 9000, 5))
---assert(sock:write("HELLO device-1\n", 2))
---local line, why, partial = sock:read_line(10)
---```
---Failures return `nil, why, partial`: why is "timeout", "closed" (the peer
---went away), "line too long" (read_line) or "host:port: cause"; partial is
---what was read (a string) or how much was written (an integer). Partial
---data is handed over, not kept: the next read starts after it.
---@class fotahost.tcp_socket
---@field LINE_MAX integer read_line's default limit: 4096 bytes
local M = {}

---@class fotahost.tcp_socket.Socket
---@field name string "host:port"
local Sock = {}

---@class fotahost.tcp_socket.Server
---@field name string "host:port" as given to listen
local Srv = {}

---Resolves `host` (a name, or an IPv4 or IPv6 address) and connects, trying
---each address in turn, all within `timeout` seconds.
---@param host string
---@param port integer
---@param timeout number seconds
---@return fotahost.tcp_socket.Socket|nil sock
---@return string? err "host:port: Connection refused", "host:port: connect timed out after 2 s", "host:port: Name or service not known", ...
---@return integer? errno
function M.connect(host, port, timeout) end

---Listens on a numeric address; port 0 picks one (server:getsockname()).
---@param host string
---@param port integer
---@param backlog? integer
---@return fotahost.tcp_socket.Server|nil server
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
---@return fotahost.tcp_socket.Socket|nil sock
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
