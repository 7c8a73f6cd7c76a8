-- The simulated AVR (fotahost.avrsim), driven through its Lua binding the
-- way the virtual board and the ISP tests drive it.
local avrsim = require "fotahost.avrsim"
local parts = require "fotahost.avr.parts"
local sys = require "fotahost.sys"
local h = require "helper"

-- The datasheet's waits are real time; the chip measures them on the
-- monotonic clock, so the spec spins on the same clock.
local function spin(seconds)
  local t = sys.now() + seconds
  while sys.now() < t do end
end

local function cmd(chip, a, b, c, d)
  local _, _, _, r = chip:transfer(a, b, c, d)
  return r
end

-- RESET pulse, 20 ms, Programming Enable; returns the byte-3 echo.
local function enter(chip)
  chip:pins(1, 0, 0)
  chip:pins(0, 0, 0)
  spin(0.021)
  local _, _, echo = chip:transfer(0xAC, 0x53, 0x00, 0x00)
  return echo
end

-- Polls RDY/BSY until ready; returns how many polls said busy.
local function ready(chip)
  local deadline, n = sys.now() + 2, 0
  while cmd(chip, 0xF0, 0x00, 0x00, 0x00) & 1 == 1 do
    n = n + 1
    assert(sys.now() < deadline, "chip still busy after 2 s")
  end
  return n
end

-- Loads `data` (one page) and writes it at byte address `addr`.
local function write_page(chip, addr, data)
  for i = 1, #data, 2 do
    local off = (i - 1) // 2
    cmd(chip, 0x40, off >> 8, off & 0xFF, data:byte(i))
    cmd(chip, 0x48, off >> 8, off & 0xFF, data:byte(i + 1))
  end
  local word = addr // 2
  cmd(chip, 0x4C, (word >> 8) & 0xFF, word & 0xFF, 0x00)
  return ready(chip)
end

local function read_flash(chip, addr, len)
  local out = {}
  for a = addr, addr + len - 1 do
    local word = a // 2
    out[#out + 1] = string.char(cmd(chip, a & 1 == 1 and 0x28 or 0x20, (word >> 8) & 0xFF, word & 0xFF, 0))
  end
  return table.concat(out)
end

local function pattern(len, seed)
  local t = {}
  for i = 1, len do t[i] = string.char((i * 7 + seed) & 0xFF) end
  return table.concat(t)
end

local function band(a, b)
  local t = {}
  for i = 1, #a do t[i] = string.char(a:byte(i) & b:byte(i)) end
  return table.concat(t)
end

describe("fotahost.avrsim", function()
  local dir, chip

  before_each(function()
    dir = h.tmpdir()
    chip = assert(avrsim.open(dir, parts.m32u4))
  end)

  after_each(function()
    chip:close()
    h.rmdir(dir)
  end)

  it("creates an erased chip: flash.bin, eeprom.bin and fuses.txt", function()
    assert.are.equal(string.rep("\255", 32768), h.read(dir .. "/flash.bin"))
    assert.are.equal(string.rep("\255", 1024), h.read(dir .. "/eeprom.bin"))
    assert.are.equal("part=m32u4\nlfuse=0x52\nhfuse=0x99\nefuse=0xFB\nlock=0xFF\n",
                     h.read(dir .. "/fuses.txt"))
    assert.are.same({ lfuse = 0x52, hfuse = 0x99, efuse = 0xFB, lock = 0xFF }, chip:fuses())
    assert.matches("^simulated m32u4 %(/tmp/fotahost%-spec%-", tostring(chip))
  end)

  it("refuses Programming Enable within 20 ms of reset, then echoes 0x53 and accepts it", function()
    assert.are.equal(1, chip:miso()) -- RESET high: the MCU runs
    -- Early is within 20 ms of RESET falling. A loaded machine may pause
    -- this process for that long between the two calls, so it tries again
    -- until one attempt surely came early.
    local echo
    for _ = 1, 20 do
      chip:pins(true, false, false)
      chip:reset_stats()
      local t = sys.now()
      chip:pins(false, false, false)
      _, _, echo = chip:transfer(0xAC, 0x53, 0x00, 0x00)
      if sys.now() - t < 0.015 then break end
    end
    assert.are.equal(0x53, echo)
    assert.is_false(chip:programming())
    local st = chip:stats()
    assert.are.equal(1, st.violations)
    assert.matches("^programming enable only %d+ ms after reset$", st.last_violation)
    assert.are.equal(0x00, cmd(chip, 0x30, 0x00, 0x00, 0x00)) -- not enabled: no signature

    spin(0.021)
    assert.are.same({ 0x00, 0xAC, 0x53, 0x00 }, { chip:transfer(0xAC, 0x53, 0x00, 0x00) })
    assert.is_true(chip:programming())
    st = chip:stats()
    assert.are.equal(1, st.enables)
    assert.are.equal(3, st.commands)
    assert.are.equal(96, st.bits)

    chip:pins(1, 0, 0)
    assert.is_false(chip:programming())
    assert.are.equal(1, chip:stats().resets)
    chip:reset_stats()
    assert.are.same({ commands = 0, bits = 0, enables = 0, violations = 0, page_writes = 0,
                      chip_erases = 0, eeprom_writes = 0, fuse_writes = 0, polls = 0, resets = 0,
                      last_violation = "" }, chip:stats())
  end)

  it("answers with the signature and the calibration byte", function()
    assert.are.equal(0x53, enter(chip))
    assert.are.same({ 0x1E, 0x95, 0x87 }, { cmd(chip, 0x30, 0, 0, 0), cmd(chip, 0x30, 0, 1, 0),
                                             cmd(chip, 0x30, 0, 2, 0) })
    assert.are.equal(0x5A, cmd(chip, 0x38, 0, 0, 0))
  end)

  it("writes a page and reads it back; a write without erase can only clear bits", function()
    enter(chip)
    local a, b = pattern(128, 1), pattern(128, 0x5C)
    assert.is_true(write_page(chip, 0x0280, a) > 0) -- busy for t_wd_flash
    assert.are.equal(a, read_flash(chip, 0x0280, 128))
    assert.are.equal(a, chip:flash(0x0280, 128))
    assert.are.equal("\255", chip:flash(0x027F, 1))

    write_page(chip, 0x0280, b)
    assert.are.equal(band(a, b), chip:flash(0x0280, 128))
    assert.are_not.equal(b, chip:flash(0x0280, 128))

    cmd(chip, 0xAC, 0x80, 0x00, 0x00)
    assert.is_true(ready(chip) > 0) -- t_wd_erase
    assert.are.equal(string.rep("\255", 32768), chip:flash())
    write_page(chip, 0x0280, b)
    assert.are.equal(b, chip:flash(0x0280, 128))
    local st = chip:stats()
    assert.are.equal(1, st.chip_erases)
    assert.are.equal(3, st.page_writes)
  end)

  it("takes the latched low byte when the high byte is loaded first", function()
    enter(chip)
    cmd(chip, 0x40, 0x00, 0x00, 0x11)
    cmd(chip, 0x48, 0x00, 0x00, 0x22)
    cmd(chip, 0x48, 0x00, 0x01, 0x44) -- high first: the stale 0x11 goes with it
    cmd(chip, 0x40, 0x00, 0x01, 0x33)
    cmd(chip, 0x4C, 0x00, 0x00, 0x00)
    ready(chip)
    assert.are.equal("\x11\x22\x11\x44\255", chip:flash(0, 5))
  end)

  it("keeps the EEPROM through a chip erase only when EESAVE is programmed", function()
    enter(chip)
    cmd(chip, 0xC0, 0x00, 0x10, 0x42)
    ready(chip)
    cmd(chip, 0xAC, 0x80, 0x00, 0x00) -- hfuse 0x99: EESAVE = 1, not programmed
    ready(chip)
    assert.are.equal(0xFF, chip:eeprom():byte(0x11))

    cmd(chip, 0xAC, 0xA8, 0x00, 0xD0) -- EESAVE = 0 (0xD8 leaves it at 1)
    ready(chip)
    cmd(chip, 0xC0, 0x00, 0x10, 0x42)
    ready(chip)
    cmd(chip, 0xAC, 0x80, 0x00, 0x00)
    ready(chip)
    assert.are.equal(0x42, chip:eeprom():byte(0x11))
    assert.are.equal(0x42, cmd(chip, 0xA0, 0x00, 0x10, 0x00))
  end)

  it("writes EEPROM bytes and pages", function()
    enter(chip)
    cmd(chip, 0xC0, 0x03, 0xFF, 0x5A)
    assert.is_true(ready(chip) > 0) -- t_wd_eeprom
    cmd(chip, 0xC1, 0x00, 0x00, 0x01)
    cmd(chip, 0xC1, 0x00, 0x01, 0x02)
    cmd(chip, 0xC1, 0x00, 0x03, 0x04)
    cmd(chip, 0xC2, 0x00, 0x04, 0x00)
    ready(chip)
    local ee = chip:eeprom()
    assert.are.equal(1024, #ee)
    assert.are.equal(0x5A, ee:byte(1024))
    assert.are.equal("\1\2\255\4", ee:sub(5, 8))
    assert.are.equal(2, chip:stats().eeprom_writes)
  end)

  it("writes and reads fuses; lock bits can only be programmed, bits 7:6 read 1", function()
    enter(chip)
    for _, f in ipairs({ { 0xA0, 0xFF }, { 0xA8, 0xD8 }, { 0xA4, 0xCE } }) do
      cmd(chip, 0xAC, f[1], 0x00, f[2])
      assert.is_true(ready(chip) > 0) -- t_wd_fuse
    end
    assert.are.same({ 0xFF, 0xD8, 0xCE }, { cmd(chip, 0x50, 0x00, 0, 0), cmd(chip, 0x58, 0x08, 0, 0),
                                             cmd(chip, 0x50, 0x08, 0, 0) })
    cmd(chip, 0xAC, 0xE0, 0x00, 0x0F)
    ready(chip)
    assert.are.equal(0xCF, cmd(chip, 0x58, 0x00, 0x00, 0x00))
    cmd(chip, 0xAC, 0xE0, 0x00, 0xFF) -- cannot unprogram
    ready(chip)
    assert.are.equal(0xCF, cmd(chip, 0x58, 0x00, 0x00, 0x00))
    assert.are.same({ lfuse = 0xFF, hfuse = 0xD8, efuse = 0xCE, lock = 0xCF }, chip:fuses())
    assert.are.equal(5, chip:stats().fuse_writes)

    cmd(chip, 0xAC, 0xE0, 0x00, 0xFC) -- LB = 00: no more writes
    ready(chip)
    write_page(chip, 0, pattern(128, 3))
    assert.are.equal("\255\255", chip:flash(0, 2))
    cmd(chip, 0xAC, 0x80, 0x00, 0x00) -- only a chip erase clears the lock
    ready(chip)
    assert.are.equal(0xFF, chip:fuses().lock)
  end)

  it("says busy while writing and counts any other access as a violation", function()
    enter(chip)
    chip:fault("slow_write", 50) -- 225 ms: busy for sure, even if this process is paused a while
    cmd(chip, 0x4C, 0x00, 0x00, 0x00)
    assert.are.equal(1, cmd(chip, 0xF0, 0x00, 0x00, 0x00))
    cmd(chip, 0x30, 0x00, 0x00, 0x00)
    local st = chip:stats()
    assert.are.equal(1, st.violations)
    assert.are.equal("Read Signature byte while busy", st.last_violation)
    assert.is_true(ready(chip) > 0)
    assert.are.equal(0, cmd(chip, 0xF0, 0x00, 0x00, 0x00))
    assert.are.equal(0x1E, cmd(chip, 0x30, 0x00, 0x00, 0x00))
    assert.is_true(chip:stats().polls >= 3)
  end)

  it("counts SCK phases shorter than the minimum as violations", function()
    -- A 100 us minimum, so that pins() from Lua is surely too fast even on
    -- a sanitizer build; test_avrsim.c checks the real 250 ns from C.
    local d = h.tmpdir()
    local c = assert(avrsim.open(d, parts.m32u4, { min_half_period_ns = 100000 }))
    c:pins(0, 0, 0)
    assert.are.equal(0, c:stats().violations)
    for _ = 1, 32 do
      c:pins(0, 1, 0)
      c:pins(0, 0, 0)
    end
    local st = c:stats()
    assert.is_true(st.violations > 0)
    assert.matches("^SCK half%-period %d+ ns < 100000 ns$", st.last_violation)
    c:close()
    h.rmdir(d)
  end)

  it("loses the 0x53 echo after a stray SCK pulse, until a RESET pulse", function()
    chip:pins(1, 0, 0)
    chip:pins(0, 0, 0)
    spin(0.021)
    chip:pins(0, 1, 0) -- one extra bit
    spin(0.001)
    chip:pins(0, 0, 0)
    for _ = 1, 3 do
      local _, _, echo = chip:transfer(0xAC, 0x53, 0x00, 0x00)
      assert.are_not.equal(0x53, echo)
    end
    assert.is_false(chip:programming())
    assert.are.equal(0x53, enter(chip))
    assert.is_true(chip:programming())
  end)

  describe("faults", function()
    it("silent: MISO reads 1 and nothing runs", function()
      chip:fault("silent")
      assert.are.equal(0xFF, enter(chip))
      assert.is_false(chip:programming())
      assert.are.equal(0, chip:stats().commands)
      chip:fault("ok")
      assert.are.equal(0x53, enter(chip))
    end)

    it("miso_stuck: MISO reads the level, instructions still run", function()
      enter(chip)
      chip:fault("miso_stuck", 0)
      assert.are.same({ 0, 0, 0, 0 }, { chip:transfer(0x30, 0x00, 0x00, 0x00) })
      cmd(chip, 0xAC, 0xA0, 0x00, 0xE2)
      chip:fault("miso_stuck", true)
      assert.are.equal(1, chip:miso())
      assert.are.same({ 0xFF, 0xFF, 0xFF, 0xFF }, { chip:transfer(0x30, 0x00, 0x00, 0x00) })
      chip:fault("ok")
      ready(chip)
      assert.are.equal(0xE2, chip:fuses().lfuse)
    end)

    it("bit_error: one MISO bit inverted, once", function()
      enter(chip)
      chip:fault("bit_error", 16) -- the MSB of the third byte
      assert.are.same({ 0x00, 0xAC, 0xD3, 0x00 }, { chip:transfer(0xAC, 0x53, 0x00, 0x00) })
      assert.are.same({ 0x00, 0xAC, 0x53, 0x00 }, { chip:transfer(0xAC, 0x53, 0x00, 0x00) })
    end)

    it("slow_write: busy periods multiplied", function()
      enter(chip)
      chip:fault("slow_write", 40) -- 180 ms: ample room for a loaded machine's pauses
      cmd(chip, 0xAC, 0xA0, 0x00, 0xFF)
      spin(0.010) -- twice t_wd_fuse
      assert.are.equal(1, cmd(chip, 0xF0, 0x00, 0x00, 0x00))
      chip:fault("ok")
      ready(chip)
    end)

    it("rejects unknown names and bad parameters", function()
      assert.has_error(function() chip:fault("fire") end,
                       "bad argument #1 to 'fault' (invalid option 'fire')")
      assert.has_error(function() chip:fault("miso_stuck", 2) end)
      assert.has_error(function() chip:fault("slow_write", 0) end)
      assert.has_error(function() chip:fault("bit_error", -1) end)
    end)
  end)

  it("keeps its memories across close and open", function()
    enter(chip)
    local page = pattern(128, 9)
    write_page(chip, 0x7000, page)
    cmd(chip, 0xAC, 0xE0, 0x00, 0x0F)
    ready(chip)
    cmd(chip, 0xC0, 0x00, 0x00, 0x77)
    ready(chip)
    assert.is_true(chip:close())
    assert.is_true(chip:close()) -- idempotent

    local flash = h.read(dir .. "/flash.bin")
    assert.are.equal(32768, #flash)
    assert.are.equal(page, flash:sub(0x7001, 0x7080))
    assert.are.equal("part=m32u4\nlfuse=0x52\nhfuse=0x99\nefuse=0xFB\nlock=0xCF\n",
                     h.read(dir .. "/fuses.txt"))
    assert.is_nil(h.read(dir .. "/flash.bin.tmp"))

    chip = assert(avrsim.open(dir, parts.m32u4))
    assert.are.equal(page, chip:flash(0x7000, 128))
    assert.are.equal(0x77, chip:eeprom():byte(1))
    assert.are.equal(0xCF, chip:fuses().lock)
  end)

  it("saves only when asked: __gc frees without saving", function()
    enter(chip)
    cmd(chip, 0xAC, 0xA0, 0x00, 0x00)
    ready(chip)
    chip = nil
    collectgarbage()
    collectgarbage()
    assert.matches("lfuse=0x52", h.read(dir .. "/fuses.txt"))
    chip = assert(avrsim.open(dir, parts.m32u4))
    enter(chip)
    cmd(chip, 0xAC, 0xA0, 0x00, 0x00)
    ready(chip)
    assert.is_true(chip:save())
    assert.matches("lfuse=0x00", h.read(dir .. "/fuses.txt"))
  end)

  it("says which file is wrong and why", function()
    chip:close()
    h.write(dir .. "/flash.bin", string.rep("\255", 100))
    local c, err = avrsim.open(dir, parts.m32u4)
    assert.is_nil(c)
    assert.are.equal(dir .. "/flash.bin: 100 bytes, but the m32u4 flash is 32768 bytes", err)

    h.write(dir .. "/flash.bin", string.rep("\255", 32768))
    c, err = avrsim.open(dir, parts.m328p)
    assert.is_nil(c)
    assert.are.equal(dir .. "/fuses.txt: for part m32u4, not m328p", err)

    h.write(dir .. "/fuses.txt", "part=m32u4\nlfuse=0x52\nhfuse=0x199\n")
    c, err = avrsim.open(dir, parts.m32u4)
    assert.is_nil(c)
    assert.are.equal(dir .. "/fuses.txt: line 3: hfuse must be a byte (0x00 to 0xFF), not '0x199'", err)

    c, err = avrsim.open(dir .. "/none", parts.m32u4)
    assert.is_nil(c)
    assert.are.equal(dir .. "/none: " .. h.strerror.ENOENT, err)
    os.remove(dir .. "/fuses.txt")
    chip = assert(avrsim.open(dir, parts.m32u4)) -- for after_each
    assert.are.equal(0x52, chip:fuses().lfuse)
  end)

  it("takes factory fuses and the SCK limit from opts", function()
    local d = h.tmpdir()
    local c <close> = assert(avrsim.open(d, parts.m32u4, {
      factory = { lfuse = 0xFF, hfuse = 0xD8, efuse = 0xCE }, min_half_period_ns = 0 }))
    assert.are.same({ lfuse = 0xFF, hfuse = 0xD8, efuse = 0xCE, lock = 0xFF }, c:fuses())
    c:pins(0, 0, 0)
    for _ = 1, 32 do c:pins(0, 1, 0); c:pins(0, 0, 0) end
    assert.are.equal(0, c:stats().violations) -- no SCK limit
    assert.has_error(function() avrsim.open(d, parts.m32u4, { factory = { lock = 256 } }) end,
                     "bad option 'factory.lock' to 'open' (an integer from 0 to 255 expected)")
    c:close()
    h.rmdir(d)
  end)

  it("round-trips flash on the m328p, and beyond 128 KiB on the m2560", function()
    local d = h.tmpdir()
    local c <close> = assert(avrsim.open(d, parts.m328p))
    assert.are.equal(0x53, enter(c))
    assert.are.equal(0x0F, cmd(c, 0x30, 0x00, 0x02, 0x00))
    local page = pattern(128, 77)
    write_page(c, 0x7F80, page)
    assert.are.equal(page, read_flash(c, 0x7F80, 128))
    c:close()
    h.rmdir(d)

    d = h.tmpdir()
    local m <close> = assert(avrsim.open(d, parts.m2560))
    assert.are.equal(0x53, enter(m))
    assert.are.equal(0x98, cmd(m, 0x30, 0x00, 0x01, 0x00))
    page = pattern(256, 5)
    cmd(m, 0x4D, 0x00, 0x01, 0x00) -- word address bits 23:16
    write_page(m, 0x30000 & 0x1FFFF, page) -- the low 17 bits; 0x4D gives the rest
    assert.are.equal(page, m:flash(0x30000, 256))
    assert.are.equal(string.rep("\255", 256), m:flash(0x10000, 256))
    assert.are.equal(page, read_flash(m, 0x10000, 256)) -- still extended: reads 0x30000
    m:close()
    assert.are.equal(262144, #h.read(d .. "/flash.bin"))
    assert.are.equal(page, h.read(d .. "/flash.bin"):sub(0x30001, 0x30100))
    h.rmdir(d)
  end)

  it("checks its arguments and refuses a closed chip", function()
    assert.has_error(function() chip:pins(0, 2, 0) end,
                     "bad argument #2 to 'pins' (level must be 0, 1 or a boolean)")
    assert.has_error(function() chip:transfer(0x100, 0, 0, 0) end,
                     "bad argument #1 to 'transfer' (byte out of range)")
    assert.has_error(function() chip:flash(32769) end)
    assert.has_error(function() chip:flash(32760, 9) end)
    assert.are.equal(8, #chip:flash(32760))
    assert.has_error(function() avrsim.open(dir, { id = "x" }) end)
    assert.has_error(function() chip.miso({}) end)
    chip:close()
    assert.are.equal("simulated chip (closed)", tostring(chip))
    assert.has_error(function() chip:miso() end, "attempt to use a closed simulated chip")
    assert.has_error(function() chip:stats() end, "attempt to use a closed simulated chip")
  end)
end)
