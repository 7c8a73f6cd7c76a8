---@meta fotahost.serial.core
-- API stub for script authors (LuaLS). The C core (plugins/serial.core.c).
-- Scripts usually want its face, fotahost.serial (docs/api/fotahost.serial.lua),
-- which waits with timeouts under the scheduler on top of this one.

---termios serial ports, and pseudo-terminals to stand in for them. Every
---call returns at once: the fd is non-blocking, and a read or write that
---cannot proceed says "wouldblock". The two calls that may wait are named as
---such: drain(), and close() (both only for bytes already written). Lines
---are always raw: no echo, no line editing, no CR/LF translation, no
---XON/XOFF; hardware flow control only with `rtscts`.
---@class fotahost.serial.core
local core = {}

---@class fotahost.serial.core.Port
local Port = {}

---Options of open(), openpty() and set(); get() returns the same fields.
---An unknown key, a wrong type or a value out of range raises.
---@class fotahost.serial.core.Options
---@field baud? integer 57600 by default; one of core.bauds() (1200..115200, 230400 and up where the platform has them)
---@field data_bits? 5|6|7|8 8 by default
---@field parity? "none"|"even"|"odd" "none" by default; with parity on, it is checked on input (a bad byte reads as 0)
---@field stop_bits? 1|2 1 by default
---@field rtscts? boolean RTS/CTS hardware flow control, off by default
---@field exclusive? boolean true by default: TIOCEXCL (other programs' opens fail with EBUSY) and an flock (which also stops root, whom the kernel lets through TIOCEXCL)

---@class fotahost.serial.core.Settings
---@field baud integer|nil nil only if something else set a rate termios cannot name
---@field data_bits 5|6|7|8
---@field parity "none"|"even"|"odd"
---@field stop_bits 1|2
---@field rtscts boolean
---@field exclusive boolean whether this object holds the port exclusively

---Opens a serial port (O_NOCTTY, so the line can never signal us; O_NONBLOCK;
---O_CLOEXEC) and sets it raw with `opts`. The settings are read back: a
---driver that keeps another rate or framing is reported, not trusted.
---```lua
---local port <close> = assert(core.open("/dev/ttyS0", { baud = 57600 }))
---```
---@param path string "/dev/ttyS0", "/dev/ttyUSB0", a pty slave...
---@param opts? fotahost.serial.core.Options
---@return fotahost.serial.core.Port|nil port
---@return string? err "<path>: No such file or directory", "<path>: Permission denied", "<path>: not a serial port (Inappropriate ioctl for device)", "<path>: Device or resource busy (in use by another program)", "<path>: unsupported baud rate 12345", "<path>: the driver did not accept 57600 7E1 (it gave 57600 8N1)"
---@return integer? errno none for the last two
function core.open(path, opts) end

---Makes a pseudo-terminal pair and returns its master as a port, raw and
---set to `opts` (`exclusive` does not apply: open the slave exclusively
---instead), and the slave's path for the other end to open. Until the slave
---is first opened the master has nothing to read; once every opener of the
---slave has closed it, the master reads what the slave had written, then
---"closed", until the slave is opened again. When the master closes, the
---slave is hung up: it reads "closed" and what was in flight to it is lost.
---Linux ptys always carry 8 bits without parity (since 5.19): set() of
---other framing on either side is refused.
---@param opts? fotahost.serial.core.Options
---@return fotahost.serial.core.Port|nil master its path() is "pty master of /dev/pts/N"
---@return string slave_path_or_err "/dev/pts/N", or "/dev/ptmx: <strerror>"
---@return integer? errno
function core.openpty(opts) end

---The baud rates this platform can set, ascending.
---@return integer[]
function core.bauds() end

---@return integer fd for sched.wait_fd or a poller
function Port:fd() end

---@return string path the path opened ("pty master of /dev/pts/N" for a master)
function Port:path() end

---Reads what has arrived, up to `max` bytes (default 4096), without waiting.
---@param max? integer >= 1
---@return string|nil data 1..max bytes
---@return string? why "wouldblock" (nothing yet), "closed" (end of file, or EIO: the pty's other side closed, the tty hung up), or "<path>: <strerror>"
---@return integer? errno with the last
function Port:read_available(max) end

---Writes as much of `data` (from byte `i`, default 1) as the driver takes
---now, without waiting.
---@param data string
---@param i? integer 1..#data+1
---@return integer|nil written 0..#data-i+1
---@return string? why "wouldblock", "closed" (EIO: the other side has gone), or "<path>: <strerror>"
---@return integer? errno with the last
function Port:write_available(data, i) end

---Bytes received and not read yet, and bytes written that the driver has
---not sent yet (its buffer, not the UART's FIFO; a pty reports 0).
---@return integer|nil input
---@return integer|string output_or_err
---@return integer? errno
function Port:pending() end

---tcdrain(): BLOCKS the process until every byte already written has left
---the UART. Bounded by what was written (4 KiB at 57600 baud: 0.7 s), but
---with rtscts and the other side holding CTS it waits as long as that
---lasts. fotahost.serial's drain(timeout) waits for pending() to reach 0 under
---the scheduler first, so that this only waits for the FIFO.
---@return true|nil ok
---@return string? err "<path>: <strerror>" (EINTR when a signal arrives)
---@return integer? errno
function Port:drain() end

---Discards received bytes not yet read ("in"), written bytes not yet sent
---("out"), or both (the default).
---@param which? "in"|"out"|"both"
---@return true|nil ok
---@return string? err
---@return integer? errno
function Port:flush(which) end

---Changes the settings given; the others stay, the line stays raw. On
---failure the line is as it was.
---@param opts fotahost.serial.core.Options
---@return true|nil ok
---@return string? err as open()'s
---@return integer? errno
function Port:set(opts) end

---The settings as the driver has them now (termios read back).
---@return fotahost.serial.core.Settings|nil settings
---@return string? err "<path>: <strerror>" (EIO once a pty's master has gone)
---@return integer? errno
function Port:get() end

---Closes the port, giving up exclusive use. Idempotent (true again once
---closed); `<close>` and `__gc` close too and never raise. As with drain(),
---the kernel's close waits for bytes already written to leave the UART (the
---driver's closing_wait, 30 s for a serial port, bounds it): drain or flush
---first where that matters. Any other method of a closed port raises
---"attempt to use a closed serial port".
---@return true|nil ok
---@return string? err "<path>: <strerror>"
---@return integer? errno
function Port:close() end

-- tostring(port): "serial port /dev/ttyS0 (57600 8N1)", "(57600 8N1 rtscts)",
-- "serial port /dev/ttyS0 (closed)".

return core
