--- fotahost.avr.isp: programming an AVR over GPIO ISP, job by job.
--
--     local isp = require "fotahost.avr.isp"
--     local s <close> = assert(isp.open{ backend = "sysfs", board = "linkit-smart-7688-duo" })
--     assert(s:connect())                 -- reset, Programming Enable, signature check
--     assert(s:erase())
--     assert(s:write_flash(image))        -- an fotahost.ihex image
--     assert(s:verify_flash(image))
--     assert(s:write_fuse("lock", 0x0F))  -- reads back 0xCF: success
--
-- The bit-banging is C (`fotahost.avr.isp.core`); this file sequences it page by
-- page, calls the progress function (under pcall: a raising callback stops
-- the job, releases the lines and re-raises) and, inside a scheduler task,
-- lets the other tasks run between pages. Closing the session always
-- releases RESET, so the MCU runs again.
--
-- Errors: misuse (no pins, no backend, a method before connect()) raises;
-- expected failures (a line the system refuses, a wrong signature, a
-- verify mismatch) return nil, "what: why" with no code.

local gpio = require "fotahost.gpio"
local core = require "fotahost.avr.isp.core"
local parts = require "fotahost.avr.parts"
local boards = require "fotahost.avr.boards"

local M = {}

-- The methods apart from the metatable, as liolib keeps them: a session's
-- fields and methods never shadow __gc or __close.
local Session = {}
local session_mt = { __name = "fotahost.avr.isp.session", __index = Session }

local function hex_bytes(s)
  return (s:gsub(".", function(c) return ("%02X "):format(c:byte()) end):sub(1, -2))
end

local function lookup(getter, v)
  if type(v) == "table" then return v end
  return getter(v)
end

-- The MCU's clock when neither the caller nor the board names one: the
-- LinkIt Smart 7688 Duo's 8 MHz crystal.
M.DEFAULT_F_CPU = 8000000
local DEFAULT_HALF_NS = 250

--- The shortest legal SCK high or low time, in ns, for an MCU clocked at
-- f_cpu Hz: more than 2 CPU clocks below 12 MHz, 3 from 12 MHz on
-- (ATmega32U4 datasheet p.368); 250 ns at 8 MHz, 188 at 16 MHz.
function M.min_half_period_ns(f_cpu)
  local cycles = f_cpu >= 12000000 and 3 or 2
  return (cycles * 1000000000 + f_cpu - 1) // f_cpu
end

--- The SCK half-period a session uses when `half_ns` is asked for (nil:
-- the default) on an MCU clocked at f_cpu Hz: never below the datasheet's
-- minimum, since a faster SCK garbles bits. Second value: true when the
-- asked value was raised.
function M.sck_half_period(half_ns, f_cpu)
  local min = M.min_half_period_ns(f_cpu)
  half_ns = half_ns or DEFAULT_HALF_NS
  if half_ns < min then return min, true end
  return half_ns, false
end

--- Opens a programming session; nothing touches the MCU until connect().
-- opts: backend ("gpiod", "sysfs", "mmio", "sim"), chip (gpiochip, sysfs
-- chip, or the simulated chip's directory), part (id or table), board
-- (name or table: everything not given comes from it, through
-- fotahost.avr.boards.isp_options), pins {reset, sck, mosi, miso}, invert
-- {reset = true, ...}, swap (true, false, or "auto": from the board's
-- revision byte, else by trying both), force (accept a wrong signature),
-- progress = function(phase, done, total), half_period_ns (raised to the
-- part's minimum at f_cpu, the MCU's clock in Hz: default the board's,
-- else 8 MHz; `session.sck_clamped` says it was), poll, retries,
-- sysfs_root, mem_path, revision_path, absolute_numbers (sysfs: the pins
-- are global numbers, as avrdude.conf's).
function M.open(opts)
  local o, err = boards.isp_options(opts, opts)
  if not o then return nil, err end
  local part
  part, err = lookup(parts.get, o.part or "m32u4")
  if not part then return nil, err end
  -- A board supplies pins and backend, and config.load fills a backend in:
  -- without them the caller is wrong, not the board, so these raise.
  local pins = o.pins
  if not pins then error("isp.open: no pins: give a board or pins = { reset=, sck=, mosi=, miso= }", 2) end
  for _, k in ipairs({ "reset", "sck", "mosi", "miso" }) do
    if math.type(pins[k]) ~= "integer" then
      error(("isp.open: pins.%s must be a GPIO number"):format(k), 2)
    end
  end
  if not o.backend then error("isp.open: no backend (gpiod, sysfs, mmio or sim)", 2) end
  local self = setmetatable({
    opts = o, board = o.board, part = part, pins = pins,
    invert = o.invert or {},
    chip = o.chip or "gpiochip0",
    swap = o.swap == nil and "auto" or o.swap,
    swapped = false,
    f_cpu = o.f_cpu or M.DEFAULT_F_CPU,
    revision_path = o.revision_path,
  }, session_mt)
  self.half_period_ns, self.sck_clamped = M.sck_half_period(o.half_period_ns, self.f_cpu)
  return self
end

function Session:_open_lines(swapped)
  local p = self.pins
  local mosi, miso = p.mosi, p.miso
  if swapped then mosi, miso = miso, mosi end
  local inv = self.invert
  local lines, err = gpio.open{
    backend = self.opts.backend, chip = self.chip,
    lines = { p.reset, p.sck, mosi, miso },
    outputs = { true, true, true, false },
    invert = { inv.reset, inv.sck, inv.mosi, inv.miso },
    initial = { 0, 0, 0 },               -- RESET asserted at once: the MCU stops
    sysfs_root = self.opts.sysfs_root, mem_path = self.opts.mem_path,
    absolute = self.opts.absolute_numbers,
    part = self.part.id, factory = self.opts.factory,
  }
  if not lines then return nil, err end
  self.lines = lines
  self.swapped = swapped
  self.prog = core.new(lines, self.part, {
    half_period_ns = self.half_period_ns, poll = self.opts.poll, retries = self.opts.retries,
    trace = self.opts.trace,
  })
  return true
end

function Session:_close_lines()
  if self.prog then pcall(self.prog.release, self.prog) end
  if self.lines then self.lines:close() end
  self.prog, self.lines = nil, nil
end

function Session:_open_enable()
  local en = self.opts.enable
  if not en or self.enable_lines then return true end
  local offs, init, outs = {}, {}, {}
  for i, e in ipairs(en) do offs[i], init[i], outs[i] = e.line, e.level, true end
  local lines, err = gpio.open{ backend = self.opts.backend, chip = self.chip, lines = offs,
    outputs = outs, initial = init, sysfs_root = self.opts.sysfs_root, mem_path = self.opts.mem_path,
    part = self.part.id }
  if not lines then return nil, err end
  self.enable_lines = lines
  return true
end

-- Switches the board's pin group to GPIO (isp_options says when one must
-- be). The one place this is done, with one policy: a failure is a
-- warning, not fatal. On the board it may be harmless (mt7688_pinmux
-- already ran, and /dev/mem is locked), so refusing would block updates
-- that work; if the MCU then does not answer, connect() adds the cause to
-- its error. Elsewhere (a development machine) it refuses, and that is right.
local PINMUX = {
  ["mt7688-spis"] = function(mem_path) return gpio.mt7688_pinmux(mem_path) end,
}

function Session:_switch_pinmux()
  local ok, err = PINMUX[self.opts.pinmux](self.opts.mem_path)
  self.pinmux = ok
  if not ok and not err:find("names no MT7688", 1, true) then
    self.pinmux_error = err
    require("fotahost.log").warn("isp", "cannot switch the SPI-slave pins to GPIO: %s "
      .. "(run `mt7688_pinmux set spi_s gpio`, or use the mmio backend)", err)
  end
end

--- Resets the MCU into programming mode and checks its signature.
-- Returns the signature as "1E 95 87", or nil, err (the lines are released).
function Session:connect()
  -- A second connect starts over: the first set of lines is released now,
  -- not left for the garbage collector to release under the new one.
  self:_close_lines()
  local ok, err
  if self.opts.pinmux then self:_switch_pinmux() end
  ok, err = self:_open_enable()
  if not ok then return nil, err end
  local first = false
  if self.swap == true then
    first = true
  elseif self.swap == "auto" and self.board and self.board.revision then
    local rev = boards.revision(self.board, self.revision_path)
    if rev and rev < self.board.revision.swap_below then first = true end
    self.revision = rev
  end
  local tries = { first }
  if self.swap == "auto" then tries[2] = not first end
  local errs = {}
  for _, swapped in ipairs(tries) do
    ok, err = self:_open_lines(swapped)
    if not ok then self:close() return nil, err end
    ok, err = self.prog:connect()
    if ok then break end
    errs[#errs + 1] = err .. (swapped and " (MOSI/MISO swapped)" or "")
    self:_close_lines()
  end
  if not ok then
    self:close()
    if self.pinmux_error then
      errs[#errs + 1] = "the SPI-slave pins may not be GPIOs: " .. self.pinmux_error
    end
    return nil, table.concat(errs, "; ")
  end
  local sig
  sig, err = self.prog:signature()
  if not sig then self:close() return nil, err end
  local want = string.char(table.unpack(self.part.signature))
  self.signature = hex_bytes(sig)
  if sig ~= want then
    if sig == "\0\0\0" or sig == "\255\255\255" then
      self:close()
      return nil, ("signature reads %s: the MCU is not answering properly (wiring, power, or a locked chip)")
        :format(self.signature)
    end
    if not self.opts.force then
      self:close()
      return nil, ("signature %s is not %s's (%s): wrong part or wrong chip (force to override)")
        :format(self.signature, self.part.desc, hex_bytes(want))
    end
  end
  return self.signature
end

-- Calls the progress function under pcall; a raising one ends the session.
function Session:_progress(phase, done, total)
  local fn = self.opts.progress
  if fn then
    local ok, err = pcall(fn, phase, done, total)
    if not ok then
      self:close()
      error(err, 0)
    end
  end
  -- Inside a scheduler task, let the others run between pages.
  local sched = package.loaded["fotahost.sched"]
  if sched and sched.current() then sched.yield() end
end

local function check(self, what)
  if not self.prog then error(("isp: %s: the session is not connected"):format(what), 3) end
end

--- Chip erase: flash, lock bits (and EEPROM unless EESAVE).
function Session:erase()
  check(self, "erase")
  self:_progress("erase", 0, 1)
  local ok, err = self.prog:erase()
  if not ok then return nil, err end
  self:_progress("erase", 1, 1)
  return true
end

--- Splits an fotahost.ihex image into whole flash pages: a sorted list of
-- {addr, data}, the bytes no record gives 0xFF (the image fills them).
-- Fails if anything lies outside the part's flash.
function M.pages(part, image)
  local size, psize = part.flash_size, part.flash_page
  local order = {}
  -- segments come in address order and never overlap: pages ascend
  for _, seg in ipairs(image:segments()) do
    local a, d = seg.addr, seg.data
    if a < 0 or a + #d > size then
      return nil, ("image data at 0x%X..0x%X is outside %s's flash (0x0..0x%X)")
        :format(a, a + #d - 1, part.desc, size - 1)
    end
    for page = a - a % psize, a + #d - 1, psize do
      if order[#order] ~= page then order[#order + 1] = page end
    end
  end
  local list = {}
  for k, page in ipairs(order) do list[k] = { addr = page, data = image:bytes(page, page + psize - 1) } end
  return list
end

--- Writes the image's pages (after an erase, all-0xFF pages cost nothing).
-- @return number of pages written | nil, err
function Session:write_flash(image)
  check(self, "write_flash")
  local pages, err = M.pages(self.part, image)
  if not pages then return nil, err end
  local written = 0
  self:_progress("write", 0, #pages)
  for i, pg in ipairs(pages) do
    local ok, werr = self.prog:write_page(pg.addr, pg.data)
    if ok == nil then return nil, werr end
    if ok then written = written + 1 end
    self:_progress("write", i, #pages)
  end
  return written
end

--- Reads the image's addresses back and compares.
-- @return true | nil, "verification error at 0x...: file 0x.., MCU 0x.."
function Session:verify_flash(image)
  check(self, "verify_flash")
  local segs = image:segments()
  local psize = self.part.flash_page
  local total, done = 0, 0
  for _, seg in ipairs(segs) do total = total + #seg.data end
  self:_progress("verify", 0, total)
  for _, seg in ipairs(segs) do
    local i = 1
    while i <= #seg.data do
      local addr = seg.addr + i - 1
      local n = math.min(psize - addr % psize, #seg.data - i + 1)
      local got, err = self.prog:read_flash(addr, n)
      if not got then return nil, err end
      local want = seg.data:sub(i, i + n - 1)
      if got ~= want then
        for k = 1, n do
          if got:byte(k) ~= want:byte(k) then
            return nil, ("verification error at 0x%04X: file 0x%02X, MCU 0x%02X")
              :format(addr + k - 1, want:byte(k), got:byte(k))
          end
        end
      end
      i = i + n
      done = done + n
      self:_progress("verify", done, total)
    end
  end
  return true
end

--- Reads `len` bytes of flash from `addr`, page by page.
function Session:read_flash(addr, len)
  check(self, "read_flash")
  local out, done = {}, 0
  local psize = self.part.flash_page
  self:_progress("read", 0, len)
  while done < len do
    local n = math.min(psize - (addr + done) % psize, len - done)
    local got, err = self.prog:read_flash(addr + done, n)
    if not got then return nil, err end
    out[#out + 1] = got
    done = done + n
    self:_progress("read", done, len)
  end
  return table.concat(out)
end

function Session:read_eeprom(addr, len)
  check(self, "read_eeprom")
  return self.prog:read_eeprom(addr, len)
end

function Session:write_eeprom(addr, data)
  check(self, "write_eeprom")
  return self.prog:write_eeprom(addr, data)
end

--- Reads a fuse or the lock byte: "lfuse", "hfuse", "efuse", "lock".
function Session:read_fuse(name)
  check(self, "read_fuse")
  return self.prog:read_fuse(name)
end

--- Writes a fuse or the lock byte and checks it (the part's meaningful bits).
function Session:write_fuse(name, value)
  check(self, "write_fuse")
  return self.prog:write_fuse(name, value)
end

--- Counters of the session: ISP commands, SPI bits, GPIO calls, system calls, sleeps.
function Session:stats()
  return self.prog and self.prog:stats() or self.last_stats or {}
end

--- Releases RESET (the MCU runs) and every line. Idempotent.
function Session:close()
  if self.prog then self.last_stats = self.prog:stats() end
  self:_close_lines()
  if self.enable_lines then self.enable_lines:close() self.enable_lines = nil end
end
session_mt.__close = Session.close
session_mt.__gc = Session.close

return M
