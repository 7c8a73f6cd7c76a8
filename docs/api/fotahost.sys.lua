---@meta fotahost.sys
-- API stub for script authors (LuaLS). The module is C: plugins/sys.c.

---Clocks, non-blocking fds, syslog and the host's signal state.
---@class fotahost.sys
local sys = {}

---Seconds on the monotonic clock: use it for timeouts and intervals.
---@return number
function sys.now() end

---Seconds since the epoch, with a fraction: use it for time stamps.
---@return number
function sys.time() end

---A pipe, both ends non-blocking and close-on-exec.
---@return integer|nil read_fd
---@return integer|string write_fd_or_err "pipe: <strerror>"
---@return integer? errno
function sys.pipe() end

---Reads up to `max` bytes (default 4096) without blocking.
---@param fd integer
---@param max? integer
---@return string|nil data 1..max bytes
---@return string? why "closed" (end of file), "wouldblock" (nothing yet), or "read fd N: <strerror>"
---@return integer? errno
function sys.read(fd, max) end

---Writes without blocking; may write fewer bytes than given.
---@return integer|nil written
---@return string? why "wouldblock" or "write fd N: <strerror>"
---@return integer? errno
function sys.write(fd, data) end

---@return true|nil ok
---@return string? err "close fd N: <strerror>"
---@return integer? errno
function sys.close(fd) end

---@return boolean
function sys.isatty(fd) end

---@return integer
function sys.getpid() end

---Names this process in syslog (facility daemon). fotahost.log calls it.
---@param ident string
function sys.openlog(ident) end

---@param priority "debug"|"info"|"notice"|"warning"|"error"|"critical"
---@param message string
function sys.syslog(priority, message) end

---Makes coroutine `co` stop with the interrupt error on SIGINT/SIGTERM even
---if it never yields. The scheduler arms every task.
---@param co thread
function sys.arm(co) end

---The signal that interrupted the script, once it has: "SIGINT", "SIGTERM".
---@return string|nil
function sys.interrupted() end

return sys
