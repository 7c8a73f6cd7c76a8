-- The ISP programmer on the simulated chip: every part, the faults, a wrong
-- chip, swapped pins, and what a failure leaves behind.
local isp = require "fotahost.avr.isp"
local parts = require "fotahost.avr.parts"
local ihex = require "fotahost.ihex"
local h = require "helper"

local function pattern(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * seed + (i >> 7)) % 256) end
  return table.concat(t)
end

local function flash_bin(dir) return h.read(dir .. "/flash.bin") end

describe("ISP programming on the simulated chip", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  local function session(opts)
    opts = opts or {}
    opts.backend = "sim"
    opts.chip = opts.chip or dir
    if not opts.pins then opts.board = opts.board or "sim" end
    return assert(isp.open(opts))
  end

  it("writes, verifies, reads back, and sets fuses, lock and EEPROM on an m32u4", function()
    local s <close> = session()
    assert.are.equal("1E 95 87", s:connect())
    assert(s:erase())
    local boot = pattern(4086, 13)
    local img = ihex.from_binary(boot, 0x7000)
    assert.are.equal(32, s:write_flash(img))
    assert(s:verify_flash(img))
    assert.are.equal(boot, s:read_flash(0x7000, #boot))
    assert.are.equal(("\255"):rep(16), s:read_flash(0, 16))
    assert.are.equal(0xD9, s:write_fuse("hfuse", 0xD9))
    assert.are.equal(0xCF, s:write_fuse("lock", 0x0F))   -- bits 7:6 read 1: success
    assert(s:write_eeprom(10, "hello"))
    assert.are.equal("hello", s:read_eeprom(10, 5))
    local st = s:stats()
    assert.is_true(st.commands > 8000 and st.bits == st.commands * 32)
    assert.are.equal(20000, st.sleep_us)                  -- only the datasheet's 20 ms
    s:close()
    local fb = flash_bin(dir)
    assert.are.equal(32768, #fb)
    assert.are.equal(("\255"):rep(0x7000) .. boot .. ("\255"):rep(32768 - 0x7000 - #boot), fb)
    assert.matches("lock=0xCF", h.read(dir .. "/fuses.txt"))
    assert.matches("hfuse=0xD9", h.read(dir .. "/fuses.txt"))
    -- the chip saw no SCK half-period under 250 ns, no access while busy
    assert.is_nil(h.read(dir .. "/violations.log"))
    -- and the virtual board is told the MCU runs again
    assert.are.equal("1\n", h.read(dir .. "/reset"))
  end)

  it("starts over on a second connect, leaving no stale lines behind", function()
    local s <close> = session()
    s:connect()
    s:connect()
    s:erase()
    assert(s:write_flash(ihex.from_binary("NEW", 0)))
    s:close()
    collectgarbage()
    collectgarbage()
    assert.are.equal("NEW", flash_bin(dir):sub(1, 3))
  end)

  it("skips all-0xFF pages and 0xFF words after an erase", function()
    local s <close> = session()
    s:connect()
    s:erase()
    local data = ("\255"):rep(128) .. "\1\2" .. ("\255"):rep(126)
    assert.are.equal(1, s:write_flash(ihex.from_binary(data, 0)))
    assert.are.equal("\1\2\255", s:read_flash(128, 3))
  end)

  it("programs an m328p and an m2560 (beyond 128 KiB: Load Extended Address), fuses, lock, EEPROM", function()
    for _, case in ipairs({ { "m328p", "1E 95 0F", 0x7E00 }, { "m2560", "1E 98 01", 0x3FE00 } }) do
      local sub = dir .. "/" .. case[1]
      os.execute("mkdir " .. h.q(sub))
      local s <close> = session{ chip = sub, part = case[1],
        pins = { reset = 3, sck = 15, mosi = 16, miso = 17 } }
      assert.are.equal(case[2], s:connect())
      s:erase()
      local data = pattern(512, 7)
      local img = ihex.from_binary(data, case[3])
      assert(s:write_flash(img))
      assert(s:verify_flash(img))
      assert.are.equal(data, s:read_flash(case[3], 512))
      assert.are.equal(0xD9, s:write_fuse("hfuse", 0xD9))
      assert.are.equal(0xFD, s:write_fuse("efuse", 0xFD))
      assert.are.equal(0xEF, s:write_fuse("lock", 0x2F))
      assert(s:write_eeprom(0x100, "eeprom data"))
      assert.are.equal("eeprom data", s:read_eeprom(0x100, 11))
      s:close()
      assert.are.equal(data, flash_bin(sub):sub(case[3] + 1, case[3] + 512))
      assert.are.equal("eeprom data", h.read(sub .. "/eeprom.bin"):sub(0x101, 0x10B))
      assert.is_nil(h.read(sub .. "/violations.log"))
    end
  end)

  it("refuses an image that does not fit the flash, before writing any page", function()
    local pages, err = isp.pages(parts.m32u4, ihex.from_binary("abc", 0x7FFE))
    assert.is_nil(pages)
    assert.are.equal("image data at 0x7FFE..0x8000 is outside ATmega32U4's flash (0x0..0x7FFF)", err)
    -- a session refuses it whole: not even the part that fits is written
    local s <close> = session()
    assert(s:connect())
    local ok
    ok, err = s:write_flash(ihex.from_binary("abc", 0x7FFE))
    assert.is_nil(ok)
    assert.are.equal("image data at 0x7FFE..0x8000 is outside ATmega32U4's flash (0x0..0x7FFF)", err)
    s:close()
    assert.are.equal(("\255"):rep(32768), flash_bin(dir))
  end)

  it("refuses a chip with another signature, leaving its flash as it was", function()
    local s0 <close> = session{ part = "m328p", pins = { reset = 3, sck = 15, mosi = 16, miso = 17 } }
    s0:connect()
    s0:erase()
    s0:write_flash(ihex.from_binary("old firmware", 0))
    s0:close()
    local before = flash_bin(dir)
    local s <close> = session{ part = "m32u4" }
    local ok, err = s:connect()
    assert.is_nil(ok)
    assert.are.equal("signature 1E 95 0F is not ATmega32U4's (1E 95 87): wrong part or wrong chip "
      .. "(force to override)", err)
    assert.are.equal(before, flash_bin(dir))
    -- force: accepted
    local f <close> = session{ part = "m32u4", force = true }
    assert.are.equal("1E 95 0F", f:connect())
  end)

  it("finds swapped MOSI/MISO from the board revision byte", function()
    local rev = string.rep("\0", 1043) .. "\2"          -- revision 2: swapped on the board
    h.write(dir .. "/mtd2", rev)
    local s <close> = session()
    assert.are.equal("1E 95 87", s:connect())
    assert.is_true(s.swapped)
    assert.are.equal(2, s.revision)
    assert.are.equal(1, s:stats().enable_tries)          -- right the first time
  end)

  it("finds swapped MOSI/MISO by trying when the revision is unknown", function()
    h.write(dir .. "/mtd2", string.rep("\0", 1043) .. "\2")
    local s <close> = session{ revision_path = dir .. "/no-such-file" }
    assert.are.equal("1E 95 87", s:connect())
    assert.is_true(s.swapped)
  end)

  it("tries Programming Enable again when its echo comes back garbled", function()
    -- bits 16-23 the MCU sends are the echo of the first Programming Enable
    h.write(dir .. "/faults", "bit_error 16\n")
    local s <close> = session()
    assert.are.equal("1E 95 87", s:connect())
    assert.are.equal(2, s:stats().enable_tries)
    assert.is_false(s.swapped)                           -- the wiring was right all along
  end)

  it("pulses RESET before each Programming Enable, so an MCU out of step is brought back", function()
    local gpio = require "fotahost.gpio"
    local ispc = require "fotahost.avr.isp.core"
    local lines <close> = assert(gpio.open{ backend = "sim", chip = dir, lines = { 3, 15, 16, 17 },
      outputs = { true, true, true, false }, initial = { 0, 0, 0 }, part = parts.m32u4 })
    local prog = ispc.new(lines, parts.m32u4, { half_period_ns = 250 })
    assert.is_true(prog:connect())
    -- A glitch on SCK (it is high after an instruction): one rising edge
    -- too many, and the MCU counts its bits one off from ours.
    assert(lines:set(2, 0))
    assert(lines:set(2, 1))
    local _, _, echo = prog:cmd(0xAC, 0x53, 0x00, 0x00)
    assert.are_not.equal(0x53, echo)                     -- out of step
    assert.is_true(prog:connect())
    assert.are.equal("\x1E\x95\x87", prog:signature())
    assert.are.equal(2, prog:stats().enable_tries)       -- one connect each, no retry needed
  end)

  it("checks its numbers whole, before any C type could cut them", function()
    local gpio = require "fotahost.gpio"
    local ispc = require "fotahost.avr.isp.core"
    local lines <close> = assert(gpio.open{ backend = "sim", chip = dir, lines = { 3, 15, 16, 17 },
      outputs = { true, true, true, false }, initial = { 0, 0, 0 }, part = parts.m32u4 })
    -- 2^32 + 1 would be 1 as a 32-bit int (or long, on the board)
    for _, opts in ipairs({ { half_period_ns = 250, retries = (1 << 32) + 1 },
                            { half_period_ns = (1 << 32) + 250 } }) do
      assert.has_error(function() ispc.new(lines, parts.m32u4, opts) end,
        "bad argument #3 to 'new' (half_period_ns 0..1000000000 and retries 1..100)")
    end
    local prog = ispc.new(lines, parts.m32u4, { half_period_ns = 250 })
    assert.is_true(prog:connect())
    -- an end past math.maxinteger wraps round: the range is refused, not read as empty
    assert.has_error(function() prog:read_flash(math.maxinteger, 2) end)
    assert.has_error(function() prog:read_eeprom(1, math.maxinteger) end)
    assert.are.equal(2, #prog:read_flash(0x7FFE, 2))
    -- a raw instruction's bytes, whole: cut to 8 bits, 0x1AC would be 0xAC
    -- (0xAC 0x53: Programming Enable), 0x100 would be 0
    assert.has_error(function() prog:cmd(0x30, 0x00, 0x100, 0x00) end,
      "bad argument #3 to 'cmd' (not a byte (0..255): 256)")
    assert.has_error(function() prog:cmd(0x1AC, 0x53, 0x00, 0x00) end,
      "bad argument #1 to 'cmd' (not a byte (0..255): 428)")
    assert.has_error(function() prog:cmd(0x30, 0x00, 0x00, -1) end,
      "bad argument #4 to 'cmd' (not a byte (0..255): -1)")
    assert.are.same({ 0x00, 0x30, 0x00, 0x1E }, { prog:cmd(0x30, 0x00, 0x00, 0x00) })
  end)

  it("gives up on a chip that stays busy, naming the step", function()
    h.write(dir .. "/faults", "slow_write 400\n")      -- a chip erase of 3.6 s, not 9 ms
    local s <close> = session()
    assert(s:connect())
    local ok, err = s:erase()
    assert.is_nil(ok)
    assert.matches("^chip erase: the MCU still reports busy after %d+ ms$", err)
  end)

  describe("faults, each failing before the erase with the MCU untouched", function()
    local function with_fault(fault)
      local s0 <close> = session()
      s0:connect()
      s0:erase()
      s0:write_flash(ihex.from_binary("firmware v1", 0))
      s0:close()
      h.write(dir .. "/faults", fault .. "\n")
      local before = flash_bin(dir)
      local s <close> = session()
      local ok, err = s:connect()
      s:close()
      assert.are.equal(before, flash_bin(dir))
      return ok, err
    end

    it("a chip that does not answer", function()
      local ok, err = with_fault("silent")
      assert.is_nil(ok)
      assert.matches(": no answer from the MCU %(MISO stays 1%) after 4 attempts: check the wiring", err)
    end)

    it("MISO stuck low", function()
      local ok, err = with_fault("miso_stuck 0")
      assert.is_nil(ok)
      assert.matches("no answer from the MCU %(MISO stays 0%)", err)
    end)

    it("a bit error in the signature", function()
      -- bits 0-31: Programming Enable; 32-127: the signature; bit 120 is in its last byte
      local ok, err = with_fault("bit_error 120")
      assert.is_nil(ok)
      assert.matches("^signature 1E 95 %x%x is not ATmega32U4's", err)
    end)
  end)

  it("rides out a slow chip by polling RDY/BSY, with no fixed delays", function()
    h.write(dir .. "/faults", "slow_write 3\n")
    local s <close> = session()
    s:connect()
    s:erase()
    local img = ihex.from_binary(pattern(1024, 3), 0)
    assert(s:write_flash(img))
    assert(s:verify_flash(img))
    assert.are.equal(20000, s:stats().sleep_us)
    s:close()
    assert.is_nil(h.read(dir .. "/violations.log"))
  end)

  it("with polling off, waits the datasheet delays (and the chip sees no early access)", function()
    local s <close> = session{ poll = false }
    s:connect()
    s:erase()
    local img = ihex.from_binary(pattern(512, 3), 0)
    assert.are.equal(4, s:write_flash(img))
    assert(s:verify_flash(img))
    assert.are.equal(20000 + 9000 + 4 * 4500, s:stats().sleep_us)
    assert.are.equal(0, s:stats().polls)
    s:close()
    assert.is_nil(h.read(dir .. "/violations.log"))
  end)

  it("shows a programmer that breaks the timing rules in violations.log", function()
    -- the C engine, below the session's clamp: no pacing, SCK too fast for the chip
    local gpio, ispc = require "fotahost.gpio", require "fotahost.avr.isp.core"
    local lines <close> = assert(gpio.open{ backend = "sim", chip = dir, lines = { 3, 15, 16, 17 },
      outputs = { true, true, true, false }, initial = { 0, 0, 0 }, part = parts.m32u4 })
    ispc.new(lines, parts.m32u4, { half_period_ns = 0 }):connect()
    -- and no pace chosen for another clock: the engine has no default
    local ok, err = pcall(ispc.new, lines, parts.m32u4, {})
    assert.is_false(ok)
    assert.matches("half_period_ns expected", err)
    lines:close()
    assert.matches("SCK half%-period %d+ ns < 250 ns", h.read(dir .. "/violations.log"))
  end)

  it("never paces SCK faster than the part allows at the MCU's clock", function()
    -- 2 clocks at 8 MHz (the board's), 3 from 12 MHz on: 188 ns at 16 MHz
    assert.are.equal(250, isp.min_half_period_ns(8000000))
    assert.are.equal(188, isp.min_half_period_ns(16000000))
    assert.are.equal(2000, isp.min_half_period_ns(1000000))
    for _, c in ipairs({ { clock = 8000000, want = 250 }, { clock = 16000000, want = 188 },
                         { clock = 1000000, want = 2000 } }) do
      os.remove(dir .. "/violations.log")
      h.write(dir .. "/faults", ("clock %d\n"):format(c.clock))
      local s <close> = session{ half_period_ns = 1, f_cpu = c.clock }
      assert.are.equal(c.want, s.half_period_ns)
      assert.is_true(s.sck_clamped)
      assert.are.equal("1E 95 87", s:connect())
      assert(s:erase())
      local img = ihex.from_binary(pattern(256, 11), 0)
      assert(s:write_flash(img))
      assert(s:verify_flash(img))
      s:close()
      assert.is_nil(h.read(dir .. "/violations.log"), c.clock)
    end
    -- a slower SCK than the minimum is kept as asked
    local s <close> = session{ half_period_ns = 400 }
    assert.are.equal(400, s.half_period_ns)
    assert.is_false(s.sck_clamped)
  end)

  it("raises at the caller on misuse: no backend, no pins, a pin that is not a number", function()
    local pins = { reset = 3, sck = 15, mosi = 16, miso = 17 }
    local ok, err = pcall(function() local s = isp.open{ pins = pins, chip = dir } return s end)
    assert.is_false(ok)
    assert.matches("isp_spec%.lua:%d+: isp%.open: no backend %(", err) -- the caller's line
    assert.has_error(function() isp.open{ backend = "sim", chip = dir } end,
      "isp.open: no pins: give a board or pins = { reset=, sck=, mosi=, miso= }")
    assert.has_error(function()
      isp.open{ backend = "sim", chip = dir, pins = { reset = 3, sck = "15", mosi = 16, miso = 17 } }
    end, "isp.open: pins.sck must be a GPIO number")
  end)

  it("stops cleanly when the progress callback raises, releasing RESET", function()
    local calls = 0
    local s = session{ progress = function(phase, done)
      calls = calls + 1
      if phase == "write" and done == 3 then error("user abort") end
    end }
    s:connect()
    s:erase()
    assert.has_error(function() s:write_flash(ihex.from_binary(pattern(2048, 5), 0)) end, "user abort")
    assert.is_nil(s.lines)                               -- released
    -- the chip runs again: a new session connects normally
    local s2 <close> = session()
    assert.are.equal("1E 95 87", s2:connect())
    assert.is_true(calls >= 4)
  end)

  it("reads MISO only for the answers it uses, and writes MOSI only when it changes", function()
    -- On the chip: a page load and its write read MISO only in the RDY/BSY
    -- polls (byte 4 of each); a flash read only in byte 4 of each instruction.
    local s <close> = session()
    s:connect()
    assert(s:erase())
    local before = s:stats()
    local img = ihex.from_binary(pattern(256, 7), 0)
    assert.are.equal(2, s:write_flash(img))
    local mid = s:stats()
    assert.is_true(mid.polls > before.polls)
    assert.are.equal(8 * (mid.polls - before.polls), mid.gpio_gets - before.gpio_gets)
    assert(s:verify_flash(img))
    local after = s:stats()
    assert.are.equal(8 * (after.commands - mid.commands), after.gpio_gets - mid.gpio_gets)
    s:close()
    assert.is_nil(h.read(dir .. "/violations.log"))       -- MOSI left alone is still set up in time

    -- On sysfs, where each line written or read is a system call: the same
    -- bit-level code, counted exactly on a fake tree, lines starting low.
    local gpio, ispc = require "fotahost.gpio", require "fotahost.avr.isp.core"
    for _, n in ipairs({ 3, 15, 16, 17 }) do
      local g = ("%s/sysfs/gpio%d"):format(h.q(dir), n)
      assert(os.execute(("mkdir -p %s && echo in > %s/direction && echo 0 > %s/value"):format(g, g, g)))
    end
    local lines <close> = assert(gpio.open{ backend = "sysfs", chip = "x", sysfs_root = dir .. "/sysfs",
      lines = { 3, 15, 16, 17 }, outputs = { true, true, true, false }, initial = { 0, 0, 0 } })
    local prog = ispc.new(lines, parts.m32u4, { half_period_ns = 0 })
    local function cost(instr)
      local n = lines:stats().syscalls
      assert(prog:replay(instr))
      return lines:stats().syscalls - n
    end
    -- Load Program Memory Page 40 00 00 FF: 32 SCK rises, 31 falls (the
    -- first bit is already on MOSI, SCK already low), 3 MOSI changes, no read.
    assert.are.equal(32 + 31 + 3, cost("\x40\x00\x00\xFF"))
    -- Read Program Memory 20 00 00 00 after it: SCK falls with MOSI back to
    -- 0, 31 falls and 32 rises, MOSI up and down once, 8 reads of byte 4.
    assert.are.equal(2 + 32 + 31 + 2 + 8, cost("\x20\x00\x00\x00"))
  end)

  it("lets other scheduler tasks run between pages", function()
    local sched = require "fotahost.sched"
    local ticks = 0
    sched.run(function()
      local ticker = sched.every(0.005, function() ticks = ticks + 1 end)
      local s <close> = session()
      s:connect()
      s:erase()
      assert(s:write_flash(ihex.from_binary(pattern(8192, 9), 0)))
      sched.cancel(ticker)
    end)
    assert.is_true(ticks >= 10, "ticks: " .. ticks)
  end)
end)
