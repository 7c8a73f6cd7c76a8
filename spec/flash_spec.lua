-- `fotahost flash`, the avrdude-compatible front end, driven as a user
-- drives it, on the simulated chip.
local h = require "helper"
local ihex = require "fotahost.ihex"

local function pattern(n, seed)
  local t = {}
  for i = 1, n do t[i] = string.char((i * seed) % 251) end
  return table.concat(t)
end

describe("fotahost flash", function()
  local dir, chip
  before_each(function()
    dir = h.tmpdir()
    chip = dir .. "/chip"
    os.execute("mkdir " .. h.q(chip))
  end)
  after_each(function() h.rmdir(dir) end)

  local function flash(args, env)
    local a = { "flash" }
    for _, v in ipairs(args) do a[#a + 1] = v end
    return h.run(a, { cwd = dir, env = env })
  end

  -- Puts `data` at `addr` into a HEX file; returns its path.
  local function hexfile(name, data, addr)
    local path = dir .. "/" .. name
    assert(ihex.from_binary(data, addr or 0):write(path))
    return path
  end

  -- A chip with known firmware, to show that failures leave it alone.
  local function preload_chip()
    local r = flash({ "-q", "-c", "sim", "-P", chip, "-U", "flash:w:" .. hexfile("old.hex", "old firmware") })
    assert.are.equal(0, r.status, r.err)
    return h.read(chip .. "/flash.bin")
  end

  it("runs the tutorial's command: flash equals the HEX, 0xFF elsewhere, lock reads 0xCF", function()
    local boot = pattern(4086, 13)
    hexfile("Caterina.hex", boot, 0x7000)
    local r = flash({ "-p", "m32u4", "-c", "sim", "-P", chip, "-v", "-e",
      "-U", "flash:w:Caterina.hex", "-U", "lock:w:0x0f:m" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("device signature = 0x1e9587", r.err)
    assert.matches("4086 bytes of flash written", r.err)
    assert.matches("4086 bytes of flash verified", r.err)
    assert.matches("1 byte of lock written %(0x0f, reads 0xcf", r.err)
    local fb = h.read(chip .. "/flash.bin")
    assert.are.equal(("\255"):rep(0x7000) .. boot .. ("\255"):rep(32768 - 0x7000 - #boot), fb)
    assert.matches("lock=0xCF", h.read(chip .. "/fuses.txt"))
    assert.is_nil(h.read(chip .. "/violations.log"))
  end)

  it("refuses a bad HEX file before touching the MCU", function()
    local before = preload_chip()
    h.write(dir .. "/bad.hex", ":0400000001020304F1\n:00000001FF\n")
    local r = flash({ "-c", "sim", "-P", chip, "-e", "-U", "flash:w:bad.hex" })
    assert.are.equal(1, r.status)
    assert.matches("bad%.hex:1: .*checksum", r.err)
    assert.falsy(r.err:find("initialized", 1, true))   -- never connected
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
  end)

  it("refuses an image that does not fit, and a missing file, before touching the MCU", function()
    local before = preload_chip()
    hexfile("big.hex", "x", 0x8000)
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:big.hex" })
    assert.are.equal(1, r.status)
    assert.matches("big%.hex: data up to 0x8000 does not fit the flash of ATmega32U4 %(32768 bytes%)", r.err)
    r = flash({ "-c", "sim", "-P", chip, "-U", "flash:w:nothere.hex" })
    assert.are.equal(1, r.status)
    assert.matches("nothere%.hex", r.err)
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
  end)

  it("refuses a chip of another part unless forced", function()
    local before = preload_chip()
    hexfile("fw.hex", "new firmware")
    local r = flash({ "-p", "m328p", "-c", "sim", "-P", chip, "-U", "flash:w:fw.hex" })
    assert.are.equal(1, r.status)
    assert.matches("signature 1E 95 87 is not ATmega328P's %(1E 95 0F%): wrong part or wrong chip", r.err)
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
    r = flash({ "-p", "m328p", "-c", "sim", "-P", chip, "-F", "-U", "flash:w:fw.hex" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal("new firmware", h.read(chip .. "/flash.bin"):sub(1, 12))
  end)

  it("changes nothing in a dry run", function()
    local before = preload_chip()
    hexfile("fw.hex", "new firmware")
    local r = flash({ "-n", "-c", "sim", "-P", chip, "-e", "-U", "flash:w:fw.hex", "-U", "lock:w:0x0f:m" })
    assert.are.equal(0, r.status, r.err)
    assert.matches("dry run: the chip would be erased now", r.err)
    assert.matches("dry run: flash would be written from fw.hex", r.err)
    assert.are.equal(before, h.read(chip .. "/flash.bin"))
  end)

  it("reads memories back to files in each format, and verifies", function()
    local fw = pattern(300, 7)
    hexfile("fw.hex", fw)
    local w = flash({ "-q", "-c", "sim", "-P", chip, "-U", "flash:w:fw.hex",
      "-U", "hfuse:w:0xd9:m", "-U", "eeprom:w:0x01,0x02,0x03:m" })
    assert.are.equal(0, w.status, w.err)
    local r = flash({ "-c", "sim", "-P", chip, "-U", "flash:r:back.hex:i", "-U", "flash:r:back.bin:r",
      "-U", "hfuse:r:-:h", "-U", "signature:r:sig.txt:h", "-U", "eeprom:r:ee.bin:r",
      "-U", "flash:v:fw.hex:i", "-U", "hfuse:v:0xd9:m", "-U", "eeprom:v:0x01,0x02,0x03:m" })
    assert.are.equal(0, r.status, r.err)
    assert.are.equal(fw, h.read(dir .. "/back.bin"))        -- trailing 0xFF cut, as avrdude does
    assert.are.equal(fw, ihex.load(dir .. "/back.hex"):bytes(0, #fw - 1))
    assert.are.equal("0xd9\n", r.out)
    assert.are.equal("0x1e,0x95,0x87\n", h.read(dir .. "/sig.txt"))
    assert.are.equal("\1\2\3", h.read(dir .. "/ee.bin"):sub(1, 3))
    r = flash({ "-c", "sim", "-P", chip, "-U", "hfuse:v:0xd8:m" })
    assert.are.equal(1, r.status)
    assert.matches("hfuse verification error: file 0xd8, MCU 0xd9", r.err)
  end)

  it("reads programmer entries from -C +file, with ~ for inverted pins", function()
    -- A fake sysfs tree stands in for the board; nothing answers on it, so
    -- the run fails at the MCU, after using the entry's pins.
    local sysfs = dir .. "/sysfs"
    for _, n in ipairs({ 11, 18, 27, 8 }) do
      os.execute(("mkdir -p %s/gpio%d && echo in > %s/gpio%d/direction && echo 0 > %s/gpio%d/value")
        :format(h.q(sysfs), n, h.q(sysfs), n, h.q(sysfs), n))
    end
    h.write(dir .. "/extra.conf", [[
# as a board's uci-defaults script appends it
programmer
  id    = "yun-gpio";
  desc  = "Arduino Yun GPIO ISP";
  type  = "linuxgpio";
  reset = ~18;
  sck   = 11;
  sdo   = 27;
  sdi   = 8;
;
]])
    hexfile("fw.hex", "x")
    local r = flash({ "-v", "-c", "yun-gpio", "-C", "+" .. dir .. "/extra.conf", "-U", "flash:w:fw.hex" },
      { FOTAHOST_SYSFS_ROOT = sysfs })
    assert.are.equal(1, r.status)
    assert.matches("using 'yun%-gpio' from the configuration on sysfs, pins reset=18 sck=11 mosi=27 miso=8", r.err)
    assert.matches("no answer from the MCU", r.err)
    -- released afterwards
    assert.are.equal("in", (h.read(sysfs .. "/gpio18/direction"):gsub("%s", "")))
  end)

  it("parses a real avrdude.conf and names what it knows when -c is unknown", function()
    local system = "/etc/avrdude.conf"
    local f = io.open(system)
    assert.truthy(f, "avrdude's configuration is a test dependency (.ci/install-deps installs avrdude)")
    f:close()
    local r = flash({ "-c", "nosuch", "-C", "+" .. dir .. "/empty.conf" }, { FOTAHOST_AVRDUDE_CONF = system })
    assert.are.equal(1, r.status)
    assert.matches("%S+empty%.conf", r.err)                 -- a missing +file is an error
    h.write(dir .. "/empty.conf", "# nothing\n")
    r = flash({ "-c", "nosuch", "-C", "+" .. dir .. "/empty.conf" }, { FOTAHOST_AVRDUDE_CONF = system })
    assert.are.equal(1, r.status)
    assert.matches("unknown programmer 'nosuch' %(linuxgpio, sysfs, gpiod, mmio, sim, or from the configuration: .*avrisp", r.err)
    r = flash({ "-c", "avrisp" }, { FOTAHOST_AVRDUDE_CONF = system })
    assert.matches("programmer 'avrisp' is of type 'stk500'; fotahost flash drives GPIO lines only", r.err)
  end)

  it("reports a broken configuration file with its line", function()
    h.write(dir .. "/broken.conf", 'programmer\n  id = "x";\n  type = "linuxgpio"\n  reset 3;\n;\n')
    local r = flash({ "-c", "x", "-C", dir .. "/broken.conf" })
    assert.are.equal(1, r.status)
    assert.matches("broken%.conf:4: ", r.err)
  end)

  it("explains bad options", function()
    local cases = {
      { {}, "no programmer given: use %-c" },
      { { "-c", "sim" }, "the sim programmer needs %-P DIR" },
      { { "-c", "sim", "-P", "x", "-U", "rom:w:f" }, "unknown memory type 'rom'" },
      { { "-c", "sim", "-P", "x", "-U", "flash:x:f" }, "unknown operation 'x'" },
      { { "-c", "sim", "-P", "x", "-U", "flash:w" }, "expected memtype:op:filename%[:format%]" },
      { { "-c", "sim", "-P", "x", "-U", "signature:w:f" }, "the signature cannot be written" },
      { { "-c", "sim", "-P", "x", "-p", "m9" }, "unknown part 'm9' %(known: m2560, m328p, m32u4%)" },
      { { "-c", "sim", "--board", "uno" }, "unknown board 'uno'" },
      { { "-Z" }, "unknown option '%-Z'" },
    }
    for _, c in ipairs(cases) do
      local r = flash(c[1])
      assert.are.equal(1, r.status, table.concat(c[1], " "))
      assert.matches(c[2], r.err)
    end
    local r = flash({ "--help" })
    assert.are.equal(0, r.status)
    assert.matches("usage: fotahost flash", r.out)
  end)

  it("shows avrdude-style progress bars on a terminal", function()
    hexfile("fw.hex", pattern(2000, 3))
    local p = io.popen(("cd %s && script -qec %s /dev/null < /dev/null 2>&1"):format(h.q(dir),
      h.q(h.q(h.bin) .. " flash -c sim -P chip -U flash:w:fw.hex")))
    local out = p:read("a")
    p:close()
    assert.matches("Writing | #+ | 100%% %d+%.%d%d s", out)
    assert.matches("Reading | #+ | 100%%", out)
  end)
end)
