---@meta fotahost.poll
-- API stub for script authors (LuaLS). The module is C: plugins/poll.c.
-- Errors: misuse raises; a system call that fails returns nil,
-- "call: strerror", code: code is the errno.

---The wait primitive under the scheduler: an epoll set.
---@class fotahost.poll
local poll = {}

---@class fotahost.Poller
local Poller = {}

---Makes a poller.
---@return fotahost.Poller|nil poller
---@return string? err "epoll_create1: <strerror>"
---@return integer? errno
function poll.new() end

---Watches `fd` for reading and/or writing.
---@param fd integer
---@param read boolean
---@param write boolean
---@return true|nil ok
---@return string? err "watch fd N: <strerror>"
---@return integer? errno
function Poller:add(fd, read, write) end

---Changes what `fd` is watched for.
---@return true|nil ok
---@return string? err "change fd N: <strerror>"
---@return integer? errno
function Poller:set(fd, read, write) end

---Stops watching `fd` (events of it not yet returned are dropped).
---@return true|nil ok
---@return string? err "unwatch fd N: <strerror>"
---@return integer? errno
function Poller:del(fd) end

---Waits at most `timeout` seconds (0: do not wait; math.huge: no limit) and
---returns one ready fd. Level-triggered: an fd still ready is returned again.
---An error or hang-up reports the fd readable.
---@param timeout number seconds, required
---@return integer|nil fd
---@return boolean|string readable_or_reason true/false, or "timeout" / "signal" (interrupted: check for a pending signal) / an error message
---@return boolean|integer|nil writable_or_errno
function Poller:wait(timeout) end

---Closes the epoll fd. Idempotent; also run by `<close>` and `__gc`.
function Poller:close() end

return poll
