---@meta fotahost.tcp.core
-- API stub for script authors (LuaLS). The C core (plugins/tcp.core.c):
-- non-blocking primitives, every call returns at once. Scripts usually
-- want its face, fotahost.tcp (docs/api/fotahost.tcp.lua), whose calls
-- wait with timeouts under the scheduler.

---Non-blocking TCP over IPv4 and IPv6. Sockets are SOCK_NONBLOCK and
---SOCK_CLOEXEC; sends use MSG_NOSIGNAL, so a peer that went away is a
---return value ("closed"), never a SIGPIPE. Names are resolved without
---blocking the process: resolve_start() runs getaddrinfo in a thread of
---its own, whose end makes resolver:fd() readable; numeric addresses are
---done at once. Expected failures return `nil, "host:port: cause"[,
---errno]` (an IPv6 address is written `[::1]:80`); misuse raises.
---@class fotahost.tcp.core
local core = {}

---@class fotahost.tcp.core.Socket
local Socket = {}

---@class fotahost.tcp.core.Server
local Server = {}

---@class fotahost.tcp.core.Resolver
local Resolver = {}

---Starts looking up `host` (a name or a numeric address).
---@param host string
---@param port integer 0..65535
---@return fotahost.tcp.core.Resolver|nil resolver
---@return string? err "host:port: cause"
function core.resolve_start(host, port) end

---The lookup's addresses (numeric strings, in the order to try them), or
---"wouldblock" while it runs: wait for fd() to be readable, then ask again.
---@return string[]|nil addresses
---@return string? why "wouldblock" or "host:port: <resolver's cause>"
function Resolver:result() end

---The fd that turns readable when the lookup is done (for sched.wait_fd or
---a poller), or nil when the result was there at once (a numeric address).
---@return integer|nil fd
function Resolver:fd() end

---Lets go of the lookup: a running one finishes unseen in its thread, which
---then frees it (a lookup cannot be interrupted). Idempotent; __gc, __close.
function Resolver:close() end

---Starts connecting to a numeric address; the socket is writable when the
---connect has ended, and connect_finish() then says how.
---```lua
---local sock = assert(core.connect_start("192.0.2.7", 8080))
---sched.wait_fd(sock:fd(), "w", 5)
---assert(sock:connect_finish())
---```
---@param addr string numeric IPv4 or IPv6 address (a name fails: "not a numeric address")
---@param port integer 0..65535
---@param name? string what messages and tostring call it ("addr:port" by default)
---@return fotahost.tcp.core.Socket|nil sock
---@return string? err "name: cause"
---@return integer? errno
function core.connect_start(addr, port, name) end

---Listens on a numeric address ("127.0.0.1", "::1", "0.0.0.0", "::"), with
---SO_REUSEADDR. Port 0 picks a free port: getsockname() says which.
---@param addr string
---@param port integer 0..65535
---@param backlog? integer 32 by default
---@return fotahost.tcp.core.Server|nil server
---@return string? err "addr:port: cause", e.g. "127.0.0.1:80: Permission denied"
---@return integer? errno
function core.listen(addr, port, backlog) end

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
---@return fotahost.tcp.core.Socket|nil sock named after its peer
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

return core
