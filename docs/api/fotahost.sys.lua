---@meta fotahost.sys
-- API stub for script authors (LuaLS). The module is C: plugins/sys.c.
-- Errors: misuse raises; a system call that fails returns nil,
-- "path: strerror" (or "call: strerror"), code: code is the errno.

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

---From now on SIGHUP does not end the process: each one makes the returned
---fd readable (a byte per signal; read it empty with sys.read). The app
---waits on it with sched.wait_fd to reload; other tools never call it and
---keep SIGHUP's default action. The same fd on every call.
---@return integer|nil rfd
---@return string? err
---@return integer? errno
function sys.hangups() end

---Takes an exclusive lock (flock) on `path`, created 0600 and never opened
---through a link, and writes our pid into it. It lasts until the process
---ends or execs (the fd is close-on-exec). Held by another process: nil,
---"PATH: in use by pid N", EWOULDBLOCK, N.
---@return integer|nil fd
---@return string? err
---@return integer? errno
---@return integer? holder the pid the holder wrote (only when in use)
function sys.lock(path) end

---Puts a finished file in place durably: fsyncs `tmp`, renames it over
---`path` (a link at `path` is replaced, not followed), fsyncs the directory.
---@return true|nil ok
---@return string? err
---@return integer? errno
function sys.replace(tmp, path) end

---Writes `path` atomically and durably through "path.tmp-PID". Whatever
---was at the temporary name (a stale file, a planted link) is removed first
---and the temporary is created with O_EXCL | O_NOFOLLOW: never written
---through a link. A link at `path` is replaced by the file.
---@param mode? integer default 0644, before the umask
---@return true|nil ok
---@return string? err "path: <strerror>"
---@return integer? errno
function sys.write_file(path, data, mode) end

---Creates a directory and any missing parent, each with `mode` (default
---0755, before the umask); an existing directory is fine. No shell.
---@param path string
---@param mode? integer
---@return true|nil ok
---@return string? err "path: <strerror>" (ENOTDIR when a file is in the way)
---@return integer? errno
function sys.mkdir(path, mode) end

---@class fotahost.sys.stat
---@field type "file"|"directory"|"link"|"char"|"block"|"fifo"|"socket"|"other"
---@field mode integer permission bits
---@field uid integer owner
---@field size integer bytes

---Describes `path` without following a symbolic link.
---@return fotahost.sys.stat|nil st
---@return string? err "path: <strerror>"
---@return integer? errno
function sys.lstat(path) end

---Whether `path` names something (a symbolic link is followed, so a
---dangling one does not). Any failure to look answers false.
---@param path string
---@return boolean
function sys.exists(path) end

---@return integer
function sys.geteuid() end

---The whole of a regular file of at most `max` bytes. A device or FIFO is
---refused without reading it (a FIFO is not waited on), a larger file from
---its size before it is read.
---@param path string
---@param max integer
---@return string|nil data
---@return string? err "path: a FIFO, not a regular file: refused", "path: file too large (N bytes, limit M bytes)", "path: <strerror>"
---@return integer? errno
function sys.read_file(path, max) end

---Writes `data` into an existing character device or FIFO, as a shell's `>`
---would, but never creates, truncates or replaces anything. A FIFO no
---process reads is an error, not a wait.
---@return true|nil ok
---@return string? err "path: a FIFO no process reads", "path: not a character device or FIFO", "path: <strerror>"
---@return integer? errno
function sys.write_device(path, data) end

---This system's numbers for the errors the product names, by name
---(`sys.errno.ENOENT`): they differ between CPUs (EADDRINUSE is 98 on x86,
---125 on MIPS). Compare a returned errno with these, never with a literal.
---@type table<string, integer>
sys.errno = {}

---This libc's message for errno `code` (the words after "path: " in errors).
---@param code integer
---@return string
function sys.strerror(code) end

return sys
