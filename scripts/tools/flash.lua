-- fotahost flash: program an AVR over GPIO ISP, with avrdude's options.
--
-- Existing instructions keep working with `avrdude` replaced by
-- `fotahost flash`, e.g. the LinkIt Smart 7688 Duo's bootloader restore:
--
--   fotahost flash -p m32u4 -c linuxgpio -v -e \
--       -U flash:w:/etc/arduino/Caterina-smart7688.hex -U lock:w:0x0f:m
--
-- Safer than avrdude on one point above all: every input file is read and
-- parsed, and the signature checked, before anything is erased. A bad file
-- or a wrong chip never leaves the MCU blank.

local isp = require "fotahost.avr.isp"
local parts = require "fotahost.avr.parts"
local boards = require "fotahost.avr.boards"
local conf = require "fotahost.avr.avrdude_conf"
local ihex = require "fotahost.ihex"
local sys = require "fotahost.sys"

local PROG = "fotahost flash"
local SYSTEM_CONF = os.getenv("FOTAHOST_AVRDUDE_CONF") or "/etc/avrdude.conf"

local USAGE = [[
usage: fotahost flash [options]
  -p PART          part: m32u4 (atmega32u4), m328p, m2560 (default: the board's)
  -c PROGRAMMER    linuxgpio (= sysfs, as avrdude names it), sysfs, gpiod, mmio, sim,
                   or the id of a programmer entry in the configuration
  -P PORT          gpiochip for gpiod (default gpiochip0); the simulated chip's
                   directory for sim
  -B PERIOD        SCK period in microseconds (default 0.5, for an 8 MHz MCU; a chip
                   running at 1 MHz needs -B 4 or more); never below the part's
                   limit at the board's clock (0.5 at 8 MHz)
  -i DELAY         SCK half-period in microseconds (avrdude's ispdelay), instead of -B
  -C [+]FILE       read programmer entries from FILE instead of /etc/avrdude.conf;
                   with +, in addition to it
  --board NAME     pins and part of a board: linkit-smart-7688-duo (default), arduino-yun,
                   sim (the virtual board; the default with -c sim)
  -e               erase the chip first
  -D               do not erase before writing flash (avrdude's auto-erase is on otherwise)
  -U MEM:OP:FILE[:FMT]  MEM: flash, eeprom, lfuse, hfuse, efuse, lock, signature;
                   OP: r (read to FILE), w (write from FILE), v (verify against FILE);
                   FMT: i (Intel HEX), r (raw binary), m (immediate: FILE is the value),
                   h (hex text), a (auto, input only; the default for input)
  -V               do not verify after writing
  -F               go on when the signature does not match the part
  -n               dry run: connect and read, but write and erase nothing
  -v               more messages;  -q  fewer messages (no progress bars)
  -h, --help       this help
]]

local verbose, quiet = 0, 0
local detect_format

local function say(fmt, ...)
  if quiet < 1 then io.stderr:write(PROG, ": ", fmt:format(...), "\n") end
end

-- Exits with status 1, closing the Lua state first, so an open session's
-- <close> and __gc run: RESET is released and the lines too.
local function fail(fmt, ...)
  io.stderr:write(PROG, ": ", fmt:format(...), "\n")
  os.exit(1, true)
end

---------------------------------------------------------------- options

local function parse_args(argv)
  local o = { ops = {}, board = nil, conf = {} }
  local i = 1
  local function value(opt, attached)
    if attached ~= "" then return attached end
    i = i + 1
    local v = argv[i]
    if v == nil then fail("option %s needs a value\n%s", opt, USAGE) end
    return v
  end
  while i <= #argv do
    local a = argv[i]
    if a == "-h" or a == "--help" or a == "-?" then
      io.stdout:write(USAGE)
      os.exit(0)
    elseif a == "--board" then
      o.board = value(a, "")
    elseif a:match("^%-%-board=") then
      o.board = a:sub(9)
    elseif a:match("^%-[pcPCUBi]") then
      local opt, rest = a:sub(1, 2), a:sub(3)
      local v = value(opt, rest)
      if opt == "-p" then o.part = v
      elseif opt == "-c" then o.programmer = v
      elseif opt == "-P" then o.port = v
      elseif opt == "-C" then o.conf[#o.conf + 1] = v
      elseif opt == "-B" or opt == "-i" then
        local us = tonumber(v)
        if not us or us <= 0 or us > 100000 then fail("%s %s: a time in microseconds expected", opt, v) end
        o.half_period_ns = math.floor((opt == "-B" and us * 500 or us * 1000) + 0.5)
        o.sck_opt, o.sck_value = opt, v
      else o.ops[#o.ops + 1] = v end
    elseif a:match("^%-[eDVFnvq]+$") then
      for f in a:sub(2):gmatch(".") do
        if f == "e" then o.erase = true
        elseif f == "D" then o.no_auto_erase = true
        elseif f == "V" then o.no_verify = true
        elseif f == "F" then o.force = true
        elseif f == "n" then o.dry_run = true
        elseif f == "v" then verbose = verbose + 1
        elseif f == "q" then quiet = quiet + 1 end
      end
    else
      fail("unknown option '%s'\n%s", a, USAGE)
    end
    i = i + 1
  end
  return o
end

local MEMS = { flash = true, eeprom = true, lfuse = true, hfuse = true, efuse = true,
               lock = true, signature = true }
local FUSES = { lfuse = true, hfuse = true, efuse = true, lock = true }
local FORMATS = { i = true, r = true, m = true, h = true, a = true }

-- "-U mem:op:file[:fmt]"; a file name may itself contain ':'.
local function parse_update(spec)
  local fields = {}
  for f in (spec .. ":"):gmatch("([^:]*):") do fields[#fields + 1] = f end
  if #fields < 3 then
    fail("-U %s: expected memtype:op:filename[:format]", spec)
  end
  local u = { mem = fields[1], op = fields[2], spec = spec }
  if #fields >= 4 and #fields[#fields] == 1 then
    u.format = fields[#fields]
    u.file = table.concat(fields, ":", 3, #fields - 1)
  else
    u.file = table.concat(fields, ":", 3)
  end
  if not MEMS[u.mem] then
    fail("-U %s: unknown memory type '%s' (flash, eeprom, lfuse, hfuse, efuse, lock, signature)",
      spec, u.mem)
  end
  if u.op ~= "r" and u.op ~= "w" and u.op ~= "v" then
    fail("-U %s: unknown operation '%s' (r, w or v)", spec, u.op)
  end
  if u.format and not FORMATS[u.format] then
    fail("-U %s: unknown format '%s' (i, r, m, h or a)", spec, u.format)
  end
  if u.mem == "signature" and u.op == "w" then fail("-U %s: the signature cannot be written", spec) end
  if u.file == "" then fail("-U %s: no file name", spec) end
  if u.op == "r" and (u.format == "m" or u.format == "a") then
    fail("-U %s: format '%s' cannot be used to write a file", spec, u.format)
  end
  return u
end

---------------------------------------------------------------- input data

-- An input file whole, if it is a regular file of at most `max` bytes:
-- /dev/zero, a FIFO or a huge file is refused before it is read (a FIFO
-- with no writer would hang, the others fill memory).
local function read_file(path, max)
  local s, err = sys.read_file(path, max)
  if not s then fail("%s", err) end
  return s
end

-- The most bytes an input for `size` bytes of memory may have: the memory
-- as Intel HEX, with room to spare (one-byte records with CRLF take 15
-- characters a byte; 16-byte records about 3).
local function input_limit(size)
  return size * 16 + 65536
end

-- Numbers as C writes them, as avrdude reads them: "0x0f" (hex), "017"
-- (octal: a leading zero), "15" (decimal); several separated by spaces or
-- commas.
local function parse_numbers(text, what)
  local bytes = {}
  for tok in text:gmatch("[^%s,]+") do
    local v = tok:match("^0[xX]%x+$") and tonumber(tok:sub(3), 16)
      or tok:match("^0[0-7]*$") and tonumber(tok, 8)
      or tok:match("^[1-9]%d*$") and tonumber(tok)
    if not v or v > 255 then fail("%s: '%s' is not a byte value", what, tok) end
    bytes[#bytes + 1] = string.char(v)
  end
  if #bytes == 0 then fail("%s: no value", what) end
  return table.concat(bytes)
end

-- What -U ...:a (the default for input) means: Intel HEX when the file
-- starts with ':' (after a byte-order mark and blank space) or is named
-- .hex; raw binary when it is binary data. Anything else is refused rather
-- than guessed: an HTML error page saved as sketch.hex must never be
-- flashed as raw bytes.
detect_format = function(path, text)
  local head = text:sub(1, 4096)
  if head == "" then return nil, "empty file" end
  local body = head:gsub("^\239\187\191", "")
  if body:match("^%s*:") then return "i" end
  if head:sub(1, 4) == "\127ELF" then
    return nil, "an ELF file: give the .hex that avr-objcopy makes from it"
  end
  if body:match("^%s*S[0-9]%x%x") then
    return nil, "Motorola S-records, which fotahost does not read: convert to Intel HEX"
  end
  if path:lower():match("%.hex$") or path:lower():match("%.ihx$") then return "i" end
  if not head:find("[^\t\r\n\32-\126]") then
    return nil, "text in no format fotahost knows (not Intel HEX); add :i or :r to -U to say which"
  end
  return "r"
end

-- Loads the data of a write or verify: an ihex image (for flash and eeprom)
-- or a byte string (for fuses).
local function load_input(u, part)
  local fmt = u.format or "a"
  local what = ("-U %s"):format(u.spec)
  local size = u.mem == "flash" and part.flash_size or u.mem == "eeprom" and part.eeprom_size
    or u.mem == "signature" and 3 or 1
  local img
  if fmt == "m" then
    img = ihex.from_binary(parse_numbers(u.file, what), 0)
  elseif fmt == "h" then
    img = ihex.from_binary(parse_numbers(read_file(u.file, input_limit(size)), u.file), 0)
  else
    local text = read_file(u.file, input_limit(size))
    if fmt == "a" then
      local why
      fmt, why = detect_format(u.file, text)
      if not fmt then fail("%s: %s", u.file, why) end
    end
    if fmt == "i" then
      local err
      -- A byte-order mark is not part of Intel HEX; editors add one.
      img, err = ihex.parse((text:gsub("^\239\187\191", "")), u.file)
      if not img then fail("%s", err) end
    else
      img = ihex.from_binary(text, 0)
    end
  end
  local lo, hi = img:range()
  if not lo then fail("%s: no data", u.file) end
  if hi >= size then
    fail("%s: data up to 0x%X does not fit the %s of %s (%d byte%s)", u.file, hi, u.mem,
      part.desc, size, size == 1 and "" or "s")
  end
  return img
end

---------------------------------------------------------------- output

local KINDS = { directory = "a directory", block = "a block device", socket = "a socket",
                other = "a special file" }

-- How a file read from the MCU gets to u.file: "replace" (a new regular
-- file renamed over it, or in place of nothing) or "into" (written straight
-- into a character device or FIFO, which are never replaced). A symbolic
-- link is refused: the rename would replace the link, not the file it
-- points to, and following it is what an attacker who planted it wants.
local function output_kind(u)
  local st = sys.lstat(u.file)
  if not st or st.type == "file" then return "replace" end
  if st.type == "char" or st.type == "fifo" then return "into" end
  if st.type == "link" then
    fail("%s: a symbolic link: refused (name the file it points to)", u.file)
  end
  fail("%s: %s: refused (not a file to write to)", u.file, KINDS[st.type] or KINDS.other)
end

local function write_output(u, data)
  local fmt = u.format or (u.file:match("%.hex$") and "i") or "r"
  local content
  if fmt == "i" then
    content = ihex.from_binary(data, 0):to_hex()
  elseif fmt == "h" then
    local t = {}
    for k = 1, #data do t[k] = ("0x%02x"):format(data:byte(k)) end
    content = table.concat(t, ",") .. "\n"
  else
    content = data
  end
  if u.file == "-" then
    io.stdout:write(content)
    return
  end
  local ok, err
  if output_kind(u) == "into" then
    ok, err = sys.write_device(u.file, content)
  else
    ok, err = sys.write_file(u.file, content, tonumber("666", 8))
  end
  if not ok then fail("%s", err) end
end

---------------------------------------------------------------- progress

local function progress_bar()
  if quiet > 0 or not sys.isatty(2) then
    return nil
  end
  local titles = { write = "Writing", verify = "Reading", read = "Reading", erase = "Erasing" }
  local started = {}
  return function(phase, done, total)
    if not started[phase] then started[phase] = sys.now() end
    local frac = total > 0 and done / total or 1
    local n = math.floor(frac * 50 + 0.5)
    io.stderr:write(("\r%-7s | %s%s | %3d%% %0.2f s"):format(titles[phase] or phase,
      ("#"):rep(n), (" "):rep(50 - n), math.floor(frac * 100 + 0.5), sys.now() - started[phase]))
    if done >= total then
      io.stderr:write("\n")
      started[phase] = nil
    end
  end
end

---------------------------------------------------------------- programmer

local BUILTIN = { linuxgpio = "sysfs", sysfs = "sysfs", gpiod = "gpiod", mmio = "mmio", sim = "sim" }
-- The board a programmer implies when --board is not given: the sim
-- programmer reaches only the virtual board (a simulated chip in -P DIR).
local BOARD_OF = { sim = "sim" }

local function resolve_programmer(o, board)
  -- The configuration: /etc/avrdude.conf, replaced by -C FILE or extended by -C +FILE.
  local files = {}
  local replace = false
  for _, c in ipairs(o.conf) do
    if c:sub(1, 1) ~= "+" then replace = true end
  end
  if not replace then
    local f = io.open(SYSTEM_CONF, "r")
    if f then f:close() files[#files + 1] = SYSTEM_CONF end
  end
  for _, c in ipairs(o.conf) do files[#files + 1] = c:sub(1, 1) == "+" and c:sub(2) or c end
  local entries = {}
  for _, path in ipairs(files) do
    local parsed, err = conf.load(path)
    if not parsed then fail("%s", err) end
    for id, e in pairs(parsed.programmers) do entries[id] = e end
  end
  local e = entries[o.programmer]
  if e then
    if e.type ~= "linuxgpio" then
      fail("programmer '%s' is of type '%s'; fotahost flash drives GPIO lines only (linuxgpio)",
        o.programmer, tostring(e.type))
    end
    for _, role in ipairs({ "reset", "sck", "mosi", "miso" }) do
      if e.pins[role] == nil then
        fail("programmer '%s' (line %d) gives no %s pin", o.programmer, e.line, role)
      end
    end
    return "sysfs", e.pins, e.invert, ("'%s' from the configuration"):format(o.programmer), true
  end
  local backend = BUILTIN[o.programmer]
  if not backend then
    local known = {}
    for id in pairs(entries) do known[#known + 1] = id end
    table.sort(known)
    fail("unknown programmer '%s' (linuxgpio, sysfs, gpiod, mmio, sim%s)", o.programmer,
      #known > 0 and (", or from the configuration: " .. table.concat(known, ", ")) or "")
  end
  return backend, board.pins, board.invert or {}, o.programmer
end

---------------------------------------------------------------- main

local o = parse_args(arg)
if not o.programmer then fail("no programmer given: use -c (linuxgpio, sysfs, gpiod, mmio or sim)") end
local board, berr = boards.get(o.board or BOARD_OF[o.programmer] or "linkit-smart-7688-duo")
if not board then fail("%s", berr) end
local part, perr = parts.get(o.part or board.part)
if not part then fail("%s", perr) end
local backend, pins, invert, pdesc, from_conf = resolve_programmer(o, board)
if board.chip_dir and not o.port then
  fail("the %s programmer needs -P DIR, the directory of the simulated chip", o.programmer)
end

-- 1. Every -U parsed and every input read before the MCU is touched.
local updates = {}
for _, spec in ipairs(o.ops) do
  local u = parse_update(spec)
  if u.mem == "efuse" and part.has_efuse == false then fail("%s has no extended fuse", part.desc) end
  if u.op ~= "r" then
    u.image = load_input(u, part)
    if verbose > 0 or u.mem == "flash" then
      local lo, hi = u.image:range()
      local nseg = #u.image:segments()
      say("%s for %s: %d bytes in %d section%s within [0x%04x, 0x%04x]",
        u.file, u.mem, u.image:size(), nseg, nseg == 1 and "" or "s", lo, hi)
    end
  end
  updates[#updates + 1] = u
end
-- Output files must be writable before anything happens to the MCU.
-- (A probe next to it, written as the file will be: never through a link.)
for _, u in ipairs(updates) do
  if u.op == "r" and u.file ~= "-" and output_kind(u) == "replace" then
    local probe = u.file .. ".tmp"
    local ok, err = sys.write_file(probe, "")
    if not ok then fail("%s", err) end
    os.remove(probe)
  end
end
local writes_flash = false
for _, u in ipairs(updates) do
  if u.mem == "flash" and u.op == "w" then writes_flash = true end
end
-- -e, or avrdude's auto-erase before a flash write (unless -D). The erase
-- comes just before the first write, so any read listed before it (a
-- backup of the old firmware) reads the chip as it was.
local erase = o.erase or (writes_flash and not o.no_auto_erase)

-- 2. Connect and check the signature.
local t_start = sys.now()
local isp_opts = assert(boards.isp_options({ board = board, backend = backend, chip = o.port, part = part }, {
  pins = pins, invert = invert, force = o.force, progress = progress_bar(),
  half_period_ns = o.half_period_ns,
  -- A configuration entry gives the board's own numbers, already swapped
  -- where the board needs it, and global (no chip base added).
  swap = not from_conf and "auto" or false, absolute_numbers = from_conf,
  -- For tests: a fake /sys/class/gpio tree.
  sysfs_root = os.getenv("FOTAHOST_SYSFS_ROOT"),
}))
backend = isp_opts.backend
local session <close>, err = isp.open(isp_opts)
if not session then fail("%s", err) end
if session.sck_clamped and o.sck_opt then
  -- said even with -q: the flash takes longer than the user asked for
  local half_us = session.half_period_ns / 1000
  io.stderr:write(("%s: %s %s is faster than the %s allows at %g MHz; using %g us\n"):format(PROG,
    o.sck_opt, o.sck_value, part.desc, session.f_cpu / 1e6, o.sck_opt == "-B" and 2 * half_us or half_us))
end
if verbose > 0 then say("using %s on %s, pins reset=%d sck=%d mosi=%d miso=%d", pdesc, backend,
  pins.reset, pins.sck, pins.mosi, pins.miso) end
local sig
sig, err = session:connect()
if not sig then fail("%s", err) end
say("AVR device initialized and ready to accept instructions%s",
  session.swapped and " (MOSI/MISO swapped: board revision before 3)" or "")
say("device signature = 0x%s (%s)", sig:gsub(" ", ""):lower(), part.desc)

local function check(ok, e)
  if ok == nil then fail("%s", e) end
  return ok
end

-- 3. The operations in the order given, the erase just before the first write.
local erased = false
local function erase_now()
  if erased or not erase then return end
  erased = true
  if o.dry_run then
    say("dry run: the chip would be erased now")
  else
    say("erasing chip")
    check(session:erase())
  end
end

for _, u in ipairs(updates) do
  if u.op == "w" and (o.erase or u.mem == "flash") then erase_now() end
  if u.op == "w" and o.dry_run then
    say("dry run: %s would be written from %s", u.mem, u.file)
  elseif u.mem == "flash" and u.op == "w" then
    local pages = check(session:write_flash(u.image))
    say("%d bytes of flash written (%d page%s)", u.image:size(), pages, pages == 1 and "" or "s")
    if not o.no_verify then
      check(session:verify_flash(u.image))
      say("%d bytes of flash verified", u.image:size())
    end
  elseif (u.mem == "flash" or u.mem == "eeprom") and u.op == "v" then
    if u.mem == "flash" then
      check(session:verify_flash(u.image))
    else
      for _, seg in ipairs(u.image:segments()) do
        local got = check(session:read_eeprom(seg.addr, #seg.data))
        if got ~= seg.data then fail("eeprom verification error in [0x%04x, 0x%04x]", seg.addr,
          seg.addr + #seg.data - 1) end
      end
    end
    say("%d bytes of %s verified", u.image:size(), u.mem)
  elseif u.mem == "eeprom" and u.op == "w" then
    for _, seg in ipairs(u.image:segments()) do
      check(session:write_eeprom(seg.addr, seg.data))
      if not o.no_verify then
        local got = check(session:read_eeprom(seg.addr, #seg.data))
        if got ~= seg.data then fail("eeprom verification error in [0x%04x, 0x%04x]", seg.addr,
          seg.addr + #seg.data - 1) end
      end
    end
    say("%d bytes of eeprom written", u.image:size())
  elseif FUSES[u.mem] and u.op == "w" then
    local value = u.image:bytes(0, 0):byte()
    local back = check(session:write_fuse(u.mem, value))
    say("1 byte of %s written (0x%02x%s)", u.mem, value,
      back ~= value and (", reads 0x%02x: the other bits do not exist"):format(back) or "")
  elseif FUSES[u.mem] and u.op == "v" then
    local value = u.image:bytes(0, 0):byte()
    local got = check(session:read_fuse(u.mem))
    local mask = part.fuse_mask[u.mem]
    if (got & mask) ~= (value & mask) then
      fail("%s verification error: file 0x%02x, MCU 0x%02x (bits compared: 0x%02x)", u.mem, value, got, mask)
    end
    say("1 byte of %s verified", u.mem)
  elseif u.mem == "signature" and u.op == "v" then
    local want = u.image:bytes(0, 2)
    local got = sig:gsub("%x%x ?", function(x) return string.char(tonumber(x:sub(1, 2), 16)) end)
    if got ~= want then
      fail("signature verification error: file %s, MCU %s",
        (want:gsub(".", function(c) return ("%02X "):format(c:byte()) end):sub(1, -2)), sig)
    end
    say("3 bytes of signature verified")
  elseif u.op == "r" then
    local data
    if u.mem == "flash" then
      data = check(session:read_flash(0, part.flash_size))
      local trimmed = data:gsub("\255+$", "")
      if #trimmed < #data then
        if verbose > 0 then say("cutting off %d trailing 0xff bytes", #data - #trimmed) end
        data = trimmed
      end
    elseif u.mem == "eeprom" then
      data = check(session:read_eeprom(0, part.eeprom_size))
    elseif u.mem == "signature" then
      data = sig:gsub("%x%x ?", function(h) return string.char(tonumber(h:sub(1, 2), 16)) end)
    else
      data = string.char(check(session:read_fuse(u.mem)))
    end
    write_output(u, data)
    say("%d byte%s of %s read to %s", #data, #data == 1 and "" or "s", u.mem, u.file)
  end
end

erase_now()   -- -e with no write at all: after the reads, as asked

if verbose > 0 then
  local s = session:stats()
  say("%d ISP commands, %d SPI bits, %d GPIO operations, %d system calls, %.1f ms fixed sleeps, %.2f s",
    s.commands or 0, s.bits or 0, (s.gpio_sets or 0) + (s.gpio_gets or 0), s.syscalls or 0,
    (s.sleep_us or 0) / 1000, sys.now() - t_start)
end
session:close()
say("done.")
