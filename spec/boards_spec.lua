-- Board knowledge in one place: fotahost.avr.boards turns a config into
-- ISP options (the app, doctor and flash all go through isp_options), the
-- virtual board is an entry like any other, and the MT7688 pinmux is
-- switched by one piece of code with one policy.
local boards = require "fotahost.avr.boards"
local isp = require "fotahost.avr.isp"
local h = require "helper"

describe("boards.isp_options", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("gives a real board's wiring, clock, revision file and pinmux", function()
    local o = assert(boards.isp_options({ board = "linkit-smart-7688-duo", backend = "gpiod" }))
    assert.are.equal("gpiod", o.backend)
    assert.are.equal("gpiochip0", o.chip)
    assert.are.equal("m32u4", o.part)
    assert.are.same({ reset = 3, sck = 15, mosi = 16, miso = 17 }, o.pins)
    assert.are.equal(8000000, o.f_cpu)
    assert.are.equal("/dev/mtd2", o.revision_path)
    assert.are.equal("mt7688-spis", o.pinmux)
    -- the mmio backend switches the pins itself; the Yun has no pin group
    assert.is_nil(boards.isp_options({ board = "linkit-smart-7688-duo", backend = "mmio" }).pinmux)
    local yun = assert(boards.isp_options({ board = "arduino-yun", backend = "sysfs", part = "m328p" }))
    assert.are.equal(16000000, yun.f_cpu)
    assert.are.equal("m328p", yun.part)
    assert.is_nil(yun.pinmux)
  end)

  it("gives the virtual board's backend, its directory and its revision file", function()
    local o = assert(boards.isp_options({ board = "sim", backend = "gpiod", sim_dir = dir }))
    assert.are.equal("sim", o.backend)                      -- the config's backend does not reach it
    assert.are.equal(dir, o.chip)
    assert.are.equal(dir .. "/mtd2", o.revision_path)
    assert.is_nil(o.pinmux)
    assert.are.equal("m32u4", o.part)                       -- what the caller expects to find
  end)

  it("names an unknown board with the known ones", function()
    local o, err = boards.isp_options({ board = "uno" })
    assert.is_nil(o)
    assert.are.equal("unknown board 'uno' (known: arduino-yun, linkit-smart-7688-duo, sim)", err)
  end)
end)

describe("the MT7688 pinmux", function()
  local dir, mem
  before_each(function()
    dir = h.tmpdir()
    -- a fake sysfs tree for the board's four lines (nothing answers on it)
    for _, n in ipairs({ 3, 15, 16, 17 }) do
      os.execute(("mkdir -p %s/gpio%d && echo in > %s/gpio%d/direction && echo 0 > %s/gpio%d/value")
        :format(h.q(dir), n, h.q(dir), n, h.q(dir), n))
    end
    -- /dev/mem stand-in: the SPI-slave group in SPI mode (sparse: costs no disk)
    mem = dir .. "/mem"
    os.execute(("truncate -s %d %s"):format(0x10001000, h.q(mem)))
  end)
  after_each(function() h.rmdir(dir) end)

  local function gpio1_mode()
    local f = assert(io.open(mem, "rb"))
    f:seek("set", 0x10000060)
    local v = string.unpack("<I4", f:read(4))
    f:close()
    return v
  end

  local function session(mem_path)
    local o = assert(boards.isp_options({ board = "linkit-smart-7688-duo", backend = "sysfs" },
      { sysfs_root = dir, mem_path = mem_path, swap = false, retries = 1 }))
    return assert(isp.open(o))
  end

  it("is switched to GPIO before the lines are driven, for sysfs and gpiod", function()
    local s <close> = session(mem)
    assert.is_nil(s:connect())                              -- nothing answers on the fake tree
    assert.are.equal("changed", s.pinmux)
    assert.are.equal(0x4, gpio1_mode() & 0xC)               -- GPIO1_MODE bits 3:2 = 01
  end)

  it("is a warning when it fails, and the cause is added if the MCU then does not answer", function()
    local s <close> = session(dir .. "/no-mem")
    local ok, err = s:connect()
    assert.is_nil(ok)
    -- the lines were tried all the same: a pinmux already set by
    -- mt7688_pinmux, with /dev/mem locked, must not stop an update
    assert.matches("no answer from the MCU", err, 1, true)
    assert.matches("; the SPI%-slave pins may not be GPIOs: .*no%-mem", err)
  end)
end)
